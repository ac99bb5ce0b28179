#include "ssogate/proxy.h"

#include "ssogate/common.h"
#include "ssogate/conn.h"
#include "ssogate/cookies.h"
#include "ssogate/evmem.h"
#include "ssogate/headers.h"
#include "ssogate/identity.h"
#include "ssogate/inject.h"
#include "ssogate/log.h"
#include "ssogate/metrics.h"
#include "ssogate/pages.h"
#include "ssogate/request.h"
#include "ssogate/snapshot.h"
#include "ssogate/tunnel.h"
#include "ssogate/uplink.h"

#include <sys/queue.h>

#include <assert.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define PROXY_MAGIC 0x50525859u

/* Bytes of the upstream's reason phrase repeated to the client; a longer one gets the standard
 * phrase. */
#define REASON_MAX 63

/*
 * One forwarded request. It lives until both sides are done: the client side
 * (reply written, or the client went away) and the upstream side (response
 * read, failed, or cancelled).
 */
struct proxy {
    uint32_t magic;
    struct sg_request *r;      /* NULL once the client side is done */
    struct sg_uplink_conn *up; /* NULL once the upstream side is done */
    int64_t up_start_us;
    int64_t up_latency_us;
    uint64_t bytes;
    int status;
    char reason[REASON_MAX + 1];
    bool reply_started;
    bool chunked; /* the answer's body goes to the client in chunks (written here) */
    bool paused;
    /* The upstream's header lines for the client, written here rather than by evhttp; NULL
     * when evhttp writes the answer (on_up_head says when). */
    struct evbuffer *head;
    unsigned head_has;     /* SG_RESPONSE_ flags of head */
    bool inject;           /* the PSA login page: gains the IT Complete block */
    char *notice;          /* its notice code, may be NULL */
    struct evbuffer *held; /* the page while it is being held for injection */
};

static void proxy_maybe_free(struct proxy *p)
{
    assert(p->magic == PROXY_MAGIC);
    if (p->r != NULL || p->up != NULL)
        return;
    free(p->notice);
    if (p->held != NULL)
        evbuffer_free(p->held);
    if (p->head != NULL)
        evbuffer_free(p->head);
    p->magic = 0;
    sg_evmem_free(p);
}

/* The reply was written completely. */
static void on_client_complete(struct evhttp_request *req, void *arg)
{
    struct proxy *p = arg;
    struct sg_request *r = p->r;
    p->r = NULL;
    r->upstream_us = p->up_latency_us;
    sg_request_finish(r, p->status, p->bytes);
    proxy_maybe_free(p);
}

/* The client connection closed before the reply was complete. */
static void on_client_gone(struct sg_request *r, void *arg)
{
    struct proxy *p = arg;
    r->upstream_us = p->up_latency_us;
    r->gone_bytes = p->bytes;
    p->r = NULL;
    if (p->up != NULL) {
        sg_uplink_cancel(p->up);
        p->up = NULL;
    }
    proxy_maybe_free(p);
}

static void send_error_page(struct proxy *p, int status, const char *message)
{
    p->status = status;
    evhttp_request_set_on_complete_cb(p->r->req, on_client_complete, p);
    sg_request_page(p->r, status, sg_page_reason(status), message);
}

static const char *find_header(const struct sg_uplink_response *response, const char *name)
{
    for (size_t i = 0; i < response->header_count; i++) {
        if (strcasecmp(response->headers[i].name, name) == 0)
            return response->headers[i].value;
    }
    return NULL;
}

/* The status line without printf: "HTTP/1.x NNN reason" (uplink.c keeps the status in 100..599). */
static void write_status_line(const struct proxy *p, struct evbuffer *out)
{
    char line[16 + REASON_MAX + 2] = "HTTP/1.1 ";
    size_t reason_len = strlen(p->reason);
    line[7] = p->r->req->minor >= 1 ? '1' : '0';
    line[9] = (char)('0' + p->status / 100 % 10);
    line[10] = (char)('0' + p->status / 10 % 10);
    line[11] = (char)('0' + p->status % 10);
    line[12] = ' ';
    memcpy(line + 13, p->reason, reason_len);
    memcpy(line + 13 + reason_len, "\r\n", 2);
    evbuffer_add(out, line, 15 + reason_len);
}

