'use strict';
// A real PostgreSQL for the tests (PostgreSQL 15 from Debian, /usr/lib/postgresql/15/bin), on loopback.
//
//   const pg = require('./lib/pg');
//   const server = await pg.start();            // the run's shared server, or one of its own
//   const conninfo = await server.createDatabase('name');
//   ...
//   await server.stop();                        // a no-op on the shared server
//
//   const own = await pg.startPrivate();        // always its own: for tests that stop and restart it
//   await own.stop(); await own.start();        // the same port and data dir
//   await own.destroy();                        // stops it and removes its data dir
//   const tls = await pg.startPrivate({ ssl: true }); // TLS on (a self-signed certificate); its
//                                                     // conninfo() asks for sslmode=require
//
// Sharing: tests/run-all.sh starts one server for the whole run with the CLI below and exports
// SSOGATE_PG_HOST / SSOGATE_PG_PORT (and SSOGATE_PG_USER); start() then uses it and each test
// only creates a fresh database on it. Without them, start() starts a server of its own.
//
// Root: PostgreSQL refuses to run as root, and the tests run as root in CI. initdb and postgres
// then run as the unprivileged user SSOGATE_PG_OS_USER (default nobody), through spawn's uid/gid
// (no runuser or sudo: the postmaster is our direct child and is stopped by its PID). Its data
// dir is a fresh temp dir owned by that user, mode 0700; the socket dir is the same dir.
// As any other user, they run as that user.
//
// CLI (for tests/run-all.sh):
//   node tests/integration/lib/pg.js start STATE_DIR   prints {"host","port","pid","user","dataDir"}
//   node tests/integration/lib/pg.js stop STATE_DIR    stops that server by its PID, removes its data
// The server started by the CLI outlives the CLI process (detached; its log in STATE_DIR/postgres.log).

const childProcess = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { reservedPort } = require('./harness');

const PG_BIN = process.env.SSOGATE_PG_BIN || '/usr/lib/postgresql/15/bin';
const SLOW = Number(process.env.SSOGATE_TEST_SLOWNESS || 1);
const READY_TIMEOUT_MS = 30000 * SLOW;
const STOP_TIMEOUT_MS = 15000 * SLOW;
const DB_USER = 'postgres'; // the superuser initdb creates (-U); loopback trust authentication

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The uid/gid the server runs as: SSOGATE_PG_OS_USER when root, else the current user.
function serverIdentity() {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    return {};
  }
  const name = process.env.SSOGATE_PG_OS_USER || 'nobody';
  const id = (flag) => Number(childProcess.execFileSync('id', [flag, name], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

// Runs a command to its end (bounded); rejects with its output when it fails.
function run(command, args, options = {}, timeoutMs = 60000 * SLOW) {
  return new Promise((resolve, reject) => {
    childProcess.execFile(command, args, { timeout: timeoutMs, killSignal: 'SIGKILL', ...options }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`${path.basename(command)} ${args.join(' ')}: ${err.message}\n${stdout}${stderr}`));
      } else {
        resolve(stdout);
      }
    });
  });
}

// True while pid names a live process (a zombie counts as gone: it only waits to be reaped).
function pidAlive(pid) {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return err.code === 'EPERM';
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch (err) {
    return false;
  }
}

// Whether pid is a postgres process (guards a stop by a PID read from a file against PID reuse).
function isPostgres(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0].endsWith('postgres');
  } catch (err) {
    return false;
  }
}

async function waitGone(pid, ms) {
  const end = Date.now() + ms;
  while (pidAlive(pid)) {
    if (Date.now() > end) {
      return false;
    }
    await sleep(50);
  }
  return true;
}

// Stops the postmaster pid: SIGINT (fast shutdown: it ends the sessions; SIGTERM, smart shutdown,
// would wait for the pool's connections forever), then SIGQUIT (immediate), then SIGKILL.
async function stopPid(pid) {
  for (const [signal, ms] of [['SIGINT', STOP_TIMEOUT_MS], ['SIGQUIT', 5000 * SLOW], ['SIGKILL', 5000 * SLOW]]) {
    if (!pidAlive(pid)) {
      return;
    }
    try {
      process.kill(pid, signal);
    } catch (err) {
      return;
    }
    if (await waitGone(pid, ms)) {
      return;
    }
  }
  throw new Error(`postgres ${pid} did not exit after SIGKILL`);
}

// A free loopback port below the kernel's ephemeral range (32768-60999): no outgoing connection
// takes it between this check and the postmaster's bind.

function quoteIdent(name) {
  return `"${String(name).replace(/"/g, '""')}"`;
}

let databaseCounter = 0;

