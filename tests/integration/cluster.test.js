'use strict';
// Several gateway hosts, one truth (issue 11): three ssogate processes, each with its own data dir and
// port, share one real PostgreSQL (lib/pg.js) behind a balancer (lib/balancer.js) that sends requests
// round robin or to the host a test pins. The IdP (oidc-provider), the PSA stub and the browser flows are
// those of the link tests (lib/link-env.js).

const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { sharedEnv, waitFor, metricValue, request, SLOW } = require('./lib/harness');
const pg = require('./lib/pg');
const { startLinkEnv } = require('./lib/link-env');

const HOSTS = 3;
const CACHE_TTL_S = 5;

const clusterTest = sharedEnv('cluster', async (h) => {
  const server = await pg.start();
  h.servers.push({ close: (done) => server.destroy().then(() => done(), () => done()) });
  const conninfo = await server.createDatabase('cluster');
  const store = { type: 'postgresql', conninfo, pool_size: 4, statement_timeout_ms: 2000, cache_ttl_s: CACHE_TTL_S };

  // The schema first: a gateway refuses a database without it.
  const migrateConfig = h.writeConfig(h.config({ store }), 'migrate.json');
  const ADMIN = path.join(path.dirname(process.env.SSOGATE_BIN || path.join(process.env.SSOGATE_BUILD_DIR, 'gateway', 'ssogate')), 'ssogate-admin');
  const migrated = execFileSync(ADMIN, ['-c', migrateConfig, 'migrate'], { encoding: 'utf8', timeout: 30000 });
  assert.match(migrated, /^schema migrated from version 0 to \d+$/m, `ssogate-admin migrate: ${migrated}`);

  // Host C runs two worker processes: each keeps its own connections and cache notes.
  const perHost = (i, config) => (i === 2 ? { ...config, workers: 2 } : config);
  // Rows that expired while no host ran, and one that did not (a session, a login state, a back-channel
  // logout jti): swept when the hosts connect.
  const sqlNow = (query) => execFileSync(path.join(pg.PG_BIN, 'psql'), ['-X', '-At', '-d', conninfo, '-c', query],
    { encoding: 'utf8', timeout: 20000 }).trim();
  const now = Math.floor(Date.now() / 1000);
  sqlNow(`INSERT INTO sessions (id_hash, record, idp_issuer, idp_sub, last_seen, idle_timeout_s, expires_at) VALUES
    ('\\x01', '\\x00', '', 'expired', ${now - 100}, 0, ${now - 10}),
    ('\\x02', '\\x00', '', 'idle', ${now - 4000}, 1800, ${now + 40000}),
    ('\\x03', '\\x00', '', 'live', ${now}, 1800, ${now + 40000});
    INSERT INTO login_states (state_hash, record, created_at) VALUES ('\\x01', '\\x00', ${now - 700}), ('\\x02', '\\x00', ${now});
    INSERT INTO logout_jti (jti_hash, keep_until) VALUES ('\\x01', ${now - 10}), ('\\x02', ${now + 3600})`);
  const env = await startLinkEnv(h, { tenants: ['t1', 't2', 't3', 't4', 't5', 't6'], hosts: HOSTS, store, perHost });
  env.pg = server;
  env.conninfo = conninfo;
  // One value of a query, as text (psql -At).
  env.sql = (query) => execFileSync(path.join(pg.PG_BIN, 'psql'), ['-X', '-At', '-d', conninfo, '-c', query],
    { encoding: 'utf8', timeout: 20000 }).trim();
  return env;
});

// The answer of host i to GET path with browser's cookies (the balancer pinned to it meanwhile).
async function on(env, i, browser, pathname) {
  env.balancer.pin(i);
  try {
    return await browser.request(`${env.gwUrl}${pathname}`, { headers: { accept: 'application/json' } });
  } finally {
    env.balancer.unpin();
  }
}

// Two PSA users sign in with their passwords and press the button of action on My Settings: resolves
// [[browser, the IdP's page], ...] for race().
async function twoStarts(env, users, action) {
  const starts = [];
  for (const user of users) {
    const { browser } = await env.psaLogin(user);
    const page = await env.settings(browser);
    starts.push([browser, await env.press(browser, page, action)]);
  }
  return starts;
}