/* The login page goes out with the block elsewhere than the marker, or without it: reason says
 * why ("marker_missing", "too_large"), for the operator. */
static void button_fallback(const struct proxy *p, const char *reason)
{
    sg_metrics_count("ssogate_login_button_fallbacks_total", "reason", reason);
    sg_log_fields(
        SG_LOG_WARN, "login_button",
        (struct sg_log_field[]){SG_LOG_STR("request_id", p->r->id), SG_LOG_STR("result", reason)},
        2);
}

/* The PSA's login page (see plan_injection) is held whole, then sent with the block inserted
 * (on_up_done); one larger than SG_INJECT_MAX_PAGE passes unchanged (see hold for one whose
 * length is not given). */
static bool held_for_injection(const struct proxy *p, const struct sg_uplink_response *response)
{
    if (!p->inject || p->status != 200)
        return false;
    const char *type = find_header(response, "Content-Type");
    const char *length = find_header(response, "Content-Length");
    if (type == NULL || strncasecmp(type, "text/html", 9) != 0 ||
        find_header(response, "Content-Encoding") != NULL)
        return false;
    if (length != NULL && strtoull(length, NULL, 10) > SG_INJECT_MAX_PAGE) {
        button_fallback(p, "too_large");
        return false;
    }
    return true;
}

static void on_up_head(void *arg, const struct sg_uplink_response *response)
{
    struct proxy *p = arg;
    p->up_latency_us = sg_mono_us() - p->up_start_us;
    sg_metrics_upstream_latency(p->up_latency_us);
    p->status = response->status;
    size_t reason_len = strlen(response->reason);
    /* A reason phrase may hold what a field value may (RFC 9112 4); the client gets it as is. */
    if (reason_len > 0 && reason_len <= REASON_MAX && sg_headers_value_ok(response->reason))
        memcpy(p->reason, response->reason, reason_len + 1);
    else
        snprintf(p->reason, sizeof(p->reason), "%s", sg_page_reason(p->status));
    evhttp_request_set_on_complete_cb(p->r->req, on_client_complete, p);
    bool held = held_for_injection(p, response);
    if (held)
        p->held = evbuffer_new();
    const char *const *owned_cookies = sg_cookies_all(p->r->snap->cfg);
    bool no_length = p->status == 204; /* RFC 9110 8.6, whatever the upstream wrote */

    /* evhttp's send functions frame body bytes as chunks after a chunked request (its flag
     * serves both directions) and drop them for HEAD: those answers are evhttp's to write. */
    if (evhttp_request_get_command(p->r->req) != EVHTTP_REQ_HEAD && !p->r->req->chunked) {
        p->head = evbuffer_new();
        write_status_line(p, p->head);
        p->head_has = sg_headers_write_response(response->headers, response->header_count, p->head,
                                                held || no_length, owned_cookies);
        sg_headers_add_line(p->head, "X-Request-Id", p->r->id);
        if (p->head_has & SG_RESPONSE_DROPPED_COOKIE)
            sg_request_upstream_cookies_dropped(p->r);
        return;
    }
    struct evkeyvalq *out = evhttp_request_get_output_headers(p->r->req);
    if (sg_headers_copy_response(response->headers, response->header_count, out, owned_cookies) > 0)
        sg_request_upstream_cookies_dropped(p->r);
    if (no_length)
        evhttp_remove_header(out, "Content-Length");
    evhttp_add_header(out, "X-Request-Id", p->r->id);
    if (sg_request_draining(p->r))
        sg_headers_close_connection(out);
}

/* Whether evhttp closes the client connection after this answer: the request said so, an
 * HTTP/1.0 request did not ask to keep it, or the gateway said so among the answer's headers
 * (sg_headers_close_connection). */
