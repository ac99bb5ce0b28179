/*
 * The backend-neutral part of the store: the table list, argument checks
 * against the interface's limits, transaction bookkeeping and the schema
 * version, all on top of a struct sg_store_backend (store.h).
 */
#include "ssogate/store.h"

#include "ssogate/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCHEMA_KEY "schema_version"

struct sg_store {
    const struct sg_store_backend *backend;
    void *ctx;
};

static const struct {
    const char *name;
    bool multi;
} tables[SG_STORE_DB_COUNT] = {
    [SG_STORE_DB_META] = {"meta", false},
    [SG_STORE_DB_SESSIONS] = {"sessions", false},
    [SG_STORE_DB_SESSIONS_BY_OWNER] = {"sessions_by_owner", true},
    [SG_STORE_DB_TENANT_BY_PSA] = {"tenant_by_psa", false},
    [SG_STORE_DB_TENANT_BY_IDP] = {"tenant_by_idp", false},
    [SG_STORE_DB_USER_BY_PSA] = {"user_by_psa", false},
    [SG_STORE_DB_USER_BY_IDP] = {"user_by_idp", false},
    [SG_STORE_DB_JWKS] = {"jwks", false},
    [SG_STORE_DB_LOGINS] = {"logins", false},
    [SG_STORE_DB_LOGOUT_JTI] = {"logout_jti", false},
    [SG_STORE_DB_SESSION_ENDS] = {"session_ends", false},
};

const char *sg_store_db_name(enum sg_store_db db)
{
    if ((unsigned)db >= SG_STORE_DB_COUNT)
        return "unknown";
    return tables[db].name;
}

bool sg_store_db_multi(enum sg_store_db db)
{
    return (unsigned)db < SG_STORE_DB_COUNT && tables[db].multi;
}

/* Parses a stored schema version: decimal digits, no leading zero. Returns 0 or SG_ESTORE. */
static int parse_version(const unsigned char *p, size_t len, unsigned long *version)
{
    *version = 0;
    if (len == 0 || len > 9 || p[0] == '0')
        return SG_ESTORE;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return SG_ESTORE;
        *version = *version * 10 + (unsigned long)(p[i] - '0');
    }
    return 0;
}

/*
 * Reads the schema version, writing SG_STORE_SCHEMA_VERSION (durably) into a
 * new store. Refuses any other version.
 */
static int check_schema(struct sg_store *store, char *errbuf, size_t errlen)
{
    struct sg_store_txn txn;
    int err = sg_store_txn_begin(store, true, &txn);
    if (err != 0) {
        sg_errbuf(errbuf, errlen, "%s: cannot begin a transaction", store->backend->name);
        return SG_ESTORE;
    }
    const void *val;
    size_t len;
    err = sg_store_get(&txn, SG_STORE_DB_META, SCHEMA_KEY, strlen(SCHEMA_KEY), &val, &len);
    if (err == SG_ENOENT) {
        char text[16];
        int n = snprintf(text, sizeof(text), "%d", SG_STORE_SCHEMA_VERSION);
        err = sg_store_put(&txn, SG_STORE_DB_META, SCHEMA_KEY, strlen(SCHEMA_KEY), text, (size_t)n,
                           0);
        if (err != 0) {
            sg_store_txn_abort(&txn);
            sg_errbuf(errbuf, errlen, "writing schema version: %s", sg_strerror(err));
            return SG_ESTORE;
        }
        /* A new store is made durable at once so that its schema record is never lost. */
        err = sg_store_txn_commit(&txn, SG_STORE_DURABLE);
        if (err != 0) {
            sg_errbuf(errbuf, errlen, "committing schema version: %s", sg_strerror(err));
            return err == SG_EIO ? SG_EIO : SG_ESTORE;
        }
        return 0;
    }
    if (err != 0) {
        sg_store_txn_abort(&txn);
        sg_errbuf(errbuf, errlen, "reading schema version: %s", sg_strerror(err));
        return SG_ESTORE;
    }
    unsigned long version;
    err = parse_version(val, len, &version);
    sg_store_txn_abort(&txn);
    if (err != 0) {
        sg_errbuf(errbuf, errlen, "unreadable schema version in the store");
        return SG_ESTORE;
    }
    if (version != SG_STORE_SCHEMA_VERSION) {
        sg_errbuf(errbuf, errlen, "store schema version %lu is not supported (this build: %d)",
                  version, SG_STORE_SCHEMA_VERSION);
        return SG_ESTORE;
    }
    return 0;
}

