'use strict';
// Headers on the way through: the identity namespace X-SSO-* can never be forged by a client,
// hop-by-hop headers stop at the gateway (both ways), X-Forwarded-* and X-Request-Id are set.

const assert = require('node:assert/strict');
const { itest, request, rawExchange } = require('./lib/harness');

async function setup(h) {
  const up = await h.startStub();
  const gw = await h.startGateway(h.config({ upstream: { url: up.url } }));
  return { up, gw };
}

const echoOf = (res) => {
  assert.equal(res.status, 200, `status ${res.status}: ${res.body}`);
  return JSON.parse(res.body.toString());
};

const ssoHeaders = (echo) => echo.rawHeaders.filter(([name]) => /^\s*x-sso-/i.test(name));

itest('client-sent X-SSO-* headers never reach the upstream', async (t, h) => {
  const { gw, up } = await setup(h);
  const forged = [
    ['X-SSO-User', 'admin'],
    ['X-SSO-Assertion', 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.'],
    ['x-sso-tenant', '1'],
    ['X-Sso-Subject', 'root'],
    ['X-SSO-IdP-Tenant', 'evil'],
    ['X-SSO-Email', 'ceo@example.com'],
    ['X-SSO-User', 'second copy'],
    ['X-SSO-', 'empty suffix'],
    ['X-Other', 'kept'],
  ];
  for (const method of ['GET', 'POST']) {
    const echo = echoOf(await request(gw, { method, path: '/echo/forged', headers: forged, body: method === 'POST' ? 'x' : undefined }));
    assert.deepEqual(ssoHeaders(echo), [], `${method}: no X-SSO-* header upstream`);
    assert.equal(echo.headers['x-other'], 'kept', 'other headers pass');
  }
  const log = await up.requests();
  for (const entry of log) {
    assert.deepEqual(entry.headers.filter(([name]) => /^\s*x-sso-/i.test(name)), [], `${entry.url}: no X-SSO-*`);
  }
});

itest('X-SSO-* smuggled through odd header syntax is refused or stripped', async (t, h) => {
  // A raw upstream sees the exact bytes the gateway sends, so a header that only a lenient PSA would
  // read as X-SSO-* (padded name, obs-fold continuation) is caught too.
  const raw = await h.rawUpstream();
  const gw = await h.startGateway(h.config({ upstream: { url: raw.url } }));
  const variants = [
    'X-SSO-User : padded-name\r\n',
    'X-SSO-User:\tab-value\r\n',
    'X-SSO-User:no-space\r\n',
    'X-Filler: a\r\n X-SSO-User: folded\r\n',
    'X-Filler: a\r\n\tX-SSO-User: folded-tab\r\n',
    'x-sso-user: lower\r\nX-SSO-USER: upper\r\n',
  ];
  for (const variant of variants) {
    const before = raw.heads.length;
    const res = await rawExchange(gw.port,
      `GET /echo/odd HTTP/1.1\r\nHost: example.test\r\n${variant}Connection: close\r\n\r\n`);
    assert.ok(res.status !== null, `an answer for ${JSON.stringify(variant)}`);
    if (res.status === 200) {
      assert.equal(raw.heads.length, before + 1, 'forwarded once');
      const head = raw.heads[before];
      assert.doesNotMatch(head, /^[ \t]*x-sso-/im, `stripped: ${JSON.stringify(variant)} gave\n${head}`);
    } else {
      assert.equal(res.status, 400, `refused as a bad request: ${JSON.stringify(variant)}`);
      assert.equal(raw.heads.length, before, 'a refused request is not forwarded');
    }
  }
});

itest('a request body never becomes a second request upstream (no smuggling)', async (t, h) => {
  // The body is a complete request with a forged identity: whatever the method, the upstream must get
  // it as a framed body (Content-Length or chunked), never as a request of its own.
  const { gw, up } = await setup(h);
  const inner = 'GET /echo/smuggled HTTP/1.1\r\nHost: x\r\nX-SSO-User: admin\r\n\r\n';
  for (const method of ['GET', 'DELETE', 'OPTIONS', 'PATCH', 'PUT', 'POST']) {
    const res = await rawExchange(gw.port,
      `${method} /echo/outer-${method} HTTP/1.1\r\nHost: x\r\nContent-Length: ${inner.length}\r\nConnection: close\r\n\r\n${inner}`);
    assert.ok(res.status !== null, `${method}: an answer`);
    if (res.status === 200) {
      assert.equal(JSON.parse(res.response.body.toString()).bodyLength, inner.length, `${method}: the body arrived as a body`);
    }
  }
  const smuggled = (await up.requests()).filter((r) => r.url.includes('smuggled'));
  assert.deepEqual(smuggled.map((r) => r.method + ' ' + r.url), [], 'no request was smuggled to the upstream');
});

// Sends GET /echo/hop with the given header lines, raw (node's client refuses some of them, such as
// Trailer without chunked encoding); returns the upstream's echo.
async function echoRaw(gw, lines) {
  const res = await rawExchange(gw.port, ['GET /echo/hop HTTP/1.1', 'Host: example.test', ...lines, '', ''].join('\r\n'),
    { untilComplete: true });
  assert.equal(res.status, 200, res.text);
  return JSON.parse(res.response.body.toString());
}

function assertNoHopHeaders(echo, extra = []) {
  const names = echo.rawHeaders.map(([name]) => name.toLowerCase());
  for (const name of ['keep-alive', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'upgrade', ...extra]) {
    assert.ok(!names.includes(name), `${name} must not reach the upstream (got ${names.join(', ')})`);
  }
  const connection = (echo.headers.connection || '').toLowerCase();
  assert.ok(!/x-hop|upgrade/.test(connection), `the client's Connection tokens are not forwarded (got ${connection})`);
  assert.equal(echo.headers['x-end-to-end'], 'kept');
}

itest('hop-by-hop request headers are not forwarded', async (t, h) => {
  const { gw } = await setup(h);
  const echo = await echoRaw(gw, [
    'Connection: keep-alive, X-Hop-Custom, x-hop-second',
    'Keep-Alive: timeout=30',
    'X-Hop-Custom: must go',
    'X-Hop-Second: must go too',
    'Proxy-Authorization: Basic Zm9vOmJhcg==',
    'Proxy-Connection: keep-alive',
    'TE: trailers',
    'Trailer: X-Checksum',
    'Upgrade: websocket',
    'X-End-To-End: kept',
  ]);
  assertNoHopHeaders(echo, ['x-hop-custom', 'x-hop-second']);
});

itest('headers named in any of several Connection lines are not forwarded', async (t, h) => {
  const { gw } = await setup(h);
  const echo = await echoRaw(gw, [
    'Connection: keep-alive',
    'Connection: X-Hop-Custom',
    'X-Hop-Custom: must go',
    'X-End-To-End: kept',
  ]);
  assertNoHopHeaders(echo, ['x-hop-custom']);
});

itest('a Connection header named in any case is read as one', async (t, h) => {
  const { gw } = await setup(h);
  const echo = await echoRaw(gw, [
    'cONNECTION: X-Hop-Custom',
    'connection: x-hop-second',
    'X-Hop-Custom: must go',
    'X-Hop-Second: must go too',
    'X-End-To-End: kept',
  ]);
  assertNoHopHeaders(echo, ['x-hop-custom', 'x-hop-second']);
});

itest('hop-by-hop response headers are not passed to the client', async (t, h) => {
  const { gw } = await setup(h);
  const res = await request(gw, { path: '/hop' });
  assert.equal(res.status, 200);
  assert.equal(res.body.toString(), 'hop\n');
  for (const name of ['keep-alive', 'x-upstream-hop', 'proxy-authenticate']) {
    assert.equal(res.headers[name], undefined, `${name} must not reach the client`);
  }
  assert.ok(!/x-upstream-hop/i.test(res.headers.connection || ''), 'upstream Connection tokens not passed');
  assert.equal(res.headers['x-end-to-end'], 'kept');
});

itest('X-Forwarded-For, -Proto and -Host are set', async (t, h) => {
  // Host and X-Forwarded-Host come from the public URL (upstream.host_header "public"), never the client.
  const up = await h.startStub();
  const gw = await h.startGateway(h.config({ public_url: 'https://psa.example.test:8443', upstream: { url: up.url } }));
  const plain = echoOf(await request(gw, { path: '/echo/xff', headers: { host: 'other.example.test' } }));
  assert.equal(plain.headers['x-forwarded-for'], '127.0.0.1');
  assert.equal(plain.headers['x-forwarded-proto'], 'http');
  assert.equal(plain.headers['x-forwarded-host'], 'psa.example.test:8443');
  assert.equal(plain.headers.host, 'psa.example.test:8443');

  const chained = echoOf(await request(gw, {
    path: '/echo/xff',
    headers: { host: 'psa.example.test', 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.example' },
  }));
  const hops = chained.headers['x-forwarded-for'].split(',').map((s) => s.trim());
  assert.deepEqual(hops, ['203.0.113.7', '127.0.0.1'], 'client address appended to the chain');
  assert.equal(chained.headers['x-forwarded-proto'], 'http', 'the scheme the gateway saw, not the client\'s claim');
  assert.equal(chained.headers['x-forwarded-host'], 'psa.example.test:8443', 'the public authority, not the client\'s claim');
  assert.equal(chained.rawHeaders.filter(([n]) => /^x-forwarded-proto$/i.test(n)).length, 1, 'one X-Forwarded-Proto');
});

// trusted_proxies: behind a proxy the gateway trusts, the client is the address that proxy appended to
// X-Forwarded-For (what the client wrote to its left is never taken); the access log names it. Whoever
// else connects is the client itself, whatever it sends. The upstream's X-Forwarded-For is unchanged.
itest('trusted_proxies: the access log names the client a trusted proxy forwarded for, never one a client wrote', async (t, h) => {
  const up = await h.startStub();
  const gw = await h.startGateway(h.config({ upstream: { url: up.url }, trusted_proxies: ['127.0.0.3', '10.0.0.0/8'] }));
  const cases = [
    // [from, X-Forwarded-For sent, the client logged, the X-Forwarded-For the upstream gets]
    ['127.0.0.3', '6.6.6.6, 203.0.113.7', '203.0.113.7', '6.6.6.6, 203.0.113.7, 127.0.0.3'],
    ['127.0.0.3', '203.0.113.8, 10.1.2.3', '203.0.113.8', '203.0.113.8, 10.1.2.3, 127.0.0.3'],
    ['127.0.0.3', 'unknown', '127.0.0.3', 'unknown, 127.0.0.3'],
    ['127.0.0.3', undefined, '127.0.0.3', '127.0.0.3'],
    ['127.0.0.1', '203.0.113.9', '127.0.0.1', '203.0.113.9, 127.0.0.1'],
    ['127.0.0.4', '10.9.9.9', '127.0.0.4', '10.9.9.9, 127.0.0.4'],
  ];
  for (const [i, [from, xff, client, upstream]] of cases.entries()) {
    const headers = xff === undefined ? {} : { 'x-forwarded-for': xff };
    const res = await request(gw, { path: `/echo/client${i}`, headers, localAddress: from });
    assert.equal(res.status, 200);
    assert.equal(echoOf(res).headers['x-forwarded-for'], upstream, `case ${i}: what the upstream received`);
    const line = await gw.waitLog((l) => l.event === 'access' && l.path === `/echo/client${i}`, 5000, `access line ${i}`);
    assert.equal(line.client, client, `case ${i}: the client logged`);
  }
  // The bytes as a proxy that adds a line of its own sends them: two lines, a tab, odd spaces. The
  // lines are one list for the walk and for the upstream.
  const raw = await rawExchange(gw.port, 'GET /echo/raw-lines HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\n' +
    'X-Forwarded-For:\t203.0.113.7 ,10.1.2.3\r\nConnection: close\r\n\r\n', { localAddress: '127.0.0.3', untilComplete: true });
  assert.equal(raw.status, 200);
  assert.equal(JSON.parse(raw.response.body.toString()).headers['x-forwarded-for'], '6.6.6.6, \t203.0.113.7 ,10.1.2.3, 127.0.0.3',
    'the upstream received both lines, in order, as sent (libevent keeps a leading tab), the peer appended');
  const rawLine = await gw.waitLog((l) => l.event === 'access' && l.path === '/echo/raw-lines', 5000, 'the raw access line');
  assert.equal(rawLine.client, '203.0.113.7', 'the client the trusted proxy forwarded for');
});

itest('without trusted_proxies the access log names the peer, whatever X-Forwarded-For says', async (t, h) => {
  const { gw } = await setup(h);
  await request(gw, { path: '/echo/peer', headers: { 'x-forwarded-for': '203.0.113.7' }, localAddress: '127.0.0.3' });
  const line = await gw.waitLog((l) => l.event === 'access' && l.path === '/echo/peer', 5000, 'the access line');
  assert.equal(line.client, '127.0.0.3');
});

itest('X-Request-Id goes upstream and back, unique per request', async (t, h) => {
  const { gw } = await setup(h);
  const ids = new Set();
  for (let i = 0; i < 5; i++) {
    const res = await request(gw, { path: `/echo/id${i}` });
    const echo = echoOf(res);
    const id = res.headers['x-request-id'];
    assert.ok(id && /^[A-Za-z0-9._-]{8,128}$/.test(id), `a request id on the response (${id})`);
    assert.equal(echo.headers['x-request-id'], id, 'the upstream saw the same id');
    ids.add(id);
  }
  assert.equal(ids.size, 5);
});
