/*
 * Unit tests of the gateway's cookie table (gateway/cookies.c): the names and
 * Set-Cookie attributes of every kind on http and https public URLs,
 * clearing, reading one value out of several Cookie lines, and stripping
 * every gateway cookie from the Cookie lines that go upstream while keeping
 * the others byte for byte, with hostile input.
 */
#include "../../gateway/common.c"
#include "../../gateway/cookie.c"
#include "../../gateway/cookies.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

static void config_init(struct sg_config *cfg, bool https)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->public_url.text = https ? "https://gw.example.com" : "http://gw.example.com";
    cfg->public_url.https = https;
    cfg->session.absolute_timeout_s = 43200;
    sg_cookies_names("ssogate", https, cfg->session.cookies);
}

static void config_clear(struct sg_config *cfg)
{
    for (size_t i = 0; i < SG_COOKIE__COUNT; i++)
        free(cfg->session.cookies[i]);
}

/* The only Set-Cookie of headers. */
static const char *only_set_cookie(struct evkeyvalq *headers)
{
    const struct evkeyval *h = TAILQ_FIRST(headers);
    assert_non_null(h);
    assert_string_equal(h->key, "Set-Cookie");
    assert_null(TAILQ_NEXT(h, next));
    return h->value;
}

static void test_names(void **state)
{
    struct sg_config cfg;
    config_init(&cfg, false);
    assert_string_equal(sg_cookies_name(&cfg, SG_COOKIE_SESSION), "ssogate");
    assert_string_equal(sg_cookies_name(&cfg, SG_COOKIE_LOGIN), "ssogate_login");
    assert_string_equal(sg_cookies_name(&cfg, SG_COOKIE_CSRF), "ssogate_csrf");
    config_clear(&cfg);

    config_init(&cfg, true);
    assert_string_equal(sg_cookies_name(&cfg, SG_COOKIE_SESSION), "__Host-ssogate");
    assert_string_equal(sg_cookies_name(&cfg, SG_COOKIE_LOGIN), "__Host-ssogate_login");
    assert_string_equal(sg_cookies_name(&cfg, SG_COOKIE_CSRF), "__Host-ssogate_csrf");
    config_clear(&cfg);
}

struct set_case {
    bool https;
    enum sg_cookie_kind kind;
    const char *want;
};

static void test_set_every_kind(void **state)
{
    static const struct set_case cases[] = {
        {false, SG_COOKIE_SESSION, "ssogate=v; Path=/; Max-Age=43200; HttpOnly; SameSite=Lax"},
        {false, SG_COOKIE_LOGIN, "ssogate_login=v; Path=/; Max-Age=600; HttpOnly; SameSite=Lax"},
        {false, SG_COOKIE_CSRF, "ssogate_csrf=v; Path=/; HttpOnly; SameSite=Strict"},
        {true, SG_COOKIE_SESSION,
         "__Host-ssogate=v; Path=/; Max-Age=43200; HttpOnly; Secure; SameSite=Lax"},
        {true, SG_COOKIE_LOGIN,
         "__Host-ssogate_login=v; Path=/; Max-Age=600; HttpOnly; Secure; SameSite=Lax"},
        {true, SG_COOKIE_CSRF, "__Host-ssogate_csrf=v; Path=/; HttpOnly; Secure; SameSite=Strict"},
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(cases); i++) {
        struct sg_config cfg;
        config_init(&cfg, cases[i].https);
        struct evkeyvalq out = TAILQ_HEAD_INITIALIZER(out);
        assert_int_equal(sg_cookies_set(&out, &cfg, cases[i].kind, "v"), 0);
        assert_string_equal(only_set_cookie(&out), cases[i].want);
        evhttp_clear_headers(&out);
        config_clear(&cfg);
    }
}

static void test_clear(void **state)
{
    for (int https = 0; https <= 1; https++) {
        struct sg_config cfg;
        config_init(&cfg, https);
        for (int kind = 0; kind < SG_COOKIE__COUNT; kind++) {
            struct evkeyvalq out = TAILQ_HEAD_INITIALIZER(out);
            sg_cookies_clear(&out, &cfg, (enum sg_cookie_kind)kind);
            const char *v = only_set_cookie(&out);
            char *want_start = sg_asprintf("%s=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 "
                                           "00:00:00 GMT; HttpOnly",
                                           cfg.session.cookies[kind]);
            assert_memory_equal(v, want_start, strlen(want_start));
            assert_int_equal(strstr(v, "; Secure") != NULL, https);
            free(want_start);
            evhttp_clear_headers(&out);
        }
        config_clear(&cfg);
    }
}

static void test_set_refuses_bad_value(void **state)
{
    struct sg_config cfg;
    config_init(&cfg, true);
    static const char *const bad[] = {"a;b", "a b", "a\"b", "a,b", "a\\b", "a\r\nSet-Cookie: x"};
    for (size_t i = 0; i < SG_ARRAY_LEN(bad); i++) {
        struct evkeyvalq out = TAILQ_HEAD_INITIALIZER(out);
        assert_int_equal(sg_cookies_set(&out, &cfg, SG_COOKIE_SESSION, bad[i]), SG_EINVAL);
        assert_true(TAILQ_EMPTY(&out));
    }
    config_clear(&cfg);
}

static void add_cookie_lines(struct evkeyvalq *in, const char *const *lines, size_t count)
{
    evhttp_add_header(in, "Accept", "text/html");
    for (size_t i = 0; i < count; i++)
        evhttp_add_header(in, i % 2 ? "cookie" : "Cookie", lines[i]);
}

