#include "ssogate/request.h"

#include "ssogate/common.h"
#include "ssogate/conn.h"
#include "ssogate/config.h"
#include "ssogate/evmem.h"
#include "ssogate/log.h"
#include "ssogate/metrics.h"
#include "ssogate/pages.h"
#include "ssogate/snapshot.h"

#include <sys/queue.h>

#include <assert.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUEST_MAGIC 0x52455155u

struct sg_requests {
    struct sg_request *head;
    unsigned count;
    bool draining;
    char id_prefix[17]; /* random per process: ids are unguessable and unique */
    uint64_t id_counter;
};

struct sg_requests *sg_requests_new(void)
{
    struct sg_requests *set = sg_calloc(1, sizeof(*set));
    unsigned char random[8];
    sg_random_bytes(random, sizeof(random));
    sg_hex_encode(random, sizeof(random), set->id_prefix);
    return set;
}

void sg_requests_free(struct sg_requests *set)
{
    if (set == NULL)
        return;
    while (set->head != NULL) {
        struct sg_request *r = set->head;
        if (r->gone != NULL)
            r->gone(r, r->gone_arg);
        r->gone = NULL;
        sg_request_finish(r, 503, 0);
    }
    free(set);
}

unsigned sg_requests_in_flight(const struct sg_requests *set)
{
    return set->count;
}

void sg_requests_drain(struct sg_requests *set)
{
    set->draining = true;
}

bool sg_requests_draining(const struct sg_requests *set)
{
    return set->draining;
}

static const char *method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    default:
        return "OTHER";
    }
}

/* The prefix, then the counter in hex, at least 8 digits (what "%s%08" PRIx64 would print, on
 * every request without printf). */
