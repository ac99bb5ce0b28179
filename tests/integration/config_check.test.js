'use strict';
// `ssogate -t -c FILE` accepts a good file (exit 0) and refuses each kind of bad one with exit 1 and
// `ssogate: FILE: KEY: MESSAGE`; --help and --version; a daemon started on a bad file does not start.

const assert = require('node:assert/strict');
const { itest, SLOW } = require('./lib/harness');

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// The configuration h.config() makes, without key (a dotted path) or with it replaced by value.
function edit(h, key, value) {
  const config = h.config({ upstream: { url: 'http://127.0.0.1:9' } });
  const parts = key.split('.');
  let node = config;
  for (const part of parts.slice(0, -1)) {
    node = node[part];
  }
  if (value === undefined) {
    delete node[parts[parts.length - 1]];
  } else {
    node[parts[parts.length - 1]] = value;
  }
  return JSON.stringify(config, null, 2);
}

itest('-t accepts a good file', async (t, h) => {
  const file = h.writeConfig(h.config({ upstream: { url: 'http://127.0.0.1:9' } }));
  const run = await h.runGateway(['-t', '-c', file]);
  assert.equal(run.code, 0, `exit 0 (stderr: ${run.stderr})`);
  const minimal = h.writeConfig({
    listeners: [{ address: '127.0.0.1', port: 8080 }],
    public_url: 'https://psa.example.com',
    upstream: { url: 'http://127.0.0.1:9000' },
    data_dir: h.file('data'),
  }, 'minimal.json');
  assert.equal((await h.runGateway(['-t', '-c', minimal])).code, 0, 'only the required keys');
});

itest('-t refuses each kind of bad file with exit 1 and a message naming file and key', async (t, h) => {
  const cases = [
    // [what, file content, key path expected in the message (a RegExp source), or null: no key]
    ['truncated JSON', (h2) => edit(h2, 'drain_timeout_s', 5).slice(0, -20), null],
    ['not JSON at all', () => 'listeners = 127.0.0.1', null],
    ['top level not an object', () => '[1, 2, 3]', null],
    ['unknown top-level key', (h2) => edit(h2, 'no_such_key', 1), 'no_such_key'],
    ['unknown nested key', (h2) => edit(h2, 'upstream.no_such_key', 1), 'upstream\\.no_such_key'],
    ['wrong type: string for number', (h2) => edit(h2, 'upstream.pool_size', 'eight'), 'upstream\\.pool_size'],
    ['wrong type: object for array', (h2) => edit(h2, 'listeners', { address: '127.0.0.1' }), 'listeners'],
    ['wrong type: number for string', (h2) => edit(h2, 'public_url', 42), 'public_url'],
    ['out of range port', (h2) => edit(h2, 'listeners', [{ address: '127.0.0.1', port: 70000 }]), 'listeners\\[0\\]\\.port'],
    ['out of range: negative', (h2) => edit(h2, 'limits.body_bytes', -1), 'limits\\.body_bytes'],
    ['out of range: zero pool', (h2) => edit(h2, 'upstream.pool_size', 0), 'upstream\\.pool_size'],
    ['out of range: fractional', (h2) => edit(h2, 'drain_timeout_s', 1.5), 'drain_timeout_s'],
    ['missing required upstream', (h2) => edit(h2, 'upstream'), 'upstream(\\.url)?'],
    ['missing required upstream.url', (h2) => edit(h2, 'upstream.url'), 'upstream\\.url'],
    ['missing required data_dir', (h2) => edit(h2, 'data_dir'), 'data_dir'],
    ['missing required public_url', (h2) => edit(h2, 'public_url'), 'public_url'],
    ['empty listeners', (h2) => edit(h2, 'listeners', []), 'listeners'],
    ['bad upstream URL scheme', (h2) => edit(h2, 'upstream.url', 'ftp://127.0.0.1/'), 'upstream\\.url'],
  ];
  for (const [what, make, key] of cases) {
    const file = h.writeConfig(make(h), `bad-${what.replace(/[^a-z0-9]+/gi, '-')}.json`);
    const run = await h.runGateway(['-t', '-c', file]);
    assert.equal(run.code, 1, `${what}: exit 1 (stderr: ${run.stderr})`);
    const prefix = `^ssogate: ${escape(file)}: `;
    const pattern = key === null ? prefix : `${prefix}${key}: \\S`;
    assert.match(run.stderr, new RegExp(pattern, 'm'), `${what}: the message names the file${key ? ' and the key' : ''}`);
    t.diagnostic(`${what}: ${run.stderr.split('\n')[0]}`);
  }
});

