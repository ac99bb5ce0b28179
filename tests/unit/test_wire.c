/*
 * Unit tests of the wire check (gateway/wire.c): verdicts per request, chunk
 * extensions blanked in place whatever the read boundaries and however much
 * of the buffer evhttp has drained, protocol switches, the unbounded
 * chunk size line, and the heads llhttp's strict mode refuses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../gateway/common.c"
#include "../../gateway/wire.c"

struct fed {
    struct sg_wire wire;
    struct evbuffer *buf;
    bool close_now;
};

/* Appends bytes in pieces of `step` (0: all at once), scanning after each. */
static void feed(struct fed *f, const char *data, size_t len, size_t step)
{
    size_t off = 0;
    while (off < len) {
        size_t n = step == 0 || len - off < step ? len - off : step;
        evbuffer_add(f->buf, data + off, n);
        if (sg_wire_scan(&f->wire, f->buf, n))
            f->close_now = true;
        off += n;
    }
}

static void fed_init(struct fed *f)
{
    sg_wire_init(&f->wire);
    f->buf = evbuffer_new();
    f->close_now = false;
}

static char *contents(struct fed *f)
{
    size_t len = evbuffer_get_length(f->buf);
    char *s = malloc(len + 1);
    evbuffer_copyout(f->buf, s, len);
    s[len] = '\0';
    return s;
}

#define GET(path) "GET " path " HTTP/1.1\r\nHost: h\r\n\r\n"

static void test_clean_requests(void **state)
{
    (void)state;
    struct fed f;
    fed_init(&f);
    /* A NUL in a body is data. */
    static const char in[] =
        GET("/a") GET("/b") "POST /c HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nx\0y";
    feed(&f, in, sizeof(in) - 1, 0);
    assert_null(sg_wire_verdict(&f.wire, 1));
    assert_null(sg_wire_verdict(&f.wire, 3));
    assert_int_equal(f.wire.messages, 3);
    assert_false(f.close_now);
    evbuffer_free(f.buf);
}

static void test_nul_in_a_value(void **state)
{
    (void)state;
    for (size_t step = 0; step < 4; step++) {
        struct fed f;
        fed_init(&f);
        static const char in[] =
            GET("/a") "GET /b HTTP/1.1\r\nHost: h\r\nX-A: a\0X-SSO-User: x\r\n\r\n";
        feed(&f, in, sizeof(in) - 1, step);
        assert_null(sg_wire_verdict(&f.wire, 1));
        assert_non_null(sg_wire_verdict(&f.wire, 2));
        assert_non_null(sg_wire_verdict(&f.wire, 3));
        assert_false(f.close_now);
        evbuffer_free(f.buf);
    }
}

static void test_garbage_after_close(void **state)
{
    (void)state;
    struct fed f;
    fed_init(&f);
    const char *in = "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGARBAGE";
    feed(&f, in, strlen(in), 0);
    assert_null(sg_wire_verdict(&f.wire, 1));
    assert_non_null(sg_wire_verdict(&f.wire, 2));
    evbuffer_free(f.buf);
}

/* What evhttp would take and llhttp's strict mode refuses (RFC 9112 2.2, 5.1). */
static void test_strict_heads(void **state)
{
    (void)state;
    const char *bad[] = {
        "GET / HTTP/1.1\r\nHost : h\r\n\r\n",
        "GET / HTTP/1.1\r\nHost\t: h\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        for (size_t step = 0; step < 3; step++) {
            struct fed f;
            fed_init(&f);
            feed(&f, GET("/first"), strlen(GET("/first")), step);
            feed(&f, bad[i], strlen(bad[i]), step);
            assert_null(sg_wire_verdict(&f.wire, 1));
            assert_non_null(sg_wire_verdict(&f.wire, 2));
            evbuffer_free(f.buf);
        }
    }
}

#define CHUNKED_HEAD "POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"

static void test_extensions_blanked(void **state)
{
    (void)state;
    const char *in =
        CHUNKED_HEAD "3;a=1;b=\"x; y\"\r\nabc\r\n2 ;c\r\nde\r\n0;last\r\nT: 1\r\n\r\n" GET("/n");
    const char *want =
        CHUNKED_HEAD "3             \r\nabc\r\n2   \r\nde\r\n0     \r\nT: 1\r\n\r\n" GET("/n");
    for (size_t step = 0; step < 9; step++) {
        struct fed f;
        fed_init(&f);
        feed(&f, in, strlen(in), step);
        char *got = contents(&f);
        assert_string_equal(got, want);
        assert_null(sg_wire_verdict(&f.wire, 2));
        assert_int_equal(f.wire.messages, 2);
        free(got);
        evbuffer_free(f.buf);
    }
}

