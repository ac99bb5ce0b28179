#include "ssogate/settings.h"

#include "ssogate/common.h"
#include "ssogate/cookies.h"
#include "ssogate/csrf.h"
#include "ssogate/identity.h"
#include "ssogate/linking.h"
#include "ssogate/links.h"
#include "ssogate/log.h"
#include "ssogate/login.h"
#include "ssogate/metrics.h"
#include "ssogate/pages.h"
#include "ssogate/pgstore.h"
#include "ssogate/request.h"
#include "ssogate/runtime.h"
#include "ssogate/snapshot.h"
#include "ssogate/whoami.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

enum action {
    ACT_SETTINGS,
    ACT_STATUS,
    ACT_TENANT_ENABLE,
    ACT_TENANT_DISABLE,
    ACT_USER_ENABLE,
    ACT_USER_DISABLE,
};

struct settings_request {
    struct sg_request *r;
    struct sg_whoami_request *whoami;
    enum action action;
    char csrf[SG_CSRF_TOKEN_SIZE]; /* the token the page embeds */
    bool new_csrf;                 /* the cookie must be set */
    char *done;                    /* ?done= of the settings page */
    /* With the shared store, an unlink waits for PostgreSQL: */
    struct sg_pgstore_op *op;
    enum sg_linking_decision decision;
    struct sg_psa_user user; /* a copy of the caller, for the answer */
};

/* The request finished: its state goes. */
static void request_free(struct sg_request *r, void *arg)
{
    struct settings_request *s = arg;
    free(s->done);
    free(s->user.tenant);
    free(s->user.user);
    free(s);
}

/* The client went away while the PSA was asked. */
static void on_gone(struct sg_request *r, void *arg)
{
    struct settings_request *s = arg;
    sg_whoami_cancel(s->whoami);
    sg_pgstore_cancel(s->op);
    s->op = NULL;
}

static void gen_key(yajl_gen g, const char *key)
{
    yajl_gen_string(g, (const unsigned char *)key, strlen(key));
}

static void gen_str(yajl_gen g, const char *key, const char *value)
{
    gen_key(g, key);
    if (value != NULL)
        yajl_gen_string(g, (const unsigned char *)value, strlen(value));
    else
        yajl_gen_null(g);
}

/* The status JSON: the session, and in link mode the PSA caller and its links. */
static int send_status(struct settings_request *s, const struct sg_psa_user *user, bool link_mode)
{
    struct sg_store *store = s->r->store;
    struct sg_identity identity;
    bool session =
        sg_identity_lookup(s->r->store, sg_runtime_session_writer(s->r->rt), s->r->shared,
                           s->r->snap->cfg, s->r->req, false, &identity) == 0;

    yajl_gen g = yajl_gen_alloc(NULL);
    yajl_gen_map_open(g);
    gen_key(g, "session");
    yajl_gen_bool(g, session);
    if (session) {
        gen_str(g, "subject", identity.session.idp_sub);
        gen_str(g, "idp_tenant", identity.session.idp_tenant);
        gen_str(g, "email", identity.session.email);
        gen_str(g, "psa_tenant", identity.session.psa_tenant);
        gen_str(g, "psa_user", identity.session.psa_user);
        gen_key(g, "expires_at");
        yajl_gen_integer(g, (long long)identity.session.expires_at);
        sg_identity_clear(&identity);
    }
    if (link_mode) {
        char *idp_tenant = NULL, *idp_sub = NULL;
        gen_key(g, "psa");
        if (user != NULL) {
            yajl_gen_map_open(g);
            gen_str(g, "tenant", user->tenant);
            gen_str(g, "user", user->user);
            gen_key(g, "admin");
            yajl_gen_bool(g, user->admin);
            gen_key(g, "staff");
            yajl_gen_bool(g, user->staff);
            yajl_gen_map_close(g);
        } else {
            yajl_gen_null(g);
        }
        bool tenant_linked =
            user != NULL && sg_links_tenant_get_by_psa(store, user->tenant, &idp_tenant) == 0;
        gen_key(g, "tenant_linked");
        yajl_gen_bool(g, tenant_linked);
        gen_str(g, "linked_idp_tenant", idp_tenant);
        bool user_linked = user != NULL && sg_links_user_get_by_psa(store, user->tenant, user->user,
                                                                    NULL, &idp_sub) == 0;
        gen_key(g, "user_linked");
        yajl_gen_bool(g, user_linked);
        gen_str(g, "linked_idp_sub", idp_sub);
        free(idp_tenant);
        free(idp_sub);
    }
    yajl_gen_map_close(g);

    const unsigned char *json;
    size_t len;
    yajl_gen_get_buf(g, &json, &len);
    struct evbuffer *body = evbuffer_new();
    evbuffer_add(body, json, len);
    struct evkeyvalq *headers = evhttp_request_get_output_headers(s->r->req);
    evhttp_add_header(headers, "Content-Type", "application/json");
    evhttp_add_header(headers, "Cache-Control", "no-store");
    sg_reply(s->r->req, 200, "OK", body);
    evbuffer_free(body);
    yajl_gen_free(g);
    return 200;
}

