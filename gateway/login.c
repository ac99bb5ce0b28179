#include "ssogate/login.h"

#include "ssogate/claimheaders.h"
#include "ssogate/common.h"
#include "ssogate/cookies.h"
#include "ssogate/identity.h"
#include "ssogate/jose.h"
#include "ssogate/json.h"
#include "ssogate/linking.h"
#include "ssogate/links.h"
#include "ssogate/loginflight.h"
#include "ssogate/loginstate.h"
#include "ssogate/log.h"
#include "ssogate/metrics.h"
#include "ssogate/oidc.h"
#include "ssogate/pages.h"
#include "ssogate/pgstore.h"
#include "ssogate/redirect.h"
#include "ssogate/request.h"
#include "ssogate/session.h"
#include "ssogate/sessionwriter.h"
#include "ssogate/snapshot.h"
#include "ssogate/token.h"
#include "ssogate/whoami.h"

#include <sys/queue.h>

#include <assert.h>
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
/* At the cap with several workers, states another worker's callback took may be noted still:
 * this many are given up at most for one new login. */
#define EVICT_TRIES 8

/* The binding is drawn with the state's tokens, written at their size. */
_Static_assert(TOKEN_SIZE >= SG_LOGINSTATE_TOKEN_SIZE, "binding buffer");

/* A callback waiting for its code exchange. */
struct pending {
    struct sg_logins *logins;
    struct sg_request *r;
    struct sg_loginstate state;          /* taken from the store */
    struct sg_oidc_exchange *exchange;   /* while the code is exchanged */
    struct sg_whoami_request *whoami;    /* while the PSA is asked about the user (B9) */
    char session_id[SG_SESSION_ID_SIZE]; /* the session a successful login creates */
    struct sg_session session;
    struct sg_pgstore_op *op;       /* while the shared store writes the session or the link */
    struct sg_session_write *write; /* while the session writer commits the session */
    char *idp_tenant;               /* for the answer once a link is written (shared store) */
    enum sg_linking_decision decision;
    struct pending *prev, *next;
};

struct sg_logins {
    struct sg_store *store;
    struct sg_pgstore *shared;          /* borrowed: the states are in PostgreSQL, else NULL */
    struct sg_loginstate_table *memory; /* the states when this process alone finishes logins */
    struct sg_loginflight *flight;      /* the logins started here, by client address */
    int64_t swept_at_cap;               /* the second of the last sweep at the cap */
    struct sg_log_every evicted_log;    /* login_evicted lines */
    struct sg_session_writer *writer;   /* borrowed: new sessions, one commit per iteration */
    struct pending *pending;
    size_t pending_count;
};

/*
 * How a login request ends, when linking.c's decision table does not say
 * (STYLE.md: one enum value, one reason). Each result has one row: the label
 * of ssogate_logins_total{result}, the level of its "login" log line, the
 * HTTP status and the page. Results whose status is 0 answer with a
 * redirect of their own.
 */
enum sg_login_result {
    SG_LOGIN_STARTED,
    SG_LOGIN_OK,
    SG_LOGIN_BAD_RETURN_TO,
    SG_LOGIN_NOT_CONFIGURED,
    SG_LOGIN_IDP_NOT_READY,
    SG_LOGIN_TOO_MANY_IN_FLIGHT,
    SG_LOGIN_STATE_NOT_STORED,
    SG_LOGIN_STATE_EXPIRED,
    SG_LOGIN_STATE_UNKNOWN,
    SG_LOGIN_STATE_UNBOUND,
    SG_LOGIN_WRONG_ISSUER,
    SG_LOGIN_IDP_ERROR,
    SG_LOGIN_NO_CODE,
    SG_LOGIN_TOKEN_UNREACHABLE,
    SG_LOGIN_TOKEN_ERROR,
    SG_LOGIN_NO_ID_TOKEN,
    SG_LOGIN_TOKEN_INVALID,
    SG_LOGIN_USERINFO_FAILED,
    SG_LOGIN_USERINFO_INVALID,
    SG_LOGIN_CLAIMS_UNUSABLE,
    SG_LOGIN_NOT_FRESH,
    SG_LOGIN_LOGGED_OUT,
    SG_LOGIN_SESSION_NOT_STORED,
    SG_LOGIN_STORE_UNAVAILABLE,
    SG_LOGIN_CLIENT_GONE,
};

#define BUSY_PAGE                                                                                  \
    "Sign-in is busy",                                                                             \
        "Too many sign-ins are in progress right now. Please try again in a few seconds."
#define STALE_PAGE                                                                                 \
    "This sign-in link is no longer valid",                                                        \
        "It has expired, was already used, or was started in another browser. Go back to the "     \
        "application and sign in again."
#define IDP_FAILED_PAGE "Sign-in failed", NULL /* the message names the retry address */

