'use strict';
// The whole link-mode set for the link_*.test.js and admin.test.js integration tests (issue 4): a
// throw-away CA (tests/idp/make-ca.sh), the real test IdP over https (tests/idp/idp.js), the stub PSA
// (tests/stub/psa.js) and ssogate in front of it with "identity": "link", all on loopback. Each process is
// stopped by its PID when the Harness that owns it stops everything (Harness.stopAll).
//
//   const { sharedLinkEnv } = require('./lib/link-env');
//   const linkTest = sharedLinkEnv('link_tenant', { tenants: ['t1', 't2'] });
//   linkTest('B1 ...', async (env) => {
//     const t = env.tenant('t1');                 // its PSA users and IdP accounts
//     const admin = await env.psaLogin(t.admin);  // a browser signed in to the PSA with a password
//     const res = await env.enableTenant(admin.browser, t.master);
//     const store = await env.exportLinks();       // what ssogate-admin export says
//   });
//
// Every tenant name N gives a PSA tenant N and an IdP tenant itc-N (US module URL), so that the tests of
// one file share one set of processes without touching each other's links:
//   PSA users (password "pw"):  admin@N (admin, staff), staff@N, staff2@N (staff), client@N (client portal)
//   IdP accounts (password "pw", TOTP secret TOTP_SECRET unless said otherwise):
//     master@N (master account), user@N, user2@N, nototp@N (no second factor enrolled),
//     inactive@N (inactive: the IdP ends its login with access_denied)
// and one IdP tenant itc-emea whose PSA (bms) module URL is the UK region's, with the account master@emea
// (its other module's URL is the US one: B2 looks at the PSA's alone).
//
// The gateway's listener port is chosen before anything starts, because the public URL, the IdP's
// registered redirect URI, the PSA's issuer and JWKS URL and the listener must all carry the same port.

const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const harness = require('./harness');
const { findForm, parseForms } = require('./login');
const { totp } = require('../../idp/totp');
const { RecordingBrowser, idpJson, metricsMoved, startIdp } = require('./oidc-env');

const { SOURCE_DIR, SSOGATE_BIN, SLOW, Harness, metricValue } = harness;
const IDP_DIR = path.join(SOURCE_DIR, 'tests', 'idp');
const ADMIN_BIN = process.env.SSOGATE_ADMIN_BIN || path.join(path.dirname(SSOGATE_BIN), 'ssogate-admin');
const START_TIMEOUT_MS = 20000 * SLOW;
const STOP_TIMEOUT_MS = 10000 * SLOW;
const ADMIN_TIMEOUT_MS = 15000 * SLOW;

const CLIENT_ID = 'ssogate';
const CLIENT_SECRET = 's3cret-link';
const SECRET_ENV = 'SG_LINK_SECRET';
const PASSWORD = 'pw';
const TOTP_SECRET = 'JBSWY3DPEHPK3PXP';
const US_MODULE_URL = 'https://bms.kaseya.com';
const UK_MODULE_URL = 'https://bmsemea.kaseya.com';
const MASTER_EMEA = {
  login: 'master@emea',
  password: PASSWORD,
  sub: 'itc-emea-master',
  tenant: 'itc-emea',
  master: true,
  active: true,
  email: 'master@emea.test',
  totp_secret: TOTP_SECRET,
};

// The PSA users and IdP accounts of tenant name (see the header).
function tenantSet(name) {
  const psaUser = (role, admin, kind) => ({
    tenant: name,
    id: `${name}-${role}`,
    login: `${role}@${name}`,
    password: PASSWORD,
    name: `${role} of ${name}`,
    email: `${role}@${name}.psa.test`,
    admin,
    kind,
    active: true,
  });
  const account = (role, extra = {}) => ({
    login: `${role}@${name}`,
    password: PASSWORD,
    sub: `itc-${name}-${role}`,
    tenant: `itc-${name}`,
    master: false,
    active: true,
    email: `${role}@${name}.itc.test`,
    totp_secret: TOTP_SECRET,
    ...extra,
  });
  const nototp = account('nototp');
  delete nototp.totp_secret;
  return {
    psa: name,
    idp: `itc-${name}`,
    admin: psaUser('admin', true, 'staff'),
    staff: psaUser('staff', false, 'staff'),
    staff2: psaUser('staff2', false, 'staff'),
    client: psaUser('client', false, 'client'),
    master: account('master', { master: true }),
    user: account('user'),
    user2: account('user2'),
    nototp,
    inactive: account('inactive', { active: false }),
  };
}

