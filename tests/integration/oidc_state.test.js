'use strict';
// Issue 3: the login state of the callback (step 1 of the decision order): single use, bound to the
// browser that started the login, unforgeable; and the cap on logins in flight (limits.logins_in_flight).

const assert = require('node:assert/strict');
const path = require('node:path');
const { request, waitFor, SLOW } = require('./lib/harness');
const { sharedOidcEnv, metricKey, idpJson } = require('./lib/oidc-env');

const oidcTest = sharedOidcEnv('oidc_state');
const cappedTest = sharedOidcEnv('oidc_state_capped', { gateway: { limits: { logins_in_flight: 2 } } });
// Its own processes: its test points the gateway at another IdP.
const reloadTest = sharedOidcEnv('oidc_state_reload');

const LOGINS = 'ssogate_logins_total';
const STALE_PAGE = /This sign-in link is no longer valid/;

function loginKey(result) {
  return metricKey(LOGINS, { result });
}

// Asserts the 400 "no longer valid" answer of a refused callback, with no session cookie.
function assertStale(res, what) {
  assert.equal(res.status, 400, `${what}: 400`);
  assert.match(res.body, STALE_PAGE, `${what}: the page says the link is no longer valid`);
  assert.equal(res.headers.location, undefined, `${what}: no redirect`);
  const lines = [].concat(res.headers['set-cookie'] || []);
  assert.equal(lines.find((c) => /^ssogate=[^;]/.test(c)), undefined, `${what}: no session cookie`);
}

oidcTest('a replayed callback (same URL twice) is refused with 400 and no second exchange', async (env) => {
  const browser = env.browser();
  const callback = await env.authorize({ browser, returnTo: '/echo/replay' });
  const first = await browser.request(callback);
  assert.equal(first.status, 302, 'the first use logs in');
  assert.equal(first.headers.location, '/echo/replay');
  const session = browser.jar.get('ssogate', env.gwUrl);
  assert.ok(session, 'the first use sets the session');

  const tokensBefore = (await env.idpCounters()).token;
  const { value: second, moved } = await env.measure(() => browser.request(callback));
  assertStale(second, 'the replayed callback');
  assert.deepEqual(moved, { [loginKey('state_unknown')]: 1 }, 'only state_unknown moved');
  assert.equal((await env.idpCounters()).token, tokensBefore, 'the replay never reached the token endpoint');
  assert.equal(browser.jar.get('ssogate', env.gwUrl), session, 'the session of the first use is untouched');

  const other = env.browser();
  const third = await other.request(callback);
  assertStale(third, 'the replayed callback in another browser');
});

// A HEAD (a link checker, a prefetch) of the callback, the login start or the front-channel logout
// changes nothing: 404 without a session, no token request, and the callback still logs in after it.
oidcTest('a HEAD of a state-changing endpoint changes nothing', async (env) => {
  const browser = env.browser();
  const callback = await env.authorize({ browser, returnTo: '/echo/head' });
  const tokensBefore = (await env.idpCounters()).token;
  const head = await browser.request(callback, { method: 'HEAD' });
  assert.equal(head.status, 404, 'HEAD of the callback');
  assert.equal([].concat(head.headers['set-cookie'] || []).find((c) => /^ssogate=[^;]/.test(c)), undefined,
    'no session cookie');
  assert.equal((await env.idpCounters()).token, tokensBefore, 'no token request');
  for (const path of ['/_sso/login?return_to=/x', '/_sso/frontchannel-logout?iss=x&sid=y']) {
    assert.equal((await browser.request(`${env.gwUrl}${path}`, { method: 'HEAD' })).status, 404, `HEAD ${path}`);
  }
  const good = await browser.request(callback);
  assert.equal(good.status, 302, 'the callback still logs in after the HEAD');
  assert.equal(good.headers.location, '/echo/head');
  assert.equal((await env.status(browser)).session, true);
});

oidcTest('a forged, missing or oversized state is refused with 400', async (env) => {
  const browser = env.browser();
  const callback = new URL(await env.authorize({ browser }));
  const real = callback.searchParams.get('state');
  const code = callback.searchParams.get('code');
  const forgeries = [
    ['a random state', `state=${'A'.repeat(real.length)}&code=${code}`],
    ['the real state with one character changed', `state=${(real[0] === 'x' ? 'y' : 'x') + real.slice(1)}&code=${code}`],
    ['the real state cut short', `state=${real.slice(0, -1)}&code=${code}`],
    ['the real state extended', `state=${real}A&code=${code}`],
    ['no state', `code=${code}`],
    ['an empty state', `state=&code=${code}`],
    ['a huge state', `state=${'B'.repeat(6000)}&code=${code}`],
  ];
  const { moved } = await env.measure(async () => {
    for (const [what, query] of forgeries) {
      assertStale(await browser.request(`${env.gwUrl}/_sso/callback?${query}`), what);
    }
  });
  assert.equal(moved[loginKey('state_unknown')], forgeries.length, `state_unknown counted each: ${JSON.stringify(moved)}`);
  assert.equal(moved[loginKey('ok')], undefined);
  assert.deepEqual(await env.status(browser), { session: false });

  // The real state was never consumed by the forgeries: it still logs in.
  const good = await browser.request(callback.href);
  assert.equal(good.status, 302, 'the genuine callback still works');
  assert.equal((await env.status(browser)).session, true);
});

