/*
 * The LMDB backend of the store: one environment under the data directory,
 * one named database per table. See store.h for the durability policy
 * (MDB_NOSYNC, durable commits fsynced) and the processes
 * sharing a data directory. The multi-valued table is a DUPSORT | DUPFIXED
 * database, as stores have always been written: every value of one key has
 * the same size (a SHA-256), and a value of another size is refused.
 */
#include "ssogate/store.h"

#include "ssogate/common.h"

#include <errno.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(SG_STORE_VALUE_MAX <= UINT32_MAX, "an LMDB value holds any store value");

struct lmdb_store {
    MDB_env *env;
    MDB_dbi dbi[SG_STORE_DB_COUNT];
    /*
     * One read transaction kept reset between uses: renewing it reuses its
     * reader slot instead of taking the reader table lock on every lookup.
     */
    MDB_txn *reader;
    bool reader_busy;
};

/* Maps an LMDB return code to an SG_E* code. */
static int lmdb_error(int rc)
{
    switch (rc) {
    case MDB_SUCCESS:
        return 0;
    case MDB_NOTFOUND:
        return SG_ENOENT;
    case MDB_KEYEXIST:
        return SG_EEXIST;
    case MDB_MAP_FULL:
        return SG_ETOOBIG;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return SG_ENOSPACE;
    case MDB_BAD_VALSIZE:
    case EINVAL:
        return SG_EINVAL;
    default:
        return SG_ESTORE;
    }
}

/* An MDB_val over borrowed bytes; LMDB never writes through a key or a put value. */
static MDB_val val_of(const void *data, size_t len)
{
    MDB_val v = {len, (void *)(uintptr_t)data};
    return v;
}

/* Creates data_dir when missing; an existing path must be a directory. */
static int make_directory(const char *data_dir, char *errbuf, size_t errlen)
{
    if (mkdir(data_dir, 0700) == 0)
        return 0;
    if (errno != EEXIST) {
        sg_errbuf(errbuf, errlen, "data directory %s: %s", data_dir, strerror(errno));
        return SG_EIO;
    }
    struct stat st;
    if (stat(data_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        sg_errbuf(errbuf, errlen, "data directory %s: not a directory", data_dir);
        return SG_EIO;
    }
    return 0;
}

/* Opens every named database in one write transaction. */
static int open_databases(struct lmdb_store *ls, char *errbuf, size_t errlen)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(ls->env, NULL, 0, &txn);
    if (rc != 0) {
        sg_errbuf(errbuf, errlen, "lmdb: %s", mdb_strerror(rc));
        return SG_ESTORE;
    }
    for (int db = 0; db < SG_STORE_DB_COUNT; db++) {
        unsigned flags = MDB_CREATE;
        if (sg_store_db_multi(db))
            flags |= MDB_DUPSORT | MDB_DUPFIXED;
        rc = mdb_dbi_open(txn, sg_store_db_name(db), flags, &ls->dbi[db]);
        if (rc != 0) {
            sg_errbuf(errbuf, errlen, "lmdb database %s: %s", sg_store_db_name(db),
                      mdb_strerror(rc));
            mdb_txn_abort(txn);
            return SG_ESTORE;
        }
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        sg_errbuf(errbuf, errlen, "lmdb commit: %s", mdb_strerror(rc));
        return SG_ESTORE;
    }
    return 0;
}

