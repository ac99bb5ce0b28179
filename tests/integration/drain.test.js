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
