'use strict';
// The PSA's dataset: tenants and their users, loaded from a JSON file and checked on load so that a typo in
// a test's dataset fails at start-up with a message naming the entry, not later as a puzzling login failure.
//
// File format: {"tenants":[{"id","name"}], "users":[{"tenant","id","login","password","name","email",
// "admin","kind","active"}]}; kind is "staff" or "client" (client portal); email is optional.

const fs = require('node:fs');

const KINDS = new Set(['staff', 'client']);
const ID_PATTERN = /^[A-Za-z0-9._@-]{1,128}$/;

function fail(where, what) {
  throw new Error(`${where}: ${what}`);
}

function checkString(value, where, pattern) {
  if (typeof value !== 'string' || value.length === 0 || value.length > 256) {
    fail(where, 'must be a non-empty string of at most 256 characters');
  }
  if (pattern && !pattern.test(value)) {
    fail(where, `must match ${pattern}`);
  }
}

function checkBoolean(value, where) {
  if (typeof value !== 'boolean') {
    fail(where, 'must be true or false');
  }
}

// Key of a user in the lookup maps: tenant ids and user ids cannot hold NUL (ID_PATTERN).
function userKey(tenant, id) {
  return `${tenant}\u0000${id}`;
}

// Builds the in-memory dataset from a parsed JSON value; throws an Error naming the bad entry ("users[2].kind:
// must be ...").
// Returns {tenants: Map id -> tenant, users: Map key -> user, findUser(tenant, id), findLogin(tenant, login)}.
// The user objects are the dataset's own (copied from the input): callers may change active/admin/kind/name.
function buildData(value) {
  if (value === null || typeof value !== 'object' || !Array.isArray(value.tenants) || !Array.isArray(value.users)) {
    fail('top level', 'must be an object with arrays "tenants" and "users"');
  }
  const tenants = new Map();
  value.tenants.forEach((t, i) => {
    const where = `tenants[${i}]`;
    if (t === null || typeof t !== 'object') {
      fail(where, 'must be an object');
    }
    checkString(t.id, `${where}.id`, ID_PATTERN);
    checkString(t.name, `${where}.name`);
    if (tenants.has(t.id)) {
      fail(`${where}.id`, `duplicate tenant "${t.id}"`);
    }
    tenants.set(t.id, { id: t.id, name: t.name });
  });
  const users = new Map();
  const logins = new Map();
  value.users.forEach((u, i) => {
    const where = `users[${i}]`;
    if (u === null || typeof u !== 'object') {
      fail(where, 'must be an object');
    }
    checkString(u.tenant, `${where}.tenant`, ID_PATTERN);
    if (!tenants.has(u.tenant)) {
      fail(`${where}.tenant`, `unknown tenant "${u.tenant}"`);
    }
    checkString(u.id, `${where}.id`, ID_PATTERN);
    checkString(u.login, `${where}.login`);
    checkString(u.password, `${where}.password`);
    checkString(u.name, `${where}.name`);
    if (u.email !== undefined) {
      checkString(u.email, `${where}.email`);
    }
    checkBoolean(u.admin, `${where}.admin`);
    checkBoolean(u.active, `${where}.active`);
    if (!KINDS.has(u.kind)) {
      fail(`${where}.kind`, 'must be "staff" or "client"');
    }
    const key = userKey(u.tenant, u.id);
    const loginKey = userKey(u.tenant, u.login.toLowerCase());
    if (users.has(key)) {
      fail(`${where}.id`, `duplicate user "${u.id}" in tenant "${u.tenant}"`);
    }
    if (logins.has(loginKey)) {
      fail(`${where}.login`, `duplicate login "${u.login}" in tenant "${u.tenant}"`);
    }
    const user = {
      tenant: u.tenant,
      id: u.id,
      login: u.login,
      password: u.password,
      name: u.name,
      email: u.email === undefined ? null : u.email,
      admin: u.admin,
      kind: u.kind,
      active: u.active,
    };
    users.set(key, user);
    logins.set(loginKey, user);
  });
  return {
    tenants,
    users,
    // The user with this id in this tenant, or null. Any input is safe: non-strings find nothing.
    findUser(tenant, id) {
      if (typeof tenant !== 'string' || typeof id !== 'string') {
        return null;
      }
      return users.get(userKey(tenant, id)) || null;
    },
    // The user who logs in with this login name (case-insensitive) in this tenant, or null.
    findLogin(tenant, login) {
      if (typeof tenant !== 'string' || typeof login !== 'string') {
        return null;
      }
      return logins.get(userKey(tenant, login.toLowerCase())) || null;
    },
  };
}

// Reads and checks a dataset file; throws an Error naming the file and what is wrong.
function loadData(file) {
  try {
    return buildData(JSON.parse(fs.readFileSync(file, 'utf8')));
  } catch (err) {
    throw new Error(`psa data: ${file}: ${err.message}`);
  }
}

module.exports = { loadData, KINDS };
