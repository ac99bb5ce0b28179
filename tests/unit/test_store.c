/*
 * Unit tests of the store interface, its LMDB backend, sessions and links,
 * against a real LMDB environment in a temporary directory.
 */
#include "../../gateway/b64url.c"
#include "../../gateway/common.c"
#include "../../gateway/jose.c"
#include "../../gateway/json.c"
#include "../../gateway/jwks.c"
#include "../../gateway/links.c"
#include "../../gateway/session.c"
#include "../../gateway/store.c"
#include "../../gateway/store_lmdb.c"
#include "../../gateway/token.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <ftw.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOW ((int64_t)1700000000)

/* jwks.c logs and counts; these tests look at the store only. */
void sg_log(enum sg_log_level level, const char *event, const char *fmt, ...)
{
}

void sg_log_fields(enum sg_log_level level, const char *event, const struct sg_log_field *fields,
                   size_t count)
{
}

void sg_metrics_error(enum sg_metric_error kind)
{
}

struct fixture {
    char dir[64];
    struct sg_store *store;
};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *fx = sg_calloc(1, sizeof(*fx));
    strcpy(fx->dir, "/tmp/sg-store-XXXXXX");
    if (mkdtemp(fx->dir) == NULL)
        return -1;
    char err[256];
    if (sg_store_open(fx->dir, &fx->store, err, sizeof(err)) != 0)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    sg_store_close(fx->store);
    nftw(fx->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

static void reopen(struct fixture *fx)
{
    char err[256] = "";
    sg_store_close(fx->store);
    fx->store = NULL;
    assert_int_equal(sg_store_open(fx->dir, &fx->store, err, sizeof(err)), 0);
}

/* A link-mode session (psa_tenant and psa_user set) or claims-mode (NULL) record. */
static struct sg_session make_record(char *psa_tenant, char *psa_user, char *sub)
{
    struct sg_session rec = {
        .created_at = NOW,
        .last_seen = NOW,
        .idle_timeout_s = 1800,
        .expires_at = NOW + 43200,
        .idp_issuer = (char *)"https://idp.example",
        .idp_sub = sub,
        .idp_tenant = (char *)"idp-t1",
        .email = (char *)"user@example.com",
        .psa_tenant = psa_tenant,
        .psa_user = psa_user,
        .id_token = (char *)"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
    };
    return rec;
}

static void new_session(struct sg_store *store, char id[SG_SESSION_ID_SIZE], char *psa_tenant,
                        char *psa_user, char *sub)
{
    sg_session_new_id(id);
    struct sg_session rec = make_record(psa_tenant, psa_user, sub);
    assert_int_equal(sg_session_create(store, id, &rec), 0);
}

static size_t db_entries(struct sg_store *store, enum sg_store_db db)
{
    struct sg_store_stats stats;
    assert_int_equal(sg_store_stats(store, &stats), 0);
    return stats.entries[db];
}

/* Writes a raw value under key in db, bypassing every module. */
static void raw_put(struct sg_store *store, enum sg_store_db db, const void *key, size_t klen,
                    const void *val, size_t vlen)
{
    struct sg_store_txn txn;
    assert_int_equal(sg_store_txn_begin(store, true, &txn), 0);
    assert_int_equal(sg_store_put(&txn, db, key, klen, val, vlen, 0), 0);
    assert_int_equal(sg_store_txn_commit(&txn, SG_STORE_LAZY), 0);
}

/* Reads a raw value into buf (returns its length, or -1 when missing). */
static long raw_get(struct sg_store *store, enum sg_store_db db, const void *key, size_t klen,
                    void *buf, size_t size)
{
    struct sg_store_txn txn;
    assert_int_equal(sg_store_txn_begin(store, false, &txn), 0);
    const void *val;
    size_t vlen;
    long len = -1;
    if (sg_store_get(&txn, db, key, klen, &val, &vlen) == 0) {
        len = (long)vlen;
        memcpy(buf, val, vlen < size ? vlen : size);
    }
    sg_store_txn_abort(&txn);
    return len;
}

static void id_hash(const char *id, unsigned char out[32])
{
    SHA256((const unsigned char *)id, strlen(id), out);
}

/* ---- store ---- */

static void test_schema_created(void **state)
{
    struct fixture *fx = *state;
    char buf[16];
    long len = raw_get(fx->store, SG_STORE_DB_META, "schema_version", 14, buf, sizeof(buf));
    assert_int_equal(len, 1);
    assert_memory_equal(buf, "1", 1);

    struct stat st;
    assert_int_equal(stat(fx->dir, &st), 0);
    reopen(fx);
    assert_int_equal(raw_get(fx->store, SG_STORE_DB_META, "schema_version", 14, buf, sizeof(buf)),
                     1);
}

static void test_schema_newer_refused(void **state)
{
    struct fixture *fx = *state;
    raw_put(fx->store, SG_STORE_DB_META, "schema_version", 14, "2", 1);
    sg_store_close(fx->store);
    fx->store = NULL;
    char err[256] = "";
    struct sg_store *store = (struct sg_store *)&err;
    assert_int_equal(sg_store_open(fx->dir, &store, err, sizeof(err)), SG_ESTORE);
    assert_null(store);
    assert_non_null(strstr(err, "schema version 2"));

    /* Restore a readable store, then try a garbage version. */
    struct sg_store_options opts = {0};
    MDB_env *env;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_open(env, fx->dir, 0, 0600), 0);
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    char key_text[] = "schema_version";
    char val_text[] = "1x";
    MDB_val k = {14, key_text};
    MDB_val v = {2, val_text};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    assert_int_equal(sg_store_open_with(fx->dir, &opts, &store, err, sizeof(err)), SG_ESTORE);
    assert_non_null(strstr(err, "unreadable"));
}

static void test_open_directory(void **state)
{
    struct fixture *fx = *state;
    char path[128];
    char err[256] = "";
    struct sg_store *store = NULL;

    snprintf(path, sizeof(path), "%s/fresh", fx->dir);
    assert_int_equal(sg_store_open(path, &store, err, sizeof(err)), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    sg_store_close(store);

    snprintf(path, sizeof(path), "%s/missing/parent", fx->dir);
    assert_int_equal(sg_store_open(path, &store, err, sizeof(err)), SG_EIO);
    assert_non_null(strstr(err, path));

    snprintf(path, sizeof(path), "%s/fresh/data.mdb", fx->dir);
    assert_int_equal(sg_store_open(path, &store, err, sizeof(err)), SG_EIO);
    assert_int_equal(sg_store_open("", &store, NULL, 0), SG_EINVAL);
    sg_store_close(NULL);
}

static void test_map_full(void **state)
{
    struct fixture *fx = *state;
    char path[128];
    char err[256] = "";
    snprintf(path, sizeof(path), "%s/small", fx->dir);
    struct sg_store_options opts = {.map_size = 256 * 1024, .max_readers = 8};
    struct sg_store *store = NULL;
    assert_int_equal(sg_store_open_with(path, &opts, &store, err, sizeof(err)), 0);
    char *doc = sg_calloc(1, 100 * 1024);
    memset(doc, 'x', 100 * 1024);
    int err_code = 0;
    char iss[32];
    for (int i = 0; i < 10 && err_code == 0; i++) {
        snprintf(iss, sizeof(iss), "https://idp%d", i);
        err_code = sg_jwks_store_put(store, iss, doc, 100 * 1024, NOW);
    }
    assert_int_equal(err_code, SG_ETOOBIG);
    /* A failed write leaves the store usable. */
    char *json = NULL;
    size_t len = 0;
    assert_int_equal(sg_jwks_store_get(store, "https://idp0", &json, &len, NULL), 0);
    assert_int_equal(len, 100 * 1024);
    free(json);
    free(doc);
    sg_store_close(store);
}

static void test_stats(void **state)
{
    struct fixture *fx = *state;
    char id[SG_SESSION_ID_SIZE];
    new_session(fx->store, id, "psa-t1", "alice", "sub-a");
    new_session(fx->store, id, NULL, NULL, "sub-b");
    assert_int_equal(sg_links_tenant_put(fx->store, "psa-t1", "idp-t1"), 0);
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "alice", "idp-t1", "sub-a", NULL), 0);
    assert_int_equal(sg_jwks_store_put(fx->store, "https://idp.example", "{}", 2, NOW), 0);

    struct sg_store_stats stats;
    assert_int_equal(sg_store_stats(fx->store, &stats), 0);
    assert_int_equal(stats.entries[SG_STORE_DB_META], 1);
    assert_int_equal(stats.entries[SG_STORE_DB_SESSIONS], 2);
    assert_int_equal(stats.entries[SG_STORE_DB_SESSIONS_BY_OWNER], 3);
    assert_int_equal(stats.entries[SG_STORE_DB_TENANT_BY_PSA], 1);
    assert_int_equal(stats.entries[SG_STORE_DB_TENANT_BY_IDP], 1);
    assert_int_equal(stats.entries[SG_STORE_DB_USER_BY_PSA], 1);
    assert_int_equal(stats.entries[SG_STORE_DB_USER_BY_IDP], 1);
    assert_int_equal(stats.entries[SG_STORE_DB_JWKS], 1);
    assert_int_equal(stats.map_size, SG_STORE_DEFAULT_MAP_SIZE);
    assert_true(stats.map_used > 0 && stats.map_used < stats.map_size);
    assert_string_equal(sg_store_db_name(SG_STORE_DB_SESSIONS_BY_OWNER), "sessions_by_owner");
    assert_string_equal(sg_store_db_name(SG_STORE_DB_COUNT), "unknown");
    assert_int_equal(sg_store_sync(fx->store), 0);
}

static void test_nested_read_transactions(void **state)
{
    struct fixture *fx = *state;
    struct sg_store_txn outer;
    struct sg_store_txn inner;
    assert_int_equal(sg_store_txn_begin(fx->store, false, &outer), 0);
    assert_int_equal(sg_store_txn_begin(fx->store, false, &inner), 0);
    assert_ptr_not_equal(outer.handle, inner.handle);
    /* A write while a read is open in the same thread works with MDB_NOTLS. */
    assert_int_equal(sg_jwks_store_put(fx->store, "https://i", "{}", 2, NOW), 0);
    assert_int_equal(sg_store_txn_commit(&inner, SG_STORE_LAZY), 0);
    sg_store_txn_abort(&outer);
    sg_store_txn_abort(&outer);
    assert_null(outer.handle);
    char *json = NULL;
    size_t len;
    assert_int_equal(sg_jwks_store_get(fx->store, "https://i", &json, &len, NULL), 0);
    free(json);
}

/* ---- the store interface ---- */

/* Puts val under key in db in a transaction of its own, committed lazily. */
static void put_one(struct sg_store *store, enum sg_store_db db, const char *key, const char *val)
{
    struct sg_store_txn txn;
    assert_int_equal(sg_store_txn_begin(store, true, &txn), 0);
    assert_int_equal(sg_store_put(&txn, db, key, strlen(key), val, strlen(val), 0), 0);
    assert_int_equal(sg_store_txn_commit(&txn, SG_STORE_LAZY), 0);
}

/* Asserts that key holds exactly want in db (NULL: that it is missing). */
static void assert_value(struct sg_store *store, enum sg_store_db db, const char *key,
                         const char *want)
{
    struct sg_store_txn txn;
    assert_int_equal(sg_store_txn_begin(store, false, &txn), 0);
    const void *val = NULL;
    size_t vlen = 0;
    int err = sg_store_get(&txn, db, key, strlen(key), &val, &vlen);
    if (want == NULL) {
        assert_int_equal(err, SG_ENOENT);
        assert_null(val);
    } else {
        assert_int_equal(err, 0);
        assert_int_equal(vlen, strlen(want));
        assert_memory_equal(val, want, vlen);
    }
    sg_store_txn_abort(&txn);
}

