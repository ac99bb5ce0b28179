/*
 * Unit tests of the load tool's modules: TOTP (RFC 6238 test vectors), the
 * histogram, the cookie jar, form reading, URLs, and the HTTP response
 * parser against a loopback server answering canned (also broken) replies.
 * The sources are included to reach their static functions.
 */
#include "../gateway/common.c"
#include "form.c"
#include "hconn.c"
#include "hist.c"
#include "jar.c"
#include "totp.c"

#include <event2/listener.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

/* ---- TOTP ---- */

static void test_totp_rfc6238(void **state)
{
    /* RFC 6238 appendix B, SHA-1 secret "12345678901234567890", the last 6 of the 8 digits. */
    static const struct {
        int64_t time;
        const char *code;
    } vectors[] = {
        {59, "287082"},         {1111111109, "081804"}, {1111111111, "050471"},
        {1234567890, "005924"}, {2000000000, "279037"}, {20000000000, "353130"},
    };
    unsigned char key[SG_TOTP_SECRET_MAX];
    int len = sg_totp_base32_decode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", key, sizeof(key));
    assert_int_equal(len, 20);
    assert_memory_equal(key, "12345678901234567890", 20);
    for (size_t i = 0; i < SG_ARRAY_LEN(vectors); i++) {
        char code[7];
        assert_int_equal(sg_totp_code(key, (size_t)len, vectors[i].time, code), 0);
        assert_string_equal(code, vectors[i].code);
    }
}

static void test_totp_base32_refuses(void **state)
{
    unsigned char key[5];
    assert_int_equal(sg_totp_base32_decode("", key, sizeof(key)), SG_EINVAL);
    assert_int_equal(sg_totp_base32_decode("JBSW1", key, sizeof(key)), SG_EINVAL);
    assert_int_equal(sg_totp_base32_decode("JBSWY3DPEHPK3PXP", key, sizeof(key)), SG_EINVAL);
    assert_int_equal(sg_totp_base32_decode("jbsw y3dp====", key, sizeof(key)), 5);
    assert_memory_equal(key, "Hello", 5);
}

/* ---- histogram ---- */

static void test_hist(void **state)
{
    static struct sg_hist h;
    assert_int_equal(sg_hist_percentile(&h, 50), 0);
    for (int64_t v = 1; v <= 100000; v++)
        sg_hist_record(&h, v);
    assert_int_equal(h.count, 100000);
    assert_int_equal(h.max_us, 100000);
    int64_t p50 = sg_hist_percentile(&h, 50);
    int64_t p99 = sg_hist_percentile(&h, 99);
    assert_true(p50 >= 50000 && p50 <= 50000 * 1.008);
    assert_true(p99 >= 99000 && p99 <= 99000 * 1.008);
    assert_int_equal(sg_hist_percentile(&h, 100), 100000);
    assert_int_equal(sg_hist_percentile(&h, 0), 1);
    sg_hist_record(&h, -5);
    sg_hist_record(&h, INT64_MAX);
    assert_int_equal(h.max_us, SG_HIST_MAX_US);
    assert_int_equal(sg_hist_percentile(&h, 100), SG_HIST_MAX_US);
    for (unsigned b = 0; b + 1 < SG_HIST_BUCKETS; b++)
        assert_true(bucket_top(b) < bucket_top(b + 1));
    assert_int_equal(bucket_of(bucket_top(300)), 300);
}

/* ---- cookie jar ---- */

