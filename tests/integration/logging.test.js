'use strict';
// Logs are JSON lines on stderr, and cookies, credentials and query strings (which carry tokens) never
// appear in them.

const assert = require('node:assert/strict');
const { itest, request, closedPort } = require('./lib/harness');

const SECRETS = ['cookie-secret-3f9a', 'bearer-secret-77c1', 'query-secret-d41d', 'basic-secret-0b2e', 'body-secret-9e8f'];

itest('every stderr line is a JSON object with ts, level and event', async (t, h) => {
  const up = await h.startStub();
  const gw = await h.startGateway(h.config({ upstream: { url: up.url } }));
  await request(gw, { path: '/echo' });
  await request(gw, { path: '/status/500' });
  await request(gw, { path: '/_sso/healthz' });
  gw.signal('SIGHUP');
  await gw.waitLog((l) => l.event === 'reload', 10000, 'the reload line');
  gw.signal('SIGTERM');
  assert.ok(await gw.waitExit(10000), 'exited');
  assert.ok(gw.stderrLines.length >= 3, 'something was logged');
  for (const line of gw.stderrLines) {
    let value;
    assert.doesNotThrow(() => {
      value = JSON.parse(line);
    }, `not JSON: ${line}`);
    assert.equal(typeof value, 'object', line);
    assert.ok(typeof value.ts === 'string' && !Number.isNaN(Date.parse(value.ts)), `ts: ${line}`);
    assert.ok(['debug', 'info', 'warn', 'error'].includes(value.level), `level: ${line}`);
    assert.ok(typeof value.event === 'string' && value.event.length > 0, `event: ${line}`);
  }
});

itest('cookies, credentials and query strings never reach the log', async (t, h) => {
  const up = await h.startStub();
  const gw = await h.startGateway(h.config({ upstream: { url: up.url } }));
  const headers = {
    cookie: `PSASESSION=${SECRETS[0]}; ssogate=${SECRETS[0]}`,
    authorization: `Bearer ${SECRETS[1]}`,
    'proxy-authorization': `Basic ${Buffer.from(`u:${SECRETS[3]}`).toString('base64')}`,
  };
  await request(gw, { method: 'POST', path: `/echo/login?code=${SECRETS[2]}&state=${SECRETS[2]}`, headers, body: SECRETS[4] });
  await request(gw, { path: `/status/401?token=${SECRETS[2]}`, headers });
  await request(gw, { path: `/_sso/no-such?code=${SECRETS[2]}`, headers });
  const down = await closedPort();
  h.writeConfig(h.config({ upstream: { url: `http://127.0.0.1:${down}` } }));
  gw.signal('SIGHUP');
  await gw.waitLog((l) => l.event === 'reload', 10000, 'the reload line');
  await request(gw, { path: `/echo?access_token=${SECRETS[2]}`, headers });
  gw.signal('SIGTERM');
  await gw.waitExit(10000);
  const log = gw.stderrLines.join('\n');
  for (const secret of SECRETS) {
    assert.ok(!log.includes(secret), `${secret} appears in the log`);
  }
  assert.ok(!log.includes(Buffer.from(`u:${SECRETS[3]}`).toString('base64')), 'encoded credentials appear in the log');
});
