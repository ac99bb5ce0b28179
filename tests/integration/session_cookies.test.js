'use strict';
// Issue 9: the gateway's cookies and cookie tossing. Real sessions from real logins (oidc-provider IdP):
// every session cookie value in every Cookie line is looked at; garbage and unknown values never hide
// the real session; live sessions of two different users are both refused; the gateway's cookies never
// reach the upstream from any Cookie line.

const assert = require('node:assert/strict');
const { request } = require('./lib/harness');
const { ACCOUNTS, sharedOidcEnv, parseSetCookies, metricKey } = require('./lib/oidc-env');

const DAVE = { ...ACCOUNTS.alice, login: 'dave', sub: 'itc-user-dave', email: 'dave@example.test' };
// An account whose e-mail (which its user may edit at the IdP) holds a tab.
const ERIN = { ...ACCOUNTS.alice, login: 'erin', sub: 'itc-user-erin', email: 'erin\t@example.test' };
// A lone surrogate: the IdP writes it as "\udc80", which decodes to bytes that are not UTF-8.
const FRANK = { ...ACCOUNTS.alice, login: 'frank', sub: 'itc-user-frank', email: 'frank\udc80@example.test' };
const test = sharedOidcEnv('session_cookies', { accounts: [ACCOUNTS.alice, DAVE, ERIN, FRANK] });

async function sessionOf(env, account) {
  const res = await env.login({ account, returnTo: '/echo/start' });
  assert.equal(res.callback.status, 302, `${account.login} logged in`);
  const cookie = parseSetCookies(res.callback.headers['set-cookie']).ssogate;
  assert.ok(cookie, 'the session cookie is set');
  return cookie.value;
}

// What the upstream saw for a request with these Cookie lines: {status, subject, cookie}.
async function seen(env, cookieLines, path = '/echo/cookies') {
  const res = await request(env.gw, { path, headers: cookieLines.map((line) => ['Cookie', line]) });
  if (res.status !== 200) {
    return { status: res.status, body: res.body.toString() };
  }
  const echo = JSON.parse(res.body.toString());
  return { status: 200, subject: echo.headers['x-sso-subject'], cookie: echo.headers.cookie };
}

const UNKNOWN = 'A'.repeat(43); // well-formed, but no such session

test('cookie tossing: garbage, unknown and conflicting session cookies', async (env) => {
  const alice1 = await sessionOf(env, ACCOUNTS.alice);
  const alice2 = await sessionOf(env, ACCOUNTS.alice);
  const dave = await sessionOf(env, DAVE);

  assert.equal((await seen(env, [`ssogate=${alice1}`])).subject, 'itc-user-alice', 'one cookie: its session');
  assert.equal((await seen(env, [`ssogate=garbage; ssogate=${alice1}`])).subject, 'itc-user-alice',
    'a planted garbage value first does not hide the real session');
  assert.equal((await seen(env, [`ssogate=${UNKNOWN}`, `ssogate=${alice1}`])).subject, 'itc-user-alice',
    'an unknown value in an earlier Cookie line does not hide the real session');
  assert.equal((await seen(env, [`ssogate=${alice2}; ssogate=${alice1}`])).subject, 'itc-user-alice',
    'two sessions of the same user: that user');

  const conflict = await seen(env, [`ssogate=${dave}; x=1`, `ssogate=${alice1}`]);
  assert.equal(conflict.status, 200, 'an optional route still answers');
  assert.equal(conflict.subject, undefined, 'sessions of two users: no identity at all, neither wins');
  assert.equal(conflict.cookie, 'x=1', 'and no gateway cookie upstream');

  const required = await request(env.gw, { path: '/private/x', headers: [['Cookie', `ssogate=${dave}; ssogate=${alice1}`]] });
  assert.equal(required.status, 400, 'a required route refuses instead of looping through a login');
  assert.match(required.body.toString(), /Conflicting sign-in cookies/);
  const alone = await request(env.gw, { path: '/private/x', headers: [['Cookie', `ssogate=${alice1}`]] });
  assert.equal(alone.status, 200, 'the real cookie alone still works');

  const metrics = await env.metrics();
  const conflicts = metrics.samples.find((s) => s.name === 'ssogate_session_cookie_conflicts_total');
  assert.ok(conflicts && conflicts.value >= 2, 'conflicts are counted');
});

test('no gateway cookie reaches the upstream, from any Cookie line', async (env) => {
  const alice = await sessionOf(env, ACCOUNTS.alice);
  const lines = [
    `a=1; ssogate=${alice}; b=2`,
    'ssogate_csrf=tok; c=3',
    'ssogate_login=bind',
    `d=4; ssogate=${UNKNOWN}`,
  ];
  const res = await seen(env, lines);
  assert.equal(res.status, 200);
  assert.equal(res.subject, 'itc-user-alice', 'the session was found in the first line');
  assert.equal(res.cookie, 'a=1; b=2; c=3; d=4', 'the other cookies arrive, in order, in one line');
});

