'use strict';
// Integration test harness: temp dirs with configurations, the gateway and stub processes, requests,
// signals and logs. Every wait is bounded; every process started here is stopped by its PID when the
// test ends, passed or failed, and killed on any exit of the test process.
//
// Usage:
//   const { itest, request } = require('./lib/harness');
//   itest('name', async (t, h) => {
//     const up = await h.startStub();
//     const gw = await h.startGateway(h.config({ upstream: { url: up.url } }));
//     const res = await request(gw, { path: '/echo' });
//   });

const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const tls = require('node:tls');
const { after, before, test } = require('node:test');

const SOURCE_DIR = process.env.SSOGATE_SOURCE_DIR || path.resolve(__dirname, '..', '..', '..');
const BUILD_DIR = process.env.SSOGATE_BUILD_DIR || path.join(SOURCE_DIR, 'build');
const SSOGATE_BIN = process.env.SSOGATE_BIN || path.join(BUILD_DIR, 'gateway', 'ssogate');
const STUB_DIR = path.join(SOURCE_DIR, 'tests', 'stub');

// Sanitizer builds start and run several times slower: every bound below is scaled by this factor.
const SLOW = Number(process.env.SSOGATE_TEST_SLOWNESS || 1);
const START_TIMEOUT_MS = 15000 * SLOW;
const STOP_TIMEOUT_MS = 10000 * SLOW;
const REQUEST_TIMEOUT_MS = 15000 * SLOW;
const READY_TIMEOUT_MS = 20000 * SLOW;

