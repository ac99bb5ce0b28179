'use strict';
// Issue 4, link mode, the user's "Log in with IT Complete" in My Settings end to end through the gateway,
// the real IdP and the stub PSA: B5 (a staff user links and lands on the PSA home as itself), B8 (a user
// disables its own link: link and SSO sessions gone, password login still works), B9 (client-portal users
// can neither link nor log in with IT Complete), B10 (one IdP user for one PSA user, both ways), and the
// refusals of a tenant that is not linked and of an IdP user of another tenant. Each test asserts what the
// user sees and what the store holds (ssogate-admin export).
//
//   SSOGATE_BUILD_DIR=build-link node --test tests/integration/link_user.test.js

const assert = require('node:assert/strict');
const harness = require('./lib/harness');
const { sharedLinkEnv, textOf, bodyText, formsTo } = require('./lib/link-env');

const linkTest = sharedLinkEnv('link_user', {
  tenants: ['b5', 'b8', 'b8s', 'b9', 'b10', 'wt', 'wt2', 'nl', 'fr', 'fa', 'fa2', 'sc', 'si', 'sx', 'gone'],
});

linkTest('B5: a staff user enables Log in with IT Complete: IdP + TOTP, linked, on the PSA home as itself', async (env) => {
  const t = env.tenant('b5');
  await env.linkTenant('b5');
  const { browser } = await env.psaLogin(t.staff);
  const page = await env.settings(browser);
  assert.equal(page.status, 200);
  assert.match(textOf(page.body, 'user-state'), /Disabled/, 'My Settings: not enabled yet');
  assert.equal(textOf(page.body, 'tenant-state'), undefined, 'no tenant switch for a non-admin');
  assert.equal(formsTo(page.body, '/_sso/user/enable').length, 1, 'an Enable button');

  const { value: res, moved } = await env.measure(async () => {
    const atIdp = await env.press(browser, page, '/_sso/user/enable');
    assert.equal(atIdp.history[0].status, 303, 'POST /_sso/user/enable answers 303');
    assert.equal(new URL(atIdp.history[0].location).origin, new URL(env.issuer).origin, 'to the IdP');
    return env.atIdp(browser, atIdp, t.user);
  });
  assert.deepEqual(res.steps, ['login-form', 'otp-form'], 'IdP password and TOTP code');
  assert.equal(res.callback.status, 302);
  assert.equal(res.callback.headers.location, '/', 'to the PSA home');
  assert.match(String(res.callback.headers['set-cookie']), /(^|,\s*)ssogate=[^;]+/, 'a new SSO session cookie');
  assert.equal(res.status, 200);
  assert.equal(textOf(res.body, 'welcome'), 'Welcome, staff of b5', 'the PSA home of that PSA user');
  assert.equal(textOf(res.body, 'auth-method'), 'IT Complete', 'signed in through the gateway assertion');
  assert.equal(moved['ssogate_links_total{result="linked"}'], 1, JSON.stringify(moved));

  assert.deepEqual(await env.userLinks('b5'), [
    { psa_tenant: 'b5', psa_user: 'b5-staff', idp_tenant: 'itc-b5', idp_sub: 'itc-b5-user' },
  ], 'the store holds the user link');
  const status = await env.status(browser);
  assert.equal(status.session, true);
  assert.equal(status.user_linked, true);
  assert.equal(status.linked_idp_sub, 'itc-b5-user');

  const after = await env.settings(browser);
  assert.match(textOf(after.body, 'user-state'), /Enabled/, 'My Settings: enabled');
  assert.equal(formsTo(after.body, '/_sso/user/disable').length, 1, 'now offers Disable');
  assert.match(after.body, /Disable Log in with IT Complete/);
  assert.equal(formsTo(after.body, '/_sso/user/enable').length, 0, 'and no longer Enable');
});

