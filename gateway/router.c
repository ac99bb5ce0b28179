#include "ssogate/router.h"

#include "ssogate/clientaddr.h"
#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/conn.h"
#include "ssogate/cookies.h"
#include "ssogate/csrf.h"
#include "ssogate/headers.h"
#include "ssogate/identity.h"
#include "ssogate/log.h"
#include "ssogate/login.h"
#include "ssogate/logout.h"
#include "ssogate/metrics.h"
#include "ssogate/pages.h"
#include "ssogate/pgstore.h"
#include "ssogate/proxy.h"
#include "ssogate/request.h"
#include "ssogate/runtime.h"
#include "ssogate/session.h"
#include "ssogate/settings.h"
#include "ssogate/signer.h"
#include "ssogate/snapshot.h"
#include "ssogate/tunnel.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SSO_PREFIX "/_sso/"

static int send_text(struct sg_request *r, int status, const char *content_type,
                     struct evbuffer *body)
{
    struct evkeyvalq *headers = evhttp_request_get_output_headers(r->req);
    evhttp_add_header(headers, "Content-Type", content_type);
    evhttp_add_header(headers, "Cache-Control", "no-store");
    sg_reply(r->req, status, sg_page_reason(status), body);
    evbuffer_free(body);
    return status;
}

/* The answer for a /_sso/ path that is no endpoint (or one this client may not see). */
static int no_such_endpoint(struct sg_request *r)
{
    return sg_request_page(r, 404, "Page not found", "There is no such page on this gateway.");
}

static int handle_healthz(struct sg_request *r)
{
    struct evbuffer *body = evbuffer_new();
    bool draining = sg_request_draining(r);
    /* Without the shared store the gateway still serves the sessions it has
     * cached: degraded, not down (a balancer keeps sending it traffic). */
    bool shared_up = r->shared == NULL || sg_pgstore_available(r->shared);
    evbuffer_add_printf(body,
                        "{\"status\":\"%s\",\"policy\":true,\"store\":%s,\"draining\":%s,"
                        "\"generation\":%" PRIu64 "}\n",
                        draining    ? "unavailable"
                        : shared_up ? "ok"
                                    : "degraded",
                        shared_up ? "true" : "false", draining ? "true" : "false",
                        r->snap->generation);
    return send_text(r, draining ? 503 : 200, "application/json", body);
}

static int handle_metrics(struct sg_request *r)
{
    const struct sg_config *cfg = r->snap->cfg;
    if (!sg_cidr_match(cfg->metrics_from, cfg->metrics_from_count, &r->client.sa)) {
        char client[SG_ADDR_TEXT_SIZE];
        sg_addr_text(&r->client.sa, client);
        sg_metrics_count("ssogate_bad_requests_total", "reason", "metrics_not_allowed");
        sg_log_fields(SG_LOG_INFO, "bad_request",
                      (struct sg_log_field[]){SG_LOG_STR("request_id", r->id),
                                              SG_LOG_STR("reason", "metrics_not_allowed"),
                                              SG_LOG_STR("client", client)},
                      3);
        return no_such_endpoint(r);
    }
    struct evbuffer *body = evbuffer_new();
    sg_metrics_render(body);
    return send_text(r, 200, "text/plain; version=0.0.4", body);
}

static int handle_jwks(struct sg_request *r)
{
    struct evbuffer *body = evbuffer_new();
    sg_runtime_publish_keys(r->rt, body);
    struct evkeyvalq *headers = evhttp_request_get_output_headers(r->req);
    evhttp_add_header(headers, "Content-Type", "application/jwk-set+json");
    evhttp_add_header(headers, "Cache-Control", "max-age=60");
    sg_reply(r->req, 200, "OK", body);
    evbuffer_free(body);
    return 200;
}

#define LOGOUT_405       "Use the sign-out button", "Signing out needs a POST from this site's pages."
#define SETTINGS_GET_405 "Method not allowed", "Open this page from a link or the address bar."
#define BACKCHANNEL_405  "Method not allowed", "POST a logout_token."
#define SETTINGS_POST_405                                                                          \
    "Method not allowed", "Nothing was changed. Open My Settings and use its buttons."

