'use strict';
// Issue 3: the gateway's SSO sessions over time: idle and absolute expiry (session.idle_timeout_s 3,
// absolute_timeout_s 6), and sessions that survive a restart and a kill -9 (LMDB under data_dir).
// Expiry is checked with the cookie sent by hand, so the server's own check is what is tested, not the
// cookie's Max-Age in a jar.

const assert = require('node:assert/strict');
const path = require('node:path');
const { request, sleep, SLOW } = require('./lib/harness');
const { sharedOidcEnv, verifyAssertion, parseSetCookies } = require('./lib/oidc-env');

const IDLE_S = 3;
const ABSOLUTE_S = 6;
const absoluteTest = sharedOidcEnv('oidc_session_absolute', {
  gateway: { session: { idle_timeout_s: IDLE_S, absolute_timeout_s: ABSOLUTE_S } },
});
// The absolute timeout far away, so that only the idle timeout can end the session.
const idleTest = sharedOidcEnv('oidc_session_idle', {
  gateway: { session: { idle_timeout_s: IDLE_S, absolute_timeout_s: 60 } },
});
const restartTest = sharedOidcEnv('oidc_session_restart');

// A full login; resolves {cookie (the session id), loggedInAt (ms, after the session was created)}.
async function loggedIn(env) {
  const res = await env.login({ returnTo: '/echo/start' });
  assert.equal(res.callback.status, 302, 'logged in');
  const cookie = parseSetCookies(res.callback.headers['set-cookie']).ssogate;
  assert.ok(cookie, 'the session cookie is set');
  return { cookie: cookie.value, maxAge: Number(cookie.attributes['max-age']), loggedInAt: Date.now() };
}

// What the gateway makes of a request carrying the session cookie: {identity (the X-SSO-Subject the
// upstream saw, or undefined), echo}.
async function withCookie(env, cookie, path = '/echo/probe') {
  const res = await request(env.gw, { path, headers: { cookie: `ssogate=${cookie}` } });
  assert.equal(res.status, 200, `GET ${path}`);
  const echo = JSON.parse(res.body.toString());
  return { identity: echo.headers['x-sso-subject'], echo };
}

// Asserts that cookie no longer opens a session, in every way the user would notice.
async function assertSessionGone(env, cookie, what) {
  assert.equal((await withCookie(env, cookie)).identity, undefined, `${what}: no identity upstream`);
  const required = await request(env.gw, { path: '/private/x', headers: { cookie: `ssogate=${cookie}` } });
  assert.equal(required.status, 302, `${what}: a required route redirects to the login again`);
  assert.ok(String(required.headers.location).startsWith(`${env.issuer}/auth?`), `${what}: to the IdP again`);
  const status = await request(env.gw, { path: '/_sso/status', headers: { cookie: `ssogate=${cookie}` } });
  assert.deepEqual(JSON.parse(status.body.toString()), { session: false }, `${what}: /_sso/status`);
}

// Sleeps until ms after t0 (a Date.now() value).
function sleepUntil(t0, ms) {
  return sleep(Math.max(0, t0 + ms - Date.now()));
}

idleTest(`idle expiry: a session unused for more than ${IDLE_S} s is gone`, async (env) => {
  const { cookie, loggedInAt } = await loggedIn(env);
  // Used every 1.5 s past IDLE_S + 1 s since the login: each use keeps the session alive.
  for (const at of [1500, 3000, 4500]) {
    await sleepUntil(loggedInAt, at);
    assert.equal((await withCookie(env, cookie)).identity, 'itc-user-alice', `used at ${at} ms: alive`);
  }
  const lastUse = Date.now();
  // The store keeps whole seconds: IDLE_S and a half after the last use is past the idle timeout.
  await sleepUntil(lastUse, IDLE_S * 1000 + 500);
  await assertSessionGone(env, cookie, 'idle');
});

