'use strict';
// SIGHUP reloads the configuration: a good file takes effect for new requests, a broken one is refused
// (logged, counted) while the old configuration keeps serving, and no request fails across a reload.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const { itest, request, metricValue, waitFor, sleep, SLOW } = require('./lib/harness');

const RELOAD_WAIT_MS = 10000 * SLOW;

// Which stub answered a GET /echo through the gateway.
async function served(gw, agent) {
  const res = await request(gw, { path: '/echo/who', agent });
  assert.equal(res.status, 200, `status ${res.status}: ${res.body}`);
  return JSON.parse(res.body.toString()).server;
}

// Sends requests through the gateway until stop() is called, on keep-alive and fresh connections,
// several at a time. stop() resolves {ok, failures: [String], servers: Set}.
function requestLoop(gw) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const failures = [];
  const servers = new Set();
  let ok = 0;
  let running = true;
  const worker = async (n) => {
    while (running) {
      try {
        const res = await request(gw, { path: `/echo/loop${n}`, agent: n % 2 ? agent : false, timeout: 5000 * SLOW });
        if (res.status === 200) {
          ok++;
          servers.add(JSON.parse(res.body.toString()).server);
        } else {
          failures.push(`status ${res.status}`);
        }
      } catch (err) {
        failures.push(err.message);
      }
    }
  };
  const workers = [0, 1, 2, 3].map(worker);
  return async () => {
    running = false;
    await Promise.all(workers);
    agent.destroy();
    return { ok, failures, servers };
  };
}

// Reload log lines since index from.
const reloadLines = (gw, from) => gw.logs.slice(from).filter((l) => l.event === 'reload');

itest('SIGHUP with a good file switches new requests to the new upstream', async (t, h) => {
  const a = await h.startStub({ name: 'A' });
  const b = await h.startStub({ name: 'B' });
  const gw = await h.startGateway(h.config({ upstream: { url: a.url } }));
  assert.equal(await served(gw), 'A');
  const okBefore = metricValue(await h.metrics(gw), 'ssogate_reloads_total', { result: 'ok' }) || 0;

  const stop = requestLoop(gw);
  await sleep(300);
  const from = gw.logs.length;
  h.writeConfig(h.config({ upstream: { url: b.url } }));
  gw.signal('SIGHUP');
  await waitFor(async () => (await served(gw)) === 'B', RELOAD_WAIT_MS, 'requests served by B');
  await sleep(300);
  const loop = await stop();

  assert.deepEqual(loop.failures, [], `no request failed across the reload (${loop.ok} ok)`);
  assert.ok(loop.servers.has('B'), 'the loop reached B after the reload');
  const line = await gw.waitLog((l) => l.event === 'reload', RELOAD_WAIT_MS, 'a reload log line', from);
  assert.notEqual(line.level, 'error', `reload logged as success: ${JSON.stringify(line)}`);
  for (let i = 0; i < 5; i++) {
    assert.equal(await served(gw), 'B', 'every new request goes to B');
  }
  const okAfter = metricValue(await h.metrics(gw), 'ssogate_reloads_total', { result: 'ok' });
  assert.equal(okAfter, okBefore + 1, 'ssogate_reloads_total{result="ok"} counted the reload');
});

