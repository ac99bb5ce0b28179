#include "ssogate/links.h"

#include "ssogate/common.h"
#include "ssogate/session.h"

#include <stdlib.h>
#include <string.h>

#define ID_SIZE (SG_LINKS_ID_MAX + 1)

_Static_assert(2 * SG_LINKS_ID_MAX + 1 <= SG_STORE_KEY_MAX, "a user key must fit an LMDB key");

/* A user on one side: tenant and user (PSA) or tenant and sub (IdP), NUL-terminated copies. */
struct id_pair {
    char tenant[ID_SIZE];
    char user[ID_SIZE];
};

/* A key or value being built: one id, or two ids joined by a NUL. */
struct key_buf {
    char data[SG_STORE_KEY_MAX];
    MDB_val val;
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
    k->val.mv_size = len;
    k->val.mv_data = k->data;
}

static void pair_key(const char *a, const char *b, struct key_buf *k)
{
    size_t alen = strlen(a);
    size_t blen = strlen(b);
    memcpy(k->data, a, alen);
    k->data[alen] = '\0';
    memcpy(k->data + alen + 1, b, blen);
    k->val.mv_size = alen + 1 + blen;
    k->val.mv_data = k->data;
}

/* Copies a stored single id into out. Returns 0 or SG_ESTORE when it is malformed. */
static int single_decode(const MDB_val *v, char out[ID_SIZE])
{
    if (!id_bytes_valid(v->mv_data, v->mv_size))
        return SG_ESTORE;
    memcpy(out, v->mv_data, v->mv_size);
    out[v->mv_size] = '\0';
    return 0;
}

/* Copies a stored pair "a NUL b" into out. Returns 0 or SG_ESTORE when it is malformed. */
static int pair_decode(const MDB_val *v, struct id_pair *out)
{
    const char *p = v->mv_data;
    const char *sep = memchr(p, '\0', v->mv_size);
    if (sep == NULL)
        return SG_ESTORE;
    size_t alen = (size_t)(sep - p);
    size_t blen = v->mv_size - alen - 1;
    if (!id_bytes_valid(p, alen) || !id_bytes_valid(sep + 1, blen))
        return SG_ESTORE;
    memcpy(out->tenant, p, alen);
    out->tenant[alen] = '\0';
    memcpy(out->user, sep + 1, blen);
    out->user[blen] = '\0';
    return 0;
}

/* Looks up a tenant link in db. Returns 0 (out filled), SG_ENOENT or SG_ESTORE. */
static int tenant_lookup(struct sg_store_txn *txn, enum sg_store_db db, const char *id,
                         char out[ID_SIZE])
{
    struct key_buf k;
    single_key(id, &k);
    MDB_val v;
    int rc = mdb_get(txn->txn, sg_store_dbi(txn->store, db), &k.val, &v);
    if (rc != 0)
        return sg_store_error(rc);
    return single_decode(&v, out);
}

/* Looks up a user link in db. Returns 0 (out filled), SG_ENOENT or SG_ESTORE. */
static int user_lookup(struct sg_store_txn *txn, enum sg_store_db db, const char *tenant,
                       const char *user, struct id_pair *out)
{
    struct key_buf k;
    pair_key(tenant, user, &k);
    MDB_val v;
    int rc = mdb_get(txn->txn, sg_store_dbi(txn->store, db), &k.val, &v);
    if (rc != 0)
        return sg_store_error(rc);
    return pair_decode(&v, out);
}

static int put_entry(struct sg_store_txn *txn, enum sg_store_db db, struct key_buf *key,
                     struct key_buf *val)
{
    int rc = mdb_put(txn->txn, sg_store_dbi(txn->store, db), &key->val, &val->val, MDB_NOOVERWRITE);
    return sg_store_error(rc);
}

static int del_entry(struct sg_store_txn *txn, enum sg_store_db db, struct key_buf *key)
{
    int rc = mdb_del(txn->txn, sg_store_dbi(txn->store, db), &key->val, NULL);
    return sg_store_error(rc);
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
                        const char *idp_tenant, const char *idp_sub)
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
    struct id_pair linked;
    err = user_lookup(txn, SG_STORE_DB_USER_BY_PSA, psa_tenant, psa_user, &linked);
    if (err == 0)
        return strcmp(linked.tenant, idp_tenant) == 0 && strcmp(linked.user, idp_sub) == 0
                   ? 0
                   : SG_EEXIST;
    if (err != SG_ENOENT)
        return err;
    err = user_lookup(txn, SG_STORE_DB_USER_BY_IDP, idp_tenant, idp_sub, &linked);
    if (err == 0)
        return SG_EEXIST;
    if (err != SG_ENOENT)
        return err;
    struct key_buf psa;
    struct key_buf idp;
    pair_key(psa_tenant, psa_user, &psa);
    pair_key(idp_tenant, idp_sub, &idp);
    err = put_entry(txn, SG_STORE_DB_USER_BY_PSA, &psa, &idp);
    if (err == 0)
        err = put_entry(txn, SG_STORE_DB_USER_BY_IDP, &idp, &psa);
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

