'use strict';
// Issue 5: the article's walkthrough in a real browser. Debian's chromium, driven headless by
// playwright-core (no downloaded browser), against the demo's set of processes on free loopback ports
// (./env.js): the real IdP with the demo's accounts, the stub PSA with the demo's data and ssogate in link
// mode. The steps run in the article's order, each asserting what is on the page and saving a PNG under
// $SSOGATE_BUILD_DIR/screenshots/NN-name.png (build/screenshots without it). Once a step fails, the
// later ones are skipped (they build on it), unless it is marked independent.
// SSOGATE_WALKTHROUGH_STORE=postgresql runs the same steps with the gateway on the PostgreSQL store
// (issue 11; see ./env.js); its screenshots go to $SSOGATE_BUILD_DIR/screenshots-postgresql.
//
//   SSOGATE_BUILD_DIR=build-browser node --test tests/browser/walkthrough.test.js
//   meson test -C build-browser browser_walkthrough browser_walkthrough_pg

const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { test, before, after } = require('node:test');
const { chromium } = require('playwright-core');
const { Harness, SOURCE_DIR, SLOW } = require('../integration/lib/harness');
const { startDemoEnv, walkthroughStore } = require('./env');

const CHROMIUM = process.env.SSOGATE_CHROMIUM || '/usr/bin/chromium';
const BUILD_DIR = process.env.SSOGATE_BUILD_DIR || path.join(SOURCE_DIR, 'build');
const STORE = walkthroughStore();
const SHOT_DIR = path.join(BUILD_DIR, STORE === 'lmdb' ? 'screenshots' : `screenshots-${STORE}`);
const WAIT_MS = 15000 * SLOW;
const STEP_TIMEOUT_MS = 90000 * SLOW;
const PASSWORD = 'demo';

// The demo's PSA users (tests/stub/psa/demo-data.json) the walkthrough signs in as.
const ADMIN_ACME = { tenant: 'acme', login: 'admin@acme', name: 'Alice Admin' };
const ADMIN_GLOBEX = { tenant: 'globex', login: 'admin@globex', name: 'Grace Admin' };
const BOB = { tenant: 'acme', login: 'bob@acme', name: 'Bob Technician' };
const CAROL = { tenant: 'acme', login: 'carol@client.acme', name: 'Carol Client' };

const state = { h: undefined, env: undefined, browser: undefined, failed: false, shots: 0, contexts: {} };

// The base64 SHA-256 of the certificate's public key, as Chromium's --ignore-certificate-errors-spki-list
// wants it: the browser then accepts the IdP's certificate (made by the test CA) and no other bad one.
function spkiHash(certFile) {
  const cert = new crypto.X509Certificate(fs.readFileSync(certFile));
  const der = cert.publicKey.export({ type: 'spki', format: 'der' });
  return crypto.createHash('sha256').update(der).digest('base64');
}

// The current code of an IdP demo account, the way a demo user gets it: demo/totp ACCOUNT.
function totpCode(account) {
  const out = childProcess.execFileSync(path.join(SOURCE_DIR, 'demo', 'totp'), [account], {
    encoding: 'utf8',
    timeout: 10000 * SLOW,
  });
  const code = out.trim();
  assert.match(code, /^\d{6}$/, `demo/totp ${account} prints a 6-digit code`);
  return code;
}

// A new browser context: its own cookies, so its own PSA, gateway and IdP sessions.
async function newPage(name) {
  const context = await state.browser.newContext({ viewport: { width: 1024, height: 720 }, locale: 'en-US' });
  context.setDefaultTimeout(WAIT_MS);
  context.setDefaultNavigationTimeout(WAIT_MS);
  state.contexts[name] = context;
  return context.newPage();
}

