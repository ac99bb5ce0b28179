'use strict';
// What the upstream answers reaches the client unchanged: several Set-Cookie headers, redirects with
// their Location, and status codes.

const assert = require('node:assert/strict');
const { itest, metricValue, request, rawExchange } = require('./lib/harness');

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

// Only the gateway sets its own cookies: an upstream (a PSA page with a header injection, a cookie
// feature its users control) that sets the session, login-binding or CSRF cookie could plant an
// attacker's session or login in the victim's browser. Those lines are dropped, in any spelling a
// browser would read as the name (case, blanks, a nameless cookie's "=NAME=v"), on GET and on HEAD
// (evhttp writes HEAD answers), with a warning and a metric; the PSA's own cookies pass.
itest("the upstream cannot set the gateway's cookies", async (t, h) => {
  const { gw } = await setup(h);
  const planted = ['ssogate=attacker; Path=/', 'SSOGATE=attacker', ' ssogate_login =x; Max-Age=600',
    '=ssogate_csrf=x', 'ssogate'];
  const kept = ['psa=1; Path=/', 'ssogate2=x', 'psa_pref=ssogate'];
  const query = [...planted, ...kept].map((line) => `set=${encodeURIComponent(line)}`).join('&');
  const from = gw.logs.length;
  for (const method of ['GET', 'HEAD']) {
    const res = await request(gw, { method, path: `/cookies?${query}` });
    assert.equal(res.status, 200, method);
    const lines = res.rawHeaders.filter(([n]) => n.toLowerCase() === 'set-cookie').map(([, v]) => v);
    assert.deepEqual(lines, ['a=1; Path=/; HttpOnly', 'b=2; Path=/; Secure; SameSite=Lax',
      'c=3; Path=/; Expires=Wed, 21 Oct 2037 07:28:00 GMT', ...kept], method);
  }
  const warned = gw.logs.slice(from).filter((l) => l.event === 'upstream_cookie_dropped');
  assert.equal(warned.length, 2, 'one warning per answer');
  assert.ok(warned.every((l) => l.level === 'warn' && l.request_id), JSON.stringify(warned));
  const metrics = await h.metrics(gw);
  assert.equal(metricValue(metrics, 'ssogate_upstream_headers_dropped_total', { reason: 'gateway_cookie' }), 2,
    'one per answer');
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

// RFC 9110 8.6: a 204 carries no Content-Length; the gateway drops one the upstream wrote.
itest('a 204 reaches the client without the Content-Length its upstream wrote', async (t, h) => {
  const { gw } = await setup(h);
  for (const method of ['GET', 'HEAD']) { // the gateway writes the first answer, libevent the second
    const res = await rawExchange(gw.port, `${method} /status/204?cl=1 HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n`);
    assert.equal(res.status, 204, method);
    assert.equal(res.response.headers['x-stub-status'], '204', `${method}: the upstream's other headers came along`);
    assert.equal(res.response.headers['content-length'], undefined, `${method}: ${res.text}`);
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