static void request_id(struct sg_requests *set, char out[SG_REQUEST_ID_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t n = ++set->id_counter;
    char digits[16];
    size_t count = 0;
    do {
        digits[count++] = hex[n & 15];
        n >>= 4;
    } while (n != 0);
    while (count < 8)
        digits[count++] = '0';
    size_t len = strlen(set->id_prefix);
    memcpy(out, set->id_prefix, len);
    for (size_t i = 0; i < count; i++)
        out[len + i] = digits[count - 1 - i];
    out[len + count] = '\0';
}

struct sg_request *sg_request_begin(struct sg_requests *set, struct sg_runtime *rt,
                                    struct sg_snapshot *snap, struct evhttp_request *req,
                                    struct sg_conn *conn)
{
    struct sg_request *r = sg_evmem_zalloc(sizeof(*r)); /* freed with sg_evmem_free */
    r->magic = REQUEST_MAGIC;
    r->req = req;
    r->conn = conn;
    r->rt = rt;
    r->snap = sg_snapshot_ref(snap);
    request_id(set, r->id);
    r->method = method_name(evhttp_request_get_command(req));
    const struct sg_config *cfg = snap->cfg;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    sg_client_addr(cfg->trusted_proxies, cfg->trusted_proxy_count,
                   evcon != NULL ? evhttp_connection_get_addr(evcon) : NULL,
                   evhttp_request_get_input_headers(req), &r->client);
    r->start_us = sg_mono_us();
    r->set = set;
    r->next = set->head;
    if (set->head != NULL)
        set->head->prev = r;
    set->head = r;
    set->count++;
    return r;
}

/* The client connection closed while the handler waited. */
static void on_client_gone(void *arg)
{
    struct sg_request *r = arg;
    assert(r->magic == REQUEST_MAGIC);
    r->gone_status = 499;
    if (r->gone != NULL)
        r->gone(r, r->gone_arg);
    r->gone = NULL;
    if (r->gone_status == 499)
        sg_metrics_error(SG_MERR_CLIENT_ABORTED);
    /* libevent detached the request and left it to us; an attached one is its own. */
    if (evhttp_request_get_connection(r->req) == NULL)
        evhttp_request_free(r->req);
    r->req = NULL;
    sg_request_finish(r, r->gone_status, r->gone_bytes);
}

void sg_request_wait(struct sg_request *r, sg_request_fn gone, void *arg)
{
    r->waiting = true;
    r->gone = gone;
    r->gone_arg = arg;
    sg_conn_on_close(r->conn, on_client_gone, r);
}

bool sg_request_waiting(const struct sg_request *r)
{
    return r->waiting;
}

void sg_request_resume(struct sg_request *r)
{
    if (r->waiting)
        sg_conn_on_close(r->conn, NULL, NULL);
    r->waiting = false;
    r->gone = NULL;
    r->gone_arg = NULL;
}

void sg_request_on_finish(struct sg_request *r, sg_request_fn fn, void *arg)
{
    struct sg_request_cleanup *c = sg_calloc(1, sizeof(*c));
    c->fn = fn;
    c->arg = arg;
    c->next = r->cleanups;
    r->cleanups = c;
}

void sg_request_finish(struct sg_request *r, int status, uint64_t bytes)
{
    assert(r->magic == REQUEST_MAGIC);
    /* An answer given later than the request's arrival goes out once the request is done. */
    struct sg_conn *flush = r->waiting && r->req != NULL ? r->conn : NULL;
    if (r->waiting)
        sg_conn_on_close(r->conn, NULL, NULL);
    sg_metrics_response(status);
    if (r->snap->cfg->access_log) {
        char client[SG_ADDR_TEXT_SIZE];
        sg_addr_text(&r->client.sa, client);
        sg_log_fields(SG_LOG_INFO, "access",
                      (struct sg_log_field[]){
                          SG_LOG_STR("request_id", r->id),
                          SG_LOG_STR("client", client),
                          SG_LOG_STR("method", r->method),
                          SG_LOG_STR("path", r->target.path ? r->target.path : ""),
                          SG_LOG_INT("status", status),
                          SG_LOG_INT("bytes", (int64_t)bytes),
                          SG_LOG_INT("duration_us", sg_mono_us() - r->start_us),
                          SG_LOG_INT("upstream_us", r->upstream_us),
                      },
                      8);
    }
    while (r->cleanups != NULL) {
        struct sg_request_cleanup *c = r->cleanups;
        r->cleanups = c->next;
        c->fn(r, c->arg);
        free(c);
    }
    struct sg_requests *set = r->set;
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        set->head = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    set->count--;
    if (r->params != NULL) {
        evhttp_clear_headers(r->params);
        free(r->params);
    }
    sg_target_clear(&r->target);
    sg_snapshot_unref(r->snap);
    r->magic = 0;
    sg_evmem_free(r);
    if (flush != NULL)
        sg_conn_flush(flush);
}

bool sg_request_draining(const struct sg_request *r)
{
    return r->set->draining;
}

int sg_request_page(struct sg_request *r, int status, const char *title, const char *message)
{
    sg_page_send(r->req, status, title, message, r->id);
    return status;
}

int sg_request_redirect(struct sg_request *r, int status, const char *location)
{
    struct evkeyvalq *headers = evhttp_request_get_output_headers(r->req);
    evhttp_add_header(headers, "Location", location);
    evhttp_add_header(headers, "Cache-Control", "no-store");
    sg_reply(r->req, status, sg_page_reason(status), NULL);
    return status;
}

const char *sg_request_param(struct sg_request *r, const char *name)
{
    if (r->params == NULL) {
        r->params = sg_calloc(1, sizeof(*r->params));
        TAILQ_INIT(r->params);
        if (r->target.query != NULL && evhttp_parse_query_str(r->target.query, r->params) != 0)
            evhttp_clear_headers(r->params); /* a malformed query has no parameters */
    }
    return evhttp_find_header(r->params, name);
}

const char *sg_request_header(const struct sg_request *r, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(r->req), name);
}

bool sg_request_is_get(const struct sg_request *r)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(r->req);
    return cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD;
}

void sg_request_upstream_cookies_dropped(const struct sg_request *r)
{
    sg_metrics_count("ssogate_upstream_headers_dropped_total", "reason", "gateway_cookie");
    sg_log_fields(
        SG_LOG_WARN, "upstream_cookie_dropped",
        (struct sg_log_field[]){
            SG_LOG_STR("request_id", r->id),
            SG_LOG_STR("msg", "the upstream's Set-Cookie for a gateway cookie was dropped")},
        2);
}
