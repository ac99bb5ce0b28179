#include "ssogate/login.h"

#include "ssogate/common.h"
#include "ssogate/cookies.h"
#include "ssogate/csrf.h"
#include "ssogate/identity.h"
#include "ssogate/jose.h"
#include "ssogate/json.h"
#include "ssogate/linking.h"
#include "ssogate/links.h"
#include "ssogate/loginstate.h"
#include "ssogate/log.h"
#include "ssogate/metrics.h"
#include "ssogate/oidc.h"
#include "ssogate/pages.h"
#include "ssogate/redirect.h"
#include "ssogate/router.h"
#include "ssogate/runtime.h"
#include "ssogate/server.h"
#include "ssogate/session.h"
#include "ssogate/token.h"
#include "ssogate/whoami.h"

#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN_SIZE     48
#define TOKEN_LEN      43 /* 32 random bytes in base64url */
#define LOGINS_METRIC  "ssogate_logins_total"
#define SWEEP_AT_LIMIT 1000 /* expired states dropped at once when the cap is reached */

/* A callback waiting for its code exchange. */
struct pending {
    struct sg_logins *logins;
    struct sg_snapshot *snap;
    struct evhttp_request *req;
    struct sg_conn *conn;
    struct sg_access access;
    struct sg_loginstate state;          /* taken from the store */
    struct sg_oidc_exchange *exchange;   /* while the code is exchanged */
    struct sg_whoami_request *whoami;    /* while the PSA is asked about the user (B9) */
    char session_id[SG_SESSION_ID_SIZE]; /* the session a successful login creates */
    struct sg_session session;
    struct pending *prev, *next;
};

struct sg_logins {
    struct sg_runtime *rt;
    struct pending *pending;
    size_t pending_count;
};

/*
 * Takes the login state called name out of the store into *out; counts an
 * expired one and a store failure. Returns 0 or an SG_E* code (see
 * sg_loginstate_take).
 */
static int state_take(struct sg_logins *logins, const char *name, struct sg_loginstate *out)
{
    int err = sg_loginstate_take(logins->rt->store, name, sg_now_s(), out);
    if (err == SG_ETIMEOUT)
        sg_metrics_count(LOGINS_METRIC, "result", "state_expired");
    else if (err != 0 && err != SG_ENOENT)
        sg_metrics_error(SG_MERR_STORE);
    return err;
}

size_t sg_logins_sweep(struct sg_logins *logins, int64_t now, size_t max)
{
    size_t deleted;
    if (sg_loginstate_sweep(logins->rt->store, now, max, &deleted) != 0)
        return 0;
    for (size_t i = 0; i < deleted; i++)
        sg_metrics_count(LOGINS_METRIC, "result", "state_expired");
    return deleted;
}

struct sg_logins *sg_logins_new(struct sg_runtime *rt)
{
    struct sg_logins *logins = sg_calloc(1, sizeof(*logins));
    logins->rt = rt;
    return logins;
}

static void pending_free(struct pending *p);

void sg_logins_free(struct sg_logins *logins)
{
    if (logins == NULL)
        return;
    while (logins->pending != NULL) {
        struct pending *p = logins->pending;
        if (p->exchange != NULL)
            sg_oidc_exchange_cancel(p->exchange);
        if (p->whoami != NULL)
            sg_whoami_cancel(p->whoami);
        sg_conn_on_close(p->conn, NULL, NULL);
        pending_free(p);
    }
    free(logins);
}

size_t sg_logins_count(struct sg_logins *logins)
{
    size_t kept;
    sg_loginstate_count(logins->rt->store, &kept); /* 0 when the store fails */
    return kept + logins->pending_count;
}

static const char *query_param(struct evkeyvalq *params, struct evhttp_request *req,
                               const char *name)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    if (TAILQ_EMPTY(params) && query != NULL)
        evhttp_parse_query_str(query, params);
    return evhttp_find_header(params, name);
}

static void redirect(struct evhttp_request *req, int status, const char *location)
{
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Location", location);
    evhttp_add_header(headers, "Cache-Control", "no-store");
    evhttp_send_reply(req, status, sg_page_reason(status), NULL);
}

/* To the PSA's own login page with a notice the gateway shows there (B11). */
static int redirect_to_psa_login(struct evhttp_request *req, const struct sg_config *cfg,
                                 const char *notice)
{
    char *location = sg_asprintf("%s?sso_notice=%s", cfg->psa.login_path, notice);
    redirect(req, 302, location);
    free(location);
    return 302;
}

