'use strict';
// The PSA's HTML: a login screen and a few pages of a business application, with plain inline CSS and no
// external assets (the tests and the demo run offline). Element ids are what the browser tests select on:
// #psa-login-form, #login-error, #auth-method, #welcome, #my-settings, #sign-out-form, #page-title.
// Every value from the dataset or the request is escaped.

const PRODUCT = 'Demo PSA';

const CSS = `
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
  color: #1f2933; background: #eef1f5; }
a { color: #1d5fbf; }
header.top { display: flex; align-items: center; gap: 24px; padding: 0 24px; height: 52px;
  background: #1b2a41; color: #fff; }
header.top .brand { font-weight: 700; letter-spacing: .02em; }
header.top nav { display: flex; gap: 16px; flex: 1; }
header.top nav a, header.top .who a { color: #d6e2f5; text-decoration: none; }
header.top nav a:hover, header.top .who a:hover { color: #fff; text-decoration: underline; }
header.top .who { display: flex; align-items: center; gap: 12px; }
header.top form { margin: 0; }
header.top button { background: transparent; border: 1px solid #5b6f8f; color: #d6e2f5; border-radius: 4px;
  padding: 4px 10px; cursor: pointer; font: inherit; }
main { max-width: 960px; margin: 32px auto; padding: 0 24px; }
.card { background: #fff; border: 1px solid #d8dee8; border-radius: 8px; padding: 24px 28px;
  box-shadow: 0 1px 2px rgba(16, 24, 40, .05); margin-bottom: 20px; }
h1 { font-size: 24px; margin: 0 0 8px; }
h2 { font-size: 17px; margin: 0 0 12px; }
.muted { color: #616e7c; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; background: #e3ecfa; color: #1d4f9c;
  font-size: 13px; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: 8px 10px; border-bottom: 1px solid #e4e8ee; }
th { font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: #616e7c; }
.login-wrap { min-height: 100vh; display: flex; align-items: center; justify-content: center; }
.login { width: 360px; }
.login h1 { text-align: center; }
.login .brand { text-align: center; font-weight: 700; color: #1b2a41; font-size: 20px; margin-bottom: 4px; }
label { display: block; font-weight: 600; margin: 14px 0 4px; font-size: 14px; }
input, select { width: 100%; padding: 8px 10px; border: 1px solid #b8c2d0; border-radius: 4px; font: inherit;
  background: #fff; }
input:focus, select:focus { outline: 2px solid #9cc0f5; border-color: #1d5fbf; }
button.primary { width: 100%; margin-top: 20px; padding: 9px; border: 0; border-radius: 4px; background: #1d5fbf;
  color: #fff; font: inherit; font-weight: 600; cursor: pointer; }
button.primary:hover { background: #174c99; }
.error { background: #fdecec; border: 1px solid #f3b7b7; color: #9b1c1c; padding: 8px 12px; border-radius: 4px; }
`;

function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function document(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} - ${PRODUCT}</title>
<style>${CSS}</style>
</head>
<body>
${body}
</body>
</html>
`;
}

// Text of #auth-method for an authentication method of the PSA.
function methodLabel(method) {
  return method === 'assertion' ? 'IT Complete' : 'password';
}

// A page of the application for the signed-in user: the top bar (navigation, the user's name linking to My
// Settings, Sign out) and main. who = {user, tenant, method}.
function appPage(title, who, main) {
  const { user } = who;
  const staff = user.kind === 'staff';
  const links = [`<a href="/">${staff ? 'Home' : 'Client portal'}</a>`, '<a href="/tickets">Tickets</a>'];
  if (staff && user.admin) {
    links.push('<a href="/admin/company">Admin</a>');
  }
  return document(
    title,
    `<header class="top">
<span class="brand">${PRODUCT}</span>
<nav>${links.join('')}</nav>
<div class="who">
<a id="user-name" href="/_sso/settings" title="My Settings">${escapeHtml(user.name)}</a>
<a id="my-settings" href="/_sso/settings">My Settings</a>
<form id="sign-out-form" method="post" action="/logout"><button type="submit">Sign out</button></form>
</div>
</header>
<main>
${main}
</main>`,
  );
}

// The login screen. form = {tenants: [{id, name}], tenant, login, next, error}.
function loginPage(form) {
  const options = form.tenants
    .map((t) => {
      const selected = t.id === form.tenant ? ' selected' : '';
      return `<option value="${escapeHtml(t.id)}"${selected}>${escapeHtml(t.name)}</option>`;
    })
    .join('');
  const error = form.error ? `<p class="error" id="login-error" role="alert">${escapeHtml(form.error)}</p>` : '';
  return document(
    'Sign in',
    `<div class="login-wrap">
