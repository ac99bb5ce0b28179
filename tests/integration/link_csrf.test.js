'use strict';
// Issue 4, link mode: every state-changing endpoint of the gateway is a POST that needs its own origin
// (Origin, or a same-origin Referer) and the CSRF token of My Settings (form field equal to the
// ssogate_csrf cookie, double-submit). A request without them (no Origin, another site's Origin, a wrong
// token, no token, the token of another browser) is refused with 403, counted in
// ssogate_csrf_refused_total, and changes nothing: no trip to the IdP, links and sessions as they were.
//
//   SSOGATE_BUILD_DIR=build-link node --test tests/integration/link_csrf.test.js

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { sharedLinkEnv, bodyText, formsTo } = require('./lib/link-env');
const { parseSetCookies } = require('./lib/oidc-env');

const linkTest = sharedLinkEnv('link_csrf', { tenants: ['cs', 'cs2'] });

const EVIL = 'http://evil.example';

// The refusals every endpoint gets: [what, post options given the victim's and another browser's tokens].
function forgeries(own, other) {
  return [
    ['no Origin, no Referer', { csrf: own, origin: null }],
    ["another site's Origin", { csrf: own, origin: EVIL }],
    ["another site's Referer", { csrf: own, origin: null, referer: `${EVIL}/page` }],
    ['a wrong token', { csrf: crypto.randomBytes(32).toString('base64url') }],
    ['no token', { csrf: null }],
    ["another browser's token", { csrf: other }],
  ];
}

// Sends every forgery of action from browser; asserts each is refused with 403 and no redirect. Resolves
// how many were sent.
async function assertRefused(env, browser, action, own, other) {
  const cases = forgeries(own, other);
  for (const [what, options] of cases) {
    const res = await env.post(browser, action, options);
    assert.equal(res.status, 403, `${action} with ${what}: refused`);
    assert.equal(res.history.length, 1, `${action} with ${what}: no redirect`);
    assert.match(bodyText(res.body), /nothing was changed/i, `${action} with ${what}: the page says nothing changed`);
  }
  return cases.length;
}

linkTest('CSRF: the settings page sets a double-submit token cookie that the forms carry', async (env) => {
  const t = env.tenant('cs2');
  const { browser } = await env.psaLogin(t.admin);
  const page = await env.settings(browser);
  const cookie = parseSetCookies(page.headers['set-cookie']).ssogate_csrf;
  assert.ok(cookie, 'My Settings sets ssogate_csrf');
  assert.match(cookie.value, /^[A-Za-z0-9_-]{43}$/, '256 random bits');
  assert.equal(cookie.attributes.httponly, true, 'HttpOnly');
  assert.equal(String(cookie.attributes.samesite).toLowerCase(), 'strict', 'SameSite=Strict');
  const form = formsTo(page.body, '/_sso/tenant/enable')[0];
  assert.deepEqual(form.fields, [['csrf', cookie.value]], 'the form carries the same token');
  assert.equal(form.method, 'POST');
  const second = await env.settings(browser);
  assert.equal(parseSetCookies(second.headers['set-cookie']).ssogate_csrf, undefined, 'the token is kept while the cookie is');
  assert.deepEqual(formsTo(second.body, '/_sso/tenant/enable')[0].fields, [['csrf', cookie.value]]);
});

linkTest('CSRF: forged POST /_sso/tenant/enable refused, no login started, nothing linked', async (env) => {
  const t = env.tenant('cs2');
  const { browser } = await env.psaLogin(t.admin);
  await env.settings(browser);
  const own = browser.jar.get('ssogate_csrf');
  const other = await env.psaLogin(env.tenant('cs').staff);
  await env.settings(other.browser);
  const otherToken = other.browser.jar.get('ssogate_csrf');
  assert.ok(own && otherToken && own !== otherToken, 'two browsers, two tokens');

  const before = await env.counterSum('ssogate_csrf_refused_total');
  const { value: sent, moved } = await env.measure(() => assertRefused(env, browser, '/_sso/tenant/enable', own, otherToken));
  assert.equal((await env.counterSum('ssogate_csrf_refused_total')) - before, sent, 'each refusal counted');
  assert.equal(moved['ssogate_logins_total{result="started"}'], undefined, 'no login started');
  assert.equal(await env.tenantLink('cs2'), undefined, 'nothing linked');

  // Without the cookie, the right-looking field is not enough either.
  browser.jar.delete('ssogate_csrf');
  const noCookie = await env.post(browser, '/_sso/tenant/enable', { csrf: own });
  assert.equal(noCookie.status, 403, 'a token field without its cookie is refused');

  // The genuine request, with a same-origin Referer instead of Origin, is accepted (sent to the IdP).
  const page = await env.settings(browser);
  const token = browser.jar.get('ssogate_csrf');
  const ok = await env.post(browser, '/_sso/tenant/enable', { csrf: token, origin: null, referer: page.url });
  assert.equal(ok.history[0].status, 303, 'the genuine POST is accepted');
  assert.equal(new URL(ok.history[0].location).origin, new URL(env.issuer).origin, 'and goes to the IdP');
});

linkTest('CSRF: forged disable requests refused: tenant link, user link and SSO session kept', async (env) => {
  const t = env.tenant('cs');
  const admin = await env.linkTenant('cs');
  const staff = await env.linkUser(t.staff, t.user);
  await env.settings(staff.browser);
  const stranger = await env.psaLogin(env.tenant('cs2').staff);
  await env.settings(stranger.browser);
  const strangerToken = stranger.browser.jar.get('ssogate_csrf');
  const storeBefore = await env.exportLinks();

  const before = await env.counterSum('ssogate_csrf_refused_total');
  let sent = await assertRefused(env, admin.browser, '/_sso/tenant/disable', admin.browser.jar.get('ssogate_csrf'), strangerToken);
  sent += await assertRefused(env, staff.browser, '/_sso/user/disable', staff.browser.jar.get('ssogate_csrf'), strangerToken);
  assert.equal((await env.counterSum('ssogate_csrf_refused_total')) - before, sent, 'each refusal counted');
  assert.deepEqual(await env.exportLinks(), storeBefore, 'the store is unchanged');
  assert.equal((await env.status(staff.browser)).session, true, 'the SSO session is kept');

  // Signing out of the gateway is a state change too: refused from another site.
  const logout = await staff.browser.navigate(`${env.gwUrl}/_sso/logout`, {
    method: 'POST',
    form: [['x', '1']],
    headers: { origin: EVIL },
  });
  assert.equal(logout.status, 403, 'POST /_sso/logout from another site');
  assert.equal((await env.status(staff.browser)).session, true, 'the SSO session is kept');

  // The genuine button still works.
  const page = await env.settings(staff.browser);
  const res = await env.press(staff.browser, page, '/_sso/user/disable');
  assert.equal(res.history[0].location, '/_sso/settings?done=user_unlinked', 'the genuine Disable works');
  assert.deepEqual(await env.userLinks('cs'), []);
});
