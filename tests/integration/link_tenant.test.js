'use strict';
// Issue 4, link mode, the tenant switch end to end through the gateway, the real IdP (oidc-provider) and the
// stub PSA: B1 (an admin links the PSA tenant with a master account and 2FA), B2 (module URL of another
// region refused, naming the expected URL), B4 (an IdP tenant already mapped), B7 (the switch off ends
// every user link and SSO session of the tenant), two admins racing for one IdP tenant, and kill -9 right
// after a link succeeded. Each test asserts what the user sees and what the store holds (ssogate-admin
// export). Tests use tenants of their own, so they share one set of processes.
//
//   SSOGATE_BUILD_DIR=build-link node --test tests/integration/link_tenant.test.js

const assert = require('node:assert/strict');
const { sharedLinkEnv, textOf, bodyText, formsTo, US_MODULE_URL } = require('./lib/link-env');

const linkTest = sharedLinkEnv('link_tenant', {
  tenants: ['b1', 'b2', 'b4a', 'b4b', 'b7', 'b7x', 'ra', 'rb', 'rc', 'k9', 'dm'],
});

linkTest('B1: an admin turns IT Complete on: master account + TOTP at the IdP, PSA tenant linked', async (env) => {
  const t = env.tenant('b1');
  const { browser } = await env.psaLogin(t.admin);
  const page = await env.settings(browser);
  assert.equal(page.status, 200, 'My Settings for a PSA admin');
  assert.match(textOf(page.body, 'tenant-state'), /\bOff\b/, 'the switch shows Off');
  assert.equal(await env.tenantLink('b1'), undefined, 'no tenant link before');

  const { value: res, moved } = await env.measure(async () => {
    const atIdp = await env.press(browser, page, '/_sso/tenant/enable');
    assert.equal(atIdp.history[0].status, 303, 'POST /_sso/tenant/enable answers 303');
    assert.equal(new URL(atIdp.history[0].location).origin, new URL(env.issuer).origin, 'to the IdP');
    return env.atIdp(browser, atIdp, t.master);
  });
  assert.deepEqual(res.steps, ['login-form', 'otp-form'], 'the IdP asked for the password and the TOTP code');
  assert.equal(res.callback.status, 302, 'the callback redirects');
  assert.equal(res.callback.headers.location, '/_sso/settings?done=tenant_linked');
  assert.equal(res.status, 200, 'My Settings after the link');
  assert.match(textOf(res.body, 'tenant-state'), /\bOn\b/, 'the switch now shows On');
  assert.match(textOf(res.body, 'tenant-state'), /itc-b1/, 'naming the IdP tenant');
  assert.equal(formsTo(res.body, '/_sso/tenant/disable').length, 1, 'and offers to turn it off');
  assert.equal(formsTo(res.body, '/_sso/user/enable').length, 1, 'users of the tenant can now enable their login');

  assert.deepEqual(await env.tenantLink('b1'), { psa_tenant: 'b1', idp_tenant: 'itc-b1' }, 'the store holds the link');
  assert.deepEqual(await env.userLinks('b1'), [], 'and no user link');
  const status = await env.status(browser);
  assert.equal(status.tenant_linked, true);
  assert.equal(status.linked_idp_tenant, 'itc-b1');
  assert.equal(status.session, false, 'linking a tenant opens no SSO session');
  assert.equal(moved['ssogate_links_total{result="linked"}'], 1, `links_total{linked} moved: ${JSON.stringify(moved)}`);
});

linkTest('B1: only a PSA admin may turn it on, and only with an IdP master account', async (env) => {
  // On b7x, which no test has linked yet (B7 links it later).
  const x = env.tenant('b7x');

  const staff = await env.psaLogin(x.staff);
  const staffPage = await env.settings(staff.browser);
  assert.equal(staffPage.status, 200);
  assert.equal(textOf(staffPage.body, 'tenant-state'), undefined, 'no tenant switch for a non-admin');
  const refused = await env.post(staff.browser, '/_sso/tenant/enable');
  assert.equal(refused.status, 403, 'a non-admin POST /_sso/tenant/enable is refused');
  assert.equal(refused.history.length, 1, 'without a trip to the IdP');

  const admin = await env.psaLogin(x.admin);
  const res = await env.enableTenant(admin.browser, x.user);
  assert.equal(res.callback.status, 403, 'a non-master IdP account is refused');
  assert.match(res.body, /master account/i, 'the page says a master account is needed');
  assert.equal(await env.tenantLink('b7x'), undefined, 'nothing stored');
});