static int too_busy(struct evhttp_request *req, const char *request_id, const char *why)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "5");
    sg_page_send(req, 503, "Sign-in is busy",
                 "Too many sign-ins are in progress right now. Please try again in a few "
                 "seconds.",
                 request_id);
    sg_metrics_count(LOGINS_METRIC, "result", why);
    return 503;
}

int sg_login_begin(struct sg_runtime *rt, struct evhttp_request *req, const char *request_id,
                   enum sg_login_purpose purpose, const char *return_to, const char *psa_tenant,
                   const char *psa_user, int status)
{
    const struct sg_snapshot *snap = rt->current;
    const struct sg_config *cfg = snap->cfg;
    struct sg_logins *logins = rt->logins;

    if (snap->oidc == NULL) {
        sg_page_send(req, 404, "Single sign-on is not configured",
                     "This gateway has no identity provider configured.", request_id);
        return 404;
    }
    if (!sg_oidc_ready(snap->oidc))
        return too_busy(req, request_id, "idp_not_ready");
    if (sg_logins_count(logins) >= cfg->limits.logins_in_flight &&
        (sg_logins_sweep(logins, sg_now_s(), SWEEP_AT_LIMIT) == 0 ||
         sg_logins_count(logins) >= cfg->limits.logins_in_flight))
        return too_busy(req, request_id, "too_many_in_flight");

    char binding[TOKEN_SIZE];
    bool new_binding = !sg_cookies_get(evhttp_request_get_input_headers(req), cfg, SG_COOKIE_LOGIN,
                                       binding, TOKEN_LEN);
    if (new_binding)
        sg_random_token(32, binding, sizeof(binding));

    struct sg_loginstate s = {
        .return_to = sg_strdup(return_to),
        .purpose = purpose,
        .psa_tenant = psa_tenant ? sg_strdup(psa_tenant) : NULL,
        .psa_user = psa_user ? sg_strdup(psa_user) : NULL,
        .created = sg_now_s(),
    };
    sg_random_token(32, s.state, sizeof(s.state));
    sg_random_token(32, s.nonce, sizeof(s.nonce));
    sg_random_token(32, s.verifier, sizeof(s.verifier));
    SHA256((const unsigned char *)binding, strlen(binding), s.binding);
    int err = sg_loginstate_put(rt->store, &s);
    if (err != 0) {
        sg_metrics_error(SG_MERR_STORE);
        sg_log(SG_LOG_ERROR, "login", "login state not stored: %s", sg_strerror(err));
        sg_loginstate_clear(&s);
        return too_busy(req, request_id, "store_error");
    }

    char challenge[SG_PKCE_CHALLENGE_LEN + 1];
    sg_pkce_challenge_s256(s.verifier, strlen(s.verifier), challenge);
    const char *endpoint = sg_oidc_authorization_endpoint(snap->oidc);
    char *client_id = evhttp_uriencode(cfg->idp->client_id, -1, 0);
    char *redirect_uri = evhttp_uriencode(sg_oidc_redirect_uri(snap->oidc), -1, 0);
    struct evbuffer *scope = evbuffer_new();
    for (char **sc = cfg->idp->scopes; *sc != NULL; sc++)
        evbuffer_add_printf(scope, "%s%s", sc == cfg->idp->scopes ? "" : " ", *sc);
    evbuffer_add(scope, "", 1);
    char *scope_enc = evhttp_uriencode((const char *)evbuffer_pullup(scope, -1), -1, 0);
    char *location = sg_asprintf("%s%sresponse_type=code&client_id=%s&redirect_uri=%s&scope=%s"
                                 "&state=%s&nonce=%s&code_challenge=%s"
                                 "&code_challenge_method=S256",
                                 endpoint, strchr(endpoint, '?') ? "&" : "?", client_id,
                                 redirect_uri, scope_enc, s.state, s.nonce, challenge);
    if (new_binding)
        sg_cookies_set(evhttp_request_get_output_headers(req), cfg, SG_COOKIE_LOGIN, binding);
    redirect(req, status, location);
    sg_metrics_count(LOGINS_METRIC, "result", "started");
    OPENSSL_cleanse(binding, sizeof(binding));
    free(location);
    free(scope_enc);
    evbuffer_free(scope);
    free(client_id);
    free(redirect_uri);
    sg_loginstate_clear(&s);
    return status;
}

