/*
 * Unit tests of the assertion cache (assertion.c): a session's assertion is
 * signed once and reused for half its lifetime, and whatever the sets hold
 * (a full set evicts, a stale entry is signed again) a session never gets
 * another session's assertion.
 */
#include "ssogate/assertion.h"
#include "ssogate/b64url.h"
#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/metrics.h"
#include "ssogate/session.h"
#include "ssogate/signer.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <event2/buffer.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Sets of the cache (assertion.c's CACHE_SETS) and its hash: ids that share a set. */
#define SETS     8192
#define WAYS     8
#define SAME_SET 10

struct fixture {
    struct sg_config cfg;
    struct sg_signer signer;
    struct sg_assertions *cache;
    char ids[SAME_SET][SG_SESSION_ID_SIZE];
    char subs[SAME_SET][16];
    struct sg_session sessions[SAME_SET];
};

static uint64_t set_of(const char *id)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h % SETS;
}

static int setup(void **state)
{
    struct fixture *fx = sg_calloc(1, sizeof(*fx));
    fx->cfg.public_url.text = (char *)"https://gw.example";
    fx->cfg.upstream.url.text = (char *)"http://psa.example";
    fx->cfg.identity = SG_IDENTITY_CLAIMS;
    fx->cfg.assertion.ttl_s = 60;
    fx->signer.key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    snprintf(fx->signer.kid, sizeof(fx->signer.kid), "k1");
    fx->signer.alg = "ES256";
    fx->cache = sg_assertions_new();
    /* Random session ids until SAME_SET of them fall into one set (about 8,192 draws each). */
    sg_session_new_id(fx->ids[0]);
    uint64_t set = set_of(fx->ids[0]);
    for (int n = 1, tries = 0; n < SAME_SET && tries < 10000000; tries++) {
        sg_session_new_id(fx->ids[n]);
        if (set_of(fx->ids[n]) == set)
            n++;
    }
    for (int i = 0; i < SAME_SET; i++) {
        assert_int_equal(set_of(fx->ids[i]), set);
        snprintf(fx->subs[i], sizeof(fx->subs[i]), "user-%d", i);
        fx->sessions[i].idp_sub = fx->subs[i];
        fx->sessions[i].idp_issuer = (char *)"https://idp.example";
    }
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    sg_assertions_free(fx->cache);
    EVP_PKEY_free(fx->signer.key);
    free(fx);
    return 0;
}

/* The "sub" claim of an assertion, from its payload. */
static void assert_sub(const char *token, const char *sub)
{
    const char *dot1 = strchr(token, '.');
    assert_non_null(dot1);
    const char *dot2 = strchr(dot1 + 1, '.');
    assert_non_null(dot2);
    unsigned char payload[2048];
    size_t len = 0;
    assert_int_equal(
        sg_b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), payload, sizeof(payload) - 1, &len),
        0);
    payload[len] = '\0';
    char want[64];
    snprintf(want, sizeof(want), "\"sub\":\"%s\"", sub);
    assert_non_null(strstr((const char *)payload, want));
}

static const char *get(struct fixture *fx, int i)
{
    const char *token =
        sg_assertions_get(fx->cache, &fx->cfg, &fx->signer, fx->ids[i], &fx->sessions[i]);
    assert_non_null(token);
    assert_sub(token, fx->subs[i]);
    return token;
}

/* ssogate_assertions_signed_total{reason="REASON"} as rendered (0 before its first count). */
static long signed_count(const char *reason)
{
    struct evbuffer *out = evbuffer_new();
    sg_metrics_render(out);
    evbuffer_add(out, "", 1);
    const char *text = (const char *)evbuffer_pullup(out, -1);
    char line[96];
    snprintf(line, sizeof(line), "\nssogate_assertions_signed_total{reason=\"%s\"} ", reason);
    const char *at = strstr(text, line);
    long count = at != NULL ? strtol(at + strlen(line), NULL, 10) : 0;
    evbuffer_free(out);
    return count;
}

static void test_cached_for_half_the_ttl(void **state)
{
    struct fixture *fx = *state;
    long made = signed_count("new");
    long refreshed = signed_count("refresh");
    char first[1024];
    snprintf(first, sizeof(first), "%s", get(fx, 0));
    assert_string_equal(get(fx, 0), first);
    assert_int_equal(signed_count("new"), made + 1);
    /* A lifetime of 1 s: half of it rounds to 0, so every call signs anew (a new jti). */
    fx->cfg.assertion.ttl_s = 1;
    snprintf(first, sizeof(first), "%s", get(fx, 1));
    assert_string_not_equal(get(fx, 1), first);
    assert_int_equal(signed_count("new"), made + 2);
    assert_int_equal(signed_count("refresh"), refreshed + 1);
}

static void test_full_set_never_mixes_sessions(void **state)
{
    struct fixture *fx = *state;
    /* WAYS ways: the first WAYS sessions are kept; the others evict, and every session, asked in
     * every order, gets an assertion of its own subject. */
    char kept[WAYS][1024];
    for (int i = 0; i < WAYS; i++)
        snprintf(kept[i], sizeof(kept[i]), "%s", get(fx, i));
    for (int i = 0; i < WAYS; i++)
        assert_string_equal(get(fx, i), kept[i]);
    for (int round = 0; round < 3; round++) {
        for (int i = SAME_SET - 1; i >= 0; i--)
            get(fx, i);
        for (int i = 0; i < SAME_SET; i++)
            get(fx, (i * 5 + round) % SAME_SET);
    }
}

static void test_capacity(void **state)
{
    struct fixture *fx = *state;
    /* Four times as many sessions as sets (half the slots), asked in turn as a load test does:
     * the sessions of a set holding more than its ways evict each other in turn, the rest stay,
     * about 96% (four ways over twice the sets: 94%). A hash that left sets unused (or a set index
     * that is not uniform) evicts far more. */
    enum { SESSIONS = 4 * SETS };
    char(*ids)[SG_SESSION_ID_SIZE] = sg_calloc(SESSIONS, SG_SESSION_ID_SIZE);
    char(*jtis)[24] = sg_calloc(SESSIONS, 24);
    struct sg_session s = {.idp_sub = (char *)"user", .idp_issuer = (char *)"https://idp.example"};
    for (int pass = 0, hits = 0; pass < 2; pass++) {
        for (int i = 0; i < SESSIONS; i++) {
            if (pass == 0)
                sg_session_new_id(ids[i]);
            const char *token = sg_assertions_get(fx->cache, &fx->cfg, &fx->signer, ids[i], &s);
            assert_non_null(token);
            /* The signature part differs with every signing. */
            const char *sig = strrchr(token, '.');
            assert_non_null(sig);
            if (pass == 0)
                snprintf(jtis[i], sizeof(jtis[i]), "%s", sig);
            else if (strncmp(jtis[i], sig, sizeof(jtis[i]) - 1) == 0)
                hits++;
        }
        if (pass == 1) {
            printf("# %d of %d assertions still cached\n", hits, SESSIONS);
            assert_true(hits >= SESSIONS * 95 / 100);
        }
    }
    free(ids);
    free(jtis);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cached_for_half_the_ttl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_set_never_mixes_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capacity, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
