'use strict';
// Self-test of the stub PSA (psa.js): native login and logout, the pages, whoami, and header authentication
// by the gateway's assertion, accepted and refused for every defect. A tiny HTTP server in this file stands
// in for the gateway's /_sso/jwks.json and the test signs the assertions itself (ES256 and EdDSA keys from
// node's crypto): it is a fake of the gateway for this unit-level test of the stub only. Every process
// started here is stopped by its PID.
//
//   node --test tests/stub/psa.test.js

const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { test, before, after } = require('node:test');
const { REASONS, MAX_LIFETIME_S } = require('./psa/assertion');

const SLOW = Number(process.env.SSOGATE_TEST_SLOWNESS || 1);
const START_TIMEOUT_MS = 15000 * SLOW;
const STOP_TIMEOUT_MS = 10000 * SLOW;
const REQUEST_TIMEOUT_MS = 15000 * SLOW;
const PSA = path.join(__dirname, 'psa.js');
const DEMO_DATA = path.join(__dirname, 'psa', 'demo-data.json');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ssogate-psa-selftest-'));
const children = [];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Starts psa.js with args; resolves {proc, pid, port, exit} once it printed {"port":N}, or rejects with its
// stderr when it exits first.
async function startPsa(args) {
  const proc = childProcess.spawn(process.execPath, [PSA, '--exit-with-stdin', ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const child = { proc, pid: proc.pid, lines: [], stderr: '', exit: null };
  // 'close' rather than 'exit': by then stderr has been read to its end.
  child.exited = new Promise((resolve) => {
    proc.on('close', (code, signal) => {
      child.exit = { code, signal };
      resolve(child.exit);
    });
  });
  readline.createInterface({ input: proc.stdout }).on('line', (line) => child.lines.push(line));
  proc.stderr.on('data', (chunk) => {
    child.stderr += chunk;
  });
  proc.stdin.on('error', () => {});
  children.push(child);
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (child.lines.length === 0) {
    if (child.exit !== null || Date.now() > deadline) {
      const error = new Error(`psa did not start (${JSON.stringify(child.exit)}): ${child.stderr}`);
      error.child = child;
      throw error;
    }
    await sleep(20);
  }
  child.port = JSON.parse(child.lines[0]).port;
  child.url = `http://127.0.0.1:${child.port}`;
  return child;
}

// Stops a child by its PID: SIGTERM, then SIGKILL if it is still there after STOP_TIMEOUT_MS.
async function stop(child) {
  if (child.exit === null) {
    process.kill(child.pid, 'SIGTERM');
    const timer = setTimeout(() => child.exit === null && process.kill(child.pid, 'SIGKILL'), STOP_TIMEOUT_MS);
    await child.exited;
    clearTimeout(timer);
  }
  child.proc.stdin.destroy();
}

// One HTTP request to port on loopback, no redirect followed. Resolves {status, headers, body, json}.
function request(port, { method = 'GET', path: target = '/', headers = {}, body = null } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method, path: target, headers, timeout: REQUEST_TIMEOUT_MS },
      (res) => {
        const chunks = [];
        res.on('data', (chunk) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json;
          try {
            json = JSON.parse(text);
          } catch (err) {
            json = undefined;
          }
          resolve({ status: res.statusCode, headers: res.headers, body: text, json });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${target}: timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

// --- the fake gateway: its keys, its JWKS endpoint, and assertions signed like the gateway signs them ---

const keys = {
  es: { kid: 'es-1', alg: 'ES256', pair: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }) },
  ed: { kid: 'ed-1', alg: 'EdDSA', pair: crypto.generateKeyPairSync('ed25519') },
  rotated: { kid: 'es-2', alg: 'ES256', pair: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }) },
  other: { kid: 'es-1', alg: 'ES256', pair: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }) },
};
const published = new Set(['es', 'ed']);
let jwksHits = 0;

