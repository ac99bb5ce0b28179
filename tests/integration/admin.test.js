'use strict';
// Issue 4: ssogate-admin on the store of a running gateway (link mode, real IdP, stub PSA): list, stats,
// export, remove-tenant, remove-user, and import, with the export / import round trip giving the same
// links back (and the gateway honouring them at once), and a conflicting import refused whole with nothing
// changed.
//
//   SSOGATE_BUILD_DIR=build-link node --test tests/integration/admin.test.js

const assert = require('node:assert/strict');
const fs = require('node:fs');
const { sharedLinkEnv, textOf } = require('./lib/link-env');

const linkTest = sharedLinkEnv('admin', { tenants: ['ad1', 'ad2', 'ad3', 'ad4'] });

// A store export with its arrays in a stable order, for comparisons.
function sorted(store) {
  const key = (l) => JSON.stringify([l.psa_tenant, l.psa_user || '', l.idp_tenant, l.idp_sub || '']);
  const by = (a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0);
  return { tenant_links: [...store.tenant_links].sort(by), user_links: [...store.user_links].sort(by) };
}

linkTest('ssogate-admin: list, stats, export, remove, then import of the export gives the same links back', async (env) => {
  const ad1 = env.tenant('ad1');
  const ad2 = env.tenant('ad2');
  const admin1 = await env.linkTenant('ad1');
  const staff1 = await env.linkUser(ad1.staff, ad1.user);
  await env.linkTenant('ad2');
  await env.linkUser(ad2.staff, ad2.user);
  const staff2b = await env.linkUser(ad2.staff2, ad2.user2);

  const list = await env.admin(['list']);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /^tenant ad1 <-> itc-ad1$/m);
  assert.match(list.stdout, /^user +ad2\/ad2-staff2 <-> itc-ad2\/itc-ad2-user2$/m);
  const stats = await env.admin(['stats']);
  assert.equal(stats.code, 0, stats.stderr);
  assert.ok(stats.stdout.trim().length > 0, 'stats prints the counts');

  const exported = await env.exportLinks();
  assert.deepEqual(sorted(exported), {
    tenant_links: [
      { psa_tenant: 'ad1', idp_tenant: 'itc-ad1' },
      { psa_tenant: 'ad2', idp_tenant: 'itc-ad2' },
    ],
    user_links: [
      { psa_tenant: 'ad1', psa_user: 'ad1-staff', idp_tenant: 'itc-ad1', idp_sub: 'itc-ad1-user' },
      { psa_tenant: 'ad2', psa_user: 'ad2-staff', idp_tenant: 'itc-ad2', idp_sub: 'itc-ad2-user' },
      { psa_tenant: 'ad2', psa_user: 'ad2-staff2', idp_tenant: 'itc-ad2', idp_sub: 'itc-ad2-user2' },
    ],
  });
  const file = env.h.file('links-export.json');
  fs.writeFileSync(file, JSON.stringify(exported));

  const removeTenant = await env.admin(['remove-tenant', 'ad1']);
  assert.equal(removeTenant.code, 0, removeTenant.stderr);
  const removeUser = await env.admin(['remove-user', 'ad2', 'ad2-staff2']);
  assert.equal(removeUser.code, 0, removeUser.stderr);
  const emptied = await env.exportLinks();
  assert.equal(emptied.tenant_links.find((l) => l.psa_tenant === 'ad1'), undefined, 'ad1 unlinked');
  assert.deepEqual(emptied.user_links.map((l) => l.psa_user), ['ad2-staff'], 'only ad2-staff stays linked');
  assert.equal((await env.status(staff1.browser)).session, false, 'remove-tenant ended the SSO sessions of its users');
  assert.equal((await env.status(staff2b.browser)).session, false, 'remove-user ended the SSO session of the user');
  assert.match(textOf((await env.settings(admin1.browser)).body, 'tenant-state'), /\bOff\b/, 'the running gateway sees it');
  const missing = await env.admin(['remove-user', 'ad2', 'ad2-staff2']);
  assert.equal(missing.code, 1, 'removing a link that is not there fails');
  const removeRest = await env.admin(['remove-tenant', 'ad2']);
  assert.equal(removeRest.code, 0, removeRest.stderr);
  assert.deepEqual(await env.exportLinks(), { tenant_links: [], user_links: [] }, 'the store is empty');

  // The export, imported back, gives the same links.
  const imported = await env.admin(['import', file]);
  assert.equal(imported.code, 0, `import: ${imported.stderr}`);
  assert.match(imported.stdout, /2 tenant links and 3 user links/);
  assert.deepEqual(sorted(await env.exportLinks()), sorted(exported), 'the same links as exported');

  // The running gateway honours the imported links at once.
  assert.match(textOf((await env.settings(admin1.browser)).body, 'tenant-state'), /\bOn\b/);
  const login = await env.ssoLogin(ad1.user);
  assert.equal(new URL(login.url).pathname, '/', 'IT Complete login with an imported link');
  assert.equal(textOf(login.body, 'welcome'), 'Welcome, staff of ad1');
  assert.equal(textOf(login.body, 'auth-method'), 'IT Complete');
});

