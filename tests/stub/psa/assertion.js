'use strict';
// Header authentication of the PSA: verifies the gateway's X-SSO-Assertion, a compact JWS (RFC 7515) signed
// with ES256 or EdDSA, against the gateway's JWKS (RFC 7517). The PSA trusts nothing else the gateway sends:
// the X-SSO-Tenant and X-SSO-User headers only count when they repeat the signed claims.
//
// Every refusal has one reason string (REASONS); the PSA answers it as {"error":"invalid_assertion","reason"}.

const crypto = require('node:crypto');
const http = require('node:http');
const https = require('node:https');

// Bounds on what an attacker controls (the token) and on what the gateway serves (the JWKS).
const MAX_TOKEN_BYTES = 8192;
const MAX_JWKS_BYTES = 256 * 1024;
const MAX_JWKS_KEYS = 64;
const MAX_KID_LENGTH = 256;
const JWKS_TIMEOUT_MS = 5000;
const CLOCK_SKEW_S = 60;
const MAX_LIFETIME_S = 300;

// The only algorithms the gateway signs with, and the key each needs. none and HMAC are never accepted:
// an HMAC "key" would be the public JWK, which anyone can read.
const ALGORITHMS = {
  ES256: { kty: 'EC', crv: 'P-256', digest: 'sha256', dsaEncoding: 'ieee-p1363' },
  EdDSA: { kty: 'OKP', crv: 'Ed25519', digest: null, dsaEncoding: undefined },
};
const SIGNATURE_BYTES = 64;

const REASONS = [
  'assertion_missing', // an X-SSO-* header without X-SSO-Assertion
  'not_configured', // the PSA does not know the gateway's issuer, audience or JWKS yet
  'too_large',
  'malformed', // not three base64url parts, or a part that is not a JSON object
  'alg_not_allowed', // none, HS*, RS*, anything but ES256 and EdDSA
  'crit_unsupported',
  'kid_missing',
  'jwks_unavailable', // the JWKS could not be fetched or parsed
  'kid_unknown', // still unknown after one refetch
  'key_mismatch', // the key under kid is not the type alg needs
  'bad_signature',
  'iss_mismatch',
  'aud_mismatch',
  'exp_invalid', // exp or iat missing or not a number
  'expired',
  'iat_in_future',
  'not_yet_valid', // nbf in the future
  'lifetime_too_long', // exp - iat above MAX_LIFETIME_S, or not after iat
  'claims_missing', // psa_tenant or psa_user missing
  'header_mismatch', // X-SSO-Tenant / X-SSO-User differ from the claims
  'unknown_user',
  'user_inactive',
];

const BASE64URL = /^[A-Za-z0-9_-]+$/;

// Decodes one base64url part of a JWS into a plain JSON object, or returns null.
function decodeJsonPart(part) {
  if (!BASE64URL.test(part)) {
    return null;
  }
  try {
    const value = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : null;
  } catch (err) {
    return null;
  }
}

// Trailing slashes are not part of an origin's identity: "http://h:1" and "http://h:1/" name one upstream.
function sameUrl(a, b) {
  return typeof a === 'string' && typeof b === 'string' && a.replace(/\/+$/, '') === b.replace(/\/+$/, '');
}