// Saves a full-page PNG as NN-name.png; returns its path.
async function shot(page, name) {
  state.shots += 1;
  const file = path.join(SHOT_DIR, `${String(state.shots).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

// The visible text of the first element matching selector, whitespace collapsed.
async function textOf(page, selector) {
  const text = await page.locator(selector).first().innerText({ timeout: WAIT_MS });
  return text.replace(/\s+/g, ' ').trim();
}

function pathOf(page) {
  return new URL(page.url()).pathname;
}

// Presses Tab (at most 30 times) until the button named name has the keyboard focus, as a keyboard user
// would reach it; fails when it never does.
async function tabTo(page, name) {
  for (let i = 0; i < 30; i++) {
    await page.keyboard.press('Tab');
    const focused = await page.evaluate(() => {
      const el = document.activeElement;
      return el && el.tagName === 'BUTTON' ? el.textContent.trim() : null;
    });
    if (focused === name) {
      return;
    }
  }
  assert.fail(`the button "${name}" is not reachable with Tab`);
}

// Signs in to the PSA with its own form (through the gateway); asserts that it lands on the PSA home
// (or client portal) of user.
async function psaLogin(page, user, shotName) {
  await page.goto(`${state.env.gwUrl}/login`);
  await page.selectOption('#tenant', user.tenant);
  await page.fill('#login', user.login);
  await page.fill('#password', PASSWORD);
  if (shotName) {
    await shot(page, shotName);
  }
  await Promise.all([page.waitForURL((url) => url.pathname !== '/login'), page.click('#psa-login-form button[type=submit]')]);
  assert.equal(pathOf(page), '/');
  assert.equal(await textOf(page, '#welcome'), `Welcome, ${user.name}`);
}

// Runs trigger (the click that leaves for the IdP), then, at the IdP's pages, fills the password form and
// the TOTP form, each when it is shown (an IdP session that is already open skips them), and waits until
// the browser is back on the gateway. shotPrefix names the screenshots of the forms, filled in.
async function idpLogin(page, account, shotPrefix, trigger) {
  const issuerOrigin = new URL(state.env.issuer).origin;
  const start = page.url();
  await Promise.all([
    page.waitForURL((url) => url.href !== start && (url.origin === issuerOrigin || url.origin === state.env.gwUrl)),
    trigger(),
  ]);
  if (new URL(page.url()).origin !== issuerOrigin) {
    return;
  }
  await page.locator('#login-form, #otp-form').first().waitFor();
  if ((await page.locator('#login-form').count()) > 0) {
    await page.fill('#login', account);
    await page.fill('#password', PASSWORD);
    if (shotPrefix) {
      await shot(page, `${shotPrefix}-idp-password`);
    }
    await page.click('#login-form button[type=submit]');
    // Next comes the TOTP form, or (an account the IdP refuses) the way back to the gateway.
    const settled = (wait) => wait.then(() => true, () => false);
    const moved = await Promise.race([
      settled(page.locator('#otp-form').waitFor()),
      settled(page.waitForURL((url) => url.origin === state.env.gwUrl)),
    ]);
    assert.ok(moved, `after the password of ${account}: neither the TOTP form nor the gateway`);
  }
  if (new URL(page.url()).origin === issuerOrigin && (await page.locator('#otp-form').count()) > 0) {
    await page.fill('#code', totpCode(account));
    if (shotPrefix) {
      await shot(page, `${shotPrefix}-idp-code`);
    }
    await page.click('#otp-form button[type=submit]');
  }
  await page.waitForURL((url) => url.origin === state.env.gwUrl, { waitUntil: 'load' });
}

// Declares one step of the walkthrough; skipped once an earlier step failed that later ones build on.
// With {independent: true}, a failure of this step does not skip the later ones (they do not need it).
function step(name, options, fn) {
  if (typeof options === 'function') {
    fn = options;
    options = {};
  }
  test(name, { timeout: STEP_TIMEOUT_MS }, async (t) => {
    if (state.failed) {
      t.skip('an earlier step failed');
      return;
    }
    assert.ok(state.browser, 'the browser and the demo processes started');
    try {
      await fn(t);
    } catch (err) {
      state.failed = !options.independent;
      throw err;
    }
  });
}

before(async () => {
  fs.mkdirSync(SHOT_DIR, { recursive: true });
  for (const file of fs.readdirSync(SHOT_DIR)) {
    if (/^\d\d-.*\.png$/.test(file)) {
      fs.rmSync(path.join(SHOT_DIR, file));
    }
  }
  state.h = new Harness(STORE === 'lmdb' ? 'browser_walkthrough' : `browser_walkthrough_${STORE}`);
  try {
    state.env = await startDemoEnv(state.h);
    state.browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: 30000 * SLOW,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        `--ignore-certificate-errors-spki-list=${spkiHash(state.env.idpCertFile)}`,
      ],
    });
  } catch (err) {
    state.failed = true;
    state.h.dump();
    throw err;
  }
});

after(async () => {
  if (state.browser) {
    await state.browser.close().catch(() => {});
  }
  if (state.h === undefined) {
    return;
  }
  const problems = await state.h.stopAll();
  if (state.failed || problems.length > 0) {
    state.h.dump();
  } else {
    state.h.removeDir();
  }
  assert.deepEqual(problems, [], 'the gateway stopped cleanly');
});

step('an admin signs in to the PSA with a password', async () => {
  const page = await newPage('admin');
  await psaLogin(page, ADMIN_ACME, 'admin-psa-login');
  assert.equal(await textOf(page, '#auth-method'), 'password');
  await shot(page, 'admin-psa-home');
});

step('My Settings shows the IT Complete switch off', async () => {
  const page = state.contexts.admin.pages()[0];
  await page.click('#my-settings');
  await page.waitForURL((url) => url.pathname === '/_sso/settings');
  assert.equal(await page.title(), 'My Settings');
  assert.match(await textOf(page, '#tenant-state'), /\bOff\b/);
  assert.match(await textOf(page, '#user-state'), /administrator must turn on IT Complete/i);
  await page.getByRole('button', { name: 'Turn IT Complete on' }).waitFor();
  await shot(page, 'admin-settings-off');
});

step('B1: "Turn IT Complete on", master@acme and a TOTP code at the IdP, back on My Settings: On', async () => {
  const page = state.contexts.admin.pages()[0];
  await idpLogin(page, 'master@acme', 'admin-tenant-on', () =>
    page.getByRole('button', { name: 'Turn IT Complete on' }).click());
  assert.equal(pathOf(page), '/_sso/settings');
  assert.equal(new URL(page.url()).searchParams.get('done'), 'tenant_linked');
  assert.match(await textOf(page, '[role=status]'), /IT Complete is now on/);
  assert.match(await textOf(page, '#tenant-state'), /\bOn\b.*itc-acme/);
  await page.getByRole('button', { name: 'Turn IT Complete off' }).waitFor();
  await page.getByRole('button', { name: 'Enable Log in with IT Complete' }).waitFor();
  await shot(page, 'admin-settings-on');
});

step('B4: a second PSA tenant tries the same IT Complete tenant: "already mapped"', async () => {
  const page = await newPage('globex');
  await psaLogin(page, ADMIN_GLOBEX);
  await page.goto(`${state.env.gwUrl}/_sso/settings`);
  assert.match(await textOf(page, '#tenant-state'), /\bOff\b/);
  const callback = page.waitForResponse((r) => new URL(r.url()).pathname === '/_sso/callback', { timeout: WAIT_MS * 2 });
  await idpLogin(page, 'master@acme', undefined, () => page.getByRole('button', { name: 'Turn IT Complete on' }).click());
  assert.equal((await callback).status(), 409, 'the callback answers 409');
  assert.match(await textOf(page, 'h1'), /already mapped/i);
  assert.match(await textOf(page, 'main'), /already mapped to another PSA tenant/);
  await shot(page, 'globex-already-mapped');
  await page.goto(`${state.env.gwUrl}/_sso/settings`);
  assert.match(await textOf(page, '#tenant-state'), /\bOff\b/, 'globex stays off');
});

step('B5: bob enables "Log in with IT Complete" with staff@acme and lands on the PSA home as himself', async () => {
  const page = await newPage('bob');
  await psaLogin(page, BOB);
  await page.click('#my-settings');
  await page.waitForURL((url) => url.pathname === '/_sso/settings');
  assert.match(await textOf(page, '#user-state'), /Disabled/);
  assert.equal(await page.locator('#tenant-state').count(), 0, 'no tenant switch for a non-admin');
  await tabTo(page, 'Enable Log in with IT Complete');
  await shot(page, 'bob-settings-enable-focused');
  await idpLogin(page, 'staff@acme', 'bob-enable', () => page.keyboard.press('Enter'));
  assert.equal(pathOf(page), '/');
  assert.equal(await textOf(page, '#welcome'), `Welcome, ${BOB.name}`);
  await shot(page, 'bob-linked-psa-home');
});

step('B5: My Settings now offers "Disable Log in with IT Complete"', async () => {
  const page = state.contexts.bob.pages()[0];
  await page.goto(`${state.env.gwUrl}/_sso/settings`);
  assert.match(await textOf(page, '#user-state'), /Enabled/);
  await page.getByRole('button', { name: 'Disable Log in with IT Complete' }).waitFor();
  await shot(page, 'bob-settings-enabled');
});

step('B6: bob signs out; the PSA login page offers "Log in with IT Complete"', async () => {
  const page = state.contexts.bob.pages()[0];
  await page.goto(`${state.env.gwUrl}/`);
  await Promise.all([page.waitForURL((url) => url.pathname === '/login'), page.click('#sign-out-form button')]);
  const status = await page.request.get(`${state.env.gwUrl}/_sso/status`);
  assert.equal((await status.json()).session, false, 'the PSA sign-out ended the gateway session too');
  await page.locator('#ssogate-login-button').waitFor();
  assert.equal(await textOf(page, '#ssogate-login-button'), 'Log in with IT Complete');
  assert.equal(await page.locator('#psa-login-form').count(), 1, 'the PSA form is still there');
  // psa.login_button puts the block inside the PSA's sign-in card, right after its form, once.
  assert.equal(await page.locator('.card.login #psa-login-form + #ssogate-login #ssogate-login-button').count(), 1,
    'the button sits in the sign-in card, under the PSA form');
  assert.equal(await page.locator('#ssogate-login').count(), 1, 'one block');
  await shot(page, 'bob-psa-login-page');
});

step('B6: "Log in with IT Complete": the IdP, then the PSA home as bob, by IT Complete', async () => {
  const page = state.contexts.bob.pages()[0];
  await idpLogin(page, 'staff@acme', 'bob-sso', () => page.click('#ssogate-login-button'));
  assert.equal(pathOf(page), '/');
  assert.equal(await textOf(page, '#welcome'), `Welcome, ${BOB.name}`);
  assert.equal(await textOf(page, '#auth-method'), 'IT Complete');
  await shot(page, 'bob-sso-psa-home');
});

step('B9: carol (client portal) cannot enable it: My Settings says so, a forged POST is refused', async () => {
  const page = await newPage('carol');
  await psaLogin(page, CAROL);
  assert.match(await textOf(page, '#page-title'), /Client portal/);
  await page.click('#my-settings');
  await page.waitForURL((url) => url.pathname === '/_sso/settings');
  assert.match(await textOf(page, '#user-state'), /Client portal users cannot use Log in with IT Complete/);
  assert.equal(await page.getByRole('button', { name: /Enable Log in with IT Complete/ }).count(), 0);
  await shot(page, 'carol-settings-not-available');

  // The form My Settings would have had, built by hand in the page with carol's own CSRF token: the
  // gateway refuses it on who she is, not on the token.
  const csrf = (await page.context().cookies(state.env.gwUrl)).find((c) => c.name.endsWith('_csrf'));
  assert.ok(csrf, 'My Settings set the CSRF cookie');
  const answer = page.waitForResponse((r) => new URL(r.url()).pathname === '/_sso/user/enable');
  await page.evaluate((token) => {
    const form = document.createElement('form');
    form.method = 'post';
    form.action = '/_sso/user/enable';
    const input = document.createElement('input');
    input.type = 'hidden';
    input.name = 'csrf';
    input.value = token;
    form.append(input);
    document.body.append(form);
    form.submit();
  }, csrf.value);
  assert.equal((await answer).status(), 403);
  await page.waitForLoadState('load');
  assert.match(await textOf(page, 'main'), /Client portal users cannot use Log in with IT Complete/);
  await shot(page, 'carol-enable-refused');
});

step('B11: an inactive IT Complete user lands on the PSA login page with the notice', async () => {
  const page = await newPage('inactive');
  await page.goto(`${state.env.gwUrl}/login`);
  await idpLogin(page, 'inactive@acme', 'inactive', () => page.click('#ssogate-login-button'));
  assert.equal(pathOf(page), '/login');
  const notice = await textOf(page, '#ssogate-notice');
  assert.match(notice, /inactive|refused/i);
  assert.equal(await page.locator('#psa-login-form').count(), 1, 'on the PSA login page');
  await shot(page, 'inactive-psa-login-notice');
});

step('B8: signed in with IT Complete only, bob opens My Settings from the PSA', { independent: true }, async () => {
  const page = state.contexts.bob.pages()[0];
  await page.goto(`${state.env.gwUrl}/`);
  assert.equal(await textOf(page, '#auth-method'), 'IT Complete', 'no PSA password session in this browser');
  const [settings] = await Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname === '/_sso/settings'),
    page.click('#my-settings'),
  ]);
  await page.waitForLoadState('load');
  await shot(page, 'bob-sso-settings');
  assert.equal(settings.status(), 200, `My Settings answered: ${await textOf(page, 'main')}`);
  await page.getByRole('button', { name: 'Disable Log in with IT Complete' }).waitFor();
});

step('B8: bob disables his link in My Settings: "Disable" becomes "Enable"', async () => {
  const page = state.contexts.bob.pages()[0];
  await page.goto(`${state.env.gwUrl}/`);
  await Promise.all([page.waitForURL((url) => url.pathname === '/login'), page.click('#sign-out-form button')]);
  await psaLogin(page, BOB);
  await page.click('#my-settings');
  await page.waitForURL((url) => url.pathname === '/_sso/settings');
  await page.getByRole('button', { name: 'Disable Log in with IT Complete' }).click();
  await page.waitForURL((url) => url.searchParams.get('done') === 'user_unlinked');
  assert.match(await textOf(page, '[role=status]'), /Log in with IT Complete is disabled/);
  assert.match(await textOf(page, '#user-state'), /Disabled/);
  await page.getByRole('button', { name: 'Enable Log in with IT Complete' }).waitFor();
  await shot(page, 'bob-disabled');
  const status = await (await page.request.get(`${state.env.gwUrl}/_sso/status`)).json();
  assert.equal(status.user_linked, false, 'the link is gone');
});

step('B7: the admin turns IT Complete off', async () => {
  const page = state.contexts.admin.pages()[0];
  await page.goto(`${state.env.gwUrl}/_sso/settings`);
  await page.getByRole('button', { name: 'Turn IT Complete off' }).click();
  await page.waitForURL((url) => url.searchParams.get('done') === 'tenant_unlinked');
  assert.match(await textOf(page, '[role=status]'), /IT Complete is now off/);
  assert.match(await textOf(page, '#tenant-state'), /\bOff\b/);
  await page.getByRole('button', { name: 'Turn IT Complete on' }).waitFor();
  await shot(page, 'admin-settings-off-again');
});

step('B8: native login still works for bob', async () => {
  const page = await newPage('bob-native');
  await psaLogin(page, BOB);
  assert.equal(await textOf(page, '#auth-method'), 'password');
  await shot(page, 'bob-native-psa-home');
});
