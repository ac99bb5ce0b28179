'use strict';
// The storage adapter of the test IdP: oidc-provider's documented adapter interface over one in-memory
// Map per process. oidc-provider's own MemoryAdapter keeps at most 1000 entries, which high-concurrency
// login tests would overflow (each login stores an interaction, a session, a grant and a code); this one
// holds up to MAX_ENTRIES and drops expired entries as it goes. Being process-wide, it also survives the
// provider being rebuilt when a test rotates the signing keys, so logins in flight are not lost.

const MAX_ENTRIES = 200000;
const SWEEP_INTERVAL_MS = 10000;

// key -> {payload, expiresAt (ms since the epoch, or Infinity)}; Map keeps insertion order, the
// oldest first, which is what is dropped when full.
const storage = new Map();

// Models whose entries belong to a grant and go when it is revoked.
const GRANTABLE = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
]);

function get(key) {
  const entry = storage.get(key);
  if (entry === undefined) {
    return undefined;
  }
  if (entry.expiresAt <= Date.now()) {
    storage.delete(key);
    return undefined;
  }
  return entry.payload;
}

function set(key, payload, expiresInS) {
  storage.delete(key);
  storage.set(key, { payload, expiresAt: expiresInS ? Date.now() + expiresInS * 1000 : Infinity });
  while (storage.size > MAX_ENTRIES) {
    storage.delete(storage.keys().next().value);
  }
}

function sweep() {
  const now = Date.now();
  for (const [key, entry] of storage) {
    if (entry.expiresAt <= now) {
      storage.delete(key);
    }
  }
}
setInterval(sweep, SWEEP_INTERVAL_MS).unref();

class MapAdapter {
  // model: the oidc-provider model name ("Session", "AuthorizationCode", ...).
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    if (this.model === 'Session') {
      set(`sessionUid:${payload.uid}`, id, expiresIn);
    }
    if (GRANTABLE.has(this.model) && payload.grantId) {
      // The grant's list of members lives as long as its longest-lived member.
      const grantKey = `grant:${payload.grantId}`;
      const entry = storage.get(grantKey);
      const members = get(grantKey) || [];
      members.push(key);
      const remainingS = entry && members.length > 1 ? (entry.expiresAt - Date.now()) / 1000 : 0;
      set(grantKey, members, expiresIn && Math.max(expiresIn, remainingS));
    }
    if (payload.userCode) {
      set(`userCode:${payload.userCode}`, id, expiresIn);
    }
    set(key, payload, expiresIn);
  }

  async find(id) {
    return get(this.key(id));
  }

  async findByUid(uid) {
    const id = get(`sessionUid:${uid}`);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = get(`userCode:${userCode}`);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const payload = get(this.key(id));
    if (payload) {
      payload.consumed = Math.floor(Date.now() / 1000);
    }
  }

  async destroy(id) {
    storage.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    const grantKey = `grant:${grantId}`;
    for (const key of get(grantKey) || []) {
      storage.delete(key);
    }
    storage.delete(grantKey);
  }
}

module.exports = { MapAdapter };
