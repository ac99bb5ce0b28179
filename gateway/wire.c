#include "ssogate/wire.h"

#include "ssogate/common.h"

#include <event2/buffer.h>
#include <string.h>

/* Where in a chunked body the stream is. */
enum wire_body {
    BODY_NONE,      /* headers, or a body framed by Content-Length (or none) */
    BODY_SIZE_LINE, /* a chunk size line */
    BODY_DATA,      /* chunk data and its CRLF */
    BODY_TRAILER,   /* after the last chunk */
};

/* Why http_parser_execute was paused: the position it returns is wanted. */
enum wire_pause {
    PAUSE_NONE,
    PAUSE_HEADERS_END,  /* at the LF ending a chunked request's header section, not consumed */
    PAUSE_CHUNK_HEADER, /* the LF ending a chunk size line was consumed */
    PAUSE_CHUNK_DONE,   /* the LF ending a chunk's data was consumed */
};

static int on_message_begin(http_parser *p)
{
    struct sg_wire *w = p->data;
    w->messages++;
    w->in_message = true;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct sg_wire *w = p->data;
    if (p->flags & F_CHUNKED) {
        w->body = BODY_SIZE_LINE;
        w->pause = PAUSE_HEADERS_END;
        http_parser_pause(p, 1);
    }
    return 0;
}

static int on_chunk_header(http_parser *p)
{
    struct sg_wire *w = p->data;
    w->body = p->content_length == 0 ? BODY_TRAILER : BODY_DATA;
    w->pause = PAUSE_CHUNK_HEADER;
    http_parser_pause(p, 1);
    return 0;
}

static int on_chunk_complete(http_parser *p)
{
    struct sg_wire *w = p->data;
    if (w->body != BODY_DATA) {
        w->body = BODY_NONE; /* the end of the trailer section */
        return 0;
    }
    w->body = BODY_SIZE_LINE;
    w->pause = PAUSE_CHUNK_DONE;
    http_parser_pause(p, 1);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct sg_wire *w = p->data;
    w->in_message = false;
    w->body = BODY_NONE;
    /* http_parser returns right after a request that switches protocols. */
    if (p->upgrade)
        w->stop_message = w->messages;
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_headers_complete = on_headers_complete,
    .on_chunk_header = on_chunk_header,
    .on_chunk_complete = on_chunk_complete,
    .on_message_complete = on_message_complete,
};

void sg_wire_init(struct sg_wire *w)
{
    /* evhttp enforces the configured header limit; this one only has to be above it. */
    http_parser_set_max_header_size(SG_WIRE_HEADER_MAX);
    memset(w, 0, sizeof(*w));
    http_parser_init(&w->parser, HTTP_REQUEST);
    w->parser.data = w;
}

/* Ends the scan: the request being received (or the next one) is bad. */
static void wire_fail(struct sg_wire *w, const char *reason)
{
    w->bad_message = w->in_message ? w->messages : w->messages + 1;
    w->reason = reason;
}

/*
 * A chunk size line [start, lf] was received whole (lf is the position of its
 * LF, both counted from the start of the stream; buf_base is the stream
 * position of buf's first byte). An extension after the size is overwritten
 * with spaces; a line evhttp would read differently is refused.
 */