static const struct {
    const char *done;
    const char *text;
} banners[] = {
    {"tenant_linked", "IT Complete is now on for your company. Each user can now enable Log in "
                      "with IT Complete in their own My Settings."},
    {"tenant_unlinked", "IT Complete is now off for your company. Every user link and IT Complete "
                        "session of your company has ended; everyone signs in with their PSA "
                        "password again."},
    {"user_unlinked", "Log in with IT Complete is disabled for your login, and your IT Complete "
                      "sessions have ended. Sign in with your PSA password from now on."},
};

static void add_button(struct evbuffer *out, const char *action, const char *csrf,
                       const char *label, bool secondary)
{
    evbuffer_add_printf(out,
                        "<form method=\"post\" action=\"/_sso/%s\">"
                        "<input type=\"hidden\" name=\"csrf\" value=\"%s\">"
                        "<button type=\"submit\"%s>%s</button></form>",
                        action, csrf, secondary ? " class=\"secondary\"" : "", label);
}

/* The PSA caller as linking.c reads it; strings borrowed from user. */
static struct sg_linking_caller caller_of(const struct sg_psa_user *user)
{
    return (struct sg_linking_caller){.tenant = user->tenant,
                                      .user = user->user,
                                      .admin = user->admin,
                                      .staff = user->staff,
                                      .active = user->active};
}

/* The links of the caller's tenant and user, looked up (a failed lookup reads
 * as "not linked"): the strings, and the view of them linking.c reads. */
struct caller_links {
    char *tenant_idp;
    char *user_idp_tenant;
    char *user_idp_sub;
    struct sg_linking_links view;
};

static void links_of(struct sg_store *store, const struct sg_psa_user *user,
                     struct caller_links *links)
{
    *links = (struct caller_links){0};
    if (sg_links_tenant_get_by_psa(store, user->tenant, &links->tenant_idp) != 0) {
        free(links->tenant_idp);
        links->tenant_idp = NULL;
    }
    if (sg_links_user_get_by_psa(store, user->tenant, user->user, &links->user_idp_tenant,
                                 &links->user_idp_sub) != 0) {
        free(links->user_idp_tenant);
        free(links->user_idp_sub);
        links->user_idp_tenant = links->user_idp_sub = NULL;
    }
    links->view = (struct sg_linking_links){.tenant_idp = links->tenant_idp,
                                            .user_idp_tenant = links->user_idp_tenant,
                                            .user_idp_sub = links->user_idp_sub};
}

static void links_clear(struct caller_links *links)
{
    free(links->tenant_idp);
    free(links->user_idp_tenant);
    free(links->user_idp_sub);
}