const live = new Set();
process.on('exit', () => {
  for (const child of live) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch (err) {
      // already gone
    }
  }
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Resolves with promise's value, or rejects with an Error naming what after ms milliseconds.
function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Polls check() (sync or async) every intervalMs until it returns a truthy value, which it returns;
// throws after ms milliseconds, with the last error check threw if any.
async function waitFor(check, ms, what, intervalMs = 50) {
  const deadline = Date.now() + ms;
  let lastError;
  for (;;) {
    try {
      const value = await check();
      if (value) {
        return value;
      }
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}` + (lastError ? `: ${lastError.message}` : ''));
    }
    await sleep(intervalMs);
  }
}

// A child process with its output collected in memory (and in a file of the test's temp dir), and the
// way it ended once it has.
class Child {
  constructor(name, command, args, options, logFile) {
    this.name = name;
    this.proc = childProcess.spawn(command, args, { ...options, stdio: ['pipe', 'pipe', 'pipe'] });
    this.pid = this.proc.pid;
    this.stdoutLines = [];
    this.stderrLines = [];
    this.exit = null;
    this.logStream = fs.createWriteStream(logFile);
    live.add(this.proc);
    this.exited = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => {
        this.exit = { code, signal };
        live.delete(this.proc);
        resolve(this.exit);
      });
    });
    // A spawn failure (missing binary) shows up as 'error' and an exit with code null.
    this.proc.on('error', (err) => {
      this.stderrLines.push(`spawn error: ${err.message}`);
      live.delete(this.proc);
    });
    this.listeners = [];
    for (const [stream, lines] of [
      [this.proc.stdout, this.stdoutLines],
      [this.proc.stderr, this.stderrLines],
    ]) {
      readline.createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
        lines.push(line);
        this.logStream.write(line + '\n');
        for (const listener of this.listeners) {
          listener();
        }
      });
    }
    this.proc.stdin.on('error', () => {});
  }

  get alive() {
    return this.exit === null && this.pid !== undefined;
  }

  // Waits (bounded) until predicate(lines) is truthy, re-checked on every new output line; returns its value.
  waitOutput(predicate, ms, what) {
    return withTimeout(
      new Promise((resolve, reject) => {
        const check = () => {
          const value = predicate();
          if (value) {
            this.listeners = this.listeners.filter((l) => l !== check);
            resolve(value);
          } else if (!this.alive) {
            this.listeners = this.listeners.filter((l) => l !== check);
            reject(new Error(`${this.name} exited (${JSON.stringify(this.exit)}) while waiting for ${what}`));
          }
        };
        this.listeners.push(check);
        this.exited.then(() => setImmediate(check));
        check();
      }),
      ms,
      `${this.name}: ${what}`,
    );
  }

  signal(sig) {
    if (this.alive) {
      process.kill(this.pid, sig);
    }
  }

  // Waits up to ms for the process to exit by itself; returns {code, signal} or null if it did not.
  async waitExit(ms) {
    try {
      return await withTimeout(this.exited, ms, `${this.name} exit`);
    } catch (err) {
      return null;
    }
  }

  // Stops the process by PID: SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT_MS.
  // Returns true when the process was still running and this stop ended it with SIGTERM alone.
  async stop() {
    let terminated = false;
    if (this.alive) {
      this.signal('SIGTERM');
      if ((await this.waitExit(STOP_TIMEOUT_MS)) === null) {
        this.signal('SIGKILL');
        await this.waitExit(STOP_TIMEOUT_MS);
      } else {
        terminated = true;
      }
    }
    this.proc.stdin.destroy();
    await new Promise((resolve) => this.logStream.end(resolve));
    return terminated;
  }

  tail(n = 40) {
    return [...this.stdoutLines.slice(-n), ...this.stderrLines.slice(-n)].join('\n');
  }
}

// A stub server process (tests/stub/*.js).
class Stub extends Child {
  async start() {
    const line = await this.waitOutput(() => this.stdoutLines[0], START_TIMEOUT_MS, 'the {"port":N} line');
    this.port = JSON.parse(line).port;
    this.url = `http://127.0.0.1:${this.port}`;
    return this;
  }

  // The requests this stub received, oldest first: [{time, method, url, headers: [[name, value]...]}].
  async requests() {
    const res = await request(this.port, { path: '/__stub/log' });
    return JSON.parse(res.body.toString());
  }

  async reset() {
    await request(this.port, { path: '/__stub/reset' });
  }
}

// The gateway process. logs holds every stderr line that parsed as a JSON object.
class Gateway extends Child {
  get logs() {
    const out = [];
    for (const line of this.stderrLines) {
      try {
        const value = JSON.parse(line);
        if (value && typeof value === 'object') {
          out.push(value);
        }
      } catch (err) {
        // not a JSON line (sanitizer reports, for example): kept in stderrLines only
      }
    }
    return out;
  }

  // Waits until a log object matches predicate; returns it. Only lines after index `from` count.
  waitLog(predicate, ms = START_TIMEOUT_MS, what = 'a log line', from = 0) {
    return this.waitOutput(() => this.logs.slice(from).find(predicate), ms, what);
  }

  async start(listenerCount) {
    await this.waitOutput(
      () => this.logs.filter((l) => l.event === 'listening').length >= listenerCount,
      START_TIMEOUT_MS,
      `${listenerCount} "listening" log line(s)`,
    );
    this.listening = this.logs
      .filter((l) => l.event === 'listening')
      .map((l) => ({ address: l.address, port: l.port, tls: l.tls }));
    this.port = this.listening[0].port;
    return this;
  }

  // Resident set size in bytes, from /proc/PID/status (VmRSS).
  rss() {
    const status = fs.readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    assert.ok(match, 'VmRSS in /proc/PID/status');
    return Number(match[1]) * 1024;
  }
}

// Sends one HTTP(S) request. target is a port number, a Gateway/Stub (its first port) or
// {port, tls}. options: method, path, headers (object or [[name, value]...] for repeated names),
// body (Buffer/string), tls (use https), ca, servername, agent (default: a new connection, closed
// after), timeout (ms), stream (resolve as soon as the headers arrive, with res to read),
// localAddress (the loopback address the connection comes from: 127.0.0.2 for a second client).
// Resolves {status, headers, rawHeaders: [[name, value]...], body: Buffer, res}.
function request(target, options = {}) {
  const port = typeof target === 'number' ? target : target.port;
  const useTls = options.tls !== undefined ? options.tls : Boolean(target && target.tls);
  const lib = useTls ? https : http;
  const timeoutMs = options.timeout || REQUEST_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    let headers = options.headers || {};
    if (Array.isArray(headers)) {
      // node sends no Host of its own when headers come as a list
      const hasHost = headers.some(([name]) => name.toLowerCase() === 'host');
      headers = [...(hasHost ? [] : [['Host', `127.0.0.1:${port}`]]), ...headers].flat();
    }
    const req = lib.request({
      host: '127.0.0.1',
      port,
      method: options.method || 'GET',
      path: options.path || '/',
      headers,
      agent: options.agent || false,
      ca: options.ca,
      servername: options.servername,
      setHost: options.setHost,
      localAddress: options.localAddress,
    });
    const timer = setTimeout(() => {
      req.destroy(new Error(`request timed out after ${timeoutMs} ms: ${options.method || 'GET'} ${options.path || '/'}`));
    }, timeoutMs);
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.on('response', (res) => {
      const rawHeaders = [];
      for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
        rawHeaders.push([res.rawHeaders[i], res.rawHeaders[i + 1]]);
      }
      const result = { status: res.statusCode, headers: res.headers, rawHeaders, res };
      if (options.stream) {
        clearTimeout(timer);
        resolve(result);
        return;
      }
      const chunks = [];
      res.on('data', (chunk) => chunks.push(chunk));
      res.on('end', () => {
        clearTimeout(timer);
        result.body = Buffer.concat(chunks);
        resolve(result);
      });
      res.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    if (options.body !== undefined) {
      req.end(options.body);
    } else {
      req.end();
    }
  });
}

