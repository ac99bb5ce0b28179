'use strict';
// Issue 13, "Stricter PSAs": psa.whoami.at_login against a stub PSA whose whoami answers its own native
// sessions only (whoami_native_only). "assertion" (the default) asks whoami with the new session's
// assertion, so that PSA refuses every SSO login; "link" decides from the user's kind and active flag kept
// with the user link (written at link time, refreshed by My Settings) without asking the PSA; "skip" does no
// check at login. To make the kept facts say "inactive", the PSA user is made inactive while a native
// session of theirs is open and the PSA's whoami keeps answering that session with active: false
// (whoami_reports_inactive); My Settings, opened with that session, refreshes the facts.
//
//   SSOGATE_BUILD_DIR=$PWD/build SSOGATE_SOURCE_DIR=$PWD node --test tests/integration/link_whoami_modes.test.js

const assert = require('node:assert/strict');
const harness = require('./lib/harness');
const { sharedLinkEnv } = require('./lib/link-env');

const linkTest = sharedLinkEnv('link_whoami_modes', { tenants: ['as', 'lk', 'in'] });

const WHOAMI = '/api/whoami';

// Sets the stub PSA's whoami test controls (both, every time: the tests share one PSA).
async function psaWhoami(env, { nativeOnly = true, reportsInactive = false } = {}) {
  const body = JSON.stringify({ whoami_native_only: nativeOnly, whoami_reports_inactive: reportsInactive });
  const res = await harness.request(env.psa, {
    method: 'POST',
    path: '/__psa/config',
    headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    body,
  });
  assert.equal(res.status, 200, `POST /__psa/config: ${res.body}`);
}

// Restarts the gateway (same port, same store) with psa.whoami.at_login set to mode, when it is not already.
async function atLogin(env, mode) {
  if (env.config.psa.whoami.at_login === mode) {
    return;
  }
  await env.stopGateway();
  env.config.psa.whoami = { ...env.config.psa.whoami, at_login: mode };
  env.h.writeConfig(env.config);
  await env.startGateway();
}

// Asserts that an SSO login (env.ssoLogin's answer) was signed in as the PSA user.
async function assertSignedIn(env, res, user, what) {
  assert.equal(res.callback.status, 302, `${what}: the callback signs in (${res.callback.status})`);
  assert.equal(res.status, 200, `${what}: lands on a page`);
  assert.equal(new URL(res.url).pathname, '/', `${what}: on the PSA home`);
  const status = await env.status(res.browser);
  assert.equal(status.session, true, `${what}: an SSO session`);
  assert.equal(status.psa_user, user.id, `${what}: as ${user.id}`);
}

// Asserts that an SSO login was refused with the page titled title, and left no session.
async function assertRefused(env, res, title, what) {
  assert.equal(res.callback.status, 403, `${what}: the callback refuses`);
  assert.equal(res.status, 403, `${what}: the refusal page is shown`);
  assert.ok(res.body.includes(title), `${what}: the page says "${title}"`);
  assert.equal(res.browser.jar.get('ssogate'), undefined, `${what}: no ssogate cookie`);
  assert.equal((await env.status(res.browser)).session, false, `${what}: no SSO session`);
}

// The whoami calls the PSA saw since its log was last reset.
async function whoamiCalls(env) {
  return (await env.psaLog()).filter((d) => d.path === WHOAMI);
}

// An SSO login of account (env.ssoLogin) that must not ask the PSA's whoami: asserted on the PSA's log of the
// login alone (/_sso/status, used by the checks afterwards, asks whoami itself). Resolves the login's answer.
async function loginUnasked(env, account, what) {
  await env.psaReset();
  const res = await env.ssoLogin(account);
  assert.deepEqual(await whoamiCalls(env), [], `${what}: the PSA was not asked whoami at login`);
  return res;
}

