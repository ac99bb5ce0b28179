'use strict';
// SIGTERM while the gateway waits on someone else for a request: (a) a login callback waits on a slow
// token endpoint, (b) My Settings waits on a slow whoami, (c) a tenant link waits on its token exchange
// before the link write. Each request gets its real answer, the shutdown log counts it in flight, and
// the process exits 0 afterwards. (Before, the drain saw 0 requests in flight, exited at once and the
// browser got an empty reply, its single-use login state spent.)

const assert = require('node:assert/strict');
const harness = require('./lib/harness');
const { sharedLinkEnv } = require('./lib/link-env');

const { sleep, SLOW } = harness;
const HOLD_MS = 1500;

const shared = sharedLinkEnv('drain_async', { tenants: ['t1', 't2'], gateway: { drain_timeout_s: 10 } });

// Each test stops the gateway: the next one gets it started again, whatever happened.
function test(name, fn) {
  shared(name, async (env) => {
    try {
      await fn(env);
    } finally {
      if (env.terminated) {
        env.terminated = false;
        await env.gw.waitExit(15000 * SLOW);
        await env.startGateway();
      }
    }
  });
}

// Sends SIGTERM while pending() is in flight; resolves {answer, exit, shutdown (the log line)}.
async function terminateDuring(env, pending) {
  await sleep(300);
  const gw = env.gw;
  const from = gw.logs.length;
  env.terminated = true;
  gw.signal('SIGTERM');
  const answer = await pending;
  const exit = await gw.waitExit(15000 * SLOW);
  const shutdown = gw.logs.slice(from).find((l) => l.event === 'shutdown' && /draining/.test(l.msg));
  return { answer, exit, shutdown };
}

test('(a) SIGTERM while a login callback waits on the token endpoint', async (env) => {
  const t = env.tenant('t1');
  await env.linkTenant('t1');
  await env.linkUser(t.staff, t.user);
  const browser = env.browser();
  browser.holdCallback = true;
  await env.ssoLogin(t.user, { browser });
  browser.holdCallback = false;
  const callback = browser.heldCallback;
  assert.ok(callback, 'the IdP sent the browser to the callback');
  await env.control('POST', '/_test/fail', { endpoint: 'token', hang_ms: HOLD_MS });
  const { answer, exit, shutdown } = await terminateDuring(env, browser.request(callback));
  assert.equal(answer.status, 302, `the callback got its real answer (${answer.status})`);
  assert.match(String(answer.headers['set-cookie']), /ssogate=/, 'with the new session');
  assert.deepEqual(exit, { code: 0, signal: null }, 'then the gateway exited 0');
  assert.match(shutdown.msg, /draining 1 requests? in flight/, `counted: ${shutdown.msg}`);
});

test('(b) SIGTERM while My Settings waits on a slow whoami', async (env) => {
  const t = env.tenant('t1');
  const { browser } = await env.psaLogin(t.admin);
  await env.configurePsa({ whoami_delay_ms: HOLD_MS });
  try {
    const { answer, exit, shutdown } = await terminateDuring(env, env.settings(browser));
    assert.equal(answer.status, 200, `My Settings got its real page (${answer.status})`);
    assert.match(answer.body, /IT Complete/, 'the page itself');
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.match(shutdown.msg, /draining 1 requests? in flight/, `counted: ${shutdown.msg}`);
  } finally {
    await env.configurePsa({ whoami_delay_ms: 0 });
  }
});

test('(c) SIGTERM while a tenant link waits on its exchange: the link is written and kept', async (env) => {
  const t = env.tenant('t2');
  const { browser } = await env.psaLogin(t.admin);
  browser.holdCallback = true;
  await env.enableTenant(browser, t.master);
  browser.holdCallback = false;
  const callback = browser.heldCallback;
  assert.ok(callback, 'the IdP sent the admin to the callback');
  await env.control('POST', '/_test/fail', { endpoint: 'token', hang_ms: HOLD_MS });
  const { answer, exit, shutdown } = await terminateDuring(env, browser.request(callback));
  assert.equal(answer.status, 302, `the link callback got its real answer (${answer.status})`);
  assert.match(answer.headers.location, /done=tenant_linked/, 'the tenant was linked');
  assert.deepEqual(exit, { code: 0, signal: null });
  assert.match(shutdown.msg, /draining 1 requests? in flight/, `counted: ${shutdown.msg}`);
  const link = await env.tenantLink('t2');
  assert.ok(link, 'the link written during the drain is in the store the gateway left');
});

