'use strict';
// Issue 4, link mode, "Log in with IT Complete" end to end through the gateway, the real IdP and the stub
// PSA: B3 (no second factor: refused), B6 (a linked user signs out of the PSA and logs in with IT Complete,
// to the home page or the page asked for, as its PSA user), B11 (an inactive IdP user is sent to the PSA
// login page with a notice), "not linked", users who never link keep logging in natively, and identity
// headers forged by a client never reach the PSA as an identity. Each test asserts what the user sees, what
// the PSA saw (/__psa/log, /__stub/log) and what the store holds (ssogate-admin export).
//
//   SSOGATE_BUILD_DIR=build-link node --test tests/integration/link_login.test.js

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const harness = require('./lib/harness');
const { verifyAssertion } = require('./lib/oidc-env');
const { sharedLinkEnv, textOf, bodyText } = require('./lib/link-env');

const linkTest = sharedLinkEnv('link_login', { tenants: ['b3', 'b6', 'b11', 'nl', 'nat', 'fg', 'ow', 'ul'] });

// The identity headers of a request the PSA received, as [[lower-case name, value]].
function ssoHeaders(request) {
  return request.headers.filter(([name]) => /^x-sso-/i.test(name)).map(([name, value]) => [name.toLowerCase(), value]);
}

// Asserts that browser has no SSO session at the gateway and no ssogate cookie.
async function assertNoSession(env, browser, what) {
  assert.equal(browser.jar.get('ssogate'), undefined, `${what}: no ssogate cookie`);
  assert.equal((await env.status(browser)).session, false, `${what}: no SSO session`);
}

linkTest('B6: a linked user signs out and logs in with IT Complete: straight to the PSA home, or the page asked for', async (env) => {
  const t = env.tenant('b6');
  await env.linkTenant('b6');
  const { browser, page: home } = await env.linkUser(t.staff, t.user);
  const oldSession = browser.jar.get('ssogate');
  assert.ok(oldSession, 'an SSO session after the link');

  // Sign out of the PSA (its own form, POST /logout through the gateway): the SSO session ends too.
  const out = await browser.submitForm(home, 'sign-out-form');
  assert.equal(new URL(out.url).pathname, '/login', 'the PSA sign-out lands on its login page');
  await assertNoSession(env, browser, 'after the PSA sign-out');
  const replay = await harness.request(env.gw, { path: '/_sso/status', headers: { cookie: `ssogate=${oldSession}` } });
  assert.equal(JSON.parse(replay.body).session, false, 'the old session id is dead in the store, not only in the jar');

  // The login page, through the gateway, offers "Log in with IT Complete".
  assert.equal(out.status, 200);
  const button = /<a\b[^>]*id="ssogate-login-button"[^>]*>/.exec(out.body);
  assert.ok(button, 'the PSA login page has #ssogate-login-button');
  assert.equal(textOf(out.body, 'ssogate-login-button'), 'Log in with IT Complete');
  const href = /href="([^"]*)"/.exec(button[0])[1];
  assert.equal(href, '/_sso/login');
  assert.ok(out.body.includes('id="psa-login-form"'), 'the PSA password form is still there');

  await env.psaReset();
  const { value: again, moved } = await env.measure(async () => {
    const res = await browser.navigate(new URL(href, out.url));
    return env.atIdp(browser, res, t.user);
  });
  assert.equal(again.status, 200);
  assert.equal(new URL(again.url).pathname, '/', 'straight to the PSA home');
  assert.equal(textOf(again.body, 'welcome'), 'Welcome, staff of b6', 'as its PSA user');
  assert.equal(textOf(again.body, 'auth-method'), 'IT Complete');
  assert.notEqual(browser.jar.get('ssogate'), oldSession, 'a new session id');
  assert.equal(moved['ssogate_logins_total{result="ok"}'], 1, JSON.stringify(moved));
  const decisions = await env.psaLog();
  assert.ok(
    decisions.some((d) => d.method === 'assertion' && d.ok && d.path === '/' && d.tenant === 'b6' && d.user === 'b6-staff'),
    `the PSA authenticated b6/b6-staff by the assertion: ${JSON.stringify(decisions)}`,
  );

  // Another day, another browser: the whole IdP login, and the page asked for.
  const fresh = await env.ssoLogin(t.user, { returnTo: '/tickets?view=mine' });
  assert.deepEqual(fresh.steps, ['login-form', 'otp-form']);
  assert.equal(fresh.callback.status, 302);
  assert.equal(fresh.callback.headers.location, '/tickets?view=mine', 'back to the page asked for');
  assert.equal(fresh.status, 200);
  assert.equal(textOf(fresh.body, 'page-title'), 'Tickets');
  assert.equal(textOf(fresh.body, 'auth-method'), 'IT Complete');
  const status = await env.status(fresh.browser);
  assert.equal(status.session, true);
  assert.equal(status.psa_tenant, 'b6');
  assert.equal(status.psa_user, 'b6-staff');

  // What the PSA received: the identity headers and an assertion that verifies with the gateway's key.
  const received = (await env.psa.requests()).filter((r) => r.url === '/tickets?view=mine').pop();
  assert.ok(received, 'the PSA received the request');
  const headers = Object.fromEntries(ssoHeaders(received));
  assert.equal(headers['x-sso-tenant'], 'b6');
  assert.equal(headers['x-sso-user'], 'b6-staff');
  const jwks = JSON.parse((await harness.request(env.gw, { path: '/_sso/jwks.json' })).body);
  const { claims } = verifyAssertion(headers['x-sso-assertion'], jwks);
  assert.equal(claims.iss, env.gwUrl);
  assert.equal(claims.aud, env.psa.url);
  assert.equal(claims.psa_tenant, 'b6');
  assert.equal(claims.psa_user, 'b6-staff');
  assert.equal(claims.idp_tenant, 'itc-b6');
  assert.equal(claims.idp_sub, 'itc-b6-user');
  assert.ok(claims.exp > claims.iat && claims.exp - claims.iat <= 300, 'short-lived');
});