function publicJwk(name) {
  const { kid, alg, pair } = keys[name];
  return { ...pair.publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

const gateway = http.createServer((req, res) => {
  if (req.url !== '/_sso/jwks.json') {
    res.writeHead(404).end();
    return;
  }
  jwksHits++;
  const body = JSON.stringify({ keys: [...published].map(publicJwk) });
  res.writeHead(200, { 'content-type': 'application/json' }).end(body);
});
let issuer;
let jwksUrl;

const b64 = (value) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const nowS = () => Math.floor(Date.now() / 1000);

// A compact JWS over claims. options: key (a name in keys), alg and kid (override the key's), header (extra
// header members), secret (HS256 key).
function sign(claims, options = {}) {
  const key = keys[options.key || 'es'];
  const alg = options.alg || key.alg;
  const header = { alg, kid: options.kid || key.kid, typ: 'JWT', ...options.header };
  const input = `${b64(header)}.${b64(claims)}`;
  let signature;
  if (alg === 'ES256') {
    signature = crypto.sign('sha256', Buffer.from(input), { key: key.pair.privateKey, dsaEncoding: 'ieee-p1363' });
  } else if (alg === 'EdDSA') {
    signature = crypto.sign(null, Buffer.from(input), key.pair.privateKey);
  } else if (alg === 'HS256') {
    signature = crypto.createHmac('sha256', options.secret).update(input).digest();
  } else {
    signature = Buffer.alloc(0);
  }
  return `${input}.${signature.toString('base64url')}`;
}

// The claims the gateway puts in an assertion for a PSA user, with overrides.
function claimsFor(audience, tenant, user, overrides = {}) {
  const iat = nowS();
  return {
    iss: issuer,
    aud: audience,
    iat,
    exp: iat + 60,
    jti: crypto.randomBytes(8).toString('hex'),
    sub: user,
    psa_tenant: tenant,
    psa_user: user,
    idp_tenant: `idp-${tenant}`,
    idp_sub: `idp-${user}`,
    ...overrides,
  };
}

// The headers the gateway adds for a PSA user (X-SSO-Tenant, X-SSO-User, X-SSO-Assertion).
function ssoHeaders(tenant, user, token) {
  return { 'x-sso-tenant': tenant, 'x-sso-user': user, 'x-sso-subject': `idp-${user}`, 'x-sso-assertion': token };
}

let psa;

before(async () => {
  await new Promise((resolve) => gateway.listen(0, '127.0.0.1', resolve));
  issuer = `http://127.0.0.1:${gateway.address().port}`;
  jwksUrl = `${issuer}/_sso/jwks.json`;
  // As in the integration tests: the PSA starts first, and learns the gateway's URLs once it listens.
  psa = await startPsa(['--data', DEMO_DATA, '--audience', 'auto']);
  const res = await request(psa.port, {
    method: 'POST',
    path: '/__psa/config',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ issuer, gateway_jwks: jwksUrl }),
  });
  assert.equal(res.status, 200, res.body);
  assert.equal(res.json.effective_audience, psa.url);
});

after(async () => {
  for (const child of children) {
    await stop(child);
  }
  await new Promise((resolve) => gateway.close(resolve));
  fs.rmSync(dir, { recursive: true, force: true });
});

// Logs in natively; resolves the Cookie header value of the new session.
async function login(tenant, loginName, password = 'demo', next = undefined) {
  const form = new URLSearchParams({ tenant, login: loginName, password });
  if (next !== undefined) {
    form.set('next', next);
  }
  const res = await request(psa.port, {
    method: 'POST',
    path: '/login',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: form.toString(),
  });
  assert.equal(res.status, 303, res.body);
  const cookie = res.headers['set-cookie'][0];
  return { cookie: cookie.split(';')[0], setCookie: cookie, location: res.headers.location };
}

function assertion(tenant, user, overrides = {}, options = {}) {
  return ssoHeaders(tenant, user, sign(claimsFor(psa.url, tenant, user, overrides), options));
}

function whoami(headers) {
  return request(psa.port, { path: '/api/whoami', headers });
}

async function reset() {
  assert.equal((await request(psa.port, { method: 'POST', path: '/__psa/reset' })).status, 200);
}

async function decisions() {
  return (await request(psa.port, { path: '/__psa/log' })).json;
}

test('the login page is a form with the tenants, login, password and a Sign in button', async () => {
  const res = await request(psa.port, { path: '/login?next=%2Ftickets' });
  assert.equal(res.status, 200);
  assert.match(res.headers['content-type'], /^text\/html/);
  assert.match(res.body, /<form id="psa-login-form" method="post" action="\/login">/);
  assert.match(res.body, /<select id="tenant" name="tenant"><option value="acme">Acme IT Services<\/option>/);
  assert.match(res.body, /<option value="globex">Globex Managed IT<\/option>/);
  assert.match(res.body, /name="login"/);
  assert.match(res.body, /name="password" type="password"/);
  assert.match(res.body, /<button class="primary" type="submit">Sign in<\/button>/);
  assert.match(res.body, /name="next" value="\/tickets"/);
  assert.doesNotMatch(res.body, /<(link|script|img)\b/, 'no external assets');
});

