#include "ssogate/links.h"

#include "ssogate/common.h"
#include "ssogate/session.h"
#include "ssogate/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID_SIZE (SG_LINKS_ID_MAX + 1)

/*
 * A user_by_idp value is "psa_tenant NUL psa_user", followed by the facts
 * suffix when facts are kept: NUL, FACTS_VERSION, a byte of FACT_* flags.
 * No id holds a NUL, so a value without the suffix (every link written
 * before facts were kept) still reads, as a link without facts. The reverse
 * does not hold: a build from before facts were kept reads a value with the
 * suffix as malformed.
 */
#define FACTS_VERSION    1
#define FACTS_SUFFIX_LEN 3
#define FACT_STAFF       0x1u
#define FACT_ACTIVE      0x2u

_Static_assert(2 * SG_LINKS_ID_MAX + 1 <= SG_STORE_KEY_MAX, "a user key must fit a store key");

/* A user on one side: tenant and user (PSA) or tenant and sub (IdP), NUL-terminated copies. */
struct id_pair {
    char tenant[ID_SIZE];
    char user[ID_SIZE];
};

/* A key or value being built: one id, or two ids joined by a NUL (a
 * user_by_idp value: and the facts suffix). */
struct key_buf {
    char data[SG_STORE_KEY_MAX + FACTS_SUFFIX_LEN];
    size_t len;
};