// The IdP tenant's PSA (bms) module URL is the UK region's; another module's names the US one, which must
// not count.
linkTest('B2: a module URL of another region is refused with a page naming the expected URL', async (env) => {
  const t = env.tenant('b2');
  const { browser } = await env.psaLogin(t.admin);
  const { value: res, moved } = await env.measure(() => env.enableTenant(browser, env.MASTER_EMEA));
  assert.deepEqual(res.steps, ['login-form', 'otp-form']);
  assert.equal(res.status, 403, `refused: ${res.url}`);
  assert.ok(res.body.includes(US_MODULE_URL), `the page names ${US_MODULE_URL}`);
  assert.match(res.body, /module URL/i, 'and says what is wrong');
  assert.equal(await env.tenantLink('b2'), undefined, 'nothing stored');
  assert.equal(
    (await env.exportLinks()).tenant_links.find((l) => l.idp_tenant === 'itc-emea'),
    undefined,
    'the EMEA IdP tenant is linked to nothing',
  );
  assert.equal(moved['ssogate_links_total{result="module_url_mismatch"}'], 1, JSON.stringify(moved));
  const page = await env.settings(browser);
  assert.match(textOf(page.body, 'tenant-state'), /\bOff\b/, 'the switch still shows Off');
});

linkTest('B4: an IdP tenant already mapped to another PSA tenant gives "already mapped"', async (env) => {
  const a = env.tenant('b4a');
  const b = env.tenant('b4b');
  await env.linkTenant('b4a');

  const { browser } = await env.psaLogin(b.admin);
  const { value: res, moved } = await env.measure(() => env.enableTenant(browser, a.master));
  assert.equal(res.status, 409, `refused: ${res.url}`);
  assert.match(res.body, /already mapped/i, 'the "already mapped" page');
  assert.equal(moved['ssogate_links_total{result="already_mapped"}'], 1, JSON.stringify(moved));
  const links = (await env.exportLinks()).tenant_links;
  assert.deepEqual(links.filter((l) => l.idp_tenant === 'itc-b4a'), [{ psa_tenant: 'b4a', idp_tenant: 'itc-b4a' }]);
  assert.equal(links.find((l) => l.psa_tenant === 'b4b'), undefined, 'b4b stays unlinked');
  assert.match(textOf((await env.settings(browser)).body, 'tenant-state'), /\bOff\b/);

  // One PSA tenant links to one IdP tenant at a time: b4a's admin asking again, even signing in to
  // another IdP tenant's master account, leaves its link as it was.
  const admin = await env.psaLogin(a.admin);
  let again = await env.post(admin.browser, '/_sso/tenant/enable');
  if (new URL(again.url).origin === new URL(env.issuer).origin) {
    again = await env.atIdp(admin.browser, again, b.master);
  }
  assert.ok(again.status < 500, `no server error: ${again.status}`);
  const after = (await env.exportLinks()).tenant_links;
  assert.deepEqual(after.filter((l) => l.psa_tenant === 'b4a'), [{ psa_tenant: 'b4a', idp_tenant: 'itc-b4a' }]);
  assert.equal(after.find((l) => l.idp_tenant === 'itc-b4b'), undefined, 'itc-b4b stays unlinked');
});

linkTest('B7: the admin turns it off: tenant link, every user link and their SSO sessions gone at once', async (env) => {
  const t = env.tenant('b7');
  const x = env.tenant('b7x');
  const admin = await env.linkTenant('b7');
  const staff = await env.linkUser(t.staff, t.user);
  const staff2 = await env.linkUser(t.staff2, t.user2);
  const ssoOnly = await env.ssoLogin(t.user); // a second SSO session of user@b7, in another browser
  assert.equal(new URL(ssoOnly.url).pathname, '/', 'IT Complete login of a linked user');
  await env.linkTenant('b7x');
  const control = await env.linkUser(x.staff, x.user);
  assert.equal((await env.userLinks('b7')).length, 2, 'two user links before');
  for (const b of [staff.browser, staff2.browser, ssoOnly.browser, control.browser]) {
    assert.equal((await env.status(b)).session, true, 'an SSO session before');
  }

  const page = await env.settings(admin.browser);
  const { value: res, moved } = await env.measure(() => env.press(admin.browser, page, '/_sso/tenant/disable'));
  assert.equal(res.history[0].status, 303);
  assert.equal(res.history[0].location, '/_sso/settings?done=tenant_unlinked');
  assert.equal(res.status, 200);
  assert.match(textOf(res.body, 'tenant-state'), /\bOff\b/, 'the switch shows Off');
  assert.equal(moved['ssogate_links_total{result="tenant_unlinked"}'], 1, JSON.stringify(moved));

  assert.equal(await env.tenantLink('b7'), undefined, 'the tenant link is gone');
  assert.deepEqual(await env.userLinks('b7'), [], 'every user link of the tenant is gone');
  for (const b of [staff.browser, staff2.browser, ssoOnly.browser]) {
    assert.equal((await env.status(b)).session, false, 'their SSO sessions are gone');
  }
  // The browser that had only the SSO session now reaches the PSA as nobody.
  await env.psaReset();
  const home = await ssoOnly.browser.request(`${env.gwUrl}/`);
  assert.equal(home.status, 302, 'the PSA sends an anonymous visitor to its login');
  assert.ok(!(await env.psaLog()).some((d) => d.method === 'assertion'), 'no identity reached the PSA');
  const retry = await env.ssoLogin(t.user);
  assert.equal(new URL(retry.url).pathname, '/login', 'IT Complete login now ends on the PSA login page');
  assert.equal(new URL(retry.url).searchParams.get('sso_notice'), 'not_linked');

  assert.deepEqual(await env.tenantLink('b7x'), { psa_tenant: 'b7x', idp_tenant: 'itc-b7x' }, 'another tenant keeps its link');
  assert.equal((await env.userLinks('b7x')).length, 1, 'and its user link');
  assert.equal((await env.status(control.browser)).session, true, 'and its user keeps the SSO session');
});

