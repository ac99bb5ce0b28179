/*
 * Unit tests of the login-state record (issue 10): the codec round trip of
 * every field and edge, corrupt records of every kind, and the store calls
 * (single-use take, expiry, sweep) against a real LMDB environment in a
 * temporary directory.
 */
#include "../../gateway/common.c"
#include "../../gateway/loginstate.c"
#include "../../gateway/store.c"
#include "../../gateway/store_lmdb.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <ftw.h>
#include <unistd.h>

#define NOW ((int64_t)1700000000)

static const char STATE[] = "c3RhdGUtc3RhdGUtc3RhdGUtc3RhdGUtc3RhdGUtc3R";
static const char NONCE[] = "bm9uY2Utbm9uY2Utbm9uY2Utbm9uY2Utbm9uY2Utbm9";
static const char VERIFIER[] = "dmVyaWZpZXItdmVyaWZpZXItdmVyaWZpZXItdmVyaWZ";

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
    strcpy(fx->dir, "/tmp/sg-loginstate-XXXXXX");
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

/* A login state with every field set; its texts are borrowed. */
static struct sg_loginstate make_state(const char *state, enum sg_login_purpose purpose,
                                       char *return_to, char *psa_tenant, char *psa_user)
{
    struct sg_loginstate s = {
        .purpose = purpose,
        .return_to = return_to,
        .psa_tenant = psa_tenant,
        .psa_user = psa_user,
        .created = NOW,
    };
    memcpy(s.state, state, strlen(state) + 1);
    memcpy(s.nonce, NONCE, sizeof(NONCE));
    memcpy(s.verifier, VERIFIER, sizeof(VERIFIER));
    for (size_t i = 0; i < sizeof(s.binding); i++)
        s.binding[i] = (unsigned char)(0xff - i);
    return s;
}

static void assert_text_equal(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        assert_ptr_equal(a, b);
    else
        assert_string_equal(a, b);
}

/* Every field of a matches b, except state, which the record does not hold. */
static void assert_fields_equal(const struct sg_loginstate *a, const struct sg_loginstate *b)
{
    assert_string_equal(a->nonce, b->nonce);
    assert_string_equal(a->verifier, b->verifier);
    assert_memory_equal(a->binding, b->binding, sizeof(a->binding));
    assert_int_equal(a->purpose, b->purpose);
    assert_text_equal(a->return_to, b->return_to);
    assert_text_equal(a->psa_tenant, b->psa_tenant);
    assert_text_equal(a->psa_user, b->psa_user);
    assert_int_equal(a->created, b->created);
}

/* Encodes s, decodes it back, checks every field and that re-encoding gives the same bytes. */
static void round_trip(const struct sg_loginstate *s)
{
    unsigned char record[SG_LOGINSTATE_RECORD_MAX], again[SG_LOGINSTATE_RECORD_MAX];
    size_t len, again_len;
    struct sg_loginstate out;
    assert_int_equal(sg_loginstate_encode(s, record, &len), 0);
    assert_int_equal(sg_loginstate_decode(record, len, &out), SG_LOGINSTATE_OK);
    assert_fields_equal(&out, s);
    assert_string_equal(out.state, "");
    assert_int_equal(sg_loginstate_encode(&out, again, &again_len), 0);
    assert_int_equal(again_len, len);
    assert_memory_equal(again, record, len);
    sg_loginstate_clear(&out);
}

static char *text_of(size_t len, char c)
{
    char *text = sg_malloc(len + 1);
    memset(text, c, len);
    text[len] = '\0';
    return text;
}

