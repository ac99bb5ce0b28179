'use strict';
// Routes of the stub upstream: what a plain web application behind the gateway does, in the shapes the
// proxy tests need. Every handler is (req, res, ctx) with ctx = {name, url, segments}.

const { readBody, headerPairs, sendJson } = require('./server');
const bigdata = require('./bigdata');

const MAX_DELAY_MS = 120000;
const MAX_BIG_MB = 4096;

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// An integer query parameter, clamped to [min, max]; fallback when absent or not a number.
function intParam(url, key, fallback, min, max) {
  const raw = url.searchParams.get(key);
  const value = raw === null ? NaN : Number.parseInt(raw, 10);
  if (!Number.isFinite(value)) {
    return fallback;
  }
  return Math.min(max, Math.max(min, value));
}

// The echo answer: what the upstream received. headers keeps node's joined view (lower-case names),
// rawHeaders every header line as sent, so tests can see duplicates and spelling.
async function echoValue(req, ctx) {
  const body = await readBody(req, 4096);
  return {
    server: ctx.name,
    method: req.method,
    url: req.url,
    httpVersion: req.httpVersion,
    headers: req.headers,
    rawHeaders: headerPairs(req),
    bodyLength: body.length,
    bodySha256: body.sha256,
    bodyStart: body.body.toString('latin1'),
  };
}

async function echo(req, res, ctx) {
  const value = await echoValue(req, ctx);
  if (req.method === 'HEAD') {
    res.writeHead(200, { 'content-type': 'application/json', 'x-stub-server': ctx.name });
    res.end();
    return;
  }
  sendJson(res, 200, value, { 'x-stub-server': ctx.name });
}

// /big?mb=N (or kb=N) streams that much bigdata, with content-length unless chunked=1. Writes wait
// for 'drain', so a slow reader on the other side slows this sender instead of filling memory.
async function big(req, res, ctx) {
  await readBody(req, 0);
  const mb = intParam(ctx.url, 'mb', 0, 0, MAX_BIG_MB);
  const kb = intParam(ctx.url, 'kb', 0, 0, 1024 * 1024);
  const total = mb * 1024 * 1024 + kb * 1024;
  const headers = { 'content-type': 'application/octet-stream', 'x-body-sha256': bigdata.digest(total) };
  if (ctx.url.searchParams.get('chunked') !== '1') {
    headers['content-length'] = total;
  }
  res.writeHead(200, headers);
  let aborted = false;
  res.on('close', () => {
    aborted = !res.writableFinished;
  });
  for (let off = 0; off < total && !aborted; off += bigdata.BLOCK_SIZE) {
    const chunk = bigdata.slice(off, Math.min(bigdata.BLOCK_SIZE, total - off));
    if (!res.write(chunk)) {
      await new Promise((resolve) => {
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        res.on('drain', done);
        res.on('close', done);
      });
    }
  }
  res.end();
}

// /slow?ms=N waits N ms after reading the request, then answers like /echo.
async function slow(req, res, ctx) {
  const value = await echoValue(req, ctx);
  await delay(intParam(ctx.url, 'ms', 1000, 0, MAX_DELAY_MS));
  if (!res.destroyed) {
    sendJson(res, 200, value, { 'x-stub-server': ctx.name });
  }
}

// /stall?ms=N sends the headers and the first 100 of 1000 body bytes, waits N ms, sends the rest.
async function stall(req, res, ctx) {
  await readBody(req, 0);
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 1000 });
  res.write('s'.repeat(100));
  await delay(intParam(ctx.url, 'ms', 1000, 0, MAX_DELAY_MS));
  if (!res.destroyed) {
    res.end('t'.repeat(900));
  }
}

// /cookies sets three cookies in separate Set-Cookie headers; one has an Expires date with a comma,
// which breaks any proxy that folds Set-Cookie into one comma-joined line. Each `set` parameter
// (/cookies?set=LINE&set=LINE) adds a Set-Cookie line of the caller's after them.
async function cookies(req, res, ctx) {
  await readBody(req, 0);
  res.setHeader('set-cookie', [
    'a=1; Path=/; HttpOnly',
    'b=2; Path=/; Secure; SameSite=Lax',
    'c=3; Path=/; Expires=Wed, 21 Oct 2037 07:28:00 GMT',
    ...ctx.url.searchParams.getAll('set'),
  ]);
  res.setHeader('content-type', 'text/plain');
  res.end('cookies');
}

// /redirect?to=LOCATION&status=30x answers a redirect (default 302 to /target?from=redirect).
async function redirect(req, res, ctx) {
  await readBody(req, 0);
  const status = intParam(ctx.url, 'status', 302, 300, 399);
  res.writeHead(status, { location: ctx.url.searchParams.get('to') || '/target?from=redirect' });
  res.end('redirecting');
}

// /status/NNN answers status NNN (200..599) with a short text body (none for 204 and 304; with ?cl=1
// those carry a Content-Length: 0 all the same, which a 204 must not).
async function status(req, res, ctx) {
  await readBody(req, 0);
  const code = Number.parseInt(ctx.segments[1] || '', 10);
  if (!(code >= 200 && code <= 599)) {
    sendJson(res, 400, { error: 'status must be 200..599' });
    return;
  }
  if (code === 204 || code === 304) {
    res.writeHead(code, { 'x-stub-status': String(code), ...(ctx.url.searchParams.get('cl') ? { 'content-length': '0' } : {}) });
    res.end();
    return;
  }
  const body = `status ${code}\n`;
  res.writeHead(code, { 'content-type': 'text/plain', 'content-length': body.length, 'x-stub-status': String(code) });
  res.end(body);
}

// /hop answers with hop-by-hop headers that a proxy must not pass to its client, next to an
// end-to-end header that it must pass.
async function hop(req, res) {
  await readBody(req, 0);
  const body = 'hop\n';
  res.writeHead(200, {
    connection: 'X-Upstream-Hop',
    'keep-alive': 'timeout=5, max=100',
    'x-upstream-hop': 'must-not-reach-the-client',
    'proxy-authenticate': 'Basic realm="stub"',
    'x-end-to-end': 'kept',
    'content-type': 'text/plain',
    'content-length': body.length,
  });
  res.end(body);
}

const routes = { echo, big, slow, stall, cookies, redirect, status, hop };

module.exports = { routes, fallback: echo, echoValue, intParam, delay };