int sg_login_start(struct sg_runtime *rt, struct evhttp_request *req, const char *request_id)
{
    struct evkeyvalq params = TAILQ_HEAD_INITIALIZER(params);
    const char *return_to = query_param(&params, req, "return_to");
    int status;
    if (return_to == NULL)
        return_to = rt->current->cfg->psa.home_path;
    if (!sg_redirect_target_valid(return_to)) {
        sg_metrics_error(SG_MERR_BAD_REQUEST);
        sg_metrics_count(LOGINS_METRIC, "result", "bad_return_to");
        sg_page_send(req, 400, "Invalid return address",
                     "Sign-in can only return to a page of this site.", request_id);
        status = 400;
    } else {
        status = sg_login_begin(rt, req, request_id, SG_LOGIN_SESSION, return_to, NULL, NULL, 302);
    }
    evhttp_clear_headers(&params);
    return status;
}

static void pending_free(struct pending *p)
{
    struct sg_logins *logins = p->logins;
    logins->rt->requests_in_flight--;
    if (p->prev)
        p->prev->next = p->next;
    else
        logins->pending = p->next;
    if (p->next)
        p->next->prev = p->prev;
    logins->pending_count--;
    sg_loginstate_clear(&p->state);
    sg_session_clear(&p->session);
    OPENSSL_cleanse(p->session_id, sizeof(p->session_id));
    sg_access_clear(&p->access);
    sg_snapshot_unref(p->snap);
    free(p);
}

/* The browser left while its code was being exchanged. */
static void on_pending_client_close(void *arg)
{
    struct pending *p = arg;
    if (p->exchange != NULL)
        sg_oidc_exchange_cancel(p->exchange);
    if (p->whoami != NULL)
        sg_whoami_cancel(p->whoami);
    sg_request_free_orphan(p->req);
    sg_metrics_count(LOGINS_METRIC, "result", "client_gone");
    pending_free(p);
}

/* The claims' string value of a configured claim name, or NULL. */
static const char *claim(yajl_val claims, const char *name)
{
    return name != NULL ? sg_jwt_claim_string(claims, name) : NULL;
}

/* Creates the session of a successful login and sends the browser on. */
static char *dup_or_null(const char *s)
{
    return s != NULL ? sg_strdup(s) : NULL;
}

/* Prepares the session a successful login will create (p->session, p->session_id). */
static void session_prepare(struct pending *p, yajl_val claims, const char *id_token,
                            const char *psa_tenant, const char *psa_user)
{
    const struct sg_config *cfg = p->snap->cfg;
    int64_t now = sg_now_s();
    sg_session_new_id(p->session_id);
    p->session = (struct sg_session){
        .created_at = now,
        .last_seen = now,
        .idle_timeout_s = cfg->session.idle_timeout_s,
        .expires_at = now + cfg->session.absolute_timeout_s,
        .idp_issuer = sg_strdup(cfg->idp->issuer.text),
        .idp_sub = dup_or_null(sg_jwt_claim_string(claims, "sub")),
        .idp_tenant = dup_or_null(claim(claims, cfg->idp->claims.tenant)),
        .email = dup_or_null(claim(claims, cfg->idp->claims.email)),
        .psa_tenant = dup_or_null(psa_tenant),
        .psa_user = dup_or_null(psa_user),
        .id_token = strlen(id_token) <= SG_SESSION_ID_TOKEN_MAX ? sg_strdup(id_token) : NULL,
    };
}

/* Stores the prepared session and sends the browser on with its cookie. */
static int finish_session(struct pending *p)
{
    const struct sg_config *cfg = p->snap->cfg;
    struct sg_runtime *rt = p->logins->rt;
    int err = sg_session_create(rt->store, p->session_id, &p->session);
    if (err != 0) {
        sg_metrics_error(SG_MERR_STORE);
        sg_metrics_count(LOGINS_METRIC, "result", "store_error");
        sg_log(SG_LOG_ERROR, "login", "session not stored: %s", sg_strerror(err));
        sg_page_send(p->req, 500, "Sign-in could not be completed",
                     "The gateway could not record your session. Please try again.",
                     p->access.request_id);
        return 500;
    }
    sg_cookies_set(evhttp_request_get_output_headers(p->req), cfg, SG_COOKIE_SESSION,
                   p->session_id);
    sg_metrics_count(LOGINS_METRIC, "result", "ok");
    sg_log_fields(SG_LOG_INFO, "login",
                  (struct sg_log_field[]){SG_LOG_STR("request_id", p->access.request_id),
                                          SG_LOG_STR("result", "ok"),
                                          SG_LOG_STR("idp_tenant", p->session.idp_tenant),
                                          SG_LOG_STR("psa_tenant", p->session.psa_tenant),
                                          SG_LOG_STR("psa_user", p->session.psa_user)},
                  5);
    redirect(p->req, 302, p->state.return_to);
    return 302;
}

