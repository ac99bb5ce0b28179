'use strict';
// Self-test of the test IdP (idp.js) and of the login driver (tests/integration/lib/login.js): starts the
// IdP over https with a throw-away CA, plays a relying party against it (authorization code flow with
// PKCE S256, client_secret_basic and client_secret_post), and checks the claims, the login pages, the
// test controls and every ID token defect. Every process started here is stopped by its PID.
//
//   node --test tests/idp/selftest.test.js      (after npm ci in tests/idp)

const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { test, after } = require('node:test');

try {
  require.resolve('oidc-provider', { paths: [__dirname] });
} catch (err) {
  throw new Error(`oidc-provider is not installed: run "npm ci" in ${__dirname}`);
}
const jose = require('jose');
const { login, Browser } = require('../integration/lib/login');
const { totp } = require('./totp');
const { DEFECTS, CRIT_PARAM, OTHER_CLIENT, OVERSIZE_BYTES } = require('./tamper');

const SLOW = Number(process.env.SSOGATE_TEST_SLOWNESS || 1);
const START_TIMEOUT_MS = 20000 * SLOW;
const STOP_TIMEOUT_MS = 10000 * SLOW;
const ALGS = ['RS256', 'PS256', 'ES256', 'EdDSA'];
const US_BMS = 'https://bms.kaseya.com';
const ALICE_SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ssogate-idp-selftest-'));
const children = [];
let rpServer;

// A started process, its stdout lines, and how it ended.
function spawn(name, args) {
  const proc = childProcess.spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'], cwd: dir });
  const child = { name, proc, pid: proc.pid, lines: [], exit: null, log: fs.createWriteStream(path.join(dir, `${name}.log`)) };
  child.exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      child.exit = { code, signal };
      resolve(child.exit);
    });
  });
  readline.createInterface({ input: proc.stdout }).on('line', (line) => child.lines.push(line));
  proc.stderr.on('data', (chunk) => child.log.write(chunk));
  proc.stdin.on('error', () => {});
  children.push(child);
  return child;
}

// Resolves with promise's value or rejects after ms.
function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Starts idp.js with args and resolves {child, issuer, port} once it printed its ready line.
async function startIdp(name, args) {
  const child = spawn(name, [path.join(__dirname, 'idp.js'), '--exit-with-stdin', ...args]);
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (child.lines.length === 0) {
    if (child.exit !== null || Date.now() > deadline) {
      throw new Error(`${name} did not start (${JSON.stringify(child.exit)}); see ${dir}/${name}.log`);
    }
    await sleep(25);
  }
  const ready = JSON.parse(child.lines[0]);
  return { child, ...ready };
}

// Stops a child by its PID (SIGTERM, then SIGKILL) and resolves its exit.
async function stop(child) {
  if (child.exit === null) {
    process.kill(child.pid, 'SIGTERM');
    try {
      await withTimeout(child.exited, STOP_TIMEOUT_MS, `${child.name} exit`);
    } catch (err) {
      process.kill(child.pid, 'SIGKILL');
      await child.exited;
    }
  }
  child.proc.stdin.destroy();
  if (!child.log.writableEnded) {
    await new Promise((resolve) => child.log.end(resolve));
  }
  return child.exit;
}

// One https/http request with the test CA; resolves {status, headers, body (string), json()}.
function fetchRaw(url, { method = 'GET', headers = {}, body, timeoutMs = 15000 * SLOW } = {}) {
  const target = new URL(url);
  const lib = target.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.request(target, { method, headers, ca: caPem, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode, headers: res.headers, body: text, json: () => JSON.parse(text) });
      });
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

