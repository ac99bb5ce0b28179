'use strict';
// Test controls of the test IdP (only with --test-controls): a small JSON API under /_test/ on the IdP's
// own server, and a Koa middleware on the provider that counts requests per endpoint, injects failures
// and tampers the ID tokens the token endpoint issues. See README.md for the API.

const childProcess = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const util = require('node:util');
const { ALGS, generateJwk, publicJwk, privateKeyObject } = require('./keys');
const { DEFECTS, tamperIdToken } = require('./tamper');
const jose = require('jose');

const MAX_JSON_BYTES = 1024 * 1024; // room for an injected answer over the gateway's 256 KiB cap
const MAX_HANG_MS = 10 * 60 * 1000;
const HISTORY_LIMIT = 50;
const OPENSSL_TIMEOUT_MS = 20000;

const execFileAsync = util.promisify(childProcess.execFile);

// Provider paths (the routes idp.js configures) -> counter and failure endpoint names.
const ENDPOINTS = {
  '/.well-known/openid-configuration': 'discovery',
  '/jwks': 'jwks',
  '/token': 'token',
  '/auth': 'authorization',
  '/me': 'userinfo',
  '/session/end': 'end_session',
};
const COUNTER_NAMES = [...Object.values(ENDPOINTS), 'attacker'];

function zeroCounters() {
  return Object.fromEntries(COUNTER_NAMES.map((name) => [name, 0]));
}

function sendJson(res, status, value) {
  const body = Buffer.from(JSON.stringify(value));
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': body.length,
    'cache-control': 'no-store',
  });
  res.end(body);
}

// Reads a JSON object body of at most MAX_JSON_BYTES (an empty body is {}); resolves it, or rejects
// with a message for the client.
function readJson(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let length = 0;
    req.on('data', (chunk) => {
      length += chunk.length;
      if (length <= MAX_JSON_BYTES) {
        chunks.push(chunk);
      }
    });
    req.on('end', () => {
      if (length > MAX_JSON_BYTES) {
        reject(new Error(`body over ${MAX_JSON_BYTES} bytes`));
        return;
      }
      const text = Buffer.concat(chunks).toString('utf8').trim();
      try {
        const value = text === '' ? {} : JSON.parse(text);
        if (!value || typeof value !== 'object' || Array.isArray(value)) {
          throw new Error('not an object');
        }
        resolve(value);
      } catch (err) {
        reject(new Error(`body is not a JSON object: ${err.message}`));
      }
    });
    req.on('error', reject);
  });
}

// Checks a count: a positive integer, or -1 for "until /_test/reset"; default 1.
function parseCount(value) {
  if (value === undefined) {
    return 1;
  }
  if (value === -1 || (Number.isInteger(value) && value > 0)) {
    return value === -1 ? Infinity : value;
  }
  throw new Error('count must be a positive integer or -1 (until reset)');
}

// Validates a POST /_test/fail body into a failure spec; throws with a message for the client.
function parseFailure(body) {
  const endpoint = body.endpoint;
  if (!Object.values(ENDPOINTS).includes(endpoint)) {
    throw new Error(`endpoint must be one of ${Object.values(ENDPOINTS).join(', ')}`);
  }
  const spec = { endpoint, remaining: parseCount(body.count) };
  if (body.hang_ms !== undefined) {
    const ok = body.hang_ms === 'forever' || (Number.isInteger(body.hang_ms) && body.hang_ms >= 0 && body.hang_ms <= MAX_HANG_MS);
    if (!ok) {
      throw new Error(`hang_ms must be "forever" or an integer from 0 to ${MAX_HANG_MS}`);
    }
    spec.hangMs = body.hang_ms;
  }
  if (body.reset !== undefined) {
    spec.reset = Boolean(body.reset);
  }
  if (body.status !== undefined) {
    if (!Number.isInteger(body.status) || body.status < 200 || body.status > 599) {
      throw new Error('status must be an integer from 200 to 599');
    }
    spec.status = body.status;
  }
  if (body.error !== undefined) {
    if (typeof body.error !== 'string' || body.error === '') {
      throw new Error('error must be a non-empty string (an OAuth error code)');
    }
    spec.error = body.error;
  }
  if (body.body !== undefined) {
    if (typeof body.body !== 'string') {
      throw new Error('body must be a string');
    }
    spec.body = body.body;
    spec.contentType = typeof body.content_type === 'string' ? body.content_type : 'application/json';
  }
  if (spec.error !== undefined && spec.body !== undefined) {
    throw new Error('give error or body, not both');
  }
  return spec;
}

// Resolves true once res's connection closed, false after ms (or never, for Infinity).
function closedWithin(res, ms) {
  return new Promise((resolve) => {
    if (res.destroyed || res.socket === null || res.socket.destroyed) {
      resolve(true);
      return;
    }
    const timer = ms === Infinity ? null : setTimeout(() => {
      res.off('close', onClose);
      resolve(false);
    }, ms);
    function onClose() {
      clearTimeout(timer);
      resolve(true);
    }
    res.once('close', onClose);
  });
}

