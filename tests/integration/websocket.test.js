'use strict';
// WebSocket tunnels through the gateway (policy/README.md, "WebSocket and Upgrade"): the handshake goes
// upstream with the headers of an ordinary request, a 101 is relayed and the connections are spliced
// byte for byte with backpressure; other answers are relayed and the connection closed; h2c is never
// tunnelled; a tunnel ends on idle, on the end of its SSO session and at SIGTERM after the drain timeout.
// The upstream is tests/stub/ws-echo.js, a real RFC 6455 echo server; the client is the small one below
// (raw socket handshake, masked frames).

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const net = require('node:net');
const tls = require('node:tls');
const harness = require('./lib/harness');
const { startOidcEnv, verifyAssertion } = require('./lib/oidc-env');
const ws = require('../stub/ws-echo');

const { itest, request, rawExchange, parseMetrics, metricValue, waitFor, withTimeout, sleep, SLOW } = harness;
const MiB = 1024 * 1024;
const FRAME_TIMEOUT_MS = 10000 * SLOW;

// ---- the test client ------------------------------------------------------------------------------

// An open WebSocket: frames arrive in a queue (or, with onFrame set, to that function), and closed
// resolves when the connection ends.
class WsConnection {
  constructor(socket, rest) {
    this.socket = socket;
    this.parser = new ws.FrameParser({ maxPayload: 64 * MiB });
    this.queue = [];
    this.waiters = [];
    this.onFrame = null;
    this.error = null;
    this.isClosed = false;
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        this.isClosed = true;
        this.closedAt = Date.now();
        resolve();
        this.wake();
      });
    });
    socket.on('error', (err) => {
      this.error = err;
    });
    socket.on('data', (chunk) => this.feed(chunk));
    if (rest.length > 0) {
      this.feed(rest);
    }
  }

  feed(chunk) {
    let frames;
    try {
      frames = this.parser.push(chunk);
    } catch (err) {
      this.error = err;
      this.socket.destroy();
      return;
    }
    for (const frame of frames) {
      if (this.onFrame) {
        this.onFrame(frame);
      } else {
        this.queue.push(frame);
      }
    }
    this.wake();
  }

  wake() {
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) {
      waiter();
    }
  }

  // Sends one masked frame; resolves once the socket took it (after 'drain' when its buffer is full).
  send(opcode, payload, options = {}) {
    const ok = this.socket.write(ws.encodeFrame(opcode, payload, { ...options, mask: true }));
    return ok ? Promise.resolve() : new Promise((resolve) => this.socket.once('drain', resolve));
  }

  // The next frame received, waiting up to ms.
  async next(ms = FRAME_TIMEOUT_MS) {
    const deadline = Date.now() + ms;
    while (this.queue.length === 0) {
      if (this.isClosed) {
        throw new Error(`connection closed while waiting for a frame${this.error ? `: ${this.error.message}` : ''}`);
      }
      if (Date.now() >= deadline) {
        throw new Error(`no frame within ${ms} ms`);
      }
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.queue.shift();
  }

  // Sends a frame and resolves the next frame received.
  async roundTrip(opcode, payload, options) {
    await this.send(opcode, payload, options);
    return this.next();
  }

  // Resolves true once the connection closed within ms, false otherwise.
  async closedWithin(ms) {
    try {
      await withTimeout(this.closed, ms, 'the tunnel to close');
      return true;
    } catch (err) {
      return false;
    }
  }

  destroy() {
    this.socket.destroy();
  }
}

