'use strict';
// The key that signs X-SSO-Assertion: /_sso/jwks.json publishes it; after a reload that changes the key,
// the old key stays listed while assertions it signed may still be in use (assertion.ttl_s), then goes.

const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const path = require('node:path');
const { itest, request, waitFor, sleep, SLOW } = require('./lib/harness');

async function kids(gw) {
  const res = await request(gw, { path: '/_sso/jwks.json' });
  assert.equal(res.status, 200);
  const jwks = JSON.parse(res.body.toString());
  for (const key of jwks.keys) {
    assert.equal(key.d, undefined, 'no private part is ever published');
  }
  return jwks.keys.map((k) => k.kid).sort();
}

function makeKey(h, name, args) {
  const file = path.join(h.dir, name);
  execFileSync('openssl', ['genpkey', ...args, '-out', file], { stdio: 'ignore' });
  return file;
}

itest('a reload with a new signing key keeps the old one published for assertion.ttl_s', async (t, h) => {
  const up = await h.startStub();
  const first = makeKey(h, 'k1.pem', ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']);
  const second = makeKey(h, 'k2.pem', ['-algorithm', 'ED25519']);
  const gw = await h.startGateway(h.config({ upstream: { url: up.url }, assertion: { key_file: first, ttl_s: 3 } }));
  const before = await kids(gw);
  assert.equal(before.length, 1, 'one key at start');

  h.writeConfig(h.config({ upstream: { url: up.url }, assertion: { key_file: second, ttl_s: 3 } }));
  gw.signal('SIGHUP');
  await waitFor(async () => (await kids(gw)).length === 2, 10000 * SLOW, 'both keys published after the reload');
  const both = await kids(gw);
  assert.ok(both.includes(before[0]), 'the old key is still listed');

  await sleep(3500);
  const after = await kids(gw);
  assert.equal(after.length, 1, 'the old key is gone once its assertions have expired');
  assert.notEqual(after[0], before[0], 'the new key remains');
});

// Rotated twice within one assertion lifetime (K1, then K2, then K3): assertions signed with K1 are
// still valid, so K1 stays published beside K2 and K3; and rotating back to K1 publishes it as current.
itest('two rotations within assertion.ttl_s keep both retired keys published', async (t, h) => {
  const up = await h.startStub();
  const keys = ['k1.pem', 'k2.pem', 'k3.pem'].map((name) =>
    makeKey(h, name, ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']));
  const withKey = (file) => h.config({ upstream: { url: up.url }, assertion: { key_file: file, ttl_s: 4 } });
  const gw = await h.startGateway(withKey(keys[0]));
  const [k1] = await kids(gw);
  const rotate = async (file, count) => {
    h.writeConfig(withKey(file));
    gw.signal('SIGHUP');
    await waitFor(async () => (await kids(gw)).length === count, 10000 * SLOW, `${count} keys published after the reload`);
  };
  await rotate(keys[1], 2);
  await rotate(keys[2], 3);
  const three = await kids(gw);
  assert.ok(three.includes(k1), 'the first key is still published after the second rotation');

  await rotate(keys[0], 3);
  assert.deepEqual(await kids(gw), three, 'back to the first key: the same three keys, none twice');

  await sleep(4500);
  assert.deepEqual(await kids(gw), [k1], 'once the assertions are expired, only the current key');
});

itest('-t refuses an assertion key that is neither P-256 nor Ed25519', async (t, h) => {
  const rsa = makeKey(h, 'rsa.pem', ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048']);
  const file = h.writeConfig(h.config({ assertion: { key_file: rsa } }));
  const run = await h.runGateway(['-t', '-c', file]);
  assert.equal(run.code, 1, `exit 1 (stderr: ${run.stderr})`);
  assert.match(run.stderr, /assertion\.key_file/);
});
