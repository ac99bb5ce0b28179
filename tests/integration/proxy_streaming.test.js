'use strict';
// Responses are streamed with backpressure: a 200 MiB download goes through while the gateway's memory
// stays flat, even when the client stops reading for a while.

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { itest, request, sleep } = require('./lib/harness');
const bigdata = require('../stub/lib/bigdata');

const MiB = 1024 * 1024;
const RSS_GROWTH_LIMIT = 64 * MiB;

// Sanitizer builds keep freed memory in a quarantine (256 MiB by default), which would count as growth
// here; a small quarantine keeps the bound meaningful. Ignored by builds without ASan.
function gatewayEnv() {
  const asan = process.env.ASAN_OPTIONS ? `${process.env.ASAN_OPTIONS}:` : '';
  return { ASAN_OPTIONS: `${asan}quarantine_size_mb=16` };
}

// Reads res to the end: pauses reading for pauseMs once each offset in pauseAt is passed, reads slowly
// (a 20 ms stop after every chunk) between slowFrom and slowTo. Resolves {bytes, sha256}.
function readPaced(res, { pauseAt = [], pauseMs = 0, slowFrom = Infinity, slowTo = Infinity } = {}) {
  return new Promise((resolve, reject) => {
    const hash = crypto.createHash('sha256');
    const pending = [...pauseAt];
    let bytes = 0;
    res.on('data', (chunk) => {
      hash.update(chunk);
      bytes += chunk.length;
      let stopMs = 0;
      if (pending.length > 0 && bytes >= pending[0]) {
        pending.shift();
        stopMs = pauseMs;
      } else if (bytes >= slowFrom && bytes < slowTo) {
        stopMs = 20;
      }
      if (stopMs > 0) {
        res.pause();
        setTimeout(() => res.resume(), stopMs);
      }
    });
    res.on('end', () => resolve({ bytes, sha256: hash.digest('hex') }));
    res.on('error', reject);
    res.on('aborted', () => reject(new Error(`response aborted after ${bytes} bytes`)));
  });
}

itest('a 200 MiB download streams through with bounded gateway memory', { timeout: 300000 }, async (t, h) => {
  const up = await h.startStub();
  const gw = await h.startGateway(h.config({ upstream: { url: up.url } }), { env: gatewayEnv() });
  const warm = await request(gw, { path: '/big?mb=1' });
  assert.equal(warm.status, 200);
  const baseline = gw.rss();

  let peak = baseline;
  const sampler = setInterval(() => {
    try {
      peak = Math.max(peak, gw.rss());
    } catch (err) {
      // the process is gone: the download below fails and says so
    }
  }, 50);
  try {
    const total = 200 * MiB;
    const res = await request(gw, { path: '/big?mb=200', stream: true, timeout: 30000 });
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-length'], String(total), 'content-length passed through');
    const got = await readPaced(res.res, {
      pauseAt: [16 * MiB, 64 * MiB, 128 * MiB],
      pauseMs: 1500,
      slowFrom: 30 * MiB,
      slowTo: 38 * MiB,
    });
    assert.equal(got.bytes, total, 'every byte arrived');
    assert.equal(got.sha256, bigdata.digest(total), 'the bytes are the ones the upstream sent');
  } finally {
    clearInterval(sampler);
  }
  const growth = peak - baseline;
  t.diagnostic(`gateway RSS baseline ${(baseline / MiB).toFixed(1)} MiB, peak ${(peak / MiB).toFixed(1)} MiB, growth ${(growth / MiB).toFixed(1)} MiB`);
  assert.ok(growth < RSS_GROWTH_LIMIT, `RSS grew by ${(growth / MiB).toFixed(1)} MiB during the transfer (limit 64 MiB)`);
  assert.equal((await request(gw, { path: '/_sso/healthz' })).status, 200, 'still healthy afterwards');
});

itest('chunked and concurrent downloads arrive intact', { timeout: 300000 }, async (t, h) => {
  const up = await h.startStub();
  const gw = await h.startGateway(h.config({ upstream: { url: up.url } }), { env: gatewayEnv() });
  const downloads = [
    { path: '/big?mb=20&chunked=1', bytes: 20 * MiB },
    { path: '/big?mb=8&kb=3', bytes: 8 * MiB + 3 * 1024 },
    { path: '/big?kb=1&chunked=1', bytes: 1024 },
    { path: '/big?mb=0', bytes: 0 },
  ];
  const results = await Promise.all(
    downloads.map(async (d, i) => {
      const res = await request(gw, { path: d.path, stream: true, timeout: 30000 });
      assert.equal(res.status, 200, d.path);
      return readPaced(res.res, { pauseAt: i === 0 ? [2 * MiB] : [], pauseMs: 500 });
    }),
  );
  results.forEach((got, i) => {
    assert.equal(got.bytes, downloads[i].bytes, `${downloads[i].path}: length`);
    assert.equal(got.sha256, bigdata.digest(downloads[i].bytes), `${downloads[i].path}: digest`);
  });
});

itest('a client that disconnects mid-download leaves the gateway healthy', { timeout: 120000 }, async (t, h) => {
  const up = await h.startStub();
  const gw = await h.startGateway(h.config({ upstream: { url: up.url } }), { env: gatewayEnv() });
  for (let i = 0; i < 3; i++) {
    const res = await request(gw, { path: '/big?mb=100', stream: true, timeout: 30000 });
    assert.equal(res.status, 200);
    await new Promise((resolve) => {
      let bytes = 0;
      res.res.on('data', (chunk) => {
        bytes += chunk.length;
        if (bytes > 4 * MiB) {
          res.res.destroy();
          resolve();
        }
      });
      res.res.on('close', resolve);
    });
  }
  await sleep(200);
  assert.ok(gw.alive, 'gateway still running');
  assert.equal((await request(gw, { path: '/_sso/healthz' })).status, 200);
  const after = await request(gw, { path: '/big?mb=2' });
  assert.equal(after.status, 200);
  assert.equal(after.body.length, 2 * MiB);
});
