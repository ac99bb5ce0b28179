#include "ssogate/logout.h"

#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/jose.h"
#include "ssogate/log.h"
#include "ssogate/metrics.h"
#include "ssogate/pgstore.h"
#include "ssogate/oidc.h"
#include "ssogate/pages.h"
#include "ssogate/request.h"
#include "ssogate/session.h"
#include "ssogate/snapshot.h"
#include "ssogate/store.h"

#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#define METRIC_BACK  "ssogate_backchannel_logouts_total"
#define METRIC_FRONT "ssogate_frontchannel_logouts_total"
#define FORM_MAX     (64 * 1024) /* a logout token is a few KB */
/*
 * How long a jti is remembered: longer than a logout token is accepted
 * (iat at most 600 s old, plus the clock skew), so a replay is refused
 * either as a replay or as too old.
 */
#define JTI_KEEP_S 3600

struct backchannel {
    struct sg_request *r;
    struct sg_oidc_exchange *verify;
    struct sg_pgstore_op *op; /* the shared store ends the sessions on every host */
    const char *channel;      /* "back" or "front" */
    const char *by;           /* "sid" or "sub" */
    size_t ended;
    /* Back-channel with the shared store: the token's jti, recorded in
     * PostgreSQL by the statement that ends the sessions (once per cluster). */
    unsigned char jti[SHA256_DIGEST_LENGTH];
};

static void count(const char *channel, const char *result)
{
    sg_metrics_count(strcmp(channel, "back") == 0 ? METRIC_BACK : METRIC_FRONT, "result", result);
}

static void log_line(const struct sg_request *r, const char *channel, const char *result,
                     const char *detail, int64_t ended)
{
    sg_log_fields(
        ended >= 0 ? SG_LOG_INFO : SG_LOG_WARN, "idp_logout",
        (struct sg_log_field[]){SG_LOG_STR("request_id", r->id), SG_LOG_STR("channel", channel),
                                SG_LOG_STR("result", result), SG_LOG_STR("detail", detail),
                                SG_LOG_INT("sessions_ended", ended < 0 ? 0 : ended)},
        5);
}

/* A back-channel refusal (Back-Channel Logout 1.0, 2.8): 400 and an OAuth-style JSON error. */
static int refuse(struct sg_request *r, int status, const char *result, const char *detail)
{
    count("back", result);
    log_line(r, "back", result, detail, -1);
    struct evbuffer *body = evbuffer_new();
    evbuffer_add_printf(body, "{\"error\":\"%s\",\"error_description\":\"%s\"}\n",
                        status == 400 ? "invalid_request" : "temporarily_unavailable", result);
    struct evkeyvalq *headers = evhttp_request_get_output_headers(r->req);
    evhttp_add_header(headers, "Content-Type", "application/json");
    evhttp_add_header(headers, "Cache-Control", "no-store");
    if (status == 503)
        evhttp_add_header(headers, "Retry-After", "5");
    sg_reply(r->req, status, status == 400 ? "Bad Request" : "Service Unavailable", body);
    evbuffer_free(body);
    return status;
}

/* The owner whose sessions a logout ends: the IdP session when the token names one, else the user.
 */
static int owner_of(const struct sg_config *cfg, const char *sid, const char *sub, char **owner)
{
    const char *issuer = cfg->idp->issuer.text; /* as sessions record it */
    return sid != NULL ? sg_session_owner_sid(issuer, sid, owner)
                       : sg_session_owner_idp(issuer, sub, owner);
}

/* The key of a token's jti in logout_jti (here, or PostgreSQL's table of that name). */
static void jti_key(const char *issuer, const char *jti, unsigned char key[SHA256_DIGEST_LENGTH])
{
    char *named = sg_asprintf("%s%c%s", issuer, '\0', jti); /* the NUL keeps it unambiguous */
    SHA256((const unsigned char *)named, strlen(issuer) + 1 + strlen(jti), key);
    free(named);
}

/* Remembers the jti of key in txn: SG_EEXIST when it was seen before. */
static int jti_put(struct sg_store_txn *txn, const unsigned char key[SHA256_DIGEST_LENGTH])
{
    unsigned char until[8];
    sg_store_put_be64(until, (uint64_t)(sg_now_s() + JTI_KEEP_S));
    return sg_store_put(txn, SG_STORE_DB_LOGOUT_JTI, key, SHA256_DIGEST_LENGTH, until,
                        sizeof(until), SG_STORE_NOOVERWRITE);
}

/*
 * Without the shared store: ends the sessions of owner here, in one durable
 * transaction with remembering a back-channel token's jti (key; NULL for the
 * front channel) and marking owner ended, so that a login of owner in flight
 * makes no session after this. SG_EEXIST: the jti was seen before. *ended
 * gets the number of sessions.
 */