// Cookie lines joined with ',' (RFC 2965's separator; a proxy in front that joins several Cookie lines
// as it joins other fields writes "a=1, ssogate=ID"): the gateway reads no session there, and it
// forwarded the line whole, so an upstream that splits at ',' got the session id. Such a pair is
// dropped like the gateway's own cookie; the other lines and pairs arrive.
test('no gateway cookie reaches the upstream behind a comma', async (env) => {
  const alice = await sessionOf(env, ACCOUNTS.alice);
  for (const line of [`x=1, ssogate=${alice}`, `x=1,ssogate =${alice}`, `x=1, ssogate_csrf=tok`, `x=1,, ssogate_login=bind`]) {
    const res = await seen(env, [line, 'prefs=a,b; c=3']);
    assert.equal(res.status, 200, line);
    assert.equal(res.cookie, 'prefs=a,b; c=3', `${line}: no gateway cookie upstream`);
    assert.ok(!String(res.cookie).includes(alice), `${line}: the session id never goes upstream`);
  }
});

// A logout ends every session the browser sent, not only the one in use: with sessions of two users
// (one planted by cookie tossing) none is in use, and a logout that ended nothing while answering as
// usual left the victim's session alive; with two of the same user, the second one stayed alive.
// The same at the PSA's logout path, which still reaches the PSA.
test('a logout ends every session the browser sent', async (env) => {
  const logout = (cookie) => request(env.gw, {
    method: 'POST', path: '/_sso/logout', headers: [['Origin', env.gwUrl], ['Cookie', cookie]],
  });
  const live = async (id) => (await seen(env, [`ssogate=${id}`])).subject !== undefined;

  const victim = await sessionOf(env, ACCOUNTS.alice);
  const planted = await sessionOf(env, DAVE);
  const conflict = await logout(`ssogate=${planted}; ssogate=${victim}`);
  assert.equal(conflict.status, 303);
  assert.match(String(conflict.headers['set-cookie']), /ssogate=;/, 'the session cookie is cleared');
  assert.equal(await live(victim), false, "the victim's session ended behind a planted one");
  assert.equal(await live(planted), false, 'and the planted one');

  const first = await sessionOf(env, ACCOUNTS.alice);
  const second = await sessionOf(env, ACCOUNTS.alice);
  assert.equal((await logout(`ssogate=${first}; ssogate=${second}`)).status, 303);
  assert.equal(await live(first), false, 'the session in use ended');
  assert.equal(await live(second), false, 'and the same user\'s other one');

  // Four planted unknown values ahead of the victim's: the lookup gives up before it (no session in
  // use), and the logout still ends it.
  const behind = await sessionOf(env, ACCOUNTS.alice);
  const junk = ['B', 'C', 'D', 'E'].map((c) => `ssogate=${c.repeat(43)}`).join('; ');
  assert.equal((await logout(`${junk}; ssogate=${behind}`)).status, 303);
  assert.equal(await live(behind), false, 'the session behind four planted values ended');

  const victim2 = await sessionOf(env, ACCOUNTS.alice);
  const planted2 = await sessionOf(env, DAVE);
  const psa = await seen(env, [`ssogate=${planted2}; ssogate=${victim2}`], '/logout');
  assert.equal(psa.status, 200, 'the PSA logout path still reaches the PSA');
  assert.equal(psa.subject, undefined, 'without an identity (sessions of two users)');
  assert.equal(await live(victim2), false, "the PSA logout path ended the victim's session");
  assert.equal(await live(planted2), false, 'and the planted one');

  const metrics = await env.metrics();
  const count = (result) => (metrics.samples.find((m) => m.name === 'ssogate_logouts_total' && m.labels.result === result)
    || { value: 0 }).value;
  assert.equal(count('conflicting_cookies'), 1);
  assert.equal(count('psa_logout_conflicting_cookies'), 1);
});

