'use strict';
// Issue 3: logins through the real IdP (tests/idp, oidc-provider over https) in claims mode: the full
// login, a required route that redirects and comes back to the page asked for, session reuse, the
// identity the upstream sees (and what it never sees), logout with its CSRF check, and the IdP's own
// refusals (cancel, inactive account, no second factor).

const assert = require('node:assert/strict');
const { request } = require('./lib/harness');
const { sharedOidcEnv, parseSetCookies, verifyAssertion, metricKey, CLIENT_ID } = require('./lib/oidc-env');

const oidcTest = sharedOidcEnv('oidc_login');

const LOGINS = 'ssogate_logins_total';
const SESSION_COOKIE = /^[A-Za-z0-9_-]{43}$/;

// Only the ssogate_logins_total lines of a metricsMoved result.
function loginsMoved(moved) {
  return Object.fromEntries(Object.entries(moved).filter(([key]) => key.startsWith(`${LOGINS}{`)));
}

function loginKey(result) {
  return metricKey(LOGINS, { result });
}

// The echo JSON of the stub upstream.
function echo(res) {
  assert.equal(res.headers['x-stub-server'], 'upstream', `answered by the upstream (status ${res.status})`);
  return JSON.parse(typeof res.body === 'string' ? res.body : res.body.toString());
}

// Every header line the upstream received whose name starts with x-sso- (lower-case names).
function ssoHeaders(echoed) {
  return echoed.rawHeaders.filter(([name]) => name.toLowerCase().startsWith('x-sso-')).map(([n, v]) => [n.toLowerCase(), v]);
}

// Asserts that location is an authorization request of the gateway's at the IdP, as a login start sends.
function assertAuthorizationRequest(env, location) {
  assert.ok(String(location).startsWith(`${env.issuer}/auth?`), `to the IdP's authorization endpoint: ${location}`);
  const params = new URL(location).searchParams;
  assert.equal(params.get('response_type'), 'code');
  assert.equal(params.get('client_id'), CLIENT_ID);
  assert.equal(params.get('redirect_uri'), `${env.gwUrl}/_sso/callback`);
  assert.equal(params.get('code_challenge_method'), 'S256');
  for (const name of ['state', 'nonce', 'code_challenge']) {
    assert.match(params.get(name) || '', /^[A-Za-z0-9_-]{43}$/, name);
  }
}

// A full login and its gateway cookie value.
async function loggedIn(env, returnTo = '/') {
  const res = await env.login({ returnTo });
  assert.equal(res.callback && res.callback.status, 302, 'the callback redirects after a good login');
  const cookie = res.browser.jar.get('ssogate', env.gwUrl);
  assert.match(cookie || '', SESSION_COOKIE);
  return { res, browser: res.browser, cookie };
}

// A second login started in the same browser keeps the binding and sets it again, so that its Max-Age
// starts over: a cookie about to run out cannot fail that login at the callback.
oidcTest('a login started again sets the same binding cookie again, with a full Max-Age', async (env) => {
  const browser = env.browser();
  const first = parseSetCookies((await browser.request(`${env.gwUrl}/_sso/login?return_to=%2F`)).headers['set-cookie']);
  const again = parseSetCookies((await browser.request(`${env.gwUrl}/_sso/login?return_to=%2F`)).headers['set-cookie']);
  assert.ok(first.ssogate_login && again.ssogate_login, 'set both times');
  assert.equal(again.ssogate_login.value, first.ssogate_login.value, 'the same value');
  assert.equal(again.ssogate_login.attributes['max-age'], '600', 'a full Max-Age');
});