static const struct {
    const char *label;
    enum sg_log_level level;
    int status;
    bool retry_after; /* a 503 the browser may retry */
    const char *title;
    const char *message;
} results[] = {
    [SG_LOGIN_STARTED] = {"started", SG_LOG_DEBUG, 0, false, NULL, NULL},
    [SG_LOGIN_OK] = {"ok", SG_LOG_INFO, 0, false, NULL, NULL},
    [SG_LOGIN_BAD_RETURN_TO] = {"bad_return_to", SG_LOG_INFO, 400, false, "Invalid return address",
                                "Sign-in can only return to a page of this site."},
    [SG_LOGIN_NOT_CONFIGURED] = {"not_configured", SG_LOG_INFO, 404, false,
                                 "Single sign-on is not configured",
                                 "This gateway has no identity provider configured."},
    [SG_LOGIN_IDP_NOT_READY] = {"idp_not_ready", SG_LOG_WARN, 503, true, BUSY_PAGE},
    /* No Retry-After: at the cap a login gives up another (sg_login_begin); what is refused
     * waits for callbacks or other workers, no time the gateway could promise. */
    [SG_LOGIN_TOO_MANY_IN_FLIGHT] = {"too_many_in_flight", SG_LOG_WARN, 503, false, BUSY_PAGE},
    [SG_LOGIN_STATE_NOT_STORED] = {"store_error", SG_LOG_ERROR, 503, true, BUSY_PAGE},
    [SG_LOGIN_STATE_EXPIRED] = {"state_expired", SG_LOG_WARN, 400, false, STALE_PAGE},
    [SG_LOGIN_STATE_UNKNOWN] = {"state_unknown", SG_LOG_WARN, 400, false, STALE_PAGE},
    [SG_LOGIN_STATE_UNBOUND] = {"state_unbound", SG_LOG_WARN, 400, false, STALE_PAGE},
    [SG_LOGIN_WRONG_ISSUER] = {"wrong_issuer", SG_LOG_WARN, 400, false, "Sign-in refused",
                               "The answer did not come from this site's identity provider, so "
                               "you were not signed in. Go back to the application and sign in "
                               "again."},
    [SG_LOGIN_IDP_ERROR] = {"idp_error", SG_LOG_INFO, 0, false, NULL, NULL},
    [SG_LOGIN_NO_CODE] = {"no_code", SG_LOG_WARN, 400, false, "Sign-in incomplete",
                          "The identity provider sent no authorization code. Please sign in "
                          "again."},
    [SG_LOGIN_TOKEN_UNREACHABLE] = {"token_unreachable", SG_LOG_WARN, 502, false, IDP_FAILED_PAGE},
    [SG_LOGIN_TOKEN_ERROR] = {"token_error", SG_LOG_WARN, 502, false, IDP_FAILED_PAGE},
    [SG_LOGIN_NO_ID_TOKEN] = {"no_id_token", SG_LOG_WARN, 502, false, IDP_FAILED_PAGE},
    [SG_LOGIN_TOKEN_INVALID] = {"token_invalid", SG_LOG_WARN, 401, false, "Sign-in refused",
                                "The identity provider's answer could not be verified, so you "
                                "were not signed in. Please try again; if it keeps happening, "
                                "contact your administrator."},
    [SG_LOGIN_USERINFO_FAILED] = {"userinfo_failed", SG_LOG_WARN, 502, false, IDP_FAILED_PAGE},
    [SG_LOGIN_USERINFO_INVALID] = {"userinfo_invalid", SG_LOG_WARN, 401, false, "Sign-in refused",
                                   "The identity provider's answers about you did not agree, so "
                                   "you were not signed in. Please contact your administrator."},
    [SG_LOGIN_CLAIMS_UNUSABLE] =
        {"claims_unusable", SG_LOG_WARN, 401, false, "Sign-in refused",
         "The identity provider's answer about you holds a value the gateway cannot use (a "
         "control character, text that is not UTF-8, one too long, or a flag that is not true "
         "or false), so you were not signed in. Please contact your administrator."},
    [SG_LOGIN_NOT_FRESH] = {"not_fresh", SG_LOG_WARN, 401, false, "Sign in again at IT Complete",
                            "Linking needs a sign-in at IT Complete made for it, with your "
                            "password and two-factor code, and the identity provider answered "
                            "with an earlier one, so nothing was linked. Start again from My "
                            "Settings."},
    [SG_LOGIN_LOGGED_OUT] = {"logged_out", SG_LOG_INFO, 401, false, "Signed out at IT Complete",
                             "You signed out at IT Complete while this sign-in was in progress, "
                             "so you were not signed in. Go back to the application and sign in "
                             "again."},
    [SG_LOGIN_STORE_UNAVAILABLE] = {"store_unavailable", SG_LOG_WARN, 503, true,
                                    "Sign-in is unavailable",
                                    "The gateway cannot reach its shared store just now, so "
                                    "you could not be signed in. Please try again in a moment."},
    [SG_LOGIN_SESSION_NOT_STORED] = {"store_error", SG_LOG_ERROR, 500, false,
                                     "Sign-in could not be completed",
                                     "The gateway could not record your session. Please try "
                                     "again."},
    [SG_LOGIN_CLIENT_GONE] = {"client_gone", SG_LOG_INFO, 0, false, NULL, NULL},
};

/*
 * Counts and logs result for r (detail, may be NULL, says more in the log
 * line) and, when its row has a status, sends its page, with message in
 * place of the row's when not NULL. Returns that status (0 for the results
 * that answer with a redirect of their own).
 */
static int login_result_page(struct sg_request *r, enum sg_login_result result, const char *detail,
                             const char *message)
{
    sg_metrics_count(LOGINS_METRIC, "result", results[result].label);
    if (sg_log_enabled(results[result].level))
        sg_log_fields(results[result].level, "login",
                      (struct sg_log_field[]){SG_LOG_STR("request_id", r->id),
                                              SG_LOG_STR("result", results[result].label),
                                              SG_LOG_STR("detail", detail)},
                      detail != NULL ? 3 : 2);
    if (results[result].status == 0)
        return 0;
    if (results[result].retry_after)
        evhttp_add_header(evhttp_request_get_output_headers(r->req), "Retry-After", "5");
    return sg_request_page(r, results[result].status, results[result].title,
                           message != NULL ? message : results[result].message);
}

static int login_result(struct sg_request *r, enum sg_login_result result, const char *detail)
{
    return login_result_page(r, result, detail, NULL);
}

/* Keeps the login state s where this process keeps them (the shared store
 * aside); counts a store failure. Returns 0 or an SG_E* code. */
static int state_put(struct sg_logins *logins, const struct sg_loginstate *s)
{
    int err = logins->memory != NULL ? sg_loginstate_table_put(logins->memory, s)
                                     : sg_loginstate_put(logins->store, s);
    if (err != 0)
        sg_metrics_error(SG_MERR_STORE);
    return err;
}

/*
 * Takes the login state called name out of the store into *out; counts a
 * store failure. Returns 0 or an SG_E* code (see sg_loginstate_take).
 */
static int state_take(struct sg_logins *logins, const char *name, struct sg_loginstate *out)
{
    int err = logins->memory != NULL
                  ? sg_loginstate_table_take(logins->memory, name, sg_now_s(), out)
                  : sg_loginstate_take(logins->store, name, sg_now_s(), out);
    if (err != 0 && err != SG_ENOENT && err != SG_ETIMEOUT)
        sg_metrics_error(SG_MERR_STORE);
    return err;
}

size_t sg_logins_sweep(struct sg_logins *logins, int64_t now, size_t max)
{
    size_t deleted;
    sg_loginflight_expire(logins->flight, now, max);
    if (logins->memory != NULL)
        deleted = sg_loginstate_table_sweep(logins->memory, now, max);
    else if (sg_loginstate_sweep(logins->store, now, max, &deleted) != 0)
        return 0;
    for (size_t i = 0; i < deleted; i++)
        sg_metrics_count(LOGINS_METRIC, "result", results[SG_LOGIN_STATE_EXPIRED].label);
    return deleted;
}

struct sg_logins *sg_logins_new(struct sg_store *store, struct sg_pgstore *shared,
                                struct sg_session_writer *writer, bool in_memory)
{
    struct sg_logins *logins = sg_calloc(1, sizeof(*logins));
    logins->store = store;
    logins->shared = shared;
    logins->flight = sg_loginflight_new();
    logins->writer = writer;
    logins->memory = in_memory ? sg_loginstate_table_new() : NULL;
    return logins;
}

void sg_logins_free(struct sg_logins *logins)
{
    if (logins == NULL)
        return;
    assert(logins->pending == NULL); /* every callback's request finished first */
    sg_loginstate_table_free(logins->memory);
    sg_loginflight_free(logins->flight);
    free(logins);
}

size_t sg_logins_count(struct sg_logins *logins)
{
    size_t kept;
    if (logins->memory != NULL)
        kept = sg_loginstate_table_count(logins->memory);
    else if (logins->shared != NULL)
        kept = sg_loginflight_count(logins->flight);
    else
        sg_loginstate_count(logins->store, &kept); /* 0 when the store fails */
    return kept + logins->pending_count;
}

