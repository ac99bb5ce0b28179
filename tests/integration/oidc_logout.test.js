'use strict';
// Issue 13, logout started at the IdP. Back-channel (OpenID Connect Back-Channel Logout 1.0): the real
// oidc-provider, with backchannelLogout on and the gateway's /_sso/backchannel-logout registered, POSTs a
// logout_token when the user signs out at the IdP; the gateway ends the sessions of that IdP session
// (sid) and only those. A hostile set of logout tokens, signed by the IdP's own key unless the signature
// is the defect, is refused with 400 and touches no session. Front-channel (/_sso/frontchannel-logout,
// oidc-provider 8 has no sender for it): iss and sid from a real ID token end that IdP session's
// gateway sessions; a wrong iss or no sid is refused.

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { itest, request } = require('./lib/harness');
const { startOidcEnv, metricKey, CLIENT_ID, ACCOUNTS } = require('./lib/oidc-env');

const EVENT = 'http://schemas.openid.net/event/backchannel-logout';
const BACK = 'ssogate_backchannel_logouts_total';
const FRONT = 'ssogate_frontchannel_logouts_total';

function startEnv(h) {
  return startOidcEnv(h, {
    client: (gwUrl) => ({
      backchannel_logout_uri: `${gwUrl}/_sso/backchannel-logout`,
      backchannel_logout_session_required: true,
    }),
  });
}

function claimsOf(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());
}

// Logs alice in with a new browser and resolves {browser, idToken claims} (the ID token as the IdP
// issued it, read from the IdP's tamper history: resigned with its own alg, unchanged otherwise).
async function login(env) {
  await env.control('POST', '/_test/tamper', { resign_with: 'ES256', count: 1 });
  const browser = env.browser();
  const res = await env.login({ browser, returnTo: '/echo/in' });
  assert.equal(res.status, 200, `signed in (${res.status})`);
  const history = await env.control('GET', '/_test/tampered');
  const claims = claimsOf(history[history.length - 1].original);
  assert.ok(claims.sid, 'the ID token has a sid');
  return { browser, claims };
}

async function hasSession(env, browser) {
  return (await env.status(browser)).session;
}

function postLogout(env, body) {
  return request(env.gw, {
    method: 'POST',
    path: '/_sso/backchannel-logout',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) },
    body,
  });
}

async function signed(env, claims, alg) {
  return (await env.control('POST', '/_test/sign', { claims, alg })).token;
}

itest('back-channel: signing out at the IdP ends that IdP session\'s gateway sessions, and only those', async (t, h) => {
  const env = await startEnv(h);
  const one = await login(env);
  const two = await login(env); // another browser: another IdP session, another sid
  assert.notEqual(one.claims.sid, two.claims.sid);
  assert.ok(await hasSession(env, one.browser));
  assert.ok(await hasSession(env, two.browser));

  const { moved } = await env.measure(async () => {
    const page = await one.browser.navigate(`${env.issuer}/session/end`);
    assert.equal(page.status, 200, `the IdP's sign-out page (${page.status})`);
    const done = await one.browser.submitForm(page, 'op.logoutForm', {}, { button: 'logout' });
    assert.equal(done.status, 200, `signed out at the IdP (${done.status})`);
  });
  assert.equal(moved[metricKey(BACK, { result: 'ok' })], 1, `one logout token accepted: ${JSON.stringify(moved)}`);
  assert.equal(await hasSession(env, one.browser), false, 'the session of that IdP session ended');
  assert.equal(await hasSession(env, two.browser), true, 'the other IdP session\'s gateway session lives on');
  const line = env.gw.logs.find((l) => l.event === 'idp_logout' && l.channel === 'back' && l.result === 'ok');
  assert.equal(line.sessions_ended, 1);
});