/* The strings of a claim: v itself, the strings of an array and, with
 * objects, the string values of an object. Hands back a new array of
 * pointers borrowed from v (caller frees), their number in *count. */
static const char **claim_strings(yajl_val v, bool objects, size_t *count)
{
    size_t len = YAJL_IS_STRING(v)              ? 1
                 : YAJL_IS_ARRAY(v)             ? v->u.array.len
                 : objects && YAJL_IS_OBJECT(v) ? v->u.object.len
                                                : 0;
    const char **out = sg_calloc(len + 1, sizeof(*out));
    *count = 0;
    for (size_t i = 0; i < len; i++) {
        yajl_val item = YAJL_IS_STRING(v)  ? v
                        : YAJL_IS_ARRAY(v) ? v->u.array.values[i]
                                           : v->u.object.values[i];
        if (YAJL_IS_STRING(item))
            out[(*count)++] = item->u.string;
    }
    return out;
}

/* What the ID token says, for linking.c; strings borrowed from claims. */
struct token {
    struct sg_linking_token facts;
    const char **module_urls; /* owned */
    const char **amr;         /* owned */
};

static void token_read(const struct sg_config *cfg, yajl_val claims, struct token *t)
{
    bool master = false, active = true;
    t->module_urls = claim_strings(sg_json_member(claims, cfg->idp->claims.module_urls), true,
                                   &t->facts.module_url_count);
    t->amr = claim_strings(sg_json_member(claims, "amr"), false, &t->facts.amr_count);
    t->facts.module_urls = t->module_urls;
    t->facts.amr = t->amr;
    t->facts.sub = sg_jwt_claim_string(claims, "sub");
    t->facts.idp_tenant = claim(claims, cfg->idp->claims.tenant);
    t->facts.master = sg_jwt_claim_bool(claims, cfg->idp->claims.master, &master) == 0 && master;
    t->facts.active =
        !(sg_jwt_claim_bool(claims, cfg->idp->claims.active, &active) == 0 && !active);
}

static void token_clear(struct token *t)
{
    free(t->module_urls);
    free(t->amr);
}

static struct sg_linking_rules rules_of(const struct sg_config *cfg)
{
    return (struct sg_linking_rules){.required_amr = (const char *const *)cfg->required_amr,
                                     .module_url = cfg->region.module_url};
}

static void log_link(struct pending *p, const char *what, const char *result,
                     const char *idp_tenant)
{
    sg_log_fields(SG_LOG_INFO, "link",
                  (struct sg_log_field[]){SG_LOG_STR("request_id", p->access.request_id),
                                          SG_LOG_STR("link", what), SG_LOG_STR("result", result),
                                          SG_LOG_STR("psa_tenant", p->state.psa_tenant),
                                          SG_LOG_STR("psa_user", p->state.psa_user),
                                          SG_LOG_STR("idp_tenant", idp_tenant)},
                  6);
}

/* Answers the callback as linking.c's table says for decision: its log
 * lines, counters and page or redirect. Returns the status sent, or 0 when
 * the caller goes on. */
static int answer(struct pending *p, enum sg_linking_decision decision, const char *idp_tenant)
{
    const struct sg_linking_answer *a = sg_linking_answer(decision);
    const struct sg_config *cfg = p->snap->cfg;
    if (a->log_reason != NULL)
        sg_log_fields(SG_LOG_WARN, "login",
                      (struct sg_log_field[]){SG_LOG_STR("request_id", p->access.request_id),
                                              SG_LOG_STR("result", a->log_reason)},
                      2);
    if (a->link != NULL)
        log_link(p, a->link, a->link_result, idp_tenant);
    if (a->links_result != NULL)
        sg_metrics_count("ssogate_links_total", "result", a->links_result);
    if (a->login_result != NULL)
        sg_metrics_count(LOGINS_METRIC, "result", a->login_result);
    if (a->status == 0)
        return 0;
    if (a->notice != NULL)
        return redirect_to_psa_login(p->req, cfg, a->notice);
    if (a->location != NULL) {
        redirect(p->req, a->status, a->location);
        return a->status;
    }
    char *message = a->names_module_url
                        ? sg_asprintf("%s%s%s", a->message, cfg->region.module_url, a->tail)
                        : sg_strdup(a->message);
    sg_page_send(p->req, a->status, a->title, message, p->access.request_id);
    free(message);
    return a->status;
}