// Creates the controls. idp: {issuer, currentKeySet() -> private JWKs, publishedKids() -> [kid],
// rotateKeys({keepOld}) -> Promise} (borrowed). enabled: whether /_test/ answers at all.
// Returns {middleware (for provider.use), handle(req, res, url) for paths under /_test/}.
function createControls({ idp, enabled }) {
  let counters = zeroCounters();
  // endpoint -> failure spec with remaining count
  const failures = new Map();
  // pending tampers, oldest first: {defect, resignWith, remaining}
  const tampers = [];
  const history = [];
  // alg -> promise of a private JWK not in the JWKS, made on first use
  const attackerKeys = new Map();
  let x5uPromise = null;

  function attackerKeyFor(alg) {
    if (!attackerKeys.has(alg)) {
      attackerKeys.set(alg, generateJwk(alg, 'attacker-'));
    }
    return attackerKeys.get(alg);
  }

  // Resolves the PEM of a self-signed certificate (made with openssl) for the private JWK.
  async function selfSignedCertificate(jwk) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ssogate-idp-x5u-'));
    try {
      const keyFile = path.join(dir, 'key.pem');
      fs.writeFileSync(keyFile, privateKeyObject(jwk).export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
      const { stdout } = await execFileAsync(
        'openssl',
        ['req', '-x509', '-new', '-key', keyFile, '-subj', '/CN=attacker', '-days', '2', '-sha256'],
        { timeout: OPENSSL_TIMEOUT_MS },
      );
      return stdout;
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  // The attacker's ES256 key and a self-signed certificate for it, made once: resolves {jwk, pem}.
  function attackerCertificate() {
    if (x5uPromise === null) {
      x5uPromise = attackerKeyFor('ES256').then(async (jwk) => ({ jwk, pem: await selfSignedCertificate(jwk) }));
    }
    return x5uPromise;
  }

  function takeFailure(endpoint) {
    const spec = failures.get(endpoint);
    if (spec === undefined) {
      return undefined;
    }
    spec.remaining -= 1;
    if (spec.remaining <= 0) {
      failures.delete(endpoint);
    }
    return spec;
  }

  // Applies a failure to the request; returns true when it answered (or dropped) it, false when the
  // real handler is to answer (after a delay).
  async function inject(ctx, spec) {
    if (spec.hangMs !== undefined) {
      const closed = await closedWithin(ctx.res, spec.hangMs === 'forever' ? Infinity : spec.hangMs);
      if (closed) {
        ctx.respond = false;
        return true;
      }
    }
    if (spec.reset) {
      ctx.req.socket.destroy();
      ctx.respond = false;
      return true;
    }
    if (spec.error !== undefined) {
      ctx.status = spec.status || 400;
      ctx.body = { error: spec.error, error_description: 'injected by the test controls' };
      return true;
    }
    if (spec.body !== undefined) {
      ctx.status = spec.status || 200;
      ctx.type = spec.contentType;
      ctx.body = spec.body;
      return true;
    }
    if (spec.status !== undefined) {
      ctx.status = spec.status;
      ctx.type = 'text/plain';
      ctx.body = `failure injected by the test controls (${spec.status})\n`;
      return true;
    }
    return false;
  }

  async function tamperResponse(ctx) {
    const body = ctx.body;
    if (tampers.length === 0 || ctx.status !== 200 || !body || typeof body.id_token !== 'string') {
      return;
    }
    const spec = tampers[0];
    spec.remaining -= 1;
    if (spec.remaining <= 0) {
      tampers.shift();
    }
    const attacker = {
      keyFor: attackerKeyFor,
      jwksUrl: `${idp.issuer}/_test/attacker/jwks.json`,
      x5uUrl: `${idp.issuer}/_test/attacker/x5u.pem`,
      x5uKey: spec.defect === 'x5u_header' ? (await attackerCertificate()).jwk : undefined,
    };
    const tampered = await tamperIdToken(body.id_token, {
      defect: spec.defect,
      resignWith: spec.resignWith,
      keySet: idp.currentKeySet(),
      issuer: idp.issuer,
      clientId: ctx.oidc && ctx.oidc.client ? ctx.oidc.client.clientId : undefined,
      accessToken: body.access_token,
      attacker,
    });
    history.push({
      time: Date.now(),
      defect: spec.defect || null,
      resign_with: spec.resignWith || null,
      original: body.id_token,
      tampered,
    });
    if (history.length > HISTORY_LIMIT) {
      history.shift();
    }
    ctx.body = { ...body, id_token: tampered };
  }

  async function middleware(ctx, next) {
    const endpoint = ENDPOINTS[ctx.path];
    if (endpoint === undefined) {
      await next();
      return;
    }
    counters[endpoint] += 1;
    const spec = takeFailure(endpoint);
    if (spec && (await inject(ctx, spec))) {
      return;
    }
    await next();
    if (endpoint === 'token') {
      await tamperResponse(ctx);
    }
  }

  function keysSummary() {
    const signing = Object.fromEntries(idp.currentKeySet().map((jwk) => [jwk.alg, jwk.kid]));
    return { signing, published: idp.publishedKids() };
  }

  // name -> {method, run(body, res) -> JSON value}
  const routes = {
    counters: { method: 'GET', run: () => counters },
    'counters/reset': {
      method: 'POST',
      run: () => {
        counters = zeroCounters();
        return counters;
      },
    },
    reset: {
      method: 'POST',
      run: () => {
        counters = zeroCounters();
        failures.clear();
        tampers.length = 0;
        history.length = 0;
        return { ok: true };
      },
    },
    fail: {
      method: 'POST',
      run: (body) => {
        const spec = parseFailure(body);
        failures.set(spec.endpoint, spec);
        return { ok: true, endpoint: spec.endpoint, count: spec.remaining === Infinity ? -1 : spec.remaining };
      },
    },
    tamper: {
      method: 'POST',
      run: (body) => {
        if (body.defect !== undefined && !Object.hasOwn(DEFECTS, body.defect)) {
          throw new Error(`defect must be one of ${Object.keys(DEFECTS).join(', ')}`);
        }
        if (body.resign_with !== undefined && !ALGS.includes(body.resign_with)) {
          throw new Error(`resign_with must be one of ${ALGS.join(', ')}`);
        }
        if (body.defect === undefined && body.resign_with === undefined) {
          throw new Error('give defect, resign_with or both');
        }
        const remaining = parseCount(body.count);
        tampers.push({ defect: body.defect, resignWith: body.resign_with, remaining });
        return { ok: true, pending: tampers.length };
      },
    },
    tampered: { method: 'GET', run: () => history },
    // Signs claims (an object) with the IdP's current key of alg (default RS256), kid in the header:
    // logout tokens, valid or hostile, for the gateway's back-channel logout tests.
    sign: {
      method: 'POST',
      run: async (body) => {
        if (body.claims === null || typeof body.claims !== 'object' || Array.isArray(body.claims)) {
          throw new Error('claims must be an object');
        }
        const alg = body.alg === undefined ? 'RS256' : body.alg;
        const jwk = idp.currentKeySet().find((k) => k.alg === alg);
        if (!jwk) {
          throw new Error(`alg must be one of ${idp.currentKeySet().map((k) => k.alg).join(', ')}`);
        }
        const header = { alg, kid: jwk.kid, typ: body.typ === undefined ? 'logout+jwt' : body.typ };
        const token = await new jose.CompactSign(Buffer.from(JSON.stringify(body.claims)))
          .setProtectedHeader(header)
          .sign(privateKeyObject(jwk));
        return { token };
      },
    },
    defects: { method: 'GET', run: () => DEFECTS },
    keys: { method: 'GET', run: keysSummary },
    rotate: {
      method: 'POST',
      run: async (body) => {
        const before = new Set(idp.publishedKids());
        await idp.rotateKeys({ keepOld: Boolean(body.keep_old) });
        const summary = keysSummary();
        const now = new Set(summary.published);
        return { ...summary, removed: [...before].filter((kid) => !now.has(kid)) };
      },
    },
  };

  async function handle(req, res, url) {
    const name = url.pathname.slice('/_test/'.length);
    if (!enabled) {
      sendJson(res, 404, { error: 'test controls are disabled (start the IdP with --test-controls)' });
      return;
    }
    if (name === 'attacker/jwks.json' || name === 'attacker/x5u.pem') {
      counters.attacker += 1;
      if (name === 'attacker/jwks.json') {
        const keys = await Promise.all(ALGS.map((alg) => attackerKeyFor(alg)));
        sendJson(res, 200, { keys: keys.map(publicJwk) });
      } else {
        const { pem } = await attackerCertificate();
        res.writeHead(200, { 'content-type': 'application/pem-certificate-chain', 'content-length': Buffer.byteLength(pem) });
        res.end(pem);
      }
      return;
    }
    const route = Object.hasOwn(routes, name) ? routes[name] : undefined;
    if (route === undefined) {
      sendJson(res, 404, { error: `no test control ${JSON.stringify(name)}`, controls: Object.keys(routes) });
      return;
    }
    if (req.method !== route.method) {
      res.setHeader('allow', route.method);
      sendJson(res, 405, { error: `use ${route.method}` });
      return;
    }
    let body = {};
    try {
      if (route.method === 'POST') {
        body = await readJson(req);
      }
      sendJson(res, 200, await route.run(body));
    } catch (err) {
      sendJson(res, 400, { error: err.message });
    }
  }

  return { middleware, handle };
}

module.exports = { createControls, ENDPOINTS };