/* To the PSA's own login page with a notice the gateway shows there (B11). */
static int redirect_to_psa_login(struct sg_request *r, const char *notice)
{
    char *location = sg_asprintf("%s?sso_notice=%s", r->snap->cfg->psa.login_path, notice);
    sg_request_redirect(r, 302, location);
    free(location);
    return 302;
}

/* Forgets the login state called name (borrowed) where it is kept: given up at the cap. */
static void state_drop(struct sg_logins *logins, const char *name)
{
    if (logins->shared != NULL) {
        sg_pgstore_loginstate_drop(logins->shared, name);
        return;
    }
    struct sg_loginstate s;
    state_take(logins, name, &s);
    sg_loginstate_clear(&s);
}

/* Logs a login given up at the cap (sg_log_every): the address that lost it, how many it held, and
 * how many were given up since the last line. */
static void evicted_log(struct sg_logins *logins, const struct sg_loginaddr *addr, size_t held)
{
    uint64_t evicted;
    if (!sg_log_every_due(&logins->evicted_log, &evicted))
        return;
    char text[SG_LOGINADDR_TEXT_SIZE];
    sg_loginaddr_format(addr, text);
    sg_log_fields(SG_LOG_WARN, "login_evicted",
                  (struct sg_log_field[]){SG_LOG_STR("address", text),
                                          SG_LOG_INT("held", (int64_t)held),
                                          SG_LOG_INT("evicted", (int64_t)evicted)},
                  3);
}

/*
 * Makes room for one more login, from newcomer (borrowed), at
 * limits.logins_in_flight (cap): expired states go first, then the oldest
 * login of the client address that holds the most (sg_loginflight_evict), so
 * that one client cannot lock the others out; that login's callback finds no
 * state. Returns false when this process has nothing to give up (the cap is
 * held by callbacks running, or by the logins other workers started).
 */
static bool room_for_login(struct sg_logins *logins, const struct sg_loginaddr *newcomer,
                           size_t cap)
{
    if (sg_logins_count(logins) < cap)
        return true;
    /* Once a second at most: in the store (workers > 1) a sweep is a scan in a
     * write transaction, and a flood keeps the gateway at the cap. */
    int64_t now = sg_now_s();
    if (now != logins->swept_at_cap) {
        logins->swept_at_cap = now;
        sg_logins_sweep(logins, now, SWEEP_AT_LIMIT);
    }
    /* In memory a give-up costs O(1): as many as a lowered cap (a reload) needs. */
    for (int i = 0; (logins->memory != NULL || i < EVICT_TRIES) && sg_logins_count(logins) >= cap;
         i++) {
        char name[SG_LOGINSTATE_TOKEN_SIZE];
        struct sg_loginaddr addr;
        size_t held;
        if (!sg_loginflight_evict(logins->flight, newcomer, name, &addr, &held))
            return false;
        state_drop(logins, name);
        OPENSSL_cleanse(name, sizeof(name));
        sg_metrics_count(LOGINS_METRIC, "result", "evicted");
        evicted_log(logins, &addr, held);
    }
    return sg_logins_count(logins) < cap;
}

/* The address r's client counts its logins under (sg_loginflight). */
static void client_address(const struct sg_request *r, struct sg_loginaddr *out)
{
    sg_loginaddr_of(&r->client.sa, out);
}

static char *authorization_location(const struct sg_snapshot *snap, const struct sg_loginstate *s);
static int begin_shared(struct sg_request *r, struct sg_loginstate *s, const char *binding,
                        int status);

int sg_login_begin(struct sg_request *r, enum sg_login_purpose purpose, const char *return_to,
                   const char *psa_tenant, const char *psa_user, int status)
{
    struct evhttp_request *req = r->req;
    const struct sg_snapshot *snap = r->snap;
    const struct sg_config *cfg = snap->cfg;
    struct sg_logins *logins = r->logins;

    if (snap->oidc == NULL)
        return login_result(r, SG_LOGIN_NOT_CONFIGURED, NULL);
    if (!sg_oidc_ready(snap->oidc))
        return login_result(r, SG_LOGIN_IDP_NOT_READY, NULL);
    struct sg_loginaddr addr;
    client_address(r, &addr);
    if (!room_for_login(logins, &addr, cfg->limits.logins_in_flight))
        return login_result(r, SG_LOGIN_TOO_MANY_IN_FLIGHT, NULL);

    char binding[TOKEN_SIZE];
    bool new_binding = !sg_cookies_get(evhttp_request_get_input_headers(req), cfg, SG_COOKIE_LOGIN,
                                       binding, TOKEN_LEN);
    struct sg_loginstate s = {
        .return_to = sg_strdup(return_to),
        .purpose = purpose,
        .psa_tenant = psa_tenant ? sg_strdup(psa_tenant) : NULL,
        .psa_user = psa_user ? sg_strdup(psa_user) : NULL,
        .created = sg_now_s(),
    };
    char *const tokens[] = {s.state, s.nonce, s.verifier, binding};
    sg_random_tokens(32, tokens, new_binding ? 4 : 3, sizeof(s.state));
    sg_sha256(binding, strlen(binding), s.binding);
    sg_loginflight_add(logins->flight, s.state, &addr, s.created, cfg->limits.logins_in_flight);
    if (r->shared != NULL) {
        int sent = begin_shared(r, &s, binding, status);
        OPENSSL_cleanse(binding, sizeof(binding));
        return sent;
    }
    int err = state_put(logins, &s);
    if (err != 0) {
        sg_loginflight_remove(logins->flight, s.state);
        sg_loginstate_clear(&s);
        return login_result(r, SG_LOGIN_STATE_NOT_STORED, sg_strerror(err));
    }
    char *location = authorization_location(snap, &s);
    /* Set again when the browser has it: its Max-Age starts over with this login, which would
     * otherwise fail at the callback if the cookie ran out in between. */
    sg_cookies_set(evhttp_request_get_output_headers(req), cfg, SG_COOKIE_LOGIN, binding);
    sg_request_redirect(r, status, location);
    login_result(r, SG_LOGIN_STARTED, NULL);
    OPENSSL_cleanse(binding, sizeof(binding));
    free(location);
    sg_loginstate_clear(&s);
    return status;
}