static void test_iface_get_put(void **state)
{
    struct fixture *fx = *state;
    assert_value(fx->store, SG_STORE_DB_JWKS, "k1", NULL);
    put_one(fx->store, SG_STORE_DB_JWKS, "k1", "one");
    assert_value(fx->store, SG_STORE_DB_JWKS, "k1", "one");
    /* A plain put replaces. */
    put_one(fx->store, SG_STORE_DB_JWKS, "k1", "uno");
    assert_value(fx->store, SG_STORE_DB_JWKS, "k1", "uno");
    /* Tables are separate namespaces. */
    assert_value(fx->store, SG_STORE_DB_LOGINS, "k1", NULL);

    struct sg_store_txn txn;
    assert_int_equal(sg_store_txn_begin(fx->store, true, &txn), 0);
    /* No-overwrite refuses an existing key and leaves its value. */
    assert_int_equal(sg_store_put(&txn, SG_STORE_DB_JWKS, "k1", 2, "eins", 4, SG_STORE_NOOVERWRITE),
                     SG_EEXIST);
    assert_int_equal(sg_store_put(&txn, SG_STORE_DB_JWKS, "k2", 2, "zwei", 4, SG_STORE_NOOVERWRITE),
                     0);
    /* An unknown flag, a NULL value with a length, an unknown table: refused. */
    assert_int_equal(sg_store_put(&txn, SG_STORE_DB_JWKS, "k3", 2, "x", 1, 0x80), SG_EINVAL);
    assert_int_equal(sg_store_put(&txn, SG_STORE_DB_JWKS, "k3", 2, NULL, 1, 0), SG_EINVAL);
    assert_int_equal(sg_store_put(&txn, SG_STORE_DB_COUNT, "k3", 2, "x", 1, 0), SG_EINVAL);
    /* An empty value is a value. */
    assert_int_equal(sg_store_put(&txn, SG_STORE_DB_JWKS, "k4", 2, NULL, 0, 0), 0);
    /* A write sees its own earlier writes. */
    const void *val;
    size_t vlen;
    assert_int_equal(sg_store_get(&txn, SG_STORE_DB_JWKS, "k2", 2, &val, &vlen), 0);
    assert_int_equal(vlen, 4);
    assert_memory_equal(val, "zwei", 4);
    assert_int_equal(sg_store_txn_commit(&txn, SG_STORE_LAZY), 0);
    assert_value(fx->store, SG_STORE_DB_JWKS, "k1", "uno");
    assert_value(fx->store, SG_STORE_DB_JWKS, "k2", "zwei");
    assert_value(fx->store, SG_STORE_DB_JWKS, "k3", NULL);
    assert_value(fx->store, SG_STORE_DB_JWKS, "k4", "");

    /* A read transaction cannot write, take or delete. */
    assert_int_equal(sg_store_txn_begin(fx->store, false, &txn), 0);
    assert_int_equal(sg_store_put(&txn, SG_STORE_DB_JWKS, "k5", 2, "x", 1, 0), SG_EINVAL);
    void *copy = (void *)&txn;
    assert_int_equal(sg_store_take(&txn, SG_STORE_DB_JWKS, "k1", 2, &copy, &vlen), SG_EINVAL);
    assert_null(copy);
    assert_int_equal(sg_store_delete(&txn, SG_STORE_DB_JWKS, "k1", 2, NULL, 0), SG_EINVAL);
    sg_store_txn_abort(&txn);
    assert_value(fx->store, SG_STORE_DB_JWKS, "k1", "uno");
    assert_value(fx->store, SG_STORE_DB_JWKS, "k5", NULL);
}

static void test_iface_take(void **state)
{
    struct fixture *fx = *state;
    put_one(fx->store, SG_STORE_DB_LOGINS, "state", "record");
    struct sg_store_txn txn;
    void *val = NULL;
    size_t vlen = 0;
    assert_int_equal(sg_store_txn_begin(fx->store, true, &txn), 0);
    assert_int_equal(sg_store_take(&txn, SG_STORE_DB_LOGINS, "state", 5, &val, &vlen), 0);
    assert_int_equal(vlen, 6);
    assert_memory_equal(val, "record", 6);
    free(val);
    /* Taken: gone within the transaction already. */
    assert_int_equal(sg_store_take(&txn, SG_STORE_DB_LOGINS, "state", 5, &val, &vlen), SG_ENOENT);
    assert_null(val);
    assert_int_equal(vlen, 0);
    assert_int_equal(sg_store_txn_commit(&txn, SG_STORE_LAZY), 0);

    /* And for every later transaction: a second take is ENOENT. */
    assert_int_equal(sg_store_txn_begin(fx->store, true, &txn), 0);
    assert_int_equal(sg_store_take(&txn, SG_STORE_DB_LOGINS, "state", 5, &val, &vlen), SG_ENOENT);
    sg_store_txn_abort(&txn);
    assert_value(fx->store, SG_STORE_DB_LOGINS, "state", NULL);

    /* A take in an aborted transaction takes nothing. */
    put_one(fx->store, SG_STORE_DB_LOGINS, "again", "r2");
    assert_int_equal(sg_store_txn_begin(fx->store, true, &txn), 0);
    assert_int_equal(sg_store_take(&txn, SG_STORE_DB_LOGINS, "again", 5, &val, &vlen), 0);
    free(val);
    sg_store_txn_abort(&txn);
    assert_value(fx->store, SG_STORE_DB_LOGINS, "again", "r2");
}

static void test_iface_delete(void **state)
{
    struct fixture *fx = *state;
    put_one(fx->store, SG_STORE_DB_META, "gone", "x");
    put_one(fx->store, SG_STORE_DB_META, "kept", "y");
    struct sg_store_txn txn;
    assert_int_equal(sg_store_txn_begin(fx->store, true, &txn), 0);
    assert_int_equal(sg_store_delete(&txn, SG_STORE_DB_META, "gone", 4, NULL, 0), 0);
    assert_int_equal(sg_store_delete(&txn, SG_STORE_DB_META, "gone", 4, NULL, 0), SG_ENOENT);
    /* A value names a pair only in a multi-valued table. */
    assert_int_equal(sg_store_delete(&txn, SG_STORE_DB_META, "kept", 4, "y", 1), SG_EINVAL);
    assert_int_equal(sg_store_txn_commit(&txn, SG_STORE_LAZY), 0);
    assert_value(fx->store, SG_STORE_DB_META, "gone", NULL);
    assert_value(fx->store, SG_STORE_DB_META, "kept", "y");
}

/* Scan callback: appends "key=value;" to a string buffer. */
struct listing {
    char text[512];
    size_t calls;
    size_t stop_after; /* 0: never stop */
};

static int list_entry(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct listing *l = arg;
    size_t used = strlen(l->text);
    snprintf(l->text + used, sizeof(l->text) - used, "%.*s=%.*s;", (int)klen, (const char *)key,
             (int)vlen, (const char *)val);
    l->calls++;
    return l->stop_after != 0 && l->calls == l->stop_after ? SG_STORE_STOP : 0;
}

static int fail_entry(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    size_t *calls = arg;
    (*calls)++;
    return SG_ETIMEOUT;
}

static void scan_text(struct sg_store *store, enum sg_store_db db, const char *start,
                      size_t prefix_len, size_t stop_after, const char *want)
{
    struct sg_store_txn txn;
    struct listing l = {.text = "", .calls = 0, .stop_after = stop_after};
    assert_int_equal(sg_store_txn_begin(store, false, &txn), 0);
    assert_int_equal(sg_store_scan(&txn, db, start, start != NULL ? strlen(start) : 0, prefix_len,
                                   list_entry, &l),
                     0);
    sg_store_txn_abort(&txn);
    assert_string_equal(l.text, want);
}

static void test_iface_scan(void **state)
{
    struct fixture *fx = *state;
    /* Written out of order: a scan answers in unsigned byte order, shorter first. */
    const char *keys[] = {"b", "abc", "a", "\xff", "ab", "aa", "abd", "ac"};
    for (size_t i = 0; i < SG_ARRAY_LEN(keys); i++)
        put_one(fx->store, SG_STORE_DB_TENANT_BY_IDP, keys[i], "v");
    scan_text(fx->store, SG_STORE_DB_TENANT_BY_IDP, NULL, 0, 0,
              "a=v;aa=v;ab=v;abc=v;abd=v;ac=v;b=v;\xff=v;");
    /* From a key that is not there: the next one on. */
    scan_text(fx->store, SG_STORE_DB_TENANT_BY_IDP, "aba", 0, 0, "abc=v;abd=v;ac=v;b=v;\xff=v;");
    /* A prefix bounds the scan on both sides. */
    scan_text(fx->store, SG_STORE_DB_TENANT_BY_IDP, "ab", 2, 0, "ab=v;abc=v;abd=v;");
    scan_text(fx->store, SG_STORE_DB_TENANT_BY_IDP, "abc", 2, 0, "abc=v;abd=v;");
    scan_text(fx->store, SG_STORE_DB_TENANT_BY_IDP, "z", 1, 0, "");
    /* The callback may stop early, which is not an error. */
    scan_text(fx->store, SG_STORE_DB_TENANT_BY_IDP, NULL, 0, 2, "a=v;aa=v;");
    /* An empty table. */
    scan_text(fx->store, SG_STORE_DB_USER_BY_IDP, NULL, 0, 0, "");

    struct sg_store_txn txn;
    assert_int_equal(sg_store_txn_begin(fx->store, false, &txn), 0);
    size_t calls = 0;
    /* A callback's error ends the scan and is its result. */
    assert_int_equal(sg_store_scan(&txn, SG_STORE_DB_TENANT_BY_IDP, NULL, 0, 0, fail_entry, &calls),
                     SG_ETIMEOUT);
    assert_int_equal(calls, 1);
    /* A prefix longer than the start key, a missing callback: refused. */
    assert_int_equal(sg_store_scan(&txn, SG_STORE_DB_TENANT_BY_IDP, "a", 1, 2, fail_entry, &calls),
                     SG_EINVAL);
    assert_int_equal(sg_store_scan(&txn, SG_STORE_DB_TENANT_BY_IDP, "a", 1, 1, NULL, &calls),
                     SG_EINVAL);
    assert_int_equal(calls, 1);
    sg_store_txn_abort(&txn);
}

static void test_iface_multi(void **state)
{
    struct fixture *fx = *state;
    assert_true(sg_store_db_multi(SG_STORE_DB_SESSIONS_BY_OWNER));
    assert_false(sg_store_db_multi(SG_STORE_DB_SESSIONS));
    assert_false(sg_store_db_multi(SG_STORE_DB_COUNT));
    unsigned char owner[32];
    unsigned char other[32];
    memset(owner, 'o', sizeof(owner));
    memset(other, 'p', sizeof(other));
    char v1[33] = "11111111111111111111111111111111";
    char v2[33] = "22222222222222222222222222222222";
    char v3[33] = "33333333333333333333333333333333";
    struct sg_store_txn txn;
    assert_int_equal(sg_store_txn_begin(fx->store, true, &txn), 0);
    enum sg_store_db db = SG_STORE_DB_SESSIONS_BY_OWNER;
    assert_int_equal(sg_store_put(&txn, db, owner, 32, v3, 32, 0), 0);
    assert_int_equal(sg_store_put(&txn, db, owner, 32, v1, 32, SG_STORE_NOOVERWRITE), 0);
    assert_int_equal(sg_store_put(&txn, db, owner, 32, v2, 32, SG_STORE_NOOVERWRITE), 0);
    /* No-overwrite refuses the same pair only. */
    assert_int_equal(sg_store_put(&txn, db, owner, 32, v2, 32, SG_STORE_NOOVERWRITE), SG_EEXIST);
    assert_int_equal(sg_store_put(&txn, db, other, 32, v2, 32, 0), 0);
    /* A value of a multi-valued table is bounded like a key. */
    char big[SG_STORE_KEY_MAX + 1];
    memset(big, 'b', sizeof(big));
    assert_int_equal(sg_store_put(&txn, db, owner, 32, big, sizeof(big), 0), SG_ETOOBIG);
    assert_int_equal(sg_store_txn_commit(&txn, SG_STORE_LAZY), 0);
    assert_int_equal(db_entries(fx->store, db), 4);

    /* The values of one key come in order, and only that key's. */
    struct listing l = {.text = ""};
    assert_int_equal(sg_store_txn_begin(fx->store, false, &txn), 0);
    assert_int_equal(sg_store_scan(&txn, db, owner, 32, 32, list_entry, &l), 0);
    sg_store_txn_abort(&txn);
    assert_int_equal(l.calls, 3);
    char want[512];
    snprintf(want, sizeof(want), "%.32s=%s;%.32s=%s;%.32s=%s;", (char *)owner, v1, (char *)owner,
             v2, (char *)owner, v3);
    assert_string_equal(l.text, want);

    assert_int_equal(sg_store_txn_begin(fx->store, true, &txn), 0);
    /* One pair, then a missing pair, then every value of a key. */
    assert_int_equal(sg_store_delete(&txn, db, owner, 32, v2, 32), 0);
    assert_int_equal(sg_store_delete(&txn, db, owner, 32, v2, 32), SG_ENOENT);
    void *val = NULL;
    size_t vlen = 0;
    assert_int_equal(sg_store_take(&txn, db, owner, 32, &val, &vlen), 0);
    assert_int_equal(vlen, 32);
    assert_memory_equal(val, v1, 32);
    free(val);
    assert_int_equal(sg_store_txn_commit(&txn, SG_STORE_LAZY), 0);
    assert_int_equal(db_entries(fx->store, db), 2);
    assert_int_equal(sg_store_txn_begin(fx->store, true, &txn), 0);
    assert_int_equal(sg_store_delete(&txn, db, owner, 32, NULL, 0), 0);
    assert_int_equal(sg_store_txn_commit(&txn, SG_STORE_LAZY), 0);
    assert_int_equal(db_entries(fx->store, db), 1);
}

static void test_iface_abort_discards(void **state)
{
    struct fixture *fx = *state;
    put_one(fx->store, SG_STORE_DB_META, "old", "1");
    struct sg_store_txn txn;
    assert_int_equal(sg_store_txn_begin(fx->store, true, &txn), 0);
    assert_int_equal(sg_store_put(&txn, SG_STORE_DB_META, "new", 3, "2", 1, 0), 0);
    assert_int_equal(sg_store_put(&txn, SG_STORE_DB_META, "old", 3, "changed", 7, 0), 0);
    assert_int_equal(sg_store_delete(&txn, SG_STORE_DB_META, "schema_version", 14, NULL, 0), 0);
    sg_store_txn_abort(&txn);
    assert_null(txn.handle);
    assert_value(fx->store, SG_STORE_DB_META, "new", NULL);
    assert_value(fx->store, SG_STORE_DB_META, "old", "1");
    assert_value(fx->store, SG_STORE_DB_META, "schema_version", "1");
    /* An ended transaction refuses everything, and a second commit says so. */
    const void *v;
    size_t vlen;
    assert_int_equal(sg_store_get(&txn, SG_STORE_DB_META, "old", 3, &v, &vlen), SG_EINVAL);
    assert_int_equal(sg_store_put(&txn, SG_STORE_DB_META, "x", 1, "y", 1, 0), SG_EINVAL);
    assert_int_equal(sg_store_txn_commit(&txn, SG_STORE_LAZY), SG_EINVAL);
    assert_int_equal(sg_store_txn_begin(fx->store, false, &txn), 0);
    assert_int_equal(sg_store_txn_commit(&txn, SG_STORE_LAZY), 0);
    assert_int_equal(sg_store_txn_commit(&txn, SG_STORE_LAZY), SG_EINVAL);
}