test('native login, the home page, whoami, and logout', async () => {
  const session = await login('acme', 'admin@acme');
  assert.equal(session.location, '/');
  assert.match(session.setCookie, /^psa_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax$/);

  const home = await request(psa.port, { headers: { cookie: session.cookie } });
  assert.equal(home.status, 200);
  assert.match(home.body, /<h1 id="welcome">Welcome, Alice Admin<\/h1>/);
  assert.match(home.body, /<strong id="tenant-name">Acme IT Services<\/strong>/);
  assert.match(home.body, /<span class="badge" id="auth-method">password<\/span>/);
  assert.match(home.body, /<a id="my-settings" href="\/_sso\/settings">My Settings<\/a>/);
  assert.match(home.body, /<form id="sign-out-form" method="post" action="\/logout"><button type="submit">Sign out/);
  assert.match(home.body, /href="\/admin\/company"/);

  const me = await whoami({ cookie: session.cookie });
  assert.equal(me.status, 200);
  assert.deepEqual(me.json, {
    tenant: 'acme',
    user: 'u-admin',
    admin: true,
    kind: 'staff',
    active: true,
    name: 'Alice Admin',
    email: 'alice@acme.example',
    method: 'session',
  });

  const out = await request(psa.port, { method: 'POST', path: '/logout', headers: { cookie: session.cookie } });
  assert.equal(out.status, 303);
  assert.equal(out.headers.location, '/login');
  assert.match(out.headers['set-cookie'][0], /^psa_session=; Path=\/; HttpOnly; SameSite=Lax; Max-Age=0$/);
  const gone = await whoami({ cookie: session.cookie });
  assert.equal(gone.status, 401);
  assert.deepEqual(gone.json, { error: 'unauthenticated' });
  const page = await request(psa.port, { headers: { cookie: session.cookie } });
  assert.equal(page.status, 302);
  assert.equal(page.headers.location, '/login?next=%2F');

  const other = await login('globex', 'HANK@globex');
  const byGet = await request(psa.port, { path: '/logout', headers: { cookie: other.cookie } });
  assert.equal(byGet.status, 303);
  assert.equal((await whoami({ cookie: other.cookie })).status, 401);
});

test('login goes to the page it was given, and only to a path of this site', async () => {
  assert.equal((await login('acme', 'bob@acme', 'demo', '/tickets?id=7')).location, '/tickets?id=7');
  for (const next of ['//evil.example/', 'https://evil.example/', '/\\evil.example', 'tickets', '/a\r\nb']) {
    assert.equal((await login('acme', 'bob@acme', 'demo', next)).location, '/', next);
  }
  const res = await request(psa.port, { path: '/tickets?id=7' });
  assert.equal(res.status, 302);
  assert.equal(res.headers.location, '/login?next=%2Ftickets%3Fid%3D7');
});

test('a wrong password, an unknown login or another tenant gives the form again with an error', async () => {
  for (const [tenant, loginName, password] of [
    ['acme', 'admin@acme', 'wrong'],
    ['acme', 'nobody@acme', 'demo'],
    ['globex', 'admin@acme', 'demo'],
    ['no-such-tenant', 'admin@acme', 'demo'],
    ['acme', 'admin@acme', ''],
  ]) {
    const res = await request(psa.port, {
      method: 'POST',
      path: '/login',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ tenant, login: loginName, password }).toString(),
    });
    assert.equal(res.status, 401, `${tenant}/${loginName}`);
    assert.equal(res.headers['set-cookie'], undefined);
    assert.match(res.body, /id="psa-login-form"/);
    assert.match(res.body, /id="login-error" role="alert">Incorrect company, username or password.<\/p>/);
  }
});

test('an inactive user cannot log in with the right password', async () => {
  const res = await request(psa.port, {
    method: 'POST',
    path: '/login',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'tenant=acme&login=dave%40acme&password=demo',
  });
  assert.equal(res.status, 403);
  assert.equal(res.headers['set-cookie'], undefined);
  assert.match(res.body, /id="login-error" role="alert">This account is inactive/);
});