/* The IdP's authorization endpoint with the request of login state s. */
static char *authorization_location(const struct sg_snapshot *snap, const struct sg_loginstate *s)
{
    const struct sg_config *cfg = snap->cfg;
    char challenge[SG_PKCE_CHALLENGE_LEN + 1];
    sg_pkce_challenge_s256(s->verifier, strlen(s->verifier), challenge);
    const char *endpoint = sg_oidc_authorization_endpoint(snap->oidc);
    char *client_id = sg_percent_encode(cfg->idp->client_id, false);
    char *redirect_uri = sg_percent_encode(sg_oidc_redirect_uri(snap->oidc), false);
    struct evbuffer *scope = evbuffer_new();
    for (char **sc = cfg->idp->scopes; *sc != NULL; sc++)
        evbuffer_add_printf(scope, "%s%s", sc == cfg->idp->scopes ? "" : " ", *sc);
    evbuffer_add(scope, "", 1);
    char *scope_enc = sg_percent_encode((const char *)evbuffer_pullup(scope, -1), false);
    /* A link joins the account the user signs in with now, never the one whose IdP session the
     * browser happens to hold (the master account that just turned the tenant on, another
     * person's on a shared PC): a fresh sign-in, whose auth_time the callback checks. */
    const char *fresh = s->purpose == SG_LOGIN_SESSION ? "" : "&prompt=login&max_age=0";
    char *location = sg_asprintf("%s%sresponse_type=code&client_id=%s&redirect_uri=%s&scope=%s"
                                 "&state=%s&nonce=%s&code_challenge=%s"
                                 "&code_challenge_method=S256%s",
                                 endpoint, strchr(endpoint, '?') ? "&" : "?", client_id,
                                 redirect_uri, scope_enc, s->state, s->nonce, challenge, fresh);
    free(scope_enc);
    evbuffer_free(scope);
    free(client_id);
    free(redirect_uri);
    return location;
}

/* A login being started while the shared store keeps its state. */
struct begin {
    struct sg_request *r;
    struct sg_pgstore_op *op;
    char *location;
    char binding[TOKEN_SIZE]; /* the login cookie, set again (its Max-Age starts over) */
    char state[SG_LOGINSTATE_TOKEN_SIZE]; /* forgotten by the logins in flight if not stored */
    int status;
};

static void begin_free(struct sg_request *r, void *arg)
{
    struct begin *b = arg;
    OPENSSL_cleanse(b->binding, sizeof(b->binding));
    OPENSSL_cleanse(b->state, sizeof(b->state));
    free(b->location);
    free(b);
}

static void begin_gone(struct sg_request *r, void *arg)
{
    struct begin *b = arg;
    sg_pgstore_cancel(b->op);
    b->op = NULL;
}

static void on_state_stored(void *arg, int err)
{
    struct begin *b = arg;
    struct sg_request *r = b->r;
    b->op = NULL;
    int status = b->status;
    if (err != 0) {
        sg_loginflight_remove(r->logins->flight, b->state);
        sg_metrics_error(SG_MERR_STORE);
        status = login_result(
            r, err == SG_EUNAVAILABLE ? SG_LOGIN_STORE_UNAVAILABLE : SG_LOGIN_STATE_NOT_STORED,
            sg_strerror(err));
    } else {
        sg_cookies_set(evhttp_request_get_output_headers(r->req), r->snap->cfg, SG_COOKIE_LOGIN,
                       b->binding);
        sg_request_redirect(r, status, b->location);
        login_result(r, SG_LOGIN_STARTED, NULL);
    }
    sg_request_finish(r, status, 0);
}

/* sg_login_begin with the shared store: the state goes to PostgreSQL first. */
static int begin_shared(struct sg_request *r, struct sg_loginstate *s, const char *binding,
                        int status)
{
    struct begin *b = sg_calloc(1, sizeof(*b));
    b->r = r;
    b->status = status;
    b->location = authorization_location(r->snap, s);
    snprintf(b->binding, sizeof(b->binding), "%s", binding);
    memcpy(b->state, s->state, sizeof(b->state));
    sg_request_on_finish(r, begin_free, b);
    b->op = sg_pgstore_loginstate_put(r->shared, s, on_state_stored, b);
    sg_loginstate_clear(s);
    if (b->op == NULL) {
        sg_loginflight_remove(r->logins->flight, b->state);
        return login_result(r, SG_LOGIN_STATE_NOT_STORED, "invalid state");
    }
    sg_request_wait(r, begin_gone, b);
    return 0;
}

int sg_login_start(struct sg_request *r)
{
    const char *return_to = sg_request_param(r, "return_to");
    if (return_to == NULL)
        return_to = r->snap->cfg->psa.home_path;
    if (!sg_redirect_target_valid(return_to)) {
        sg_metrics_error(SG_MERR_BAD_REQUEST);
        return login_result(r, SG_LOGIN_BAD_RETURN_TO, NULL);
    }
    return sg_login_begin(r, SG_LOGIN_SESSION, return_to, NULL, NULL, 302);
}

/* The callback's request finished: its pending state goes. */
static void pending_free(struct sg_request *r, void *arg)
{
    struct pending *p = arg;
    struct sg_logins *logins = p->logins;
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
    free(p->idp_tenant);
    free(p);
}

/* The browser left while its code was being exchanged (or the gateway stops). */
static void on_pending_gone(struct sg_request *r, void *arg)
{
    struct pending *p = arg;
    if (p->exchange != NULL)
        sg_oidc_exchange_cancel(p->exchange);
    if (p->whoami != NULL)
        sg_whoami_cancel(p->whoami);
    sg_pgstore_cancel(p->op);
    p->op = NULL;
    sg_session_write_cancel(p->write);
    p->write = NULL;
    login_result(r, SG_LOGIN_CLIENT_GONE, NULL);
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
    const struct sg_config *cfg = p->r->snap->cfg;
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
        .idp_sid = dup_or_null(sg_jwt_claim_string(claims, "sid")),
        .claim_headers = sg_claim_headers_encode(cfg, claims, p->r->id),
    };
}

static void callback_done(struct pending *p, int http_status);
static int session_stored(struct pending *p, int err);
static int answer(struct pending *p, enum sg_linking_decision decision, const char *idp_tenant);

static void on_session_stored(void *arg, int err)
{
    struct pending *p = arg;
    p->op = NULL;
    p->write = NULL;
    callback_done(p, session_stored(p, err));
}

/* Stores the prepared session and sends the browser on with its cookie;
 * 0 while the session writer (this iteration's commit) or the shared store
 * writes it. */
static int finish_session(struct pending *p)
{
    const char *unstorable = sg_session_unstorable(&p->session);
    if (unstorable != NULL)
        return login_result(p->r, SG_LOGIN_CLAIMS_UNUSABLE, unstorable);
    if (p->r->shared == NULL) {
        p->write = sg_session_writer_create(p->logins->writer, p->session_id, &p->session,
                                            p->state.created, on_session_stored, p);
        return p->write != NULL ? 0 : session_stored(p, SG_EINVAL);
    }
    p->op = sg_pgstore_session_create(p->r->shared, p->session_id, &p->session, p->state.created,
                                      on_session_stored, p);
    return p->op != NULL ? 0 : session_stored(p, SG_EINVAL);
}