static bool closes_after(struct evhttp_request *req)
{
    const char *in = evhttp_find_header(evhttp_request_get_input_headers(req), "Connection");
    const char *out = evhttp_find_header(evhttp_request_get_output_headers(req), "Connection");
    bool keep_alive = in != NULL && strncasecmp(in, "keep-alive", 10) == 0;
    return (in != NULL && strcasecmp(in, "close") == 0) ||
           (out != NULL && strcasecmp(out, "close") == 0) ||
           (req->major == 1 && req->minor == 0 && !keep_alive);
}

/* "Date: " as evhttp writes it, made once a second. */
static const char *date_line(void)
{
    static char line[64];
    static time_t made;
    time_t now = time(NULL);
    if (now != made) {
        struct tm tm;
        char date[50];
        gmtime_r(&now, &tm);
        evutil_date_rfc1123(date, sizeof(date), &tm);
        snprintf(line, sizeof(line), "Date: %s\r\n", date);
        made = now;
    }
    return line;
}

/*
 * Ends the answer's head in p->head, which on_up_head began with the status
 * line and the upstream's kept headers (when evhttp does not write the head),
 * as evhttp would have from the same headers: then those the gateway put among
 * the answer's headers, a Date when the upstream gave none (HTTP/1.1),
 * Content-Length for a whole body (length is its size) or chunked transfer for
 * a streamed one without a length (length is -1), and the Connection header
 * the client connection's fate calls for. A streamed body without a length to
 * an HTTP/1.0 client is delimited by the close, which evhttp is then told of.
 * The answer goes to evhttp as body bytes: it writes them as they are and ends
 * the request as usual (evhttp_send_reply_end).
 */
static void write_head(struct proxy *p, ev_ssize_t length)
{
    struct evhttp_request *req = p->r->req;
    struct evbuffer *out = p->head;
    bool http11 = req->minor >= 1;
    bool body = p->status != 204 && p->status != 304 && p->status >= 200;
    bool sized = (p->head_has & SG_RESPONSE_HAS_LENGTH) != 0;
    if (sg_request_draining(p->r) || (length < 0 && body && !sized && !http11))
        sg_headers_close_connection(evhttp_request_get_output_headers(req));
    bool close = closes_after(req);
    p->chunked = length < 0 && body && !sized && http11;

    /* What the gateway set before forwarding (a PSA sign-out's cleared cookie); its Connection
     * header is the close decided above. */
    struct sg_lines lines;
    sg_lines_start(&lines, out);
    const struct evkeyval *h;
    TAILQ_FOREACH(h, evhttp_request_get_output_headers(req), next)
    {
        if (strcasecmp(h->key, "Connection") != 0)
            sg_lines_add(&lines, h->key, h->value);
    }
    sg_lines_end(&lines);
    if (http11 && !(p->head_has & SG_RESPONSE_HAS_DATE)) {
        const char *date = date_line();
        evbuffer_add(out, date, strlen(date));
    }
    if (length >= 0 && body && !sized) {
        char digits[24];
        size_t at = sizeof(digits);
        digits[--at] = '\n';
        digits[--at] = '\r';
        for (size_t n = (size_t)length;; n /= 10) {
            digits[--at] = (char)('0' + n % 10);
            if (n < 10)
                break;
        }
        evbuffer_add(out, "Content-Length: ", 16);
        evbuffer_add(out, digits + at, sizeof(digits) - at);
    }
    if (p->chunked)
        evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
    if (close)
        evbuffer_add(out, "Connection: close\r\n", 19);
    else if (!http11)
        evbuffer_add(out, "Connection: keep-alive\r\n", 24);
    evbuffer_add(out, "\r\n", 2);
}

/* The client's output drained: read the upstream again. */
static void on_client_flushed(struct evhttp_connection *evcon, void *arg)
{
    struct proxy *p = arg;
    if (p->paused && p->up != NULL) {
        p->paused = false;
        sg_uplink_pause(p->up, false);
    }
}

/*
 * Keeps body bytes of a page held for injection; true when they were taken.
 * A page sent without its length that outgrows SG_INJECT_MAX_PAGE is held no
 * longer: what was held goes back in front of body, and the page goes on to
 * the client unchanged, as a larger page with a length does.
 */
