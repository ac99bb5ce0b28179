/*
 * WebSocket tunnels.
 *
 * How a tunnel takes the client connection from libevent's HTTP server
 * ---------------------------------------------------------------------
 * libevent 2.1 has no call that hands an accepted connection over to its
 * user, and evhttp_connection_free() cannot serve to detach one: it calls
 * shutdown(fd, SHUT_WR) on the socket. So the connection is taken over in
 * place, and only once the upstream has answered 101:
 *
 *  1. Until then libevent keeps the connection. When evhttp handed the
 *     handshake to the router it stopped reading the socket and put the
 *     connection in its "writing" state; the request stays unanswered on it
 *     while the tunnel connects to the upstream and reads its answer. An
 *     answer other than 101, or a 502/504 page, goes back through evhttp as
 *     any reply does (with Connection: close), and libevent ends the
 *     connection as usual.
 *
 *  2. On 101 the tunnel takes the connection's bufferevent
 *     (evhttp_connection_get_bufferevent), replaces libevent's callbacks with
 *     its own (bufferevent_setcb), clears the timeouts evhttp set, writes the
 *     101 head itself and enables reading. evhttp never sees the bufferevent
 *     again: its evhttp_connection only holds it, with the request, until the
 *     tunnel ends. Bytes that arrived behind the handshake are still in the
 *     bufferevent's input and are forwarded first.
 *
 *  3. When the tunnel ends it frees the evhttp_connection
 *     (evhttp_connection_free): that calls the close callback of server.c,
 *     which keeps counting the connection in limits.connections until then,
 *     and frees the request and the bufferevent.
 *
 *  4. If the server frees the connection first (sg_server_free at the end of
 *     the drain), its close watcher (sg_request_wait, which the tunnel holds
 *     from the start) tells the tunnel, which then frees its upstream side
 *     only and leaves the client side to libevent.
 *
 * A tunnel's request (request.h) is in flight from the handshake to its end, so
 * SIGTERM waits for it up to drain_timeout_s. One timer shared by every
 * tunnel of the process runs each second while any exists: it closes tunnels
 * idle for upstream.websocket_idle_timeout_s and those whose SSO session is no
 * longer in the store, which the worker processes share (logout, B7, B8,
 * expiry), so a session ended by any worker is noticed by all.
 */
#include "ssogate/tunnel.h"

#include "ssogate/common.h"
#include "ssogate/conn.h"
#include "ssogate/cookies.h"
#include "ssogate/headers.h"
#include "ssogate/identity.h"
#include "ssogate/log.h"
#include "ssogate/metrics.h"
#include "ssogate/pgstore.h"
#include "ssogate/pages.h"
#include "ssogate/request.h"
#include "ssogate/session.h"
#include "ssogate/snapshot.h"
#include "ssogate/upstream.h"

#include <sys/queue.h>

#include <assert.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <llhttp.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TUNNEL_MAGIC      0x544e4e4cu
#define CHECK_INTERVAL_S  1
#define REASON_PHRASE_MAX 64

enum tunnel_state {
    TUNNEL_CONNECTING, /* the upstream connection is being made */
    TUNNEL_WAITING,    /* the handshake is out; the upstream's answer is being read */
    TUNNEL_REPLYING,   /* libevent sends our answer to the client; no upstream any more */
    TUNNEL_OPEN,       /* 101 relayed, the connections spliced */
    TUNNEL_FLUSHING,   /* one side ended: what is queued to the other is written, then the end */
};

struct tunnel {
    uint32_t magic;
    enum tunnel_state state;
    struct sg_request *r; /* NULL once finished */
    struct sg_tunnels *live;
    struct evhttp_connection *evcon;     /* the client's; freed by the tunnel once open */
    struct bufferevent *client;          /* evcon's bufferevent, ours from the 101 on */
    struct bufferevent *up;              /* owned; NULL once closed */
    struct bufferevent *flush_to;        /* FLUSHING: the side still being written */
    char session_id[SG_SESSION_ID_SIZE]; /* "" without a session */
    struct sg_pgstore_op *fetch;         /* the shared store is asked whether it still lives */
    int64_t shared_touched_us;           /* its last touch sent to the shared store */
    struct evbuffer *request_head;       /* until the upstream connection is up */

