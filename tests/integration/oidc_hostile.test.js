'use strict';
// Issue 3: the hostile-token suite. The real IdP (tests/idp) tampers the next ID token it issues with
// one defect (POST /_test/tamper, see tests/idp/README.md); the gateway must refuse each one with the
// 401 page, no session and its metric, accept a valid token of every allowed alg, and treat the claims
// that are about the user (amr, active) as the decision order says.

const assert = require('node:assert/strict');
const { sharedOidcEnv, metricKey } = require('./lib/oidc-env');

const oidcTest = sharedOidcEnv('oidc_hostile');

const ALGS = ['RS256', 'PS256', 'ES256', 'EdDSA'];
const LOGINS = 'ssogate_logins_total';
const REJECTED = 'ssogate_id_token_rejected_total';

// defect -> the reason label(s) of ssogate_id_token_rejected_total that name it. Where two checks
// catch the same token (an expired token is also issued long ago), either name is right.
const DEFECTS = {
  alg_none: ['alg_none'],
  hs256_rsa_pub: ['alg_not_allowed'],
  bad_signature: ['bad_signature'],
  wrong_iss: ['iss_mismatch'],
  wrong_aud: ['aud_mismatch'],
  multi_aud_no_azp: ['azp_missing'],
  wrong_azp: ['azp_mismatch'],
  expired: ['expired', 'iat_too_old'],
  future_iat: ['iat_future'],
  future_nbf: ['nbf_future'],
  no_nonce: ['nonce_missing'],
  wrong_nonce: ['nonce_mismatch'],
  unknown_kid: ['kid_unknown'],
  jku_header: ['forbidden_header'],
  jwk_header: ['forbidden_header'],
  x5u_header: ['forbidden_header'],
  crit_header: ['crit'],
  oversize: ['too_big'],
  bad_base64: ['malformed'],
  bad_json: ['bad_payload'],
};

// The session cookie the gateway's callback set, if any.
function sessionCookieSet(res) {
  const lines = [].concat((res.callback && res.callback.headers['set-cookie']) || []);
  return lines.find((c) => /^ssogate=[^;]/.test(c));
}

// Logs in with the next ID token tampered by spec ({defect, resign_with}); resolves {res (as env.login),
// moved (metrics), tampered (the IdP's record of what it changed)}.
async function tamperedLogin(env, spec) {
  await env.control('POST', '/_test/tamper', spec);
  const { value: res, moved } = await env.measure(() => env.login({ returnTo: '/echo/after' }));
  const history = await env.control('GET', '/_test/tampered');
  const tampered = history[history.length - 1];
  assert.ok(tampered, 'the IdP tampered a token');
  assert.equal(tampered.defect ?? undefined, spec.defect, 'the IdP applied the defect asked for');
  return { res, moved, tampered };
}

// Asserts what a refused token looks like to the user and to the metrics.
async function assertRefused(env, { res, moved }, reasons, what) {
  assert.ok(res.callback, `${what}: the IdP sent the browser to the callback`);
  assert.equal(res.callback.status, 401, `${what}: the callback answers 401`);
  assert.equal(res.status, 401, `${what}: the user sees the 401 page`);
  assert.match(res.body, /Sign-in refused/, `${what}: the page says the sign-in was refused`);
  assert.equal(sessionCookieSet(res), undefined, `${what}: no session cookie`);
  assert.deepEqual(await env.status(res.browser), { session: false }, `${what}: no session`);
  assert.equal(moved[metricKey(LOGINS, { result: 'token_invalid' })], 1, `${what}: logins_total{result="token_invalid"} +1`);
  assert.equal(moved[metricKey(LOGINS, { result: 'ok' })], undefined, `${what}: no successful login counted`);
  const rejected = Object.entries(moved).filter(([key]) => key.startsWith(`${REJECTED}{`));
  assert.equal(rejected.length, 1, `${what}: one ${REJECTED} line moved: ${JSON.stringify(moved)}`);
  const [key, delta] = rejected[0];
  assert.equal(delta, 1);
  assert.ok(reasons.some((r) => key === metricKey(REJECTED, { reason: r })), `${what}: ${key} is one of ${reasons.join(', ')}`);
}

for (const [defect, reasons] of Object.entries(DEFECTS)) {
  oidcTest(`ID token defect ${defect}: 401, no session, rejected as ${reasons.join(' or ')}`, async (env) => {
    const before = await env.idpCounters();
    const outcome = await tamperedLogin(env, { defect });
    await assertRefused(env, outcome, reasons, defect);
    if (['jku_header', 'x5u_header', 'jwk_header'].includes(defect)) {
      const after = await env.idpCounters();
      assert.equal(after.attacker, before.attacker, `${defect}: the gateway never fetched the attacker's URL`);
    }
  });
}

for (const alg of ALGS) {
  oidcTest(`a valid ${alg} ID token is accepted`, async (env) => {
    const { res, moved, tampered } = await tamperedLogin(env, { resign_with: alg });
    assert.equal(JSON.parse(Buffer.from(tampered.tampered.split('.')[0], 'base64url')).alg, alg, `the IdP signed with ${alg}`);
    assert.equal(res.callback.status, 302, `${alg}: the callback redirects`);
    assert.equal(res.callback.headers.location, '/echo/after');
    assert.ok(sessionCookieSet(res), `${alg}: a session cookie`);
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.body).headers['x-sso-subject'], 'itc-user-alice');
    assert.equal(moved[metricKey(LOGINS, { result: 'ok' })], 1);
  });

  oidcTest(`a bad ${alg} signature is refused`, async (env) => {
    const outcome = await tamperedLogin(env, { defect: 'bad_signature', resign_with: alg });
    const header = JSON.parse(Buffer.from(outcome.tampered.tampered.split('.')[0], 'base64url'));
    assert.equal(header.alg, alg, `the IdP signed with ${alg} before corrupting`);
    await assertRefused(env, outcome, ['bad_signature'], `bad ${alg} signature`);
  });
}

oidcTest('no amr: 403 "two-factor required", no session (B3)', async (env) => {
  const { res, moved } = await tamperedLogin(env, { defect: 'no_amr' });
  assert.equal(res.callback.status, 403);
  assert.equal(res.status, 403);
  assert.match(res.body, /Two-factor authentication required/);
  assert.equal(sessionCookieSet(res), undefined);
  assert.deepEqual(await env.status(res.browser), { session: false });
  assert.equal(moved[metricKey(LOGINS, { result: 'no_second_factor' })], 1);
});

oidcTest('active: false in the token: to the login page with the "inactive" notice, no session (B11)', async (env) => {
  const { res, moved } = await tamperedLogin(env, { defect: 'inactive' });
  assert.equal(res.callback.status, 302);
  assert.equal(res.callback.headers.location, '/login?sso_notice=inactive');
  assert.equal(sessionCookieSet(res), undefined);
  assert.deepEqual(await env.status(res.browser), { session: false });
  assert.equal(moved[metricKey(LOGINS, { result: 'inactive' })], 1);
});

oidcTest('after every hostile token, a clean login still works', async (env) => {
  const res = await env.login({ returnTo: '/echo/clean' });
  assert.equal(res.callback.status, 302);
  assert.equal(res.status, 200);
  assert.equal((await env.status(res.browser)).session, true);
});