// Sends a WebSocket handshake for path to port (TLS with ca when given), with headers ([[name, value]])
// added and extra bytes (frames) in the same write. Resolves {status, headers (lower-case names), key,
// conn: a WsConnection for a 101, body: what followed another answer's head, closed (by the peer)}.
function wsConnect(port, { path = '/ws/echo', headers = [], ca, extra, ms = 15000 * SLOW } = {}) {
  const key = crypto.randomBytes(16).toString('base64');
  return new Promise((resolve, reject) => {
    const socket = ca
      ? tls.connect({ host: '127.0.0.1', port, ca, rejectUnauthorized: true })
      : net.connect({ host: '127.0.0.1', port });
    let data = Buffer.alloc(0);
    let head = null;
    let done = false;
    const timer = setTimeout(() => finish(new Error(`no answer to the handshake within ${ms} ms`)), ms);
    const finish = (err, value) => {
      if (done) {
        return;
      }
      done = true;
      clearTimeout(timer);
      socket.removeListener('data', onData);
      if (err) {
        socket.destroy();
        reject(err);
      } else {
        resolve(value);
      }
    };
    const answer = (closed) => {
      clearTimeout(head.grace);
      const body = data.subarray(head.end + 4);
      socket.destroy();
      finish(null, { status: head.status, headers: head.headers, key, body, closed });
    };
    const onData = (chunk) => {
      data = Buffer.concat([data, chunk]);
      if (head === null) {
        const end = data.indexOf('\r\n\r\n');
        if (end < 0) {
          return;
        }
        const lines = data.subarray(0, end).toString('latin1').split('\r\n');
        const match = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0]);
        if (!match) {
          finish(new Error(`not an HTTP/1.1 status line: ${lines[0]}`));
          return;
        }
        const parsed = {};
        for (const line of lines.slice(1)) {
          const colon = line.indexOf(':');
          const name = line.slice(0, colon).trim().toLowerCase();
          const value = line.slice(colon + 1).trim();
          parsed[name] = parsed[name] === undefined ? value : `${parsed[name]}, ${value}`;
        }
        head = { status: Number(match[1]), headers: parsed, end };
        if (head.status === 101) {
          const conn = new WsConnection(socket, data.subarray(end + 4));
          finish(null, { status: 101, headers: parsed, key, conn });
          return;
        }
      }
      // A whole answer: the peer gets a moment to close the connection, as it should after a refusal.
      const length = head.headers['content-length'];
      if (length !== undefined && data.length >= head.end + 4 + Number(length) && !head.grace) {
        head.grace = setTimeout(() => answer(false), 2000 * SLOW);
      }
    };
    socket.on('data', onData);
    socket.on('error', (err) => finish(err));
    socket.on('end', () => (head ? answer(true) : finish(new Error('closed before an answer'))));
    socket.once(ca ? 'secureConnect' : 'connect', () => {
      const lines = [
        `GET ${path} HTTP/1.1`,
        `Host: 127.0.0.1:${port}`,
        'Upgrade: websocket',
        'Connection: Upgrade',
        `Sec-WebSocket-Key: ${key}`,
        'Sec-WebSocket-Version: 13',
        ...headers.map(([name, value]) => `${name}: ${value}`),
      ];
      const request = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
      socket.write(extra ? Buffer.concat([request, extra]) : request);
    });
  });
}

// Asserts a 101 relayed from the ws-echo upstream for the handshake res.
function assertSwitched(res, what) {
  assert.equal(res.status, 101, `${what}: 101 Switching Protocols`);
  assert.equal(res.headers.upgrade.toLowerCase(), 'websocket', `${what}: Upgrade`);
  assert.match(res.headers.connection, /upgrade/i, `${what}: Connection`);
  assert.equal(res.headers['sec-websocket-accept'], ws.acceptKey(res.key), `${what}: the accept key of our key`);
  assert.ok(res.headers['x-request-id'], `${what}: X-Request-Id`);
  assert.equal(res.headers['x-upstream-only'], undefined, `${what}: only the WebSocket headers are relayed`);
}

// The handshakes the ws-echo stub received, as [{url, headers: {lower-case name: value}}].
async function handshakesSeen(stub) {
  return (await stub.requests())
    .filter((r) => r.upgrade)
    .map((r) => ({ url: r.url, headers: Object.fromEntries(r.headers.map(([n, v]) => [n.toLowerCase(), v])) }));
}

function startWsStub(h, args = []) {
  return h.startStub({ script: 'ws-echo.js', name: 'ws', args });
}

// Sanitizer builds keep freed memory in a quarantine: a small one keeps RSS bounds meaningful.
function gatewayEnv() {
  const asan = process.env.ASAN_OPTIONS ? `${process.env.ASAN_OPTIONS}:` : '';
  return { ASAN_OPTIONS: `${asan}quarantine_size_mb=16` };
}

async function tunnelMetric(gw, result) {
  const res = await request(gw, { path: '/_sso/metrics' });
  return metricValue(parseMetrics(res.body.toString()), 'ssogate_tunnels_total', { result }) || 0;
}

// ---- without an IdP -------------------------------------------------------------------------------