static int end_sessions(struct sg_store *store, const unsigned char *key, const char *owner,
                        size_t *ended)
{
    struct sg_store_txn txn;
    int err = sg_store_txn_begin(store, true, &txn);
    if (err != 0)
        return err;
    err = key != NULL ? jti_put(&txn, key) : 0;
    if (err == 0)
        err = sg_session_mark_ended_txn(&txn, owner, sg_now_s());
    if (err == 0)
        err = sg_session_delete_by_owner_txn(&txn, owner, ended);
    if (err != 0) {
        sg_store_txn_abort(&txn);
        return err;
    }
    return sg_store_txn_commit(&txn, SG_STORE_DURABLE);
}

static int front_answer(struct sg_request *r, int status, const char *result, const char *detail,
                        int64_t ended);

/* The answer once the sessions were ended (err 0) or not. */
static int ended_answer(struct backchannel *b, int err)
{
    struct sg_request *r = b->r;
    bool front = strcmp(b->channel, "front") == 0;
    if (err != 0) {
        sg_metrics_error(SG_MERR_STORE);
        return front ? front_answer(r, 503, "store_error", sg_strerror(err), -1)
                     : refuse(r, 503, "store_error", sg_strerror(err));
    }
    if (front)
        return front_answer(r, 200, "ok", b->by, (int64_t)b->ended);
    count("back", "ok");
    log_line(r, "back", "ok", b->by, (int64_t)b->ended);
    evhttp_add_header(evhttp_request_get_output_headers(r->req), "Cache-Control", "no-store");
    sg_reply(r->req, 200, "OK", NULL);
    return 200;
}

static void on_shared_ended(void *arg, int err)
{
    struct backchannel *b = arg;
    b->op = NULL;
    if (err == SG_EEXIST) /* a back-channel token that some host accepted before */
        sg_request_finish(b->r, refuse(b->r, 400, "jti_replayed", "jti"), 0);
    else
        sg_request_finish(b->r, ended_answer(b, err), 0);
}

/*
 * With the shared store: the sessions of (issuer, sid or sub) end in
 * PostgreSQL, which tells every host; a back-channel token's jti is recorded
 * there in the same statement, so the cluster accepts it once and a failure
 * leaves it good for the IdP's retry. Returns 0 while it runs.
 */
static int end_shared(struct backchannel *b, const char *sid, const char *sub)
{
    const char *issuer = b->r->snap->cfg->idp->issuer.text;
    const char *value = sid != NULL ? sid : sub;
    if (strcmp(b->channel, "back") == 0)
        b->op = sg_pgstore_session_delete_owner_once(
            b->r->shared, sid != NULL, issuer, value, b->jti, sizeof(b->jti),
            sg_now_s() + JTI_KEEP_S, &b->ended, on_shared_ended, b);
    else
        b->op = sg_pgstore_session_delete_owner(b->r->shared, sid != NULL, issuer, value, &b->ended,
                                                on_shared_ended, b);
    return b->op != NULL ? 0 : ended_answer(b, SG_EINVAL);
}

static void on_verified(enum sg_oidc_status status, const char *detail, yajl_val claims,
                        const char *token, void *arg)
{
    struct backchannel *b = arg;
    struct sg_request *r = b->r;
    b->verify = NULL;
    if (status != SG_OIDC_OK) {
        sg_request_finish(r, refuse(r, 400, "token_invalid", detail), 0);
        return;
    }
    const struct sg_config *cfg = r->snap->cfg;
    const char *sid = sg_jwt_claim_string(claims, "sid");
    const char *sub = sg_jwt_claim_string(claims, "sub");
    char *owner = NULL;
    if (owner_of(cfg, sid, sub, &owner) != 0) {
        sg_request_finish(r, refuse(r, 400, "token_invalid", "sid_or_sub"), 0);
        return;
    }
    size_t ended = 0;
    jti_key(sg_jwt_claim_string(claims, "iss"), sg_jwt_claim_string(claims, "jti"), b->jti);
    /* With the shared store this host's copies end at once, and PostgreSQL
     * decides whether the jti is new. */
    int err = r->shared != NULL ? sg_session_delete_by_owner(r->store, owner, &ended)
                                : end_sessions(r->store, b->jti, owner, &ended);
    free(owner);
    if (err == SG_EEXIST) {
        sg_request_finish(r, refuse(r, 400, "jti_replayed", "jti"), 0);
        return;
    }
    b->by = sid != NULL ? "sid" : "sub";
    b->ended = ended;
    if (err == 0 && r->shared != NULL && end_shared(b, sid, sub) == 0)
        return; /* the request goes on waiting */
    sg_request_finish(r, ended_answer(b, err), 0);
}

static void on_gone(struct sg_request *r, void *arg)
{
    struct backchannel *b = arg;
    if (b->verify != NULL)
        sg_oidc_exchange_cancel(b->verify);
    b->verify = NULL;
    sg_pgstore_cancel(b->op);
    b->op = NULL;
}

static void backchannel_free(struct sg_request *r, void *arg)
{
    free(arg);
}