/* The session is stored (err 0) or not: the answer. */
static int session_stored(struct pending *p, int err)
{
    const struct sg_config *cfg = p->r->snap->cfg;
    if (err == SG_ENOENT) /* the user's link went while the login was in flight */
        return answer(p, SG_LINKING_LOGIN_NOT_LINKED, p->session.idp_tenant);
    if (err == SG_EENDED) /* a logout at the IdP came while the login was in flight */
        return login_result(p->r, SG_LOGIN_LOGGED_OUT, "idp_logout");
    if (err != 0) {
        /* The session writer counts a failed commit itself, once for all the
         * sessions it held; the shared store's queries are counted apart. */
        if (p->r->shared != NULL)
            sg_metrics_error(SG_MERR_STORE);
        return login_result(
            p->r, err == SG_EUNAVAILABLE ? SG_LOGIN_STORE_UNAVAILABLE : SG_LOGIN_SESSION_NOT_STORED,
            sg_strerror(err));
    }
    sg_identity_end_replaced(p->r->store, p->r->shared, cfg, p->r->req);
    sg_cookies_set(evhttp_request_get_output_headers(p->r->req), cfg, SG_COOKIE_SESSION,
                   p->session_id);
    sg_metrics_count(LOGINS_METRIC, "result", results[SG_LOGIN_OK].label);
    sg_log_fields(SG_LOG_INFO, "login",
                  (struct sg_log_field[]){SG_LOG_STR("request_id", p->r->id),
                                          SG_LOG_STR("result", results[SG_LOGIN_OK].label),
                                          SG_LOG_STR("idp_tenant", p->session.idp_tenant),
                                          SG_LOG_STR("psa_tenant", p->session.psa_tenant),
                                          SG_LOG_STR("psa_user", p->session.psa_user)},
                  5);
    return sg_request_redirect(p->r, 302, p->state.return_to);
}

/* The strings of a claim: v itself or the strings of an array. Hands back a
 * new array of pointers borrowed from v (caller frees), their number in
 * *count. */
