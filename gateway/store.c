#include "ssogate/store.h"

#include "ssogate/common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SCHEMA_KEY "schema_version"

struct sg_store {
    MDB_env *env;
    MDB_dbi dbi[SG_STORE_DB_COUNT];
    /*
     * One read transaction kept reset between uses: renewing it reuses its
     * reader slot instead of taking the reader table lock on every lookup.
     */
    MDB_txn *reader;
    bool reader_busy;
};

static const struct {
    const char *name;
    unsigned int flags;
} databases[SG_STORE_DB_COUNT] = {
    [SG_STORE_DB_META] = {"meta", 0},
    [SG_STORE_DB_SESSIONS] = {"sessions", 0},
    [SG_STORE_DB_SESSIONS_BY_OWNER] = {"sessions_by_owner", MDB_DUPSORT | MDB_DUPFIXED},
    [SG_STORE_DB_TENANT_BY_PSA] = {"tenant_by_psa", 0},
    [SG_STORE_DB_TENANT_BY_IDP] = {"tenant_by_idp", 0},
    [SG_STORE_DB_USER_BY_PSA] = {"user_by_psa", 0},
    [SG_STORE_DB_USER_BY_IDP] = {"user_by_idp", 0},
    [SG_STORE_DB_JWKS] = {"jwks", 0},
    [SG_STORE_DB_LOGINS] = {"logins", 0},
};