int sg_logout_backchannel(struct sg_request *r)
{
    const struct sg_snapshot *snap = r->snap;
    if (snap->oidc == NULL)
        return sg_request_page(r, 404, "Page not found", "This gateway has no identity provider.");
    struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
    size_t len = evbuffer_get_length(in);
    if (len == 0 || len > FORM_MAX)
        return refuse(r, 400, "bad_body", len == 0 ? "empty" : "too_big");
    char *form = sg_strndup((const char *)evbuffer_pullup(in, -1), len);
    struct evkeyvalq fields = TAILQ_HEAD_INITIALIZER(fields);
    const char *token = NULL;
    if (memchr(form, '\0', len) == NULL && evhttp_parse_query_str(form, &fields) == 0)
        token = evhttp_find_header(&fields, "logout_token");
    int status = 0;
    if (token == NULL || token[0] == '\0') {
        status = refuse(r, 400, "bad_body", "logout_token");
    } else {
        struct backchannel *b = sg_calloc(1, sizeof(*b));
        b->r = r;
        b->channel = "back";
        sg_request_on_finish(r, backchannel_free, b);
        b->verify = sg_oidc_verify_logout(snap->oidc, token, on_verified, b);
        if (b->verify == NULL)
            status = refuse(r, 503, "idp_not_ready", "discovery");
        else
            sg_request_wait(r, on_gone, b);
    }
    evhttp_clear_headers(&fields);
    free(form);
    return status;
}

static int front_answer(struct sg_request *r, int status, const char *result, const char *detail,
                        int64_t ended)
{
    count("front", result);
    log_line(r, "front", result, detail, ended);
    /* Framed by the IdP's logout page: framing allowed to the IdP's origin only, nothing cached. */
    const struct sg_url *idp = &r->snap->cfg->idp->issuer;
    bool v6 = strchr(idp->host, ':') != NULL;
    char *csp = sg_asprintf("default-src 'none'; frame-ancestors %s://%s%s%s:%u",
                            idp->https ? "https" : "http", v6 ? "[" : "", idp->host, v6 ? "]" : "",
                            (unsigned)idp->port);
    struct evkeyvalq *headers = evhttp_request_get_output_headers(r->req);
    evhttp_add_header(headers, "Content-Type", "text/html; charset=utf-8");
    evhttp_add_header(headers, "Cache-Control", "no-store");
    evhttp_add_header(headers, "Content-Security-Policy", csp);
    free(csp);
    struct evbuffer *body = evbuffer_new();
    evbuffer_add_printf(body, "<!doctype html><title>%s</title><p>%s</p>\n",
                        status == 200 ? "Signed out" : "Sign-out refused",
                        status == 200 ? "You are signed out of this application."
                                      : "This sign-out request is not valid.");
    sg_reply(r->req, status, status == 200 ? "OK" : "Bad Request", body);
    evbuffer_free(body);
    return status;
}

int sg_logout_frontchannel(struct sg_request *r)
{
    const struct sg_snapshot *snap = r->snap;
    if (snap->oidc == NULL)
        return sg_request_page(r, 404, "Page not found", "This gateway has no identity provider.");
    const char *iss = sg_request_param(r, "iss");
    const char *sid = sg_request_param(r, "sid");
    const char *issuer = sg_oidc_issuer(snap->oidc);
    if (iss == NULL || issuer == NULL || strcmp(iss, issuer) != 0)
        return front_answer(r, 400, "bad_request", "iss", -1);
    char *owner = NULL;
    if (sid == NULL || sg_session_owner_sid(snap->cfg->idp->issuer.text, sid, &owner) != 0)
        return front_answer(r, 400, "bad_request", "sid", -1);
    size_t ended = 0;
    /* With the shared store this host's copies end at once, and PostgreSQL marks the sid. */
    int err = r->shared != NULL ? sg_session_delete_by_owner(r->store, owner, &ended)
                                : end_sessions(r->store, NULL, owner, &ended);
    free(owner);
    if (err == 0 && r->shared != NULL) {
        struct backchannel *b = sg_calloc(1, sizeof(*b));
        b->r = r;
        b->channel = "front";
        b->by = "sid";
        sg_request_on_finish(r, backchannel_free, b);
        int status = end_shared(b, sid, NULL);
        if (status == 0)
            sg_request_wait(r, on_gone, b);
        return status;
    }
    if (err != 0) {
        sg_metrics_error(SG_MERR_STORE);
        return front_answer(r, 503, "store_error", sg_strerror(err), -1);
    }
    return front_answer(r, 200, "ok", "sid", (int64_t)ended);
}

/* A remembered jti past its keep-until time (or a record no build of ours wrote). */
static bool jti_doomed(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    const int64_t *now = arg;
    return vlen != 8 || (int64_t)sg_store_get_be64(val) <= *now;
}

int sg_logout_sweep(struct sg_store *store, int64_t now, size_t max, size_t *deleted)
{
    return sg_store_sweep(store, SG_STORE_DB_LOGOUT_JTI, max, jti_doomed, &now, deleted);
}