static int send_settings(struct settings_request *s, const struct sg_psa_user *user)
{
    struct evbuffer *out = evbuffer_new();
    struct sg_linking_caller caller = caller_of(user);
    struct caller_links links;
    links_of(s->r->store, user, &links);
    char *name_html = sg_html_escape(user->user);
    char *tenant_html = sg_html_escape(user->tenant);

    for (size_t i = 0; s->done != NULL && i < SG_ARRAY_LEN(banners); i++) {
        if (strcmp(s->done, banners[i].done) == 0)
            evbuffer_add_printf(out, "<p class=\"banner ok\" role=\"status\">%s</p>",
                                banners[i].text);
    }
    evbuffer_add_printf(out,
                        "<p>Signed in to the PSA as <strong>%s</strong> in PSA tenant "
                        "<strong>%s</strong>.</p>",
                        name_html, tenant_html);

    evbuffer_add_printf(out, "<section aria-labelledby=\"login-itc\"><h2 id=\"login-itc\">Log in "
                             "with IT Complete</h2>");
    switch (sg_linking_user_offer(&caller, &links.view)) {
    case SG_LINKING_OFFER_USER_PORTAL:
        evbuffer_add_printf(out, "<p class=\"banner warn\" id=\"user-state\">Not available: "
                                 "Client portal users cannot use Log in with IT Complete. Keep "
                                 "signing in with your PSA password.</p>");
        break;
    case SG_LINKING_OFFER_USER_DISABLE:
        evbuffer_add_printf(out, "<p id=\"user-state\">Status: <span class=\"state\">Enabled"
                                 "</span>. On the PSA sign-in page, use the Log in with IT "
                                 "Complete button. Disabling it ends your IT Complete sessions; "
                                 "you then sign in with your PSA password.</p>");
        add_button(out, "user/disable", s->csrf, "Disable Log in with IT Complete", true);
        break;
    case SG_LINKING_OFFER_USER_ENABLE:
        evbuffer_add_printf(out, "<p id=\"user-state\">Status: <span class=\"state\">Disabled"
                                 "</span>. Enabling it takes you to IT Complete: sign in there "
                                 "with your own account and its 6-digit two-factor code, and "
                                 "you come back to the PSA signed in.</p>");
        add_button(out, "user/enable", s->csrf, "Enable Log in with IT Complete", false);
        break;
    case SG_LINKING_OFFER_USER_NOT_YET:
    default:
        evbuffer_add_printf(out, "<p id=\"user-state\">Not available yet: an administrator must "
                                 "turn on IT Complete for your company first. Until then, sign in "
                                 "with your PSA password.</p>");
        break;
    }
    evbuffer_add_printf(out, "</section>");

    enum sg_linking_offer tenant_offer = sg_linking_tenant_offer(&caller, &links.view);
    if (tenant_offer != SG_LINKING_OFFER_TENANT_NONE) {
        evbuffer_add_printf(out, "<section aria-labelledby=\"tenant-itc\"><h2 id=\"tenant-itc\">"
                                 "IT Complete for your company</h2>");
        if (tenant_offer == SG_LINKING_OFFER_TENANT_DISABLE) {
            char *idp_html = sg_html_escape(links.tenant_idp);
            evbuffer_add_printf(out,
                                "<p id=\"tenant-state\">Status: <span class=\"state\">On</span>"
                                " &mdash; linked to IT Complete tenant <code>%s</code>. Turning "
                                "it off unlinks every user of your company and ends their IT "
                                "Complete sessions.</p>",
                                idp_html);
            free(idp_html);
            add_button(out, "tenant/disable", s->csrf, "Turn IT Complete off", true);
        } else {
            evbuffer_add_printf(out,
                                "<p id=\"tenant-state\">Status: <span class=\"state\">Off</span>"
                                ". Turning it on takes you to IT Complete: sign in there with "
                                "your tenant's master account and its 6-digit two-factor code. "
                                "One IT Complete tenant can be linked to one PSA tenant only.</p>");
            add_button(out, "tenant/enable", s->csrf, "Turn IT Complete on", false);
        }
        evbuffer_add_printf(out, "</section>");
    }
    evbuffer_add(out, "", 1);
    if (s->new_csrf)
        sg_cookies_set(evhttp_request_get_output_headers(s->r->req), s->r->snap->cfg,
                       SG_COOKIE_CSRF, s->csrf);
    sg_page_send_html(s->r->req, 200, "My Settings", (const char *)evbuffer_pullup(out, -1), NULL);
    evbuffer_free(out);
    links_clear(&links);
    free(name_html);
    free(tenant_html);
    return 200;
}

static void see_other(struct evhttp_request *req, const char *location)
{
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Location", location);
    evhttp_add_header(headers, "Cache-Control", "no-store");
    sg_reply(req, 303, "See Other", NULL);
}

static int store_error(struct settings_request *s, int err)
{
    sg_metrics_error(SG_MERR_STORE);
    sg_log(SG_LOG_ERROR, "link", "store: %s", sg_strerror(err));
    if (err == SG_EUNAVAILABLE) {
        evhttp_add_header(evhttp_request_get_output_headers(s->r->req), "Retry-After", "5");
        sg_page_send(s->r->req, 503, "Nothing was changed",
                     "The gateway cannot reach its shared store just now, so the links were not "
                     "changed. Please try again in a moment.",
                     s->r->id);
        return 503;
    }
    sg_page_send(s->r->req, 500, "Nothing was changed",
                 "The gateway could not update the links. Please try again.", s->r->id);
    return 500;
}

/* Answers a POST as linking.c's table says for decision: its log line,
 * counters and page or redirect. Returns the status sent, or 0 when the
 * caller goes on. */
