'use strict';
// The OpenID Provider that ssogate's tests and demo log in against: the certified oidc-provider package
// (v8), configured here, with our own login pages (interaction.js) and, with --test-controls, the test
// controls (controls.js). Serves https (or plain http with --http) on loopback only.
//
//   node tests/idp/idp.js --config idp.json --cert server.pem --key server-key.pem [--port N]
//        [--host 127.0.0.1|::1] [--http] [--test-controls] [--exit-with-stdin] [--token-delay-ms N]
//
// The certificate and key may come from IDP_TLS_CERT and IDP_TLS_KEY instead, the port from IDP_PORT.
// When ready, prints one line on stdout: {"issuer":"https://127.0.0.1:PORT","port":PORT}. Diagnostics
// go to stderr as JSON lines. SIGTERM or SIGINT (or stdin closing, with --exit-with-stdin) stop it.
// --token-delay-ms N holds every token endpoint request N ms before it is handled: bench/run uses it to
// keep thousands of logins in flight at the gateway (a slow IdP).

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const { MapAdapter } = require('./adapter');
const { createControls } = require('./controls');
const { createInteractions, escapeHtml, page, ACR_PASSWORD, ACR_MFA } = require('./interaction');
const { generateKeySet } = require('./keys');
const { base32Decode } = require('./totp');

const LOOPBACK_HOSTS = ['127.0.0.1', '::1'];
// Old key sets kept published after rotations with keep_old; older ones are dropped.
const MAX_KEY_SETS = 3;
const SCOPES = ['openid', 'email', 'profile'];

const USAGE = `usage: node idp.js --config FILE [--cert FILE --key FILE | --http] [--port N]
       [--host 127.0.0.1|::1] [--test-controls] [--exit-with-stdin] [--token-delay-ms N]`;

function log(event, fields = {}) {
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), event, ...fields })}\n`);
}

function fail(message) {
  process.stderr.write(`idp: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const options = {
    config: undefined,
    cert: process.env.IDP_TLS_CERT,
    key: process.env.IDP_TLS_KEY,
    port: process.env.IDP_PORT !== undefined ? Number(process.env.IDP_PORT) : 0,
    host: '127.0.0.1',
    http: false,
    testControls: false,
    exitWithStdin: false,
    tokenDelayMs: 0,
  };
  const valueOf = (i, name) => {
    if (i + 1 >= argv.length) {
      fail(`${name} needs a value`);
    }
    return argv[i + 1];
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    switch (arg) {
      case '--config':
        options.config = valueOf(i++, arg);
        break;
      case '--cert':
        options.cert = valueOf(i++, arg);
        break;
      case '--key':
        options.key = valueOf(i++, arg);
        break;
      case '--port':
        options.port = Number(valueOf(i++, arg));
        break;
      case '--host':
        options.host = valueOf(i++, arg);
        break;
      case '--http':
        options.http = true;
        break;
      case '--test-controls':
        options.testControls = true;
        break;
      case '--exit-with-stdin':
        options.exitWithStdin = true;
        break;
      case '--token-delay-ms':
        options.tokenDelayMs = Number(valueOf(i++, arg));
        break;
      case '--help':
        process.stdout.write(`${USAGE}\n`);
        process.exit(0);
        break;
      default:
        if (arg.startsWith('-') || options.config !== undefined) {
          fail(`unknown argument ${arg}`);
        }
        options.config = arg;
    }
  }
  if (options.config === undefined) {
    fail('--config is required');
  }
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) {
    fail('the port must be an integer from 0 to 65535');
  }
  if (!Number.isInteger(options.tokenDelayMs) || options.tokenDelayMs < 0 || options.tokenDelayMs > 600000) {
    fail('--token-delay-ms must be an integer from 0 to 600000');
  }
  if (!LOOPBACK_HOSTS.includes(options.host)) {
    fail(`--host must be a loopback address: ${LOOPBACK_HOSTS.join(' or ')}`);
  }
  if (!options.http && (!options.cert || !options.key)) {
    fail('https needs --cert and --key (or IDP_TLS_CERT and IDP_TLS_KEY); --http serves plain http');
  }
  return options;
}

