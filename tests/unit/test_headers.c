/* Unit tests of the header filter between client and upstream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "../../gateway/headers.c"

#include <event2/keyvalq_struct.h>

static struct evkeyvalq *headers_new(void)
{
    struct evkeyvalq *h = calloc(1, sizeof(*h));
    TAILQ_INIT(h);
    return h;
}

static void headers_free(struct evkeyvalq *h)
{
    evhttp_clear_headers(h);
    free(h);
}

static void test_hop_by_hop_names(void **state)
{
    assert_true(sg_headers_is_hop_by_hop("connection"));
    assert_true(sg_headers_is_hop_by_hop("Transfer-Encoding"));
    assert_true(sg_headers_is_hop_by_hop("UPGRADE"));
    assert_true(sg_headers_is_hop_by_hop("Proxy-Authorization"));
    assert_false(sg_headers_is_hop_by_hop("Content-Type"));
    assert_false(sg_headers_is_hop_by_hop("Connectionx"));
    assert_false(sg_headers_is_hop_by_hop(""));
}

static void test_identity_namespace(void **state)
{
    assert_true(sg_headers_is_identity("X-SSO-User"));
    assert_true(sg_headers_is_identity("x-sso-assertion"));
    assert_true(sg_headers_is_identity("X-Sso-"));
    assert_false(sg_headers_is_identity("X-SSOUser"));
    assert_false(sg_headers_is_identity("X-SS"));
    assert_false(sg_headers_is_identity("Y-SSO-User"));
}

static void test_connection_listed(void **state)
{
    assert_true(sg_headers_listed_in_connection("close, X-Secret", "x-secret"));
    assert_true(sg_headers_listed_in_connection("X-A,X-B", "X-B"));
    assert_true(sg_headers_listed_in_connection("  x-a ,  x-b  ", "X-A"));
    assert_false(sg_headers_listed_in_connection("X-Ab", "X-A"));
    assert_false(sg_headers_listed_in_connection("", "X-A"));
    assert_false(sg_headers_listed_in_connection(",,,", "X-A"));
    assert_false(sg_headers_listed_in_connection(NULL, "X-A"));
}

static void test_request_filter(void **state)
{
    struct evkeyvalq *in = headers_new();
    struct evkeyvalq *out = headers_new();
    evhttp_add_header(in, "Host", "psa.example.com");
    evhttp_add_header(in, "Cookie", "a=b");
    evhttp_add_header(in, "X-SSO-User", "forged");
    evhttp_add_header(in, "x-sso-tenant", "forged");
    evhttp_add_header(in, "X-Sso-Assertion", "forged");
    evhttp_add_header(in, "Connection", "keep-alive, X-Drop-Me");
    evhttp_add_header(in, "X-Drop-Me", "1");
    evhttp_add_header(in, "Keep-Alive", "timeout=5");
    evhttp_add_header(in, "Transfer-Encoding", "chunked");
    evhttp_add_header(in, "Content-Length", "12");
    evhttp_add_header(in, "X-Forwarded-Proto", "https");
    evhttp_add_header(in, "X-Forwarded-Host", "evil.example");
    evhttp_add_header(in, "X-Request-Id", "client-chosen");
    evhttp_add_header(in, "X-Forwarded-For", "10.0.0.1");
    evhttp_add_header(in, "Upgrade", "websocket");
    evhttp_add_header(in, "Expect", "100-continue");
    evhttp_add_header(in, "X_SSO_User", "forged");
    evhttp_add_header(in, "X-SSO_Subject", "forged");
    evhttp_add_header(in, "x_forwarded_host", "evil.example");
    evhttp_add_header(in, "Content_Length", "5");
    evhttp_add_header(in, "Accept", "text/html");

    sg_headers_copy_request(in, out);

    /* The proxy sets Host, Cookie (without the gateway's) and X-Forwarded-For itself. */
    assert_string_equal(evhttp_find_header(out, "Accept"), "text/html");
    const char *dropped[] = {"Host",
                             "Cookie",
                             "X-Forwarded-For",
                             "X_SSO_User",
                             "X-SSO_Subject",
                             "x_forwarded_host",
                             "Content_Length",
                             "X-SSO-User",
                             "X-SSO-Tenant",
                             "X-SSO-Assertion",
                             "Connection",
                             "X-Drop-Me",
                             "Keep-Alive",
                             "Transfer-Encoding",
                             "Content-Length",
                             "X-Forwarded-Proto",
                             "X-Forwarded-Host",
                             "X-Request-Id",
                             "Upgrade",
                             "Expect"};
    for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++) {
        if (evhttp_find_header(out, dropped[i]) != NULL)
            fail_msg("%s was forwarded", dropped[i]);
    }
    headers_free(in);
    headers_free(out);
}

static void test_several_connection_lines(void **state)
{
    struct evkeyvalq *in = headers_new();
    struct evkeyvalq *out = headers_new();
    evhttp_add_header(in, "Connection", "keep-alive");
    evhttp_add_header(in, "Connection", "X-Second");
    evhttp_add_header(in, "X-Second", "1");
    evhttp_add_header(in, "X-Kept", "1");
    sg_headers_copy_request(in, out);
    assert_null(evhttp_find_header(out, "X-Second"));
    assert_string_equal(evhttp_find_header(out, "X-Kept"), "1");
    headers_free(in);
    headers_free(out);
}

static void test_response_filter(void **state)
{
    struct evkeyvalq *in = headers_new();
    struct evkeyvalq *out = headers_new();
    evhttp_add_header(in, "Set-Cookie", "a=1; Path=/");
    evhttp_add_header(in, "Set-Cookie", "b=2; Path=/");
    evhttp_add_header(in, "Content-Length", "5");
    evhttp_add_header(in, "Location", "/next");
    evhttp_add_header(in, "Connection", "close, X-Internal");
    evhttp_add_header(in, "X-Internal", "secret");
    evhttp_add_header(in, "Transfer-Encoding", "chunked");

    sg_headers_copy_response(in, out);

    size_t cookies = 0;
    struct evkeyval *h;
    TAILQ_FOREACH(h, out, next)
    {
        if (strcasecmp(h->key, "Set-Cookie") == 0)
            cookies++;
    }
    assert_int_equal(cookies, 2);
    assert_string_equal(evhttp_find_header(out, "Content-Length"), "5");
    assert_string_equal(evhttp_find_header(out, "Location"), "/next");
    assert_null(evhttp_find_header(out, "Connection"));
    assert_null(evhttp_find_header(out, "X-Internal"));
    assert_null(evhttp_find_header(out, "Transfer-Encoding"));
    headers_free(in);
    headers_free(out);
}

static void test_wire_size(void **state)
{
    struct evkeyvalq *h = headers_new();
    assert_int_equal(sg_headers_wire_size(h), 0);
    evhttp_add_header(h, "A", "bc");
    evhttp_add_header(h, "Def", "");
    assert_int_equal(sg_headers_wire_size(h), (1 + 2 + 4) + (3 + 0 + 4));
    headers_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hop_by_hop_names),  cmocka_unit_test(test_identity_namespace),
        cmocka_unit_test(test_connection_listed), cmocka_unit_test(test_request_filter),
        cmocka_unit_test(test_response_filter),   cmocka_unit_test(test_several_connection_lines),
        cmocka_unit_test(test_wire_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