// Parses the first HTTP/1.x response in buffer: {status, headers (lower-case names, repeated ones joined
// with ", "), body: Buffer (de-chunked, cut at content-length)}, or null when the head is incomplete.
function parseHttpResponse(buffer) {
  const end = buffer.indexOf('\r\n\r\n');
  if (end < 0) {
    return null;
  }
  const lines = buffer.subarray(0, end).toString('latin1').split('\r\n');
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
  const headers = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  let body = buffer.subarray(end + 4);
  if (/chunked/i.test(headers['transfer-encoding'] || '')) {
    const parts = [];
    let pos = 0;
    for (;;) {
      const lineEnd = body.indexOf('\r\n', pos);
      if (lineEnd < 0) {
        break;
      }
      const size = Number.parseInt(body.subarray(pos, lineEnd).toString('latin1'), 16);
      if (!(size > 0)) {
        break;
      }
      parts.push(body.subarray(lineEnd + 2, lineEnd + 2 + size));
      pos = lineEnd + 2 + size + 2;
    }
    body = Buffer.concat(parts);
  } else if (headers['content-length'] !== undefined) {
    body = body.subarray(0, Number(headers['content-length']));
  }
  return { status: match ? Number(match[1]) : null, headers, body };
}

// True when buffer holds a whole response: head, and the body its Content-Length or chunked framing
// announces (a response framed by the connection's end is never complete here).
function responseComplete(buffer) {
  const response = parseHttpResponse(buffer);
  if (response === null) {
    return false;
  }
  const headEnd = buffer.indexOf('\r\n\r\n') + 4;
  if (/chunked/i.test(response.headers['transfer-encoding'] || '')) {
    return buffer.subarray(headEnd).includes('0\r\n\r\n');
  }
  if (response.headers['content-length'] !== undefined) {
    return buffer.length - headEnd >= Number(response.headers['content-length']);
  }
  return response.status === 204 || response.status === 304;
}