static int answer(struct settings_request *s, enum sg_linking_decision decision,
                  const struct sg_psa_user *user)
{
    const struct sg_linking_answer *a = sg_linking_answer(decision);
    if (a->link != NULL) {
        bool user_link = strcmp(a->link, "user") == 0;
        sg_log_fields(SG_LOG_INFO, "link",
                      (struct sg_log_field[]){SG_LOG_STR("link", a->link),
                                              SG_LOG_STR("result", a->link_result),
                                              SG_LOG_STR("psa_tenant", user->tenant),
                                              SG_LOG_STR("psa_user", user->user)},
                      user_link ? 4 : 3);
    }
    if (a->links_result != NULL)
        sg_metrics_count("ssogate_links_total", "result", a->links_result);
    if (a->request_result != NULL)
        sg_metrics_count("ssogate_link_requests_total", "result", a->request_result);
    if (a->status == 0)
        return 0;
    if (a->location != NULL)
        see_other(s->r->req, a->location);
    else
        sg_page_send(s->r->req, a->status, a->title, a->message, s->r->id);
    return a->status;
}

/* An enable POST: its refusal page, or the IdP login of purpose that returns to return_to. */
static int enable(struct settings_request *s, enum sg_linking_decision decision,
                  const struct sg_psa_user *user, enum sg_login_purpose purpose,
                  const char *return_to)
{
    int status = answer(s, decision, user);
    if (status != 0)
        return status;
    return sg_login_begin(s->r, purpose, return_to, user->tenant, user->user, 303);
}

/* An unlink in PostgreSQL is done: the answer the LMDB path gives at once. */
static void on_unlinked(void *arg, int err)
{
    struct settings_request *s = arg;
    s->op = NULL;
    int status =
        err == 0 || err == SG_ENOENT ? answer(s, s->decision, &s->user) : store_error(s, err);
    sg_request_finish(s->r, status, 0);
}

/* Starts an unlink in the shared store; 0 while it runs, else the error page's status. */
static int unlink_shared(struct settings_request *s, const struct sg_psa_user *user,
                         enum sg_linking_decision decision, bool tenant)
{
    s->decision = decision;
    s->user.tenant = sg_strdup(user->tenant);
    s->user.user = sg_strdup(user->user);
    s->op = tenant
                ? sg_pgstore_tenant_unlink(s->r->shared, user->tenant, "settings", on_unlinked, s)
                : sg_pgstore_user_unlink(s->r->shared, user->tenant, user->user, "settings",
                                         on_unlinked, s);
    return s->op != NULL ? 0 : store_error(s, SG_EINVAL);
}

/* The POSTs: linking.c decides, the store changes here. */
static int act(struct settings_request *s, const struct sg_psa_user *user)
{
    struct sg_store *store = s->r->store;
    const struct sg_config *cfg = s->r->snap->cfg;
    struct sg_linking_caller caller = caller_of(user);
    struct caller_links links;
    enum sg_linking_decision decision;
    int err;

    switch (s->action) {
    case ACT_STATUS:
        return send_status(s, user, true);
    case ACT_SETTINGS:
        return send_settings(s, user);
    case ACT_TENANT_ENABLE:
        links_of(store, user, &links);
        decision = sg_linking_tenant_enable(&caller, &links.view);
        links_clear(&links);
        return enable(s, decision, user, SG_LOGIN_LINK_TENANT, "/_sso/settings");
    case ACT_TENANT_DISABLE:
        decision = sg_linking_tenant_disable(&caller);
        if (decision == SG_LINKING_TENANT_DISABLE && s->r->shared != NULL)
            return unlink_shared(s, user, decision, true);
        if (decision == SG_LINKING_TENANT_DISABLE) {
            err = sg_links_tenant_delete(store, user->tenant, NULL);
            if (err != 0 && err != SG_ENOENT)
                return store_error(s, err);
        }
        return answer(s, decision, user);
    case ACT_USER_ENABLE:
        links_of(store, user, &links);
        decision = sg_linking_user_enable(&caller, &links.view);
        links_clear(&links);
        return enable(s, decision, user, SG_LOGIN_LINK_USER, cfg->psa.home_path);
    case ACT_USER_DISABLE:
        if (s->r->shared != NULL)
            return unlink_shared(s, user, sg_linking_user_disable(), false);
        err = sg_links_user_delete(store, user->tenant, user->user);
        if (err != 0 && err != SG_ENOENT)
            return store_error(s, err);
        return answer(s, sg_linking_user_disable(), user);
    }
    return 500;
}

/*
 * Keeps what the PSA just said about the caller with the caller's user link,
 * if any, for psa.whoami.at_login "link". A failure only logs: My Settings
 * still answers, and the kept facts stay as they were.
 */