function control(name, body) {
  return fetchRaw(`${idp.issuer}/_test/${name}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

async function controlOk(name, body) {
  const res = await control(name, body);
  assert.equal(res.status, 200, `/_test/${name}: ${res.body}`);
  return res.json();
}

function decodeSegment(segment) {
  return JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
}

// ---- setup: CA, the relying party, the IdP ----

childProcess.execFileSync('sh', [path.join(__dirname, 'make-ca.sh'), dir], { stdio: ['ignore', 'ignore', 'inherit'] });
const caFile = path.join(dir, 'ca.pem');
const caPem = fs.readFileSync(caFile);

// The relying party: /start begins a code flow (PKCE S256, state, nonce) for ?client=ID, /_sso/callback
// records what came back. flows: state -> {clientId, nonce, verifier, callback (query object)}.
const flows = new Map();
let rpUrl;
let idp;
const CLIENTS = {};

function startRp() {
  rpServer = http.createServer((req, res) => {
    const url = new URL(req.url, rpUrl);
    if (url.pathname === '/start') {
      const clientId = url.searchParams.get('client');
      const state = crypto.randomBytes(16).toString('base64url');
      const nonce = crypto.randomBytes(16).toString('base64url');
      const verifier = crypto.randomBytes(32).toString('base64url');
      flows.set(state, { clientId, nonce, verifier, callback: null });
      const auth = new URL(`${idp.issuer}/auth`);
      auth.search = new URLSearchParams({
        response_type: 'code',
        client_id: clientId,
        redirect_uri: `${rpUrl}/_sso/callback`,
        scope: 'openid email profile',
        state,
        nonce,
        ...(url.searchParams.get('pkce') === 'no'
          ? {}
          : {
              code_challenge: crypto.createHash('sha256').update(verifier).digest('base64url'),
              code_challenge_method: 'S256',
            }),
      }).toString();
      res.writeHead(302, { location: auth.href }).end();
    } else if (url.pathname === '/_sso/callback') {
      const query = Object.fromEntries(url.searchParams);
      const flow = flows.get(query.state);
      if (flow) {
        flow.callback = query;
      }
      res.writeHead(flow ? 200 : 400, { 'content-type': 'text/plain' }).end(flow ? 'callback reached' : 'unknown state');
    } else {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('relying party home');
    }
  });
  return new Promise((resolve) => {
    rpServer.listen(0, '127.0.0.1', () => {
      rpUrl = `http://127.0.0.1:${rpServer.address().port}`;
      resolve();
    });
  });
}

// The flow that a final response at the RP callback belongs to.
function flowOf(res) {
  const url = new URL(res.url);
  assert.equal(`${url.origin}${url.pathname}`, `${rpUrl}/_sso/callback`, `ended at the callback: ${res.url}`);
  const flow = flows.get(url.searchParams.get('state'));
  assert.ok(flow, 'the callback state is a known flow');
  return flow;
}

// Redeems the flow's code at the token endpoint as its client authenticates; resolves the response.
function redeem(flow, { timeoutMs } = {}) {
  const client = CLIENTS[flow.clientId];
  const form = new URLSearchParams({
    grant_type: 'authorization_code',
    code: flow.callback.code,
    redirect_uri: `${rpUrl}/_sso/callback`,
    code_verifier: flow.verifier,
  });
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  if (client.token_endpoint_auth_method === 'client_secret_post') {
    form.set('client_id', client.client_id);
    form.set('client_secret', client.client_secret);
  } else {
    const basic = `${encodeURIComponent(client.client_id)}:${encodeURIComponent(client.client_secret)}`;
    headers.authorization = `Basic ${Buffer.from(basic).toString('base64')}`;
  }
  return fetchRaw(`${idp.issuer}/token`, { method: 'POST', headers, body: form.toString(), timeoutMs });
}

async function jwks() {
  const res = await fetchRaw(`${idp.issuer}/jwks`);
  assert.equal(res.status, 200);
  return res.json();
}

// Verifies an ID token as a relying party does; resolves {payload, protectedHeader}.
async function verifyIdToken(token, clientId) {
  return jose.jwtVerify(token, jose.createLocalJWKSet(await jwks()), {
    issuer: idp.issuer,
    audience: clientId,
    algorithms: ALGS,
  });
}

// Runs a whole code flow for clientId in browser (logging in when the IdP asks) and redeems the code.
// Resolves {flow, tokens, idToken, header, payload (decoded, unverified)}.
async function codeFlow(browser, clientId, account = {}) {
  const res = await login({ start: `${rpUrl}/start?client=${clientId}`, browser, ...account });
  assert.equal(res.status, 200, `flow ended at ${res.url}: ${res.body.slice(0, 300)}`);
  const flow = flowOf(res);
  assert.ok(flow.callback.code, `a code at the callback: ${JSON.stringify(flow.callback)}`);
  const tokenRes = await redeem(flow);
  assert.equal(tokenRes.status, 200, `token endpoint: ${tokenRes.body}`);
  const tokens = tokenRes.json();
  const [h, p] = tokens.id_token.split('.');
  let payload;
  try {
    payload = decodeSegment(p);
  } catch (err) {
    payload = undefined;
  }
  return { flow, tokens, idToken: tokens.id_token, header: decodeSegment(h), payload, steps: res.steps };
}