// Writes data (a string, Buffer, or array of them sent with pauseMs between them) on a raw TCP (or TLS)
// connection and collects what comes back until the peer closes or ms pass.
// Resolves {data: Buffer, text, closed: peer closed the connection, error, elapsedMs, status,
// response: parseHttpResponse(data)}.
// With untilComplete, it also ends as soon as one complete response (by its framing) has arrived.
function rawExchange(port, data, { ms = 5000 * SLOW, tls: useTls = false, ca, pauseMs = 0, untilComplete = false, localAddress } = {}) {
  return new Promise((resolve) => {
    const started = Date.now();
    const chunks = [];
    let finished = false;
    const socket = useTls
      ? tls.connect({ host: '127.0.0.1', port, ca, rejectUnauthorized: Boolean(ca), localAddress })
      : net.connect({ host: '127.0.0.1', port, localAddress });
    const finish = (closed, error) => {
      if (finished) {
        return;
      }
      finished = true;
      clearTimeout(timer);
      socket.destroy();
      const buffer = Buffer.concat(chunks);
      const text = buffer.toString('latin1');
      const match = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({
        data: buffer,
        text,
        closed,
        error: error ? error.code || error.message : null,
        elapsedMs: Date.now() - started,
        status: match ? Number(match[1]) : null,
        response: parseHttpResponse(buffer),
      });
    };
    const timer = setTimeout(() => finish(false, null), ms);
    socket.on('data', (chunk) => {
      chunks.push(chunk);
      if (untilComplete && responseComplete(Buffer.concat(chunks))) {
        finish(false, null);
      }
    });
    socket.on('end', () => finish(true, null));
    socket.on('close', () => finish(true, null));
    socket.on('error', (err) => finish(true, err));
    socket.once(useTls ? 'secureConnect' : 'connect', async () => {
      const parts = Array.isArray(data) ? data : [data];
      for (let i = 0; i < parts.length && !finished; i++) {
        if (i > 0 && pauseMs > 0) {
          await sleep(pauseMs);
        }
        if (!finished && parts[i].length > 0) {
          socket.write(parts[i]);
        }
      }
    });
  });
}

// True when something accepts TCP connections on 127.0.0.1:port.
function portOpen(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.setTimeout(2000);
    socket.on('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.on('error', () => resolve(false));
  });
}

// A loopback port that nothing listens on (free when checked: a connection to it is refused). Below the
// ephemeral range, as reservedPort: a port the kernel handed out and took back could be handed out
// again to the next listener on port 0, such as a gateway's, which would then be its own upstream.
function closedPort() {
  return reservedPort();
}

