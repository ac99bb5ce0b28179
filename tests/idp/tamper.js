'use strict';
// Defective ID tokens for the gateway's negative tests. tamperIdToken() takes a real ID token that
// oidc-provider just issued and returns it changed by one defect. Unless the defect is about the
// signature itself, the result is validly signed (jose) by the IdP's current key of the chosen alg, so
// a relying party that verifies against the IdP's JWKS sees exactly one thing wrong.

const crypto = require('node:crypto');
const jose = require('jose');
const { ALGS, privateKeyObject, publicJwk } = require('./keys');

// The claim padded out by "oversize".
const OVERSIZE_BYTES = 64 * 1024;
// An extension header parameter nobody understands, listed in "crit".
const CRIT_PARAM = 'urn:ssogate:test:unknown';
// The audience that is not the client.
const OTHER_CLIENT = 'another-client';
const HOUR_S = 3600;

// defect -> what it does (also served by GET /_test/defects).
const DEFECTS = {
  alg_none: 'header alg "none", empty signature',
  hs256_rsa_pub: 'alg HS256, HMAC keyed with the IdP RS256 public key as SPKI PEM text, kid of that key',
  bad_signature: 'validly signed, then one signature byte flipped',
  wrong_iss: 'iss is another issuer',
  wrong_aud: `aud is "${OTHER_CLIENT}" only`,
  multi_aud_no_azp: `aud is [client, "${OTHER_CLIENT}"], no azp`,
  wrong_azp: `aud is [client, "${OTHER_CLIENT}"], azp "${OTHER_CLIENT}"`,
  expired: 'exp one hour ago (iat two hours ago)',
  future_iat: 'iat one hour ahead (exp two hours ahead)',
  future_nbf: 'nbf one hour ahead',
  no_nonce: 'nonce removed',
  wrong_nonce: 'nonce replaced by a random one',
  unknown_kid: 'signed by a key that is not in the JWKS, with its own kid',
  jku_header: 'signed by an attacker key served at the jku URL of the header; kid of the IdP key of that alg',
  jwk_header: 'signed by an attacker key embedded as the jwk header; kid of the IdP key of that alg',
  x5u_header: 'ES256, signed by an attacker key whose certificate is at the x5u URL; kid of the IdP ES256 key',
  crit_header: `crit lists the unknown header parameter "${CRIT_PARAM}"`,
  oversize: `a claim "padding" of ${OVERSIZE_BYTES} bytes`,
  bad_base64: 'a "*" in the middle of the payload segment, signature valid over that text',
  bad_json: 'payload is truncated JSON, validly signed',
  no_amr: 'amr removed',
  inactive: 'active is false',
  inactive_as_text: 'active is the string "false" (a boolean written as text)',
  no_auth_time: 'auth_time removed',
  old_auth_time: 'auth_time one hour earlier (an IdP session reused, prompt=login ignored)',
};

function b64url(data) {
  return Buffer.from(data).toString('base64url');
}

