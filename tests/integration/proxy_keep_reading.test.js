'use strict';
// While a request waits for the upstream, the gateway goes on reading its plain client connection
// (server.c keep_reading: a no-op epoll_ctl MOD per request instead of a DEL and an ADD). What that
// must not change: a request outliving limits.client_timeout_s is still answered, pipelined requests
// are answered in order, a client that floods the connection meanwhile (or while its answer is being
// written) gains no memory, and a client that leaves is noticed.

const assert = require('node:assert/strict');
const net = require('node:net');
const { itest, request, rawExchange, SLOW } = require('./lib/harness');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

itest('a request slower than client_timeout_s but within response_timeout_ms is answered', async (t, h) => {
  const up = await h.startStub();
  const gw = await h.startGateway(h.config({
    upstream: { url: up.url, response_timeout_ms: 10000 },
    limits: { client_timeout_s: 1 },
  }));
  const started = Date.now();
  const res = await request(gw, { path: '/slow?ms=2500' });
  assert.equal(res.status, 200);
  assert.ok(Date.now() - started >= 2400, 'the answer came from the slow upstream');
  assert.equal(JSON.parse(res.body.toString()).method, 'GET');
});

itest('requests pipelined behind a slow one are answered in order', async (t, h) => {
  const up = await h.startStub();
  const gw = await h.startGateway(h.config({ upstream: { url: up.url } }));
  const head = (path) => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;
  const res = await rawExchange(gw.port, [head('/slow?ms=300'), head('/echo/second'), head('/echo/third')], {
    ms: 3000 * SLOW,
  });
  // Bodies end without a newline: a status line starts right after the body before it.
  const statuses = [...res.text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
  assert.deepEqual(statuses, [200, 200, 200], res.text.slice(0, 400));
  const second = res.text.indexOf('"/echo/second"');
  const third = res.text.indexOf('"/echo/third"');
  assert.ok(second > 0 && third > second, 'the answers in the order asked');
});

// Sends `head` (a request, then the start of a next one whose header line never ends) on a new
// connection and writes header bytes after it for 2 s (at most 64 MiB), `settle` ms after the head;
// with `unread`, the client never reads its answer. Asserts the gateway grew by less than 24 MiB
// meanwhile, and still answers.
async function floodAfter(gw, head, { unread = false, settle = 0 } = {}) {
  await request(gw, { path: '/echo/warm' });
  const before = gw.rss();
  const socket = net.connect({ host: '127.0.0.1', port: gw.port });
  socket.on('error', () => {});
  await new Promise((resolve) => socket.once('connect', resolve));
  if (unread) socket.pause();
  socket.write(`${head}GET /next HTTP/1.1\r\nX-Long: `);
  await sleep(settle);
  const chunk = Buffer.alloc(256 * 1024, 'a');
  let written = 0;
  const until = Date.now() + 2000;
  while (Date.now() < until && written < 64 * 1024 * 1024) {
    if (!socket.write(chunk)) {
      await Promise.race([new Promise((resolve) => socket.once('drain', resolve)), sleep(200)]);
    }
    written += chunk.length;
  }
  const grown = gw.rss() - before;
  assert.ok(grown < 24 * 1024 * 1024, `the gateway grew by ${grown} bytes while ${written} were offered`);
  socket.destroy();
  const res = await request(gw, { path: '/echo/after' });
  assert.equal(res.status, 200);
}

itest('a client writing without end while its request waits gains no memory, and the gateway goes on', async (t, h) => {
  const up = await h.startStub();
  const gw = await h.startGateway(h.config({ upstream: { url: up.url, response_timeout_ms: 10000 } }));
  await floodAfter(gw, 'GET /slow?ms=3000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
});

// The bound holds while evhttp writes the answer too (it reads without a callback then), and is
// lifted only when evhttp reads the next request: a client that does not read a long answer and
// floods the connection meanwhile gains no memory either.
itest('a client writing without end while it does not read its long answer gains no memory', async (t, h) => {
  const up = await h.startStub();
  const gw = await h.startGateway(h.config({ upstream: { url: up.url } }));
  // 300 ms: the answer has started, and backs up.
  await floodAfter(gw, 'GET /big?mb=256 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', { unread: true, settle: 300 });
});

itest('a client that leaves while its request waits is noticed before the upstream answers', async (t, h) => {
  const up = await h.startStub();
  const gw = await h.startGateway(h.config({
    upstream: { url: up.url, response_timeout_ms: 10000 },
    log: { level: 'info', access: true },
  }));
  const socket = net.connect({ host: '127.0.0.1', port: gw.port });
  socket.on('error', () => {});
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.write('GET /slow?ms=4000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  await sleep(300);
  const left = Date.now();
  socket.destroy();
  await gw.waitLog((l) => l.event === 'access' && l.status === 499, 3000 * SLOW, 'the request ends as 499');
  assert.ok(Date.now() - left < 3000 * SLOW, 'noticed long before the upstream would answer');
  assert.equal((await request(gw, { path: '/echo/after' })).status, 200);
});