static const char **claim_strings(yajl_val v, size_t *count)
{
    size_t len = YAJL_IS_STRING(v) ? 1 : YAJL_IS_ARRAY(v) ? v->u.array.len : 0;
    const char **out = sg_calloc(len + 1, sizeof(*out));
    *count = 0;
    for (size_t i = 0; i < len; i++) {
        yajl_val item = YAJL_IS_STRING(v) ? v : v->u.array.values[i];
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

/* Fills t from claims. False when the active flag is there but not a boolean ("false" as text,
 * 0): B11 fails closed on it rather than read an active user. */
static bool token_read(const struct sg_config *cfg, yajl_val claims, struct token *t)
{
    bool master = false, active = true;
    /* B2 is about the PSA's module URL: of an object of them ({"bms": ..., "vsa": ...}) only
     * the PSA's member counts, never another module's that happens to name this region. */
    yajl_val urls = sg_json_member(claims, cfg->idp->claims.module_urls);
    if (urls != NULL && YAJL_IS_OBJECT(urls))
        urls = sg_json_member(urls, cfg->idp->claims.module);
    t->module_urls = claim_strings(urls, &t->facts.module_url_count);
    t->amr = claim_strings(sg_json_member(claims, "amr"), &t->facts.amr_count);
    t->facts.module_urls = t->module_urls;
    t->facts.amr = t->amr;
    t->facts.sub = sg_jwt_claim_string(claims, "sub");
    t->facts.idp_tenant = claim(claims, cfg->idp->claims.tenant);
    t->facts.master = sg_jwt_claim_bool(claims, cfg->idp->claims.master, &master) == 0 && master;
    int active_read = sg_jwt_claim_bool(claims, cfg->idp->claims.active, &active);
    t->facts.active = !(active_read == 0 && !active);
    return active_read != SG_EINVAL;
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
                  (struct sg_log_field[]){SG_LOG_STR("request_id", p->r->id),
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
    const struct sg_config *cfg = p->r->snap->cfg;
    if (a->log_reason != NULL)
        sg_log_fields(SG_LOG_WARN, "login",
                      (struct sg_log_field[]){SG_LOG_STR("request_id", p->r->id),
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
        return redirect_to_psa_login(p->r, a->notice);
    if (a->location != NULL) {
        sg_request_redirect(p->r, a->status, a->location);
        return a->status;
    }
    char *message = a->names_module_url
                        ? sg_asprintf("%s%s%s", a->message, cfg->region.module_url, a->tail)
                        : sg_strdup(a->message);
    sg_page_send(p->r->req, a->status, a->title, message, p->r->id);
    free(message);
    return a->status;
}

static int store_failure(struct pending *p, int err)
{
    sg_metrics_error(SG_MERR_STORE);
    sg_log(SG_LOG_ERROR, "link", "store: %s", sg_strerror(err));
    if (err == SG_EUNAVAILABLE)
        return login_result(p->r, SG_LOGIN_STORE_UNAVAILABLE, "link");
    sg_page_send(p->r->req, 500, "The link could not be saved",
                 "The gateway could not record the link. Nothing was changed; please try again.",
                 p->r->id);
    return 500;
}

/* A lookup's result as linking.c reads it: 0 (found), or not found for
 * SG_ENOENT and for an id that no link can hold; else the store failed. */
static int looked_up(int err)
{
    return err == SG_ENOENT || err == SG_EINVAL ? 0 : err;
}

/* The tenant link is written (err 0) or not: the answer. */
static int tenant_linked(struct pending *p, int err)
{
    enum sg_linking_decision decision = p->decision;
    if (err == SG_EEXIST) { /* B4, a concurrent link (across hosts with the shared store) */
        decision = SG_LINKING_TENANT_ALREADY_MAPPED;
        err = 0;
    }
    return err != 0 ? store_failure(p, err) : answer(p, decision, p->idp_tenant);
}

static void on_tenant_linked(void *arg, int err)
{
    struct pending *p = arg;
    p->op = NULL;
    callback_done(p, tenant_linked(p, err));
}

/* B1, B4: writes the tenant link decided on (p->idp_tenant) and answers; 0
 * while the shared store writes it. */
static int tenant_write(struct pending *p)
{
    if (p->r->shared == NULL)
        return tenant_linked(p,
                             sg_links_tenant_put(p->r->store, p->state.psa_tenant, p->idp_tenant));
    p->op = sg_pgstore_tenant_link(p->r->shared, p->state.psa_tenant, p->idp_tenant, "login",
                                   on_tenant_linked, p);
    return p->op != NULL ? 0 : store_failure(p, SG_EINVAL);
}

/* The user link is written (err 0) or not: the refusal, or the session. */
static int user_linked(struct pending *p, int err)
{
    enum sg_linking_decision decision = p->decision;
    if (err == SG_EEXIST) { /* B10, a concurrent link */
        decision = SG_LINKING_USER_ALREADY_LINKED;
        err = 0;
    } else if (err == SG_ENOENT) { /* B7 meanwhile: the tenant's link went during the login */
        decision = SG_LINKING_USER_TENANT_NOT_LINKED;
        err = 0;
    }
    int status = err != 0 ? store_failure(p, err) : answer(p, decision, p->idp_tenant);
    return status != 0 ? status : finish_session(p);
}

static void on_user_linked(void *arg, int err)
{
    struct pending *p = arg;
    p->op = NULL;
    int status = user_linked(p, err);
    if (status != 0)
        callback_done(p, status);
}

/* B5, B10: writes the user link decided on (p->idp_tenant, the prepared
 * session's sub) with facts, then the session; 0 while either is written. */
static int user_write(struct pending *p, const struct sg_links_user_facts *facts)
{
    const char *psa_tenant = p->state.psa_tenant, *psa_user = p->state.psa_user;
    /* The user's data first: a session that could not be kept must not leave a link behind. */
    const char *unstorable = sg_session_unstorable(&p->session);
    if (unstorable != NULL)
        return login_result(p->r, SG_LOGIN_CLAIMS_UNUSABLE, unstorable);
    if (p->r->shared == NULL)
        return user_linked(p, sg_links_user_put(p->r->store, psa_tenant, psa_user, p->idp_tenant,
                                                p->session.idp_sub, facts));
    p->op = sg_pgstore_user_link(p->r->shared, psa_tenant, psa_user, p->idp_tenant,
                                 p->session.idp_sub, facts, "login", on_user_linked, p);
    return p->op != NULL ? 0 : store_failure(p, SG_EINVAL);
}

/*
 * The PSA's whoami answer as linking.c reads it: NULL when it named nobody
 * (else caller, filled with strings borrowed from user); *reachable false,
 * and counted, when it did not answer.
 */
static const struct sg_linking_caller *psa_caller(enum sg_whoami_error err,
                                                  const struct sg_psa_user *user,
                                                  struct sg_linking_caller *caller, bool *reachable)
{
    *reachable = err == SG_WHOAMI_OK || err == SG_WHOAMI_UNAUTHENTICATED;
    if (!*reachable)
        sg_metrics_count("ssogate_whoami_errors_total", "reason", sg_whoami_error_name(err));
    if (err != SG_WHOAMI_OK)
        return NULL;
    *caller = (struct sg_linking_caller){.tenant = user->tenant,
                                         .user = user->user,
                                         .admin = user->admin,
                                         .staff = user->staff,
                                         .active = user->active};
    return caller;
}

/*
 * The PSA's answer at a link's callback. What it said when the link was
 * started may be minutes old (the user was at the IdP): the caller must still
 * be that PSA user, staff and active, and for a tenant link an admin; the
 * user link keeps these facts.
 */
static void on_link_whoami(enum sg_whoami_error err, const struct sg_psa_user *user, void *arg)
{
    struct pending *p = arg;
    p->whoami = NULL;
    bool tenant = p->state.purpose == SG_LOGIN_LINK_TENANT, reachable;
    struct sg_linking_caller caller;
    const struct sg_linking_caller *named = psa_caller(err, user, &caller, &reachable);
    enum sg_linking_decision decision =
        sg_linking_link_psa(named, reachable, p->state.psa_tenant, p->state.psa_user, tenant);
    int status;
    if (decision != p->decision)
        status = answer(p, decision, p->idp_tenant);
    else if (tenant)
        status = tenant_write(p);
    else
        status = user_write(p, &(struct sg_links_user_facts){
                                   .known = true, .staff = user->staff, .active = user->active});
    if (status != 0)
        callback_done(p, status);
}

/* A link decided on from the token and the store: asks the PSA about its
 * caller first (on_link_whoami writes it). Returns 0: the answer waits. */
static int link_ask_psa(struct pending *p, enum sg_linking_decision decision,
                        const char *idp_tenant)
{
    p->decision = decision;
    p->idp_tenant = sg_strdup(idp_tenant);
    p->whoami = sg_whoami_fetch_caller(p->r, p->logins->writer, on_link_whoami, p);
    return 0;
}

/* B1, B2, B4: the PSA tenant of an admin joins the IdP tenant of a master account. */
static int link_tenant(struct pending *p, const struct sg_linking_token *token)
{
    const struct sg_config *cfg = p->r->snap->cfg;
    struct sg_store *store = p->r->store;
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
    if (err != 0)
        return store_failure(p, err);
    if (decision != SG_LINKING_TENANT_LINK)
        return answer(p, decision, token->idp_tenant);
    return link_ask_psa(p, decision, token->idp_tenant);
}

/* B5, B10: the PSA user joins the IdP user, then is signed in. */
static int link_user(struct pending *p, const struct sg_linking_token *token, yajl_val claims,
                     const char *id_token)
{
    const struct sg_config *cfg = p->r->snap->cfg;
    struct sg_store *store = p->r->store;
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
    if (err != 0)
        return store_failure(p, err);
    if (decision != SG_LINKING_USER_LINK)
        return answer(p, decision, token->idp_tenant);
    /* The claims are gone by the time the PSA answers: the session is made now. */
    session_prepare(p, claims, id_token, psa_tenant, psa_user);
    return link_ask_psa(p, decision, token->idp_tenant);
}

/* Answers the login as B9 decided: the refusal, or the session. */
static int login_psa_answer(struct pending *p, enum sg_linking_decision decision)
{
    int status = answer(p, decision, NULL);
    return status != 0 ? status : finish_session(p);
}

/* The PSA's answer about the user of a login (link mode): that user, staff only (B9). */
static void on_login_whoami(enum sg_whoami_error err, const struct sg_psa_user *user, void *arg)
{
    struct pending *p = arg;
    p->whoami = NULL;
    bool reachable;
    struct sg_linking_caller caller;
    /* Asked with the browser's PSA cookies too, a PSA may answer about its own session's user. */
    const struct sg_linking_caller *named = psa_caller(err, user, &caller, &reachable);
    enum sg_linking_decision decision =
        sg_linking_login_psa(named, reachable, p->session.psa_tenant, p->session.psa_user);
    int status = login_psa_answer(p, decision);
    if (status != 0)
        callback_done(p, status);
}

/*
 * B9 from the facts kept with the user link (psa.whoami.at_login "link"):
 * the PSA is not asked. A link without facts reads as staff and active (see
 * struct sg_links_user_facts); facts the store cannot read refuse the login.
 */
static enum sg_linking_decision login_link_facts(struct pending *p,
                                                 const struct sg_linking_token *token,
                                                 const char *psa_tenant, const char *psa_user)
{
    struct sg_links_user_facts facts;
    int err = sg_links_user_facts_get(p->r->store, token->idp_tenant, token->sub, &facts);
    if (err != 0) {
        sg_metrics_error(SG_MERR_STORE);
        sg_log(SG_LOG_ERROR, "login", "user link facts: %s", sg_strerror(err));
        return sg_linking_login_psa(NULL, true, psa_tenant, psa_user);
    }
    struct sg_linking_caller caller = {
        .tenant = psa_tenant, .user = psa_user, .staff = facts.staff, .active = facts.active};
    return sg_linking_login_psa(&caller, true, psa_tenant, psa_user);
}

/* Step 7 of the callback's decision order for a login (B6), with the token's
 * checks before it; 0 when the answer waits for the PSA. */
static int login(struct pending *p, const struct sg_linking_token *token, yajl_val claims,
                 const char *id_token)
{
    const struct sg_config *cfg = p->r->snap->cfg;
    struct sg_linking_rules rules = rules_of(cfg);
    char *psa_tenant = NULL, *psa_user = NULL;
    if (token->idp_tenant != NULL &&
        sg_links_user_get_by_idp(p->r->store, token->idp_tenant, token->sub, &psa_tenant,
                                 &psa_user) != 0) {
        free(psa_tenant);
        free(psa_user);
        psa_tenant = psa_user = NULL;
    }
    struct sg_linking_links links = {.user_psa_tenant = psa_tenant, .user_psa_user = psa_user};
    int result = answer(p, sg_linking_login(&rules, token, &links), token->idp_tenant);
    enum sg_whoami_at_login at_login = cfg->psa.whoami.at_login;
    if (result == 0)
        session_prepare(p, claims, id_token, psa_tenant, psa_user);
    if (result == 0 && at_login == SG_WHOAMI_AT_LOGIN_LINK) {
        result = login_psa_answer(p, login_link_facts(p, token, psa_tenant, psa_user));
    } else if (result == 0 && at_login == SG_WHOAMI_AT_LOGIN_SKIP) {
        result = finish_session(p);
    } else if (result == 0) {
        /* B9 and the PSA's own view of the user: ask the PSA who this
         * session would be, with the assertion the session will carry. */
        struct sg_identity identity = {.session = p->session};
        memcpy(identity.session_id, p->session_id, sizeof(p->session_id));
        struct evkeyvalq headers = TAILQ_HEAD_INITIALIZER(headers);
        sg_identity_add_headers(p->r->snap, &identity, &headers);
        struct sg_whoami_query query = {.base = p->r->base,
                                        .pool = p->r->snap->upstream,
                                        .cfg = p->r->snap->cfg,
                                        .caller = evhttp_request_get_input_headers(p->r->req),
                                        .identity = &headers};
        p->whoami = sg_whoami_fetch(&query, on_login_whoami, p);
        evhttp_clear_headers(&headers);
    }
    free(psa_tenant);
    free(psa_user);
    return result;
}

/*
 * A link comes from a sign-in at the IdP made for it (authorization_location
 * asks prompt=login and max_age=0, which an IdP might not honour): the ID
 * token's auth_time, which OpenID Connect Core 3.1.2.1 requires when max_age
 * is asked, no earlier than the login state, give or take the IdP's clock
 * skew (idp.clock_skew_s). Returns NULL when it holds, else what is wrong.
 */
static const char *link_not_fresh(const struct pending *p, yajl_val claims)
{
    int64_t auth_time;
    if (sg_jwt_claim_time(claims, "auth_time", &auth_time) != 0)
        return "no_auth_time";
    if (auth_time + (int64_t)p->r->snap->cfg->idp->clock_skew_s < p->state.created)
        return "auth_time_before_link";
    return NULL;
}

/* Steps 3 to 7 of the callback's decision order, once the code is exchanged
 * (with a link's freshness before 5); 0 when the answer waits for the PSA. */
static int decide(struct pending *p, enum sg_oidc_status status, const char *detail,
                  yajl_val claims, const char *id_token)
{
    const struct sg_config *cfg = p->r->snap->cfg;

    static const enum sg_login_result failed[] = {
        [SG_OIDC_TOKEN_UNREACHABLE] = SG_LOGIN_TOKEN_UNREACHABLE,
        [SG_OIDC_TOKEN_ERROR] = SG_LOGIN_TOKEN_ERROR,
        [SG_OIDC_NO_ID_TOKEN] = SG_LOGIN_NO_ID_TOKEN,
        [SG_OIDC_USERINFO_FAILED] = SG_LOGIN_USERINFO_FAILED,
    };
    if (status == SG_OIDC_USERINFO_INVALID)
        return login_result(p->r, SG_LOGIN_USERINFO_INVALID, detail);
    if (status != SG_OIDC_OK && (size_t)status < SG_ARRAY_LEN(failed) && failed[status] != 0) {
        char *retry = sg_percent_encode(p->state.return_to, false);
        char *message = sg_asprintf("The identity provider did not complete the sign-in. "
                                    "Please try again: /_sso/login?return_to=%s",
                                    retry);
        int sent = login_result_page(p->r, failed[status], detail, message);
        free(message);
        free(retry);
        return sent;
    }
    if (status != SG_OIDC_OK) {
        sg_metrics_count("ssogate_id_token_rejected_total", "reason", detail);
        return login_result(p->r, SG_LOGIN_TOKEN_INVALID, detail);
    }

    const char *stale = p->state.purpose != SG_LOGIN_SESSION ? link_not_fresh(p, claims) : NULL;
    if (stale != NULL)
        return login_result(p->r, SG_LOGIN_NOT_FRESH, stale);
    struct token token = {0};
    if (!token_read(cfg, claims, &token)) {
        token_clear(&token);
        return login_result(p->r, SG_LOGIN_CLAIMS_UNUSABLE, "active");
    }
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

/* The end of a callback (its pending state goes with the request). */
static void callback_done(struct pending *p, int http_status)
{
    sg_request_finish(p->r, http_status, 0);
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

static int callback_with_state(struct sg_request *r, int taken_err, struct sg_loginstate *sp);

/* A callback waiting for its login state from the shared store. */
struct taking {
    struct sg_request *r;
    struct sg_pgstore_op *op;
    struct sg_loginstate state;
};

static void taking_free(struct sg_request *r, void *arg)
{
    struct taking *t = arg;
    sg_loginstate_clear(&t->state);
    free(t);
}

static void taking_gone(struct sg_request *r, void *arg)
{
    struct taking *t = arg;
    sg_pgstore_cancel(t->op);
    t->op = NULL;
}

static void on_state_taken(void *arg, int err)
{
    struct taking *t = arg;
    struct sg_request *r = t->r;
    t->op = NULL;
    if (err != 0 && err != SG_ENOENT && err != SG_ETIMEOUT)
        sg_metrics_error(SG_MERR_STORE);
    sg_request_resume(r);
    int status = err == SG_EUNAVAILABLE ? login_result(r, SG_LOGIN_STORE_UNAVAILABLE, "login state")
                                        : callback_with_state(r, err, &t->state);
    if (!sg_request_waiting(r))
        sg_request_finish(r, status, 0);
}

int sg_login_callback(struct sg_request *r)
{
    struct sg_loginstate s = {0};
    if (r->snap->oidc == NULL)
        return login_result(r, SG_LOGIN_NOT_CONFIGURED, NULL);
    const char *state = sg_request_param(r, "state");
    if (state != NULL && r->shared != NULL) {
        struct taking *t = sg_calloc(1, sizeof(*t));
        t->r = r;
        sg_request_on_finish(r, taking_free, t);
        t->op = sg_pgstore_loginstate_take(r->shared, state, &t->state, on_state_taken, t);
        if (t->op != NULL) {
            sg_request_wait(r, taking_gone, t);
            return 0;
        }
        return callback_with_state(r, SG_ENOENT, &s);
    }
    int taken_err = state != NULL ? state_take(r->logins, state, &s) : SG_ENOENT;
    return callback_with_state(r, taken_err, &s);
}

/* A put back state in the shared store: a failure leaves that login to be started again. */
static void on_state_put_back(void *arg, int err)
{
    if (err != 0)
        sg_log(SG_LOG_WARN, "login", "a login state could not be put back: %s", sg_strerror(err));
}

/*
 * Puts back a state taken for a callback from another browser (its binding
 * cookie is not the state's): whoever holds a victim's callback URL must not
 * use up the victim's login, which still completes in the browser that began
 * it. A failure is logged; that login then has to be started again.
 */
static void state_put_back(struct sg_request *r, const struct sg_loginstate *s)
{
    if (r->shared != NULL) {
        if (sg_pgstore_loginstate_put(r->shared, s, on_state_put_back, NULL) == NULL)
            on_state_put_back(NULL, SG_EINVAL);
        return;
    }
    int err = state_put(r->logins, s);
    if (err != 0)
        on_state_put_back(NULL, err);
}

/* The rest of a callback once its login state was taken (taken_err 0) or
 * not; the state in *sp is used up either way, but for one taken from
 * another browser, which is put back. */
static int callback_with_state(struct sg_request *r, int taken_err, struct sg_loginstate *sp)
{
    struct evhttp_request *req = r->req;
    struct sg_snapshot *snap = r->snap;
    const struct sg_config *cfg = snap->cfg;
    struct sg_logins *logins = r->logins;
    struct sg_loginstate s = *sp;
    memset(sp, 0, sizeof(*sp));
    int status;
    bool taken = taken_err == 0;
    char binding[TOKEN_SIZE];
    unsigned char binding_hash[SHA256_DIGEST_LENGTH];
    bool bound = taken && sg_cookies_get(evhttp_request_get_input_headers(req), cfg,
                                         SG_COOKIE_LOGIN, binding, TOKEN_LEN);
    if (bound) {
        sg_sha256(binding, strlen(binding), binding_hash);
        bound = sg_memeq_ct(binding_hash, s.binding, sizeof(binding_hash));
    }
    /* Used up, or gone: no longer in flight. One put back stays noted under the address that
     * started it. */
    if (!taken || bound)
        sg_loginflight_remove(logins->flight, sg_request_param(r, "state"));
    if (!bound) {
        if (taken)
            state_put_back(r, &s);
        status = login_result(r,
                              taken                      ? SG_LOGIN_STATE_UNBOUND
                              : taken_err == SG_ETIMEOUT ? SG_LOGIN_STATE_EXPIRED
                                                         : SG_LOGIN_STATE_UNKNOWN,
                              NULL);
        goto end;
    }
    /* RFC 9207: an answer of another IdP (a mix-up, or the IdP a reload replaced while this
     * login was there) must not have its code sent to this one's token endpoint. */
    const char *wrong_iss = sg_oidc_response_iss_problem(snap->oidc, sg_request_param(r, "iss"));
    if (wrong_iss != NULL) {
        status = login_result(r, SG_LOGIN_WRONG_ISSUER, wrong_iss);
        goto end;
    }
    const char *error = sg_request_param(r, "error");
    if (error != NULL) {
        login_result(r, SG_LOGIN_IDP_ERROR,
                     strcmp(error, "access_denied") == 0 ? "access_denied" : "other");
        status =
            redirect_to_psa_login(r, strcmp(error, "access_denied") == 0 ? "denied" : "failed");
        goto end;
    }
    const char *code = sg_request_param(r, "code");
    if (code == NULL || *code == '\0' || strlen(code) > 4096) {
        status = login_result(r, SG_LOGIN_NO_CODE, NULL);
        goto end;
    }

    struct pending *p = sg_calloc(1, sizeof(*p));
    p->logins = logins;
    p->r = r;
    p->state = s;
    memset(&s, 0, sizeof(s)); /* handed to p */
    p->next = logins->pending;
    if (logins->pending)
        logins->pending->prev = p;
    logins->pending = p;
    logins->pending_count++;
    sg_request_on_finish(r, pending_free, p);
    p->exchange =
        sg_oidc_exchange_code(snap->oidc, code, p->state.verifier, p->state.nonce, on_exchanged, p);
    if (p->exchange == NULL) {
        status = login_result(r, SG_LOGIN_IDP_NOT_READY, NULL);
        goto end;
    }
    /* In flight until its answer is sent: a drain waits for it. */
    sg_request_wait(r, on_pending_gone, p);
    status = 0;

end:
    sg_loginstate_clear(&s);
    return status;
}

/* A logout whose answer waits for PostgreSQL to take its ends (identity.h). */
struct logout_wait {
    struct sg_request *r;
    struct sg_identity_ending *ending;
    char *location;
};

static void on_logout_ended(void *arg)
{
    struct logout_wait *w = arg;
    w->ending = NULL;
    sg_request_finish(w->r, sg_request_redirect(w->r, 303, w->location), 0);
}

static void on_logout_gone(struct sg_request *r, void *arg)
{
    struct logout_wait *w = arg;
    sg_identity_ending_cancel(w->ending);
    w->ending = NULL;
}

static void logout_wait_free(struct sg_request *r, void *arg)
{
    struct logout_wait *w = arg;
    free(w->location);
    free(w);
}

int sg_login_logout(struct sg_request *r)
{
    struct evhttp_request *req = r->req;
    const struct sg_snapshot *snap = r->snap;
    const struct sg_config *cfg = snap->cfg;

    struct sg_identity identity;
    char *location = NULL;
    int err = sg_identity_lookup(r->store, r->logins->writer, r->shared, cfg, req, true, &identity);
    /* Every session the browser sent ends, whether one was in use or not: with sessions of
     * different users (one planted) none is, nor behind planted unknown values, and a logout that
     * looked done would leave the victim's alive. */
    struct logout_wait *w = sg_calloc(1, sizeof(*w));
    w->r = r;
    sg_request_on_finish(r, logout_wait_free, w);
    w->ending = sg_identity_end(r->store, r->shared, r->base, cfg, req, on_logout_ended, w);
    if (err == SG_EEXIST) {
        sg_metrics_count("ssogate_logouts_total", "result", "conflicting_cookies");
    } else if (err == 0) {
        const char *end_session = snap->oidc ? sg_oidc_end_session_endpoint(snap->oidc) : NULL;
        if (end_session != NULL) {
            char *hint = identity.session.id_token
                             ? sg_percent_encode(identity.session.id_token, false)
                             : NULL;
            char *post_logout = sg_asprintf("%s/", cfg->public_url.text);
            char *post_logout_enc = sg_percent_encode(post_logout, false);
            char *client_id = sg_percent_encode(cfg->idp->client_id, false);
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
    w->location = location != NULL ? location : sg_strdup("/");
    if (w->ending != NULL) {
        sg_request_wait(r, on_logout_gone, w); /* answered when every host refuses the sessions */
        return 0;
    }
    return sg_request_redirect(r, 303, w->location);
}

int sg_login_redirect_required(struct sg_request *r)
{
    char *uri = sg_target_origin_form(&r->target);
    int status = sg_login_begin(r, SG_LOGIN_SESSION, sg_redirect_target_valid(uri) ? uri : "/",
                                NULL, NULL, 302);
    free(uri);
    return status;
}