static void test_codec_round_trip(void **state)
{
    (void)state;
    struct sg_loginstate s = make_state(STATE, SG_LOGIN_SESSION, "/app/?a=1", NULL, NULL);
    round_trip(&s);
    s = make_state(STATE, SG_LOGIN_LINK_TENANT, "/_sso/settings", "psa-tenant-7", "u\xc3\xa9");
    round_trip(&s);
    s = make_state(STATE, SG_LOGIN_LINK_USER, "/", "t", "u");
    round_trip(&s);
    s.created = 0;
    round_trip(&s);
    s.created = INT64_MIN;
    round_trip(&s);
    s.created = INT64_MAX;
    round_trip(&s);
    memset(s.binding, 0, sizeof(s.binding));
    round_trip(&s);
    /* nonce and verifier: every base64url character */
    memcpy(s.nonce, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq", SG_LOGINSTATE_TOKEN_SIZE);
    memcpy(s.verifier, "rstuvwxyz0123456789-_AAAAAAAAAAAAAAAAAAAAAA", SG_LOGINSTATE_TOKEN_SIZE);
    round_trip(&s);
}

static void test_codec_edges(void **state)
{
    (void)state;
    unsigned char record[SG_LOGINSTATE_RECORD_MAX];
    size_t len;
    struct sg_loginstate out;

    /* the largest record: every text at its maximum length */
    char *longest = text_of(SG_LOGINSTATE_TEXT_MAX, 'x');
    longest[0] = '/';
    struct sg_loginstate s = make_state(STATE, SG_LOGIN_LINK_USER, longest, longest, longest);
    assert_int_equal(sg_loginstate_encode(&s, record, &len), 0);
    assert_int_equal(len, SG_LOGINSTATE_RECORD_MAX);
    round_trip(&s);

    /* one byte more is refused, in any text */
    char *too_long = text_of(SG_LOGINSTATE_TEXT_MAX + 1, 'y');
    s.return_to = too_long;
    assert_int_equal(sg_loginstate_encode(&s, record, &len), SG_EINVAL);
    s.return_to = longest;
    s.psa_tenant = too_long;
    assert_int_equal(sg_loginstate_encode(&s, record, &len), SG_EINVAL);
    s.psa_tenant = NULL;
    s.psa_user = too_long;
    assert_int_equal(sg_loginstate_encode(&s, record, &len), SG_EINVAL);

    /* empty psa texts are stored as absent */
    s = make_state(STATE, SG_LOGIN_LINK_TENANT, "/", "", "");
    assert_int_equal(sg_loginstate_encode(&s, record, &len), 0);
    assert_int_equal(sg_loginstate_decode(record, len, &out), SG_LOGINSTATE_OK);
    assert_null(out.psa_tenant);
    assert_null(out.psa_user);
    sg_loginstate_clear(&out);

    /* return_to is required: empty or missing is refused both ways */
    s = make_state(STATE, SG_LOGIN_SESSION, "", NULL, NULL);
    assert_int_equal(sg_loginstate_encode(&s, record, &len), SG_EINVAL);
    s.return_to = NULL;
    assert_int_equal(sg_loginstate_encode(&s, record, &len), SG_EINVAL);
    s.return_to = "/x";
    assert_int_equal(sg_loginstate_encode(&s, record, &len), 0);
    /* turn "/x" into "" by hand: length 0, and drop the two bytes */
    size_t at = OFFSET_TEXTS;
    record[at + 1] = 0;
    memmove(record + at + 2, record + at + 4, len - at - 4);
    assert_int_equal(sg_loginstate_decode(record, len - 2, &out), SG_LOGINSTATE_BAD_TEXT);

    /* nonce, verifier and purpose are checked on the way in */
    s = make_state(STATE, SG_LOGIN_SESSION, "/", NULL, NULL);
    s.nonce[10] = '+';
    assert_int_equal(sg_loginstate_encode(&s, record, &len), SG_EINVAL);
    s = make_state(STATE, SG_LOGIN_SESSION, "/", NULL, NULL);
    s.verifier[SG_LOGINSTATE_TOKEN_LEN - 1] = '\0';
    assert_int_equal(sg_loginstate_encode(&s, record, &len), SG_EINVAL);
    s = make_state(STATE, SG_LOGIN_SESSION, "/", NULL, NULL);
    s.purpose = (enum sg_login_purpose)(SG_LOGIN_LINK_USER + 1);
    assert_int_equal(sg_loginstate_encode(&s, record, &len), SG_EINVAL);

    free(longest);
    free(too_long);
}

/* Decoding data must give status, leave *out zeroed, and not crash. */
static void assert_refused(const unsigned char *data, size_t len, enum sg_loginstate_status status)
{
    /* an exact-size copy, so that the sanitizers see any read past the end */
    unsigned char *copy = sg_malloc(len > 0 ? len : 1);
    memcpy(copy, data, len);
    struct sg_loginstate out, zero;
    memset(&out, 0x5a, sizeof(out));
    memset(&zero, 0, sizeof(zero));
    assert_int_equal(sg_loginstate_decode(copy, len, &out), status);
    assert_memory_equal(&out, &zero, sizeof(out));
    free(copy);
}

static void test_corrupt_truncated(void **state)
{
    (void)state;
    unsigned char record[SG_LOGINSTATE_RECORD_MAX];
    size_t len;
    struct sg_loginstate s = make_state(STATE, SG_LOGIN_LINK_USER, "/home", "tenant", "user");
    assert_int_equal(sg_loginstate_encode(&s, record, &len), 0);
    for (size_t cut = 0; cut < len; cut++)
        assert_refused(record, cut, SG_LOGINSTATE_TRUNCATED);
    struct sg_loginstate out;
    assert_int_equal(sg_loginstate_decode(record, len, &out), SG_LOGINSTATE_OK);
    sg_loginstate_clear(&out);
}

static void test_corrupt_fields(void **state)
{
    (void)state;
    unsigned char record[SG_LOGINSTATE_RECORD_MAX + 1], bad[SG_LOGINSTATE_RECORD_MAX + 1];
    size_t len;
    struct sg_loginstate s = make_state(STATE, SG_LOGIN_LINK_USER, "/home", "tenant", "user");
    assert_int_equal(sg_loginstate_encode(&s, record, &len), 0);
    size_t tenant_at = OFFSET_TEXTS + 2 + strlen("/home");

    /* wrong version byte: any but 1, including the unversioned layout's 0 */
    for (int v = 0; v < 256; v++) {
        if (v == RECORD_VERSION)
            continue;
        memcpy(bad, record, len);
        bad[0] = (unsigned char)v;
        assert_refused(bad, len, SG_LOGINSTATE_BAD_VERSION);
    }

    /* lengths pointing past the end: each text, by one byte and by the most */
    size_t at = OFFSET_TEXTS;
    for (int i = 0; i < TEXT_COUNT; i++) {
        size_t n = (size_t)record[at] << 8 | record[at + 1];
        memcpy(bad, record, len);
        size_t past = n + (len - at - 2 - n) + 1;
        bad[at] = (unsigned char)(past >> 8);
        bad[at + 1] = (unsigned char)past;
        assert_refused(bad, len, SG_LOGINSTATE_TRUNCATED);
        bad[at] = 0xff;
        bad[at + 1] = 0xff;
        assert_refused(bad, len, SG_LOGINSTATE_TRUNCATED);
        at += 2 + n;
    }

    /* a length over the bound, although the bytes are there */
    unsigned char *big = sg_calloc(1, 70000);
    memcpy(big, record, tenant_at);
    size_t over = SG_LOGINSTATE_TEXT_MAX + 1;
    big[tenant_at] = (unsigned char)(over >> 8);
    big[tenant_at + 1] = (unsigned char)over;
    memset(big + tenant_at + 2, 'a', over);
    size_t big_len = tenant_at + 2 + over;
    big[big_len++] = 0;
    big[big_len++] = 0;
    assert_refused(big, big_len, SG_LOGINSTATE_BAD_TEXT);
    free(big);

    /* a NUL inside a text */
    memcpy(bad, record, len);
    bad[tenant_at + 3] = '\0';
    assert_refused(bad, len, SG_LOGINSTATE_BAD_TEXT);

    /* trailing bytes */
    memcpy(bad, record, len);
    bad[len] = 'z';
    assert_refused(bad, len + 1, SG_LOGINSTATE_TRAILING);

    /* unknown purpose */
    memcpy(bad, record, len);
    bad[OFFSET_PURPOSE] = SG_LOGIN_LINK_USER + 1;
    assert_refused(bad, len, SG_LOGINSTATE_BAD_PURPOSE);
    bad[OFFSET_PURPOSE] = 0xff;
    assert_refused(bad, len, SG_LOGINSTATE_BAD_PURPOSE);

    /* nonce and verifier: a byte outside base64url */
    memcpy(bad, record, len);
    bad[OFFSET_NONCE] = '=';
    assert_refused(bad, len, SG_LOGINSTATE_BAD_TOKEN);
    memcpy(bad, record, len);
    bad[OFFSET_VERIFIER + SG_LOGINSTATE_TOKEN_LEN - 1] = '\0';
    assert_refused(bad, len, SG_LOGINSTATE_BAD_TOKEN);
}

static void test_corrupt_garbage(void **state)
{
    (void)state;
    unsigned char buf[4096];
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (int round = 0; round < 2000; round++) {
        size_t len = (size_t)(x % sizeof(buf));
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[i] = (unsigned char)x;
        }
        if (len > 0 && round % 2 == 0)
            buf[0] = RECORD_VERSION; /* past the version check */
        struct sg_loginstate out;
        enum sg_loginstate_status status = sg_loginstate_decode(buf, len, &out);
        assert_int_not_equal(status, SG_LOGINSTATE_OK);
        assert_null(out.return_to);
        assert_non_null(sg_loginstate_status_name(status));
    }
    /* every status has its own name */
    for (int a = SG_LOGINSTATE_OK; a <= SG_LOGINSTATE_TRAILING; a++)
        for (int b = a + 1; b <= SG_LOGINSTATE_TRAILING; b++)
            assert_string_not_equal(sg_loginstate_status_name(a), sg_loginstate_status_name(b));
}