// A free loopback port for a server whose port must be known before it starts (the gateway's public URL
// names it, and the IdP registers it). Chosen below the kernel's ephemeral range (32768-60999), so that
// no outgoing connection of another process can take it between this check and the server's bind.
async function reservedPort() {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    const free = await new Promise((resolve) => {
      const server = net.createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (free) {
      return port;
    }
  }
  throw new Error('no free loopback port below the ephemeral range after 50 tries');
}

// Parses Prometheus text format into {samples: [{name, labels: {}, value}], types: {family: type}}.
function parseMetrics(text) {
  const samples = [];
  const types = {};
  for (const line of text.split('\n')) {
    if (line.startsWith('# TYPE ')) {
      const [, , family, type] = line.split(/\s+/);
      types[family] = type;
      continue;
    }
    if (line.trim() === '' || line.startsWith('#')) {
      continue;
    }
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$/.exec(line);
    assert.ok(match, `malformed metrics line: ${JSON.stringify(line)}`);
    const labels = {};
    if (match[3]) {
      for (const pair of match[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
        labels[pair[1]] = pair[2];
      }
    }
    const value = match[4] === '+Inf' ? Infinity : Number(match[4]);
    assert.ok(!Number.isNaN(value), `metric value in ${JSON.stringify(line)}`);
    samples.push({ name: match[1], labels, value });
  }
  return { samples, types };
}

// The value of the sample name{labels} (labels matched exactly), or undefined.
function metricValue(metrics, name, labels = {}) {
  const wanted = JSON.stringify(Object.entries(labels).sort());
  const sample = metrics.samples.find(
    (s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === wanted,
  );
  return sample ? sample.value : undefined;
}

// Per-test state: a temp dir, the processes started, and their cleanup.
class Harness {
  constructor(name) {
    const safe = name.replace(/[^a-zA-Z0-9_-]+/g, '_').slice(0, 40);
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `ssogate-it-${safe}-`));
    this.children = [];
    this.servers = [];
    this.counter = 0;
  }

  // A path inside the test's temp dir.
  file(name) {
    return path.join(this.dir, name);
  }

  // Starts a stub (tests/stub/NAME.js, default the upstream) and resolves once it reported its port.
  async startStub({ script = 'upstream.js', name = 'upstream', args = [] } = {}) {
    const n = ++this.counter;
    const stub = new Stub(
      `stub ${name}`,
      process.execPath,
      [path.join(STUB_DIR, script), '--name', name, '--exit-with-stdin', ...args],
      { cwd: this.dir },
      this.file(`stub-${n}-${name}.log`),
    );
    this.children.push(stub);
    return stub.start();
  }

  // A gateway configuration for tests (see the contract): one plain listener on port 0, overrides
  // merged in (objects merged one level deep, so {limits: {body_bytes: 10}} keeps the other limits).
  config(overrides = {}) {
    const base = {
      listeners: [{ address: '127.0.0.1', port: 0 }],
      public_url: 'http://127.0.0.1:1',
      upstream: { url: 'http://127.0.0.1:1', response_timeout_ms: 5000, pool_size: 8 },
      data_dir: this.file('data'),
      limits: { header_bytes: 8192, body_bytes: 1048576, client_timeout_s: 2 },
      drain_timeout_s: 5,
    };
    for (const [key, value] of Object.entries(overrides)) {
      if (value && typeof value === 'object' && !Array.isArray(value) && base[key] && typeof base[key] === 'object') {
        base[key] = { ...base[key], ...value };
      } else {
        base[key] = value;
      }
    }
    return base;
  }

  // Writes a configuration (an object, serialised as JSON, or a string written as is) into the temp
  // dir; returns its path. data_dir is created.
  writeConfig(config, name = 'ssogate.json') {
    fs.mkdirSync(this.file('data'), { recursive: true });
    const file = this.file(name);
    fs.writeFileSync(file, typeof config === 'string' ? config : JSON.stringify(config, null, 2));
    return file;
  }

  // Starts `ssogate -c FILE` on config (object, or the path of an existing file) and resolves once every
  // listener logged "listening". options: env (added to the environment), listeners (count to wait for).
  async startGateway(config, { env = {}, listeners, file = 'ssogate.json' } = {}) {
    const configFile = typeof config === 'string' ? config : this.writeConfig(config, file);
    const count = listeners || (typeof config === 'string' ? 1 : config.listeners.length);
    const n = ++this.counter;
    const gateway = new Gateway(
      'ssogate',
      SSOGATE_BIN,
      ['-c', configFile],
      { cwd: this.dir, env: { ...process.env, ...env } },
      this.file(`ssogate-${n}.log`),
    );
    gateway.configFile = configFile;
    this.children.push(gateway);
    return gateway.start(count);
  }

  // Runs ssogate with args to completion (bounded); resolves {code, signal, stdout, stderr}.
  async runGateway(args, { ms = START_TIMEOUT_MS, env = {} } = {}) {
    const n = ++this.counter;
    const child = new Child('ssogate', SSOGATE_BIN, args, { cwd: this.dir, env: { ...process.env, ...env } },
      this.file(`ssogate-run-${n}.log`));
    this.children.push(child);
    const exit = await child.waitExit(ms);
    assert.ok(exit, `ssogate ${args.join(' ')} did not exit within ${ms} ms`);
    await new Promise((resolve) => setImmediate(resolve));
    return { ...exit, stdout: child.stdoutLines.join('\n'), stderr: child.stderrLines.join('\n') };
  }

  // An in-process upstream that records the exact bytes of every request head it receives and answers
  // each with a fixed 200 "ok", closing the connection. Resolves {port, url, heads: [string]}.
  async rawUpstream() {
    const heads = [];
    const server = net.createServer((socket) => {
      let data = Buffer.alloc(0);
      let answered = false;
      socket.on('data', (chunk) => {
        if (answered || data.length > 1024 * 1024) {
          return;
        }
        data = Buffer.concat([data, chunk]);
        const end = data.indexOf('\r\n\r\n');
        if (end >= 0) {
          answered = true;
          heads.push(data.subarray(0, end + 2).toString('latin1'));
          socket.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok');
        }
      });
      socket.on('error', () => {});
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.servers.push(server);
    const { port } = server.address();
    return { port, url: `http://127.0.0.1:${port}`, heads };
  }

  // A self-signed P-256 certificate for 127.0.0.1 in the temp dir: {cert, key, pem} (paths and PEM text).
  makeCert(name = 'tls') {
    const cert = this.file(`${name}-cert.pem`);
    const key = this.file(`${name}-key.pem`);
    childProcess.execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 20000 });
    return { cert, key, pem: fs.readFileSync(cert) };
  }

  // Fetches and parses the gateway's /_sso/metrics.
  async metrics(gateway) {
    const res = await request(gateway, { path: '/_sso/metrics' });
    assert.equal(res.status, 200, 'GET /_sso/metrics');
    return parseMetrics(res.body.toString());
  }

  // Prints the tail of every process's output (for a failed test).
  dump() {
    for (const child of this.children) {
      process.stderr.write(`--- ${child.name} (pid ${child.pid}, exit ${JSON.stringify(child.exit)}) ---\n${child.tail()}\n`);
    }
    process.stderr.write(`--- logs kept in ${this.dir}\n`);
  }

  // Stops every process and server. Returns what went wrong with the gateways on the way out: a
  // sanitizer report anywhere in their output (leaks show up only at exit), or a gateway still running
  // at the end that did not exit 0 on SIGTERM.
  async stopAll() {
    const problems = [];
    for (const child of [...this.children].reverse()) {
      const wasRunning = child.alive;
      const terminated = await child.stop();
      if (!(child instanceof Gateway || child.name === 'ssogate')) {
        continue;
      }
      const report = child.stderrLines.find((l) => SANITIZER_REPORT.test(l));
      if (report) {
        problems.push(`ssogate pid ${child.pid}: sanitizer report: ${report}`);
      }
      if (wasRunning && child instanceof Gateway && !(terminated && child.exit.code === 0)) {
        problems.push(`ssogate pid ${child.pid}: SIGTERM at the end of the test gave ${JSON.stringify(child.exit)}, not exit 0`);
      }
    }
    for (const server of this.servers) {
      server.closeAllConnections?.();
      await new Promise((resolve) => server.close(resolve));
    }
    return problems;
  }

  removeDir() {
    if (!process.env.SSOGATE_KEEP_TEST_DIRS) {
      fs.rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

const SANITIZER_REPORT = /ERROR: (Address|Leak|Memory|Thread|UndefinedBehavior)Sanitizer|runtime error: /;

// Declares a node:test test that gets a fresh Harness. Every process is stopped either way; a gateway
// that misbehaves on the way out (see stopAll) fails the test; on failure the processes' output is
// printed and the temp dir kept.
function itest(name, options, fn) {
  if (typeof options === 'function') {
    fn = options;
    options = {};
  }
  return test(name, { timeout: 120000 * SLOW, ...options }, async (t) => {
    const h = new Harness(name);
    let failed = true;
    try {
      await fn(t, h);
      failed = false;
    } finally {
      const problems = await h.stopAll();
      if (failed || problems.length > 0) {
        h.dump();
      } else {
        h.removeDir();
      }
      if (!failed && problems.length > 0) {
        assert.fail(problems.join('\n'));
      }
    }
  });
}

const spawned = new Set();
process.on('exit', () => {
  for (const proc of spawned) {
    try {
      process.kill(proc.pid, 'SIGKILL');
    } catch (err) {
      // already gone
    }
  }
});

// A node process that prints one JSON "ready" line on stdout (the IdP). It has the shape Harness.stopAll
// and Harness.dump expect of a child (name, pid, exit, alive, stop(), tail()), so the harness stops it by
// its PID with the others.
class ReadyLineProcess {
  constructor(name, args, dir) {
    this.name = name;
    this.proc = childProcess.spawn(process.execPath, args, { cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] });
    this.pid = this.proc.pid;
    this.exit = null;
    this.stdoutLines = [];
    this.stderrLines = [];
    this.log = fs.createWriteStream(path.join(dir, `${name}.log`));
    spawned.add(this.proc);
    this.exited = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => {
        this.exit = { code, signal };
        spawned.delete(this.proc);
        resolve(this.exit);
      });
    });
    this.proc.on('error', (err) => this.stderrLines.push(`spawn error: ${err.message}`));
    this.proc.stdin.on('error', () => {});
    this.firstLine = new Promise((resolve) => {
      readline.createInterface({ input: this.proc.stdout }).on('line', (line) => {
        this.stdoutLines.push(line);
        resolve(line);
      });
    });
    readline.createInterface({ input: this.proc.stderr }).on('line', (line) => {
      this.stderrLines.push(line);
      this.log.write(`${line}\n`);
    });
  }

  get alive() {
    return this.exit === null && this.pid !== undefined;
  }

  // Resolves the parsed ready line, or rejects (bounded) when the process exits first.
  async ready() {
    const line = await withTimeout(
      Promise.race([this.firstLine, this.exited.then(() => Promise.reject(new Error(`${this.name} exited: ${this.tail()}`)))]),
      READY_TIMEOUT_MS,
      `the ${this.name} ready line`,
    );
    return JSON.parse(line);
  }

  // Stops the process by its PID: SIGTERM, then SIGKILL when it lingers. Returns true once it has exited.
  async stop() {
    if (this.alive) {
      process.kill(this.pid, 'SIGTERM');
      if ((await withTimeout(this.exited, STOP_TIMEOUT_MS, `${this.name} exit`).catch(() => null)) === null && this.alive) {
        process.kill(this.pid, 'SIGKILL');
        await withTimeout(this.exited, STOP_TIMEOUT_MS, `${this.name} exit after SIGKILL`).catch(() => null);
      }
    }
    this.proc.stdin.destroy();
    await new Promise((resolve) => this.log.end(resolve));
    return !this.alive;
  }

  tail(n = 40) {
    return [...this.stdoutLines.slice(-n), ...this.stderrLines.slice(-n)].join('\n');
  }
}

