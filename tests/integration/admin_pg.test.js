'use strict';
// Issue 11: ssogate-admin on the PostgreSQL shared store, against a real PostgreSQL. migrate (then again:
// nothing to do), check-store (OK, a newer schema refused, an unreachable server answered at once), an
// upgrade of a version 1 database with links and sessions (version 2: logout_jti), copy of
// an LMDB store (links made by `import` and by tests/tools/store_fill.c, with ids that are not UTF-8, and
// sessions made without logging in) into PostgreSQL: the same links, the sessions with their columns, the
// expired ones left out, a second copy writing nothing, a conflicting link refusing the copy whole;
// remove-tenant and remove-user ending the sessions with audit rows; conflicting imports refused whole.
//
//   SSOGATE_BUILD_DIR=build node --test tests/integration/admin_pg.test.js

const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { after } = require('node:test');
const { itest, closedPort, SLOW, SSOGATE_BIN } = require('./lib/harness');
const pg = require('./lib/pg');

const BUILD_DIR = path.dirname(path.dirname(SSOGATE_BIN));
const ADMIN_BIN = process.env.SSOGATE_ADMIN_BIN || path.join(path.dirname(SSOGATE_BIN), 'ssogate-admin');
const STORE_BIN = process.env.SSOGATE_TEST_STORE_BIN || path.join(BUILD_DIR, 'tests', 'ssogate-test-store');
const PSQL = path.join(pg.PG_BIN, 'psql');
const ADMIN_TIMEOUT_MS = 30000 * SLOW;

// The run's shared PostgreSQL (SSOGATE_PG_HOST/SSOGATE_PG_PORT) or one of the file's own, started once;
// every test gets a database of its own on it.
let server;
async function database(name) {
  server = server || (await pg.start());
  return server.createDatabase(`admin_pg_${name}`);
}
after(async () => server?.destroy());

// Runs a command to completion: {code, stdout, stderr, ms}. stdout is latin1, so ids that are not UTF-8
// compare byte for byte. A sanitizer report (a sanitizer build) fails the test whatever the exit code.
const SANITIZER_REPORT = /ERROR: (Address|Leak|Memory|UndefinedBehavior)Sanitizer|runtime error: /;
async function run(bin, args, { input, timeout = ADMIN_TIMEOUT_MS } = {}) {
  const started = Date.now();
  const res = await new Promise((resolve) => {
    const child = childProcess.execFile(bin, args, { timeout, killSignal: 'SIGKILL', encoding: 'latin1' },
      (err, stdout, stderr) => resolve({ code: err ? (err.code ?? err.signal) : 0, stdout, stderr, ms: Date.now() - started }));
    // A command that exits without reading its input closes the pipe first: EPIPE is no failure here.
    child.stdin.on('error', (err) => assert.equal(err.code, 'EPIPE', `${path.basename(bin)} stdin: ${err.message}`));
    child.stdin.end(input ?? '');
  });
  assert.doesNotMatch(res.stderr, SANITIZER_REPORT, `${path.basename(bin)} ${args.join(' ')}`);
  return res;
}

// Runs SQL through psql on conninfo; resolves the rows, fields split on '|'.
async function sql(conninfo, text) {
  const res = await run(PSQL, ['-X', '-q', '-A', '-t', '-F', '|', '-v', 'ON_ERROR_STOP=1', '-d', conninfo, '-c', text]);
  assert.equal(res.code, 0, `psql ${text}: ${res.stderr}`);
  return res.stdout.split('\n').filter((l) => l !== '').map((l) => l.split('|'));
}

const hex = (s) => Buffer.from(s, 'latin1').toString('hex');
const sha256 = (s) => crypto.createHash('sha256').update(s).digest('hex');

// Two configurations on one data_dir: the LMDB store, and PostgreSQL at conninfo.
function configs(h, conninfo) {
  const base = h.config();
  const lmdb = h.writeConfig(base, 'lmdb.json');
  const pg = h.writeConfig({ ...base, store: { type: 'postgresql', conninfo } }, 'pg.json');
  return {
    lmdb: (args, options) => run(ADMIN_BIN, ['-c', lmdb, ...args], options),
    pg: (args, options) => run(ADMIN_BIN, ['-c', pg, ...args], options),
    dataDir: base.data_dir,
  };
}