// Two IdP logins (browsers a and b, started at startA and startB) complete with their callbacks held;
// then both callbacks go at the same instant, a's to host 0 and b's to host 1. The link notices of table
// are held back meanwhile, so that neither host can learn of the other's link first (a slow run would
// allow it): only the database decides. Resolves both answers and the gateways' log lines of the race.
async function race(env, [[a, startA], [b, startB]], account, table) {
  a.holdCallback = true;
  b.holdCallback = true;
  await env.atIdp(a, startA, account);
  await env.atIdp(b, startB, account);
  a.holdCallback = false;
  b.holdCallback = false;
  const logged = env.gws.map((gw) => gw.logs.length);
  const direct = (browser, i) => {
    const held = new URL(browser.heldCallback);
    return browser.navigate(`http://127.0.0.1:${env.hostPorts[i]}${held.pathname}${held.search}`);
  };
  env.sql(`ALTER TABLE ${table} DISABLE TRIGGER ${table}_changed`);
  const answers = await Promise.all([direct(a, 0), direct(b, 1)]);
  env.sql(`ALTER TABLE ${table} ENABLE TRIGGER ${table}_changed`);
  const conflicts = env.gws.flatMap((gw, i) => gw.logs.slice(logged[i])
    .filter((l) => l.event === 'shared_store' && l.sqlstate === '23505'));
  return { answers, conflicts };
}

// "Log in with IT Complete" started on host `from` and called back on host `to`: the final response
// (see env.atIdp), its callback among it.
async function loginAcross(env, browser, account, from, to) {
  env.balancer.pin(from);
  const start = await browser.navigate(`${env.gwUrl}/_sso/login`);
  env.balancer.pin(to);
  try {
    return await env.atIdp(browser, start, account);
  } finally {
    env.balancer.unpin();
  }
}

// A back-channel logout token of claims, signed with the IdP's key.
async function logoutToken(env, claims) {
  return (await env.control('POST', '/_test/sign', { claims, alg: 'ES256' })).token;
}

// POSTs a logout token to host i's /_sso/backchannel-logout, as the IdP does (no balancer).
function backchannelLogout(env, i, token) {
  const body = `logout_token=${encodeURIComponent(token)}`;
  return request(env.hostPorts[i], { method: 'POST', path: '/_sso/backchannel-logout',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) }, body });
}

async function statusOn(env, i, browser) {
  const res = await on(env, i, browser, '/_sso/status');
  assert.equal(res.status, 200, `GET /_sso/status on host ${i}`);
  return JSON.parse(res.body);
}

clusterTest('a login started on host A completes on host B; the session works on A, B and C', async (env) => {
  const t = env.tenant('t1');
  await env.linkTenant('t1');
  await env.linkUser(t.staff, t.user);

  const browser = env.browser();
  const done = await loginAcross(env, browser, t.user, 0, 1);
  assert.ok(done.callback, 'the IdP sent the browser back to the gateway');
  assert.equal(done.callback.status, 302, `the callback on host B signs in: ${done.callback.status} ${done.callback.body}`);
  const served = env.balancer.served.filter((e) => e.path.startsWith('/_sso/login') || e.path.startsWith('/_sso/callback'));
  assert.deepEqual(served.slice(-2).map((e) => e.host), [0, 1], 'login on A, callback on B');

  for (let i = 0; i < HOSTS; i++) {
    const status = await statusOn(env, i, browser);
    assert.equal(status.session, true, `host ${i} knows the session: ${JSON.stringify(status)}`);
  }
  // The PSA sees the same linked user through every host.
  for (let i = 0; i < HOSTS; i++) {
    const res = await on(env, i, browser, '/api/whoami');
    assert.equal(res.status, 200, `whoami through host ${i}`);
    assert.equal(JSON.parse(res.body).user, t.staff.id, `host ${i} forwards the linked PSA user`);
  }
});