static void test_iface_commit_and_reopen(void **state)
{
    struct fixture *fx = *state;
    struct sg_store_txn txn;
    assert_int_equal(sg_store_txn_begin(fx->store, true, &txn), 0);
    assert_int_equal(sg_store_put(&txn, SG_STORE_DB_LOGINS, "lazy", 4, "L", 1, 0), 0);
    assert_int_equal(sg_store_txn_commit(&txn, SG_STORE_LAZY), 0);
    assert_int_equal(sg_store_txn_begin(fx->store, true, &txn), 0);
    assert_int_equal(sg_store_put(&txn, SG_STORE_DB_TENANT_BY_PSA, "durable", 7, "D", 1, 0), 0);
    assert_int_equal(sg_store_txn_commit(&txn, SG_STORE_DURABLE), 0);
    assert_value(fx->store, SG_STORE_DB_LOGINS, "lazy", "L");
    assert_value(fx->store, SG_STORE_DB_TENANT_BY_PSA, "durable", "D");
    reopen(fx);
    assert_value(fx->store, SG_STORE_DB_LOGINS, "lazy", "L");
    assert_value(fx->store, SG_STORE_DB_TENANT_BY_PSA, "durable", "D");
    assert_value(fx->store, SG_STORE_DB_META, "schema_version", "1");
}

static void test_iface_limits(void **state)
{
    struct fixture *fx = *state;
    char key[SG_STORE_KEY_MAX + 1];
    memset(key, 'k', sizeof(key));
    size_t big_len = SG_STORE_VALUE_MAX + 1;
    char *big = sg_malloc(big_len);
    memset(big, 'v', big_len);
    struct sg_store_txn txn;
    const void *val;
    size_t vlen;
    void *copy;
    assert_int_equal(sg_store_txn_begin(fx->store, true, &txn), 0);
    /* The longest key and the largest value are accepted... */
    assert_int_equal(
        sg_store_put(&txn, SG_STORE_DB_JWKS, key, SG_STORE_KEY_MAX, big, SG_STORE_VALUE_MAX, 0), 0);
    /* ...one byte more is SG_ETOOBIG for every operation, an empty key SG_EINVAL. */
    assert_int_equal(sg_store_put(&txn, SG_STORE_DB_JWKS, key, sizeof(key), "v", 1, 0), SG_ETOOBIG);
    assert_int_equal(sg_store_put(&txn, SG_STORE_DB_JWKS, "k", 1, big, big_len, 0), SG_ETOOBIG);
    assert_int_equal(sg_store_get(&txn, SG_STORE_DB_JWKS, key, sizeof(key), &val, &vlen),
                     SG_ETOOBIG);
    assert_int_equal(sg_store_take(&txn, SG_STORE_DB_JWKS, key, sizeof(key), &copy, &vlen),
                     SG_ETOOBIG);
    assert_int_equal(sg_store_delete(&txn, SG_STORE_DB_JWKS, key, sizeof(key), NULL, 0),
                     SG_ETOOBIG);
    assert_int_equal(sg_store_scan(&txn, SG_STORE_DB_JWKS, key, sizeof(key), 0, list_entry, NULL),
                     SG_ETOOBIG);
    assert_int_equal(sg_store_put(&txn, SG_STORE_DB_JWKS, "", 0, "v", 1, 0), SG_EINVAL);
    assert_int_equal(sg_store_put(&txn, SG_STORE_DB_JWKS, NULL, 3, "v", 1, 0), SG_EINVAL);
    assert_int_equal(sg_store_get(&txn, SG_STORE_DB_JWKS, "", 0, &val, &vlen), SG_EINVAL);
    assert_int_equal(sg_store_txn_commit(&txn, SG_STORE_LAZY), 0);

    assert_int_equal(sg_store_txn_begin(fx->store, false, &txn), 0);
    assert_int_equal(sg_store_get(&txn, SG_STORE_DB_JWKS, key, SG_STORE_KEY_MAX, &val, &vlen), 0);
    assert_int_equal(vlen, SG_STORE_VALUE_MAX);
    assert_memory_equal(val, big, SG_STORE_VALUE_MAX);
    sg_store_txn_abort(&txn);
    assert_int_equal(db_entries(fx->store, SG_STORE_DB_JWKS), 1);
    free(big);
}

/*
 * A second backend plugs in through sg_store_options.backend: a small
 * in-memory one (one table of entries, no ordering) that records what the
 * store asks of it. It shows that store.c checks every argument before a
 * backend sees it, passes the durability through, and runs the schema
 * version check over any backend.
 */
#define MEM_MAX 16

struct mem_entry {
    enum sg_store_db db;
    char key[32];
    size_t klen;
    char val[32];
    size_t vlen;
};

struct mem_backend {
    struct mem_entry entries[MEM_MAX];
    size_t count;
    size_t calls; /* get, put, take, del and scan calls */
    int commits;
    enum sg_store_durability last_durability;
    bool closed;
};

static struct mem_backend mem;

static int mem_open(const char *data_dir, const struct sg_store_options *opts, void **ctx,
                    char *errbuf, size_t errlen)
{
    *ctx = (void *)(uintptr_t)opts->config;
    return 0;
}

static void mem_close(void *ctx)
{
    ((struct mem_backend *)ctx)->closed = true;
}

static int mem_begin(void *ctx, bool write, void **handle)
{
    *handle = ctx;
    return 0;
}

static int mem_commit(void *ctx, void *handle, bool write, enum sg_store_durability durability)
{
    struct mem_backend *m = ctx;
    if (write) {
        m->commits++;
        m->last_durability = durability;
    }
    return 0;
}

static void mem_abort(void *ctx, void *handle, bool write)
{
}

static struct mem_entry *mem_find(struct mem_backend *m, enum sg_store_db db, const void *key,
                                  size_t klen)
{
    for (size_t i = 0; i < m->count; i++) {
        struct mem_entry *e = &m->entries[i];
        if (e->db == db && e->klen == klen && memcmp(e->key, key, klen) == 0)
            return e;
    }
    return NULL;
}

static int mem_get(void *ctx, void *handle, enum sg_store_db db, const void *key, size_t klen,
                   const void **val, size_t *vlen)
{
    struct mem_backend *m = ctx;
    m->calls++;
    assert_true(klen > 0 && klen <= SG_STORE_KEY_MAX);
    struct mem_entry *e = mem_find(m, db, key, klen);
    if (e == NULL)
        return SG_ENOENT;
    *val = e->val;
    *vlen = e->vlen;
    return 0;
}

static int mem_put(void *ctx, void *handle, enum sg_store_db db, const void *key, size_t klen,
                   const void *val, size_t vlen, unsigned flags)
{
    struct mem_backend *m = ctx;
    m->calls++;
    assert_true(klen > 0 && klen <= sizeof(m->entries[0].key));
    if (vlen > sizeof(m->entries[0].val))
        return SG_ETOOBIG;
    struct mem_entry *e = mem_find(m, db, key, klen);
    if (e != NULL && (flags & SG_STORE_NOOVERWRITE))
        return SG_EEXIST;
    if (e == NULL) {
        assert_true(m->count < MEM_MAX);
        e = &m->entries[m->count++];
    }
    e->db = db;
    memcpy(e->key, key, klen);
    e->klen = klen;
    memcpy(e->val, val, vlen);
    e->vlen = vlen;
    return 0;
}

static int mem_take(void *ctx, void *handle, enum sg_store_db db, const void *key, size_t klen,
                    void **val, size_t *vlen)
{
    struct mem_backend *m = ctx;
    m->calls++;
    return SG_ENOENT;
}

static int mem_del(void *ctx, void *handle, enum sg_store_db db, const void *key, size_t klen,
                   const void *val, size_t vlen)
{
    struct mem_backend *m = ctx;
    m->calls++;
    return SG_ENOENT;
}

static int mem_scan(void *ctx, void *handle, enum sg_store_db db, const void *start, size_t slen,
                    size_t prefix_len, sg_store_scan_fn fn, void *arg)
{
    struct mem_backend *m = ctx;
    m->calls++;
    return 0;
}

static int mem_stats(void *ctx, struct sg_store_stats *out)
{
    struct mem_backend *m = ctx;
    for (size_t i = 0; i < m->count; i++)
        out->entries[m->entries[i].db]++;
    return 0;
}

static int mem_sync(void *ctx)
{
    return SG_EIO;
}

static const struct sg_store_backend mem_store = {
    .name = "memory",
    .open = mem_open,
    .close = mem_close,
    .begin = mem_begin,
    .commit = mem_commit,
    .abort = mem_abort,
    .get = mem_get,
    .put = mem_put,
    .take = mem_take,
    .del = mem_del,
    .scan = mem_scan,
    .stats = mem_stats,
    .sync = mem_sync,
};

static void test_iface_second_backend(void **state)
{
    memset(&mem, 0, sizeof(mem));
    struct sg_store_options opts = {.backend = &mem_store, .config = &mem};
    struct sg_store *store = NULL;
    char err[256] = "";
    assert_int_equal(sg_store_open_with("unused", &opts, &store, err, sizeof(err)), 0);
    /* A new store gets its schema version, committed durably. */
    assert_int_equal(mem.count, 1);
    assert_memory_equal(mem.entries[0].key, "schema_version", 14);
    assert_memory_equal(mem.entries[0].val, "1", 1);
    assert_int_equal(mem.commits, 1);
    assert_int_equal(mem.last_durability, SG_STORE_DURABLE);

    /* Data goes through the backend; a lazy commit says so. */
    put_one(store, SG_STORE_DB_SESSIONS, "s", "rec");
    assert_int_equal(mem.last_durability, SG_STORE_LAZY);
    assert_value(store, SG_STORE_DB_SESSIONS, "s", "rec");
    struct sg_store_stats stats;
    assert_int_equal(sg_store_stats(store, &stats), 0);
    assert_int_equal(stats.entries[SG_STORE_DB_SESSIONS], 1);
    assert_int_equal(stats.entries[SG_STORE_DB_META], 1);
    assert_int_equal(sg_store_sync(store), SG_EIO);

    /* Bad arguments never reach the backend. */
    size_t calls = mem.calls;
    char key[SG_STORE_KEY_MAX + 1];
    memset(key, 'k', sizeof(key));
    struct sg_store_txn txn;
    const void *val;
    size_t vlen;
    assert_int_equal(sg_store_txn_begin(store, false, &txn), 0);
    assert_int_equal(sg_store_put(&txn, SG_STORE_DB_SESSIONS, "s", 1, "x", 1, 0), SG_EINVAL);
    assert_int_equal(sg_store_get(&txn, SG_STORE_DB_SESSIONS, key, sizeof(key), &val, &vlen),
                     SG_ETOOBIG);
    assert_int_equal(sg_store_get(&txn, SG_STORE_DB_SESSIONS, "", 0, &val, &vlen), SG_EINVAL);
    sg_store_txn_abort(&txn);
    assert_int_equal(mem.calls, calls);
    sg_store_close(store);
    assert_true(mem.closed);

    /* The schema check runs over any backend: another version is refused. */
    memset(&mem, 0, sizeof(mem));
    mem.count = 1;
    mem.entries[0] = (struct mem_entry){.db = SG_STORE_DB_META, .klen = 14, .vlen = 1};
    memcpy(mem.entries[0].key, "schema_version", 14);
    mem.entries[0].val[0] = '2';
    store = (struct sg_store *)&err;
    assert_int_equal(sg_store_open_with("unused", &opts, &store, err, sizeof(err)), SG_ESTORE);
    assert_null(store);
    assert_non_null(strstr(err, "schema version 2"));
    assert_true(mem.closed);
}

/*
 * A store as the code before the store interface wrote it (named LMDB
 * databases, sessions_by_owner DUPSORT | DUPFIXED, schema version 1),
 * written here with raw LMDB, opens and works through the interface; and a
 * store made through the interface has that same layout.
 */