itest('a handshake gets the upstream 101 and frames echo both ways, pipelined ones first', async (t, h) => {
  const stub = await startWsStub(h);
  const gw = await h.startGateway(h.config({ upstream: { url: stub.url } }));
  const pipelined = ws.encodeFrame(ws.OP_TEXT, 'sent with the handshake', { mask: true });
  const res = await wsConnect(gw.port, {
    path: '/ws/greet?x=1',
    extra: pipelined,
    headers: [
      ['Sec-WebSocket-Protocol', 'chat.v2, echo.v1'],
      ['Origin', `http://127.0.0.1:${gw.port}`],
      ['X-SSO-User', 'forged'],
      ['X-Sso-Assertion', 'forged'],
      ['X_SSO_User', 'forged'],
      ['x_sso-subject', 'forged'],
    ],
  });
  assertSwitched(res, 'the handshake');
  assert.equal(res.headers['sec-websocket-protocol'], 'echo.v1', 'the chosen subprotocol is relayed');
  const conn = res.conn;
  try {
    // The greeting the upstream wrote right behind its 101, then the echo of the pipelined frame.
    assert.equal((await conn.next()).payload.toString(), 'hello');
    assert.equal((await conn.next()).payload.toString(), 'sent with the handshake');

    const text = await conn.roundTrip(ws.OP_TEXT, 'héllo wörld');
    assert.deepEqual([text.opcode, text.payload.toString()], [ws.OP_TEXT, 'héllo wörld']);
    const bytes = crypto.randomBytes(70000);
    const binary = await conn.roundTrip(ws.OP_BINARY, bytes);
    assert.equal(binary.opcode, ws.OP_BINARY);
    assert.ok(binary.payload.equals(bytes), 'a 70000-byte binary frame comes back intact');
    await conn.send(ws.OP_TEXT, 'frag', { fin: false });
    await conn.send(ws.OP_CONTINUATION, 'mented', { fin: true });
    const first = await conn.next();
    const second = await conn.next();
    assert.deepEqual([first.fin, first.opcode, second.fin, second.opcode], [false, ws.OP_TEXT, true, ws.OP_CONTINUATION]);
    assert.equal(Buffer.concat([first.payload, second.payload]).toString(), 'fragmented');
    const pong = await conn.roundTrip(ws.OP_PING, 'are you there');
    assert.deepEqual([pong.opcode, pong.payload.toString()], [ws.OP_PONG, 'are you there']);

    const close = await conn.roundTrip(ws.OP_CLOSE, Buffer.from([0x03, 0xe8]));
    assert.equal(close.opcode, ws.OP_CLOSE);
    assert.equal(close.payload.readUInt16BE(0), 1000);
    assert.ok(await conn.closedWithin(5000 * SLOW), 'the connection ends after the close handshake');
  } finally {
    conn.destroy();
  }

  const [seen] = await handshakesSeen(stub);
  assert.equal(seen.url, '/ws/greet?x=1');
  assert.equal(seen.headers['sec-websocket-key'], res.key, 'the client key went upstream');
  assert.equal(seen.headers['sec-websocket-version'], '13');
  assert.equal(seen.headers.upgrade, 'websocket');
  assert.match(seen.headers.connection, /^upgrade$/i);
  assert.equal(seen.headers['x-request-id'], res.headers['x-request-id'], 'the same request id both ways');
  assert.equal(seen.headers['x-forwarded-proto'], 'http');
  assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
  const ordinary = JSON.parse((await request(gw, { path: '/echo/ordinary' })).body.toString()).headers;
  for (const name of ['host', 'x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-for']) {
    assert.equal(seen.headers[name], ordinary[name], `${name} as for an ordinary request`);
  }
  const forged = Object.keys(seen.headers).filter((name) => /^x[-_]sso[-_]/i.test(name));
  assert.deepEqual(forged, [], 'no X-SSO-* or X_SSO_* header reaches the upstream without a session');

  const open = await gw.waitLog((l) => l.event === 'tunnel_open', 5000 * SLOW, 'tunnel_open');
  assert.equal(open.request_id, res.headers['x-request-id']);
  assert.equal(open.session, false);
  const closed = await gw.waitLog((l) => l.event === 'tunnel_close', 5000 * SLOW, 'tunnel_close');
  assert.equal(closed.request_id, res.headers['x-request-id']);
  assert.ok(['client_closed', 'upstream_closed'].includes(closed.reason), `close reason ${closed.reason}`);
  assert.ok(closed.bytes_to_upstream > 70000 && closed.bytes_to_client > 70000, 'bytes counted both ways');
  assert.ok(closed.duration_ms >= 0);
  assert.equal(await tunnelMetric(gw, 'opened'), 1);
  assert.equal(await tunnelMetric(gw, closed.reason), 1);
  assert.equal((await request(gw, { path: '/_sso/healthz' })).status, 200);
});

