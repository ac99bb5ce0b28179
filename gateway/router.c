#include "ssogate/router.h"

#include "ssogate/common.h"
#include "ssogate/headers.h"
#include "ssogate/identity.h"
#include "ssogate/login.h"
#include "ssogate/settings.h"
#include "ssogate/log.h"
#include "ssogate/metrics.h"
#include "ssogate/pages.h"
#include "ssogate/proxy.h"
#include "ssogate/runtime.h"
#include "ssogate/server.h"
#include "ssogate/signer.h"
#include "ssogate/tunnel.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SSO_PREFIX "/_sso/"

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

/* A process-unique, unguessable request id: a random prefix and a counter. */
static void request_id_next(char out[40])
{
    static char prefix[17];
    static uint64_t counter;
    if (prefix[0] == '\0') {
        unsigned char random[8];
        sg_random_bytes(random, sizeof(random));
        sg_hex_encode(random, sizeof(random), prefix);
    }
    snprintf(out, 40, "%s%08" PRIx64, prefix, ++counter);
}

void sg_access_init(struct sg_access *access, struct evhttp_request *req, int64_t start_us)
{
    request_id_next(access->request_id);
    access->method = method_name(evhttp_request_get_command(req));
    memset(&access->target, 0, sizeof(access->target));
    access->start_us = start_us;
}

void sg_access_clear(struct sg_access *access)
{
    sg_target_clear(&access->target);
}

void sg_access_log(const struct sg_access *access, int status, uint64_t bytes, int64_t upstream_us)
{
    sg_log_fields(SG_LOG_INFO, "access",
                  (struct sg_log_field[]){
                      SG_LOG_STR("request_id", access->request_id),
                      SG_LOG_STR("method", access->method),
                      SG_LOG_STR("path", access->target.path ? access->target.path : ""),
                      SG_LOG_INT("status", status),
                      SG_LOG_INT("bytes", (int64_t)bytes),
                      SG_LOG_INT("duration_us", sg_mono_us() - access->start_us),
                      SG_LOG_INT("upstream_us", upstream_us),
                  },
                  7);
}

static void send_text(struct evhttp_request *req, int status, const char *content_type,
                      struct evbuffer *body)
{
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Content-Type", content_type);
    evhttp_add_header(headers, "Cache-Control", "no-store");
    evhttp_send_reply(req, status, sg_page_reason(status), body);
}

static int handle_healthz(struct sg_runtime *rt, struct evhttp_request *req)
{
    struct evbuffer *body = evbuffer_new();
    bool ready = rt->current != NULL && rt->store != NULL && !rt->draining;
    evbuffer_add_printf(body,
                        "{\"status\":\"%s\",\"policy\":%s,\"store\":%s,\"draining\":%s,"
                        "\"generation\":%" PRIu64 "}\n",
                        ready ? "ok" : "unavailable", rt->current ? "true" : "false",
                        rt->store ? "true" : "false", rt->draining ? "true" : "false",
                        rt->current ? rt->current->generation : 0);
    int status = ready ? 200 : 503;
    send_text(req, status, "application/json", body);
    evbuffer_free(body);
    return status;
}

static int handle_metrics(struct sg_runtime *rt, struct evhttp_request *req)
{
    struct evbuffer *body = evbuffer_new();
    sg_metrics_render(body);
    send_text(req, 200, "text/plain; version=0.0.4", body);
    evbuffer_free(body);
    return 200;
}

static int handle_jwks(struct sg_runtime *rt, struct evhttp_request *req)
{
    struct evbuffer *body = evbuffer_new();
    sg_signer_publish(&rt->current->signer, &rt->retired, rt->retired_until, sg_now_s(), body);
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Content-Type", "application/jwk-set+json");
    evhttp_add_header(headers, "Cache-Control", "max-age=60");
    evhttp_send_reply(req, 200, "OK", body);
    evbuffer_free(body);
    return 200;
}