static void test_iface_reads_existing_layout(void **state)
{
    struct fixture *fx = *state;
    char path[128];
    snprintf(path, sizeof(path), "%s/old", fx->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    MDB_env *env;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_open(env, path, 0, 0600), 0);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    MDB_dbi meta, by_owner, tenant_by_psa;
    assert_int_equal(mdb_dbi_open(txn, "meta", MDB_CREATE, &meta), 0);
    assert_int_equal(
        mdb_dbi_open(txn, "sessions_by_owner", MDB_CREATE | MDB_DUPSORT | MDB_DUPFIXED, &by_owner),
        0);
    assert_int_equal(mdb_dbi_open(txn, "tenant_by_psa", MDB_CREATE, &tenant_by_psa), 0);
    char schema_key[] = "schema_version";
    char one[] = "1";
    MDB_val k = {14, schema_key};
    MDB_val v = {1, one};
    assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
    char psa[] = "psa-t1";
    char idp[] = "idp-t1";
    k = (MDB_val){6, psa};
    v = (MDB_val){6, idp};
    assert_int_equal(mdb_put(txn, tenant_by_psa, &k, &v, 0), 0);
    unsigned char owner[32];
    unsigned char s1[32];
    unsigned char s2[32];
    memset(owner, 7, sizeof(owner));
    memset(s1, 1, sizeof(s1));
    memset(s2, 2, sizeof(s2));
    k = (MDB_val){32, owner};
    v = (MDB_val){32, s2};
    assert_int_equal(mdb_put(txn, by_owner, &k, &v, 0), 0);
    v = (MDB_val){32, s1};
    assert_int_equal(mdb_put(txn, by_owner, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    struct sg_store *store = NULL;
    char err[256] = "";
    assert_int_equal(sg_store_open(path, &store, err, sizeof(err)), 0);
    char *linked = NULL;
    assert_int_equal(sg_links_tenant_get_by_psa(store, "psa-t1", &linked), 0);
    assert_string_equal(linked, "idp-t1");
    free(linked);
    struct sg_store_txn t;
    struct listing l = {.text = ""};
    assert_int_equal(sg_store_txn_begin(store, false, &t), 0);
    assert_int_equal(
        sg_store_scan(&t, SG_STORE_DB_SESSIONS_BY_OWNER, owner, 32, 32, list_entry, &l), 0);
    sg_store_txn_abort(&t);
    assert_int_equal(l.calls, 2);
    assert_int_equal(db_entries(store, SG_STORE_DB_SESSIONS_BY_OWNER), 2);
    /* New tables are created beside the old ones; sessions work in the old store. */
    char id[SG_SESSION_ID_SIZE];
    new_session(store, id, "psa-t1", "alice", "sub-a");
    assert_int_equal(sg_session_get(store, id, NOW, NULL), 0);
    sg_store_close(store);

    /* The layout on disk is the old one: the owner index is still DUPSORT | DUPFIXED. */
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_open(env, path, MDB_RDONLY, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "sessions_by_owner", 0, &by_owner), 0);
    unsigned int flags = 0;
    assert_int_equal(mdb_dbi_flags(txn, by_owner, &flags), 0);
    assert_int_equal(flags & (MDB_DUPSORT | MDB_DUPFIXED), MDB_DUPSORT | MDB_DUPFIXED);
    MDB_stat st;
    assert_int_equal(mdb_stat(txn, by_owner, &st), 0);
    assert_int_equal(st.ms_entries, 4);
    mdb_txn_abort(txn);
    mdb_env_close(env);
}

/* ---- sessions ---- */

static void test_session_id(void **state)
{
    char a[SG_SESSION_ID_SIZE];
    char b[SG_SESSION_ID_SIZE];
    sg_session_new_id(a);
    sg_session_new_id(b);
    assert_int_equal(strlen(a), SG_SESSION_ID_LEN);
    assert_true(sg_session_id_valid(a));
    assert_string_not_equal(a, b);

    char bad[SG_SESSION_ID_SIZE + 1];
    strcpy(bad, a);
    bad[5] = '+';
    assert_false(sg_session_id_valid(bad));
    strcpy(bad, a);
    bad[SG_SESSION_ID_LEN - 1] = '\0';
    assert_false(sg_session_id_valid(bad));
    strcpy(bad, a);
    strcat(bad, "A");
    assert_false(sg_session_id_valid(bad));
    assert_false(sg_session_id_valid(NULL));
    assert_false(sg_session_id_valid(""));
}

static void test_session_roundtrip(void **state)
{
    struct fixture *fx = *state;
    char id[SG_SESSION_ID_SIZE];
    new_session(fx->store, id, "psa-t1", "alice", "sub-a");

    struct sg_session got;
    assert_int_equal(sg_session_get(fx->store, id, NOW + 10, &got), 0);
    assert_int_equal(got.created_at, NOW);
    assert_int_equal(got.last_seen, NOW);
    assert_int_equal(got.idle_timeout_s, 1800);
    assert_int_equal(got.expires_at, NOW + 43200);
    assert_string_equal(got.idp_issuer, "https://idp.example");
    assert_string_equal(got.idp_sub, "sub-a");
    assert_string_equal(got.idp_tenant, "idp-t1");
    assert_string_equal(got.email, "user@example.com");
    assert_string_equal(got.psa_tenant, "psa-t1");
    assert_string_equal(got.psa_user, "alice");
    assert_string_equal(got.id_token, "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln");
    sg_session_clear(&got);
    assert_null(got.idp_sub);
    sg_session_clear(NULL);

    /* The brief read: all but the ID token. */
    assert_int_equal(sg_session_get_brief(fx->store, id, NOW + 10, &got), 0);
    assert_int_equal(got.expires_at, NOW + 43200);
    assert_string_equal(got.idp_sub, "sub-a");
    assert_string_equal(got.psa_user, "alice");
    assert_null(got.id_token);
    sg_session_clear(&got);
    assert_int_equal(sg_session_get_brief(fx->store, id, NOW + 43200, &got), SG_ENOENT);

    /* Optional fields absent, and existence test without a record. */
    struct sg_session rec = make_record(NULL, NULL, "sub-b");
    rec.idp_issuer = NULL;
    rec.email = NULL;
    rec.id_token = NULL;
    rec.idp_tenant = NULL;
    sg_session_new_id(id);
    assert_int_equal(sg_session_create(fx->store, id, &rec), 0);
    assert_int_equal(sg_session_get(fx->store, id, NOW, NULL), 0);
    assert_int_equal(sg_session_get(fx->store, id, NOW, &got), 0);
    assert_null(got.idp_issuer);
    assert_null(got.email);
    assert_null(got.psa_tenant);
    assert_null(got.psa_user);
    assert_null(got.id_token);
    assert_string_equal(got.idp_sub, "sub-b");
    sg_session_clear(&got);

    /* Unknown and malformed ids. */
    char other[SG_SESSION_ID_SIZE];
    sg_session_new_id(other);
    assert_int_equal(sg_session_get(fx->store, other, NOW, &got), SG_ENOENT);
    assert_null(got.idp_sub);
    assert_int_equal(sg_session_get(fx->store, "short", NOW, &got), SG_EINVAL);
    assert_int_equal(sg_session_get(fx->store, NULL, NOW, &got), SG_EINVAL);

    /* Data survives closing and reopening. */
    reopen(fx);
    assert_int_equal(sg_session_get(fx->store, id, NOW, NULL), 0);
}

static void test_session_create_invalid(void **state)
{
    struct fixture *fx = *state;
    char id[SG_SESSION_ID_SIZE];
    sg_session_new_id(id);
    struct sg_session rec = make_record("psa-t1", "alice", "sub-a");

    assert_int_equal(sg_session_create(fx->store, "not-an-id", &rec), SG_EINVAL);
    rec.idp_sub = NULL;
    assert_int_equal(sg_session_create(fx->store, id, &rec), SG_EINVAL);
    rec = make_record("psa-t1", NULL, "sub-a");
    assert_int_equal(sg_session_create(fx->store, id, &rec), SG_EINVAL);
    rec = make_record(NULL, "alice", "sub-a");
    assert_int_equal(sg_session_create(fx->store, id, &rec), SG_EINVAL);
    rec = make_record("psa-t1", "alice", "");
    assert_int_equal(sg_session_create(fx->store, id, &rec), SG_EINVAL);
    rec = make_record("psa-t1", "ali\r\nX-SSO-User: admin", "sub-a");
    assert_int_equal(sg_session_create(fx->store, id, &rec), SG_EINVAL);
    /* the IdP's text not UTF-8: a lone surrogate (a JSON "\udc80"), an overlong "/", a cut
     * sequence; the PSA's ids are opaque bytes (Latin-1 here) */
    rec = make_record("psa-t1", "alice", "ad\xed\xb2\x80min");
    assert_int_equal(sg_session_create(fx->store, id, &rec), SG_EINVAL);
    rec = make_record("psa-t1", "alice", "sub\xc0\xaf");
    assert_int_equal(sg_session_create(fx->store, id, &rec), SG_EINVAL);
    rec = make_record("psa-t1", "alice", "sub-a");
    rec.email = (char *)"user@example.com\xc3";
    assert_int_equal(sg_session_create(fx->store, id, &rec), SG_EINVAL);
    rec = make_record("caf\xe9", "Zo\xebl", "sub-\xf0\x9f\x98\x80"); /* kept */
    assert_int_equal(sg_session_create(fx->store, id, &rec), 0);
    assert_int_equal(sg_session_delete(fx->store, id), 0);
    /* a record an earlier version wrote with such bytes is still read (checked when written) */
    rec = make_record("psa-t1", "alice", "sub-X");
    unsigned char *record;
    size_t len;
    assert_int_equal(sg_session_encode(&rec, &record, &len), 0);
    unsigned char *x = memchr(record, 'X', len);
    assert_non_null(x);
    *x = 0xff;
    unsigned char key[SG_SESSION_KEY_LEN];
    sg_session_key(id, key);
    assert_int_equal(sg_session_put_key(fx->store, key, record, len), 0);
    free(record);
    struct sg_session old;
    assert_int_equal(sg_session_get_brief(fx->store, id, NOW, &old), 0);
    assert_string_equal(old.idp_sub, "sub-\xff");
    sg_session_clear(&old);
    assert_int_equal(sg_session_delete(fx->store, id), 0);
    char long_name[SG_SESSION_NAME_MAX + 2];
    memset(long_name, 'n', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    rec = make_record("psa-t1", long_name, "sub-a");
    assert_int_equal(sg_session_create(fx->store, id, &rec), SG_EINVAL);
    long_name[SG_SESSION_NAME_MAX] = '\0';
    rec = make_record("psa-t1", long_name, "sub-a");
    assert_int_equal(sg_session_create(fx->store, id, &rec), 0);
    assert_int_equal(sg_session_create(fx->store, id, &rec), SG_EEXIST);

    sg_session_new_id(id);
    rec = make_record(NULL, NULL, "sub-a");
    rec.expires_at = rec.created_at;
    assert_int_equal(sg_session_create(fx->store, id, &rec), SG_EINVAL);
    char *token = sg_malloc(SG_SESSION_ID_TOKEN_MAX + 2);
    memset(token, 'a', SG_SESSION_ID_TOKEN_MAX + 1);
    token[SG_SESSION_ID_TOKEN_MAX + 1] = '\0';
    rec = make_record(NULL, NULL, "sub-a");
    rec.id_token = token;
    assert_int_equal(sg_session_create(fx->store, id, &rec), SG_EINVAL);
    token[SG_SESSION_ID_TOKEN_MAX] = '\0';
    assert_int_equal(sg_session_create(fx->store, id, &rec), 0);
    free(token);
    assert_int_equal(db_entries(fx->store, SG_STORE_DB_SESSIONS), 2);
}

struct id_search {
    const char *id;
    size_t entries;
};

/* Scan callback: the entry holds the id neither in its key nor in its value. */
static int id_absent(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct id_search *search = arg;
    search->entries++;
    assert_null(memmem(key, klen, search->id, strlen(search->id)));
    assert_null(memmem(val, vlen, search->id, strlen(search->id)));
    return 0;
}

static void test_session_key_is_hash(void **state)
{
    struct fixture *fx = *state;
    char id[SG_SESSION_ID_SIZE];
    new_session(fx->store, id, "psa-t1", "alice", "sub-a");
    unsigned char buf[64];
    assert_int_equal(raw_get(fx->store, SG_STORE_DB_SESSIONS, id, strlen(id), buf, sizeof(buf)),
                     -1);
    unsigned char hash[32];
    id_hash(id, hash);
    assert_true(raw_get(fx->store, SG_STORE_DB_SESSIONS, hash, 32, buf, sizeof(buf)) > 0);

    /* No key, and no value anywhere in the sessions databases, contains the id. */
    struct sg_store_txn txn;
    assert_int_equal(sg_store_txn_begin(fx->store, false, &txn), 0);
    enum sg_store_db dbs[] = {SG_STORE_DB_SESSIONS, SG_STORE_DB_SESSIONS_BY_OWNER};
    for (size_t d = 0; d < SG_ARRAY_LEN(dbs); d++) {
        struct id_search search = {.id = id, .entries = 0};
        assert_int_equal(sg_store_scan(&txn, dbs[d], NULL, 0, 0, id_absent, &search), 0);
        assert_true(search.entries > 0);
    }
    sg_store_txn_abort(&txn);
}

static void test_session_absolute_expiry(void **state)
{
    struct fixture *fx = *state;
    char id[SG_SESSION_ID_SIZE];
    sg_session_new_id(id);
    struct sg_session rec = make_record("psa-t1", "alice", "sub-a");
    rec.idle_timeout_s = 0;
    rec.expires_at = NOW + 100;
    assert_int_equal(sg_session_create(fx->store, id, &rec), 0);
    assert_int_equal(sg_session_get(fx->store, id, NOW + 99, NULL), 0);
    assert_int_equal(db_entries(fx->store, SG_STORE_DB_SESSIONS_BY_OWNER), 2);
    assert_int_equal(sg_session_get(fx->store, id, NOW + 100, NULL), SG_ENOENT);
    /* The expired record and its index entries are gone. */
    assert_int_equal(db_entries(fx->store, SG_STORE_DB_SESSIONS), 0);
    assert_int_equal(db_entries(fx->store, SG_STORE_DB_SESSIONS_BY_OWNER), 0);
    assert_int_equal(sg_session_get(fx->store, id, NOW, NULL), SG_ENOENT);
}

static void test_session_idle_expiry_and_touch(void **state)
{
    struct fixture *fx = *state;
    char id[SG_SESSION_ID_SIZE];
    sg_session_new_id(id);
    struct sg_session rec = make_record(NULL, NULL, "sub-a");
    rec.idle_timeout_s = 300; /* touch interval: 30 s */
    assert_int_equal(sg_session_create(fx->store, id, &rec), 0);

    struct sg_session got;
    /* Due exactly when sg_session_touch would write: a holder of the record skips the read. */
    assert_false(sg_session_touch_due(&rec, NOW + 29));
    assert_true(sg_session_touch_due(&rec, NOW + 30));
    struct sg_session no_idle = rec;
    no_idle.idle_timeout_s = 0; /* no idle limit: the default interval */
    assert_false(sg_session_touch_due(&no_idle, NOW + SG_SESSION_TOUCH_INTERVAL_S - 1));
    assert_true(sg_session_touch_due(&no_idle, NOW + SG_SESSION_TOUCH_INTERVAL_S));
    /* Within the interval nothing is written. */
    assert_int_equal(sg_session_touch(fx->store, id, NOW + 29), 0);
    assert_int_equal(sg_session_get(fx->store, id, NOW + 29, &got), 0);
    assert_int_equal(got.last_seen, NOW);
    sg_session_clear(&got);
    /* After it, last_seen moves and the session lives past the first idle deadline. */
    assert_int_equal(sg_session_touch(fx->store, id, NOW + 200), 0);
    assert_int_equal(sg_session_get(fx->store, id, NOW + 400, &got), 0);
    assert_int_equal(got.last_seen, NOW + 200);
    sg_session_clear(&got);
    /* A clock that went back never moves last_seen backwards. */
    assert_int_equal(sg_session_touch(fx->store, id, NOW + 100), 0);
    assert_int_equal(sg_session_get(fx->store, id, NOW + 201, &got), 0);
    assert_int_equal(got.last_seen, NOW + 200);
    sg_session_clear(&got);

    assert_int_equal(sg_session_get(fx->store, id, NOW + 500, NULL), SG_ENOENT);
    assert_int_equal(sg_session_touch(fx->store, id, NOW + 500), SG_ENOENT);
    assert_int_equal(db_entries(fx->store, SG_STORE_DB_SESSIONS), 0);

    /* Touching an idle-expired session deletes it too. */
    new_session(fx->store, id, NULL, NULL, "sub-b");
    assert_int_equal(sg_session_touch(fx->store, id, NOW + 1800), SG_ENOENT);
    assert_int_equal(db_entries(fx->store, SG_STORE_DB_SESSIONS), 0);
    assert_int_equal(sg_session_touch(fx->store, "bad", NOW), SG_EINVAL);
}

static void test_session_delete(void **state)
{
    struct fixture *fx = *state;
    char a[SG_SESSION_ID_SIZE];
    char b[SG_SESSION_ID_SIZE];
    new_session(fx->store, a, "psa-t1", "alice", "sub-a");
    new_session(fx->store, b, "psa-t1", "alice", "sub-a");
    assert_int_equal(sg_session_delete(fx->store, a), 0);
    assert_int_equal(sg_session_delete(fx->store, a), SG_ENOENT);
    assert_int_equal(sg_session_delete(fx->store, "x"), SG_EINVAL);
    assert_int_equal(sg_session_get(fx->store, a, NOW, NULL), SG_ENOENT);
    assert_int_equal(sg_session_get(fx->store, b, NOW, NULL), 0);
    assert_int_equal(db_entries(fx->store, SG_STORE_DB_SESSIONS_BY_OWNER), 2);
}

static void test_session_delete_by_owner(void **state)
{
    struct fixture *fx = *state;
    char a1[SG_SESSION_ID_SIZE];
    char a2[SG_SESSION_ID_SIZE];
    char b[SG_SESSION_ID_SIZE];
    char c[SG_SESSION_ID_SIZE];
    new_session(fx->store, a1, "psa-t1", "alice", "sub-a");
    new_session(fx->store, a2, "psa-t1", "alice", "sub-a");
    new_session(fx->store, b, "psa-t1", "bob", "sub-b");
    new_session(fx->store, c, NULL, NULL, "sub-c");

    char *owner = NULL;
    size_t deleted = 99;
    assert_int_equal(sg_session_owner_psa("psa-t1", "alice", &owner), 0);
    assert_int_equal(sg_session_delete_by_owner(fx->store, owner, &deleted), 0);
    assert_int_equal(deleted, 2);
    assert_int_equal(sg_session_delete_by_owner(fx->store, owner, &deleted), 0);
    assert_int_equal(deleted, 0);
    SG_FREE(owner);
    assert_int_equal(sg_session_get(fx->store, a1, NOW, NULL), SG_ENOENT);
    assert_int_equal(sg_session_get(fx->store, a2, NOW, NULL), SG_ENOENT);
    assert_int_equal(sg_session_get(fx->store, b, NOW, NULL), 0);
    /* Both owner entries of alice's sessions are gone: bob 2, c 1. */
    assert_int_equal(db_entries(fx->store, SG_STORE_DB_SESSIONS_BY_OWNER), 3);

    /* By IdP subject, for link-mode and claims-mode sessions alike. */
    assert_int_equal(sg_session_owner_idp("https://idp.example", "sub-b", &owner), 0);
    assert_int_equal(sg_session_delete_by_owner(fx->store, owner, &deleted), 0);
    assert_int_equal(deleted, 1);
    SG_FREE(owner);
    assert_int_equal(sg_session_owner_idp("https://other.example", "sub-c", &owner), 0);
    assert_int_equal(sg_session_delete_by_owner(fx->store, owner, &deleted), 0);
    assert_int_equal(deleted, 0);
    SG_FREE(owner);
    assert_int_equal(sg_session_owner_idp("https://idp.example", "sub-c", &owner), 0);
    assert_int_equal(sg_session_delete_by_owner(fx->store, owner, NULL), 0);
    SG_FREE(owner);
    assert_int_equal(db_entries(fx->store, SG_STORE_DB_SESSIONS), 0);
    assert_int_equal(db_entries(fx->store, SG_STORE_DB_SESSIONS_BY_OWNER), 0);

    /* By IdP session (sid, OpenID Connect logout): only the sessions of that sid. */
    char s1[SG_SESSION_ID_SIZE], s2[SG_SESSION_ID_SIZE];
    struct sg_session rec = make_record(NULL, NULL, "sub-s");
    rec.idp_sid = (char *)"sid-1";
    sg_session_new_id(s1);
    assert_int_equal(sg_session_create(fx->store, s1, &rec), 0);
    rec.idp_sid = (char *)"sid-2";
    sg_session_new_id(s2);
    assert_int_equal(sg_session_create(fx->store, s2, &rec), 0);
    struct sg_session got;
    assert_int_equal(sg_session_get(fx->store, s1, NOW, &got), 0);
    assert_string_equal(got.idp_sid, "sid-1");
    sg_session_clear(&got);
    assert_int_equal(sg_session_owner_sid("https://idp.example", "sid-1", &owner), 0);
    assert_int_equal(sg_session_delete_by_owner(fx->store, owner, &deleted), 0);
    assert_int_equal(deleted, 1);
    SG_FREE(owner);
    assert_int_equal(sg_session_get(fx->store, s1, NOW, NULL), SG_ENOENT);
    assert_int_equal(sg_session_get(fx->store, s2, NOW, NULL), 0);
    assert_int_equal(sg_session_owner_sid("https://idp.example", "", &owner), SG_EINVAL);
    assert_int_equal(sg_session_owner_sid("https://idp.example", NULL, &owner), SG_EINVAL);
    /* The sid owner and the subject owner are different owners, even for equal texts. */
    char *by_sub = NULL;
    assert_int_equal(sg_session_owner_sid("https://idp.example", "sub-s", &owner), 0);
    assert_int_equal(sg_session_owner_idp("https://idp.example", "sub-s", &by_sub), 0);
    assert_string_not_equal(owner, by_sub);
    SG_FREE(owner);
    assert_int_equal(sg_session_delete_by_owner(fx->store, by_sub, &deleted), 0);
    assert_int_equal(deleted, 1); /* s2, by its subject */
    SG_FREE(by_sub);
    assert_int_equal(db_entries(fx->store, SG_STORE_DB_SESSIONS_BY_OWNER), 0);

    /* Owners are unambiguous: ("ab", "c") and ("a", "bc") differ. */
    char *x = NULL;
    char *y = NULL;
    assert_int_equal(sg_session_owner_psa("ab", "c", &x), 0);
    assert_int_equal(sg_session_owner_psa("a", "bc", &y), 0);
    assert_string_not_equal(x, y);
    SG_FREE(x);
    SG_FREE(y);
    assert_int_equal(sg_session_owner_psa("", "c", &x), SG_EINVAL);
    assert_null(x);
    assert_int_equal(sg_session_owner_idp(NULL, "s\n", &x), SG_EINVAL);
    assert_int_equal(sg_session_owner_idp(NULL, "s", &x), 0);
    SG_FREE(x);
    assert_int_equal(sg_session_delete_by_owner(fx->store, "", NULL), SG_EINVAL);
}

static void test_session_sweep(void **state)
{
    struct fixture *fx = *state;
    enum { LIVE = 40, EXPIRED = 100 };
    char live[LIVE][SG_SESSION_ID_SIZE];
    for (int i = 0; i < LIVE; i++)
        new_session(fx->store, live[i], "psa-t1", "alice", "sub-a");
    for (int i = 0; i < EXPIRED; i++) {
        char id[SG_SESSION_ID_SIZE];
        sg_session_new_id(id);
        struct sg_session rec = make_record("psa-t1", "bob", "sub-b");
        rec.expires_at = NOW + 10;
        assert_int_equal(sg_session_create(fx->store, id, &rec), 0);
    }
    size_t deleted = 0;
    assert_int_equal(sg_session_sweep(fx->store, NOW + 5, 1000, &deleted), 0);
    assert_int_equal(deleted, 0);

    /* Each call deletes at most max; repeated calls get them all. */
    size_t total = 0;
    for (int round = 0; round < 100 && total < EXPIRED; round++) {
        assert_int_equal(sg_session_sweep(fx->store, NOW + 10, 7, &deleted), 0);
        assert_true(deleted <= 7);
        total += deleted;
    }
    assert_int_equal(total, EXPIRED);
    assert_int_equal(db_entries(fx->store, SG_STORE_DB_SESSIONS), LIVE);
    assert_int_equal(db_entries(fx->store, SG_STORE_DB_SESSIONS_BY_OWNER), 2 * LIVE);
    for (int i = 0; i < LIVE; i++)
        assert_int_equal(sg_session_get(fx->store, live[i], NOW + 10, NULL), 0);
    assert_int_equal(sg_session_sweep(fx->store, NOW, 0, &deleted), 0);
    assert_int_equal(deleted, 0);
}

static void test_session_corrupt(void **state)
{
    struct fixture *fx = *state;
    char id[SG_SESSION_ID_SIZE];
    new_session(fx->store, id, "psa-t1", "alice", "sub-a");
    unsigned char key[32];
    id_hash(id, key);
    unsigned char good[1024];
    long good_len = raw_get(fx->store, SG_STORE_DB_SESSIONS, key, 32, good, sizeof(good));
    assert_true(good_len > RECORD_HEADER_LEN && good_len < (long)sizeof(good));

    struct sg_session got;
    /* Every truncation. */
    for (long len = 1; len < good_len; len++) {
        raw_put(fx->store, SG_STORE_DB_SESSIONS, key, 32, good, (size_t)len);
        assert_int_equal(sg_session_get(fx->store, id, NOW, &got), SG_ESTORE);
        assert_null(got.idp_sub);
    }
    /* A trailing byte, a wrong version, a length running past the end, an embedded NUL. */
    unsigned char bad[1100];
    memcpy(bad, good, (size_t)good_len);
    bad[good_len] = 'x';
    raw_put(fx->store, SG_STORE_DB_SESSIONS, key, 32, bad, (size_t)good_len + 1);
    assert_int_equal(sg_session_get(fx->store, id, NOW, &got), SG_ESTORE);
    for (unsigned char version = 0; version < 5; version += 3) { /* 0 and 3: no such version */
        memcpy(bad, good, (size_t)good_len);
        bad[0] = version;
        raw_put(fx->store, SG_STORE_DB_SESSIONS, key, 32, bad, (size_t)good_len);
        assert_int_equal(sg_session_get(fx->store, id, NOW, &got), SG_ESTORE);
    }
    /* Version 1 (before idp_sid and claim_headers) is the same record without its last two
     * fields: it still decodes,
     * while a version 1 header over a version 2 body does not. */
    memcpy(bad, good, (size_t)good_len);
    bad[0] = 1;
    raw_put(fx->store, SG_STORE_DB_SESSIONS, key, 32, bad, (size_t)good_len);
    assert_int_equal(sg_session_get(fx->store, id, NOW, &got), SG_ESTORE);
    raw_put(fx->store, SG_STORE_DB_SESSIONS, key, 32, bad, (size_t)good_len - 8);
    assert_int_equal(sg_session_get(fx->store, id, NOW, &got), 0);
    assert_string_equal(got.idp_sub, "sub-a");
    assert_null(got.idp_sid);
    sg_session_clear(&got);
    memcpy(bad, good, (size_t)good_len);
    sg_store_put_be32(bad + RECORD_HEADER_LEN, 0x7ffffff0);
    raw_put(fx->store, SG_STORE_DB_SESSIONS, key, 32, bad, (size_t)good_len);
    assert_int_equal(sg_session_get(fx->store, id, NOW, &got), SG_ESTORE);
    memcpy(bad, good, (size_t)good_len);
    bad[RECORD_HEADER_LEN + 4] = '\0';
    raw_put(fx->store, SG_STORE_DB_SESSIONS, key, 32, bad, (size_t)good_len);
    assert_int_equal(sg_session_get(fx->store, id, NOW, &got), SG_ESTORE);
    assert_int_equal(sg_session_touch(fx->store, id, NOW + 1000), SG_ESTORE);
    /* A control byte in the ID token: refused by a read that returns it; a brief read, which
     * neither scans nor returns it, gives the other fields. Elsewhere both refuse. */
    const char *token = "eyJhbGciOiJFUzI1NiJ9";
    const unsigned char *at = memmem(good, (size_t)good_len, token, strlen(token));
    assert_non_null(at);
    memcpy(bad, good, (size_t)good_len);
    bad[at - good + 3] = '\n';
    raw_put(fx->store, SG_STORE_DB_SESSIONS, key, 32, bad, (size_t)good_len);
    assert_int_equal(sg_session_get(fx->store, id, NOW, &got), SG_ESTORE);
    assert_int_equal(sg_session_get_brief(fx->store, id, NOW, &got), 0);
    assert_string_equal(got.idp_sub, "sub-a");
    assert_null(got.id_token);
    sg_session_clear(&got);
    at = memmem(good, (size_t)good_len, "sub-a", 5);
    assert_non_null(at);
    memcpy(bad, good, (size_t)good_len);
    bad[at - good + 1] = '\n';
    raw_put(fx->store, SG_STORE_DB_SESSIONS, key, 32, bad, (size_t)good_len);
    assert_int_equal(sg_session_get_brief(fx->store, id, NOW, &got), SG_ESTORE);

    /* Every single-byte change either decodes or is refused; none crashes. */
    for (long i = 0; i < good_len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(bad, good, (size_t)good_len);
            bad[i] ^= (unsigned char)(1u << bit);
            struct record_view view;
            int rc = record_decode(bad, (size_t)good_len, &view);
            assert_true(rc == 0 || rc == SG_ESTORE);
        }
    }

    /* The sweep removes a record that does not decode, even if not expired. */
    raw_put(fx->store, SG_STORE_DB_SESSIONS, key, 32, "junk", 4);
    size_t deleted = 0;
    assert_int_equal(sg_session_sweep(fx->store, NOW, 10, &deleted), 0);
    assert_int_equal(deleted, 1);
    assert_int_equal(sg_session_get(fx->store, id, NOW, &got), SG_ENOENT);
    /* Its dangling index entries go with the owner's next cleanup. */
    char *owner = NULL;
    assert_int_equal(sg_session_owner_psa("psa-t1", "alice", &owner), 0);
    assert_int_equal(sg_session_delete_by_owner(fx->store, owner, &deleted), 0);
    assert_int_equal(deleted, 0);
    free(owner);
    assert_int_equal(db_entries(fx->store, SG_STORE_DB_SESSIONS_BY_OWNER), 1);

    /* Random bytes of random lengths never decode into anything out of bounds. */
    for (int round = 0; round < 2000; round++) {
        unsigned char len_byte;
        sg_random_bytes(&len_byte, 1);
        size_t len = (size_t)len_byte * 4;
        sg_random_bytes(bad, len);
        if (len > RECORD_HEADER_LEN && round % 2 == 0)
            bad[0] = RECORD_VERSION;
        struct record_view view;
        int rc = record_decode(bad, len, &view);
        assert_true(rc == 0 || rc == SG_ESTORE);
    }

    /* Extreme timestamps decode and compare without overflow. */
    memcpy(bad, good, (size_t)good_len);
    sg_store_put_be64(bad + OFFSET_LAST_SEEN, (uint64_t)INT64_MIN);
    sg_store_put_be64(bad + 17, (uint64_t)INT64_MAX);
    raw_put(fx->store, SG_STORE_DB_SESSIONS, key, 32, bad, (size_t)good_len);
    assert_int_equal(sg_session_touch(fx->store, id, INT64_MAX), SG_ENOENT);
    raw_put(fx->store, SG_STORE_DB_SESSIONS, key, 32, bad, (size_t)good_len);
    assert_int_equal(sg_session_get(fx->store, id, NOW, NULL), SG_ENOENT);
}

/*
 * A worker process creates a session and dies by SIGKILL without closing the
 * environment, holding a read transaction: the session is visible to a
 * process that had the store open, and after a reopen.
 */
static void test_session_survives_kill9(void **state)
{
    struct fixture *fx = *state;
    sg_store_close(fx->store);
    fx->store = NULL;
    char id[SG_SESSION_ID_SIZE];
    sg_session_new_id(id);
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char c;
        if (read(go[0], &c, 1) != 1)
            _exit(2);
        struct sg_store *store = NULL;
        if (sg_store_open(fx->dir, &store, NULL, 0) != 0)
            _exit(3);
        struct sg_session rec = make_record("psa-t1", "alice", "sub-a");
        if (sg_session_create(store, id, &rec) != 0)
            _exit(4);
        struct sg_store_txn txn;
        if (sg_store_txn_begin(store, false, &txn) != 0)
            _exit(5);
        kill(getpid(), SIGKILL);
        _exit(6);
    }
    char err[256] = "";
    assert_int_equal(sg_store_open(fx->dir, &fx->store, err, sizeof(err)), 0);
    assert_int_equal(sg_session_get(fx->store, id, NOW, NULL), SG_ENOENT);
    assert_int_equal(write(go[1], "x", 1), 1);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
    close(go[0]);
    close(go[1]);

    struct sg_session got;
    assert_int_equal(sg_session_get(fx->store, id, NOW, &got), 0);
    assert_string_equal(got.psa_user, "alice");
    sg_session_clear(&got);
    reopen(fx);
    assert_int_equal(sg_session_get(fx->store, id, NOW, NULL), 0);
    int dead = -1;
    struct lmdb_store *ls = fx->store->ctx;
    assert_int_equal(mdb_reader_check(ls->env, &dead), 0);
    assert_int_equal(dead, 0);
}

