'use strict';
// Issue 3: an IdP that fails. The token endpoint failing (500), erroring (invalid_grant) or hanging past
// idp.timeout_ms gives the 502 page while other requests through the gateway keep being served at once;
// the JWKS endpoint down with keys cached leaves logins working (also across a restart); a key rotation
// at the IdP is picked up without a restart; a flood of unknown kids costs at most one JWKS fetch.

const assert = require('node:assert/strict');
const { SLOW, request, waitFor } = require('./lib/harness');
const { sharedOidcEnv, metricKey, metricsMoved } = require('./lib/oidc-env');

const IDP_TIMEOUT_MS = 2000;
const oidcTest = sharedOidcEnv('oidc_idp_failures', { gateway: { idp: { timeout_ms: IDP_TIMEOUT_MS } } });
const rotationTest = sharedOidcEnv('oidc_idp_rotation');
const floodTest = sharedOidcEnv('oidc_idp_kid_flood');

const LOGINS = 'ssogate_logins_total';
// Generous for a loopback request to the stub upstream while the event loop must not be blocked.
const QUICK_MS = 500 * SLOW;

function loginKey(result) {
  return metricKey(LOGINS, { result });
}

// Asserts the 502 page of a failed code exchange as the user sees it, with no session.
async function assertBadGateway(env, res, what) {
  assert.equal(res.status, 502, `${what}: 502`);
  assert.match(res.body, /Sign-in failed/, `${what}: the page says the sign-in failed`);
  assert.match(res.body, /\/_sso\/login\?return_to=/, `${what}: the page offers a retry link`);
  const lines = [].concat(res.headers['set-cookie'] || []);
  assert.equal(lines.find((c) => /^ssogate=[^;]/.test(c)), undefined, `${what}: no session cookie`);
}

// A clean login to check the gateway recovered.
async function assertLoginWorks(env, what) {
  const res = await env.login({ returnTo: '/echo/ok' });
  assert.equal(res.callback && res.callback.status, 302, `${what}: the callback redirects`);
  assert.equal(res.status, 200, `${what}: the page asked for`);
  assert.equal(JSON.parse(res.body).headers['x-sso-subject'], 'itc-user-alice', `${what}: the identity reaches the upstream`);
  return res;
}

oidcTest('token endpoint answers 500: the 502 page, token_error counted, and the next login works', async (env) => {
  await env.control('POST', '/_test/fail', { endpoint: 'token', status: 500, count: -1 });
  try {
    const { value: res, moved } = await env.measure(() => env.login());
    assert.equal(res.callback.status, 502);
    await assertBadGateway(env, res, 'token endpoint 500');
    assert.deepEqual(await env.status(res.browser), { session: false });
    assert.equal(moved[loginKey('token_error')], 1, JSON.stringify(moved));
  } finally {
    await env.control('POST', '/_test/reset');
  }
  await assertLoginWorks(env, 'after the 500');
});

oidcTest('token endpoint answers invalid_grant: the 502 page, token_error counted', async (env) => {
  await env.control('POST', '/_test/fail', { endpoint: 'token', error: 'invalid_grant' });
  const { value: res, moved } = await env.measure(() => env.login());
  assert.equal(res.callback.status, 502);
  await assertBadGateway(env, res, 'invalid_grant');
  assert.deepEqual(await env.status(res.browser), { session: false });
  assert.equal(moved[loginKey('token_error')], 1, JSON.stringify(moved));
  await assertLoginWorks(env, 'after invalid_grant');
});

oidcTest(`token endpoint hangs: 502 after idp.timeout_ms (${IDP_TIMEOUT_MS} ms) while other requests are served at once`, async (env) => {
  const browser = env.browser();
  const callback = await env.authorize({ browser, returnTo: '/echo/hung' });
  const tokensBefore = (await env.idpCounters()).token;
  await env.control('POST', '/_test/fail', { endpoint: 'token', hang_ms: 'forever' });
  const metricsBefore = await env.metrics();

  const started = Date.now();
  let settledAt = null;
  const pending = browser.request(callback).finally(() => {
    settledAt = Date.now();
  });
  await waitFor(async () => (await env.idpCounters()).token > tokensBefore, 5000, 'the exchange to reach the token endpoint');

  // Meanwhile: one by one, then a burst in parallel, each must be quick.
  const slowest = { ms: 0 };
  const timed = async (path) => {
    const t0 = Date.now();
    const res = await request(env.gw, { path, timeout: 5000 });
    slowest.ms = Math.max(slowest.ms, Date.now() - t0);
    return res;
  };
  for (let i = 0; i < 5; i++) {
    const res = await timed(`/echo/during-${i}`);
    assert.equal(res.status, 200, `request ${i} during the hang is served`);
    assert.equal(res.headers['x-stub-server'], 'upstream');
  }
  const burst = await Promise.all(Array.from({ length: 20 }, (_, i) => timed(`/echo/burst-${i}`)));
  assert.ok(burst.every((r) => r.status === 200), 'the parallel burst during the hang is served');
  assert.equal((await timed('/_sso/healthz')).status, 200, 'healthz answers during the hang');
  assert.equal(settledAt, null, 'the hung login was still waiting while those were served');
  assert.ok(slowest.ms < QUICK_MS, `every request during the hang took under ${QUICK_MS} ms (slowest ${slowest.ms} ms)`);

  const res = await pending;
  const elapsed = settledAt - started;
  await assertBadGateway(env, res, 'hanging token endpoint');
  assert.ok(elapsed >= IDP_TIMEOUT_MS - 200, `the gateway waited for idp.timeout_ms (${elapsed} ms)`);
  assert.ok(elapsed < IDP_TIMEOUT_MS + 4000 * SLOW, `and not much longer (${elapsed} ms)`);
  const after = await env.metrics();
  const moved = metricsMoved(metricsBefore, after);
  assert.equal(moved[loginKey('token_unreachable')], 1, JSON.stringify(moved));
  assert.deepEqual(await env.status(browser), { session: false });

  await env.control('POST', '/_test/reset');
  await assertLoginWorks(env, 'after the hang');
});

