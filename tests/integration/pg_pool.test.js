'use strict';
// The PostgreSQL pool (gateway/pg.c) against a real PostgreSQL: each case of the C driver
// tests/pg/test_pg.c on a fresh database of the run's shared server (or of a server of this file's
// own, see lib/pg.js), and the restart case on a private server that the test stops and starts again
// under a live pool.

const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const path = require('node:path');
const readline = require('node:readline');
const { after, before, test } = require('node:test');
const pg = require('./lib/pg');
const { SLOW, waitFor, withTimeout } = require('./lib/harness');

const BUILD_DIR = process.env.SSOGATE_BUILD_DIR || path.resolve(__dirname, '..', '..', 'build');
const DRIVER = process.env.SSOGATE_TEST_PG_DRIVER || path.join(BUILD_DIR, 'tests', 'test_pg');
const CASE_TIMEOUT_MS = 90000 * SLOW;
const SECRET = 'sg-pg-secret-7f3a';

// The driver process of one case, stopped by its PID when done. Its stdout lines are "ok - ..." /
// "not ok - ..." (and, for restart, JSON events); its stderr, the library's JSON log lines.
class Driver {
  constructor(name, conninfo) {
    this.name = name;
    this.stdout = [];
    this.stderr = [];
    this.events = [];
    this.listeners = [];
    this.proc = childProcess.spawn(DRIVER, [name], {
      env: { ...process.env, ...(conninfo ? { SSOGATE_TEST_PG_CONNINFO: conninfo } : {}) },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.pid = this.proc.pid;
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, signal) => resolve({ code, signal })));
    this.proc.on('error', (err) => this.stderr.push(`spawn error: ${err.message}`));
    this.proc.stdin.on('error', () => {});
    readline.createInterface({ input: this.proc.stdout }).on('line', (line) => {
      this.stdout.push(line);
      if (line.startsWith('{')) {
        this.events.push(JSON.parse(line));
      }
      this.listeners.forEach((listener) => listener());
    });
    readline.createInterface({ input: this.proc.stderr }).on('line', (line) => this.stderr.push(line));
    this.nextId = 0;
  }

  output() {
    return `--- stdout of test_pg ${this.name}\n${this.stdout.join('\n')}\n--- stderr (last 60 lines)\n${this.stderr.slice(-60).join('\n')}`;
  }

  logs() {
    return this.stderr.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  }

  waitEvent(predicate, ms, what) {
    return withTimeout(
      new Promise((resolve) => {
        const check = () => {
          const event = this.events.find(predicate);
          if (event) {
            this.listeners = this.listeners.filter((l) => l !== check);
            resolve(event);
          }
        };
        this.listeners.push(check);
        check();
      }),
      ms,
      `test_pg ${this.name}: ${what}\n${this.output()}`,
    );
  }

  send(line) {
    this.proc.stdin.write(`${line}\n`);
  }

  // Runs SELECT pg_backend_pid() (or pg_notify) through the pool; resolves the result event.
  async command(word, extra = '') {
    const id = ++this.nextId;
    this.send(`${word} ${id} ${extra}`);
    return this.waitEvent((e) => e.event === 'result' && e.id === id, 10000 * SLOW, `the result of ${word} ${id}`);
  }

  async stats() {
    const seen = this.events.length;
    this.send('stats');
    return this.waitEvent((e) => e.event === 'stats' && this.events.indexOf(e) >= seen, 5000 * SLOW, 'stats');
  }

  // Stops the driver by its PID (SIGKILL if it does not end by itself within ms).
  async stop(ms = 10000 * SLOW) {
    const timer = setTimeout(() => {
      try {
        process.kill(this.pid, 'SIGKILL');
      } catch (err) {
        // gone
      }
    }, ms);
    const exit = await this.exited;
    clearTimeout(timer);
    return exit;
  }
}

async function runCase(name, conninfo) {
  const driver = new Driver(name, conninfo);
  driver.proc.stdin.end();
  const exit = await driver.stop(CASE_TIMEOUT_MS);
  assert.deepEqual(exit, { code: 0, signal: null }, driver.output());
  assert.ok(driver.stdout.some((l) => l.startsWith('ok - ')), driver.output());
  assert.ok(!driver.stdout.some((l) => l.startsWith('not ok')), driver.output());
  return driver;
}