<div class="card login">
<div class="brand">${PRODUCT}</div>
<h1 id="page-title">Sign in</h1>
<p class="muted" style="text-align:center">Professional services automation</p>
${error}
<form id="psa-login-form" method="post" action="/login">
<input type="hidden" name="next" value="${escapeHtml(form.next)}">
<label for="tenant">Company</label>
<select id="tenant" name="tenant">${options}</select>
<label for="login">Username</label>
<input id="login" name="login" type="text" autocomplete="username" value="${escapeHtml(form.login)}" required>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button class="primary" type="submit">Sign in</button>
</form>
</div>
</div>`,
  );
}

function signedInAs(who) {
  return `<p class="muted">Signed in to <strong id="tenant-name">${escapeHtml(who.tenant.name)}</strong> with
<span class="badge" id="auth-method">${methodLabel(who.method)}</span></p>`;
}

// The home page of a staff user.
function homePage(who) {
  const { user } = who;
  return appPage(
    'Home',
    who,
    `<div class="card">
<h1 id="welcome">Welcome, ${escapeHtml(user.name)}</h1>
${signedInAs(who)}
</div>
<div class="card">
<h2 id="page-title">Dashboard</h2>
<table>
<tr><th>Queue</th><th>Open</th><th>Due today</th></tr>
<tr><td>Service desk</td><td>12</td><td>3</td></tr>
<tr><td>Projects</td><td>5</td><td>1</td></tr>
<tr><td>Billing</td><td>2</td><td>0</td></tr>
</table>
<p><a href="/tickets">Open the ticket list</a>${user.admin ? ' · <a href="/admin/company">My Company</a>' : ''}</p>
</div>`,
  );
}

// The home page of a client-portal user.
function clientPortalPage(who) {
  return appPage(
    'Client portal',
    who,
    `<div class="card">
<h1 id="page-title">Client portal</h1>
<p id="welcome">Welcome, ${escapeHtml(who.user.name)}</p>
${signedInAs(who)}
<p>Follow your service requests on the <a href="/tickets">tickets</a> page.</p>
</div>`,
  );
}

// The ticket list: fixed rows, for navigation and return_to tests.
function ticketsPage(who) {
  const rows = [
    ['T-1001', 'Printer offline on 3rd floor', 'Open'],
    ['T-1002', 'New laptop for onboarding', 'In progress'],
    ['T-1003', 'VPN drops every hour', 'Waiting on customer'],
  ]
    .map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`)
    .join('\n');
  return appPage(
    'Tickets',
    who,
    `<div class="card">
<h1 id="page-title">Tickets</h1>
${signedInAs(who)}
<table>
<tr><th>Number</th><th>Title</th><th>Status</th></tr>
${rows}
</table>
</div>`,
  );
}

// Admin > My Company > Company Settings, where the article's IT Complete switch lives.
function companyPage(who) {
  return appPage(
    'My Company',
    who,
    `<div class="card">
<h1 id="page-title">My Company</h1>
${signedInAs(who)}
<h2>Company Settings</h2>
<table>
<tr><th>Setting</th><th>Value</th></tr>
<tr><td>Company</td><td>${escapeHtml(who.tenant.name)}</td></tr>
<tr><td>Company id</td><td><code>${escapeHtml(who.tenant.id)}</code></td></tr>
<tr><td>IT Complete</td><td><a id="it-complete-settings" href="/_sso/settings">IT Complete settings</a></td></tr>
</table>
</div>`,
  );
}

// A page for a signed-in user refused by role (403) or an unknown path (404).
function errorPage(who, title, text) {
  return appPage(
    title,
    who,
    `<div class="card"><h1 id="page-title">${escapeHtml(title)}</h1>
<p id="error-text">${escapeHtml(text)}</p><p><a href="/">Back to the home page</a></p></div>`,
  );
}

module.exports = { loginPage, homePage, clientPortalPage, ticketsPage, companyPage, errorPage };
