'use strict';
// Issue 12: with one worker a login's state stays in that process's memory; with workers > 1 it is in
// the shared LMDB store, so a login whose /_sso/login and /_sso/callback reach different workers
// (SO_REUSEPORT spreads connections over them) still completes, and its session works in either.

const assert = require('node:assert/strict');
const { sharedOidcEnv } = require('./lib/oidc-env');

const workersTest = sharedOidcEnv('oidc_workers', { gateway: { workers: 2 } });

workersTest('workers 2: every login completes and its session is known to both workers', async (env) => {
  // Each browser opens its own connections, so SO_REUSEPORT spreads a login's hops over the workers;
  // which worker served a request is the process prefix of its request id in the access log. Logins
  // go on (at least 12, at most 40) until one has had its /_sso/login and /_sso/callback served by
  // different workers: its login state crossed processes through the store.
  const worker = (entry) => entry.request_id.slice(0, 16);
  const served = (path) => env.gw.logs.filter((l) => l.event === 'access' && l.path === path);
  let crossed = 0;
  let i = 0;
  for (; i < 40 && (i < 12 || crossed === 0); i++) {
    const browser = env.browser();
    const starts = served('/_sso/login').length;
    const callbacks = served('/_sso/callback').length;
    const res = await env.login({ browser, returnTo: `/private/w${i}` });
    assert.equal(res.callback && res.callback.status, 302, `login ${i}: the callback redirects`);
    assert.ok(browser.jar.get('ssogate', env.gwUrl), `login ${i}: a session cookie`);
    for (let j = 0; j < 4; j++) {
      const page = await browser.request(`${env.gwUrl}/private/w${i}`);
      assert.equal(page.status, 200, `login ${i}: the session works (request ${j})`);
    }
    const start = served('/_sso/login').slice(starts);
    const callback = served('/_sso/callback').slice(callbacks);
    assert.equal(start.length, 1, `login ${i}: one login start logged`);
    assert.equal(callback.length, 1, `login ${i}: one callback logged`);
    if (worker(start[0]) !== worker(callback[0])) {
      crossed++;
    }
  }
  console.log(`# ${crossed} of ${i} logins had their two hops on different workers`);
  const workers = new Set(env.gw.logs.filter((l) => l.event === 'access').map(worker));
  assert.equal(workers.size, 2, `both workers served requests: ${[...workers]}`);
  assert.ok(crossed > 0, `a login's two hops reached different workers (${i} logins)`);
});
