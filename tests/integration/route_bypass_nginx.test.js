'use strict';
// Route bypass against a real upstream: nginx (Debian nginx-light) serves /app/ as "PROTECTED $uri" and
// /public/ as "public $uri", normalising the path its own way (decoding escapes, %2F included, merging
// slashes, resolving dot segments). The gateway routes /app as required (no session: the login, which
// answers 503 here, its IdP being never reached) and /public as none. No target, however encoded, may
// make nginx answer from its /app location without a session. Sent directly to nginx, many of the
// same targets do reach /app: the vectors are real.

const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const fs = require('node:fs');
const { sharedEnv, closedPort, reservedPort, portOpen, waitFor, withTimeout } = require('./lib/harness');
const { RawConn, show } = require('./lib/recorder');

const NGINX = '/usr/sbin/nginx';
const AUTHORITY = 'gw.example.test:8443';

// nginx in the foreground, one process (master_process off), its prefix in the test's temp dir; stopped
// by its PID like the harness's children.
async function startNginx(h) {
  const port = await reservedPort();
  const prefix = h.file('nginx');
  fs.mkdirSync(`${prefix}/tmp`, { recursive: true });
  fs.mkdirSync(`${prefix}/logs`, { recursive: true });
  const conf = `${prefix}/nginx.conf`;
  fs.writeFileSync(conf, `
worker_processes 1;
master_process off;
daemon off;
pid ${prefix}/nginx.pid;
error_log ${prefix}/logs/error.log warn;
events { worker_connections 256; }
http {
    access_log ${prefix}/logs/access.log;
    client_body_temp_path ${prefix}/tmp/body;
    proxy_temp_path ${prefix}/tmp/proxy;
    fastcgi_temp_path ${prefix}/tmp/fastcgi;
    uwsgi_temp_path ${prefix}/tmp/uwsgi;
    scgi_temp_path ${prefix}/tmp/scgi;
    default_type text/plain;
    server {
        listen 127.0.0.1:${port};
        location = /app { return 200 "PROTECTED $uri"; }
        location /app/ { return 200 "PROTECTED $uri"; }
        location /public/ { return 200 "public $uri"; }
        location = /public { return 200 "public $uri"; }
        location / { return 404 "nothing $uri"; }
    }
}
`);
  const proc = childProcess.spawn(NGINX, ['-p', prefix, '-c', conf, '-e', `${prefix}/logs/error.log`],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  const output = [];
  proc.stdout.on('data', (d) => output.push(d.toString()));
  proc.stderr.on('data', (d) => output.push(d.toString()));
  let exit = null;
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => {
    exit = { code, signal };
    resolve(exit);
  }));
  proc.on('error', (err) => output.push(`spawn error: ${err.message}`));
  const child = {
    name: 'nginx',
    pid: proc.pid,
    port,
    get exit() {
      return exit;
    },
    get alive() {
      return exit === null && proc.pid !== undefined;
    },
    async stop() {
      if (this.alive) {
        process.kill(proc.pid, 'SIGTERM');
        if (await withTimeout(exited, 10000, 'nginx exit').then(() => true, () => false)) {
          return true;
        }
        if (this.alive) {
          process.kill(proc.pid, 'SIGKILL');
          await withTimeout(exited, 10000, 'nginx exit after SIGKILL').catch(() => null);
        }
      }
      return false;
    },
    tail() {
      let log = '';
      try {
        log = fs.readFileSync(`${prefix}/logs/error.log`, 'utf8');
      } catch (err) {
        // no log yet
      }
      return `${output.join('')}${log}`.split('\n').slice(-40).join('\n');
    },
  };
  h.children.push(child);
  process.on('exit', () => {
    if (child.alive) {
      try {
        process.kill(proc.pid, 'SIGKILL');
      } catch (err) {
        // already gone
      }
    }
  });
  await waitFor(async () => child.alive && (await portOpen(port)), 15000, `nginx listening on ${port}`);
  return child;
}

const envTest = sharedEnv('route_bypass_nginx', async (h) => {
  assert.ok(fs.existsSync(NGINX), `${NGINX} is installed (apt-get install nginx-light)`);
  const nginx = await startNginx(h);
  const idp = {
    issuer: `http://127.0.0.1:${await closedPort()}`,
    client_id: 'ssogate-test',
    client_secret_env: 'SG_TEST_SECRET',
    allow_insecure_http: true,
  };
  const base = {
    public_url: `http://${AUTHORITY}`,
    idp,
    routes: [{ prefix: '/app', auth: 'required' }, { prefix: '/public', auth: 'none' }],
    limits: { header_bytes: 65536, client_timeout_s: 5 },
  };
  const upstream = `http://127.0.0.1:${nginx.port}`;
  const env = { h, nginx };
  env.strict = await h.startGateway(h.config({ ...base, upstream: { url: upstream } }),
    { env: { SG_TEST_SECRET: 'test-secret' }, file: 'strict.json' });
  try {
    env.loose = await h.startGateway(h.config({
      ...base,
      upstream: { url: upstream, paths: 'case-insensitive', escaped_slashes: 'keep' },
    }), { env: { SG_TEST_SECRET: 'test-secret' }, file: 'loose.json' });
  } catch (err) {
    env.looseError = err;
  }
  return env;
});

