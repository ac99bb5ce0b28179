#!/usr/bin/env node
// Writes the seed corpora under tests/fuzz/corpus/. Run it again only to
// change the seeds: `node tests/fuzz/gen-corpus.js`. Valid tokens are signed
// here, with Node's own crypto, by the published test keys of RFC 7515 A.2/A.3
// and RFC 8037 A.1, whose public halves form fuzz_jws.c's fixed JWKS; so the
// corpus also checks that tokens from another implementation verify.
'use strict';
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, 'corpus');

const rsaJwk = {
  kty: 'RSA',
  n: 'ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4Ql' +
    'L-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUs' +
    'LA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoud' +
    'F8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ',
  e: 'AQAB',
  d: 'Eq5xpGnNCivDflJsRQBXHx1hdR1k6Ulwe2JZD50LpXyWPEAeP88vLNO97IjlA7_GQ5sLKMgvfTeXZx9SE-7YwVol2NXOoAJe' +
    '46sui395IW_GO-pWJ1O0BkTGoVEn2bKVRUCgu-GjBVaYLU6f3l9kJfFNS3E0QbVdxzubSu3Mkqzjkn439X0M_V51gfpRLI9J' +
    'YanrC4D4qAdGcopV_0ZHHzQlBjudU2QvXt4ehNYTCBr6XCLQUShb1juUO1ZdiYoFaFQT5Tw8bGUl_x_jTj3ccPDVZFD9pIuh' +
    'LhBOneufuBiB4cS98l2SR_RQyGWSeWjnczT0QU91p1DhOVRuOopznQ',
  p: '4BzEEOtIpmVdVEZNCqS7baC4crd0pqnRH_5IB3jw3bcxGn6QLvnEtfdUdiYrqBdss1l58BQ3KhooKeQTa9AB0Hw_Py5PJdTJ' +
    'NPY8cQn7ouZ2KKDcmnPGBY5t7yLc1QlQ5xHdwW1VhvKn-nXqhJTBgIPgtldC-KDV5z-y2XDwGUc',
  q: 'uQPEfgmVtjL0Uyyx88GZFF1fOunH3-7cepKmtH4pxhtCoHqpWmT8YAmZxaewHgHAjLYsp1ZSe7zFYHj7C6ul7TjeLQeZD_Yw' +
    'D66t62wDmpe_HlB-TnBA-njbglfIsRLtXlnDzQkv5dTltRJ11BKBBypeeF6689rjcJIDEz9RWdc',
  dp: 'BwKfV3Akq5_MFZDFZCnW-wzl-CCo83WoZvnLQwCTeDv8uzluRSnm71I3QCLdhrqE2e9YkxvuxdBfpT_PI7Yz-FOKnu1R6H' +
    'sJeDCjn12Sk3vmAktV2zb34MCdy7cpdTh_YVr7tss2u6vneTwrA86rZtu5Mbr1C1XsmvkxHQAdYo0',
  dq: 'h_96-mK1R_7glhsum81dZxjTnYynPbZpHziZjeeHcXYsXaaMwkOlODsWa7I9xXDoRwbKgB719rrmI2oKr6N3Do9U0ajaHF' +
    '-NKJnwgjMd2w9cjz3_-kyNlxAr2v4IKhGNpmM5iIgOS1VZnOZ68m6_pbLBSp3nssTdlqvd0tIiTHU',
  qi: 'IYd7DHOhrWvxkwPQsRM2tOgrjbcrfvtQJipd-DlcxyVuuM9sQLdgjVk2oy26F0EmpScGLq2MowX7fhd_QJQ3ydy5cY7YIB' +
    'i87w93IKLEdfnbJtoOPLUW0ITrJReOgo1cq9SbsxYawBgfp_gh6A5603k2-ZQwVK0JKSHuLFkuQ3U',
};
const ecJwk = {
  kty: 'EC', crv: 'P-256',
  x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU',
  y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0',
  d: 'jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI',
};
const edJwk = {
  kty: 'OKP', crv: 'Ed25519',
  x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo',
  d: 'nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A',
};
const keys = {
  rsa: crypto.createPrivateKey({ key: rsaJwk, format: 'jwk' }),
  ec: crypto.createPrivateKey({ key: ecJwk, format: 'jwk' }),
  ed: crypto.createPrivateKey({ key: edJwk, format: 'jwk' }),
};
const pub = (jwk) => Object.fromEntries(Object.entries(jwk).filter(([k]) => !/^(d|p|q|dp|dq|qi)$/.test(k)));

const b64 = (x) => Buffer.from(x).toString('base64url');