linkTest('B3: a login without a second factor is refused, even for a linked user', async (env) => {
  const t = env.tenant('b3');
  await env.linkTenant('b3');
  await env.linkUser(t.staff, t.user);

  // Enabling the link with an account that has no TOTP enrolled is refused.
  const second = await env.psaLogin(t.staff2);
  const enable = await env.enableUser(second.browser, t.nototp);
  assert.deepEqual(enable.steps, ['login-form'], 'the IdP asked no code: the account has no 2FA');
  assert.equal(enable.status, 403, `refused: ${enable.url}`);
  assert.match(bodyText(enable.body), /two-factor/i);
  assert.equal((await env.userLinks('b3')).find((l) => l.psa_user === 'b3-staff2'), undefined, 'nothing stored');

  // A link made by the operator (ssogate-admin import) does not let a 1-factor login in either.
  const imported = await env.admin(['import', '-'], {
    input: JSON.stringify({ tenant_links: [], user_links: [{ psa_tenant: 'b3', psa_user: 'b3-staff2', idp_tenant: 'itc-b3', idp_sub: t.nototp.sub }] }),
  });
  assert.equal(imported.code, 0, `ssogate-admin import: ${imported.stderr}`);
  await env.psaReset();
  const { value: res, moved } = await env.measure(() => env.ssoLogin(t.nototp));
  assert.equal(res.callback.status, 403, 'the callback refuses');
  assert.equal(res.status, 403);
  assert.match(bodyText(res.body), /two-factor/i, 'the page says a second factor is needed');
  assert.equal(moved['ssogate_logins_total{result="no_second_factor"}'], 1, JSON.stringify(moved));
  await assertNoSession(env, res.browser, 'no 2FA');

  // An account with TOTP whose ID token lost its amr: refused the same way.
  await env.control('POST', '/_test/tamper', { defect: 'no_amr' });
  const tampered = await env.ssoLogin(t.user);
  assert.equal(tampered.status, 403, `no amr: ${tampered.url}`);
  await assertNoSession(env, tampered.browser, 'no amr');
  assert.ok(!(await env.psaLog()).some((d) => d.method === 'assertion'), 'the PSA saw no IT Complete identity');
});