static void chunk_line(struct sg_wire *w, struct evbuffer *buf, uint64_t buf_base, uint64_t lf)
{
    uint64_t start = w->line_start;
    if (start < buf_base || lf <= start || lf - start > SG_WIRE_CHUNK_LINE_MAX) {
        wire_fail(w, "chunk size line too long");
        return;
    }
    size_t len = (size_t)(lf - start) + 1;
    char line[SG_WIRE_CHUNK_LINE_MAX + 1];
    struct evbuffer_ptr pos;
    if (evbuffer_ptr_set(buf, &pos, (size_t)(start - buf_base), EVBUFFER_PTR_SET) != 0 ||
        evbuffer_copyout_from(buf, &pos, line, len) != (ev_ssize_t)len) {
        wire_fail(w, "chunk size line not in the buffer");
        return;
    }
    size_t digits = 0;
    uint64_t size = 0;
    for (int v; digits < len && (v = sg_hex_value((unsigned char)line[digits])) >= 0; digits++)
        size = size * 16 + (uint64_t)v;
    /* evhttp must read the size http_parser read (its Debian build takes some
     * bytes above 0x7f for digits), end the line at a CRLF where http_parser
     * takes any byte after a CR, and see the extension start with ';' or a
     * space. Anything else is refused rather than made acceptable. */
    size_t ext_end = len - 2;
    if (digits == 0 || digits > 16 || size != w->parser.content_length || len < digits + 2 ||
        line[len - 2] != '\r' || line[len - 1] != '\n' ||
        (digits < ext_end && line[digits] != ';' && line[digits] != ' ')) {
        wire_fail(w, "malformed chunk size line");
        return;
    }
    if (digits == ext_end)
        return;
    for (size_t i = digits; i < ext_end; i++) {
        unsigned char c = (unsigned char)line[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            wire_fail(w, "control byte in a chunk extension");
            return;
        }
    }
    /* Blank [digits, ext_end) in place: evhttp stops the size at a space. */
    size_t todo = ext_end - digits;
    evbuffer_ptr_set(buf, &pos, (size_t)(start - buf_base) + digits, EVBUFFER_PTR_SET);
    while (todo > 0) {
        struct evbuffer_iovec vec;
        if (evbuffer_peek(buf, (ev_ssize_t)todo, &pos, &vec, 1) < 1) {
            wire_fail(w, "chunk size line not in the buffer");
            return;
        }
        size_t n = vec.iov_len < todo ? vec.iov_len : todo;
        memset(vec.iov_base, ' ', n);
        todo -= n;
        evbuffer_ptr_set(buf, &pos, n, EVBUFFER_PTR_ADD);
    }
}

/* Feeds one contiguous piece of the stream; `at` is its first byte's stream position. */
static void scan_piece(struct sg_wire *w, struct evbuffer *buf, uint64_t buf_base, const char *data,
                       size_t len, uint64_t at)
{
    while (len > 0 && w->bad_message == 0 && w->stop_message == 0) {
        size_t n = http_parser_execute(&w->parser, &settings, data, len);
        enum http_errno err = HTTP_PARSER_ERRNO(&w->parser);
        if (err == HPE_PAUSED) {
            http_parser_pause(&w->parser, 0);
            enum wire_pause why = w->pause;
            w->pause = PAUSE_NONE;
            if (why == PAUSE_HEADERS_END)
                w->line_start = at + n + 1;
            else if (why == PAUSE_CHUNK_DONE)
                w->line_start = at + n;
            else if (why == PAUSE_CHUNK_HEADER)
                chunk_line(w, buf, buf_base, at + n - 1);
        } else if (err != HPE_OK) {
            wire_fail(w, http_errno_description(err));
            return;
        }
        data += n;
        len -= n;
        at += n;
    }
    if (w->body == BODY_SIZE_LINE && w->bad_message == 0 &&
        at - w->line_start > SG_WIRE_CHUNK_LINE_MAX) {
        wire_fail(w, "chunk size line too long");
        w->unbounded = true;
    }
}

bool sg_wire_scan(struct sg_wire *w, struct evbuffer *buf, size_t n_added)
{
    uint64_t at = w->received;
    w->received += n_added;
    if (w->bad_message != 0 || w->stop_message != 0)
        return false;
    size_t len = evbuffer_get_length(buf);
    if (n_added > len)
        return false; /* not what was appended last: nothing to scan */
    uint64_t buf_base = w->received - len;
    struct evbuffer_ptr pos;
    evbuffer_ptr_set(buf, &pos, len - n_added, EVBUFFER_PTR_SET);
    size_t todo = n_added;
    while (todo > 0 && w->bad_message == 0 && w->stop_message == 0) {
        struct evbuffer_iovec vec;
        if (evbuffer_peek(buf, (ev_ssize_t)todo, &pos, &vec, 1) < 1)
            break;
        size_t n = vec.iov_len < todo ? vec.iov_len : todo;
        scan_piece(w, buf, buf_base, vec.iov_base, n, at);
        at += n;
        todo -= n;
        evbuffer_ptr_set(buf, &pos, n, EVBUFFER_PTR_ADD);
    }
    return w->unbounded;
}

const char *sg_wire_verdict(const struct sg_wire *w, uint64_t message)
{
    if (w->bad_message == 0 || message < w->bad_message)
        return NULL;
    return w->reason;
}

bool sg_wire_stopped(const struct sg_wire *w, uint64_t message)
{
    return w->stop_message != 0 && message >= w->stop_message;
}