absoluteTest(`absolute expiry: a session in constant use ends ${ABSOLUTE_S} s after the login`, async (env) => {
  const { cookie, maxAge, loggedInAt } = await loggedIn(env);
  assert.ok(maxAge > 0 && maxAge <= ABSOLUTE_S, `the cookie's Max-Age (${maxAge}) is at most absolute_timeout_s`);
  // Used every second (well within the idle timeout) until one second before the absolute timeout.
  for (let second = 1; second <= ABSOLUTE_S - 2; second++) {
    await sleepUntil(loggedInAt, second * 1000);
    assert.equal((await withCookie(env, cookie)).identity, 'itc-user-alice', `alive at ${second} s`);
  }
  // The store keeps whole seconds, so a session of ABSOLUTE_S lives between ABSOLUTE_S - 1 and
  // ABSOLUTE_S real seconds: "just before" is under ABSOLUTE_S - 1.
  await sleepUntil(loggedInAt, ABSOLUTE_S * 1000 - 1500);
  assert.equal((await withCookie(env, cookie)).identity, 'itc-user-alice', `still alive just before ${ABSOLUTE_S} s`);
  await sleepUntil(loggedInAt, ABSOLUTE_S * 1000 + 700);
  await assertSessionGone(env, cookie, 'absolute');
});

restartTest('the session survives a restart of the gateway (SIGTERM, start again)', async (env) => {
  const { cookie } = await loggedIn(env);
  const before = await withCookie(env, cookie);
  const kidBefore = verifyAssertion(before.echo.headers['x-sso-assertion'], await env.gatewayJwks()).header.kid;

  await env.stopGateway();
  await env.startGateway();

  const after = await withCookie(env, cookie);
  assert.equal(after.identity, 'itc-user-alice', 'the same cookie still carries the identity');
  const status = await request(env.gw, { path: '/_sso/status', headers: { cookie: `ssogate=${cookie}` } });
  const body = JSON.parse(status.body.toString());
  assert.equal(body.session, true);
  assert.equal(body.subject, 'itc-user-alice');
  const { header } = verifyAssertion(after.echo.headers['x-sso-assertion'], await env.gatewayJwks());
  assert.equal(header.kid, kidBefore, 'the assertion key survives the restart too');
  const required = await request(env.gw, { path: '/private/after-restart', headers: { cookie: `ssogate=${cookie}` } });
  assert.equal(required.status, 200, 'a required route opens with the old cookie');
});

restartTest('the session survives a kill -9 right after the login', async (env) => {
  const { cookie } = await loggedIn(env);
  await env.stopGateway({ kill: true });
  await env.startGateway();

  assert.equal((await withCookie(env, cookie)).identity, 'itc-user-alice', 'the session written just before the kill is there');
  const required = await request(env.gw, { path: '/private/after-kill', headers: { cookie: `ssogate=${cookie}` } });
  assert.equal(required.status, 200, 'a required route opens with the old cookie');

  const again = await env.login({ returnTo: '/echo/new' });
  assert.equal(again.callback.status, 302, 'new logins work after the kill');
});

