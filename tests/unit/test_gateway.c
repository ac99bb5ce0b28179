/* Unit tests of the gateway's pure helpers: redirect targets, JSON pointers, the login-page block,
 * claim headers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/claimheaders.h"
#include "ssogate/inject.h"
#include "ssogate/json.h"
#include "ssogate/redirect.h"
#include "ssogate/whoami.h"

static void test_return_to_accepts_local_paths(void **state)
{
    const char *good[] = {"/", "/tickets", "/a/b?x=1&y=%2F", "/_sso/settings", "/a//b"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (!sg_redirect_target_valid(good[i]))
            fail_msg("refused %s", good[i]);
    }
}

static void test_return_to_refuses_elsewhere(void **state)
{
    const char *bad[] = {
        "",      "//evil.example/",       "/\\evil.example", "https://evil.example/",
        "evil",  "javascript:alert(1)",   "/a\\b",           "/a b",
        "/a\tb", "/a\r\nSet-Cookie: x=1", "/\x7f",           "/\xc3\xa9"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (sg_redirect_target_valid(bad[i]))
            fail_msg("accepted %s", bad[i]);
    }
    char *long_path = malloc(3000);
    memset(long_path, 'a', 2999);
    long_path[0] = '/';
    long_path[2999] = '\0';
    assert_false(sg_redirect_target_valid(long_path));
    free(long_path);
}

static void test_json_pointer(void **state)
{
    char err[128];
    yajl_val doc = yajl_tree_parse(
        "{\"a\":{\"b\":[10,{\"c~d\":\"x\",\"e/f\":true}]},\"\":1,\"n\":null}", err, sizeof(err));
    assert_non_null(doc);
    assert_ptr_equal(sg_json_pointer(doc, ""), doc);
    yajl_val v = sg_json_pointer(doc, "/a/b/0");
    assert_true(YAJL_IS_INTEGER(v));
    assert_int_equal(YAJL_GET_INTEGER(v), 10);
    v = sg_json_pointer(doc, "/a/b/1/c~0d");
    assert_true(YAJL_IS_STRING(v));
    assert_string_equal(YAJL_GET_STRING(v), "x");
    assert_true(YAJL_IS_TRUE(sg_json_pointer(doc, "/a/b/1/e~1f")));
    assert_true(YAJL_IS_INTEGER(sg_json_pointer(doc, "/")));
    assert_null(sg_json_pointer(doc, "/a/b/2"));
    assert_null(sg_json_pointer(doc, "/a/b/-1"));
    assert_null(sg_json_pointer(doc, "/a/b/01x"));
    assert_null(sg_json_pointer(doc, "/a/b/1/c~2d"));
    assert_null(sg_json_pointer(doc, "a"));
    assert_null(sg_json_pointer(doc, "/n/x"));
    assert_null(sg_json_pointer(doc, NULL));
    yajl_tree_free(doc);
}

static void test_inject_after_body(void **state)
{
    const char page[] = "<html><head></head><BODY class=\"x\"><p>PSA</p></body></html>";
    size_t len;
    bool fell_back;
    char *out =
        sg_inject_login_block(page, strlen(page), "inactive", NULL, false, &fell_back, &len);
    assert_false(fell_back);
    assert_int_equal(len, strlen(out));
    const char *block = strstr(out, "<div id=\"ssogate-login\"");
    assert_non_null(block);
    assert_true(block > strstr(out, "<BODY class=\"x\">"));
    assert_true(block < strstr(out, "<p>PSA</p>"));
    assert_non_null(strstr(out, "ssogate-notice"));
    assert_non_null(strstr(out, "href=\"/_sso/login\""));
    free(out);
}

static void test_inject_without_body_or_notice(void **state)
{
    const char page[] = "<p>no body tag</p><bodyx>";
    size_t len;
    bool fell_back;
    char *out = sg_inject_login_block(page, strlen(page), "made-up", NULL, false, &fell_back, &len);
    assert_ptr_equal(strstr(out, "<div id=\"ssogate-login\""), out);
    assert_null(strstr(out, "ssogate-notice"));
    assert_non_null(strstr(out, page));
    free(out);
    out = sg_inject_login_block("<body", 5, NULL, NULL, false, &fell_back, &len);
    assert_ptr_equal(strstr(out, "<div id=\"ssogate-login\""), out);
    free(out);
    assert_null(sg_inject_notice_text(NULL));
    assert_non_null(sg_inject_notice_text("not_linked"));
}

/* The block goes around the first marker, once; a page without it gets the block after <body>. */
static void test_inject_at_marker(void **state)
{
    const char page[] =
        "<body><div class=card><form id=f></form><p>x</p></div><form></form></body>";
    size_t len;
    bool fell_back = true;
    char *out = sg_inject_login_block(page, strlen(page), NULL, "</form>", false, &fell_back, &len);
    assert_false(fell_back);
    const char *block = strstr(out, "<div id=\"ssogate-login\"");
    assert_non_null(block);
    assert_ptr_equal(block, strstr(out, "</form>") + strlen("</form>")); /* after the first */
    assert_null(strstr(block + 8, "id=\"ssogate-login\""));              /* once */
    assert_int_equal(len, strlen(out));
    assert_non_null(strstr(block, "<p>x</p></div><form></form></body>")); /* the rest unchanged */
    free(out);

    out = sg_inject_login_block(page, strlen(page), NULL, "<form id=f>", true, &fell_back, &len);
    assert_false(fell_back);
    block = strstr(out, "<div id=\"ssogate-login\"");
    assert_true(block < strstr(out, "<form id=f>"));
    assert_true(block > strstr(out, "<div class=card>"));
    free(out);

    out = sg_inject_login_block(page, strlen(page), NULL, "<section id=login>", true, &fell_back,
                                &len);
    assert_true(fell_back);
    assert_ptr_equal(strstr(out, "<div id=\"ssogate-login\""), out + strlen("<body>"));
    free(out);

    /* A marker cut short by the end of the page is not found. */
    out = sg_inject_login_block("<body></fo", 10, NULL, "</form>", false, &fell_back, &len);
    assert_true(fell_back);
    free(out);
}