test('a client-portal user gets the client portal; My Company is for admins only', async () => {
  const client = await login('acme', 'carol@client.acme');
  const home = await request(psa.port, { headers: { cookie: client.cookie } });
  assert.equal(home.status, 200);
  assert.match(home.body, /<h1 id="page-title">Client portal<\/h1>/);
  assert.match(home.body, /Welcome, Carol Client/);
  assert.doesNotMatch(home.body, /href="\/admin\/company"/);
  const me = await whoami({ cookie: client.cookie });
  assert.equal(me.json.kind, 'client');

  const staff = await login('acme', 'bob@acme');
  for (const cookie of [client.cookie, staff.cookie]) {
    const res = await request(psa.port, { path: '/admin/company', headers: { cookie } });
    assert.equal(res.status, 403);
    assert.match(res.body, /<h1 id="page-title">Access denied<\/h1>/);
  }
  const admin = await login('acme', 'admin@acme');
  const company = await request(psa.port, { path: '/admin/company', headers: { cookie: admin.cookie } });
  assert.equal(company.status, 200);
  assert.match(company.body, /<h1 id="page-title">My Company<\/h1>/);
  const tickets = await request(psa.port, { path: '/tickets', headers: { cookie: staff.cookie } });
  assert.equal(tickets.status, 200);
  assert.match(tickets.body, /<h1 id="page-title">Tickets<\/h1>/);
});

test('without a session, pages redirect to the login page and APIs answer 401', async () => {
  for (const target of ['/', '/tickets', '/admin/company', '/no-such-page']) {
    const res = await request(psa.port, { path: target });
    assert.equal(res.status, 302, target);
    assert.equal(res.headers.location, `/login?next=${encodeURIComponent(target)}`);
  }
  const res = await whoami({ cookie: 'psa_session=forged-session-id' });
  assert.equal(res.status, 401);
  assert.deepEqual(res.json, { error: 'unauthenticated' });
});

test('a valid ES256 or EdDSA assertion makes the request that user, over a session cookie', async () => {
  for (const key of ['es', 'ed']) {
    const res = await whoami(assertion('acme', 'u-admin', {}, { key }));
    assert.equal(res.status, 200, res.body);
    assert.equal(res.json.user, 'u-admin');
    assert.equal(res.json.method, 'assertion');
  }
  const home = await request(psa.port, { headers: assertion('globex', 'g-staff') });
  assert.equal(home.status, 200);
  assert.match(home.body, /Welcome, Hank Engineer/);
  assert.match(home.body, /<span class="badge" id="auth-method">IT Complete<\/span>/);

  const bob = await login('acme', 'bob@acme');
  const both = await request(psa.port, {
    path: '/api/whoami',
    headers: { cookie: bob.cookie, ...assertion('acme', 'u-admin') },
  });
  assert.equal(both.json.user, 'u-admin');
  assert.equal(both.json.method, 'assertion');

  const arrayAud = assertion('acme', 'u-admin', { aud: ['http://other.example', `${psa.url}/`] });
  assert.equal((await whoami(arrayAud)).status, 200);
});

