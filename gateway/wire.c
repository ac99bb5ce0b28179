#include "ssogate/wire.h"

#include "ssogate/common.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Where in a chunked body the stream is. */
enum wire_body {
    BODY_NONE,      /* headers, or a body framed by Content-Length (or none) */
    BODY_SIZE_LINE, /* a chunk size line */
    BODY_DATA,      /* chunk data and its CRLF */
    BODY_TRAILER,   /* after the last chunk */
};

/* Why llhttp_execute was paused: the position where it stopped is wanted. */
enum wire_pause {
    PAUSE_NONE,
    PAUSE_SIZE_LINE, /* a chunk size line follows: the head or a chunk's data ended with its LF */
    PAUSE_CHUNK_HEADER, /* the size line size_line gave was read */
};

static int on_message_begin(llhttp_t *p)
{
    struct sg_wire *w = p->data;
    w->messages++;
    w->in_message = true;
    return 0;
}

static void wire_fail(struct sg_wire *w, const char *reason);

/* The methods evhttp hands to the gateway (server.c allows exactly these). Any other one evhttp
 * answers itself (501) and keeps the connection, without reading a body it declares. */
static bool served(uint8_t method)
{
    switch (method) {
    case HTTP_GET:
    case HTTP_HEAD:
    case HTTP_POST:
    case HTTP_PUT:
    case HTTP_DELETE:
    case HTTP_OPTIONS:
    case HTTP_PATCH:
        return true;
    default:
        return false;
    }
}

/* The methods whose body means something to the upstream (RFC 9110 9.3). evhttp reads no body of a
 * HEAD, so its bytes would be read as the next request (a front proxy that frames it by its
 * Content-Length, as RFC 9112 6.3 says, would send another user's request there); an upstream that
 * ignores a GET's body reads it as a request of its own (request smuggling, "CL.0"). */
static bool takes_body(uint8_t method)
{
    return method == HTTP_POST || method == HTTP_PUT || method == HTTP_PATCH ||
           method == HTTP_DELETE;
}

static int on_headers_complete(llhttp_t *p)
{
    struct sg_wire *w = p->data;
    uint8_t method = llhttp_get_method(p);
    bool body = (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
    if (p->http_major != 1 || p->http_minor > 1) {
        /* llhttp reads "HTTP/2.0" as a version; evhttp refuses it, here it is counted. */
        wire_fail(w, "an HTTP version other than 1.0 and 1.1");
        return -1;
    }
    if (!served(method) || (body && !takes_body(method))) {
        wire_fail(w, served(method) ? "a body on a method that takes none"
                                    : "a method the gateway does not serve");
        return -1;
    }
    if (!(p->flags & F_CHUNKED))
        return 0;
    w->body = BODY_SIZE_LINE;
    w->pause = PAUSE_SIZE_LINE;
    return HPE_PAUSED;
}

static int on_chunk_header(llhttp_t *p)
{
    struct sg_wire *w = p->data;
    w->body = p->content_length == 0 ? BODY_TRAILER : BODY_DATA;
    w->pause = PAUSE_CHUNK_HEADER;
    return HPE_PAUSED;
}

static int on_chunk_complete(llhttp_t *p)
{
    struct sg_wire *w = p->data;
    if (w->body != BODY_DATA) {
        w->body = BODY_NONE; /* the end of the trailer section */
        return 0;
    }
    w->body = BODY_SIZE_LINE;
    w->pause = PAUSE_SIZE_LINE;
    return HPE_PAUSED;
}

static int on_message_complete(llhttp_t *p)
{
    struct sg_wire *w = p->data;
    w->in_message = false;
    w->body = BODY_NONE;
    /* llhttp stops right after a request that switches protocols (HPE_PAUSED_UPGRADE). */
    if (p->upgrade)
        w->stop_message = w->messages;
    return 0;
}

/* Not const: llhttp_init takes a pointer it only reads through. */
static llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_headers_complete = on_headers_complete,
    .on_chunk_header = on_chunk_header,
    .on_chunk_complete = on_chunk_complete,
    .on_message_complete = on_message_complete,
};

void sg_wire_init(struct sg_wire *w)
{
    memset(w, 0, sizeof(*w));
    /* llhttp has no header limit of its own: evhttp enforces the configured one. */
    llhttp_init(&w->parser, HTTP_REQUEST, &settings);
    w->parser.data = w;
}

/* Ends the scan: the request being received (or the next one) is bad. The first reason stays. */
static void wire_fail(struct sg_wire *w, const char *reason)
{
    if (w->bad_message != 0)
        return;
    w->bad_message = w->in_message ? w->messages : w->messages + 1;
    w->reason = reason;
}

/*
 * A chunk size line [start, lf] was received whole (lf is the position of its
 * LF, both counted from the start of the stream; buf_base is the stream
 * position of buf's first byte). An extension after the size is overwritten
 * with spaces; a line evhttp would read differently is refused. Returns the
 * size, or false once the stream is failed.
 */