/* claim_headers: how each claim renders, and what is left out. */
static void test_claim_headers(void **state)
{
    static char map[][2][16] = {
        {"X-Name", "/name"},     {"X-Count", "/count"},   {"X-Admin", "/admin"},
        {"X-Groups", "/groups"}, {"X-Nested", "/nested"}, {"X-Object", "/obj"},
        {"X-Crlf", "/crlf"},     {"X-Long", "/long"},     {"X-Null", "/null"},
        {"X-Absent", "/absent"}, {"X-Deep", "/a/b~1c"},
    };
    struct sg_config cfg = {0};
    struct sg_claim_header headers[SG_ARRAY_LEN(map)];
    for (size_t i = 0; i < SG_ARRAY_LEN(map); i++)
        headers[i] = (struct sg_claim_header){map[i][0], map[i][1]};
    cfg.claim_headers = headers;
    cfg.claim_header_count = SG_ARRAY_LEN(map);
    char *long_value = sg_calloc(1, SG_CLAIM_HEADER_MAX + 2);
    memset(long_value, 'x', SG_CLAIM_HEADER_MAX + 1);
    char *json = sg_asprintf("{\"name\":\"Ann, B%%\",\"count\":12.50,\"admin\":true,"
                             "\"groups\":[\"a,b\",\"c%%d\",3,false],\"nested\":[[1]],"
                             "\"obj\":{\"k\":1},\"crlf\":\"x\\r\\nX-Evil: 1\","
                             "\"long\":\"%s\",\"null\":null,\"a\":{\"b/c\":\"deep\"}}",
                             long_value);
    char err[128];
    yajl_val claims = yajl_tree_parse(json, err, sizeof(err));
    assert_non_null(claims);
    char *encoded = sg_claim_headers_encode(&cfg, claims, "req");
    assert_string_equal(encoded, "6:X-Name7:Ann, B%"
                                 "7:X-Count5:12.50"
                                 "7:X-Admin4:true"
                                 "8:X-Groups19:a%2Cb,c%25d,3,false"
                                 "6:X-Deep4:deep");
    free(encoded);
    /* Nothing to map: no encoding at all. */
    cfg.claim_header_count = 0;
    assert_null(sg_claim_headers_encode(&cfg, claims, "req"));
    yajl_tree_free(claims);
    free(json);
    free(long_value);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_return_to_accepts_local_paths),
        cmocka_unit_test(test_return_to_refuses_elsewhere),
        cmocka_unit_test(test_json_pointer),
        cmocka_unit_test(test_inject_after_body),
        cmocka_unit_test(test_inject_without_body_or_notice),
        cmocka_unit_test(test_inject_at_marker),
        cmocka_unit_test(test_claim_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