    /* The upstream's answer. */
    llhttp_t parser;
    size_t head_bytes;
    bool head_done;     /* the head of the final answer (or of the 101) is parsed */
    bool informational; /* the message being parsed is a 1xx other than 101 */
    bool message_done;
    bool in_value; /* the last header piece was (part of) a value */
    struct evbuffer *field;
    struct evbuffer *value;
    struct evkeyvalq headers;
    char reason[REASON_PHRASE_MAX + 1];
    size_t reason_len;
    struct evbuffer *body;
    int status;

    /* The open tunnel. */
    int64_t up_start_us;
    int64_t up_latency_us;
    int64_t opened_us;
    int64_t last_active_us;
    uint64_t to_upstream;
    uint64_t to_client;
    bool client_paused; /* the client is not read: the upstream's output is full */
    bool up_paused;     /* the upstream is not read: the client's output is full */
    const char *end_reason;
    struct tunnel *prev, *next;
};

/* Every tunnel of the process, and the one timer that checks them. */
struct sg_tunnels {
    struct event_base *base;
    struct tunnel *head;
    size_t count;
    struct sg_log_every refused_log; /* tunnels_full lines */
    struct event *check;
    bool checking; /* inside on_check: the timer is freed there */
};

static void on_check(evutil_socket_t fd, short what, void *arg);

struct sg_tunnels *sg_tunnels_new(struct event_base *base)
{
    struct sg_tunnels *live = sg_calloc(1, sizeof(*live));
    live->base = base;
    return live;
}

void sg_tunnels_free(struct sg_tunnels *live)
{
    if (live == NULL)
        return;
    assert(live->head == NULL); /* every tunnel's request finished first */
    if (live->check != NULL)
        event_free(live->check);
    free(live);
}

static void live_add(struct tunnel *t)
{
    struct sg_tunnels *live = t->live;
    t->next = live->head;
    if (live->head != NULL)
        live->head->prev = t;
    live->head = t;
    live->count++;
    if (live->check == NULL) {
        static const struct timeval interval = {CHECK_INTERVAL_S, 0};
        live->check = event_new(live->base, -1, EV_PERSIST, on_check, live);
        event_add(live->check, &interval);
    }
}

static void live_remove(struct tunnel *t)
{
    struct sg_tunnels *live = t->live;
    live->count--;
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        live->head = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    t->prev = t->next = NULL;
    if (live->head == NULL && live->check != NULL && !live->checking) {
        event_free(live->check);
        live->check = NULL;
    }
}

/* Frees what the tunnel owns. The client side must be settled by the caller. */
static void tunnel_free(struct tunnel *t)
{
    assert(t->magic == TUNNEL_MAGIC);
    live_remove(t);
    if (t->up != NULL)
        bufferevent_free(t->up);
    if (t->request_head != NULL)
        evbuffer_free(t->request_head);
    evbuffer_free(t->field);
    evbuffer_free(t->value);
    evbuffer_free(t->body);
    evhttp_clear_headers(&t->headers);
    sg_pgstore_cancel(t->fetch);
    OPENSSL_cleanse(t->session_id, sizeof(t->session_id));
    t->magic = 0;
    free(t);
}

static void close_upstream(struct tunnel *t)
{
    if (t->up != NULL) {
        bufferevent_free(t->up);
        t->up = NULL;
    }
}

/* Counts and logs the end of an open tunnel (t->end_reason). */
static void record_end(struct tunnel *t)
{
    sg_metrics_count("ssogate_tunnels_total", "result", t->end_reason);
    sg_log_fields(SG_LOG_INFO, "tunnel_close",
                  (struct sg_log_field[]){
                      SG_LOG_STR("request_id", t->r->id),
                      SG_LOG_STR("reason", t->end_reason),
                      SG_LOG_INT("bytes_to_upstream", (int64_t)t->to_upstream),
                      SG_LOG_INT("bytes_to_client", (int64_t)t->to_client),
                      SG_LOG_INT("duration_ms", (sg_mono_us() - t->opened_us) / 1000),
                  },
                  5);
}

/* The request is over: its access line, and it leaves the in-flight set. */
static void finish(struct tunnel *t, int status, uint64_t bytes)
{
    struct sg_request *r = t->r;
    t->r = NULL;
    r->upstream_us = t->up_latency_us;
    sg_request_finish(r, status, bytes);
}

/* ---- before the 101: the answer goes back through libevent ------------- */

