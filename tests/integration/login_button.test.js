'use strict';
// Issue 13, psa.login_button: the "Log in with IT Complete" block goes inside the PSA's sign-in card, next
// to a configured marker of its login page, once; a page that lost the marker (the PSA changed its
// markup) still gets the block after <body>, and the gateway says so in a warning and a metric. Through
// the real IdP and the stub PSA, in link mode, with a SIGHUP between the two markers.
//
//   SSOGATE_BUILD_DIR=build node --test tests/integration/login_button.test.js

const assert = require('node:assert/strict');
const harness = require('./lib/harness');
const { itest, metricValue } = harness;
const { startLinkEnv } = require('./lib/link-env');

const FALLBACKS = 'ssogate_login_button_fallbacks_total';
const BLOCK = '<div id="ssogate-login"';

function count(haystack, needle) {
  return haystack.split(needle).length - 1;
}

itest('the block goes after the marker, once; a missing marker falls back to <body> with a warning', async (t, h) => {
  const env = await startLinkEnv(h, { gateway: { psa: { login_button: { marker: '</form>', position: 'after' } } } });
  const page = await harness.request(env.gw, { path: '/login' });
  assert.equal(page.status, 200);
  const html = page.body.toString();
  assert.equal(count(html, BLOCK), 1, 'one block');
  const form = html.indexOf('id="psa-login-form"');
  const formEnd = html.indexOf('</form>', form);
  assert.ok(form > 0 && formEnd > form, 'the PSA form is there');
  assert.equal(html.indexOf(BLOCK), formEnd + '</form>'.length, 'right after the first </form>, inside the card');
  assert.ok(html.indexOf(BLOCK) < html.indexOf('</div>', formEnd), 'before the card closes');
  assert.equal(metricValue(await h.metrics(env.gw), FALLBACKS, { reason: 'marker_missing' }) || 0, 0);

  // The PSA's markup no longer has the marker: a reload to a marker the page lacks.
  const from = env.gw.logs.length;
  h.writeConfig({ ...env.config, psa: { ...env.config.psa, login_button: { marker: '<section id="sso">', position: 'before' } } });
  env.gw.signal('SIGHUP');
  await env.gw.waitLog((l) => l.event === 'reload' && l.result === 'ok', 10000, 'the reload', from);
  const again = await harness.request(env.gw, { path: '/login' });
  const html2 = again.body.toString();
  assert.equal(again.status, 200);
  assert.equal(count(html2, BLOCK), 1, 'still one block');
  const body = /<body[^>]*>/.exec(html2);
  assert.equal(html2.indexOf(BLOCK), body.index + body[0].length, 'right after <body>');
  const warning = await env.gw.waitLog((l) => l.event === 'login_button', 5000, 'the fallback warning', from);
  assert.equal(warning.level, 'warn');
  assert.equal(warning.result, 'marker_missing');
  assert.equal(metricValue(await h.metrics(env.gw), FALLBACKS, { reason: 'marker_missing' }), 1, 'counted once');

  // A page other than the login page is never touched.
  const home = await harness.request(env.gw, { path: '/' });
  assert.equal(count(home.body.toString(), BLOCK), 0, 'no block on other pages');
});
