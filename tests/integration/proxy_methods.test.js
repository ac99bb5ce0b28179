'use strict';
// Every method, path, query string and body reaches the upstream unchanged, and the answer comes back.

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { itest, request, rawExchange } = require('./lib/harness');

const sha256 = (data) => crypto.createHash('sha256').update(data).digest('hex');

async function setup(h) {
  const up = await h.startStub();
  const gw = await h.startGateway(h.config({ upstream: { url: up.url } }));
  return { up, gw };
}

itest('methods with bodies and query strings reach the upstream unchanged', async (t, h) => {
  const { gw } = await setup(h);
  const binary = crypto.randomBytes(300 * 1024);
  const cases = [
    { method: 'GET', path: '/echo/a/b?x=1&y=two&z=%20sp%2Fslash&empty=&x=dup' },
    { method: 'POST', path: '/echo/form?q=1', body: Buffer.from('{"json":true,"n":[1,2,3]}'),
      headers: { 'content-type': 'application/json' } },
    { method: 'POST', path: '/echo/binary', body: binary, headers: { 'content-type': 'application/octet-stream' } },
    { method: 'PUT', path: '/echo/item/42?version=3', body: Buffer.from('put body') },
    { method: 'DELETE', path: '/echo/item/42?hard=1', body: Buffer.from('delete body') },
    { method: 'DELETE', path: '/echo/item/43' },
    { method: 'PATCH', path: '/echo/item/44', body: Buffer.from('[{"op":"replace"}]') },
    { method: 'OPTIONS', path: '/echo/cors' },
    { method: 'POST', path: '/echo/empty', body: Buffer.alloc(0) },
    { method: 'GET', path: '/any/unknown/path.html?utf8=%C3%A9&plus=a+b' },
  ];
  // Every case runs, and the failures are reported together.
  const failures = [];
  for (const c of cases) {
    const headers = { ...(c.headers || {}) };
    if (c.body) {
      headers['content-length'] = c.body.length;
    }
    try {
      const res = await request(gw, { method: c.method, path: c.path, headers, body: c.body });
      assert.equal(res.status, 200, `status: ${res.body}`);
      const echo = JSON.parse(res.body.toString());
      assert.equal(echo.method, c.method, 'method');
      assert.equal(echo.url, c.path, 'path and query');
      const body = c.body || Buffer.alloc(0);
      assert.equal(echo.bodyLength, body.length, 'body length');
      assert.equal(echo.bodySha256, sha256(body), 'body digest');
      if (c.headers && c.headers['content-type']) {
        assert.equal(echo.headers['content-type'], c.headers['content-type'], 'content-type forwarded');
      }
    } catch (err) {
      failures.push(`${c.method} ${c.path}${c.body ? ` (${c.body.length} byte body)` : ''}: ${err.message.split('\n')[0]}`);
    }
  }
  assert.deepEqual(failures, []);
});

itest('HEAD gets the upstream headers and no body', async (t, h) => {
  const { gw } = await setup(h);
  const res = await request(gw, { method: 'HEAD', path: '/echo/head' });
  assert.equal(res.status, 200);
  assert.equal(res.body.length, 0);
  assert.equal(res.headers['x-stub-server'], 'upstream');
});

// RFC 9110 9.3.2: a HEAD answer's Content-Length is the length the GET would send: the upstream's, or
// none when it gave none. The gateway added "Content-Length: 0" to an answer without one (review H1),
// which told the client the resource was empty.
itest('HEAD answers the upstream\'s Content-Length', async (t, h) => {
  const { gw } = await setup(h);
  const res = await request(gw, { method: 'HEAD', path: '/big?kb=10' });
  assert.equal(res.status, 200);
  assert.equal(res.body.length, 0);
  assert.equal(res.headers['content-length'], '10240');
  const chunked = await request(gw, { method: 'HEAD', path: '/big?kb=10&chunked=1' });
  assert.equal(chunked.headers['content-length'], undefined, 'no length when the upstream gave none');
});

itest('a chunked request body is forwarded whole', async (t, h) => {
  const { gw } = await setup(h);
  const parts = ['first part,', 'second part,', 'x'.repeat(20000)];
  const chunked = parts.map((p) => `${p.length.toString(16)}\r\n${p}\r\n`).join('') + '0\r\n\r\n';
  const res = await rawExchange(gw.port, [
    'POST /echo/chunked HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n',
    chunked,
  ]);
  assert.equal(res.status, 200, res.text);
  const echo = JSON.parse(res.response.body.toString());
  assert.equal(echo.bodyLength, parts.join('').length);
  assert.equal(echo.bodySha256, sha256(parts.join('')));
});

itest('keep-alive client connections carry many requests', async (t, h) => {
  const { gw, up } = await setup(h);
  const http = require('node:http');
  const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  try {
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        request(gw, { agent, method: i % 2 ? 'POST' : 'GET', path: `/echo/k${i}?i=${i}`, body: i % 2 ? `b${i}` : undefined }),
      ),
    );
    results.forEach((res, i) => {
      assert.equal(res.status, 200);
      assert.equal(JSON.parse(res.body.toString()).url, `/echo/k${i}?i=${i}`);
    });
    const log = await up.requests();
    assert.equal(log.filter((r) => r.url.startsWith('/echo/k')).length, 40, 'each request reached the upstream once');
  } finally {
    agent.destroy();
  }
});
