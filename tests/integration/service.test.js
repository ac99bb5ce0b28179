'use strict';
// The service manager's side without systemd (issue 14): the notify protocol on a unix datagram socket
// (READY, RELOADING + MONOTONIC_USEC, STOPPING, STATUS, watchdog pings at half of WATCHDOG_USEC),
// socket activation (LISTEN_FDS), and log lines with journal priorities when stderr is the journal.
// tests/service/sd-exec.py plays systemd's exec (so LISTEN_PID and WATCHDOG_PID name the gateway) and
// tests/service/notify-listen.py the NOTIFY_SOCKET.

const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const path = require('node:path');
const readline = require('node:readline');
const fs = require('node:fs');
const { itest, request, reservedPort, portOpen, withTimeout, waitFor, SLOW, SOURCE_DIR, SSOGATE_BIN } = require('./lib/harness');

const SERVICE_DIR = path.join(SOURCE_DIR, 'tests', 'service');
const WAIT_MS = 15000 * SLOW;

// A process whose stdout and stderr lines are kept; stopped by its PID by the harness (stopAll), like
// the harness's own children.
class Proc {
  constructor(h, name, command, args, env = {}) {
    this.name = name;
    this.proc = childProcess.spawn(command, args, { cwd: h.dir, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    this.pid = this.proc.pid;
    this.exit = null;
    this.stdoutLines = [];
    this.stderrLines = [];
    this.listeners = [];
    this.log = fs.createWriteStream(h.file(`${name}-${this.pid}.log`));
    this.exited = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
    this.proc.on('error', (err) => this.stderrLines.push(`spawn error: ${err.message}`));
    this.proc.stdin.on('error', () => {});
    for (const [stream, lines] of [[this.proc.stdout, this.stdoutLines], [this.proc.stderr, this.stderrLines]]) {
      readline.createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
        lines.push(line);
        this.log.write(`${line}\n`);
        this.listeners.forEach((l) => l());
      });
    }
    h.children.push(this);
  }

  get alive() {
    return this.exit === null && this.pid !== undefined;
  }

  // Waits until predicate() is truthy, re-checked on every output line; returns its value.
  waitFor(predicate, what, ms = WAIT_MS) {
    return withTimeout(new Promise((resolve, reject) => {
      const check = () => {
        const value = predicate();
        if (value) {
          this.listeners = this.listeners.filter((l) => l !== check);
          resolve(value);
        } else if (!this.alive) {
          reject(new Error(`${this.name} exited ${JSON.stringify(this.exit)} while waiting for ${what}:\n${this.tail()}`));
        }
      };
      this.listeners.push(check);
      this.exited.then(() => setImmediate(check));
      check();
    }), ms, `${this.name}: ${what}`);
  }

  async waitExit(ms = WAIT_MS) {
    return withTimeout(this.exited, ms, `${this.name} exit`);
  }

  async stop() {
    if (this.alive) {
      this.proc.kill('SIGTERM');
      await withTimeout(this.exited, WAIT_MS, `${this.name} exit`).catch(() => {
        this.proc.kill('SIGKILL');
        return this.exited;
      });
    }
    this.proc.stdin.destroy();
    await new Promise((resolve) => this.log.end(resolve));
    return true;
  }

  tail(n = 40) {
    return [...this.stdoutLines.slice(-n), ...this.stderrLines.slice(-n)].join('\n');
  }
}

// The gateway's log objects; with journal = true every line must carry a "<N>" priority prefix.
function logs(gw, { journal = false } = {}) {
  const out = [];
  for (const line of gw.stderrLines) {
    const match = /^(<\d>)?(\{.*\})$/.exec(line);
    if (!match || (journal && !match[1])) {
      continue;
    }
    out.push({ ...JSON.parse(match[2]), prefix: match[1] || '' });
  }
  return out;
}

async function notifyListener(h) {
  const socketPath = h.file('notify.sock');
  const listener = new Proc(h, 'notify-listen', 'python3', [path.join(SERVICE_DIR, 'notify-listen.py'), socketPath]);
  await listener.waitFor(() => listener.stdoutLines.length > 0, 'the listening line');
  listener.messages = () => listener.stdoutLines.slice(1).map((l) => JSON.parse(l));
  return { listener, socketPath };
}

// Starts ssogate through sd-exec.py with its options; env is added to the environment.
function startGateway(h, config, execArgs = [], env = {}) {
  const configFile = h.writeConfig(config);
  return new Proc(h, 'ssogate', 'python3', [path.join(SERVICE_DIR, 'sd-exec.py'), ...execArgs, '--', SSOGATE_BIN, '-c', configFile], env);
}

