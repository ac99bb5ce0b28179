/*
 * The LMDB store: one environment under the data directory holding sessions,
 * tenant and user links, and the JWKS cache, in these named databases:
 *
 *   meta               "schema_version" -> decimal text; bookkeeping keys
 *   sessions           SHA-256(session id) -> session record (session.c)
 *   sessions_by_owner  SHA-256(owner) -> SHA-256(session id), dupsort
 *   tenant_by_psa      psa_tenant -> idp_tenant                    (links.c)
 *   tenant_by_idp      idp_tenant -> psa_tenant
 *   user_by_psa        psa_tenant NUL psa_user -> idp_tenant NUL idp_sub
 *   user_by_idp        idp_tenant NUL idp_sub -> psa_tenant NUL psa_user
 *   jwks               issuer -> fetch time and JWKS JSON (jwks.c)
 *   logins             SHA-256(state) -> login state in flight (loginstate.c)
 *
 * Durability policy. The environment is opened with MDB_NOSYNC and
 * MDB_WRITEMAP: a commit writes its pages into the shared map (the OS page
 * cache) and returns without fsync or any write system call, so a session
 * write never waits for the disk on the event loop. Committed data
 * survives the process dying in any way (kill -9 included); only a power loss
 * or kernel crash can lose the commits since the last flush, and LMDB stays
 * consistent (it then shows an older snapshot). Link changes are rare and the
 * user is told they succeeded, so they commit with durable = true, which
 * fsyncs before returning. sg_store_sync flushes everything: the gateway calls
 * it once the event loop has stopped; in between, the kernel writes dirty
 * pages back on its own (within about 30 s).
 *
 * Processes. Several worker processes may share one data directory; each
 * opens its own store after fork (an environment must never be used in a
 * child of the process that opened it). Reader slots left by processes that
 * died are reclaimed at open. Write transactions are serialised across
 * processes by LMDB, so every transaction here is short.
 *
 * Values returned by LMDB are valid only until their transaction ends: every
 * getter copies them out.
 */
#ifndef SSOGATE_STORE_H
#define SSOGATE_STORE_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SG_STORE_SCHEMA_VERSION      1
#define SG_STORE_DEFAULT_MAP_SIZE    ((size_t)1 << 30)
#define SG_STORE_DEFAULT_MAX_READERS 1024
/* Longest LMDB key in this build (mdb_env_get_maxkeysize of a default build). */
#define SG_STORE_KEY_MAX 511

enum sg_store_db {
    SG_STORE_DB_META = 0,
    SG_STORE_DB_SESSIONS,
    SG_STORE_DB_SESSIONS_BY_OWNER,
    SG_STORE_DB_TENANT_BY_PSA,
    SG_STORE_DB_TENANT_BY_IDP,
    SG_STORE_DB_USER_BY_PSA,
    SG_STORE_DB_USER_BY_IDP,
    SG_STORE_DB_JWKS,
    SG_STORE_DB_LOGINS, /* login states in flight, shared by the workers */
    SG_STORE_DB_COUNT
};

struct sg_store;

struct sg_store_options {
    size_t map_size;      /* bytes; 0 = SG_STORE_DEFAULT_MAP_SIZE */
    unsigned max_readers; /* reader slots shared by all processes; 0 = default */
};

struct sg_store_stats {
    size_t entries[SG_STORE_DB_COUNT]; /* records per database (dupsort: every value) */
    size_t map_size;                   /* bytes reserved for the map */
    size_t map_used;                   /* bytes of the map in use */
};

/*
 * A transaction. Callers keep it on their stack; it is valid from
 * sg_store_txn_begin until sg_store_txn_commit or sg_store_txn_abort.
 */
struct sg_store_txn {
    struct sg_store *store; /* borrowed */
    MDB_txn *txn;
    bool write;
};

/*
 * Opens (creating when missing) the store in data_dir with default options.
 * See sg_store_open_with.
 */
int sg_store_open(const char *data_dir, struct sg_store **out, char *errbuf, size_t errlen);

/*
 * Creates data_dir (mode 0700) if it is missing, opens the LMDB environment in
 * it and every named database, reclaims reader slots of dead processes, and
 * checks the schema version: a new store gets SG_STORE_SCHEMA_VERSION, a store
 * with a newer (or unreadable) version is refused. opts is borrowed and may be
 * NULL for defaults. Returns 0 and hands back a new store in *out, or
 * SG_EINVAL, SG_EIO (directory) or SG_ESTORE (LMDB, schema) with a message in
 * errbuf (when errlen > 0) and *out left NULL.
 */
int sg_store_open_with(const char *data_dir, const struct sg_store_options *opts,
                       struct sg_store **out, char *errbuf, size_t errlen);

/* Closes the environment and frees the store. No transaction may be open. NULL-safe. */
void sg_store_close(struct sg_store *store);

/*
 * Flushes every commit to disk (msync/fsync). Blocks for the duration of the
 * flush: never call it on the event loop's request path. Returns 0 or SG_EIO.
 */
int sg_store_sync(struct sg_store *store);

/* Fills *out with record counts per database and the map usage. Returns 0 or SG_ESTORE. */
int sg_store_stats(struct sg_store *store, struct sg_store_stats *out);

/* The name of a database (for metrics labels); a static string. */
const char *sg_store_db_name(enum sg_store_db db);

/*
 * Transactions, for the modules built on the store (session.c, links.c, loginstate.c, jwks.c).
 *
 * Begins a read-only (write = false) or write transaction in *out. A write
 * transaction waits for any other process's write transaction to finish.
 * Returns 0 or SG_ESTORE.
 */
int sg_store_txn_begin(struct sg_store *store, bool write, struct sg_store_txn *out);

/*
 * Commits a write transaction (ends a read one). With durable, the commit is
 * fsynced before returning. Returns 0, SG_ETOOBIG (store full), SG_ESTORE, or
 * SG_EIO when the commit succeeded but the fsync failed. The transaction is
 * over in every case.
 */
int sg_store_txn_commit(struct sg_store_txn *txn, bool durable);

/* Discards a transaction. Safe on a transaction that is already over. */
void sg_store_txn_abort(struct sg_store_txn *txn);

/* The handle of a named database, valid in every transaction of this store. */
MDB_dbi sg_store_dbi(const struct sg_store *store, enum sg_store_db db);

/* Maps an LMDB return code to an SG_E* code: NOTFOUND -> SG_ENOENT,
 * KEYEXIST -> SG_EEXIST, MAP_FULL -> SG_ETOOBIG, others -> SG_ESTORE. */
int sg_store_error(int mdb_rc);

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