static int store_failure(struct pending *p, int err)
{
    sg_metrics_error(SG_MERR_STORE);
    sg_log(SG_LOG_ERROR, "link", "store: %s", sg_strerror(err));
    sg_page_send(p->req, 500, "The link could not be saved",
                 "The gateway could not record the link. Nothing was changed; please try again.",
                 p->access.request_id);
    return 500;
}

/* A lookup's result as linking.c reads it: 0 (found), or not found for
 * SG_ENOENT and for an id that no link can hold; else the store failed. */
static int looked_up(int err)
{
    return err == SG_ENOENT || err == SG_EINVAL ? 0 : err;
}

/* B1, B2, B4: the PSA tenant of an admin joins the IdP tenant of a master account. */
static int link_tenant(struct pending *p, const struct sg_linking_token *token)
{
    const struct sg_config *cfg = p->snap->cfg;
    struct sg_store *store = p->logins->rt->store;
    struct sg_linking_rules rules = rules_of(cfg);
    char *tenant_idp = NULL, *tenant_psa = NULL;
    int err = 0;
    if (token->idp_tenant != NULL) {
        err = looked_up(sg_links_tenant_get_by_psa(store, p->state.psa_tenant, &tenant_idp));
        if (err == 0)
            err = looked_up(sg_links_tenant_get_by_idp(store, token->idp_tenant, &tenant_psa));
    }
    struct sg_linking_links links = {.tenant_idp = tenant_idp, .tenant_psa = tenant_psa};
    enum sg_linking_decision decision =
        sg_linking_tenant(&rules, token, p->state.psa_tenant, &links);
    free(tenant_idp);
    free(tenant_psa);
    if (decision == SG_LINKING_TENANT_LINK && err == 0) {
        err = sg_links_tenant_put(store, p->state.psa_tenant, token->idp_tenant);
        if (err == SG_EEXIST) {
            decision = SG_LINKING_TENANT_ALREADY_MAPPED;
            err = 0;
        }
    }
    if (err != 0)
        return store_failure(p, err);
    return answer(p, decision, token->idp_tenant);
}

/* B5, B10: the PSA user joins the IdP user, then is signed in. */
static int link_user(struct pending *p, const struct sg_linking_token *token, yajl_val claims,
                     const char *id_token)
{
    const struct sg_config *cfg = p->snap->cfg;
    struct sg_store *store = p->logins->rt->store;
    struct sg_linking_rules rules = rules_of(cfg);
    const char *psa_tenant = p->state.psa_tenant, *psa_user = p->state.psa_user;
    char *tenant_idp = NULL, *user_idp_tenant = NULL, *user_idp_sub = NULL;
    char *user_psa_tenant = NULL, *user_psa_user = NULL;

    int err = sg_links_tenant_get_by_psa(store, psa_tenant, &tenant_idp);
    if (err == SG_ENOENT)
        err = 0;
    /* B10 needs both users' links, once the tenant is linked. */
    if (err == 0 && tenant_idp != NULL && token->idp_tenant != NULL) {
        err = looked_up(
            sg_links_user_get_by_psa(store, psa_tenant, psa_user, &user_idp_tenant, &user_idp_sub));
        if (err == 0)
            err = looked_up(sg_links_user_get_by_idp(store, token->idp_tenant, token->sub,
                                                     &user_psa_tenant, &user_psa_user));
    }
    struct sg_linking_links links = {.tenant_idp = tenant_idp,
                                     .user_idp_tenant = user_idp_tenant,
                                     .user_idp_sub = user_idp_sub,
                                     .user_psa_tenant = user_psa_tenant,
                                     .user_psa_user = user_psa_user};
    enum sg_linking_decision decision =
        sg_linking_user(&rules, token, psa_tenant, psa_user, &links);
    free(tenant_idp);
    free(user_idp_tenant);
    free(user_idp_sub);
    free(user_psa_tenant);
    free(user_psa_user);
    if (decision == SG_LINKING_USER_LINK && err == 0) {
        err = sg_links_user_put(store, psa_tenant, psa_user, token->idp_tenant, token->sub);
        if (err == SG_EEXIST) {
            decision = SG_LINKING_USER_ALREADY_LINKED;
            err = 0;
        }
    }
    if (err != 0)
        return store_failure(p, err);
    int status = answer(p, decision, token->idp_tenant);
    if (status != 0)
        return status;
    session_prepare(p, claims, id_token, psa_tenant, psa_user);
    return finish_session(p);
}

