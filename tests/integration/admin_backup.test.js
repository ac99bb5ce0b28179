'use strict';
// Issue 14, store maintenance: ssogate-admin backup while a gateway runs 200 logins against the real IdP
// gives a consistent copy that `ssogate-admin check` accepts and that restores (into a new data
// directory) with every link that existed when the backup started; restore is refused while a gateway
// has the store open; a second backup into the same directory is refused.
//
//   SSOGATE_BUILD_DIR=build node --test tests/integration/admin_backup.test.js

const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { itest, SSOGATE_BIN } = require('./lib/harness');
const { startOidcEnv } = require('./lib/oidc-env');

const ADMIN_BIN = process.env.SSOGATE_ADMIN_BIN || path.join(path.dirname(SSOGATE_BIN), 'ssogate-admin');
const LOGINS = 200;
const CONCURRENCY = 20;

function admin(args, input) {
  return new Promise((resolve) => {
    const child = childProcess.execFile(ADMIN_BIN, args, { timeout: 60000, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr }));
    if (input !== undefined) {
      child.stdin.end(input);
    }
  });
}

function links(n) {
  const tenant_links = [];
  const user_links = [];
  for (let i = 0; i < n; i++) {
    tenant_links.push({ psa_tenant: `psa-${i}`, idp_tenant: `idp-${i}` });
    user_links.push({ psa_tenant: `psa-${i}`, psa_user: `u-${i}`, idp_tenant: `idp-${i}`, idp_sub: `sub-${i}` });
  }
  return { tenant_links, user_links };
}

itest('backup under 200 logins restores to a store that checks, with every link; restore waits for the gateway to stop', async (t, h) => {
  const env = await startOidcEnv(h);
  const dataDir = env.config.data_dir;
  const before = links(50);
  const imported = await admin(['-d', dataDir, 'import', '-'], JSON.stringify(before));
  assert.equal(imported.code, 0, imported.stderr);

  // 200 logins, CONCURRENCY at a time; the backup is taken once a quarter of them are done.
  const backupDir = h.file('backup');
  let done = 0;
  let backup;
  const worker = async () => {
    while (done < LOGINS) {
      done += 1;
      if (done === LOGINS / 4) {
        backup = admin(['-d', dataDir, 'backup', backupDir]);
      }
      const res = await env.login({ returnTo: `/echo/${done}` });
      assert.equal(res.status, 200, `login ${done}: ${res.status}`);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const taken = await backup;
  assert.equal(taken.code, 0, `backup: ${taken.stderr}`);

  const again = await admin(['-d', dataDir, 'backup', backupDir]);
  assert.equal(again.code, 1, 'a second backup into the same directory is refused');
  assert.match(again.stderr, /already holds a store/);
  const busy = await admin(['-d', dataDir, 'restore', backupDir]);
  assert.equal(busy.code, 1, 'restore refused while the gateway has the store open');
  assert.match(busy.stderr, /stop the gateway first/);

  const checked = await admin(['-d', backupDir, 'check']);
  assert.equal(checked.code, 0, `check of the backup: ${checked.stdout}${checked.stderr}`);
  assert.match(checked.stdout, /50 tenant links, 50 user links, \d+ sessions: 0 problems/);

  const target = h.file('restored');
  fs.mkdirSync(target, { mode: 0o700 });
  const restored = await admin(['-d', target, 'restore', backupDir]);
  assert.equal(restored.code, 0, `restore: ${restored.stdout}${restored.stderr}`);
  const after = await admin(['-d', target, 'check']);
  assert.equal(after.code, 0, after.stdout);
  const exported = JSON.parse((await admin(['-d', target, 'export'])).stdout);
  const sorted = (store) => {
    const key = (l) => JSON.stringify([l.psa_tenant, l.psa_user || '']);
    const by = (a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0);
    return { tenant_links: [...store.tenant_links].sort(by), user_links: [...store.user_links].sort(by) };
  };
  assert.deepEqual(sorted(exported), sorted(before), 'every link that existed when the backup started');
  assert.equal((fs.statSync(path.join(backupDir, 'data.mdb')).mode & 0o777), 0o600, 'the backup is private');
});