int sg_store_open_with(const char *data_dir, const struct sg_store_options *opts,
                       struct sg_store **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    const struct sg_store_backend *backend =
        opts != NULL && opts->backend != NULL ? opts->backend : &sg_store_lmdb;
    struct sg_store *store = sg_calloc(1, sizeof(*store));
    store->backend = backend;
    int err = backend->open(data_dir, opts, &store->ctx, errbuf, errlen);
    if (err != 0) {
        free(store);
        return err;
    }
    err = check_schema(store, errbuf, errlen);
    if (err != 0) {
        sg_store_close(store);
        return err;
    }
    *out = store;
    return 0;
}

int sg_store_open(const char *data_dir, struct sg_store **out, char *errbuf, size_t errlen)
{
    return sg_store_open_with(data_dir, NULL, out, errbuf, errlen);
}

void sg_store_close(struct sg_store *store)
{
    if (store == NULL)
        return;
    store->backend->close(store->ctx);
    free(store);
}

int sg_store_sync(struct sg_store *store)
{
    return store->backend->sync(store->ctx);
}

int sg_store_backup(struct sg_store *store, const char *dir, char *errbuf, size_t errlen)
{
    if (store->backend->backup == NULL) {
        sg_errbuf(errbuf, errlen, "the %s store has no backup", store->backend->name);
        return SG_EINVAL;
    }
    return store->backend->backup(store->ctx, dir, errbuf, errlen);
}

int sg_store_other_users(struct sg_store *store, unsigned *count)
{
    *count = 0;
    return store->backend->other_users != NULL ? store->backend->other_users(store->ctx, count)
                                               : SG_EINVAL;
}

int sg_store_restore(struct sg_store *backup, const char *data_dir, char *errbuf, size_t errlen)
{
    if (backup->backend->restore == NULL) {
        sg_errbuf(errbuf, errlen, "the %s store has no restore", backup->backend->name);
        return SG_EINVAL;
    }
    return backup->backend->restore(backup->ctx, data_dir, errbuf, errlen);
}

int sg_store_stats(struct sg_store *store, struct sg_store_stats *out)
{
    memset(out, 0, sizeof(*out));
    int err = store->backend->stats(store->ctx, out);
    if (err != 0)
        memset(out, 0, sizeof(*out));
    return err;
}

int sg_store_txn_begin(struct sg_store *store, bool write, struct sg_store_txn *out)
{
    out->store = store;
    out->handle = NULL;
    out->write = write;
    int err = store->backend->begin(store->ctx, write, &out->handle);
    if (err != 0) {
        out->handle = NULL;
        return SG_ESTORE;
    }
    return 0;
}

int sg_store_txn_commit(struct sg_store_txn *txn, enum sg_store_durability durability)
{
    if (txn->handle == NULL)
        return SG_EINVAL;
    struct sg_store *store = txn->store;
    void *handle = txn->handle;
    txn->handle = NULL;
    return store->backend->commit(store->ctx, handle, txn->write, durability);
}

void sg_store_txn_abort(struct sg_store_txn *txn)
{
    if (txn->handle == NULL)
        return;
    struct sg_store *store = txn->store;
    void *handle = txn->handle;
    txn->handle = NULL;
    store->backend->abort(store->ctx, handle, txn->write);
}

/* Checks what every operation needs: an open transaction, a known table, a key within bounds. */
static int check_key(const struct sg_store_txn *txn, enum sg_store_db db, const void *key,
                     size_t klen)
{
    if (txn->handle == NULL || (unsigned)db >= SG_STORE_DB_COUNT || key == NULL || klen == 0)
        return SG_EINVAL;
    return klen > SG_STORE_KEY_MAX ? SG_ETOOBIG : 0;
}

/* check_key, and a write transaction. */
static int check_write(const struct sg_store_txn *txn, enum sg_store_db db, const void *key,
                       size_t klen)
{
    int err = check_key(txn, db, key, klen);
    if (err == 0 && !txn->write)
        return SG_EINVAL;
    return err;
}

/* A value fits db: SG_STORE_VALUE_MAX, or SG_STORE_KEY_MAX in a multi-valued table. */
static int check_value(enum sg_store_db db, const void *val, size_t vlen)
{
    if (val == NULL && vlen > 0)
        return SG_EINVAL;
    size_t max = tables[db].multi ? SG_STORE_KEY_MAX : SG_STORE_VALUE_MAX;
    return vlen > max ? SG_ETOOBIG : 0;
}

int sg_store_get(struct sg_store_txn *txn, enum sg_store_db db, const void *key, size_t klen,
                 const void **val, size_t *vlen)
{
    *val = NULL;
    *vlen = 0;
    int err = check_key(txn, db, key, klen);
    if (err != 0)
        return err;
    struct sg_store *store = txn->store;
    err = store->backend->get(store->ctx, txn->handle, db, key, klen, val, vlen);
    if (err != 0) {
        *val = NULL;
        *vlen = 0;
    }
    return err;
}