static void set_error(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_error(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (errbuf == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

int sg_store_error(int mdb_rc)
{
    switch (mdb_rc) {
    case MDB_SUCCESS:
        return 0;
    case MDB_NOTFOUND:
        return SG_ENOENT;
    case MDB_KEYEXIST:
        return SG_EEXIST;
    case MDB_MAP_FULL:
        return SG_ETOOBIG;
    default:
        return SG_ESTORE;
    }
}

const char *sg_store_db_name(enum sg_store_db db)
{
    if ((unsigned)db >= SG_STORE_DB_COUNT)
        return "unknown";
    return databases[db].name;
}

MDB_dbi sg_store_dbi(const struct sg_store *store, enum sg_store_db db)
{
    return store->dbi[db];
}

/* Creates data_dir when missing; an existing path must be a directory. */
static int make_directory(const char *data_dir, char *errbuf, size_t errlen)
{
    if (mkdir(data_dir, 0700) == 0)
        return 0;
    if (errno != EEXIST) {
        set_error(errbuf, errlen, "data directory %s: %s", data_dir, strerror(errno));
        return SG_EIO;
    }
    struct stat st;
    if (stat(data_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        set_error(errbuf, errlen, "data directory %s: not a directory", data_dir);
        return SG_EIO;
    }
    return 0;
}

/*
 * Reads the schema version in txn, writing SG_STORE_SCHEMA_VERSION when there
 * is none. *created tells whether it was written.
 */
static int check_schema(struct sg_store *store, MDB_txn *txn, bool *created, char *errbuf,
                        size_t errlen)
{
    char key_text[] = SCHEMA_KEY;
    MDB_val key = {sizeof(key_text) - 1, key_text};
    MDB_val val;
    int rc = mdb_get(txn, store->dbi[SG_STORE_DB_META], &key, &val);
    if (rc == MDB_NOTFOUND) {
        char text[16];
        int n = snprintf(text, sizeof(text), "%d", SG_STORE_SCHEMA_VERSION);
        val.mv_size = (size_t)n;
        val.mv_data = text;
        rc = mdb_put(txn, store->dbi[SG_STORE_DB_META], &key, &val, 0);
        if (rc != 0) {
            set_error(errbuf, errlen, "writing schema version: %s", mdb_strerror(rc));
            return SG_ESTORE;
        }
        *created = true;
        return 0;
    }
    if (rc != 0) {
        set_error(errbuf, errlen, "reading schema version: %s", mdb_strerror(rc));
        return SG_ESTORE;
    }
    const unsigned char *p = val.mv_data;
    unsigned long version = 0;
    bool valid = val.mv_size > 0 && val.mv_size <= 9 && p[0] != '0';
    for (size_t i = 0; valid && i < val.mv_size; i++) {
        if (p[i] < '0' || p[i] > '9')
            valid = false;
        else
            version = version * 10 + (unsigned long)(p[i] - '0');
    }
    if (!valid) {
        set_error(errbuf, errlen, "unreadable schema version in the store");
        return SG_ESTORE;
    }
    if (version != SG_STORE_SCHEMA_VERSION) {
        set_error(errbuf, errlen, "store schema version %lu is not supported (this build: %d)",
                  version, SG_STORE_SCHEMA_VERSION);
        return SG_ESTORE;
    }
    return 0;
}

/* Opens every named database and checks the schema, in one write transaction. */
static int open_databases(struct sg_store *store, char *errbuf, size_t errlen)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(store->env, NULL, 0, &txn);
    if (rc != 0) {
        set_error(errbuf, errlen, "lmdb: %s", mdb_strerror(rc));
        return SG_ESTORE;
    }
    for (int db = 0; db < SG_STORE_DB_COUNT; db++) {
        rc = mdb_dbi_open(txn, databases[db].name, databases[db].flags | MDB_CREATE,
                          &store->dbi[db]);
        if (rc != 0) {
            set_error(errbuf, errlen, "lmdb database %s: %s", databases[db].name, mdb_strerror(rc));
            mdb_txn_abort(txn);
            return SG_ESTORE;
        }
    }
    bool created = false;
    int err = check_schema(store, txn, &created, errbuf, errlen);
    if (err != 0) {
        mdb_txn_abort(txn);
        return err;
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        set_error(errbuf, errlen, "lmdb commit: %s", mdb_strerror(rc));
        return SG_ESTORE;
    }
    /* A new store is made durable at once so that its schema record is never lost. */
    if (created && mdb_env_sync(store->env, 1) != 0) {
        set_error(errbuf, errlen, "lmdb sync failed");
        return SG_EIO;
    }
    return 0;
}

int sg_store_open_with(const char *data_dir, const struct sg_store_options *opts,
                       struct sg_store **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    if (data_dir == NULL || data_dir[0] == '\0') {
        set_error(errbuf, errlen, "no data directory");
        return SG_EINVAL;
    }
    int err = make_directory(data_dir, errbuf, errlen);
    if (err != 0)
        return err;

    size_t map_size = SG_STORE_DEFAULT_MAP_SIZE;
    unsigned max_readers = SG_STORE_DEFAULT_MAX_READERS;
    if (opts != NULL && opts->map_size > 0)
        map_size = opts->map_size;
    if (opts != NULL && opts->max_readers > 0)
        max_readers = opts->max_readers;

    struct sg_store *store = sg_calloc(1, sizeof(*store));
    int rc = mdb_env_create(&store->env);
    if (rc != 0) {
        set_error(errbuf, errlen, "lmdb: %s", mdb_strerror(rc));
        SG_FREE(store);
        return SG_ESTORE;
    }
    err = SG_ESTORE;
    if ((rc = mdb_env_set_maxdbs(store->env, SG_STORE_DB_COUNT)) != 0 ||
        (rc = mdb_env_set_mapsize(store->env, map_size)) != 0 ||
        (rc = mdb_env_set_maxreaders(store->env, max_readers)) != 0) {
        set_error(errbuf, errlen, "lmdb settings: %s", mdb_strerror(rc));
        goto fail;
    }
    /*
     * MDB_NOTLS: a read transaction is tied to its MDB_txn, not to the
     * thread, so the cached reader works whatever thread calls us.
     * MDB_NOSYNC: see the durability policy in store.h.
     * MDB_WRITEMAP: a commit writes into the shared map instead of making a
     * pwrite per dirty page, so a session write costs no system call; the
     * pages are in the page cache at once (they survive kill -9), and
     * sg_store_sync (msync) still makes link changes durable.
     */
    rc = mdb_env_open(store->env, data_dir, MDB_NOTLS | MDB_NOSYNC | MDB_WRITEMAP, 0600);
    if (rc != 0) {
        set_error(errbuf, errlen, "lmdb open %s: %s", data_dir, mdb_strerror(rc));
        goto fail;
    }
    int dead = 0;
    rc = mdb_reader_check(store->env, &dead);
    if (rc != 0) {
        set_error(errbuf, errlen, "lmdb reader check %s: %s", data_dir, mdb_strerror(rc));
        goto fail;
    }
    err = open_databases(store, errbuf, errlen);
    if (err != 0)
        goto fail;
    *out = store;
    return 0;

fail:
    mdb_env_close(store->env);
    SG_FREE(store);
    return err;
}

int sg_store_open(const char *data_dir, struct sg_store **out, char *errbuf, size_t errlen)
{
    return sg_store_open_with(data_dir, NULL, out, errbuf, errlen);
}

void sg_store_close(struct sg_store *store)
{
    if (store == NULL)
        return;
    if (store->reader != NULL)
        mdb_txn_abort(store->reader);
    mdb_env_close(store->env);
    free(store);
}

int sg_store_sync(struct sg_store *store)
{
    return mdb_env_sync(store->env, 1) == 0 ? 0 : SG_EIO;
}

/* Starts a read transaction, reusing the cached reader when it is idle. */
static int begin_read(struct sg_store *store, MDB_txn **txn)
{
    if (store->reader != NULL && !store->reader_busy) {
        int rc = mdb_txn_renew(store->reader);
        if (rc == 0) {
            store->reader_busy = true;
            *txn = store->reader;
            return 0;
        }
        mdb_txn_abort(store->reader);
        store->reader = NULL;
        return rc;
    }
    int rc = mdb_txn_begin(store->env, NULL, MDB_RDONLY, txn);
    if (rc == 0 && store->reader == NULL) {
        store->reader = *txn;
        store->reader_busy = true;
    }
    return rc;
}

int sg_store_txn_begin(struct sg_store *store, bool write, struct sg_store_txn *out)
{
    out->store = store;
    out->txn = NULL;
    out->write = write;
    int rc = 0;
    /* Another process may have grown the map: adopt its size and retry once. */
    for (int attempt = 0; attempt < 2; attempt++) {
        if (write)
            rc = mdb_txn_begin(store->env, NULL, 0, &out->txn);
        else
            rc = begin_read(store, &out->txn);
        if (rc != MDB_MAP_RESIZED)
            break;
        out->txn = NULL;
        if (store->reader != NULL && !store->reader_busy) {
            mdb_txn_abort(store->reader);
            store->reader = NULL;
        }
        if (mdb_env_set_mapsize(store->env, 0) != 0)
            break;
    }
    if (rc != 0) {
        out->txn = NULL;
        return SG_ESTORE;
    }
    return 0;
}

/* Ends a read transaction: the cached reader is reset, any other aborted. */
static void end_read(struct sg_store_txn *txn)
{
    struct sg_store *store = txn->store;
    if (txn->txn == store->reader) {
        mdb_txn_reset(store->reader);
        store->reader_busy = false;
    } else {
        mdb_txn_abort(txn->txn);
    }
    txn->txn = NULL;
}

int sg_store_txn_commit(struct sg_store_txn *txn, bool durable)
{
    if (txn->txn == NULL)
        return SG_ESTORE;
    if (!txn->write) {
        end_read(txn);
        return 0;
    }
    int rc = mdb_txn_commit(txn->txn);
    txn->txn = NULL;
    if (rc != 0)
        return sg_store_error(rc);
    if (durable && mdb_env_sync(txn->store->env, 1) != 0)
        return SG_EIO;
    return 0;
}

void sg_store_txn_abort(struct sg_store_txn *txn)
{
    if (txn->txn == NULL)
        return;
    if (!txn->write) {
        end_read(txn);
        return;
    }
    mdb_txn_abort(txn->txn);
    txn->txn = NULL;
}

int sg_store_stats(struct sg_store *store, struct sg_store_stats *out)
{
    memset(out, 0, sizeof(*out));
    struct sg_store_txn txn;
    int err = sg_store_txn_begin(store, false, &txn);
    if (err != 0)
        return err;
    for (int db = 0; db < SG_STORE_DB_COUNT; db++) {
        MDB_stat st;
        int rc = mdb_stat(txn.txn, store->dbi[db], &st);
        if (rc != 0) {
            sg_store_txn_abort(&txn);
            return SG_ESTORE;
        }
        out->entries[db] = st.ms_entries;
    }
    sg_store_txn_abort(&txn);
    MDB_envinfo info;
    MDB_stat env_stat;
    if (mdb_env_info(store->env, &info) != 0 || mdb_env_stat(store->env, &env_stat) != 0)
        return SG_ESTORE;
    out->map_size = info.me_mapsize;
    out->map_used = (info.me_last_pgno + 1) * (size_t)env_stat.ms_psize;
    return 0;
}