/* evhttp drains the head and each complete line between reads: positions
 * still land on the right bytes. */
static void test_extensions_after_drains(void **state)
{
    (void)state;
    struct fed f;
    fed_init(&f);
    feed(&f, CHUNKED_HEAD, strlen(CHUNKED_HEAD), 0);
    evbuffer_drain(f.buf, evbuffer_get_length(f.buf));
    feed(&f, "4;e", 3, 0);
    feed(&f, "xt\r\nab", 6, 0);
    char line[16];
    size_t len = evbuffer_get_length(f.buf);
    assert_int_equal(len, 9);
    evbuffer_remove(f.buf, line, 7);
    assert_memory_equal(line, "4    \r\n", 7);
    feed(&f, "cd\r\n1;z\r\ne\r\n0\r\n\r\n", 17, 0);
    char *got = contents(&f);
    assert_string_equal(got, "abcd\r\n1  \r\ne\r\n0\r\n\r\n");
    assert_null(sg_wire_verdict(&f.wire, 1));
    free(got);
    evbuffer_free(f.buf);
}

static void test_bad_chunk_lines(void **state)
{
    (void)state;
    const char *bad[] = {
        CHUNKED_HEAD "3;e\rx\r\nabc\r\n0\r\n\r\n",
        CHUNKED_HEAD "3;e\x01x\r\nabc\r\n0\r\n\r\n",
        CHUNKED_HEAD "3;e\x7f\r\nabc\r\n0\r\n\r\n",
        CHUNKED_HEAD "3;e\rZabc\r\n0\r\n\r\n",
        CHUNKED_HEAD "3\nabc\r\n0\r\n\r\n",
        /* Above what evhttp's signed 64-bit size can hold. */
        CHUNKED_HEAD "8000000000000000\r\nabc\r\n0\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct fed f;
        fed_init(&f);
        feed(&f, bad[i], strlen(bad[i]), 0);
        assert_non_null(sg_wire_verdict(&f.wire, 1));
        evbuffer_free(f.buf);
    }
}

static void test_long_chunk_lines(void **state)
{
    (void)state;
    char in[8192 + 200];
    char ext[4000];
    memset(ext, 'e', sizeof(ext));
    /* 4000 bytes of extension: accepted and blanked. */
    int n =
        snprintf(in, sizeof(in), CHUNKED_HEAD "1;%.*s\r\nz\r\n0\r\n\r\n", (int)sizeof(ext), ext);
    struct fed f;
    fed_init(&f);
    feed(&f, in, (size_t)n, 1000);
    assert_null(sg_wire_verdict(&f.wire, 1));
    assert_false(f.close_now);
    evbuffer_free(f.buf);

    /* A line that does not end: refused, and the connection must close at once. */
    fed_init(&f);
    feed(&f, CHUNKED_HEAD "1;", strlen(CHUNKED_HEAD) + 2, 0);
    char es[1024];
    memset(es, 'e', sizeof(es));
    for (int i = 0; i < 3; i++)
        feed(&f, es, sizeof(es), 0);
    assert_false(f.close_now);
    feed(&f, es, sizeof(es), 0);
    feed(&f, es, sizeof(es), 0);
    assert_true(f.close_now);
    assert_non_null(sg_wire_verdict(&f.wire, 1));
    evbuffer_free(f.buf);
}

static void test_upgrade_stops(void **state)
{
    (void)state;
    struct fed f;
    fed_init(&f);
    const char *in = GET("/a") "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: "
                               "websocket\r\n\r\n\x81\x00\x00garbage";
    feed(&f, in, strlen(in), 0);
    assert_false(sg_wire_stopped(&f.wire, 1));
    assert_true(sg_wire_stopped(&f.wire, 2));
    assert_null(sg_wire_verdict(&f.wire, 2));
    assert_null(sg_wire_verdict(&f.wire, 3));
    evbuffer_free(f.buf);

    /* Upgrade without the Connection option is no protocol switch. */
    fed_init(&f);
    const char *plain = "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n" GET("/b");
    feed(&f, plain, strlen(plain), 0);
    assert_false(sg_wire_stopped(&f.wire, 1));
    assert_int_equal(f.wire.messages, 2);
    evbuffer_free(f.buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_requests),
        cmocka_unit_test(test_nul_in_a_value),
        cmocka_unit_test(test_garbage_after_close),
        cmocka_unit_test(test_extensions_blanked),
        cmocka_unit_test(test_extensions_after_drains),
        cmocka_unit_test(test_bad_chunk_lines),
        cmocka_unit_test(test_long_chunk_lines),
        cmocka_unit_test(test_upgrade_stops),
        cmocka_unit_test(test_strict_heads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