/* ---- links ---- */

static void test_links_tenant(void **state)
{
    struct fixture *fx = *state;
    char *out = NULL;
    assert_int_equal(sg_links_tenant_get_by_psa(fx->store, "psa-t1", &out), SG_ENOENT);
    assert_int_equal(sg_links_tenant_put(fx->store, "psa-t1", "idp-t1"), 0);
    assert_int_equal(sg_links_tenant_put(fx->store, "psa-t1", "idp-t1"), 0);
    assert_int_equal(sg_links_tenant_get_by_psa(fx->store, "psa-t1", &out), 0);
    assert_string_equal(out, "idp-t1");
    SG_FREE(out);
    assert_int_equal(sg_links_tenant_get_by_idp(fx->store, "idp-t1", &out), 0);
    assert_string_equal(out, "psa-t1");
    SG_FREE(out);
    assert_int_equal(sg_links_tenant_get_by_idp(fx->store, "idp-t1", NULL), 0);

    /* B4: the IdP tenant is already mapped to another PSA tenant. */
    assert_int_equal(sg_links_tenant_put(fx->store, "psa-t2", "idp-t1"), SG_EEXIST);
    /* One PSA tenant links to one IdP tenant at a time. */
    assert_int_equal(sg_links_tenant_put(fx->store, "psa-t1", "idp-t2"), SG_EEXIST);
    assert_int_equal(sg_links_tenant_get_by_psa(fx->store, "psa-t2", NULL), SG_ENOENT);
    assert_int_equal(sg_links_tenant_get_by_idp(fx->store, "idp-t2", NULL), SG_ENOENT);

    assert_int_equal(sg_links_tenant_put(fx->store, "", "idp-t3"), SG_EINVAL);
    assert_int_equal(sg_links_tenant_put(fx->store, "psa\x01", "idp-t3"), SG_EINVAL);
    assert_int_equal(sg_links_tenant_put(fx->store, "psa-t3", NULL), SG_EINVAL);
    assert_int_equal(sg_links_tenant_get_by_psa(fx->store, "a\tb", &out), SG_EINVAL);

    reopen(fx);
    assert_int_equal(sg_links_tenant_get_by_psa(fx->store, "psa-t1", NULL), 0);
    assert_int_equal(sg_links_tenant_delete(fx->store, "psa-t2", NULL), SG_ENOENT);
    size_t users = 99;
    assert_int_equal(sg_links_tenant_delete(fx->store, "psa-t1", &users), 0);
    assert_int_equal(users, 0);
    assert_int_equal(sg_links_tenant_put(fx->store, "psa-t2", "idp-t1"), 0);
}

