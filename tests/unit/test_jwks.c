/*
 * Unit tests of the IdP key cache (jwks.c): lookup by kid and alg, the
 * unknown-kid refetch rate limit, the store record and its round trip, and a
 * corrupt stored JWKS ignored rather than fatal. Against a real LMDB
 * environment in a temporary directory. The module came out of oidc.c and
 * store.c in issue 10.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ssogate/common.h"
#include "ssogate/jose.h"
#include "ssogate/jwks.h"
#include "ssogate/store.h"

#include <ftw.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <unistd.h>

#define NOW ((int64_t)1700000000)
#define ISS "https://idp.example"

struct fixture {
    char dir[64];
    struct sg_store *store;
    char *json; /* a JWKS of an ES256 key "ec-1" and an Ed25519 key "ed-1" */
};

/* The key the daemon's verification would pick (sg_jws_verify chooses with sg_jwk_set_find). */
static const struct sg_jwk *lookup(const struct sg_jwks *jwks, const char *kid, enum sg_jws_alg alg)
{
    return sg_jwk_set_find(sg_jwks_keys(jwks), kid, alg); /* NULL-safe */
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static char *make_jwks(void)
{
    EVP_PKEY *ec = NULL;
    EVP_PKEY *ed = NULL;
    assert_int_equal(sg_jose_key_generate(SG_JWS_ES256, &ec), 0);
    assert_int_equal(sg_jose_key_generate(SG_JWS_EDDSA, &ed), 0);
    struct sg_jwk_set *set = sg_jwk_set_new();
    assert_int_equal(sg_jwk_set_add(set, ec, "ec-1"), 0);
    assert_int_equal(sg_jwk_set_add(set, ed, "ed-1"), 0);
    char *json = sg_jwk_set_export_json(set);
    sg_jwk_set_free(set);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(ed);
    return json;
}

static int setup(void **state)
{
    struct fixture *fx = sg_calloc(1, sizeof(*fx));
    strcpy(fx->dir, "/tmp/sg-jwks-XXXXXX");
    if (mkdtemp(fx->dir) == NULL)
        return -1;
    char err[256];
    if (sg_store_open(fx->dir, &fx->store, err, sizeof(err)) != 0)
        return -1;
    fx->json = make_jwks();
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    sg_store_close(fx->store);
    nftw(fx->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(fx->json);
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

/* Writes a record as another version (or a damaged disk) could have left it. */
static void raw_put(struct sg_store *store, const char *issuer, const void *val, size_t vlen)
{
    struct sg_store_txn txn;
    assert_int_equal(sg_store_txn_begin(store, true, &txn), 0);
    assert_int_equal(sg_store_put(&txn, SG_STORE_DB_JWKS, issuer, strlen(issuer), val, vlen, 0), 0);
    assert_int_equal(sg_store_txn_commit(&txn, SG_STORE_LAZY), 0);
}

static void test_lookup_by_kid_and_alg(void **state)
{
    struct fixture *fx = *state;
    struct sg_jwks *jwks = sg_jwks_new(fx->store, NULL);
    assert_null(sg_jwks_keys(jwks));
    assert_null(lookup(jwks, "ec-1", SG_JWS_ES256));

    assert_int_equal(sg_jwks_replace(jwks, ISS, fx->json, strlen(fx->json), NOW), 0);
    assert_int_equal(sg_jwks_keys(jwks)->count, 2);
    const struct sg_jwk *key = lookup(jwks, "ec-1", SG_JWS_ES256);
    assert_non_null(key);
    assert_string_equal(key->kid, "ec-1");
    assert_int_equal(key->kty, SG_JWK_EC);
    key = lookup(jwks, "ed-1", SG_JWS_EDDSA);
    assert_non_null(key);
    assert_string_equal(key->kid, "ed-1");
    /* The kid's key even for another alg: verification then reports the mismatch. */
    key = lookup(jwks, "ec-1", SG_JWS_EDDSA);
    assert_non_null(key);
    assert_false(sg_jwk_suits(key, SG_JWS_EDDSA));
    assert_null(lookup(jwks, "unknown", SG_JWS_ES256));
    /* Without a kid: the one key that suits alg. */
    key = lookup(jwks, NULL, SG_JWS_EDDSA);
    assert_non_null(key);
    assert_string_equal(key->kid, "ed-1");
    assert_null(lookup(jwks, NULL, SG_JWS_RS256));
    sg_jwks_free(jwks);
    sg_jwks_free(NULL);
}

static void test_refetch_rate_limit(void **state)
{
    struct fixture *fx = *state;
    struct sg_jwks *jwks = sg_jwks_new(fx->store, NULL);
    assert_true(sg_jwks_refetch_allowed(jwks, NOW));
    sg_jwks_refetch_started(jwks, NOW);
    assert_false(sg_jwks_refetch_allowed(jwks, NOW));
    assert_false(sg_jwks_refetch_allowed(jwks, NOW + SG_JWKS_REFETCH_S - 1));
    assert_true(sg_jwks_refetch_allowed(jwks, NOW + SG_JWKS_REFETCH_S));

    /* A reload's new cache keeps the limit of the one it replaces. */
    struct sg_jwks *next = sg_jwks_new(fx->store, jwks);
    assert_false(sg_jwks_refetch_allowed(next, NOW + 1));
    assert_true(sg_jwks_refetch_allowed(next, NOW + SG_JWKS_REFETCH_S));
    sg_jwks_free(next);
    sg_jwks_free(jwks);
}

static void test_persistence_round_trip(void **state)
{
    struct fixture *fx = *state;
    struct sg_jwks *jwks = sg_jwks_new(fx->store, NULL);
    assert_int_equal(sg_jwks_load(jwks, ISS), SG_ENOENT);
    assert_true(sg_jwks_stale(jwks, NOW, 3600));
    assert_int_equal(sg_jwks_replace(jwks, ISS, fx->json, strlen(fx->json), NOW), 0);
    assert_false(sg_jwks_stale(jwks, NOW + 3599, 3600));
    assert_true(sg_jwks_stale(jwks, NOW + 3600, 3600));
    sg_jwks_free(jwks);

    reopen(fx);
    jwks = sg_jwks_new(fx->store, NULL);
    assert_int_equal(sg_jwks_load(jwks, ISS), 0);
    assert_int_equal(sg_jwks_keys(jwks)->count, 2);
    assert_non_null(lookup(jwks, "ed-1", SG_JWS_EDDSA));
    /* The stored fetch time, not the load time, decides staleness. */
    assert_false(sg_jwks_stale(jwks, NOW + 3599, 3600));
    assert_true(sg_jwks_stale(jwks, NOW + 3600, 3600));
    /* Another issuer has nothing stored. */
    assert_int_equal(sg_jwks_load(jwks, "https://other.example"), SG_ENOENT);
    assert_int_equal(sg_jwks_keys(jwks)->count, 2);
    sg_jwks_free(jwks);
}

static void test_invalid_fetch_keeps_keys(void **state)
{
    struct fixture *fx = *state;
    struct sg_jwks *jwks = sg_jwks_new(fx->store, NULL);
    assert_int_equal(sg_jwks_replace(jwks, ISS, fx->json, strlen(fx->json), NOW), 0);
    assert_int_equal(sg_jwks_replace(jwks, ISS, "{\"keys\":7}", 10, NOW + 60), SG_EINVAL);
    assert_int_equal(sg_jwks_keys(jwks)->count, 2);
    assert_true(sg_jwks_stale(jwks, NOW + 3600, 3600));
    sg_jwks_free(jwks);

    /* Nor was it stored. */
    char *json = NULL;
    size_t len = 0;
    int64_t fetched = 0;
    assert_int_equal(sg_jwks_store_get(fx->store, ISS, &json, &len, &fetched), 0);
    assert_string_equal(json, fx->json);
    assert_int_equal(fetched, NOW);
    free(json);
}

static void test_corrupt_store_ignored(void **state)
{
    struct fixture *fx = *state;
    struct sg_jwks *jwks = sg_jwks_new(fx->store, NULL);

    /* A record too short to hold its header, and one of an unknown version. */
    raw_put(fx->store, ISS, "\x01", 1);
    assert_int_equal(sg_jwks_load(jwks, ISS), SG_ESTORE);
    assert_null(sg_jwks_keys(jwks));
    raw_put(fx->store, ISS, "\x02\0\0\0\0\0\0\0\0{}", 11);
    assert_int_equal(sg_jwks_load(jwks, ISS), SG_ESTORE);
    assert_null(sg_jwks_keys(jwks));
    /* A sound record whose document is no JWKS. */
    assert_int_equal(sg_jwks_store_put(fx->store, ISS, "not json", 8, NOW), 0);
    assert_int_equal(sg_jwks_load(jwks, ISS), SG_EINVAL);
    assert_null(sg_jwks_keys(jwks));
    assert_true(sg_jwks_stale(jwks, NOW, 3600));

    /* The next fetch repairs it. */
    assert_int_equal(sg_jwks_replace(jwks, ISS, fx->json, strlen(fx->json), NOW), 0);
    sg_jwks_free(jwks);
    jwks = sg_jwks_new(fx->store, NULL);
    assert_int_equal(sg_jwks_load(jwks, ISS), 0);
    assert_int_equal(sg_jwks_keys(jwks)->count, 2);
    sg_jwks_free(jwks);
}

static void test_store_record(void **state)
{
    struct fixture *fx = *state;
    char *json = NULL;
    size_t len = 0;
    int64_t fetched = 0;
    assert_int_equal(sg_jwks_store_get(fx->store, ISS, &json, &len, &fetched), SG_ENOENT);
    assert_null(json);

    assert_int_equal(sg_jwks_store_put(fx->store, ISS, "{\"keys\":[]}", 11, NOW), 0);
    assert_int_equal(sg_jwks_store_put(fx->store, ISS, "{\"keys\":[1]}", 12, NOW + 5), 0);
    assert_int_equal(sg_jwks_store_get(fx->store, ISS, &json, &len, &fetched), 0);
    assert_int_equal(len, 12);
    assert_string_equal(json, "{\"keys\":[1]}");
    assert_int_equal(fetched, NOW + 5);
    SG_FREE(json);

    assert_int_equal(sg_jwks_store_put(fx->store, "", "{}", 2, NOW), SG_EINVAL);
    assert_int_equal(sg_jwks_store_put(fx->store, ISS, "", 0, NOW), SG_EINVAL);
    char long_iss[600];
    memset(long_iss, 'a', sizeof(long_iss) - 1);
    long_iss[sizeof(long_iss) - 1] = '\0';
    assert_int_equal(sg_jwks_store_put(fx->store, long_iss, "{}", 2, NOW), SG_ETOOBIG);
    assert_int_equal(sg_jwks_store_get(fx->store, long_iss, &json, &len, NULL), SG_ENOENT);
    char *big = sg_calloc(1, SG_JWKS_MAX + 1);
    assert_int_equal(sg_jwks_store_put(fx->store, ISS, big, SG_JWKS_MAX + 1, NOW), SG_ETOOBIG);
    free(big);

    raw_put(fx->store, ISS, "\x01", 1);
    assert_int_equal(sg_jwks_store_get(fx->store, ISS, &json, &len, NULL), SG_ESTORE);
    assert_null(json);

    reopen(fx);
    assert_int_equal(sg_jwks_store_put(fx->store, ISS, "{\"k\":2}", 7, NOW), 0);
    reopen(fx);
    assert_int_equal(sg_jwks_store_get(fx->store, ISS, &json, &len, NULL), 0);
    assert_string_equal(json, "{\"k\":2}");
    SG_FREE(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lookup_by_kid_and_alg, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refetch_rate_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persistence_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_fetch_keeps_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_store_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_record, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
