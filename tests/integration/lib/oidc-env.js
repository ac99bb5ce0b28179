'use strict';
// The whole OpenID Connect set for the oidc_*.test.js integration tests (issue 3): a throw-away CA
// (tests/idp/make-ca.sh), the real test IdP over https with its test controls (tests/idp/idp.js), the stub
// upstream (tests/stub/upstream.js) and ssogate in claims mode, all on loopback. Each process is stopped
// by its PID when the Harness that owns it stops everything (Harness.stopAll).
//
//   const { Harness } = require('./lib/harness');
//   const { startOidcEnv } = require('./lib/oidc-env');
//   const env = await startOidcEnv(h, { gateway: { session: { idle_timeout_s: 3 } } });
//   const res = await env.login({ returnTo: '/private/x' });   // a full login through the IdP
//
// The gateway's listener port is chosen before anything starts, because the public URL, the IdP's
// registered redirect URI and the listener must all carry the same real port.

const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const https = require('node:https');
const path = require('node:path');
const harness = require('./harness');
const { login, Browser } = require('./login');

const { SOURCE_DIR, SLOW, Harness } = harness;
const IDP_DIR = path.join(SOURCE_DIR, 'tests', 'idp');
const START_TIMEOUT_MS = 20000 * SLOW;
const STOP_TIMEOUT_MS = 10000 * SLOW;
const CONTROL_TIMEOUT_MS = 15000 * SLOW;

const CLIENT_ID = 'ssogate';
const CLIENT_SECRET = 's3cret';
const ALICE = {
  login: 'alice',
  password: 'pw',
  sub: 'itc-user-alice',
  tenant: 'itc-100',
  master: true,
  active: true,
  email: 'alice@example.test',
  totp_secret: 'JBSWY3DPEHPK3PXP',
};
// An inactive account: the IdP ends its login with error=access_denied (B11).
const BOB = { login: 'bob', password: 'pw', sub: 'itc-user-bob', tenant: 'itc-100', active: false, email: 'bob@example.test', totp_secret: 'JBSWY3DPEHPK3PXP' };
// An account with no TOTP enrolled: its ID token's amr is ["pwd"] only (B3).
const CAROL = { login: 'carol', password: 'pw', sub: 'itc-user-carol', tenant: 'itc-100', active: true, email: 'carol@example.test' };
const ACCOUNTS = { alice: ALICE, bob: BOB, carol: CAROL };

// A login.js Browser that also keeps every response it saw ({url, status, headers}, newest last) and,
// while holdCallback is set, does not send the request to the gateway's callback: it records the URL in
// heldCallback and answers with status 0, so a test can replay, forge or move the callback itself.
class RecordingBrowser extends Browser {
  constructor(options) {
    super(options);
    this.responses = [];
    this.holdCallback = false;
    this.heldCallback = undefined;
  }

  async request(url, options) {
    const target = new URL(url);
    if (this.holdCallback && target.pathname === '/_sso/callback') {
      this.heldCallback = target.href;
      return { status: 0, headers: {}, body: '', rawBody: Buffer.alloc(0), url: target.href };
    }
    const res = await super.request(url, options);
    this.responses.push({ url: res.url, status: res.status, headers: res.headers });
    return res;
  }

  // The last response received from a URL whose path is pathname, or undefined.
  lastResponse(pathname) {
    return [...this.responses].reverse().find((r) => new URL(r.url).pathname === pathname);
  }
}

// One JSON request to the IdP's own origin (its /_test/ controls): resolves {status, body (parsed)}.
function idpJson(issuer, ca, method, pathname, body) {
  const target = new URL(pathname, issuer);
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: target.hostname,
      port: target.port,
      method,
      path: target.pathname + target.search,
      ca,
      agent: false,
      headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {},
    });
    const timer = setTimeout(() => req.destroy(new Error(`IdP control timed out: ${method} ${pathname}`)), CONTROL_TIMEOUT_MS);
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.on('response', (res) => {
      const chunks = [];
      res.on('data', (chunk) => chunks.push(chunk));
      res.on('end', () => {
        clearTimeout(timer);
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed;
        try {
          parsed = JSON.parse(text);
        } catch (err) {
          parsed = text;
        }
        resolve({ status: res.statusCode, body: parsed });
      });
    });
    req.end(payload);
  });
}

