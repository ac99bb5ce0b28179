'use strict';
// Issue 12: with one worker a login's state stays in that process's memory; with workers > 1 it is in
// the shared LMDB store, so a login whose /_sso/login and /_sso/callback reach different workers
// (SO_REUSEPORT spreads connections over them) still completes, and its session works in either.

const assert = require('node:assert/strict');
const { sharedOidcEnv } = require('./lib/oidc-env');

const workersTest = sharedOidcEnv('oidc_workers', { gateway: { workers: 2 } });

workersTest('workers 2: every login completes and its session is known to both workers', async (env) => {
  // Each browser opens its own connections: over 12 logins the two hops of some land on different
  // workers (all on one worker each time would be 12 coin tosses in a row).
  for (let i = 0; i < 12; i++) {
    const browser = env.browser();
    const res = await env.login({ browser, returnTo: `/private/w${i}` });
    assert.equal(res.callback && res.callback.status, 302, `login ${i}: the callback redirects`);
    assert.ok(browser.jar.get('ssogate', env.gwUrl), `login ${i}: a session cookie`);
    for (let j = 0; j < 4; j++) {
      const page = await browser.request(`${env.gwUrl}/private/w${i}`);
      assert.equal(page.status, 200, `login ${i}: the session works (request ${j})`);
    }
  }
});