// Sends one GET on a connection of its own; returns {status, body} or {status: null} when nothing came.
async function fetchRaw(port, target) {
  const conn = await RawConn.open(port);
  try {
    conn.write(`GET ${target} HTTP/1.1\r\nHost: client.example.test\r\nConnection: close\r\n\r\n`);
    const res = await conn.read(5000);
    return res ? { status: res.status, body: res.body.toString('latin1') } : { status: null, body: '' };
  } finally {
    conn.destroy();
  }
}

// Bypass vectors: every one names /app in some disguise.
const VECTORS = [
  '/app/x', '/app', '/app/', '/public/../app/x', '/public/%2e%2e/app/x', '/public/%2E%2E/app/x', '/public/%2E%2e/app/x',
  '/public/.%2e/app/x', '/public/%2e./app/x', '/public/x/../../app/x', '/public/./../app/x', '/./app/x', '/%2e/app/x',
  '//app/x', '///app///x', '/public//..//app/x', '/public//../app/x', '/%61pp/x', '/ap%70/x', '/%61%70%70/x',
  '/%2561pp/x', '/public/%252e%252e/app/x', '/public/..%2fapp/x', '/public/..%2Fapp/x', '/app%2fx', '/public%2F..%2Fapp%2Fx',
  '/public/..%5capp/x', '/app%5Cx', '/public\\..\\app\\x', '/app;x/y', '/app;/x', '/public/..;/app/x', '/public;/../app/x',
  '/public/%2e%2e;/app/x', '/app%00/x', '/public/%00/../app/x', '/public/%zz/../app/x', '/public/%C0%AE%C0%AE/app/x',
  '/public/%c0%af../app/x', '/public/x%', '/APP/x', '/App/x', '/%41PP/x', '/app./x', '/app%20/x', '/app%2e/x',
  '/public/x#/../../app/x', '/public/x?/../../app/x', '/public/%2e%2e%2fapp/x', '/public/%2e%2e%5capp/x',
  `http://${AUTHORITY}/public/../app/x`, 'http://127.0.0.1:1/app/x', 'http://evil.example/app/x', '/public/../../app/x',
  '/a/b/../../app/x', '/public/' + 'a/'.repeat(300) + '../'.repeat(301) + 'app/x', '/public%2f%2e%2e%2fapp',
];

envTest('nginx itself: its /app location answers PROTECTED, and many vectors reach it when sent directly', async (env, t) => {
  const direct = await fetchRaw(env.nginx.port, '/app/x');
  assert.equal(direct.status, 200);
  assert.equal(direct.body, 'PROTECTED /app/x', 'nginx serves its protected location');
  const pub = await fetchRaw(env.nginx.port, '/public/x');
  assert.equal(pub.body, 'public /public/x');
  let hits = 0;
  for (const target of VECTORS) {
    const res = await fetchRaw(env.nginx.port, target);
    if (res.body.startsWith('PROTECTED')) {
      hits++;
    }
  }
  t.diagnostic(`${hits} of ${VECTORS.length} vectors reach nginx's /app location when sent to nginx directly`);
  assert.ok(hits >= 20, `the vectors are real attacks on nginx (${hits} reach /app directly)`);
});

for (const which of ['strict', 'loose']) {
  envTest(`through the ${which} gateway, no vector reaches nginx's /app location without a session`, async (env, t) => {
    const gw = env[which];
    assert.ok(gw, `the ${which} gateway started: ${env.looseError && env.looseError.message}`);
    const leaks = [];
    const outcomes = {};
    for (const target of VECTORS) {
      const res = await fetchRaw(gw.port, target);
      outcomes[res.status] = (outcomes[res.status] || 0) + 1;
      if (res.body.startsWith('PROTECTED')) {
        leaks.push(`${show(target)} -> ${res.status} ${show(res.body)}`);
      }
      if (res.status === null) {
        leaks.push(`${show(target)} -> no answer`);
      }
    }
    t.diagnostic(`${VECTORS.length} vectors through the ${which} gateway: ${JSON.stringify(outcomes)}`);
    assert.deepEqual(leaks, [], `vectors that reached nginx's /app location through the ${which} gateway:\n${leaks.join('\n')}`);
  });
}

envTest('public paths still reach nginx through the gateway, normalised', async (env) => {
  const cases = [
    ['/public/x', 'public /public/x'],
    ['/public/%2e%2e/public/y', 'public /public/y'],
    ['/public/caf%c3%a9', 'public /public/caf\xc3\xa9'],
    ['/public/a%20b', 'public /public/a b'],
    ['/app/../public/z', 'public /public/z'],
    ['//public//w', 'public /public/w'],
  ];
  for (const [target, body] of cases) {
    const res = await fetchRaw(env.strict.port, target);
    assert.equal(res.status, 200, `${target}: ${res.status} ${res.body}`);
    assert.equal(res.body, body, `${target} through the gateway`);
  }
});