// Database names: unique in a run, whatever the test asked for.
function uniqueName(name) {
  const safe = String(name).toLowerCase().replace(/[^a-z0-9_]+/g, '_').slice(0, 30);
  return `t_${safe}_${process.pid}_${++databaseCounter}`;
}

class Server {
  constructor({ host = '127.0.0.1', port, dir = null, shared = false, user = DB_USER, ssl = false }) {
    this.ssl = ssl;
    this.host = host;
    this.port = port;
    this.dir = dir; // ours: the temp dir holding data/ and the socket
    this.shared = shared;
    this.user = user;
    this.pid = undefined;
    this.proc = null;
  }

  conninfo(dbname = 'postgres') {
    const tls = this.ssl ? ' sslmode=require' : '';
    return `host=${this.host} port=${this.port} user=${this.user} dbname=${dbname}${tls}`;
  }

  // Runs one SQL command as the superuser, through psql.
  psql(sql, dbname = 'postgres') {
    return run(path.join(PG_BIN, 'psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', this.conninfo(dbname), '-c', sql], {
      env: { ...process.env, PGCONNECT_TIMEOUT: '10' },
    });
  }

  // Creates a fresh database (a unique name derived from name) and returns its conninfo.
  async createDatabase(name = 'test') {
    const db = uniqueName(name);
    await this.psql(`CREATE DATABASE ${quoteIdent(db)}`);
    return this.conninfo(db);
  }

  async ready() {
    const end = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (this.proc !== null && this.proc.exitCode !== null) {
        throw new Error(`postgres exited with ${this.proc.exitCode}: ${this.logTail()}`);
      }
      try {
        await run(path.join(PG_BIN, 'pg_isready'), ['-q', '-h', this.host, '-p', String(this.port), '-U', this.user, '-t', '2']);
        if (this.proc !== null && !this.ownsPort()) {
          // Another server took the port between reservedPort() and our bind (initdb runs in between):
          // ours is still starting or is about to exit on the bind error, which the loop reports.
          throw new Error('the server answering is not ours yet');
        }
        return this;
      } catch (err) {
        if (Date.now() > end) {
          throw new Error(`postgres on port ${this.port} not ready within ${READY_TIMEOUT_MS} ms: ${this.logTail()}`);
        }
        await sleep(100);
      }
    }
  }

  // Whether the postmaster we started says it is ready (postmaster.pid: its PID on the first line, its
  // status on the eighth), so that it, not another server that took the port meanwhile, is listening.
  ownsPort() {
    try {
      const lines = fs.readFileSync(path.join(this.dir, 'data', 'postmaster.pid'), 'utf8').split('\n');
      return Number(lines[0]) === this.pid && lines[7] !== undefined && lines[7].trim() === 'ready';
    } catch (err) {
      return false;
    }
  }

  get logFile() {
    return this.dir ? path.join(this.dir, 'postgres.log') : null;
  }

  logTail(n = 20) {
    try {
      return fs.readFileSync(this.logFile, 'utf8').split('\n').slice(-n).join('\n');
    } catch (err) {
      return '(no log)';
    }
  }

  // Starts the postmaster on this.port and this.dir (initdb first if there is no data dir yet).
  // detached: the server outlives this process (the CLI).
  async start({ detached = false } = {}) {
    if (this.shared) {
      throw new Error('the shared PostgreSQL is never started or stopped by a test');
    }
    const identity = serverIdentity();
    const env = { PATH: process.env.PATH, HOME: this.dir, LC_ALL: 'C', TZ: 'UTC' };
    const dataDir = path.join(this.dir, 'data');
    if (!fs.existsSync(path.join(dataDir, 'PG_VERSION'))) {
      await run(path.join(PG_BIN, 'initdb'), ['-D', dataDir, '-U', this.user, '-E', 'UTF8', '--no-locale', '--auth=trust', '--no-sync'], {
        ...identity,
        env,
        cwd: this.dir,
      });
    }
    const tlsArgs = this.ssl ? await this.certificate(identity) : [];
    const log = fs.openSync(this.logFile, 'a');
    if (identity.uid !== undefined) {
      fs.fchownSync(log, identity.uid, identity.gid);
    }
    const args = ['-D', dataDir, '-k', this.dir, '-h', this.host, '-p', String(this.port),
      '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off',
      '-c', 'shared_buffers=16MB', '-c', 'max_connections=100', ...tlsArgs];
    this.proc = childProcess.spawn(path.join(PG_BIN, 'postgres'), args, {
      ...identity,
      env,
      cwd: this.dir,
      detached,
      stdio: ['ignore', log, log],
    });
    fs.closeSync(log);
    this.pid = this.proc.pid;
    if (detached) {
      this.proc.unref();
    } else {
      live.add(this.pid);
    }
    try {
      await this.ready();
    } catch (err) {
      await this.stop();
      throw err;
    }
    return this;
  }

  // A self-signed certificate for TLS (made once per data dir); the server's arguments for it.
  async certificate(identity) {
    const cert = path.join(this.dir, 'server.crt');
    const key = path.join(this.dir, 'server.key');
    if (!fs.existsSync(key)) {
      await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
        '-subj', '/CN=127.0.0.1', '-keyout', key, '-out', cert]);
      fs.chmodSync(key, 0o600); // postgres refuses a key others can read
      if (identity.uid !== undefined) {
        fs.chownSync(key, identity.uid, identity.gid);
        fs.chownSync(cert, identity.uid, identity.gid);
      }
    }
    return ['-c', 'ssl=on', '-c', `ssl_cert_file=${cert}`, '-c', `ssl_key_file=${key}`];
  }

  // Stops the postmaster by its PID (see stopPid). A no-op on the shared server.
  async stop() {
    if (this.shared || this.pid === undefined) {
      return;
    }
    await stopPid(this.pid);
    live.delete(this.pid);
    this.pid = undefined;
    this.proc = null;
  }

  async restart() {
    await this.stop();
    return this.start();
  }

  // Stops the server and removes its data dir (a no-op on the shared server).
  async destroy() {
    if (this.shared) {
      return;
    }
    await this.stop();
    if (this.dir) {
      fs.rmSync(this.dir, { recursive: true, force: true });
      ownedDirs.delete(this.dir);
    }
  }
}

