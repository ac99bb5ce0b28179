'use strict';
// TOTP (RFC 6238) as authenticator apps compute it: HMAC-SHA-1, 30 s steps, 6 digits, secrets in
// base32 (RFC 4648, case and padding ignored). The test IdP verifies with it, tests compute codes with it.
//
//   node tests/idp/totp.js BASE32SECRET    prints the current code
//   const { totp, verifyTotp } = require('./totp');

const crypto = require('node:crypto');

const STEP_S = 30;
const DIGITS = 6;
const BASE32_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
// A secret longer than this is a configuration mistake, not a key (RFC 4226 asks for 128 bits at least).
const MAX_SECRET_CHARS = 1024;

// Decodes base32 text to a Buffer; throws on a character outside the alphabet or an empty secret.
function base32Decode(text) {
  const clean = String(text).replace(/[\s=]/g, '').toUpperCase();
  if (clean.length === 0 || clean.length > MAX_SECRET_CHARS) {
    throw new Error('TOTP secret must be 1 to 1024 base32 characters');
  }
  const bytes = [];
  let bits = 0;
  let value = 0;
  for (const ch of clean) {
    const index = BASE32_ALPHABET.indexOf(ch);
    if (index < 0) {
      throw new Error(`invalid base32 character ${JSON.stringify(ch)} in TOTP secret`);
    }
    value = (value << 5) | index;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      bytes.push((value >>> bits) & 0xff);
    }
  }
  return Buffer.from(bytes);
}

// The HOTP value (RFC 4226) of key for counter, as a zero-padded decimal string.
function hotp(key, counter) {
  const message = Buffer.alloc(8);
  message.writeBigUInt64BE(BigInt(counter));
  const mac = crypto.createHmac('sha1', key).update(message).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const binary = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(binary % 10 ** DIGITS).padStart(DIGITS, '0');
}

// The code for secret (base32) at time (seconds since the epoch, default now).
function totp(secret, time = Date.now() / 1000) {
  return hotp(base32Decode(secret), Math.floor(time / STEP_S));
}

// True when code is the code of secret for the step of time or one step before or after (clock skew
// and a code typed just as it changed). Compares in constant time.
function verifyTotp(secret, code, time = Date.now() / 1000) {
  if (typeof code !== 'string' || !/^[0-9]{6}$/.test(code)) {
    return false;
  }
  const key = base32Decode(secret);
  const step = Math.floor(time / STEP_S);
  let ok = false;
  for (const delta of [-1, 0, 1]) {
    const expected = Buffer.from(hotp(key, step + delta));
    ok = crypto.timingSafeEqual(expected, Buffer.from(code)) || ok;
  }
  return ok;
}

// A new random secret (160 bits, the RFC 4226 recommendation) in base32.
function newTotpSecret() {
  const bytes = crypto.randomBytes(20);
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += BASE32_ALPHABET[(value >>> bits) & 31];
    }
  }
  return out;
}

module.exports = { totp, verifyTotp, newTotpSecret, base32Decode, STEP_S };

if (require.main === module) {
  if (process.argv.length !== 3) {
    process.stderr.write('usage: node totp.js BASE32SECRET\n');
    process.exit(2);
  }
  try {
    process.stdout.write(`${totp(process.argv[2])}\n`);
  } catch (err) {
    process.stderr.write(`totp: ${err.message}\n`);
    process.exit(2);
  }
}