// GETs url and resolves to its body as a string; rejects on a network error, a status other than 200, a
// body above MAX_JWKS_BYTES or a timeout. https uses the default CA store (add a test CA with
// NODE_EXTRA_CA_CERTS).
function fetchText(url) {
  return new Promise((resolve, reject) => {
    let parsed;
    try {
      parsed = new URL(url);
    } catch (err) {
      reject(new Error(`bad JWKS URL: ${url}`));
      return;
    }
    const client = parsed.protocol === 'https:' ? https : parsed.protocol === 'http:' ? http : null;
    if (client === null) {
      reject(new Error(`JWKS URL must be http or https: ${url}`));
      return;
    }
    const req = client.get(parsed, { timeout: JWKS_TIMEOUT_MS, headers: { accept: 'application/json' } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`JWKS answered ${res.statusCode}`));
        return;
      }
      const chunks = [];
      let size = 0;
      res.on('data', (chunk) => {
        size += chunk.length;
        if (size > MAX_JWKS_BYTES) {
          req.destroy(new Error(`JWKS larger than ${MAX_JWKS_BYTES} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`JWKS fetch timed out after ${JWKS_TIMEOUT_MS} ms`)));
    req.on('error', reject);
  });
}

// Turns a JWKS document into a Map kid -> {key: KeyObject, kty, crv, alg}. Keys without a kid, not for
// signatures, of another type, or that node cannot import are left out: one odd key must not hide the others.
function parseJwks(text) {
  const doc = JSON.parse(text);
  if (doc === null || typeof doc !== 'object' || !Array.isArray(doc.keys)) {
    throw new Error('JWKS is not an object with a "keys" array');
  }
  const keys = new Map();
  for (const jwk of doc.keys.slice(0, MAX_JWKS_KEYS)) {
    if (jwk === null || typeof jwk !== 'object' || typeof jwk.kid !== 'string' || jwk.kid.length > MAX_KID_LENGTH) {
      continue;
    }
    if ((jwk.use !== undefined && jwk.use !== 'sig') || (jwk.alg !== undefined && typeof jwk.alg !== 'string')) {
      continue;
    }
    const fits = Object.values(ALGORITHMS).some((a) => a.kty === jwk.kty && a.crv === jwk.crv);
    if (!fits) {
      continue;
    }
    try {
      // Only the public members: a JWKS that leaked "d" must still give a public key, never a private one.
      const publicJwk =
        jwk.kty === 'EC' ? { kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y } : { kty: 'OKP', crv: jwk.crv, x: jwk.x };
      const key = crypto.createPublicKey({ key: publicJwk, format: 'jwk' });
      keys.set(jwk.kid, { key, kty: jwk.kty, crv: jwk.crv, alg: jwk.alg === undefined ? null : jwk.alg });
    } catch (err) {
      // not importable: left out, as above
    }
  }
  return keys;
}

// The gateway's keys, fetched on first use and again (once) when a token names a kid not in the cache.
// Concurrent fetches share one request.
class JwksCache {
  constructor() {
    this.url = null;
    this.keys = null;
    this.pending = null;
    this.fetches = 0;
  }

  // Points the cache at url; a different URL forgets the keys of the old one.
  setUrl(url) {
    if (url !== this.url) {
      this.url = url;
      this.keys = null;
      this.pending = null;
    }
  }

  // Fetches the JWKS now (or joins the fetch in progress); resolves when the cache holds the result.
  refresh() {
    if (this.pending === null) {
      const url = this.url;
      this.fetches++;
      this.pending = fetchText(url)
        .then((text) => {
          if (this.url === url) {
            this.keys = parseJwks(text);
          }
        })
        .finally(() => {
          if (this.url === url) {
            this.pending = null;
          }
        });
    }
    return this.pending;
  }

  // Resolves to the key entry for kid, or null when it is unknown even after one refetch; rejects when the
  // JWKS cannot be fetched.
  async find(kid) {
    let fetched = false;
    if (this.keys === null) {
      await this.refresh();
      fetched = true;
    }
    if (!this.keys.has(kid) && !fetched) {
      await this.refresh();
    }
    return this.keys.get(kid) || null;
  }
}

// Verifies one assertion. request = {token, tenant, user}: the X-SSO-Assertion, X-SSO-Tenant and X-SSO-User
// header values (undefined when absent). config = {issuer, audience}, jwks a JwksCache, data the dataset
// (findUser). Resolves to {ok: true, user, claims} or {ok: false, reason} with reason one of REASONS.
async function verifyAssertion(request, config, jwks, data, nowMs = Date.now()) {
  const refuse = (reason) => ({ ok: false, reason });
  const { token } = request;
  if (typeof token !== 'string' || token.length === 0) {
    return refuse('assertion_missing');
  }
  if (!config.issuer || !config.audience || jwks.url === null) {
    return refuse('not_configured');
  }
  if (Buffer.byteLength(token) > MAX_TOKEN_BYTES) {
    return refuse('too_large');
  }
  const parts = token.split('.');
  if (parts.length !== 3) {
    return refuse('malformed');
  }
  const header = decodeJsonPart(parts[0]);
  if (header === null) {
    return refuse('malformed');
  }
  if (typeof header.alg !== 'string' || !Object.prototype.hasOwnProperty.call(ALGORITHMS, header.alg)) {
    return refuse('alg_not_allowed');
  }
  if (header.crit !== undefined) {
    return refuse('crit_unsupported');
  }
  if (typeof header.kid !== 'string' || header.kid.length === 0 || header.kid.length > MAX_KID_LENGTH) {
    return refuse('kid_missing');
  }
  // An empty signature is a bad one, not a malformed token: that is how an unsigned token arrives.
  if (!/^[A-Za-z0-9_-]*$/.test(parts[2])) {
    return refuse('malformed');
  }
  let entry;
  try {
    entry = await jwks.find(header.kid);
  } catch (err) {
    return refuse('jwks_unavailable');
  }
  if (entry === null) {
    return refuse('kid_unknown');
  }
  const alg = ALGORITHMS[header.alg];
  if (entry.kty !== alg.kty || entry.crv !== alg.crv || (entry.alg !== null && entry.alg !== header.alg)) {
    return refuse('key_mismatch');
  }
  const signature = Buffer.from(parts[2], 'base64url');
  let valid = false;
  if (signature.length === SIGNATURE_BYTES) {
    try {
      const input = Buffer.from(`${parts[0]}.${parts[1]}`, 'ascii');
      valid = crypto.verify(alg.digest, input, { key: entry.key, dsaEncoding: alg.dsaEncoding }, signature);
    } catch (err) {
      valid = false;
    }
  }
  if (!valid) {
    return refuse('bad_signature');
  }
  const claims = decodeJsonPart(parts[1]);
  if (claims === null) {
    return refuse('malformed');
  }
  if (!sameUrl(claims.iss, config.issuer)) {
    return refuse('iss_mismatch');
  }
  const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (!audiences.some((aud) => sameUrl(aud, config.audience))) {
    return refuse('aud_mismatch');
  }
  if (!Number.isFinite(claims.exp) || !Number.isFinite(claims.iat)) {
    return refuse('exp_invalid');
  }
  const now = nowMs / 1000;
  if (claims.exp <= now) {
    return refuse('expired');
  }
  if (claims.iat > now + CLOCK_SKEW_S) {
    return refuse('iat_in_future');
  }
  if (claims.nbf !== undefined && (!Number.isFinite(claims.nbf) || claims.nbf > now + CLOCK_SKEW_S)) {
    return refuse('not_yet_valid');
  }
  if (claims.exp <= claims.iat || claims.exp - claims.iat > MAX_LIFETIME_S) {
    return refuse('lifetime_too_long');
  }
  if (typeof claims.psa_tenant !== 'string' || typeof claims.psa_user !== 'string') {
    return refuse('claims_missing');
  }
  if (request.tenant !== claims.psa_tenant || request.user !== claims.psa_user) {
    return refuse('header_mismatch');
  }
  const user = data.findUser(claims.psa_tenant, claims.psa_user);
  if (user === null) {
    return refuse('unknown_user');
  }
  if (!user.active) {
    return refuse('user_inactive');
  }
  return { ok: true, user, claims };
}

module.exports = { JwksCache, verifyAssertion, REASONS, MAX_LIFETIME_S };