linkTest('race: two admins link the same IdP tenant at once: exactly one wins, the other sees "already mapped"', async (env) => {
  const target = env.tenant('rc');
  const admins = [await env.psaLogin(env.tenant('ra').admin), await env.psaLogin(env.tenant('rb').admin)];
  const held = [];
  for (const { browser } of admins) {
    const page = await env.settings(browser);
    const atIdp = await env.press(browser, page, '/_sso/tenant/enable');
    browser.holdCallback = true;
    try {
      await env.atIdp(browser, atIdp, target.master);
    } finally {
      browser.holdCallback = false;
    }
    assert.ok(browser.heldCallback, 'the IdP redirected to the gateway callback');
    held.push(browser.heldCallback);
  }
  const results = await Promise.all(admins.map(({ browser }, i) => browser.navigate(held[i])));
  const wins = results.filter((r) => r.status === 200 && new URL(r.url).search === '?done=tenant_linked');
  const losses = results.filter((r) => r.status === 409 && /already mapped/i.test(r.body));
  assert.equal(wins.length, 1, `one wins: ${results.map((r) => `${r.status} ${r.url}`).join(', ')}`);
  assert.equal(losses.length, 1, 'the other sees "already mapped"');

  const winner = results[0] === wins[0] ? 'ra' : 'rb';
  const loser = winner === 'ra' ? 'rb' : 'ra';
  const links = (await env.exportLinks()).tenant_links;
  assert.deepEqual(links.filter((l) => l.idp_tenant === 'itc-rc'), [{ psa_tenant: winner, idp_tenant: 'itc-rc' }]);
  assert.equal(links.find((l) => l.psa_tenant === loser), undefined, `${loser} stays unlinked`);
});

// Last of the file: it replaces the gateway process.
linkTest('kill -9 right after a link succeeded: after a restart the links and the session are there', async (env) => {
  const t = env.tenant('k9');
  const admin = await env.linkTenant('k9');
  const staff = await env.linkUser(t.staff, t.user);
  await env.stopGateway({ kill: true });
  await env.startGateway();

  assert.deepEqual(await env.tenantLink('k9'), { psa_tenant: 'k9', idp_tenant: 'itc-k9' }, 'the tenant link survived');
  assert.deepEqual(await env.userLinks('k9'), [
    { psa_tenant: 'k9', psa_user: 'k9-staff', idp_tenant: 'itc-k9', idp_sub: 'itc-k9-user' },
  ], 'the user link survived');
  assert.match(textOf((await env.settings(admin.browser)).body, 'tenant-state'), /\bOn\b/, 'My Settings shows On');
  const status = await env.status(staff.browser);
  assert.equal(status.session, true, 'the SSO session survived');
  assert.equal(status.psa_user, 'k9-staff');
  const login = await env.ssoLogin(t.user);
  assert.equal(new URL(login.url).pathname, '/', 'IT Complete login works after the restart');
  assert.equal(textOf(login.body, 'auth-method'), 'IT Complete');
});

// Review rtL F3: the admin flag checked when "Turn IT Complete on" was pressed is minutes old at the callback.
linkTest('B1 at the callback: an admin demoted while at the IdP does not turn IT Complete on', async (env) => {
  const t = env.tenant('dm');
  const { browser } = await env.psaLogin(t.admin);
  const page = await env.settings(browser);
  const atIdp = await env.press(browser, page, '/_sso/tenant/enable');
  await env.patchPsaUser(t.admin, { admin: false });
  const { value: res, moved } = await env.measure(() => env.atIdp(browser, atIdp, t.master));
  assert.deepEqual(res.steps, ['login-form', 'otp-form']);
  assert.equal(res.callback.status, 403, 'the callback refuses');
  assert.match(bodyText(res.body), /Only a PSA administrator can turn IT Complete on/, 'the page says why');
  assert.equal(moved['ssogate_links_total{result="not_admin"}'], 1, JSON.stringify(moved));
  assert.ok(env.gw.logs.some((l) => l.event === 'login' && l.result === 'not_admin'), 'a login line with result not_admin');
  assert.equal(await env.tenantLink('dm'), undefined, 'the tenant stays unlinked');
  assert.equal(
    (await env.exportLinks()).tenant_links.find((l) => l.idp_tenant === 'itc-dm'),
    undefined,
    'its IdP tenant is linked to nothing',
  );
});
