/* Unit tests of the header filter between client and upstream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "../../gateway/common.c"
#include "../../gateway/cookie.c"
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

/* The word-at-a-time check agrees with the byte rule at every length and
 * position, for every byte, alone and after a tab in the same word. */
static void test_value_ok_every_byte(void **state)
{
    char value[48];
    for (size_t len = 1; len < 41; len++) {
        for (size_t pos = 0; pos < len; pos++) {
            for (int b = 1; b < 256; b++) {
                memset(value, 'a', len);
                value[len] = '\0';
                value[pos] = (char)b;
                bool want = !((b < 0x20 && b != '\t') || b == 0x7f);
                assert_int_equal(sg_headers_value_ok(value), want);
                if (pos > 0) {
                    value[pos - 1] = '\t';
                    assert_int_equal(sg_headers_value_ok(value), want);
                }
            }
        }
    }
    assert_true(sg_headers_value_ok(""));
    assert_true(sg_headers_value_ok("\t\t\t\t\t\t\t\t\t obs-text \x80\xff"));
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

/* Runs sg_headers_copy_request and reads its header lines back into a list. */
static void copy_request(const struct evkeyvalq *in, struct evkeyvalq *out)
{
    struct evbuffer *lines = evbuffer_new();
    sg_headers_copy_request(in, lines, NULL);
    char *line;
    while ((line = evbuffer_readln(lines, NULL, EVBUFFER_EOL_CRLF_STRICT)) != NULL) {
        char *colon = strstr(line, ": ");
        assert_non_null(colon);
        *colon = '\0';
        evhttp_add_header(out, line, colon + 2);
        free(line);
    }
    assert_int_equal(evbuffer_get_length(lines), 0);
    evbuffer_free(lines);
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

    copy_request(in, out);

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
    copy_request(in, out);
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

    struct sg_header headers[16] = {0};
    size_t count = 0;
    struct evkeyval *h;
    TAILQ_FOREACH(h, in, next)
    {
        headers[count].name = h->key;
        headers[count++].value = h->value;
    }
    sg_headers_copy_response(headers, count, out, NULL);

    size_t cookies = 0;
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

/* The answer's head as the proxy writes it: the same headers as the filter above, as lines in
 * order; Content-Length only when kept, and flags that say what was written. Twenty Connection
 * lines of two options each (more options than the writer keeps at hand: it looks again in every
 * line) still remove what the last of them names. */
static void test_write_response(void **state)
{
    struct sg_header in[16] = {
        {"Set-Cookie", "a=1"},
        {"Content-Length", "5"},
        {"Date", "Mon"},
        {"Connection", "X-Internal"},
        {"X-Internal", "secret"},
        {"keep-alive", "timeout=5"},
        {"X-Bad", "one\r\nX-SSO-User: root"},
        {"Location", "/next"},
    };
    struct evbuffer *out = evbuffer_new();
    unsigned has = sg_headers_write_response(in, 8, out, false, NULL);
    const char *want = "Set-Cookie: a=1\r\nContent-Length: 5\r\nDate: Mon\r\nLocation: /next\r\n";
    assert_int_equal(evbuffer_get_length(out), strlen(want));
    assert_memory_equal(evbuffer_pullup(out, -1), want, strlen(want));
    assert_int_equal(has, SG_RESPONSE_HAS_LENGTH | SG_RESPONSE_HAS_DATE);

    evbuffer_drain(out, evbuffer_get_length(out));
    has = sg_headers_write_response(in, 8, out, true, NULL);
    want = "Set-Cookie: a=1\r\nDate: Mon\r\nLocation: /next\r\n";
    assert_memory_equal(evbuffer_pullup(out, -1), want, strlen(want));
    assert_int_equal(has, SG_RESPONSE_HAS_DATE);

    struct sg_header many[22];
    for (size_t i = 0; i < 20; i++)
        many[i] = (struct sg_header){"Connection", i == 19 ? "close, X-Last" : "keep-alive, x"};
    many[20] = (struct sg_header){"X-Last", "gone"};
    many[21] = (struct sg_header){"X-Kept", "here"};
    evbuffer_drain(out, evbuffer_get_length(out));
    has = sg_headers_write_response(many, 22, out, false, NULL);
    want = "X-Kept: here\r\n";
    assert_int_equal(evbuffer_get_length(out), strlen(want));
    assert_memory_equal(evbuffer_pullup(out, -1), want, strlen(want));
    assert_int_equal(has, 0);
    evbuffer_free(out);
}

/* The upstream may not set the gateway's own cookies: a Set-Cookie line is dropped when the name a
 * browser reads in it is one of them, in any case, with blanks around it, or behind the '=' of a
 * nameless cookie (which a browser sends back as "NAME=v"); other cookies, and other headers that
 * merely mention the name, pass. */
static void test_owned_cookies(void **state)
{
    static const char *const owned[] = {"ssogate", "ssogate_login", NULL};
    static const char *const dropped[] = {
        "ssogate=abc; Path=/",
        "ssogate=",
        "SSOGATE=abc",
        " ssogate =abc",
        "\tssogate\t=abc",
        "=ssogate=abc",
        "= ssogate=abc",
        "ssogate_login=x; Max-Age=600",
        "ssogate",
        "ssogate; Path=/",
    };
    static const char *const kept[] = {
        "ssogate2=abc",     "xssogate=abc", "psa=ssogate", "a=1; ssogate=abc",
        "ssogate_csrf=abc", "=abc",         "ssogat=e",    "",
        "; ssogate=abc",
    };
    for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++)
        assert_true(sg_cookie_sets_any(dropped[i], owned));
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
        assert_false(sg_cookie_sets_any(kept[i], owned));

    struct sg_header in[] = {
        {"Set-Cookie", "psa=1; Path=/"}, {"set-cookie", "ssogate=planted; Path=/"},
        {"X-Note", "ssogate=abc"},       {"Set-Cookie", "=ssogate_login=planted"},
        {"Content-Length", "0"},
    };
    struct evbuffer *out = evbuffer_new();
    unsigned has = sg_headers_write_response(in, 5, out, false, owned);
    const char *want = "Set-Cookie: psa=1; Path=/\r\nX-Note: ssogate=abc\r\nContent-Length: 0\r\n";
    assert_int_equal(evbuffer_get_length(out), strlen(want));
    assert_memory_equal(evbuffer_pullup(out, -1), want, strlen(want));
    assert_int_equal(has, SG_RESPONSE_HAS_LENGTH | SG_RESPONSE_DROPPED_COOKIE);
    evbuffer_drain(out, evbuffer_get_length(out));
    /* Without names (NULL), no Set-Cookie line is dropped. */
    has = sg_headers_write_response(in, 5, out, false, NULL);
    assert_int_equal(has, SG_RESPONSE_HAS_LENGTH);
    assert_non_null(strstr((const char *)evbuffer_pullup(out, -1), "ssogate=planted"));
    evbuffer_free(out);

    struct evkeyvalq *copied = headers_new();
    assert_int_equal(sg_headers_copy_response(in, 5, copied, owned), 2);
    size_t cookies = 0;
    struct evkeyval *h;
    TAILQ_FOREACH(h, copied, next)
    {
        if (strcasecmp(h->key, "Set-Cookie") == 0) {
            assert_string_equal(h->value, "psa=1; Path=/");
            cookies++;
        }
    }
    assert_int_equal(cookies, 1);
    headers_free(copied);
}

/* The names the gateway owns, in any case and with '_' for '-': what it sets, every X-Forwarded-*,
 * and what a proxy in front would say of the request's origin or URL; not their look-alikes. */
static void test_gateway_owned(void **state)
{
    static const char *const owned[] = {
        "Host",
        "cookie",
        "X-Request-Id",
        "x_forwarded_for",
        "X-Forwarded-Port",
        "X-FORWARDED-PREFIX",
        "x-forwarded-x",
        "Forwarded",
        "X_Real_IP",
        "True-Client-IP",
        "Client-IP",
        "X-Original-URL",
        "x_rewrite_url",
        "X-Host",
        "Front-End-Https",
        "X-Url-Scheme",
        "X-SSO-User",
        "Transfer_Encoding",
        "Expect",
        "Content-Length",
    };
    static const char *const other[] = {
        "X-Forwarded", "X-Forwardedfor",   "Forwarded-For", "X-Real-IPs",
        "X-Hostname",  "X-Original",       "Accept",        "Referer",
        "Origin",      "X-Requested-With", "Client-IPv6",   "",
    };
    for (size_t i = 0; i < sizeof(owned) / sizeof(owned[0]); i++)
        assert_true(sg_headers_gateway_owned(owned[i]));
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++)
        assert_false(sg_headers_gateway_owned(other[i]));
}

