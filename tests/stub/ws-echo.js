#!/usr/bin/env node
'use strict';
// A WebSocket echo upstream for the tunnel tests (RFC 6455, node's standard library only):
// `node tests/stub/ws-echo.js [--name NAME] [--port N] [--cert FILE --key FILE]`. Listens on 127.0.0.1
// (port 0 by default, https with --cert/--key) and prints {"port":N} as its first stdout line.
//
// WebSocket handshakes (the server's 'upgrade' event), by path:
//   /ws/refuse?status=N   answers N (default 403) with a small text body and closes
//   /ws/not-websocket     answers 101 with "Upgrade: h2c" (a gateway must not relay it)
//   /ws/no-accept         answers 101 websocket without Sec-WebSocket-Accept (nor should it relay that)
//   /ws/wrong-accept      answers 101 websocket with the Sec-WebSocket-Accept of another key
//   /ws/greet             accepts, and sends a text frame "hello" in the same write as its 101 head
//   /ws/silent            accepts and never answers a frame (for idle timeouts)
//   anything else         accepts and echoes: text and binary frames (continuations too) come back with
//                         the same opcode and FIN bit, a ping gets its pong, a close gets a close and the
//                         end of the connection. Writes wait for 'drain' (reading stops meanwhile), so a
//                         slow reader slows the sender instead of filling memory.
// A handshake with an Upgrade other than websocket (h2c) is logged and answered 101 h2c, so that a test
// sees it if a gateway ever lets one through.
//
// Plain requests: /always101 answers a raw "101 Switching Protocols" with Upgrade: h2c whatever was asked;
// /_ws/state answers {open, opened, closed: [{url, reason, bytesIn, bytesOut}]}; every other path is the
// upstream stub's echo (JSON of what arrived). /__stub/log lists every request and handshake received.
//
// Exports the frame codec (encodeFrame, FrameParser, acceptKey) for the tests' own client.

const crypto = require('node:crypto');
const fs = require('node:fs');
const https = require('node:https');
const { createStub, headerPairs, parseArgs, runMain, sendJson } = require('./lib/server');
const { fallback } = require('./lib/upstream-routes');

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const MAX_PAYLOAD = 16 * 1024 * 1024;

const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const OP_PONG = 0xa;

// The Sec-WebSocket-Accept value for a Sec-WebSocket-Key.
function acceptKey(key) {
  return crypto.createHash('sha1').update(`${key}${GUID}`).digest('base64');
}

// XORs payload in place with the 4-byte mask.
function applyMask(payload, mask) {
  const n = payload.length;
  const m0 = mask[0];
  const m1 = mask[1];
  const m2 = mask[2];
  const m3 = mask[3];
  let i = 0;
  for (; i + 3 < n; i += 4) {
    payload[i] ^= m0;
    payload[i + 1] ^= m1;
    payload[i + 2] ^= m2;
    payload[i + 3] ^= m3;
  }
  for (; i < n; i++) {
    payload[i] ^= mask[i & 3];
  }
  return payload;
}

// One frame: opcode, payload (Buffer or string), options: fin (default true), mask (a client's frames
// are masked: true for a random key).
function encodeFrame(opcode, payload = Buffer.alloc(0), { fin = true, mask = false } = {}) {
  const data = Buffer.isBuffer(payload) ? Buffer.from(payload) : Buffer.from(String(payload));
  const length = data.length;
  const extended = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const head = Buffer.alloc(2 + extended + (mask ? 4 : 0));
  head[0] = (fin ? 0x80 : 0) | opcode;
  head[1] = (mask ? 0x80 : 0) | (extended === 0 ? length : extended === 2 ? 126 : 127);
  if (extended === 2) {
    head.writeUInt16BE(length, 2);
  } else if (extended === 8) {
    head.writeBigUInt64BE(BigInt(length), 2);
  }
  if (mask) {
    const key = crypto.randomBytes(4);
    key.copy(head, 2 + extended);
    applyMask(data, key);
  }
  return Buffer.concat([head, data]);
}

// Parses a byte stream into frames {fin, opcode, payload (unmasked)}. requireMask: frames from a client
// must be masked (RFC 6455 section 5.1). Throws on a protocol error.
class FrameParser {
  constructor({ requireMask = false, maxPayload = MAX_PAYLOAD } = {}) {
    this.requireMask = requireMask;
    this.maxPayload = maxPayload;
    this.chunks = [];
    this.length = 0;
  }

  // Adds chunk; returns the frames it completed, oldest first.
  push(chunk) {
    this.chunks.push(chunk);
    this.length += chunk.length;
    const frames = [];
    for (;;) {
      const frame = this.next();
      if (frame === null) {
        return frames;
      }
      frames.push(frame);
    }
  }

  // The first n buffered bytes, consumed, or null when fewer are buffered.
  take(n) {
    if (this.length < n) {
      return null;
    }
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.length = rest.length;
    return out;
  }

  peek(n) {
    if (this.length < n) {
      return null;
    }
    if (this.chunks[0].length < n) {
      this.chunks = [Buffer.concat(this.chunks)];
    }
    return this.chunks[0].subarray(0, n);
  }

