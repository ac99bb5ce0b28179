'use strict';
// The stub PSA as an HTTP application: native password login with its own session cookie, header
// authentication by the gateway's signed assertion, a few pages and the whoami API. It knows nothing of the
// gateway's login flows: it only verifies X-SSO-Assertion (./assertion.js) and links to the gateway's My
// Settings page, as a PSA configured for header authentication would.
//
// Test controls (asked directly, never through the gateway): GET /__psa/log (the last authentication
// decisions), POST /__psa/reset (clears them), GET|POST /__psa/config (issuer, audience, gateway JWKS URL,
// whoami_delay_ms, whoami_native_only, whoami_reports_inactive, whoami_session_first),
// POST /__psa/users (changes a user: active, admin, kind, name, email). The shared stub skeleton adds
// /__stub/log, the raw requests received.

const crypto = require('node:crypto');
const { createStub, readBody, sendJson } = require('../lib/server');
const { JwksCache, verifyAssertion } = require('./assertion');
const { KINDS } = require('./data');
const pages = require('./pages');

const SESSION_COOKIE = 'psa_session';
const SESSION_ID_PATTERN = /^[A-Za-z0-9_-]{43}$/;
// Sessions live in memory only; the oldest are dropped beyond this so a load test cannot exhaust memory.
const MAX_SESSIONS = 100000;
const DECISION_LOG_LIMIT = 200;
const MAX_FORM_BYTES = 16 * 1024;
const MAX_CONTROL_BYTES = 64 * 1024;
const MAX_NEXT_LENGTH = 2048;
const CONFIG_KEYS = [
  'gateway_jwks', 'audience', 'issuer', 'whoami_delay_ms', 'whoami_native_only', 'whoami_reports_inactive',
  'whoami_session_first',
];
// Boolean test controls of the whoami endpoint (issue 13): whoami_native_only answers 401 unauthenticated to
// a caller authenticated by an assertion (a stricter PSA that knows its own sessions only);
// whoami_reports_inactive keeps answering a native session whose user became inactive, with active: false,
// where the PSA otherwise ends that session (pages still do); whoami_session_first answers about the caller's
// native session when it has one, even with an assertion (a PSA that prefers its own session).
const BOOLEAN_CONFIG_KEYS = ['whoami_native_only', 'whoami_reports_inactive', 'whoami_session_first'];
const MAX_WHOAMI_DELAY_MS = 60000;
// What POST /__psa/users may change, and the values each accepts.
const USER_PATCH = {
  active: (v) => typeof v === 'boolean',
  admin: (v) => typeof v === 'boolean',
  kind: (v) => KINDS.has(v),
  name: (v) => typeof v === 'string' && v.length > 0 && v.length <= 256,
  email: (v) => v === null || (typeof v === 'string' && v.length > 0 && v.length <= 256),
};
const PAGE_METHODS = ['GET', 'HEAD'];

function sendHtml(res, status, html, extraHeaders = {}) {
  const body = Buffer.from(html);
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': body.length,
    'cache-control': 'no-store',
    ...extraHeaders,
  });
  res.end(body);
}

function redirect(res, status, location, extraHeaders = {}) {
  res.writeHead(status, { location, 'content-length': 0, 'cache-control': 'no-store', ...extraHeaders });
  res.end();
}

function methodNotAllowed(res, allowed) {
  sendJson(res, 405, { error: 'method_not_allowed' }, { allow: allowed.join(', ') });
}

// The values of every cookie named name in the request (a client may send several).
function cookieValues(req, name) {
  const header = req.headers.cookie;
  if (typeof header !== 'string') {
    return [];
  }
  const prefix = `${name}=`;
  return header
    .split(';')
    .map((part) => part.trim())
    .filter((part) => part.startsWith(prefix))
    .map((part) => part.slice(prefix.length));
}

// True when the request carries any header of the gateway's identity namespace.
function hasSsoHeader(req) {
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    if (/^x-sso-/i.test(req.rawHeaders[i])) {
      return true;
    }
  }
  return false;
}