static void test_put_take_single_use(void **state)
{
    struct fixture *fx = *state;
    struct sg_loginstate s = make_state(STATE, SG_LOGIN_LINK_TENANT, "/_sso/settings", "t", "u");
    struct sg_loginstate out;
    size_t count;
    assert_int_equal(sg_loginstate_put(fx->store, &s), 0);
    assert_int_equal(sg_loginstate_count(fx->store, &count), 0);
    assert_int_equal(count, 1);

    assert_int_equal(sg_loginstate_take(fx->store, STATE, NOW + 1, &out), 0);
    assert_fields_equal(&out, &s);
    assert_string_equal(out.state, STATE);
    sg_loginstate_clear(&out);

    /* the second take finds nothing: a state is used once */
    assert_int_equal(sg_loginstate_take(fx->store, STATE, NOW + 1, &out), SG_ENOENT);
    assert_null(out.return_to);
    assert_int_equal(sg_loginstate_count(fx->store, &count), 0);
    assert_int_equal(count, 0);

    /* unknown states, and strings that cannot be states */
    assert_int_equal(sg_loginstate_put(fx->store, &s), 0);
    assert_int_equal(sg_loginstate_take(fx->store, NONCE, NOW, &out), SG_ENOENT);
    assert_int_equal(sg_loginstate_take(fx->store, "", NOW, &out), SG_ENOENT);
    assert_int_equal(sg_loginstate_take(fx->store, "short", NOW, &out), SG_ENOENT);
    char *longer = sg_asprintf("%sA", STATE);
    assert_int_equal(sg_loginstate_take(fx->store, longer, NOW, &out), SG_ENOENT);
    free(longer);
    assert_int_equal(sg_loginstate_count(fx->store, &count), 0);
    assert_int_equal(count, 1);

    /* a state that is not a token is not stored */
    struct sg_loginstate bad = make_state("not a token", SG_LOGIN_SESSION, "/", NULL, NULL);
    assert_int_equal(sg_loginstate_put(fx->store, &bad), SG_EINVAL);
}

