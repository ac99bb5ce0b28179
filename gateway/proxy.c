#include "ssogate/proxy.h"

#include "ssogate/common.h"
#include "ssogate/conn.h"
#include "ssogate/cookies.h"
#include "ssogate/headers.h"
#include "ssogate/identity.h"
#include "ssogate/inject.h"
#include "ssogate/log.h"
#include "ssogate/metrics.h"
#include "ssogate/pages.h"
#include "ssogate/request.h"
#include "ssogate/snapshot.h"
#include "ssogate/tunnel.h"
#include "ssogate/upstream.h"

#include <sys/queue.h>

#include <assert.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PROXY_MAGIC 0x50525859u

/*
 * One forwarded request. It lives until both sides are done: the client side
 * (reply written, or the client went away) and the upstream side (response
 * read, failed, or cancelled).
 */
struct proxy {
    uint32_t magic;
    struct sg_request *r;      /* NULL once the client side is done */
    struct evhttp_request *up; /* NULL once the upstream side is done */
    struct evhttp_connection *up_conn;
    struct sg_upstream_slot *slot;
    int64_t up_start_us;
    int64_t up_latency_us;
    uint64_t bytes;
    int status;
    enum evhttp_request_error up_error;
    bool up_failed;
    bool reply_started;
    bool paused;
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
    p->magic = 0;
    free(p);
}

static void upstream_side_done(struct proxy *p)
{
    p->up = NULL;
    if (p->slot != NULL) {
        sg_upstream_release(p->slot);
        p->slot = NULL;
    }
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
        struct evhttp_request *up = p->up;
        upstream_side_done(p);
        evhttp_cancel_request(up); /* resets the upstream connection; no done callback */
    }
    proxy_maybe_free(p);
}

static void send_error_page(struct proxy *p, int status, const char *message)
{
    p->status = status;
    evhttp_request_set_on_complete_cb(p->r->req, on_client_complete, p);
    sg_request_page(p->r, status, sg_page_reason(status), message);
}

static int on_up_headers(struct evhttp_request *up, void *arg)
{
    struct proxy *p = arg;
    if (p->r == NULL)
        return -1;
    p->up_latency_us = sg_mono_us() - p->up_start_us;
    sg_metrics_upstream_latency(p->up_latency_us);
    p->status = evhttp_request_get_response_code(up);
    if (p->status == 101)
        return -1; /* protocols switch only in a tunnel (tunnel.h): a 502 */

    struct evkeyvalq *in = evhttp_request_get_input_headers(up);
    struct evkeyvalq *out = evhttp_request_get_output_headers(p->r->req);
    sg_headers_copy_response(in, out);
    evhttp_add_header(out, "X-Request-Id", p->r->id);
    if (sg_request_draining(p->r))
        sg_headers_close_connection(out);
    evhttp_request_set_on_complete_cb(p->r->req, on_client_complete, p);

    const char *type = evhttp_find_header(in, "Content-Type");
    const char *length = evhttp_find_header(in, "Content-Length");
    if (p->inject && p->status == 200 && type != NULL && strncasecmp(type, "text/html", 9) == 0 &&
        evhttp_find_header(in, "Content-Encoding") == NULL &&
        (length == NULL || strtoull(length, NULL, 10) <= SG_INJECT_MAX_PAGE)) {
        /* Held whole, then sent with the block inserted (on_up_done). */
        evhttp_remove_header(out, "Content-Length");
        p->held = evbuffer_new();
        return 0;
    }
    evhttp_send_reply_start(p->r->req, p->status, evhttp_request_get_response_code_line(up));
    p->reply_started = true;
    return 0;
}

/* The client's output drained: read the upstream again. */
static void on_client_flushed(struct evhttp_connection *evcon, void *arg)
{
    struct proxy *p = arg;
    if (p->paused && p->up != NULL) {
        p->paused = false;
        bufferevent_enable(evhttp_connection_get_bufferevent(p->up_conn), EV_READ);
    }
}