oidcTest('a state used from another browser is refused with 400 (binding cookie)', async (env) => {
  const victim = env.browser();
  const callback = await env.authorize({ browser: victim });

  const attacker = env.browser();
  await env.authorize({ browser: attacker });
  assert.ok(attacker.jar.get('ssogate_login', env.gwUrl), 'the attacker has a binding cookie of its own');
  assert.notEqual(attacker.jar.get('ssogate_login', env.gwUrl), victim.jar.get('ssogate_login', env.gwUrl));
  const { value: res, moved } = await env.measure(() => attacker.request(callback));
  assertStale(res, "another browser's binding cookie");
  assert.deepEqual(moved, { [loginKey('state_unbound')]: 1 });
  assert.deepEqual(await env.status(attacker), { session: false });
  // The attempt did not use the victim's login up: it still completes in the victim's browser.
  const own = await victim.request(callback);
  assert.equal(own.status, 302, "the victim's own callback still logs in");
  assert.equal((await env.status(victim)).session, true);

  const bare = env.browser();
  const victim2 = env.browser();
  const callback2 = await env.authorize({ browser: victim2 });
  const { value: res2, moved: moved2 } = await env.measure(() => bare.request(callback2));
  assertStale(res2, 'no binding cookie at all');
  assert.deepEqual(moved2, { [loginKey('state_unbound')]: 1 });

  const victim3 = env.browser();
  const callback3 = await env.authorize({ browser: victim3 });
  const forgedCookie = env.browser();
  forgedCookie.jar.set(env.gwUrl, 'ssogate_login', 'A'.repeat(43));
  assertStale(await forgedCookie.request(callback3), 'a forged binding cookie');
});

oidcTest('a callback with a valid state but no code is refused with 400', async (env) => {
  const browser = env.browser();
  const callback = new URL(await env.authorize({ browser }));
  const state = callback.searchParams.get('state');
  const iss = encodeURIComponent(env.issuer);
  const { value: res, moved } = await env.measure(() => browser.request(`${env.gwUrl}/_sso/callback?state=${state}&iss=${iss}`));
  assert.equal(res.status, 400);
  assert.equal(moved[loginKey('no_code')], 1);
  assert.deepEqual(await env.status(browser), { session: false });
});

// Red team G, finding 1: the callback's iss (RFC 9207, which the IdP sends and announces in
// discovery) was not read, so an answer naming another issuer, or none, had its code exchanged here.
// Now it is refused before the token endpoint, and the login is used up.
oidcTest('RFC 9207: a callback whose iss is another issuer, or missing, is refused with 400: no token request, no session', async (env) => {
  const variants = [
    ['another issuer', (q) => q.set('iss', `${env.issuer}/another-issuer`)],
    ['no iss', (q) => q.delete('iss')],
    ['an iss with a trailing slash', (q) => q.set('iss', `${env.issuer}/`)],
    ['an error answer of another issuer', (q) => {
      q.delete('code');
      q.set('error', 'access_denied');
      q.set('iss', 'https://evil.example');
    }],
  ];
  for (const [what, change] of variants) {
    const browser = env.browser();
    const callback = new URL(await env.authorize({ browser, returnTo: '/echo/mixup' }));
    assert.equal(callback.searchParams.get('iss'), env.issuer, 'the IdP sends its iss');
    change(callback.searchParams);
    const tokensBefore = (await env.idpCounters()).token;
    const { value: res, moved } = await env.measure(() => browser.request(callback.href));
    assert.equal(res.status, 400, `${what}: 400`);
    assert.match(res.body, /Sign-in refused/, `${what}: the refusal page`);
    assert.equal(res.headers.location, undefined, `${what}: no redirect`);
    assert.equal([].concat(res.headers['set-cookie'] || []).find((c) => /^ssogate=[^;]/.test(c)), undefined,
      `${what}: no session cookie`);
    assert.deepEqual(moved, { [loginKey('wrong_issuer')]: 1 }, `${what}: only logins_total{result="wrong_issuer"} moved`);
    assert.equal((await env.idpCounters()).token, tokensBefore, `${what}: the code never reached the token endpoint`);
    assert.deepEqual(await env.status(browser), { session: false }, `${what}: no session`);
    callback.searchParams.set('iss', env.issuer);
    assertStale(await browser.request(callback.href), `${what}: the login was used up`);
  }
});

