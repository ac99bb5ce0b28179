'use strict';
// An upstream that is down or slow gets a clear error page with the request id, within the configured
// time, and never takes the gateway down with it.

const assert = require('node:assert/strict');
const { itest, request, rawExchange, closedPort, metricValue, SLOW } = require('./lib/harness');

// An error page: the status, HTML, and the request id named in the page (the one of the X-Request-Id
// header when there is one; the test 'error responses carry X-Request-Id' insists on the header).
function assertErrorPage(res, status) {
  assert.equal(res.status, status, `status ${res.status}: ${res.body}`);
  assert.match(res.headers['content-type'] || '', /^text\/html/, 'an HTML page');
  const page = res.body.toString();
  const id = res.headers['x-request-id'];
  if (id) {
    assert.ok(page.includes(id), `the page names the request id ${id}`);
    return id;
  }
  const match = /\b[0-9a-f]{16,64}\b/.exec(page);
  assert.ok(match, 'the page names a request id');
  return match[0];
}

itest('upstream down: 502 page with the request id', async (t, h) => {
  const port = await closedPort();
  const gw = await h.startGateway(h.config({ upstream: { url: `http://127.0.0.1:${port}`, connect_timeout_ms: 1000 } }));
  const ids = new Set();
  for (const method of ['GET', 'POST']) {
    const started = Date.now();
    const res = await request(gw, { method, path: '/echo?down=1', body: method === 'POST' ? 'payload' : undefined });
    assert.ok(Date.now() - started < 3000 * SLOW, 'a refused connection fails fast');
    ids.add(assertErrorPage(res, 502));
  }
  assert.equal(ids.size, 2, 'every request gets its own id');
  assert.equal((await request(gw, { path: '/_sso/healthz' })).status, 200, 'the gateway keeps serving');
});

// A request asking for a protocol switch ends the wire check for its connection: its answer closes the
// connection, the 502 page of a failed upstream included (whose headers replace the others), so the
// bytes after it (here a NUL that the check would refuse) are never read as a request.
itest('a failed Upgrade request still closes its connection', async (t, h) => {
  const port = await closedPort();
  const gw = await h.startGateway(h.config({ upstream: { url: `http://127.0.0.1:${port}`, connect_timeout_ms: 1000 } }));
  const res = await rawExchange(gw.port, 'GET /echo/up HTTP/1.1\r\nHost: a.example\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n'
    + 'GET /echo/after HTTP/1.1\r\nHost: a.example\r\nX-A: a\x00b\r\n\r\n');
  assert.equal(res.status, 502);
  assert.match(res.response.headers.connection || '', /close/i, 'the 502 says the connection closes');
  assert.ok(res.closed, 'and it is closed');
  assert.equal(res.text.match(/^HTTP\/1\.1 /gm).length, 1, `one answer only: ${res.text.slice(0, 200)}`);
});

itest('error responses carry X-Request-Id, the id their page names', async (t, h) => {
  const port = await closedPort();
  const gw = await h.startGateway(h.config({ upstream: { url: `http://127.0.0.1:${port}` } }));
  const res = await request(gw, { path: '/echo' });
  assert.equal(res.status, 502);
  const id = res.headers['x-request-id'];
  assert.ok(id, 'X-Request-Id on the 502 response');
  assert.ok(res.body.toString().includes(id), 'the page names the same id');
});

itest('upstream slower than response_timeout_ms: 504 page with the request id', async (t, h) => {
  const up = await h.startStub();
  const gw = await h.startGateway(h.config({ upstream: { url: up.url, response_timeout_ms: 1000 } }));
  const started = Date.now();
  const res = await request(gw, { path: '/slow?ms=4000' });
  const elapsed = Date.now() - started;
  assertErrorPage(res, 504);
  assert.ok(elapsed >= 900, `not before the timeout (${elapsed} ms)`);
  assert.ok(elapsed < 3500 * SLOW, `soon after the timeout (${elapsed} ms)`);

  const fast = await request(gw, { path: '/slow?ms=100' });
  assert.equal(fast.status, 200, 'an answer within the timeout passes');
  assert.equal(JSON.parse(fast.body.toString()).method, 'GET');
  assert.deepEqual(gw.logs.filter((l) => l.event === 'upstream_error').map((l) => [l.kind, l.detail]),
    [['upstream_timeout', 'head_timeout']]);
});

