'use strict';
// Signing keys of the test IdP: one key per ID token algorithm it offers, generated at start (and on
// rotation) with node's crypto, as private JWKs with a kid and an alg so that a relying party can pick
// the key by kid and check the alg against it.

const crypto = require('node:crypto');
const util = require('node:util');

const ALGS = ['RS256', 'PS256', 'ES256', 'EdDSA'];

const generateKeyPairAsync = util.promisify(crypto.generateKeyPair);

// The arguments of crypto.generateKeyPair for alg.
function keyPairParams(alg) {
  switch (alg) {
    case 'RS256':
    case 'PS256':
      return ['rsa', { modulusLength: 2048 }];
    case 'ES256':
      return ['ec', { namedCurve: 'P-256' }];
    case 'EdDSA':
      return ['ed25519', {}];
    default:
      throw new Error(`unsupported signing alg ${alg}`);
  }
}

// A readable, unique key id: the alg and 8 random bytes.
function newKid(alg, prefix = '') {
  return `${prefix}${alg.toLowerCase()}-${crypto.randomBytes(8).toString('hex')}`;
}

function toJwk(privateKey, alg, kidPrefix) {
  return { ...privateKey.export({ format: 'jwk' }), kid: newKid(alg, kidPrefix), alg, use: 'sig' };
}

// Resolves a new private JWK (with kid, alg, use "sig") for alg; kidPrefix marks keys that are not the
// IdP's own. Generated off the event loop: RSA takes a while.
async function generateJwk(alg, kidPrefix = '') {
  const { privateKey } = await generateKeyPairAsync(...keyPairParams(alg));
  return toJwk(privateKey, alg, kidPrefix);
}

// Resolves one private JWK per alg of ALGS, in that order, generated all at once.
function generateKeySet() {
  return Promise.all(ALGS.map((alg) => generateJwk(alg)));
}

// The public half of a private JWK (a new object; members of the private key removed).
function publicJwk(jwk) {
  const publicKey = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  return { ...publicKey.export({ format: 'jwk' }), kid: jwk.kid, alg: jwk.alg, use: jwk.use };
}

// The private KeyObject of a private JWK.
function privateKeyObject(jwk) {
  return crypto.createPrivateKey({ key: jwk, format: 'jwk' });
}

module.exports = { ALGS, generateJwk, generateKeySet, publicJwk, privateKeyObject };