itest('back-channel: hostile logout tokens are refused with 400 and end no session', async (t, h) => {
  const env = await startEnv(h);
  const { browser, claims } = await login(env);
  const now = Math.floor(Date.now() / 1000);
  const good = () => ({
    iss: claims.iss, aud: CLIENT_ID, iat: now, exp: now + 120, jti: crypto.randomUUID(),
    events: { [EVENT]: {} }, sub: ACCOUNTS.alice.sub, sid: claims.sid,
  });
  const without = (name) => {
    const c = good();
    delete c[name];
    return c;
  };
  const flip = (token) => {
    const [head, body, sig] = token.split('.');
    return `${head}.${body}.${sig.slice(0, 10)}${sig[10] === 'A' ? 'B' : 'A'}${sig.slice(11)}`;
  };
  const cases = [
    ['bad signature', flip(await signed(env, good()))],
    ['alg none', `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify(good())).toString('base64url')}.`],
    ['wrong aud', await signed(env, { ...good(), aud: 'another-client' })],
    ['wrong iss', await signed(env, { ...good(), iss: 'https://evil.example' })],
    ['a nonce', await signed(env, { ...good(), nonce: 'n' })],
    ['no events', await signed(env, without('events'))],
    ['events without the logout event', await signed(env, { ...good(), events: { 'http://example.com/other': {} } })],
    ['no jti', await signed(env, without('jti'))],
    ['neither sid nor sub', await signed(env, { ...without('sid'), sub: undefined })],
    ['expired', await signed(env, { ...good(), iat: now - 7200, exp: now - 3600 })],
    ['iat in the future', await signed(env, { ...good(), iat: now + 3600, exp: now + 7200 })],
    ['not JSON claims', await signed(env, { ...good(), sid: 5 })],
  ];
  for (const [what, token] of cases) {
    const { value: res, moved } = await env.measure(() => postLogout(env, `logout_token=${encodeURIComponent(token)}`));
    assert.equal(res.status, 400, `${what}: 400 (${res.status} ${res.body})`);
    assert.equal(JSON.parse(res.body.toString()).error, 'invalid_request', what);
    assert.equal(moved[metricKey(BACK, { result: 'ok' })], undefined, `${what}: nothing accepted`);
    assert.equal(await hasSession(env, browser), true, `${what}: the session lives on`);
  }
  for (const body of ['', 'logout_token=', 'other=1', `logout_token=${'a'.repeat(70000)}`]) {
    const res = await postLogout(env, body);
    assert.equal(res.status, 400, `body ${body.slice(0, 20)}: 400`);
  }
  assert.equal(await hasSession(env, browser), true);

  // A valid token (sub only: all of alice's sessions) ends the session; the same token again is a replay.
  const token = await signed(env, without('sid'), 'ES256');
  const first = await postLogout(env, `logout_token=${encodeURIComponent(token)}`);
  assert.equal(first.status, 200, `the valid token (${first.body})`);
  assert.equal(await hasSession(env, browser), false, 'ended by sub');
  const again = await postLogout(env, `logout_token=${encodeURIComponent(token)}`);
  assert.equal(again.status, 400, 'a replayed jti is refused');
  assert.match(again.body.toString(), /jti_replayed/);
  const metrics = await env.metrics();
  assert.ok(metrics.samples.some((m) => m.name === BACK && m.labels.result === 'token_invalid' && m.value >= cases.length));
});

itest('front-channel: iss and sid of a real ID token end that IdP session; a wrong iss or no sid is refused', async (t, h) => {
  const env = await startEnv(h);
  const one = await login(env);
  const two = await login(env);
  const front = (query) => request(env.gw, { path: `/_sso/frontchannel-logout?${new URLSearchParams(query)}` });

  for (const [what, query] of [
    ['no iss', { sid: one.claims.sid }],
    ['another iss', { iss: 'https://evil.example', sid: one.claims.sid }],
    ['no sid', { iss: one.claims.iss }],
    ['an empty sid', { iss: one.claims.iss, sid: '' }],
  ]) {
    const res = await front(query);
    assert.equal(res.status, 400, `${what}: 400`);
    assert.equal(await hasSession(env, one.browser), true, `${what}: the session lives on`);
  }
  const { value: res, moved } = await env.measure(() => front({ iss: one.claims.iss, sid: one.claims.sid }));
  assert.equal(res.status, 200);
  assert.equal(res.headers['cache-control'], 'no-store');
  assert.equal(res.headers['x-frame-options'], undefined, 'the IdP may frame it');
  assert.match(res.headers['content-security-policy'], new RegExp(`frame-ancestors ${new URL(one.claims.iss).origin}`), 'the IdP only');
  assert.equal(moved[metricKey(FRONT, { result: 'ok' })], 1);
  assert.equal(await hasSession(env, one.browser), false, 'that IdP session\'s gateway session ended');
  assert.equal(await hasSession(env, two.browser), true, 'the other one lives on');
});

