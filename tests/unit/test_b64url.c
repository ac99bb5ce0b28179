/*
 * base64url unit tests: the RFC 4648 section 10 vectors in the URL-safe
 * alphabet, round trips of every length, and the strict decoder's refusals.
 */
#include "../../gateway/b64url.c"
#include "../../gateway/common.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <event2/http.h>

static void test_b64url_vectors(void **state)
{
    static const struct {
        const char *in, *out;
    } v[] = {{"", ""},           {"f", "Zg"},          {"fo", "Zm8"},          {"foo", "Zm9v"},
             {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}, {"\xfb\xff", "-_8"}};
    for (size_t i = 0; i < SG_ARRAY_LEN(v); i++) {
        char out[32];
        unsigned char back[32];
        size_t back_len = 99;
        assert_int_equal(sg_b64url_encode(v[i].in, strlen(v[i].in), out, sizeof(out)), 0);
        assert_string_equal(out, v[i].out);
        assert_int_equal(strlen(out), SG_B64URL_ENCODED_LEN(strlen(v[i].in)));
        assert_int_equal(sg_b64url_decode(out, strlen(out), back, sizeof(back), &back_len), 0);
        assert_int_equal(back_len, strlen(v[i].in));
        assert_memory_equal(back, v[i].in, back_len);
    }
}

static void test_b64url_roundtrip(void **state)
{
    unsigned char in[200], back[200];
    char text[300];
    for (size_t len = 0; len < sizeof(in); len++) {
        sg_random_bytes(in, sizeof(in));
        size_t back_len = 0;
        assert_int_equal(sg_b64url_encode(in, len, text, sizeof(text)), 0);
        assert_int_equal(sg_b64url_decode(text, strlen(text), back, len, &back_len), 0);
        assert_int_equal(back_len, len);
        assert_memory_equal(back, in, len);
    }
}

static void test_b64url_strict(void **state)
{
    unsigned char out[64];
    size_t n = 0;
    static const char *const bad[] = {
        "Zg==",                              /* padding */
        "Zg=",        "Z",    "Zm9vY",       /* length % 4 == 1 */
        "Zm+v",                              /* standard alphabet */
        "Zm/v",       "Zm 9", "Zm9\n", "Zh", /* non-zero unused bits: 'f' is Zg */
        "Zm9",                               /* "fo" is Zm8 */
        "Zm\xc3\xa9",
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(bad); i++)
        assert_int_equal(sg_b64url_decode(bad[i], strlen(bad[i]), out, sizeof(out), &n), SG_EINVAL);
    assert_int_equal(sg_b64url_decode("Zm\0v", 4, out, sizeof(out), &n), SG_EINVAL);
    /* Bounded output. */
    assert_int_equal(sg_b64url_decode("Zm9vYmFy", 8, out, 5, &n), SG_ETOOBIG);
    assert_int_equal(sg_b64url_decode("Zm9vYmFy", 8, out, 6, &n), 0);
    char small[4];
    assert_int_equal(sg_b64url_encode("foo", 3, small, sizeof(small)), SG_ETOOBIG);
}

/* Percent-encoding gives what libevent's evhttp_uriencode gives, for every byte in both modes. */
static void test_percent_encode(void **state)
{
    char all[256];
    for (int c = 1; c < 256; c++)
        all[c - 1] = (char)c;
    all[255] = '\0';
    const char *inputs[] = {
        "",           "openid email profile", "https://gw.example/_sso/callback?a=b&c=d",
        "AZaz09-._~", "caf\xc3\xa9 +%",       all};
    for (size_t i = 0; i < SG_ARRAY_LEN(inputs); i++) {
        for (int plus = 0; plus <= 1; plus++) {
            char *ours = sg_percent_encode(inputs[i], plus);
            char *theirs = evhttp_uriencode(inputs[i], -1, plus);
            assert_non_null(theirs);
            assert_string_equal(ours, theirs);
            free(ours);
            free(theirs);
        }
    }
    char *form = sg_percent_encode("a b/c~", true);
    assert_string_equal(form, "a+b%2Fc~");
    free(form);
    char *path = sg_percent_encode("a b/c~", false);
    assert_string_equal(path, "a%20b%2Fc~");
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64url_vectors),
        cmocka_unit_test(test_b64url_roundtrip),
        cmocka_unit_test(test_b64url_strict),
        cmocka_unit_test(test_percent_encode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