linkTest('B8: a user disables its own link: link and every SSO session of the user gone, password login works', async (env) => {
  const t = env.tenant('b8');
  await env.linkTenant('b8');
  const own = await env.linkUser(t.staff, t.user);
  const other = await env.ssoLogin(t.user); // the same user's SSO session in a second browser
  assert.equal(textOf(other.body, 'auth-method'), 'IT Complete');
  const control = await env.linkUser(t.staff2, t.user2);

  const page = await env.settings(own.browser);
  const { value: res, moved } = await env.measure(() => env.press(own.browser, page, '/_sso/user/disable'));
  assert.equal(res.history[0].status, 303);
  assert.equal(res.history[0].location, '/_sso/settings?done=user_unlinked');
  assert.equal(res.status, 200);
  assert.match(textOf(res.body, 'user-state'), /Disabled/, 'My Settings: disabled again');
  assert.equal(formsTo(res.body, '/_sso/user/enable').length, 1, 'offers Enable again');
  assert.equal(moved['ssogate_links_total{result="user_unlinked"}'], 1, JSON.stringify(moved));

  assert.deepEqual((await env.userLinks('b8')).map((l) => l.psa_user), ['b8-staff2'], 'only that link is gone');
  assert.equal((await env.status(own.browser)).session, false, 'the SSO session of this browser is gone');
  assert.equal((await env.status(other.browser)).session, false, 'and of the other browser');
  assert.equal((await env.status(control.browser)).session, true, 'another user keeps its session');
  const home = await other.browser.request(`${env.gwUrl}/`);
  assert.equal(home.status, 302, 'the other browser reaches the PSA as nobody');

  const native = await env.psaLogin(t.staff);
  assert.equal(textOf(native.page.body, 'auth-method'), 'password', 'the PSA password login still works');
  const sso = await env.ssoLogin(t.user);
  assert.equal(new URL(sso.url).pathname, '/login');
  assert.equal(new URL(sso.url).searchParams.get('sso_notice'), 'not_linked', 'IT Complete login: not linked');
});

linkTest('B8: a user signed in with IT Complete only opens My Settings from the PSA and disables', async (env) => {
  const t = env.tenant('b8s');
  await env.linkTenant('b8s');
  await env.linkUser(t.staff, t.user);
  // Another day: the user signs in with IT Complete only (no PSA password session in this browser).
  const sso = await env.ssoLogin(t.user);
  assert.equal(textOf(sso.body, 'auth-method'), 'IT Complete');
  assert.match(sso.body, /id="my-settings" href="\/_sso\/settings"/, 'the PSA links to My Settings');
  const page = await env.settings(sso.browser);
  assert.equal(page.status, 200, `My Settings for a user signed in with IT Complete (got ${page.status}: ${bodyText(page.body)})`);
  const res = await env.press(sso.browser, page, '/_sso/user/disable');
  assert.equal(res.history[0].location, '/_sso/settings?done=user_unlinked');
  assert.deepEqual(await env.userLinks('b8s'), [], 'the link is gone');
});

