'use strict';
// The demo's set of processes for the browser test, on free loopback ports of its own: a throw-away CA
// (tests/idp/make-ca.sh), the real test IdP over https with the demo's tenants and accounts
// (demo/idp.json, its redirect URIs rewritten to this gateway's port), the stub PSA with the demo's data
// (tests/stub/psa/demo-data.json) and ssogate in link mode in front of it, configured as demo/run does.
// Every process belongs to a Harness (tests/integration/lib/harness.js), which stops each by its PID.
// With SSOGATE_WALKTHROUGH_STORE=postgresql the gateway keeps links, sessions and login states in a real
// PostgreSQL (tests/integration/lib/pg.js: the run's shared server, or one of its own) instead of LMDB:
// a fresh database, `ssogate-admin migrate` on it, then the same configuration with a store section.
//
//   const h = new Harness('browser');
//   const env = await startDemoEnv(h);   // {gwUrl, issuer, caFile, idpCertFile, store, ...}
//   ...
//   await h.stopAll();

const childProcess = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { SOURCE_DIR, SLOW, SSOGATE_BIN, ReadyLineProcess, reservedPort } = require('../integration/lib/harness');
const pg = require('../integration/lib/pg');

const IDP_DIR = path.join(SOURCE_DIR, 'tests', 'idp');
const DEMO_DIR = path.join(SOURCE_DIR, 'demo');
const PSA_DATA = path.join(SOURCE_DIR, 'tests', 'stub', 'psa', 'demo-data.json');
const START_TIMEOUT_MS = 20000 * SLOW;
const SECRET_ENV = 'SSOGATE_DEMO_SECRET';
const ADMIN_BIN = process.env.SSOGATE_ADMIN_BIN || path.join(path.dirname(SSOGATE_BIN), 'ssogate-admin');

// The store the walkthrough runs on: 'lmdb' (the default, as the demo) or 'postgresql'.
function walkthroughStore() {
  const store = process.env.SSOGATE_WALKTHROUGH_STORE || 'lmdb';
  if (store !== 'lmdb' && store !== 'postgresql') {
    throw new Error(`SSOGATE_WALKTHROUGH_STORE: lmdb or postgresql, not ${store}`);
  }
  return store;
}

// A PostgreSQL store section for h: a fresh database on the run's shared server or on one of its own
// (stopped with h's servers, after the gateway). Resolves {type, conninfo}.
async function postgresStore(h) {
  const server = await pg.start();
  h.servers.push({ close: (done) => server.destroy().then(() => done(), () => done()) });
  const conninfo = await server.createDatabase('browser_walkthrough');
  return { type: 'postgresql', conninfo };
}

// Applies the schema before the gateway's first start (a gateway refuses a database without it).
// env: what the configuration needs besides (the IdP client's secret).
function migrate(configFile, env) {
  childProcess.execFileSync(ADMIN_BIN, ['-c', configFile, 'migrate'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 30000 * SLOW,
  });
}

// Starts CA, IdP, PSA and gateway for the Harness h (borrowed; it owns every process it starts).
// Resolves {gwUrl, gwPort, issuer, caFile, idpCertFile, gw, idp, psa, configFile, store}.
async function startDemoEnv(h) {
  const storeType = walkthroughStore();
  const store = storeType === 'postgresql' ? await postgresStore(h) : undefined;
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

  const idp = new ReadyLineProcess(
    'idp',
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
      login_button: { marker: '</form>', position: 'after' },
    },
    idp: { issuer, client_id: client.client_id, client_secret_env: SECRET_ENV, ca_file: caFile },
    required_amr: ['otp'],
    region: { name: 'US' },
    identity: 'link',
    routes: [{ prefix: '/', auth: 'optional' }],
    limits: { client_timeout_s: 30 },
    ...(store ? { store } : {}),
  });
  const configFile = h.writeConfig(config);
  const gwEnv = { [SECRET_ENV]: client.client_secret };
  if (store) {
    migrate(configFile, gwEnv);
  }
  const gw = await h.startGateway(configFile, { env: gwEnv, listeners: 1 });
  // /_sso/login answers at once only when the IdP's discovery document and keys are in.
  await gw.waitLog((l) => l.event === 'idp_discovery' && l.level === 'info', START_TIMEOUT_MS, 'IdP discovery');
  await gw.waitLog((l) => l.event === 'idp_jwks' && l.level === 'info' && l.keys > 0, START_TIMEOUT_MS, 'IdP keys');
  if (gw.port !== gwPort) {
    throw new Error(`the gateway listens on ${gw.port}, not on the port of its public URL ${gwPort}`);
  }
  return { gwUrl, gwPort, issuer, caFile, idpCertFile, gw, idp, psa, configFile, store: storeType };
}

module.exports = { startDemoEnv, walkthroughStore };
