'use strict';
// SIGTERM and SIGINT: stop accepting, let the requests in flight finish (up to drain_timeout_s), exit 0.

const assert = require('node:assert/strict');
const { itest, request, portOpen, waitFor, SLOW } = require('./lib/harness');

itest('SIGTERM lets a slow request in flight finish, then exits 0 with the port closed', async (t, h) => {
  const up = await h.startStub();
  const gw = await h.startGateway(h.config({ upstream: { url: up.url }, drain_timeout_s: 10 }));
  const slow = request(gw, { method: 'POST', path: '/slow?ms=2000', body: 'in flight' });
  await waitFor(async () => (await up.requests()).some((r) => r.url === '/slow?ms=2000'), 5000 * SLOW, 'the slow request upstream');

  const signalled = Date.now();
  gw.signal('SIGTERM');
  await waitFor(async () => !(await portOpen(gw.port)), 1500 * SLOW, 'the listener to close');
  t.diagnostic(`listener closed ${Date.now() - signalled} ms after SIGTERM`);
  assert.ok(gw.alive, 'still running while a request is in flight');

  const res = await slow;
  assert.equal(res.status, 200, 'the request in flight completed');
  assert.equal(JSON.parse(res.body.toString()).bodyLength, 'in flight'.length);

  const exit = await gw.waitExit(5000 * SLOW);
  assert.ok(exit, 'exited after the last request finished');
  assert.deepEqual(exit, { code: 0, signal: null }, 'exit status 0');
  assert.ok(Date.now() - signalled < 8000 * SLOW, 'did not wait for the whole drain timeout');
  assert.equal(await portOpen(gw.port), false, 'the port is closed');
});

itest('SIGTERM with nothing in flight exits at once', async (t, h) => {
  const up = await h.startStub();
  const gw = await h.startGateway(h.config({ upstream: { url: up.url } }));
  assert.equal((await request(gw, { path: '/echo' })).status, 200);
  const signalled = Date.now();
  gw.signal('SIGTERM');
  const exit = await gw.waitExit(3000 * SLOW);
  assert.deepEqual(exit, { code: 0, signal: null });
  assert.ok(Date.now() - signalled < 3000 * SLOW);
});

itest('SIGINT drains like SIGTERM', async (t, h) => {
  const up = await h.startStub();
  const gw = await h.startGateway(h.config({ upstream: { url: up.url } }));
  const slow = request(gw, { path: '/slow?ms=1000' });
  await waitFor(async () => (await up.requests()).some((r) => r.url === '/slow?ms=1000'), 5000 * SLOW, 'the slow request upstream');
  gw.signal('SIGINT');
  assert.equal((await slow).status, 200);
  assert.deepEqual(await gw.waitExit(5000 * SLOW), { code: 0, signal: null });
});

itest('an idle keep-alive connection does not hold up the exit', async (t, h) => {
  const up = await h.startStub();
  const gw = await h.startGateway(h.config({ upstream: { url: up.url } }));
  const http = require('node:http');
  const agent = new http.Agent({ keepAlive: true });
  try {
    assert.equal((await request(gw, { path: '/echo', agent })).status, 200);
    const signalled = Date.now();
    gw.signal('SIGTERM');
    const exit = await gw.waitExit(4000 * SLOW);
    assert.deepEqual(exit, { code: 0, signal: null });
    t.diagnostic(`exited ${Date.now() - signalled} ms after SIGTERM with an idle keep-alive client`);
  } finally {
    agent.destroy();
  }
});

// A raw client connection; resolves with everything the gateway sent until it closed (or an error code).
function rawClient(port) {
  const net = require('node:net');
  const socket = net.connect(port, '127.0.0.1');
  const chunks = [];
  const closed = new Promise((resolve) => {
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', (err) => resolve({ error: err.code }));
    socket.on('close', () => resolve({ text: Buffer.concat(chunks).toString('latin1') }));
  });
  return { socket, closed, connected: new Promise((resolve) => socket.on('connect', resolve)) };
}

itest('a connection accepted just before SIGTERM, and a request arriving during the drain, are answered', async (t, h) => {
  const up = await h.startStub();
  const gw = await h.startGateway(h.config({ upstream: { url: up.url }, drain_timeout_s: 10 }));
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  // One sends its request 30 ms after the signal; the other has sent half of it and sends the rest
  // 400 ms after (a request on its way holds the drain beyond the first-request grace).
  const fresh = rawClient(gw.port);
  const half = rawClient(gw.port);
  const silent = rawClient(gw.port);
  await Promise.all([fresh.connected, half.connected, silent.connected]);
  half.socket.write('GET /echo?half HTTP/1.1\r\nHost: x\r\n');
  await sleep(50);
  const signalled = Date.now();
  gw.signal('SIGTERM');
  await sleep(30);
  fresh.socket.write('GET /echo?fresh HTTP/1.1\r\nHost: x\r\n\r\n');
  await sleep(400);
  half.socket.write('X-Rest: 1\r\n\r\n');
  const [a, b, c] = await Promise.all([fresh.closed, half.closed, silent.closed]);
  assert.match(a.text || a.error, /^HTTP\/1\.1 200 /, `the fresh connection's request was answered: ${JSON.stringify(a).slice(0, 200)}`);
  assert.match(a.text, /\r\nConnection: close\r\n/i, 'and the connection closed after it');
  assert.match(b.text || b.error, /^HTTP\/1\.1 200 /, `the request on its way was answered: ${JSON.stringify(b).slice(0, 200)}`);
  assert.equal(c.text, '', 'a connection that sent nothing is closed without an answer');
  const urls = (await up.requests()).map((r) => r.url);
  assert.ok(urls.includes('/echo?fresh') && urls.includes('/echo?half'), `both reached the upstream: ${urls}`);
  assert.deepEqual(await gw.waitExit(5000 * SLOW), { code: 0, signal: null });
  t.diagnostic(`exited ${Date.now() - signalled} ms after SIGTERM`);
});

itest('drain_timeout_s bounds the wait for a request that never ends', async (t, h) => {
  const up = await h.startStub();
  const gw = await h.startGateway(h.config({ upstream: { url: up.url, response_timeout_ms: 60000 }, drain_timeout_s: 1 }));
  const stuck = request(gw, { path: '/slow?ms=30000', timeout: 20000 * SLOW }).catch((err) => err);
  await waitFor(async () => (await up.requests()).some((r) => r.url === '/slow?ms=30000'), 5000 * SLOW, 'the stuck request upstream');
  const signalled = Date.now();
  gw.signal('SIGTERM');
  const exit = await gw.waitExit(6000 * SLOW);
  const elapsed = Date.now() - signalled;
  assert.ok(exit, 'exited within the drain bound');
  t.diagnostic(`exit ${JSON.stringify(exit)} after ${elapsed} ms with drain_timeout_s 1`);
  assert.ok(elapsed >= 800, `waited for the drain timeout (${elapsed} ms)`);
  assert.equal(exit.signal, null, 'exited by itself, not killed by a signal');
  await stuck;
});
