'use strict';
// Issue 13, claim_headers (claims mode, the generic-gateway use): configured headers carry claims of the
// login to the upstream, rendered as documented (strings, numbers, booleans, arrays joined with ","),
// hostile values left out (CR/LF, over 4 KiB, arrays of objects, objects), the same values signed in
// X-SSO-Assertion's claim_headers, and every mapped name is stripped from clients (dash or underscore, any case) whether or not the caller is signed in. Claims
// come from the real oidc-provider; the hostile ones through its userinfo answer (idp.userinfo on).

const assert = require('node:assert/strict');
const { itest, request, rawExchange } = require('./lib/harness');
const { startOidcEnv, metricKey, ACCOUNTS, verifyAssertion } = require('./lib/oidc-env');

const DROPPED = 'ssogate_claim_headers_dropped_total';

itest('claim headers reach the upstream as documented; hostile values and forged headers never do', async (t, h) => {
  const env = await startOidcEnv(h, {
    gateway: {
      idp: { userinfo: true },
      claim_headers: {
        'X-User-Tenant': '/tenant',
        'Remote-User': '/preferred_username',
        'X-Master': '/master',
        'X-Amr': '/amr',
        'X-Groups': '/groups',
        'X-Level': '/level',
        'X-Crlf': '/crlf',
        'X-Huge': '/huge',
        'X-Objects': '/objects',
        'X-Profile': '/profile',
        'X-Missing': '/missing',
        'X-Surrogate': '/surrogate',
      },
    },
  });
  const alice = ACCOUNTS.alice;
  const hostile = {
    sub: alice.sub,
    groups: ['admins', 'a,b', 'c%d'],
    level: 3,
    crlf: 'x\r\nX-Injected: 1',
    huge: 'y'.repeat(5000),
    objects: [{ name: 'g1' }, { name: 'g2' }],
    profile: { a: 1 },
    surrogate: 'a\udc80b', // JSON.stringify writes "a\\udc80b": a lone surrogate, not UTF-8 once decoded
  };
  await env.control('POST', '/_test/fail', { endpoint: 'userinfo', status: 200, body: JSON.stringify(hostile), count: 1 });
  const { value: login, moved } = await env.measure(() => env.login({ returnTo: '/echo/in' }));
  assert.equal(login.status, 200, `signed in (${login.status})`);
  for (const reason of ['control', 'too_long', 'nested', 'object', 'not_utf8']) {
    assert.equal(moved[metricKey(DROPPED, { reason })], 1, `${reason} counted once: ${JSON.stringify(moved)}`);
  }

  const forged = [
    ['X-User-Tenant', 'forged'], ['x_user_tenant', 'forged'], ['REMOTE_USER', 'forged'], ['X-Crlf', 'forged'],
    ['X-Missing', 'forged'], ['x-groups', 'forged'],
  ];
  const res = await login.browser.request(`${env.gwUrl}/echo/claims`, { headers: Object.fromEntries(forged) });
  assert.equal(res.status, 200);
  const seen = JSON.parse(res.body).headers;
  assert.equal(seen['x-user-tenant'], alice.tenant);
  assert.equal(seen['remote-user'], alice.login);
  assert.equal(seen['x-master'], String(alice.master === true), 'a boolean as true/false');
  assert.match(seen['x-amr'], /(^|,)otp(,|$)/, 'an array of strings, joined with ","');
  assert.equal(seen['x-groups'], 'admins,a%2Cb,c%25d', '"," and "%" in an item escaped');
  assert.equal(seen['x-level'], '3');
  for (const name of ['x-crlf', 'x-huge', 'x-objects', 'x-profile', 'x-missing', 'x-surrogate', 'x-injected', 'x_user_tenant', 'remote_user']) {
    assert.equal(seen[name], undefined, `${name} not forwarded`);
  }
  assert.ok(!JSON.stringify(seen).includes('forged'), `no forged value upstream: ${JSON.stringify(seen)}`);

  // The signed assertion carries the same values, so an upstream can trust them without trusting headers.
  const { claims } = verifyAssertion(seen['x-sso-assertion'], await env.gatewayJwks());
  assert.deepEqual(claims.claim_headers, {
    'X-User-Tenant': alice.tenant,
    'Remote-User': alice.login,
    'X-Master': String(alice.master === true),
    'X-Amr': seen['x-amr'],
    'X-Groups': 'admins,a%2Cb,c%25d',
    'X-Level': '3',
  }, 'exactly the headers sent, no hostile one');

  // The same forgeries as raw bytes (no client library normalising them), with the session cookie:
  // what the upstream received holds only the gateway's values.
  const cookie = login.browser.jar.header(`${env.gwUrl}/echo/raw`);
  const raw = await rawExchange(env.gw.port, 'GET /echo/raw HTTP/1.1\r\nHost: 127.0.0.1\r\n' +
    `Cookie: ${cookie}\r\nX_User_Tenant: forged\r\nREMOTE_USER: forged\r\nx-GROUPS: forged\r\n` +
    'X-Missing: forged\r\nConnection: close\r\n\r\n');
  assert.equal(raw.status, 200, raw.text.slice(0, 200));
  const rawSeen = JSON.parse(raw.response.body.toString()).headers;
  assert.equal(rawSeen['x-user-tenant'], alice.tenant, 'the gateway\'s value');
  assert.equal(rawSeen['x-groups'], 'admins,a%2Cb,c%25d');
  assert.ok(!raw.response.body.toString().includes('forged'), `nothing forged upstream: ${JSON.stringify(rawSeen)}`);

  // Without a session the mapped names are stripped just the same.
  const anonymous = await request(env.gw, { path: '/echo/anon', headers: Object.fromEntries(forged) });
  const anon = JSON.parse(anonymous.body.toString()).headers;
  assert.ok(!JSON.stringify(anon).includes('forged'), `no forged value upstream: ${JSON.stringify(anon)}`);
});