static bool hold(struct proxy *p, struct evbuffer *body)
{
    if (evbuffer_get_length(p->held) + evbuffer_get_length(body) <= SG_INJECT_MAX_PAGE) {
        evbuffer_add_buffer(p->held, body);
        return true;
    }
    evbuffer_prepend_buffer(body, p->held);
    evbuffer_free(p->held);
    p->held = NULL;
    button_fallback(p, "too_large");
    return false;
}

/* Hands body bytes to evhttp for the client, in a chunk of their own when the answer is chunked
 * (write_head). */
static void send_body(struct proxy *p, struct evbuffer *body)
{
    size_t len = evbuffer_get_length(body);
    p->bytes += len;
    if (len == 0)
        return;
    if (p->chunked) {
        char size[24];
        snprintf(size, sizeof(size), "%zx\r\n", len);
        evbuffer_prepend(body, size, strlen(size));
        evbuffer_add(body, "\r\n", 2);
    }
    evhttp_send_reply_chunk_with_cb(p->r->req, body, on_client_flushed, p);
}

static void on_up_body(void *arg, struct evbuffer *body)
{
    struct proxy *p = arg;
    if (p->held != NULL && hold(p, body))
        return;
    if (!p->reply_started && p->head != NULL) {
        write_head(p, -1);
        evhttp_send_reply_chunk(p->r->req, p->head);
    } else if (!p->reply_started) {
        evhttp_send_reply_start(p->r->req, p->status, p->reason);
    }
    p->reply_started = true;
    send_body(p, body);

    struct bufferevent *client_bev =
        evhttp_connection_get_bufferevent(evhttp_request_get_connection(p->r->req));
    if (!p->paused &&
        evbuffer_get_length(bufferevent_get_output(client_bev)) > SG_PROXY_HIGH_WATER) {
        p->paused = true;
        sg_uplink_pause(p->up, true);
    }
}

/* The whole answer at once, written before the loop goes on; p may be gone after. */
static void reply_now(struct proxy *p, struct evbuffer *body)
{
    struct sg_conn *conn = p->r->conn;
    p->bytes = evbuffer_get_length(body);
    if (p->head == NULL) {
        /* Not sg_reply: to a HEAD it gives the length of the body at hand, 0 here, where the
         * upstream's Content-Length (copied, or none) is the answer's. */
        evhttp_send_reply(p->r->req, p->status, p->reason, body);
    } else {
        write_head(p, (ev_ssize_t)p->bytes);
        evbuffer_add_buffer(p->head, body);
        evhttp_send_reply_chunk(p->r->req, p->head);
        evhttp_send_reply_end(p->r->req);
    }
    sg_conn_flush(conn);
}

/* The held login page, sent with the IT Complete block inserted. */
static void send_injected(struct proxy *p)
{
    size_t len = evbuffer_get_length(p->held);
    size_t out_len;
    bool fell_back;
    const struct sg_login_button_config *button = &p->r->snap->cfg->psa.login_button;
    char *page = sg_inject_login_block((const char *)evbuffer_pullup(p->held, -1), len, p->notice,
                                       button->marker, button->position == SG_BUTTON_BEFORE,
                                       &fell_back, &out_len);
    if (fell_back)
        button_fallback(p, "marker_missing");
    struct evbuffer *body = evbuffer_new();
    evbuffer_add(body, page, out_len);
    free(page);
    reply_now(p, body);
    evbuffer_free(body);
}