itest('h2c and other upgrades are not tunnelled: Upgrade is dropped and the request is ordinary', async (t, h) => {
  const stub = await startWsStub(h);
  const gw = await h.startGateway(h.config({ upstream: { url: stub.url } }));
  const h2c = await rawExchange(gw.port,
    'GET /echo/h2c HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n' +
    'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n', { untilComplete: true });
  assert.equal(h2c.status, 200, 'an ordinary answer');
  const echo = JSON.parse(h2c.response.body.toString());
  assert.equal(echo.headers.upgrade, undefined, 'Upgrade: h2c did not reach the upstream');
  assert.equal(echo.headers['http2-settings'], undefined, 'nor HTTP2-Settings (named in Connection)');
  assert.equal(echo.headers.connection, undefined);

  // An upstream that switches anyway is not relayed.
  const forced = await rawExchange(gw.port,
    'GET /always101 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n', { untilComplete: true });
  assert.equal(forced.status, 502, 'a 101 to an ordinary request is a 502');

  // Upgrade: websocket on what is not a GET in HTTP/1.1, or listed with another protocol: ordinary.
  const notHandshakes = [
    'POST /echo/post HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\nhi',
    'GET /echo/http10 HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
    'GET /echo/two HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: h2c, websocket\r\n\r\n',
    'GET /echo/noconn HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\r\n',
  ];
  for (const raw of notHandshakes) {
    const res = await rawExchange(gw.port, raw, { untilComplete: true });
    assert.equal(res.status, 200, `ordinary answer to ${raw.split('\r\n')[0]}`);
    assert.equal(JSON.parse(res.response.body.toString()).headers.upgrade, undefined);
  }
  assert.deepEqual(await handshakesSeen(stub), [], 'the upstream never saw an Upgrade header');

  // A websocket handshake that the upstream answers with a 101 to h2c: 502, never 101.
  const wrong = await wsConnect(gw.port, { path: '/ws/not-websocket' });
  assert.equal(wrong.status, 502, 'a 101 that does not switch to websocket is a 502');
  // A 101 without the accept key of the client's key: the upstream did not read a WebSocket handshake
  // (an endpoint answering 101 to anything would let raw requests past the gateway's checks).
  for (const path of ['/ws/no-accept', '/ws/wrong-accept']) {
    assert.equal((await wsConnect(gw.port, { path })).status, 502, `${path}: 502`);
  }
  assert.equal(await tunnelMetric(gw, 'opened'), 0);
});

itest('a refusal from the upstream is relayed with Connection: close; an unreachable one is a 502', async (t, h) => {
  const stub = await startWsStub(h);
  const gw = await h.startGateway(h.config({ upstream: { url: stub.url } }));
  const refused = await wsConnect(gw.port, { path: '/ws/refuse?status=403' });
  assert.equal(refused.status, 403);
  assert.equal(refused.headers['x-refused-by'], 'ws', 'the upstream headers are relayed');
  assert.equal(refused.headers.connection, 'close');
  assert.equal(refused.headers.upgrade, undefined);
  assert.ok(refused.headers['x-request-id']);
  assert.equal(refused.body.toString(), 'refused with 403\n');
  assert.ok(refused.closed, 'the gateway closed the connection');
  const notFound = await wsConnect(gw.port, { path: '/ws/refuse?status=404' });
  assert.equal(notFound.status, 404);
  assert.equal(await tunnelMetric(gw, 'refused'), 2);

  const port = await harness.closedPort();
  const gw2 = await h.startGateway(h.config({ upstream: { url: `http://127.0.0.1:${port}`, connect_timeout_ms: 1000 } }));
  const down = await wsConnect(gw2.port, { path: '/ws/echo' });
  assert.equal(down.status, 502, 'an unreachable upstream is a 502');
  assert.ok(down.closed);
  assert.equal(await tunnelMetric(gw2, 'upstream_failed'), 1);
});