oidcTest('full login: authorization request, callback, session cookie, identity and assertion upstream', async (env) => {
  const { value, moved } = await env.measure(async () => {
    const browser = env.browser();
    const start = await browser.request(`${env.gwUrl}/_sso/login?return_to=${encodeURIComponent('/echo/page?x=1&y=%2F')}`);
    assert.equal(start.status, 302, 'GET /_sso/login redirects');
    const location = new URL(start.headers.location);
    assert.equal(`${location.origin}${location.pathname}`, `${env.issuer}/auth`, 'to the IdP authorization endpoint');
    const q = location.searchParams;
    assert.equal(q.get('response_type'), 'code');
    assert.equal(q.get('client_id'), CLIENT_ID);
    assert.equal(q.get('redirect_uri'), `${env.gwUrl}/_sso/callback`);
    assert.ok(q.get('scope').split(' ').includes('openid'), 'scope has openid');
    assert.match(q.get('state') || '', /^[A-Za-z0-9_-]{22,}$/, 'state: random base64url');
    assert.match(q.get('nonce') || '', /^[A-Za-z0-9_-]{22,}$/, 'nonce: random base64url');
    assert.notEqual(q.get('state'), q.get('nonce'));
    assert.match(q.get('code_challenge') || '', /^[A-Za-z0-9_-]{43}$/, 'code_challenge: a base64url SHA-256');
    assert.equal(q.get('code_challenge_method'), 'S256');
    const binding = parseSetCookies(start.headers['set-cookie']).ssogate_login;
    assert.ok(binding, `the browser-binding cookie ssogate_login is set: ${start.headers['set-cookie']}`);
    assert.equal(binding.attributes.httponly, true, 'ssogate_login is HttpOnly');
    assert.equal(String(binding.attributes.samesite).toLowerCase(), 'lax', 'ssogate_login is SameSite=Lax');

    const res = await env.login({ browser, start: location.href });
    return { browser, res };
  });
  const { browser, res } = value;
  assert.deepEqual(res.steps, ['login-form', 'otp-form'], 'password, then TOTP at the IdP');
  assert.equal(res.callback.status, 302, 'the callback redirects');
  assert.equal(res.callback.headers.location, '/echo/page?x=1&y=%2F', 'to return_to, query kept');
  const setCookies = [].concat(res.callback.headers['set-cookie'] || []);
  const line = setCookies.find((c) => c.startsWith('ssogate='));
  assert.ok(line, `the callback sets the session cookie: ${setCookies}`);
  assert.match(line, /^ssogate=[A-Za-z0-9_-]{43}; Path=\/; Max-Age=\d+; HttpOnly; SameSite=Lax$/, line);
  assert.ok(!/;\s*Secure/i.test(line), 'no Secure over an http public URL');

  assert.equal(res.status, 200);
  const echoed = echo(res);
  assert.equal(echoed.url, '/echo/page?x=1&y=%2F');
  assert.equal(echoed.headers['x-sso-subject'], 'itc-user-alice');
  assert.equal(echoed.headers['x-sso-email'], 'alice@example.test');
  assert.equal(echoed.headers['x-sso-idp-tenant'], 'itc-100');
  const { header, claims } = verifyAssertion(echoed.headers['x-sso-assertion'], await env.gatewayJwks());
  assert.equal(header.alg, 'ES256');
  assert.equal(claims.iss, env.gwUrl, 'iss is the public URL');
  assert.equal(claims.aud, env.up.url, 'aud is the upstream URL');
  assert.equal(claims.sub, 'itc-user-alice');
  assert.equal(claims.idp_sub, 'itc-user-alice');
  assert.equal(claims.idp_tenant, 'itc-100');
  assert.equal(claims.email, 'alice@example.test');
  const now = Math.floor(Date.now() / 1000);
  assert.ok(Math.abs(claims.iat - now) <= 5, `iat is now (${claims.iat} vs ${now})`);
  assert.equal(claims.exp, claims.iat + 60, 'exp is iat + assertion.ttl_s (60)');
  assert.equal(typeof claims.jti, 'string');
  assert.ok(claims.jti.length >= 16, 'jti is long enough to be unique');

  const status = await env.status(browser);
  assert.equal(status.session, true);
  assert.equal(status.subject, 'itc-user-alice');
  assert.equal(status.idp_tenant, 'itc-100');
  assert.equal(status.email, 'alice@example.test');
  assert.ok(status.expires_at > now, 'expires_at is in the future');

  assert.deepEqual(loginsMoved(moved), { [loginKey('started')]: 1, [loginKey('ok')]: 1 });
});

oidcTest('GET /_sso/login refuses a return_to that is not a same-origin path (400)', async (env) => {
  const bad = ['http://evil.example/', 'https:evil.example', '//evil.example/x', '/\\evil.example', '/a\r\nSet-Cookie: x=1', '/a\tb', 'relative', ''];
  const { moved } = await env.measure(async () => {
    for (const returnTo of bad) {
      const res = await request(env.gw, { path: `/_sso/login?return_to=${encodeURIComponent(returnTo)}` });
      assert.equal(res.status, 400, `return_to=${JSON.stringify(returnTo)} answers 400`);
      assert.equal(res.headers.location, undefined, `return_to=${JSON.stringify(returnTo)} does not redirect`);
      assert.match(res.body.toString(), /Invalid return address/);
    }
  });
  assert.deepEqual(loginsMoved(moved), { [loginKey('bad_return_to')]: bad.length });
});

