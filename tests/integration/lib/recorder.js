'use strict';
// A recording upstream for the strict data path tests: an in-process HTTP/1.1 server (node `net`, no
// HTTP library in between) that parses the exact bytes it receives and keeps them. Tests assert on what
// the upstream *received*, byte for byte: the request line, the raw header lines in order, the body and
// how it was framed (Content-Length or chunked).
//
// Every request is answered 200 with a JSON body echoing what arrived:
//   {seq, conn, method, target, version, headerLines: [raw line...], headers: [[name, value]...],
//    framing: "length"|"chunked"|"none", bodyLength, bodySha256}
// Keep-alive and pipelining are supported (answers in order on each connection). A request the
// recorder cannot parse is logged with `error` and answered 400, and its connection closed.
//
// Usage:
//   const { startRecorder } = require('./lib/recorder');
//   const rec = await startRecorder();          // rec.port, rec.url
//   ... rec.log (every request, oldest first), rec.since(mark), rec.mark(), await rec.close()

const crypto = require('node:crypto');
const net = require('node:net');

const MAX_HEAD = 256 * 1024;
const MAX_BODY = 64 * 1024 * 1024;

// Parses one request head (the bytes before the blank line, CRLF-separated as an HTTP/1.1 client must
// send them). Returns {method, target, version, headerLines, headers} or {error}.
function parseHead(head) {
  const text = head.toString('latin1');
  const lines = text.split('\r\n');
  const requestLine = lines[0];
  const match = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([^ ]+) (HTTP\/1\.[01])$/.exec(requestLine);
  if (!match) {
    return { error: `malformed request line ${JSON.stringify(requestLine)}`, requestLine };
  }
  const headerLines = lines.slice(1);
  const headers = [];
  for (const line of headerLines) {
    if (/[\r\n\0]/.test(line)) {
      return { error: `a bare CR, LF or NUL in header line ${JSON.stringify(line)}`, requestLine };
    }
    const colon = line.indexOf(':');
    if (colon <= 0) {
      return { error: `header line without a name: ${JSON.stringify(line)}`, requestLine };
    }
    headers.push([line.slice(0, colon), line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '')]);
  }
  return { method: match[1], target: match[2], version: match[3], requestLine, headerLines, headers };
}

// Values of every header line named name (case-insensitive), in order.
function headerValues(headers, name) {
  const lower = name.toLowerCase();
  return headers.filter(([n]) => n.toLowerCase() === lower).map(([, v]) => v);
}

// Tries to take one chunked body from buf at offset start. Returns {body, end} (end: offset after the
// last CRLF), null when more bytes are needed, or {error}.
function takeChunked(buf, start) {
  const parts = [];
  let pos = start;
  let total = 0;
  for (;;) {
    const lineEnd = buf.indexOf('\r\n', pos);
    if (lineEnd < 0) {
      return buf.length - pos > 1024 ? { error: 'chunk size line too long' } : null;
    }
    const sizeLine = buf.subarray(pos, lineEnd).toString('latin1');
    if (!/^[0-9A-Fa-f]{1,15}$/.test(sizeLine)) {
      return { error: `bad chunk size line ${JSON.stringify(sizeLine)}` };
    }
    const size = Number.parseInt(sizeLine, 16);
    if (size === 0) {
      // trailer section: lines until an empty one
      let tpos = lineEnd + 2;
      for (;;) {
        const tEnd = buf.indexOf('\r\n', tpos);
        if (tEnd < 0) {
          return null;
        }
        if (tEnd === tpos) {
          return { body: Buffer.concat(parts), end: tEnd + 2 };
        }
        tpos = tEnd + 2;
      }
    }
    total += size;
    if (total > MAX_BODY) {
      return { error: 'chunked body too large' };
    }
    if (buf.length < lineEnd + 2 + size + 2) {
      return null;
    }
    if (buf[lineEnd + 2 + size] !== 0x0d || buf[lineEnd + 3 + size] !== 0x0a) {
      return { error: 'chunk data not followed by CRLF' };
    }
    parts.push(buf.subarray(lineEnd + 2, lineEnd + 2 + size));
    pos = lineEnd + 2 + size + 2;
  }
}

