/*
 * The store: a small, backend-neutral key-value interface over named tables,
 * with transactions. session.c, links.c, loginstate.c and jwks.c are built on
 * it and never see the backend; LMDB (gateway/store_lmdb.c) is the one
 * backend today. The tables:
 *
 *   meta               "schema_version" -> decimal text; bookkeeping keys
 *   sessions           SHA-256(session id) -> session record (session.c)
 *   sessions_by_owner  SHA-256(owner) -> SHA-256(session id), multi-valued
 *   tenant_by_psa      psa_tenant -> idp_tenant                    (links.c)
 *   tenant_by_idp      idp_tenant -> psa_tenant
 *   user_by_psa        psa_tenant NUL psa_user -> idp_tenant NUL idp_sub
 *   user_by_idp        idp_tenant NUL idp_sub -> psa_tenant NUL psa_user
 *   jwks               issuer -> fetch time and JWKS JSON (jwks.c)
 *   logins             SHA-256(state) -> login state in flight (loginstate.c)
 *   logout_jti         SHA-256(issuer NUL jti) -> keep-until time (logout.c)
 *   session_ends       SHA-256(session id) -> when it was ended here: ends the
 *                      shared store has not taken yet (pgstore.c)
 *
 * Every table is an ordered map from byte-string keys (1..SG_STORE_KEY_MAX
 * bytes, compared as unsigned bytes, shorter first on a common prefix) to
 * byte-string values (at most SG_STORE_VALUE_MAX bytes). One table,
 * sessions_by_owner, is multi-valued (sg_store_db_multi): a key holds a set
 * of values (each at most SG_STORE_KEY_MAX bytes), kept in byte order; a
 * relational backend maps it to a table whose primary key is (key, value).
 * The layout is kept as LMDB has always stored it (a DUPSORT database), so
 * existing stores open unchanged (schema version 1).
 *
 * Values handed out by sg_store_get and sg_store_scan are borrowed: they are
 * valid until the next write in the same transaction or its end, whichever
 * comes first (LMDB hands out pointers into its map). sg_store_take hands
 * back a copy. Keys and values passed in are borrowed for the call only.
 *
 * Durability. sg_store_txn_commit takes an explicit durability:
 * SG_STORE_LAZY survives the process dying in any way (kill -9 included) but
 * not necessarily a power loss or kernel crash; SG_STORE_DURABLE is on stable
 * storage before the call returns. The LMDB backend opens its environment
 * without sync on commit and with a writable map (the flags are named in
 * store_lmdb.c): a commit writes its pages into the shared map (the OS page
 * cache) and returns without fsync or any write system call, so a session
 * write never waits for the disk on the event loop; a power loss or kernel
 * crash can lose the commits since the last flush, and LMDB stays
 * consistent (it then shows an older snapshot). Link changes are rare and the
 * user is told they succeeded, so links.c commits them SG_STORE_DURABLE,
 * which fsyncs before returning. Sessions, login states and the JWKS cache
 * commit SG_STORE_LAZY. sg_store_sync flushes everything: the gateway calls
 * it once the event loop has stopped; in between, the kernel writes dirty
 * pages back on its own (within about 30 s).
 *
 * Processes. Several worker processes may share one data directory; each
 * opens its own store after fork (an LMDB environment must never be used in
 * a child of the process that opened it). Reader slots left by processes
 * that died are reclaimed at open. Write transactions are serialised across
 * processes by LMDB, so every transaction here is short.
 *
 * A second backend. A backend is a table of functions (struct
 * sg_store_backend below) defined in one new file, e.g.
 * gateway/store_postgresql.c exporting sg_store_postgresql, and chosen
 * through sg_store_options.backend by whoever opens the store; session.c,
 * links.c, loginstate.c, jwks.c, login, linking and proxy code do not change.
 * Its open function reads its own settings (conninfo and so on) from
 * sg_store_options.config. The meta table and schema version check are the
 * store's (store.c), run through the same functions.
 *
 * What is synchronous, and why that is acceptable today. Every function here
 * returns its answer before it returns: a transaction, a get, a commit. For
 * LMDB that is the right shape: a read is a few memory accesses in a mapped
 * file, a lazy commit writes its dirty pages to the page cache (a pwrite
 * each, no wait for the disk), and only the rare durable commit (a link
 * change) waits for the disk, bounded by one fsync.
 * A network backend (PostgreSQL, issue 11) cannot answer inside the call
 * without blocking the event loop. It will therefore not be driven through
 * these synchronous calls on the request path: the completion callbacks
 * belong one level up, at the session, links and loginstate APIs, which are
 * each one transaction today. Each gains an asynchronous form taking a
 * callback and the request (e.g. sg_session_get_async(store, id, now, cb,
 * req), sg_loginstate_take_async, sg_links_user_put_async) whose PostgreSQL
 * implementation sends one statement (DELETE ... RETURNING for a take, the
 * unique-constraint INSERT for a link) with PQsendQueryParams and calls back
 * from the libevent watcher on PQsocket; their LMDB implementation runs the
 * synchronous code below and calls back at once. The callers (login.c,
 * settings.c, identity.c, proxy.c) then wait on those callbacks the way they
 * already wait on the token endpoint. This interface stays as the local
 * cache's (LMDB) and the admin tool's, which may block.
 */