// A user link removed (ssogate-admin remove-user, on PostgreSQL) while a login of its user waits on the
// PSA's whoami: the session INSERT finds the link gone and makes no row; the login ends "not linked".
clusterTest('a link removed while its login is in flight leaves no session in PostgreSQL', async (env) => {
  const t = env.tenant('t5');
  await env.linkTenant('t5');
  await env.linkUser(t.staff, t.user);
  const rows = () => Number(env.sql(`SELECT count(*) FROM sessions WHERE psa_user = convert_to('${t.staff.id}', 'UTF8')`));
  const before = rows();
  await env.configurePsa({ whoami_delay_ms: 3000 });
  await env.psaReset();
  try {
    const login = env.ssoLogin(t.user);
    const asked = async () => (await env.psaLog()).some((d) => d.path === '/api/whoami' && d.method === 'assertion');
    await waitFor(asked, 10000 * SLOW, 'the login asks the PSA about its user');
    const removed = await env.admin(['remove-user', 't5', t.staff.id]);
    assert.equal(removed.code, 0, `remove-user: ${removed.stderr}`);
    const res = await login;
    assert.equal(res.callback.headers.location, '/login?sso_notice=not_linked', 'the login in flight is not linked');
    assert.equal(rows(), 0, `no session row of the unlinked user (${before} before the removal)`);
  } finally {
    await env.configurePsa({ whoami_delay_ms: 0 });
  }
});

clusterTest('a state is single-use across hosts: the same callback replayed on C is refused', async (env) => {
  const t = env.tenant('t1');
  const browser = env.browser();
  const done = await loginAcross(env, browser, t.user, 0, 1);
  assert.equal(done.callback.status, 302);
  const replay = await on(env, 2, browser, new URL(done.callback.url).pathname + new URL(done.callback.url).search);
  assert.equal(replay.status, 400, 'the login state was used up on B');
});

// Review H2: a back-channel logout of a user (taken by host A) while a login of theirs waits on the PSA's
// whoami (at host B) ended nothing of that login: its session row was inserted after the logout's DELETE.
// The logout's mark in logout_jti stops the INSERT; the login ends "logged_out".
clusterTest('a back-channel logout on host A while a login of that user is in flight on host B leaves no session', async (env) => {
  const t = env.tenant('t1');
  const rows = () => Number(env.sql(`SELECT count(*) FROM sessions WHERE idp_sub = convert_to('${t.user.sub}', 'UTF8')`));
  const browser = env.browser();
  env.balancer.pin(1);
  try {
    const start = await browser.navigate(`${env.gwUrl}/_sso/login`);
    // A login begun in an earlier second than the logout (one in the logout's second is let through).
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await env.configurePsa({ whoami_delay_ms: 3000 });
    await env.psaReset();
    const login = env.atIdp(browser, start, t.user);
    const asked = async () => (await env.psaLog()).some((d) => d.path === '/api/whoami' && d.method === 'assertion');
    await waitFor(asked, 10000 * SLOW, 'the login asks the PSA about its user');
    const now = Math.floor(Date.now() / 1000);
    const token = await logoutToken(env, { iss: env.issuer, aud: 'ssogate', iat: now, exp: now + 120,
      jti: crypto.randomUUID(), events: { 'http://schemas.openid.net/event/backchannel-logout': {} }, sub: t.user.sub });
    const logout = await backchannelLogout(env, 0, token);
    assert.equal(logout.status, 200, `host A accepts the logout: ${logout.body}`);
    const done = await login;
    assert.equal(done.callback.status, 401, `the login in flight on host B is refused: ${done.callback.status}`);
    assert.match(String(done.body), /Signed out at IT Complete/);
    assert.equal(rows(), 0, 'no session row of the user');
    assert.equal((await statusOn(env, 1, browser)).session, false, 'no session on host B');
  } finally {
    env.balancer.unpin();
    await env.configurePsa({ whoami_delay_ms: 0 });
  }
});

// A callback tried from another browser (on host C) is refused and puts the state back in PostgreSQL:
// the login still completes in the browser that began it (on host B).
clusterTest('a callback from another browser does not use the login up across hosts', async (env) => {
  const t = env.tenant('t1');
  const browser = env.browser();
  browser.holdCallback = true;
  try {
    await loginAcross(env, browser, t.user, 0, 0);
  } finally {
    browser.holdCallback = false;
  }
  assert.ok(browser.heldCallback, 'the IdP redirected to the callback');
  const path = new URL(browser.heldCallback).pathname + new URL(browser.heldCallback).search;
  const stranger = await on(env, 2, env.browser(), path);
  assert.equal(stranger.status, 400, 'another browser is refused');
  let own;
  for (let i = 0; i < 20 && (own === undefined || own.status === 400); i++) {
    own = await on(env, 1, browser, path); // the put back is written without waiting: bounded retries
  }
  assert.equal(own.status, 302, `the browser that began the login completes it on host B: ${own.status}`);
});