/* The public key of private_key_jwt, for an IdP that fetches the client's jwks_uri. */
static int handle_client_jwks(struct sg_request *r)
{
    const struct sg_signer *key = &r->snap->client_key;
    if (key->key == NULL)
        return sg_request_page(r, 404, "Page not found",
                               "This gateway does not authenticate to its IdP with a key.");
    struct evbuffer *body = evbuffer_new();
    const struct sg_retired none = {0};
    sg_signer_publish(key, &none, 0, body);
    struct evkeyvalq *headers = evhttp_request_get_output_headers(r->req);
    evhttp_add_header(headers, "Content-Type", "application/jwk-set+json");
    evhttp_add_header(headers, "Cache-Control", "max-age=60");
    sg_reply(r->req, 200, "OK", body);
    evbuffer_free(body);
    return 200;
}

enum methods {
    GET = 1 << 0,
    HEAD = 1 << 1,
    POST = 1 << 2,
    OTHER = 1 << 3,
    READ = GET | HEAD, /* a resource: HEAD answers as GET would, without the body */
};

/* What a state-changing endpoint must prove about where its request comes from (csrf.h). */
enum csrf {
    CSRF_NONE = 0,
    CSRF_SAME_ORIGIN, /* Origin (or Referer) is the public URL */
    CSRF_FORM,        /* that, and the form's csrf field equals its cookie (double submit) */
};

/*
 * The gateway's own endpoints, /_sso/<name>: the methods each takes, its
 * CSRF check (done here, before the handler) and the page refusing a wrong
 * method. The GETs that change state (a login's start and end, a
 * front-channel logout) take no HEAD: a HEAD, which some clients send to
 * check a link, must not use up a login or end a session. A handler sends
 * its answer and returns the status, or calls sg_request_wait and answers
 * later (0).
 */
static const struct {
    const char *name;
    unsigned methods;
    int (*handle)(struct sg_request *r);
    enum csrf csrf;
    const char *refusal[2]; /* the 405 page's title and message; NULL: 404 for other methods */
} endpoints[] = {
    {"healthz", READ, handle_healthz, CSRF_NONE, {NULL, NULL}},
    {"metrics", READ, handle_metrics, CSRF_NONE, {NULL, NULL}},
    {"jwks.json", READ, handle_jwks, CSRF_NONE, {NULL, NULL}},
    {"client-jwks.json", READ, handle_client_jwks, CSRF_NONE, {NULL, NULL}},
    {"login", GET, sg_login_start, CSRF_NONE, {NULL, NULL}},
    {"callback", GET, sg_login_callback, CSRF_NONE, {NULL, NULL}},
    {"logout", POST, sg_login_logout, CSRF_SAME_ORIGIN, {LOGOUT_405}},
    /* From the IdP, server to server (signed) or framed by it: no browser origin to check. */
    {"backchannel-logout", POST, sg_logout_backchannel, CSRF_NONE, {BACKCHANNEL_405}},
    {"frontchannel-logout", GET, sg_logout_frontchannel, CSRF_NONE, {NULL, NULL}},
    {"settings", READ, sg_settings_page, CSRF_NONE, {SETTINGS_GET_405}},
    {"status", READ, sg_settings_status, CSRF_NONE, {SETTINGS_GET_405}},
    {"tenant/enable", POST, sg_settings_tenant_enable, CSRF_FORM, {SETTINGS_POST_405}},
    {"tenant/disable", POST, sg_settings_tenant_disable, CSRF_FORM, {SETTINGS_POST_405}},
    {"user/enable", POST, sg_settings_user_enable, CSRF_FORM, {SETTINGS_POST_405}},
    {"user/disable", POST, sg_settings_user_disable, CSRF_FORM, {SETTINGS_POST_405}},
};

/* Refuses a request of endpoint name whose origin or token failed check: counted, logged, 403. */
static int refuse_csrf(struct sg_request *r, const char *name, enum csrf check,
                       enum sg_csrf_result why)
{
    sg_metrics_count("ssogate_csrf_refused_total", "endpoint", name);
    sg_log_fields(SG_LOG_WARN, "csrf",
                  (struct sg_log_field[]){SG_LOG_STR("request_id", r->id),
                                          SG_LOG_STR("endpoint", name),
                                          SG_LOG_STR("reason", sg_csrf_result_name(why))},
                  3);
    return sg_request_page(r, 403, "Request refused",
                           check == CSRF_FORM
                               ? "This request did not come from My Settings of this site, so "
                                 "nothing was changed. Open My Settings and try again."
                               : "This request did not come from this site, so it was refused.");
}