// The LMDB store every copy test starts from: links through `ssogate-admin import` and through
// store_fill.c (a tenant whose ids are latin1 bytes, a user link with facts), and six sessions: three of
// tenant t-a's users, one of t-b's, one outside link mode without an issuer, and two expired (absolute,
// idle) that a copy leaves out. Resolves the live sessions by name with their ids.
const LATIN = 'caf\xe9';
async function populate(h, admin) {
  const file = h.file('links.json');
  fs.writeFileSync(file, JSON.stringify({
    tenant_links: [{ psa_tenant: 't-a', idp_tenant: 'i-a' }, { psa_tenant: 't-b', idp_tenant: 'i-b' }],
    user_links: [
      { psa_tenant: 't-a', psa_user: 'u1', idp_tenant: 'i-a', idp_sub: 's1' },
      { psa_tenant: 't-a', psa_user: 'u2', idp_tenant: 'i-a', idp_sub: 's2' },
      { psa_tenant: 't-b', psa_user: 'u3', idp_tenant: 'i-b', idp_sub: 's3' },
    ],
  }));
  const imported = await admin.lmdb(['import', file]);
  assert.equal(imported.code, 0, imported.stderr);

  const now = Math.floor(Date.now() / 1000);
  const x = (s) => (s === undefined ? '-' : hex(s));
  const session = (s) => ['session', s.created ?? now - 60, s.lastSeen ?? now - 10, s.idle ?? 1800, s.expires ?? now + 3600,
    x(s.issuer), x(s.sub), x(s.idpTenant), x(s.psaTenant), x(s.psaUser), x(s.sid)].join(' ');
  const issuer = 'https://idp.test/';
  const live = {
    a1: { issuer, sub: 's1', idpTenant: 'i-a', psaTenant: 't-a', psaUser: 'u1', sid: 'sid-1' },
    a1bis: { issuer, sub: 's1', idpTenant: 'i-a', psaTenant: 't-a', psaUser: 'u1' },
    a2: { issuer, sub: 's2', idpTenant: 'i-a', psaTenant: 't-a', psaUser: 'u2', idle: 0 },
    b3: { issuer, sub: 's3', idpTenant: 'i-b', psaTenant: 't-b', psaUser: 'u3' },
    // The IdP's text in a session is UTF-8 (é as the bytes c3 a9, written here as latin1 characters): a
    // session refuses other bytes from the IdP; the PSA's ids are opaque bytes (LATIN, above).
    plain: { sub: 'plain-caf\xc3\xa9' },
  };
  const expired = [
    { issuer, sub: 's1', psaTenant: 't-a', psaUser: 'u1', created: now - 7200, lastSeen: now - 7100, expires: now - 10 },
    { issuer, sub: 's3', psaTenant: 't-b', psaUser: 'u3', lastSeen: now - 600, idle: 300 },
  ];
  const names = Object.keys(live);
  const lines = [
    `tenant ${hex(LATIN)} ${hex(`idp-${LATIN}`)}`,
    `user ${hex(LATIN)} ${hex(`user-${LATIN}`)} ${hex(`idp-${LATIN}`)} ${hex(`sub-${LATIN}`)} 1 0`,
    ...names.map((n) => session(live[n])),
    ...expired.map(session),
  ];
  const filled = await run(STORE_BIN, [admin.dataDir], { input: `${lines.join('\n')}\n` });
  assert.equal(filled.code, 0, filled.stderr);
  const ids = filled.stdout.trim().split('\n');
  assert.equal(ids.length, names.length + expired.length);
  names.forEach((n, i) => {
    live[n].id = ids[i];
  });
  return live;
}

// A fresh database with this build's schema, and the two configurations on it.
async function migrated(h, name) {
  const conninfo = await database(name);
  const admin = configs(h, conninfo);
  const res = await admin.pg(['migrate']);
  assert.equal(res.code, 0, res.stderr);
  return { conninfo, admin };
}

// The audit rows (where: an SQL condition), ids decoded: [via, action, kind, psa_tenant, psa_user,
// idp_tenant, idp_sub, host given].
async function auditRows(conninfo, where = 'true') {
  const rows = await sql(conninfo, `SELECT via, action, kind, encode(psa_tenant, 'hex'), coalesce(encode(psa_user, 'hex'), ''),
    coalesce(encode(idp_tenant, 'hex'), ''), coalesce(encode(idp_sub, 'hex'), ''), host <> ''
    FROM link_audit WHERE ${where} ORDER BY id`);
  const text = (h) => Buffer.from(h, 'hex').toString('latin1');
  return rows.map((r) => [...r.slice(0, 3), ...r.slice(3, 7).map(text), r[7]]);
}