// Merges overrides into base one level deep (objects merged, anything else replaced); returns base.
function mergeShallow(base, overrides) {
  for (const [key, value] of Object.entries(overrides || {})) {
    if (value && typeof value === 'object' && !Array.isArray(value) && base[key] && typeof base[key] === 'object') {
      base[key] = { ...base[key], ...value };
    } else {
      base[key] = value;
    }
  }
  return base;
}

// Starts the test IdP (tests/idp/idp.js, test controls on) as process name of harness h, with the
// configuration configFile and the server certificate of the CA in caDir; resolves {idp, issuer}.
async function startIdp(h, name, configFile, caDir) {
  const idp = new harness.ReadyLineProcess(name, [
    path.join(IDP_DIR, 'idp.js'),
    '--config', configFile,
    '--cert', path.join(caDir, 'server.pem'),
    '--key', path.join(caDir, 'server-key.pem'),
    '--test-controls', '--exit-with-stdin',
  ], h.dir);
  h.children.push(idp);
  return { idp, issuer: (await idp.ready()).issuer };
}

// Starts CA, IdP, upstream stub and gateway for the Harness h (borrowed; it owns every process).
// options: gateway (overrides of the gateway configuration, merged one level deep), client (overrides
// of the IdP client, or a function of the gateway URL returning them), accounts (the IdP accounts, default alice, bob and carol).
// Resolves the environment object described at each member below.
async function startOidcEnv(h, { gateway = {}, client = {}, accounts = Object.values(ACCOUNTS) } = {}) {
  const caDir = h.file('ca');
  childProcess.execFileSync(path.join(IDP_DIR, 'make-ca.sh'), [caDir], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 30000 });
  const caFile = path.join(caDir, 'ca.pem');
  const ca = fs.readFileSync(caFile);

  const gwPort = await harness.reservedPort();
  const gwUrl = `http://127.0.0.1:${gwPort}`;
  const idpConfig = {
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: [`${gwUrl}/_sso/callback`],
      post_logout_redirect_uris: [`${gwUrl}/`],
      id_token_signed_response_alg: 'ES256',
      ...(typeof client === 'function' ? client(gwUrl) : client),
    }],
    tenants: [{ id: 'itc-100', module_urls: { bms: 'https://bms.kaseya.com' } }],
    accounts,
  };
  const idpConfigFile = h.file('idp.json');
  fs.writeFileSync(idpConfigFile, JSON.stringify(idpConfig, null, 2));
  const { idp, issuer } = await startIdp(h, 'idp', idpConfigFile, caDir);

  const up = await h.startStub();
  const config = mergeShallow(
    h.config({
      listeners: [{ address: '127.0.0.1', port: gwPort }],
      public_url: gwUrl,
      upstream: { url: up.url },
      idp: { issuer, client_id: CLIENT_ID, client_secret_env: 'SG_SECRET', ca_file: caFile },
      identity: 'claims',
      routes: [{ prefix: '/', auth: 'optional' }, { prefix: '/private', auth: 'required' }],
      limits: { client_timeout_s: 10 },
    }),
    gateway,
  );
  const configFile = h.writeConfig(config);
  const gatewayEnv = { SG_SECRET: CLIENT_SECRET };

  const env = {
    h,
    ca,
    caFile,
    issuer,
    idp,
    up,
    config,
    configFile,
    gwUrl,
    gwPort,
    gw: undefined,
    accounts: ACCOUNTS,

    // Starts (or starts again, on the same configuration, port and data dir) the gateway and waits
    // until each worker has the IdP's discovery document and keys, so /_sso/login answers at once.
    async startGateway() {
      const gw = await h.startGateway(configFile, { env: gatewayEnv, listeners: 1 });
      // Every worker fetches the discovery document and keys on its own: wait for all of them.
      const workers = config.workers || 1;
      const count = (pick) => () => gw.logs.filter(pick).length >= workers;
      await gw.waitOutput(count((l) => l.event === 'idp_discovery' && l.level === 'info'), START_TIMEOUT_MS, `IdP discovery (${workers} worker(s))`);
      await gw.waitOutput(count((l) => l.event === 'idp_jwks' && l.level === 'info' && l.keys > 0), START_TIMEOUT_MS, `IdP keys (${workers} worker(s))`);
      assert.equal(gw.port, gwPort, 'the gateway listens on the port of its public URL');
      env.gw = gw;
      return gw;
    },

    // Stops the gateway by its PID: SIGTERM (drained) or, with kill, SIGKILL; waits (bounded) for the exit.
    async stopGateway({ kill = false } = {}) {
      const gw = env.gw;
      if (kill) {
        gw.signal('SIGKILL');
        const exit = await gw.waitExit(STOP_TIMEOUT_MS);
        assert.ok(exit, 'the gateway died of SIGKILL');
        assert.equal(exit.signal, 'SIGKILL');
      } else {
        await gw.stop();
        assert.equal(gw.exit && gw.exit.code, 0, `the gateway exited 0 on SIGTERM (${JSON.stringify(gw.exit)})`);
      }
    },

    // A new browser (its own cookie jar) that trusts the test CA.
    browser(options = {}) {
      return new RecordingBrowser({ ca, ...options });
    },

    // Logs in through the gateway and the IdP as a user would. options: browser (default a new one),
    // account (default alice; an object like ALICE), returnTo (default /), start (a full URL instead),
    // totpCode (a wrong code, say). Resolves login()'s result (status, headers, body, url, history,
    // browser, steps) plus callback: the gateway's answer to /_sso/callback ({url, status, headers}).
    async login({ browser = env.browser(), account = ALICE, returnTo = '/', start, totpCode } = {}) {
      const startUrl = start || `${gwUrl}/_sso/login?return_to=${encodeURIComponent(returnTo)}`;
      const res = await login({
        start: startUrl,
        login: account.login,
        password: account.password,
        totpSecret: account.totp_secret,
        totpCode,
        browser,
      });
      return { ...res, callback: browser.lastResponse('/_sso/callback') };
    },

    // Logs in up to the IdP's redirect to the gateway's callback, which is not sent; resolves its URL.
    async authorize({ browser = env.browser(), account = ALICE, returnTo = '/' } = {}) {
      browser.holdCallback = true;
      try {
        await env.login({ browser, account, returnTo });
      } finally {
        browser.holdCallback = false;
      }
      assert.ok(browser.heldCallback, 'the IdP redirected to the gateway callback');
      const url = browser.heldCallback;
      browser.heldCallback = undefined;
      return url;
    },

    // GET /_sso/status with browser's cookies: the parsed JSON.
    async status(browser) {
      const res = await browser.request(`${gwUrl}/_sso/status`, { headers: { accept: 'application/json' } });
      assert.equal(res.status, 200, 'GET /_sso/status');
      return JSON.parse(res.body);
    },

    // The gateway's metrics, parsed (see harness.parseMetrics).
    metrics() {
      return h.metrics(env.gw);
    },

    // Runs fn() and resolves {value: what it resolved, moved: metricsMoved over the call}.
    async measure(fn) {
      const before = await env.metrics();
      const value = await fn();
      return { value, moved: metricsMoved(before, await env.metrics()) };
    },

    // The IdP's test controls: control('POST', '/_test/tamper', {...}) resolves the parsed answer and
    // asserts it was accepted.
    async control(method, pathname, body) {
      const res = await idpJson(issuer, ca, method, pathname, body);
      assert.equal(res.status, 200, `IdP ${method} ${pathname}: ${JSON.stringify(res.body)}`);
      return res.body;
    },

    async idpCounters() {
      return env.control('GET', '/_test/counters');
    },

    // A second IdP of the same configuration, accounts and CA at another issuer (a reload that moves
    // idp.issuer): resolves that issuer.
    async anotherIdp() {
      return (await startIdp(h, 'idp-b', idpConfigFile, caDir)).issuer;
    },

    // The JWKS the gateway publishes at /_sso/jwks.json.
    async gatewayJwks() {
      const res = await harness.request(env.gw, { path: '/_sso/jwks.json' });
      assert.equal(res.status, 200, 'GET /_sso/jwks.json');
      return JSON.parse(res.body.toString());
    },
  };
  await env.startGateway();
  return env;
}