oidcTest('a required route redirects to the login and comes back to the page asked for, with its query', async (env) => {
  const browser = env.browser();
  const wanted = '/private/report?year=2026&q=a%20b';
  const first = await browser.request(`${env.gwUrl}${wanted}`);
  assert.equal(first.status, 302, 'no session on a required route: redirect');
  assertAuthorizationRequest(env, first.headers.location);
  assert.match(String(first.headers['set-cookie']), /^ssogate_login=[A-Za-z0-9_-]{43}; /, 'the login cookie');

  const { value: res, moved } = await env.measure(() => env.login({ browser, start: `${env.gwUrl}${wanted}` }));
  assert.equal(res.status, 200, 'the page asked for, after the login');
  assert.equal(res.url, `${env.gwUrl}${wanted}`, 'the browser ends on the page asked for');
  const echoed = echo(res);
  assert.equal(echoed.url, wanted, 'the upstream got the path and query asked for');
  assert.equal(echoed.headers['x-sso-subject'], 'itc-user-alice');
  assert.deepEqual(loginsMoved(moved), { [loginKey('started')]: 1, [loginKey('ok')]: 1 });

  const before = (await env.up.requests()).length;
  const post = await request(env.gw, { method: 'POST', path: '/private/report', body: 'x=1' });
  assert.equal(post.status, 401, 'POST to a required route without a session: 401');
  assert.equal((await env.up.requests()).length, before, 'the upstream never saw the refused POST');
});

// The login a required route starts returns to the normalised target, the form the route was decided
// on, never to the bytes the client sent: raw request lines, each followed through a real login.
oidcTest('a required route starts a login that returns to the normalised target', async (env) => {
  const { rawExchange } = require('./lib/harness');
  const cases = [
    ['/x/../private/a', '/private/a'],
    ['/x/%2e%2e/private/a?q=1', '/private/a?q=1'],
    ['//private///a/./b', '/private/a/b'],
    ['/%70rivate/a', '/private/a'],
    [`${env.gwUrl}/x/../private/z`, '/private/z'],
  ];
  for (const [target, normalised] of cases) {
    const before = (await env.up.requests()).length;
    const raw = `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${env.gwPort}\r\nConnection: close\r\n\r\n`;
    const res = await rawExchange(env.gwPort, raw, { untilComplete: true });
    assert.equal(res.status, 302, `${target}: ${res.text.slice(0, 120)}`);
    assert.equal((await env.up.requests()).length, before, `${target}: nothing upstream without a session`);
    const location = /\r\nlocation: *([^\r]*)/i.exec(res.text);
    assert.ok(location, `${target}: a Location`);
    assertAuthorizationRequest(env, location[1]);

    const browser = env.browser();
    for (const line of res.text.split('\r\n\r\n')[0].split('\r\n')) {
      const cookie = /^set-cookie: *(.*)$/i.exec(line);
      if (cookie) {
        browser.jar.storeOne(new URL(env.gwUrl), cookie[1]);
      }
    }
    const done = await env.login({ browser, start: location[1] });
    assert.equal(done.callback && done.callback.status, 302, `${target}: the callback`);
    assert.equal(done.url, `${env.gwUrl}${normalised}`, `${target}: back to the normalised target`);
    assert.equal(echo(done).url, normalised, `${target}: what the upstream received`);
  }
});

oidcTest('session reuse: requests with the session need no IdP', async (env) => {
  const { browser } = await loggedIn(env);
  await env.control('POST', '/_test/counters/reset');
  const { moved } = await env.measure(async () => {
    for (let i = 0; i < 5; i++) {
      const res = await browser.request(`${env.gwUrl}/private/p${i}`);
      assert.equal(res.status, 200, `request ${i} with the session is served`);
      assert.equal(echo(res).headers['x-sso-subject'], 'itc-user-alice');
    }
  });
  const counters = await env.idpCounters();
  assert.equal(counters.authorization, 0, 'no authorization request at the IdP');
  assert.equal(counters.token, 0, 'no token request at the IdP');
  assert.deepEqual(loginsMoved(moved), {}, 'no login started or finished');
});