static void test_links_user(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "alice", "idp-t1", "sub-a", NULL),
                     SG_ENOENT);
    assert_int_equal(sg_links_tenant_put(fx->store, "psa-t1", "idp-t1"), 0);
    assert_int_equal(sg_links_tenant_put(fx->store, "psa-t2", "idp-t2"), 0);
    /* The IdP user's tenant must be the one the PSA tenant is linked to. */
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "alice", "idp-t2", "sub-a", NULL),
                     SG_EINVAL);
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "alice", "idp-t1", "sub-a", NULL), 0);
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "alice", "idp-t1", "sub-a", NULL), 0);

    /* B10 both ways. */
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "bob", "idp-t1", "sub-a", NULL),
                     SG_EEXIST);
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "alice", "idp-t1", "sub-b", NULL),
                     SG_EEXIST);
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "bob", "idp-t1", "sub-b", NULL), 0);

    char *t = NULL;
    char *u = NULL;
    assert_int_equal(sg_links_user_get_by_psa(fx->store, "psa-t1", "alice", &t, &u), 0);
    assert_string_equal(t, "idp-t1");
    assert_string_equal(u, "sub-a");
    SG_FREE(t);
    SG_FREE(u);
    assert_int_equal(sg_links_user_get_by_idp(fx->store, "idp-t1", "sub-b", &t, &u), 0);
    assert_string_equal(t, "psa-t1");
    assert_string_equal(u, "bob");
    SG_FREE(t);
    SG_FREE(u);
    assert_int_equal(sg_links_user_get_by_idp(fx->store, "idp-t1", "sub-c", &t, &u), SG_ENOENT);
    assert_null(t);
    assert_null(u);
    assert_int_equal(sg_links_user_get_by_psa(fx->store, "psa-t1", "", &t, NULL), SG_EINVAL);

    /* Composite keys are unambiguous: ("psa-t1", "alice") is not ("psa-t1\0a", "lice"). */
    assert_int_equal(sg_links_tenant_put(fx->store, "psa-t", "idp-t"), 0);
    assert_int_equal(sg_links_user_put(fx->store, "psa-t", "1alice", "idp-t", "1sub-a", NULL), 0);
    assert_int_equal(sg_links_user_get_by_psa(fx->store, "psa-t1", "alice", &t, &u), 0);
    assert_string_equal(u, "sub-a");
    SG_FREE(t);
    SG_FREE(u);

    /* The longest ids fit a key. */
    char longest[SG_LINKS_ID_MAX + 2];
    memset(longest, 'z', sizeof(longest) - 1);
    longest[sizeof(longest) - 1] = '\0';
    assert_int_equal(sg_links_user_put(fx->store, "psa-t2", longest, "idp-t2", "s", NULL),
                     SG_EINVAL);
    longest[SG_LINKS_ID_MAX] = '\0';
    assert_int_equal(sg_links_tenant_put(fx->store, longest, longest), 0);
    assert_int_equal(sg_links_user_put(fx->store, longest, longest, longest, longest, NULL), 0);
    assert_int_equal(sg_links_user_get_by_idp(fx->store, longest, longest, &t, NULL), 0);
    assert_string_equal(t, longest);
    SG_FREE(t);

    reopen(fx);
    assert_int_equal(sg_links_user_get_by_psa(fx->store, "psa-t1", "bob", NULL, NULL), 0);
}