linkTest('B11: an inactive IdP user goes to the PSA login page with a notice', async (env) => {
  const t = env.tenant('b11');
  await env.linkTenant('b11');
  await env.linkUser(t.staff, t.user);
  // The inactive account was linked while it was active (here by the operator's import).
  const imported = await env.admin(['import', '-'], {
    input: JSON.stringify({ user_links: [{ psa_tenant: 'b11', psa_user: 'b11-staff2', idp_tenant: 'itc-b11', idp_sub: t.inactive.sub }] }),
  });
  assert.equal(imported.code, 0, `ssogate-admin import: ${imported.stderr}`);
  await env.psaReset();

  // The IdP refuses the login (error=access_denied at the callback).
  const { value: denied, moved } = await env.measure(() => env.ssoLogin(t.inactive));
  assert.ok(denied.callback.url.includes('error=access_denied'), 'the IdP answered access_denied');
  assert.equal(denied.callback.status, 302);
  assert.equal(denied.callback.headers.location, '/login?sso_notice=denied');
  assert.equal(denied.status, 200, 'the PSA login page');
  assert.ok(denied.body.includes('id="psa-login-form"'), 'the default PSA login page');
  assert.ok(textOf(denied.body, 'ssogate-notice'), 'with a notice');
  assert.match(textOf(denied.body, 'ssogate-notice'), /inactive|refused/i);
  assert.equal(moved['ssogate_logins_total{result="idp_error"}'], 1, JSON.stringify(moved));
  await assertNoSession(env, denied.browser, 'IdP refused');

  // The IdP lets the login through, but the ID token says the user is inactive.
  await env.control('POST', '/_test/tamper', { defect: 'inactive' });
  const inactive = await env.ssoLogin(t.user);
  assert.equal(inactive.callback.status, 302);
  assert.equal(inactive.callback.headers.location, '/login?sso_notice=inactive');
  assert.equal(new URL(inactive.url).pathname, '/login');
  assert.match(textOf(inactive.body, 'ssogate-notice'), /inactive/i, 'the notice says the account is inactive');
  await assertNoSession(env, inactive.browser, 'token inactive');
  assert.ok(!(await env.psaLog()).some((d) => d.method === 'assertion'), 'the PSA saw no IT Complete identity');
  assert.equal((await env.userLinks('b11')).length, 2, 'the links are kept (the account may come back)');

  // An IdP that writes the flag as text ("active": "false") is not read as active: the login is refused
  // as a claim the gateway cannot use (the previous build made a session: the deactivated user got in).
  await env.psaReset();
  await env.control('POST', '/_test/tamper', { defect: 'inactive_as_text' });
  const { value: text, moved: textMoved } = await env.measure(() => env.ssoLogin(t.user));
  assert.equal(text.callback.status, 401, `active as text: refused (${text.callback.headers.location})`);
  assert.equal(textMoved['ssogate_logins_total{result="claims_unusable"}'], 1, JSON.stringify(textMoved));
  assert.ok(
    env.gw.logs.some((l) => l.event === 'login' && l.result === 'claims_unusable' && l.detail === 'active'),
    'a login line names the claim',
  );
  await assertNoSession(env, text.browser, 'token active as text');
  assert.ok(!(await env.psaLog()).some((d) => d.method === 'assertion'), 'the PSA saw no IT Complete identity');
});

linkTest('not linked: an IdP user without a link goes to the PSA login page with "not linked"', async (env) => {
  const n = env.tenant('nl');
  const res = await env.ssoLogin(n.user);
  assert.equal(res.callback.status, 302);
  assert.equal(res.callback.headers.location, '/login?sso_notice=not_linked');
  assert.match(textOf(res.body, 'ssogate-notice'), /not linked/i);
  assert.ok(res.body.includes('id="psa-login-form"'));
  await assertNoSession(env, res.browser, 'tenant not linked');

  const t = env.tenant('b11');
  const unlinkedUser = await env.ssoLogin(t.user2); // tenant b11 is linked, user2 is not
  assert.equal(unlinkedUser.callback.headers.location, '/login?sso_notice=not_linked');
  await assertNoSession(env, unlinkedUser.browser, 'user not linked');
});

