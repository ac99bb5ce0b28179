#!/usr/bin/env node
'use strict';
// Stub PSA (professional-services application) that the integration tests and the demo put behind the
// gateway. It trusts nothing of the gateway but its signed assertion (header authentication):
//
//   node tests/stub/psa.js [--data FILE] [--port N] [--gateway-jwks URL] [--audience URL|auto]
//                          [--issuer URL] [--exit-with-stdin]
//
// Listens on 127.0.0.1 (port 0 by default) and prints {"port":N} as its first stdout line. --data is the
// dataset (default psa/demo-data.json); --gateway-jwks the gateway's {public_url}/_sso/jwks.json; --audience
// the PSA's own URL as the gateway's upstream ("auto": http://127.0.0.1:<own port>); --issuer the gateway's
// public URL. The last three can also be given later with POST /__psa/config, once the gateway's port is
// known. An https JWKS is verified with the default CA store: add a test CA with NODE_EXTRA_CA_CERTS.
// See psa/app.js for the pages and the test controls.

const path = require('node:path');
const { parseArgs, runMain } = require('./lib/server');
const { createPsa } = require('./psa/app');
const { loadData } = require('./psa/data');

function main() {
  const args = parseArgs(process.argv.slice(2));
  const data = loadData(typeof args.data === 'string' ? args.data : path.join(__dirname, 'psa', 'demo-data.json'));
  const psa = createPsa(data);
  const initial = {};
  for (const [option, key] of [
    ['gateway-jwks', 'gateway_jwks'],
    ['audience', 'audience'],
    ['issuer', 'issuer'],
  ]) {
    if (args[option] !== undefined) {
      initial[key] = args[option];
    }
  }
  psa.configure(initial);
  return runMain(psa.stub, args);
}

try {
  main().catch((err) => {
    process.stderr.write(`psa stub: ${err.stack || err}\n`);
    process.exit(1);
  });
} catch (err) {
  process.stderr.write(`psa stub: ${err.message}\n`);
  process.exit(2);
}