// The page to land on after a login: a same-origin path, or "/". "//host" and backslashes (which browsers
// read as "/") would leave the site.
function safeNext(value) {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_NEXT_LENGTH) {
    return '/';
  }
  if (!value.startsWith('/') || value.startsWith('//') || /[\\\x00-\x1f\x7f]/.test(value)) {
    return '/';
  }
  return value;
}

// Compares two passwords in time independent of where they differ.
function passwordMatches(expected, given) {
  const a = crypto.createHash('sha256').update(String(expected)).digest();
  const b = crypto.createHash('sha256').update(String(given)).digest();
  return crypto.timingSafeEqual(a, b);
}

function isHttpUrl(value) {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch (err) {
    return false;
  }
}

// The whoami answer for an authenticated caller.
function whoamiBody(who) {
  const { user } = who;
  return {
    tenant: user.tenant,
    user: user.id,
    admin: user.admin,
    kind: user.kind,
    active: user.active,
    name: user.name,
    email: user.email,
    method: who.method,
  };
}

// A user as the test controls show it: everything but the password.
function userBody(user) {
  const { password, ...rest } = user;
  return rest;
}

// Reads a JSON object body of at most MAX_CONTROL_BYTES; resolves to the object, or null after answering 4xx.
async function readJsonObject(req, res) {
  const { body, length } = await readBody(req, MAX_CONTROL_BYTES);
  if (length > MAX_CONTROL_BYTES) {
    sendJson(res, 413, { error: 'body_too_large' });
    return null;
  }
  try {
    const value = JSON.parse(body.toString('utf8'));
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      return value;
    }
  } catch (err) {
    // answered below
  }
  sendJson(res, 400, { error: 'body must be a JSON object' });
  return null;
}

// lib/server.js parses every request target with new URL() outside its try: a target such as "http://["
// would throw and end the process. Answer those 400 before its handler sees them.
function guardRequestTarget(server) {
  const handlers = server.listeners('request');
  server.removeAllListeners('request');
  server.on('request', (req, res) => {
    if (!URL.canParse(req.url, 'http://psa.invalid')) {
      sendJson(res, 400, { error: 'bad request target' });
      return;
    }
    for (const handler of handlers) {
      handler(req, res);
    }
  });
}