function decodePart(part) {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

// at_hash (OpenID Connect Core 3.1.3.6) of accessToken for alg: the left half of the alg's hash.
function atHash(accessToken, alg) {
  const digest = crypto.createHash(alg === 'EdDSA' ? 'sha512' : 'sha256').update(accessToken).digest();
  return b64url(digest.subarray(0, digest.length / 2));
}

// Compact JWS of payload (an object, or a Buffer signed as is) with header, signed by the private JWK.
// options.crit names the crit parameters the signer is told it understands.
function sign(header, payload, jwk, options = {}) {
  const bytes = Buffer.isBuffer(payload) ? payload : Buffer.from(JSON.stringify(payload));
  return new jose.CompactSign(bytes).setProtectedHeader(header).sign(privateKeyObject(jwk), options);
}

// A raw signature of the ASCII text input with the private JWK: for bad_base64, whose payload segment
// is no base64url at all, which jose (rightly) never produces.
function rawSign(input, jwk) {
  const key = privateKeyObject(jwk);
  const data = Buffer.from(input, 'ascii');
  switch (jwk.alg) {
    case 'RS256':
      return crypto.sign('sha256', data, key);
    case 'PS256':
      return crypto.sign('sha256', data, {
        key,
        padding: crypto.constants.RSA_PKCS1_PSS_PADDING,
        saltLength: 32,
      });
    case 'ES256':
      return crypto.sign('sha256', data, { key, dsaEncoding: 'ieee-p1363' });
    case 'EdDSA':
      return crypto.sign(null, data, key);
    default:
      throw new Error(`cannot sign with ${jwk.alg}`);
  }
}

function keyFor(keySet, alg) {
  const jwk = keySet.find((k) => k.alg === alg);
  if (!jwk) {
    throw new Error(`the IdP has no ${alg} key`);
  }
  return jwk;
}

// Returns token (a compact JWS ID token) changed as defect says (one of DEFECTS, or undefined for none),
// re-signed with resignWith (an alg of ALGS; default the token's own). context:
//   keySet: the IdP's current private JWKs (borrowed), issuer, clientId,
//   accessToken: the access token issued with it (to recompute at_hash for another alg),
//   attacker: {keyFor(alg) -> promise of a private JWK not in the JWKS, jwksUrl, x5uUrl, x5uKey: private ES256 JWK
//   whose certificate x5uUrl serves}.
// Throws on an unknown defect or alg.
async function tamperIdToken(token, { defect, resignWith, keySet, issuer, clientId, accessToken, attacker }) {
  if (defect !== undefined && !Object.hasOwn(DEFECTS, defect)) {
    throw new Error(`unknown defect ${JSON.stringify(defect)}`);
  }
  const parts = String(token).split('.');
  if (parts.length !== 3) {
    throw new Error('not a compact JWS');
  }
  const originalHeader = decodePart(parts[0]);
  const payload = decodePart(parts[1]);
  const alg = resignWith || originalHeader.alg;
  if (!ALGS.includes(alg)) {
    throw new Error(`cannot re-sign with ${JSON.stringify(alg)}: one of ${ALGS.join(', ')}`);
  }
  const own = keyFor(keySet, alg);
  const header = { ...originalHeader, alg, kid: own.kid };
  if (alg !== originalHeader.alg && payload.at_hash && accessToken) {
    payload.at_hash = atHash(accessToken, alg);
  }
  const now = Math.floor(Date.now() / 1000);

  switch (defect) {
    case undefined:
      return sign(header, payload, own);
    case 'alg_none':
      return `${b64url(JSON.stringify({ ...header, alg: 'none' }))}.${b64url(JSON.stringify(payload))}.`;
    case 'hs256_rsa_pub': {
      const rsa = keyFor(keySet, 'RS256');
      const pem = crypto.createPublicKey({ key: rsa, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
      const hmacHeader = { ...header, alg: 'HS256', kid: rsa.kid };
      return new jose.CompactSign(Buffer.from(JSON.stringify(payload)))
        .setProtectedHeader(hmacHeader)
        .sign(Buffer.from(pem));
    }
    case 'bad_signature': {
      const [h, p, s] = (await sign(header, payload, own)).split('.');
      const signature = Buffer.from(s, 'base64url');
      signature[signature.length >> 1] ^= 0x01;
      return `${h}.${p}.${b64url(signature)}`;
    }
    case 'wrong_iss':
      return sign(header, { ...payload, iss: `${issuer}/another-issuer` }, own);
    case 'wrong_aud':
      return sign(header, { ...payload, aud: OTHER_CLIENT }, own);
    case 'multi_aud_no_azp': {
      const changed = { ...payload, aud: [clientId, OTHER_CLIENT] };
      delete changed.azp;
      return sign(header, changed, own);
    }
    case 'wrong_azp':
      return sign(header, { ...payload, aud: [clientId, OTHER_CLIENT], azp: OTHER_CLIENT }, own);
    case 'expired':
      return sign(header, { ...payload, iat: now - 2 * HOUR_S, exp: now - HOUR_S }, own);
    case 'future_iat':
      return sign(header, { ...payload, iat: now + HOUR_S, exp: now + 2 * HOUR_S }, own);
    case 'future_nbf':
      return sign(header, { ...payload, nbf: now + HOUR_S }, own);
    case 'no_nonce': {
      const changed = { ...payload };
      delete changed.nonce;
      return sign(header, changed, own);
    }
    case 'wrong_nonce':
      return sign(header, { ...payload, nonce: b64url(crypto.randomBytes(16)) }, own);
    case 'unknown_kid': {
      const stranger = await attacker.keyFor(alg);
      return sign({ ...header, kid: stranger.kid }, payload, stranger);
    }
    case 'jku_header':
      return sign({ ...header, jku: attacker.jwksUrl }, payload, await attacker.keyFor(alg));
    case 'jwk_header': {
      const stranger = await attacker.keyFor(alg);
      return sign({ ...header, jwk: { ...publicJwk(stranger), kid: own.kid } }, payload, stranger);
    }
    case 'x5u_header': {
      const es256 = keyFor(keySet, 'ES256');
      return sign({ ...header, alg: 'ES256', kid: es256.kid, x5u: attacker.x5uUrl }, payload, attacker.x5uKey);
    }
    case 'crit_header':
      return sign({ ...header, crit: [CRIT_PARAM], [CRIT_PARAM]: true }, payload, own, {
        crit: { [CRIT_PARAM]: true },
      });
    case 'oversize':
      return sign(header, { ...payload, padding: 'A'.repeat(OVERSIZE_BYTES) }, own);
    case 'bad_base64': {
      const [h, p] = (await sign(header, payload, own)).split('.');
      const middle = p.length >> 1;
      const input = `${h}.${p.slice(0, middle)}*${p.slice(middle)}`;
      return `${input}.${b64url(rawSign(input, own))}`;
    }
    case 'bad_json': {
      const json = JSON.stringify(payload);
      return sign(header, Buffer.from(json.slice(0, json.length - 1)), own);
    }
    case 'no_amr': {
      const changed = { ...payload };
      delete changed.amr;
      return sign(header, changed, own);
    }
    case 'inactive':
      return sign(header, { ...payload, active: false }, own);
    case 'inactive_as_text':
      return sign(header, { ...payload, active: 'false' }, own);
    case 'no_auth_time': {
      const changed = { ...payload };
      delete changed.auth_time;
      return sign(header, changed, own);
    }
    case 'old_auth_time':
      return sign(header, { ...payload, auth_time: payload.auth_time - HOUR_S }, own);
    default:
      throw new Error(`defect ${defect} not implemented`);
  }
}

module.exports = { DEFECTS, CRIT_PARAM, OTHER_CLIENT, OVERSIZE_BYTES, tamperIdToken, atHash };