#ifndef SSOGATE_STORE_H
#define SSOGATE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SG_STORE_SCHEMA_VERSION      1
#define SG_STORE_DEFAULT_MAP_SIZE    ((size_t)1 << 30)
#define SG_STORE_DEFAULT_MAX_READERS 1024
/* Longest key (and longest value of a multi-valued table): LMDB's default limit. */
#define SG_STORE_KEY_MAX 511
/* Largest value: a full JWKS (SG_JWKS_MAX) with its header fits with room to spare. */
#define SG_STORE_VALUE_MAX ((size_t)4 << 20)

enum sg_store_db {
    SG_STORE_DB_META = 0,
    SG_STORE_DB_SESSIONS,
    SG_STORE_DB_SESSIONS_BY_OWNER,
    SG_STORE_DB_TENANT_BY_PSA,
    SG_STORE_DB_TENANT_BY_IDP,
    SG_STORE_DB_USER_BY_PSA,
    SG_STORE_DB_USER_BY_IDP,
    SG_STORE_DB_JWKS,
    SG_STORE_DB_LOGINS,       /* login states in flight, shared by the workers */
    SG_STORE_DB_LOGOUT_JTI,   /* jti of back-channel logout tokens seen (logout.c) */
    SG_STORE_DB_SESSION_ENDS, /* session ends PostgreSQL has not taken yet (pgstore.c) */
    SG_STORE_DB_COUNT
};

/* How far a commit has gone when sg_store_txn_commit returns (see above). */
enum sg_store_durability {
    SG_STORE_LAZY = 0, /* survives the process dying, not a power loss */
    SG_STORE_DURABLE,  /* on stable storage */
};

/* sg_store_put flags. */
#define SG_STORE_NOOVERWRITE 0x1u /* fail with SG_EEXIST when the key (multi: the pair) exists */

/* A scan callback's return value that ends the scan early without an error. */
#define SG_STORE_STOP 1

struct sg_store;
struct sg_store_backend;

struct sg_store_options {
    size_t map_size;      /* LMDB: bytes; 0 = SG_STORE_DEFAULT_MAP_SIZE */
    unsigned max_readers; /* LMDB: reader slots shared by all processes; 0 = default */
    const struct sg_store_backend *backend; /* NULL = sg_store_lmdb */
    const void *config; /* borrowed: the backend's own settings (NULL for LMDB) */
};

struct sg_store_stats {
    size_t entries[SG_STORE_DB_COUNT]; /* records per table (multi-valued: every value) */
    size_t map_size;                   /* bytes reserved for the map (LMDB; else 0) */
    size_t map_used;                   /* bytes of the map in use (LMDB; else 0) */
};

/*
 * A transaction. Callers keep it on their stack; it is valid from
 * sg_store_txn_begin until sg_store_txn_commit or sg_store_txn_abort. Its
 * fields are the store's: callers only pass its address.
 */
struct sg_store_txn {
    struct sg_store *store; /* borrowed */
    void *handle;           /* the backend's transaction; NULL once over */
    bool write;
};

/*
 * Opens (creating when missing) the LMDB store in data_dir with default
 * options. See sg_store_open_with.
 */
int sg_store_open(const char *data_dir, struct sg_store **out, char *errbuf, size_t errlen);

/*
 * Opens the store of opts->backend (LMDB when opts or its backend is NULL):
 * for LMDB, creates data_dir (mode 0700) if it is missing, opens the
 * environment in it and every table, and reclaims reader slots of dead
 * processes. Then checks the schema version: a new store gets
 * SG_STORE_SCHEMA_VERSION (committed durably), a store with another (or an
 * unreadable) version is refused. opts is borrowed and may be NULL. Returns
 * 0 and hands back a new store in *out, or SG_EINVAL, SG_EIO (directory,
 * sync) or SG_ESTORE (backend, schema) with a message in errbuf (when
 * errlen > 0) and *out left NULL.
 */