linkTest('ssogate-admin import: a conflicting import is refused whole, with nothing changed', async (env) => {
  await env.linkTenant('ad3');
  const ad3 = env.tenant('ad3');
  await env.linkUser(ad3.staff, ad3.user);
  const before = await env.exportLinks();

  const good = { psa_tenant: 'ad4', idp_tenant: 'itc-ad4' };
  const goodUser = { psa_tenant: 'ad4', psa_user: 'ad4-staff', idp_tenant: 'itc-ad4', idp_sub: 'itc-ad4-user' };
  const conflicts = [
    ['an IdP tenant linked to another PSA tenant', { tenant_links: [good, { psa_tenant: 'ad2', idp_tenant: 'itc-ad3' }] }],
    ['a PSA tenant linked to another IdP tenant', { tenant_links: [good, { psa_tenant: 'ad3', idp_tenant: 'itc-ad2' }] }],
    ['an IdP user linked to another PSA user', {
      tenant_links: [good],
      user_links: [goodUser, { psa_tenant: 'ad3', psa_user: 'ad3-staff2', idp_tenant: 'itc-ad3', idp_sub: 'itc-ad3-user' }],
    }],
    ['a PSA user linked to another IdP user', {
      tenant_links: [good],
      user_links: [goodUser, { psa_tenant: 'ad3', psa_user: 'ad3-staff', idp_tenant: 'itc-ad3', idp_sub: 'itc-ad3-user2' }],
    }],
    ['two entries of the file against each other', { tenant_links: [good, { psa_tenant: 'ad1', idp_tenant: 'itc-ad4' }] }],
  ];
  for (const [what, doc] of conflicts) {
    const file = env.h.file('conflict.json');
    fs.writeFileSync(file, JSON.stringify(doc));
    const res = await env.admin(['import', file]);
    assert.equal(res.code, 1, `${what}: import refused (exit 1); stdout ${res.stdout} stderr ${res.stderr}`);
    assert.match(res.stderr, /refused|conflict/i, `${what}: says why`);
    assert.deepEqual(sorted(await env.exportLinks()), sorted(before), `${what}: nothing changed, not even the good entries`);
  }
  for (const bad of ['{"tenant_links": [', '[]', '{"tenant_links": [{"psa_tenant": "ad4"}]}']) {
    const file = env.h.file('bad.json');
    fs.writeFileSync(file, bad);
    const res = await env.admin(['import', file]);
    assert.equal(res.code, 1, `malformed import ${bad}: refused`);
    assert.deepEqual(sorted(await env.exportLinks()), sorted(before), 'nothing changed');
  }
  const usage = await env.admin([]);
  assert.equal(usage.code, 2, 'no command: usage, exit 2');
});