static bool is_get(struct evhttp_request *req)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    return cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD;
}

/* The gateway's own endpoints; returns the status sent, or 0 when the
 * handler took the access record and answers later. */
static int handle_sso(struct sg_runtime *rt, struct evhttp_request *req, struct sg_conn *conn,
                      struct sg_access *access)
{
    const char *match = access->target.match;
    const char *name = strlen(match) >= strlen(SSO_PREFIX) ? match + strlen(SSO_PREFIX) : "";
    if (strcmp(name, "healthz") == 0 && is_get(req))
        return handle_healthz(rt, req);
    if (strcmp(name, "metrics") == 0 && is_get(req))
        return handle_metrics(rt, req);
    if (strcmp(name, "jwks.json") == 0 && is_get(req))
        return handle_jwks(rt, req);
    if (strcmp(name, "login") == 0 && is_get(req))
        return sg_login_start(rt, req, access->request_id);
    if (strcmp(name, "callback") == 0 && is_get(req))
        return sg_login_callback(rt, req, conn, access);
    if (strcmp(name, "logout") == 0)
        return sg_login_logout(rt, req, access->request_id);
    int status = sg_settings_handle(rt, req, conn, access, name);
    if (status >= 0)
        return status;
    sg_page_send(req, 404, "Page not found", "There is no such page on this gateway.",
                 access->request_id);
    return 404;
}

/* The route of a target: the strictest among the readings an upstream may
 * make of it (target.h), so that no reading reaches a protected prefix. */
static const struct sg_route_config *route_of(const struct sg_config *cfg,
                                              const struct sg_target *target)
{
    const struct sg_route_config *route = sg_config_route(cfg, target->match);
    for (size_t i = 0; i < target->variant_count; i++) {
        const struct sg_route_config *other = sg_config_route(cfg, target->variants[i]);
        if (other->auth > route->auth)
            route = other;
    }
    return route;
}

/* Forwards a request, with the identity of its session where the route wants one. */
static int handle_proxied(struct sg_runtime *rt, struct evhttp_request *req, struct sg_conn *conn,
                          struct sg_access *access)
{
    const struct sg_config *cfg = rt->current->cfg;
    const struct sg_route_config *route = route_of(cfg, &access->target);
    struct sg_identity identity;
    bool found = false, conflict = false;

    bool psa_logout = sg_config_path_is(cfg, access->target.match, cfg->psa.logout_path);
    if (route->auth != SG_AUTH_NONE || psa_logout) {
        int err = sg_identity_lookup(rt, cfg, req, &identity);
        if (err == SG_ESTORE)
            sg_metrics_error(SG_MERR_STORE);
        found = err == 0;
        conflict = err == SG_EEXIST;
    }
    if (route->auth == SG_AUTH_REQUIRED && conflict) {
        /* A redirect to log in would come back to the same cookies. */
        sg_page_send(req, 400, "Conflicting sign-in cookies",
                     "Your browser sent sign-in cookies of different users, so none of them "
                     "is used. Clear this site's cookies and sign in again.",
                     access->request_id);
        return 400;
    }
    if (route->auth == SG_AUTH_REQUIRED && !found) {
        if (is_get(req) && !sg_tunnel_is_handshake(req)) /* a WebSocket cannot follow it */
            return sg_login_redirect_required(rt, req, &access->target);
        sg_page_send(req, 401, "Sign-in required",
                     "This page needs you to be signed in. Open it again to sign in.",
                     access->request_id);
        return 401;
    }
    if (found && psa_logout) {
        /* Signing out of the PSA signs out of the gateway too; the PSA
         * still gets the request, with the identity, to end its own. */
        sg_identity_end(rt, cfg, &identity, req);
        sg_metrics_count("ssogate_logouts_total", "result", "psa_logout");
    }
    sg_proxy_forward(rt, req, conn, access, found ? &identity : NULL);
    if (found)
        sg_identity_clear(&identity);
    return 0;
}