static void test_jar(void **state)
{
    struct sg_jar *jar = sg_jar_new();
    const char *gw = "http://127.0.0.1:8080", *idp = "https://127.0.0.1:9443";
    assert_int_equal(sg_jar_store(jar, gw, "/_sso/login", "b=1; Path=/; HttpOnly"), 0);
    assert_int_equal(sg_jar_store(jar, gw, "/_sso/login", "deep=2; Path=/_sso"), 0);
    assert_int_equal(sg_jar_store(jar, gw, "/_sso/login", "here=3"), 0);
    assert_int_equal(sg_jar_store(jar, idp, "/auth", "_interaction=x; path=/; secure"), 0);
    char *h = sg_jar_header(jar, gw, "/_sso/callback");
    assert_string_equal(h, "deep=2; here=3; b=1");
    free(h);
    h = sg_jar_header(jar, gw, "/index.html");
    assert_string_equal(h, "b=1");
    free(h);
    assert_null(sg_jar_header(jar, "http://127.0.0.1:8081", "/"));
    assert_string_equal(sg_jar_get(jar, idp, "_interaction"), "x");

    assert_int_equal(sg_jar_store(jar, gw, "/", "b=new; Path=/"), 0);
    assert_string_equal(sg_jar_get(jar, gw, "b"), "new");
    assert_int_equal(sg_jar_store(jar, gw, "/", "b=; Path=/; Max-Age=0"), 0);
    assert_null(sg_jar_get(jar, gw, "b"));
    assert_int_equal(sg_jar_store(jar, gw, "/",
                                  "here=; Path=/_sso; expires=Thu, 01 Jan 1970 "
                                  "00:00:00 GMT"),
                     0);
    assert_null(sg_jar_get(jar, gw, "here"));

    assert_int_equal(sg_jar_store(jar, gw, "/", "novalue"), SG_EINVAL);
    assert_int_equal(sg_jar_store(jar, gw, "/", "=x"), SG_EINVAL);
    char big[SG_JAR_COOKIE_MAX + 16];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    big[1] = '=';
    assert_int_equal(sg_jar_store(jar, gw, "/", big), SG_ETOOBIG);

    for (int i = 0; i < 3 * SG_JAR_MAX; i++) {
        char c[32];
        snprintf(c, sizeof(c), "c%d=%d", i, i);
        assert_int_equal(sg_jar_store(jar, gw, "/", c), 0);
    }
    assert_null(sg_jar_get(jar, gw, "c0"));
    assert_string_equal(sg_jar_get(jar, gw, "c95"), "95");
    sg_jar_free(jar);
    sg_jar_free(NULL);
}

/* ---- forms ---- */

static const char login_page[] =
    "<html><body><form id=\"cancel-form\" method=\"post\" action=\"/x/abort\"></form>\n"
    "<FORM ID='login-form' method=post action=\"/interaction/a&amp;b/login\">\n"
    "<input type=\"hidden\" name=\"csrf\" value=\"t&#x3D;1&quot;\">\n"
    "<input type=text id=login name=login value=\"\" autofocus required>\n"
    "<input type=\"password\" name=\"password\">\n"
    "<input type=\"checkbox\" name=\"remember\" value=\"1\">\n"
    "<button type=\"submit\">Sign in</button></form></body></html>";

static void test_form_login_page(void **state)
{
    struct sg_form form;
    assert_int_equal(sg_form_find(login_page, strlen(login_page), "login-form", &form), 0);
    assert_string_equal(form.action, "/interaction/a&b/login");
    assert_string_equal(form.method, "POST");
    assert_int_equal(form.field_count, 3);
    assert_string_equal(form.fields[0].name, "csrf");
    assert_string_equal(form.fields[0].value, "t=1\"");
    assert_int_equal(sg_form_set(&form, "login", "al ice@x"), 0);
    assert_int_equal(sg_form_set(&form, "password", "p&w=d"), 0);
    char *body = sg_form_encode(&form);
    assert_string_equal(body, "csrf=t%3D1%22&login=al+ice%40x&password=p%26w%3Dd");
    free(body);
    sg_form_clear(&form);
    assert_int_equal(sg_form_find(login_page, strlen(login_page), "otp-form", &form), SG_ENOENT);
    sg_form_clear(NULL);
}

