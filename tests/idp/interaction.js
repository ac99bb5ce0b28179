'use strict';
// The login interaction of the test IdP, as plain server-rendered HTML forms (no script), shown in the
// demo and driven by tests/integration/lib/login.js and a real browser:
//   GET  /interaction/UID        page 1 (#login-form: login, password), or page 2 once the password was
//                                right and the account has TOTP enrolled (#otp-form: code)
//   POST /interaction/UID/login  checks login and password
//   POST /interaction/UID/otp    checks the 6-digit TOTP code
//   POST /interaction/UID/abort  "Cancel": ends the login with access_denied
// A finished login reports amr ["pwd","otp"] after a TOTP code, ["pwd"] without TOTP enrolled. An
// inactive account ends the login with access_denied, which the relying party receives at its callback.

const crypto = require('node:crypto');
const { verifyTotp } = require('./totp');

// Form bodies are two short fields; anything bigger is not ours.
const MAX_FORM_BYTES = 16 * 1024;
// Wrong codes in a row before the password has to be typed again.
const MAX_OTP_ATTEMPTS = 5;
// How long a right password waits for its TOTP code.
const OTP_WAIT_MS = 10 * 60 * 1000;
// Above this many logins waiting for a code, expired ones are swept before adding one.
const MAX_PENDING = 10000;

const ACR_PASSWORD = 'urn:ssogate:idp:acr:pwd';
const ACR_MFA = 'urn:ssogate:idp:acr:mfa';

function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const STYLE = `
  body { font-family: system-ui, sans-serif; background: #eef1f5; color: #1c2430; margin: 0; }
  main { max-width: 26rem; margin: 4rem auto; background: #fff; padding: 2rem 2.25rem;
         border-radius: 8px; box-shadow: 0 2px 10px rgba(0,0,0,.12); }
  .brand { font-size: .85rem; letter-spacing: .04em; text-transform: uppercase; color: #5a6575; margin: 0; }
  h1 { font-size: 1.5rem; margin: .3rem 0 1rem; }
  p { line-height: 1.45; }
  label { display: block; font-weight: 600; margin: 1rem 0 .35rem; }
  input[type=text], input[type=password] { width: 100%; box-sizing: border-box; font-size: 1.05rem;
         padding: .55rem .65rem; border: 1px solid #9aa5b4; border-radius: 4px; }
  button { font-size: 1rem; padding: .6rem 1.2rem; border-radius: 4px; border: 1px solid #1f5fbf;
         background: #1f6fdf; color: #fff; cursor: pointer; margin-top: 1.4rem; }
  button.secondary { background: #fff; color: #1f5fbf; margin-top: .6rem; }
  .error { background: #fde8e8; border: 1px solid #e0a3a3; color: #8a1c1c; padding: .6rem .8rem; border-radius: 4px; }
  .hint { color: #5a6575; font-size: .9rem; }
  .code { letter-spacing: .3em; font-family: ui-monospace, monospace; }
`;

// A whole page: title (text) and body (HTML, already escaped by the caller).
function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
<p class="brand">IT Complete &middot; test identity provider</p>
${body}
</main>
</body>
</html>
`;
}

function errorBlock(message) {
  return message ? `<p class="error" role="alert">${escapeHtml(message)}</p>\n` : '';
}

function cancelForm(uid) {
  return `<form id="cancel-form" method="post" action="/interaction/${escapeHtml(uid)}/abort">
<button type="submit" class="secondary">Cancel</button>
</form>`;
}

function loginPage(uid, clientName, { message, login = '' } = {}) {
  return page(
    'Sign in',
    `<h1>Sign in</h1>
<p>to continue to <strong>${escapeHtml(clientName)}</strong></p>
${errorBlock(message)}<form id="login-form" method="post" action="/interaction/${escapeHtml(uid)}/login">
<label for="login">Username or email</label>
<input type="text" id="login" name="login" value="${escapeHtml(login)}" autocomplete="username" autofocus required>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
${cancelForm(uid)}`,
  );
}

function otpPage(uid, login, { message } = {}) {
  return page(
    'Two-factor authentication',
    `<h1>Two-factor authentication</h1>
<p>Signed in as <strong>${escapeHtml(login)}</strong>. Enter the 6-digit code from your authenticator app.</p>
${errorBlock(message)}<form id="otp-form" method="post" action="/interaction/${escapeHtml(uid)}/otp">
<label for="code">Authentication code</label>
<input type="text" id="code" name="code" class="code" inputmode="numeric" pattern="[0-9]{6}" maxlength="6"
 autocomplete="one-time-code" autofocus required>