itest('the upstream recovering after a 502 is used again', async (t, h) => {
  const port = await closedPort();
  const gw = await h.startGateway(h.config({ upstream: { url: `http://127.0.0.1:${port}` } }));
  assertErrorPage(await request(gw, { path: '/echo' }), 502);
  const up = await h.startStub({ args: ['--port', String(port)] });
  assert.equal(up.port, port);
  const res = await request(gw, { path: '/echo/recovered' });
  assert.equal(res.status, 200);
  assert.equal(JSON.parse(res.body.toString()).url, '/echo/recovered');
});

itest('an upstream that stalls mid-body is cut off, not waited for forever', async (t, h) => {
  const up = await h.startStub();
  const gw = await h.startGateway(h.config({ upstream: { url: up.url, response_timeout_ms: 1000 } }));
  const started = Date.now();
  const res = await request(gw, { path: '/stall?ms=8000', stream: true });
  assert.equal(res.status, 200, 'headers came in time');
  const outcome = await new Promise((resolve) => {
    let bytes = 0;
    res.res.on('data', (chunk) => {
      bytes += chunk.length;
    });
    res.res.on('end', () => resolve({ complete: true, bytes }));
    res.res.on('error', () => resolve({ complete: false, bytes }));
    res.res.on('aborted', () => resolve({ complete: false, bytes }));
  });
  const elapsed = Date.now() - started;
  assert.equal(outcome.complete, false, 'the truncated response must not look complete');
  assert.ok(outcome.bytes < 1000);
  assert.ok(elapsed < 5000 * SLOW, `cut off after about response_timeout_ms (${elapsed} ms)`);
  assert.equal((await request(gw, { path: '/_sso/healthz' })).status, 200);
  assert.deepEqual(gw.logs.filter((l) => l.event === 'upstream_error').map((l) => [l.kind, l.detail]),
    [['upstream_timeout', 'body_timeout']]);
});

itest('upstream errors are counted in ssogate_errors_total', async (t, h) => {
  const port = await closedPort();
  const gw = await h.startGateway(h.config({ upstream: { url: `http://127.0.0.1:${port}` } }));
  const total = (m) => m.samples.filter((s) => s.name === 'ssogate_errors_total').reduce((a, s) => a + s.value, 0);
  const before = total(await h.metrics(gw));
  for (let i = 0; i < 3; i++) {
    assert.equal((await request(gw, { path: '/echo' })).status, 502);
  }
  const metrics = await h.metrics(gw);
  const kinds = metrics.samples.filter((s) => s.name === 'ssogate_errors_total').map((s) => s.labels.kind);
  t.diagnostic(`error kinds: ${kinds.join(', ')}`);
  assert.ok(total(metrics) >= before + 3, `three more errors counted (before ${before}, after ${total(metrics)})`);
  assert.ok(kinds.every((k) => typeof k === 'string' && k.length > 0), 'every error sample has a kind label');
  // An upstream that is down, told apart from one that answers wrongly (upstream_invalid, see
  // proxy_upstream_wire) or breaks the connection (upstream_broken).
  assert.equal(metricValue(metrics, 'ssogate_errors_total', { kind: 'upstream_connect' }), 3);
  assert.equal(metricValue(metrics, 'ssogate_errors_total', { kind: 'upstream_invalid' }), 0);
  assert.deepEqual(gw.logs.filter((l) => l.event === 'upstream_error').map((l) => [l.kind, l.detail]),
    Array(3).fill(['upstream_connect', 'connect_failed']));
});