clusterTest('B4 race: two admins link the same IdP tenant on two hosts at the same instant: exactly one wins', async (env) => {
  // t2's and t3's admins both sign in with t2's master account: the IdP tenant can map to one PSA tenant.
  const t2 = env.tenant('t2');
  const t3 = env.tenant('t3');
  const starts = await twoStarts(env, [t2.admin, t3.admin], '/_sso/tenant/enable');
  const { answers: [resA, resB], conflicts } = await race(env, starts, t2.master, 'tenant_links');
  const outcomes = [resA, resB].map((r) => new URL(r.url).search);
  const won = outcomes.filter((s) => s === '?done=tenant_linked').length;
  assert.equal(won, 1, `exactly one link wins: ${JSON.stringify(outcomes)} ${resA.body.slice(0, 200)} ${resB.body.slice(0, 200)}`);
  assert.equal(conflicts.length, 1, 'the loser was refused by the database\'s UNIQUE constraint, not by its local copy');
  const rows = env.sql(`SELECT count(*) FROM tenant_links WHERE idp_tenant = '\\x${Buffer.from(t2.master.tenant).toString('hex')}'`);
  assert.equal(rows, '1', 'one tenant link for that IdP tenant in PostgreSQL');
});

clusterTest('B10 race: two PSA users link the same IdP user on two hosts at the same instant: exactly one wins', async (env) => {
  // A tenant of its own: which PSA tenant won the B4 race is not known.
  const t4 = env.tenant('t4');
  await env.linkTenant('t4');
  const starts = await twoStarts(env, [t4.staff, t4.staff2], '/_sso/user/enable');
  const { answers: [resA, resB], conflicts } = await race(env, starts, t4.user, 'user_links');
  const landed = [resA, resB].map((r) => new URL(r.url).pathname);
  assert.equal(landed.filter((p) => p === '/').length, 1,
    `exactly one user link (and session) wins: ${JSON.stringify(landed)} ${resA.status} ${resB.status}`);
  assert.equal(conflicts.length, 1, 'the loser was refused by the database\'s UNIQUE constraint');
  const idpSub = Buffer.from(t4.user.sub).toString('hex');
  assert.equal(env.sql(`SELECT count(*) FROM user_links WHERE idp_sub = '\\x${idpSub}'`), '1', 'one user link for that IdP user');
});