/* Our answer to the handshake was written completely. */
static void on_reply_complete(struct evhttp_request *req, void *arg)
{
    struct tunnel *t = arg;
    finish(t, t->status, evbuffer_get_length(t->body));
    tunnel_free(t);
}

static void reply_prepare(struct tunnel *t, int status, const char *result)
{
    close_upstream(t);
    t->state = TUNNEL_REPLYING;
    t->status = status;
    sg_metrics_count("ssogate_tunnels_total", "result", result);
    sg_headers_close_connection(evhttp_request_get_output_headers(t->r->req));
    evhttp_request_set_on_complete_cb(t->r->req, on_reply_complete, t);
}

/* The upstream could not be reached or gave no usable answer: 502, or 504. */
static void reply_failure(struct tunnel *t, enum sg_metric_error kind, const char *what)
{
    sg_metrics_error(kind);
    sg_log_fields(SG_LOG_WARN, "upstream_error",
                  (struct sg_log_field[]){SG_LOG_STR("request_id", t->r->id),
                                          SG_LOG_STR("kind", sg_metrics_error_name(kind)),
                                          SG_LOG_STR("what", what)},
                  3);
    evbuffer_drain(t->body, evbuffer_get_length(t->body));
    bool timeout = kind == SG_MERR_UPSTREAM_TIMEOUT;
    reply_prepare(t, timeout ? 504 : 502, "upstream_failed");
    if (timeout)
        sg_page_send(t->r->req, 504, "The application did not answer in time",
                     "The application did not answer in time. Please try again in a moment.",
                     t->r->id);
    else
        sg_page_send(t->r->req, 502, "The application cannot be reached",
                     "The application cannot be reached right now. Please try again in a moment.",
                     t->r->id);
}

/* At limits.tunnels: 503, so that tunnels, which are never reclaimed, cannot hold every slot of
 * limits.connections. Logged as sg_log_every does, with the count since the last line. */
static void reply_full(struct tunnel *t)
{
    uint64_t refused;
    if (sg_log_every_due(&t->live->refused_log, &refused))
        sg_log_fields(
            SG_LOG_WARN, "tunnels_full",
            (struct sg_log_field[]){SG_LOG_STR("request_id", t->r->id),
                                    SG_LOG_INT("limit", (int64_t)t->r->snap->cfg->limits.tunnels),
                                    SG_LOG_INT("refused", (int64_t)refused)},
            3);
    reply_prepare(t, 503, "refused_limit");
    sg_page_send(t->r->req, 503, "Too many open connections",
                 "The application has too many live connections right now. Please try again in a "
                 "moment.",
                 t->r->id);
}

/* The upstream refused the handshake: its answer is relayed as an ordinary response. */
static void reply_refusal(struct tunnel *t)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(t->r->req);
    size_t count = 0;
    const struct evkeyval *h;
    TAILQ_FOREACH(h, &t->headers, next)
    {
        count++;
    }
    struct sg_header *array = sg_calloc(count ? count : 1, sizeof(*array));
    count = 0;
    TAILQ_FOREACH(h, &t->headers, next)
    {
        array[count].name = h->key;
        array[count++].value = h->value;
    }
    if (sg_headers_copy_response(array, count, out, sg_cookies_all(t->r->snap->cfg)) > 0)
        sg_request_upstream_cookies_dropped(t->r);
    free(array);
    evhttp_remove_header(out, "Content-Length"); /* libevent sets it from the body */
    evhttp_add_header(out, "X-Request-Id", t->r->id);
    const char *reason = t->reason_len > 0 ? t->reason : sg_page_reason(t->status);
    int status = t->status;
    reply_prepare(t, status, "refused");
    sg_reply(t->r->req, status, reason, t->body);
}

/*
 * The server's close watcher: the client connection is going away under the
 * tunnel. Before the 101 the client left (or the server is being freed) and
 * libevent frees the request; after it, the server is being freed and frees
 * the connection itself.
 */
static void on_client_gone(struct sg_request *r, void *arg)
{
    struct tunnel *t = arg;
    assert(t->magic == TUNNEL_MAGIC);
    r->upstream_us = t->up_latency_us;
    if (t->state == TUNNEL_OPEN || t->state == TUNNEL_FLUSHING) {
        bufferevent_setcb(t->client, NULL, NULL, NULL, NULL);
        t->end_reason = "shutdown";
        record_end(t);
        t->r = NULL;
        r->gone_status = 101;
        r->gone_bytes = t->to_client;
        tunnel_free(t);
        return;
    }
    t->r = NULL;
    if (t->state != TUNNEL_REPLYING)
        sg_metrics_count("ssogate_tunnels_total", "result", "aborted");
    tunnel_free(t);
}