// Runs a program to its end, bounded by ms (then killed by its PID); resolves {code, signal, stdout, stderr}.
function runProgram(file, args, { env = {}, input, ms = ADMIN_TIMEOUT_MS } = {}) {
  return new Promise((resolve, reject) => {
    const child = childProcess.execFile(
      file,
      args,
      { env: { ...process.env, ...env }, timeout: ms, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number' && !err.killed) {
          reject(err);
          return;
        }
        assert.ok(!(err && err.killed), `${path.basename(file)} ${args.join(' ')} did not end within ${ms} ms`);
        resolve({ code: err ? err.code : 0, signal: err ? err.signal : null, stdout, stderr });
      },
    );
    if (input !== undefined) {
      child.stdin.end(input);
    }
  });
}

// The text of the element with id in html (tags removed, whitespace collapsed, a few entities decoded), or
// undefined when there is none. Enough for the gateway's and the PSA's simple pages.
function textOf(html, id) {
  const match = new RegExp(`<([a-z0-9]+)\\b[^>]*\\bid="${id}"[^>]*>([\\s\\S]*?)</\\1>`, 'i').exec(String(html));
  if (match === null) {
    return undefined;
  }
  return match[2]
    .replace(/<[^>]*>/g, '')
    .replace(/&mdash;/g, '\u2014')
    .replace(/&amp;/g, '&')
    .replace(/&#(\d+);/g, (m, code) => String.fromCharCode(Number(code)))
    .replace(/\s+/g, ' ')
    .trim();
}

// The visible text of a page's body (styles, scripts and tags removed, whitespace collapsed): for messages.
function bodyText(html) {
  return String(html)
    .replace(/^[\s\S]*?<body\b[^>]*>/i, '')
    .replace(/<(style|script)\b[\s\S]*?<\/\1>/gi, '')
    .replace(/<[^>]*>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
}

// The forms of a page that post to action (a path such as /_sso/tenant/enable).
function formsTo(html, action) {
  return parseForms(html).filter((f) => f.action === action);
}

// Starts CA, IdP, stub PSA and gateway for the Harness h (borrowed; it owns every process). options:
// tenants (names, see the header), gateway (overrides of the gateway configuration, merged one level deep).
// Resolves the environment object described at each member below.
// With hosts > 1 (the shared store of issue 11), that many gateways serve one public URL behind a
// Balancer (lib/balancer.js) and share store (a configuration section, e.g. PostgreSQL) and one assertion
// key; env.gws are the gateways, env.balancer routes the requests, env.gw is the first host.
// perHost(i, config) may change host i's configuration (e.g. workers).
async function startLinkEnv(h, { tenants = ['t1'], gateway = {}, hosts = 1, store, perHost = (i, c) => c } = {}) {
  const caDir = h.file('ca');
  childProcess.execFileSync(path.join(IDP_DIR, 'make-ca.sh'), [caDir], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 30000 });
  const caFile = path.join(caDir, 'ca.pem');
  const ca = fs.readFileSync(caFile);
  const sets = new Map(tenants.map((name) => [name, tenantSet(name)]));

  const gwPort = await harness.reservedPort();
  const gwUrl = `http://127.0.0.1:${gwPort}`;
  const hostPorts = hosts > 1 ? await Promise.all(Array.from({ length: hosts }, () => harness.reservedPort())) : [gwPort];

  const idpConfig = {
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: [`${gwUrl}/_sso/callback`],
      post_logout_redirect_uris: [`${gwUrl}/`],
      id_token_signed_response_alg: 'ES256',
    }],
    tenants: [
      ...[...sets.values()].map((s) => ({ id: s.idp, module_urls: { bms: US_MODULE_URL } })),
      { id: 'itc-emea', module_urls: { bms: UK_MODULE_URL, vsa: US_MODULE_URL } },
    ],
    accounts: [
      ...[...sets.values()].flatMap((s) => [s.master, s.user, s.user2, s.nototp, s.inactive]),
      MASTER_EMEA,
    ],
  };
  const idpConfigFile = h.file('idp.json');
  fs.writeFileSync(idpConfigFile, JSON.stringify(idpConfig, null, 2));
  const { idp, issuer } = await startIdp(h, 'idp', idpConfigFile, caDir);

  const psaData = {
    tenants: [...sets.values()].map((s) => ({ id: s.psa, name: `Tenant ${s.psa}` })),
    users: [...sets.values()].flatMap((s) => [s.admin, s.staff, s.staff2, s.client]),
  };
  const psaDataFile = h.file('psa-data.json');
  fs.writeFileSync(psaDataFile, JSON.stringify(psaData, null, 2));
  const psa = await h.startStub({
    script: 'psa.js',
    name: 'psa',
    args: [
      '--data', psaDataFile,
      '--gateway-jwks', `${gwUrl}/_sso/jwks.json`,
      '--audience', 'auto',
      '--issuer', gwUrl,
    ],
  });

  const config = h.config({
    listeners: [{ address: '127.0.0.1', port: gwPort }],
    public_url: gwUrl,
    upstream: { url: psa.url },
    psa: {
      login_path: '/login',
      logout_path: '/logout',
      home_path: '/',
      whoami: { path: '/api/whoami', tenant: '/tenant', user: '/user', admin: '/admin', kind: '/kind', active: '/active' },
    },
    idp: { issuer, client_id: CLIENT_ID, client_secret_env: SECRET_ENV, ca_file: caFile },
    identity: 'link',
    required_amr: ['otp'],
    region: { name: 'US' },
    routes: [{ prefix: '/', auth: 'optional' }],
    limits: { client_timeout_s: 10 },
  });
  if (store !== undefined) {
    config.store = store;
  }
  if (hosts > 1) {
    // Every host signs assertions with the same key, which the PSA fetches through the balancer.
    const key = h.file('assertion-key.pem');
    childProcess.execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key],
      { stdio: ['ignore', 'ignore', 'pipe'], timeout: 20000 });
    config.assertion = { key_file: key };
  }
  for (const [key, value] of Object.entries(gateway)) {
    config[key] = value && typeof value === 'object' && !Array.isArray(value) && config[key] && typeof config[key] === 'object'
      ? { ...config[key], ...value }
      : value;
  }
  const configFile = h.writeConfig(config);
  const hostConfig = (i, port) => h.writeConfig(perHost(i, { ...config, listeners: [{ address: '127.0.0.1', port }],
    data_dir: h.file(`data-${i}`) }), `ssogate-${i}.json`);
  const hostConfigFiles = hostPorts.map((port, i) => (hosts > 1 ? hostConfig(i, port) : configFile));
  for (let i = 0; hosts > 1 && i < hosts; i++) {
    fs.mkdirSync(h.file(`data-${i}`), { recursive: true });
  }
  let balancer;
  if (hosts > 1) {
    const { Balancer } = require('./balancer');
    balancer = new Balancer(hostPorts);
    await balancer.listen(gwPort);
    h.servers.push({ close: (done) => balancer.close(done) });
  }
  const gatewayEnv = { [SECRET_ENV]: CLIENT_SECRET };

  const env = {
    h,
    ca,
    caFile,
    issuer,
    idp,
    psa,
    config,
    configFile,
    gwUrl,
    gwPort,
    gw: undefined,
    gws: [],
    balancer,
    hostPorts,
    US_MODULE_URL,
    MASTER_EMEA,

    // The PSA users and IdP accounts of one of the tenants this environment was started with.
    tenant(name) {
      const set = sets.get(name);
      assert.ok(set, `tenant ${name} is in this environment`);
      return set;
    },

    // Starts (or starts again, on the same configuration, port and data dir) the gateway (host i of
    // several) and waits until it has the IdP's discovery document and keys, so /_sso/login answers at once.
    async startGateway(i = 0) {
      let gw;
      for (let attempt = 1; ; attempt++) {
        try {
          gw = await h.startGateway(hostConfigFiles[i], { env: gatewayEnv, listeners: 1 });
          break;
        } catch (err) {
          // Behind the balancer a host's port is its own: one taken since it was reserved is replaced.
          if (hosts === 1 || attempt === 3 || !/exited/.test(err.message)) {
            throw err;
          }
          hostPorts[i] = await harness.reservedPort();
          hostConfigFiles[i] = hostConfig(i, hostPorts[i]);
          balancer.ports[i] = hostPorts[i];
        }
      }
      await gw.waitLog((l) => l.event === 'idp_discovery' && l.level === 'info', START_TIMEOUT_MS, 'IdP discovery');
      await gw.waitLog((l) => l.event === 'idp_jwks' && l.level === 'info' && l.keys > 0, START_TIMEOUT_MS, 'IdP keys');
      assert.equal(gw.port, hostPorts[i], 'the gateway listens on its port');
      env.gws[i] = gw;
      if (i === 0) {
        env.gw = gw;
      }
      return gw;
    },

    // Stops the gateway by its PID: SIGTERM (drained) or, with kill, SIGKILL; waits (bounded) for the exit.
    async stopGateway({ kill = false } = {}) {
      const gw = env.gw;
      if (kill) {
        gw.signal('SIGKILL');
        const exit = await gw.waitExit(STOP_TIMEOUT_MS);
        assert.ok(exit, 'the gateway died of SIGKILL');
        assert.equal(exit.signal, 'SIGKILL');
      } else {
        await gw.stop();
        assert.equal(gw.exit && gw.exit.code, 0, `the gateway exited 0 on SIGTERM (${JSON.stringify(gw.exit)})`);
      }
    },

    // A new browser (its own cookie jar) that trusts the test CA and can hold the IdP's redirect to the
    // gateway callback (RecordingBrowser of oidc-env.js).
    browser(options = {}) {
      return new RecordingBrowser({ ca, ...options });
    },

    // Signs in to the PSA with its own password form, through the gateway, in browser (default a new
    // one); asserts that it landed on the PSA home page. Resolves {browser, page}.
    async psaLogin(user, { browser = env.browser() } = {}) {
      const form = await browser.navigate(`${gwUrl}/login`);
      assert.equal(form.status, 200, 'GET /login through the gateway');
      const page = await browser.submitForm(form, 'psa-login-form', { tenant: user.tenant, login: user.login, password: user.password });
      assert.equal(page.status, 200, `the PSA password login of ${user.login} lands on a page (${page.url})`);
      assert.equal(new URL(page.url).pathname, '/', `the PSA password login of ${user.login} lands on home`);
      return { browser, page };
    },

    // GET /_sso/settings (My Settings) with browser's cookies.
    settings(browser) {
      return browser.navigate(`${gwUrl}/_sso/settings`);
    },

    // Presses the button of the form that posts to action (e.g. /_sso/tenant/enable) on page, as a browser
    // does (Origin and Referer of the page), with values set over the form's fields; follows redirects.
    // Throws when the page has no such form.
    async press(browser, page, action, values = {}) {
      const forms = formsTo(page.body, action);
      assert.equal(forms.length, 1, `one form posting to ${action} on ${page.url} (status ${page.status})`);
      const fields = forms[0].fields.filter(([name]) => !Object.hasOwn(values, name));
      fields.push(...Object.entries(values).map(([k, v]) => [k, String(v)]));
      return browser.navigate(new URL(action, page.url), {
        method: 'POST',
        form: fields,
        headers: { origin: new URL(page.url).origin, referer: page.url },
      });
    },

    // A hand-made POST to a gateway endpoint (e.g. /_sso/user/disable) from browser, as a forged form or a
    // script would send it: csrf (default the browser's own ssogate_csrf cookie; null for no field), origin
    // and referer (default Origin: the public URL; null for none). Follows redirects.
    post(browser, action, { csrf, origin = gwUrl, referer = null } = {}) {
      const token = csrf === undefined ? browser.jar.get('ssogate_csrf') : csrf;
      const headers = {};
      if (origin !== null) {
        headers.origin = origin;
      }
      if (referer !== null) {
        headers.referer = referer;
      }
      return browser.navigate(`${gwUrl}${action}`, {
        method: 'POST',
        form: token === null || token === undefined ? [['x', '1']] : [['csrf', token]],
        headers,
      });
    },

    // Continues a login that stands on the IdP's pages (res, a navigate answer): fills #login-form with
    // account and, when asked, #otp-form with its TOTP code (or totpCode), then follows the redirects and the
    // IdP's self-submitting pages (Browser.submitAutoForms) back through the gateway. A form that is not on
    // the page is skipped (an open IdP session). Resolves the last response plus steps (forms submitted) and
    // callback (the gateway's answer to /_sso/callback, if any).
    async atIdp(browser, res, account, { totpCode } = {}) {
      const steps = [];
      const seen = browser.responses.length;
      let page = res;
      if (findForm(page.body, 'login-form') !== undefined) {
        page = await browser.submitForm(page, 'login-form', { login: account.login, password: account.password });
        steps.push('login-form');
      }
      if (findForm(page.body, 'otp-form') !== undefined && (totpCode !== undefined || account.totp_secret !== undefined)) {
        page = await browser.submitForm(page, 'otp-form', { code: totpCode ?? totp(account.totp_secret) });
        steps.push('otp-form');
      }
      if (steps.length > 0) {
        page = await browser.submitAutoForms(page);
      }
      const callback = browser.responses.slice(seen).reverse().find((r) => new URL(r.url).pathname === '/_sso/callback');
      return { ...page, steps, callback };
    },

    // The IT Complete switch (B1): My Settings, "Turn IT Complete on", then the IdP login with account.
    // Resolves the final response (see atIdp).
    async enableTenant(browser, account, options) {
      const page = await env.settings(browser);
      assert.equal(page.status, 200, 'My Settings');
      const res = await env.press(browser, page, '/_sso/tenant/enable');
      return env.atIdp(browser, res, account, options);
    },

    // "Enable Log in with IT Complete" (B5): My Settings, the button, then the IdP login with account.
    async enableUser(browser, account, options) {
      const page = await env.settings(browser);
      assert.equal(page.status, 200, 'My Settings');
      const res = await env.press(browser, page, '/_sso/user/enable');
      return env.atIdp(browser, res, account, options);
    },

    // A PSA admin signs in with a password and links tenant name to its IdP tenant (B1); asserts success.
    // Resolves {browser, page} of the admin.
    async linkTenant(name) {
      const t = env.tenant(name);
      const { browser } = await env.psaLogin(t.admin);
      const page = await env.enableTenant(browser, t.master);
      assert.equal(page.status, 200, `tenant ${name} linked: ${page.url}\n${page.body}`);
      assert.equal(new URL(page.url).search, '?done=tenant_linked', `tenant ${name} linked`);
      return { browser, page };
    },

    // A PSA staff user signs in with a password and links itself to IdP account (B5); asserts success.
    // Resolves {browser, page} of the user (page: where the link landed, the PSA home).
    async linkUser(user, account) {
      const { browser } = await env.psaLogin(user);
      const page = await env.enableUser(browser, account);
      assert.equal(page.status, 200, `${user.login} linked to ${account.login}: ${page.url}\n${page.body}`);
      assert.equal(new URL(page.url).pathname, '/', `${user.login} linked lands on the PSA home`);
      return { browser, page };
    },

    // "Log in with IT Complete" (GET /_sso/login?return_to=...) then the IdP login with account, in browser
    // (default a new one). Resolves the final response (see atIdp) with browser.
    async ssoLogin(account, { browser = env.browser(), returnTo, totpCode } = {}) {
      const start = returnTo === undefined ? `${gwUrl}/_sso/login` : `${gwUrl}/_sso/login?return_to=${encodeURIComponent(returnTo)}`;
      const res = await browser.navigate(start);
      return { ...(await env.atIdp(browser, res, account, { totpCode })), browser };
    },

    // GET /_sso/status with browser's cookies: the parsed JSON.
    async status(browser) {
      const res = await browser.request(`${gwUrl}/_sso/status`, { headers: { accept: 'application/json' } });
      assert.equal(res.status, 200, 'GET /_sso/status');
      return JSON.parse(res.body);
    },

    // Runs ssogate-admin -c CONFIG args (bounded): {code, signal, stdout, stderr}.
    admin(args, options = {}) {
      return runProgram(ADMIN_BIN, ['-c', configFile, ...args], { env: gatewayEnv, ...options });
    },

    // The links of the store as ssogate-admin export shows them: {tenant_links: [...], user_links: [...]}.
    async exportLinks() {
      const res = await env.admin(['export']);
      assert.equal(res.code, 0, `ssogate-admin export: ${res.stderr}`);
      return JSON.parse(res.stdout);
    },

    // The tenant link of PSA tenant name in the store, or undefined.
    async tenantLink(name) {
      return (await env.exportLinks()).tenant_links.find((l) => l.psa_tenant === name);
    },

    // The user links of PSA tenant name in the store.
    async userLinks(name) {
      return (await env.exportLinks()).user_links.filter((l) => l.psa_tenant === name);
    },

    // The PSA's authentication decisions, oldest first ({method, path, ok, tenant, user, reason}).
    async psaLog() {
      const res = await harness.request(psa, { path: '/__psa/log' });
      assert.equal(res.status, 200, 'GET /__psa/log');
      return JSON.parse(res.body.toString());
    },

    async psaReset() {
      const res = await harness.request(psa, { method: 'POST', path: '/__psa/reset', headers: { 'content-length': 0 } });
      assert.equal(res.status, 200, 'POST /__psa/reset');
    },

    // Sets the stub PSA's test controls (POST /__psa/config), e.g. {whoami_session_first: true}.
    async configurePsa(values) {
      const body = JSON.stringify(values);
      const res = await harness.request(psa, {
        method: 'POST',
        path: '/__psa/config',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        body,
      });
      assert.equal(res.status, 200, `POST /__psa/config: ${res.body}`);
    },

    // Changes a PSA user (active, admin, kind, ...) with the PSA's test control.
    async patchPsaUser(user, changes) {
      const body = JSON.stringify({ tenant: user.tenant, id: user.id, ...changes });
      const res = await harness.request(psa, {
        method: 'POST',
        path: '/__psa/users',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        body,
      });
      assert.equal(res.status, 200, `POST /__psa/users: ${res.body}`);
    },

    // The IdP's test controls: control('POST', '/_test/tamper', {...}) resolves the parsed answer.
    async control(method, pathname, body) {
      const res = await idpJson(issuer, ca, method, pathname, body);
      assert.equal(res.status, 200, `IdP ${method} ${pathname}: ${JSON.stringify(res.body)}`);
      return res.body;
    },

    // The gateway's metrics, parsed (see harness.parseMetrics).
    metrics() {
      return h.metrics(env.gw);
    },

    // The value of a gateway counter (0 when not exported yet).
    async counter(name, labels) {
      return metricValue(await env.metrics(), name, labels) || 0;
    },

    // The sum of every sample of a counter family (all label values).
    async counterSum(name) {
      return (await env.metrics()).samples.filter((s) => s.name === name).reduce((sum, s) => sum + s.value, 0);
    },

    // Runs fn() and resolves {value: what it resolved, moved: the counters that moved over the call}.
    async measure(fn) {
      const beforeMetrics = await env.metrics();
      const value = await fn();
      return { value, moved: metricsMoved(beforeMetrics, await env.metrics()) };
    },
  };
  for (let i = 0; i < hosts; i++) {
    await env.startGateway(i);
  }
  return env;
}

// One shared environment for every test of a file: see harness.sharedEnv.
function sharedLinkEnv(name, options = {}) {
  return harness.sharedEnv(name, (h) => startLinkEnv(h, options));
}

module.exports = { sharedLinkEnv, startLinkEnv, textOf, bodyText, formsTo, US_MODULE_URL, UK_MODULE_URL, TOTP_SECRET };