static void on_up_done(void *arg, enum sg_uplink_result result, const char *detail,
                       struct evbuffer *body)
{
    struct proxy *p = arg;
    p->up = NULL;
    if (result == SG_UPLINK_OK && p->held != NULL && hold(p, body)) {
        send_injected(p);
        return;
    }
    if (result == SG_UPLINK_OK && !p->reply_started) {
        /* The whole response at once: one write, with its length. */
        reply_now(p, body);
        return;
    }
    if (result == SG_UPLINK_OK) {
        send_body(p, body);
        if (p->chunked) {
            struct evbuffer *last = evbuffer_new();
            evbuffer_add(last, "0\r\n\r\n", 5);
            evhttp_send_reply_chunk(p->r->req, last);
            evbuffer_free(last);
        }
        evhttp_send_reply_end(p->r->req);
        return;
    }
    static const enum sg_metric_error kinds[] = {
        [SG_UPLINK_CONNECT] = SG_MERR_UPSTREAM_CONNECT,
        [SG_UPLINK_BROKEN] = SG_MERR_UPSTREAM_BROKEN,
        [SG_UPLINK_INVALID] = SG_MERR_UPSTREAM_INVALID,
        [SG_UPLINK_TIMEOUT] = SG_MERR_UPSTREAM_TIMEOUT,
    };
    bool timeout = result == SG_UPLINK_TIMEOUT;
    enum sg_metric_error kind = kinds[result];
    sg_metrics_error(kind);
    sg_log_fields(SG_LOG_WARN, "upstream_error",
                  (struct sg_log_field[]){SG_LOG_STR("request_id", p->r->id),
                                          SG_LOG_STR("kind", sg_metrics_error_name(kind)),
                                          SG_LOG_STR("detail", detail)},
                  3);
    if (p->reply_started) {
        /* Part of the body is out: ending the reply normally would present a
         * truncated body as complete, so the client connection is closed. */
        evhttp_connection_free(evhttp_request_get_connection(p->r->req));
        return;
    }
    /* The upstream's head may have been taken already: the page has its own headers, and keeps
     * a close decided before the answer (server.c: the bytes after a protocol switch are not
     * checked; draining). */
    struct evkeyvalq *out = evhttp_request_get_output_headers(p->r->req);
    const char *connection = evhttp_find_header(out, "Connection");
    bool close = connection != NULL && strcasecmp(connection, "close") == 0;
    evhttp_clear_headers(out);
    if (close)
        sg_headers_close_connection(out);
    if (timeout)
        send_error_page(p, 504,
                        "The application did not answer in time. Please try again in a moment.");
    else
        send_error_page(p, 502,
                        "The application cannot be reached right now. Please try again in a "
                        "moment.");
}

static const struct sg_uplink_callbacks uplink_callbacks = {
    .on_head = on_up_head,
    .on_body = on_up_body,
    .on_done = on_up_done,
};

static void add_text(struct evbuffer *out, const char *text)
{
    evbuffer_add(out, text, strlen(text));
}

/* The request line for the upstream: its base path, then the normalised
 * path and the query as received (both checked by the router). */
static void write_request_line(struct evbuffer *out, const char *method,
                               const struct sg_config *cfg, const struct sg_target *target)
{
    add_text(out, method);
    evbuffer_add(out, " ", 1);
    add_text(out, cfg->upstream.url.path);
    add_text(out, target->path);
    if (target->query != NULL) {
        evbuffer_add(out, "?", 1);
        add_text(out, target->query);
    }
    evbuffer_add(out, " HTTP/1.1\r\n", 11);
}

static void write_forwarded_headers(struct sg_request *r, struct evbuffer *out)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(r->req);
    char *peer = NULL;
    uint16_t port = 0;
    evhttp_connection_get_peer(evhttp_request_get_connection(r->req), &peer, &port);
    struct sg_lines lines;
    sg_lines_start(&lines, out);

    /* Every X-Forwarded-For line the client sent, in order, is one list (RFC 9110 5.3; HAProxy
     * adds a line of its own): the chain goes on whole, the peer appended. */
    const char *from = peer ? peer : "unknown";
    char *chain = NULL;
    const struct evkeyval *h;
    TAILQ_FOREACH_REVERSE(h, in, evkeyvalq, next)
    {
        if (h->value[0] == '\0' || evutil_ascii_strcasecmp(h->key, "X-Forwarded-For") != 0)
            continue;
        char *longer = sg_asprintf("%s, %s", h->value, chain ? chain : from);
        free(chain);
        chain = longer;
    }
    sg_lines_add(&lines, "X-Forwarded-For", chain ? chain : from);
    free(chain);
    sg_lines_add(&lines, "X-Forwarded-Proto", sg_conn_is_tls(r->conn) ? "https" : "http");
    /* One documented authority (upstream.host_header), never the client's. */
    sg_lines_add(&lines, "Host", r->snap->cfg->upstream.host);
    sg_lines_add(&lines, "X-Forwarded-Host", r->snap->cfg->upstream.host);
    sg_lines_add(&lines, "X-Request-Id", r->id);
    char *cookie = sg_cookies_strip(r->snap->cfg, in);
    if (cookie != NULL)
        sg_lines_add(&lines, "Cookie", cookie);
    free(cookie);
    sg_lines_end(&lines);
}