static int lmdb_open(const char *data_dir, const struct sg_store_options *opts, void **ctx,
                     char *errbuf, size_t errlen)
{
    *ctx = NULL;
    if (data_dir == NULL || data_dir[0] == '\0') {
        sg_errbuf(errbuf, errlen, "no data directory");
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

    struct lmdb_store *ls = sg_calloc(1, sizeof(*ls));
    int rc = mdb_env_create(&ls->env);
    if (rc != 0) {
        sg_errbuf(errbuf, errlen, "lmdb: %s", mdb_strerror(rc));
        SG_FREE(ls);
        return SG_ESTORE;
    }
    err = SG_ESTORE;
    if ((rc = mdb_env_set_maxdbs(ls->env, SG_STORE_DB_COUNT)) != 0 ||
        (rc = mdb_env_set_mapsize(ls->env, map_size)) != 0 ||
        (rc = mdb_env_set_maxreaders(ls->env, max_readers)) != 0) {
        sg_errbuf(errbuf, errlen, "lmdb settings: %s", mdb_strerror(rc));
        goto fail;
    }
    /*
     * MDB_NOTLS: a read transaction is tied to its MDB_txn, not to the
     * thread, so the cached reader works whatever thread calls us.
     * MDB_NOSYNC: see the durability policy in store.h.
     * Not MDB_WRITEMAP, though it spares a commit its pwrite per dirty page:
     * it writes into a sparse file through the map, and a page the
     * filesystem cannot back (a full disk) is a SIGBUS, not an error. A
     * commit's pwrite fails with ENOSPC instead, and the commit is refused.
     */
    rc = mdb_env_open(ls->env, data_dir, MDB_NOTLS | MDB_NOSYNC, 0600);
    if (rc != 0) {
        sg_errbuf(errbuf, errlen, "lmdb open %s: %s", data_dir, mdb_strerror(rc));
        goto fail;
    }
    int dead = 0;
    rc = mdb_reader_check(ls->env, &dead);
    if (rc != 0) {
        sg_errbuf(errbuf, errlen, "lmdb reader check %s: %s", data_dir, mdb_strerror(rc));
        goto fail;
    }
    err = open_databases(ls, errbuf, errlen);
    if (err != 0)
        goto fail;
    *ctx = ls;
    return 0;

fail:
    mdb_env_close(ls->env);
    SG_FREE(ls);
    return err;
}

static void lmdb_close(void *ctx)
{
    struct lmdb_store *ls = ctx;
    if (ls->reader != NULL)
        mdb_txn_abort(ls->reader);
    mdb_env_close(ls->env);
    free(ls);
}

static int lmdb_sync(void *ctx)
{
    struct lmdb_store *ls = ctx;
    return mdb_env_sync(ls->env, 1) == 0 ? 0 : SG_EIO;
}

/* Starts a read transaction, reusing the cached reader when it is idle. */
static int begin_read(struct lmdb_store *ls, MDB_txn **txn)
{
    if (ls->reader != NULL && !ls->reader_busy) {
        int rc = mdb_txn_renew(ls->reader);
        if (rc == 0) {
            ls->reader_busy = true;
            *txn = ls->reader;
            return 0;
        }
        mdb_txn_abort(ls->reader);
        ls->reader = NULL;
        return rc;
    }
    int rc = mdb_txn_begin(ls->env, NULL, MDB_RDONLY, txn);
    if (rc == 0 && ls->reader == NULL) {
        ls->reader = *txn;
        ls->reader_busy = true;
    }
    return rc;
}

static int lmdb_begin(void *ctx, bool write, void **handle)
{
    struct lmdb_store *ls = ctx;
    MDB_txn *txn = NULL;
    int rc = 0;
    /* Another process may have grown the map: adopt its size and retry once. */
    for (int attempt = 0; attempt < 2; attempt++) {
        if (write)
            rc = mdb_txn_begin(ls->env, NULL, 0, &txn);
        else
            rc = begin_read(ls, &txn);
        if (rc != MDB_MAP_RESIZED)
            break;
        txn = NULL;
        if (ls->reader != NULL && !ls->reader_busy) {
            mdb_txn_abort(ls->reader);
            ls->reader = NULL;
        }
        if (mdb_env_set_mapsize(ls->env, 0) != 0)
            break;
    }
    if (rc != 0) {
        *handle = NULL;
        return SG_ESTORE;
    }
    *handle = txn;
    return 0;
}

/* Ends a read transaction: the cached reader is reset, any other aborted. */
static void end_read(struct lmdb_store *ls, MDB_txn *txn)
{
    if (txn == ls->reader) {
        mdb_txn_reset(ls->reader);
        ls->reader_busy = false;
    } else {
        mdb_txn_abort(txn);
    }
}

static int lmdb_commit(void *ctx, void *handle, bool write, enum sg_store_durability durability)
{
    struct lmdb_store *ls = ctx;
    if (!write) {
        end_read(ls, handle);
        return 0;
    }
    int rc = mdb_txn_commit(handle);
    if (rc != 0)
        return lmdb_error(rc);
    if (durability == SG_STORE_DURABLE && mdb_env_sync(ls->env, 1) != 0)
        return SG_EIO;
    return 0;
}

static void lmdb_abort(void *ctx, void *handle, bool write)
{
    if (!write)
        end_read(ctx, handle);
    else
        mdb_txn_abort(handle);
}

static int lmdb_get(void *ctx, void *handle, enum sg_store_db db, const void *key, size_t klen,
                    const void **val, size_t *vlen)
{
    struct lmdb_store *ls = ctx;
    MDB_val k = val_of(key, klen);
    MDB_val v;
    int rc = mdb_get(handle, ls->dbi[db], &k, &v);
    if (rc != 0)
        return lmdb_error(rc);
    *val = v.mv_data;
    *vlen = v.mv_size;
    return 0;
}

static int lmdb_put(void *ctx, void *handle, enum sg_store_db db, const void *key, size_t klen,
                    const void *val, size_t vlen, unsigned flags)
{
    struct lmdb_store *ls = ctx;
    unsigned mdb_flags = 0;
    if (flags & SG_STORE_NOOVERWRITE)
        mdb_flags = sg_store_db_multi(db) ? MDB_NODUPDATA : MDB_NOOVERWRITE;
    MDB_val k = val_of(key, klen);
    MDB_val v = val_of(val, vlen);
    return lmdb_error(mdb_put(handle, ls->dbi[db], &k, &v, mdb_flags));
}

static int lmdb_take(void *ctx, void *handle, enum sg_store_db db, const void *key, size_t klen,
                     void **val, size_t *vlen)
{
    struct lmdb_store *ls = ctx;
    MDB_val k = val_of(key, klen);
    MDB_val v;
    int rc = mdb_get(handle, ls->dbi[db], &k, &v);
    if (rc != 0)
        return lmdb_error(rc);
    /* The copy is made before the delete, which may reuse the value's pages. */
    unsigned char *copy = sg_malloc(v.mv_size > 0 ? v.mv_size : 1);
    memcpy(copy, v.mv_data, v.mv_size);
    MDB_val d = {v.mv_size, copy};
    rc = mdb_del(handle, ls->dbi[db], &k, sg_store_db_multi(db) ? &d : NULL);
    if (rc != 0) {
        free(copy);
        return lmdb_error(rc);
    }
    *val = copy;
    *vlen = d.mv_size;
    return 0;
}

static int lmdb_del(void *ctx, void *handle, enum sg_store_db db, const void *key, size_t klen,
                    const void *val, size_t vlen)
{
    struct lmdb_store *ls = ctx;
    MDB_val k = val_of(key, klen);
    MDB_val v = val_of(val, vlen);
    return lmdb_error(mdb_del(handle, ls->dbi[db], &k, val != NULL ? &v : NULL));
}

static int lmdb_scan(void *ctx, void *handle, enum sg_store_db db, const void *start, size_t slen,
                     size_t prefix_len, sg_store_scan_fn fn, void *arg)
{
    struct lmdb_store *ls = ctx;
    MDB_cursor *cursor;
    int rc = mdb_cursor_open(handle, ls->dbi[db], &cursor);
    if (rc != 0)
        return lmdb_error(rc);
    MDB_val k = val_of(start, slen);
    MDB_val v;
    int result = 0;
    for (rc = mdb_cursor_get(cursor, &k, &v, slen > 0 ? MDB_SET_RANGE : MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
        if (prefix_len > 0 && (k.mv_size < prefix_len || memcmp(k.mv_data, start, prefix_len) != 0))
            break;
        result = fn(k.mv_data, k.mv_size, v.mv_data, v.mv_size, arg);
        if (result != 0)
            break;
    }
    mdb_cursor_close(cursor);
    if (result != 0)
        return result == SG_STORE_STOP ? 0 : result;
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : lmdb_error(rc);
}

static int lmdb_stats(void *ctx, struct sg_store_stats *out)
{
    struct lmdb_store *ls = ctx;
    void *handle;
    int err = lmdb_begin(ls, false, &handle);
    if (err != 0)
        return err;
    for (int db = 0; db < SG_STORE_DB_COUNT; db++) {
        MDB_stat st;
        if (mdb_stat(handle, ls->dbi[db], &st) != 0) {
            end_read(ls, handle);
            return SG_ESTORE;
        }
        out->entries[db] = st.ms_entries;
    }
    end_read(ls, handle);
    MDB_envinfo info;
    MDB_stat env_stat;
    if (mdb_env_info(ls->env, &info) != 0 || mdb_env_stat(ls->env, &env_stat) != 0)
        return SG_ESTORE;
    out->map_size = info.me_mapsize;
    out->map_used = (info.me_last_pgno + 1) * (size_t)env_stat.ms_psize;
    return 0;
}

#define DATA_FILE "data.mdb"

static int lmdb_backup(void *ctx, const char *dir, char *errbuf, size_t errlen)
{
    struct lmdb_store *ls = ctx;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        sg_errbuf(errbuf, errlen, "%s: %s", dir, strerror(errno));
        return SG_EIO;
    }
    char *file = sg_asprintf("%s/%s", dir, DATA_FILE);
    bool exists = access(file, F_OK) == 0;
    free(file);
    if (exists) {
        sg_errbuf(errbuf, errlen, "%s already holds a store", dir);
        return SG_EEXIST;
    }
    /* A read transaction of its own: a consistent snapshot while writers go on. */
    int rc = mdb_env_copy2(ls->env, dir, MDB_CP_COMPACT);
    if (rc != 0) {
        sg_errbuf(errbuf, errlen, "copy to %s: %s", dir, mdb_strerror(rc));
        return rc > 0 ? SG_EIO : SG_ESTORE;
    }
    file = sg_asprintf("%s/%s", dir, DATA_FILE);
    rc = chmod(file, 0600); /* session records: the store's own mode */
    free(file);
    return rc == 0 ? 0 : SG_EIO;
}

struct reader_count {
    unsigned count;
    bool header_seen;
};

/* One line of mdb_reader_list: "    pid     thread     txnid", then one line per reader. */
static int count_reader(const char *line, void *arg)
{
    struct reader_count *rc = arg;
    long pid = 0;
    if (!rc->header_seen) {
        rc->header_seen = true;
        return 0;
    }
    if (sscanf(line, " %ld", &pid) == 1 && pid != (long)getpid())
        rc->count++;
    return 0;
}

static int lmdb_other_users(void *ctx, unsigned *count)
{
    struct lmdb_store *ls = ctx;
    int dead = 0;
    if (mdb_reader_check(ls->env, &dead) != 0)
        return SG_ESTORE;
    struct reader_count rc = {0};
    if (mdb_reader_list(ls->env, count_reader, &rc) < 0)
        return SG_ESTORE;
    *count = rc.count;
    return 0;
}

/* Writes a compacted copy of the backup's environment beside data_dir's, then renames it over. */
static int lmdb_restore(void *backup_ctx, const char *data_dir, char *errbuf, size_t errlen)
{
    char *staged = sg_asprintf("%s/restore.tmp", data_dir);
    char *from = sg_asprintf("%s/%s", staged, DATA_FILE);
    char *to = sg_asprintf("%s/%s", data_dir, DATA_FILE);
    unlink(from);
    rmdir(staged);
    int err = lmdb_backup(backup_ctx, staged, errbuf, errlen);
    if (err == 0) {
        int fd = open(from, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) != 0 || rename(from, to) != 0) {
            sg_errbuf(errbuf, errlen, "%s: %s", to, strerror(errno));
            err = SG_EIO;
        }
        if (fd >= 0)
            close(fd);
    }
    int dir = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        fsync(dir);
        close(dir);
    }
    unlink(from);
    rmdir(staged);
    free(staged);
    free(from);
    free(to);
    return err;
}

const struct sg_store_backend sg_store_lmdb = {
    .name = "lmdb",
    .open = lmdb_open,
    .close = lmdb_close,
    .begin = lmdb_begin,
    .commit = lmdb_commit,
    .abort = lmdb_abort,
    .get = lmdb_get,
    .put = lmdb_put,
    .take = lmdb_take,
    .del = lmdb_del,
    .scan = lmdb_scan,
    .stats = lmdb_stats,
    .sync = lmdb_sync,
    .backup = lmdb_backup,
    .other_users = lmdb_other_users,
    .restore = lmdb_restore,
};