oidcTest('JWKS endpoint down with keys cached: logins keep working, a failed refetch keeps the cache, and so does a restart', async (env) => {
  await env.control('POST', '/_test/fail', { endpoint: 'jwks', status: 500, count: -1 });
  try {
    await assertLoginWorks(env, 'JWKS down, keys cached');

    // An unknown kid makes the gateway try the JWKS endpoint (down): the token is refused, the fetch
    // failure counted, and the cached keys stay in use.
    const jwksBefore = (await env.idpCounters()).jwks;
    await env.control('POST', '/_test/tamper', { defect: 'unknown_kid' });
    const { value: refused, moved } = await env.measure(() => env.login());
    assert.equal(refused.status, 401);
    assert.equal(moved[metricKey('ssogate_id_token_rejected_total', { reason: 'kid_unknown' })], 1, JSON.stringify(moved));
    assert.equal((await env.idpCounters()).jwks, jwksBefore + 1, 'one refetch tried against the failing JWKS endpoint');
    assert.equal(moved[metricKey('ssogate_idp_jwks_fetches_total', { result: 'ok' })], undefined, 'no successful fetch');
    await assertLoginWorks(env, 'after a failed JWKS refetch');

    await env.stopGateway();
    await env.startGateway();
    await assertLoginWorks(env, 'after a restart with the JWKS endpoint down (keys from the store)');
  } finally {
    await env.control('POST', '/_test/reset');
  }
});

rotationTest('key rotation at the IdP is accepted without a restart (one JWKS refetch)', async (env) => {
  await assertLoginWorks(env, 'before the rotation');
  const before = await env.control('GET', '/_test/keys');
  const rotated = await env.control('POST', '/_test/rotate', { keep_old: false });
  assert.notEqual(rotated.signing.ES256, before.signing.ES256, 'a new ES256 kid signs');
  assert.ok(rotated.removed.includes(before.signing.ES256), 'the old kid left the JWKS');
  await env.control('POST', '/_test/counters/reset');

  const { value: res, moved } = await env.measure(() => assertLoginWorks(env, 'after the rotation'));
  assert.equal(res.callback.status, 302);
  const history = await env.control('GET', '/_test/counters');
  assert.equal(history.jwks, 1, 'the gateway fetched the JWKS once, for the new kid');
  assert.equal(moved[metricKey('ssogate_idp_jwks_fetches_total', { result: 'ok' })], 1, JSON.stringify(moved));
  assert.equal(moved[loginKey('ok')], 1);

  await assertLoginWorks(env, 'a second login with the new key');
  assert.equal((await env.idpCounters()).jwks, 1, 'no further fetch once the new key is cached');
});

floodTest('a flood of unknown kids causes at most one JWKS fetch; the rest are counted as rate limited', async (env) => {
  await env.control('POST', '/_test/counters/reset');
  const sequential = 6;
  const parallel = 6;
  const { moved } = await env.measure(async () => {
    await env.control('POST', '/_test/tamper', { defect: 'unknown_kid', count: sequential + parallel });
    for (let i = 0; i < sequential; i++) {
      const res = await env.login();
      assert.equal(res.status, 401, `unknown kid ${i}: 401`);
    }
    const burst = await Promise.all(Array.from({ length: parallel }, () => env.login()));
    assert.ok(burst.every((r) => r.status === 401), `the parallel unknown kids: 401 (${burst.map((r) => r.status)})`);
  });
  const counters = await env.idpCounters();
  assert.ok(counters.jwks <= 1, `at most one JWKS fetch for ${sequential + parallel} unknown kids (got ${counters.jwks})`);
  const total = sequential + parallel;
  assert.equal(moved[metricKey('ssogate_id_token_rejected_total', { reason: 'kid_unknown' })], total, JSON.stringify(moved));
  assert.equal(moved[loginKey('token_invalid')], total);
  assert.equal(
    moved[metricKey('ssogate_idp_jwks_refetch_total', { result: 'rate_limited' })],
    total - counters.jwks,
    `every unknown kid but the one that fetched is counted as rate limited: ${JSON.stringify(moved)}`,
  );
  await assertLoginWorks(env, 'after the flood');
});
