#include "ssogate/identity.h"

#include "ssogate/assertion.h"
#include "ssogate/claimheaders.h"
#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/cookies.h"
#include "ssogate/headers.h"
#include "ssogate/jose.h"
#include "ssogate/log.h"
#include "ssogate/metrics.h"
#include "ssogate/pgstore.h"
#include "ssogate/sessionwriter.h"
#include "ssogate/snapshot.h"
#include "ssogate/signer.h"
#include "ssogate/token.h"

#include <event2/event.h>
#include <event2/http.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

static bool same_owner(const struct sg_session *a, const struct sg_session *b)
{
    const char *fa[] = {a->idp_issuer, a->idp_sub, a->psa_tenant, a->psa_user};
    const char *fb[] = {b->idp_issuer, b->idp_sub, b->psa_tenant, b->psa_user};
    for (size_t i = 0; i < SG_ARRAY_LEN(fa); i++) {
        if ((fa[i] == NULL) != (fb[i] == NULL) || (fa[i] != NULL && strcmp(fa[i], fb[i]) != 0))
            return false;
    }
    return true;
}

/*
 * Whether a session made under an earlier configuration still stands under cfg:
 * a reload that shortened sessions applies its timeouts to it, in link mode a
 * session of no PSA user (made in claims mode) stands on no link, and a session
 * of another IdP (idp.issuer changed) names a subject this IdP never vouched for.
 */
static bool usable(const struct sg_config *cfg, const struct sg_session *s, int64_t now)
{
    if (cfg->identity == SG_IDENTITY_LINK && s->psa_user == NULL)
        return false;
    if (s->idp_issuer != NULL &&
        (cfg->idp == NULL || strcmp(s->idp_issuer, cfg->idp->issuer.text) != 0))
        return false;
    return !sg_session_outlived(s, cfg->session.idle_timeout_s, cfg->session.absolute_timeout_s,
                                now);
}

#define SESSION_COOKIES_MAX 4
/* A logout ends more: session cookies planted ahead of the victim's (four unknown values make
 * lookup give up before it) must not keep the victim's session alive behind them. */
#define SESSION_COOKIES_END_MAX 16

int sg_identity_lookup(struct sg_store *store, struct sg_session_writer *writer,
                       struct sg_pgstore *shared, const struct sg_config *cfg,
                       struct evhttp_request *req, bool id_token, struct sg_identity *out)
{
    char ids[SESSION_COOKIES_MAX][SG_SESSION_ID_SIZE];
    memset(out, 0, sizeof(*out));
    size_t count = sg_cookies_values(evhttp_request_get_input_headers(req), cfg, SG_COOKIE_SESSION,
                                     SG_SESSION_ID_LEN, &ids[0][0], SESSION_COOKIES_MAX);

    int64_t now = sg_now_s();
    bool found = false;
    int err = 0;
    for (size_t i = 0; i < count; i++) {
        struct sg_session other;
        struct sg_session *into = found ? &other : &out->session;
        int rc = id_token ? sg_session_get(store, ids[i], now, into)
                          : sg_session_get_brief(store, ids[i], now, into);
        if (rc == SG_ENOENT || rc == SG_EINVAL)
            continue; /* unknown, expired or garbage: never hides the real one */
        if (rc != 0) {
            err = rc;
            break;
        }
        if (!usable(cfg, into, now)) {
            sg_session_clear(into);
            continue;
        }
        if (!found) {
            found = true;
            memcpy(out->session_id, ids[i], SG_SESSION_ID_SIZE);
            continue;
        }
        bool same = same_owner(&out->session, &other);
        sg_session_clear(&other);
        if (!same) {
            /* Sessions of two identities: one was planted (cookie tossing). */
            sg_metrics_count("ssogate_session_cookie_conflicts_total", "result", "refused");
            sg_log(SG_LOG_WARN, "session_cookie_conflict",
                   "cookies of sessions of different users: none is used");
            err = SG_EEXIST;
            break;
        }
    }
    OPENSSL_cleanse(ids, sizeof(ids));
    if (err == 0 && !found)
        err = SG_ENOENT;
    if (err == 0 && sg_session_touch_due(&out->session, now)) { /* one read per request otherwise */
        sg_session_writer_touch(writer, out->session_id, now);
        if (shared != NULL)
            sg_pgstore_session_touch(shared, out->session_id, now);
    }
    if (err != 0) {
        sg_identity_clear(out);
        return err == SG_EINVAL ? SG_ENOENT : err;
    }
    return 0;
}

void sg_identity_clear(struct sg_identity *identity)
{
    sg_session_clear(&identity->session);
    OPENSSL_cleanse(identity->session_id, sizeof(identity->session_id));
}

static void add_to_list(const char *name, const char *value, void *arg)
{
    evhttp_add_header(arg, name, value);
}

static void add_line(const char *name, const char *value, void *arg)
{
    sg_lines_add(arg, name, value);
}

