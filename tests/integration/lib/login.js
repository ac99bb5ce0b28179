'use strict';
// An HTTP-level "browser" for integration tests: a cookie jar, redirects followed by hand (bounded), and
// HTML forms read from the pages and submitted, so a test can log in through the gateway and the test
// IdP (tests/idp) without a real browser. Node only, no npm packages.
//
//   const { login, Browser } = require('./lib/login');
//   const res = await login({ start: `${gw.url}/_sso/login?return_to=/`, login: 'alice', password: 'pw',
//     totpSecret: 'GEZD...', ca: caFile });
//   // res: {status, headers, body, url, history, jar, browser}; go on with res.browser.navigate(...)
//
// Cookies follow RFC 6265 as browsers apply it: a cookie belongs to a host, not to a port, so the
// gateway and the IdP on 127.0.0.1 with different ports see each other's cookies, as in a browser.
// Secure cookies go over https, and also to loopback hosts over http (Chromium counts those as secure).
// SameSite is not enforced: the browser test covers it.

const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const net = require('node:net');
const path = require('node:path');
const { totp } = require(path.join(__dirname, '..', '..', 'idp', 'totp.js'));

const DEFAULT_MAX_REDIRECTS = 20;
const MAX_AUTO_SUBMITS = 3;
const DEFAULT_TIMEOUT_MS = 15000 * Number(process.env.SSOGATE_TEST_SLOWNESS || 1);
const MAX_BODY_BYTES = 16 * 1024 * 1024;
// Browser limits (RFC 6265 section 6.1 minimums, which browsers use): bytes per cookie, cookies in all.
const MAX_COOKIE_BYTES = 4096;
const MAX_COOKIES = 3000;
const LOOPBACK_HOSTS = new Set(['127.0.0.1', '::1', 'localhost']);

// A URL's host without the brackets of an IPv6 literal, lower case.
function bareHost(url) {
  return url.hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase();
}

// RFC 6265 5.1.4 default-path: the request path up to, not including, its last "/".
function defaultPath(url) {
  const p = url.pathname;
  if (!p.startsWith('/') || p.lastIndexOf('/') === 0) {
    return '/';
  }
  return p.slice(0, p.lastIndexOf('/'));
}