static void test_links_user_delete_cascade(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(sg_links_tenant_put(fx->store, "psa-t1", "idp-t1"), 0);
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "alice", "idp-t1", "sub-a", NULL), 0);
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "bob", "idp-t1", "sub-b", NULL), 0);
    char a1[SG_SESSION_ID_SIZE];
    char a2[SG_SESSION_ID_SIZE];
    char b[SG_SESSION_ID_SIZE];
    new_session(fx->store, a1, "psa-t1", "alice", "sub-a");
    new_session(fx->store, a2, "psa-t1", "alice", "sub-a");
    new_session(fx->store, b, "psa-t1", "bob", "sub-b");

    assert_int_equal(sg_links_user_delete(fx->store, "psa-t1", "alice"), 0);
    assert_int_equal(sg_links_user_delete(fx->store, "psa-t1", "alice"), SG_ENOENT);
    assert_int_equal(sg_links_user_get_by_psa(fx->store, "psa-t1", "alice", NULL, NULL), SG_ENOENT);
    assert_int_equal(sg_links_user_get_by_idp(fx->store, "idp-t1", "sub-a", NULL, NULL), SG_ENOENT);
    assert_int_equal(sg_session_get(fx->store, a1, NOW, NULL), SG_ENOENT);
    assert_int_equal(sg_session_get(fx->store, a2, NOW, NULL), SG_ENOENT);
    assert_int_equal(sg_session_get(fx->store, b, NOW, NULL), 0);
    assert_int_equal(db_entries(fx->store, SG_STORE_DB_SESSIONS_BY_OWNER), 2);
    /* The IdP user may now link again. */
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "carol", "idp-t1", "sub-a", NULL), 0);
    assert_int_equal(sg_links_user_delete(fx->store, "psa-t1", "x\n"), SG_EINVAL);
}

static void test_links_tenant_delete_cascade(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(sg_links_tenant_put(fx->store, "psa-t1", "idp-t1"), 0);
    /* A tenant whose id extends the first one's must not be caught by its range scan. */
    assert_int_equal(sg_links_tenant_put(fx->store, "psa-t1x", "idp-t2"), 0);
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "alice", "idp-t1", "sub-a", NULL), 0);
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "bob", "idp-t1", "sub-b", NULL), 0);
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1x", "alice", "idp-t2", "sub-x", NULL), 0);
    char a[SG_SESSION_ID_SIZE];
    char b[SG_SESSION_ID_SIZE];
    char x[SG_SESSION_ID_SIZE];
    new_session(fx->store, a, "psa-t1", "alice", "sub-a");
    new_session(fx->store, b, "psa-t1", "bob", "sub-b");
    new_session(fx->store, x, "psa-t1x", "alice", "sub-x");

    size_t users = 0;
    assert_int_equal(sg_links_tenant_delete(fx->store, "psa-t1", &users), 0);
    assert_int_equal(users, 2);
    assert_int_equal(sg_links_tenant_get_by_psa(fx->store, "psa-t1", NULL), SG_ENOENT);
    assert_int_equal(sg_links_tenant_get_by_idp(fx->store, "idp-t1", NULL), SG_ENOENT);
    assert_int_equal(sg_links_user_get_by_idp(fx->store, "idp-t1", "sub-a", NULL, NULL), SG_ENOENT);
    assert_int_equal(sg_links_user_get_by_idp(fx->store, "idp-t1", "sub-b", NULL, NULL), SG_ENOENT);
    assert_int_equal(sg_session_get(fx->store, a, NOW, NULL), SG_ENOENT);
    assert_int_equal(sg_session_get(fx->store, b, NOW, NULL), SG_ENOENT);

    assert_int_equal(sg_session_get(fx->store, x, NOW, NULL), 0);
    assert_int_equal(sg_links_user_get_by_psa(fx->store, "psa-t1x", "alice", NULL, NULL), 0);
    assert_int_equal(db_entries(fx->store, SG_STORE_DB_USER_BY_PSA), 1);
    assert_int_equal(db_entries(fx->store, SG_STORE_DB_USER_BY_IDP), 1);
    assert_int_equal(db_entries(fx->store, SG_STORE_DB_TENANT_BY_PSA), 1);
    assert_int_equal(db_entries(fx->store, SG_STORE_DB_TENANT_BY_IDP), 1);
    assert_int_equal(db_entries(fx->store, SG_STORE_DB_SESSIONS), 1);

    /* The IdP tenant is free to link again, from any PSA tenant. */
    assert_int_equal(sg_links_tenant_put(fx->store, "psa-t9", "idp-t1"), 0);
    reopen(fx);
    assert_int_equal(sg_links_tenant_get_by_idp(fx->store, "idp-t1", NULL), 0);
    assert_int_equal(sg_links_user_get_by_psa(fx->store, "psa-t1", "alice", NULL, NULL), SG_ENOENT);
}

struct collected {
    char text[16][1100];
    size_t count;
    size_t stop_after;
};

static int collect(const struct sg_link *link, void *arg)
{
    struct collected *c = arg;
    if (c->count == c->stop_after)
        return 42;
    if (link->kind == SG_LINK_TENANT)
        snprintf(c->text[c->count], sizeof(c->text[0]), "T %s=%s", link->psa_tenant,
                 link->idp_tenant);
    else
        snprintf(c->text[c->count], sizeof(c->text[0]), "U %s/%s=%s/%s", link->psa_tenant,
                 link->psa_user, link->idp_tenant, link->idp_sub);
    c->count++;
    return 0;
}

static void test_links_foreach_and_import(void **state)
{
    struct fixture *fx = *state;
    /* A user link may precede its tenant's in the list. */
    const struct sg_link links[] = {
        {SG_LINK_USER, "psa-t1", "alice", "idp-t1", "sub-a", NULL},
        {SG_LINK_TENANT, "psa-t1", NULL, "idp-t1", NULL, NULL},
        {SG_LINK_TENANT, "psa-t2", NULL, "idp-t2", NULL, NULL},
        {SG_LINK_USER, "psa-t2", "bob", "idp-t2", "sub-b", NULL},
    };
    size_t failed = 99;
    assert_int_equal(sg_links_import(fx->store, links, SG_ARRAY_LEN(links), &failed), 0);
    /* Importing the same links again changes nothing and succeeds. */
    assert_int_equal(sg_links_import(fx->store, links, SG_ARRAY_LEN(links), &failed), 0);

    struct collected c = {.stop_after = 100};
    assert_int_equal(sg_links_foreach(fx->store, collect, &c), 0);
    assert_int_equal(c.count, 4);
    assert_string_equal(c.text[0], "T psa-t1=idp-t1");
    assert_string_equal(c.text[1], "T psa-t2=idp-t2");
    assert_string_equal(c.text[2], "U psa-t1/alice=idp-t1/sub-a");
    assert_string_equal(c.text[3], "U psa-t2/bob=idp-t2/sub-b");
    struct collected stop = {.stop_after = 1};
    assert_int_equal(sg_links_foreach(fx->store, collect, &stop), 42);
    assert_int_equal(stop.count, 1);

    struct sg_store_stats before;
    assert_int_equal(sg_store_stats(fx->store, &before), 0);
    /* One conflict (B10: sub-a already linked to alice) refuses the whole list. */
    const struct sg_link conflicting[] = {
        {SG_LINK_TENANT, "psa-t3", NULL, "idp-t3", NULL, NULL},
        {SG_LINK_USER, "psa-t1", "carol", "idp-t1", "sub-c", NULL},
        {SG_LINK_USER, "psa-t1", "dave", "idp-t1", "sub-a", NULL},
    };
    assert_int_equal(sg_links_import(fx->store, conflicting, SG_ARRAY_LEN(conflicting), &failed),
                     SG_EEXIST);
    assert_int_equal(failed, 2);
    /* B4 inside an import. */
    const struct sg_link tenant_conflict[] = {
        {SG_LINK_TENANT, "psa-t4", NULL, "idp-t4", NULL, NULL},
        {SG_LINK_TENANT, "psa-t5", NULL, "idp-t4", NULL, NULL},
    };
    assert_int_equal(
        sg_links_import(fx->store, tenant_conflict, SG_ARRAY_LEN(tenant_conflict), &failed),
        SG_EEXIST);
    assert_int_equal(failed, 1);
    const struct sg_link bad[] = {
        {SG_LINK_TENANT, "psa-t6", NULL, "idp-t6", NULL, NULL},
        {SG_LINK_USER, "psa-t6", "", "idp-t6", "s", NULL},
    };
    assert_int_equal(sg_links_import(fx->store, bad, SG_ARRAY_LEN(bad), &failed), SG_EINVAL);
    assert_int_equal(failed, 1);
    const struct sg_link orphan[] = {
        {SG_LINK_USER, "psa-t7", "u", "idp-t7", "s", NULL},
    };
    assert_int_equal(sg_links_import(fx->store, orphan, 1, &failed), SG_ENOENT);
    assert_int_equal(failed, 0);

    struct sg_store_stats after;
    assert_int_equal(sg_store_stats(fx->store, &after), 0);
    assert_memory_equal(before.entries, after.entries, sizeof(before.entries));
    assert_int_equal(sg_links_tenant_get_by_psa(fx->store, "psa-t3", NULL), SG_ENOENT);
    assert_int_equal(sg_links_user_get_by_psa(fx->store, "psa-t1", "carol", NULL, NULL), SG_ENOENT);
    assert_int_equal(sg_links_import(fx->store, NULL, 0, NULL), 0);
}

/* The shared store's refresh of one tenant (pgstore.c): what stays keeps its sessions. */
static void test_links_replace_tenant(void **state)
{
    struct fixture *fx = *state;
    const struct sg_links_user_facts staff = {.known = true, .staff = true, .active = true};
    const struct sg_links_user_facts gone = {.known = true, .staff = true, .active = false};
    const struct sg_link before[] = {
        {SG_LINK_TENANT, "psa-t1", NULL, "idp-t1", NULL, NULL},
        {SG_LINK_USER, "psa-t1", "alice", "idp-t1", "sub-a", &staff},
        {SG_LINK_USER, "psa-t1", "bob", "idp-t1", "sub-b", &staff},
        {SG_LINK_TENANT, "psa-t2", NULL, "idp-t2", NULL, NULL},
    };
    assert_int_equal(sg_links_import(fx->store, before, SG_ARRAY_LEN(before), NULL), 0);
    char alice[SG_SESSION_ID_SIZE], bob[SG_SESSION_ID_SIZE];
    new_session(fx->store, alice, "psa-t1", "alice", "sub-a");
    new_session(fx->store, bob, "psa-t1", "bob", "sub-b");

    /* The same links, alice's facts changed: nobody loses a session. */
    const struct sg_link same[] = {
        {SG_LINK_TENANT, "psa-t1", NULL, "idp-t1", NULL, NULL},
        {SG_LINK_USER, "psa-t1", "alice", "idp-t1", "sub-a", &gone},
        {SG_LINK_USER, "psa-t1", "bob", "idp-t1", "sub-b", &staff},
    };
    assert_int_equal(sg_links_replace_tenant(fx->store, "psa-t1", same, SG_ARRAY_LEN(same)), 0);
    assert_int_equal(sg_session_get(fx->store, alice, NOW, NULL), 0);
    assert_int_equal(sg_session_get(fx->store, bob, NOW, NULL), 0);
    struct sg_links_user_facts facts;
    assert_int_equal(sg_links_user_facts_get(fx->store, "idp-t1", "sub-a", &facts), 0);
    assert_false(facts.active);

    /* bob's link went: his session goes, alice's stays; carol is new. */
    const struct sg_link less[] = {
        {SG_LINK_TENANT, "psa-t1", NULL, "idp-t1", NULL, NULL},
        {SG_LINK_USER, "psa-t1", "alice", "idp-t1", "sub-a", &gone},
        {SG_LINK_USER, "psa-t1", "carol", "idp-t1", "sub-c", NULL},
    };
    assert_int_equal(sg_links_replace_tenant(fx->store, "psa-t1", less, SG_ARRAY_LEN(less)), 0);
    assert_int_equal(sg_session_get(fx->store, alice, NOW, NULL), 0);
    assert_int_equal(sg_session_get(fx->store, bob, NOW, NULL), SG_ENOENT);
    assert_int_equal(sg_links_user_get_by_psa(fx->store, "psa-t1", "bob", NULL, NULL), SG_ENOENT);
    assert_int_equal(sg_links_user_get_by_idp(fx->store, "idp-t1", "sub-c", NULL, NULL), 0);

    /* The tenant now maps to another IdP tenant: everything of the old link goes. */
    const struct sg_link moved[] = {{SG_LINK_TENANT, "psa-t1", NULL, "idp-t9", NULL, NULL}};
    assert_int_equal(sg_links_replace_tenant(fx->store, "psa-t1", moved, 1), 0);
    assert_int_equal(sg_session_get(fx->store, alice, NOW, NULL), SG_ENOENT);
    assert_int_equal(sg_links_user_get_by_idp(fx->store, "idp-t1", "sub-c", NULL, NULL), SG_ENOENT);
    char *idp = NULL;
    assert_int_equal(sg_links_tenant_get_by_psa(fx->store, "psa-t1", &idp), 0);
    assert_string_equal(idp, "idp-t9");
    free(idp);

    /* Nothing left in PostgreSQL for the tenant; the other tenant untouched. */
    assert_int_equal(sg_links_replace_tenant(fx->store, "psa-t1", NULL, 0), 0);
    assert_int_equal(sg_links_tenant_get_by_psa(fx->store, "psa-t1", NULL), SG_ENOENT);
    assert_int_equal(sg_links_tenant_get_by_psa(fx->store, "psa-t2", NULL), 0);
    assert_int_equal(sg_links_replace_all(fx->store, NULL, 0), 0);
    assert_int_equal(sg_links_tenant_get_by_psa(fx->store, "psa-t2", NULL), SG_ENOENT);
}

