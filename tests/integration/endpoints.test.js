'use strict';
// The gateway's own endpoints: /_sso/healthz, /_sso/metrics, and /_sso/* never forwarded upstream.

const assert = require('node:assert/strict');
const { itest, request, rawExchange, parseMetrics, metricValue, closedPort } = require('./lib/harness');

async function setup(h) {
  const up = await h.startStub();
  const gw = await h.startGateway(h.config({ upstream: { url: up.url } }));
  return { up, gw };
}

itest('GET /_sso/healthz answers JSON status ok', async (t, h) => {
  const { gw } = await setup(h);
  const res = await request(gw, { path: '/_sso/healthz' });
  assert.equal(res.status, 200);
  assert.match(res.headers['content-type'] || '', /^application\/json/);
  const body = JSON.parse(res.body.toString());
  assert.equal(body.status, 'ok');
});

// metrics_from: /_sso/metrics answers the listed clients only (loopback by default), matched against
// the client's address (behind a trusted proxy, whom it forwarded for); anyone else gets the 404 page of
// an endpoint that does not exist. healthz answers anyone.
itest('metrics_from: /_sso/metrics answers the clients listed, others get the 404 page of no endpoint', async (t, h) => {
  const up = await h.startStub();
  const gw = await h.startGateway(h.config({
    upstream: { url: up.url },
    metrics_from: ['127.0.0.1', '203.0.113.7'],
    trusted_proxies: ['127.0.0.3'],
  }));
  const metrics = (from, headers = {}) => request(gw, { path: '/_sso/metrics', localAddress: from, headers });
  assert.equal((await metrics('127.0.0.1')).status, 200, 'a listed client');
  const refused = await metrics('127.0.0.4');
  const missing = await request(gw, { path: '/_sso/no-such-endpoint', localAddress: '127.0.0.4' });
  assert.equal(refused.status, 404, 'a client not listed');
  assert.equal(missing.status, 404);
  const text = (res) => res.body.toString().replace(/[0-9a-f]{24}/g, 'ID');
  assert.equal(text(refused), text(missing), 'the same page as an endpoint that does not exist');
  assert.ok(!refused.body.toString().includes('ssogate_'), 'no counter in it');
  assert.equal((await metrics('127.0.0.4', { 'x-forwarded-for': '203.0.113.7' })).status, 404,
    'an untrusted peer cannot name a listed client');
  assert.equal((await metrics('127.0.0.3', { 'x-forwarded-for': '203.0.113.7' })).status, 200,
    'behind a trusted proxy, the client it forwarded for');
  assert.equal((await metrics('127.0.0.3', { 'x-forwarded-for': '203.0.113.7, 198.51.100.1' })).status, 404,
    'what a client wrote left of the proxy\'s entry is not taken');
  assert.equal((await request(gw, { path: '/_sso/healthz', localAddress: '127.0.0.4' })).status, 200, 'healthz answers anyone');
  const line = gw.logs.find((l) => l.event === 'bad_request' && l.reason === 'metrics_not_allowed');
  assert.ok(line && line.client === '127.0.0.4', `logged with the client: ${JSON.stringify(line)}`);
  const counted = parseMetrics((await metrics('127.0.0.1')).body.toString());
  assert.equal(metricValue(counted, 'ssogate_bad_requests_total', { reason: 'metrics_not_allowed' }), 3);
});

itest('without metrics_from, /_sso/metrics answers loopback clients', async (t, h) => {
  const { gw } = await setup(h);
  assert.equal((await request(gw, { path: '/_sso/metrics', localAddress: '127.0.0.9' })).status, 200);
});

itest('metrics_from [] answers nobody', async (t, h) => {
  const up = await h.startStub();
  const gw = await h.startGateway(h.config({ upstream: { url: up.url }, metrics_from: [] }));
  assert.equal((await request(gw, { path: '/_sso/metrics' })).status, 404);
});

itest('GET /_sso/metrics exports the documented families in Prometheus text format', async (t, h) => {
  const { gw } = await setup(h);
  for (let i = 0; i < 5; i++) {
    assert.equal((await request(gw, { path: `/echo/m${i}` })).status, 200);
  }
  assert.equal((await request(gw, { path: '/status/404' })).status, 404);
  const res = await request(gw, { path: '/_sso/metrics' });
  assert.equal(res.status, 200);
  assert.match(res.headers['content-type'] || '', /^text\/plain/);
  const text = res.body.toString();
  const metrics = parseMetrics(text);

  const ok = metricValue(metrics, 'ssogate_requests_total', { class: '2xx' });
  assert.ok(ok >= 5, `ssogate_requests_total{class="2xx"} counts the proxied requests (got ${ok})`);
  const notFound = metricValue(metrics, 'ssogate_requests_total', { class: '4xx' });
  assert.ok(notFound >= 1, `ssogate_requests_total{class="4xx"} counts the 404 (got ${notFound})`);

  const buckets = metrics.samples.filter((s) => s.name === 'ssogate_upstream_latency_seconds_bucket');
  assert.ok(buckets.length >= 2, 'latency histogram buckets');
  assert.ok(buckets.some((b) => b.labels.le === '+Inf'), 'a +Inf bucket');
  for (let i = 1; i < buckets.length; i++) {
    assert.ok(buckets[i].value >= buckets[i - 1].value, 'buckets are cumulative');
  }
  const inf = buckets.find((b) => b.labels.le === '+Inf').value;
  assert.ok(inf >= 6, `every upstream exchange observed (got ${inf})`);
  const count = metricValue(metrics, 'ssogate_upstream_latency_seconds_count');
  assert.equal(count, inf, '_count equals the +Inf bucket');
  assert.ok(metricValue(metrics, 'ssogate_upstream_latency_seconds_sum') >= 0, '_sum present');

  const open = metricValue(metrics, 'ssogate_connections_open');
  assert.ok(open >= 1, `ssogate_connections_open counts at least this connection (got ${open})`);
  assert.notEqual(metricValue(metrics, 'ssogate_reloads_total', { result: 'ok' }), undefined);
  assert.notEqual(metricValue(metrics, 'ssogate_reloads_total', { result: 'failed' }), undefined);
  assert.ok(text.includes('ssogate_errors_total'), 'ssogate_errors_total is declared');

  const families = new Set(metrics.samples.map((s) => s.name.replace(/_(bucket|sum|count)$/, '')));
  for (const family of families) {
    const type = metrics.types[family] || metrics.types[`${family}_total`] || metrics.types[family.replace(/_total$/, '')];
    assert.ok(type, `# TYPE line for ${family}`);
  }
  assert.equal(metrics.types.ssogate_upstream_latency_seconds, 'histogram');
});