<button type="submit">Verify</button>
</form>
${cancelForm(uid)}`,
  );
}

function messagePage(title, message) {
  return page(title, `<h1>${escapeHtml(title)}</h1>\n${errorBlock(message)}`);
}

function send(res, status, html) {
  const body = Buffer.from(html);
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': body.length,
    'cache-control': 'no-store',
    'x-frame-options': 'DENY',
  });
  res.end(body);
}

function redirect(res, location) {
  res.writeHead(303, { location, 'content-length': 0, 'cache-control': 'no-store' });
  res.end();
}

// Reads an application/x-www-form-urlencoded body of at most MAX_FORM_BYTES; resolves URLSearchParams,
// or null when the body is too big or of another type.
function readForm(req) {
  return new Promise((resolve, reject) => {
    const type = String(req.headers['content-type'] || '').split(';')[0].trim().toLowerCase();
    const chunks = [];
    let length = 0;
    let tooBig = false;
    req.on('data', (chunk) => {
      length += chunk.length;
      if (length > MAX_FORM_BYTES) {
        tooBig = true;
      } else {
        chunks.push(chunk);
      }
    });
    req.on('end', () => {
      if (tooBig || type !== 'application/x-www-form-urlencoded') {
        resolve(null);
      } else {
        resolve(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
      }
    });
    req.on('error', reject);
  });
}

// Compares two strings in constant time (for their length).
function secretEquals(a, b) {
  const ha = crypto.createHash('sha256').update(String(a)).digest();
  const hb = crypto.createHash('sha256').update(String(b)).digest();
  return crypto.timingSafeEqual(ha, hb);
}

// Creates the interaction handler. accounts: the account store of idp.js (borrowed: byLogin(login),
// bySub(sub)); getProvider() returns the current oidc-provider instance. Returns handle(req, res, url)
// for every path under /interaction/.
function createInteractions({ accounts, getProvider, clientName }) {
  // interaction uid -> {sub, attempts, expiresAt}: the password was right, the TOTP code is awaited.
  const pending = new Map();

  function pendingFor(uid) {
    const entry = pending.get(uid);
    if (entry && entry.expiresAt <= Date.now()) {
      pending.delete(uid);
      return undefined;
    }
    return entry;
  }

  async function finishLogin(req, res, uid, account, amr) {
    pending.delete(uid);
    await getProvider().interactionFinished(req, res, {
      login: { accountId: account.sub, amr, acr: amr.includes('otp') ? ACR_MFA : ACR_PASSWORD, remember: true },
    });
  }

  async function deny(req, res, uid, description) {
    pending.delete(uid);
    await getProvider().interactionFinished(req, res, { error: 'access_denied', error_description: description });
  }

  async function show(req, res, uid, details) {
    if (details.prompt.name !== 'login') {
      // loadExistingGrant grants every first-party client up front, so only login is ever asked.
      send(res, 500, messagePage('Unexpected request', `The identity provider has no page for "${details.prompt.name}".`));
      return;
    }
    const entry = pendingFor(uid);
    if (entry) {
      send(res, 200, otpPage(uid, accounts.bySub(entry.sub).login));
    } else {
      send(res, 200, loginPage(uid, clientName(details.params.client_id)));
    }
  }

  async function submitLogin(req, res, uid, details, form) {
    const login = form.get('login') || '';
    const password = form.get('password') || '';
    const account = accounts.byLogin(login);
    // The password is compared even when the login is unknown, so both fail alike.
    const passwordOk = secretEquals(password, account ? account.password : crypto.randomBytes(16).toString('hex'));
    if (!account || !passwordOk) {
      send(res, 200, loginPage(uid, clientName(details.params.client_id), {
        message: 'Wrong username or password.',
        login,
      }));
      return;
    }
    if (account.active === false) {
      await deny(req, res, uid, 'the account is inactive');
      return;
    }
    if (!account.totp_secret) {
      await finishLogin(req, res, uid, account, ['pwd']);
      return;
    }
    if (pending.size >= MAX_PENDING) {
      for (const key of pending.keys()) {
        pendingFor(key);
      }
    }
    pending.set(uid, { sub: account.sub, attempts: 0, expiresAt: Date.now() + OTP_WAIT_MS });
    redirect(res, `/interaction/${encodeURIComponent(uid)}`);
  }

  async function submitOtp(req, res, uid, details, form) {
    const entry = pendingFor(uid);
    if (!entry) {
      redirect(res, `/interaction/${encodeURIComponent(uid)}`);
      return;
    }
    const account = accounts.bySub(entry.sub);
    const code = (form.get('code') || '').replace(/\s+/g, '');
    if (verifyTotp(account.totp_secret, code)) {
      await finishLogin(req, res, uid, account, ['pwd', 'otp']);
      return;
    }
    entry.attempts += 1;
    if (entry.attempts >= MAX_OTP_ATTEMPTS) {
      pending.delete(uid);
      send(res, 200, loginPage(uid, clientName(details.params.client_id), {
        message: 'Too many wrong codes. Sign in again.',
        login: account.login,
      }));
      return;
    }
    send(res, 200, otpPage(uid, account.login, { message: 'That code is not right. Try the current one.' }));
  }

  return async function handle(req, res, url) {
    const match = /^\/interaction\/([A-Za-z0-9_-]{1,64})(?:\/(login|otp|abort))?$/.exec(url.pathname);
    if (!match) {
      send(res, 404, messagePage('Not found', 'There is no such page.'));
      return;
    }
    const [, uid, action] = match;
    let details;
    try {
      details = await getProvider().interactionDetails(req, res);
    } catch (err) {
      send(res, 400, messagePage('Sign-in expired', 'This sign-in request is no longer valid. Go back to the application and start again.'));
      return;
    }
    if (details.uid !== uid) {
      send(res, 400, messagePage('Sign-in mismatch', 'This page belongs to another sign-in request. Go back to the application and start again.'));
      return;
    }
    if (action === undefined) {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        send(res, 405, messagePage('Method not allowed', 'Use the form.'));
        return;
      }
      await show(req, res, uid, details);
      return;
    }
    if (req.method !== 'POST') {
      send(res, 405, messagePage('Method not allowed', 'Use the form.'));
      return;
    }
    const form = await readForm(req);
    if (form === null) {
      send(res, 400, messagePage('Bad form', 'The form could not be read.'));
      return;
    }
    if (action === 'abort') {
      await deny(req, res, uid, 'the user cancelled the sign-in');
    } else if (action === 'login') {
      await submitLogin(req, res, uid, details, form);
    } else {
      await submitOtp(req, res, uid, details, form);
    }
  };
}

module.exports = { createInteractions, escapeHtml, page, ACR_PASSWORD, ACR_MFA };