static void on_up_chunk(struct evhttp_request *up, void *arg)
{
    struct proxy *p = arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(up);

    if (p->r == NULL) {
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    if (p->held != NULL) {
        if (evbuffer_get_length(p->held) + evbuffer_get_length(in) > SG_INJECT_MAX_PAGE) {
            sg_metrics_error(SG_MERR_UPSTREAM_BROKEN);
            evbuffer_drain(in, evbuffer_get_length(in));
            return;
        }
        evbuffer_add_buffer(p->held, in);
        return;
    }
    p->bytes += evbuffer_get_length(in);
    evhttp_send_reply_chunk_with_cb(p->r->req, in, on_client_flushed, p);

    struct bufferevent *client_bev =
        evhttp_connection_get_bufferevent(evhttp_request_get_connection(p->r->req));
    if (!p->paused &&
        evbuffer_get_length(bufferevent_get_output(client_bev)) > SG_PROXY_HIGH_WATER) {
        p->paused = true;
        bufferevent_disable(evhttp_connection_get_bufferevent(p->up_conn), EV_READ);
    }
}

static void on_up_error(enum evhttp_request_error error, void *arg)
{
    struct proxy *p = arg;
    p->up_failed = true;
    p->up_error = error;
}

static void on_up_done(struct evhttp_request *up, void *arg)
{
    struct proxy *p = arg;
    bool failed = p->up_failed || up == NULL || evhttp_request_get_response_code(up) == 0;

    upstream_side_done(p);
    if (p->r == NULL) {
        proxy_maybe_free(p);
        return;
    }
    if (!failed && p->held != NULL) {
        size_t len = evbuffer_get_length(p->held);
        size_t out_len;
        bool fell_back;
        const struct sg_login_button_config *button = &p->r->snap->cfg->psa.login_button;
        char *page = sg_inject_login_block(
            (const char *)evbuffer_pullup(p->held, -1), len, p->notice, button->marker,
            button->position == SG_BUTTON_BEFORE, &fell_back, &out_len);
        if (fell_back) {
            sg_metrics_count("ssogate_login_button_fallbacks_total", "reason", "marker_missing");
            sg_log_fields(SG_LOG_WARN, "login_button",
                          (struct sg_log_field[]){SG_LOG_STR("request_id", p->r->id),
                                                  SG_LOG_STR("result", "marker_missing")},
                          2);
        }
        struct evbuffer *body = evbuffer_new();
        evbuffer_add(body, page, out_len);
        p->bytes = out_len;
        evhttp_send_reply(p->r->req, p->status, sg_page_reason(p->status), body);
        evbuffer_free(body);
        free(page);
        return;
    }
    if (!failed) {
        evhttp_send_reply_end(p->r->req);
        return;
    }
    bool timeout = p->up_failed && p->up_error == EVREQ_HTTP_TIMEOUT;
    enum sg_metric_error kind = timeout            ? SG_MERR_UPSTREAM_TIMEOUT
                                : p->reply_started ? SG_MERR_UPSTREAM_BROKEN
                                                   : SG_MERR_UPSTREAM_CONNECT;
    sg_metrics_error(kind);
    sg_log_fields(SG_LOG_WARN, "upstream_error",
                  (struct sg_log_field[]){SG_LOG_STR("request_id", p->r->id),
                                          SG_LOG_STR("kind", sg_metrics_error_name(kind))},
                  2);
    if (p->reply_started && p->held == NULL) {
        /* Part of the body is out: ending the reply normally would present a
         * truncated body as complete, so the client connection is closed. */
        evhttp_connection_free(evhttp_request_get_connection(p->r->req));
        return;
    }
    if (timeout)
        send_error_page(p, 504,
                        "The application did not answer in time. Please try again in a moment.");
    else
        send_error_page(p, 502,
                        "The application cannot be reached right now. Please try again in a "
                        "moment.");
}

/* The request target for the upstream: its base path, then the normalised
 * path and the query as received (both checked by the router). */
static char *upstream_target(const struct sg_config *cfg, const struct sg_target *target)
{
    char *origin = sg_target_origin_form(target);
    char *full = sg_asprintf("%s%s", cfg->upstream.url.path, origin);
    free(origin);
    return full;
}

static void add_forwarded_headers(struct proxy *p, struct evhttp_request *req,
                                  struct evkeyvalq *out)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    char *peer = NULL;
    uint16_t port = 0;
    evhttp_connection_get_peer(evhttp_request_get_connection(req), &peer, &port);

    const char *prior = evhttp_find_header(in, "X-Forwarded-For");
    if (prior != NULL) {
        char *joined = sg_asprintf("%s, %s", prior, peer ? peer : "unknown");
        evhttp_add_header(out, "X-Forwarded-For", joined);
        free(joined);
    } else {
        evhttp_add_header(out, "X-Forwarded-For", peer ? peer : "unknown");
    }
    evhttp_add_header(out, "X-Forwarded-Proto", sg_conn_is_tls(p->r->conn) ? "https" : "http");
    /* One documented authority (upstream.host_header), never the client's. */
    evhttp_add_header(out, "Host", p->r->snap->cfg->upstream.host);
    evhttp_add_header(out, "X-Forwarded-Host", p->r->snap->cfg->upstream.host);
    evhttp_add_header(out, "X-Request-Id", p->r->id);
    char *cookie = sg_cookies_strip(p->r->snap->cfg, in);
    if (cookie != NULL)
        evhttp_add_header(out, "Cookie", cookie);
    free(cookie);
}