itest('/_sso/* is never forwarded upstream', async (t, h) => {
  const { up, gw } = await setup(h);
  const paths = [
    ['GET', '/_sso/healthz'],
    ['GET', '/_sso/metrics'],
    ['GET', '/_sso/no-such-endpoint'],
    ['POST', '/_sso/no-such-endpoint'],
    ['GET', '/_sso/'],
    ['GET', '/_sso/healthz?x=1'],
    ['DELETE', '/_sso/metrics'],
  ];
  for (const [method, path] of paths) {
    const res = await request(gw, { method, path, body: method === 'POST' ? 'x' : undefined });
    assert.notEqual(res.headers['x-stub-server'], 'upstream', `${method} ${path} answered by the upstream`);
    if (path.includes('no-such')) {
      assert.equal(res.status, 404, `${method} ${path}: 404 from the gateway`);
    }
  }
  const raw = await rawExchange(gw.port, 'GET /_sso/../_sso/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.ok(raw.status !== null);
  const log = await up.requests();
  const leaked = log.filter((r) => /^\/_sso(\/|$|\?)/.test(r.url) || r.url.includes('/_sso/'));
  assert.deepEqual(leaked, [], 'no /_sso/ request at the upstream');
});

itest('the metrics count what happened', async (t, h) => {
  const { gw } = await setup(h);
  const before = await h.metrics(gw);
  const ok = (m) => metricValue(m, 'ssogate_requests_total', { class: '2xx' }) || 0;
  const server = (m) => metricValue(m, 'ssogate_requests_total', { class: '5xx' }) || 0;
  for (let i = 0; i < 7; i++) {
    await request(gw, { path: '/echo' });
  }
  await request(gw, { path: '/status/500' });
  const after = await h.metrics(gw);
  assert.ok(ok(after) - ok(before) >= 7, `7 more 2xx (before ${ok(before)}, after ${ok(after)})`);
  assert.ok(ok(after) - ok(before) <= 8, 'and not many more (the metrics request itself may count)');
  assert.equal(server(after) - server(before), 1, 'one more 5xx');
});

// A HEAD answer has no body (RFC 9110 9.3.2): the gateway's own pages (404, 405, the sign-in page
// of a required route, healthz, metrics) send their length and no bytes, so that the next answer on a
// kept-alive connection is read from its first byte. The answers of five HEADs and a GET, pipelined
// on one connection, are exactly six heads and the GET's body.
itest("HEAD answers of the gateway's own pages have no body", async (t, h) => {
  const up = await h.startStub();
  // An IdP that is never reached: the required route answers its "sign-in unavailable" page.
  const idp = { issuer: `http://127.0.0.1:${await closedPort()}`, client_id: 'c', client_secret_env: 'SG_TEST_SECRET',
    allow_insecure_http: true };
  const gw = await h.startGateway(h.config({
    upstream: { url: up.url }, idp, routes: [{ prefix: '/private', auth: 'required' }],
  }), { env: { SG_TEST_SECRET: 'test-secret' } });
  const heads = ['/_sso/nothing', '/_sso/logout', '/_sso/healthz', '/_sso/metrics', '/private/x'];
  const data = [...heads.map((p) => `HEAD ${p} HTTP/1.1\r\nHost: a.example\r\n\r\n`),
    'GET /_sso/healthz HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n'].join('');
  const res = await rawExchange(gw.port, data, { untilComplete: false });
  let rest = res.text;
  const statuses = [];
  for (let i = 0; i <= heads.length; i++) {
    assert.match(rest, /^HTTP\/1\.1 \d{3} /, `answer ${i} starts at a status line: ${JSON.stringify(rest.slice(0, 80))}`);
    statuses.push(Number(rest.slice(9, 12)));
    const end = rest.indexOf('\r\n\r\n');
    const head = rest.slice(0, end);
    rest = rest.slice(end + 4);
    if (i < heads.length) {
      assert.match(head, /\r\ncontent-length: \d+/i, `HEAD ${heads[i]}: its length`);
    } else {
      assert.equal(JSON.parse(rest).status, 'ok', 'the GET after the HEADs gets its own body');
    }
  }
  assert.deepEqual(statuses, [404, 405, 200, 200, 503, 200]);
});
