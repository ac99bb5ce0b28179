'use strict';
// Issue 13, psa.login_button: the "Log in with IT Complete" block goes inside the PSA's sign-in card, next
// to a configured marker of its login page, once; a page that lost the marker (the PSA changed its
// markup) still gets the block after <body>, and the gateway says so in a warning and a metric. Through
// the real IdP and the stub PSA, in link mode, with a SIGHUP between the two markers.
//
//   SSOGATE_BUILD_DIR=build node --test tests/integration/login_button.test.js

const assert = require('node:assert/strict');
const http = require('node:http');
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

// Red team D, finding 4: a login page over 1 MiB sent without its length (chunked) was held for the block
// up to 1 MiB, its tail dropped, and what was left sent as a complete 200 with a Content-Length, counted as
// upstream_broken once per dropped chunk and logged nowhere. A larger page passes unchanged, as one with
// its length does, and the gateway says the block is missing.
itest('a login page over 1 MiB passes whole and unchanged, with or without its length, and is reported', async (t, h) => {
  const big = `<html><body>${'x'.repeat(1536 * 1024)}<p id="end">the end</p></body></html>`;
  const small = '<html><body><form id="psa-login-form"></form></body></html>';
  const psa = http.createServer((req, res) => {
    const page = req.url.includes('small') ? small : big;
    if (req.url.includes('sized')) {
      res.writeHead(200, { 'Content-Type': 'text/html', 'Content-Length': page.length });
      res.end(page);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/html' }); // no length: chunked, 64 KiB a chunk
    for (let at = 0; at < page.length; at += 65536) {
      res.write(page.slice(at, at + 65536));
    }
    res.end();
  });
  await new Promise((resolve) => psa.listen(0, '127.0.0.1', resolve));
  h.servers.push(psa);
  const gw = await h.startGateway(h.config({
    upstream: { url: `http://127.0.0.1:${psa.address().port}` },
    identity: 'link',
    idp: { issuer: `http://127.0.0.1:${await harness.closedPort()}`, client_id: 'c', client_secret_env: 'SG_TEST_SECRET', allow_insecure_http: true },
  }), { env: { SG_TEST_SECRET: 's3cret' } });

  const chunked = await harness.request(gw, { path: '/login?chunked' });
  assert.equal(chunked.status, 200);
  assert.equal(chunked.headers['content-length'], undefined, 'no length: the gateway did not see the end first');
  assert.equal(chunked.headers['transfer-encoding'], 'chunked');
  assert.ok(chunked.body.equals(Buffer.from(big)), `the page byte for byte (${chunked.body.length} of ${big.length} bytes)`);
  const sized = await harness.request(gw, { path: '/login?sized' });
  assert.equal(sized.status, 200);
  assert.equal(sized.headers['content-length'], String(big.length));
  assert.ok(sized.body.equals(Buffer.from(big)));
  const warnings = gw.logs.filter((l) => l.event === 'login_button');
  assert.deepEqual(warnings.map((l) => [l.level, l.result]), [['warn', 'too_large'], ['warn', 'too_large']], 'one warning a page');

  // A page under the bound still gets the block, with or without its length.
  for (const path of ['/login?small', '/login?small-sized']) {
    const page = await harness.request(gw, { path });
    assert.equal(count(page.body.toString(), BLOCK), 1, path);
    assert.equal(Number(page.headers['content-length']), page.body.length);
  }
  const metrics = await h.metrics(gw);
  assert.equal(metricValue(metrics, FALLBACKS, { reason: 'too_large' }), 2);
  assert.equal(metricValue(metrics, 'ssogate_errors_total', { kind: 'upstream_broken' }), 0, 'nothing broke');
});