linkTest('B9: client-portal users can neither link nor log in with IT Complete', async (env) => {
  const t = env.tenant('b9');
  await env.linkTenant('b9');
  const client = await env.psaLogin(t.client);
  const page = await env.settings(client.browser);
  assert.equal(page.status, 200);
  assert.match(textOf(page.body, 'user-state'), /Client portal users cannot/i, 'My Settings says why');
  assert.equal(formsTo(page.body, '/_sso/user/enable').length, 0, 'no Enable button');
  const forged = await env.post(client.browser, '/_sso/user/enable');
  assert.equal(forged.status, 403, 'POST /_sso/user/enable by a client-portal user is refused');
  assert.equal(forged.history.length, 1, 'without a trip to the IdP');
  assert.deepEqual(await env.userLinks('b9'), [], 'nothing stored');

  // A staff user links, then the PSA makes it a client-portal user: its IT Complete login is refused.
  await env.linkUser(t.staff, t.user);
  await env.patchPsaUser(t.staff, { kind: 'client' });
  await env.psaReset();
  const { value: login, moved } = await env.measure(() => env.ssoLogin(t.user));
  const status = await env.status(login.browser);
  // The gateway asks the PSA's whoami, with the assertion the session would carry, what kind of user
  // this is: that one call is how B9 is decided. No other page may see the user through IT Complete.
  const decisions = (await env.psaLog()).filter((d) => d.method === 'assertion' && d.path !== '/api/whoami');
  assert.equal(moved['ssogate_logins_total{result="client_portal"}'], 1,
    `the refusal is counted as client_portal (moved ${JSON.stringify(moved)})`);
  assert.equal(
    status.session,
    false,
    `no SSO session for a client-portal PSA user (callback ${login.callback && login.callback.status} ` +
      `-> ${login.callback && login.callback.headers.location}, landed on ${login.url}, ` +
      `#auth-method ${textOf(login.body, 'auth-method')}, logins_total moved ${JSON.stringify(moved)})`,
  );
  assert.deepEqual(decisions, [], 'no PSA page saw the client-portal user through IT Complete');
});

linkTest('B10: an IdP user linked to one PSA user cannot be linked to another, nor a PSA user to two', async (env) => {
  const t = env.tenant('b10');
  await env.linkTenant('b10');
  await env.linkUser(t.staff, t.user);
  const expected = [{ psa_tenant: 'b10', psa_user: 'b10-staff', idp_tenant: 'itc-b10', idp_sub: 'itc-b10-user' }];

  const second = await env.psaLogin(t.staff2);
  const { value: res, moved } = await env.measure(() => env.enableUser(second.browser, t.user));
  assert.equal(res.status, 409, `refused: ${res.url}`);
  assert.match(res.body, /already linked/i, 'the page says the IT Complete account is already linked');
  assert.equal(moved['ssogate_links_total{result="already_linked"}'], 1, JSON.stringify(moved));
  assert.deepEqual(await env.userLinks('b10'), expected, 'the store is unchanged');
  assert.equal((await env.status(second.browser)).session, false, 'no SSO session for the refused user');

  // The linked PSA user asks for a second IdP user (its page only offers Disable: a hand-made POST).
  const first = await env.psaLogin(t.staff);
  assert.equal(formsTo((await env.settings(first.browser)).body, '/_sso/user/enable').length, 0);
  let again = await env.post(first.browser, '/_sso/user/enable');
  if (new URL(again.url).origin === new URL(env.issuer).origin) {
    again = await env.atIdp(first.browser, again, t.user2);
  }
  assert.ok(again.status >= 400 && again.status < 500, `refused: ${again.status} ${again.url}`);
  assert.deepEqual(await env.userLinks('b10'), expected, 'the PSA user still has one IdP user only');
  assert.equal(
    (await env.exportLinks()).user_links.find((l) => l.idp_sub === 'itc-b10-user2'),
    undefined,
    'user2 is linked to nothing',
  );
});

linkTest('user link refused for an IdP user of another tenant, and while the tenant is not linked', async (env) => {
  const t = env.tenant('wt');
  const other = env.tenant('wt2');
  await env.linkTenant('wt');
  const { browser } = await env.psaLogin(t.staff);
  const res = await env.enableUser(browser, other.user);
  assert.equal(res.status, 403, `an IdP user of another tenant is refused: ${res.url}`);
  assert.deepEqual(await env.userLinks('wt'), [], 'nothing stored');
  assert.equal((await env.status(browser)).session, false);

  const n = env.tenant('nl');
  const staff = await env.psaLogin(n.staff);
  const page = await env.settings(staff.browser);
  assert.match(textOf(page.body, 'user-state'), /administrator must turn on/i, 'My Settings says the tenant is off');
  assert.equal(formsTo(page.body, '/_sso/user/enable').length, 0);
  const forged = await env.post(staff.browser, '/_sso/user/enable');
  assert.equal(forged.status, 409, 'POST /_sso/user/enable while the tenant is not linked');
  assert.equal(forged.history.length, 1, 'without a trip to the IdP');
  assert.deepEqual(await env.userLinks('nl'), []);
});