itest('notify protocol: READY once listening, RELOADING/READY around SIGHUP, STOPPING at SIGTERM, watchdog pings', async (t, h) => {
  const { listener, socketPath } = await notifyListener(h);
  const watchdogUs = 400000;
  const gw = startGateway(h, h.config(), ['--watchdog-usec', String(watchdogUs)], { NOTIFY_SOCKET: socketPath });

  const ready = await listener.waitFor(() => listener.messages().find((m) => m.fields.READY === '1'), 'READY=1');
  assert.equal(ready.pid, gw.pid, 'READY comes from the gateway itself (exec kept the pid)');
  assert.match(ready.fields.STATUS, /^0 sessions, 0 requests in flight, 0 logins in flight$/);
  // READY means the listeners accept: the port logged before READY answers now.
  const port = logs(gw).find((l) => l.event === 'listening').port;
  assert.ok(await portOpen(port), 'the listener accepts once READY=1 was sent');
  assert.equal((await request(port, { path: '/_sso/healthz' })).status, 200);
  const service = logs(gw).find((l) => l.event === 'service');
  assert.equal(service.watchdog_us, watchdogUs);
  assert.equal(service.interval_us, watchdogUs / 2);

  // Watchdog pings at half of WATCHDOG_USEC, from the event loop.
  const since = listener.messages().length;
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const pings = listener.messages().slice(since).filter((m) => m.fields.WATCHDOG === '1');
  assert.ok(pings.length >= 6 && pings.length <= 12, `${pings.length} pings in 2 s at a 200 ms interval`);
  const gaps = pings.slice(1).map((m, i) => m.ms - pings[i].ms).sort((a, b) => a - b);
  const median = gaps[Math.floor(gaps.length / 2)];
  assert.ok(median >= 150 && median <= 300, `median interval ${median} ms, expected about 200`);
  assert.ok(pings.every((m) => /requests in flight/.test(m.fields.STATUS)), 'each ping carries a STATUS line');

  // SIGHUP: RELOADING=1 with the monotonic clock of the moment, then READY=1 again.
  const beforeHup = listener.messages().length;
  const hupAtMs = Number(process.hrtime.bigint() / 1000000n);
  gw.proc.kill('SIGHUP');
  const reloading = await listener.waitFor(() => listener.messages().slice(beforeHup).find((m) => m.fields.RELOADING === '1'), 'RELOADING=1');
  const monotonicMs = Number(reloading.fields.MONOTONIC_USEC) / 1000;
  assert.ok(Math.abs(monotonicMs - hupAtMs) < 3000 * SLOW, `MONOTONIC_USEC ${monotonicMs} ms is the time of the reload (${hupAtMs} ms)`);
  const after = await listener.waitFor(() => {
    const later = listener.messages().slice(beforeHup);
    const at = later.indexOf(reloading);
    return later.slice(at + 1).find((m) => m.fields.READY === '1');
  }, 'READY=1 after RELOADING=1');
  assert.ok(after.ms >= reloading.ms);
  await gw.waitFor(() => logs(gw).find((l) => l.event === 'reload'), 'the reload log line');

  // SIGTERM: STOPPING=1 at the start of the drain, then exit 0.
  const beforeTerm = listener.messages().length;
  gw.proc.kill('SIGTERM');
  await listener.waitFor(() => listener.messages().slice(beforeTerm).find((m) => m.fields.STOPPING === '1'), 'STOPPING=1');
  assert.deepEqual(await gw.waitExit(), { code: 0, signal: null });
});

itest('notify protocol: no watchdog pings when WATCHDOG_PID names another process', async (t, h) => {
  const { listener, socketPath } = await notifyListener(h);
  const gw = startGateway(h, h.config(), ['--watchdog-usec', '200000', '--watchdog-pid', '1'], { NOTIFY_SOCKET: socketPath });
  await listener.waitFor(() => listener.messages().find((m) => m.fields.READY === '1'), 'READY=1');
  assert.equal(logs(gw).find((l) => l.event === 'service').watchdog_us, 0);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  assert.equal(listener.messages().filter((m) => m.fields.WATCHDOG === '1').length, 0, 'no WATCHDOG=1 for a watchdog meant for pid 1');
});

itest('no NOTIFY_SOCKET: nothing is sent and the gateway runs as before', async (t, h) => {
  const gw = startGateway(h, h.config(), ['--watchdog-usec', '200000']);
  await gw.waitFor(() => logs(gw).find((l) => l.event === 'listening'), 'listening');
  assert.equal(logs(gw).find((l) => l.event === 'service'), undefined, 'no notify timer without NOTIFY_SOCKET');
  assert.equal((await request(logs(gw).find((l) => l.event === 'listening').port, { path: '/_sso/healthz' })).status, 200);
});

itest('socket activation: the gateway serves on the inherited socket, closes one no listener takes', async (t, h) => {
  const port = await reservedPort();
  let extra = await reservedPort();
  while (extra === port) {
    extra = await reservedPort();
  }
  const config = h.config({ listeners: [{ address: '127.0.0.1', port }] });
  const gw = startGateway(h, config, ['--listen', `127.0.0.1:${port}`, '--listen', `127.0.0.1:${extra}`, '--fdnames', 'web:spare']);
  await gw.waitFor(() => logs(gw).find((l) => l.event === 'listening'), 'listening');
  const inherited = logs(gw).find((l) => l.event === 'socket_inherited');
  assert.deepEqual({ port: inherited.port, fd: inherited.fd, name: inherited.name }, { port, fd: 3, name: 'web' });
  assert.equal(logs(gw).find((l) => l.event === 'listening').port, port);
  const unused = await gw.waitFor(() => logs(gw).find((l) => l.event === 'socket_unused'), 'socket_unused');
  assert.deepEqual({ fd: unused.fd, name: unused.name, level: unused.level }, { fd: 4, name: 'spare', level: 'warn' });

  const res = await request(port, { path: '/_sso/healthz' });
  assert.equal(res.status, 200, 'served on the inherited socket');
  await waitFor(async () => !(await portOpen(extra)), 5000 * SLOW, 'the unused inherited socket closed');
});