static void callback_done(struct pending *p, int http_status);

/* The PSA's answer about the user of a login (link mode): staff only (B9). */
static void on_login_whoami(enum sg_whoami_error err, const struct sg_psa_user *user, void *arg)
{
    struct pending *p = arg;
    p->whoami = NULL;
    bool reachable = err == SG_WHOAMI_OK || err == SG_WHOAMI_UNAUTHENTICATED;
    struct sg_linking_caller caller = {0};
    if (err == SG_WHOAMI_OK)
        caller = (struct sg_linking_caller){.tenant = user->tenant,
                                            .user = user->user,
                                            .admin = user->admin,
                                            .staff = user->staff,
                                            .active = user->active};
    enum sg_linking_decision decision =
        sg_linking_login_psa(err == SG_WHOAMI_OK ? &caller : NULL, reachable);
    if (!reachable)
        sg_metrics_count("ssogate_whoami_errors_total", "reason", sg_whoami_error_name(err));
    int status = answer(p, decision, NULL);
    if (status == 0)
        status = finish_session(p);
    callback_done(p, status);
}

/* Step 7 of the callback's decision order for a login (B6), with the token's
 * checks before it; 0 when the answer waits for the PSA. */
static int login(struct pending *p, const struct sg_linking_token *token, yajl_val claims,
                 const char *id_token)
{
    const struct sg_config *cfg = p->snap->cfg;
    struct sg_linking_rules rules = rules_of(cfg);
    char *psa_tenant = NULL, *psa_user = NULL;
    if (token->idp_tenant != NULL &&
        sg_links_user_get_by_idp(p->logins->rt->store, token->idp_tenant, token->sub, &psa_tenant,
                                 &psa_user) != 0) {
        free(psa_tenant);
        free(psa_user);
        psa_tenant = psa_user = NULL;
    }
    struct sg_linking_links links = {.user_psa_tenant = psa_tenant, .user_psa_user = psa_user};
    int result = answer(p, sg_linking_login(&rules, token, &links), token->idp_tenant);
    if (result == 0) {
        /* B9 and the PSA's own view of the user: ask the PSA who this
         * session would be, with the assertion the session will carry. */
        session_prepare(p, claims, id_token, psa_tenant, psa_user);
        struct sg_identity identity = {.session = p->session};
        memcpy(identity.session_id, p->session_id, sizeof(p->session_id));
        struct evkeyvalq headers = TAILQ_HEAD_INITIALIZER(headers);
        sg_identity_add_headers(p->snap, &identity, &headers);
        struct sg_whoami_query query = {.base = p->logins->rt->base,
                                        .pool = p->snap->upstream,
                                        .cfg = p->snap->cfg,
                                        .caller = evhttp_request_get_input_headers(p->req),
                                        .identity = &headers};
        p->whoami = sg_whoami_fetch(&query, on_login_whoami, p);
        evhttp_clear_headers(&headers);
    }
    free(psa_tenant);
    free(psa_user);
    return result;
}

/* Steps 3 to 7 of the callback's decision order, once the code is exchanged;
 * 0 when the answer waits for the PSA. */