static bool chunk_line(struct sg_wire *w, struct evbuffer *buf, uint64_t buf_base, uint64_t lf,
                       uint64_t *size_out)
{
    uint64_t start = w->line_start;
    if (start < buf_base || lf <= start || lf - start > SG_WIRE_CHUNK_LINE_MAX) {
        wire_fail(w, "chunk size line too long");
        return false;
    }
    size_t len = (size_t)(lf - start) + 1;
    char line[SG_WIRE_CHUNK_LINE_MAX + 1];
    struct evbuffer_ptr pos;
    if (evbuffer_ptr_set(buf, &pos, (size_t)(start - buf_base), EVBUFFER_PTR_SET) != 0 ||
        evbuffer_copyout_from(buf, &pos, line, len) != (ev_ssize_t)len) {
        wire_fail(w, "chunk size line not in the buffer");
        return false;
    }
    size_t digits = 0;
    uint64_t size = 0;
    for (int v; digits < len && (v = sg_hex_value((unsigned char)line[digits])) >= 0; digits++)
        size = size * 16 + (uint64_t)v;
    /* evhttp must read a size that fits its signed 64 bits, end the line at a
     * CRLF, and see the extension start with ';' or a space. Anything else is
     * refused rather than made acceptable. */
    size_t ext_end = len - 2;
    if (digits == 0 || digits > 16 || size > INT64_MAX || len < digits + 2 ||
        line[len - 2] != '\r' || line[len - 1] != '\n' ||
        (digits < ext_end && line[digits] != ';' && line[digits] != ' ')) {
        wire_fail(w, "malformed chunk size line");
        return false;
    }
    *size_out = size;
    if (digits == ext_end)
        return true;
    for (size_t i = digits; i < ext_end; i++) {
        unsigned char c = (unsigned char)line[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            wire_fail(w, "control byte in a chunk extension");
            return false;
        }
    }
    /* Blank [digits, ext_end) in place: evhttp stops the size at a space. */
    size_t todo = ext_end - digits;
    evbuffer_ptr_set(buf, &pos, (size_t)(start - buf_base) + digits, EVBUFFER_PTR_SET);
    while (todo > 0) {
        struct evbuffer_iovec vec;
        if (evbuffer_peek(buf, (ev_ssize_t)todo, &pos, &vec, 1) < 1) {
            wire_fail(w, "chunk size line not in the buffer");
            return false;
        }
        size_t n = vec.iov_len < todo ? vec.iov_len : todo;
        memset(vec.iov_base, ' ', n);
        todo -= n;
        evbuffer_ptr_set(buf, &pos, n, EVBUFFER_PTR_ADD);
    }
    return true;
}

/*
 * Reads a chunk size line from the piece at `at` (data, len): returns how much
 * of it belongs to the line. Once the line is whole, llhttp is given the bare
 * "<size>\r\n" in its place: llhttp 8.1 (Debian 12) refuses extension shapes
 * RFC 9112 7.1.1 allows (white space before ';', a second extension), and
 * chunk_line checks the line itself for what evhttp needs.
 */
static size_t size_line(struct sg_wire *w, struct evbuffer *buf, uint64_t buf_base,
                        const char *data, size_t len, uint64_t at)
{
    const char *lf = memchr(data, '\n', len);
    if (lf == NULL)
        return len;
    size_t n = (size_t)(lf - data) + 1;
    uint64_t size = 0;
    if (!chunk_line(w, buf, buf_base, at + n - 1, &size))
        return n;
    char bare[24];
    int bare_len = snprintf(bare, sizeof(bare), "%" PRIx64 "\r\n", size);
    llhttp_errno_t err = llhttp_execute(&w->parser, bare, (size_t)bare_len);
    if (err != HPE_PAUSED || w->pause != PAUSE_CHUNK_HEADER ||
        llhttp_get_error_pos(&w->parser) != bare + bare_len) {
        wire_fail(w, "malformed chunk size line");
        return n;
    }
    llhttp_resume(&w->parser);
    w->pause = PAUSE_NONE;
    return n;
}

/* Feeds one contiguous piece of the stream; `at` is its first byte's stream position. */
static void scan_piece(struct sg_wire *w, struct evbuffer *buf, uint64_t buf_base, const char *data,
                       size_t len, uint64_t at)
{
    while (len > 0 && w->bad_message == 0 && w->stop_message == 0) {
        size_t n;
        if (w->body == BODY_SIZE_LINE) {
            n = size_line(w, buf, buf_base, data, len, at);
        } else {
            llhttp_errno_t err = llhttp_execute(&w->parser, data, len);
            n = err == HPE_OK ? len : (size_t)(llhttp_get_error_pos(&w->parser) - data);
            if (err == HPE_PAUSED && w->pause == PAUSE_SIZE_LINE) {
                llhttp_resume(&w->parser);
                w->pause = PAUSE_NONE;
                w->line_start = at + n;
            } else if (err != HPE_OK && err != HPE_PAUSED_UPGRADE) {
                wire_fail(w, llhttp_get_error_reason(&w->parser));
                return;
            }
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