itest('socket activation: LISTEN_PID of another process is ignored (the gateway binds, and the port is taken)', async (t, h) => {
  const port = await reservedPort();
  const config = h.config({ listeners: [{ address: '127.0.0.1', port }] });
  const gw = startGateway(h, config, ['--listen', `127.0.0.1:${port}`, '--listen-pid', '1']);
  const exit = await gw.waitExit();
  assert.equal(exit.code, 1, 'binding a port the inherited socket holds fails');
  assert.ok(gw.stderrLines.some((l) => /cannot bind/.test(l)), 'the bind failure is logged');
  assert.equal(logs(gw).find((l) => l.event === 'socket_inherited'), undefined);
});

itest('socket activation: an inherited socket on another address is not taken', async (t, h) => {
  const port = await reservedPort();
  const config = h.config({ listeners: [{ address: '127.0.0.1', port: 0 }] });
  const gw = startGateway(h, config, ['--listen', `127.0.0.2:${port}`]);
  await gw.waitFor(() => logs(gw).find((l) => l.event === 'socket_unused'), 'socket_unused');
  assert.equal(logs(gw).find((l) => l.event === 'socket_inherited'), undefined);
  const own = logs(gw).find((l) => l.event === 'listening').port;
  assert.notEqual(own, port);
  assert.equal((await request(own, { path: '/_sso/healthz' })).status, 200);
});

itest('workers > 1: the workers notify, ping the watchdog and share the inherited socket for the supervisor', async (t, h) => {
  const { listener, socketPath } = await notifyListener(h);
  const port = await reservedPort();
  const config = h.config({ listeners: [{ address: '127.0.0.1', port }], workers: 2 });
  const gw = startGateway(h, config, ['--listen', `127.0.0.1:${port}`, '--watchdog-usec', '400000'], { NOTIFY_SOCKET: socketPath });
  const workers = await gw.waitFor(() => {
    const pids = logs(gw).filter((l) => l.event === 'worker').map((l) => l.pid);
    return pids.length === 2 && pids;
  }, 'two workers');
  const ready = await listener.waitFor(() => {
    const senders = new Set(listener.messages().filter((m) => m.fields.READY === '1').map((m) => m.pid));
    return senders.size === 2 && senders;
  }, 'READY=1 from both workers');
  assert.deepEqual([...ready].sort(), [...workers].sort(), 'READY comes from the workers');
  // Each worker took the supervisor's socket (binding the port itself would fail: it is held).
  await gw.waitFor(() => logs(gw).filter((l) => l.event === 'socket_inherited' && l.port === port).length === 2, 'both workers inherit the socket');
  assert.equal((await request(port, { path: '/_sso/healthz' })).status, 200);
  await listener.waitFor(() => {
    const pingers = new Set(listener.messages().filter((m) => m.fields.WATCHDOG === '1').map((m) => m.pid));
    return workers.every((pid) => pingers.has(pid));
  }, 'watchdog pings from both workers');
  const beforeTerm = listener.messages().length;
  gw.proc.kill('SIGTERM');
  await listener.waitFor(() => listener.messages().slice(beforeTerm).some((m) => m.fields.STOPPING === '1'), 'STOPPING=1');
  assert.deepEqual(await gw.waitExit(), { code: 0, signal: null });
});

itest('journal: JOURNAL_STREAM matching stderr gives every line a syslog priority prefix', async (t, h) => {
  const port = await reservedPort();
  const gw = startGateway(h, h.config(), ['--journal', '--listen', `127.0.0.1:${port}`]);
  await gw.waitFor(() => logs(gw, { journal: true }).find((l) => l.event === 'socket_unused'), 'socket_unused');
  const lines = logs(gw, { journal: true });
  assert.equal(lines.find((l) => l.event === 'listening').prefix, '<6>', 'info is priority 6');
  assert.equal(lines.find((l) => l.event === 'socket_unused').prefix, '<4>', 'warn is priority 4');
  assert.ok(gw.stderrLines.filter((l) => l.startsWith('{')).length === 0, 'no line without its priority');
});

itest('journal: a JOURNAL_STREAM that is not stderr leaves plain JSON lines', async (t, h) => {
  const gw = startGateway(h, h.config(), [], { JOURNAL_STREAM: '1:1' });
  await gw.waitFor(() => logs(gw).find((l) => l.event === 'listening'), 'listening');
  assert.ok(gw.stderrLines.length > 0);
  assert.ok(gw.stderrLines.every((l) => l.startsWith('{')), 'JSON lines, no priority prefix');
});