// Review H2: a logout at the IdP that came while a login of the same user or IdP session was in flight
// (its token request, or whoami in link mode, not answered yet) ended nothing of that login: its session
// was written after the logout and lived by its timeouts. Each logout leaves a mark; a login begun at or
// in an earlier second writes no session (401, logins_total{result="logged_out"}); one begun after it does.
async function raceLogout(env, browser, claims) {
  const callback = await env.authorize({ browser, returnTo: '/echo/raced' });
  // A login begun in an earlier second than the logout (one in the logout's second is let through).
  await new Promise((resolve) => setTimeout(resolve, 1100));
  await env.control('POST', '/_test/fail', { endpoint: 'token', hang_ms: 1500 });
  const { value: res, moved } = await env.measure(async () => {
    const pending = browser.request(callback);
    await new Promise((resolve) => setTimeout(resolve, 300)); // the token request waits at the IdP
    const now = Math.floor(Date.now() / 1000);
    const token = await signed(env, {
      iss: env.issuer, aud: CLIENT_ID, iat: now, exp: now + 120, jti: crypto.randomUUID(),
      events: { [EVENT]: {} }, ...claims,
    });
    const logout = await postLogout(env, `logout_token=${encodeURIComponent(token)}`);
    assert.equal(logout.status, 200, `the logout token is accepted (${logout.body})`);
    return pending;
  });
  assert.equal(res.status, 401, `the login in flight is refused (${res.status})`);
  assert.match(res.body.toString(), /Signed out at IT Complete/);
  assert.equal([].concat(res.headers['set-cookie'] || []).find((c) => /^ssogate=[^;]/.test(c)), undefined,
    'no session cookie');
  assert.equal(moved[metricKey('ssogate_logins_total', { result: 'logged_out' })], 1, JSON.stringify(moved));
  assert.equal(moved[metricKey('ssogate_logins_total', { result: 'ok' })], undefined, 'no login counted ok');
  assert.equal(await hasSession(env, browser), false, 'no session');
  const line = env.gw.logs.find((l) => l.event === 'login' && l.result === 'logged_out');
  assert.equal(line.detail, 'idp_logout');
}

itest('back-channel: a logout of the user while a login of theirs is in flight leaves no session; a later login works', async (t, h) => {
  const env = await startEnv(h);
  await raceLogout(env, env.browser(), { sub: ACCOUNTS.alice.sub });
  const again = env.browser();
  const res = await env.login({ browser: again, returnTo: '/echo/after' });
  assert.equal(res.callback.status, 302, 'a login begun after the logout makes a session');
  assert.equal(await hasSession(env, again), true);
});

itest('back-channel: a logout of the IdP session while a login in it is in flight leaves no session; another IdP session\'s login works', async (t, h) => {
  const env = await startEnv(h);
  const one = await login(env);
  const other = await login(env); // another browser: another IdP session
  await raceLogout(env, one.browser, { sid: one.claims.sid });
  assert.equal(await hasSession(env, other.browser), true, 'the other IdP session\'s gateway session lives on');
  const res = await env.login({ browser: env.browser(), returnTo: '/echo/other' });
  assert.equal(res.callback.status, 302, 'a login in a new IdP session, begun before too, is not stopped by the sid');
});