/*
 * Collects the user links of psa_tenant: user_by_psa keys "psa_tenant NUL
 * user" are contiguous, so one range scan finds them. Hands back a new array
 * of (PSA user, IdP user) pairs in *out (caller frees) and its length.
 */
static int tenant_users(struct sg_store_txn *txn, const char *psa_tenant, struct id_pair **out,
                        size_t *count)
{
    *out = NULL;
    *count = 0;
    size_t cap = 0;
    size_t prefix_len = strlen(psa_tenant) + 1;
    struct key_buf prefix;
    memcpy(prefix.data, psa_tenant, prefix_len);
    prefix.val.mv_size = prefix_len;
    prefix.val.mv_data = prefix.data;

    MDB_cursor *cursor;
    int rc = mdb_cursor_open(txn->txn, sg_store_dbi(txn->store, SG_STORE_DB_USER_BY_PSA), &cursor);
    if (rc != 0)
        return SG_ESTORE;
    MDB_val k = prefix.val;
    MDB_val v;
    int err = 0;
    for (rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
        if (k.mv_size < prefix_len || memcmp(k.mv_data, prefix.data, prefix_len) != 0)
            break;
        if (*count == cap) {
            cap = cap ? 2 * cap : 4;
            *out = sg_realloc(*out, 2 * cap * sizeof(**out));
        }
        struct id_pair *pair = *out + 2 * *count;
        if (pair_decode(&k, &pair[0]) != 0 || pair_decode(&v, &pair[1]) != 0) {
            err = SG_ESTORE;
            break;
        }
        (*count)++;
    }
    mdb_cursor_close(cursor);
    if (err == 0 && rc != 0 && rc != MDB_NOTFOUND)
        err = SG_ESTORE;
    if (err != 0) {
        SG_FREE(*out);
        *count = 0;
    }
    return err;
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
    return sg_store_txn_commit(txn, true);
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
                      const char *idp_tenant, const char *idp_sub)
{
    struct sg_store_txn txn;
    int err = sg_store_txn_begin(store, true, &txn);
    if (err != 0)
        return err;
    return finish(&txn, user_put_txn(&txn, psa_tenant, psa_user, idp_tenant, idp_sub));
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

/* Walks one link database, calling fn for each entry. */
static int walk(struct sg_store_txn *txn, enum sg_link_kind kind, sg_links_foreach_fn fn, void *arg)
{
    enum sg_store_db db =
        kind == SG_LINK_TENANT ? SG_STORE_DB_TENANT_BY_PSA : SG_STORE_DB_USER_BY_PSA;
    MDB_cursor *cursor;
    int rc = mdb_cursor_open(txn->txn, sg_store_dbi(txn->store, db), &cursor);
    if (rc != 0)
        return SG_ESTORE;
    MDB_val k;
    MDB_val v;
    int result = 0;
    for (rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST); rc == 0 && result == 0;
         rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
        struct id_pair psa;
        struct id_pair idp;
        struct sg_link link = {.kind = kind};
        if (kind == SG_LINK_TENANT) {
            if (single_decode(&k, psa.tenant) != 0 || single_decode(&v, idp.tenant) != 0) {
                result = SG_ESTORE;
                break;
            }
        } else {
            if (pair_decode(&k, &psa) != 0 || pair_decode(&v, &idp) != 0) {
                result = SG_ESTORE;
                break;
            }
            link.psa_user = psa.user;
            link.idp_sub = idp.user;
        }
        link.psa_tenant = psa.tenant;
        link.idp_tenant = idp.tenant;
        result = fn(&link, arg);
    }
    mdb_cursor_close(cursor);
    if (result == 0 && rc != 0 && rc != MDB_NOTFOUND)
        result = SG_ESTORE;
    return result;
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
    return user_put_txn(txn, link->psa_tenant, link->psa_user, link->idp_tenant, link->idp_sub);
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
    /* Tenant links first, so that a user link may come before its tenant's in the list. */
    static const enum sg_link_kind passes[] = {SG_LINK_TENANT, SG_LINK_USER};
    for (size_t p = 0; err == 0 && p < SG_ARRAY_LEN(passes); p++) {
        for (size_t i = 0; err == 0 && i < count; i++) {
            if (links[i].kind != passes[p])
                continue;
            err = import_one(&txn, &links[i]);
            if (err != 0 && failed != NULL)
                *failed = i;
        }
    }
    return finish(&txn, err);
}