function requireString(value, where) {
  if (typeof value !== 'string' || value === '') {
    throw new Error(`${where} must be a non-empty string`);
  }
  return value;
}

function requireUrls(value, where) {
  if (!Array.isArray(value) || value.length === 0) {
    throw new Error(`${where} must be a non-empty array of URLs`);
  }
  value.forEach((url, i) => {
    try {
      new URL(requireString(url, `${where}[${i}]`));
    } catch (err) {
      throw new Error(`${where}[${i}] is not a URL: ${err.message}`);
    }
  });
  return value;
}

// Reads and checks the configuration file: {clients, accounts, tenants}. Throws naming the bad member.
function loadConfig(file) {
  const config = JSON.parse(fs.readFileSync(file, 'utf8'));
  for (const member of ['clients', 'accounts', 'tenants']) {
    if (!Array.isArray(config[member])) {
      throw new Error(`"${member}" must be an array`);
    }
  }
  const tenants = new Map();
  config.tenants.forEach((tenant, i) => {
    const id = requireString(tenant.id, `tenants[${i}].id`);
    if (tenant.module_urls === null || typeof tenant.module_urls !== 'object' || Array.isArray(tenant.module_urls)) {
      throw new Error(`tenants[${i}].module_urls must be an object such as {"bms": "https://bms.kaseya.com"}`);
    }
    tenants.set(id, tenant);
  });
  const logins = new Set();
  const subs = new Set();
  config.accounts.forEach((account, i) => {
    const where = `accounts[${i}]`;
    requireString(account.login, `${where}.login`);
    requireString(account.password, `${where}.password`);
    requireString(account.sub, `${where}.sub`);
    if (!tenants.has(requireString(account.tenant, `${where}.tenant`))) {
      throw new Error(`${where}.tenant "${account.tenant}" is not in "tenants"`);
    }
    for (const flag of ['master', 'active']) {
      if (account[flag] !== undefined && typeof account[flag] !== 'boolean') {
        throw new Error(`${where}.${flag} must be a boolean`);
      }
    }
    if (account.totp_secret !== undefined) {
      base32Decode(requireString(account.totp_secret, `${where}.totp_secret`));
    }
    if (logins.has(account.login.toLowerCase()) || subs.has(account.sub)) {
      throw new Error(`${where}: login and sub must be unique`);
    }
    logins.add(account.login.toLowerCase());
    subs.add(account.sub);
  });
  config.clients.forEach((client, i) => {
    const where = `clients[${i}]`;
    requireString(client.client_id, `${where}.client_id`);
    requireString(client.client_secret, `${where}.client_secret`);
    requireUrls(client.redirect_uris, `${where}.redirect_uris`);
    if (client.post_logout_redirect_uris !== undefined) {
      requireUrls(client.post_logout_redirect_uris, `${where}.post_logout_redirect_uris`);
    }
  });
  return { clients: config.clients, accounts: config.accounts, tenants };
}

// The account store: lookups by login (case-insensitive, also by email) and by sub.
function createAccounts(config) {
  const bySub = new Map(config.accounts.map((a) => [a.sub, a]));
  const byLogin = new Map();
  for (const account of config.accounts) {
    byLogin.set(account.login.toLowerCase(), account);
    if (typeof account.email === 'string' && !byLogin.has(account.email.toLowerCase())) {
      byLogin.set(account.email.toLowerCase(), account);
    }
  }
  return {
    byLogin: (login) => byLogin.get(String(login).trim().toLowerCase()),
    bySub: (sub) => bySub.get(sub),
    // The claims of an account (every claim the IdP knows; oidc-provider filters them by scope).
    claims(account) {
      const tenant = config.tenants.get(account.tenant);
      const claims = {
        sub: account.sub,
        tenant: account.tenant,
        master: account.master === true,
        module_urls: { ...tenant.module_urls },
        active: account.active !== false,
        preferred_username: account.login,
        name: account.name || account.login,
      };
      if (account.email !== undefined) {
        claims.email = account.email;
        claims.email_verified = true;
      }
      return claims;
    },
  };
}