/* Refuses a request whose framing or target cannot be trusted: a page, a log
 * line with the reason, a metric, and the connection closed after it. */
static int refuse(struct evhttp_request *req, const struct sg_access *access, int status,
                  const char *reason, const char *message)
{
    sg_metrics_error(SG_MERR_BAD_REQUEST);
    sg_metrics_count("ssogate_bad_requests_total", "reason", reason);
    sg_log_fields(SG_LOG_INFO, "bad_request",
                  (struct sg_log_field[]){SG_LOG_STR("request_id", access->request_id),
                                          SG_LOG_STR("reason", reason)},
                  2);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    sg_page_send(req, status, sg_page_reason(status), message, access->request_id);
    return status;
}

/* OPTIONS *: the server's own capabilities (RFC 9110 9.3.7); never forwarded. */
static int handle_asterisk(struct evhttp_request *req)
{
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Allow", "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH");
    evhttp_add_header(headers, "Content-Length", "0");
    evhttp_send_reply(req, 204, "No Content", NULL);
    return 204;
}

/*
 * Checks the header section and normalises the target into access->target.
 * Returns 0 when the request may go on, or the status of the refusal sent.
 */
static int check_request(const struct sg_config *cfg, struct evhttp_request *req,
                         struct sg_access *access)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    if (sg_headers_wire_size(in) > cfg->limits.header_bytes) {
        sg_metrics_error(SG_MERR_HEADER_TOO_BIG);
        sg_log(SG_LOG_INFO, "header_too_big", "request headers over %u bytes refused",
               (unsigned)cfg->limits.header_bytes);
        sg_page_send(req, 431, "Request headers too large",
                     "The request carried more header data than this gateway accepts. Clearing "
                     "this site's cookies usually helps.",
                     access->request_id);
        return 431;
    }
    bool http11 = req->major == 1 && req->minor >= 1;
    enum sg_headers_status hs = sg_headers_validate(in, http11);
    if (hs != SG_HEADERS_OK)
        return refuse(req, access, sg_headers_status_http(hs), sg_headers_status_name(hs),
                      "The request's headers are malformed or ambiguous.");

    const char *raw = evhttp_request_get_uri(req);
    struct sg_target_options opts = {
        .keep_encoded_slash = cfg->upstream.escaped_slashes == SG_ESCAPED_SLASHES_KEEP,
        .case_insensitive = cfg->upstream.paths == SG_PATHS_CASE_INSENSITIVE,
        .asterisk_allowed = evhttp_request_get_command(req) == EVHTTP_REQ_OPTIONS,
        .https = cfg->public_url.https,
        .host = cfg->public_url.host,
        .port = cfg->public_url.port,
    };
    enum sg_target_status ts =
        sg_target_normalize(raw ? raw : "", raw ? strlen(raw) : 0, &opts, &access->target);
    if (ts != SG_TARGET_OK)
        return refuse(req, access, 400, sg_target_status_name(ts),
                      "The address asked for is malformed or ambiguous.");
    return 0;
}

void sg_router_handle(struct sg_runtime *rt, struct evhttp_request *req, struct sg_conn *conn)
{
    struct sg_access access;
    sg_access_init(&access, req, sg_mono_us());
    const struct sg_config *cfg = rt->current->cfg;
    bool access_log = cfg->access_log;

    if (rt->draining)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    int status = check_request(cfg, req, &access);
    if (status == 0 && access.target.asterisk)
        status = handle_asterisk(req);
    else if (status == 0 && sg_config_path_under(cfg, access.target.match, "/_sso"))
        status = handle_sso(rt, req, conn, &access);
    else if (status == 0)
        status = handle_proxied(rt, req, conn, &access);
    if (status == 0)
        return; /* the handler took the access record */
    sg_metrics_response(status);
    if (access_log)
        sg_access_log(&access, status, 0, 0);
    sg_access_clear(&access);
}