linkTest('assertion (default): a PSA that answers whoami for native sessions only refuses every SSO login', async (env) => {
  await psaWhoami(env);
  await atLogin(env, 'assertion');
  const t = env.tenant('as');
  // Linking still works: My Settings asks whoami with the native session.
  await env.linkTenant('as');
  await env.linkUser(t.staff, t.user);

  await env.psaReset();
  const res = await env.ssoLogin(t.user);
  await assertRefused(env, res, 'The PSA did not accept this account', 'assertion mode');
  const calls = await whoamiCalls(env);
  assert.ok(
    calls.some((d) => d.method === 'assertion' && !d.ok && d.reason === 'whoami_native_only' && d.user === t.staff.id),
    `the gateway asked whoami with the assertion and the PSA refused it: ${JSON.stringify(calls)}`,
  );
});

linkTest('link: the SSO login is decided from the facts kept with the link, without asking the PSA', async (env) => {
  await psaWhoami(env);
  await atLogin(env, 'link');
  const t = env.tenant('lk');
  await env.linkTenant('lk');
  await env.linkUser(t.staff, t.user);

  await assertSignedIn(env, await loginUnasked(env, t.user, 'link mode'), t.staff, 'link mode');

  // A link made before facts were kept (here by the operator's import, which keeps none) counts as staff
  // and active.
  const imported = await env.admin(['import', '-'], {
    input: JSON.stringify({ user_links: [{ psa_tenant: 'lk', psa_user: t.staff2.id, idp_tenant: t.idp, idp_sub: t.user2.sub }] }),
  });
  assert.equal(imported.code, 0, `ssogate-admin import: ${imported.stderr}`);
  await assertSignedIn(env, await loginUnasked(env, t.user2, 'no facts'), t.staff2, 'link mode, a link without facts');
});

linkTest('link: My Settings refreshes the kept facts, an inactive or client-portal user is refused; skip lets them in', async (env) => {
  await psaWhoami(env, { reportsInactive: true });
  await atLogin(env, 'link');
  const t = env.tenant('in');
  await env.linkTenant('in');
  await env.linkUser(t.staff, t.user);
  // A native PSA session of the user, without SSO session: whoami answers it.
  const { browser: native } = await env.psaLogin(t.staff);
  await assertSignedIn(env, await env.ssoLogin(t.user), t.staff, 'link mode, active');

  // The PSA disables the user; the user opens My Settings with the native session: the facts say inactive.
  await env.patchPsaUser(t.staff, { active: false });
  await env.psaReset();
  const settings = await env.settings(native);
  assert.equal(settings.status, 200, 'My Settings with the native session');
  assert.ok(
    (await whoamiCalls(env)).some((d) => d.method === 'session' && d.ok && d.user === t.staff.id),
    'My Settings asked whoami with the native session',
  );
  const inactive = await loginUnasked(env, t.user, 'link mode, inactive');
  await assertRefused(env, inactive, 'The PSA did not accept this account', 'link mode, inactive');

  // The facts survive a restart (they are in the store), and skip mode does not read them.
  await atLogin(env, 'skip');
  // The gateway signs the user in; the PSA itself still refuses the assertion of its inactive user.
  const skipped = await loginUnasked(env, t.user, 'skip mode');
  assert.equal(skipped.callback.status, 302, 'skip mode, inactive: the callback signs in');
  assert.equal(skipped.callback.headers.location, '/', 'skip mode, inactive: to the PSA home');
  assert.equal(skipped.status, 401, 'skip mode, inactive: the PSA refuses the assertion of its inactive user');
  const skippedStatus = await env.status(skipped.browser);
  assert.equal(skippedStatus.session, true, 'skip mode, inactive: an SSO session');
  assert.equal(skippedStatus.psa_user, t.staff.id, 'skip mode, inactive: as its PSA user');

  // Active again, seen by My Settings: link mode lets the user in again.
  await atLogin(env, 'link');
  await env.patchPsaUser(t.staff, { active: true });
  assert.equal((await env.settings(native)).status, 200, 'My Settings with the native session');
  await assertSignedIn(env, await loginUnasked(env, t.user, 'active again'), t.staff, 'link mode, active again');

  // A client-portal user (B9), seen by My Settings, is refused too.
  await env.patchPsaUser(t.staff, { kind: 'client' });
  assert.equal((await env.settings(native)).status, 200, 'My Settings with the native session');
  const portal = await loginUnasked(env, t.user, 'link mode, client portal');
  await assertRefused(env, portal, 'Not available for client portal users', 'link mode, client portal');
});