itest('SIGHUP with a broken file keeps the old configuration serving', async (t, h) => {
  const a = await h.startStub({ name: 'A' });
  const b = await h.startStub({ name: 'B' });
  const gw = await h.startGateway(h.config({ upstream: { url: a.url } }));
  const metricsBefore = await h.metrics(gw);
  const failedBefore = metricValue(metricsBefore, 'ssogate_reloads_total', { result: 'failed' });
  assert.notEqual(failedBefore, undefined, 'ssogate_reloads_total{result="failed"} is exported from the start');

  const broken = [
    ['bad JSON', `{"listeners": [ {"address": "127.0.0.1", "port": 0} ], "upstream": {"url": "${b.url}"`],
    ['unknown key', JSON.stringify(h.config({ upstream: { url: b.url }, no_such_key: true }))],
    ['bad upstream URL', JSON.stringify(h.config({ upstream: { url: 'ftp://127.0.0.1:1' } }))],
    ['out of range', JSON.stringify(h.config({ upstream: { url: b.url, pool_size: 0 } }))],
    ['empty file', ''],
  ];
  const stop = requestLoop(gw);
  let expectedFailed = failedBefore;
  for (const [what, text] of broken) {
    const from = gw.logs.length;
    fs.writeFileSync(gw.configFile, text);
    gw.signal('SIGHUP');
    const line = await gw.waitLog((l) => l.event === 'reload', RELOAD_WAIT_MS, `the reload log line (${what})`, from);
    assert.equal(line.level, 'error', `${what}: reload refused at level error: ${JSON.stringify(line)}`);
    expectedFailed++;
    await waitFor(async () => metricValue(await h.metrics(gw), 'ssogate_reloads_total', { result: 'failed' }) === expectedFailed,
      RELOAD_WAIT_MS, `${what}: ssogate_reloads_total{result="failed"} = ${expectedFailed}`);
    assert.equal(await served(gw), 'A', `${what}: the old configuration still serves`);
    assert.equal(reloadLines(gw, from).filter((l) => l.level !== 'error').length, 0, `${what}: no successful reload logged`);
  }
  fs.rmSync(gw.configFile);
  const from = gw.logs.length;
  gw.signal('SIGHUP');
  const missing = await gw.waitLog((l) => l.event === 'reload', RELOAD_WAIT_MS, 'the reload log line (missing file)', from);
  assert.equal(missing.level, 'error', 'a missing file is refused');
  await sleep(300);
  const loop = await stop();
  assert.deepEqual(loop.failures, [], `no request failed across the broken reloads (${loop.ok} ok)`);
  assert.deepEqual([...loop.servers], ['A'], 'only A served');
  assert.ok(gw.alive);

  h.writeConfig(h.config({ upstream: { url: b.url } }));
  gw.signal('SIGHUP');
  await waitFor(async () => (await served(gw)) === 'B', RELOAD_WAIT_MS, 'a good file after broken ones is taken');
});

itest('SIGHUP with a FIFO or a device named by the configuration is refused at once, serving on', async (t, h) => {
  const a = await h.startStub({ name: 'A' });
  const gw = await h.startGateway(h.config({ upstream: { url: a.url } }));
  const fifo = h.file('named.fifo');
  require('node:child_process').execFileSync('mkfifo', [fifo]);
  const cases = [
    ['assertion key a FIFO', h.config({ upstream: { url: a.url }, assertion: { key_file: fifo } })],
    ['assertion key /dev/zero', h.config({ upstream: { url: a.url }, assertion: { key_file: '/dev/zero' } })],
  ];
  for (const [what, config] of cases) {
    const from = gw.logs.length;
    h.writeConfig(config);
    gw.signal('SIGHUP');
    // Before the fix the event loop stayed in open(2) (or read /dev/zero for ever): no line, no answer.
    const line = await gw.waitLog((l) => l.event === 'reload', 5000 * SLOW, `the reload log line (${what})`, from);
    assert.equal(line.result, 'refused', `${what}: ${JSON.stringify(line)}`);
    assert.match(line.reason, /assertion\.key_file: .*not a regular file/, `${what}: ${line.reason}`);
    assert.equal(await served(gw), 'A', `${what}: the old configuration still serves`);
  }
  fs.rmSync(gw.configFile);
  require('node:child_process').execFileSync('mkfifo', [gw.configFile]);
  const from = gw.logs.length;
  gw.signal('SIGHUP');
  const line = await gw.waitLog((l) => l.event === 'reload', 5000 * SLOW, 'the reload log line (configuration a FIFO)', from);
  assert.match(line.reason, /not a regular file/, line.reason);
  assert.equal(await served(gw), 'A', 'the configuration a FIFO: the old one still serves');
});

itest('a request in flight during a reload finishes on the upstream it began with', async (t, h) => {
  const a = await h.startStub({ name: 'A' });
  const b = await h.startStub({ name: 'B' });
  const gw = await h.startGateway(h.config({ upstream: { url: a.url } }));
  const slow = request(gw, { path: '/slow?ms=1500' });
  await waitFor(async () => (await a.requests()).some((r) => r.url === '/slow?ms=1500'), 5000 * SLOW, 'the slow request at A');
  h.writeConfig(h.config({ upstream: { url: b.url } }));
  gw.signal('SIGHUP');
  await waitFor(async () => (await served(gw)) === 'B', RELOAD_WAIT_MS, 'new requests served by B');
  const res = await slow;
  assert.equal(res.status, 200);
  assert.equal(JSON.parse(res.body.toString()).server, 'A');
});
