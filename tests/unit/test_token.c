/*
 * Random token and PKCE unit tests: the RFC 7636 appendix B vector, verifier
 * bounds, and the length, alphabet, bounds and independence of random tokens.
 */
#include "../../gateway/b64url.c"
#include "../../gateway/common.c"
#include "../../gateway/token.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void test_pkce(void **state)
{
    char out[SG_PKCE_CHALLENGE_LEN + 1];
    const char *verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"; /* RFC 7636 B */
    assert_int_equal(sg_pkce_challenge_s256(verifier, strlen(verifier), out), 0);
    assert_string_equal(out, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    assert_int_equal(sg_pkce_challenge_s256(verifier, 42, out), SG_EINVAL);
    assert_int_equal(sg_pkce_challenge_s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjX+", 43, out),
                     SG_EINVAL);
    char longv[130];
    memset(longv, 'a', sizeof(longv));
    assert_int_equal(sg_pkce_challenge_s256(longv, 128, out), 0);
    assert_int_equal(sg_pkce_challenge_s256(longv, 129, out), SG_EINVAL);
}

static void test_random_token(void **state)
{
    char a[44], b[44];
    assert_int_equal(sg_random_token(32, a, sizeof(a)), 0);
    assert_int_equal(sg_random_token(32, b, sizeof(b)), 0);
    assert_int_equal(strlen(a), 43);
    assert_string_not_equal(a, b);
    for (size_t i = 0; i < 43; i++)
        assert_true((b64url_value((unsigned char)a[i]) & XX) == 0);
    char pk[SG_PKCE_CHALLENGE_LEN + 1];
    assert_int_equal(sg_pkce_challenge_s256(a, strlen(a), pk), 0);
    assert_int_equal(sg_random_token(32, a, 43), SG_ETOOBIG);
    assert_int_equal(sg_random_token(0, a, sizeof(a)), SG_EINVAL);
    assert_int_equal(sg_random_token(513, a, sizeof(a)), SG_EINVAL);
}

/* Tokens drawn at once are as independent as tokens drawn one by one. */
static void test_random_tokens(void **state)
{
    char t[16][44];
    char *outs[16];
    for (size_t i = 0; i < 16; i++)
        outs[i] = t[i];
    assert_int_equal(sg_random_tokens(32, outs, 16, sizeof(t[0])), 0);
    for (size_t i = 0; i < 16; i++) {
        assert_int_equal(strlen(t[i]), 43);
        for (size_t k = 0; k < 43; k++)
            assert_true((b64url_value((unsigned char)t[i][k]) & XX) == 0);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(t[i], t[j]);
    }
    assert_int_equal(sg_random_tokens(32, outs, 0, sizeof(t[0])), SG_EINVAL);
    assert_int_equal(sg_random_tokens(0, outs, 2, sizeof(t[0])), SG_EINVAL);
    assert_int_equal(sg_random_tokens(256, outs, 3, sizeof(t[0])), SG_EINVAL);
    assert_int_equal(sg_random_tokens(32, outs, 2, 43), SG_ETOOBIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pkce),
        cmocka_unit_test(test_random_token),
        cmocka_unit_test(test_random_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
