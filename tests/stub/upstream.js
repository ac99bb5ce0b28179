#!/usr/bin/env node
'use strict';
// Stub upstream for the integration tests: `node tests/stub/upstream.js [--name NAME] [--port N]`.
// Listens on 127.0.0.1 (port 0 by default) and prints {"port":N} as its first stdout line.
//
// Routes (see lib/upstream-routes.js): /echo (and any unknown path) answers JSON describing the request
// (method, url, headers, body length and sha256); /big?mb=N[&kb=N][&chunked=1]; /slow?ms=N; /stall?ms=N;
// /cookies; /redirect[?to=URL&status=30x]; /status/NNN; /hop. /__stub/log and /__stub/reset are the
// stub's own control paths, for tests to ask directly.

const { createStub, parseArgs, runMain } = require('./lib/server');
const { routes, fallback } = require('./lib/upstream-routes');

if (require.main === module) {
  const args = parseArgs(process.argv.slice(2));
  runMain(createStub({ name: args.name || 'upstream', routes, fallback }), args).catch((err) => {
    process.stderr.write(`upstream stub: ${err.stack || err}\n`);
    process.exit(1);
  });
}

module.exports = { routes, fallback };
