'use strict';
// The store's filesystem full: a write the disk cannot hold is refused as a store error (500 page, a
// log line naming the cause, ssogate_errors_total{kind="store"}) and the gateway lives on with what it
// had; once there is room again, logins work. With LMDB's MDB_WRITEMAP (a sparse file written through
// the map) the same write was a SIGBUS: the gateway died, and again after each restart.
//
// data_dir is on a 4 MiB tmpfs this test mounts (the tests run as root) and unmounts when done.

const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { itest } = require('./lib/harness');
const { startOidcEnv, metricKey } = require('./lib/oidc-env');

// Fills the filesystem at dir with one file until it is full (ENOSPC); returns the file's path.
function fill(dir) {
  const file = path.join(dir, 'filler');
  const fd = fs.openSync(file, 'w');
  const chunk = Buffer.alloc(64 * 1024, 1);
  try {
    for (let i = 0; i < 1024; i++) {
      fs.writeSync(fd, chunk);
    }
    assert.fail('a 4 MiB filesystem took 64 MiB');
  } catch (err) {
    if (err.code !== 'ENOSPC') throw err;
  } finally {
    fs.closeSync(fd);
  }
  return file;
}

itest('a full disk refuses the session with a store error; the gateway lives on', async (t, h) => {
  const small = h.file('small');
  fs.mkdirSync(small);
  childProcess.execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0700', 'tmpfs', small]);
  let env;
  try {
    env = await startOidcEnv(h, { gateway: { data_dir: path.join(small, 'data') } });
    const first = await env.login({ returnTo: '/echo/first' });
    assert.equal(first.callback.status, 302, 'a login while there is room');
    assert.equal(first.status, 200);

    const filler = fill(small);
    const { value: refused, moved } = await env.measure(() => env.login({ returnTo: '/echo/full' }));
    assert.equal(refused.callback.status, 500, 'the session could not be written');
    assert.match(refused.body, /could not record your session/);
    assert.equal(moved[metricKey('ssogate_logins_total', { result: 'store_error' })], 1, JSON.stringify(moved));
    assert.equal(moved[metricKey('ssogate_errors_total', { kind: 'store' })], 1, JSON.stringify(moved));
    const line = env.gw.logs.find((l) => l.event === 'login' && l.result === 'store_error');
    assert.ok(line, 'the refused login is logged');
    assert.match(JSON.stringify(line), /no space left/, 'the log line names the cause');
    assert.ok(env.gw.alive, 'the gateway is alive');

    const kept = await first.browser.request(`${env.gwUrl}/echo/kept`);
    assert.equal(kept.status, 200, 'the session stored before still works');
    assert.equal(JSON.parse(kept.body).headers['x-sso-subject'] !== undefined, true, 'with its identity');

    fs.rmSync(filler);
    const again = await env.login({ returnTo: '/echo/again' });
    assert.equal(again.callback.status, 302, 'with room again, a login completes');
    assert.equal(again.status, 200);
  } finally {
    if (env && env.gw && env.gw.alive) await env.gw.stop();
    childProcess.execFileSync('umount', ['-l', small]);
  }
});