// Client metadata for oidc-provider: the configured members, with the code flow as the default.
function clientMetadata(client) {
  return {
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
    ...client,
  };
}

function htmlErrorPage(title, lines) {
  return page(title, `<h1>${escapeHtml(title)}</h1>\n${lines.map((l) => `<p>${escapeHtml(l)}</p>`).join('\n')}`);
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  let config;
  try {
    config = loadConfig(options.config);
  } catch (err) {
    fail(`${options.config}: ${err.message}`);
  }
  const [{ default: Provider }, firstKeySet] = await Promise.all([import('oidc-provider'), generateKeySet()]);
  const accounts = createAccounts(config);
  const clientNames = new Map(config.clients.map((c) => [c.client_id, c.client_name || c.client_id]));
  // Cookie keys outlive provider rebuilds (key rotation), so sessions and logins in flight survive.
  const cookieKeys = [crypto.randomBytes(32).toString('base64url')];
  // Newest first; oidc-provider signs with the first key of an alg, and publishes them all.
  let keySets = [firstKeySet];
  // The current provider and its request handler (Koa composes its middleware once per callback()).
  let provider = null;
  let providerHandler = null;

  const server = options.http ? http.createServer() : https.createServer({
    cert: fs.readFileSync(options.cert),
    key: fs.readFileSync(options.key),
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, resolve);
  });
  const { port } = server.address();
  const hostInUrl = options.host.includes(':') ? `[${options.host}]` : options.host;
  const issuer = `${options.http ? 'http' : 'https'}://${hostInUrl}:${port}`;

  const idp = {
    issuer,
    currentKeySet: () => keySets[0],
    publishedKids: () => keySets.flat().map((jwk) => jwk.kid),
    async rotateKeys({ keepOld }) {
      const fresh = await generateKeySet();
      keySets = keepOld ? [fresh, ...keySets].slice(0, MAX_KEY_SETS) : [fresh];
      useProvider(buildProvider());
      log('keys_rotated', { keep_old: keepOld, kids: idp.publishedKids() });
    },
  };
  const controls = createControls({ idp, enabled: options.testControls });

  function buildProvider() {
    const instance = new Provider(issuer, {
      adapter: MapAdapter,
      clients: config.clients.map(clientMetadata),
      jwks: { keys: keySets.flat() },
      cookies: { keys: cookieKeys },
      async findAccount(ctx, sub) {
        const account = accounts.bySub(sub);
        if (!account) {
          return undefined;
        }
        return { accountId: sub, claims: async () => accounts.claims(account) };
      },
      // The custom claims, amr, acr and auth_time belong to "openid" so that every ID token carries them
      // (oidc-provider otherwise puts acr, amr and auth_time in only when the request asks for them).
      claims: {
        acr: null,
        auth_time: null,
        iss: null,
        sid: null,
        openid: ['sub', 'tenant', 'master', 'module_urls', 'active', 'amr', 'acr', 'auth_time'],
        email: ['email', 'email_verified'],
        profile: ['name', 'preferred_username'],
      },
      scopes: SCOPES,
      // Scope claims (email) go into the ID token too, not only to userinfo: the gateway reads the ID token.
      conformIdTokenClaims: false,
      acrValues: [ACR_PASSWORD, ACR_MFA],
      responseTypes: ['code'],
      pkce: { methods: ['S256'], required: () => true },
      enabledJWA: { idTokenSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA'] },
      routes: {
        authorization: '/auth',
        end_session: '/session/end',
        jwks: '/jwks',
        token: '/token',
        userinfo: '/me',
      },
      ttl: {
        AccessToken: 3600,
        AuthorizationCode: 120,
        IdToken: 3600,
        Interaction: 3600,
        Session: 86400,
        Grant: 86400,
      },
      interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
      // Every configured client is first party: its grant covers whatever OIDC scopes and claims it asks,
      // so no consent page is ever shown.
      async loadExistingGrant(ctx) {
        const { oidc } = ctx;
        const grantId = (oidc.result && oidc.result.consent && oidc.result.consent.grantId)
          || oidc.session.grantIdFor(oidc.client.clientId);
        let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
        if (!grant || grant.accountId !== oidc.session.accountId) {
          grant = new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
        }
        grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
        grant.addOIDCClaims([...oidc.requestParamClaims]);
        await grant.save();
        return grant;
      },
      features: {
        devInteractions: { enabled: false },
        // IdP-initiated logout reaches the gateway: a logout_token POSTed to each client's
        // backchannel_logout_uri (oidc-provider 8 has no front-channel logout).
        backchannelLogout: { enabled: true },
        rpInitiatedLogout: {
          enabled: true,
          // form is oidc-provider's <form id="op.logoutForm"> with its xsrf field; the buttons go inside
          // it so that the form is self-contained for form drivers.
          async logoutSource(ctx, form) {
            const buttons = `<button type="submit" name="logout" value="yes" autofocus>Yes, sign me out</button>
<button type="submit" class="secondary">No, stay signed in</button>
</form>`;
            ctx.type = 'html';
            ctx.body = page('Sign out', `<h1>Sign out</h1>
<p>Do you want to sign out of the identity provider?</p>
${form.replace('</form>', buttons)}`);
          },
          async postLogoutSuccessSource(ctx) {
            ctx.type = 'html';
            ctx.body = htmlErrorPage('Signed out', ['You are signed out of the identity provider.']);
          },
        },
      },
      async renderError(ctx, out) {
        ctx.type = 'html';
        ctx.body = htmlErrorPage('Sign-in error', [
          `${out.error}${out.error_description ? `: ${out.error_description}` : ''}`,
          'Go back to the application and start again.',
        ]);
      },
    });
    if (options.testControls) {
      instance.use(controls.middleware);
    }
    instance.on('server_error', (ctx, err) => log('server_error', { path: ctx.path, error: err.stack }));
    for (const event of ['authorization.error', 'grant.error', 'end_session.error']) {
      instance.on(event, (ctx, err) => log(event, { path: ctx.path, error: err.message, detail: err.error_detail }));
    }
    instance.app.on('error', (err) => log('koa_error', { error: err.stack }));
    return instance;
  }

  function useProvider(instance) {
    provider = instance;
    providerHandler = instance.callback();
  }

  useProvider(buildProvider());
  const interactions = createInteractions({
    accounts,
    getProvider: () => provider,
    clientName: (clientId) => clientNames.get(clientId) || clientId,
  });

  server.on('request', (req, res) => {
    let url;
    try {
      url = new URL(req.url, issuer);
    } catch (err) {
      res.writeHead(400).end();
      return;
    }
    const fallback = (err) => {
      log('request_error', { path: url.pathname, error: err.stack });
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'text/plain' });
      }
      res.end('internal error\n');
    };
    if (url.pathname.startsWith('/_test/')) {
      controls.handle(req, res, url).catch(fallback);
    } else if (url.pathname.startsWith('/interaction/')) {
      interactions(req, res, url).catch(fallback);
    } else if (options.tokenDelayMs > 0 && url.pathname === '/token') {
      // The request body waits unread in the socket; the provider current when the delay ends answers.
      setTimeout(() => providerHandler(req, res), options.tokenDelayMs);
    } else {
      providerHandler(req, res);
    }
  });

  const stop = (why) => {
    log('stopping', { why });
    server.close();
    server.closeAllConnections();
    process.exit(0);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  if (options.exitWithStdin) {
    process.stdin.on('end', () => stop('stdin closed'));
    process.stdin.on('error', () => stop('stdin closed'));
    process.stdin.resume();
  }

  log('listening', {
    issuer,
    test_controls: options.testControls,
    kids: idp.publishedKids(),
  });
  process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
}

main().catch((err) => {
  process.stderr.write(`idp: ${err.stack}\n`);
  process.exit(1);
});