// B7/B8: removing a link ends its user's sessions at once. A login of that user waiting on the PSA's
// whoami meanwhile (an admin's remove-user, or the user's own Disable in another browser) must not make a
// session after it: the login ends "not linked", and the PSA never gets that identity again.
linkTest('a link removed while its login is in flight leaves no session', async (env) => {
  const t = env.tenant('ul');
  await env.linkTenant('ul');
  for (const how of ['admin remove-user', 'Disable in My Settings']) {
    await env.linkUser(t.staff, t.user);
    await env.configurePsa({ whoami_delay_ms: 3000 });
    await env.psaReset();
    const login = env.ssoLogin(t.user);
    const asked = async () => (await env.psaLog()).some((d) => d.path === '/api/whoami' && d.method === 'assertion');
    await harness.waitFor(asked, 10000 * harness.SLOW, `${how}: the login asks the PSA about its user`);
    await env.configurePsa({ whoami_delay_ms: 0 });
    if (how === 'admin remove-user') {
      const removed = await env.admin(['remove-user', 'ul', t.staff.id]);
      assert.equal(removed.code, 0, `remove-user: ${removed.stderr}`);
    } else {
      const { browser } = await env.psaLogin(t.staff);
      const page = await env.settings(browser);
      await env.press(browser, page, '/_sso/user/disable');
    }
    assert.deepEqual(await env.userLinks('ul'), [], `${how}: the link is gone`);
    const res = await login;
    assert.equal(res.callback.status, 302, `${how}: the callback answers`);
    assert.equal(res.callback.headers.location, '/login?sso_notice=not_linked', `${how}: the login in flight is not linked`);
    await assertNoSession(env, res.browser, how);
    await env.psaReset();
    await res.browser.navigate(`${env.gwUrl}/`);
    assert.ok((await env.psaLog()).every((d) => d.user !== t.staff.id), `${how}: the PSA never saw that user again`);
  }
});

linkTest('users who never link keep logging in natively through the gateway', async (env) => {
  const t = env.tenant('nat');
  await env.psa.reset();
  await env.psaReset();
  const { browser, page } = await env.psaLogin(t.staff);
  assert.equal(textOf(page.body, 'auth-method'), 'password');
  assert.equal(textOf(page.body, 'welcome'), 'Welcome, staff of nat');
  const tickets = await browser.navigate(`${env.gwUrl}/tickets`);
  assert.equal(tickets.status, 200);
  assert.equal(textOf(tickets.body, 'auth-method'), 'password');
  const status = await env.status(browser);
  assert.equal(status.session, false);
  assert.deepEqual(status.psa, { tenant: 'nat', user: 'nat-staff', admin: false, staff: true });
  assert.equal(status.user_linked, false);

  const out = await browser.submitForm(tickets, 'sign-out-form');
  assert.equal(new URL(out.url).pathname, '/login', 'the PSA sign-out works');
  assert.equal((await browser.navigate(`${env.gwUrl}/tickets`)).url, `${env.gwUrl}/login?next=%2Ftickets`, 'signed out');
  const admin = await env.psaLogin(t.admin, { browser });
  assert.equal(textOf(admin.page.body, 'welcome'), 'Welcome, admin of nat', 'and signing in again works');

  const decisions = await env.psaLog();
  assert.ok(decisions.every((d) => d.method !== 'assertion'), 'the PSA never saw an assertion');
  for (const request of await env.psa.requests()) {
    assert.deepEqual(ssoHeaders(request), [], `no identity header on ${request.method} ${request.url}`);
  }
});