const idpConfig = () => ({
  clients: [
    {
      client_id: 'psa-basic',
      client_secret: 'basic-secret-0123456789',
      client_name: 'PSA through ssogate',
      redirect_uris: [`${rpUrl}/_sso/callback`],
      post_logout_redirect_uris: [`${rpUrl}/`],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
    },
    {
      client_id: 'psa-post',
      client_secret: 'post-secret-0123456789',
      redirect_uris: [`${rpUrl}/_sso/callback`],
      post_logout_redirect_uris: [`${rpUrl}/`],
      token_endpoint_auth_method: 'client_secret_post',
      id_token_signed_response_alg: 'ES256',
    },
  ],
  tenants: [
    { id: 'itc-tenant-100', module_urls: { bms: US_BMS } },
    { id: 'itc-tenant-200', module_urls: { bms: 'https://bmsemea.kaseya.com' } },
  ],
  accounts: [
    {
      login: 'alice',
      password: 'alice-password',
      sub: 'itc-user-alice',
      tenant: 'itc-tenant-100',
      master: true,
      active: true,
      email: 'alice@example.test',
      totp_secret: ALICE_SECRET,
    },
    {
      login: 'bob',
      password: 'bob-password',
      sub: 'itc-user-bob',
      tenant: 'itc-tenant-200',
      master: false,
      active: true,
      email: 'bob@example.test',
    },
    {
      login: 'carol',
      password: 'carol-password',
      sub: 'itc-user-carol',
      tenant: 'itc-tenant-100',
      master: false,
      active: false,
      email: 'carol@example.test',
      totp_secret: ALICE_SECRET,
    },
  ],
});

const ready = (async () => {
  await startRp();
  const config = idpConfig();
  for (const client of config.clients) {
    CLIENTS[client.client_id] = client;
  }
  fs.writeFileSync(path.join(dir, 'idp.json'), JSON.stringify(config, null, 2));
  idp = await startIdp('idp', [
    '--config', path.join(dir, 'idp.json'),
    '--cert', path.join(dir, 'server.pem'),
    '--key', path.join(dir, 'server-key.pem'),
    '--test-controls',
  ]);
})();

