/*
 * Cookie unit tests: finding a cookie in odd but real Cookie headers, never
 * reading past the given length, removing the gateway's cookie before the
 * request goes upstream, and Set-Cookie formatting.
 */
#include "../../gateway/common.c"
#include "../../gateway/cookie.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/* The value of name in header as a new string, or NULL when not found. */
static char *find(const char *header, const char *name)
{
    const char *v = NULL;
    size_t n = 0;
    int rc = sg_cookie_find(header, strlen(header), name, &v, &n);
    if (rc == SG_ENOENT)
        return NULL;
    assert_int_equal(rc, 0);
    assert_true(v >= header && v + n <= header + strlen(header));
    return sg_strndup(v, n);
}

static void expect_find(const char *header, const char *name, const char *want)
{
    char *got = find(header, name);
    if (want == NULL && got != NULL)
        fail_msg("[%s] %s: found \"%s\"", header, name, got);
    if (want != NULL && (got == NULL || strcmp(got, want) != 0))
        fail_msg("[%s] %s: got %s, want \"%s\"", header, name, got ? got : "nothing", want);
    free(got);
}

static void test_find(void **state)
{
    expect_find("sid=abc", "sid", "abc");
    expect_find("a=1; sid=abc; b=2", "sid", "abc");
    expect_find("a=1;sid=abc;b=2", "sid", "abc");         /* no space */
    expect_find("a=1;  \tsid=abc  ;b=2", "sid", "abc");   /* extra whitespace */
    expect_find("sid=first; sid=second", "sid", "first"); /* first match wins */
    expect_find("sid=\"quoted\"", "sid", "quoted");
    expect_find("sid=", "sid", "");
    expect_find("sid=; sid=x", "sid", "");
    expect_find("SID=abc", "sid", NULL); /* names are case-sensitive */
    expect_find("xsid=abc; sidx=def", "sid", NULL);
    expect_find("", "sid", NULL);
    expect_find(";;;", "sid", NULL);
    expect_find("sid", "sid", NULL);
    expect_find("=abc; sid=ok", "sid", "ok");
    expect_find("sid abc; sid=ok", "sid", "ok");
    expect_find("a=1,sid=abc", "sid", NULL);      /* comma is not a separator */
    expect_find("sid=a b; sid=ok", "sid", "ok");  /* malformed value skipped */
    expect_find("sid=a\\b; sid=ok", "sid", "ok"); /* backslash */
    expect_find("sid=\"a; sid=ok", "sid", "ok");  /* lone quote */
    expect_find("sid=\xc3\xa9; sid=ok", "sid", "ok");
    expect_find("s(id=x; sid=ok", "sid", "ok");
    expect_find("sid =abc", "sid", "abc"); /* space before '=' tolerated */
    expect_find("sid= abc", "sid", "abc");
    expect_find("a=b=c; sid=x=y", "sid", "x=y"); /* '=' is a cookie-octet */
    expect_find("a=b=c; sid=x=y", "a", "b=c");
    expect_find("sid=abc==", "sid", "abc==");
    expect_find("sid=YWJj-_.~", "sid", "YWJj-_.~");
}

