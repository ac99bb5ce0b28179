'use strict';
// The skeleton shared by every stub server (the upstream now, a stub PSA and IdP later): an HTTP server on
// loopback with a route table, a bounded log of the requests it received (read by tests through
// /__stub/log, which a test asks the stub directly, never through the gateway), and the start-up
// protocol the test harness expects: the first stdout line is {"port":N}.

const http = require('node:http');
const crypto = require('node:crypto');

const LOG_LIMIT = 2000;

// Reads a whole request body, up to limit bytes (the rest is discarded, and counted).
// Resolves to {body: Buffer, length: total bytes received, sha256: hex digest of all bytes}.
function readBody(req, limit = 16 * 1024 * 1024) {
  return new Promise((resolve, reject) => {
    const hash = crypto.createHash('sha256');
    const chunks = [];
    let kept = 0;
    let length = 0;
    req.on('data', (chunk) => {
      hash.update(chunk);
      length += chunk.length;
      if (kept < limit) {
        const part = chunk.subarray(0, limit - kept);
        chunks.push(part);
        kept += part.length;
      }
    });
    req.on('end', () => resolve({ body: Buffer.concat(chunks), length, sha256: hash.digest('hex') }));
    req.on('error', reject);
  });
}

// Headers as [name, value] pairs, in the order and spelling received.
function headerPairs(req) {
  const pairs = [];
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    pairs.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);
  }
  return pairs;
}

function sendJson(res, status, value, extraHeaders = {}) {
  const body = Buffer.from(JSON.stringify(value));
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': body.length,
    ...extraHeaders,
  });
  res.end(body);
}

// Creates a stub server. routes maps a first path segment ("echo" for /echo and /echo/...) to an async
// handler (req, res, ctx) where ctx = {name, url: URL, segments}; fallback handles every other path.
// Returns {server, listen(port, host) -> Promise<port>, log}.
function createStub({ name, routes, fallback }) {
  const log = [];
  const server = http.createServer(async (req, res) => {
    let url;
    try {
      url = new URL(req.url, 'http://stub.invalid');
    } catch {
      sendJson(res, 400, { error: 'bad request target' });
      return;
    }
    const segments = url.pathname.split('/').filter((s) => s.length > 0);
    if (segments[0] === '__stub') {
      if (segments[1] === 'log') {
        sendJson(res, 200, log);
      } else if (segments[1] === 'reset') {
        log.length = 0;
        sendJson(res, 200, { ok: true });
      } else {
        sendJson(res, 404, { error: 'unknown stub control path' });
      }
      return;
    }
    log.push({ time: Date.now(), method: req.method, url: req.url, headers: headerPairs(req) });
    if (log.length > LOG_LIMIT) {
      log.splice(0, log.length - LOG_LIMIT);
    }
    const handler = Object.prototype.hasOwnProperty.call(routes, segments[0] || '')
      ? routes[segments[0]]
      : fallback;
    try {
      await handler(req, res, { name, url, segments });
    } catch (err) {
      if (!res.headersSent) {
        sendJson(res, 500, { error: String(err && err.message) });
      } else {
        res.destroy();
      }
    }
  });
  // Malformed requests are part of what the tests send through the gateway: answer, never crash.
  server.on('clientError', (err, socket) => {
    if (socket.writable) {
      socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    } else {
      socket.destroy();
    }
  });
  return {
    server,
    log,
    listen(port = 0, host = '127.0.0.1') {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => resolve(server.address().port));
      });
    },
  };
}

// Parses "--key value" command-line options into an object.
function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    if (argv[i].startsWith('--')) {
      const key = argv[i].slice(2);
      const next = argv[i + 1];
      if (next !== undefined && !next.startsWith('--')) {
        out[key] = next;
        i++;
      } else {
        out[key] = true;
      }
    }
  }
  return out;
}

// Runs a stub as a process: listens, prints {"port":N} first on stdout, and exits on SIGTERM/SIGINT, or
// with --exit-with-stdin when its parent closes stdin (so a crashed test runner never leaves a stub behind).
async function runMain(stub, args) {
  const port = await stub.listen(Number(args.port || 0), args.host || '127.0.0.1');
  process.stdout.write(JSON.stringify({ port }) + '\n');
  const stop = () => process.exit(0);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  if (args['exit-with-stdin']) {
    process.stdin.on('end', stop);
    process.stdin.on('error', stop);
    process.stdin.resume();
  }
}

module.exports = { createStub, readBody, headerPairs, sendJson, parseArgs, runMain };