// The gateway reuses a signed assertion within one session for at most half its lifetime (signing costs
// more than the rest of a request), so jti is unique per signed token and per session, not per request.
oidcTest('assertions: a distinct jti per session; one reused within a session stays fresh', async (env) => {
  const jwks = await env.gatewayJwks();
  const sessionOf = new Map();
  for (let session = 0; session < 3; session++) {
    const { browser } = await loggedIn(env);
    for (let i = 0; i < 3; i++) {
      const res = await browser.request(`${env.gwUrl}/echo/${session}/${i}`);
      const { claims } = verifyAssertion(echo(res).headers['x-sso-assertion'], jwks);
      const now = Math.floor(Date.now() / 1000);
      assert.ok(now - claims.iat <= 30 + 1, `a reused assertion is at most ttl_s/2 old (iat ${claims.iat}, now ${now})`);
      assert.ok(claims.exp > now, 'the assertion has not expired');
      assert.equal(sessionOf.get(claims.jti) ?? session, session, `jti ${claims.jti} is not shared between sessions`);
      sessionOf.set(claims.jti, session);
    }
  }
  assert.equal(new Set(sessionOf.values()).size, 3, 'each session got its own assertion');
});

oidcTest('the upstream never sees a forged X-SSO-* header nor the gateway cookies', async (env) => {
  const { cookie } = await loggedIn(env);
  const forged = [
    ['X-SSO-Subject', 'admin'],
    ['x-sso-email', 'admin@evil.example'],
    ['X-Sso-Idp-Tenant', 'other-tenant'],
    ['X-SSO-Assertion', 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.'],
    ['X-SSO-Tenant', 't1'],
    ['X-SSO-User', 'u1'],
    ['X-SSO-Anything', 'x'],
  ];

  const anonymous = await request(env.gw, {
    path: '/echo/anonymous',
    headers: [...forged, ['Cookie', 'psa=keep; ssogate_login=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA']],
  });
  assert.equal(anonymous.status, 200);
  const anonEcho = echo(anonymous);
  assert.deepEqual(ssoHeaders(anonEcho), [], 'without a session, every client X-SSO-* header is removed');
  assert.equal(anonEcho.headers.cookie, 'psa=keep', 'the binding cookie is removed, the PSA cookie kept');

  const res = await request(env.gw, {
    path: '/echo/with-session',
    headers: [...forged, ['Cookie', `psa=keep; ssogate=${cookie}; ssogate_login=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA; other=1`]],
  });
  assert.equal(res.status, 200);
  const echoed = echo(res);
  const names = ssoHeaders(echoed).map(([name]) => name).sort();
  assert.deepEqual(names, ['x-sso-assertion', 'x-sso-email', 'x-sso-idp-tenant', 'x-sso-subject'], 'exactly the gateway identity headers, once each');
  assert.equal(echoed.headers['x-sso-subject'], 'itc-user-alice');
  assert.equal(echoed.headers['x-sso-email'], 'alice@example.test');
  assert.equal(echoed.headers['x-sso-idp-tenant'], 'itc-100');
  verifyAssertion(echoed.headers['x-sso-assertion'], await env.gatewayJwks());
  assert.equal(echoed.headers.cookie, 'psa=keep; other=1', 'the gateway cookies are removed, the others kept in order');
  assert.ok(!JSON.stringify(echoed).includes(cookie), 'the session id appears nowhere upstream');
});

oidcTest('logout: CSRF refused without a same-origin Origin, then the session ends and the IdP end_session follows', async (env) => {
  const { browser, cookie } = await loggedIn(env);

  const { moved: refusedMoved } = await env.measure(async () => {
    for (const headers of [{}, { origin: 'http://evil.example' }, { referer: 'http://evil.example/page' }, { origin: `${env.gwUrl}.evil.example` }]) {
      const res = await browser.request(`${env.gwUrl}/_sso/logout`, { method: 'POST', headers });
      assert.equal(res.status, 403, `logout with ${JSON.stringify(headers)} is refused`);
      assert.equal(res.headers['set-cookie'], undefined, 'the refused logout clears no cookie');
    }
  });
  assert.equal(refusedMoved[metricKey('ssogate_csrf_refused_total', { endpoint: 'logout' })], 4);
  assert.equal((await env.status(browser)).session, true, 'the session survives a refused logout');

  const { value: res, moved } = await env.measure(() =>
    browser.request(`${env.gwUrl}/_sso/logout`, { method: 'POST', headers: { origin: env.gwUrl } }));
  assert.equal(res.status, 303, 'logout answers 303');
  const location = new URL(res.headers.location);
  assert.equal(`${location.origin}${location.pathname}`, `${env.issuer}/session/end`, 'to the IdP end_session_endpoint');
  assert.equal(location.searchParams.get('client_id'), CLIENT_ID);
  assert.equal(location.searchParams.get('post_logout_redirect_uri'), `${env.gwUrl}/`);
  assert.equal(location.searchParams.get('id_token_hint').split('.').length, 3, 'id_token_hint is the ID token');
  const cleared = parseSetCookies(res.headers['set-cookie']).ssogate;
  assert.ok(cleared, `the session cookie is cleared: ${res.headers['set-cookie']}`);
  assert.equal(cleared.value, '');
  assert.equal(cleared.attributes['max-age'], '0');
  assert.equal(moved[metricKey('ssogate_logouts_total', { result: 'ok' })], 1);

  assert.deepEqual(await env.status(browser), { session: false }, 'no session after logout');
  const replay = await request(env.gw, { path: '/echo/after-logout', headers: { cookie: `ssogate=${cookie}` } });
  assert.deepEqual(ssoHeaders(echo(replay)), [], 'the old cookie carries no identity any more');
  const required = await request(env.gw, { path: '/private/x', headers: { cookie: `ssogate=${cookie}` } });
  assert.equal(required.status, 302, 'the old cookie no longer opens a required route');

  // RP-initiated logout at the IdP: its confirmation page, then back to the gateway.
  const confirm = await browser.navigate(location.href);
  assert.equal(confirm.status, 200);
  const back = await browser.submitForm(confirm, 'op.logoutForm', {}, { button: 'Yes, sign me out' });
  assert.equal(back.url, `${env.gwUrl}/`, 'the IdP sends the browser back to post_logout_redirect_uri');
  assert.equal(back.status, 200);
  assert.ok((await env.idpCounters()).end_session >= 1, 'the IdP saw the end_session request');
  const again = await browser.request(`${env.gwUrl}/private/x`);
  assert.equal(again.status, 302, 'a required route asks for a new login');
});

oidcTest('the IdP refuses: cancel and an inactive account go to the login page with "denied"', async (env) => {
  const { moved } = await env.measure(async () => {
    const browser = env.browser();
    const page = await browser.navigate(`${env.gwUrl}/_sso/login?return_to=/x`);
    const cancelled = await browser.submitForm(page, 'cancel-form');
    assert.equal(browser.lastResponse('/_sso/callback').status, 302);
    assert.equal(browser.lastResponse('/_sso/callback').headers.location, '/login?sso_notice=denied');
    assert.equal(new URL(cancelled.url).pathname, '/login');
    assert.deepEqual(await env.status(browser), { session: false });

    const inactive = await env.login({ account: env.accounts.bob });
    assert.equal(inactive.callback.status, 302);
    assert.equal(inactive.callback.headers.location, '/login?sso_notice=denied', 'an inactive IdP user (B11)');
    assert.equal([].concat(inactive.callback.headers['set-cookie'] || []).find((c) => c.startsWith('ssogate=')), undefined);
  });
  assert.equal(moved[loginKey('idp_error')], 2);
  assert.equal(moved[loginKey('ok')], undefined);
});

oidcTest('an IdP error other than access_denied goes to the login page with "failed"', async (env) => {
  const browser = env.browser();
  const callback = new URL(await env.authorize({ browser }));
  const state = callback.searchParams.get('state');
  const { value: res, moved } = await env.measure(() =>
    browser.request(`${env.gwUrl}/_sso/callback?error=server_error&error_description=boom&state=${encodeURIComponent(state)}&iss=${encodeURIComponent(env.issuer)}`));
  assert.equal(res.status, 302);
  assert.equal(res.headers.location, '/login?sso_notice=failed');
  assert.equal(moved[loginKey('idp_error')], 1);
});

oidcTest('no second factor: an account without TOTP gets 403 and no session (B3)', async (env) => {
  const { value: res, moved } = await env.measure(() => env.login({ account: env.accounts.carol }));
  assert.deepEqual(res.steps, ['login-form'], 'no TOTP step for carol');
  assert.equal(res.status, 403);
  assert.match(res.body, /Two-factor authentication required/);
  assert.equal([].concat(res.callback.headers['set-cookie'] || []).find((c) => c.startsWith('ssogate=')), undefined);
  assert.deepEqual(await env.status(res.browser), { session: false });
  assert.equal(moved[loginKey('no_second_factor')], 1);
});