let server;
before(async () => {
  server = await pg.start();
});
after(async () => {
  if (server) {
    await server.destroy();
  }
});

test('connect and a prepared SELECT with parameters; the password never reaches the log', async () => {
  const conninfo = `${await server.createDatabase('basic')} password=${SECRET}`;
  const driver = await runCase('basic', conninfo);
  assert.ok(driver.logs().some((l) => l.event === 'pg_connected'), driver.output());
  assert.ok(!driver.stderr.join('\n').includes(SECRET), 'no password in the log');
});

for (const name of ['concurrent', 'sql_error', 'prepare_fails', 'timeout', 'cancel', 'notify', 'free_pending']) {
  test(`test_pg ${name}`, async () => {
    await runCase(name, await server.createDatabase(name));
  });
}

test('an 8 MiB parameter and 4 MiB answers, in clear and over TLS (a private server with ssl=on)', async () => {
  await runCase('large', await server.createDatabase('large'));
  const tls = await pg.startPrivate({ ssl: true });
  try {
    const conninfo = await tls.createDatabase('large_tls');
    assert.match(conninfo, /sslmode=require/);
    await runCase('large', conninfo);
  } finally {
    await tls.destroy();
  }
});

test('an unreachable server (a closed port): UNAVAILABLE at once, the loop never blocked', async () => {
  const driver = await runCase('unreachable');
  assert.ok(driver.logs().some((l) => l.event === 'pg_connect_failed'), driver.output());
});

test('a server that never answers: bounded by connect_timeout_ms, the loop never blocked', async () => {
  await runCase('silent');
});

test('PostgreSQL stopped and started under a live pool: UNAVAILABLE meanwhile, then back, LISTEN again', async () => {
  const own = await pg.startPrivate();
  let driver;
  try {
    driver = new Driver('restart', await own.createDatabase('restart'));
    await driver.waitEvent((e) => e.event === 'resync' && e.n === 1, 20000 * SLOW, 'the first LISTEN');
    assert.equal((await driver.command('query')).result, 'ok');
    assert.equal((await driver.command('notify', 'before')).result, 'ok');
    await driver.waitEvent((e) => e.event === 'notify' && e.payload === 'before', 5000 * SLOW, 'the first notification');

    await own.stop();
    await waitFor(async () => (await driver.stats()).up === 0, 10000 * SLOW, 'every connection down');
    for (let i = 0; i < 3; i++) {
      const r = await driver.command('query');
      assert.ok(['unavailable', 'timeout'].includes(r.result), `during the outage: ${JSON.stringify(r)}`);
      assert.ok(r.ms <= 2500 * SLOW, `bounded by its deadline: ${JSON.stringify(r)}`);
    }
    assert.ok(driver.logs().some((l) => l.event === 'pg_connection_lost'), driver.output());
    assert.ok(driver.logs().some((l) => l.event === 'pg_connect_failed'), driver.output());

    await own.start();
    await waitFor(async () => (await driver.command('query')).result === 'ok', 20000 * SLOW, 'a query succeeds after the restart');
    await driver.waitEvent((e) => e.event === 'resync' && e.n === 2, 20000 * SLOW, 'on_resync after the restart');
    assert.equal((await driver.command('notify', 'after')).result, 'ok');
    await driver.waitEvent((e) => e.event === 'notify' && e.payload === 'after', 5000 * SLOW, 'a notification after the restart');
    await waitFor(async () => (await driver.stats()).up === 3, 10000 * SLOW, 'all 3 connections back');

    driver.send('quit');
    const quit = await driver.waitEvent((e) => e.event === 'quit', 10000 * SLOW, 'quit');
    assert.ok(quit.max_gap_us < 50000 * SLOW, `the loop never blocked: largest gap ${quit.max_gap_us} us`);
    const exit = await driver.stop();
    assert.deepEqual(exit, { code: 0, signal: null }, driver.output());
  } catch (err) {
    if (driver) {
      console.log(driver.output());
    }
    throw err;
  } finally {
    if (driver) {
      driver.proc.stdin.destroy();
      await driver.stop();
    }
    await own.destroy();
  }
});