// Starts a recorder on 127.0.0.1 (port 0 unless given). options.delayMs delays every answer.
async function startRecorder({ port = 0, delayMs = 0 } = {}) {
  const log = [];
  const sockets = new Set();
  let connCount = 0;
  const waiters = [];

  const notify = () => {
    for (const waiter of [...waiters]) {
      if (log.length >= waiter.count) {
        waiters.splice(waiters.indexOf(waiter), 1);
        clearTimeout(waiter.timer);
        waiter.resolve(log.length);
      }
    }
  };

  const server = net.createServer((socket) => {
    const conn = ++connCount;
    sockets.add(socket);
    let buf = Buffer.alloc(0);
    let closing = false;
    let queue = Promise.resolve();
    let requestsOnConn = 0;
    let continuedAt = -1;
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});

    const answer = (entry, keepAlive) => {
      const isHead = entry.method === 'HEAD';
      const status = entry.error ? 400 : 200;
      const body = Buffer.from(JSON.stringify(entry.error ? { error: entry.error } : {
        seq: entry.seq,
        conn: entry.conn,
        method: entry.method,
        target: entry.target,
        version: entry.version,
        headerLines: entry.headerLines,
        headers: entry.headers,
        framing: entry.framing,
        bodyLength: entry.bodyLength,
        bodySha256: entry.bodySha256,
      }));
      const head = `HTTP/1.1 ${status} ${status === 200 ? 'OK' : 'Bad Request'}\r\n`
        + 'Content-Type: application/json\r\n'
        + `Content-Length: ${body.length}\r\n`
        + `Connection: ${keepAlive ? 'keep-alive' : 'close'}\r\n\r\n`;
      queue = queue.then(async () => {
        if (delayMs > 0) {
          await new Promise((resolve) => setTimeout(resolve, delayMs));
        }
        if (socket.destroyed) {
          return;
        }
        socket.write(isHead ? Buffer.from(head) : Buffer.concat([Buffer.from(head), body]));
        if (!keepAlive) {
          socket.end();
        }
      });
    };

    const record = (entry) => {
      entry.seq = log.length + 1;
      entry.conn = conn;
      entry.time = Date.now();
      log.push(entry);
      notify();
    };

    const consume = () => {
      while (!closing) {
        const headEnd = buf.indexOf('\r\n\r\n');
        if (headEnd < 0) {
          if (buf.length > MAX_HEAD) {
            closing = true;
            const entry = { error: 'request head too large', raw: buf };
            record(entry);
            answer(entry, false);
          }
          return;
        }
        const head = buf.subarray(0, headEnd);
        const parsed = parseHead(head);
        if (parsed.error) {
          closing = true;
          const entry = { ...parsed, raw: Buffer.from(buf), rawHead: head.toString('latin1') };
          record(entry);
          answer(entry, false);
          return;
        }
        // An interim answer for a client that waits for one (the gateway should never forward Expect,
        // and the tests assert it does not; this only keeps such a gateway from stalling).
        if (headerValues(parsed.headers, 'expect').some((v) => /^100-continue$/i.test(v)) && continuedAt !== requestsOnConn) {
          continuedAt = requestsOnConn;
          socket.write('HTTP/1.1 100 Continue\r\n\r\n');
        }
        const te = headerValues(parsed.headers, 'transfer-encoding');
        const cl = headerValues(parsed.headers, 'content-length');
        let framing = 'none';
        let body = Buffer.alloc(0);
        let end = headEnd + 4;
        let error = null;
        if (te.length > 0) {
          framing = 'chunked';
          if (cl.length > 0 || te.length !== 1 || te[0].toLowerCase() !== 'chunked') {
            error = `ambiguous framing: Transfer-Encoding ${JSON.stringify(te)}, Content-Length ${JSON.stringify(cl)}`;
          } else {
            const taken = takeChunked(buf, headEnd + 4);
            if (taken === null) {
              return; // more bytes needed
            }
            if (taken.error) {
              error = taken.error;
            } else {
              body = taken.body;
              end = taken.end;
            }
          }
        } else if (cl.length > 0) {
          framing = 'length';
          if (cl.length !== 1 || !/^[0-9]{1,12}$/.test(cl[0]) || Number(cl[0]) > MAX_BODY) {
            error = `bad Content-Length ${JSON.stringify(cl)}`;
          } else {
            const length = Number(cl[0]);
            if (buf.length < headEnd + 4 + length) {
              return; // more bytes needed
            }
            body = buf.subarray(headEnd + 4, headEnd + 4 + length);
            end = headEnd + 4 + length;
          }
        }
        const entry = {
          ...parsed,
          rawHead: head.toString('latin1'),
          raw: Buffer.from(buf.subarray(0, error ? buf.length : end)),
          framing,
          body: Buffer.from(body),
          bodyLength: body.length,
          bodySha256: crypto.createHash('sha256').update(body).digest('hex'),
        };
        if (error) {
          entry.error = error;
          closing = true;
          record(entry);
          answer(entry, false);
          return;
        }
        buf = buf.subarray(end);
        requestsOnConn++;
        const connection = headerValues(parsed.headers, 'connection').join(',').toLowerCase();
        const keepAlive = parsed.version === 'HTTP/1.1'
          ? !/(^|,)\s*close\s*(,|$)/.test(connection)
          : /(^|,)\s*keep-alive\s*(,|$)/.test(connection);
        record(entry);
        answer(entry, keepAlive);
        if (!keepAlive) {
          closing = true;
          return;
        }
      }
    };

    socket.on('data', (chunk) => {
      if (closing) {
        return;
      }
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      consume();
    });
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const actualPort = server.address().port;

  return {
    port: actualPort,
    url: `http://127.0.0.1:${actualPort}`,
    log,
    // The current log length: pass it to since() to get what arrived afterwards.
    mark() {
      return log.length;
    },
    since(mark) {
      return log.slice(mark);
    },
    // Resolves once at least count requests were logged (or rejects after ms).
    waitCount(count, ms = 5000) {
      if (log.length >= count) {
        return Promise.resolve(log.length);
      }
      return new Promise((resolve, reject) => {
        const waiter = { count, resolve };
        waiter.timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error(`recorder: ${log.length} requests after ${ms} ms, wanted ${count}`));
        }, ms);
        waiters.push(waiter);
      });
    },
    connections() {
      return connCount;
    },
    async close() {
      for (const socket of sockets) {
        socket.destroy();
      }
      for (const waiter of waiters.splice(0)) {
        clearTimeout(waiter.timer);
      }
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

// A raw client connection for the tests: writes exact bytes, reads responses one at a time by their
// framing (1xx interim answers come back as responses of their own), and tells whether the peer closed.
class RawConn {
  static open(port, ms = 5000) {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connect to 127.0.0.1:${port} timed out`));
      }, ms);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(new RawConn(socket));
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  constructor(socket) {
    this.socket = socket;
    this.buf = Buffer.alloc(0);
    this.closed = false;
    this.wake = null;
    socket.on('data', (chunk) => {
      this.buf = Buffer.concat([this.buf, chunk]);
      this.poke();
    });
    const gone = () => {
      this.closed = true;
      this.poke();
    };
    socket.on('end', gone);
    socket.on('close', gone);
    socket.on('error', gone);
  }

  poke() {
    if (this.wake) {
      const wake = this.wake;
      this.wake = null;
      wake();
    }
  }

  // Waits (bounded) until check() is truthy or the connection closed; returns check()'s value.
  async until(check, ms) {
    const deadline = Date.now() + ms;
    for (;;) {
      const value = check();
      if (value || this.closed) {
        return value;
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        return value;
      }
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  write(data) {
    if (!this.closed && !this.socket.destroyed) {
      this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
    }
  }

  // Takes the next response off the buffer: {status, head, headers: [[name, value]...], header(name),
  // body: Buffer}; null when none arrived (complete) within ms. noBody: the answer to a HEAD request.
  async read(ms = 5000, { noBody = false } = {}) {
    const parsed = await this.until(() => takeResponse(this.buf, noBody), ms);
    if (!parsed) {
      return null;
    }
    this.buf = this.buf.subarray(parsed.end);
    return parsed;
  }

  // True once the peer has closed the connection (waits up to ms), with nothing more to read.
  async waitClosed(ms = 2000) {
    await this.until(() => false, ms);
    return this.closed;
  }

  destroy() {
    this.socket.destroy();
  }
}

// Parses one response at the start of buf; null when incomplete. A body framed by the connection's
// close is not expected from the gateway (it always frames its answers) and reads as empty.
function takeResponse(buf, noBody) {
  const headEnd = buf.indexOf('\r\n\r\n');
  if (headEnd < 0) {
    return null;
  }
  const head = buf.subarray(0, headEnd).toString('latin1');
  const lines = head.split('\r\n');
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
  const status = match ? Number(match[1]) : null;
  const headers = lines.slice(1).map((line) => {
    const colon = line.indexOf(':');
    return [line.slice(0, colon), line.slice(colon + 1).trim()];
  });
  const header = (name) => {
    const values = headers.filter(([n]) => n.toLowerCase() === name.toLowerCase()).map(([, v]) => v);
    return values.length === 0 ? undefined : values.join(', ');
  };
  const result = { status, head, headers, header, body: Buffer.alloc(0), end: headEnd + 4 };
  if (noBody || (status >= 100 && status < 200) || status === 204 || status === 304) {
    return result;
  }
  if (/chunked/i.test(header('transfer-encoding') || '')) {
    const taken = takeChunked(buf, headEnd + 4);
    if (taken === null || taken.error) {
      return null;
    }
    result.body = taken.body;
    result.end = taken.end;
    return result;
  }
  const length = Number(header('content-length') || 0);
  if (buf.length < headEnd + 4 + length) {
    return null;
  }
  result.body = buf.subarray(headEnd + 4, headEnd + 4 + length);
  result.end = headEnd + 4 + length;
  return result;
}

module.exports = { startRecorder, parseHead, headerValues, takeChunked, RawConn, takeResponse };

// ---------------------------------------------------------------------------------------------------
// What an upstream makes of a path, and the corpus runner shared by the strict_* suites.

const UNRESERVED = /[A-Za-z0-9\-._~]/;

// RFC 3986 section 5.2.4, remove_dot_segments, as written (empty segments are segments).
function removeDotSegments(input) {
  let rest = input;
  let out = '';
  while (rest.length > 0) {
    if (rest.startsWith('../')) {
      rest = rest.slice(3);
    } else if (rest.startsWith('./')) {
      rest = rest.slice(2);
    } else if (rest.startsWith('/./')) {
      rest = rest.slice(2);
    } else if (rest === '/.') {
      rest = '/';
    } else if (rest.startsWith('/../')) {
      rest = rest.slice(3);
      out = out.slice(0, Math.max(0, out.lastIndexOf('/')));
    } else if (rest === '/..') {
      rest = '/';
      out = out.slice(0, Math.max(0, out.lastIndexOf('/')));
    } else if (rest === '.' || rest === '..') {
      rest = '';
    } else {
      const next = rest.indexOf('/', rest.startsWith('/') ? 1 : 0);
      const segment = next < 0 ? rest : rest.slice(0, next);
      out += segment;
      rest = next < 0 ? '' : rest.slice(next);
    }
  }
  return out;
}

// The paths ordinary upstreams resolve from a request-line target (the query cut off): escapes of
// unreserved characters decoded (RFC 3986 6.2.2.2), `;` parameters cut from every segment (Tomcat,
// Spring, Jetty) before or after the dot segments are resolved, and repeated slashes merged before the
// dot segments are removed, or the dot segments removed first (RFC 3986 5.2.4 as written) and the
// slashes merged after. `..` above the
// root is dropped, as browsers and most servers do. decodeSlash: %2F read as `/` too (an upstream that
// decodes it); caseInsensitive: folded to lower case (IIS). Returns the four readings.
function upstreamViews(target, { decodeSlash = false, caseInsensitive = false } = {}) {
  let path = target.split('?')[0].split('#')[0];
  path = path.replace(/%([0-9A-Fa-f]{2})/g, (all, hex) => {
    const ch = String.fromCharCode(Number.parseInt(hex, 16));
    if (UNRESERVED.test(ch) || (decodeSlash && ch === '/')) {
      return ch;
    }
    return `%${hex.toUpperCase()}`;
  });
  const cut = (p) => p.split('/').map((s) => s.split(';')[0]).join('/');
  const merge = (p) => p.replace(/\/{2,}/g, '/');
  const views = [
    removeDotSegments(merge(cut(path))),
    merge(removeDotSegments(cut(path))),
    // and servers that cut the parameters only after resolving the dot segments
    cut(removeDotSegments(merge(path))),
    merge(cut(removeDotSegments(path))),
  ].map((p) => {
    const rooted = p.startsWith('/') ? p : `/${p}`;
    return caseInsensitive ? rooted.toLowerCase() : rooted;
  });
  return views;
}

// The first reading of upstreamViews (slashes merged first).
function upstreamView(target, options) {
  return upstreamViews(target, options)[0];
}

// True when path (a resolved path) lies under prefix on a segment boundary.
function under(path, prefix) {
  return path === prefix || path.startsWith(`${prefix}/`);
}

// The value of ssogate_bad_requests_total{reason} (0 when absent).
async function badRequests(gw, reason) {
  const { request, parseMetrics, metricValue } = require('./harness');
  const res = await request(gw, { path: '/_sso/metrics' });
  if (res.status !== 200) {
    throw new Error(`GET /_sso/metrics: ${res.status}`);
  }
  return metricValue(parseMetrics(res.body.toString()), 'ssogate_bad_requests_total', { reason }) || 0;
}

// What a required route without a session answers in these tests: its gateway has an IdP that is
// never reached, so the login it starts cannot begin (503 with Retry-After, "sign-in unavailable").
// Nothing is forwarded; oidc_login.test.js follows such requests through a real IdP.
const LOGIN = 503;

// Answers after which the request's framing cannot be trusted: the connection must close.
const REFUSALS = [400, 413, 431, 501];

const show = (data) => JSON.stringify(Buffer.isBuffer(data) ? data.toString('latin1') : data).slice(0, 400);

// Runs one raw-socket case against ctx = {gw, rec, authority (what the upstream's Host must be),
// protectedPrefix (default /app), view (options of upstreamView)}. A case:
//   {name, send: bytes, status: N or [N...], reason: the bad_requests reason (checked on the metric),
//    up: the target the upstream must receive (status 200), method (default GET),
//    safe: true (an ambiguous vector: LOGIN, 400, or 200 with a target resolving outside the prefix),
//    keepAlive: false (the answer may close the connection), check(entry, res): more assertions}
// Asserts what the client got, what the upstream got, and, after a refusal, that the connection closed;
// after an accepted request, that the same connection still serves a request.
async function runCase(ctx, c) {
  const assert = require('node:assert/strict');
  const label = `${c.name}: ${show(c.send)}`;
  const mark = ctx.rec.mark();
  const before = c.reason ? await badRequests(ctx.gw, c.reason) : 0;
  const conn = await RawConn.open(ctx.gw.port);
  try {
    conn.write(c.send);
    const res = await conn.read(5000, { noBody: c.method === 'HEAD' });
    assert.ok(res, `${label}: no complete answer (closed: ${conn.closed}, got ${show(conn.buf)})`);
    const allowed = c.safe ? [200, LOGIN, 400] : [].concat(c.status);
    assert.ok(allowed.includes(res.status),
      `${label}: status ${res.status}, expected ${allowed.join(' or ')}\n${res.head}\n${res.body.toString('latin1').slice(0, 300)}`);
    // Give a wrongly forwarded request time to show up at the upstream before looking.
    const got = () => ctx.rec.since(mark);
    if (res.status === 200) {
      await ctx.rec.waitCount(mark + 1, 3000).catch(() => {});
    } else {
      await new Promise((resolve) => setImmediate(resolve));
    }
    const lines = got().map((e) => e.requestLine || e.error);
    if (res.status !== 200) {
      assert.deepEqual(lines, [], `${label}: answered ${res.status}, yet the upstream received ${show(lines)}`);
      if (res.status === LOGIN) {
        assert.equal(res.header('retry-after'), '5', `${label}: the login's answer (sign-in unavailable)`);
      }
      if (REFUSALS.includes(res.status)) {
        assert.ok(await conn.waitClosed(1000), `${label}: the connection stays open after a ${res.status} refusal`);
        if (c.reason) {
          const after = await badRequests(ctx.gw, c.reason);
          assert.equal(after - before, 1, `${label}: ssogate_bad_requests_total{reason="${c.reason}"} went from ${before} to ${after}`);
        }
      }
    } else {
      assert.equal(lines.length, 1, `${label}: the upstream received ${show(lines)}, expected one request`);
      const entry = got()[0];
      assert.ok(!entry.error, `${label}: the upstream could not parse what it got: ${entry.error}`);
      const method = c.method || 'GET';
      if (c.up !== undefined) {
        assert.equal(entry.requestLine, `${method} ${c.up} HTTP/1.1`, `${label}: the request line upstream`);
      }
      if (c.safe) {
        for (const view of upstreamViews(entry.target, ctx.view)) {
          assert.ok(!under(view, ctx.protectedPrefix || '/app'),
            `${label}: forwarded as ${entry.requestLine}, which an upstream resolves to ${view}`);
        }
      }
      const hosts = entry.headers.filter(([n]) => n.toLowerCase() === 'host').map(([, v]) => v);
      assert.deepEqual(hosts, [ctx.authority], `${label}: Host upstream`);
      const xfh = entry.headers.filter(([n]) => n.toLowerCase() === 'x-forwarded-host').map(([, v]) => v);
      assert.deepEqual(xfh, [ctx.authority], `${label}: X-Forwarded-Host upstream`);
      const forged = entry.headers.filter(([n]) => /^x[-_]sso[-_]/i.test(n));
      assert.deepEqual(forged, [], `${label}: no identity header upstream without a session`);
      const echo = JSON.parse(res.body.toString());
      assert.equal(echo.seq, entry.seq, `${label}: the client got the upstream's answer to this request`);
      if (c.check) {
        await c.check(entry, res);
      }
    }
    if (!REFUSALS.includes(res.status) && c.keepAlive !== false) {
      const followMark = ctx.rec.mark();
      conn.write('GET /public/follow-up HTTP/1.1\r\nHost: client.example.test\r\n\r\n');
      const next = await conn.read(5000);
      assert.ok(next && next.status === 200, `${label}: the connection serves another request (got ${next ? next.status : 'nothing'})`);
      assert.deepEqual(ctx.rec.since(followMark).map((e) => e.requestLine), ['GET /public/follow-up HTTP/1.1'],
        `${label}: the follow-up request upstream`);
    }
  } finally {
    conn.destroy();
  }
}

module.exports.upstreamView = upstreamView;
module.exports.upstreamViews = upstreamViews;
module.exports.removeDotSegments = removeDotSegments;
module.exports.under = under;
module.exports.badRequests = badRequests;
module.exports.runCase = runCase;
module.exports.show = show;
module.exports.LOGIN = LOGIN;