// Red team G, finding 1, across a reload: a login begun at one IdP whose callback comes after SIGHUP
// pointed the gateway at another had its code (and PKCE verifier) sent to the new IdP's token endpoint.
reloadTest('a reload that changes the IdP while a login is there: the old IdP\'s answer is refused, its code never reaches the new IdP', async (env) => {
  const { h } = env;
  const issuerB = await env.anotherIdp();
  const countersB = async () => (await idpJson(issuerB, env.ca, 'GET', '/_test/counters')).body;

  const browser = env.browser();
  const callback = await env.authorize({ browser, returnTo: '/echo/reload' });
  const tokensA = (await env.idpCounters()).token;
  const from = env.gw.logs.length;
  h.writeConfig({ ...env.config, idp: { ...env.config.idp, issuer: issuerB } });
  env.gw.signal('SIGHUP');
  await env.gw.waitLog((l) => l.event === 'idp_discovery' && l.level === 'info' && l.issuer === issuerB,
    10000 * SLOW, 'discovery of the new IdP', from);

  const { value: res, moved } = await env.measure(() => browser.request(callback));
  assert.equal(res.status, 400, 'the old IdP\'s answer is refused');
  assert.equal(moved[loginKey('wrong_issuer')], 1, 'logins_total{result="wrong_issuer"} +1');
  assert.equal((await countersB()).token, 0, 'the new IdP never got the old IdP\'s code');
  assert.equal((await env.idpCounters()).token, tokensA, 'nor did the old one');
  assert.deepEqual(await env.status(browser), { session: false }, 'no session');

  const again = await env.login({ browser, returnTo: '/echo/reload' });
  assert.equal(again.callback.status, 302, 'a login begun after the reload, at the new IdP, works');
  assert.equal((await countersB()).token, 1, 'its code went to the new IdP');
});

// Red team D, finding 2: at the cap every login start was refused (503) until states expired, 10
// minutes: one client without a session locked every user out. Now a new login gives up the oldest
// login of the address that holds the most, so a flooder loses its own.
cappedTest('logins_in_flight: at the cap a new login gives up the oldest of the address holding the most; a flood from one address locks nobody out', async (env) => {
  const FLOODER = '127.0.0.2';
  // The flooder's own first login, begun in a browser from its address, and a user's from another.
  const flooder = env.browser({ localAddress: FLOODER });
  const flooderStart = await flooder.request(`${env.gwUrl}/_sso/login?return_to=/echo/f`);
  assert.equal(flooderStart.status, 302);
  const user = env.browser();
  const userStart = await user.request(`${env.gwUrl}/_sso/login?return_to=/echo/u`);
  assert.equal(userStart.status, 302);

  const { value: statuses, moved } = await env.measure(async () => {
    const out = [];
    for (let i = 0; i < 30; i++) {
      out.push((await request(env.gw, { path: '/_sso/login?return_to=/', localAddress: FLOODER })).status);
    }
    return out;
  });
  assert.deepEqual(statuses, Array(30).fill(302), 'no login start is refused');
  // Cap 2, held by the user's and the flooder's first: each start of the flood gives up one of the
  // flooder's (as many as the user holds, it gives up its own).
  assert.deepEqual(moved, { [loginKey('started')]: 30, [loginKey('evicted')]: 30 });
  assert.equal(moved[loginKey('too_many_in_flight')], undefined);
  const evicted = env.gw.logs.find((l) => l.event === 'login_evicted');
  assert.ok(evicted && evicted.address === FLOODER && evicted.held >= 1, `logged: ${JSON.stringify(evicted)}`);

  const { value: required, moved: movedRequired } = await env.measure(
    () => request(env.gw, { path: '/private/x', localAddress: FLOODER }));
  assert.equal(required.status, 302, 'a required route starts a login at the cap too');
  assert.equal(movedRequired[loginKey('evicted')], 1);
  assert.equal(required.headers['retry-after'], undefined);

  const done = await env.login({ browser: user, start: userStart.headers.location });
  assert.equal(done.callback.status, 302, "the user's login begun before the flood completes");
  assert.equal(done.status, 200);
  const fresh = await env.login({ returnTo: '/echo/fresh' });
  assert.equal(fresh.callback.status, 302, 'a login begun after the flood completes');
  assert.equal(fresh.status, 200);

  const { value: lost, moved: movedLost } = await env.measure(
    () => env.login({ browser: flooder, start: flooderStart.headers.location }));
  assert.equal(lost.callback.status, 400, "the flooder's given up login is refused");
  assert.match(lost.body, STALE_PAGE);
  assert.equal(movedLost[loginKey('state_unknown')], 1, 'its callback finds no state');
});