int sg_store_open_with(const char *data_dir, const struct sg_store_options *opts,
                       struct sg_store **out, char *errbuf, size_t errlen);

/* Closes the backend and frees the store. No transaction may be open. NULL-safe. */
void sg_store_close(struct sg_store *store);

/*
 * Flushes every commit to stable storage. Blocks for the duration of the
 * flush: never call it on the event loop's request path. Returns 0 or SG_EIO.
 */
int sg_store_sync(struct sg_store *store);

/* Fills *out with record counts per table and the map usage. Returns 0 or SG_ESTORE. */
int sg_store_stats(struct sg_store *store, struct sg_store_stats *out);

/* The name of a table (for metrics labels and backends); a static string. */
const char *sg_store_db_name(enum sg_store_db db);

/* True for a multi-valued table (a key holds a set of values). */
bool sg_store_db_multi(enum sg_store_db db);

/*
 * Begins a read-only (write = false) or write transaction in *out. A write
 * transaction waits for any other process's write transaction to finish.
 * Returns 0 or SG_ESTORE (out->handle is then NULL).
 */
int sg_store_txn_begin(struct sg_store *store, bool write, struct sg_store_txn *out);

/*
 * Commits a write transaction with the given durability (ends a read one).
 * Returns 0, SG_EINVAL (the transaction was already over), SG_ETOOBIG (store
 * full), SG_ESTORE, or SG_EIO when the commit succeeded but the flush of a
 * durable one failed. The transaction is over in every case.
 */
int sg_store_txn_commit(struct sg_store_txn *txn, enum sg_store_durability durability);

/* Discards a transaction and every write made in it. Safe on one that is already over. */
void sg_store_txn_abort(struct sg_store_txn *txn);

/*
 * Looks key (klen bytes) up in db. On 0, *val and *vlen give the value,
 * borrowed until the next write in txn or its end (multi-valued table: the
 * smallest value). Returns 0, SG_ENOENT, SG_EINVAL (empty key, transaction
 * over), SG_ETOOBIG (key longer than SG_STORE_KEY_MAX) or SG_ESTORE.
 */
int sg_store_get(struct sg_store_txn *txn, enum sg_store_db db, const void *key, size_t klen,
                 const void **val, size_t *vlen);

/*
 * Stores val (vlen bytes, may be 0) under key in a write transaction,
 * replacing any value (multi-valued table: adding val to the key's set).
 * With SG_STORE_NOOVERWRITE an existing key (multi: the same pair) is left
 * alone and the call returns SG_EEXIST. Returns 0, SG_EEXIST, SG_EINVAL
 * (empty key, read-only or ended transaction, unknown flag), SG_ETOOBIG (key
 * over SG_STORE_KEY_MAX, value over SG_STORE_VALUE_MAX or, in a multi-valued
 * table, over SG_STORE_KEY_MAX; or the store is full) or SG_ESTORE.
 */
int sg_store_put(struct sg_store_txn *txn, enum sg_store_db db, const void *key, size_t klen,
                 const void *val, size_t vlen, unsigned flags);

/*
 * Reads and deletes key in one step, in a write transaction: a record taken
 * is seen by no later transaction (single use). Hands back a copy of the
 * value in *val (sg_malloc'd, caller frees; for a multi-valued table the
 * smallest value, and only that value is removed) and its length in *vlen.
 * Returns 0, SG_ENOENT, SG_EINVAL, SG_ETOOBIG or SG_ESTORE; on error *val is
 * NULL.
 */
int sg_store_take(struct sg_store_txn *txn, enum sg_store_db db, const void *key, size_t klen,
                  void **val, size_t *vlen);

/*
 * Deletes key in a write transaction. In a multi-valued table, val (vlen
 * bytes) names the one value to remove, or NULL removes every value of key;
 * elsewhere val must be NULL. Returns 0, SG_ENOENT (no such key or pair),
 * SG_EINVAL, SG_ETOOBIG or SG_ESTORE.
 */
int sg_store_delete(struct sg_store_txn *txn, enum sg_store_db db, const void *key, size_t klen,
                    const void *val, size_t vlen);

/*
 * Called by sg_store_scan for each entry; key and val are valid only during
 * the call, which must not write in the transaction. Returns 0 to go on,
 * SG_STORE_STOP to end the scan (sg_store_scan then returns 0), or a
 * negative SG_E* code that ends the scan and is returned by it.
 */
typedef int (*sg_store_scan_fn)(const void *key, size_t klen, const void *val, size_t vlen,
                                void *arg);