/* ---- the upstream's answer ---------------------------------------------- */

static int header_flush(struct tunnel *t)
{
    t->in_value = false;
    evbuffer_add(t->field, "", 1);
    evbuffer_add(t->value, "", 1);
    const char *name = (const char *)evbuffer_pullup(t->field, -1);
    const char *value = (const char *)evbuffer_pullup(t->value, -1);
    int rc = evhttp_add_header(&t->headers, name, value);
    evbuffer_drain(t->field, evbuffer_get_length(t->field));
    evbuffer_drain(t->value, evbuffer_get_length(t->value));
    return rc == 0 ? 0 : -1;
}

static int on_message_begin(llhttp_t *parser)
{
    struct tunnel *t = parser->data;
    evhttp_clear_headers(&t->headers);
    evbuffer_drain(t->field, evbuffer_get_length(t->field));
    evbuffer_drain(t->value, evbuffer_get_length(t->value));
    t->in_value = false;
    t->informational = false;
    t->reason_len = 0;
    t->reason[0] = '\0';
    return 0;
}

static int on_status(llhttp_t *parser, const char *at, size_t len)
{
    struct tunnel *t = parser->data;
    if (t->reason_len + len > REASON_PHRASE_MAX) {
        t->reason_len = 0; /* too long to repeat: the standard phrase is used */
        t->reason[0] = '\0';
        return 0;
    }
    memcpy(t->reason + t->reason_len, at, len);
    t->reason_len += len;
    t->reason[t->reason_len] = '\0';
    return 0;
}

static int on_header_field(llhttp_t *parser, const char *at, size_t len)
{
    struct tunnel *t = parser->data;
    if (t->in_value && header_flush(t) != 0)
        return HPE_USER;
    evbuffer_add(t->field, at, len);
    return 0;
}

static int on_header_value(llhttp_t *parser, const char *at, size_t len)
{
    struct tunnel *t = parser->data;
    t->in_value = true;
    evbuffer_add(t->value, at, len);
    return 0;
}

static int on_headers_complete(llhttp_t *parser)
{
    struct tunnel *t = parser->data;
    if (t->in_value && header_flush(t) != 0)
        return HPE_USER;
    t->status = parser->status_code;
    if (t->status / 100 == 1 && t->status != 101) {
        t->informational = true; /* 100, 103: the real answer follows */
        return 0;
    }
    t->head_done = true;
    t->up_latency_us = sg_mono_us() - t->up_start_us;
    sg_metrics_upstream_latency(t->up_latency_us);
    /* 2: no body, and the rest of the stream is another protocol. */
    return t->status == 101 ? 2 : 0;
}

static int on_body(llhttp_t *parser, const char *at, size_t len)
{
    struct tunnel *t = parser->data;
    if (evbuffer_get_length(t->body) + len > SG_TUNNEL_BODY_MAX)
        return HPE_USER;
    evbuffer_add(t->body, at, len);
    return 0;
}

static int on_message_complete(llhttp_t *parser)
{
    struct tunnel *t = parser->data;
    if (t->informational)
        return 0;
    t->message_done = true;
    /* Whatever follows the answer is not read. After a 101 llhttp stops by itself
     * (HPE_PAUSED_UPGRADE), before the other protocol's bytes. */
    return t->status != 101 ? HPE_PAUSED : 0;
}