// Behind a load balancer every login comes from its address. With trusted_proxies the gateway counts
// logins under the address the balancer forwarded for, so one client flooding through the balancer
// gives up its own logins, not another user's; the address it writes itself into X-Forwarded-For
// (left of the one the balancer appends) changes nothing.
const balancedTest = sharedOidcEnv('oidc_state_balanced',
  { gateway: { limits: { logins_in_flight: 2 }, trusted_proxies: ['127.0.0.3'] } });
balancedTest('logins_in_flight behind a trusted proxy: logins count under the forwarded client, so a flood through it locks no user out', async (env) => {
  const BALANCER = '127.0.0.3';
  const user = env.browser({ localAddress: BALANCER, headers: { 'x-forwarded-for': '203.0.113.7' } });
  const userStart = await user.request(`${env.gwUrl}/_sso/login?return_to=/echo/u`);
  assert.equal(userStart.status, 302);

  const { value: statuses, moved } = await env.measure(async () => {
    const out = [];
    for (let i = 0; i < 20; i++) {
      out.push((await request(env.gw, {
        path: '/_sso/login?return_to=/',
        localAddress: BALANCER,
        headers: { 'x-forwarded-for': '203.0.113.7, 198.51.100.66' },
      })).status);
    }
    return out;
  });
  assert.deepEqual(statuses, Array(20).fill(302), 'no login start is refused');
  // The flood's first takes the free slot; each next one gives up the flood's oldest.
  assert.deepEqual(moved, { [loginKey('started')]: 20, [loginKey('evicted')]: 19 });
  const evicted = env.gw.logs.filter((l) => l.event === 'login_evicted');
  assert.ok(evicted.length > 0 && evicted.every((l) => l.address === '198.51.100.66'),
    `every login given up was the flooder's: ${JSON.stringify(evicted.slice(0, 2))}`);

  const done = await env.login({ browser: user, start: userStart.headers.location });
  assert.equal(done.callback.status, 302, "the user's login begun before the flood completes");
  assert.equal(done.status, 200);
});

// When nothing can be given up (the cap held by callbacks whose code is being exchanged), a login start
// is refused, with no Retry-After: the gateway cannot say when a slot frees.
const onlyOneTest = sharedOidcEnv('oidc_state_cap_one', { gateway: { limits: { logins_in_flight: 1 } } });
onlyOneTest('logins_in_flight: a cap held by a callback being exchanged refuses a login start with 503, no Retry-After', async (env) => {
  const browser = env.browser();
  const callback = await env.authorize({ browser, returnTo: '/echo/held' });
  await env.control('POST', '/_test/fail', { endpoint: 'token', hang_ms: 2000 });
  const tokens = (await env.idpCounters()).token;
  const held = browser.request(callback);
  await waitFor(async () => (await env.idpCounters()).token > tokens, 5000, 'the code exchange under way');
  const { value: busy, moved } = await env.measure(() => request(env.gw, { path: '/_sso/login?return_to=/' }));
  assert.equal(busy.status, 503, 'refused while the callback holds the only slot');
  assert.equal(busy.headers['retry-after'], undefined, 'no Retry-After');
  assert.match(busy.body.toString(), /Sign-in is busy/);
  assert.equal(moved[loginKey('too_many_in_flight')], 1);
  assert.equal((await held).status, 302, 'the held callback completes');
  assert.equal((await request(env.gw, { path: '/_sso/login?return_to=/' })).status, 302, 'its slot is free again');
});

// A reload that lowers logins_in_flight below what is in flight: the next login gives up as many as it
// takes (in memory each costs O(1)), instead of eight at most and then 503 for the next few.
const reloadCapTest = sharedOidcEnv('oidc_state_cap_reload', { gateway: { limits: { logins_in_flight: 40 } } });
reloadCapTest('logins_in_flight lowered by a reload: the next logins start at once', async (env) => {
  for (let i = 0; i < 40; i++) {
    await request(env.gw, { path: '/_sso/login?return_to=/', localAddress: '127.0.0.2' });
  }
  const reloads = () => env.gw.logs.filter((l) => l.event === 'reload').length;
  const before = reloads();
  env.h.writeConfig({ ...env.config, limits: { ...env.config.limits, logins_in_flight: 4 } }, path.basename(env.configFile));
  env.gw.signal('SIGHUP');
  await waitFor(() => reloads() > before, 10000, 'the reload');
  const statuses = [];
  for (let i = 0; i < 6; i++) {
    statuses.push((await request(env.gw, { path: '/_sso/login?return_to=/', localAddress: '127.0.0.1' })).status);
  }
  assert.deepEqual(statuses, [302, 302, 302, 302, 302, 302], 'every login starts');
});
