'use strict';
// The demo's set of processes for the browser test, on free loopback ports of its own: a throw-away CA
// (tests/idp/make-ca.sh), the real test IdP over https with the demo's tenants and accounts
// (demo/idp.json, its redirect URIs rewritten to this gateway's port), the stub PSA with the demo's data
// (tests/stub/psa/demo-data.json) and ssogate in link mode in front of it, configured as demo/run does.
// Every process belongs to a Harness (tests/integration/lib/harness.js), which stops each by its PID.
//
//   const h = new Harness('browser');
//   const env = await startDemoEnv(h);   // {gwUrl, issuer, caFile, idpCertFile, ...}
//   ...
//   await h.stopAll();

const childProcess = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const { SOURCE_DIR, SLOW, reservedPort, withTimeout } = require('../integration/lib/harness');

const IDP_DIR = path.join(SOURCE_DIR, 'tests', 'idp');
const DEMO_DIR = path.join(SOURCE_DIR, 'demo');
const PSA_DATA = path.join(SOURCE_DIR, 'tests', 'stub', 'psa', 'demo-data.json');
const START_TIMEOUT_MS = 20000 * SLOW;
const STOP_TIMEOUT_MS = 10000 * SLOW;
const SECRET_ENV = 'SSOGATE_DEMO_SECRET';

// The IdP: a node process that prints one JSON "ready" line on stdout. It has what Harness.stopAll and
// Harness.dump expect of a child (name, pid, exit, alive, stderrLines, stop(), tail()).
class IdpProcess {
  constructor(args, dir) {
    this.name = 'idp';
    this.proc = childProcess.spawn(process.execPath, args, { cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] });
    this.pid = this.proc.pid;
    this.exit = null;
    this.stdoutLines = [];
    this.stderrLines = [];
    this.log = fs.createWriteStream(path.join(dir, 'idp.log'));
    this.exited = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => {
        this.exit = { code, signal };
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

  // Resolves the parsed ready line; rejects (bounded) when the process exits first.
  async ready() {
    const line = await withTimeout(
      Promise.race([this.firstLine, this.exited.then(() => Promise.reject(new Error(`idp exited: ${this.tail()}`)))]),
      START_TIMEOUT_MS,
      'the IdP ready line',
    );
    return JSON.parse(line);
  }

  // SIGTERM by PID, SIGKILL when it lingers; bounded.
  async stop() {
    if (this.alive) {
      process.kill(this.pid, 'SIGTERM');
      const exit = await withTimeout(this.exited, STOP_TIMEOUT_MS, 'idp exit').catch(() => null);
      if (exit === null && this.alive) {
        process.kill(this.pid, 'SIGKILL');
        await withTimeout(this.exited, STOP_TIMEOUT_MS, 'idp exit after SIGKILL').catch(() => null);
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

// Starts CA, IdP, PSA and gateway for the Harness h (borrowed; it owns every process it starts).
// Resolves {gwUrl, gwPort, issuer, caFile, idpCertFile, gw, idp, psa, configFile}.
async function startDemoEnv(h) {
  const caDir = h.file('ca');
  childProcess.execFileSync(path.join(IDP_DIR, 'make-ca.sh'), [caDir], {
    stdio: ['ignore', 'ignore', 'pipe'],
    timeout: 30000,
  });
  const caFile = path.join(caDir, 'ca.pem');
  const idpCertFile = path.join(caDir, 'server.pem');

  // The public URL, the IdP's redirect URI, the PSA's issuer and JWKS URL and the listener all carry
  // this port, so it is chosen before anything starts.
  const gwPort = await reservedPort();
  const gwUrl = `http://127.0.0.1:${gwPort}`;

  const idpConfig = JSON.parse(fs.readFileSync(path.join(DEMO_DIR, 'idp.json'), 'utf8'));
  for (const client of idpConfig.clients) {
    client.redirect_uris = [`${gwUrl}/_sso/callback`];
    client.post_logout_redirect_uris = [`${gwUrl}/`];
  }
  const idpConfigFile = h.file('idp.json');
  fs.writeFileSync(idpConfigFile, JSON.stringify(idpConfig, null, 2));
  const client = idpConfig.clients[0];

  const idp = new IdpProcess(
    [
      path.join(IDP_DIR, 'idp.js'),
      '--config', idpConfigFile,
      '--cert', idpCertFile,
      '--key', path.join(caDir, 'server-key.pem'),
      '--exit-with-stdin',
    ],
    h.dir,
  );
  h.children.push(idp);
  const { issuer } = await idp.ready();

  const psa = await h.startStub({
    script: 'psa.js',
    name: 'psa',
    args: ['--data', PSA_DATA, '--gateway-jwks', `${gwUrl}/_sso/jwks.json`, '--audience', 'auto', '--issuer', gwUrl],
  });

  // demo/run's configuration, on this run's ports and temp dir.
  const config = h.config({
    listeners: [{ address: '127.0.0.1', port: gwPort }],
    public_url: gwUrl,
    upstream: { url: psa.url },
    psa: {
      login_path: '/login',
      logout_path: '/logout',
      home_path: '/',
      whoami: { path: '/api/whoami', tenant: '/tenant', user: '/user', admin: '/admin', kind: '/kind', active: '/active' },
    },
    idp: { issuer, client_id: client.client_id, client_secret_env: SECRET_ENV, ca_file: caFile },
    required_amr: ['otp'],
    region: { name: 'US' },
    identity: 'link',
    routes: [{ prefix: '/', auth: 'optional' }],
    limits: { client_timeout_s: 30 },
  });
  const configFile = h.writeConfig(config);
  const gw = await h.startGateway(configFile, { env: { [SECRET_ENV]: client.client_secret }, listeners: 1 });
  // /_sso/login answers at once only when the IdP's discovery document and keys are in.
  await gw.waitLog((l) => l.event === 'idp_discovery' && l.level === 'info', START_TIMEOUT_MS, 'IdP discovery');
  await gw.waitLog((l) => l.event === 'idp_jwks' && l.level === 'info' && l.keys > 0, START_TIMEOUT_MS, 'IdP keys');
  if (gw.port !== gwPort) {
    throw new Error(`the gateway listens on ${gw.port}, not on the port of its public URL ${gwPort}`);
  }
  return { gwUrl, gwPort, issuer, caFile, idpCertFile, gw, idp, psa, configFile };
}

module.exports = { startDemoEnv };