/* A line break in a name or value would start a header of the writer's choosing: no line at all. */
static void test_add_line(void **state)
{
    struct evbuffer *out = evbuffer_new();
    sg_headers_add_line(out, "X-SSO-Email", "a@b.example\r\nX-SSO-User: root");
    sg_headers_add_line(out, "X-SSO-Email", "a@b.example\nX-SSO-User: root");
    sg_headers_add_line(out, "X-Injected\r\nX-SSO-User", "root");
    assert_int_equal(evbuffer_get_length(out), 0);
    sg_headers_add_line(out, "X-SSO-Email", "a@b.example");
    size_t len = evbuffer_get_length(out);
    assert_int_equal(len, strlen("X-SSO-Email: a@b.example\r\n"));
    assert_memory_equal(evbuffer_pullup(out, -1), "X-SSO-Email: a@b.example\r\n", len);
    /* A line longer than the writer's own buffer goes whole. */
    char value[5000];
    memset(value, 'v', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    evbuffer_drain(out, len);
    assert_true(sg_headers_add_line(out, "X-Long", value));
    assert_int_equal(evbuffer_get_length(out), strlen("X-Long: ") + strlen(value) + 2);
    const char *line = (const char *)evbuffer_pullup(out, -1);
    assert_memory_equal(line, "X-Long: vvv", 11);
    assert_memory_equal(line + evbuffer_get_length(out) - 3, "v\r\n", 3);
    evbuffer_free(out);
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

/* Appends name: value to h by hand, as the parser would have stored it:
 * evhttp_add_header refuses some of the names and values tested here. */
static void add_raw(struct evkeyvalq *h, const char *name, const char *value)
{
    struct evkeyval *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    e->key = strdup(name);
    e->value = strdup(value);
    assert_non_null(e->key);
    assert_non_null(e->value);
    TAILQ_INSERT_TAIL(h, e, next);
}

/* Validates a header section given as name, value, ..., NULL. */
static enum sg_headers_status validate_pairs(bool http11, const char *const *pairs)
{
    struct evkeyvalq *h = headers_new();
    for (size_t i = 0; pairs[i] != NULL; i += 2)
        add_raw(h, pairs[i], pairs[i + 1]);
    enum sg_headers_status status = sg_headers_validate(h, http11);
    headers_free(h);
    return status;
}

/* Validates an HTTP/1.1 section of a valid Host and one more line. */
static enum sg_headers_status validate_one(const char *name, const char *value)
{
    const char *pairs[] = {"Host", "gw.example", name, value, NULL};
    return validate_pairs(true, pairs);
}

#define assert_status(expected, got)                                                               \
    do {                                                                                           \
        enum sg_headers_status got_ = (got);                                                       \
        if (got_ != (expected))                                                                    \
            fail_msg("expected %s, got %s", sg_headers_status_name(expected),                      \
                     sg_headers_status_name(got_));                                                \
    } while (0)

/* Prints why one case of a table failed and counts it, so that a run shows
 * every failing case. */
__attribute__((format(printf, 2, 3))) static void report_failure(unsigned *failed, const char *fmt,
                                                                 ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    (*failed)++;
}

static void test_validate_ordinary(void **state)
{
    const char *request[] = {"Host",
                             "gw.example",
                             "User-Agent",
                             "Mozilla/5.0 (X11; Linux x86_64)",
                             "Accept",
                             "text/html,*/*;q=0.8",
                             "Cookie",
                             "a=b; c=d",
                             "Connection",
                             "keep-alive",
                             "Content-Length",
                             "5",
                             "X-Empty",
                             "",
                             "X-Tab",
                             "a\tb",
                             "X-Obs-Text",
                             "caf\xc3\xa9",
                             "X-Forwarded-For",
                             "10.0.0.1",
                             NULL};
    assert_status(SG_HEADERS_OK, validate_pairs(true, request));
    assert_status(SG_HEADERS_OK, validate_pairs(false, request));
    const char *bare10[] = {"Accept", "*/*", NULL};
    assert_status(SG_HEADERS_OK, validate_pairs(false, bare10));
    const char *empty[] = {NULL};
    assert_status(SG_HEADERS_OK, validate_pairs(false, empty));

    /* Through evhttp_add_header too, as the server's own list is built. */
    struct evkeyvalq *h = headers_new();
    evhttp_add_header(h, "Host", "gw.example:8443");
    evhttp_add_header(h, "Transfer-Encoding", "chunked");
    assert_status(SG_HEADERS_OK, sg_headers_validate(h, true));
    headers_free(h);
}

static void test_validate_names(void **state)
{
    unsigned failed = 0;
    static const char *const bad[] = {
        "Bad Name", "Name ", " Name", "\vName", "Na\x7fme", "(x)",    "a/b",  "a@b",
        "\"q\"",    "",      "a:b",   "a\tb",   "\xc3\xa4", "a{b}",   "a,b",  "a;b",
        "a=b",      "a[b]",  "a?b",   "a\\b",   "a<b>",     "X-\x01", "X\rY", "X\nY",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (validate_one(bad[i], "v") != SG_HEADERS_BAD_NAME)
            report_failure(&failed, "name %zu \"%s\" not refused as bad_name", i, bad[i]);
    }
    static const char *const good[] = {
        "X-Custom_1", "!#$%&'*+-.^_`|~09azAZ", "a", "X-SSOUser", "ETag",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (validate_one(good[i], "v") != SG_HEADERS_OK)
            report_failure(&failed, "name \"%s\" refused", good[i]);
    }
    /* A bad name on the Host line itself, in HTTP/1.0 too. */
    const char *host_space[] = {"Host ", "gw.example", NULL};
    assert_int_not_equal(validate_pairs(false, host_space), SG_HEADERS_OK);
    const char *bad10[] = {"X Y", "1", NULL};
    assert_status(SG_HEADERS_BAD_NAME, validate_pairs(false, bad10));
    assert_int_equal(failed, 0);
}

static void test_validate_values(void **state)
{
    unsigned failed = 0;
    static const char *const bad[] = {
        "a\rb", "a\nb", "a\r\n b", "a\x01", "a\x7f-b", "\x1f", "\x0b", "\x1b[31m", "x\r",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (validate_one("X-Value", bad[i]) != SG_HEADERS_BAD_VALUE)
            report_failure(&failed, "value %zu not refused as bad_value", i);
    }
    static const char *const good[] = {"a\tb", "\tx", "caf\xc3\xa9", "", "~!@#$%^&*()", "\xff"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (validate_one("X-Value", good[i]) != SG_HEADERS_OK)
            report_failure(&failed, "value %zu refused", i);
    }
    const char *bad10[] = {"X-Value", "a\x01", NULL};
    assert_status(SG_HEADERS_BAD_VALUE, validate_pairs(false, bad10));
    assert_int_equal(failed, 0);
}

static void test_validate_content_length(void **state)
{
    unsigned failed = 0;
    static const char *const good[] = {"5", "0", "05", "1234567890"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (validate_one("Content-Length", good[i]) != SG_HEADERS_OK)
            report_failure(&failed, "Content-Length \"%s\" refused", good[i]);
    }
    static const char *const bad[] = {"+5",
                                      "-1",
                                      "5, 5",
                                      "",
                                      "0x5",
                                      "5a",
                                      "1e3",
                                      "5 5",
                                      "5.0",
                                      " ",
                                      "99999999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (validate_one("Content-Length", bad[i]) != SG_HEADERS_BAD_CONTENT_LENGTH)
            report_failure(&failed, "Content-Length \"%s\" not refused", bad[i]);
    }
    const char *twice_same[] = {"Host", "h", "Content-Length", "5", "Content-Length", "5", NULL};
    assert_status(SG_HEADERS_BAD_CONTENT_LENGTH, validate_pairs(true, twice_same));
    const char *twice_other[] = {"Host", "h", "Content-Length", "5", "content-length", "6", NULL};
    assert_status(SG_HEADERS_BAD_CONTENT_LENGTH, validate_pairs(true, twice_other));
    const char *twice10[] = {"CONTENT-LENGTH", "0", "Content-Length", "0", NULL};
    assert_status(SG_HEADERS_BAD_CONTENT_LENGTH, validate_pairs(false, twice10));
    assert_int_equal(failed, 0);
}

static void test_validate_transfer_encoding(void **state)
{
    unsigned failed = 0;
    assert_status(SG_HEADERS_OK, validate_one("Transfer-Encoding", "chunked"));
    assert_status(SG_HEADERS_OK, validate_one("transfer-encoding", "chunked"));
    static const char *const bad[] = {
        "gzip, chunked", "chunked, chunked", "identity",      "gzip",    "chunked;x=1", "",
        "xchunked",      "chunked,",         "chunked, gzip", "deflate",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        enum sg_headers_status status = validate_one("Transfer-Encoding", bad[i]);
        if (status != SG_HEADERS_TRANSFER_ENCODING)
            report_failure(&failed, "Transfer-Encoding \"%s\": %s", bad[i],
                           sg_headers_status_name(status));
        assert_int_equal(sg_headers_status_http(status), 501);
    }
    /* Two lines are one list: chunked twice. */
    const char *twice[] = {"Host",    "h", "Transfer-Encoding", "chunked", "Transfer-Encoding",
                           "chunked", NULL};
    assert_status(SG_HEADERS_TRANSFER_ENCODING, validate_pairs(true, twice));
    const char *gzip_then_chunked[] = {
        "Host", "h", "Transfer-Encoding", "gzip", "Transfer-Encoding", "chunked", NULL};
    assert_status(SG_HEADERS_TRANSFER_ENCODING, validate_pairs(true, gzip_then_chunked));

    /* With Content-Length, in either order. */
    const char *te_cl[] = {"Host", "h", "Transfer-Encoding", "chunked", "Content-Length",
                           "5",    NULL};
    assert_status(SG_HEADERS_LENGTH_AND_CHUNKED, validate_pairs(true, te_cl));
    const char *cl_te[] = {"Host",    "h", "Content-Length", "0", "Transfer-Encoding",
                           "chunked", NULL};
    assert_status(SG_HEADERS_LENGTH_AND_CHUNKED, validate_pairs(true, cl_te));
    assert_int_equal(sg_headers_status_http(SG_HEADERS_LENGTH_AND_CHUNKED), 400);

    /* HTTP/1.0 has no chunked coding. */
    const char *te10[] = {"Transfer-Encoding", "chunked", NULL};
    assert_status(SG_HEADERS_CHUNKED_HTTP10, validate_pairs(false, te10));
    const char *te10_host[] = {"Host", "h", "Transfer-Encoding", "chunked", NULL};
    assert_status(SG_HEADERS_CHUNKED_HTTP10, validate_pairs(false, te10_host));
    assert_int_equal(sg_headers_status_http(SG_HEADERS_CHUNKED_HTTP10), 400);
    assert_int_equal(failed, 0);
}

/* Transfer-coding names are case-insensitive (RFC 9112 section 7). */
static void test_validate_transfer_encoding_case(void **state)
{
    assert_status(SG_HEADERS_OK, validate_one("Transfer-Encoding", "Chunked"));
    assert_status(SG_HEADERS_OK, validate_one("Transfer-Encoding", "CHUNKED"));
}

static void test_validate_host(void **state)
{
    unsigned failed = 0;
    const char *none11[] = {"Accept", "*/*", NULL};
    assert_status(SG_HEADERS_NO_HOST, validate_pairs(true, none11));
    const char *empty[] = {NULL};
    assert_status(SG_HEADERS_NO_HOST, validate_pairs(true, empty));
    const char *two_same[] = {"Host", "gw.example", "Host", "gw.example", NULL};
    assert_status(SG_HEADERS_SEVERAL_HOSTS, validate_pairs(true, two_same));
    assert_status(SG_HEADERS_SEVERAL_HOSTS, validate_pairs(false, two_same));
    const char *two_cases[] = {"Host", "gw.example", "HOST", "evil.example", NULL};
    assert_status(SG_HEADERS_SEVERAL_HOSTS, validate_pairs(true, two_cases));
    assert_status(SG_HEADERS_SEVERAL_HOSTS, validate_pairs(false, two_cases));

    static const char *const good[] = {"gw.example",   "gw.example:8080", "[::1]:8443",
                                       "[::1]",        "127.0.0.1:80",    "GW.Example",
                                       "a-b.example1", "localhost"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        const char *pairs[] = {"Host", good[i], NULL};
        if (validate_pairs(true, pairs) != SG_HEADERS_OK ||
            validate_pairs(false, pairs) != SG_HEADERS_OK)
            report_failure(&failed, "Host \"%s\" refused", good[i]);
    }
    static const char *const bad[] = {
        "a b",     "a/b",  "a@b",    "user@gw.example", "host:port",   "h:8080:1", "[::1", "::1",
        "host:-1", "a\\b", "host?x", "host#x",          "gw.example/", "[::1]x",   "a%zz", "%",
        "[]",      "h:8a", "a%4"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *pairs[] = {"Host", bad[i], NULL};
        if (validate_pairs(true, pairs) != SG_HEADERS_BAD_HOST)
            report_failure(&failed, "Host \"%s\" not refused in HTTP/1.1", bad[i]);
        if (validate_pairs(false, pairs) != SG_HEADERS_BAD_HOST)
            report_failure(&failed, "Host \"%s\" not refused in HTTP/1.0", bad[i]);
    }
    assert_int_equal(failed, 0);
}

static void test_validate_connection(void **state)
{
    unsigned failed = 0;
    static const char *const protected_options[] = {
        "Host",
        "content-length",
        "Transfer-Encoding",
        "Cookie",
        "X-Forwarded-For",
        "X-Forwarded-Host",
        "x-forwarded-proto",
        "X-Request-Id",
        "X-SSO-User",
        "x_sso_user",
        "X-Sso-Assertion",
        "keep-alive, X-Forwarded-Host",
        "close,cookie",
        "x_forwarded_host",
        "X_Request_Id",
        /* "a X-Forwarded-* header": not only the three the gateway sets. */
        "X-Forwarded-Port",
        "X-Forwarded-Prefix",
        /* The identity namespace has no length limit. */
        "X-SSO-Aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "keep-alive, x_sso_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    };
    for (size_t i = 0; i < sizeof(protected_options) / sizeof(protected_options[0]); i++) {
        enum sg_headers_status status = validate_one("Connection", protected_options[i]);
        if (status != SG_HEADERS_PROTECTED_IN_CONNECTION)
            report_failure(&failed, "Connection: %s gives %s", protected_options[i],
                           sg_headers_status_name(status));
    }
    static const char *const allowed[] = {"keep-alive",          "close",    "Upgrade", "X-Custom",
                                          "keep-alive, Upgrade", "X-SSOUser"};
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        if (validate_one("Connection", allowed[i]) != SG_HEADERS_OK)
            report_failure(&failed, "Connection: %s refused", allowed[i]);
    }
    /* The second Connection line counts as much as the first. */
    const char *second[] = {"Host",         "h", "Connection", "keep-alive", "Connection",
                            "X-SSO-Tenant", NULL};
    assert_status(SG_HEADERS_PROTECTED_IN_CONNECTION, validate_pairs(true, second));
    const char *in10[] = {"Connection", "Host", NULL};
    assert_status(SG_HEADERS_PROTECTED_IN_CONNECTION, validate_pairs(false, in10));
    assert_int_equal(failed, 0);
}

static void test_status_http_and_names(void **state)
{
    static const struct {
        enum sg_headers_status status;
        const char *name;
        int http;
    } documented[] = {
        {SG_HEADERS_BAD_NAME, "bad_name", 400},
        {SG_HEADERS_BAD_VALUE, "bad_value", 400},
        {SG_HEADERS_BAD_CONTENT_LENGTH, "bad_content_length", 400},
        {SG_HEADERS_TRANSFER_ENCODING, "transfer_encoding", 501},
        {SG_HEADERS_LENGTH_AND_CHUNKED, "length_and_chunked", 400},
        {SG_HEADERS_CHUNKED_HTTP10, "chunked_http10", 400},
        {SG_HEADERS_NO_HOST, "no_host", 400},
        {SG_HEADERS_SEVERAL_HOSTS, "several_hosts", 400},
        {SG_HEADERS_BAD_HOST, "bad_host", 400},
        {SG_HEADERS_PROTECTED_IN_CONNECTION, "protected_in_connection", 400},
    };
    assert_int_equal(sizeof(documented) / sizeof(documented[0]), SG_HEADERS__COUNT - 1);
    for (size_t i = 0; i < sizeof(documented) / sizeof(documented[0]); i++) {
        assert_string_equal(sg_headers_status_name(documented[i].status), documented[i].name);
        assert_int_equal(sg_headers_status_http(documented[i].status), documented[i].http);
    }
    for (int a = 0; a < SG_HEADERS__COUNT; a++) {
        assert_non_null(sg_headers_status_name(a));
        for (int b = a + 1; b < SG_HEADERS__COUNT; b++)
            assert_string_not_equal(sg_headers_status_name(a), sg_headers_status_name(b));
    }
}

static void test_identity_folding(void **state)
{
    assert_true(sg_headers_is_identity("X_SSO_User"));
    assert_true(sg_headers_is_identity("x-sso_subject"));
    assert_true(sg_headers_is_identity("X-SSO_Subject"));
    assert_true(sg_headers_is_identity("x_sso-tenant"));
    assert_true(sg_headers_is_identity("X_Sso_Assertion"));
    assert_false(sg_headers_is_identity("X-SSOUser"));
    assert_false(sg_headers_is_identity("X_SSOUser"));
    assert_false(sg_headers_is_identity("XSSO-User"));
    assert_false(sg_headers_is_identity("X-SS0-User"));
    assert_false(sg_headers_is_identity("X-SSO"));
    assert_false(sg_headers_is_identity("X_SSO"));
    assert_false(sg_headers_is_identity(""));
    assert_false(sg_headers_is_identity("X--SSO-User"));
}

static void test_name_eq(void **state)
{
    assert_true(sg_headers_name_eq("Host", "host"));
    assert_true(sg_headers_name_eq("X-Forwarded-Host", "x_forwarded_host"));
    assert_true(sg_headers_name_eq("a_b", "A-B"));
    assert_true(sg_headers_name_eq("a-b", "a_b"));
    assert_true(sg_headers_name_eq("X-Request-Id", "X-REQUEST-ID"));
    assert_true(sg_headers_name_eq("", ""));
    assert_false(sg_headers_name_eq("Host", "Hos"));
    assert_false(sg_headers_name_eq("Hos", "Host"));
    assert_false(sg_headers_name_eq("X-A", "X-A-"));
    assert_false(sg_headers_name_eq("X-A", "XA"));
    assert_false(sg_headers_name_eq("a.b", "a-b"));
    assert_false(sg_headers_name_eq("a", ""));
    /* Only ASCII letters fold: 0xC3 0xA4 is not 0xC3 0x84. */
    assert_false(sg_headers_name_eq("\xc3\xa4", "\xc3\x84"));
}

static void test_is_token(void **state)
{
    assert_true(sg_headers_is_token("a"));
    assert_true(sg_headers_is_token("Content-Type"));
    assert_true(sg_headers_is_token("!#$%&'*+-.^_`|~09azAZ"));
    assert_false(sg_headers_is_token(""));
    assert_false(sg_headers_is_token("a b"));
    assert_false(sg_headers_is_token("a\x7f"));
    assert_false(sg_headers_is_token("a\x80"));
    assert_false(sg_headers_is_token("a:"));
    static const char separators[] = "\"(),/:;<=>?@[\\]{} \t";
    for (const char *c = separators; *c; c++) {
        char name[4] = {'a', *c, 'b', '\0'};
        if (sg_headers_is_token(name))
            fail_msg("'%c' taken as a tchar", *c);
    }
    for (int c = 1; c < 0x20; c++) {
        char name[2] = {(char)c, '\0'};
        assert_false(sg_headers_is_token(name));
    }
}

/* is_connection gives sg_headers_name_eq(name, "Connection")'s answer. */
static void test_is_connection(void **state)
{
    const char *names[] = {
        "Connection",   "connection", "CONNECTION", "cONNECTION", "Connectio",   "Connections",
        "Content-Type", "",           "C",          "Konnection", "Connection ", "Connect_ion",
        "Co\x0enection"};
    for (size_t i = 0; i < SG_ARRAY_LEN(names); i++) {
        if (is_connection(names[i]) != sg_headers_name_eq(names[i], "Connection"))
            fail_msg("is_connection(\"%s\") is %d", names[i], is_connection(names[i]));
    }
    assert_true(is_connection("cOnNeCtIoN"));
    assert_false(is_connection("Connection-X"));
    /* Every byte in every position: only the letters of "connection", in either case, pass. */
    for (size_t at = 0; at < 10; at++) {
        for (int c = 1; c < 256; c++) {
            char name[] = "Connection";
            name[at] = (char)c;
            if (is_connection(name) != sg_headers_name_eq(name, "Connection"))
                fail_msg("byte 0x%02x at %zu: is_connection %d", c, at, is_connection(name));
        }
    }
}

/* The byte classes of common.h against their RFCs' definitions, spelt out, for all 256 bytes. */
static void test_byte_classes_every_byte(void **state)
{
    for (int c = 0; c < 256; c++) {
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        bool tchar = alnum || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
        bool unreserved = alnum || (c != 0 && strchr("-._~", c) != NULL);
        if (sg_is_tchar((unsigned char)c) != tchar)
            fail_msg("sg_is_tchar(0x%02x) is %d", c, !tchar);
        if (sg_is_unreserved((unsigned char)c) != unreserved)
            fail_msg("sg_is_unreserved(0x%02x) is %d", c, !unreserved);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_byte_classes_every_byte),
        cmocka_unit_test(test_is_connection),
        cmocka_unit_test(test_hop_by_hop_names),
        cmocka_unit_test(test_value_ok_every_byte),
        cmocka_unit_test(test_identity_namespace),
        cmocka_unit_test(test_connection_listed),
        cmocka_unit_test(test_request_filter),
        cmocka_unit_test(test_response_filter),
        cmocka_unit_test(test_add_line),
        cmocka_unit_test(test_write_response),
        cmocka_unit_test(test_several_connection_lines),
        cmocka_unit_test(test_wire_size),
        cmocka_unit_test(test_validate_ordinary),
        cmocka_unit_test(test_validate_names),
        cmocka_unit_test(test_validate_values),
        cmocka_unit_test(test_validate_content_length),
        cmocka_unit_test(test_validate_transfer_encoding),
        cmocka_unit_test(test_validate_transfer_encoding_case),
        cmocka_unit_test(test_validate_host),
        cmocka_unit_test(test_validate_connection),
        cmocka_unit_test(test_status_http_and_names),
        cmocka_unit_test(test_identity_folding),
        cmocka_unit_test(test_name_eq),
        cmocka_unit_test(test_is_token),
        cmocka_unit_test(test_owned_cookies),
        cmocka_unit_test(test_gateway_owned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