/*
 * Calls fn for the entries of db in key order (a multi-valued table: every
 * value, in value order within a key), from the first key >= start (slen
 * bytes; NULL or 0 bytes: from the first entry), while the key begins with
 * the first prefix_len bytes of start (0: up to the end). Returns 0, fn's
 * negative code, SG_EINVAL (prefix_len > slen, transaction over),
 * SG_ETOOBIG (start longer than SG_STORE_KEY_MAX) or SG_ESTORE.
 */
/* True when the record (key, val) is to be deleted by sg_store_sweep. */
typedef bool (*sg_store_doomed_fn)(const void *key, size_t klen, const void *val, size_t vlen,
                                   void *arg);

/*
 * Deletes, in one lazy write transaction, the first max records of db (in
 * key order) for which doomed says so; *deleted (may be NULL) gets their
 * number. The keys are collected first, then deleted: a scan never writes.
 * Returns 0 or an error of the calls above.
 */
int sg_store_sweep(struct sg_store *store, enum sg_store_db db, size_t max,
                   sg_store_doomed_fn doomed, void *arg, size_t *deleted);

int sg_store_scan(struct sg_store_txn *txn, enum sg_store_db db, const void *start, size_t slen,
                  size_t prefix_len, sg_store_scan_fn fn, void *arg);

/*
 * A backend: one table of functions, one file. The store checks every
 * argument against the limits above before calling in, so a backend sees
 * only valid keys and sizes, a write only in a write transaction, and a
 * handle only while its transaction is open. ctx is what open handed back;
 * handle is what begin handed back. Every function returns 0 or an SG_E*
 * code with the meanings given for the store function of the same name.
 */
struct sg_store_backend {
    const char *name;
    int (*open)(const char *data_dir, const struct sg_store_options *opts, void **ctx, char *errbuf,
                size_t errlen);
    void (*close)(void *ctx);
    int (*begin)(void *ctx, bool write, void **handle);
    int (*commit)(void *ctx, void *handle, bool write, enum sg_store_durability durability);
    void (*abort)(void *ctx, void *handle, bool write);
    int (*get)(void *ctx, void *handle, enum sg_store_db db, const void *key, size_t klen,
               const void **val, size_t *vlen);
    int (*put)(void *ctx, void *handle, enum sg_store_db db, const void *key, size_t klen,
               const void *val, size_t vlen, unsigned flags);
    int (*take)(void *ctx, void *handle, enum sg_store_db db, const void *key, size_t klen,
                void **val, size_t *vlen);
    int (*del)(void *ctx, void *handle, enum sg_store_db db, const void *key, size_t klen,
               const void *val, size_t vlen);
    int (*scan)(void *ctx, void *handle, enum sg_store_db db, const void *start, size_t slen,
                size_t prefix_len, sg_store_scan_fn fn, void *arg);
    int (*stats)(void *ctx, struct sg_store_stats *out);
    int (*sync)(void *ctx);
    /* Maintenance (ssogate-admin); NULL when the backend has none (SG_EINVAL). */
    int (*backup)(void *ctx, const char *dir, char *errbuf, size_t errlen);
    int (*other_users)(void *ctx, unsigned *count);
    int (*restore)(void *backup_ctx, const char *data_dir, char *errbuf, size_t errlen);
};

/*
 * Writes a consistent, compacted copy of the store into dir (created 0700
 * when missing; it must hold no store yet), from one read snapshot, while
 * the gateway may go on writing. Returns 0, SG_EEXIST, SG_EIO or SG_ESTORE
 * with a reason in errbuf.
 */
int sg_store_backup(struct sg_store *store, const char *dir, char *errbuf, size_t errlen);

/* *count gets the number of other processes that have the store open (a running gateway). */
int sg_store_other_users(struct sg_store *store, unsigned *count);

/*
 * Replaces the store in data_dir by backup (an open store, e.g. a directory
 * sg_store_backup wrote; borrowed): a compacted copy is written beside the
 * store and renamed over it, so the store is either the old one or the
 * backup. No process may have data_dir's store open (check with
 * sg_store_other_users first). Returns 0, SG_EIO or SG_EINVAL with a reason.
 */
int sg_store_restore(struct sg_store *backup, const char *data_dir, char *errbuf, size_t errlen);

/* The LMDB backend (gateway/store_lmdb.c). */
extern const struct sg_store_backend sg_store_lmdb;

/* Big-endian integers for record layouts. p must hold 8 (or 4) bytes. */
static inline void sg_store_put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static inline uint64_t sg_store_get_be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static inline void sg_store_put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static inline uint32_t sg_store_get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

#endif
