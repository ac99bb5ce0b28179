/*
 * Unit tests of the CSRF checks (gateway/csrf.c): the same-origin check on
 * Origin, else Referer, against public_url, with the prefix tricks an
 * attacker's host name can play; the double-submit comparison of the form
 * field with the *_csrf cookie; the page token.
 */
#include "../../gateway/b64url.c"
#include "../../gateway/common.c"
#include "../../gateway/cookie.c"
#include "../../gateway/cookies.c"
#include "../../gateway/csrf.c"
#include "../../gateway/token.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#define TOKEN  "0123456789abcdefghijABCDEFGHIJ-_0123456789a"
#define TOKEN2 "0123456789abcdefghijABCDEFGHIJ-_0123456789b"
_Static_assert(sizeof(TOKEN) == SG_CSRF_TOKEN_SIZE, "a token of the real length");

static struct sg_config cfg;

static int setup(void **state)
{
    memset(&cfg, 0, sizeof(cfg));
    cfg.public_url.text = "https://gw.example.com";
    cfg.public_url.https = true;
    cfg.public_url.host = "gw.example.com";
    cfg.public_url.port = 443;
    cfg.public_url.path = "";
    sg_cookies_names("ssogate", true, cfg.session.cookies);
    return 0;
}

static int teardown(void **state)
{
    for (size_t i = 0; i < SG_COOKIE__COUNT; i++)
        free(cfg.session.cookies[i]);
    return 0;
}

/* The same-origin answer for a request with Origin and Referer (NULL: absent). */
static enum sg_csrf_result same_origin(const char *origin, const char *referer)
{
    struct evkeyvalq in = TAILQ_HEAD_INITIALIZER(in);
    evhttp_add_header(&in, "Host", "gw.example.com");
    if (origin != NULL)
        evhttp_add_header(&in, "Origin", origin);
    if (referer != NULL)
        evhttp_add_header(&in, "Referer", referer);
    enum sg_csrf_result r = sg_csrf_same_origin(&cfg, &in);
    evhttp_clear_headers(&in);
    return r;
}

static void test_origin(void **state)
{
    assert_int_equal(same_origin("https://gw.example.com", NULL), SG_CSRF_OK);
    /* Origin decides, whatever the Referer says. */
    assert_int_equal(same_origin("https://gw.example.com", "https://evil.example/"), SG_CSRF_OK);
    assert_int_equal(same_origin("https://evil.example", "https://gw.example.com/"),
                     SG_CSRF_CROSS_ORIGIN);
    assert_int_equal(same_origin("null", "https://gw.example.com/settings"), SG_CSRF_CROSS_ORIGIN);
    assert_int_equal(same_origin("", NULL), SG_CSRF_CROSS_ORIGIN);
    assert_int_equal(same_origin("https://gw.example.com/", NULL), SG_CSRF_CROSS_ORIGIN);
    assert_int_equal(same_origin("https://gw.example.com/_sso/settings", NULL),
                     SG_CSRF_CROSS_ORIGIN);
    assert_int_equal(same_origin("https://gw.example.com:8443", NULL), SG_CSRF_CROSS_ORIGIN);
    assert_int_equal(same_origin("http://gw.example.com", NULL), SG_CSRF_CROSS_ORIGIN);
    assert_int_equal(same_origin("https://gw.example.com.evil", NULL), SG_CSRF_CROSS_ORIGIN);
    assert_int_equal(same_origin("https://sub.gw.example.com", NULL), SG_CSRF_CROSS_ORIGIN);
}

static void test_referer(void **state)
{
    assert_int_equal(same_origin(NULL, "https://gw.example.com/"), SG_CSRF_OK);
    assert_int_equal(same_origin(NULL, "https://gw.example.com/_sso/settings?x=1"), SG_CSRF_OK);
    assert_int_equal(same_origin(NULL, NULL), SG_CSRF_NO_ORIGIN);
    /* Prefix tricks: the origin must end where public_url ends. */
    assert_int_equal(same_origin(NULL, "https://gw.example.com.evil/"), SG_CSRF_CROSS_REFERER);
    assert_int_equal(same_origin(NULL, "https://gw.example.com@evil/"), SG_CSRF_CROSS_REFERER);
    assert_int_equal(same_origin(NULL, "https://gw.example.com:8443/"), SG_CSRF_CROSS_REFERER);
    assert_int_equal(same_origin(NULL, "https://gw.example.com"), SG_CSRF_CROSS_REFERER);
    assert_int_equal(same_origin(NULL, "http://gw.example.com/"), SG_CSRF_CROSS_REFERER);
    assert_int_equal(same_origin(NULL, "https://evil.example/https://gw.example.com/"),
                     SG_CSRF_CROSS_REFERER);
    assert_int_equal(same_origin(NULL, ""), SG_CSRF_CROSS_REFERER);
}

/* The double-submit answer for Cookie lines (NULL-terminated) and a form field. */
static enum sg_csrf_result double_submit(const char *const *cookies, const char *field)
{
    struct evkeyvalq in = TAILQ_HEAD_INITIALIZER(in);
    for (size_t i = 0; cookies[i] != NULL; i++)
        evhttp_add_header(&in, "Cookie", cookies[i]);
    enum sg_csrf_result r = sg_csrf_double_submit(&cfg, &in, field);
    evhttp_clear_headers(&in);
    return r;
}