itest('a tunnel without traffic for websocket_idle_timeout_s is closed; traffic keeps it open', async (t, h) => {
  const stub = await startWsStub(h);
  const gw = await h.startGateway(h.config({ upstream: { url: stub.url, websocket_idle_timeout_s: 2 } }));
  const busy = await wsConnect(gw.port, { path: '/ws/echo' });
  const silent = await wsConnect(gw.port, { path: '/ws/silent' });
  assertSwitched(busy, 'busy');
  assertSwitched(silent, 'silent');
  const opened = Date.now();
  try {
    for (let i = 0; i < 8; i++) {
      assert.equal((await busy.conn.roundTrip(ws.OP_PING, `${i}`)).opcode, ws.OP_PONG, `ping ${i}`);
      await sleep(500);
    }
    assert.ok(silent.conn.isClosed, 'the silent tunnel was closed');
    const silentMs = silent.conn.closedAt - opened;
    t.diagnostic(`silent tunnel closed ${silentMs} ms after it opened (idle timeout 2 s)`);
    assert.ok(silentMs >= 1900 && silentMs <= 3500 * SLOW, `closed after ${silentMs} ms`);
    assert.ok(!busy.conn.isClosed, `the busy tunnel is open after ${Date.now() - opened} ms`);
    const stopped = Date.now();
    assert.ok(await busy.conn.closedWithin(5000 * SLOW), 'the busy tunnel closes once idle');
    t.diagnostic(`busy tunnel closed ${busy.conn.closedAt - stopped} ms after its last frame`);
  } finally {
    busy.conn.destroy();
    silent.conn.destroy();
  }
  const reasons = gw.logs.filter((l) => l.event === 'tunnel_close').map((l) => l.reason);
  assert.deepEqual(reasons, ['idle_timeout', 'idle_timeout']);
  assert.equal(await tunnelMetric(gw, 'idle_timeout'), 2);
  await waitFor(async () => (await (await request(stub.port, { path: '/_ws/state' })).body.toString()).includes('"open":0'),
    5000 * SLOW, 'the upstream side closed too');
});

itest('50 MiB each way through one tunnel arrive intact, with backpressure and bounded gateway memory', { timeout: 300000 * SLOW }, async (t, h) => {
  const stub = await startWsStub(h);
  const gw = await h.startGateway(h.config({ upstream: { url: stub.url } }), { env: gatewayEnv() });
  const warm = await wsConnect(gw.port);
  assertSwitched(warm, 'warm-up');
  assert.equal((await warm.conn.roundTrip(ws.OP_BINARY, crypto.randomBytes(1 * MiB))).payload.length, MiB);
  warm.conn.destroy();
  await sleep(200);
  const baseline = gw.rss();
  let peak = baseline;
  const sampler = setInterval(() => {
    try {
      peak = Math.max(peak, gw.rss());
    } catch (err) {
      // gone: the transfer fails and says so
    }
  }, 50);

  const total = 50 * MiB;
  const frameSize = 64 * 1024;
  const res = await wsConnect(gw.port);
  assertSwitched(res, 'the transfer');
  const conn = res.conn;
  const sent = crypto.createHash('sha256');
  const received = crypto.createHash('sha256');
  let receivedBytes = 0;
  let paused = false;
  const allBack = new Promise((resolve, reject) => {
    conn.onFrame = (frame) => {
      received.update(frame.payload);
      receivedBytes += frame.payload.length;
      // The reader stops twice for 1.5 s: the echo upstream and then the sender must be held back.
      if (!paused && (receivedBytes >= 10 * MiB && receivedBytes - frame.payload.length < 10 * MiB ||
        receivedBytes >= 30 * MiB && receivedBytes - frame.payload.length < 30 * MiB)) {
        paused = true;
        conn.socket.pause();
        setTimeout(() => {
          paused = false;
          conn.socket.resume();
        }, 1500);
      }
      if (receivedBytes >= total) {
        resolve();
      }
    };
    conn.closed.then(() => reject(new Error(`closed after ${receivedBytes} bytes back`)));
  });
  const started = Date.now();
  try {
    for (let offset = 0; offset < total; offset += frameSize) {
      const payload = crypto.randomBytes(frameSize);
      sent.update(payload);
      await conn.send(ws.OP_BINARY, payload);
    }
    await withTimeout(allBack, 240000 * SLOW, 'the whole echo');
  } finally {
    clearInterval(sampler);
    conn.destroy();
  }
  const seconds = (Date.now() - started) / 1000;
  const growth = peak - baseline;
  t.diagnostic(`50 MiB each way in ${seconds.toFixed(1)} s (with two 1.5 s reader stops); gateway RSS baseline ` +
    `${(baseline / MiB).toFixed(1)} MiB, peak ${(peak / MiB).toFixed(1)} MiB, growth ${(growth / MiB).toFixed(1)} MiB`);
  assert.equal(receivedBytes, total, 'every byte came back');
  assert.equal(received.digest('hex'), sent.digest('hex'), 'the bytes are the ones sent');
  assert.ok(growth < 32 * MiB, `RSS grew by ${(growth / MiB).toFixed(1)} MiB during the transfer (limit 32 MiB)`);
  const closed = await gw.waitLog((l) => l.event === 'tunnel_close' && l.bytes_to_client >= total, 5000 * SLOW, 'tunnel_close');
  assert.ok(closed.bytes_to_upstream >= total);
});