// The key of a sample in metricsMoved: name{label="value",...}, labels sorted by name.
function metricKey(name, labels = {}) {
  const pairs = Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return pairs.length === 0 ? name : `${name}{${pairs.map(([k, v]) => `${k}="${v}"`).join(',')}}`;
}

// What moved between two parsed metrics (harness.parseMetrics): {metricKey: delta} for every counter
// sample that changed (histograms and gauges left out, since every request moves them).
function metricsMoved(before, after) {
  const old = new Map(before.samples.map((s) => [metricKey(s.name, s.labels), s.value]));
  const moved = {};
  for (const s of after.samples) {
    const key = metricKey(s.name, s.labels);
    const delta = s.value - (old.get(key) || 0);
    if (delta !== 0 && s.name.endsWith('_total') && !s.name.startsWith('ssogate_requests_')) {
      moved[key] = delta;
    }
  }
  return moved;
}

// Verifies a compact JWS made by the gateway (X-SSO-Assertion) against its JWKS with node's crypto.
// Returns {header, claims}; throws (assert) on a bad format, an unknown kid or a bad signature.
function verifyAssertion(token, jwks) {
  const parts = String(token).split('.');
  assert.equal(parts.length, 3, 'the assertion is a compact JWS');
  for (const part of parts) {
    assert.match(part, /^[A-Za-z0-9_-]+$/, 'each part is base64url without padding');
  }
  const header = JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8'));
  const claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  assert.ok(jwk, `kid ${header.kid} is in /_sso/jwks.json`);
  assert.equal(jwk.d, undefined, 'the published JWK has no private part');
  const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  const input = Buffer.from(`${parts[0]}.${parts[1]}`);
  const signature = Buffer.from(parts[2], 'base64url');
  let valid;
  if (header.alg === 'ES256') {
    valid = crypto.verify('sha256', input, { key, dsaEncoding: 'ieee-p1363' }, signature);
  } else if (header.alg === 'EdDSA') {
    valid = crypto.verify(null, input, key, signature);
  } else {
    assert.fail(`assertion alg ${header.alg} is neither ES256 nor EdDSA`);
  }
  assert.ok(valid, 'the assertion signature verifies with the published key');
  return { header, claims };
}

// Parses a Set-Cookie list (string or array) into {name: {value, attributes: {lower-case name: value}}}.
function parseSetCookies(setCookie) {
  const out = {};
  for (const line of [].concat(setCookie || [])) {
    const [pair, ...attributes] = line.split(';');
    const eq = pair.indexOf('=');
    const parsed = { value: pair.slice(eq + 1).trim(), attributes: {}, raw: line };
    for (const attribute of attributes) {
      const aeq = attribute.indexOf('=');
      const key = (aeq < 0 ? attribute : attribute.slice(0, aeq)).trim().toLowerCase();
      parsed.attributes[key] = aeq < 0 ? true : attribute.slice(aeq + 1).trim();
    }
    out[pair.slice(0, eq).trim()] = parsed;
  }
  return out;
}

// One shared environment for every test of a file: see harness.sharedEnv.
function sharedOidcEnv(name, options = {}) {
  return harness.sharedEnv(name, (h) => startOidcEnv(h, options));
}

module.exports = {
  ACCOUNTS,
  idpJson,
  CLIENT_ID,
  RecordingBrowser,
  metricKey,
  metricsMoved,
  parseSetCookies,
  sharedOidcEnv,
  startIdp,
  startOidcEnv,
  verifyAssertion,
};