/* Not const: llhttp_init takes a pointer it only reads through. */
static llhttp_settings_t parser_settings = {
    .on_message_begin = on_message_begin,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

enum parse_result { PARSE_MORE, PARSE_DONE, PARSE_BAD };

/*
 * Feeds the upstream's input to the parser, draining what it consumed. After
 * a 101 the bytes that follow its head stay in the input.
 */
static enum parse_result parse_answer(struct tunnel *t, struct evbuffer *in)
{
    while (!t->message_done && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec vec;
        if (evbuffer_peek(in, -1, NULL, &vec, 1) < 1)
            break;
        size_t len = vec.iov_len;
        if (!t->head_done) {
            if (t->head_bytes >= SG_TUNNEL_HEAD_MAX)
                return PARSE_BAD;
            if (len > SG_TUNNEL_HEAD_MAX - t->head_bytes)
                len = SG_TUNNEL_HEAD_MAX - t->head_bytes;
            t->head_bytes += len;
        }
        llhttp_errno_t err = llhttp_execute(&t->parser, vec.iov_base, len);
        if (err == HPE_OK) {
            evbuffer_drain(in, len);
            continue;
        }
        if (!t->message_done)
            return PARSE_BAD;
        evbuffer_drain(in, (size_t)(llhttp_get_error_pos(&t->parser) - (const char *)vec.iov_base));
        return PARSE_DONE;
    }
    return t->message_done ? PARSE_DONE : PARSE_MORE;
}

/* True when value is the token "websocket", with optional white space around it. */
static bool is_websocket_token(const char *value)
{
    while (*value == ' ' || *value == '\t')
        value++;
    if (strncasecmp(value, "websocket", 9) != 0)
        return false;
    value += 9;
    while (*value == ' ' || *value == '\t')
        value++;
    return *value == '\0';
}

/* True when headers hold exactly one Upgrade, "websocket", and a Connection with "upgrade". */
static bool upgrades_to_websocket(const struct evkeyvalq *headers)
{
    const struct evkeyval *h;
    size_t upgrades = 0;
    bool websocket = false;
    bool connection = false;
    TAILQ_FOREACH(h, headers, next)
    {
        if (strcasecmp(h->key, "Upgrade") == 0) {
            upgrades++;
            websocket = is_websocket_token(h->value);
        } else if (strcasecmp(h->key, "Connection") == 0 &&
                   sg_headers_listed_in_connection(h->value, "upgrade")) {
            connection = true;
        }
    }
    return upgrades == 1 && websocket && connection;
}

/* ---- the open tunnel ----------------------------------------------------- */

static struct bufferevent *other_side(struct tunnel *t, struct bufferevent *bev)
{
    return bev == t->client ? t->up : t->client;
}

/* Ends an open tunnel: both connections are closed at once. */
static void tunnel_end(struct tunnel *t, const char *reason)
{
    assert(t->state == TUNNEL_OPEN || t->state == TUNNEL_FLUSHING);
    if (t->end_reason == NULL)
        t->end_reason = reason;
    record_end(t);
    close_upstream(t);
    finish(t, 101, t->to_client);
    /* Frees the request and the bufferevent too; server.c's close callback
     * stops counting the connection. */
    evhttp_connection_free(t->evcon);
    tunnel_free(t);
}

/* Moves what from has read to the other side; stops reading from while the other side is full. */
static void splice_from(struct tunnel *t, struct bufferevent *from)
{
    struct bufferevent *to = other_side(t, from);
    struct evbuffer *in = bufferevent_get_input(from);
    size_t len = evbuffer_get_length(in);
    if (len == 0)
        return;
    if (from == t->client)
        t->to_upstream += len;
    else
        t->to_client += len;
    t->last_active_us = sg_mono_us();
    struct evbuffer *out = bufferevent_get_output(to);
    evbuffer_add_buffer(out, in);
    if (evbuffer_get_length(out) >= SG_TUNNEL_BUFFER_MAX) {
        bufferevent_disable(from, EV_READ);
        if (from == t->client)
            t->client_paused = true;
        else
            t->up_paused = true;
    }
}

static void on_tunnel_read(struct bufferevent *bev, void *arg)
{
    struct tunnel *t = arg;
    if (t->state == TUNNEL_OPEN)
        splice_from(t, bev);
}

/* bev's output fell to its low-water mark: read the other side again, or end a flush. */
static void on_tunnel_write(struct bufferevent *bev, void *arg)
{
    struct tunnel *t = arg;
    t->last_active_us = sg_mono_us();
    if (t->state == TUNNEL_FLUSHING) {
        if (bev == t->flush_to && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            tunnel_end(t, NULL);
        return;
    }
    bool *paused = bev == t->client ? &t->up_paused : &t->client_paused;
    if (*paused && evbuffer_get_length(bufferevent_get_output(bev)) < SG_TUNNEL_BUFFER_MAX) {
        *paused = false;
        bufferevent_enable(other_side(t, bev), EV_READ);
    }
}

/* The side other than to has ended: what is queued to `to` is written, then the tunnel ends. */
static void flush_then_end(struct tunnel *t, struct bufferevent *to, const char *reason)
{
    t->end_reason = reason;
    t->state = TUNNEL_FLUSHING;
    t->flush_to = to;
    bufferevent_disable(t->client, EV_READ);
    bufferevent_disable(t->up, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(to)) == 0) {
        tunnel_end(t, NULL);
        return;
    }
    bufferevent_setwatermark(to, EV_WRITE, 0, 0);
    bufferevent_enable(to, EV_WRITE);
}

static void on_tunnel_event(struct bufferevent *bev, short what, void *arg)
{
    struct tunnel *t = arg;
    bool from_client = bev == t->client;
    if (t->state == TUNNEL_FLUSHING) {
        if (bev == t->flush_to)
            tunnel_end(t, NULL); /* the side being written to failed too */
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        splice_from(t, bev);
        flush_then_end(t, other_side(t, bev), from_client ? "client_closed" : "upstream_closed");
    }
}

/* The value of the only header name in headers; NULL when there is none or more than one. */
static const char *only_header(const struct evkeyvalq *headers, const char *name)
{
    const char *value = NULL;
    const struct evkeyval *h;
    TAILQ_FOREACH(h, headers, next)
    {
        if (strcasecmp(h->key, name) != 0)
            continue;
        if (value != NULL)
            return NULL;
        value = h->value;
    }
    return value;
}

/* Whether accept is the Sec-WebSocket-Accept of the client's key (RFC 6455 4.2.2): the base64 of
 * the SHA-1 of the key and the protocol's GUID. Only a server that read the handshake as one
 * computes it; a 101 without it does not prove that the upstream switched to WebSocket. */
static bool accept_matches(const char *key, const char *accept)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    if (key == NULL || accept == NULL || strlen(key) > 64)
        return false;
    char joined[64 + sizeof(guid)];
    int len = snprintf(joined, sizeof(joined), "%s%s", key, guid);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    unsigned char expected[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
    if (EVP_Digest(joined, (size_t)len, digest, &digest_len, EVP_sha1(), NULL) != 1)
        return false;
    EVP_EncodeBlock(expected, digest, (int)digest_len);
    return strcmp((const char *)expected, accept) == 0;
}

/* The upstream switched protocols: the 101 goes to the client and the connections are spliced. */
static void tunnel_open(struct tunnel *t)
{
    if (!upgrades_to_websocket(&t->headers)) {
        reply_failure(t, SG_MERR_UPSTREAM_BROKEN, "101 without Upgrade: websocket");
        return;
    }
    if (!accept_matches(
            only_header(evhttp_request_get_input_headers(t->r->req), "Sec-WebSocket-Key"),
            only_header(&t->headers, "Sec-WebSocket-Accept"))) {
        reply_failure(t, SG_MERR_UPSTREAM_BROKEN,
                      "101 without the Sec-WebSocket-Accept of the key");
        return;
    }
    t->client = evhttp_connection_get_bufferevent(t->evcon);
    struct evbuffer *head = bufferevent_get_output(t->client);
    evbuffer_add_printf(head, "HTTP/1.1 101 Switching Protocols\r\n"
                              "Upgrade: websocket\r\nConnection: Upgrade\r\n");
    static const char *const relayed[] = {"Sec-WebSocket-Accept", "Sec-WebSocket-Protocol",
                                          "Sec-WebSocket-Extensions"};
    const struct evkeyval *h;
    TAILQ_FOREACH(h, &t->headers, next)
    {
        for (size_t i = 0; i < SG_ARRAY_LEN(relayed); i++) {
            if (strcasecmp(h->key, relayed[i]) == 0)
                evbuffer_add_printf(head, "%s: %s\r\n", relayed[i], h->value);
        }
    }
    evbuffer_add_printf(head, "X-Request-Id: %s\r\n\r\n", t->r->id);

    /* The takeover (see the top of this file). */
    bufferevent_setcb(t->client, on_tunnel_read, on_tunnel_write, on_tunnel_event, t);
    bufferevent_setwatermark(t->client, EV_READ, 0, 0);
    bufferevent_setwatermark(t->client, EV_WRITE, SG_TUNNEL_BUFFER_MAX / 2, 0);
    bufferevent_setcb(t->up, on_tunnel_read, on_tunnel_write, on_tunnel_event, t);
    bufferevent_setwatermark(t->up, EV_WRITE, SG_TUNNEL_BUFFER_MAX / 2, 0);

    t->state = TUNNEL_OPEN;
    t->opened_us = t->last_active_us = sg_mono_us();
    evhttp_clear_headers(&t->headers);
    sg_metrics_count("ssogate_tunnels_total", "result", "opened");
    sg_log_fields(SG_LOG_INFO, "tunnel_open",
                  (struct sg_log_field[]){
                      SG_LOG_STR("request_id", t->r->id),
                      SG_LOG_STR("path", t->r->target.path),
                      SG_LOG_BOOL("session", t->session_id[0] != '\0'),
                      SG_LOG_INT("upstream_us", t->up_latency_us),
                  },
                  4);

    /* Frames sent right behind either head go first. */
    bufferevent_enable(t->client, EV_READ | EV_WRITE);
    bufferevent_enable(t->up, EV_READ | EV_WRITE);
    /* Idle is the shared timer's business. Cleared once enabled: libevent
     * removes the timer of a pending event only. */
    bufferevent_set_timeouts(t->client, NULL, NULL);
    bufferevent_set_timeouts(t->up, NULL, NULL);
    splice_from(t, t->up);
    splice_from(t, t->client);
}

/* ---- connecting and the handshake ---------------------------------------- */

static void on_answer_read(struct bufferevent *bev, void *arg)
{
    struct tunnel *t = arg;
    switch (parse_answer(t, bufferevent_get_input(bev))) {
    case PARSE_MORE:
        return;
    case PARSE_BAD:
        reply_failure(t, SG_MERR_UPSTREAM_BROKEN,
                      t->head_bytes >= SG_TUNNEL_HEAD_MAX && !t->head_done
                          ? "answer head over 64 KiB"
                          : "malformed answer");
        return;
    case PARSE_DONE:
        break;
    }
    if (t->status == 101)
        tunnel_open(t);
    else
        reply_refusal(t);
}

static void on_up_event(struct bufferevent *bev, short what, void *arg)
{
    struct tunnel *t = arg;

    if (t->state == TUNNEL_CONNECTING && (what & BEV_EVENT_CONNECTED)) {
        t->state = TUNNEL_WAITING;
        const struct sg_upstream_config *cfg = &t->r->snap->cfg->upstream;
        struct timeval answer = {cfg->response_timeout_ms / 1000,
                                 (cfg->response_timeout_ms % 1000) * 1000};
        bufferevent_set_timeouts(bev, &answer, &answer);
        bufferevent_setcb(bev, on_answer_read, NULL, on_up_event, t);
        bufferevent_write_buffer(bev, t->request_head);
        evbuffer_free(t->request_head);
        t->request_head = NULL;
        bufferevent_enable(bev, EV_READ | EV_WRITE);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        reply_failure(t, SG_MERR_UPSTREAM_TIMEOUT,
                      t->state == TUNNEL_CONNECTING ? "connect timeout" : "answer timeout");
        return;
    }
    if (t->state == TUNNEL_WAITING && (what & BEV_EVENT_EOF)) {
        /* An answer delimited by the end of the connection ends here. */
        llhttp_finish(&t->parser);
        if (t->message_done && t->status != 101) {
            reply_refusal(t);
            return;
        }
    }
    reply_failure(
        t, t->state == TUNNEL_CONNECTING ? SG_MERR_UPSTREAM_CONNECT : SG_MERR_UPSTREAM_BROKEN,
        t->state == TUNNEL_CONNECTING ? "connect failed" : "connection closed");
}

/* The handshake as it goes upstream: the built headers, then Connection and Upgrade again. */
void sg_tunnel_start(struct sg_request *r, struct evbuffer *head,
                     const struct sg_identity *identity)
{
    struct tunnel *t = sg_calloc(1, sizeof(*t));
    t->magic = TUNNEL_MAGIC;
    t->state = TUNNEL_CONNECTING;
    t->r = r;
    t->live = r->tunnels;
    t->evcon = evhttp_request_get_connection(r->req);
    if (identity != NULL)
        memcpy(t->session_id, identity->session_id, sizeof(t->session_id));
    TAILQ_INIT(&t->headers);
    t->field = evbuffer_new();
    t->value = evbuffer_new();
    t->body = evbuffer_new();
    llhttp_init(&t->parser, HTTP_RESPONSE, &parser_settings);
    t->parser.data = t;
    live_add(t);
    sg_request_wait(r, on_client_gone, t);
    /* No request deadline from here on: frames may follow the handshake at
     * once, and the connection is never reused for HTTP (a refusal closes it). */
    sg_conn_set_tunnel(r->conn);

    /* Host is among the headers: the proxy sets it on every request (upstream.host_header). */
    t->request_head = head;
    if (t->live->count > t->r->snap->cfg->limits.tunnels) {
        reply_full(t);
        return;
    }
    evbuffer_add_printf(head, "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    t->up_start_us = sg_mono_us();
    t->up = sg_upstream_connect(t->r->snap->upstream, on_up_event, t);
    if (t->up == NULL)
        reply_failure(t, SG_MERR_UPSTREAM_CONNECT, "connect failed");
}

bool sg_tunnel_is_handshake(struct evhttp_request *req)
{
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET || req->major != 1 || req->minor != 1)
        return false;
    if (evbuffer_get_length(evhttp_request_get_input_buffer(req)) > 0)
        return false;
    const struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const struct evkeyval *h;
    TAILQ_FOREACH(h, in, next)
    {
        if (strcasecmp(h->key, "Transfer-Encoding") == 0 ||
            (strcasecmp(h->key, "Content-Length") == 0 && strcmp(h->value, "0") != 0))
            return false;
    }
    return upgrades_to_websocket(in);
}

/* ---- the shared timer ------------------------------------------------------ */

/* The shared store answered whether a tunnel's session (gone from this host's
 * cache) still lives. */
static void on_session_fetched(void *arg, int err)
{
    struct tunnel *t = arg;
    t->fetch = NULL;
    if (err == SG_ENOENT && t->state == TUNNEL_OPEN)
        tunnel_end(t, "session_ended");
}

static void on_check(evutil_socket_t fd, short what, void *arg)
{
    int64_t now_us = sg_mono_us();
    int64_t now_s = sg_now_s();
    struct sg_tunnels *live = arg;
    live->checking = true;
    for (struct tunnel *t = live->head, *next; t != NULL; t = next) {
        next = t->next;
        if (t->state != TUNNEL_OPEN && t->state != TUNNEL_FLUSHING)
            continue;
        int64_t idle_us = (int64_t)t->r->snap->cfg->upstream.websocket_idle_timeout_s * 1000000;
        if (now_us - t->last_active_us >= idle_us) {
            t->end_reason = NULL;
            tunnel_end(t, "idle_timeout");
            continue;
        }
        if (t->session_id[0] == '\0' || t->state != TUNNEL_OPEN)
            continue;
        int err = sg_session_get(t->r->store, t->session_id, now_s, NULL);
        /* Traffic in the last second is activity of the session, as a request
         * would be (the store writes at most once per touch interval). */
        if (err == 0 && now_us - t->last_active_us < 1000000) {
            err = sg_session_touch(t->r->store, t->session_id, now_s);
            if (err == 0 && t->r->shared != NULL &&
                now_us - t->shared_touched_us >= SG_SESSION_TOUCH_INTERVAL_S * 1000000) {
                sg_pgstore_session_touch(t->r->shared, t->session_id, now_s);
                t->shared_touched_us = now_us;
            }
        }
        /* With the shared store, a session this host no longer caches (or
         * trusts: past cache_ttl_s) may live on, or not: the database's
         * answer decides, and a fetch renews the cached copy. */
        if (t->r->shared != NULL &&
            (err == SG_ENOENT || !sg_pgstore_session_cached(t->r->shared, t->session_id))) {
            if (t->fetch == NULL)
                t->fetch =
                    sg_pgstore_session_fetch(t->r->shared, t->session_id, on_session_fetched, t);
            continue;
        }
        if (err == SG_ENOENT || err == SG_EINVAL) {
            tunnel_end(t, "session_ended");
        } else if (err != 0) {
            /* The store failed: the tunnel stays, and is checked again next second. */
            sg_metrics_error(SG_MERR_STORE);
        }
    }
    live->checking = false;
    if (live->head == NULL && live->check != NULL) {
        event_free(live->check);
        live->check = NULL;
    }
}