itest('TLS both ways: a wss client on a TLS listener, tunnelled to an https upstream', async (t, h) => {
  const cert = h.makeCert();
  const stub = await startWsStub(h, ['--cert', cert.cert, '--key', cert.key]);
  const gw = await h.startGateway(h.config({
    listeners: [{ address: '127.0.0.1', port: 0, tls: { cert: cert.cert, key: cert.key } }],
    upstream: { url: `https://127.0.0.1:${stub.port}`, ca_file: cert.cert },
  }));
  const res = await wsConnect(gw.port, { ca: cert.pem, path: '/ws/greet', extra: ws.encodeFrame(ws.OP_TEXT, 'early', { mask: true }) });
  assertSwitched(res, 'wss');
  const conn = res.conn;
  try {
    assert.equal((await conn.next()).payload.toString(), 'hello');
    assert.equal((await conn.next()).payload.toString(), 'early');
    const bytes = crypto.randomBytes(3 * MiB);
    const back = await conn.roundTrip(ws.OP_BINARY, bytes);
    assert.ok(back.payload.equals(bytes), '3 MiB through TLS on both sides');
  } finally {
    conn.destroy();
  }
  assert.ok(await conn.closedWithin(2000 * SLOW));
  const tlsStub = await new Promise((resolve, reject) => {
    const req = require('node:https').get({ host: '127.0.0.1', port: stub.port, path: '/__stub/log', ca: cert.pem }, (r) => {
      const chunks = [];
      r.on('data', (c) => chunks.push(c));
      r.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString())));
    });
    req.on('error', reject);
  });
  const seen = tlsStub.find((r) => r.upgrade);
  assert.ok(seen, 'the https upstream got the handshake');
  assert.ok(seen.headers.some(([n, v]) => n.toLowerCase() === 'x-forwarded-proto' && v === 'https'));
  await gw.waitLog((l) => l.event === 'tunnel_close' && l.reason === 'client_closed', 5000 * SLOW, 'tunnel_close');
});

itest('tunnels count in limits.connections, outlive a reload, and SIGTERM closes them after drain_timeout_s', async (t, h) => {
  const stub = await startWsStub(h);
  const gw = await h.startGateway(h.config({ upstream: { url: stub.url }, limits: { connections: 2, tunnels: 2 }, drain_timeout_s: 2 }));
  const a = await wsConnect(gw.port);
  const b = await wsConnect(gw.port);
  assertSwitched(a, 'a');
  assertSwitched(b, 'b');
  // Two tunnels hold both connections: a third client is not served while they last.
  const third = request(gw, { path: '/_sso/healthz', timeout: 20000 * SLOW });
  const early = await Promise.race([third.then(() => 'answered'), sleep(1000).then(() => 'waiting')]);
  assert.equal(early, 'waiting', 'no third connection served while two tunnels are open');
  b.conn.destroy();
  assert.equal((await third).status, 200, 'served once a tunnel closed');

  // A reload leaves the open tunnel on the snapshot it began with.
  gw.signal('SIGHUP');
  await gw.waitLog((l) => l.event === 'reload' && l.result === 'ok', 5000 * SLOW, 'the reload');
  assert.equal((await a.conn.roundTrip(ws.OP_TEXT, 'after reload')).payload.toString(), 'after reload');

  const signalled = Date.now();
  gw.signal('SIGTERM');
  await sleep(500);
  assert.ok(gw.alive, 'draining while a tunnel is open');
  const pong = await a.conn.roundTrip(ws.OP_PING, 'still here');
  assert.equal(pong.opcode, ws.OP_PONG, 'the tunnel works during the drain');
  const exit = await gw.waitExit(6000 * SLOW);
  const elapsed = Date.now() - signalled;
  t.diagnostic(`exit ${JSON.stringify(exit)} ${elapsed} ms after SIGTERM with a tunnel open (drain_timeout_s 2)`);
  assert.deepEqual(exit, { code: 0, signal: null });
  assert.ok(elapsed >= 1800, `waited for the drain timeout (${elapsed} ms)`);
  assert.ok(await a.conn.closedWithin(2000 * SLOW), 'the client side was closed');
  a.conn.destroy();
  const reasons = gw.logs.filter((l) => l.event === 'tunnel_close').map((l) => l.reason).sort();
  assert.deepEqual(reasons, ['client_closed', 'shutdown']);
});