// Review rtL F2: a link used to take whatever IdP session the browser held (no IdP page at all), so the
// admin who just turned the tenant on with the master account linked their own PSA user to it.
linkTest('B5 after B1 in one browser: the IdP asks for a sign-in again, and the account signed in there is linked', async (env) => {
  const t = env.tenant('fr');
  const { browser } = await env.linkTenant('fr'); // the browser's IdP session is the master account's
  const plain = await browser.request(`${env.gwUrl}/_sso/login`);
  const plainAuthorize = new URL(plain.headers.location);
  assert.equal(plainAuthorize.searchParams.get('prompt'), null, 'an SSO login may use the IdP session');
  assert.equal(plainAuthorize.searchParams.get('max_age'), null);

  const page = await env.settings(browser);
  const atIdp = await env.press(browser, page, '/_sso/user/enable');
  const authorize = new URL(atIdp.history[0].location);
  assert.equal(authorize.searchParams.get('prompt'), 'login', 'a link asks the IdP for a sign-in');
  assert.equal(authorize.searchParams.get('max_age'), '0', 'and for one made now');
  const res = await env.atIdp(browser, atIdp, t.user);
  assert.deepEqual(res.steps, ['login-form', 'otp-form'], 'password and TOTP, although the master account was signed in');
  assert.equal(res.callback.status, 302, `linked: ${res.url}`);
  assert.deepEqual(await env.userLinks('fr'), [
    { psa_tenant: 'fr', psa_user: 'fr-admin', idp_tenant: 'itc-fr', idp_sub: 'itc-fr-user' },
  ], 'the PSA user is linked to the account signed in at the IdP, not to the master account');
});

// Review rtL F2, an IdP that does not honour prompt=login / max_age=0: the ID token's auth_time shows it.
linkTest('a link whose ID token has no auth_time, or one from before the link began, is refused', async (env) => {
  const t = env.tenant('fa');
  await env.linkTenant('fa');
  for (const defect of ['no_auth_time', 'old_auth_time']) {
    const { browser } = await env.psaLogin(t.staff);
    await env.control('POST', '/_test/tamper', { defect });
    const { value: res, moved } = await env.measure(() => env.enableUser(browser, t.user));
    assert.equal(res.callback.status, 401, `${defect}: the callback refuses`);
    assert.match(bodyText(res.body), /Sign in again at IT Complete.*nothing was linked/, `${defect}: the page says why`);
    assert.equal(moved['ssogate_logins_total{result="not_fresh"}'], 1, `${defect}: counted (${JSON.stringify(moved)})`);
    const detail = defect === 'no_auth_time' ? 'no_auth_time' : 'auth_time_before_link';
    assert.ok(env.gw.logs.some((l) => l.event === 'login' && l.result === 'not_fresh' && l.detail === detail),
      `${defect}: a login line with result not_fresh, detail ${detail}`);
    assert.deepEqual(await env.userLinks('fa'), [], `${defect}: nothing stored`);
    assert.equal((await env.status(browser)).session, false, `${defect}: no SSO session`);
  }

  const a = env.tenant('fa2');
  const admin = await env.psaLogin(a.admin);
  await env.control('POST', '/_test/tamper', { defect: 'old_auth_time' });
  const tenant = await env.enableTenant(admin.browser, a.master);
  assert.equal(tenant.callback.status, 401, 'a tenant link from an earlier sign-in is refused too');
  assert.equal(await env.tenantLink('fa2'), undefined, 'the tenant stays unlinked');
});