function sign(alg, input) {
  const data = Buffer.from(input);
  switch (alg) {
    case 'RS256': return crypto.sign('sha256', data, keys.rsa);
    case 'PS256': return crypto.sign('sha256', data, {
      key: keys.rsa, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
    case 'ES256': return crypto.sign('sha256', data, { key: keys.ec, dsaEncoding: 'ieee-p1363' });
    case 'EdDSA': return crypto.sign(null, data, keys.ed);
    default: return Buffer.from('not a signature');
  }
}

// A compact JWS of header and payload (objects or raw strings), signed with
// signAlg (default: the header's alg).
function jws(header, payload, signAlg) {
  const h = typeof header === 'string' ? header : JSON.stringify(header);
  const p = typeof payload === 'string' ? payload : JSON.stringify(payload);
  const input = `${b64(h)}.${b64(p)}`;
  return `${input}.${b64(sign(signAlg || header.alg, input))}`;
}

const claims = {
  iss: 'https://idp.example', sub: '248289761001', aud: 'client-1', exp: 1700000300,
  iat: 1699999990, nonce: 'n-0S6_WzA2Mj', amr: ['pwd', 'otp'], email: 'a@example.com',
  active: true, auth_time: 1699999980,
};

function writeCorpus(name, seeds) {
  const dir = path.join(root, name);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  Object.entries(seeds).forEach(([file, content]) => fs.writeFileSync(path.join(dir, file), content));
  console.log(`${name}: ${Object.keys(seeds).length} seeds`);
}

// ---- jws ----
const good = {};
for (const [alg, kid] of [['RS256', 'rsa1'], ['PS256', 'rsa1'], ['ES256', 'ec1'], ['EdDSA', 'ed1']]) {
  good[`valid-${alg}`] = jws({ alg, kid, typ: 'JWT' }, claims);
  good[`valid-${alg}-nokid`] = jws({ alg }, claims);
}
const payloadB64 = 'eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ';
const es = good['valid-ES256'];
writeCorpus('jws', {
  ...good,
  'valid-azp': jws({ alg: 'ES256', kid: 'ec1' }, { ...claims, aud: ['client-1', 'other'], azp: 'client-1' }),
  'valid-expired': jws({ alg: 'EdDSA', kid: 'ed1' }, { ...claims, exp: 1600000000 }),
  'valid-bad-nonce': jws({ alg: 'EdDSA', kid: 'ed1' }, { ...claims, nonce: 'other' }),
  'valid-float-iat': jws({ alg: 'EdDSA', kid: 'ed1' }, '{"iss":"https://idp.example","aud":"client-1","exp":1700000300,"iat":1.7e9}'),
  'rfc7515-a2': `eyJhbGciOiJSUzI1NiJ9.${payloadB64}.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw`,
  'rfc7515-a3': `eyJhbGciOiJFUzI1NiJ9.${payloadB64}.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q`,
  'rfc8037-a4': 'eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg',
  'alg-none': `eyJhbGciOiJub25lIn0.${payloadB64}.`,
  'alg-hs256': jws({ alg: 'HS256', kid: 'rsa1' }, claims, 'none'),
  'alg-es384': jws({ alg: 'ES384', kid: 'ec1' }, claims, 'ES256'),
  'hdr-jku': jws({ alg: 'ES256', kid: 'ec1', jku: 'https://evil.example/jwks' }, claims),
  'hdr-jwk': jws({ alg: 'ES256', jwk: pub(ecJwk) }, claims),
  'hdr-x5c': jws({ alg: 'RS256', kid: 'rsa1', x5c: ['MIIB'] }, claims),
  'hdr-crit': jws({ alg: 'EdDSA', kid: 'ed1', crit: ['b64'], b64: false }, claims),
  'hdr-dup-alg': jws('{"alg":"EdDSA","alg":"none","kid":"ed1"}', claims, 'EdDSA'),
  'hdr-kid-number': jws('{"alg":"EdDSA","kid":1}', claims, 'EdDSA'),
  'hdr-not-json': jws('{alg:EdDSA}', claims, 'EdDSA'),
  'hdr-nul': jws('{"alg":"EdDSA\\u0000","kid":"ed1"}', claims, 'EdDSA'),
  'kid-unknown': jws({ alg: 'ES256', kid: 'nope' }, claims),
  'kid-mismatch': jws({ alg: 'ES256', kid: 'rsa1' }, claims),
  'payload-array': jws({ alg: 'EdDSA', kid: 'ed1' }, '[1,2,3]'),
  'payload-deep': jws({ alg: 'EdDSA', kid: 'ed1' }, `{"a":${'['.repeat(20)}${']'.repeat(20)}}`),
  'two-parts': es.split('.').slice(0, 2).join('.'),
  'four-parts': `${es}.x`,
  'padded': es.replace('.', '=.'),
  'std-alphabet': es.replace(/-/g, '+').replace(/_/g, '/'),
  'tampered-sig': es.slice(0, -5) + (es.slice(-5, -4) === 'A' ? 'B' : 'A') + es.slice(-4),
  'empty': '',
  'dots': '..',
  'claims-json': JSON.stringify(claims),
  'claims-multi-aud': JSON.stringify({ ...claims, aud: ['client-1', 'x'] }),
  // "HEADER\nPAYLOAD\nSIGNATURE" inputs for fuzz_jws.c's structured path.
  'struct-ed': `{"alg":"EdDSA","kid":"ed1"}\n${JSON.stringify(claims)}\nsig`,
  'struct-es': `{"alg":"ES256","kid":"ec1","typ":"JWT"}\n${JSON.stringify({ ...claims, aud: ['client-1', 'b'] })}\n`,
  'struct-rs': `{"alg":"RS256"}\n{"sub":"x"}\n${'s'.repeat(256)}`,
  'struct-none': '{"alg":"none"}\n{"sub":"x"}\n',
  'struct-jku': '{"alg":"PS256","kid":"rsa1","jku":"https://x","crit":["exp"]}\n{}\n',
  'struct-kid': '{"alg":"EdDSA","kid":"rsa1"}\n[]\nxx',
  'struct-dup': '{"alg":"EdDSA","kid":"ed1","kid":"ec1"}\n{"a":1,"a":2}\n',
  'struct-text': '{"alg":"EdDSA"}\nExample of Ed25519 signing\n',
  'claims-numbers': '{"iss":"https://idp.example","sub":"s","aud":"client-1","exp":-1,"iat":99999999999999999999,"nbf":1e3,"nonce":"n-0S6_WzA2Mj"}',
});

// ---- b64url ----
writeCorpus('b64url', {
  empty: '', f: 'Zg', fo: 'Zm8', foo: 'Zm9v', foobar: 'Zm9vYmFy', padded: 'Zg==', plus: 'Zm+v',
  slash: 'Zm/v', noncanonical2: 'Zh', noncanonical3: 'Zm9', len1: 'Z', space: 'Zm 9v', nl: 'Zm9v\n',
  url: '-_8', high: Buffer.from([0xc3, 0xa9, 0xff, 0x00]), nul: Buffer.from('Zm\0v'),
  header: 'eyJhbGciOiJFUzI1NiJ9', payload: payloadB64,
  sig: 'DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q',
  random1: crypto.randomBytes(48), random2: b64(crypto.randomBytes(100)), random3: b64(crypto.randomBytes(31)),
  random4: b64(crypto.randomBytes(32)), long: b64(crypto.randomBytes(3000)),
});

// ---- jwks ----
const googleLike = { keys: [1, 2, 3].map((i) => ({ ...pub(rsaJwk), kid: `k${i}`, alg: 'RS256', use: 'sig' })) };
writeCorpus('jwks', {
  rfc: JSON.stringify({ keys: [{ ...pub(rsaJwk), kid: 'rsa1' }, { ...pub(ecJwk), kid: 'ec1' }, { ...pub(edJwk), kid: 'ed1' }] }),
  'google-like': JSON.stringify(googleLike),
  'pretty': JSON.stringify({ keys: [pub(ecJwk)] }, null, 2),
  'with-x5c': JSON.stringify({ keys: [{ ...pub(rsaJwk), kid: 'x', x5c: ['MIIC'], x5t: 'abc', key_ops: ['verify'] }] }),
  'private-parts': JSON.stringify({ keys: [rsaJwk, ecJwk, edJwk] }),
  'use-enc': JSON.stringify({ keys: [{ ...pub(rsaJwk), use: 'enc' }] }),
  'oct': JSON.stringify({ keys: [{ kty: 'oct', k: 'AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ' }] }),
  'p384': JSON.stringify({ keys: [{ ...pub(ecJwk), crv: 'P-384' }] }),
  'off-curve': JSON.stringify({ keys: [{ ...pub(ecJwk), y: ecJwk.x }] }),
  'zero-point': JSON.stringify({ keys: [{ ...pub(ecJwk), x: b64(Buffer.alloc(32)), y: b64(Buffer.alloc(32)) }] }),
  'short-rsa': JSON.stringify({ keys: [{ kty: 'RSA', n: b64(crypto.randomBytes(128)), e: 'AQAB' }] }),
  'rsa-e-one': JSON.stringify({ keys: [{ ...pub(rsaJwk), e: 'AQ' }] }),
  'ed448': JSON.stringify({ keys: [{ kty: 'OKP', crv: 'Ed448', x: b64(crypto.randomBytes(57)) }] }),
  'alg-mismatch': JSON.stringify({ keys: [{ ...pub(rsaJwk), alg: 'ES256' }] }),
  'dup-member': '{"keys":[{"kty":"OKP","kty":"EC","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}',
  'dup-kid': JSON.stringify({ keys: [{ ...pub(ecJwk), kid: 'a' }, { ...pub(edJwk), kid: 'a' }] }),
  'mixed-types': '{"keys":[1,"x",null,true,[],{}]}',
  'empty-keys': '{"keys":[]}',
  'no-keys': '{"other":[]}',
  'keys-object': '{"keys":{}}',
  'not-json': 'keys',
  'array': '[]',
  'deep': `{"keys":[${'['.repeat(20)}${']'.repeat(20)}]}`,
  'comment': '{"keys":[]/* c */}',
  'nul-escape': '{"keys":[{"kty":"EC\\u0000"}]}',
  'empty': '',
});

// ---- clientaddr (X-Forwarded-For lines; the first also a trusted_proxies block) ----
writeCorpus('clientaddr', {
  one: '203.0.113.7', chain: '6.6.6.6, 203.0.113.7, 10.9.9.9', lines: '203.0.113.8\n10.2.2.2, 192.0.2.1',
  v6: '2001:db8::7, [2001:db8:1::1]:443, 2001:db8:ffff::1', ports: '203.0.113.7:8080, 10.0.0.2:80',
  mapped: '::ffff:203.0.113.9, ::ffff:10.0.0.3', unknown: '203.0.113.7, unknown, 10.2.2.2',
  trusted: '10.3.3.3, 10.2.2.2', empty: ' , ,\t,', block: '10.0.0.0/8\n203.0.113.7',
  'block-v6': 'fd00::/8', 'block-bad': '10.0.0.1/8', 'block-long': '::/129',
  brackets: '[203.0.113.7], [::1, ]::1[', long: `203.0.113.7${', 10.0.0.1'.repeat(60)}`,
  rfc7239: 'for=192.0.2.60;proto=http, _hidden, "[2001:db8::1]"',
});

// ---- cookie ----
writeCorpus('cookie', {
  simple: 'sso_session=abc', several: 'a=1; sso_session=abc; b=2', nospace: 'a=1;sid=abc;b=2',
  spaces: '  a=1 ;\t sid = abc ;; ', quoted: 'sid="quoted"; x=1', dup: 'sid=1; sid=2; sso_session=3; sso_session=4',
  empty: '', semis: ';;;', noeq: 'sid; junk; =x', json: 'prefs={"x":1,"y":[2,3]}; sso_session=s',
  comma: 'a=1,sid=2', eqs: 'sid=a=b==; sso_session=x=', high: Buffer.from('sid=\xc3\xa9; sso_session=\xff'),
  nul: Buffer.from('sid=a\0b; sso_session=c'), lonequote: 'sid="a; sid=b"', ctl: 'sid=a\x01; sso_session=\x7f',
  long: `sid=${'v'.repeat(5000)}; sso_session=${'w'.repeat(100)}`,
  'format-ok': 'sso_session\nYWJj-_.~', 'format-bad-name': 'bad name\nv', 'format-bad-value': 'sid\na;b',
  'format-empty': 'sid\n', 'format-nl': '\n\n',
  real: 'ASP.NET_SessionId=kq1m; __RequestVerificationToken=CfDJ8; sso_session=Zm9v; _ga=GA1.2.3',
});

// ---- log (a value a log line carries: any bytes but NUL) ----
const logSeeds = {
  plain: '/path?x=1', escapes: 'quote " backslash \\ newline \n cr \r tab \t \x01 \x7f',
  utf8: Buffer.from('Zo\xc3\xab \xe2\x82\xac \xf0\x9d\x84\x9e', 'latin1'),
  surrogate: Buffer.from('ad\xed\xb2\x80min', 'latin1'), overlong: Buffer.from('\xc0\xaf\xe0\x80\xaf', 'latin1'),
  beyond: Buffer.from('\xf4\x90\x80\x80', 'latin1'), cut: Buffer.from('cut \xe2\x82', 'latin1'),
  stray: Buffer.from('\x80x\xbf\xff\xfe', 'latin1'), separators: 'a\u2028b\u2029c\u0085d',
  long: 'a'.repeat(5000), 'long-cut': Buffer.concat([Buffer.from('b'.repeat(4095)), Buffer.from('\xe2\x82\xac tail', 'latin1')]),
  'long-stray': Buffer.concat([Buffer.from('c'.repeat(4096)), Buffer.from('\x80\x80', 'latin1')]),
};
writeCorpus('log', logSeeds);