// Tunnels are never reclaimed at limits.connections (they are not idle HTTP): limits.tunnels (half of
// limits.connections by default) keeps the rest for HTTP. A handshake past it gets 503 and the
// connection closes; plain requests go on; a slot that frees takes the next handshake.
itest('limits.tunnels: a handshake past it gets 503 and never reaches the upstream; HTTP is still served', async (t, h) => {
  const stub = await startWsStub(h);
  const gw = await h.startGateway(h.config({ upstream: { url: stub.url }, limits: { connections: 4 } }));
  const a = await wsConnect(gw.port);
  const b = await wsConnect(gw.port);
  assertSwitched(a, 'a');
  assertSwitched(b, 'b');
  const seen = (await handshakesSeen(stub)).length;
  const third = await wsConnect(gw.port, { path: '/ws/echo?third' });
  assert.equal(third.status, 503, 'past limits.tunnels (4 / 2)');
  assert.match(third.headers.connection || '', /close/i);
  assert.equal(third.closed, true, 'the connection closed after the 503');
  assert.equal((await handshakesSeen(stub)).length, seen, 'the refused handshake never reached the upstream');
  assert.equal(await tunnelMetric(gw, 'refused_limit'), 1);
  const line = gw.logs.find((l) => l.event === 'tunnels_full');
  assert.ok(line && line.limit === 2 && line.refused === 1, `logged: ${JSON.stringify(line)}`);
  for (let i = 0; i < 3; i++) {
    assert.equal((await request(gw, { path: `/echo/while-full${i}` })).status, 200, 'HTTP is served meanwhile');
  }
  a.conn.destroy();
  await waitFor(async () => (await tunnelMetric(gw, 'client_closed')) === 1, 5000 * SLOW, 'the tunnel closed');
  const fourth = await wsConnect(gw.port);
  assertSwitched(fourth, 'a handshake once a tunnel closed');
  assert.equal((await fourth.conn.roundTrip(ws.OP_TEXT, 'fits')).payload.toString(), 'fits');
  fourth.conn.destroy();
  b.conn.destroy();
});

// ---- with the IdP: sessions --------------------------------------------------------------------

const sessionTest = harness.sharedEnv('websocket_sessions', async (h) => {
  const stub = await startWsStub(h);
  const env = await startOidcEnv(h, { gateway: { upstream: { url: stub.url } } });
  env.stub = stub;
  return env;
});

// The session cookie header of a logged-in browser.
function cookieOf(env, browser) {
  const cookie = browser.jar.header(new URL(env.gwUrl));
  assert.match(cookie || '', /ssogate=/, 'the browser holds the session cookie');
  return cookie;
}

sessionTest('a required route: no session is a 401 that never reaches the upstream', async (env) => {
  await env.stub.reset();
  const res = await wsConnect(env.gwPort, { path: '/private/ws/echo' });
  assert.equal(res.status, 401, 'a WebSocket cannot follow the login redirect: 401');
  assert.equal(res.headers.location, undefined);
  const forged = await wsConnect(env.gwPort, { path: '/private/ws/echo', headers: [['Cookie', `ssogate=${'A'.repeat(43)}`]] });
  assert.equal(forged.status, 401, 'an unknown session id is no session');
  assert.deepEqual(await handshakesSeen(env.stub), [], 'the upstream saw nothing');
  // The ordinary GET of the same route still redirects to the login.
  const page = await request(env.gw, { path: '/private/page' });
  assert.equal(page.status, 302);
});

