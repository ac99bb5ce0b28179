'use strict';
// Deterministic bulk data for streaming tests. Both the stub (which sends it) and the tests (which check
// what arrived) generate it here, so a 200 MiB transfer can be verified without storing it anywhere.
//
// The stream is made of BLOCK_SIZE blocks: one pseudo-random base block, with the block's index written
// into its first 8 bytes, so a dropped, duplicated or reordered block changes the digest.

const crypto = require('node:crypto');

const BLOCK_SIZE = 64 * 1024;
const BASE_BLOCK = (() => {
  const out = Buffer.alloc(BLOCK_SIZE);
  let seed = Buffer.from('ssogate bigdata seed');
  for (let off = 0; off < BLOCK_SIZE; off += 32) {
    seed = crypto.createHash('sha256').update(seed).digest();
    seed.copy(out, off);
  }
  return out;
})();

// Returns block number index of the stream, a fresh Buffer the caller may keep.
function block(index) {
  const out = Buffer.from(BASE_BLOCK);
  out.writeBigUInt64BE(BigInt(index), 0);
  return out;
}

// Returns the bytes [offset, offset + length) of the stream; length is at most BLOCK_SIZE and the range
// stays inside one block when offset is a multiple of BLOCK_SIZE.
function slice(offset, length) {
  const index = Math.floor(offset / BLOCK_SIZE);
  const start = offset % BLOCK_SIZE;
  return block(index).subarray(start, start + length);
}

// The sha256 (hex) of the first totalBytes bytes of the stream.
function digest(totalBytes) {
  const hash = crypto.createHash('sha256');
  for (let off = 0; off < totalBytes; off += BLOCK_SIZE) {
    hash.update(slice(off, Math.min(BLOCK_SIZE, totalBytes - off)));
  }
  return hash.digest('hex');
}

module.exports = { BLOCK_SIZE, block, slice, digest };