static void test_form_hostile(void **state)
{
    struct sg_form form;
    static const char *const pages[] = {
        "<form id=\"login-form\"",
        "<form id=\"login-form\" action=\"/a",
        "<form id=\"login-form\"><input name=\"a\" value=\"unterminated",
        "<form id=\"login-form\"><input",
        "<form",
        "<",
        "<form id=login-form><input name=a value=&#99999999999;&#;&#x;&amp",
        "",
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(pages); i++) {
        /* A copy exactly as long as the text, so a read past it is caught by ASan. */
        size_t len = strlen(pages[i]);
        char *copy = sg_malloc(len ? len : 1);
        memcpy(copy, pages[i], len);
        int err = sg_form_find(copy, len, "login-form", &form);
        assert_true(err == 0 || err == SG_ENOENT || err == SG_ETOOBIG);
        sg_form_clear(&form);
        free(copy);
    }
    /* Too many fields. */
    char many[8192] = "<form id=\"login-form\">";
    for (int i = 0; i < SG_FORM_FIELDS_MAX + 2; i++) {
        char field[64];
        snprintf(field, sizeof(field), "<input name=\"f%d\" value=\"v\">", i);
        strcat(many, field);
    }
    assert_int_equal(sg_form_find(many, strlen(many), "login-form", &form), SG_ETOOBIG);
    sg_form_clear(&form);
}

/* ---- URLs ---- */

static void test_urls(void **state)
{
    struct sg_hurl u, r;
    assert_int_equal(sg_hurl_parse("http://127.0.0.1:8080/index.html?a=1#frag", &u), 0);
    assert_false(u.https);
    assert_int_equal(u.port, 8080);
    assert_string_equal(u.origin, "http://127.0.0.1:8080");
    assert_string_equal(u.authority, "127.0.0.1:8080");
    assert_string_equal(u.target, "/index.html?a=1");
    char *path = sg_hurl_path(&u);
    assert_string_equal(path, "/index.html");
    free(path);

    assert_int_equal(sg_hurl_resolve(&u, "/_sso/login?return_to=%2F", &r), 0);
    assert_string_equal(r.target, "/_sso/login?return_to=%2F");
    assert_string_equal(r.origin, u.origin);
    sg_hurl_clear(&r);
    assert_int_equal(sg_hurl_resolve(&u, "?b=2", &r), 0);
    assert_string_equal(r.target, "/index.html?b=2");
    sg_hurl_clear(&r);
    assert_int_equal(sg_hurl_resolve(&u, "https://[::1]:9443/auth?x", &r), 0);
    assert_true(r.https);
    assert_string_equal(r.host, "::1");
    assert_string_equal(r.origin, "https://::1:9443");
    assert_string_equal(r.authority, "[::1]:9443");
    sg_hurl_clear(&r);
    assert_int_equal(sg_hurl_parse("https://localhost", &r), 0);
    assert_int_equal(r.port, 443);
    assert_string_equal(r.target, "/");
    sg_hurl_clear(&r);

    static const char *const bad[] = {
        "ftp://127.0.0.1/",       "http://example.com/",  "http://127.0.0.1:0/",
        "http://127.0.0.1:99999", "http://u@127.0.0.1/",  "http:///x",
        "http://[::1/",           "http://127.0.0.1/a b",
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(bad); i++) {
        assert_int_not_equal(sg_hurl_parse(bad[i], &r), 0);
        sg_hurl_clear(&r);
    }
    assert_int_not_equal(sg_hurl_resolve(&u, "//evil/x", &r), 0);
    assert_int_not_equal(sg_hurl_resolve(&u, "relative", &r), 0);
    sg_hurl_clear(&r);
    sg_hurl_clear(&u);
}

/* ---- the response parser, against a loopback server ---- */

struct canned {
    const char *reply; /* written at the first request byte, then the server closes */
    const char *err;   /* what the client must report (NULL: a complete response) */
    int status;
    const char *body;
    unsigned cookies;
};

struct run {
    struct event_base *base;
    const struct canned *c;
    bool called;
};