static void test_find_bounds(void **state)
{
    /* Only len bytes are read: the value stops at the given length. */
    const char *header = "a=1; sid=abcdef; rest=1";
    const char *v = NULL;
    size_t n = 0;
    assert_int_equal(sg_cookie_find(header, 12, "sid", &v, &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(v, "abc", 3);
    assert_int_equal(sg_cookie_find(header, 8, "sid", &v, &n), SG_ENOENT);
    /* A header in a buffer without NUL, right at the end of an allocation. */
    const char text[] = "x=1; sid=zz";
    char *exact = sg_malloc(sizeof(text) - 1);
    memcpy(exact, text, sizeof(text) - 1);
    assert_int_equal(sg_cookie_find(exact, sizeof(text) - 1, "sid", &v, &n), 0);
    assert_int_equal(n, 2);
    free(exact);
    assert_int_equal(sg_cookie_find("sid=\0x", 6, "sid", &v, &n), SG_ENOENT);
    /* Size limits and bad names. */
    char *big = sg_malloc(SG_COOKIE_MAX_HEADER + 1);
    memset(big, 'a', SG_COOKIE_MAX_HEADER + 1);
    assert_int_equal(sg_cookie_find(big, SG_COOKIE_MAX_HEADER + 1, "sid", &v, &n), SG_ETOOBIG);
    assert_int_equal(sg_cookie_find(big, SG_COOKIE_MAX_HEADER, "sid", &v, &n), SG_ENOENT);
    char *out = NULL;
    assert_int_equal(sg_cookie_remove(big, SG_COOKIE_MAX_HEADER + 1, "sid", &out), SG_ETOOBIG);
    free(big);
    assert_int_equal(sg_cookie_find("a=1", 3, "", &v, &n), SG_EINVAL);
    assert_int_equal(sg_cookie_find("a=1", 3, "a b", &v, &n), SG_EINVAL);
    assert_int_equal(sg_cookie_find("a=1", 3, "a;", &v, &n), SG_EINVAL);
    /* Long value. */
    char *longv = sg_malloc(SG_COOKIE_MAX_VALUE + 16);
    strcpy(longv, "sid=");
    memset(longv + 4, 'v', SG_COOKIE_MAX_VALUE + 1);
    longv[SG_COOKIE_MAX_VALUE + 5] = '\0';
    assert_int_equal(sg_cookie_find(longv, strlen(longv), "sid", &v, &n), SG_ENOENT);
    longv[SG_COOKIE_MAX_VALUE + 4] = '\0';
    assert_int_equal(sg_cookie_find(longv, strlen(longv), "sid", &v, &n), 0);
    assert_int_equal(n, SG_COOKIE_MAX_VALUE);
    free(longv);
}

static void expect_remove(const char *header, const char *name, const char *want)
{
    char *out = NULL;
    assert_int_equal(sg_cookie_remove(header, strlen(header), name, &out), 0);
    if (strcmp(out, want) != 0)
        fail_msg("[%s] - %s: got [%s], want [%s]", header, name, out, want);
    free(out);
}

static void test_remove(void **state)
{
    expect_remove("sid=abc", "sid", "");
    expect_remove("a=1; sid=abc; b=2", "sid", "a=1; b=2");
    expect_remove("a=1;sid=abc;b=2", "sid", "a=1; b=2");
    expect_remove("sid=1; a=1; sid=2; sid=3", "sid", "a=1"); /* every copy */
    expect_remove("sid =1; a=1", "sid", "a=1");              /* as a lenient reader sees it */
    expect_remove("a=1; b=2", "sid", "a=1; b=2");
    expect_remove("  a=1 ;  ; b=2  ", "sid", "a=1; b=2");
    expect_remove("prefs={\"x\":1,\"y\":2}; sid=s", "sid", "prefs={\"x\":1,\"y\":2}");
    expect_remove("junk; sid=s; sidx=t", "sid", "junk; sidx=t");
    expect_remove("", "sid", "");
    expect_remove(";", "sid", "");
    /* Worst growth: every ';' gains a space. */
    expect_remove("a;b;c;d", "sid", "a; b; c; d");
    expect_remove("a=;b=;c=", "sid", "a=; b=; c=");
    char *out = NULL;
    assert_int_equal(sg_cookie_remove("a=1", 3, "bad name", &out), SG_EINVAL);
    assert_null(out);

    /* The gateway's three cookies at once (issue 9): every copy of each, prefixes respected. */
    static const char *const names[] = {"ssogate", "ssogate_login", "ssogate_csrf"};
    static const struct {
        const char *header, *want;
    } cases[] = {
        {"a=1; ssogate=s; ssogate_csrf=c; b=2; ssogate_login=l", "a=1; b=2"},
        {"ssogate_csrf=1;ssogate_csrf=2", ""},
        {"ssogatex=1; ssogate_=2; ssogat=3; Ssogate=4",
         "ssogatex=1; ssogate_=2; ssogat=3; Ssogate=4"},
        {"ssogate_login; ssogate_login=; x=\"q\"", "ssogate_login; x=\"q\""},
        /* Cookie lines joined with ',' (a proxy joining them as other fields): an upstream that
         * splits at ',' would read the session there. */
        {"x=1, ssogate=s", ""},
        {"x=1,ssogate =s; b=2", "b=2"},
        {"a=1;x=1,, ssogate_login=l", "a=1"},
        {"prefs=a,b; ssogate_csrf=c", "prefs=a,b"},
        {"x=1, ssogatex=s; y=a,ssogate; z=a,=ssogate",
         "x=1, ssogatex=s; y=a,ssogate; z=a,=ssogate"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(
            sg_cookie_remove_any(cases[i].header, strlen(cases[i].header), names, 3, &out), 0);
        if (strcmp(out, cases[i].want) != 0)
            fail_msg("[%s]: got [%s], want [%s]", cases[i].header, out, cases[i].want);
        free(out);
    }
    static const char *const bad[] = {"ssogate", "no good"};
    out = NULL;
    assert_int_equal(sg_cookie_remove_any("a=1", 3, bad, 2, &out), SG_EINVAL);
    assert_null(out);
}

static void test_format(void **state)
{
    char *out = NULL;
    struct sg_cookie_attrs a = {.path = "/",
                                .max_age = 3600,
                                .http_only = true,
                                .secure = true,
                                .same_site = SG_COOKIE_SAME_SITE_LAX};
    assert_int_equal(sg_cookie_format("sso_session", "YWJj", &a, &out), 0);
    assert_string_equal(out,
                        "sso_session=YWJj; Path=/; Max-Age=3600; HttpOnly; Secure; SameSite=Lax");
    free(out);
    a.max_age = 0;
    assert_int_equal(sg_cookie_format("sso_session", "", &a, &out), 0);
    assert_string_equal(out, "sso_session=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 "
                             "GMT; HttpOnly; Secure; SameSite=Lax");
    free(out);
    struct sg_cookie_attrs b = {.max_age = -1, .same_site = SG_COOKIE_SAME_SITE_STRICT};
    assert_int_equal(sg_cookie_format("s", "v", &b, &out), 0);
    assert_string_equal(out, "s=v; SameSite=Strict");
    free(out);
    struct sg_cookie_attrs c = {.max_age = -1};
    assert_int_equal(sg_cookie_format("s", "v", &c, &out), 0);
    assert_string_equal(out, "s=v");
    free(out);
    out = NULL;
    assert_int_equal(sg_cookie_format("bad name", "v", &a, &out), SG_EINVAL);
    assert_int_equal(sg_cookie_format("", "v", &a, &out), SG_EINVAL);
    assert_int_equal(sg_cookie_format("s", "v;Domain=evil", &a, &out), SG_EINVAL);
    assert_int_equal(sg_cookie_format("s", "a b", &a, &out), SG_EINVAL);
    assert_int_equal(sg_cookie_format("s", "\r\nX: y", &a, &out), SG_EINVAL);
    struct sg_cookie_attrs d = {.path = "/a;Domain=evil", .max_age = -1};
    assert_int_equal(sg_cookie_format("s", "v", &d, &out), SG_EINVAL);
    d.path = "/a\r\n";
    assert_int_equal(sg_cookie_format("s", "v", &d, &out), SG_EINVAL);
    assert_null(out);
    /* What we format, we find. */
    a.max_age = 60;
    assert_int_equal(sg_cookie_format("sid", "tok-_.~", &a, &out), 0);
    const char *v = NULL;
    size_t n = 0;
    size_t pair_len = strcspn(out, ";");
    assert_int_equal(sg_cookie_find(out, pair_len, "sid", &v, &n), 0);
    assert_int_equal(n, 7);
    assert_memory_equal(v, "tok-_.~", 7);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_find_bounds),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