// One shared environment for every test of a file (starting one costs a second or two): registers the
// before/after hooks, starts the environment with start(harness) and returns
// envTest(name, [options], fn(env, t)), which declares a test that prints the processes' output when it
// fails. The temp dir is kept when any test failed.
function sharedEnv(name, start) {
  const state = { h: undefined, env: undefined, failed: false };
  before(async () => {
    state.h = new Harness(name);
    try {
      state.env = await start(state.h);
    } catch (err) {
      state.failed = true;
      state.h.dump();
      throw err;
    }
  });
  after(async () => {
    if (state.h === undefined) {
      return;
    }
    const problems = await state.h.stopAll();
    if (state.failed || problems.length > 0) {
      state.h.dump();
    } else {
      state.h.removeDir();
    }
    assert.deepEqual(problems, [], 'the gateways stopped cleanly');
  });
  return function envTest(testName, testOptions, fn) {
    if (typeof testOptions === 'function') {
      fn = testOptions;
      testOptions = {};
    }
    return test(testName, { timeout: 60000 * SLOW, ...testOptions }, async (t) => {
      assert.ok(state.env, `the environment of ${name} started`);
      try {
        await fn(state.env, t);
      } catch (err) {
        state.failed = true;
        state.h.dump();
        throw err;
      }
    });
  };
}

module.exports = {
  ReadyLineProcess,
  sharedEnv,
  reservedPort,
  SLOW,
  SOURCE_DIR,
  SSOGATE_BIN,
  Harness,
  itest,
  request,
  rawExchange,
  parseHttpResponse,
  portOpen,
  closedPort,
  parseMetrics,
  metricValue,
  waitFor,
  withTimeout,
  sleep,
};