linkTest('forged X-SSO-* headers from a client never reach the PSA as an identity', async (env) => {
  const t = env.tenant('fg');
  await env.linkTenant('fg');
  const linked = await env.linkUser(t.staff, t.user);
  // A genuine assertion of fg-staff, as an attacker who saw one would replay it.
  const genuine = (await env.psa.requests()).filter((r) => ssoHeaders(r).length > 0).pop();
  const token = Object.fromEntries(ssoHeaders(genuine))['x-sso-assertion'];
  assert.ok(token, 'a genuine assertion to replay');
  const forged = [
    ['X-SSO-Tenant', 'fg'],
    ['x-sso-user', 'fg-admin'],
    ['X-Sso-Assertion', token],
    ['X-SSO-Subject', 'itc-fg-master'],
    ['X-SSO-Email', 'master@fg.itc.test'],
  ];

  await env.psa.reset();
  await env.psaReset();
  // 1. No session at all: the PSA sees nobody.
  const anonymous = await harness.request(env.gw, { path: '/?probe=anonymous', headers: forged });
  assert.equal(anonymous.status, 302, 'an anonymous visitor is sent to the PSA login');
  // 2. A PSA password session of staff2: the PSA sees staff2, not the forged user.
  const native = await env.psaLogin(t.staff2);
  const nativeHome = await native.browser.request(`${env.gwUrl}/?probe=native`, { headers: Object.fromEntries(forged) });
  assert.equal(textOf(nativeHome.body, 'welcome'), 'Welcome, staff2 of fg', 'staff2 stays staff2');
  assert.equal(textOf(nativeHome.body, 'auth-method'), 'password');
  // 3. An SSO session of fg-staff: the PSA sees fg-staff, not the admin the client claims.
  const ssoHome = await linked.browser.request(`${env.gwUrl}/?probe=sso`, { headers: Object.fromEntries(forged) });
  assert.equal(textOf(ssoHome.body, 'welcome'), 'Welcome, staff of fg', 'fg-staff stays fg-staff');
  assert.equal(textOf(ssoHome.body, 'auth-method'), 'IT Complete');

  const decisions = await env.psaLog();
  const assertions = decisions.filter((d) => d.method === 'assertion');
  assert.ok(assertions.length > 0 && assertions.every((d) => d.ok && d.user === 'fg-staff'), `only fg-staff's own session: ${JSON.stringify(assertions)}`);
  assert.ok(!decisions.some((d) => d.user === 'fg-admin'), 'the PSA never saw fg-admin');
  const requests = await env.psa.requests();
  for (const probe of ['anonymous', 'native']) {
    const r = requests.find((x) => x.url === `/?probe=${probe}`);
    assert.ok(r, `the PSA received the ${probe} request`);
    assert.deepEqual(ssoHeaders(r), [], `${probe}: every client X-SSO-* header removed`);
  }
  const sso = Object.fromEntries(ssoHeaders(requests.find((x) => x.url === '/?probe=sso')));
  assert.equal(sso['x-sso-user'], 'fg-staff', 'the gateway set X-SSO-User itself');
  assert.equal(sso['x-sso-subject'], 'itc-fg-user');
  assert.equal(ssoHeaders(requests.find((x) => x.url === '/?probe=sso')).filter(([n]) => n === 'x-sso-user').length, 1, 'one X-SSO-User');
  const jwks = JSON.parse((await harness.request(env.gw, { path: '/_sso/jwks.json' })).body);
  assert.equal(verifyAssertion(sso['x-sso-assertion'], jwks).claims.psa_user, 'fg-staff', "the session's own assertion");

  // Sent to the PSA directly (past the gateway), a forged assertion is refused by the PSA itself.
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const kid = JSON.parse(Buffer.from(token.split('.')[0], 'base64url')).kid;
  const now = Math.floor(Date.now() / 1000);
  const part = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const input = `${part({ alg: 'ES256', kid, typ: 'JWT' })}.${part({
    iss: env.gwUrl, aud: env.psa.url, iat: now, exp: now + 60, jti: 'forged', sub: 'fg-admin', psa_tenant: 'fg', psa_user: 'fg-admin',
  })}`;
  const signature = crypto.sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url');
  const direct = await harness.request(env.psa, {
    path: '/api/whoami',
    headers: { 'X-SSO-Tenant': 'fg', 'X-SSO-User': 'fg-admin', 'X-SSO-Assertion': `${input}.${signature}` },
  });
  assert.equal(direct.status, 401, 'the PSA refuses a forged assertion');
  assert.equal(JSON.parse(direct.body).reason, 'bad_signature');
});

// Review rtL F4: whoami goes with the browser's PSA cookies too, and a PSA that prefers its own session
// answers about that session's user; the answer was used without checking whom it named.
linkTest('a login whose whoami answer names another PSA user than the linked one is refused', async (env) => {
  const t = env.tenant('ow');
  await env.linkTenant('ow');
  await env.linkUser(t.staff, t.user);
  const { browser } = await env.psaLogin(t.staff2); // a native PSA session of staff2 in this browser
  await env.configurePsa({ whoami_session_first: true });
  try {
    const { value: res, moved } = await env.measure(() => env.ssoLogin(t.user, { browser }));
    assert.equal(res.callback.status, 403, `the callback refuses (${res.callback.status})`);
    assert.match(bodyText(res.body), /The PSA answered about another user than the one linked/, 'the page says why');
    assert.equal(moved['ssogate_logins_total{result="psa_other_user"}'], 1, JSON.stringify(moved));
    assert.ok(env.gw.logs.some((l) => l.event === 'login' && l.result === 'psa_other_user'), 'a login line');
    assert.equal((await env.status(browser)).session, false, 'no SSO session');

    const clean = await env.ssoLogin(t.user);
    assert.equal(clean.callback.status, 302, 'without that native session the login goes through');
    assert.equal((await env.status(clean.browser)).psa_user, t.staff.id, 'as the linked user');
  } finally {
    await env.configurePsa({ whoami_session_first: false });
  }
});