static void test_double_submit(void **state)
{
    static const char *const good[] = {"a=b; __Host-ssogate_csrf=" TOKEN, NULL};
    assert_int_equal(double_submit(good, TOKEN), SG_CSRF_OK);
    assert_int_equal(double_submit(good, TOKEN2), SG_CSRF_MISMATCH);
    assert_int_equal(double_submit(good, NULL), SG_CSRF_NO_FIELD);
    assert_int_equal(double_submit(good, ""), SG_CSRF_MISMATCH);
    assert_int_equal(double_submit(good, TOKEN "x"), SG_CSRF_MISMATCH);
    assert_int_equal(double_submit(good, "0123456789"), SG_CSRF_MISMATCH);

    static const char *const none[] = {"a=b", NULL};
    assert_int_equal(double_submit(none, TOKEN), SG_CSRF_NO_COOKIE);
    static const char *const empty[] = {NULL};
    assert_int_equal(double_submit(empty, TOKEN), SG_CSRF_NO_COOKIE);
    /* The unprefixed name on an https site is a cookie anyone could set. */
    static const char *const unprefixed[] = {"ssogate_csrf=" TOKEN, NULL};
    assert_int_equal(double_submit(unprefixed, TOKEN), SG_CSRF_NO_COOKIE);
    /* A cookie of another length never matches. */
    static const char *const short_cookie[] = {"__Host-ssogate_csrf=0123456789", NULL};
    assert_int_equal(double_submit(short_cookie, "0123456789"), SG_CSRF_NO_COOKIE);
    /* Two different cookies (one planted): neither is trusted. */
    static const char *const two[] = {"__Host-ssogate_csrf=" TOKEN, "__Host-ssogate_csrf=" TOKEN2,
                                      NULL};
    assert_int_equal(double_submit(two, TOKEN), SG_CSRF_NO_COOKIE);
    assert_int_equal(double_submit(two, TOKEN2), SG_CSRF_NO_COOKIE);
}

/* The whole check of a form POST: origin first, then the form's csrf field against the cookie. */
static enum sg_csrf_result form(const char *origin, const char *body, size_t len)
{
    struct evkeyvalq in = TAILQ_HEAD_INITIALIZER(in);
    evhttp_add_header(&in, "Origin", origin);
    evhttp_add_header(&in, "Cookie", "__Host-ssogate_csrf=" TOKEN);
    enum sg_csrf_result r = sg_csrf_form(&cfg, &in, body, len);
    evhttp_clear_headers(&in);
    return r;
}

static void test_form(void **state)
{
    const char *ok = "x=1&csrf=" TOKEN "&y=2";
    assert_int_equal(form("https://gw.example.com", ok, strlen(ok)), SG_CSRF_OK);
    assert_int_equal(form("https://evil.example", ok, strlen(ok)), SG_CSRF_CROSS_ORIGIN);
    assert_int_equal(form("https://gw.example.com", "x=1", 3), SG_CSRF_NO_FIELD);
    assert_int_equal(form("https://gw.example.com", "", 0), SG_CSRF_NO_FIELD);
    const char *other = "csrf=" TOKEN2;
    assert_int_equal(form("https://gw.example.com", other, strlen(other)), SG_CSRF_MISMATCH);
    /* A NUL in the body, or a body over SG_CSRF_FORM_MAX, has no field. */
    char nul[80];
    int n = snprintf(nul, sizeof(nul), "a=%c&csrf=%s", '\0', TOKEN);
    assert_int_equal(form("https://gw.example.com", nul, (size_t)n), SG_CSRF_NO_FIELD);
    char *big = sg_calloc(1, SG_CSRF_FORM_MAX + 64);
    int m = snprintf(big, SG_CSRF_FORM_MAX + 64, "csrf=%s&pad=", TOKEN);
    memset(big + m, 'p', SG_CSRF_FORM_MAX - (size_t)m + 1);
    assert_int_equal(form("https://gw.example.com", big, strlen(big)), SG_CSRF_NO_FIELD);
    big[SG_CSRF_FORM_MAX] = '\0';
    assert_int_equal(form("https://gw.example.com", big, strlen(big)), SG_CSRF_OK);
    free(big);
}

static void test_token(void **state)
{
    char out[SG_CSRF_TOKEN_SIZE];
    struct evkeyvalq in = TAILQ_HEAD_INITIALIZER(in);
    evhttp_add_header(&in, "Cookie", "__Host-ssogate_csrf=" TOKEN);
    assert_false(sg_csrf_token(&cfg, &in, out));
    assert_string_equal(out, TOKEN);
    evhttp_clear_headers(&in);

    char other[SG_CSRF_TOKEN_SIZE];
    assert_true(sg_csrf_token(&cfg, &in, out));
    assert_true(sg_csrf_token(&cfg, &in, other));
    assert_int_equal(strlen(out), SG_CSRF_TOKEN_LEN);
    assert_string_not_equal(out, other);
    /* A new token is one the double-submit check accepts once set. */
    char *line = sg_asprintf("__Host-ssogate_csrf=%s", out);
    const char *const cookies[] = {line, NULL};
    assert_int_equal(double_submit(cookies, out), SG_CSRF_OK);
    free(line);
}

static void test_names(void **state)
{
    assert_string_equal(sg_csrf_result_name(SG_CSRF_OK), "ok");
    assert_string_equal(sg_csrf_result_name(SG_CSRF_CROSS_ORIGIN), "cross_origin");
    assert_string_equal(sg_csrf_result_name(SG_CSRF_MISMATCH), "mismatch");
    assert_string_equal(sg_csrf_result_name(SG_CSRF__COUNT), "unknown");
    for (int r = 0; r < SG_CSRF__COUNT; r++)
        assert_non_null(sg_csrf_result_name((enum sg_csrf_result)r));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_origin),        cmocka_unit_test(test_referer),
        cmocka_unit_test(test_double_submit), cmocka_unit_test(test_token),
        cmocka_unit_test(test_names),         cmocka_unit_test(test_form),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