// Review rtL F3: what the PSA said when Enable was pressed is minutes old at the callback.
for (const [name, what, change, label, text] of [
  ['sc', 'made client-portal', { kind: 'client' }, 'client_portal', /Client portal users cannot use Log in with IT Complete/],
  ['si', 'made inactive', { active: false }, 'psa_inactive', /Your PSA user is inactive, so nothing was linked/],
]) {
  linkTest(`B9 at the callback: a user ${what} while at the IdP is not linked`, async (env) => {
    const t = env.tenant(name);
    await env.linkTenant(name);
    const { browser } = await env.psaLogin(t.staff);
    const page = await env.settings(browser);
    const atIdp = await env.press(browser, page, '/_sso/user/enable');
    // A PSA that ends an inactive user's sessions answers "nobody" (psa_caller_changed): this one still
    // names the user, with active false.
    await env.configurePsa({ whoami_reports_inactive: true });
    try {
      await env.patchPsaUser(t.staff, change);
      const { value: res, moved } = await env.measure(() => env.atIdp(browser, atIdp, t.user));
      assert.equal(res.callback.status, 403, 'the callback refuses');
      assert.match(bodyText(res.body), text, 'the page says why');
      assert.equal(moved[`ssogate_links_total{result="${label}"}`], 1, `counted (${JSON.stringify(moved)})`);
      assert.ok(env.gw.logs.some((l) => l.event === 'login' && l.result === label), `a login line with result ${label}`);
    } finally {
      await env.configurePsa({ whoami_reports_inactive: false });
    }
    assert.deepEqual(await env.userLinks(name), [], 'nothing stored');
    assert.equal((await env.status(browser)).session, false, 'no SSO session');
  });
}

linkTest('a user link whose browser is signed in to the PSA as another user by the callback is not made', async (env) => {
  const t = env.tenant('sx');
  await env.linkTenant('sx');
  const { browser } = await env.psaLogin(t.staff);
  const page = await env.settings(browser);
  const atIdp = await env.press(browser, page, '/_sso/user/enable');
  await env.psaLogin(t.staff2, { browser }); // another tab: the PSA session is now staff2's
  const { value: res, moved } = await env.measure(() => env.atIdp(browser, atIdp, t.user));
  assert.equal(res.callback.status, 403, 'the callback refuses');
  assert.match(bodyText(res.body), /no longer names the user who started this/, 'the page says why');
  assert.equal(moved['ssogate_links_total{result="psa_caller_changed"}'], 1, JSON.stringify(moved));
  assert.deepEqual(await env.userLinks('sx'), [], 'neither staff nor staff2 is linked');
  assert.equal((await env.status(browser)).session, false, 'no SSO session');
});

// Review H2: the tenant's link removed (B7, here by an admin) while a user's link login waits on the PSA's
// whoami: the user link cannot be written. The user was told "could not be saved" (500, a store error);
// it is the refusal of a tenant that is off (409), and nothing is linked.
linkTest('a tenant unlinked while a user link login is in flight: the tenant is off, not a store failure', async (env) => {
  const t = env.tenant('gone');
  await env.linkTenant('gone');
  const { browser } = await env.psaLogin(t.staff);
  const page = await env.settings(browser);
  const start = await env.press(browser, page, '/_sso/user/enable');
  await env.configurePsa({ whoami_delay_ms: 3000 });
  await env.psaReset();
  try {
    const link = env.atIdp(browser, start, t.user);
    const asked = async () => (await env.psaLog()).some((d) => d.path === '/api/whoami');
    await harness.waitFor(asked, 10000 * harness.SLOW, 'the link asks the PSA again');
    const removed = await env.admin(['remove-tenant', 'gone']);
    assert.equal(removed.code, 0, `remove-tenant: ${removed.stderr}`);
    const res = await link;
    assert.equal(res.callback.status, 409, `the tenant is off (${res.callback.status})`);
    assert.match(bodyText(res.body), /IT Complete is off for your company/);
    assert.deepEqual(await env.userLinks('gone'), [], 'nothing linked');
    assert.equal((await env.status(browser)).session, false, 'no session');
  } finally {
    await env.configurePsa({ whoami_delay_ms: 0 });
  }
});