// A reload that lowers session.absolute_timeout_s or idle_timeout_s (an operator shortening sessions,
// say after a stolen laptop) applies to the sessions already made, at their next request: each record
// kept the timeouts of its login, so before this a session made under 12 h kept its 12 h after a reload
// to 2 s (and the same for the idle timeout).
const reloadTimeoutsTest = sharedOidcEnv('oidc_session_reload');
reloadTimeoutsTest('a reload that lowers the session timeouts ends the sessions that outlived them', async (env) => {
  const file = require('node:path').basename(env.configFile);
  const reload = async (session) => {
    const from = env.gw.logs.length;
    env.h.writeConfig({ ...env.config, session }, file);
    env.gw.signal('SIGHUP');
    await env.gw.waitLog((l) => l.event === 'reload' && l.level === 'info', 10000, 'the reload', from);
  };

  const { cookie: old, loggedInAt } = await loggedIn(env);
  assert.equal((await withCookie(env, old)).identity, 'itc-user-alice', 'alive before the reload');
  await sleepUntil(loggedInAt, 3500);
  await reload({ idle_timeout_s: 2, absolute_timeout_s: 3 });
  await assertSessionGone(env, old, 'older than the new absolute_timeout_s');
  // A session made after the reload lives by the new timeouts, as before.
  const { cookie: fresh } = await loggedIn(env);
  assert.equal((await withCookie(env, fresh)).identity, 'itc-user-alice', 'a new session works');

  await reload({ idle_timeout_s: 1800, absolute_timeout_s: 43200 });
  const { cookie: idle, loggedInAt: idleAt } = await loggedIn(env);
  assert.equal((await withCookie(env, idle)).identity, 'itc-user-alice', 'alive before the reload');
  await sleepUntil(idleAt, 3500);
  await reload({ idle_timeout_s: 2, absolute_timeout_s: 43200 });
  await assertSessionGone(env, idle, 'unused for longer than the new idle_timeout_s');
});

// A session made in claims mode stands on no link: after a reload to link mode it must not reach the
// PSA as an identity. It did: X-SSO-Subject and an assertion whose sub (in link mode the PSA user) was
// the IdP sub, for an IdP user linked to nobody.
reloadTimeoutsTest('a claims-mode session carries no identity once a reload turns link mode on', async (env) => {
  const file = require('node:path').basename(env.configFile);
  const { cookie } = await loggedIn(env);
  assert.equal((await withCookie(env, cookie)).identity, 'itc-user-alice', 'claims mode: the identity goes upstream');
  const from = env.gw.logs.length;
  env.h.writeConfig({ ...env.config, identity: 'link' }, file);
  env.gw.signal('SIGHUP');
  await env.gw.waitLog((l) => l.event === 'reload' && l.level === 'info', 10000, 'the reload', from);
  const { echo } = await withCookie(env, cookie);
  const sso = Object.keys(echo.headers).filter((name) => name.startsWith('x-sso-'));
  assert.deepEqual(sso, [], 'link mode: no identity header for a session of no PSA user');
  const required = await request(env.gw, { path: '/private/x', headers: { cookie: `ssogate=${cookie}` } });
  assert.equal(required.status, 302, 'a required route redirects to the login again');
  assert.ok(String(required.headers.location).startsWith(`${env.issuer}/auth?`), 'to the IdP');
});

// A session names its IdP's subject: once a reload points idp.issuer at another IdP, the old IdP's
// sessions must not reach the PSA as identities (the new IdP may give the same sub to someone else,
// and the old one's back-channel logouts are refused now). They did, until their own timeouts.
const reloadIssuerTest = sharedOidcEnv('oidc_session_issuer');
reloadIssuerTest('a reload that changes idp.issuer ends the sessions of the old IdP', async (env) => {
  const { h } = env;
  const issuerB = await env.anotherIdp();

  const { cookie } = await loggedIn(env);
  assert.equal((await withCookie(env, cookie)).identity, 'itc-user-alice', 'the old IdP\'s session works');
  const from = env.gw.logs.length;
  h.writeConfig({ ...env.config, idp: { ...env.config.idp, issuer: issuerB } }, path.basename(env.configFile));
  env.gw.signal('SIGHUP');
  await env.gw.waitLog((l) => l.event === 'idp_discovery' && l.level === 'info' && l.issuer === issuerB,
    10000 * SLOW, 'discovery of the new IdP', from);
  const { echo } = await withCookie(env, cookie);
  const sso = Object.keys(echo.headers).filter((name) => name.startsWith('x-sso-'));
  assert.deepEqual(sso, [], 'no identity header for the old IdP\'s session');
  const required = await request(env.gw, { path: '/private/x', headers: { cookie: `ssogate=${cookie}` } });
  assert.equal(required.status, 302, 'a required route starts a login again');
  assert.ok(String(required.headers.location).startsWith(`${issuerB}/auth?`), 'at the new IdP');
});
