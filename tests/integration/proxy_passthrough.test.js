'use strict';
// What the upstream answers reaches the client unchanged: several Set-Cookie headers, redirects with
// their Location, and status codes.

const assert = require('node:assert/strict');
const { itest, request, rawExchange } = require('./lib/harness');

async function setup(h) {
  const up = await h.startStub();
  const gw = await h.startGateway(h.config({ upstream: { url: up.url } }));
  return { up, gw };
}

itest('several Set-Cookie headers pass separately and unchanged', async (t, h) => {
  const { gw } = await setup(h);
  const res = await request(gw, { path: '/cookies' });
  assert.equal(res.status, 200);
  assert.deepEqual(res.rawHeaders.filter(([n]) => n.toLowerCase() === 'set-cookie').map(([, v]) => v), [
    'a=1; Path=/; HttpOnly',
    'b=2; Path=/; Secure; SameSite=Lax',
    'c=3; Path=/; Expires=Wed, 21 Oct 2037 07:28:00 GMT',
  ]);
  assert.equal(res.body.toString(), 'cookies');
});

itest('request cookies reach the upstream unchanged', async (t, h) => {
  const { gw } = await setup(h);
  const cookie = 'PSASESSION=abc123; theme=dark; quoted="a b"';
  const res = await request(gw, { path: '/echo/cookie', headers: { cookie } });
  assert.equal(JSON.parse(res.body.toString()).headers.cookie, cookie);
});

itest('redirects pass with their Location unchanged', async (t, h) => {
  const { gw } = await setup(h);
  const cases = [
    { status: 302, to: '/target?from=redirect' },
    { status: 301, to: '/moved/permanently' },
    { status: 303, to: 'https://elsewhere.example/after-post?x=1' },
    { status: 307, to: '/keep/method' },
    { status: 308, to: '//psa.example/path' },
  ];
  for (const c of cases) {
    const res = await request(gw, { path: `/redirect?status=${c.status}&to=${encodeURIComponent(c.to)}` });
    assert.equal(res.status, c.status);
    assert.equal(res.headers.location, c.to);
  }
  const plain = await request(gw, { path: '/redirect' });
  assert.equal(plain.status, 302);
  assert.equal(plain.headers.location, '/target?from=redirect');
});

itest('status codes pass unchanged', async (t, h) => {
  const { gw } = await setup(h);
  for (const code of [200, 201, 202, 204, 206, 304, 400, 401, 403, 404, 409, 418, 422, 429, 500, 501, 503]) {
    const res = await request(gw, { path: `/status/${code}` });
    assert.equal(res.status, code, `status ${code}`);
    assert.equal(res.headers['x-stub-status'], String(code), `${code}: the upstream's headers came along`);
    if (code === 204 || code === 304) {
      assert.equal(res.body.length, 0, `${code} has no body`);
    } else {
      assert.equal(res.body.toString(), `status ${code}\n`, `${code}: body`);
    }
  }
});

itest('upstream 502/503/504 are passed as the upstream sent them, not replaced', async (t, h) => {
  const { gw } = await setup(h);
  for (const code of [502, 503, 504]) {
    const res = await request(gw, { path: `/status/${code}` });
    assert.equal(res.status, code);
    assert.equal(res.body.toString(), `status ${code}\n`);
  }
});

itest('an HTTP/1.0 client gets a complete answer', async (t, h) => {
  const { gw } = await setup(h);
  const res = await rawExchange(gw.port, 'GET /echo/http10 HTTP/1.0\r\nHost: example.test\r\n\r\n');
  assert.equal(res.status, 200, res.text);
  assert.ok(res.closed, 'the connection ends after an HTTP/1.0 answer without keep-alive');
  assert.equal(JSON.parse(res.response.body.toString()).url, '/echo/http10');
});