clusterTest('B7 on host A: hosts B and C refuse that tenant\'s sessions within the stated bound', async (env) => {
  const t = env.tenant('t1');
  const browser = env.browser();
  const login = await env.ssoLogin(t.user, { browser });
  assert.equal(login.status, 200, 'signed in');
  for (let i = 0; i < HOSTS; i++) {
    assert.equal((await statusOn(env, i, browser)).session, true, `cached on host ${i}`);
  }
  // The tenant's admin turns IT Complete off on host 0.
  const admin = await env.psaLogin(t.admin);
  env.balancer.pin(0);
  const page = await env.settings(admin.browser);
  const off = await env.press(admin.browser, page, '/_sso/tenant/disable');
  env.balancer.unpin();
  assert.equal(off.status, 200, `tenant disabled: ${off.url}`);
  const disabledAt = Date.now();
  const seen = [];
  for (let i = 1; i < HOSTS; i++) {
    for (;;) {
      const status = await statusOn(env, i, browser);
      if (!status.session) {
        seen.push(Date.now() - disabledAt);
        break;
      }
      assert.ok(Date.now() - disabledAt < 2000, `host ${i} still accepts the session 2 s after B7`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
  console.log(`# B7 reached the other hosts after ${seen.join(', ')} ms`);
  const links = await env.sql(`SELECT count(*) FROM user_links WHERE psa_tenant = '\\x${Buffer.from('t1').toString('hex')}'`);
  assert.equal(links, '0', 'no user link of t1 left');
  const audit = await env.sql("SELECT count(*) FROM link_audit WHERE action = 'unlink' AND via = 'settings'");
  assert.ok(Number(audit) >= 2, `the unlinks are audited (${audit})`);
  // Link it again for the tests after this one.
  await env.linkTenant('t1');
});

clusterTest('logout on one host ends the session on every host at once', async (env) => {
  const t = env.tenant('t1');
  await env.linkUser(t.staff2, t.user2);
  const browser = env.browser();
  const login = await env.ssoLogin(t.user2, { browser });
  assert.equal(login.status, 200, 'signed in');
  for (let i = 0; i < HOSTS; i++) {
    assert.equal((await statusOn(env, i, browser)).session, true, `host ${i} has it`);
  }
  const cookie = browser.jar.get('ssogate', env.gwUrl);
  env.balancer.pin(2);
  const out = await browser.request(`${env.gwUrl}/_sso/logout`, { method: 'POST', headers: { origin: env.gwUrl } });
  env.balancer.unpin();
  assert.equal(out.status, 303);
  // The old cookie, replayed on the other hosts, is refused.
  const replay = env.browser();
  replay.jar.set(env.gwUrl, 'ssogate', cookie);
  for (let i = 0; i < HOSTS; i++) {
    const end = Date.now() + 2000;
    let status;
    do {
      status = await statusOn(env, i, replay);
    } while (status.session && Date.now() < end);
    assert.equal(status.session, false, `host ${i} refuses the ended session`);
  }
});

clusterTest('a host that misses the notice trusts its cached session for at most cache_ttl_s', async (env) => {
  const t = env.tenant('t1');
  const browser = env.browser();
  const login = await env.ssoLogin(t.user2, { browser });
  assert.equal(login.status, 200, 'signed in');
  assert.equal((await statusOn(env, 1, browser)).session, true, 'cached on host 1');
  // The row goes without its trigger: as if host 1's listening connection had been down meanwhile.
  const key = require('node:crypto').createHash('sha256').update(browser.jar.get('ssogate', env.gwUrl)).digest('hex');
  env.sql(`BEGIN; ALTER TABLE sessions DISABLE TRIGGER sessions_ended; DELETE FROM sessions WHERE id_hash = '\\x${key}';
    ALTER TABLE sessions ENABLE TRIGGER sessions_ended; COMMIT`);
  const deletedAt = Date.now();
  assert.equal((await statusOn(env, 1, browser)).session, true, 'host 1 still trusts its cached copy');
  let refusedAfter;
  while (Date.now() - deletedAt < (CACHE_TTL_S + 3) * 1000) {
    if (!(await statusOn(env, 1, browser)).session) {
      refusedAfter = Date.now() - deletedAt;
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.ok(refusedAfter !== undefined, `host 1 refused the session within cache_ttl_s (${CACHE_TTL_S} s) + 3 s`);
  assert.ok(refusedAfter <= (CACHE_TTL_S + 1.5) * 1000, `refused after ${refusedAfter} ms`);
  console.log(`# a missed notice: the session was refused ${refusedAfter} ms after its row went (cache_ttl_s ${CACHE_TTL_S})`);
});

clusterTest('made-up session cookies cost the database one question per id, not one per request', async (env) => {
  const { metricValue } = require('./lib/harness');
  const known = async () => metricValue(await env.h.metrics(env.gws[0]), 'ssogate_shared_store_session_fetches_total',
    { result: 'known_unknown' }) || 0;
  const before = await known();
  const browser = env.browser();
  browser.jar.set(env.gwUrl, 'ssogate', require('node:crypto').randomBytes(32).toString('base64url'));
  for (let i = 0; i < 20; i++) {
    assert.equal((await statusOn(env, 0, browser)).session, false, 'an unknown session');
  }
  assert.equal(await known() - before, 19, 'the first request asked the database, the 19 others did not');
});

clusterTest('what expired while no host ran is swept once they connect; the rest stays', async (env) => {
  const end = Date.now() + 10000;
  let left;
  for (;;) {
    left = `${env.sql("SELECT string_agg(encode(id_hash, 'hex'), ',' ORDER BY id_hash) FROM sessions WHERE length(id_hash) = 1")}`
      + ` / ${env.sql("SELECT string_agg(encode(state_hash, 'hex'), ',' ORDER BY state_hash) FROM login_states WHERE length(state_hash) = 1")}`
      + ` / ${env.sql("SELECT string_agg(encode(jti_hash, 'hex'), ',' ORDER BY jti_hash) FROM logout_jti WHERE length(jti_hash) = 1")}`;
    if (left === '03 / 02 / 02' || Date.now() > end) {
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.equal(left, '03 / 02 / 02',
    'the expired and idle sessions, the old login state and the logout jti past its keep time went; the live ones stayed');
});

// A back-channel logout token is accepted once by the cluster, not once per host: each host used to
// remember only the jtis it had accepted itself, so whoever held a logout token could replay it to another
// host within its 600 s and end the sessions its user had made since, again and again.
clusterTest('a back-channel logout token accepted on host A is a replay on host B: the session made since lives on', async (env) => {
  const BACK = 'ssogate_backchannel_logouts_total';
  const t = env.tenant('t6');
  await env.linkTenant('t6');
  await env.linkUser(t.staff, t.user);
  const first = await env.ssoLogin(t.user);
  assert.equal(first.status, 200, 'signed in');

  // A real logout token of the user (sub, no sid: every session of theirs), signed with the IdP's key.
  const now = Math.floor(Date.now() / 1000);
  const claims = { iss: env.issuer, aud: 'ssogate', iat: now, exp: now + 120, jti: crypto.randomUUID(),
    events: { 'http://schemas.openid.net/event/backchannel-logout': {} }, sub: t.user.sub };
  const token = await logoutToken(env, claims);
  const post = (i) => backchannelLogout(env, i, token);

  const accepted = await post(0);
  assert.equal(accepted.status, 200, `host A accepts the token: ${accepted.body}`);
  for (let i = 0; i < HOSTS; i++) {
    await waitFor(async () => !(await statusOn(env, i, first.browser)).session, 2000 * SLOW, `host ${i} refuses the ended session`, 10);
  }
  const key = crypto.createHash('sha256').update(`${env.issuer}\0${claims.jti}`).digest('hex');
  assert.equal(env.sql(`SELECT count(*) FROM logout_jti WHERE jti_hash = '\\x${key}' AND keep_until > ${now}`), '1',
    'the jti is recorded in PostgreSQL');

  const second = await env.ssoLogin(t.user);
  assert.equal(second.status, 200, 'signed in again: a new session');
  const logged = env.gws[1].logs.length;
  const before = metricValue(await env.h.metrics(env.gws[1]), BACK, { result: 'jti_replayed' }) || 0;
  const replayed = await post(1);
  assert.equal(replayed.status, 400, `host B refuses the replay: ${replayed.body}`);
  assert.deepEqual(JSON.parse(replayed.body.toString()), { error: 'invalid_request', error_description: 'jti_replayed' });
  assert.equal(metricValue(await env.h.metrics(env.gws[1]), BACK, { result: 'jti_replayed' }), before + 1, 'counted as a replay');
  assert.ok(env.gws[1].logs.slice(logged).some((l) => l.event === 'idp_logout' && l.channel === 'back'
    && l.result === 'jti_replayed' && l.detail === 'jti'), 'logged as a replay');
  for (const i of [2, 0]) {
    assert.equal((await post(i)).status, 400, `host ${i} refuses it too`);
  }

  // The session made since still works on every host: the PSA gets its user.
  for (let i = 0; i < HOSTS; i++) {
    assert.equal((await statusOn(env, i, second.browser)).session, true, `host ${i} keeps the new session`);
    const res = await on(env, i, second.browser, '/api/whoami');
    assert.equal(res.status, 200, `whoami through host ${i}`);
    assert.equal(JSON.parse(res.body).user, t.staff.id, `host ${i} forwards the linked PSA user`);
  }

  // Another token sent to two hosts at the same instant: exactly one accepts it.
  const raced = await logoutToken(env, { ...claims, jti: crypto.randomUUID() });
  const answers = await Promise.all([backchannelLogout(env, 0, raced), backchannelLogout(env, 1, raced)]);
  assert.deepEqual(answers.map((r) => r.status).sort(), [200, 400], `one host accepts it: ${answers.map((r) => r.body).join(' ')}`);
});

clusterTest('healthz says ok with the database, and each host has its own data dir', async (env) => {
  for (let i = 0; i < HOSTS; i++) {
    const res = await on(env, i, env.browser(), '/_sso/healthz');
    const body = JSON.parse(res.body);
    assert.equal(res.status, 200);
    assert.equal(body.status, 'ok', `host ${i}: ${res.body}`);
    assert.equal(body.store, true);
  }
  // The harness makes the directories; the store files in them are each host's own.
  for (let i = 0; i < HOSTS; i++) {
    assert.ok(fs.existsSync(path.join(env.h.file(`data-${i}`), 'data.mdb')), `host ${i} opened its store in its own data dir`);
  }
});