static void test_key_is_hash(void **state)
{
    struct fixture *fx = *state;
    struct sg_loginstate s = make_state(STATE, SG_LOGIN_SESSION, "/", NULL, NULL);
    assert_int_equal(sg_loginstate_put(fx->store, &s), 0);
    struct sg_store_txn txn;
    unsigned char key[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)STATE, strlen(STATE), key);
    const void *val;
    size_t vlen;
    assert_int_equal(sg_store_txn_begin(fx->store, false, &txn), 0);
    assert_int_equal(sg_store_get(&txn, SG_STORE_DB_LOGINS, key, sizeof(key), &val, &vlen), 0);
    assert_null(memmem(val, vlen, STATE, strlen(STATE)));
    sg_store_txn_abort(&txn);
}

static void test_expiry(void **state)
{
    struct fixture *fx = *state;
    struct sg_loginstate s = make_state(STATE, SG_LOGIN_SESSION, "/", NULL, NULL);
    struct sg_loginstate out;
    size_t count;

    /* the last second of its life */
    assert_int_equal(sg_loginstate_put(fx->store, &s), 0);
    assert_int_equal(sg_loginstate_take(fx->store, STATE, NOW + SG_LOGINSTATE_TTL_S - 1, &out), 0);
    sg_loginstate_clear(&out);

    /* expired: refused, and deleted all the same */
    assert_int_equal(sg_loginstate_put(fx->store, &s), 0);
    assert_int_equal(sg_loginstate_take(fx->store, STATE, NOW + SG_LOGINSTATE_TTL_S, &out),
                     SG_ETIMEOUT);
    assert_null(out.return_to);
    assert_int_equal(sg_loginstate_count(fx->store, &count), 0);
    assert_int_equal(count, 0);

    /* a created time from another worker's clock, ahead of ours, is not expired */
    s.created = NOW + 30;
    assert_int_equal(sg_loginstate_put(fx->store, &s), 0);
    assert_int_equal(sg_loginstate_take(fx->store, STATE, NOW, &out), 0);
    sg_loginstate_clear(&out);

    /* extreme created times do not overflow */
    s.created = INT64_MIN;
    assert_int_equal(sg_loginstate_put(fx->store, &s), 0);
    assert_int_equal(sg_loginstate_take(fx->store, STATE, NOW, &out), SG_ETIMEOUT);
    s.created = INT64_MAX;
    assert_int_equal(sg_loginstate_put(fx->store, &s), 0);
    assert_int_equal(sg_loginstate_take(fx->store, STATE, NOW, &out), 0);
    sg_loginstate_clear(&out);
}