// A claim the session cannot hold (a control character in the e-mail; text that is not UTF-8, which an
// upstream dropping the bad bytes would read as another address) refuses the login as the user's data
// (401, logins_total{result="claims_unusable"}), never as a store failure that pages operators.
for (const account of [ERIN, FRANK]) test(`a claim the session cannot hold refuses the login, not as a store error (${account.login})`, async (env) => {
  const from = env.gw.logs.length;
  const { value: res, moved } = await env.measure(() => env.login({ account, returnTo: '/echo/x' }));
  assert.equal(res.callback.status, 401);
  assert.match(res.body, /holds a value the gateway cannot use/);
  assert.equal([].concat(res.callback.headers['set-cookie'] || []).find((c) => /^ssogate=[^;]/.test(c)), undefined);
  assert.equal(moved[metricKey('ssogate_logins_total', { result: 'claims_unusable' })], 1, JSON.stringify(moved));
  assert.equal(moved[metricKey('ssogate_logins_total', { result: 'store_error' })], undefined);
  assert.equal(moved[metricKey('ssogate_errors_total', { kind: 'store' })], undefined);
  const line = env.gw.logs.slice(from).find((l) => l.event === 'login' && l.result === 'claims_unusable');
  assert.ok(line && line.level === 'warn', 'a warning names the field');
  assert.equal(line.detail, 'email');
});


// A login in a browser that still holds a session: the new session replaces the old one, which ends; a
// copy of the old cookie (a shared computer, one taken before the login) is refused from then on.
test('a login ends the session whose cookie the browser still sent', async (env) => {
  const first = await env.login({ account: ACCOUNTS.alice, returnTo: '/echo/first' });
  const old = parseSetCookies(first.callback.headers['set-cookie']).ssogate.value;
  assert.equal((await seen(env, [`ssogate=${old}`])).subject, ACCOUNTS.alice.sub, 'the first session works');

  const again = await env.login({ browser: first.browser, returnTo: '/echo/again' });
  assert.equal(again.callback.status, 302, 'the second login in the same browser');
  const cookies = [].concat(again.callback.headers['set-cookie']).filter((c) => /^ssogate=/.test(c));
  assert.equal(cookies.length, 1, `one session cookie set: ${cookies}`);
  const fresh = parseSetCookies(cookies).ssogate.value;
  assert.notEqual(fresh, old);
  assert.equal((await seen(env, [`ssogate=${fresh}`])).subject, ACCOUNTS.alice.sub, 'the new session works');
  const replayed = await seen(env, [`ssogate=${old}`]);
  assert.equal(replayed.subject, undefined, `the old session is gone: ${JSON.stringify(replayed)}`);
});

// Another site sending the browser to the PSA's logout path (a link, an image, a redirect: SameSite=Lax
// cookies go along on a top-level navigation) does not end the SSO session: the request still reaches the
// PSA, the refusal is counted and logged. The PSA's own sign-out (same-origin) ends it.
test('a cross-site request to the PSA logout path keeps the SSO session', async (env) => {
  const id = await sessionOf(env, ACCOUNTS.alice);
  const live = async () => (await seen(env, [`ssogate=${id}`])).subject !== undefined;
  const { value: crossSite, moved } = await env.measure(() => request(env.gw, {
    path: '/logout', headers: [['Cookie', `ssogate=${id}`], ['Sec-Fetch-Site', 'cross-site'], ['Sec-Fetch-Mode', 'navigate']],
  }));
  assert.equal(crossSite.status, 200, 'the PSA still gets the request');
  assert.equal(crossSite.headers['set-cookie'], undefined, 'no session cookie is cleared');
  assert.equal(await live(), true, 'the SSO session is kept');
  assert.equal(moved[metricKey('ssogate_csrf_refused_total', { endpoint: 'psa_logout' })], 1, JSON.stringify(moved));
  assert.ok(env.gw.logs.some((l) => l.event === 'logout' && l.result === 'cross_site'), 'logged');

  const sameOrigin = await request(env.gw, {
    path: '/logout', headers: [['Cookie', `ssogate=${id}`], ['Sec-Fetch-Site', 'same-origin']],
  });
  assert.equal(sameOrigin.status, 200);
  assert.equal(await live(), false, "the PSA's own sign-out ends the SSO session");
});

// Servers route "/logout/" and "/logout//" to the same sign-out as "/logout": the SSO session ends with
// them too, and not with a path that only begins the same.
test('the PSA logout path read with trailing and repeated slashes ends the SSO session', async (env) => {
  for (const path of ['/logout/', '/logout//', '//logout']) {
    const id = await sessionOf(env, ACCOUNTS.alice);
    assert.equal((await seen(env, [`ssogate=${id}`], path)).status, 200, `${path} reaches the PSA`);
    assert.equal((await seen(env, [`ssogate=${id}`])).subject, undefined, `${path} ended the SSO session`);
  }
  const id = await sessionOf(env, ACCOUNTS.alice);
  for (const path of ['/logoutx', '/logout/x', '/x/logout']) {
    await seen(env, [`ssogate=${id}`], path);
    assert.equal((await seen(env, [`ssogate=${id}`])).subject, ACCOUNTS.alice.sub, `${path} keeps the SSO session`);
  }
});