// Creates the PSA over a dataset (data.js). Returns {stub, configure(values), config()}: stub is the
// lib/server.js stub to listen with; configure sets any of gateway_jwks, audience ("auto" or a URL) and
// issuer, and throws an Error naming the key when a value is invalid (nothing is changed then).
function createPsa(data) {
  const settings = {
    gateway_jwks: null,
    audience: null,
    issuer: null,
    whoami_delay_ms: 0,
    whoami_native_only: false,
    whoami_reports_inactive: false,
    whoami_session_first: false,
  };
  const jwks = new JwksCache();
  const sessions = new Map();
  const decisions = [];
  let stub = null;

  function configure(values) {
    for (const [key, value] of Object.entries(values)) {
      if (!CONFIG_KEYS.includes(key)) {
        throw new Error(`${key}: unknown key (known: ${CONFIG_KEYS.join(', ')})`);
      }
      if (key === 'whoami_delay_ms') {
        if (!Number.isInteger(value) || value < 0 || value > MAX_WHOAMI_DELAY_MS) {
          throw new Error(`${key}: must be an integer from 0 to ${MAX_WHOAMI_DELAY_MS}`);
        }
        continue;
      }
      if (BOOLEAN_CONFIG_KEYS.includes(key)) {
        if (typeof value !== 'boolean') {
          throw new Error(`${key}: must be true or false`);
        }
        continue;
      }
      if (typeof value !== 'string' || !(isHttpUrl(value) || (key === 'audience' && value === 'auto'))) {
        throw new Error(`${key}: must be an http or https URL${key === 'audience' ? ' or "auto"' : ''}`);
      }
    }
    Object.assign(settings, values);
    jwks.setUrl(settings.gateway_jwks);
  }

  // "auto" is the PSA's own loopback URL, known once it listens.
  function audience() {
    if (settings.audience !== 'auto') {
      return settings.audience;
    }
    const address = stub.server.address();
    return address === null ? null : `http://127.0.0.1:${address.port}`;
  }

  function config() {
    return { ...settings, effective_audience: audience(), jwks_fetches: jwks.fetches };
  }

  function record(decision) {
    decisions.push({ time: new Date().toISOString(), ...decision });
    if (decisions.length > DECISION_LOG_LIMIT) {
      decisions.splice(0, decisions.length - DECISION_LOG_LIMIT);
    }
  }

  function who(user, method) {
    return { user, tenant: data.tenants.get(user.tenant), method };
  }

  // Decides who the caller is. The assertion wins over a session cookie; any X-SSO-* header makes the
  // assertion mandatory, so a forged identity header is refused rather than ignored. Resolves to
  // {who} for an authenticated caller, {refused: reason} for a bad assertion, or {} for nobody. With
  // inactiveSessions, a native session of an inactive user still names its user (whoami_reports_inactive);
  // with sessionFirst, a live native session wins over the assertion (whoami_session_first).
  async function authenticate(req, url, inactiveSessions = false, sessionFirst = false) {
    const path = url.pathname;
    const nativeFirst = sessionFirst && cookieValues(req, SESSION_COOKIE).some((id) => sessions.has(id));
    if (hasSsoHeader(req) && !nativeFirst) {
      const claimed = { tenant: req.headers['x-sso-tenant'] || null, user: req.headers['x-sso-user'] || null };
      const presented = {
        token: req.headers['x-sso-assertion'],
        tenant: req.headers['x-sso-tenant'],
        user: req.headers['x-sso-user'],
      };
      const result = await verifyAssertion(
        presented,
        { issuer: settings.issuer, audience: audience() },
        jwks,
        data,
      );
      if (!result.ok) {
        record({ method: 'assertion', path, ok: false, tenant: null, user: null, reason: result.reason, claimed });
        return { refused: result.reason };
      }
      const { user } = result;
      record({ method: 'assertion', path, ok: true, tenant: user.tenant, user: user.id, reason: 'ok' });
      return { who: who(user, 'assertion') };
    }
    let reason = 'no_credentials';
    for (const id of cookieValues(req, SESSION_COOKIE)) {
      const session = SESSION_ID_PATTERN.test(id) ? sessions.get(id) : undefined;
      if (session === undefined) {
        reason = 'session_unknown';
        continue;
      }
      const user = data.findUser(session.tenant, session.user);
      if (user !== null && !user.active && inactiveSessions) {
        record({ method: 'session', path, ok: true, tenant: user.tenant, user: user.id, reason: 'inactive_reported' });
        return { who: who(user, 'session') };
      }
      if (user === null || !user.active) {
        sessions.delete(id);
        reason = 'user_inactive';
        continue;
      }
      record({ method: 'session', path, ok: true, tenant: user.tenant, user: user.id, reason: 'ok' });
      return { who: who(user, 'session') };
    }
    record({ method: 'none', path, ok: false, tenant: null, user: null, reason });
    return {};
  }

  // Runs handler(who) for an authenticated caller; otherwise answers 401 invalid_assertion for a refused
  // assertion, and for nobody a redirect to the login page (pages) or 401 unauthenticated (api).
  async function withUser(req, res, ctx, api, handler, inactiveSessions = false, sessionFirst = false) {
    const result = await authenticate(req, ctx.url, inactiveSessions, sessionFirst);
    if (result.refused) {
      sendJson(res, 401, { error: 'invalid_assertion', reason: result.refused });
    } else if (result.who) {
      await handler(result.who);
    } else if (api) {
      sendJson(res, 401, { error: 'unauthenticated' });
    } else {
      redirect(res, 302, `/login?next=${encodeURIComponent(ctx.url.pathname + ctx.url.search)}`);
    }
  }

  // A page of the application: GET and HEAD only, authenticated.
  function page(req, res, ctx, handler) {
    if (!PAGE_METHODS.includes(req.method)) {
      methodNotAllowed(res, PAGE_METHODS);
      return undefined;
    }
    return withUser(req, res, ctx, false, handler);
  }

  function notFoundPage(req, res, ctx) {
    return page(req, res, ctx, (caller) => sendHtml(res, 404, pages.errorPage(caller, 'Not found', 'No such page.')));
  }

  function loginForm(res, status, fields) {
    const tenants = [...data.tenants.values()];
    sendHtml(res, status, pages.loginPage({ tenants, login: '', error: null, ...fields }));
  }

  function dropSessions(req) {
    for (const id of cookieValues(req, SESSION_COOKIE)) {
      sessions.delete(id);
    }
  }

  function sessionCookie(req, value, maxAge) {
    // Behind a TLS-terminating proxy the browser talks https: the cookie must then never travel in clear.
    const secure = req.headers['x-forwarded-proto'] === 'https' ? '; Secure' : '';
    const age = maxAge === undefined ? '' : `; Max-Age=${maxAge}`;
    return `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Lax${secure}${age}`;
  }

  async function login(req, res, ctx) {
    if (ctx.segments.length !== 1) {
      return notFoundPage(req, res, ctx);
    }
    if (PAGE_METHODS.includes(req.method)) {
      const q = ctx.url.searchParams;
      return loginForm(res, 200, { tenant: q.get('tenant'), next: safeNext(q.get('next')) });
    }
    if (req.method !== 'POST') {
      return methodNotAllowed(res, [...PAGE_METHODS, 'POST']);
    }
    const { body, length } = await readBody(req, MAX_FORM_BYTES);
    if (length > MAX_FORM_BYTES) {
      return sendJson(res, 413, { error: 'body_too_large' });
    }
    const form = new URLSearchParams(body.toString('utf8'));
    const tenant = form.get('tenant');
    const loginName = form.get('login') || '';
    const next = safeNext(form.get('next'));
    const user = data.findLogin(tenant, loginName);
    // The password is checked even without a user, so that the answer time does not reveal which logins exist.
    const matches = passwordMatches(user === null ? '' : user.password, form.get('password') || '') && user !== null;
    if (!matches) {
      const error = 'Incorrect company, username or password.';
      return loginForm(res, 401, { tenant, login: loginName, next, error });
    }
    if (!user.active) {
      const error = 'This account is inactive. Contact your administrator.';
      return loginForm(res, 403, { tenant, login: loginName, next, error });
    }
    // A fresh id on every login: a session id planted before the login is worth nothing after it.
    dropSessions(req);
    const id = crypto.randomBytes(32).toString('base64url');
    sessions.set(id, { tenant: user.tenant, user: user.id });
    if (sessions.size > MAX_SESSIONS) {
      sessions.delete(sessions.keys().next().value);
    }
    return redirect(res, 303, next, { 'set-cookie': sessionCookie(req, id) });
  }

  function logout(req, res, ctx) {
    if (ctx.segments.length !== 1) {
      return notFoundPage(req, res, ctx);
    }
    if (!['GET', 'HEAD', 'POST'].includes(req.method)) {
      return methodNotAllowed(res, ['GET', 'HEAD', 'POST']);
    }
    dropSessions(req);
    return redirect(res, 303, '/login', { 'set-cookie': sessionCookie(req, '', 0) });
  }

  // Every path without a route of its own: "/" is the home page, anything else not found. (lib/server.js
  // cannot route "/" by name: it looks the handler up under segments[0], undefined for "/".)
  function home(req, res, ctx) {
    if (ctx.segments.length !== 0) {
      return notFoundPage(req, res, ctx);
    }
    return page(req, res, ctx, (caller) =>
      sendHtml(res, 200, caller.user.kind === 'client' ? pages.clientPortalPage(caller) : pages.homePage(caller)),
    );
  }

  function tickets(req, res, ctx) {
    if (ctx.segments.length !== 1) {
      return notFoundPage(req, res, ctx);
    }
    return page(req, res, ctx, (caller) => sendHtml(res, 200, pages.ticketsPage(caller)));
  }

  function admin(req, res, ctx) {
    if (ctx.segments.length !== 2 || ctx.segments[1] !== 'company') {
      return notFoundPage(req, res, ctx);
    }
    return page(req, res, ctx, (caller) => {
      if (caller.user.admin && caller.user.kind === 'staff') {
        sendHtml(res, 200, pages.companyPage(caller));
      } else {
        sendHtml(res, 403, pages.errorPage(caller, 'Access denied', 'Only administrators can open My Company.'));
      }
    });
  }

  function api(req, res, ctx) {
    if (ctx.segments.length !== 2 || ctx.segments[1] !== 'whoami') {
      return withUser(req, res, ctx, true, () => sendJson(res, 404, { error: 'not_found' }));
    }
    if (!PAGE_METHODS.includes(req.method)) {
      return methodNotAllowed(res, PAGE_METHODS);
    }
    // whoami_delay_ms (a test control) holds the answer: a slow PSA.
    return withUser(req, res, ctx, true, (caller) => {
      if (settings.whoami_native_only && caller.method === 'assertion') {
        record({ method: 'assertion', path: ctx.url.pathname, ok: false, tenant: caller.user.tenant, user: caller.user.id, reason: 'whoami_native_only' });
        sendJson(res, 401, { error: 'unauthenticated' });
        return undefined;
      }
      return new Promise((resolve) => setTimeout(resolve, settings.whoami_delay_ms)).then(() =>
        sendJson(res, 200, whoamiBody(caller), { 'cache-control': 'no-store' }));
    }, settings.whoami_reports_inactive, settings.whoami_session_first);
  }

  async function patchUser(req, res) {
    const patch = await readJsonObject(req, res);
    if (patch === null) {
      return undefined;
    }
    const user = data.findUser(patch.tenant, patch.id);
    if (user === null) {
      return sendJson(res, 404, { error: 'unknown user' });
    }
    const changes = Object.entries(patch).filter(([key]) => key !== 'tenant' && key !== 'id');
    for (const [key, value] of changes) {
      if (!Object.prototype.hasOwnProperty.call(USER_PATCH, key) || !USER_PATCH[key](value)) {
        return sendJson(res, 400, { error: `${key}: unknown key or bad value` });
      }
    }
    for (const [key, value] of changes) {
      user[key] = value;
    }
    return sendJson(res, 200, userBody(user));
  }

  async function control(req, res, ctx) {
    const name = ctx.segments.length === 2 ? ctx.segments[1] : '';
    const routes = {
      'GET log': () => sendJson(res, 200, decisions),
      'POST reset': () => {
        decisions.length = 0;
        sendJson(res, 200, { ok: true });
      },
      'GET config': () => sendJson(res, 200, config()),
      'POST config': async () => {
        const values = await readJsonObject(req, res);
        if (values === null) {
          return;
        }
        try {
          configure(values);
        } catch (err) {
          sendJson(res, 400, { error: err.message });
          return;
        }
        sendJson(res, 200, config());
      },
      'POST users': () => patchUser(req, res),
    };
    const route = routes[`${req.method} ${name}`];
    if (route !== undefined) {
      return route();
    }
    const allowed = Object.keys(routes)
      .filter((key) => key.endsWith(` ${name}`))
      .map((key) => key.split(' ')[0]);
    return allowed.length > 0 ? methodNotAllowed(res, allowed) : sendJson(res, 404, { error: 'unknown control path' });
  }

  stub = createStub({
    name: 'psa',
    routes: { login, logout, tickets, admin, api, __psa: control },
    fallback: home,
  });
  guardRequestTarget(stub.server);
  return { stub, configure, config };
}

module.exports = { createPsa };
