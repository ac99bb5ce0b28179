'use strict';
// The whoami call of My Settings (/_sso/status), against an in-process PSA whose whoami answer the
// test chooses: what the gateway sends (the caller's cookies without the gateway's own), the 64 KiB cap
// on the answer (exactly 64 KiB passes, one byte more is a bad answer, whether sent with a length or
// chunked, and the shared connection stays usable), and the bound on the whole exchange (a silent PSA
// and one that trickles its answer both end as a timeout, with a 502 page, a log line and a metric).

const assert = require('node:assert/strict');
const http = require('node:http');
const { itest, request, metricValue, SLOW } = require('./lib/harness');

const CAP = 64 * 1024;

// A whoami document of exactly size bytes (a pad member fills it up).
function whoamiOfSize(size) {
  const base = { tenant: 't1', user: 'u1', admin: true, kind: 'staff', active: true, pad: '' };
  const empty = Buffer.byteLength(JSON.stringify(base));
  assert.ok(size >= empty, `a document of ${size} bytes`);
  return JSON.stringify({ ...base, pad: 'x'.repeat(size - empty) });
}

// An in-process PSA: /api/whoami answers as psa.mode says; anything else gets 200 "page". Every whoami
// request's headers are kept in psa.seen.
async function startPsa(h) {
  const psa = { mode: { kind: 'json', size: 100 }, seen: [] };
  const server = http.createServer((req, res) => {
    if (!req.url.startsWith('/api/whoami')) {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 4 });
      res.end('page');
      return;
    }
    psa.seen.push(req.headers);
    const mode = psa.mode;
    if (mode.kind === 'silent') {
      return; // never answers; the gateway gives up
    }
    if (mode.kind === 'trickle') {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': 1000 });
      const timer = setInterval(() => res.write(' '), 200);
      res.on('close', () => clearInterval(timer));
      return;
    }
    const body = whoamiOfSize(mode.size);
    if (mode.chunked) {
      res.writeHead(200, { 'content-type': 'application/json' });
      for (let i = 0; i < body.length; i += 8192) {
        res.write(body.slice(i, i + 8192));
      }
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  h.servers.push(server);
  psa.url = `http://127.0.0.1:${server.address().port}`;
  return psa;
}

async function status(gw, headers = {}) {
  const started = Date.now();
  const res = await request(gw, { path: '/_sso/status', headers, timeout: 20000 * SLOW });
  return { res, elapsed: Date.now() - started };
}

function whoamiErrors(metrics, reason) {
  return metricValue(metrics, 'ssogate_whoami_errors_total', { reason }) || 0;
}

itest('whoami: the caller PSA cookies go along, the gateway cookies do not', async (t, h) => {
  const psa = await startPsa(h);
  const gw = await h.startGateway(h.config({ upstream: { url: psa.url } }));
  const { res } = await status(gw, {
    cookie: 'PSASESSION=abc; ssogate=0123456789; ssogate_csrf=tok; theme="dark"',
  });
  assert.equal(res.status, 200, `status: ${res.body}`);
  const doc = JSON.parse(res.body.toString());
  assert.deepEqual(doc.psa, { tenant: 't1', user: 'u1', admin: true, staff: true }, 'the PSA caller');
  assert.equal(psa.seen.length, 1, 'one whoami call');
  assert.equal(psa.seen[0].cookie, 'PSASESSION=abc; theme="dark"', 'only the PSA cookies, as sent');
  assert.equal(psa.seen[0]['x-forwarded-host'], '127.0.0.1:1', 'X-Forwarded-Host: the public authority');
  assert.equal(psa.seen[0].accept, 'application/json');
  assert.equal(psa.seen[0]['x-sso-assertion'], undefined, 'no session: no identity headers');
});

itest('whoami: an answer of 64 KiB is read, one byte more is a bad answer', async (t, h) => {
  const psa = await startPsa(h);
  const gw = await h.startGateway(h.config({ upstream: { url: psa.url, pool_size: 1 } }));
  for (const chunked of [false, true]) {
    psa.mode = { kind: 'json', size: CAP, chunked };
    const at = await status(gw);
    assert.equal(at.res.status, 200, `exactly ${CAP} bytes (chunked ${chunked}): ${at.res.body}`);

    psa.mode = { kind: 'json', size: CAP + 1, chunked };
    const before = whoamiErrors(await h.metrics(gw), 'bad_answer');
    const over = await status(gw);
    assert.equal(over.res.status, 502, `${CAP + 1} bytes (chunked ${chunked}) is refused`);
    assert.match(over.res.body.toString(), /The PSA did not answer/);
    assert.equal(whoamiErrors(await h.metrics(gw), 'bad_answer'), before + 1, 'counted as bad_answer');
    assert.ok(gw.logs.some((l) => l.event === 'whoami' && l.reason === 'bad_answer'), 'logged');
  }
  // The one pooled connection read past the refused answers: whoami and the proxy still work.
  psa.mode = { kind: 'json', size: 100 };
  assert.equal((await status(gw)).res.status, 200, 'the next whoami works');
  const page = await request(gw, { path: '/x' });
  assert.equal(page.status, 200, 'proxied traffic works');
  assert.equal(page.body.toString(), 'page');
});

itest('whoami: a silent or trickling PSA is a timeout within the upstream bounds', async (t, h) => {
  const psa = await startPsa(h);
  const gw = await h.startGateway(h.config({
    upstream: { url: psa.url, connect_timeout_ms: 500, response_timeout_ms: 1000 },
  }));
  // silent: no answer at all; trickle: a byte every 200 ms, each within response_timeout_ms, so only
  // the bound on the whole exchange (connect + response timeouts) ends it.
  for (const kind of ['silent', 'trickle']) {
    psa.mode = { kind };
    const before = whoamiErrors(await h.metrics(gw), 'timeout');
    const { res, elapsed } = await status(gw);
    assert.equal(res.status, 502, `${kind}: ${res.status}`);
    assert.ok(elapsed >= 900, `${kind}: not before the timeout (${elapsed} ms)`);
    assert.ok(elapsed < 4000 * SLOW, `${kind}: soon after the timeout (${elapsed} ms)`);
    assert.equal(whoamiErrors(await h.metrics(gw), 'timeout'), before + 1, `${kind}: counted as timeout`);
  }
  psa.mode = { kind: 'json', size: 100 };
  assert.equal((await status(gw)).res.status, 200, 'the gateway keeps serving');
});
