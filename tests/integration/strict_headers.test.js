'use strict';
// Request headers and cookies on the strict data path (policy/README.md, "Request headers",
// "Cookies", `upstream.host_header`): an attacker's corpus of raw header sections. Every case asserts
// what the client got (status, the connection closed after a refusal, the bad_requests metric reason)
// AND what the upstream received, byte for byte (nothing after a refusal).

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { sharedEnv, closedPort, rawExchange } = require('./lib/harness');
const { startRecorder, runCase, RawConn, show, badRequests, LOGIN } = require('./lib/recorder');

const AUTHORITY = 'gw.example.test:8443';

const envTest = sharedEnv('strict_headers', async (h) => {
  const rec = await startRecorder();
  h.servers.push({ close: (done) => rec.close().then(() => done()) });
  const gw = await h.startGateway(h.config({
    public_url: `http://${AUTHORITY}`,
    upstream: { url: rec.url },
    idp: {
      issuer: `http://127.0.0.1:${await closedPort()}`,
      client_id: 'ssogate-test',
      client_secret_env: 'SG_TEST_SECRET',
      allow_insecure_http: true,
    },
    routes: [{ prefix: '/app', auth: 'required' }, { prefix: '/public', auth: 'none' }],
    limits: { header_bytes: 65536, body_bytes: 8 * 1024 * 1024, client_timeout_s: 5 },
  }), { env: { SG_TEST_SECRET: 'test-secret' } });
  return { h, rec, gw, ctx: { gw, rec, authority: AUTHORITY } };
});

// A raw request: lines are header lines (Host added first unless host is false), body appended as is.
function req(lines, { method = 'GET', target = '/public/h', version = 'HTTP/1.1', host = true, body = '' } = {}) {
  const all = host ? ['Host: client.example.test', ...lines] : lines;
  return `${method} ${target} ${version}\r\n${all.map((l) => `${l}\r\n`).join('')}\r\n${body}`;
}

const fold = (name) => name.toLowerCase().replace(/_/g, '-');
const valuesOf = (entry, name) => entry.headers.filter(([n]) => fold(n) === fold(name)).map(([, v]) => v);