// RFC 6265 5.1.4 path-match.
function pathMatches(requestPath, cookiePath) {
  if (requestPath === cookiePath) {
    return true;
  }
  return requestPath.startsWith(cookiePath) && (cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/');
}

// RFC 6265 5.1.3 domain-match (an IP address matches only itself).
function domainMatches(host, domain) {
  if (host === domain) {
    return true;
  }
  return net.isIP(host) === 0 && host.endsWith(`.${domain}`);
}

class CookieJar {
  constructor() {
    // {name, value, domain, hostOnly, path, secure, httpOnly, sameSite, expiresAt (ms or Infinity), created}
    this.cookies = [];
    this.sequence = 0;
  }

  // Stores the cookies of a response to url (a URL or string); setCookie is a header value or an array.
  storeResponse(url, setCookie) {
    if (setCookie === undefined) {
      return;
    }
    for (const header of Array.isArray(setCookie) ? setCookie : [setCookie]) {
      this.storeOne(new URL(url), header);
    }
  }

  // Parses one Set-Cookie value (RFC 6265 5.2) received from url and stores, replaces or removes it.
  storeOne(url, header) {
    if (header.length > MAX_COOKIE_BYTES) {
      return;
    }
    const [pair, ...attributes] = header.split(';');
    const eq = pair.indexOf('=');
    if (eq < 0) {
      return;
    }
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    if (name === '') {
      return;
    }
    const host = bareHost(url);
    const cookie = {
      name,
      value,
      domain: host,
      hostOnly: true,
      path: defaultPath(url),
      secure: false,
      httpOnly: false,
      sameSite: undefined,
      expiresAt: Infinity,
      created: this.sequence++,
    };
    let maxAge;
    for (const attribute of attributes) {
      const aeq = attribute.indexOf('=');
      const key = (aeq < 0 ? attribute : attribute.slice(0, aeq)).trim().toLowerCase();
      const avalue = aeq < 0 ? '' : attribute.slice(aeq + 1).trim();
      if (key === 'domain' && avalue !== '') {
        const domain = avalue.replace(/^\./, '').toLowerCase();
        if (!domainMatches(host, domain)) {
          return;
        }
        cookie.domain = domain;
        cookie.hostOnly = false;
      } else if (key === 'path') {
        cookie.path = avalue.startsWith('/') ? avalue : defaultPath(url);
      } else if (key === 'secure') {
        cookie.secure = true;
      } else if (key === 'httponly') {
        cookie.httpOnly = true;
      } else if (key === 'samesite') {
        cookie.sameSite = avalue.toLowerCase();
      } else if (key === 'max-age' && /^-?[0-9]+$/.test(avalue)) {
        maxAge = Number(avalue);
      } else if (key === 'expires') {
        const time = Date.parse(avalue);
        if (!Number.isNaN(time)) {
          cookie.expiresAt = time;
        }
      }
    }
    if (maxAge !== undefined) {
      cookie.expiresAt = maxAge <= 0 ? 0 : Date.now() + maxAge * 1000;
    }
    if (cookie.secure && !this.secureChannel(url)) {
      return;
    }
    const index = this.cookies.findIndex(
      (c) => c.name === cookie.name && c.domain === cookie.domain && c.path === cookie.path,
    );
    if (index >= 0) {
      cookie.created = this.cookies[index].created;
      this.cookies.splice(index, 1);
    }
    if (cookie.expiresAt > Date.now()) {
      this.cookies.push(cookie);
      if (this.cookies.length > MAX_COOKIES) {
        this.cookies.shift();
      }
    }
  }

  secureChannel(url) {
    return url.protocol === 'https:' || LOOPBACK_HOSTS.has(bareHost(url));
  }

  // The cookies that a request to url carries, longest path first, then oldest first.
  matching(url) {
    const target = new URL(url);
    const host = bareHost(target);
    const now = Date.now();
    this.cookies = this.cookies.filter((c) => c.expiresAt > now);
    return this.cookies
      .filter((c) => (c.hostOnly ? c.domain === host : domainMatches(host, c.domain)))
      .filter((c) => pathMatches(target.pathname, c.path))
      .filter((c) => !c.secure || this.secureChannel(target))
      .sort((a, b) => b.path.length - a.path.length || a.created - b.created);
  }

  // The Cookie header value for a request to url, or undefined when no cookie applies.
  header(url) {
    const cookies = this.matching(url);
    return cookies.length === 0 ? undefined : cookies.map((c) => `${c.name}=${c.value}`).join('; ');
  }

  // The value of cookie name that a request to url would carry (any host when url is omitted).
  get(name, url) {
    const cookie = (url === undefined ? this.cookies : this.matching(url)).find((c) => c.name === name);
    return cookie ? cookie.value : undefined;
  }

  // Sets a cookie by hand, as a response from url would have (attributes as in Set-Cookie).
  set(url, name, value, attributes = 'Path=/') {
    this.storeOne(new URL(url), `${name}=${value}; ${attributes}`);
  }

  // Removes every cookie named name (of one host when url is given).
  delete(name, url) {
    const host = url === undefined ? undefined : bareHost(new URL(url));
    this.cookies = this.cookies.filter((c) => c.name !== name || (host !== undefined && c.domain !== host));
  }

  clear() {
    this.cookies = [];
  }
}

function decodeEntities(text) {
  return text.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|amp|lt|gt|quot|apos|#39);/g, (m, entity) => {
    switch (entity) {
      case 'amp':
        return '&';
      case 'lt':
        return '<';
      case 'gt':
        return '>';
      case 'quot':
        return '"';
      case 'apos':
        return "'";
      default: {
        const code = entity[1] === 'x' ? Number.parseInt(entity.slice(2), 16) : Number.parseInt(entity.slice(1), 10);
        return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : m;
      }
    }
  });
}