test('a forged or defective assertion is refused with 401 invalid_assertion and its reason', async () => {
  const aud = () => psa.url;
  const now = nowS();
  const valid = sign(claimsFor(aud(), 'acme', 'u-admin'));
  const [h, p, s] = valid.split('.');
  const tampered = `${h}.${b64(claimsFor(aud(), 'acme', 'u-staff'))}.${s}`;
  const flipped = Buffer.from(s, 'base64url');
  flipped[10] ^= 1;
  const bitFlipped = `${h}.${p}.${flipped.toString('base64url')}`;
  const unsigned = `${b64({ alg: 'none', kid: 'es-1' })}.${p}.${s}`;
  const hmacKey = JSON.stringify(publicJwk('es'));
  const renamed = (name, value) => ({ ...assertion('acme', 'u-staff'), [name]: value });
  const cases = [
    ['bad signature', assertion('acme', 'u-admin', {}, { key: 'other' }), 'bad_signature'],
    ['a bit of the signature', ssoHeaders('acme', 'u-admin', bitFlipped), 'bad_signature'],
    ['payload changed', ssoHeaders('acme', 'u-staff', tampered), 'bad_signature'],
    ['signature cut', ssoHeaders('acme', 'u-admin', `${h}.${p}.${s.slice(0, 40)}`), 'bad_signature'],
    ['alg none', assertion('acme', 'u-admin', {}, { alg: 'none' }), 'alg_not_allowed'],
    ['alg NONE', assertion('acme', 'u-admin', {}, { alg: 'NONE' }), 'alg_not_allowed'],
    ['alg none with a valid signature', ssoHeaders('acme', 'u-admin', unsigned), 'alg_not_allowed'],
    ['HS256, JWK as key', assertion('acme', 'u-admin', {}, { alg: 'HS256', secret: hmacKey }), 'alg_not_allowed'],
    ['RS256', assertion('acme', 'u-admin', {}, { alg: 'RS256' }), 'alg_not_allowed'],
    ['ES256 under an EdDSA kid', assertion('acme', 'u-admin', {}, { kid: 'ed-1' }), 'key_mismatch'],
    ['crit header', assertion('acme', 'u-admin', {}, { header: { crit: ['exp'] } }), 'crit_unsupported'],
    ['no kid', assertion('acme', 'u-admin', {}, { kid: '', header: { kid: undefined } }), 'kid_missing'],
    ['wrong aud', assertion('acme', 'u-admin', { aud: 'http://127.0.0.1:1' }), 'aud_mismatch'],
    ['no aud', assertion('acme', 'u-admin', { aud: undefined }), 'aud_mismatch'],
    ['wrong iss', assertion('acme', 'u-admin', { iss: 'http://evil.example' }), 'iss_mismatch'],
    ['expired', assertion('acme', 'u-admin', { iat: now - 120, exp: now - 60 }), 'expired'],
    ['exp a string', assertion('acme', 'u-admin', { exp: String(now + 60) }), 'exp_invalid'],
    ['future iat', assertion('acme', 'u-admin', { iat: now + 120, exp: now + 180 }), 'iat_in_future'],
    ['future nbf', assertion('acme', 'u-admin', { nbf: now + 120 }), 'not_yet_valid'],
    ['lifetime too long', assertion('acme', 'u-admin', { exp: now + MAX_LIFETIME_S + 1 }), 'lifetime_too_long'],
    ['X-SSO-User differs from psa_user', renamed('x-sso-user', 'u-admin'), 'header_mismatch'],
    ['X-SSO-Tenant differs from psa_tenant', renamed('x-sso-tenant', 'globex'), 'header_mismatch'],
    ['no X-SSO-User', { 'x-sso-assertion': valid, 'x-sso-tenant': 'acme' }, 'header_mismatch'],
    ['no psa_user claim', assertion('acme', 'u-admin', { psa_user: undefined }), 'claims_missing'],
    ['unknown user', assertion('acme', 'u-ghost'), 'unknown_user'],
    ['user of another tenant', assertion('globex', 'u-admin'), 'unknown_user'],
    ['inactive user', assertion('acme', 'u-inactive'), 'user_inactive'],
    ['X-SSO-User without assertion', { 'x-sso-user': 'u-admin', 'x-sso-tenant': 'acme' }, 'assertion_missing'],
    ['X-SSO-Email alone', { 'x-sso-email': 'alice@acme.example' }, 'assertion_missing'],
    ['not a JWS', ssoHeaders('acme', 'u-admin', 'not-a-token'), 'malformed'],
    ['four parts', ssoHeaders('acme', 'u-admin', `${valid}.x`), 'malformed'],
    ['header not JSON', ssoHeaders('acme', 'u-admin', `${b64('{alg')}.${p}.${s}`), 'malformed'],
    ['header an array', ssoHeaders('acme', 'u-admin', `${b64('[1]')}.${p}.${s}`), 'malformed'],
    ['oversized', ssoHeaders('acme', 'u-admin', `${h}.${'A'.repeat(9000)}.${s}`), 'too_large'],
  ];
  const bob = await login('acme', 'bob@acme');
  for (const [what, headers, reason] of cases) {
    assert.ok(REASONS.includes(reason), reason);
    for (const target of ['/api/whoami', '/']) {
      // A valid PSA session alongside changes nothing: a bad identity header is refused, never ignored.
      const res = await request(psa.port, { path: target, headers: { cookie: bob.cookie, ...headers } });
      assert.equal(res.status, 401, `${what} on ${target}: ${res.body}`);
      assert.deepEqual(res.json, { error: 'invalid_assertion', reason }, what);
    }
  }
});