void sg_proxy_forward(struct sg_request *r, const struct sg_identity *identity)
{
    struct evhttp_request *req = r->req;
    struct proxy *p = sg_calloc(1, sizeof(*p));
    p->magic = PROXY_MAGIC;
    p->r = r;
    sg_request_wait(r, on_client_gone, p);

    struct evhttp_request *up = evhttp_request_new(on_up_done, p);
    evhttp_request_set_header_cb(up, on_up_headers);
    evhttp_request_set_chunked_cb(up, on_up_chunk);
    evhttp_request_set_error_cb(up, on_up_error);

    struct evkeyvalq *out = evhttp_request_get_output_headers(up);
    sg_headers_copy_request(evhttp_request_get_input_headers(req), out,
                            (const char *const *)p->r->snap->cfg->claim_header_names);
    add_forwarded_headers(p, req, out);
    if (identity != NULL && sg_identity_add_headers(p->r->snap, identity, out) != 0) {
        sg_log(SG_LOG_ERROR, "assertion", "signing the identity assertion failed");
        evhttp_request_free(up);
        sg_metrics_error(SG_MERR_ASSERTION);
        send_error_page(p, 500, "The gateway could not vouch for your identity. Please try again.");
        p->up = NULL;
        return;
    }
    if (sg_tunnel_is_handshake(req)) {
        /* A WebSocket handshake: the tunnel takes the client side from here (tunnel.h). */
        char *target = upstream_target(p->r->snap->cfg, &p->r->target);
        p->r = NULL;
        sg_tunnel_start(r, target, out, identity);
        free(target);
        evhttp_request_free(up);
        proxy_maybe_free(p);
        return;
    }
    struct evbuffer *body = evhttp_request_get_output_buffer(up);
    evbuffer_add_buffer(body, evhttp_request_get_input_buffer(req));
    /* libevent adds Content-Length only to POST and PUT; a DELETE or PATCH
     * with a body needs it too, and an empty POST needs "0". */
    size_t body_len = evbuffer_get_length(body);
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (body_len > 0 || cmd == EVHTTP_REQ_POST || cmd == EVHTTP_REQ_PUT ||
        cmd == EVHTTP_REQ_PATCH) {
        char length[24];
        snprintf(length, sizeof(length), "%zu", body_len);
        evhttp_add_header(out, "Content-Length", length);
    }

    const struct sg_config *cfg = p->r->snap->cfg;
    if (cfg->idp != NULL && cfg->identity == SG_IDENTITY_LINK &&
        evhttp_request_get_command(req) == EVHTTP_REQ_GET &&
        sg_config_path_is(cfg, p->r->target.match, cfg->psa.login_path)) {
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
    char *target = upstream_target(p->r->snap->cfg, &p->r->target);
    p->up = up;
    p->up_conn = sg_upstream_acquire(p->r->snap->upstream, &p->slot);
    p->up_start_us = sg_mono_us();
    int rc = evhttp_make_request(p->up_conn, up, evhttp_request_get_command(req), target);
    free(target);
    if (rc != 0) {
        /* libevent freed the request. */
        upstream_side_done(p);
        sg_metrics_error(SG_MERR_UPSTREAM_CONNECT);
        send_error_page(p, 502,
                        "The application cannot be reached right now. Please try again in a "
                        "moment.");
    }
}