static void on_server_read(struct bufferevent *bev, void *arg)
{
    struct run *run = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    /* Straight to the socket, so that every byte is out before the close. */
    size_t len = strlen(run->c->reply);
    assert_int_equal(send(bufferevent_getfd(bev), run->c->reply, len, 0), (ssize_t)len);
    bufferevent_free(bev);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
    struct run *run = arg;
    struct bufferevent *bev =
        bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(bev, on_server_read, NULL, NULL, run);
    bufferevent_enable(bev, EV_READ);
}

static void on_canned_response(const char *err, const struct sg_hresp *resp, void *arg)
{
    struct run *run = arg;
    run->called = true;
    if (run->c->err != NULL) {
        assert_non_null(err);
        assert_string_equal(err, run->c->err);
    } else {
        if (err != NULL)
            fail_msg("case %s: %s", run->c->reply, err);
        assert_int_equal(resp->status, run->c->status);
        size_t len = evbuffer_get_length(resp->body);
        assert_int_equal(len, strlen(run->c->body));
        assert_memory_equal(evbuffer_pullup(resp->body, -1), run->c->body, len);
        assert_int_equal(resp->set_cookie_count, run->c->cookies);
    }
    event_base_loopexit(run->base, NULL);
}

static void test_responses(void **state)
{
    static const struct canned cases[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", NULL, 200, "hello", 0},
        {"HTTP/1.1 302 Found\r\nLocation: /x\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n"
         "Content-Length: 0\r\n\r\n",
         NULL, 302, "", 2},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n"
         "Trailer: t\r\n\r\n",
         NULL, 200, "abcde", 0},
        {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nuntil close", NULL, 200,
         "until close", 0},
        {"HTTP/1.1 204 No Content\r\n\r\n", NULL, 204, "", 0},
        {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "closed", 0, NULL, 0},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "parse", 0, NULL, 0},
        {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "parse", 0, NULL, 0},
        {"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", "too_big", 0, NULL, 0},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF\r\n", "too_big", 0,
         NULL, 0},
        {"SSH-2.0-OpenSSH\r\n", "parse", 0, NULL, 0},
        {"HTTP/2 200\r\n\r\n", "parse", 0, NULL, 0},
        {"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "parse", 0, NULL, 0},
        {"", "closed", 0, NULL, 0},
    };
    struct event_base *base = event_base_new();
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct run run = {.base = base};
    struct evconnlistener *l =
        evconnlistener_new_bind(base, on_accept, &run, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                16, (struct sockaddr *)&sin, sizeof(sin));
    assert_non_null(l);
    struct sockaddr_in bound;
    socklen_t bound_len = sizeof(bound);
    getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&bound, &bound_len);
    char url_text[64];
    snprintf(url_text, sizeof(url_text), "http://127.0.0.1:%u/t", ntohs(bound.sin_port));
    struct sg_hurl url;
    assert_int_equal(sg_hurl_parse(url_text, &url), 0);
    struct sg_hclient *client;
    char errbuf[128];
    assert_int_equal(sg_hclient_new(base, NULL, 5000, &client, errbuf, sizeof(errbuf)), 0);
    for (size_t i = 0; i < SG_ARRAY_LEN(cases); i++) {
        run.c = &cases[i];
        run.called = false;
        struct sg_hconn *conn = sg_hconn_new(client, &url);
        assert_int_equal(sg_hconn_request(conn, "GET", &url, "a=1", NULL, on_canned_response, &run),
                         0);
        event_base_dispatch(base);
        assert_true(run.called);
        sg_hconn_free(conn);
    }
    assert_int_equal(sg_hclient_open_count(client), 0);
    sg_hurl_clear(&url);
    sg_hclient_free(client);
    evconnlistener_free(l);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_totp_rfc6238),
        cmocka_unit_test(test_totp_base32_refuses),
        cmocka_unit_test(test_hist),
        cmocka_unit_test(test_jar),
        cmocka_unit_test(test_form_login_page),
        cmocka_unit_test(test_form_hostile),
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_responses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