/* Writes value under the key of state, bypassing the codec. */
static void put_raw(struct sg_store *store, const char *state, void *value, size_t len)
{
    struct sg_store_txn txn;
    unsigned char key[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)state, strlen(state), key);
    assert_int_equal(sg_store_txn_begin(store, true, &txn), 0);
    assert_int_equal(sg_store_put(&txn, SG_STORE_DB_LOGINS, key, sizeof(key), value, len, 0), 0);
    assert_int_equal(sg_store_txn_commit(&txn, SG_STORE_LAZY), 0);
}

static void test_take_corrupt(void **state)
{
    struct fixture *fx = *state;
    struct sg_loginstate out;
    size_t count;
    /* the unversioned layout of earlier builds, and garbage: unknown, and gone */
    unsigned char old[200] = {0};
    put_raw(fx->store, STATE, old, sizeof(old));
    assert_int_equal(sg_loginstate_take(fx->store, STATE, NOW, &out), SG_ENOENT);
    assert_null(out.return_to);
    put_raw(fx->store, STATE, "\x01garbage", 8);
    assert_int_equal(sg_loginstate_take(fx->store, STATE, NOW, &out), SG_ENOENT);
    assert_int_equal(sg_loginstate_count(fx->store, &count), 0);
    assert_int_equal(count, 0);
}

/* A token for state number i: 43 base64url characters. */
static void state_name(int i, char out[SG_LOGINSTATE_TOKEN_SIZE])
{
    snprintf(out, SG_LOGINSTATE_TOKEN_SIZE, "%043d", i);
}