test('an unknown kid refetches the JWKS once: a rotated key is accepted, an unknown one refused', async () => {
  await whoami(assertion('acme', 'u-admin'));
  let hits = jwksHits;
  published.add('rotated');
  const rotated = await whoami(assertion('acme', 'u-admin', {}, { key: 'rotated' }));
  assert.equal(rotated.status, 200, rotated.body);
  assert.equal(jwksHits, hits + 1);

  hits = jwksHits;
  const unknown = await whoami(assertion('acme', 'u-admin', {}, { kid: 'es-9' }));
  assert.deepEqual(unknown.json, { error: 'invalid_assertion', reason: 'kid_unknown' });
  assert.equal(jwksHits, hits + 1);

  hits = jwksHits;
  assert.equal((await whoami(assertion('acme', 'u-admin'))).status, 200);
  assert.equal(jwksHits, hits, 'a known kid is served from the cache');
  published.delete('rotated');
  const config = (await request(psa.port, { path: '/__psa/config' })).json;
  assert.equal(config.jwks_fetches, jwksHits);
});

test('the gateway configuration: POST /__psa/config checks values; an unreachable JWKS refuses', async () => {
  const post = (values) =>
    request(psa.port, {
      method: 'POST',
      path: '/__psa/config',
      headers: { 'content-type': 'application/json' },
      body: typeof values === 'string' ? values : JSON.stringify(values),
    });
  assert.equal((await post({ jwks: jwksUrl })).status, 400);
  assert.equal((await post({ issuer: 'not a url' })).status, 400);
  assert.equal((await post({ gateway_jwks: 'file:///etc/passwd' })).status, 400);
  assert.equal((await post('[1]')).status, 400);
  assert.equal((await post('{')).status, 400);
  const unchanged = (await request(psa.port, { path: '/__psa/config' })).json;
  assert.equal(unchanged.issuer, issuer);
  assert.equal(unchanged.gateway_jwks, jwksUrl);

  // A port nothing listens on: bind one, note it, close it.
  const closed = http.createServer();
  await new Promise((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const deadUrl = `http://127.0.0.1:${closed.address().port}/_sso/jwks.json`;
  await new Promise((resolve) => closed.close(resolve));
  assert.equal((await post({ gateway_jwks: deadUrl })).status, 200);
  const res = await whoami(assertion('acme', 'u-admin'));
  assert.deepEqual(res.json, { error: 'invalid_assertion', reason: 'jwks_unavailable' });
  assert.equal((await post({ gateway_jwks: jwksUrl })).status, 200);
  assert.equal((await whoami(assertion('acme', 'u-admin'))).status, 200);
});

test('the command line takes the gateway URLs, "auto" audience included; a bad dataset stops the start', async () => {
  const other = await startPsa([
    '--data',
    DEMO_DATA,
    '--audience', 'auto', '--issuer', issuer, '--gateway-jwks', jwksUrl]);
  const headers = ssoHeaders('acme', 'u-staff', sign(claimsFor(other.url, 'acme', 'u-staff')));
  const res = await request(other.port, { path: '/api/whoami', headers });
  assert.equal(res.status, 200, res.body);
  assert.equal(res.json.user, 'u-staff');
  await stop(other);

  const bad = path.join(dir, 'bad-data.json');
  const badData = { tenants: [{ id: 'acme', name: 'Acme' }], users: [{ tenant: 'acme', id: 'x' }] };
  fs.writeFileSync(bad, JSON.stringify(badData));
  await assert.rejects(startPsa(['--data', bad]), (err) => {
    assert.equal(err.child.exit.code, 2);
    assert.match(err.child.stderr, /bad-data\.json: users\[0\]\.login: must be a non-empty string/);
    return true;
  });
  await assert.rejects(startPsa(['--data', bad, '--issuer', 'nope']), /psa did not start/);
});

test('a user changed through /__psa/users: an inactive user loses session and assertion access', async () => {
  const patch = (body) =>
    request(psa.port, {
      method: 'POST',
      path: '/__psa/users',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  const bob = await login('acme', 'bob@acme');
  const changed = await patch({ tenant: 'acme', id: 'u-staff', active: false });
  assert.equal(changed.status, 200);
  assert.equal(changed.json.active, false);
  assert.equal(changed.json.password, undefined);
  await reset();
  assert.equal((await whoami({ cookie: bob.cookie })).status, 401);
  const byAssertion = await whoami(assertion('acme', 'u-staff'));
  assert.deepEqual(byAssertion.json, { error: 'invalid_assertion', reason: 'user_inactive' });
  const log = await decisions();
  assert.deepEqual(
    log.map((d) => [d.method, d.reason]),
    [
      ['none', 'user_inactive'],
      ['assertion', 'user_inactive'],
    ],
  );
  assert.equal((await patch({ tenant: 'acme', id: 'u-staff', active: true })).status, 200);
  assert.equal((await patch({ tenant: 'acme', id: 'u-staff', password: 'x' })).status, 400);
  assert.equal((await patch({ tenant: 'acme', id: 'u-staff', kind: 'robot' })).status, 400);
  assert.equal((await patch({ tenant: 'acme', id: 'u-ghost', active: true })).status, 404);
  assert.equal((await patch({ tenant: 'acme', id: 'u-staff', admin: true })).json.admin, true);
  const again = await login('acme', 'bob@acme');
  assert.equal((await request(psa.port, { path: '/admin/company', headers: { cookie: again.cookie } })).status, 200);
  assert.equal((await patch({ tenant: 'acme', id: 'u-staff', admin: false })).status, 200);
});

test('the decision log keeps the last 200 authentication decisions; reset clears it', async () => {
  await reset();
  const alice = await login('acme', 'admin@acme');
  await request(psa.port, { path: '/tickets', headers: { cookie: alice.cookie } });
  await whoami(assertion('globex', 'g-admin'));
  await whoami({ ...assertion('acme', 'u-staff'), 'x-sso-user': 'u-admin' });
  await request(psa.port, { path: '/tickets' });
  const log = await decisions();
  assert.deepEqual(
    log.map(({ method, path: p, ok, tenant, user, reason }) => ({ method, path: p, ok, tenant, user, reason })),
    [
      { method: 'session', path: '/tickets', ok: true, tenant: 'acme', user: 'u-admin', reason: 'ok' },
      { method: 'assertion', path: '/api/whoami', ok: true, tenant: 'globex', user: 'g-admin', reason: 'ok' },
      { method: 'assertion', path: '/api/whoami', ok: false, tenant: null, user: null, reason: 'header_mismatch' },
      { method: 'none', path: '/tickets', ok: false, tenant: null, user: null, reason: 'no_credentials' },
    ],
  );
  assert.deepEqual(log[2].claimed, { tenant: 'acme', user: 'u-admin' });
  for (const entry of log) {
    assert.ok(!Number.isNaN(Date.parse(entry.time)));
  }

  for (let i = 0; i < 210; i++) {
    await request(psa.port, { path: `/tickets?n=${i}` });
  }
  const full = await decisions();
  assert.equal(full.length, 200);
  assert.equal(full[199].path, '/tickets');
  await reset();
  assert.deepEqual(await decisions(), []);
});

test('bad requests are answered, never fatal', async () => {
  const big = await request(psa.port, {
    method: 'POST',
    path: '/login',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: `tenant=acme&login=${'a'.repeat(20000)}`,
  });
  assert.equal(big.status, 413);
  assert.equal((await request(psa.port, { method: 'DELETE', path: '/tickets' })).status, 405);
  assert.equal((await request(psa.port, { method: 'GET', path: '/__psa/reset' })).status, 405);
  const raw = await new Promise((resolve, reject) => {
    const socket = require('node:net').connect(psa.port, '127.0.0.1', () =>
      socket.write('GET http://[ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),
    );
    let text = '';
    socket.on('data', (chunk) => {
      text += chunk;
    });
    socket.on('end', () => resolve(text));
    socket.on('error', reject);
  });
  assert.match(raw, /^HTTP\/1\.1 400 /);
  const junk = { cookie: 'psa_session=' + 'x'.repeat(4000) + '; psa_session=;;=', 'x-sso-assertion': '....' };
  assert.equal((await whoami(junk)).json.reason, 'malformed');
  assert.equal(psa.exit, null, 'the PSA is still running');
});