static int decide(struct pending *p, enum sg_oidc_status status, const char *detail,
                  yajl_val claims, const char *id_token)
{
    const struct sg_config *cfg = p->snap->cfg;

    if (status == SG_OIDC_TOKEN_UNREACHABLE || status == SG_OIDC_TOKEN_ERROR ||
        status == SG_OIDC_NO_ID_TOKEN) {
        sg_log_fields(SG_LOG_WARN, "login",
                      (struct sg_log_field[]){SG_LOG_STR("request_id", p->access.request_id),
                                              SG_LOG_STR("result", sg_oidc_status_name(status)),
                                              SG_LOG_STR("detail", detail)},
                      3);
        sg_metrics_count(LOGINS_METRIC, "result", sg_oidc_status_name(status));
        char *retry = evhttp_uriencode(p->state.return_to, -1, 0);
        char *message = sg_asprintf("The identity provider did not complete the sign-in. "
                                    "Please try again: /_sso/login?return_to=%s",
                                    retry);
        sg_page_send(p->req, 502, "Sign-in failed", message, p->access.request_id);
        free(message);
        free(retry);
        return 502;
    }
    if (status != SG_OIDC_OK) {
        sg_log_fields(SG_LOG_WARN, "login",
                      (struct sg_log_field[]){SG_LOG_STR("request_id", p->access.request_id),
                                              SG_LOG_STR("result", "token_invalid"),
                                              SG_LOG_STR("detail", detail)},
                      3);
        sg_metrics_count("ssogate_id_token_rejected_total", "reason", detail);
        sg_metrics_count(LOGINS_METRIC, "result", "token_invalid");
        sg_page_send(p->req, 401, "Sign-in refused",
                     "The identity provider's answer could not be verified, so you were not "
                     "signed in. Please try again; if it keeps happening, contact your "
                     "administrator.",
                     p->access.request_id);
        return 401;
    }

    struct token token = {0};
    token_read(cfg, claims, &token);
    struct sg_linking_rules rules = rules_of(cfg);
    /* Steps 5 and 6 come before any store lookup of step 7. */
    int result = answer(p, sg_linking_check_token(&rules, &token.facts), NULL);
    if (result == 0 && p->state.purpose == SG_LOGIN_LINK_TENANT) {
        result = link_tenant(p, &token.facts);
    } else if (result == 0 && p->state.purpose == SG_LOGIN_LINK_USER) {
        result = link_user(p, &token.facts, claims, id_token);
    } else if (result == 0 && cfg->identity == SG_IDENTITY_CLAIMS) {
        session_prepare(p, claims, id_token, NULL, NULL);
        result = finish_session(p);
    } else if (result == 0) {
        result = login(p, &token.facts, claims, id_token);
    }
    token_clear(&token);
    return result;
}

/* The end of a callback: its access line, and the pending state freed. */
static void callback_done(struct pending *p, int http_status)
{
    sg_conn_on_close(p->conn, NULL, NULL);
    sg_metrics_response(http_status);
    if (p->snap->cfg->access_log)
        sg_access_log(&p->access, http_status, 0, 0);
    pending_free(p);
}

static void on_exchanged(enum sg_oidc_status status, const char *detail, yajl_val claims,
                         const char *id_token, void *arg)
{
    struct pending *p = arg;
    p->exchange = NULL;
    int http_status = decide(p, status, detail, claims, id_token);
    if (http_status != 0)
        callback_done(p, http_status);
}

int sg_login_callback(struct sg_runtime *rt, struct evhttp_request *req, struct sg_conn *conn,
                      struct sg_access *access)
{
    struct sg_snapshot *snap = rt->current;
    const struct sg_config *cfg = snap->cfg;
    struct sg_logins *logins = rt->logins;
    struct evkeyvalq params = TAILQ_HEAD_INITIALIZER(params);
    struct sg_loginstate s = {0};
    int status;

    if (snap->oidc == NULL) {
        sg_page_send(req, 404, "Single sign-on is not configured",
                     "This gateway has no identity provider configured.", access->request_id);
        status = 404;
        goto end;
    }
    const char *state = query_param(&params, req, "state");
    bool taken = state != NULL && state_take(logins, state, &s) == 0;
    char binding[TOKEN_SIZE];
    unsigned char binding_hash[SHA256_DIGEST_LENGTH];
    bool bound = taken && sg_cookies_get(evhttp_request_get_input_headers(req), cfg,
                                         SG_COOKIE_LOGIN, binding, TOKEN_LEN);
    if (bound) {
        SHA256((const unsigned char *)binding, strlen(binding), binding_hash);
        bound = sg_memeq_ct(binding_hash, s.binding, sizeof(binding_hash));
    }
    if (!bound) {
        sg_metrics_count(LOGINS_METRIC, "result", taken ? "state_unbound" : "state_unknown");
        sg_log_fields(SG_LOG_WARN, "login",
                      (struct sg_log_field[]){
                          SG_LOG_STR("request_id", access->request_id),
                          SG_LOG_STR("result", taken ? "state_unbound" : "state_unknown")},
                      2);
        sg_page_send(req, 400, "This sign-in link is no longer valid",
                     "It has expired, was already used, or was started in another browser. "
                     "Go back to the application and sign in again.",
                     access->request_id);
        status = 400;
        goto end;
    }
    const char *error = evhttp_find_header(&params, "error");
    if (error != NULL) {
        sg_metrics_count(LOGINS_METRIC, "result", "idp_error");
        sg_log_fields(SG_LOG_INFO, "login",
                      (struct sg_log_field[]){SG_LOG_STR("request_id", access->request_id),
                                              SG_LOG_STR("result", "idp_error")},
                      2);
        status = redirect_to_psa_login(req, cfg,
                                       strcmp(error, "access_denied") == 0 ? "denied" : "failed");
        goto end;
    }
    const char *code = evhttp_find_header(&params, "code");
    if (code == NULL || *code == '\0' || strlen(code) > 4096) {
        sg_metrics_count(LOGINS_METRIC, "result", "no_code");
        sg_page_send(req, 400, "Sign-in incomplete",
                     "The identity provider sent no authorization code. Please sign in again.",
                     access->request_id);
        status = 400;
        goto end;
    }