static void test_sweep(void **state)
{
    struct fixture *fx = *state;
    char name[SG_LOGINSTATE_TOKEN_SIZE];
    size_t count, deleted;
    /* 10 live, 20 expired, 3 undecodable */
    for (int i = 0; i < 30; i++) {
        state_name(i, name);
        struct sg_loginstate s = make_state(name, SG_LOGIN_SESSION, "/", NULL, NULL);
        s.created = i < 10 ? NOW : NOW - SG_LOGINSTATE_TTL_S - i;
        assert_int_equal(sg_loginstate_put(fx->store, &s), 0);
    }
    for (int i = 30; i < 33; i++) {
        state_name(i, name);
        put_raw(fx->store, name, "\x02", 1);
    }
    assert_int_equal(sg_loginstate_count(fx->store, &count), 0);
    assert_int_equal(count, 33);

    /* bounded by max */
    assert_int_equal(sg_loginstate_sweep(fx->store, NOW, 5, &deleted), 0);
    assert_int_equal(deleted, 5);
    assert_int_equal(sg_loginstate_sweep(fx->store, NOW, 1000, &deleted), 0);
    assert_int_equal(deleted, 18);
    assert_int_equal(sg_loginstate_count(fx->store, &count), 0);
    assert_int_equal(count, 10);
    assert_int_equal(sg_loginstate_sweep(fx->store, NOW, 1000, NULL), 0);

    /* the live ones are still there, each once */
    for (int i = 0; i < 10; i++) {
        struct sg_loginstate out;
        state_name(i, name);
        assert_int_equal(sg_loginstate_take(fx->store, name, NOW, &out), 0);
        sg_loginstate_clear(&out);
    }
    assert_int_equal(sg_loginstate_sweep(fx->store, NOW, 1000, &deleted), 0);
    assert_int_equal(deleted, 0);
}

/* A record under a key this module never writes (not a SHA-256) is swept all the same. */
static void test_sweep_foreign_key(void **state)
{
    struct fixture *fx = *state;
    struct sg_loginstate s = make_state(STATE, SG_LOGIN_SESSION, "/", NULL, NULL);
    assert_int_equal(sg_loginstate_put(fx->store, &s), 0);
    struct sg_store_txn txn;
    assert_int_equal(sg_store_txn_begin(fx->store, true, &txn), 0);
    assert_int_equal(sg_store_put(&txn, SG_STORE_DB_LOGINS, "junk", 4, "\x01", 1, 0), 0);
    char long_key[SG_STORE_KEY_MAX];
    memset(long_key, 'k', sizeof(long_key));
    assert_int_equal(sg_store_put(&txn, SG_STORE_DB_LOGINS, long_key, sizeof(long_key), "", 0, 0),
                     0);
    assert_int_equal(sg_store_txn_commit(&txn, SG_STORE_LAZY), 0);
    size_t count, deleted;
    assert_int_equal(sg_loginstate_count(fx->store, &count), 0);
    assert_int_equal(count, 3);
    assert_int_equal(sg_loginstate_sweep(fx->store, NOW, 1000, &deleted), 0);
    assert_int_equal(deleted, 2);
    assert_int_equal(sg_loginstate_count(fx->store, &count), 0);
    assert_int_equal(count, 1);
    struct sg_loginstate out;
    assert_int_equal(sg_loginstate_take(fx->store, STATE, NOW, &out), 0);
    sg_loginstate_clear(&out);
}

static void test_clear(void **state)
{
    (void)state;
    sg_loginstate_clear(NULL);
    struct sg_loginstate s = make_state(STATE, SG_LOGIN_LINK_USER, "/", NULL, NULL);
    s.return_to = sg_strdup("/a");
    s.psa_tenant = sg_strdup("t");
    s.psa_user = sg_strdup("u");
    sg_loginstate_clear(&s);
    struct sg_loginstate zero;
    memset(&zero, 0, sizeof(zero));
    assert_memory_equal(&s, &zero, sizeof(s));
}