after(async () => {
  for (const child of children) {
    await stop(child);
  }
  if (rpServer && rpServer.listening) {
    rpServer.closeAllConnections();
    await new Promise((resolve) => rpServer.close(resolve));
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

// ---- tests ----

test('starts over https and prints its issuer and port', async () => {
  await ready;
  assert.match(idp.issuer, /^https:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(idp.issuer, `https://127.0.0.1:${idp.port}`);
  assert.equal(idp.child.lines.length, 1, 'exactly one line on stdout');
});

test('discovery names the endpoints, PKCE S256 and the four signing algs', async () => {
  await ready;
  const res = await fetchRaw(`${idp.issuer}/.well-known/openid-configuration`);
  assert.equal(res.status, 200);
  const doc = res.json();
  assert.equal(doc.issuer, idp.issuer);
  for (const [member, suffix] of [
    ['authorization_endpoint', '/auth'],
    ['token_endpoint', '/token'],
    ['jwks_uri', '/jwks'],
    ['end_session_endpoint', '/session/end'],
    ['userinfo_endpoint', '/me'],
  ]) {
    assert.equal(doc[member], `${idp.issuer}${suffix}`, member);
  }
  assert.deepEqual(doc.code_challenge_methods_supported, ['S256']);
  assert.deepEqual([...doc.id_token_signing_alg_values_supported].sort(), [...ALGS].sort());
  assert.deepEqual(doc.response_types_supported, ['code']);
  for (const method of ['client_secret_basic', 'client_secret_post']) {
    assert.ok(doc.token_endpoint_auth_methods_supported.includes(method), method);
  }
  for (const claim of ['tenant', 'master', 'module_urls', 'active', 'email', 'amr']) {
    assert.ok(doc.claims_supported.includes(claim), `claims_supported has ${claim}`);
  }
});

test('JWKS has one public key per alg, each with its own kid', async () => {
  await ready;
  const { keys } = await jwks();
  assert.deepEqual(keys.map((k) => k.alg).sort(), [...ALGS].sort());
  assert.equal(new Set(keys.map((k) => k.kid)).size, keys.length, 'kids are unique');
  for (const key of keys) {
    assert.equal(key.use, 'sig');
    for (const privateMember of ['d', 'p', 'q', 'dp', 'dq', 'qi']) {
      assert.equal(key[privateMember], undefined, `${key.kid} has no private member ${privateMember}`);
    }
  }
});

test('an authorization request without PKCE is refused', async () => {
  await ready;
  const browser = new Browser({ ca: caFile });
  const res = await browser.navigate(`${rpUrl}/start?client=psa-basic&pkce=no`);
  const flow = flowOf(res);
  assert.equal(flow.callback.error, 'invalid_request');
  assert.match(flow.callback.error_description, /PKCE/);
});

// alice's browser keeps its IdP session for the later tests.
const alice = { browser: null };

test('alice logs in with password and TOTP: the ID token carries every claim, amr with otp', async () => {
  await ready;
  alice.browser = new Browser({ ca: caFile });
  const { idToken, header, flow, tokens, steps } = await codeFlow(alice.browser, 'psa-basic', {
    login: 'alice',
    password: 'alice-password',
    totpSecret: ALICE_SECRET,
  });
  assert.deepEqual(steps, ['login-form', 'otp-form']);
  assert.equal(flow.callback.iss, idp.issuer, 'RFC 9207 iss at the callback');
  assert.equal(tokens.token_type, 'Bearer');
  assert.equal(header.alg, 'RS256');
  const { payload } = await verifyIdToken(idToken, 'psa-basic');
  assert.equal(payload.iss, idp.issuer);
  assert.equal(payload.aud, 'psa-basic');
  assert.equal(payload.sub, 'itc-user-alice');
  assert.equal(payload.tenant, 'itc-tenant-100');
  assert.equal(payload.master, true);
  assert.deepEqual(payload.module_urls, { bms: US_BMS });
  assert.equal(payload.active, true);
  assert.equal(payload.email, 'alice@example.test');
  assert.deepEqual(payload.amr, ['pwd', 'otp']);
  assert.equal(payload.acr, 'urn:ssogate:idp:acr:mfa');
  assert.equal(payload.nonce, flow.nonce);
  assert.equal(payload.exp - payload.iat, 3600, 'ID token lives one hour');
});

test('wrong password and wrong code show the form again with an error; the right code then works', async () => {
  await ready;
  const browser = new Browser({ ca: caFile });
  const first = await login({ start: `${rpUrl}/start?client=psa-basic`, browser, login: 'alice', password: 'nope' });
  assert.equal(first.status, 200);
  assert.match(first.body, /id="login-form"/);
  assert.match(first.body, /Wrong username or password/);
  const unknown = await browser.submitForm(first, 'login-form', { login: 'nobody', password: 'x' });
  assert.match(unknown.body, /Wrong username or password/);
  const otpPage = await browser.submitForm(unknown, 'login-form', { login: 'alice', password: 'alice-password' });
  assert.match(otpPage.body, /id="otp-form"/);
  assert.match(otpPage.body, /name="code"/);
  const wrongCode = String((Number(totp(ALICE_SECRET)) + 500000) % 1000000).padStart(6, '0');
  const again = await browser.submitForm(otpPage, 'otp-form', { code: wrongCode });
  assert.match(again.body, /id="otp-form"/);
  assert.match(again.body, /not right/);
  const done = await browser.submitForm(again, 'otp-form', { code: totp(ALICE_SECRET) });
  assert.equal(done.status, 200);
  assert.ok(flowOf(done).callback.code);
});

test('bob has no TOTP enrolled: amr is ["pwd"]; client_secret_post and ES256 work', async () => {
  await ready;
  const { idToken, header, steps } = await codeFlow(new Browser({ ca: caFile }), 'psa-post', {
    login: 'bob',
    password: 'bob-password',
    totpSecret: ALICE_SECRET,
  });
  assert.deepEqual(steps, ['login-form'], 'no TOTP page');
  assert.equal(header.alg, 'ES256');
  const { payload } = await verifyIdToken(idToken, 'psa-post');
  assert.deepEqual(payload.amr, ['pwd']);
  assert.equal(payload.acr, 'urn:ssogate:idp:acr:pwd');
  assert.equal(payload.master, false);
  assert.equal(payload.tenant, 'itc-tenant-200');
  assert.deepEqual(payload.module_urls, { bms: 'https://bmsemea.kaseya.com' });
});

test('an inactive account ends the login with error=access_denied at the callback', async () => {
  await ready;
  const res = await login({
    start: `${rpUrl}/start?client=psa-basic`,
    ca: caFile,
    login: 'carol',
    password: 'carol-password',
    totpSecret: ALICE_SECRET,
  });
  assert.deepEqual(res.steps, ['login-form']);
  const flow = flowOf(res);
  assert.equal(flow.callback.error, 'access_denied');
  assert.equal(flow.callback.code, undefined);
});

test('"Cancel" ends the login with error=access_denied', async () => {
  await ready;
  const browser = new Browser({ ca: caFile });
  const page = await browser.navigate(`${rpUrl}/start?client=psa-basic`);
  const res = await browser.submitForm(page, 'cancel-form');
  assert.equal(flowOf(res).callback.error, 'access_denied');
});

test('the IdP session is reused: a second flow needs no login page', async () => {
  await ready;
  const { steps, idToken } = await codeFlow(alice.browser, 'psa-basic');
  assert.deepEqual(steps, []);
  const { payload } = await verifyIdToken(idToken, 'psa-basic');
  assert.deepEqual(payload.amr, ['pwd', 'otp']);
});

test('test controls: counters count discovery, JWKS and token requests', async () => {
  await ready;
  await controlOk('counters/reset', {});
  await fetchRaw(`${idp.issuer}/.well-known/openid-configuration`);
  await fetchRaw(`${idp.issuer}/.well-known/openid-configuration`);
  await jwks();
  await codeFlow(alice.browser, 'psa-basic');
  const counters = await controlOk('counters');
  assert.equal(counters.discovery, 2);
  assert.equal(counters.jwks, 1);
  assert.equal(counters.token, 1);
  assert.equal(counters.authorization, 1);
});

test('test controls: token endpoint failures (status, OAuth error, hang, reset), then recovery', async () => {
  await ready;
  const res = await login({ start: `${rpUrl}/start?client=psa-basic`, browser: alice.browser });
  const flow = flowOf(res);

  await controlOk('fail', { endpoint: 'token', status: 500, count: 2 });
  assert.equal((await redeem(flow)).status, 500);
  assert.equal((await redeem(flow)).status, 500);

  await controlOk('fail', { endpoint: 'token', error: 'invalid_grant' });
  const oauthError = await redeem(flow);
  assert.equal(oauthError.status, 400);
  assert.equal(oauthError.json().error, 'invalid_grant');

  await controlOk('fail', { endpoint: 'token', hang_ms: 'forever' });
  await assert.rejects(redeem(flow, { timeoutMs: 400 }), /timeout/);

  await controlOk('fail', { endpoint: 'token', reset: true });
  await assert.rejects(redeem(flow), /socket hang up|ECONNRESET/);

  await controlOk('fail', { endpoint: 'token', hang_ms: 300 });
  const started = Date.now();
  const slow = await redeem(flow);
  assert.ok(Date.now() - started >= 290, 'answered after the delay');
  assert.equal(slow.status, 200, 'the injected failures left the code unused');
  assert.ok(slow.json().id_token);
});

test('test controls: JWKS failures and a custom body', async () => {
  await ready;
  await controlOk('fail', { endpoint: 'jwks', status: 503 });
  assert.equal((await fetchRaw(`${idp.issuer}/jwks`)).status, 503);
  await controlOk('fail', { endpoint: 'jwks', body: '{"keys": 5' });
  const garbage = await fetchRaw(`${idp.issuer}/jwks`);
  assert.equal(garbage.status, 200);
  assert.equal(garbage.body, '{"keys": 5');
  await controlOk('fail', { endpoint: 'jwks', hang_ms: 'forever' });
  await assert.rejects(fetchRaw(`${idp.issuer}/jwks`, { timeoutMs: 400 }), /timeout/);
  assert.equal((await jwks()).keys.length, 4, 'served normally again');
  const bad = await control('fail', { endpoint: 'nowhere' });
  assert.equal(bad.status, 400);
});

// Verifies the compact JWS token's signature with key; resolves its payload bytes.
async function verifiesWith(token, key, options = {}) {
  const { payload } = await jose.compactVerify(token, key, options);
  return payload;
}

async function jwksKey(kid) {
  const key = (await jwks()).keys.find((k) => k.kid === kid);
  assert.ok(key, `kid ${kid} in the JWKS`);
  return jose.importJWK(key, key.alg);
}

async function attackerKey(kid) {
  const res = await fetchRaw(`${idp.issuer}/_test/attacker/jwks.json`);
  const key = res.json().keys.find((k) => k.kid === kid);
  assert.ok(key, `kid ${kid} in the attacker JWKS`);
  return jose.importJWK(key, key.alg);
}

function withoutAtHash(payload) {
  const copy = { ...payload };
  delete copy.at_hash;
  return copy;
}

// defect -> check(t, o) of the tampered token t and the original o, each {token, parts, header, payload}.
const DEFECT_CHECKS = {
  async alg_none(t) {
    assert.equal(t.header.alg, 'none');
    assert.equal(t.parts[2], '');
  },
  async hs256_rsa_pub(t) {
    const rsa = (await jwks()).keys.find((k) => k.alg === 'RS256');
    assert.equal(t.header.alg, 'HS256');
    assert.equal(t.header.kid, rsa.kid);
    const pem = crypto.createPublicKey({ key: rsa, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
    const mac = crypto.createHmac('sha256', pem).update(`${t.parts[0]}.${t.parts[1]}`).digest('base64url');
    assert.equal(t.parts[2], mac, 'HMAC keyed with the RSA public key PEM');
  },
  async bad_signature(t, o) {
    assert.deepEqual(t.payload, o.payload);
    assert.equal(t.header.kid, o.header.kid);
    await assert.rejects(verifiesWith(t.token, await jwksKey(t.header.kid)), /signature verification failed/);
  },
  wrong_iss: (t) => assert.equal(t.payload.iss, `${idp.issuer}/another-issuer`),
  wrong_aud: (t) => assert.equal(t.payload.aud, OTHER_CLIENT),
  multi_aud_no_azp(t, o) {
    assert.deepEqual(t.payload.aud, [o.payload.aud, OTHER_CLIENT]);
    assert.equal(t.payload.azp, undefined);
  },
  wrong_azp(t, o) {
    assert.deepEqual(t.payload.aud, [o.payload.aud, OTHER_CLIENT]);
    assert.equal(t.payload.azp, OTHER_CLIENT);
  },
  expired: (t) => assert.ok(t.payload.exp < Date.now() / 1000 - 3000),
  future_iat: (t) => assert.ok(t.payload.iat > Date.now() / 1000 + 3000 && t.payload.exp > t.payload.iat),
  future_nbf: (t) => assert.ok(t.payload.nbf > Date.now() / 1000 + 3000),
  no_nonce(t, o) {
    assert.ok(o.payload.nonce);
    assert.equal(t.payload.nonce, undefined);
  },
  wrong_nonce(t, o) {
    assert.ok(t.payload.nonce);
    assert.notEqual(t.payload.nonce, o.payload.nonce);
  },
  async unknown_kid(t) {
    assert.ok(!(await jwks()).keys.some((k) => k.kid === t.header.kid), 'kid not in the JWKS');
    assert.ok(await verifiesWith(t.token, await attackerKey(t.header.kid)));
  },
  async jku_header(t, o) {
    assert.equal(t.header.jku, `${idp.issuer}/_test/attacker/jwks.json`);
    assert.equal(t.header.kid, o.header.kid, 'kid of the IdP key');
    await assert.rejects(verifiesWith(t.token, await jwksKey(t.header.kid)));
    const attacker = (await fetchRaw(t.header.jku)).json().keys.find((k) => k.alg === t.header.alg);
    assert.ok(await verifiesWith(t.token, await jose.importJWK(attacker, attacker.alg)), 'signed by the jku key');
  },
  async jwk_header(t, o) {
    assert.equal(t.header.kid, o.header.kid);
    assert.equal(t.header.jwk.d, undefined, 'public key only');
    await assert.rejects(verifiesWith(t.token, await jwksKey(t.header.kid)));
    assert.ok(await verifiesWith(t.token, await jose.importJWK(t.header.jwk, t.header.alg)), 'signed by the jwk key');
  },
  async x5u_header(t) {
    assert.equal(t.header.alg, 'ES256');
    assert.equal(t.header.x5u, `${idp.issuer}/_test/attacker/x5u.pem`);
    await assert.rejects(verifiesWith(t.token, await jwksKey(t.header.kid)));
    const pem = (await fetchRaw(t.header.x5u)).body;
    assert.ok(await verifiesWith(t.token, crypto.createPublicKey(pem)), 'signed by the x5u certificate key');
  },
  async crit_header(t) {
    assert.deepEqual(t.header.crit, [CRIT_PARAM]);
    await assert.rejects(verifyIdToken(t.token, 'psa-basic'), /crit|not recognized|Extension/i);
    assert.ok(await verifiesWith(t.token, await jwksKey(t.header.kid), { crit: { [CRIT_PARAM]: true } }));
  },
  oversize: (t) => assert.equal(t.payload.padding.length, OVERSIZE_BYTES),
  async bad_base64(t) {
    assert.match(t.parts[1], /\*/);
    assert.doesNotMatch(t.parts[1], /^[A-Za-z0-9_-]*$/, 'not base64url');
    const key = (await jwks()).keys.find((k) => k.kid === t.header.kid);
    const ok = crypto.verify(
      'sha256',
      Buffer.from(`${t.parts[0]}.${t.parts[1]}`),
      crypto.createPublicKey({ key, format: 'jwk' }),
      Buffer.from(t.parts[2], 'base64url'),
    );
    assert.ok(ok, 'signature valid over the corrupted text');
  },
  async bad_json(t) {
    const bytes = await verifiesWith(t.token, await jwksKey(t.header.kid));
    assert.throws(() => JSON.parse(Buffer.from(bytes).toString('utf8')));
  },
  no_amr(t, o) {
    assert.ok(o.payload.amr);
    assert.equal(t.payload.amr, undefined);
  },
  inactive(t, o) {
    assert.equal(o.payload.active, true);
    assert.equal(t.payload.active, false);
  },
  inactive_as_text(t, o) {
    assert.equal(o.payload.active, true);
    assert.equal(t.payload.active, 'false');
  },
  no_auth_time(t, o) {
    assert.ok(o.payload.auth_time);
    assert.equal(t.payload.auth_time, undefined);
  },
  old_auth_time: (t, o) => assert.equal(t.payload.auth_time, o.payload.auth_time - 3600),
};

// Defects whose token is validly signed by the IdP key its kid names (and only its claims are wrong).
const VALIDLY_SIGNED = new Set([
  'wrong_iss', 'wrong_aud', 'multi_aud_no_azp', 'wrong_azp', 'expired', 'future_iat', 'future_nbf',
  'no_nonce', 'wrong_nonce', 'oversize', 'no_amr', 'inactive', 'inactive_as_text', 'no_auth_time',
  'old_auth_time',
]);

function splitToken(token) {
  const parts = token.split('.');
  let payload;
  try {
    payload = decodeSegment(parts[1]);
  } catch (err) {
    payload = undefined;
  }
  return { token, parts, header: decodeSegment(parts[0]), payload };
}

test('every defect is checked here', () => {
  assert.deepEqual(Object.keys(DEFECT_CHECKS).sort(), Object.keys(DEFECTS).sort());
});

for (const defect of Object.keys(DEFECTS)) {
  test(`tamper ${defect}: the next ID token is changed as specified`, async () => {
    await ready;
    await controlOk('tamper', { defect });
    const { idToken } = await codeFlow(alice.browser, 'psa-basic');
    const history = await controlOk('tampered');
    const record = history[history.length - 1];
    assert.equal(record.defect, defect);
    assert.equal(record.tampered, idToken, 'the token endpoint returned the tampered token');
    const t = splitToken(idToken);
    const o = splitToken(record.original);
    await DEFECT_CHECKS[defect](t, o);
    if (VALIDLY_SIGNED.has(defect)) {
      assert.equal(t.header.kid, o.header.kid);
      assert.ok(await verifiesWith(idToken, await jwksKey(t.header.kid)), 'validly signed');
      const changed = Object.keys({ ...t.payload, ...o.payload }).filter(
        (k) => JSON.stringify(t.payload[k]) !== JSON.stringify(o.payload[k]),
      );
      assert.ok(changed.length >= 1 && changed.length <= 3, `few claims changed: ${changed}`);
    } else if (defect !== 'bad_base64') {
      // (bad_base64 is left out: jose decodes base64url leniently, skipping the "*", as node's Buffer
      // does; a strict decoder, as the gateway's must be, rejects it.)
      await assert.rejects(verifyIdToken(idToken, 'psa-basic'), `a relying party rejects ${defect}`);
    }
    const next = await codeFlow(alice.browser, 'psa-basic');
    assert.ok(await verifyIdToken(next.idToken, 'psa-basic'), 'only the next token is tampered');
  });
}

for (const alg of ALGS) {
  test(`resign_with ${alg}: validly re-signed by the IdP key of that alg`, async () => {
    await ready;
    await controlOk('tamper', { resign_with: alg });
    const { idToken, header, tokens } = await codeFlow(alice.browser, 'psa-basic');
    const signingKey = (await jwks()).keys.find((k) => k.alg === alg);
    assert.equal(header.alg, alg);
    assert.equal(header.kid, signingKey.kid);
    const { payload } = await verifyIdToken(idToken, 'psa-basic');
    const original = splitToken((await controlOk('tampered')).pop().original).payload;
    assert.deepEqual(withoutAtHash(payload), withoutAtHash(original));
    const digest = crypto.createHash(alg === 'EdDSA' ? 'sha512' : 'sha256').update(tokens.access_token).digest();
    assert.equal(payload.at_hash, digest.subarray(0, digest.length / 2).toString('base64url'), 'at_hash for the alg');
  });
}

test('tamper count and combination: two tokens expired and re-signed with EdDSA', async () => {
  await ready;
  await controlOk('tamper', { defect: 'expired', resign_with: 'EdDSA', count: 2 });
  for (let i = 0; i < 2; i++) {
    const { header, payload } = await codeFlow(alice.browser, 'psa-basic');
    assert.equal(header.alg, 'EdDSA');
    assert.ok(payload.exp < Date.now() / 1000);
  }
  const { header } = await codeFlow(alice.browser, 'psa-basic');
  assert.equal(header.alg, 'RS256');
  assert.equal((await control('tamper', { defect: 'nope' })).status, 400);
  assert.equal((await control('tamper', { resign_with: 'HS256' })).status, 400);
});

test('rotate keys keeping the old ones, then dropping them; the IdP session survives', async () => {
  await ready;
  const before = (await jwks()).keys.map((k) => k.kid);
  const kept = await controlOk('rotate', { keep_old: true });
  assert.equal(kept.published.length, 8);
  assert.deepEqual(kept.removed, []);
  for (const kid of before) {
    assert.ok(kept.published.includes(kid), `old ${kid} still published`);
    assert.ok(!Object.values(kept.signing).includes(kid), `old ${kid} no longer signs`);
  }
  assert.equal((await jwks()).keys.length, 8);
  const afterKeep = await codeFlow(alice.browser, 'psa-basic');
  assert.deepEqual(afterKeep.steps, [], 'no new login after the rebuild');
  assert.equal(afterKeep.header.kid, kept.signing.RS256);
  await verifyIdToken(afterKeep.idToken, 'psa-basic');

  const dropped = await controlOk('rotate', { keep_old: false });
  assert.equal(dropped.published.length, 4);
  assert.equal(dropped.removed.length, 8);
  const published = (await jwks()).keys.map((k) => k.kid);
  assert.deepEqual(published.sort(), Object.values(dropped.signing).sort());
  await assert.rejects(verifyIdToken(afterKeep.idToken, 'psa-basic'), 'a token of a dropped key no longer verifies');
  const afterDrop = await codeFlow(alice.browser, 'psa-basic');
  assert.equal(afterDrop.header.kid, dropped.signing.RS256);
  await verifyIdToken(afterDrop.idToken, 'psa-basic');
});

test('RP-initiated logout ends the IdP session and returns to the post-logout URI', async () => {
  await ready;
  const { idToken } = await codeFlow(alice.browser, 'psa-basic');
  const end = new URL(`${idp.issuer}/session/end`);
  end.search = new URLSearchParams({ id_token_hint: idToken, post_logout_redirect_uri: `${rpUrl}/`, state: 'bye' }).toString();
  const page = await alice.browser.navigate(end.href);
  assert.equal(page.status, 200);
  assert.match(page.body, /Sign out/);
  const done = await alice.browser.submitForm(page, 'op.logoutForm', {}, { button: 'Yes, sign me out' });
  assert.equal(done.url, `${rpUrl}/?state=bye`);
  assert.equal(done.body, 'relying party home');
  const again = await alice.browser.navigate(`${rpUrl}/start?client=psa-basic`);
  assert.match(again.body, /id="login-form"/, 'login asked again');
});

test('totp.js prints the current code', () => {
  const before = totp(ALICE_SECRET);
  const out = childProcess.execFileSync(process.execPath, [path.join(__dirname, 'totp.js'), ALICE_SECRET]).toString().trim();
  assert.match(out, /^[0-9]{6}$/);
  assert.ok([before, totp(ALICE_SECRET)].includes(out));
  assert.equal(totp('GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ', 59), '287082', 'RFC 6238 vector');
});

test('without --test-controls /_test/ is refused; --http serves plain http', async () => {
  await ready;
  const plain = await startIdp('idp-plain', ['--config', path.join(dir, 'idp.json'), '--http']);
  assert.match(plain.issuer, /^http:\/\/127\.0\.0\.1:\d+$/);
  const discovery = await fetchRaw(`${plain.issuer}/.well-known/openid-configuration`);
  assert.equal(discovery.json().issuer, plain.issuer);
  for (const name of ['counters', 'tampered', 'attacker/jwks.json']) {
    assert.equal((await fetchRaw(`${plain.issuer}/_test/${name}`)).status, 404, name);
  }
  assert.equal((await fetchRaw(`${plain.issuer}/_test/rotate`, { method: 'POST', body: '{}' })).status, 404);
  assert.deepEqual(await stop(plain.child), { code: 0, signal: null });
});

test('every process is stopped by its PID', async () => {
  await ready;
  for (const child of children) {
    await stop(child);
    assert.ok(child.exit !== null, `${child.name} exited`);
    assert.throws(() => process.kill(child.pid, 0), { code: 'ESRCH' }, `${child.name} (pid ${child.pid}) is gone`);
  }
  rpServer.closeAllConnections();
  await new Promise((resolve) => rpServer.close(resolve));
});