    struct pending *p = sg_calloc(1, sizeof(*p));
    p->logins = logins;
    /* In flight until its answer is sent: a drain waits for it. */
    logins->rt->requests_in_flight++;
    p->snap = sg_snapshot_ref(snap);
    p->req = req;
    p->conn = conn;
    p->access = *access;
    p->state = s;
    memset(&s, 0, sizeof(s)); /* handed to p */
    p->next = logins->pending;
    if (logins->pending)
        logins->pending->prev = p;
    logins->pending = p;
    logins->pending_count++;
    p->exchange =
        sg_oidc_exchange_code(snap->oidc, code, p->state.verifier, p->state.nonce, on_exchanged, p);
    if (p->exchange == NULL) {
        *access = p->access; /* handed back: the router logs this one */
        memset(&p->access.target, 0, sizeof(p->access.target));
        status = too_busy(req, access->request_id, "idp_not_ready");
        pending_free(p);
        goto end;
    }
    sg_conn_on_close(conn, on_pending_client_close, p);
    status = 0;

end:
    sg_loginstate_clear(&s);
    evhttp_clear_headers(&params);
    return status;
}

int sg_login_logout(struct sg_runtime *rt, struct evhttp_request *req, const char *request_id)
{
    const struct sg_snapshot *snap = rt->current;
    const struct sg_config *cfg = snap->cfg;

    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        sg_page_send(req, 405, "Use the sign-out button",
                     "Signing out needs a POST from this site's pages.", request_id);
        return 405;
    }
    enum sg_csrf_result csrf = sg_csrf_same_origin(cfg, evhttp_request_get_input_headers(req));
    if (csrf != SG_CSRF_OK) {
        sg_metrics_count("ssogate_csrf_refused_total", "endpoint", "logout");
        sg_log_fields(SG_LOG_WARN, "csrf",
                      (struct sg_log_field[]){SG_LOG_STR("request_id", request_id),
                                              SG_LOG_STR("endpoint", "logout"),
                                              SG_LOG_STR("reason", sg_csrf_result_name(csrf))},
                      3);
        sg_page_send(req, 403, "Request refused",
                     "This request did not come from this site, so it was refused.", request_id);
        return 403;
    }
    struct sg_identity identity;
    char *location = NULL;
    if (sg_identity_lookup(rt, cfg, req, &identity) == 0) {
        sg_identity_end(rt, cfg, &identity, req);
        const char *end_session = snap->oidc ? sg_oidc_end_session_endpoint(snap->oidc) : NULL;
        if (end_session != NULL) {
            char *hint = identity.session.id_token
                             ? evhttp_uriencode(identity.session.id_token, -1, 0)
                             : NULL;
            char *post_logout = sg_asprintf("%s/", cfg->public_url.text);
            char *post_logout_enc = evhttp_uriencode(post_logout, -1, 0);
            char *client_id = evhttp_uriencode(cfg->idp->client_id, -1, 0);
            location = sg_asprintf("%s%sclient_id=%s&post_logout_redirect_uri=%s%s%s", end_session,
                                   strchr(end_session, '?') ? "&" : "?", client_id, post_logout_enc,
                                   hint ? "&id_token_hint=" : "", hint ? hint : "");
            free(hint);
            free(post_logout);
            free(post_logout_enc);
            free(client_id);
        }
        sg_identity_clear(&identity);
        sg_metrics_count("ssogate_logouts_total", "result", "ok");
    }
    redirect(req, 303, location ? location : "/");
    free(location);
    return 303;
}

int sg_login_redirect_required(struct sg_runtime *rt, struct evhttp_request *req,
                               const struct sg_target *target)
{
    char *uri = sg_target_origin_form(target);
    char *return_to = evhttp_uriencode(sg_redirect_target_valid(uri) ? uri : "/", -1, 0);
    free(uri);
    char *location = sg_asprintf("/_sso/login?return_to=%s", return_to);
    redirect(req, 302, location);
    free(location);
    free(return_to);
    return 302;
}