/* In memory (one worker): single use, expiry, replacement, growth and the sweep. */
static void test_table(void **state)
{
    (void)state;
    struct sg_loginstate_table *t = sg_loginstate_table_new();
    struct sg_loginstate s = make_state(STATE, SG_LOGIN_LINK_TENANT, "/_sso/settings", "t", "u");
    struct sg_loginstate out;
    assert_int_equal(sg_loginstate_table_put(t, &s), 0);
    assert_int_equal(sg_loginstate_table_count(t), 1);
    assert_int_equal(sg_loginstate_table_take(t, NONCE, NOW, &out), SG_ENOENT);
    assert_int_equal(sg_loginstate_table_take(t, "short", NOW, &out), SG_ENOENT);
    assert_int_equal(sg_loginstate_table_take(t, STATE, NOW + 1, &out), 0);
    assert_fields_equal(&out, &s);
    assert_string_equal(out.state, STATE);
    sg_loginstate_clear(&out);
    /* used once */
    assert_int_equal(sg_loginstate_table_take(t, STATE, NOW + 1, &out), SG_ENOENT);
    assert_null(out.return_to);
    assert_int_equal(sg_loginstate_table_count(t), 0);

    /* expired at SG_LOGINSTATE_TTL_S: refused and gone */
    assert_int_equal(sg_loginstate_table_put(t, &s), 0);
    assert_int_equal(sg_loginstate_table_take(t, STATE, NOW + SG_LOGINSTATE_TTL_S, &out),
                     SG_ETIMEOUT);
    assert_null(out.return_to);
    assert_int_equal(sg_loginstate_table_count(t), 0);

    /* a second put of the same state replaces the first */
    assert_int_equal(sg_loginstate_table_put(t, &s), 0);
    struct sg_loginstate again = make_state(STATE, SG_LOGIN_SESSION, "/again", NULL, NULL);
    assert_int_equal(sg_loginstate_table_put(t, &again), 0);
    assert_int_equal(sg_loginstate_table_count(t), 1);
    assert_int_equal(sg_loginstate_table_take(t, STATE, NOW, &out), 0);
    assert_string_equal(out.return_to, "/again");
    sg_loginstate_clear(&out);

    /* invalid states are refused as the store refuses them */
    struct sg_loginstate bad = make_state("not a token", SG_LOGIN_SESSION, "/", NULL, NULL);
    assert_int_equal(sg_loginstate_table_put(t, &bad), SG_EINVAL);
    bad = make_state(STATE, SG_LOGIN_SESSION, NULL, NULL, NULL);
    assert_int_equal(sg_loginstate_table_put(t, &bad), SG_EINVAL);
    assert_int_equal(sg_loginstate_table_count(t), 0);

    /* many states (the table grows): 1000 old ones, then 1000 fresh ones */
    char names[2000][SG_LOGINSTATE_TOKEN_SIZE];
    for (int i = 0; i < 2000; i++) {
        snprintf(names[i], sizeof(names[i]), "%s", STATE);
        snprintf(names[i] + SG_LOGINSTATE_TOKEN_LEN - 4, 5, "%04d", i);
        struct sg_loginstate m = make_state(names[i], SG_LOGIN_SESSION, "/", NULL, NULL);
        m.created = i < 1000 ? NOW - SG_LOGINSTATE_TTL_S : NOW;
        assert_int_equal(sg_loginstate_table_put(t, &m), 0);
    }
    assert_int_equal(sg_loginstate_table_count(t), 2000);
    /* the sweep takes expired ones only, at most max per call */
    assert_int_equal(sg_loginstate_table_sweep(t, NOW, 600), 600);
    assert_int_equal(sg_loginstate_table_sweep(t, NOW, 5000), 400);
    assert_int_equal(sg_loginstate_table_sweep(t, NOW, 5000), 0);
    assert_int_equal(sg_loginstate_table_count(t), 1000);
    assert_int_equal(sg_loginstate_table_take(t, names[10], NOW, &out), SG_ENOENT);
    for (int i = 1000; i < 2000; i += 7) {
        assert_int_equal(sg_loginstate_table_take(t, names[i], NOW, &out), 0);
        assert_string_equal(out.state, names[i]);
        sg_loginstate_clear(&out);
    }
    assert_int_equal(sg_loginstate_table_count(t), 1000 - 143);
    sg_loginstate_table_free(t); /* frees what is left (ASan checks) */
    sg_loginstate_table_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_round_trip),
        cmocka_unit_test(test_codec_edges),
        cmocka_unit_test(test_corrupt_truncated),
        cmocka_unit_test(test_corrupt_fields),
        cmocka_unit_test(test_corrupt_garbage),
        cmocka_unit_test_setup_teardown(test_put_take_single_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_is_hash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_take_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep_foreign_key, setup, teardown),
        cmocka_unit_test(test_clear),
        cmocka_unit_test(test_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