int sg_store_put(struct sg_store_txn *txn, enum sg_store_db db, const void *key, size_t klen,
                 const void *val, size_t vlen, unsigned flags)
{
    int err = check_write(txn, db, key, klen);
    if (err != 0)
        return err;
    if ((flags & ~SG_STORE_NOOVERWRITE) != 0)
        return SG_EINVAL;
    err = check_value(db, val, vlen);
    if (err != 0)
        return err;
    struct sg_store *store = txn->store;
    /* Backends may take the bytes from a non-NULL pointer even for an empty value. */
    return store->backend->put(store->ctx, txn->handle, db, key, klen, val != NULL ? val : "", vlen,
                               flags);
}

int sg_store_take(struct sg_store_txn *txn, enum sg_store_db db, const void *key, size_t klen,
                  void **val, size_t *vlen)
{
    *val = NULL;
    *vlen = 0;
    int err = check_write(txn, db, key, klen);
    if (err != 0)
        return err;
    struct sg_store *store = txn->store;
    err = store->backend->take(store->ctx, txn->handle, db, key, klen, val, vlen);
    if (err != 0) {
        *val = NULL;
        *vlen = 0;
    }
    return err;
}

int sg_store_delete(struct sg_store_txn *txn, enum sg_store_db db, const void *key, size_t klen,
                    const void *val, size_t vlen)
{
    int err = check_write(txn, db, key, klen);
    if (err != 0)
        return err;
    if (val != NULL) {
        if (!tables[db].multi)
            return SG_EINVAL;
        err = check_value(db, val, vlen);
        if (err != 0)
            return err;
    }
    struct sg_store *store = txn->store;
    return store->backend->del(store->ctx, txn->handle, db, key, klen, val, vlen);
}

int sg_store_scan(struct sg_store_txn *txn, enum sg_store_db db, const void *start, size_t slen,
                  size_t prefix_len, sg_store_scan_fn fn, void *arg)
{
    if (txn->handle == NULL || (unsigned)db >= SG_STORE_DB_COUNT || fn == NULL ||
        prefix_len > slen || (start == NULL && slen > 0))
        return SG_EINVAL;
    if (slen > SG_STORE_KEY_MAX)
        return SG_ETOOBIG;
    struct sg_store *store = txn->store;
    return store->backend->scan(store->ctx, txn->handle, db, slen > 0 ? start : NULL, slen,
                                prefix_len, fn, arg);
}

/* A sweep's walk: the keys to delete (at most max), each as a u16 length and its bytes. */
struct store_sweep {
    sg_store_doomed_fn doomed;
    void *arg;
    size_t max;
    size_t count;
    unsigned char *keys;
    size_t used;
    size_t cap;
};

_Static_assert(SG_STORE_KEY_MAX <= UINT16_MAX, "a key length fits its u16");

static int store_sweep_entry(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct store_sweep *sw = arg;
    if (sw->count == sw->max)
        return SG_STORE_STOP;
    if (!sw->doomed(key, klen, val, vlen, sw->arg))
        return 0;
    if (sw->cap - sw->used < 2 + klen) {
        sw->cap = 2 * sw->cap + 2 + klen;
        sw->keys = sg_realloc(sw->keys, sw->cap);
    }
    sw->keys[sw->used] = (unsigned char)(klen >> 8);
    sw->keys[sw->used + 1] = (unsigned char)(klen & 0xff);
    memcpy(sw->keys + sw->used + 2, key, klen);
    sw->used += 2 + klen;
    sw->count++;
    return 0;
}

int sg_store_sweep(struct sg_store *store, enum sg_store_db db, size_t max,
                   sg_store_doomed_fn doomed, void *arg, size_t *deleted)
{
    if (deleted != NULL)
        *deleted = 0;
    struct sg_store_txn txn;
    int err = sg_store_txn_begin(store, true, &txn);
    if (err != 0)
        return err;
    struct store_sweep sw = {.doomed = doomed, .arg = arg, .max = max};
    err = sg_store_scan(&txn, db, NULL, 0, 0, store_sweep_entry, &sw);
    for (size_t off = 0; err == 0 && off < sw.used;) {
        size_t klen = (size_t)sw.keys[off] << 8 | sw.keys[off + 1];
        err = sg_store_delete(&txn, db, sw.keys + off + 2, klen, NULL, 0);
        off += 2 + klen;
    }
    free(sw.keys);
    if (err != 0) {
        sg_store_txn_abort(&txn);
        return err;
    }
    err = sg_store_txn_commit(&txn, SG_STORE_LAZY);
    if (err == 0 && deleted != NULL)
        *deleted = sw.count;
    return err;
}