sessionTest('with a session: 101 with the identity upstream; the logout closes the tunnel within 2 s', async (env, t) => {
  await env.stub.reset();
  const login = await env.login({ returnTo: '/' });
  assert.equal(login.callback.status, 302, 'logged in');
  const cookie = cookieOf(env, login.browser);
  const res = await wsConnect(env.gwPort, {
    path: '/private/ws/echo',
    headers: [['Cookie', `${cookie}; app=1`], ['X-SSO-Subject', 'mallory'], ['X_SSO_Subject', 'mallory']],
  });
  assertSwitched(res, 'a handshake with a session');
  const conn = res.conn;
  try {
    const [seen] = await handshakesSeen(env.stub);
    assert.equal(seen.headers['x-sso-subject'], 'itc-user-alice', 'the identity went upstream, not the forged one');
    assert.equal(seen.headers.x_sso_subject, undefined, 'the underscore spelling is dropped');
    assert.doesNotMatch(seen.headers.cookie, /(^|;\s*)ssogate=/, 'the gateway cookie stays at the gateway');
    assert.match(seen.headers.cookie, /(^|;\s*)app=1$/, 'the application cookie goes upstream');
    const { claims } = verifyAssertion(seen.headers['x-sso-assertion'], await env.gatewayJwks());
    assert.equal(claims.sub, 'itc-user-alice');
    assert.equal((await conn.roundTrip(ws.OP_TEXT, 'as alice')).payload.toString(), 'as alice');
    await env.gw.waitLog((l) => l.event === 'tunnel_open' && l.session === true, 5000, 'tunnel_open with a session');

    // A tunnel without a session on an optional route is not touched by the logout.
    const anonymous = await wsConnect(env.gwPort, { path: '/ws/echo' });
    assertSwitched(anonymous, 'anonymous');
    const [, anonymousSeen] = await handshakesSeen(env.stub);
    assert.equal(anonymousSeen.headers['x-sso-subject'], undefined, 'no identity without a session');

    const logout = await login.browser.request(`${env.gwUrl}/_sso/logout`, { method: 'POST', headers: { origin: env.gwUrl } });
    assert.equal(logout.status, 303);
    const loggedOut = Date.now();
    assert.ok(await conn.closedWithin(2500 * SLOW), 'the tunnel of the ended session closed');
    t.diagnostic(`tunnel closed ${conn.closedAt - loggedOut} ms after the logout`);
    const closed = await env.gw.waitLog((l) => l.event === 'tunnel_close' && l.request_id === res.headers['x-request-id'], 5000, 'tunnel_close');
    assert.equal(closed.reason, 'session_ended');
    assert.equal((await anonymous.conn.roundTrip(ws.OP_TEXT, 'still open')).payload.toString(), 'still open');
    anonymous.conn.destroy();
  } finally {
    conn.destroy();
  }
});

sessionTest('a session deleted behind the gateway (B8-style, in the store) closes its tunnel too', async (env) => {
  const login = await env.login({ returnTo: '/' });
  const cookie = cookieOf(env, login.browser);
  const res = await wsConnect(env.gwPort, { path: '/ws/echo', headers: [['Cookie', cookie]] });
  assertSwitched(res, 'optional route with a session');
  // Signing out of the PSA (its logout path, proxied) ends the gateway session as well.
  const psaLogout = await login.browser.request(`${env.gwUrl}/logout`, { method: 'POST', body: '' });
  assert.ok(psaLogout.status > 0);
  assert.ok(await res.conn.closedWithin(2500 * SLOW), 'the tunnel closed once the session was gone');
  res.conn.destroy();
});

// Sessions with a short idle timeout: traffic in a tunnel is activity of its session.
const idleSessionTest = harness.sharedEnv('websocket_idle_sessions', async (h) => {
  const stub = await startWsStub(h);
  const env = await startOidcEnv(h, {
    gateway: { upstream: { url: stub.url }, session: { idle_timeout_s: 3, absolute_timeout_s: 60 } },
  });
  env.stub = stub;
  return env;
});

idleSessionTest('traffic in a tunnel keeps its session alive past the idle timeout', async (env, t) => {
  const login = await env.login({ returnTo: '/' });
  const cookie = cookieOf(env, login.browser);
  const res = await wsConnect(env.gwPort, { path: '/private/ws/echo', headers: [['Cookie', cookie]] });
  assertSwitched(res, 'a handshake with a session');
  const started = Date.now();
  try {
    // 6 s of traffic, twice the session's idle timeout, with no HTTP request beside it.
    for (let i = 0; Date.now() - started < 6000; i++) {
      const echo = await res.conn.roundTrip(ws.OP_TEXT, `tick ${i}`);
      assert.equal(echo.payload.toString(), `tick ${i}`, `the tunnel is open after ${Date.now() - started} ms`);
      await sleep(700);
    }
    const status = await request(env.gw, { path: '/_sso/status', headers: { cookie, accept: 'application/json' } });
    assert.equal(status.status, 200);
    assert.equal(JSON.parse(status.body.toString()).session, true,
      'the session outlived its idle timeout thanks to the tunnel\'s traffic');
  } finally {
    res.conn.destroy();
  }
  t.diagnostic(`tunnel and session alive ${Date.now() - started} ms with idle_timeout_s 3`);
});