itest('-t on a file that does not exist exits 1 naming it', async (t, h) => {
  const file = h.file('does-not-exist.json');
  const run = await h.runGateway(['-t', '-c', file]);
  assert.equal(run.code, 1);
  assert.match(run.stderr, new RegExp(`^ssogate: ${escape(file)}: `, 'm'));
});

itest('--help and --version exit 0; an unknown option does not', async (t, h) => {
  const help = await h.runGateway(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout + help.stderr, /-c/, '--help mentions -c');
  assert.match(help.stdout + help.stderr, /-t/, '--help mentions -t');
  const version = await h.runGateway(['--version']);
  assert.equal(version.code, 0);
  assert.match(version.stdout + version.stderr, /\d+\.\d+\.\d+/);
  const unknown = await h.runGateway(['--no-such-option']);
  assert.notEqual(unknown.code, 0);
});

itest('the daemon refuses to start on a bad file', async (t, h) => {
  const file = h.writeConfig(edit(h, 'upstream.pool_size', 'eight'));
  const run = await h.runGateway(['-c', file], { ms: 5000 * SLOW });
  assert.equal(run.code, 1, `exit 1 (stderr: ${run.stderr})`);
  assert.match(run.stderr, /upstream\.pool_size/);
  assert.ok(!/"event":"listening"/.test(run.stderr), 'never listened');
});

itest('-t refuses a FIFO, a device or a directory named by the configuration without waiting on it', async (t, h) => {
  const fifo = h.file('named.fifo');
  require('node:child_process').execFileSync('mkfifo', [fifo]);
  const cases = [
    // [what, key path in the message (a RegExp source), edit of h.config()]
    ['assertion key a FIFO', 'assertion\\.key_file', (c) => { c.assertion = { ...c.assertion, key_file: fifo }; }],
    ['assertion key a device', 'assertion\\.key_file', (c) => { c.assertion = { ...c.assertion, key_file: '/dev/zero' }; }],
    ['assertion key a directory', 'assertion\\.key_file', (c) => { c.assertion = { ...c.assertion, key_file: h.dir }; }],
    ['TLS certificate a FIFO', 'listeners\\[0\\]\\.tls\\.cert', (c) => { c.listeners[0].tls = { cert: fifo, key: fifo }; }],
  ];
  for (const [what, key, change] of cases) {
    const config = h.config({ upstream: { url: 'http://127.0.0.1:9' } });
    change(config);
    const file = h.writeConfig(config, `bad-${what.replace(/[^a-z0-9]+/gi, '-')}.json`);
    const run = await h.runGateway(['-t', '-c', file], { ms: 5000 * SLOW });
    assert.equal(run.code, 1, `${what}: exit 1 (stderr: ${run.stderr})`);
    assert.match(run.stderr, new RegExp(`^ssogate: ${escape(file)}: ${key}: .*not a regular file`, 'm'), `${what}: ${run.stderr}`);
  }
  const run = await h.runGateway(['-t', '-c', fifo], { ms: 5000 * SLOW });
  assert.equal(run.code, 1, `the configuration a FIFO: exit 1 (stderr: ${run.stderr})`);
  assert.match(run.stderr, /not a regular file/, run.stderr);
});