static bool id_bytes_valid(const char *p, size_t len)
{
    if (len == 0 || len > SG_LINKS_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

bool sg_links_id_valid(const char *id)
{
    return id != NULL && id_bytes_valid(id, strnlen(id, SG_LINKS_ID_MAX + 1));
}

static void single_key(const char *id, struct key_buf *k)
{
    size_t len = strlen(id);
    memcpy(k->data, id, len);
    k->len = len;
}

static void pair_key(const char *a, const char *b, struct key_buf *k)
{
    size_t alen = strlen(a);
    size_t blen = strlen(b);
    memcpy(k->data, a, alen);
    k->data[alen] = '\0';
    memcpy(k->data + alen + 1, b, blen);
    k->len = alen + 1 + blen;
}

/* Appends the facts suffix to a user_by_idp value built by pair_key. */
static void facts_append(const struct sg_links_user_facts *facts, struct key_buf *k)
{
    k->data[k->len] = '\0';
    k->data[k->len + 1] = FACTS_VERSION;
    k->data[k->len + 2] =
        (char)((facts->staff ? FACT_STAFF : 0) | (facts->active ? FACT_ACTIVE : 0));
    k->len += FACTS_SUFFIX_LEN;
}

/* Reads the facts suffix (suffix, len bytes after the value's second NUL).
 * Returns 0 or SG_ESTORE for an unknown version or flag. */
static int facts_decode(const unsigned char *suffix, size_t len, struct sg_links_user_facts *out)
{
    if (len != FACTS_SUFFIX_LEN - 1 || suffix[0] != FACTS_VERSION ||
        (suffix[1] & ~(FACT_STAFF | FACT_ACTIVE)) != 0)
        return SG_ESTORE;
    *out = (struct sg_links_user_facts){.known = true,
                                        .staff = (suffix[1] & FACT_STAFF) != 0,
                                        .active = (suffix[1] & FACT_ACTIVE) != 0};
    return 0;
}

/* Copies a stored single id into out. Returns 0 or SG_ESTORE when it is malformed. */
static int single_decode(const void *data, size_t len, char out[ID_SIZE])
{
    if (!id_bytes_valid(data, len))
        return SG_ESTORE;
    memcpy(out, data, len);
    out[len] = '\0';
    return 0;
}

/*
 * Copies a stored pair "a NUL b" into out. With facts not NULL the pair may
 * be followed by the facts suffix (a user_by_idp value): *facts gets them, or
 * reads as a link without facts when there is none. Returns 0 or SG_ESTORE
 * when it is malformed.
 */
static int pair_decode_facts(const void *data, size_t len, struct id_pair *out,
                             struct sg_links_user_facts *facts)
{
    const char *p = data;
    const char *sep = memchr(p, '\0', len);
    if (sep == NULL)
        return SG_ESTORE;
    size_t alen = (size_t)(sep - p);
    size_t blen = len - alen - 1;
    const char *end = facts != NULL ? memchr(sep + 1, '\0', blen) : NULL;
    if (facts != NULL)
        *facts = (struct sg_links_user_facts){.known = false, .staff = true, .active = true};
    if (end != NULL) {
        size_t suffix_len = blen - (size_t)(end - (sep + 1)) - 1;
        blen = (size_t)(end - (sep + 1));
        if (facts_decode((const unsigned char *)end + 1, suffix_len, facts) != 0)
            return SG_ESTORE;
    }
    if (!id_bytes_valid(p, alen) || !id_bytes_valid(sep + 1, blen))
        return SG_ESTORE;
    memcpy(out->tenant, p, alen);
    out->tenant[alen] = '\0';
    memcpy(out->user, sep + 1, blen);
    out->user[blen] = '\0';
    return 0;
}

/* pair_decode_facts for a value that never carries facts. */
static int pair_decode(const void *data, size_t len, struct id_pair *out)
{
    return pair_decode_facts(data, len, out, NULL);
}

/* Looks up a tenant link in db. Returns 0 (out filled), SG_ENOENT or SG_ESTORE. */
static int tenant_lookup(struct sg_store_txn *txn, enum sg_store_db db, const char *id,
                         char out[ID_SIZE])
{
    struct key_buf k;
    single_key(id, &k);
    const void *val;
    size_t len;
    int err = sg_store_get(txn, db, k.data, k.len, &val, &len);
    if (err != 0)
        return err;
    return single_decode(val, len, out);
}

/* Looks up the user_by_idp entry of an IdP user: the PSA user into psa and
 * the kept facts. Returns 0, SG_ENOENT or SG_ESTORE. */
static int user_facts_lookup(struct sg_store_txn *txn, const char *idp_tenant, const char *idp_sub,
                             struct id_pair *psa, struct sg_links_user_facts *facts)
{
    struct key_buf k;
    pair_key(idp_tenant, idp_sub, &k);
    const void *val;
    size_t len;
    int err = sg_store_get(txn, SG_STORE_DB_USER_BY_IDP, k.data, k.len, &val, &len);
    if (err != 0)
        return err;
    return pair_decode_facts(val, len, psa, facts);
}

/* Looks up a user link in db. Returns 0 (out filled), SG_ENOENT or SG_ESTORE. */
static int user_lookup(struct sg_store_txn *txn, enum sg_store_db db, const char *tenant,
                       const char *user, struct id_pair *out)
{
    struct sg_links_user_facts facts;
    if (db == SG_STORE_DB_USER_BY_IDP)
        return user_facts_lookup(txn, tenant, user, out, &facts);
    struct key_buf k;
    pair_key(tenant, user, &k);
    const void *val;
    size_t len;
    int err = sg_store_get(txn, db, k.data, k.len, &val, &len);
    if (err != 0)
        return err;
    return pair_decode(val, len, out);
}

/* Writes the user_by_idp entry of idp (a pair key) naming the PSA user
 * (psa_tenant, psa_user), with facts when not NULL and known; flags as
 * sg_store_put. */
static int user_by_idp_put(struct sg_store_txn *txn, const struct key_buf *idp,
                           const char *psa_tenant, const char *psa_user,
                           const struct sg_links_user_facts *facts, unsigned flags)
{
    struct key_buf val;
    pair_key(psa_tenant, psa_user, &val);
    if (facts != NULL && facts->known)
        facts_append(facts, &val);
    return sg_store_put(txn, SG_STORE_DB_USER_BY_IDP, idp->data, idp->len, val.data, val.len,
                        flags);
}

static int put_entry(struct sg_store_txn *txn, enum sg_store_db db, const struct key_buf *key,
                     const struct key_buf *val)
{
    return sg_store_put(txn, db, key->data, key->len, val->data, val->len, SG_STORE_NOOVERWRITE);
}

static int del_entry(struct sg_store_txn *txn, enum sg_store_db db, const struct key_buf *key)
{
    return sg_store_delete(txn, db, key->data, key->len, NULL, 0);
}

static int tenant_put_txn(struct sg_store_txn *txn, const char *psa_tenant, const char *idp_tenant)
{
    if (!sg_links_id_valid(psa_tenant) || !sg_links_id_valid(idp_tenant))
        return SG_EINVAL;
    char linked[ID_SIZE];
    int err = tenant_lookup(txn, SG_STORE_DB_TENANT_BY_PSA, psa_tenant, linked);
    if (err == 0)
        return strcmp(linked, idp_tenant) == 0 ? 0 : SG_EEXIST;
    if (err != SG_ENOENT)
        return err;
    err = tenant_lookup(txn, SG_STORE_DB_TENANT_BY_IDP, idp_tenant, linked);
    if (err == 0)
        return SG_EEXIST;
    if (err != SG_ENOENT)
        return err;
    struct key_buf psa;
    struct key_buf idp;
    single_key(psa_tenant, &psa);
    single_key(idp_tenant, &idp);
    err = put_entry(txn, SG_STORE_DB_TENANT_BY_PSA, &psa, &idp);
    if (err == 0)
        err = put_entry(txn, SG_STORE_DB_TENANT_BY_IDP, &idp, &psa);
    return err;
}

static int user_put_txn(struct sg_store_txn *txn, const char *psa_tenant, const char *psa_user,
                        const char *idp_tenant, const char *idp_sub,
                        const struct sg_links_user_facts *facts)
{
    if (!sg_links_id_valid(psa_tenant) || !sg_links_id_valid(psa_user) ||
        !sg_links_id_valid(idp_tenant) || !sg_links_id_valid(idp_sub))
        return SG_EINVAL;
    char linked_tenant[ID_SIZE];
    int err = tenant_lookup(txn, SG_STORE_DB_TENANT_BY_PSA, psa_tenant, linked_tenant);
    if (err != 0)
        return err;
    if (strcmp(linked_tenant, idp_tenant) != 0)
        return SG_EINVAL;
    struct key_buf psa;
    struct key_buf idp;
    pair_key(psa_tenant, psa_user, &psa);
    pair_key(idp_tenant, idp_sub, &idp);
    struct id_pair linked;
    err = user_lookup(txn, SG_STORE_DB_USER_BY_PSA, psa_tenant, psa_user, &linked);
    if (err == 0) {
        if (strcmp(linked.tenant, idp_tenant) != 0 || strcmp(linked.user, idp_sub) != 0)
            return SG_EEXIST;
        return facts != NULL && facts->known
                   ? user_by_idp_put(txn, &idp, psa_tenant, psa_user, facts, 0)
                   : 0;
    }
    if (err != SG_ENOENT)
        return err;
    err = user_lookup(txn, SG_STORE_DB_USER_BY_IDP, idp_tenant, idp_sub, &linked);
    if (err == 0)
        return SG_EEXIST;
    if (err != SG_ENOENT)
        return err;
    err = put_entry(txn, SG_STORE_DB_USER_BY_PSA, &psa, &idp);
    if (err == 0)
        err = user_by_idp_put(txn, &idp, psa_tenant, psa_user, facts, SG_STORE_NOOVERWRITE);
    return err;
}

/* Removes the user link whose two sides are psa and idp, and the PSA user's sessions. */
static int user_unlink_txn(struct sg_store_txn *txn, const struct id_pair *psa,
                           const struct id_pair *idp)
{
    struct key_buf k;
    pair_key(psa->tenant, psa->user, &k);
    int err = del_entry(txn, SG_STORE_DB_USER_BY_PSA, &k);
    if (err != 0)
        return err;
    pair_key(idp->tenant, idp->user, &k);
    err = del_entry(txn, SG_STORE_DB_USER_BY_IDP, &k);
    /* A missing reverse entry is healed by the removal, not a reason to refuse it. */
    if (err != 0 && err != SG_ENOENT)
        return err;
    char *owner = NULL;
    err = sg_session_owner_psa(psa->tenant, psa->user, &owner);
    if (err == 0)
        err = sg_session_delete_by_owner_txn(txn, owner, NULL);
    free(owner);
    return err == 0 ? 0 : SG_ESTORE;
}

/* The user links of one tenant, collected by collect_user. */
struct user_list {
    struct id_pair *pairs; /* (PSA user, IdP user) pairs */
    size_t count;
    size_t cap;
};

static int collect_user(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct user_list *list = arg;
    if (list->count == list->cap) {
        list->cap = list->cap ? 2 * list->cap : 4;
        list->pairs = sg_realloc(list->pairs, 2 * list->cap * sizeof(*list->pairs));
    }
    struct id_pair *pair = list->pairs + 2 * list->count;
    if (pair_decode(key, klen, &pair[0]) != 0 || pair_decode(val, vlen, &pair[1]) != 0)
        return SG_ESTORE;
    list->count++;
    return 0;
}

/*
 * Collects the user links of psa_tenant: user_by_psa keys "psa_tenant NUL
 * user" are contiguous, so one prefix scan finds them. Hands back a new array
 * of (PSA user, IdP user) pairs in *out (caller frees) and its length.
 */
static int tenant_users(struct sg_store_txn *txn, const char *psa_tenant, struct id_pair **out,
                        size_t *count)
{
    *out = NULL;
    *count = 0;
    size_t prefix_len = strlen(psa_tenant) + 1;
    struct user_list list = {NULL, 0, 0};
    int err = sg_store_scan(txn, SG_STORE_DB_USER_BY_PSA, psa_tenant, prefix_len, prefix_len,
                            collect_user, &list);
    if (err != 0) {
        SG_FREE(list.pairs);
        return err;
    }
    *out = list.pairs;
    *count = list.count;
    return 0;
}

static int tenant_delete_txn(struct sg_store_txn *txn, const char *psa_tenant, size_t *users)
{
    char idp_tenant[ID_SIZE];
    int err = tenant_lookup(txn, SG_STORE_DB_TENANT_BY_PSA, psa_tenant, idp_tenant);
    if (err != 0)
        return err;
    struct id_pair *pairs = NULL;
    size_t count = 0;
    err = tenant_users(txn, psa_tenant, &pairs, &count);
    for (size_t i = 0; err == 0 && i < count; i++)
        err = user_unlink_txn(txn, &pairs[2 * i], &pairs[2 * i + 1]);
    SG_FREE(pairs);
    if (err != 0)
        return err;
    struct key_buf k;
    single_key(psa_tenant, &k);
    err = del_entry(txn, SG_STORE_DB_TENANT_BY_PSA, &k);
    if (err != 0)
        return err;
    single_key(idp_tenant, &k);
    err = del_entry(txn, SG_STORE_DB_TENANT_BY_IDP, &k);
    if (err != 0 && err != SG_ENOENT)
        return err;
    *users = count;
    return 0;
}

/* Finishes a link change: commits durably when err is 0, aborts otherwise. */
static int finish(struct sg_store_txn *txn, int err)
{
    if (err != 0) {
        sg_store_txn_abort(txn);
        return err;
    }
    return sg_store_txn_commit(txn, SG_STORE_DURABLE);
}

int sg_links_tenant_put(struct sg_store *store, const char *psa_tenant, const char *idp_tenant)
{
    if (!sg_links_id_valid(psa_tenant) || !sg_links_id_valid(idp_tenant))
        return SG_EINVAL;
    struct sg_store_txn txn;
    int err = sg_store_txn_begin(store, true, &txn);
    if (err != 0)
        return err;
    return finish(&txn, tenant_put_txn(&txn, psa_tenant, idp_tenant));
}

/* Reads a tenant link from db in a read transaction; see sg_links_tenant_get_by_psa. */
static int tenant_get(struct sg_store *store, enum sg_store_db db, const char *id, char **out)
{
    if (out != NULL)
        *out = NULL;
    if (!sg_links_id_valid(id))
        return SG_EINVAL;
    struct sg_store_txn txn;
    int err = sg_store_txn_begin(store, false, &txn);
    if (err != 0)
        return err;
    char linked[ID_SIZE];
    err = tenant_lookup(&txn, db, id, linked);
    sg_store_txn_abort(&txn);
    if (err == 0 && out != NULL)
        *out = sg_strdup(linked);
    return err;
}

int sg_links_tenant_get_by_psa(struct sg_store *store, const char *psa_tenant, char **idp_tenant)
{
    return tenant_get(store, SG_STORE_DB_TENANT_BY_PSA, psa_tenant, idp_tenant);
}

int sg_links_tenant_get_by_idp(struct sg_store *store, const char *idp_tenant, char **psa_tenant)
{
    return tenant_get(store, SG_STORE_DB_TENANT_BY_IDP, idp_tenant, psa_tenant);
}

int sg_links_tenant_delete(struct sg_store *store, const char *psa_tenant, size_t *users)
{
    size_t removed = 0;
    if (users != NULL)
        *users = 0;
    if (!sg_links_id_valid(psa_tenant))
        return SG_EINVAL;
    struct sg_store_txn txn;
    int err = sg_store_txn_begin(store, true, &txn);
    if (err != 0)
        return err;
    err = finish(&txn, tenant_delete_txn(&txn, psa_tenant, &removed));
    if (err == 0 && users != NULL)
        *users = removed;
    return err;
}

int sg_links_user_put(struct sg_store *store, const char *psa_tenant, const char *psa_user,
                      const char *idp_tenant, const char *idp_sub,
                      const struct sg_links_user_facts *facts)
{
    struct sg_store_txn txn;
    int err = sg_store_txn_begin(store, true, &txn);
    if (err != 0)
        return err;
    return finish(&txn, user_put_txn(&txn, psa_tenant, psa_user, idp_tenant, idp_sub, facts));
}

int sg_links_user_facts_get(struct sg_store *store, const char *idp_tenant, const char *idp_sub,
                            struct sg_links_user_facts *facts)
{
    if (!sg_links_id_valid(idp_tenant) || !sg_links_id_valid(idp_sub))
        return SG_EINVAL;
    struct sg_store_txn txn;
    int err = sg_store_txn_begin(store, false, &txn);
    if (err != 0)
        return err;
    struct id_pair psa;
    err = user_facts_lookup(&txn, idp_tenant, idp_sub, &psa, facts);
    sg_store_txn_abort(&txn);
    return err;
}

int sg_links_user_facts_set(struct sg_store *store, const char *psa_tenant, const char *psa_user,
                            bool staff, bool active)
{
    if (!sg_links_id_valid(psa_tenant) || !sg_links_id_valid(psa_user))
        return SG_EINVAL;
    struct sg_store_txn txn;
    int err = sg_store_txn_begin(store, true, &txn);
    if (err != 0)
        return err;
    struct id_pair idp;
    struct id_pair psa;
    struct sg_links_user_facts kept;
    err = user_lookup(&txn, SG_STORE_DB_USER_BY_PSA, psa_tenant, psa_user, &idp);
    if (err == 0)
        err = user_facts_lookup(&txn, idp.tenant, idp.user, &psa, &kept);
    /* Both directions must name each other, or this is not the link's entry. */
    if (err == 0 && (strcmp(psa.tenant, psa_tenant) != 0 || strcmp(psa.user, psa_user) != 0))
        err = SG_ESTORE;
    if (err != 0 || (kept.known && kept.staff == staff && kept.active == active)) {
        sg_store_txn_abort(&txn);
        return err;
    }
    struct key_buf k;
    pair_key(idp.tenant, idp.user, &k);
    struct sg_links_user_facts facts = {.known = true, .staff = staff, .active = active};
    return finish(&txn, user_by_idp_put(&txn, &k, psa_tenant, psa_user, &facts, 0));
}

/* Reads a user link from db in a read transaction; see sg_links_user_get_by_psa. */
static int user_get(struct sg_store *store, enum sg_store_db db, const char *tenant,
                    const char *user, char **out_tenant, char **out_user)
{
    if (out_tenant != NULL)
        *out_tenant = NULL;
    if (out_user != NULL)
        *out_user = NULL;
    if (!sg_links_id_valid(tenant) || !sg_links_id_valid(user))
        return SG_EINVAL;
    struct sg_store_txn txn;
    int err = sg_store_txn_begin(store, false, &txn);
    if (err != 0)
        return err;
    struct id_pair linked;
    err = user_lookup(&txn, db, tenant, user, &linked);
    sg_store_txn_abort(&txn);
    if (err != 0)
        return err;
    if (out_tenant != NULL)
        *out_tenant = sg_strdup(linked.tenant);
    if (out_user != NULL)
        *out_user = sg_strdup(linked.user);
    return 0;
}

int sg_links_user_get_by_psa(struct sg_store *store, const char *psa_tenant, const char *psa_user,
                             char **idp_tenant, char **idp_sub)
{
    return user_get(store, SG_STORE_DB_USER_BY_PSA, psa_tenant, psa_user, idp_tenant, idp_sub);
}

int sg_links_user_get_by_idp(struct sg_store *store, const char *idp_tenant, const char *idp_sub,
                             char **psa_tenant, char **psa_user)
{
    return user_get(store, SG_STORE_DB_USER_BY_IDP, idp_tenant, idp_sub, psa_tenant, psa_user);
}

int sg_links_user_is_txn(struct sg_store_txn *txn, const char *idp_tenant, const char *idp_sub,
                         const char *psa_tenant, const char *psa_user)
{
    if (!sg_links_id_valid(idp_tenant) || !sg_links_id_valid(idp_sub))
        return SG_EINVAL;
    struct id_pair linked;
    int err = user_lookup(txn, SG_STORE_DB_USER_BY_IDP, idp_tenant, idp_sub, &linked);
    if (err != 0)
        return err;
    bool same = strcmp(linked.tenant, psa_tenant) == 0 && strcmp(linked.user, psa_user) == 0;
    return same ? 0 : SG_ENOENT;
}

int sg_links_user_delete(struct sg_store *store, const char *psa_tenant, const char *psa_user)
{
    if (!sg_links_id_valid(psa_tenant) || !sg_links_id_valid(psa_user))
        return SG_EINVAL;
    struct sg_store_txn txn;
    int err = sg_store_txn_begin(store, true, &txn);
    if (err != 0)
        return err;
    struct id_pair idp;
    err = user_lookup(&txn, SG_STORE_DB_USER_BY_PSA, psa_tenant, psa_user, &idp);
    if (err == 0) {
        struct id_pair psa;
        strcpy(psa.tenant, psa_tenant);
        strcpy(psa.user, psa_user);
        err = user_unlink_txn(&txn, &psa, &idp);
    }
    return finish(&txn, err);
}

/* One walk over a link table: the caller's function and what it last returned. */
struct walk {
    enum sg_link_kind kind;
    sg_links_foreach_fn fn;
    void *arg;
    int result;
};

static int walk_entry(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct walk *w = arg;
    struct id_pair psa;
    struct id_pair idp;
    struct sg_link link = {.kind = w->kind};
    if (w->kind == SG_LINK_TENANT) {
        if (single_decode(key, klen, psa.tenant) != 0 || single_decode(val, vlen, idp.tenant) != 0)
            return SG_ESTORE;
    } else {
        if (pair_decode(key, klen, &psa) != 0 || pair_decode(val, vlen, &idp) != 0)
            return SG_ESTORE;
        link.psa_user = psa.user;
        link.idp_sub = idp.user;
    }
    link.psa_tenant = psa.tenant;
    link.idp_tenant = idp.tenant;
    w->result = w->fn(&link, w->arg);
    return w->result != 0 ? SG_STORE_STOP : 0;
}

/* Walks one link table, calling fn for each entry. */
static int walk(struct sg_store_txn *txn, enum sg_link_kind kind, sg_links_foreach_fn fn, void *arg)
{
    enum sg_store_db db =
        kind == SG_LINK_TENANT ? SG_STORE_DB_TENANT_BY_PSA : SG_STORE_DB_USER_BY_PSA;
    struct walk w = {.kind = kind, .fn = fn, .arg = arg, .result = 0};
    int err = sg_store_scan(txn, db, NULL, 0, 0, walk_entry, &w);
    return err != 0 ? err : w.result;
}

int sg_links_foreach(struct sg_store *store, sg_links_foreach_fn fn, void *arg)
{
    struct sg_store_txn txn;
    int err = sg_store_txn_begin(store, false, &txn);
    if (err != 0)
        return err;
    err = walk(&txn, SG_LINK_TENANT, fn, arg);
    if (err == 0)
        err = walk(&txn, SG_LINK_USER, fn, arg);
    sg_store_txn_abort(&txn);
    return err;
}

static int import_one(struct sg_store_txn *txn, const struct sg_link *link)
{
    if (link->kind == SG_LINK_TENANT)
        return tenant_put_txn(txn, link->psa_tenant, link->idp_tenant);
    return user_put_txn(txn, link->psa_tenant, link->psa_user, link->idp_tenant, link->idp_sub,
                        link->facts);
}

/* Adds links in txn, the tenant links first so that a user link may come
 * before its tenant's in the list. *failed (may be NULL) gets the index of
 * the link that failed. */
static int import_txn(struct sg_store_txn *txn, const struct sg_link *links, size_t count,
                      size_t *failed)
{
    static const enum sg_link_kind passes[] = {SG_LINK_TENANT, SG_LINK_USER};
    int err = 0;
    for (size_t p = 0; err == 0 && p < SG_ARRAY_LEN(passes); p++) {
        for (size_t i = 0; err == 0 && i < count; i++) {
            if (links[i].kind != passes[p])
                continue;
            err = import_one(txn, &links[i]);
            if (err != 0 && failed != NULL)
                *failed = i;
        }
    }
    return err;
}

int sg_links_import(struct sg_store *store, const struct sg_link *links, size_t count,
                    size_t *failed)
{
    if (failed != NULL)
        *failed = 0;
    for (size_t i = 0; i < count; i++) {
        if (links[i].kind != SG_LINK_TENANT && links[i].kind != SG_LINK_USER) {
            if (failed != NULL)
                *failed = i;
            return SG_EINVAL;
        }
    }
    struct sg_store_txn txn;
    int err = sg_store_txn_begin(store, true, &txn);
    if (err != 0)
        return err;
    return finish(&txn, import_txn(&txn, links, count, failed));
}

/* True when links holds the user link psa <-> idp. */
static bool holds_user(const struct sg_link *links, size_t count, const struct id_pair *psa,
                       const struct id_pair *idp)
{
    for (size_t i = 0; i < count; i++) {
        const struct sg_link *l = &links[i];
        if (l->kind == SG_LINK_USER && strcmp(l->psa_tenant, psa->tenant) == 0 &&
            strcmp(l->psa_user, psa->user) == 0 && strcmp(l->idp_tenant, idp->tenant) == 0 &&
            strcmp(l->idp_sub, idp->user) == 0)
            return true;
    }
    return false;
}

/*
 * Removes what this host's copy holds of psa_tenant and links does not: the
 * whole tenant when its link went or changed, else the user links that went
 * or changed. Links that stay are left alone, and so are their users'
 * sessions.
 */
static int remove_missing(struct sg_store_txn *txn, const char *psa_tenant,
                          const struct sg_link *links, size_t count)
{
    char linked[ID_SIZE];
    int err = tenant_lookup(txn, SG_STORE_DB_TENANT_BY_PSA, psa_tenant, linked);
    if (err == SG_ENOENT)
        return 0;
    if (err != 0)
        return err;
    bool same = false;
    for (size_t i = 0; i < count; i++) {
        if (links[i].kind == SG_LINK_TENANT && strcmp(links[i].psa_tenant, psa_tenant) == 0)
            same = strcmp(links[i].idp_tenant, linked) == 0;
    }
    if (!same) {
        size_t users;
        return tenant_delete_txn(txn, psa_tenant, &users);
    }
    struct id_pair *pairs = NULL;
    size_t users = 0;
    err = tenant_users(txn, psa_tenant, &pairs, &users);
    for (size_t i = 0; err == 0 && i < users; i++) {
        if (!holds_user(links, count, &pairs[2 * i], &pairs[2 * i + 1]))
            err = user_unlink_txn(txn, &pairs[2 * i], &pairs[2 * i + 1]);
    }
    SG_FREE(pairs);
    return err;
}

int sg_links_replace_tenant(struct sg_store *store, const char *psa_tenant,
                            const struct sg_link *links, size_t count)
{
    struct sg_store_txn txn;
    int err = sg_store_txn_begin(store, true, &txn);
    if (err != 0)
        return err;
    err = remove_missing(&txn, psa_tenant, links, count);
    if (err == 0)
        err = import_txn(&txn, links, count, NULL);
    return finish(&txn, err);
}

/* The PSA tenants of every tenant link, collected by collect_tenant. */
struct tenant_list {
    char (*ids)[ID_SIZE];
    size_t count;
    size_t cap;
};

static int collect_tenant(const struct sg_link *link, void *arg)
{
    struct tenant_list *list = arg;
    if (list->count == list->cap) {
        list->cap = list->cap ? 2 * list->cap : 64;
        list->ids = sg_realloc(list->ids, list->cap * sizeof(*list->ids));
    }
    snprintf(list->ids[list->count++], ID_SIZE, "%s", link->psa_tenant);
    return 0;
}

int sg_links_replace_all(struct sg_store *store, const struct sg_link *links, size_t count)
{
    struct sg_store_txn txn;
    int err = sg_store_txn_begin(store, true, &txn);
    if (err != 0)
        return err;
    struct tenant_list list = {0};
    err = walk(&txn, SG_LINK_TENANT, collect_tenant, &list);
    for (size_t i = 0; err == 0 && i < list.count; i++) {
        size_t users;
        err = tenant_delete_txn(&txn, list.ids[i], &users);
    }
    free(list.ids);
    if (err == 0)
        err = import_txn(&txn, links, count, NULL);
    return finish(&txn, err);
}