static void refresh_link_facts(struct settings_request *s, const struct sg_psa_user *user)
{
    if (s->r->shared != NULL) {
        sg_pgstore_user_facts(s->r->shared, user->tenant, user->user, user->staff, user->active);
        return;
    }
    int err =
        sg_links_user_facts_set(s->r->store, user->tenant, user->user, user->staff, user->active);
    if (err == 0 || err == SG_ENOENT || err == SG_EINVAL)
        return;
    sg_metrics_error(SG_MERR_STORE);
    sg_log_fields(SG_LOG_ERROR, "link",
                  (struct sg_log_field[]){SG_LOG_STR("request_id", s->r->id),
                                          SG_LOG_STR("result", "facts_not_stored"),
                                          SG_LOG_STR("detail", sg_strerror(err))},
                  3);
}

static void on_whoami(enum sg_whoami_error err, const struct sg_psa_user *user, void *arg)
{
    struct settings_request *s = arg;
    int status;
    s->whoami = NULL;

    if (err == SG_WHOAMI_OK) {
        refresh_link_facts(s, user);
        status = act(s, user);
        if (status == 0)
            return; /* the shared store or the login's state is being written */
    } else if (err == SG_WHOAMI_UNAUTHENTICATED) {
        if (s->action == ACT_STATUS) {
            status = send_status(s, NULL, true);
        } else {
            /* A user who just disabled their only sign-in (an SSO session)
             * lands here: the banner still says that it worked. */
            const char *done = NULL;
            for (size_t i = 0; s->done != NULL && i < SG_ARRAY_LEN(banners); i++) {
                if (strcmp(s->done, banners[i].done) == 0)
                    done = banners[i].text;
            }
            char *login = sg_html_escape(s->r->snap->cfg->psa.login_path);
            char *body = sg_asprintf("%s%s%s<p>My Settings needs to know who you are in the PSA, "
                                     "and you are not signed in to it. Sign in, then come back to "
                                     "My Settings.</p><p><a href=\"%s\">Go to the PSA sign-in "
                                     "page</a></p>",
                                     done ? "<p class=\"banner ok\" role=\"status\">" : "",
                                     done ? done : "", done ? "</p>" : "", login);
            sg_page_send_html(s->r->req, 401, "Sign in first", body, s->r->id);
            free(body);
            free(login);
            status = 401;
        }
    } else {
        sg_metrics_count("ssogate_whoami_errors_total", "reason", sg_whoami_error_name(err));
        sg_log_fields(SG_LOG_WARN, "whoami",
                      (struct sg_log_field[]){SG_LOG_STR("request_id", s->r->id),
                                              SG_LOG_STR("reason", sg_whoami_error_name(err))},
                      2);
        sg_page_send(s->r->req, 502, "The PSA did not answer",
                     "The gateway could not ask the PSA who you are, so nothing was changed. "
                     "Please try again in a moment.",
                     s->r->id);
        status = 502;
    }
    sg_request_finish(s->r, status, 0);
}

/* Asks the PSA who the caller is, then does action (the router checked a
 * POST's origin and CSRF token). */
static int handle(struct sg_request *r, enum action action)
{
    struct evhttp_request *req = r->req;
    const struct sg_config *cfg = r->snap->cfg;

    struct settings_request *s = sg_calloc(1, sizeof(*s));
    s->r = r;
    s->action = action;
    sg_request_on_finish(r, request_free, s);
    s->new_csrf = sg_csrf_token(cfg, evhttp_request_get_input_headers(req), s->csrf);
    if (action == ACT_SETTINGS) {
        const char *done = sg_request_param(r, "done");
        s->done = done ? sg_strdup(done) : NULL;
    }
    if (action == ACT_STATUS && cfg->identity == SG_IDENTITY_CLAIMS)
        return send_status(s, NULL, false);
    s->whoami = sg_whoami_fetch_caller(r, sg_runtime_session_writer(r->rt), on_whoami, s);
    sg_request_wait(r, on_gone, s);
    return 0;
}

int sg_settings_page(struct sg_request *r)
{
    return handle(r, ACT_SETTINGS);
}

int sg_settings_status(struct sg_request *r)
{
    return handle(r, ACT_STATUS);
}

int sg_settings_tenant_enable(struct sg_request *r)
{
    return handle(r, ACT_TENANT_ENABLE);
}

int sg_settings_tenant_disable(struct sg_request *r)
{
    return handle(r, ACT_TENANT_DISABLE);
}

int sg_settings_user_enable(struct sg_request *r)
{
    return handle(r, ACT_USER_ENABLE);
}

int sg_settings_user_disable(struct sg_request *r)
{
    return handle(r, ACT_USER_DISABLE);
}