/* The PSA's login page gains the IT Complete block (link mode), with the notice it was sent with.
 */
static void plan_injection(struct proxy *p)
{
    const struct sg_config *cfg = p->r->snap->cfg;
    if (cfg->idp == NULL || cfg->identity != SG_IDENTITY_LINK ||
        evhttp_request_get_command(p->r->req) != EVHTTP_REQ_GET ||
        !sg_config_path_is(cfg, p->r->target.match, cfg->psa.login_path))
        return;
    p->inject = true;
    const char *query = p->r->target.query;
    struct evkeyvalq params = TAILQ_HEAD_INITIALIZER(params);
    if (query != NULL && evhttp_parse_query_str(query, &params) == 0) {
        const char *notice = evhttp_find_header(&params, "sso_notice");
        if (sg_inject_notice_text(notice) != NULL)
            p->notice = sg_strdup(notice);
    }
    evhttp_clear_headers(&params);
}

void sg_proxy_forward(struct sg_request *r, const struct sg_identity *identity)
{
    struct evhttp_request *req = r->req;
    const struct sg_config *cfg = r->snap->cfg;
    struct proxy *p = sg_evmem_zalloc(sizeof(*p)); /* freed with sg_evmem_free */
    p->magic = PROXY_MAGIC;
    p->r = r;
    sg_request_wait(r, on_client_gone, p);

    bool tunnel = sg_tunnel_is_handshake(req);
    struct evbuffer *head = evbuffer_new();
    write_request_line(head, tunnel ? "GET" : r->method, cfg, &r->target);
    sg_headers_copy_request(evhttp_request_get_input_headers(req), head,
                            (const char *const *)cfg->claim_header_names);
    write_forwarded_headers(r, head);
    if (identity != NULL && sg_identity_write_headers(r->snap, identity, head) != 0) {
        sg_log(SG_LOG_ERROR, "assertion", "signing the identity assertion failed");
        evbuffer_free(head);
        sg_metrics_error(SG_MERR_ASSERTION);
        send_error_page(p, 500, "The gateway could not vouch for your identity. Please try again.");
        return;
    }
    if (tunnel) {
        /* A WebSocket handshake: the tunnel takes the client side from here (tunnel.h). */
        p->r = NULL;
        sg_tunnel_start(r, head, identity);
        proxy_maybe_free(p);
        return;
    }
    struct evbuffer *body = evhttp_request_get_input_buffer(req);
    size_t body_len = evbuffer_get_length(body);
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    /* A body, or a method that has one by nature (an empty POST says "0"). */
    if (body_len > 0 || cmd == EVHTTP_REQ_POST || cmd == EVHTTP_REQ_PUT ||
        cmd == EVHTTP_REQ_PATCH) {
        char length[24];
        snprintf(length, sizeof(length), "%zu", body_len);
        sg_headers_add_line(head, "Content-Length", length);
    }
    evbuffer_add(head, "\r\n", 2);
    evbuffer_add_buffer(head, body);

    plan_injection(p);
    p->up_start_us = sg_mono_us();
    /* Idempotent (RFC 9110 9.2.2) among the methods the server accepts: all but POST and PATCH. */
    bool idempotent = cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD ||
                      cmd == EVHTTP_REQ_OPTIONS || cmd == EVHTTP_REQ_PUT ||
                      cmd == EVHTTP_REQ_DELETE;
    unsigned flags =
        (cmd == EVHTTP_REQ_HEAD ? SG_UPLINK_HEAD : 0) | (idempotent ? SG_UPLINK_IDEMPOTENT : 0);
    p->up = sg_uplink_send(r->snap->uplink, head, flags, &uplink_callbacks, p);
    evbuffer_free(head);
}
