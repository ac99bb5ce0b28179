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
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "alice", "idp-t1", "sub-a"), 0);
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
    memcpy(bad, good, (size_t)good_len);
    bad[0] = 2;
    raw_put(fx->store, SG_STORE_DB_SESSIONS, key, 32, bad, (size_t)good_len);
    assert_int_equal(sg_session_get(fx->store, id, NOW, &got), SG_ESTORE);
    memcpy(bad, good, (size_t)good_len);
    sg_store_put_be32(bad + RECORD_HEADER_LEN, 0x7ffffff0);
    raw_put(fx->store, SG_STORE_DB_SESSIONS, key, 32, bad, (size_t)good_len);
    assert_int_equal(sg_session_get(fx->store, id, NOW, &got), SG_ESTORE);
    memcpy(bad, good, (size_t)good_len);
    bad[RECORD_HEADER_LEN + 4] = '\0';
    raw_put(fx->store, SG_STORE_DB_SESSIONS, key, 32, bad, (size_t)good_len);
    assert_int_equal(sg_session_get(fx->store, id, NOW, &got), SG_ESTORE);
    assert_int_equal(sg_session_touch(fx->store, id, NOW + 1000), SG_ESTORE);

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
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "alice", "idp-t1", "sub-a"), SG_ENOENT);
    assert_int_equal(sg_links_tenant_put(fx->store, "psa-t1", "idp-t1"), 0);
    assert_int_equal(sg_links_tenant_put(fx->store, "psa-t2", "idp-t2"), 0);
    /* The IdP user's tenant must be the one the PSA tenant is linked to. */
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "alice", "idp-t2", "sub-a"), SG_EINVAL);
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "alice", "idp-t1", "sub-a"), 0);
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "alice", "idp-t1", "sub-a"), 0);

    /* B10 both ways. */
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "bob", "idp-t1", "sub-a"), SG_EEXIST);
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "alice", "idp-t1", "sub-b"), SG_EEXIST);
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "bob", "idp-t1", "sub-b"), 0);

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
    assert_int_equal(sg_links_user_put(fx->store, "psa-t", "1alice", "idp-t", "1sub-a"), 0);
    assert_int_equal(sg_links_user_get_by_psa(fx->store, "psa-t1", "alice", &t, &u), 0);
    assert_string_equal(u, "sub-a");
    SG_FREE(t);
    SG_FREE(u);

    /* The longest ids fit a key. */
    char longest[SG_LINKS_ID_MAX + 2];
    memset(longest, 'z', sizeof(longest) - 1);
    longest[sizeof(longest) - 1] = '\0';
    assert_int_equal(sg_links_user_put(fx->store, "psa-t2", longest, "idp-t2", "s"), SG_EINVAL);
    longest[SG_LINKS_ID_MAX] = '\0';
    assert_int_equal(sg_links_tenant_put(fx->store, longest, longest), 0);
    assert_int_equal(sg_links_user_put(fx->store, longest, longest, longest, longest), 0);
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
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "alice", "idp-t1", "sub-a"), 0);
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "bob", "idp-t1", "sub-b"), 0);
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
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "carol", "idp-t1", "sub-a"), 0);
    assert_int_equal(sg_links_user_delete(fx->store, "psa-t1", "x\n"), SG_EINVAL);
}

static void test_links_tenant_delete_cascade(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(sg_links_tenant_put(fx->store, "psa-t1", "idp-t1"), 0);
    /* A tenant whose id extends the first one's must not be caught by its range scan. */
    assert_int_equal(sg_links_tenant_put(fx->store, "psa-t1x", "idp-t2"), 0);
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "alice", "idp-t1", "sub-a"), 0);
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1", "bob", "idp-t1", "sub-b"), 0);
    assert_int_equal(sg_links_user_put(fx->store, "psa-t1x", "alice", "idp-t2", "sub-x"), 0);
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
        {SG_LINK_USER, "psa-t1", "alice", "idp-t1", "sub-a"},
        {SG_LINK_TENANT, "psa-t1", NULL, "idp-t1", NULL},
        {SG_LINK_TENANT, "psa-t2", NULL, "idp-t2", NULL},
        {SG_LINK_USER, "psa-t2", "bob", "idp-t2", "sub-b"},
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
        {SG_LINK_TENANT, "psa-t3", NULL, "idp-t3", NULL},
        {SG_LINK_USER, "psa-t1", "carol", "idp-t1", "sub-c"},
        {SG_LINK_USER, "psa-t1", "dave", "idp-t1", "sub-a"},
    };
    assert_int_equal(sg_links_import(fx->store, conflicting, SG_ARRAY_LEN(conflicting), &failed),
                     SG_EEXIST);
    assert_int_equal(failed, 2);
    /* B4 inside an import. */
    const struct sg_link tenant_conflict[] = {
        {SG_LINK_TENANT, "psa-t4", NULL, "idp-t4", NULL},
        {SG_LINK_TENANT, "psa-t5", NULL, "idp-t4", NULL},
    };
    assert_int_equal(
        sg_links_import(fx->store, tenant_conflict, SG_ARRAY_LEN(tenant_conflict), &failed),
        SG_EEXIST);
    assert_int_equal(failed, 1);
    const struct sg_link bad[] = {
        {SG_LINK_TENANT, "psa-t6", NULL, "idp-t6", NULL},
        {SG_LINK_USER, "psa-t6", "", "idp-t6", "s"},
    };
    assert_int_equal(sg_links_import(fx->store, bad, SG_ARRAY_LEN(bad), &failed), SG_EINVAL);
    assert_int_equal(failed, 1);
    const struct sg_link orphan[] = {
        {SG_LINK_USER, "psa-t7", "u", "idp-t7", "s"},
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_schema_created, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_newer_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nested_read_transactions, setup, teardown),
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
        cmocka_unit_test_setup_teardown(test_links_corrupt_entries, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
