/*
 * Fuzzes the reading of upstream responses (gateway/uplink.c): parse_head,
 * which writes NULs into the head in place and hands out pointers into it,
 * and parse_body, in the order conn_dispatch calls them. The first input
 * byte picks the read size (1 to 64 bytes, or all at once) and whether the
 * request was a HEAD; the rest is the upstream's byte stream, which ends
 * with the connection.
 *
 * Properties: no crash; a head handed over has a status from 100 to 599,
 * header names that are tokens and values and a reason without CR, LF or
 * NUL; a body is never longer than the stream; and reading the stream in
 * pieces gives the same outcome, head and body as reading it at once. It
 * found http_parser (the parser before llhttp) taking two-digit status codes.
 */
#include "../../gateway/common.c"
#include "../../gateway/cookie.c"
#include "../../gateway/headers.c"
#include "../../gateway/uplink.c"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* uplink.c connects through upstream.c; the parsers fuzzed here never connect. */
struct sg_upstream *sg_upstream_ref(struct sg_upstream *up)
{
    return up;
}

void sg_upstream_unref(struct sg_upstream *up)
{
}

struct bufferevent *sg_upstream_connect(struct sg_upstream *up, sg_upstream_event_fn eventcb,
                                        void *arg)
{
    return NULL;
}

/* Nor retry on a new connection, which counts and logs. */
void sg_metrics_count(const char *family, const char *label, const char *value)
{
}

void sg_log(enum sg_log_level level, const char *event, const char *fmt, ...)
{
}

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_uplink: %s:%d: %s\n", __FILE__, __LINE__, #cond);                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

enum outcome { OUT_MORE, OUT_DONE, OUT_BAD };

struct run {
    enum outcome outcome;
    int status;
    struct evbuffer *head; /* "name\0value\0..." of the head handed over, reason first */
    struct evbuffer *body;
};

static bool text_clean(const char *s)
{
    return strpbrk(s, "\r\n") == NULL;
}

/* What on_head would get: checked, and kept flat for the comparison. */
static void take_head(struct run *r, const struct sg_uplink_conn *c)
{
    r->status = (int)c->parser.status_code;
    CHECK(r->status >= 100 && r->status <= 599);
    CHECK(text_clean(c->reason));
    evbuffer_add(r->head, c->reason, strlen(c->reason) + 1);
    for (size_t i = 0; i < c->count; i++) {
        CHECK(sg_headers_is_token(c->headers[i].name));
        CHECK(text_clean(c->headers[i].value));
        evbuffer_add(r->head, c->headers[i].name, strlen(c->headers[i].name) + 1);
        evbuffer_add(r->head, c->headers[i].value, strlen(c->headers[i].value) + 1);
    }
}

/* One step of conn_dispatch's reading, without its callbacks. */
static enum outcome step(struct run *r, struct sg_uplink_conn *c, struct evbuffer *in)
{
    if (!c->head_done) {
        size_t parsed = 0;
        enum step s = parse_head(c, in, &parsed);
        if (s == STEP_MORE && !c->eof)
            return OUT_MORE;
        if (s != STEP_HEAD)
            return OUT_BAD;
        c->head_done = true;
        take_head(r, c);
        evbuffer_drain(in, parsed);
    }
    enum step s = parse_body(c, in);
    return s == STEP_BAD ? OUT_BAD : s == STEP_DONE ? OUT_DONE : OUT_MORE;
}

static void run(struct run *r, const uint8_t *in, size_t len, size_t piece, bool head_request)
{
    struct sg_uplink_conn c = {.head_request = head_request, .cap = 16};
    c.spans = sg_calloc(c.cap, sizeof(*c.spans));
    c.headers = sg_calloc(c.cap, sizeof(*c.headers));
    c.body = evbuffer_new();
    struct evbuffer *buf = evbuffer_new();
    r->head = evbuffer_new();
    r->body = evbuffer_new();
    r->outcome = OUT_MORE;
    for (size_t off = 0; off < len && r->outcome == OUT_MORE;) {
        size_t n = piece == 0 || len - off < piece ? len - off : piece;
        evbuffer_add(buf, in + off, n);
        off += n;
        r->outcome = step(r, &c, buf);
        evbuffer_add_buffer(r->body, c.body);
    }
    if (r->outcome == OUT_MORE) {
        c.eof = true; /* the upstream closed */
        r->outcome = step(r, &c, buf);
        evbuffer_add_buffer(r->body, c.body);
    }
    CHECK(r->outcome != OUT_MORE);
    CHECK(evbuffer_get_length(r->body) <= len);
    evbuffer_free(buf);
    evbuffer_free(c.body);
    free(c.spans);
    free(c.headers);
}

static bool same_bytes(struct evbuffer *a, struct evbuffer *b)
{
    size_t len = evbuffer_get_length(a);
    return len == evbuffer_get_length(b) &&
           (len == 0 || memcmp(evbuffer_pullup(a, -1), evbuffer_pullup(b, -1), len) == 0);
}

static void run_free(struct run *r)
{
    evbuffer_free(r->head);
    evbuffer_free(r->body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t piece = (data[0] & 0x3f) == 0 ? 0 : (size_t)(data[0] & 0x3f);
    bool head_request = (data[0] & 0x40) != 0;
    struct run whole, pieces;
    run(&whole, data + 1, size - 1, 0, head_request);
    run(&pieces, data + 1, size - 1, piece, head_request);
    CHECK(whole.outcome == pieces.outcome);
    if (whole.outcome == OUT_DONE) {
        CHECK(whole.status == pieces.status);
        CHECK(same_bytes(whole.head, pieces.head));
        CHECK(same_bytes(whole.body, pieces.body));
    }
    run_free(&whole);
    run_free(&pieces);
    return 0;
}