static void test_links_corrupt_entries(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(sg_links_tenant_put(fx->store, "psa-t1", "idp-t1"), 0);
    /* A user entry with no separator, and a tenant value with a control character. */
    raw_put(fx->store, SG_STORE_DB_USER_BY_PSA, "psa-t1\0alice", 12, "nosep", 5);
    assert_int_equal(sg_links_user_get_by_psa(fx->store, "psa-t1", "alice", NULL, NULL), SG_ESTORE);
    struct collected c = {.stop_after = 100};
    assert_int_equal(sg_links_foreach(fx->store, collect, &c), SG_ESTORE);
    assert_int_equal(sg_links_tenant_delete(fx->store, "psa-t1", NULL), SG_ESTORE);
    assert_int_equal(sg_links_tenant_get_by_psa(fx->store, "psa-t1", NULL), 0);
    raw_put(fx->store, SG_STORE_DB_TENANT_BY_PSA, "psa-t2", 6, "idp\n", 4);
    assert_int_equal(sg_links_tenant_get_by_psa(fx->store, "psa-t2", NULL), SG_ESTORE);
    raw_put(fx->store, SG_STORE_DB_USER_BY_IDP, "idp-t1\0sub-a", 12, "\0alice", 6);
    assert_int_equal(sg_links_user_get_by_idp(fx->store, "idp-t1", "sub-a", NULL, NULL), SG_ESTORE);
}

/* Issue 13: the facts kept with a user link (psa.whoami.at_login "link"). */
static void test_links_user_facts(void **state)
{
    struct fixture *fx = *state;
    struct sg_links_user_facts facts;
    const struct sg_links_user_facts portal_inactive = {
        .known = true, .staff = false, .active = false};
    assert_int_equal(sg_links_tenant_put(fx->store, "psa-t1", "idp-t1"), 0);
    assert_int_equal(
        sg_links_user_put(fx->store, "psa-t1", "alice", "idp-t1", "sub-a", &portal_inactive), 0);
    assert_int_equal(sg_links_user_facts_get(fx->store, "idp-t1", "sub-a", &facts), 0);
    assert_true(facts.known);
    assert_false(facts.staff);
    assert_false(facts.active);

    /* The layout: the PSA user, then NUL, version 1 and the flags. */
    char buf[64];
    assert_int_equal(
        raw_get(fx->store, SG_STORE_DB_USER_BY_IDP, "idp-t1\0sub-a", 12, buf, sizeof(buf)), 15);
    assert_memory_equal(buf, "psa-t1\0alice\0\x01\x00", 15);
    /* The other direction keeps its plain layout. */
    assert_int_equal(
        raw_get(fx->store, SG_STORE_DB_USER_BY_PSA, "psa-t1\0alice", 12, buf, sizeof(buf)), 12);

    /* The lookups read through the facts. */
    char *t = NULL;
    char *u = NULL;
    assert_int_equal(sg_links_user_get_by_idp(fx->store, "idp-t1", "sub-a", &t, &u), 0);
    assert_string_equal(t, "psa-t1");
    assert_string_equal(u, "alice");
    SG_FREE(t);
    SG_FREE(u);

    /* A refresh replaces them, flag by flag. */
    assert_int_equal(sg_links_user_facts_set(fx->store, "psa-t1", "alice", true, false), 0);
    assert_int_equal(sg_links_user_facts_get(fx->store, "idp-t1", "sub-a", &facts), 0);
    assert_true(facts.known && facts.staff && !facts.active);
    assert_int_equal(
        raw_get(fx->store, SG_STORE_DB_USER_BY_IDP, "idp-t1\0sub-a", 12, buf, sizeof(buf)), 15);
    assert_int_equal(buf[14], 0x01);
    assert_int_equal(sg_links_user_facts_set(fx->store, "psa-t1", "alice", false, true), 0);
    assert_int_equal(sg_links_user_facts_get(fx->store, "idp-t1", "sub-a", &facts), 0);
    assert_true(facts.known && !facts.staff && facts.active);
    assert_int_equal(sg_links_user_facts_set(fx->store, "psa-t1", "alice", true, true), 0);
    reopen(fx);
    assert_int_equal(sg_links_user_facts_get(fx->store, "idp-t1", "sub-a", &facts), 0);
    assert_true(facts.known && facts.staff && facts.active);

    /* Linking the same pair again: new facts replace the kept ones, none keeps them. */
    assert_int_equal(
        sg_links_user_put(fx->store, "psa-t1", "alice", "idp-t1", "sub-a", &portal_inactive), 0);
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "alice", "idp-t1", "sub-a", NULL), 0);
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "alice", "idp-t1", "sub-a",
                                       &(struct sg_links_user_facts){.known = false}),
                     0);
    assert_int_equal(sg_links_user_facts_get(fx->store, "idp-t1", "sub-a", &facts), 0);
    assert_true(facts.known && !facts.staff && !facts.active);
    /* Facts not known are none: a new link with them is stored without. */
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "carol", "idp-t1", "sub-c",
                                       &(struct sg_links_user_facts){.known = false}),
                     0);
    assert_int_equal(
        raw_get(fx->store, SG_STORE_DB_USER_BY_IDP, "idp-t1\0sub-c", 12, buf, sizeof(buf)), 12);
    assert_int_equal(sg_links_user_facts_get(fx->store, "idp-t1", "sub-c", &facts), 0);
    assert_false(facts.known);
    /* A conflicting link changes nothing (B10). */
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "bob", "idp-t1", "sub-a",
                                       &(struct sg_links_user_facts){
                                           .known = true, .staff = true, .active = true}),
                     SG_EEXIST);
    assert_int_equal(sg_links_user_facts_get(fx->store, "idp-t1", "sub-a", &facts), 0);
    assert_true(facts.known && !facts.staff && !facts.active);

    /* Not linked, bad ids. */
    assert_int_equal(sg_links_user_facts_set(fx->store, "psa-t1", "bob", true, true), SG_ENOENT);
    assert_int_equal(sg_links_user_facts_get(fx->store, "idp-t1", "sub-b", &facts), SG_ENOENT);
    assert_int_equal(sg_links_user_facts_set(fx->store, "psa-t1", "", true, true), SG_EINVAL);
    assert_int_equal(sg_links_user_facts_get(fx->store, "", "sub-a", &facts), SG_EINVAL);

    /* The facts go with the link. */
    assert_int_equal(sg_links_user_delete(fx->store, "psa-t1", "alice"), 0);
    assert_int_equal(sg_links_user_delete(fx->store, "psa-t1", "carol"), 0);
    assert_int_equal(sg_links_user_facts_get(fx->store, "idp-t1", "sub-a", &facts), SG_ENOENT);
    assert_int_equal(db_entries(fx->store, SG_STORE_DB_USER_BY_IDP), 0);

    /* The longest ids with facts still fit a value. */
    char longest[SG_LINKS_ID_MAX + 1];
    memset(longest, 'z', sizeof(longest) - 1);
    longest[SG_LINKS_ID_MAX] = '\0';
    assert_int_equal(sg_links_tenant_put(fx->store, longest, longest), 0);
    assert_int_equal(
        sg_links_user_put(fx->store, longest, longest, longest, longest, &portal_inactive), 0);
    assert_int_equal(sg_links_user_facts_set(fx->store, longest, longest, true, true), 0);
    assert_int_equal(sg_links_user_facts_get(fx->store, longest, longest, &facts), 0);
    assert_true(facts.known && facts.staff && facts.active);
    assert_int_equal(sg_links_user_get_by_idp(fx->store, longest, longest, NULL, &u), 0);
    assert_string_equal(u, longest);
    SG_FREE(u);
}

/* Issue 13: a user link written before facts were kept still reads, as staff and active. */
static void test_links_user_facts_old_record(void **state)
{
    struct fixture *fx = *state;
    struct sg_links_user_facts facts = {.known = true, .staff = false, .active = false};
    assert_int_equal(sg_links_tenant_put(fx->store, "psa-t1", "idp-t1"), 0);
    raw_put(fx->store, SG_STORE_DB_USER_BY_PSA, "psa-t1\0alice", 12, "idp-t1\0sub-a", 12);
    raw_put(fx->store, SG_STORE_DB_USER_BY_IDP, "idp-t1\0sub-a", 12, "psa-t1\0alice", 12);

    char *t = NULL;
    char *u = NULL;
    assert_int_equal(sg_links_user_get_by_idp(fx->store, "idp-t1", "sub-a", &t, &u), 0);
    assert_string_equal(t, "psa-t1");
    assert_string_equal(u, "alice");
    SG_FREE(t);
    SG_FREE(u);
    assert_int_equal(sg_links_user_facts_get(fx->store, "idp-t1", "sub-a", &facts), 0);
    assert_false(facts.known);
    assert_true(facts.staff);
    assert_true(facts.active);
    /* Linking it again is still the same link. */
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "alice", "idp-t1", "sub-a", NULL), 0);
    assert_int_equal(sg_links_user_facts_get(fx->store, "idp-t1", "sub-a", &facts), 0);
    assert_false(facts.known);

    /* A refresh stores facts, even when they agree with what the absence means. */
    assert_int_equal(sg_links_user_facts_set(fx->store, "psa-t1", "alice", true, true), 0);
    assert_int_equal(sg_links_user_facts_get(fx->store, "idp-t1", "sub-a", &facts), 0);
    assert_true(facts.known && facts.staff && facts.active);

    /* Imported links (the admin tool) carry no facts. */
    struct sg_link bob = {.kind = SG_LINK_USER,
                          .psa_tenant = "psa-t1",
                          .psa_user = "bob",
                          .idp_tenant = "idp-t1",
                          .idp_sub = "sub-b"};
    assert_int_equal(sg_links_import(fx->store, &bob, 1, NULL), 0);
    assert_int_equal(sg_links_user_facts_get(fx->store, "idp-t1", "sub-b", &facts), 0);
    assert_false(facts.known);
    assert_int_equal(sg_links_user_delete(fx->store, "psa-t1", "alice"), 0);
}

/* Issue 13: a malformed facts suffix is a store error, never a guess. */
static void test_links_user_facts_corrupt(void **state)
{
    struct fixture *fx = *state;
    struct sg_links_user_facts facts;
    static const struct {
        const char *value;
        size_t len;
    } bad[] = {
        {"psa-t1\0alice\0\x02\x03", 15},  /* unknown version */
        {"psa-t1\0alice\0\x01\x04", 15},  /* unknown flag */
        {"psa-t1\0alice\0\x01", 14},      /* too short */
        {"psa-t1\0alice\0\x01\x03x", 16}, /* too long */
        {"psa-t1\0alice\0", 13},          /* empty */
        {"psa-t1\0\0\x01\x03", 10},       /* no PSA user */
    };
    assert_int_equal(sg_links_tenant_put(fx->store, "psa-t1", "idp-t1"), 0);
    raw_put(fx->store, SG_STORE_DB_USER_BY_PSA, "psa-t1\0alice", 12, "idp-t1\0sub-a", 12);
    for (size_t i = 0; i < SG_ARRAY_LEN(bad); i++) {
        raw_put(fx->store, SG_STORE_DB_USER_BY_IDP, "idp-t1\0sub-a", 12, bad[i].value, bad[i].len);
        assert_int_equal(sg_links_user_facts_get(fx->store, "idp-t1", "sub-a", &facts), SG_ESTORE);
        assert_int_equal(sg_links_user_get_by_idp(fx->store, "idp-t1", "sub-a", NULL, NULL),
                         SG_ESTORE);
        assert_int_equal(sg_links_user_facts_set(fx->store, "psa-t1", "alice", true, true),
                         SG_ESTORE);
    }
    /* An entry that names another PSA user is not this link's. */
    raw_put(fx->store, SG_STORE_DB_USER_BY_IDP, "idp-t1\0sub-a", 12, "psa-t1\0bob\0\x01\x03", 13);
    assert_int_equal(sg_links_user_facts_set(fx->store, "psa-t1", "alice", true, false), SG_ESTORE);
    /* Facts never belong in user_by_psa. */
    raw_put(fx->store, SG_STORE_DB_USER_BY_PSA, "psa-t1\0alice", 12, "idp-t1\0sub-a\0\x01\x03", 15);
    assert_int_equal(sg_links_user_get_by_psa(fx->store, "psa-t1", "alice", NULL, NULL), SG_ESTORE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_schema_created, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_newer_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nested_read_transactions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iface_get_put, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iface_take, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iface_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iface_scan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iface_multi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iface_abort_discards, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iface_commit_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iface_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iface_reads_existing_layout, setup, teardown),
        cmocka_unit_test(test_iface_second_backend),
        cmocka_unit_test(test_session_id),
        cmocka_unit_test_setup_teardown(test_session_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_create_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_key_is_hash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_absolute_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_idle_expiry_and_touch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_delete_by_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_survives_kill9, setup, teardown),
        cmocka_unit_test_setup_teardown(test_links_tenant, setup, teardown),
        cmocka_unit_test_setup_teardown(test_links_user, setup, teardown),
        cmocka_unit_test_setup_teardown(test_links_user_delete_cascade, setup, teardown),
        cmocka_unit_test_setup_teardown(test_links_tenant_delete_cascade, setup, teardown),
        cmocka_unit_test_setup_teardown(test_links_foreach_and_import, setup, teardown),
        cmocka_unit_test_setup_teardown(test_links_replace_tenant, setup, teardown),
        cmocka_unit_test_setup_teardown(test_links_corrupt_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_links_user_facts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_links_user_facts_old_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_links_user_facts_corrupt, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
