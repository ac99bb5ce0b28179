'use strict';
// Issue 13, idp.userinfo: after the code exchange the gateway asks oidc-provider's userinfo endpoint with
// the access token, for IdPs that keep claims out of the ID token. Off: never asked. On: asked once per
// login, its claims join the ID token's (a claim only userinfo has reaches the upstream), its sub must be
// the ID token's (OIDC Core 5.3.2: refused otherwise), and a failing or oversized (over 256 KiB) answer
// is a clean refusal page with no session.

const assert = require('node:assert/strict');
const { itest } = require('./lib/harness');
const { startOidcEnv, metricKey, ACCOUNTS } = require('./lib/oidc-env');

const LOGINS = 'ssogate_logins_total';

function noSessionCookie(res) {
  const lines = [].concat(res.headers['set-cookie'] || []);
  return lines.find((c) => /^ssogate=[^;]/.test(c)) === undefined;
}

async function userinfoCalls(env) {
  return (await env.idpCounters()).userinfo;
}

itest('idp.userinfo off: the userinfo endpoint is never asked', async (t, h) => {
  const env = await startOidcEnv(h);
  const before = await userinfoCalls(env);
  const res = await env.login({ returnTo: '/echo/off' });
  assert.equal(res.status, 200);
  assert.equal(await userinfoCalls(env), before, 'no userinfo request');
});

itest('idp.userinfo on: asked once per login, its claims join the ID token\'s, its sub must match', async (t, h) => {
  const env = await startOidcEnv(h, {
    gateway: { idp: { userinfo: true, claims: { email: 'userinfo_email' } } },
  });
  const alice = ACCOUNTS.alice;

  // The real endpoint: the login works and asks it once.
  let before = await userinfoCalls(env);
  let res = await env.login({ returnTo: '/echo/real' });
  assert.equal(res.status, 200, `signed in (${res.status})`);
  assert.equal(await userinfoCalls(env), before + 1, 'one userinfo request');

  // A claim only userinfo has (idp.claims.email names it) reaches the upstream as X-SSO-Email; the ID
  // token's own claims are not overridden by userinfo's (tenant stays the ID token's).
  const answer = { sub: alice.sub, userinfo_email: 'from-userinfo@example.test', tenant: 'not-the-id-token' };
  await env.control('POST', '/_test/fail', { endpoint: 'userinfo', status: 200, body: JSON.stringify(answer), count: 1 });
  res = await env.login({ returnTo: '/echo/merged' });
  assert.equal(res.status, 200, `signed in (${res.status})`);
  const seen = JSON.parse(res.body).headers;
  assert.equal(seen['x-sso-email'], 'from-userinfo@example.test', 'the userinfo-only claim');
  assert.equal(seen['x-sso-idp-tenant'], alice.tenant, 'the ID token wins where both have a claim');

  // Refusals, each with its page, its count and no session.
  const cases = [
    ['another sub', { status: 200, body: JSON.stringify({ ...answer, sub: 'itc-user-mallory' }) }, 401, 'userinfo_invalid'],
    ['no sub', { status: 200, body: JSON.stringify({ userinfo_email: 'x@example.test' }) }, 401, 'userinfo_invalid'],
    ['a 500', { status: 500 }, 502, 'userinfo_failed'],
    ['not JSON', { status: 200, body: 'eyJhbGciOiJub25lIn0.e30.', content_type: 'application/jwt' }, 502, 'userinfo_failed'],
    ['a JSON array', { status: 200, body: '[1,2]' }, 502, 'userinfo_failed'],
    ['over 256 KiB', { status: 200, body: JSON.stringify({ sub: alice.sub, pad: 'x'.repeat(300 * 1024) }) }, 502, 'userinfo_failed'],
  ];
  for (const [what, failure, status, result] of cases) {
    await env.control('POST', '/_test/fail', { endpoint: 'userinfo', count: 1, ...failure });
    before = await userinfoCalls(env);
    const { value, moved } = await env.measure(() => env.login({ returnTo: '/echo/refused' }));
    assert.equal(value.status, status, `${what}: ${status} (${value.status})`);
    assert.ok(noSessionCookie(value), `${what}: no session cookie`);
    assert.equal(moved[metricKey(LOGINS, { result })], 1, `${what}: ${result} counted (${JSON.stringify(moved)})`);
    assert.equal(await userinfoCalls(env), before + 1, `${what}: asked once`);
  }
  res = await env.login({ returnTo: '/echo/after' });
  assert.equal(res.status, 200, 'and the next login works');
});
