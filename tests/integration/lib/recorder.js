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