static void test_get(void **state)
{
    struct sg_config cfg;
    config_init(&cfg, true);
    char out[4];

    /* One value over two lines, also repeated: found. */
    static const char *const one[] = {"a=1; __Host-ssogate_csrf=abc", "__Host-ssogate_csrf=abc"};
    struct evkeyvalq in = TAILQ_HEAD_INITIALIZER(in);
    add_cookie_lines(&in, one, 2);
    assert_true(sg_cookies_get(&in, &cfg, SG_COOKIE_CSRF, out, 3));
    assert_string_equal(out, "abc");
    /* Not the session cookie of that name without the prefix. */
    assert_false(sg_cookies_get(&in, &cfg, SG_COOKIE_SESSION, out, 3));
    evhttp_clear_headers(&in);

    /* Two different values: one was planted, none is trusted. */
    static const char *const two[] = {"__Host-ssogate_csrf=abc", "__Host-ssogate_csrf=xyz"};
    add_cookie_lines(&in, two, 2);
    assert_false(sg_cookies_get(&in, &cfg, SG_COOKIE_CSRF, out, 3));
    evhttp_clear_headers(&in);

    /* A value of another length is garbage, skipped; the unprefixed name is another cookie. */
    static const char *const other[] = {"__Host-ssogate_csrf=abcd; ssogate_csrf=xyz",
                                        "__Host-ssogate_csrf=\"abc\""};
    add_cookie_lines(&in, other, 2);
    assert_true(sg_cookies_get(&in, &cfg, SG_COOKIE_CSRF, out, 3));
    assert_string_equal(out, "abc");
    evhttp_clear_headers(&in);

    /* sg_cookies_values stops at max. */
    static const char *const many[] = {"ssogate=aaa; ssogate=bbb; ssogate=ccc; ssogate=aaa"};
    config_clear(&cfg);
    config_init(&cfg, false);
    add_cookie_lines(&in, many, 1);
    char values[2][4];
    assert_int_equal(sg_cookies_values(&in, &cfg, SG_COOKIE_SESSION, 3, &values[0][0], 2), 2);
    assert_string_equal(values[0], "aaa");
    assert_string_equal(values[1], "bbb");
    evhttp_clear_headers(&in);
    config_clear(&cfg);
}

static void expect_strip(bool https, const char *const *lines, size_t count, const char *want)
{
    struct sg_config cfg;
    config_init(&cfg, https);
    struct evkeyvalq in = TAILQ_HEAD_INITIALIZER(in);
    add_cookie_lines(&in, lines, count);
    char *got = sg_cookies_strip(&cfg, &in);
    if (want == NULL && got != NULL)
        fail_msg("kept \"%s\"", got);
    if (want != NULL && (got == NULL || strcmp(got, want) != 0))
        fail_msg("got %s, want \"%s\"", got ? got : "nothing", want);
    free(got);
    evhttp_clear_headers(&in);
    config_clear(&cfg);
}

static void test_strip(void **state)
{
    /* Every gateway cookie goes, from every line; the others stay as they were. */
    static const char *const lines[] = {
        "PSASESSION=a%20b; __Host-ssogate=s1; theme=\"dark\"",
        "__Host-ssogate_login=l; __Host-ssogate_csrf=c",
        "odd=x=y;__Host-ssogate_csrf =c2;  lang=en-GB ",
    };
    expect_strip(true, lines, 3, "PSASESSION=a%20b; theme=\"dark\"; odd=x=y; lang=en-GB");

    /* On http the names have no prefix; prefixed ones are someone else's. */
    static const char *const plain[] = {"ssogate=s; ssogate_login=l; __Host-ssogate=p",
                                        "ssogate_csrf=c; ssogate_other=o"};
    expect_strip(false, plain, 2, "__Host-ssogate=p; ssogate_other=o");

    /* Only gateway cookies: no Cookie line at all. */
    static const char *const only[] = {"__Host-ssogate=s", "__Host-ssogate_csrf=c; ;"};
    expect_strip(true, only, 2, NULL);
    expect_strip(true, NULL, 0, NULL);
}

static void test_strip_hostile(void **state)
{
    /* A gateway name with '=' in its value, in quotes, with spaces around
     * the '=', or in another case: the exact names go, the rest stays. */
    static const char *const tricky[] = {
        "__Host-ssogate=a=b; __Host-ssogate=\"q\"; __Host-ssogate = spaced",
        "__HOST-ssogate=case; x__Host-ssogate=y; __Host-ssogate_csrfX=z; =nameless; novalue",
    };
    expect_strip(true, tricky, 2,
                 "__HOST-ssogate=case; x__Host-ssogate=y; __Host-ssogate_csrfX=z; =nameless; "
                 "novalue");

    /* A 64 KiB line is read and cleaned; a longer one cannot be read and is
     * dropped whole; the other lines are kept. */
    size_t big = SG_COOKIE_MAX_HEADER;
    char *line = sg_malloc(big + 2);
    static const char head[] = "__Host-ssogate=s; pad=";
    memcpy(line, head, sizeof(head) - 1);
    memset(line + sizeof(head) - 1, 'p', big - (sizeof(head) - 1));
    line[big] = '\0';
    const char *lines[] = {line, "keep=1"};
    char *want = sg_asprintf("%s; keep=1", line + strlen("__Host-ssogate=s; "));
    expect_strip(true, lines, 2, want);
    free(want);

    line[big] = 'p';
    line[big + 1] = '\0';
    expect_strip(true, lines, 2, "keep=1");
    free(line);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),         cmocka_unit_test(test_set_every_kind),
        cmocka_unit_test(test_clear),         cmocka_unit_test(test_set_refuses_bad_value),
        cmocka_unit_test(test_get),           cmocka_unit_test(test_strip),
        cmocka_unit_test(test_strip_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