// Names the gateway owns (policy/README.md): none of them may reach the upstream from the client, in
// any spelling; those the gateway sets itself appear once, spelt with '-', with its own value.
const OWNED_SET = ['host', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id'];
const PROXY_SAYS = ['Forwarded', 'X-Forwarded-Port', 'X-Forwarded-Prefix', 'X-Forwarded-Server', 'X-Forwarded-Ssl',
  'X-Forwarded-Scheme', 'X-Real-IP', 'X-Client-IP', 'Client-IP', 'True-Client-IP', 'X-Cluster-Client-IP',
  'X-Original-URL', 'X-Rewrite-URL', 'X-Original-Host', 'X-Host', 'Front-End-Https', 'X-Url-Scheme',
  'X-Original-Forwarded-For'];
const OWNED_DROPPED = ['transfer-encoding', 'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade',
  'proxy-authorization', 'expect'];

// The checks every accepted request gets: what the gateway owns is the gateway's, spelt its way.
function ownedCheck(entry, res, { xff = '127.0.0.1' } = {}) {
  for (const [name] of entry.headers) {
    const folded = fold(name);
    if (OWNED_SET.includes(folded) || folded.startsWith('x-sso-') || folded === 'content-length') {
      assert.ok(!name.includes('_'), `a client's ${name} reached the upstream: ${show(entry.rawHead)}`);
    }
    const gatewayOwn = (folded === 'connection' && /^(keep-alive|close)$/i.test(valuesOf(entry, 'connection').join(',')))
      || (name === 'Transfer-Encoding' && entry.framing === 'chunked' && valuesOf(entry, name).join(',') === 'chunked');
    assert.ok(!OWNED_DROPPED.includes(folded) || gatewayOwn, `${name} reached the upstream: ${show(entry.rawHead)}`);
  }
  assert.deepEqual(valuesOf(entry, 'host'), [AUTHORITY], 'Host upstream');
  assert.deepEqual(valuesOf(entry, 'x-forwarded-host'), [AUTHORITY], 'X-Forwarded-Host upstream');
  assert.deepEqual(valuesOf(entry, 'x-forwarded-proto'), ['http'], 'X-Forwarded-Proto upstream');
  assert.deepEqual(valuesOf(entry, 'x-forwarded-for'), [xff], 'X-Forwarded-For upstream');
  const ids = valuesOf(entry, 'x-request-id');
  assert.equal(ids.length, 1, 'one X-Request-Id upstream');
  assert.equal(ids[0], res.header('x-request-id'), 'the X-Request-Id upstream is the one the client got back');
  assert.notEqual(ids[0], 'evil-id', 'the client\'s X-Request-Id is not forwarded');
  const lengths = valuesOf(entry, 'content-length');
  if (entry.framing === 'length') {
    assert.deepEqual(lengths, [String(entry.bodyLength)], 'one Content-Length, the body\'s');
  } else if (entry.framing === 'chunked') {
    assert.deepEqual(lengths, [], 'no Content-Length beside chunked framing');
  }
}

// Runs a list of cases, collecting failures so one report lists them all.
async function runAll(env, t, cases) {
  const failures = [];
  for (const c of cases) {
    const extra = c.check;
    const wrapped = {
      ...c,
      check: async (entry, res) => {
        ownedCheck(entry, res, c.xff ? { xff: c.xff } : undefined);
        if (extra) {
          await extra(entry, res);
        }
      },
    };
    try {
      await runCase(env.ctx, wrapped);
    } catch (err) {
      failures.push(`${c.name}: ${err.message.split('\n').slice(0, 2).join(' | ')}`);
    }
  }
  t.diagnostic(`${cases.length} cases, ${failures.length} failed`);
  assert.deepEqual(failures, [], `${failures.length} of ${cases.length} cases misbehaved:\n${failures.join('\n')}`);
}

// A refusal. reason is the bad_requests metric label the refusal must count, or null where libevent 2.1
// itself refuses the bytes while parsing, before the gateway sees a request it could count.
const refused = (name, send, reason, status = 400) => ({ name, send, status, reason });
const post = (lines, body, target = '/public/h') => req(lines, { method: 'POST', target, body });

// A chunked upload whose chunk extensions must be dropped: the body upstream is expected, no extension.
const extensionDropped = (name, body, expected) => ({
  name,
  send: post(['Transfer-Encoding: chunked'], body),
  method: 'POST',
  status: 200,
  up: '/public/h',
  check: (entry) => {
    assert.equal(entry.body.toString(), expected);
    assert.ok(!/ext|;/.test(entry.raw.toString('latin1').split('\r\n\r\n').slice(1).join('')), 'no extension upstream');
  },
});

envTest('header names must be tokens', async (env, t) => {
  const cases = [
    refused('space before colon in Transfer-Encoding', post(['Transfer-Encoding : chunked'], '3\r\nabc\r\n0\r\n\r\n'), 'bad_name'),
    refused('space before colon in Content-Length', post(['Content-Length : 3'], 'abc'), 'bad_name'),
    refused('HTAB before colon in Content-Length', post(['Content-Length\t: 3'], 'abc'), 'bad_name'),
    refused('Content-Length with a space before colon beside a real one', post(['Content-Length: 3', 'Content-Length : 30'], 'abc'), 'bad_name'),
    refused('space before colon in X-SSO-User', req(['X-SSO-User : admin']), 'bad_name'),
    refused('space before colon in Host', req(['Host : evil.example'], { host: false }), null),
    refused('VT in a name', req(['X\x0bA: 1']), 'bad_name'),
    refused('DEL in a name', req(['X\x7fA: 1']), 'bad_name'),
    refused('NUL in a name', req(['X\x00A: 1']), null),
    refused('byte 0x80 in a name', req(['X\x80A: 1']), 'bad_name'),
    refused('( in a name', req(['X(A: 1']), 'bad_name'),
    refused(') in a name', req(['X)A: 1']), 'bad_name'),
    refused('/ in a name', req(['X/A: 1']), 'bad_name'),
    refused('@ in a name', req(['X@A: 1']), 'bad_name'),
    refused('" in a name', req(['X"A: 1']), 'bad_name'),
    refused('[ ] in a name', req(['X[A]: 1']), 'bad_name'),
    refused('= in a name', req(['X=A: 1']), 'bad_name'),
    refused('; in a name', req(['X;A: 1']), 'bad_name'),
    refused('{ } in a name', req(['X{A}: 1']), 'bad_name'),
    refused('space inside a name', req(['X SSO User: admin']), 'bad_name'),
    refused('empty name', req([': empty-name']), 'bad_name'),
    refused('a line without a colon', req(['NoColonHere']), null),
    {
      name: 'tchar-only names pass (!#$%&\'*+-.^_`|~)',
      send: req(["X!#$%&'*+-.^_`|~1: ok"]),
      status: 200,
      up: '/public/h',
      check: (entry) => assert.deepEqual(valuesOf(entry, "X!#$%&'*+-.^_`|~1"), ['ok']),
    },
  ];
  await runAll(env, t, cases);
});

envTest('header values free of control bytes; obs-fold becomes a space', async (env, t) => {
  const forwarded = (name, lines, header, expected, options) => ({
    name,
    send: req(lines, options),
    status: 200,
    up: (options && options.target) || '/public/h',
    method: options && options.method,
    check: (entry) => {
      assert.deepEqual(valuesOf(entry, header), expected, `${name}: ${header} upstream: ${show(entry.rawHead)}`);
      assert.deepEqual(valuesOf(entry, 'x-sso-user'), [], `${name}: no X-SSO-User upstream`);
    },
  });
  const cases = [
    refused('bare CR in a value', req(['X-A: a\rb']), null),
    refused('bare CR smuggling a header', req(['X-A: a\rX-SSO-User: admin']), null),
    // libevent would end a header line at a NUL and forward the rest of the request; the wire check
    // (gateway/wire.c) sees the bytes first and the request is refused.
    refused('NUL in a value, an identity header behind it', req(['X-A: a\x00X-SSO-User: admin']), 'malformed_wire'),
    refused('NUL at the end of a value, then a header of its own', req(['X-A: a\x00\r\nX-B: b']), 'malformed_wire'),
    refused('NUL in a Cookie value', req(['Cookie: x=1\x00; ssogate=forged']), 'malformed_wire'),
    refused('NUL in a Host value', req(['Host: client.example.test\x00evil.example'], { host: false }), 'malformed_wire'),
    refused('NUL in an obs-fold continuation', req(['X-A: a', ' b\x00c']), 'malformed_wire'),
    refused('0x01 in a value', req(['X-A: a\x01b']), 'bad_value'),
    refused('DEL in a value', req(['X-A: a\x7fb']), 'bad_value'),
    refused('ESC in a value', req(['X-A: a\x1bb']), 'bad_value'),
    refused('VT in a value', req(['X-A: a\x0bb']), 'bad_value'),
    refused('FF in a value', req(['X-A: a\x0cb']), 'bad_value'),
    refused('control byte in a Cookie', req(['Cookie: a=1\x02; ssogate=x']), 'bad_value'),
    // sg_headers_value_ok reads eight bytes at a time: the same bytes inside a whole word of a long value.
    refused('0x01 inside the second word of a value', req(['X-A: abcdefgh\x01ijklmnopq']), 'bad_value'),
    refused('DEL inside a whole word after a tab', req(['X-A: abcdefghij\tk\x7fmnopqrstuv']), 'bad_value'),
    refused('control byte inside a whole word of a Cookie',
      req(['Cookie: ssogate=aaaaaaaaaaaaaaaa\x1fbbbbbbbbbbbbbbbb; b=2']), 'bad_value'),
    forwarded('HTAB inside a value passes', ['X-A: a\tb'], 'x-a', ['a\tb']),
    forwarded('HTAB and obs-text inside whole words pass', ['X-A: abcdefgh\tijklmno\xffpqrstuvw'], 'x-a',
      ['abcdefgh\tijklmno\xffpqrstuvw']),
    forwarded('obs-text (UTF-8) in a value passes byte for byte', ['X-A: caf\xc3\xa9'], 'x-a', ['caf\xc3\xa9']),
    forwarded('obs-fold with a space', ['X-A: a', ' b'], 'x-a', ['a b']),
    forwarded('obs-fold with a tab', ['X-A: a', '\tb'], 'x-a', ['a b']),
    forwarded('obs-fold cannot start an X-SSO-User header', ['X-A: a', ' X-SSO-User: admin'], 'x-a', ['a X-SSO-User: admin']),
    forwarded('obs-fold cannot start a Transfer-Encoding header',
      ['Content-Length: 3', 'X-A: a', '\tTransfer-Encoding: chunked'], 'x-a', ['a Transfer-Encoding: chunked'],
      { method: 'POST', body: 'abc' }),
    refused('obs-fold into Host makes it invalid', req(['Host: gw.example.test', ' evil.example'], { host: false }), 'bad_host'),
    refused('obs-fold into Content-Length makes it invalid', post(['Content-Length: 3', ' 0'], 'abc'), null),
    refused('a continuation line before any header', req([' X-A: a']), null),
  ];
  // The obs-fold Transfer-Encoding case: the body went by its Content-Length.
  const teFold = cases.find((c) => c.name === 'obs-fold cannot start a Transfer-Encoding header');
  teFold.check = ((inner) => (entry, res) => {
    inner(entry, res);
    assert.equal(entry.body.toString(), 'abc', 'the body upstream');
  })(teFold.check);
  await runAll(env, t, cases);
});

// The wire check (llhttp, strict) refuses a header line ended by a bare LF: nothing reaches the upstream.
envTest('bare LF line endings: refused', async (env, t) => {
  const cases = [
    refused('a request with LF line ends only', 'GET /public/lf HTTP/1.1\nHost: client.example.test\nX-A: 1\n\n', 'malformed_wire'),
    refused('an LF inside a CRLF request smuggling an identity',
      'GET /public/lf HTTP/1.1\r\nHost: client.example.test\r\nX-A: a\nX-SSO-User: admin\r\n\r\n', 'malformed_wire'),
    refused('an LF inside a value smuggling Transfer-Encoding beside Content-Length',
      'POST /public/lf HTTP/1.1\r\nHost: client.example.test\r\nContent-Length: 5\r\nX-A: a\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', null),
  ];
  await runAll(env, t, cases);
});

envTest('Content-Length: digits only, at most once', async (env, t) => {
  const accepted = (name, lines, body) => ({
    name,
    send: post(lines, body),
    method: 'POST',
    status: 200,
    up: '/public/h',
    check: (entry) => assert.equal(entry.body.toString(), body, `${name}: the body upstream`),
  });
  const cases = [
    refused('two different Content-Length', post(['Content-Length: 3', 'Content-Length: 4'], 'abcd'), 'bad_content_length'),
    refused('two equal Content-Length', post(['Content-Length: 3', 'Content-Length: 3'], 'abc'), 'bad_content_length'),
    refused('a list in Content-Length', post(['Content-Length: 3, 3'], 'abc'), null),
    refused('Content-Length +3', post(['Content-Length: +3'], 'abc'), 'bad_content_length'),
    refused('Content-Length 0x3', post(['Content-Length: 0x3'], 'abc'), null),
    refused('Content-Length -1', post(['Content-Length: -1'], 'abc'), null),
    refused('Content-Length 3a', post(['Content-Length: 3a'], 'abc'), null),
    refused('Content-Length 3.0', post(['Content-Length: 3.0'], 'abc'), null),
    refused('empty Content-Length', post(['Content-Length:'], 'abc'), null),
    refused('Content-Length with a space inside', post(['Content-Length: 1 0'], 'abcdefghij'), null),
    { name: 'an absurd Content-Length', send: post(['Content-Length: 99999999999999999999999'], 'abc'), status: [400, 413] },
    accepted('Content-Length with leading zeros', ['Content-Length: 03'], 'abc'),
    accepted('Content-Length with spaces around', ['Content-Length:   3  '], 'abc'),
    accepted('a plain Content-Length', ['Content-Length: 3'], 'abc'),
  ];
  await runAll(env, t, cases);
});

envTest('Transfer-Encoding: exactly chunked, never with Content-Length, never in HTTP/1.0', async (env, t) => {
  const body = '3\r\nabc\r\n0\r\n\r\n';
  const cases = [
    refused('gzip, chunked', post(['Transfer-Encoding: gzip, chunked'], body), 'transfer_encoding', 501),
    refused('identity', post(['Transfer-Encoding: identity'], ''), 'transfer_encoding', 501),
    // Transfer coding names are case-insensitive (RFC 9112 section 7): these are chunked.
    { name: 'Chunked with a capital and a trailing space', send: post(['Transfer-Encoding: Chunked '], body), method: 'POST', status: 200, up: '/public/h',
      check: (entry) => assert.equal(entry.body.toString(), 'abc') },
    { name: 'CHUNKED', send: post(['Transfer-Encoding: CHUNKED'], body), method: 'POST', status: 200, up: '/public/h',
      check: (entry) => assert.equal(entry.body.toString(), 'abc') },
    // libevent reads the body as none and the chunk data as the next request: refused one way or the other.
    { name: 'chunked, chunked', send: post(['Transfer-Encoding: chunked, chunked'], body), status: [400, 501] },
    refused('xchunked', post(['Transfer-Encoding: xchunked'], body), 'transfer_encoding', 501),
    refused('chunked with a parameter', post(['Transfer-Encoding: chunked;q=1'], body), 'transfer_encoding', 501),
    refused('gzip alone', post(['Transfer-Encoding: gzip'], body), 'transfer_encoding', 501),
    { name: 'two Transfer-Encoding lines', send: post(['Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'], body), status: [400, 501] },
    refused('Transfer-Encoding then Content-Length', post(['Transfer-Encoding: chunked', 'Content-Length: 3'], body), null),
    refused('Content-Length then Transfer-Encoding', post(['Content-Length: 13', 'Transfer-Encoding: chunked'], body), null),
    refused('Content-Length 0 and Transfer-Encoding', post(['Content-Length: 0', 'Transfer-Encoding: chunked'], body), null),
    refused('chunked in HTTP/1.0',
      req(['Transfer-Encoding: chunked'], { method: 'POST', version: 'HTTP/1.0', body }), 'chunked_http10'),
    // Chunk extensions (RFC 9112 7.1.1) are accepted and dropped: the wire check blanks them before
    // libevent reads the size (it refuses them itself).
    extensionDropped('a chunk extension is dropped', '3;ext=1\r\nabc\r\n0\r\n\r\n', 'abc'),
    extensionDropped('a chunk extension after white space is dropped', '3 ;ext=1\r\nabc\r\n0\r\n\r\n', 'abc'),
    extensionDropped('several extensions, a quoted value with ; and spaces', '3;a=1;ext="x; y z"\r\nabc\r\n2;b\r\nde\r\n0\r\n\r\n', 'abcde'),
    extensionDropped('an extension on the last chunk', '3\r\nabc\r\n0;ext=last\r\n\r\n', 'abc'),
    extensionDropped('an extension with a tab and obs-text', '3;ext=\tcaf\xc3\xa9\r\nabc\r\n0\r\n\r\n', 'abc'),
    extensionDropped('an extension of 4000 bytes', `3;ext=${'e'.repeat(4000)}\r\nabc\r\n0\r\n\r\n`, 'abc'),
    { name: 'a NUL in a chunk extension', send: post(['Transfer-Encoding: chunked'], '3;e\x00x\r\nabc\r\n0\r\n\r\n'), status: [400, 413] },
    { name: 'a CR inside a chunk extension', send: post(['Transfer-Encoding: chunked'], '3;e\rx\r\nabc\r\n0\r\n\r\n'), status: [400, 413] },
    { name: 'a chunk size line of 5000 bytes', send: post(['Transfer-Encoding: chunked'], `3;${'e'.repeat(5000)}\r\nabc\r\n0\r\n\r\n`), status: [400, 413] },
    { name: 'a chunk size line padded with 5000 spaces', send: post(['Transfer-Encoding: chunked'], `3${' '.repeat(5000)}\r\nabc\r\n0\r\n\r\n`), status: 400, reason: 'malformed_wire' },
    refused('a NUL in a trailer field', post(['Transfer-Encoding: chunked'], '3\r\nabc\r\n0\r\nX-T: a\x00b\r\n\r\n'), 'malformed_wire'),
    // Refused by the wire check, or by libevent's own body limit first: never forwarded.
    { name: 'a chunk size of 2^63, negative in evhttp\'s signed reading', send: post(['Transfer-Encoding: chunked'], '8000000000000000\r\nabc\r\n0\r\n\r\n'), status: [400, 413] },
    { name: 'a bad chunk size', send: post(['Transfer-Encoding: chunked'], 'zz\r\nabc\r\n0\r\n\r\n'), status: [400, 413] },
    {
      name: 'a chunked upload goes with the gateway\'s own framing and the same body',
      send: post(['Transfer-Encoding: chunked'], '3\r\nabc\r\n5\r\ndefgh\r\n1\r\ni\r\n0\r\n\r\n'),
      method: 'POST',
      status: 200,
      up: '/public/h',
      check: (entry) => {
        assert.equal(entry.body.toString(), 'abcdefghi', 'the body upstream');
        assert.ok(['length', 'chunked'].includes(entry.framing), `framed upstream (${entry.framing})`);
      },
    },
  ];
  await runAll(env, t, cases);
});

envTest('Host: exactly one in HTTP/1.1, at most one in HTTP/1.0, host[:port]; the upstream gets the public one', async (env, t) => {
  const ok = (name, lines, options = {}) => ({
    name, send: req(lines, { host: false, ...options }), status: 200, up: '/public/h', keepAlive: options.version !== 'HTTP/1.0',
  });
  const cases = [
    refused('two Host lines', req(['Host: a.example', 'Host: b.example'], { host: false }), 'several_hosts'),
    refused('two Host lines, same value', req(['Host: a.example', 'Host: a.example'], { host: false }), 'several_hosts'),
    refused('two Host lines in two cases', req(['Host: a.example', 'host: b.example'], { host: false }), 'several_hosts'),
    refused('HTTP/1.1 without Host', req([], { host: false }), 'no_host'),
    refused('HTTP/1.0 with two Host lines', req(['Host: a.example', 'Host: b.example'], { host: false, version: 'HTTP/1.0' }), 'several_hosts'),
    refused('Host a b', req(['Host: a b'], { host: false }), 'bad_host'),
    refused('Host x/y', req(['Host: x/y'], { host: false }), 'bad_host'),
    refused('Host a@b', req(['Host: a@b'], { host: false }), 'bad_host'),
    refused('Host a:b', req(['Host: a:b'], { host: false }), 'bad_host'),
    refused('Host a:80x', req(['Host: a:80x'], { host: false }), 'bad_host'),
    refused('Host [::1', req(['Host: [::1'], { host: false }), 'bad_host'),
    refused('Host a?b', req(['Host: a?b'], { host: false }), 'bad_host'),
    refused('Host a#b', req(['Host: a#b'], { host: false }), 'bad_host'),
    refused('Host with a backslash', req(['Host: a\\b'], { host: false }), 'bad_host'),
    ok('HTTP/1.0 without Host', [], { version: 'HTTP/1.0' }),
    ok('HTTP/1.0 with one Host', ['Host: a.example'], { version: 'HTTP/1.0' }),
    ok('Host [::1]:8080', ['Host: [::1]:8080']),
    ok('a foreign Host is not what the upstream gets', ['Host: evil.example:1234']),
    ok('the public authority as Host', [`Host: ${AUTHORITY}`]),
    ok('X-Forwarded-Host from the client is replaced', ['Host: a.example', 'X-Forwarded-Host: evil.example']),
  ];
  await runAll(env, t, cases);
});

envTest('Connection may not name a header the gateway depends on', async (env, t) => {
  const cases = [
    refused('Connection: Host', req(['Connection: Host']), 'protected_in_connection'),
    refused('Connection: host (lower case)', req(['Connection: keep-alive, host']), 'protected_in_connection'),
    refused('Connection: Content-Length', post(['Content-Length: 3', 'Connection: Content-Length'], 'abc'), 'protected_in_connection'),
    refused('Connection: Transfer-Encoding',
      post(['Transfer-Encoding: chunked', 'Connection: keep-alive, Transfer-Encoding'], '3\r\nabc\r\n0\r\n\r\n'), 'protected_in_connection'),
    refused('Connection: Cookie', req(['Cookie: a=1', 'Connection: Cookie']), 'protected_in_connection'),
    refused('Connection: X-Forwarded-For', req(['Connection: X-Forwarded-For']), 'protected_in_connection'),
    refused('Connection: x-forwarded-host', req(['Connection: x-forwarded-host']), 'protected_in_connection'),
    refused('Connection: X-Forwarded-Proto', req(['Connection: X-Forwarded-Proto']), 'protected_in_connection'),
    refused('Connection: X-Request-Id', req(['Connection: X-Request-Id']), 'protected_in_connection'),
    refused('Connection: X-SSO-User', req(['Connection: X-SSO-User']), 'protected_in_connection'),
    refused('Connection: x-sso-assertion', req(['Connection: close, x-sso-assertion']), 'protected_in_connection'),
    refused('Connection: X_SSO_User', req(['Connection: X_SSO_User']), 'protected_in_connection'),
    refused('Connection: Host in a second Connection line', req(['Connection: keep-alive', 'Connection: Host']), 'protected_in_connection'),
    {
      name: 'Connection naming an ordinary header drops it',
      send: req(['Connection: keep-alive, X-Hop', 'X-Hop: 1', 'X-Kept: 2']),
      status: 200,
      up: '/public/h',
      check: (entry) => {
        assert.deepEqual(valuesOf(entry, 'x-hop'), [], 'X-Hop upstream');
        assert.deepEqual(valuesOf(entry, 'x-kept'), ['2'], 'X-Kept upstream');
      },
    },
  ];
  await runAll(env, t, cases);
});

envTest('headers the gateway owns never reach the upstream in any spelling', async (env, t) => {
  const spoof = (name, lines, options = {}) => ({
    name,
    send: req(lines, options),
    method: options.method,
    status: 200,
    up: '/public/h',
    xff: options.xff,
    check: options.check,
  });
  const cases = [
    spoof('X_SSO_User', ['X_SSO_User: admin']),
    spoof('X-SSO_Subject', ['X-SSO_Subject: root']),
    spoof('x_sso_tenant', ['x_sso_tenant: 1']),
    spoof('X-Sso-User', ['X-Sso-User: admin']),
    spoof('X_Sso-IdP_Tenant', ['X_Sso-IdP_Tenant: evil']),
    spoof('X-SSO-Assertion', ['X-SSO-Assertion: eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.']),
    spoof('X_SSO_ASSERTION', ['X_SSO_ASSERTION: eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.']),
    spoof('x-sso-email and x_sso_email', ['x-sso-email: ceo@example.com', 'x_sso_email: ceo@example.com']),
    spoof('x_forwarded_host', ['x_forwarded_host: evil.example']),
    spoof('X_Forwarded_For', ['X_Forwarded_For: 6.6.6.6']),
    spoof('X-Forwarded_Proto', ['X-Forwarded_Proto: https']),
    spoof('X-Forwarded-Proto', ['X-Forwarded-Proto: https']),
    spoof('X_Request_Id', ['X_Request_Id: evil-id']),
    spoof('X-Request-Id', ['X-Request-Id: evil-id']),
    spoof('Keep_Alive and Proxy_Connection', ['Keep_Alive: timeout=1', 'Proxy_Connection: keep-alive']),
    spoof('Transfer_Encoding beside a Content-Length body', ['Content-Length: 3', 'Transfer_Encoding: chunked'],
      { method: 'POST', body: 'abc', check: (entry) => assert.equal(entry.body.toString(), 'abc') }),
    spoof('Content_Length beside a Content-Length body', ['Content-Length: 3', 'Content_Length: 999'],
      { method: 'POST', body: 'abc', check: (entry) => assert.equal(entry.body.toString(), 'abc') }),
    spoof('X-Forwarded-For is appended to', ['X-Forwarded-For: 203.0.113.7'], { xff: '203.0.113.7, 127.0.0.1' }),
    // What a proxy in front would say of the request's origin or URL, in every spelling: a framework
    // trusting one proxy would take the client's word for its address, scheme, host, prefix or path.
    ...PROXY_SAYS.map((name) => spoof(`${name} is dropped`, [`${name}: evil`, `${name.replace(/-/g, '_')}: evil`], {
      check: (entry) => assert.deepEqual(valuesOf(entry, name), [], `${name} upstream`),
    })),
    // Two lines are one list (RFC 9110 5.3; HAProxy's forwardfor adds a line of its own): the chain goes
    // on whole, the peer appended, not its first line alone.
    spoof('X-Forwarded-For on two lines is one chain', ['X-Forwarded-For: 6.6.6.6', 'X-Forwarded-For: 203.0.113.7'],
      { xff: '6.6.6.6, 203.0.113.7, 127.0.0.1' }),
    spoof('X_Forwarded_For beside X-Forwarded-For is dropped', ['X-Forwarded-For: 203.0.113.7', 'X_Forwarded_For: 6.6.6.6'],
      { xff: '203.0.113.7, 127.0.0.1' }),
    spoof('every spelling at once', [
      'X_SSO_User: admin', 'X-SSO_Subject: root', 'x_sso_tenant: 1', 'X-Sso-User: admin', 'x_forwarded_host: evil',
      'X_Request_Id: evil-id', 'X-SSO-User: admin', 'x-sso-idp-tenant: evil', 'X_Forwarded_Proto: https', 'X-Kept: yes',
    ], { check: (entry) => assert.deepEqual(valuesOf(entry, 'x-kept'), ['yes']) }),
  ];
  await runAll(env, t, cases);
});

envTest('gateway cookies never reach the upstream from any Cookie line; the rest arrive joined in order', async (env, t) => {
  const cookies = (name, lines, expected, target = '/public/h') => ({
    name,
    send: req(lines, { target }),
    status: 200,
    up: target,
    check: (entry) => assert.deepEqual(valuesOf(entry, 'cookie'), expected, `${name}: Cookie lines upstream ${show(entry.rawHead)}`),
  });
  const cases = [
    cookies('the session cookie among others', ['Cookie: a=1; ssogate=xyz; b=2'], ['a=1; b=2']),
    cookies('the session cookie on a second line', ['Cookie: a=1', 'Cookie: ssogate=abc; c=3'], ['a=1; c=3']),
    cookies('the session cookie on a third line', ['Cookie: a=1', 'Cookie: b=2', 'Cookie: c=3; ssogate=s'], ['a=1; b=2; c=3']),
    cookies('csrf and login cookies on two lines', ['Cookie: ssogate_csrf=t; x=1', 'Cookie: ssogate_login=l'], ['x=1']),
    cookies('only gateway cookies: no Cookie line', ['Cookie: ssogate=only'], []),
    cookies('only gateway cookies on several lines', ['Cookie: ssogate=a', 'Cookie: ssogate_csrf=b; ssogate_login=c'], []),
    cookies('order kept across lines', ['Cookie: z=26; a=1', 'Cookie: m=13'], ['z=26; a=1; m=13']),
    cookies('no spaces after the semicolons', ['Cookie: ssogate_csrf=1;ssogate_login=2;x=3'], ['x=3']),
    cookies('two session cookies', ['Cookie: x=1; ssogate=a; ssogate=b; y=2'], ['x=1; y=2']),
    cookies('names that only look like the gateway\'s stay', ['Cookie: ssogatex=1; xssogate=2; ssogate_other=3'],
      ['ssogatex=1; xssogate=2; ssogate_other=3']),
    cookies('plain cookies on two lines are joined', ['Cookie: PSASESSION=abc', 'Cookie: lang=en'], ['PSASESSION=abc; lang=en']),
    // Review H1: a pair with a gateway cookie after a ',' (a proxy joining Cookie lines as other fields,
    // RFC 2965) reached the upstream whole; one that splits at ',' read the gateway's cookie there.
    cookies('a gateway cookie behind a comma', ['Cookie: x=1, ssogate=abc'], []),
    cookies('behind a comma and a tab, among other pairs', ['Cookie: a=2; x=1,\tssogate_csrf=t; b=3'], ['a=2; b=3']),
    cookies('behind a comma without a space, on a second line', ['Cookie: a=1', 'Cookie: x=1,ssogate_login =l; c=3'],
      ['a=1; c=3']),
    cookies('a comma inside a value, and a look-alike name behind one, stay', ['Cookie: prefs=a,b; y=1, ssogatex=2'],
      ['prefs=a,b; y=1, ssogatex=2']),
    { name: 'a junk session cookie does not open /app', send: req(['Cookie: ssogate=junk'], { target: '/app/x' }), status: LOGIN },
    {
      name: 'a junk session cookie on a second line does not open /app',
      send: req(['Cookie: a=1', 'Cookie: ssogate=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'], { target: '/app/x' }),
      status: LOGIN,
    },
  ];
  await runAll(env, t, cases);
});

// Sends bytes on one connection and reads `count` answers; returns {responses, closed, extra}: whether
// the peer closed the connection (waited for when expectClosed) and any bytes after the answers.
async function pipeline(env, bytes, count, expectClosed, noBody = []) {
  const conn = await RawConn.open(env.gw.port);
  conn.write(bytes);
  const responses = [];
  for (let i = 0; i < count; i++) {
    const res = await conn.read(5000, { noBody: Boolean(noBody[i]) });
    if (!res) {
      break;
    }
    responses.push(res);
  }
  const closed = await conn.waitClosed(expectClosed ? 1000 : 150);
  const extra = conn.buf.toString('latin1');
  conn.destroy();
  return { responses, closed, extra };
}

envTest('pipelined requests: a refusal in the middle closes the connection, later ones are never forwarded', async (env) => {
  const g = (target, lines = []) => req(lines, { target });
  const cases = [
    {
      name: 'two pipelined',
      bytes: g('/public/p1') + g('/public/p2'),
      statuses: [200, 200],
      upstream: ['/public/p1', '/public/p2'],
      closed: false,
    },
    {
      name: 'three pipelined',
      bytes: g('/public/p1') + g('/public/p2') + g('/public/p3'),
      statuses: [200, 200, 200],
      upstream: ['/public/p1', '/public/p2', '/public/p3'],
      closed: false,
    },
    {
      name: 'a bad target in the middle',
      bytes: g('/public/p1') + g('/public/%2e%2e/%2e%2e/app/x') + g('/public/p3'),
      statuses: [200, 400],
      upstream: ['/public/p1'],
      closed: true,
    },
    {
      name: 'two Content-Length in the middle',
      bytes: g('/public/p1') + post(['Content-Length: 3', 'Content-Length: 4'], 'abcd') + g('/public/p3'),
      statuses: [200, 400],
      upstream: ['/public/p1'],
      closed: true,
    },
    {
      name: 'an identity header through Connection in the middle',
      bytes: g('/public/p1') + g('/public/p2', ['Connection: X-SSO-User']) + g('/public/p3'),
      statuses: [200, 400],
      upstream: ['/public/p1'],
      closed: true,
    },
    {
      name: 'a login answer in the middle keeps the connection',
      bytes: g('/public/p1') + g('/public/../app/x') + g('/public/p3'),
      statuses: [200, LOGIN, 200],
      upstream: ['/public/p1', '/public/p3'],
      closed: false,
    },
    {
      name: 'a NUL in the second request: the first is answered, the second refused',
      bytes: g('/public/p1') + g('/public/p2', ['X-A: a\x00X-SSO-User: admin']) + g('/public/p3'),
      statuses: [200, 400],
      upstream: ['/public/p1'],
      closed: true,
    },
    {
      name: 'a chunk extension in the middle passes and the requests stay in step',
      bytes: g('/public/p1') + post(['Transfer-Encoding: chunked'], '2;x=GET /app/x\r\nab\r\n0;y\r\n\r\n', '/public/p2')
        + g('/public/p3'),
      statuses: [200, 200, 200],
      upstream: ['/public/p1', '/public/p2', '/public/p3'],
      closed: false,
    },
    {
      name: 'an Upgrade on a route without tunnel: answered, then the connection closes',
      bytes: g('/public/p1', ['Connection: Upgrade', 'Upgrade: h2c']) + g('/public/p2'),
      statuses: [200],
      upstream: ['/public/p1'],
      closed: true,
    },
    {
      name: 'Transfer-Encoding and Content-Length smuggling a request for /app',
      bytes: 'POST /public/s HTTP/1.1\r\nHost: client.example.test\r\nContent-Length: 45\r\nTransfer-Encoding: chunked\r\n\r\n'
        + '0\r\n\r\nGET /app/x HTTP/1.1\r\nHost: client.example.test\r\n\r\n',
      statuses: [400],
      upstream: [],
      closed: true,
    },
    // A body on a method that takes none. evhttp reads no body of a HEAD: the bytes a front proxy sends
    // as its body (RFC 9112 6.3) would be read as a request, and the next user's request would become
    // that one's body. An upstream that ignores a GET's body reads it as a request of its own.
    {
      name: 'HEAD with a Content-Length body smuggling a request',
      bytes: `HEAD /public/h HTTP/1.1\r\nHost: client.example.test\r\nContent-Length: ${g('/public/hidden').length}\r\n\r\n`
        + g('/public/hidden'),
      statuses: [400],
      noBody: [true],
      upstream: [],
      closed: true,
    },
    {
      name: 'HEAD with a chunked body',
      bytes: 'HEAD /public/h HTTP/1.1\r\nHost: client.example.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'
        + g('/public/p2'),
      statuses: [400],
      noBody: [true],
      upstream: [],
      closed: true,
    },
    {
      name: 'GET with a body holding a request',
      bytes: req([`Content-Length: ${g('/app/x', ['X-SSO-User: admin']).length}`], { target: '/public/g' })
        + g('/app/x', ['X-SSO-User: admin']),
      statuses: [400],
      upstream: [],
      closed: true,
    },
    {
      name: 'OPTIONS with a body',
      bytes: req(['Content-Length: 3'], { method: 'OPTIONS', target: '/public/o', body: 'abc' }) + g('/public/p2'),
      statuses: [400],
      upstream: [],
      closed: true,
    },
    {
      name: 'a GET with Content-Length: 0 stays in step',
      bytes: req(['Content-Length: 0'], { target: '/public/p1' }) + g('/public/p2'),
      statuses: [200, 200],
      upstream: ['/public/p1', '/public/p2'],
      closed: false,
    },
    // Methods evhttp answers itself (501), without reading a body. After a CONNECT it goes on reading
    // requests (its 501 has no length: a client reads the rest as its body), which the wire check no
    // longer parses: the requests after such a method are refused, and none reaches the upstream.
    {
      name: 'TRACE with a body smuggling a request with a NUL',
      bytes: `TRACE /public/t HTTP/1.1\r\nHost: client.example.test\r\nContent-Length: ${g('/public/hidden', ['X-A: a\x00b']).length}\r\n\r\n`
        + g('/public/hidden', ['X-A: a\x00b']),
      statuses: [501],
      upstream: [],
      closed: true,
    },
    {
      name: 'PROPFIND, then a request with a NUL',
      bytes: req([], { method: 'PROPFIND', target: '/public/x' }) + g('/public/hidden', ['X-A: a\x00b']),
      statuses: [501],
      upstream: [],
      closed: true,
    },
    {
      name: 'CONNECT, then a request with a NUL',
      bytes: 'CONNECT client.example.test:80 HTTP/1.1\r\nHost: client.example.test:80\r\n\r\n'
        + g('/public/hidden', ['X-A: a\x00b']),
      statuses: [501],
      extraOk: true,
      upstream: [],
      closed: true,
    },
    {
      name: 'a padded Transfer-Encoding smuggling a request for /app',
      bytes: 'POST /public/s HTTP/1.1\r\nHost: client.example.test\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n'
        + '0\r\n\r\nGET /app/x HTTP/1.1\r\nHost: client.example.test\r\n\r\n',
      statuses: [400],
      upstream: [],
      closed: true,
    },
  ];
  const failures = [];
  for (const c of cases) {
    const mark = env.rec.mark();
    const { responses, closed, extra } = await pipeline(env, c.bytes, c.statuses.length, c.closed, c.noBody);
    if (extra.length > 0 && !c.extraOk) {
      failures.push(`${c.name}: more bytes after the expected answers: ${show(extra)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    const statuses = responses.map((r) => r.status);
    const upstream = env.rec.since(mark).map((e) => e.target);
    if (JSON.stringify(statuses) !== JSON.stringify(c.statuses)) {
      failures.push(`${c.name}: answers ${JSON.stringify(statuses)}, expected ${JSON.stringify(c.statuses)} for ${show(c.bytes)}`);
    }
    if (JSON.stringify(upstream) !== JSON.stringify(c.upstream)) {
      failures.push(`${c.name}: the upstream received ${JSON.stringify(upstream)}, expected ${JSON.stringify(c.upstream)}`);
    }
    if (closed !== c.closed) {
      failures.push(`${c.name}: the connection ${closed ? 'was closed' : 'stayed open'}`);
    }
    // Answers in order: each 200 carries the upstream's echo of its own request.
    const echoed = responses.filter((r) => r.status === 200).map((r) => JSON.parse(r.body.toString()).target);
    if (JSON.stringify(echoed) !== JSON.stringify(c.upstream)) {
      failures.push(`${c.name}: the 200 answers echo ${JSON.stringify(echoed)}`);
    }
  }
  assert.deepEqual(failures, [], failures.join('\n'));
});

// What libevent refuses itself (its bare 400 for a request line it cannot read, its 501 for a method it
// does not hand over) never reaches the router: the wire check's finding is still counted and logged
// when the connection ends (rule: bad input gets an error, a log line and a metric).
envTest('requests libevent refuses itself are counted and logged', async (env) => {
  // (Other tests' connections may end meanwhile in this shared gateway: the count only grows.)
  const cases = [
    ['GET /public/x\x00 HTTP/1.1\r\nHost: client.example.test\r\n\r\n', 400, 'Invalid char in url path'],
    ['TRACE /public/x HTTP/1.1\r\nHost: client.example.test\r\n\r\n', 501, 'a method the gateway does not serve'],
    ['GET /public/x HTTP/2.0\r\nHost: client.example.test\r\n\r\n', 400, 'an HTTP version other than 1.0 and 1.1'],
  ];
  for (const [bytes, status, detail] of cases) {
    const before = await badRequests(env.gw, 'malformed_wire');
    const from = env.gw.logs.length;
    const mark = env.rec.mark();
    const res = await rawExchange(env.gw.port, bytes);
    assert.equal(res.status, status, JSON.stringify(bytes));
    assert.deepEqual(env.rec.since(mark), [], `nothing reached the upstream: ${JSON.stringify(bytes)}`);
    await env.gw.waitLog((l) => l.event === 'bad_request' && l.answered_by === 'libevent' && l.detail === detail,
      5000, `the log line: ${detail}`, from);
    assert.ok(await badRequests(env.gw, 'malformed_wire') > before, `counted: ${JSON.stringify(bytes)}`);
  }
});

envTest('a chunk size line that never ends: the connection is closed once it passes 4 KiB', async (env) => {
  const mark = env.rec.mark();
  const before = await badRequests(env.gw, 'malformed_wire');
  const conn = await RawConn.open(env.gw.port);
  try {
    conn.write('POST /public/long HTTP/1.1\r\nHost: client.example.test\r\nTransfer-Encoding: chunked\r\n\r\n3;');
    for (let i = 0; i < 64 && !conn.closed; i++) {
      conn.write('e'.repeat(1024));
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assert.ok(await conn.waitClosed(3000), 'the gateway closed the connection');
    assert.equal(await badRequests(env.gw, 'malformed_wire') - before, 1, 'counted as malformed_wire');
    assert.deepEqual(env.rec.since(mark), [], 'nothing reached the upstream');
  } finally {
    conn.destroy();
  }
});

envTest('good requests keep working: Expect 100-continue, large and chunked bodies, keep-alive, HEAD', async (env) => {
  const { rec, gw } = env;

  // Expect: 100-continue gets 100, then 200; the body arrives intact; Expect is not forwarded.
  {
    const mark = rec.mark();
    const conn = await RawConn.open(gw.port);
    try {
      conn.write('POST /public/expect HTTP/1.1\r\nHost: client.example.test\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n');
      const interim = await conn.read(3000);
      assert.ok(interim, 'an answer to Expect: 100-continue before the body');
      assert.equal(interim.status, 100, `100 Continue first (got ${interim.head})`);
      conn.write('hello world');
      const res = await conn.read(5000);
      assert.ok(res && res.status === 200, `200 after the body (got ${res ? res.head : 'nothing'})`);
      const got = rec.since(mark);
      assert.equal(got.length, 1, 'one request upstream');
      assert.equal(got[0].requestLine, 'POST /public/expect HTTP/1.1');
      assert.equal(got[0].body.toString(), 'hello world', 'the body upstream');
      assert.deepEqual(valuesOf(got[0], 'expect'), [], 'Expect is not forwarded');
      ownedCheck(got[0], res);
    } finally {
      conn.destroy();
    }
  }

  // A 5 MiB body streamed in 64 KiB pieces, and a 2 MiB chunked one.
  for (const chunked of [false, true]) {
    const mark = rec.mark();
    const size = chunked ? 2 * 1024 * 1024 : 5 * 1024 * 1024;
    const body = crypto.randomBytes(size);
    const conn = await RawConn.open(gw.port);
    try {
      conn.write(`POST /public/big HTTP/1.1\r\nHost: client.example.test\r\n${chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${size}`}\r\n\r\n`);
      for (let off = 0; off < size; off += 65536) {
        const piece = body.subarray(off, off + 65536);
        conn.write(chunked ? Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n')]) : piece);
      }
      if (chunked) {
        conn.write('0\r\n\r\n');
      }
      const res = await conn.read(20000);
      assert.ok(res && res.status === 200, `a ${size}-byte ${chunked ? 'chunked' : 'sized'} body passes (got ${res ? res.head : 'nothing'})`);
      const got = rec.since(mark);
      assert.equal(got.length, 1);
      assert.equal(got[0].bodyLength, size, 'the whole body upstream');
      assert.equal(got[0].bodySha256, crypto.createHash('sha256').update(body).digest('hex'), 'the same bytes upstream');
      ownedCheck(got[0], res);
    } finally {
      conn.destroy();
    }
  }

  // Keep-alive reuse: ten requests, some with bodies, on one connection.
  {
    const mark = rec.mark();
    const conn = await RawConn.open(gw.port);
    try {
      for (let i = 0; i < 10; i++) {
        const body = i % 2 ? `body-${i}` : '';
        conn.write(body
          ? `PUT /public/ka/${i} HTTP/1.1\r\nHost: client.example.test\r\nContent-Length: ${body.length}\r\n\r\n${body}`
          : `GET /public/ka/${i} HTTP/1.1\r\nHost: client.example.test\r\n\r\n`);
        const res = await conn.read(5000);
        assert.ok(res && res.status === 200, `request ${i} on the kept-alive connection (got ${res ? res.head : 'nothing'})`);
        assert.equal(JSON.parse(res.body.toString()).target, `/public/ka/${i}`);
      }
      assert.equal(conn.closed, false, 'the connection is still open');
      const got = rec.since(mark);
      assert.deepEqual(got.map((e) => e.requestLine),
        Array.from({ length: 10 }, (_, i) => `${i % 2 ? 'PUT' : 'GET'} /public/ka/${i} HTTP/1.1`));
      assert.deepEqual(got.map((e) => e.body.toString()), Array.from({ length: 10 }, (_, i) => (i % 2 ? `body-${i}` : '')));
    } finally {
      conn.destroy();
    }
  }

  // HEAD: an answer without a body, the request forwarded as HEAD.
  {
    const mark = rec.mark();
    const conn = await RawConn.open(gw.port);
    try {
      conn.write('HEAD /public/head HTTP/1.1\r\nHost: client.example.test\r\n\r\n');
      const res = await conn.read(5000, { noBody: true });
      assert.ok(res && res.status === 200, 'HEAD answered');
      assert.deepEqual(rec.since(mark).map((e) => e.requestLine), ['HEAD /public/head HTTP/1.1']);
      conn.write('GET /public/after-head HTTP/1.1\r\nHost: client.example.test\r\n\r\n');
      const next = await conn.read(5000);
      assert.ok(next && next.status === 200 && JSON.parse(next.body.toString()).target === '/public/after-head',
        'the connection is in step after HEAD');
    } finally {
      conn.destroy();
    }
  }
});

envTest('nothing the upstream received carried an identity or a gateway cookie', async (env) => {
  const bad = [];
  for (const entry of env.rec.log) {
    if (entry.error) {
      bad.push(`unparsable upstream request: ${entry.error}`);
      continue;
    }
    for (const [name, value] of entry.headers) {
      if (fold(name).startsWith('x-sso-')) {
        bad.push(`${entry.requestLine}: ${name}: ${value}`);
      }
      if (fold(name) === 'cookie' && /(^|;\s*)ssogate(_csrf|_login)?=/.test(value)) {
        bad.push(`${entry.requestLine}: Cookie: ${value}`);
      }
    }
    if (/^\/app(\/|;|$|\?)/.test(entry.target)) {
      bad.push(`${entry.requestLine}: under /app`);
    }
  }
  assert.deepEqual(bad, []);
});