// Postmasters started by this process, killed if it exits without stopping them, and the data dirs
// of its servers, removed then unless destroy() removed them already (a test that only stop()s).
const live = new Set();
const ownedDirs = new Set();
process.on('exit', () => {
  for (const pid of live) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch (err) {
      // already gone
    }
  }
  for (const dir of ownedDirs) {
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch (err) {
      // a backend still exiting wrote into it: left for the system's temp cleanup
    }
  }
});

function newDir() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ssogate-pg-'));
  const identity = serverIdentity();
  if (identity.uid !== undefined) {
    fs.chownSync(dir, identity.uid, identity.gid);
  }
  fs.chmodSync(dir, 0o700);
  return dir;
}

// A server of its own, on a free port; retried on another port if that one was taken meanwhile.
async function startPrivate(options = {}) {
  let lastError;
  for (let attempt = 0; attempt < 3; attempt++) {
    const server = new Server({ port: await reservedPort(), dir: newDir(), ssl: Boolean(options.ssl) });
    if (!options.detached) {
      ownedDirs.add(server.dir);
    }
    try {
      return await server.start({ detached: Boolean(options.detached) });
    } catch (err) {
      lastError = err;
      await server.destroy();
    }
  }
  throw lastError;
}

// The run's shared server when SSOGATE_PG_PORT names one, else a server of its own. Either way
// stop()/destroy() are safe to call: they leave the shared server alone.
async function start() {
  if (process.env.SSOGATE_PG_PORT) {
    const server = new Server({
      host: process.env.SSOGATE_PG_HOST || '127.0.0.1',
      port: Number(process.env.SSOGATE_PG_PORT),
      user: process.env.SSOGATE_PG_USER || DB_USER,
      shared: true,
    });
    return server.ready();
  }
  return startPrivate();
}

async function cli(argv) {
  const [command, stateDir] = argv;
  if (!['start', 'stop'].includes(command) || !stateDir) {
    console.error('usage: pg.js start|stop STATE_DIR');
    return 2;
  }
  const stateFile = path.join(path.resolve(stateDir), 'pg.json');
  if (command === 'start') {
    fs.mkdirSync(stateDir, { recursive: true });
    const server = await startPrivate({ detached: true });
    live.delete(server.pid); // it must outlive this process
    const state = { host: server.host, port: server.port, pid: server.pid, user: server.user, dataDir: server.dir };
    fs.writeFileSync(stateFile, JSON.stringify(state) + '\n');
    console.log(JSON.stringify(state));
    return 0;
  }
  let state;
  try {
    state = JSON.parse(fs.readFileSync(stateFile, 'utf8'));
  } catch (err) {
    console.error(`pg.js stop: no server recorded in ${stateFile}`);
    return 0;
  }
  if (isPostgres(state.pid)) {
    await stopPid(state.pid);
  }
  if (state.dataDir && path.basename(state.dataDir).startsWith('ssogate-pg-')) {
    fs.rmSync(state.dataDir, { recursive: true, force: true });
  }
  fs.rmSync(stateFile, { force: true });
  console.log(JSON.stringify({ stopped: state.pid }));
  return 0;
}

if (require.main === module) {
  cli(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err) => {
      console.error(err.stack || String(err));
      process.exit(1);
    },
  );
}

module.exports = { start, startPrivate, Server, PG_BIN };