// The attributes of a start tag's inside text as an object (lower-case names, entity-decoded values).
function parseAttributes(text) {
  const attributes = {};
  for (const m of text.matchAll(/([^\s=/>"']+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+)))?/g)) {
    const name = m[1].toLowerCase();
    if (!(name in attributes)) {
      attributes[name] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
    }
  }
  return attributes;
}

// The forms of an HTML page: [{id, name, action, method, fields: [[name, value]], buttons: [{name,
// value, text}]}]. fields holds what the form would submit without a button: hidden and text inputs,
// checked checkboxes and radios, textareas, the selected option of selects.
function parseForms(html) {
  const forms = [];
  for (const m of String(html).matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form\s*>/gi)) {
    const attributes = parseAttributes(m[1]);
    const inner = m[2];
    const form = {
      id: attributes.id,
      name: attributes.name,
      action: attributes.action,
      method: (attributes.method || 'GET').toUpperCase(),
      enctype: attributes.enctype,
      fields: [],
      buttons: [],
    };
    const controls = /<input\b([^>]*)>|<(button|textarea|select)\b([^>]*)>([\s\S]*?)<\/\2\s*>/gi;
    for (const c of inner.matchAll(controls)) {
      const tag = c[2] === undefined ? 'input' : c[2].toLowerCase();
      const a = parseAttributes(c[2] === undefined ? c[1] : c[3]);
      const content = c[4] || '';
      const type = (a.type || (tag === 'button' ? 'submit' : 'text')).toLowerCase();
      if ('disabled' in a) {
        continue;
      }
      if ((tag === 'button' || tag === 'input') && (type === 'submit' || type === 'image')) {
        const text = tag === 'button' ? decodeEntities(content.replace(/<[^>]*>/g, '')).trim() : a.value || '';
        form.buttons.push({ name: a.name, value: a.value ?? '', text });
      } else if (a.name === undefined) {
        continue;
      } else if (tag === 'textarea') {
        form.fields.push([a.name, decodeEntities(content)]);
      } else if (tag === 'select') {
        const options = [...content.matchAll(/<option\b([^>]*)>([^<]*)/gi)];
        const chosen = options.find((o) => 'selected' in parseAttributes(o[1])) || options[0];
        if (chosen) {
          const oa = parseAttributes(chosen[1]);
          form.fields.push([a.name, oa.value ?? decodeEntities(chosen[2]).trim()]);
        }
      } else if (type === 'checkbox' || type === 'radio') {
        if ('checked' in a) {
          form.fields.push([a.name, a.value ?? 'on']);
        }
      } else if (tag === 'input' && type !== 'reset' && type !== 'button' && type !== 'file') {
        form.fields.push([a.name, a.value ?? '']);
      }
    }
    forms.push(form);
  }
  return forms;
}

// The form with id (or name) in html, or undefined.
function findForm(html, id) {
  return parseForms(html).find((f) => f.id === id || f.name === id);
}

function readCa(ca) {
  if (ca === undefined || ca === null) {
    return undefined;
  }
  if (Buffer.isBuffer(ca) || String(ca).includes('-----BEGIN')) {
    return ca;
  }
  return fs.readFileSync(ca);
}

class Browser {
  // options: ca (file path or PEM, the test CA for https), jar (a CookieJar to share), maxRedirects,
  // timeoutMs (per request), headers (added to every request), localAddress (the loopback address
  // its connections come from, for a second client address: 127.0.0.2).
  constructor({ ca, jar, maxRedirects = DEFAULT_MAX_REDIRECTS, timeoutMs = DEFAULT_TIMEOUT_MS, headers = {}, localAddress } = {}) {
    this.ca = readCa(ca);
    this.localAddress = localAddress;
    this.jar = jar || new CookieJar();
    this.maxRedirects = maxRedirects;
    this.timeoutMs = timeoutMs;
    this.headers = headers;
  }

  // One request, no redirect followed; the response's cookies go into the jar. options: method,
  // headers, body (string or Buffer), form (object or [[name, value]]: sent urlencoded).
  // Resolves {status, headers, body (string), rawBody (Buffer), url}.
  request(url, { method = 'GET', headers = {}, body, form } = {}) {
    const target = new URL(url);
    if (target.protocol !== 'http:' && target.protocol !== 'https:') {
      return Promise.reject(new Error(`cannot fetch ${target.protocol} URL ${target.href}`));
    }
    let payload = body;
    const outHeaders = {
      'user-agent': 'ssogate-test-browser/1',
      accept: 'text/html,application/xhtml+xml,application/json;q=0.9,*/*;q=0.8',
      ...this.headers,
      ...headers,
    };
    if (form !== undefined) {
      payload = new URLSearchParams(Array.isArray(form) ? form : Object.entries(form)).toString();
      outHeaders['content-type'] = 'application/x-www-form-urlencoded';
    }
    if (payload !== undefined) {
      outHeaders['content-length'] = Buffer.byteLength(payload);
    }
    const cookie = this.jar.header(target);
    if (cookie !== undefined) {
      outHeaders.cookie = cookie;
    }
    const lib = target.protocol === 'https:' ? https : http;
    const host = bareHost(target);
    return new Promise((resolve, reject) => {
      const req = lib.request({
        host,
        port: target.port || (target.protocol === 'https:' ? 443 : 80),
        method,
        path: `${target.pathname}${target.search}`,
        headers: outHeaders,
        agent: false,
        ca: this.ca,
        servername: net.isIP(host) === 0 ? host : undefined,
        localAddress: this.localAddress,
      });
      const timer = setTimeout(() => {
        req.destroy(new Error(`request timed out after ${this.timeoutMs} ms: ${method} ${target.href}`));
      }, this.timeoutMs);
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      req.on('response', (res) => {
        this.jar.storeResponse(target, res.headers['set-cookie']);
        const chunks = [];
        let length = 0;
        res.on('data', (chunk) => {
          length += chunk.length;
          if (length > MAX_BODY_BYTES) {
            req.destroy(new Error(`response body over ${MAX_BODY_BYTES} bytes: ${target.href}`));
          } else {
            chunks.push(chunk);
          }
        });
        res.on('end', () => {
          clearTimeout(timer);
          const rawBody = Buffer.concat(chunks);
          resolve({ status: res.statusCode, headers: res.headers, body: rawBody.toString('utf8'), rawBody, url: target.href });
        });
        res.on('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
      });
      req.end(payload);
    });
  }

  // Requests url and follows redirects as a browser does (301/302/303 become a GET, 307/308 keep the
  // method and body), at most maxRedirects of them. Resolves the last response with history: [{status,
  // url, location}] of every response on the way (the last one included). options as for request.
  async navigate(url, options = {}) {
    const history = [];
    let current = new URL(url);
    let { method = 'GET', body, form, headers = {} } = options;
    for (;;) {
      const res = await this.request(current, { method, body, form, headers });
      const location = res.headers.location;
      history.push({ status: res.status, url: res.url, location });
      if (![301, 302, 303, 307, 308].includes(res.status) || location === undefined) {
        return { ...res, history };
      }
      if (history.length > this.maxRedirects) {
        throw new Error(`more than ${this.maxRedirects} redirects: ${history.map((h) => `${h.status} ${h.url}`).join(' -> ')}`);
      }
      const next = new URL(location, current);
      if (res.status !== 307 && res.status !== 308) {
        method = 'GET';
        body = undefined;
        form = undefined;
      }
      // A browser sends no Origin on a redirected GET and keeps the page as the Referer only within
      // an origin; tests need neither, so redirected requests carry none of the first one's headers.
      headers = {};
      current = next;
    }
  }

  // Submits the form id (or name) of page (a response of navigate, whose url resolves the action) with
  // values (object) set over its own fields, pressing the button whose text or name matches
  // options.button (default: the first submit button). Follows redirects. Throws when there is no such form.
  async submitForm(page, id, values = {}, { button } = {}) {
    const form = findForm(page.body, id);
    if (form === undefined) {
      throw new Error(`no form "${id}" on ${page.url} (status ${page.status})`);
    }
    const fields = form.fields.filter(([name]) => !Object.hasOwn(values, name));
    for (const [name, value] of Object.entries(values)) {
      fields.push([name, String(value)]);
    }
    const pressed = button === undefined
      ? form.buttons[0]
      : form.buttons.find((b) => b.text === button || b.name === button);
    if (button !== undefined && pressed === undefined) {
      throw new Error(`no button "${button}" in form "${id}" on ${page.url}`);
    }
    if (pressed && pressed.name !== undefined) {
      fields.push([pressed.name, pressed.value]);
    }
    const action = new URL(form.action || page.url, page.url);
    const origin = new URL(page.url).origin;
    const headers = { referer: page.url };
    if (form.method === 'POST') {
      headers.origin = origin;
      return this.navigate(action, { method: 'POST', form: fields, headers });
    }
    action.search = new URLSearchParams(fields).toString();
    return this.navigate(action, { headers });
  }

  // Submits the one form of a page whose script submits it on load, as a browser running scripts does, and
  // follows the redirects; resolves page itself when it is no such page. oidc-provider sends these pages
  // (e.g. "Submitting Callback", which ends the IdP session of one account before another's sign-in, as
  // prompt=login brings about) and at most MAX_AUTO_SUBMITS follow each other.
  async submitAutoForms(page) {
    let current = page;
    for (let i = 0; i < MAX_AUTO_SUBMITS; i++) {
      const forms = parseForms(current.body);
      if (forms.length !== 1 || !/document\.forms\[0\]\.submit\(\)/.test(current.body)) {
        return current;
      }
      const form = forms[0];
      const action = new URL(form.action || current.url, current.url);
      current = await this.navigate(action, {
        method: form.method,
        form: form.method === 'POST' ? form.fields : undefined,
        headers: form.method === 'POST' ? { origin: new URL(current.url).origin } : {},
      });
    }
    throw new Error(`more than ${MAX_AUTO_SUBMITS} self-submitting pages in a row, the last at ${current.url}`);
  }
}

// Logs in as a user would: starts at start (a gateway URL such as /_sso/login?return_to=/), follows the
// redirects to the IdP, fills #login-form with login and password, then, if the IdP asks, #otp-form with
// the TOTP code of totpSecret (or totpCode as given), and follows the redirects back through the
// gateway's callback. A step whose form is not on the page is skipped, so an IdP session already open
// (no login page) or a refused login (the form again, with its error) end the walk where they are. The
// IdP's self-submitting pages after the forms are submitted as a browser would (submitAutoForms).
// options: browser (to reuse its cookies) or ca, maxRedirects, timeoutMs for a new one.
// Resolves the final response {status, headers, body, url, history (every hop, all steps), jar,
// browser, steps: names of the forms submitted}.
async function login({ start, login: user, password, totpSecret, totpCode, browser, ca, maxRedirects, timeoutMs }) {
  const b = browser || new Browser({ ca, maxRedirects, timeoutMs });
  const steps = [];
  const history = [];
  let res = await b.navigate(start);
  history.push(...res.history);
  if (findForm(res.body, 'login-form') !== undefined && user !== undefined) {
    res = await b.submitForm(res, 'login-form', { login: user, password: password ?? '' });
    history.push(...res.history);
    steps.push('login-form');
  }
  if (findForm(res.body, 'otp-form') !== undefined && (totpCode !== undefined || totpSecret !== undefined)) {
    res = await b.submitForm(res, 'otp-form', { code: totpCode ?? totp(totpSecret) });
    history.push(...res.history);
    steps.push('otp-form');
  }
  if (steps.length > 0) {
    res = await b.submitAutoForms(res);
    history.push(...res.history);
  }
  return { ...res, history, jar: b.jar, browser: b, steps };
}

module.exports = { login, Browser, CookieJar, parseForms, findForm };