  next() {
    const b = this.peek(2);
    if (b === null) {
      return null;
    }
    const masked = (b[1] & 0x80) !== 0;
    const code = b[1] & 0x7f;
    const extended = code < 126 ? 0 : code === 126 ? 2 : 8;
    const headLength = 2 + extended + (masked ? 4 : 0);
    const head = this.peek(headLength);
    if (head === null) {
      return null;
    }
    if ((head[0] & 0x70) !== 0) {
      throw new Error('reserved bits set');
    }
    if (this.requireMask && !masked) {
      throw new Error('unmasked frame from a client');
    }
    let length = code;
    if (extended === 2) {
      length = head.readUInt16BE(2);
    } else if (extended === 8) {
      const big = head.readBigUInt64BE(2);
      if (big > BigInt(this.maxPayload)) {
        throw new Error(`frame of ${big} bytes over the limit`);
      }
      length = Number(big);
    }
    if (length > this.maxPayload) {
      throw new Error(`frame of ${length} bytes over the limit`);
    }
    if (this.length < headLength + length) {
      return null;
    }
    const all = this.take(headLength + length);
    const payload = Buffer.from(all.subarray(headLength));
    if (masked) {
      applyMask(payload, all.subarray(2 + extended, headLength));
    }
    return { fin: (head[0] & 0x80) !== 0, opcode: head[0] & 0x0f, payload };
  }
}

function createWsEcho({ name, tlsOptions }) {
  const state = { open: 0, opened: 0, closed: [] };
  const routes = {
    always101(req, res) {
      res.socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n');
      res.socket.destroySoon();
    },
    _ws(req, res) {
      sendJson(res, 200, state);
    },
  };
  const stub = createStub({ name, routes, fallback });
  let server = stub.server;
  if (tlsOptions) {
    // The same handlers behind TLS: the plain server's listeners move to an https one.
    server = https.createServer(tlsOptions);
    for (const event of ['request', 'clientError']) {
      for (const listener of stub.server.listeners(event)) {
        server.on(event, listener);
      }
    }
    stub.server = server;
    stub.listen = (port = 0, host = '127.0.0.1') => new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve(server.address().port));
    });
  }
  server.on('upgrade', (req, socket, head) => {
    stub.log.push({ time: Date.now(), method: req.method, url: req.url, headers: headerPairs(req), upgrade: true });
    socket.on('error', () => {});
    const url = new URL(req.url, 'http://stub.invalid');
    if (String(req.headers.upgrade).toLowerCase() !== 'websocket') {
      socket.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n');
      return;
    }
    if (url.pathname === '/ws/refuse') {
      const status = Number(url.searchParams.get('status') || 403);
      const body = `refused with ${status}\n`;
      socket.end(`HTTP/1.1 ${status} Refused\r\nContent-Type: text/plain\r\nX-Refused-By: ${name}\r\n` +
        `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
      return;
    }
    if (url.pathname === '/ws/not-websocket') {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n');
      return;
    }
    if (url.pathname === '/ws/no-accept' || url.pathname === '/ws/wrong-accept') {
      const accept = url.pathname === '/ws/wrong-accept' ? `Sec-WebSocket-Accept: ${acceptKey('dGhlIHNhbXBsZSBub25jZQ==')}\r\n` : '';
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${accept}\r\n`);
      return;
    }
    let response = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${acceptKey(req.headers['sec-websocket-key'])}\r\n`;
    const protocols = String(req.headers['sec-websocket-protocol'] || '').split(',').map((p) => p.trim());
    if (protocols.includes('echo.v1')) {
      response += 'Sec-WebSocket-Protocol: echo.v1\r\n';
    }
    response += 'X-Upstream-Only: not relayed\r\n\r\n';
    const record = { url: req.url, reason: null, bytesIn: 0, bytesOut: 0 };
    state.open++;
    state.opened++;
    let ended = false;
    const end = (reason) => {
      if (!ended) {
        ended = true;
        record.reason = reason;
        state.open--;
        state.closed.push(record);
      }
    };
    socket.on('close', () => end('closed'));
    socket.on('end', () => {
      end('peer ended');
      socket.end();
    });
    const send = (frame) => {
      record.bytesOut += frame.length;
      if (!socket.write(frame)) {
        socket.pause();
        socket.once('drain', () => socket.resume());
      }
    };
    if (url.pathname === '/ws/greet') {
      socket.write(Buffer.concat([Buffer.from(response), encodeFrame(OP_TEXT, 'hello')]));
    } else {
      socket.write(response);
    }
    const parser = new FrameParser({ requireMask: true });
    const onData = (chunk) => {
      record.bytesIn += chunk.length;
      let frames;
      try {
        frames = parser.push(chunk);
      } catch (err) {
        end(`protocol error: ${err.message}`);
        socket.destroy();
        return;
      }
      for (const frame of frames) {
        if (url.pathname === '/ws/silent') {
          continue;
        }
        if (frame.opcode === OP_TEXT || frame.opcode === OP_BINARY || frame.opcode === OP_CONTINUATION) {
          send(encodeFrame(frame.opcode, frame.payload, { fin: frame.fin }));
        } else if (frame.opcode === OP_PING) {
          send(encodeFrame(OP_PONG, frame.payload));
        } else if (frame.opcode === OP_CLOSE) {
          end('close frame');
          socket.end(encodeFrame(OP_CLOSE, frame.payload.subarray(0, 2)));
          return;
        }
      }
    };
    if (head.length > 0) {
      onData(head);
    }
    socket.on('data', onData);
  });
  return stub;
}

module.exports = { acceptKey, applyMask, encodeFrame, FrameParser, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_CONTINUATION };

if (require.main === module) {
  const args = parseArgs(process.argv.slice(2));
  const tlsOptions = args.cert ? { cert: fs.readFileSync(args.cert), key: fs.readFileSync(args.key) } : undefined;
  runMain(createWsEcho({ name: args.name || 'ws-echo', tlsOptions }), args).catch((err) => {
    process.stderr.write(`ws-echo stub: ${err.stack || err}\n`);
    process.exit(1);
  });
}