static enum sg_csrf_result csrf_result(struct sg_request *r, enum csrf check)
{
    const struct evkeyvalq *in = evhttp_request_get_input_headers(r->req);
    if (check == CSRF_SAME_ORIGIN)
        return sg_csrf_same_origin(r->snap->cfg, in);
    struct evbuffer *body = evhttp_request_get_input_buffer(r->req);
    size_t len = evbuffer_get_length(body);
    const char *form = len <= SG_CSRF_FORM_MAX ? (const char *)evbuffer_pullup(body, -1) : NULL;
    return sg_csrf_form(r->snap->cfg, in, form, form != NULL ? len : 0);
}

static unsigned method_of(const struct sg_request *r)
{
    switch (evhttp_request_get_command(r->req)) {
    case EVHTTP_REQ_GET:
        return GET;
    case EVHTTP_REQ_HEAD:
        return HEAD;
    case EVHTTP_REQ_POST:
        return POST;
    default:
        return OTHER;
    }
}

static int handle_sso(struct sg_request *r)
{
    const char *match = r->target.match;
    const char *name = strlen(match) >= strlen(SSO_PREFIX) ? match + strlen(SSO_PREFIX) : "";
    for (size_t i = 0; i < SG_ARRAY_LEN(endpoints); i++) {
        if (strcmp(endpoints[i].name, name) != 0)
            continue;
        if ((endpoints[i].methods & method_of(r)) != 0) {
            enum sg_csrf_result why =
                endpoints[i].csrf == CSRF_NONE ? SG_CSRF_OK : csrf_result(r, endpoints[i].csrf);
            if (why != SG_CSRF_OK)
                return refuse_csrf(r, endpoints[i].name, endpoints[i].csrf, why);
            return endpoints[i].handle(r);
        }
        if (endpoints[i].refusal[0] == NULL)
            break; /* a read-only resource: no such page for other methods */
        return sg_request_page(r, 405, endpoints[i].refusal[0], endpoints[i].refusal[1]);
    }
    return no_such_endpoint(r);
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

/* Whether match is the PSA's logout path, read as servers read it: with
 * repeated or trailing slashes ("/logout/", "/logout//"), which many route
 * to the same sign-out; the SSO session must end with it. */
static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool is_psa_logout(const struct sg_config *cfg, const char *match)
{
    bool fold = cfg->upstream.paths == SG_PATHS_CASE_INSENSITIVE;
    const char *m = match;
    for (const char *want = cfg->psa.logout_path; *want != '\0'; want++, m++) {
        if (*m != *want && !(fold && ascii_lower(*m) == ascii_lower(*want)))
            return false;
        while (*m == '/' && m[1] == '/')
            m++;
    }
    while (*m == '/')
        m++;
    return *m == '\0';
}

/*
 * The PSA's logout path: signing out of the PSA signs out of the gateway too,
 * every session the browser sent (sg_identity_end); the PSA still gets the
 * request, with the identity when there is one, to end its own (at once: its
 * answer is a round trip to the PSA, longer than the DELETE's). A page of
 * another site can send the browser there (a link, a redirect: Lax cookies go
 * along): that does not end the SSO session.
 */
static void psa_logout_end(struct sg_request *r, bool found, bool conflict)
{
    const char *fetch_site =
        evhttp_find_header(evhttp_request_get_input_headers(r->req), "Sec-Fetch-Site");
    if (fetch_site != NULL && evutil_ascii_strcasecmp(fetch_site, "cross-site") == 0) {
        sg_metrics_count("ssogate_csrf_refused_total", "endpoint", "psa_logout");
        sg_log_fields(SG_LOG_WARN, "logout",
                      (struct sg_log_field[]){SG_LOG_STR("request_id", r->id),
                                              SG_LOG_STR("result", "cross_site"),
                                              SG_LOG_STR("detail", "the SSO session is kept")},
                      3);
        return;
    }
    sg_identity_end(r->store, r->shared, NULL, r->snap->cfg, r->req, NULL, NULL);
    if (found || conflict)
        sg_metrics_count("ssogate_logouts_total", "result",
                         found ? "psa_logout" : "psa_logout_conflicting_cookies");
}
static int handle_proxied(struct sg_request *r)
{
    const struct sg_config *cfg = r->snap->cfg;
    const struct sg_route_config *route = route_of(cfg, &r->target);
    struct sg_store *store = r->store;
    struct sg_identity identity;
    bool found = false, conflict = false;

    bool psa_logout = is_psa_logout(cfg, r->target.match);
    if (route->auth != SG_AUTH_NONE || psa_logout) {
        int err = sg_identity_lookup(store, sg_runtime_session_writer(r->rt), r->shared, cfg,
                                     r->req, false, &identity);
        if (err == SG_ESTORE || err == SG_ENOSPACE)
            sg_metrics_error(SG_MERR_STORE);
        found = err == 0;
        conflict = err == SG_EEXIST;
    }
    if (route->auth == SG_AUTH_REQUIRED && conflict) {
        /* A redirect to log in would come back to the same cookies. */
        return sg_request_page(r, 400, "Conflicting sign-in cookies",
                               "Your browser sent sign-in cookies of different users, so none of "
                               "them is used. Clear this site's cookies and sign in again.");
    }
    if (route->auth == SG_AUTH_REQUIRED && !found) {
        if (sg_request_is_get(r) &&
            !sg_tunnel_is_handshake(r->req)) /* a WebSocket cannot follow it */
            return sg_login_redirect_required(r);
        return sg_request_page(r, 401, "Sign-in required",
                               "This page needs you to be signed in. Open it again to sign in.");
    }
    if (psa_logout)
        psa_logout_end(r, found, conflict);
    sg_proxy_forward(r, found ? &identity : NULL);
    if (found)
        sg_identity_clear(&identity);
    return 0;
}

/* Refuses a request whose framing or target cannot be trusted: a page, a log
 * line with the reason, a metric, and the connection closed after it. */
static int refuse(struct sg_request *r, int status, const char *reason, const char *detail,
                  const char *message)
{
    sg_metrics_error(SG_MERR_BAD_REQUEST);
    sg_metrics_count("ssogate_bad_requests_total", "reason", reason);
    sg_log_fields(SG_LOG_INFO, "bad_request",
                  (struct sg_log_field[]){SG_LOG_STR("request_id", r->id),
                                          SG_LOG_STR("reason", reason),
                                          SG_LOG_STR("detail", detail ? detail : "")},
                  detail ? 3 : 2);
    sg_headers_close_connection(evhttp_request_get_output_headers(r->req));
    return sg_request_page(r, status, sg_page_reason(status), message);
}

/* OPTIONS *: the server's own capabilities (RFC 9110 9.3.7); never forwarded. */
static int handle_asterisk(struct sg_request *r)
{
    struct evkeyvalq *headers = evhttp_request_get_output_headers(r->req);
    evhttp_add_header(headers, "Allow", "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH");
    evhttp_add_header(headers, "Content-Length", "0");
    sg_reply(r->req, 204, "No Content", NULL);
    return 204;
}

/*
 * Checks the header section and normalises the target into r->target.
 * Returns 0 when the request may go on, or the status of the refusal sent.
 */
static int check_request(struct sg_request *r)
{
    const struct sg_config *cfg = r->snap->cfg;
    struct evhttp_request *req = r->req;
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    if (sg_headers_wire_size(in) > cfg->limits.header_bytes) {
        sg_metrics_error(SG_MERR_HEADER_TOO_BIG);
        sg_log(SG_LOG_INFO, "header_too_big", "request headers over %u bytes refused",
               (unsigned)cfg->limits.header_bytes);
        /* Its other checks are not made: what follows it on the connection is not read. */
        sg_headers_close_connection(evhttp_request_get_output_headers(req));
        return sg_request_page(r, 431, "Request headers too large",
                               "The request carried more header data than this gateway accepts. "
                               "Clearing this site's cookies usually helps.");
    }
    bool http11 = req->major == 1 && req->minor >= 1;
    enum sg_headers_status hs = sg_headers_validate(in, http11);
    if (hs != SG_HEADERS_OK)
        return refuse(r, sg_headers_status_http(hs), sg_headers_status_name(hs), NULL,
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
        sg_target_normalize(raw ? raw : "", raw ? strlen(raw) : 0, &opts, &r->target);
    if (ts != SG_TARGET_OK)
        return refuse(r, 400, sg_target_status_name(ts), NULL,
                      "The address asked for is malformed or ambiguous.");
    /* What evhttp could not see: a NUL in a header line, a broken chunk (wire.h). */
    const char *wire = r->conn != NULL ? sg_conn_wire_error(r->conn) : NULL;
    if (wire != NULL)
        return refuse(r, 400, "malformed_wire", wire,
                      "The request's bytes are malformed: it was not read as sent.");
    return 0;
}

/* Hands a checked request to its handler; finishes it unless the handler waits. */
static void dispatch(struct sg_request *r)
{
    int status;
    if (r->target.asterisk)
        status = handle_asterisk(r);
    else if (sg_config_path_under(r->snap->cfg, r->target.match, "/_sso"))
        status = handle_sso(r);
    else
        status = handle_proxied(r);
    if (!sg_request_waiting(r))
        sg_request_finish(r, status, 0);
}

/*
 * With the shared store: the sessions a request's cookies name that this
 * host has not cached are fetched first, so every handler finds them in the
 * cache (pgstore.h). A fetch that fails leaves the session unknown here.
 */
#define PREFETCH_MAX 4

struct prefetch;
struct prefetch_slot {
    struct prefetch *p;
    struct sg_pgstore_op *op;
};
struct prefetch {
    struct sg_request *r;
    struct prefetch_slot slots[PREFETCH_MAX];
    size_t pending;
};

static void prefetch_done(void *arg, int err)
{
    struct prefetch_slot *slot = arg;
    struct prefetch *p = slot->p;
    slot->op = NULL;
    if (err != 0 && err != SG_ENOENT)
        sg_metrics_count("ssogate_shared_store_session_fetches_total", "result", "failed");
    if (--p->pending > 0)
        return;
    sg_request_resume(p->r);
    dispatch(p->r);
}

static void prefetch_gone(struct sg_request *r, void *arg)
{
    struct prefetch *p = arg;
    for (size_t i = 0; i < PREFETCH_MAX; i++) {
        sg_pgstore_cancel(p->slots[i].op);
        p->slots[i].op = NULL;
    }
}

static void prefetch_free(struct sg_request *r, void *arg)
{
    free(arg);
}

/* True when the request waits for sessions from the shared store. */
static bool prefetch(struct sg_request *r)
{
    char ids[PREFETCH_MAX][SG_SESSION_ID_SIZE];
    size_t count =
        sg_cookies_values(evhttp_request_get_input_headers(r->req), r->snap->cfg, SG_COOKIE_SESSION,
                          SG_SESSION_ID_LEN, &ids[0][0], PREFETCH_MAX);
    struct prefetch *p = NULL;
    for (size_t i = 0; i < count; i++) {
        if (!sg_session_id_valid(ids[i]) || sg_pgstore_session_cached(r->shared, ids[i]))
            continue;
        if (p == NULL) {
            p = sg_calloc(1, sizeof(*p));
            p->r = r;
        }
        struct prefetch_slot *slot = &p->slots[p->pending];
        slot->p = p;
        slot->op = sg_pgstore_session_fetch(r->shared, ids[i], prefetch_done, slot);
        if (slot->op != NULL)
            p->pending++;
    }
    OPENSSL_cleanse(ids, sizeof(ids));
    if (p == NULL || p->pending == 0) {
        free(p);
        return false;
    }
    sg_request_on_finish(r, prefetch_free, p);
    sg_request_wait(r, prefetch_gone, p);
    return true;
}

void sg_router_handle(struct evhttp_request *req, struct sg_conn *conn, void *arg)
{
    struct sg_runtime *rt = arg;
    struct sg_request *r =
        sg_request_begin(sg_runtime_requests(rt), rt, sg_runtime_snapshot(rt), req, conn);
    r->base = sg_runtime_base(rt);
    r->store = sg_runtime_store(rt);
    r->shared = sg_runtime_shared(rt);
    r->logins = sg_runtime_logins(rt);
    r->tunnels = sg_runtime_tunnels(rt);
    if (sg_request_draining(r))
        sg_headers_close_connection(evhttp_request_get_output_headers(req));
    int status = check_request(r);
    if (status != 0)
        sg_request_finish(r, status, 0);
    else if (r->shared == NULL || !prefetch(r))
        dispatch(r);
}
