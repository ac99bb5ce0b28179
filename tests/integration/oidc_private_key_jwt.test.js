'use strict';
// Issue 13, token-endpoint authentication with private_key_jwt (RFC 7523 2.2, OIDC Core 9) against the real
// oidc-provider configured to require it for the gateway's client: logins work with an EC P-256, an RSA
// and an Ed25519 key and no client secret; the gateway publishes the public key at
// /_sso/client-jwks.json; a key the IdP does not know is refused by the IdP and the login fails cleanly
// (the 502 page, token_error counted, no session); `ssogate -t` refuses a bad key file.

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const { itest, request } = require('./lib/harness');
const { startOidcEnv, metricKey } = require('./lib/oidc-env');

// The RFC 7638 thumbprint of a public JWK: the gateway's kid.
function thumbprint(jwk) {
  const members = { EC: ['crv', 'kty', 'x', 'y'], RSA: ['e', 'kty', 'n'], OKP: ['crv', 'kty', 'x'] }[jwk.kty];
  const canonical = JSON.stringify(Object.fromEntries(members.map((m) => [m, jwk[m]])));
  return crypto.createHash('sha256').update(canonical).digest('base64url');
}

// A private key in a PEM file under the harness, and its public JWK with the gateway's kid.
function makeKey(h, name, type, options) {
  const { privateKey, publicKey } = crypto.generateKeyPairSync(type, options);
  const file = h.file(name);
  fs.writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  const jwk = publicKey.export({ format: 'jwk' });
  return { file, jwk: { ...jwk, kid: thumbprint(jwk), use: 'sig' } };
}

const KEYS = {
  'EC P-256': ['ec', { namedCurve: 'P-256' }, 'ES256'],
  'RSA 2048': ['rsa', { modulusLength: 2048 }, undefined], // an RSA JWK names no alg (RS256 or PS256)
  Ed25519: ['ed25519', undefined, 'EdDSA'],
};

// An environment whose IdP client requires private_key_jwt with registered (the public JWK), and whose
// gateway signs with the key file used (no client secret at all).
function startEnv(h, registered, used) {
  return startOidcEnv(h, {
    client: {
      token_endpoint_auth_method: 'private_key_jwt',
      jwks: { keys: [registered.jwk] },
    },
    gateway: { idp: { token_auth: 'private_key_jwt', client_key_file: used.file, client_secret_env: undefined } },
  });
}

for (const [name, [type, options, alg]] of Object.entries(KEYS)) {
  itest(`private_key_jwt with ${name}: logins work without a client secret; the key is published`, async (t, h) => {
    const key = makeKey(h, 'client-key.pem', type, options);
    const env = await startEnv(h, key, key);
    assert.equal(env.config.idp.client_secret_env, undefined, 'no client secret configured');
    const { value: res, moved } = await env.measure(() => env.login({ returnTo: '/echo/ok' }));
    assert.equal(res.callback && res.callback.status, 302, `the callback redirects (${res.callback && res.callback.status})`);
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.body).headers['x-sso-subject'], 'itc-user-alice', 'signed in as alice');
    assert.equal(moved[metricKey('ssogate_logins_total', { result: 'ok' })], 1, JSON.stringify(moved));

    const published = await request(env.gw, { path: '/_sso/client-jwks.json' });
    assert.equal(published.status, 200);
    assert.match(String(published.headers['content-type']), /application\/jwk-set\+json/);
    const { keys } = JSON.parse(published.body.toString());
    assert.equal(keys.length, 1, 'one key');
    assert.equal(keys[0].kid, key.jwk.kid, 'kid: the RFC 7638 thumbprint');
    assert.equal(keys[0].alg, alg);
    for (const member of ['kty', 'crv', 'x', 'y', 'n', 'e']) {
      assert.equal(keys[0][member], key.jwk[member], `the public ${member}`);
    }
    assert.equal(keys[0].d, undefined, 'never the private part');
  });
}

itest('private_key_jwt with a key the IdP does not know: the IdP refuses it, the login fails cleanly', async (t, h) => {
  const registered = makeKey(h, 'registered.pem', 'ec', { namedCurve: 'P-256' });
  const other = makeKey(h, 'other.pem', 'ec', { namedCurve: 'P-256' });
  const env = await startEnv(h, registered, other);
  const { value: res, moved } = await env.measure(() => env.login({ returnTo: '/echo/ok' }));
  assert.equal(res.status, 502, `the 502 page (${res.status})`);
  assert.match(res.body, /Sign-in failed/);
  assert.equal(moved[metricKey('ssogate_logins_total', { result: 'token_error' })], 1, JSON.stringify(moved));
  assert.equal(moved[metricKey('ssogate_logins_total', { result: 'ok' })], undefined, 'no login');
  const lines = [].concat(res.headers['set-cookie'] || []);
  assert.equal(lines.find((c) => /^ssogate=[^;]/.test(c)), undefined, 'no session cookie');
  assert.equal((await env.status(env.browser())).session, false);
});

itest('ssogate -t refuses private_key_jwt without a key, with a secret, or with an unusable key', async (t, h) => {
  const base = h.config({ idp: { issuer: 'https://idp.example.com', client_id: 'c', token_auth: 'private_key_jwt' } });
  const rsa1024 = makeKey(h, 'rsa1024.pem', 'rsa', { modulusLength: 1024 });
  const p384 = makeKey(h, 'p384.pem', 'ec', { namedCurve: 'P-384' });
  const cases = [
    [{}, /client_key_file.*required/],
    [{ client_key_file: p384.file, client_secret_env: 'HOME' }, /not a client secret/],
    [{ client_key_file: rsa1024.file }, /client_key_file.*2048/],
    [{ client_key_file: p384.file }, /client_key_file.*neither EC P-256/],
    [{ client_key_file: h.file('missing.pem') }, /client_key_file/],
  ];
  for (const [idp, want] of cases) {
    const file = h.writeConfig({ ...base, idp: { ...base.idp, ...idp } });
    const run = await h.runGateway(['-t', '-c', file]);
    assert.equal(run.code, 1, `${JSON.stringify(idp)}: exit 1 (${run.stdout}${run.stderr})`);
    assert.match(run.stderr, want, JSON.stringify(idp));
  }
  const ok = makeKey(h, 'ok.pem', 'ed25519');
  const file = h.writeConfig({ ...base, idp: { ...base.idp, client_key_file: ok.file } });
  const run = await h.runGateway(['-t', '-c', file]);
  assert.equal(run.code, 0, `a good key passes -t (${run.stderr})`);
});