itest('migrate on an empty database, then again: nothing to do; check-store OK, newer schema, unreachable', async (t, h) => {
  const conninfo = await database('migrate');
  const admin = configs(h, conninfo);

  const before = await admin.pg(['check-store']);
  assert.equal(before.code, 1, 'check-store before migrate');
  assert.match(before.stderr, /schema is version 0, this gateway needs 2: run ssogate-admin migrate/);
  const list = await admin.pg(['list']);
  assert.equal(list.code, 1, 'the link commands refuse a database without the schema');
  assert.match(list.stderr, /run ssogate-admin migrate/);

  const first = await admin.pg(['migrate']);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /^schema migrated from version 0 to 2$/m);
  const second = await admin.pg(['migrate']);
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stdout, /^schema version 2: already this build's, nothing to do$/m);
  assert.deepEqual(await sql(conninfo, 'SELECT version FROM ssogate_schema ORDER BY version'), [['1'], ['2']], 'a row per migration');

  const ok = await admin.pg(['check-store']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /schema version 2/);
  for (const table of ['tenant_links', 'user_links', 'sessions', 'login_states', 'link_audit', 'logout_jti']) {
    assert.match(ok.stdout, new RegExp(`^${table} +0$`, 'm'), `check-store counts ${table}`);
  }
  const check = await admin.pg(['check']);
  assert.equal(check.code, 0, check.stdout);
  assert.match(check.stdout, /schema 2, 0 tenant links, 0 user links, 0 sessions: 0 problems/);

  // A database a newer gateway migrated.
  await sql(conninfo, 'INSERT INTO ssogate_schema (version) VALUES (3)');
  const newer = await admin.pg(['check-store']);
  assert.equal(newer.code, 1, 'check-store refuses a newer schema');
  assert.match(newer.stderr, /schema is version 3, newer than this gateway's 2: upgrade the gateway/);
  const newerList = await admin.pg(['list']);
  assert.equal(newerList.code, 1);
  assert.match(newerList.stderr, /newer than this gateway's 2/);
  const newerMigrate = await admin.pg(['migrate']);
  assert.equal(newerMigrate.code, 1, 'migrate does not go back');
  assert.match(newerMigrate.stderr, /newer than this build's 2: nothing done/);

  // Nothing listens: answered at once, not after a timeout.
  const port = await closedPort();
  const down = configs(h, `host=127.0.0.1 port=${port} dbname=none user=none`);
  const unreachable = await down.pg(['check-store']);
  assert.equal(unreachable.code, 1, 'check-store on a closed port');
  assert.match(unreachable.stderr, /check-store: cannot connect to PostgreSQL/);
  assert.ok(unreachable.ms < 5000 * SLOW, `answered in ${unreachable.ms} ms`);
  assert.doesNotMatch(unreachable.stderr, /dbname=none/, 'the message never holds the conninfo');

  // What is LMDB's alone, and what is PostgreSQL's alone.
  const backup = await admin.pg(['backup', h.file('backup')]);
  assert.equal(backup.code, 1);
  assert.match(backup.stderr, /pg_dump/);
  const lmdbMigrate = await admin.lmdb(['migrate']);
  assert.equal(lmdbMigrate.code, 1);
  assert.match(lmdbMigrate.stderr, /store\.type is postgresql/);
  assert.equal((await admin.pg(['copy', '--from', 'postgresql', '--to', 'lmdb'])).code, 2, 'one direction only');
});

// A database of the previous schema (version 1: the tables of migration 1 and nothing else, made here by
// undoing migration 2, which adds logout_jti alone) holding links, sessions and audit rows: the gateway
// refuses it until `migrate`, which brings it to version 2 and keeps every row.
itest('migrate upgrades a version 1 database with links and sessions to version 2, keeping every row', async (t, h) => {
  const { conninfo, admin } = await migrated(h, 'upgrade');
  await populate(h, admin);
  const copied = await admin.pg(['copy', '--from', 'lmdb', '--to', 'postgresql']);
  assert.equal(copied.code, 0, copied.stderr);
  const listBefore = (await admin.pg(['list'])).stdout;
  await sql(conninfo, 'DROP TABLE logout_jti; DELETE FROM ssogate_schema WHERE version = 2');
  const rows = async () => sql(conninfo, `SELECT (SELECT count(*) FROM tenant_links), (SELECT count(*) FROM user_links),
    (SELECT count(*) FROM sessions), (SELECT count(*) FROM link_audit),
    (SELECT string_agg(encode(id_hash, 'hex') || encode(record, 'hex'), ',' ORDER BY id_hash) FROM sessions)`);
  const before = await rows();
  assert.deepEqual(before[0].slice(0, 4), ['3', '4', '5', '7']);

  const old = await admin.pg(['check-store']);
  assert.equal(old.code, 1, 'check-store refuses the version 1 database');
  assert.match(old.stderr, /schema is version 1, this gateway needs 2: run ssogate-admin migrate/);

  const upgraded = await admin.pg(['migrate']);
  assert.equal(upgraded.code, 0, upgraded.stderr);
  assert.match(upgraded.stdout, /^schema migrated from version 1 to 2$/m);
  assert.deepEqual(await sql(conninfo, 'SELECT version FROM ssogate_schema ORDER BY version'), [['1'], ['2']]);
  assert.deepEqual(await rows(), before, 'the links, sessions and audit rows are kept');
  assert.equal((await admin.pg(['list'])).stdout, listBefore, 'the same links');
  const ok = await admin.pg(['check-store']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^logout_jti +0$/m, 'the new table is there, empty');
  const check = await admin.pg(['check']);
  assert.equal(check.code, 0, check.stdout);
  assert.match(check.stdout, /schema 2, 3 tenant links, 4 user links, 5 sessions: 0 problems/);
  const again = await admin.pg(['migrate']);
  assert.match(again.stdout, /^schema version 2: already this build's, nothing to do$/m);
});

itest('copy --from lmdb --to postgresql: the links and live sessions in one go; a second copy writes nothing', async (t, h) => {
  const { conninfo, admin } = await migrated(h, 'copy');
  const live = await populate(h, admin);

  const copied = await admin.pg(['copy', '--from', 'lmdb', '--to', 'postgresql']);
  assert.equal(copied.code, 0, copied.stderr);
  assert.match(copied.stdout, /^copied 3 tenant links, 4 user links and 5 sessions to PostgreSQL/m);
  assert.match(copied.stdout, /^skipped 2 expired and 0 unreadable sessions$/m);

  // The same links on both sides, byte for byte.
  const lmdbList = await admin.lmdb(['list']);
  const pgList = await admin.pg(['list']);
  assert.equal(pgList.code, 0, pgList.stderr);
  assert.equal(pgList.stdout, lmdbList.stdout, 'list gives the same lines on both stores');
  assert.match(pgList.stdout, new RegExp(`^user +${LATIN}/user-${LATIN} <-> idp-${LATIN}/sub-${LATIN}$`, 'm'));
  assert.deepEqual(await sql(conninfo, `SELECT facts_known, staff, active FROM user_links WHERE psa_tenant = '\\x${hex(LATIN)}'`),
    [['t', 't', 'f']], 'the facts kept with a link come along');
  assert.deepEqual(await sql(conninfo, `SELECT facts_known FROM user_links WHERE psa_user = 'u1'::bytea`), [['f']]);

  // Each live session under SHA-256(id), its columns from the record.
  const rows = await sql(conninfo, `SELECT encode(id_hash, 'hex'), coalesce(encode(psa_tenant, 'hex'), 'NULL'),
    coalesce(encode(psa_user, 'hex'), 'NULL'), encode(idp_issuer, 'hex'), encode(idp_sub, 'hex'),
    coalesce(encode(idp_sid, 'hex'), 'NULL'), idle_timeout_s, expires_at > extract(epoch FROM now()), length(record) > 0
    FROM sessions`);
  assert.equal(rows.length, 5, 'five live sessions, the expired ones left out');
  const byHash = new Map(rows.map((r) => [r[0], r.slice(1)]));
  for (const [name, s] of Object.entries(live)) {
    const row = byHash.get(sha256(s.id));
    assert.ok(row, `session ${name} is in PostgreSQL under SHA-256 of its id`);
    const col = (v) => (v === undefined ? 'NULL' : hex(v));
    assert.deepEqual(row, [col(s.psaTenant), col(s.psaUser), s.issuer === undefined ? '' : hex(s.issuer), hex(s.sub),
      col(s.sid), String(s.idle ?? 1800), 't', 't'], `session ${name}'s columns`);
  }
  const check = await admin.pg(['check']);
  assert.equal(check.code, 0, check.stdout);
  assert.match(check.stdout, /schema 2, 3 tenant links, 4 user links, 5 sessions: 0 problems/, 'the records agree with the columns');
  const audit = await auditRows(conninfo);
  assert.equal(audit.length, 7, 'an audit row per link copied');
  assert.ok(audit.every((r) => r[0] === 'copy' && r[1] === 'link' && r[7] === 't'), JSON.stringify(audit));
  assert.deepEqual(audit.filter((r) => r[2] === 'tenant').map((r) => r.slice(3, 5)).sort(), [[LATIN, ''], ['t-a', ''], ['t-b', '']]);

  // Again: nothing changes, and it says so.
  const again = await admin.pg(['copy', '--from', 'lmdb', '--to', 'postgresql']);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /^nothing to copy: PostgreSQL already holds the 3 tenant links, 4 user links and 5 sessions/m);
  assert.equal((await auditRows(conninfo)).length, 7, 'no audit row for a copy that changed nothing');
  assert.deepEqual(await sql(conninfo, 'SELECT count(*) FROM sessions'), [['5']]);
  assert.equal((await admin.pg(['list'])).stdout, lmdbList.stdout);
});

itest('copy is refused whole, with nothing written, when a link in PostgreSQL conflicts', async (t, h) => {
  const { conninfo, admin } = await migrated(h, 'conflict');
  await populate(h, admin);
  const counts = async () => (await sql(conninfo, `SELECT (SELECT count(*) FROM tenant_links), (SELECT count(*) FROM user_links),
    (SELECT count(*) FROM sessions), (SELECT count(*) FROM link_audit)`))[0].map(Number);

  // t-b is linked to another IdP tenant in PostgreSQL.
  const file = h.file('pg-links.json');
  fs.writeFileSync(file, JSON.stringify({ tenant_links: [{ psa_tenant: 't-b', idp_tenant: 'i-other' }] }));
  assert.equal((await admin.pg(['import', file])).code, 0);
  const tenant = await admin.pg(['copy', '--from', 'lmdb', '--to', 'postgresql']);
  assert.equal(tenant.code, 1, 'copy refused');
  assert.match(tenant.stderr, /copy refused, nothing written: tenant t-b <-> i-b: conflicts with a link in PostgreSQL/);
  assert.deepEqual(await counts(), [1, 0, 0, 1], 'nothing of the copy was written, not even t-a before t-b');

  // The tenants agree, but the IdP user s1 of i-a is another PSA user's in PostgreSQL.
  assert.equal((await admin.pg(['remove-tenant', 't-b'])).code, 0);
  fs.writeFileSync(file, JSON.stringify({
    tenant_links: [{ psa_tenant: 't-a', idp_tenant: 'i-a' }],
    user_links: [{ psa_tenant: 't-a', psa_user: 'u9', idp_tenant: 'i-a', idp_sub: 's1' }],
  }));
  assert.equal((await admin.pg(['import', file])).code, 0);
  const before = await counts();
  const user = await admin.pg(['copy', '--from', 'lmdb', '--to', 'postgresql']);
  assert.equal(user.code, 1, 'copy refused');
  assert.match(user.stderr, /copy refused, nothing written: user t-a\/u1 <-> i-a\/s1: conflicts with a link in PostgreSQL/);
  assert.deepEqual(await counts(), before, 'nothing written');
  assert.equal((await admin.lmdb(['check'])).code, 0, 'the LMDB store is untouched');
});

itest('remove-tenant and remove-user on PostgreSQL end the sessions, with audit rows; conflicting imports are refused whole', async (t, h) => {
  const { conninfo, admin } = await migrated(h, 'remove');
  const live = await populate(h, admin);
  assert.equal((await admin.pg(['copy', '--from', 'lmdb', '--to', 'postgresql'])).code, 0);
  const sessions = async () => new Set((await sql(conninfo, "SELECT encode(id_hash, 'hex') FROM sessions")).map((r) => r[0]));

  // B7: the tenant link, its two user links and its users' three sessions.
  const tenant = await admin.pg(['remove-tenant', 't-a']);
  assert.equal(tenant.code, 0, tenant.stderr);
  assert.match(tenant.stdout, /^removed the tenant link of t-a and 2 user links; 3 sessions ended$/m);
  assert.deepEqual(await sql(conninfo, "SELECT count(*) FROM user_links WHERE psa_tenant = 't-a'::bytea"), [['0']]);
  assert.deepEqual(await sessions(), new Set([live.b3, live.plain].map((s) => sha256(s.id))), 'only the other sessions stay');
  // The user links go first (the tenant's row would take them along through the foreign key).
  assert.deepEqual(await auditRows(conninfo, "via = 'admin'"), [
    ['admin', 'unlink', 'user', 't-a', 'u1', 'i-a', 's1', 't'],
    ['admin', 'unlink', 'user', 't-a', 'u2', 'i-a', 's2', 't'],
    ['admin', 'unlink', 'tenant', 't-a', '', 'i-a', '', 't'],
  ]);

  // B8: one user and that user's session.
  const user = await admin.pg(['remove-user', 't-b', 'u3']);
  assert.equal(user.code, 0, user.stderr);
  assert.match(user.stdout, /^removed the user link of t-b\/u3; 1 sessions ended$/m);
  assert.deepEqual(await sessions(), new Set([sha256(live.plain.id)]));
  assert.deepEqual((await auditRows(conninfo, "via = 'admin'")).at(-1), ['admin', 'unlink', 'user', 't-b', 'u3', 'i-b', 's3', 't']);
  const missing = await admin.pg(['remove-user', 't-b', 'u3']);
  assert.equal(missing.code, 1, 'removing a link that is not there fails');
  assert.match(missing.stderr, /not found/);
  assert.equal((await admin.pg(['remove-tenant', 't-a'])).code, 1);

  // Imports: the same rules and messages as on LMDB, refused whole.
  const exported = async () => (await admin.pg(['export'])).stdout;
  const before = await exported();
  const auditBefore = (await auditRows(conninfo)).length;
  const good = { psa_tenant: 't-c', idp_tenant: 'i-c' };
  const goodUser = { psa_tenant: 't-c', psa_user: 'u5', idp_tenant: 'i-c', idp_sub: 's5' };
  const conflicts = [
    ['an IdP tenant linked to another PSA tenant', { tenant_links: [good, { psa_tenant: 't-x', idp_tenant: 'i-b' }] }, /tenant_links\[1\]: conflicts with an existing link/],
    ['a PSA tenant linked to another IdP tenant', { tenant_links: [good, { psa_tenant: 't-b', idp_tenant: 'i-x' }] }, /tenant_links\[1\]: conflicts with an existing link/],
    ['an IdP user linked to another PSA user', {
      tenant_links: [good],
      user_links: [goodUser, { psa_tenant: 't-c', psa_user: 'u6', idp_tenant: 'i-c', idp_sub: 's5' }],
    }, /user_links\[1\]: conflicts with an existing link/],
    ['a user of a tenant not linked', { tenant_links: [good], user_links: [{ psa_tenant: 't-y', psa_user: 'u', idp_tenant: 'i-y', idp_sub: 's' }] },
      /user_links\[0\]: not found/],
    ['a user of a tenant linked to another IdP tenant', { tenant_links: [good], user_links: [{ ...goodUser, idp_tenant: 'i-b' }] },
      /user_links\[0\]: invalid input/],
    ['two entries of the file against each other', { tenant_links: [good, { psa_tenant: 't-z', idp_tenant: 'i-c' }] },
      /tenant_links\[1\]: conflicts with an existing link/],
  ];
  for (const [what, doc, message] of conflicts) {
    const res = await admin.pg(['import', '-'], { input: JSON.stringify(doc) });
    assert.equal(res.code, 1, `${what}: refused; ${res.stdout} ${res.stderr}`);
    assert.match(res.stderr, /^ssogate-admin: import refused, nothing changed: /, what);
    assert.match(res.stderr, message, what);
    assert.equal(await exported(), before, `${what}: nothing changed, not even the good entries`);
  }
  assert.equal((await auditRows(conninfo)).length, auditBefore, 'no audit row for a refused import');
  const ok = await admin.pg(['import', '-'], { input: JSON.stringify({ tenant_links: [good], user_links: [goodUser] }) });
  assert.equal(ok.code, 0, ok.stderr);
  const twice = await admin.pg(['import', '-'], { input: JSON.stringify({ tenant_links: [good], user_links: [goodUser] }) });
  assert.equal(twice.code, 0, 'importing links already there succeeds');
  assert.equal((await auditRows(conninfo)).length, auditBefore + 2, 'and writes no audit row');

  // An orphan user link cannot even be written by hand: the schema's foreign key refuses it.
  assert.equal((await admin.pg(['check'])).code, 0);
  await assert.rejects(
    sql(conninfo, "INSERT INTO user_links (psa_tenant, psa_user, idp_tenant, idp_sub) VALUES ('t-q', 'u', 'i-q', 's')"),
    /violates foreign key constraint/);
  assert.equal((await admin.pg(['check'])).code, 0);
});