/* Calls fn with each identity header of identity; 0 or SG_ECRYPTO. */
static int each_header(const struct sg_snapshot *snap, const struct sg_identity *identity,
                       sg_claim_header_fn fn, void *arg)
{
    const struct sg_session *s = &identity->session;
    const char *assertion =
        sg_assertions_get(snap->assertions, snap->cfg, &snap->signer, identity->session_id, s);
    if (assertion == NULL)
        return SG_ECRYPTO;
    fn("X-SSO-Subject", s->idp_sub, arg);
    if (s->idp_tenant != NULL)
        fn("X-SSO-IdP-Tenant", s->idp_tenant, arg);
    if (s->email != NULL)
        fn("X-SSO-Email", s->email, arg);
    if (snap->cfg->identity == SG_IDENTITY_LINK && s->psa_user != NULL) {
        fn("X-SSO-Tenant", s->psa_tenant, arg);
        fn("X-SSO-User", s->psa_user, arg);
    }
    fn("X-SSO-Assertion", assertion, arg);
    if (s->claim_headers != NULL)
        sg_claim_headers_each(snap->cfg, s->claim_headers, fn, arg);
    return 0;
}

int sg_identity_add_headers(const struct sg_snapshot *snap, const struct sg_identity *identity,
                            struct evkeyvalq *headers)
{
    return each_header(snap, identity, add_to_list, headers);
}

int sg_identity_write_headers(const struct sg_snapshot *snap, const struct sg_identity *identity,
                              struct evbuffer *out)
{
    struct sg_lines lines;
    sg_lines_start(&lines, out);
    int err = each_header(snap, identity, add_line, &lines);
    sg_lines_end(&lines);
    return err;
}

/* How long a logout's answer may wait for PostgreSQL to take its ends. */
#define END_WAIT_MS 1000

struct ending_slot {
    struct sg_identity_ending *ending;
    struct sg_pgstore_op *op;
};

struct sg_identity_ending {
    struct ending_slot slots[SESSION_COOKIES_END_MAX];
    size_t pending;
    struct event *timer;
    sg_identity_ended_fn ended;
    void *arg;
};

void sg_identity_ending_cancel(struct sg_identity_ending *ending)
{
    if (ending == NULL)
        return;
    for (size_t i = 0; i < SG_ARRAY_LEN(ending->slots); i++)
        sg_pgstore_cancel(ending->slots[i].op); /* the end goes on: only the wait stops */
    if (ending->timer != NULL)
        event_free(ending->timer);
    free(ending);
}

static void ending_over(struct sg_identity_ending *ending)
{
    sg_identity_ended_fn ended = ending->ended;
    void *arg = ending->arg;
    sg_identity_ending_cancel(ending);
    ended(arg);
}

static void on_one_ended(void *arg, int err)
{
    struct ending_slot *slot = arg;
    slot->op = NULL;
    if (--slot->ending->pending == 0)
        ending_over(slot->ending);
}

static void on_wait_over(evutil_socket_t fd, short what, void *arg)
{
    ending_over(arg);
}

/* Ends the sessions of the cookies req carries; with ending, its slots wait for PostgreSQL. */
static void end_sent(struct sg_store *store, struct sg_pgstore *shared, const struct sg_config *cfg,
                     struct evhttp_request *req, struct sg_identity_ending *ending)
{
    char ids[SESSION_COOKIES_END_MAX][SG_SESSION_ID_SIZE];
    size_t count = sg_cookies_values(evhttp_request_get_input_headers(req), cfg, SG_COOKIE_SESSION,
                                     SG_SESSION_ID_LEN, &ids[0][0], SESSION_COOKIES_END_MAX);
    for (size_t i = 0; i < count; i++) {
        if (!sg_session_id_valid(ids[i]))
            continue;
        if (shared == NULL) {
            sg_session_delete(store, ids[i]);
            continue;
        }
        /* Here at once, in PostgreSQL when it takes it. */
        struct ending_slot *slot = ending != NULL ? &ending->slots[ending->pending] : NULL;
        struct sg_pgstore_op *op =
            sg_pgstore_session_delete(shared, ids[i], slot ? on_one_ended : NULL, slot);
        if (slot != NULL && op != NULL) {
            *slot = (struct ending_slot){.ending = ending, .op = op};
            ending->pending++;
        }
    }
    OPENSSL_cleanse(ids, sizeof(ids));
}

void sg_identity_end_replaced(struct sg_store *store, struct sg_pgstore *shared,
                              const struct sg_config *cfg, struct evhttp_request *req)
{
    end_sent(store, shared, cfg, req, NULL);
}

struct sg_identity_ending *sg_identity_end(struct sg_store *store, struct sg_pgstore *shared,
                                           struct event_base *base, const struct sg_config *cfg,
                                           struct evhttp_request *req, sg_identity_ended_fn ended,
                                           void *arg)
{
    /* Without the database there is nothing to wait for: the ends are kept (pgstore.h). */
    bool wait = shared != NULL && ended != NULL && sg_pgstore_available(shared);
    struct sg_identity_ending *ending = wait ? sg_calloc(1, sizeof(*ending)) : NULL;
    end_sent(store, shared, cfg, req, ending);
    sg_cookies_clear(evhttp_request_get_output_headers(req), cfg, SG_COOKIE_SESSION);
    if (ending != NULL && ending->pending == 0) {
        free(ending);
        return NULL;
    }
    if (ending != NULL) {
        ending->ended = ended;
        ending->arg = arg;
        ending->timer = evtimer_new(base, on_wait_over, ending);
        struct timeval wait_for = {END_WAIT_MS / 1000, (END_WAIT_MS % 1000) * 1000};
        evtimer_add(ending->timer, &wait_for);
    }
    return ending;
}
