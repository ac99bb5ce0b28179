/*
 * ssogate-load: drives complete browser-like login flows through an OpenID
 * Connect gateway (ssogate, or any peer such as mod_auth_openidc) and the
 * test IdP, on one libevent loop, and measures each hop.
 *
 * A flow is one simulated browser with its own cookie jar: GET the protected
 * target, follow the redirects to the IdP, fill #login-form (login,
 * password), then #otp-form (an RFC 6238 code), follow the redirects back to
 * the gateway's callback, then to the target (the first page), then make
 * --requests authenticated requests. Hops are told apart by where the flow
 * is, not by the gateway's paths, so any gateway works.
 *
 * Steady mode (--sessions N) logs N flows in and keeps their session
 * cookies, then spreads authenticated requests over those sessions at
 * --request-concurrency for --duration seconds.
 *
 * Output: a live progress line on stderr, a table on stdout, and --json FILE.
 */
#include "form.h"
#include "hconn.h"
#include "hist.h"
#include "jar.h"
#include "totp.h"

#include "ssogate/common.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define CONCURRENCY_MAX  10000
#define REDIRECTS_MAX    20
#define ERROR_KINDS_MAX  64
#define ERROR_KIND_LEN   64
#define ACCOUNTS_MAX     1000000
#define ACCOUNT_LINE_MAX 1024
/* Seconds between progress lines when stderr is not a terminal. */
#define PROGRESS_LOG_S 10
/* Descriptors needed beyond the flows' connections: stdio, the probe, output files, epoll. */
#define FD_SPARE 64

enum hop {
    HOP_GATEWAY,
    HOP_IDP_AUTHORIZE,
    HOP_IDP_LOGIN,
    HOP_IDP_TOTP,
    HOP_CALLBACK,
    HOP_FIRST_PAGE,
    HOP_LOGIN,
    HOP_AUTHED,
    HOP_PROBE,
    HOP_COUNT
};

static const char *const hop_names[HOP_COUNT] = {
    "gateway_redirect", "idp_authorize", "idp_login", "idp_totp", "callback",
    "first_page",       "login",         "authed",    "probe",
};

struct account {
    char *login;
    char *password;
    unsigned char key[SG_TOTP_SECRET_MAX];
    size_t key_len;
};

struct options {
    const char *target;
    const char *ca_file;
    const char *json_file;
    const char *label;
    const char *cookies_out;
    const char *probe;
    uint64_t flows;
    unsigned concurrency;
    double duration_s;
    unsigned think_ms;
    unsigned requests;
    unsigned timeout_ms;
    double rate;
    uint64_t sessions;
    unsigned request_concurrency;
    uint64_t steady_requests;
    unsigned probe_interval_ms;
    bool one_connection;
    bool quiet;
};

struct error_kind {
    char kind[ERROR_KIND_LEN];
    uint64_t count;
};

struct slot;

struct load {
    struct options opt;
    struct event_base *base;
    struct sg_hclient *client;
    struct sg_hurl target;
    char *target_path;
    struct account *accounts;
    size_t account_count;

    struct sg_hist hist[HOP_COUNT];
    struct error_kind errors[ERROR_KINDS_MAX];
    unsigned error_kind_count;
    uint64_t errors_other;

    uint64_t flows_started, flows_ok, flows_failed;
    unsigned in_flight;
    unsigned in_flight_max;
    int64_t start_us, last_login_us, logins_done_us;
    bool no_more_flows;

    /* Steady mode: the sessions' Cookie headers for the target, then the request phase. */
    char **sessions;
    size_t session_count, session_capacity;
    bool steady_phase;
    int64_t steady_start_us, steady_end_us;
    uint64_t steady_started, steady_done;
    size_t next_session;
    struct slot *slots;
    unsigned slots_busy;

    struct event *spawner;
    struct event *progress;
    struct event *sigint;
    uint64_t last_progress_ok;
    uint64_t last_progress_requests;
    unsigned progress_ticks;
    bool interrupted;

    struct sg_hurl probe_url;
    struct sg_hconn *probe_conn;
    struct event *probe_timer;
    int64_t probe_sent_us;
};

struct flow {
    struct load *ld;
    const struct account *account;
    struct sg_jar *jar;
    /* Kept-alive connections, as a browser keeps them: to the gateway, and to the IdP. */
    struct sg_hconn *gateway_conn;
    struct sg_hconn *idp_conn;
    struct sg_hurl url;
    struct sg_form form; /* what a POST submits (the request is a GET when post is false) */
    bool post;
    bool type_code; /* the TOTP code goes in when the form is sent: the user types it last */
    enum hop hop;
    int64_t hop_start_us;
    int64_t login_start_us;
    int64_t think_us;
    unsigned redirects;
    unsigned requests_left;
    struct event *think;
};

struct slot {
    struct load *ld;
    struct sg_hconn *conn;
    int64_t sent_us;
};

static void flow_send(struct flow *f);
static void spawn(struct load *ld);
static void steady_begin(struct load *ld);
static void maybe_done(struct load *ld);

/* ---- errors ---- */

static void count_error(struct load *ld, const char *where, const char *what)
{
    char kind[ERROR_KIND_LEN];
    snprintf(kind, sizeof(kind), "%s:%s", where, what);
    for (unsigned i = 0; i < ld->error_kind_count; i++) {
        if (strcmp(ld->errors[i].kind, kind) == 0) {
            ld->errors[i].count++;
            return;
        }
    }
    if (ld->error_kind_count == ERROR_KINDS_MAX) {
        ld->errors_other++;
        return;
    }
    memcpy(ld->errors[ld->error_kind_count].kind, kind, sizeof(kind));
    ld->errors[ld->error_kind_count].count = 1;
    ld->error_kind_count++;
}

static uint64_t error_total(const struct load *ld)
{
    uint64_t total = ld->errors_other;
    for (unsigned i = 0; i < ld->error_kind_count; i++)
        total += ld->errors[i].count;
    return total;
}

/* ---- flows ---- */

static void flow_free(struct flow *f)
{
    sg_hconn_free(f->gateway_conn);
    sg_hconn_free(f->idp_conn);
    sg_jar_free(f->jar);
    sg_hurl_clear(&f->url);
    sg_form_clear(&f->form);
    if (f->think)
        event_free(f->think);
    free(f);
}

/* Ends a flow, successful or not, and lets the spawner start the next one. */
static void flow_end(struct flow *f, bool ok)
{
    struct load *ld = f->ld;
    if (ok) {
        if (ld->opt.sessions > 0 || ld->opt.cookies_out != NULL) {
            char *cookie = sg_jar_header(f->jar, ld->target.origin, ld->target_path);
            if (cookie != NULL) {
                if (ld->session_count == ld->session_capacity) {
                    ld->session_capacity = ld->session_capacity ? 2 * ld->session_capacity : 256;
                    ld->sessions = sg_realloc(ld->sessions, ld->session_capacity * sizeof(char *));
                }
                ld->sessions[ld->session_count++] = cookie;
            }
        }
    }
    flow_free(f);
    ld->in_flight--;
    event_active(ld->spawner, EV_TIMEOUT, 0);
}

static void flow_fail(struct flow *f, const char *what)
{
    count_error(f->ld, hop_names[f->hop], what);
    f->ld->flows_failed++;
    flow_end(f, false);
}

static void hop_end(struct flow *f)
{
    sg_hist_record(&f->ld->hist[f->hop], sg_mono_us() - f->hop_start_us);
    f->hop_start_us = 0;
}

static void on_think_done(evutil_socket_t fd, short what, void *arg)
{
    flow_send(arg);
}

/* Sends the flow's next request now, or after the think time when the user has something to do. */
static void flow_next(struct flow *f, bool think)
{
    unsigned ms = f->ld->opt.think_ms;
    if (!think || ms == 0) {
        flow_send(f);
        return;
    }
    if (f->think == NULL)
        f->think = evtimer_new(f->ld->base, on_think_done, f);
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    f->think_us += (int64_t)ms * 1000;
    evtimer_add(f->think, &tv);
}

/* Fills and submits a form of the IdP page in resp. Returns false (and has failed the flow) when
 * the page has no such form. */
static bool submit_form(struct flow *f, const struct sg_hresp *resp, const char *id)
{
    struct evbuffer *body = resp->body;
    size_t len = evbuffer_get_length(body);
    const char *html = len ? (const char *)evbuffer_pullup(body, -1) : "";
    struct sg_form form;
    int err = sg_form_find(html, len, id, &form);
    if (err != 0) {
        flow_fail(f, err == SG_ENOENT ? "no_form" : "bad_form");
        return false;
    }
    f->type_code = strcmp(id, "otp-form") == 0;
    if (!f->type_code) {
        err = sg_form_set(&form, "login", f->account->login);
        if (err == 0)
            err = sg_form_set(&form, "password", f->account->password);
    }
    struct sg_hurl next;
    if (err == 0)
        err = sg_hurl_resolve(&f->url, form.action[0] ? form.action : f->url.target, &next);
    if (err != 0) {
        sg_form_clear(&form);
        flow_fail(f, "bad_form");
        return false;
    }
    sg_form_clear(&f->form);
    f->form = form;
    f->post = strcmp(form.method, "POST") == 0;
    sg_hurl_clear(&f->url);
    f->url = next;
    f->redirects = 0;
    return true;
}

/* Whether a page carries the form with this id (a cheap look before parsing). */
static bool page_has(const struct sg_hresp *resp, const char *id)
{
    struct evbuffer_ptr found;
    char needle[64];
    int n = snprintf(needle, sizeof(needle), "id=\"%s\"", id);
    found = evbuffer_search(resp->body, needle, (size_t)n, NULL);
    return found.pos >= 0;
}

static void on_flow_response(const char *err, const struct sg_hresp *resp, void *arg);

static void flow_send(struct flow *f)
{
    struct load *ld = f->ld;
    bool to_gateway = strcmp(f->url.origin, ld->target.origin) == 0;
    struct sg_hconn **conn = to_gateway ? &f->gateway_conn : &f->idp_conn;
    struct sg_hconn **other = to_gateway ? &f->idp_conn : &f->gateway_conn;
    if (ld->opt.one_connection && *other != NULL) {
        /* Fewer descriptors than a browser uses, so that 10,000 flows fit the limit. */
        sg_hconn_free(*other);
        *other = NULL;
    }
    if (*conn != NULL && !sg_hconn_same_origin(*conn, &f->url)) {
        /* Another IdP origin than before (a redirect elsewhere): a new connection. */
        sg_hconn_free(*conn);
        *conn = NULL;
    }
    if (*conn == NULL)
        *conn = sg_hconn_new(ld->client, &f->url);
    char *path = sg_hurl_path(&f->url);
    char *cookie = sg_jar_header(f->jar, f->url.origin, path);
    free(path);
    char *body = NULL;
    if (f->post && f->type_code) {
        char code[7];
        if (sg_totp_code(f->account->key, f->account->key_len, sg_now_s(), code) != 0 ||
            sg_form_set(&f->form, "code", code) != 0) {
            free(cookie);
            flow_fail(f, "bad_form");
            return;
        }
    }
    if (f->post)
        body = sg_form_encode(&f->form);
    if (f->hop_start_us == 0)
        f->hop_start_us = sg_mono_us();
    int err = sg_hconn_request(*conn, f->post ? "POST" : "GET", &f->url, cookie, body,
                               on_flow_response, f);
    free(cookie);
    free(body);
    if (err != 0)
        flow_fail(f, err == SG_ECONFIG ? "https_without_ca" : "connect");
}

static void login_done(struct flow *f)
{
    struct load *ld = f->ld;
    int64_t now = sg_mono_us();
    sg_hist_record(&ld->hist[HOP_LOGIN], now - f->login_start_us - f->think_us);
    ld->flows_ok++;
    ld->last_login_us = now;
}

/* A redirect: where it goes decides the hop. */
static void on_redirect(struct flow *f, const struct sg_hresp *resp)
{
    struct load *ld = f->ld;
    struct sg_hurl next;
    if (resp->location == NULL || sg_hurl_resolve(&f->url, resp->location, &next) != 0) {
        flow_fail(f, "bad_location");
        return;
    }
    bool to_gateway = strcmp(next.origin, ld->target.origin) == 0;
    bool keep_method = resp->status == 307 || resp->status == 308;
    if (++f->redirects > REDIRECTS_MAX) {
        sg_hurl_clear(&next);
        flow_fail(f, "redirect_loop");
        return;
    }
    const char *fail = NULL;
    switch (f->hop) {
    case HOP_GATEWAY:
        if (!to_gateway) {
            hop_end(f);
            f->hop = HOP_IDP_AUTHORIZE;
        }
        break;
    case HOP_IDP_AUTHORIZE:
    case HOP_IDP_LOGIN:
    case HOP_IDP_TOTP:
        if (to_gateway) {
            if (f->hop != HOP_IDP_TOTP) {
                fail = "left_idp_early";
                break;
            }
            hop_end(f);
            f->hop = HOP_CALLBACK;
        }
        break;
    case HOP_CALLBACK:
        if (!to_gateway) {
            fail = "redirect_offsite";
            break;
        }
        hop_end(f);
        f->hop = HOP_FIRST_PAGE;
        break;
    default:
        /* The session was not accepted: the gateway sends the browser to log in again. */
        fail = "redirect";
        break;
    }
    if (fail != NULL) {
        sg_hurl_clear(&next);
        flow_fail(f, fail);
        return;
    }
    sg_hurl_clear(&f->url);
    f->url = next;
    if (!keep_method) {
        f->post = false;
        sg_form_clear(&f->form);
    }
    flow_next(f, false);
}

static void on_flow_response(const char *err, const struct sg_hresp *resp, void *arg)
{
    struct flow *f = arg;
    struct load *ld = f->ld;
    if (err != NULL) {
        flow_fail(f, err);
        return;
    }
    char *path = sg_hurl_path(&f->url);
    for (unsigned i = 0; i < resp->set_cookie_count; i++)
        sg_jar_store(f->jar, f->url.origin, path, resp->set_cookies[i]);
    free(path);

    int status = resp->status;
    if (status == 301 || status == 302 || status == 303 || status == 307 || status == 308) {
        on_redirect(f, resp);
        return;
    }
    if (status != 200) {
        char what[32];
        snprintf(what, sizeof(what), "status_%d", status);
        flow_fail(f, what);
        return;
    }
    switch (f->hop) {
    case HOP_IDP_AUTHORIZE:
        if (!page_has(resp, "login-form")) {
            flow_fail(f, "no_login_form");
            return;
        }
        hop_end(f);
        if (!submit_form(f, resp, "login-form"))
            return;
        f->hop = HOP_IDP_LOGIN;
        flow_next(f, true);
        return;
    case HOP_IDP_LOGIN:
        if (!page_has(resp, "otp-form")) {
            flow_fail(f, page_has(resp, "login-form") ? "login_refused" : "no_otp_form");
            return;
        }
        hop_end(f);
        if (!submit_form(f, resp, "otp-form"))
            return;
        f->hop = HOP_IDP_TOTP;
        flow_next(f, true);
        return;
    case HOP_IDP_TOTP:
        flow_fail(f, page_has(resp, "otp-form") ? "totp_refused" : "unexpected_page");
        return;
    case HOP_FIRST_PAGE:
        hop_end(f);
        login_done(f);
        break;
    case HOP_AUTHED:
        hop_end(f);
        f->requests_left--;
        break;
    default:
        /* The gateway served the target without a login, or the callback answered a page. */
        flow_fail(f, "unexpected_page");
        return;
    }
    if (f->requests_left == 0) {
        flow_end(f, true);
        return;
    }
    f->hop = HOP_AUTHED;
    f->post = false;
    sg_form_clear(&f->form);
    sg_hurl_clear(&f->url);
    sg_hurl_copy(&f->url, &ld->target);
    flow_next(f, true);
}

static void flow_start(struct load *ld)
{
    struct flow *f = sg_calloc(1, sizeof(*f));
    f->ld = ld;
    f->account = &ld->accounts[ld->flows_started % ld->account_count];
    f->jar = sg_jar_new();
    f->hop = HOP_GATEWAY;
    f->requests_left = ld->opt.requests;
    sg_hurl_copy(&f->url, &ld->target);
    ld->flows_started++;
    ld->in_flight++;
    if (ld->in_flight > ld->in_flight_max)
        ld->in_flight_max = ld->in_flight;
    f->login_start_us = sg_mono_us();
    flow_send(f);
}

static bool may_start_more(struct load *ld)
{
    if (ld->interrupted)
        return false;
    if (ld->opt.flows > 0 && ld->flows_started >= ld->opt.flows)
        return false;
    if (ld->opt.sessions == 0 && ld->opt.duration_s > 0 &&
        sg_mono_us() - ld->start_us >= (int64_t)(ld->opt.duration_s * 1e6))
        return false;
    return true;
}

/* Starts flows up to the concurrency (and the rate, when one is set). */
static void spawn(struct load *ld)
{
    while (ld->in_flight < ld->opt.concurrency && may_start_more(ld)) {
        if (ld->opt.rate > 0) {
            double elapsed_s = (double)(sg_mono_us() - ld->start_us) / 1e6;
            if ((double)ld->flows_started >= elapsed_s * ld->opt.rate + 1) {
                struct timeval tv = {.tv_sec = 0, .tv_usec = (suseconds_t)(1e6 / ld->opt.rate) + 1};
                if (tv.tv_usec >= 1000000) {
                    tv.tv_sec = tv.tv_usec / 1000000;
                    tv.tv_usec %= 1000000;
                }
                evtimer_add(ld->spawner, &tv);
                return;
            }
        }
        flow_start(ld);
    }
    maybe_done(ld);
}

static void on_spawn(evutil_socket_t fd, short what, void *arg)
{
    spawn(arg);
}

/* ---- steady mode ---- */

static void slot_send(struct slot *s);

static bool steady_over(const struct load *ld)
{
    if (ld->interrupted)
        return true;
    if (ld->opt.steady_requests > 0 && ld->steady_started >= ld->opt.steady_requests)
        return true;
    return ld->opt.duration_s > 0 &&
           sg_mono_us() - ld->steady_start_us >= (int64_t)(ld->opt.duration_s * 1e6);
}

static void on_slot_response(const char *err, const struct sg_hresp *resp, void *arg)
{
    struct slot *s = arg;
    struct load *ld = s->ld;
    ld->slots_busy--;
    ld->steady_done++;
    if (err != NULL) {
        count_error(ld, "steady", err);
    } else if (resp->status != 200) {
        char what[32];
        snprintf(what, sizeof(what), "status_%d", resp->status);
        count_error(ld, "steady", what);
    } else {
        sg_hist_record(&ld->hist[HOP_AUTHED], sg_mono_us() - s->sent_us);
    }
    if (!steady_over(ld)) {
        slot_send(s);
        return;
    }
    if (ld->slots_busy == 0) {
        ld->steady_end_us = sg_mono_us();
        event_base_loopexit(ld->base, NULL);
    }
}

static void slot_send(struct slot *s)
{
    struct load *ld = s->ld;
    const char *cookie = ld->sessions[ld->next_session++ % ld->session_count];
    if (s->conn == NULL)
        s->conn = sg_hconn_new(ld->client, &ld->target);
    s->sent_us = sg_mono_us();
    ld->steady_started++;
    if (sg_hconn_request(s->conn, "GET", &ld->target, cookie, NULL, on_slot_response, s) != 0) {
        /* No socket to be had: this slot stops rather than spin. */
        count_error(ld, "steady", "connect");
        ld->steady_done++;
        if (ld->slots_busy == 0) {
            ld->steady_end_us = sg_mono_us();
            event_base_loopexit(ld->base, NULL);
        }
        return;
    }
    ld->slots_busy++;
}

static void steady_begin(struct load *ld)
{
    ld->steady_phase = true;
    ld->steady_start_us = sg_mono_us();
    if (ld->session_count == 0 || (ld->opt.duration_s <= 0 && ld->opt.steady_requests == 0)) {
        ld->steady_end_us = ld->steady_start_us;
        event_base_loopexit(ld->base, NULL);
        return;
    }
    ld->slots = sg_calloc(ld->opt.request_concurrency, sizeof(*ld->slots));
    for (unsigned i = 0; i < ld->opt.request_concurrency; i++) {
        ld->slots[i].ld = ld;
        if (!steady_over(ld))
            slot_send(&ld->slots[i]);
    }
    if (ld->slots_busy == 0) {
        ld->steady_end_us = sg_mono_us();
        event_base_loopexit(ld->base, NULL);
    }
}

/* After the login flows: the steady phase, or the end. */
static void maybe_done(struct load *ld)
{
    if (ld->in_flight > 0 || may_start_more(ld) || ld->no_more_flows)
        return;
    ld->no_more_flows = true;
    ld->logins_done_us = sg_mono_us();
    if (ld->opt.sessions > 0 && !ld->interrupted)
        steady_begin(ld);
    else
        event_base_loopexit(ld->base, NULL);
}

/* ---- the probe ---- */

static void on_probe_response(const char *err, const struct sg_hresp *resp, void *arg)
{
    struct load *ld = arg;
    if (err != NULL)
        count_error(ld, "probe", err);
    else if (resp->status != 200)
        count_error(ld, "probe", "status");
    else
        sg_hist_record(&ld->hist[HOP_PROBE], sg_mono_us() - ld->probe_sent_us);
    struct timeval tv = {.tv_sec = ld->opt.probe_interval_ms / 1000,
                         .tv_usec = (ld->opt.probe_interval_ms % 1000) * 1000};
    evtimer_add(ld->probe_timer, &tv);
}

static void on_probe_timer(evutil_socket_t fd, short what, void *arg)
{
    struct load *ld = arg;
    if (ld->probe_conn == NULL)
        ld->probe_conn = sg_hconn_new(ld->client, &ld->probe_url);
    ld->probe_sent_us = sg_mono_us();
    if (sg_hconn_request(ld->probe_conn, "GET", &ld->probe_url, NULL, NULL, on_probe_response,
                         ld) != 0)
        on_probe_response("connect", NULL, ld);
}

/* ---- progress and report ---- */

static void on_progress(evutil_socket_t fd, short what, void *arg)
{
    struct load *ld = arg;
    bool tty = isatty(STDERR_FILENO);
    /* Into a log, a line every PROGRESS_LOG_S seconds is plenty. */
    if (!tty && ++ld->progress_ticks % PROGRESS_LOG_S != 0)
        return;
    unsigned span = tty ? 1 : PROGRESS_LOG_S;
    double elapsed = (double)(sg_mono_us() - ld->start_us) / 1e6;
    char line[256];
    if (!ld->steady_phase) {
        uint64_t recent = ld->flows_ok - ld->last_progress_ok;
        ld->last_progress_ok = ld->flows_ok;
        snprintf(line, sizeof(line),
                 "[%6.1fs] flows %llu started, %llu ok, %llu failed, %u in flight, %u conns | "
                 "%.0f logins/s",
                 elapsed, (unsigned long long)ld->flows_started, (unsigned long long)ld->flows_ok,
                 (unsigned long long)ld->flows_failed, ld->in_flight,
                 sg_hclient_open_count(ld->client), (double)recent / span);
    } else {
        uint64_t recent = ld->steady_done - ld->last_progress_requests;
        ld->last_progress_requests = ld->steady_done;
        snprintf(line, sizeof(line),
                 "[%6.1fs] steady: %zu sessions, %llu requests, %.0f/s, %llu errors", elapsed,
                 ld->session_count, (unsigned long long)ld->steady_done, (double)recent / span,
                 (unsigned long long)error_total(ld));
    }
    if (tty)
        fprintf(stderr, "\r%-120s", line);
    else
        fprintf(stderr, "%s\n", line);
}

static void on_sigint(evutil_socket_t fd, short what, void *arg)
{
    struct load *ld = arg;
    if (ld->interrupted) {
        event_base_loopexit(ld->base, NULL);
        return;
    }
    /* First ^C: start nothing new, let what is in flight finish (bounded by the timeout). */
    ld->interrupted = true;
    maybe_done(ld);
}

static double ms(int64_t us)
{
    return (double)us / 1000.0;
}

static double logins_per_s(const struct load *ld)
{
    int64_t span = ld->last_login_us - ld->start_us;
    return span > 0 ? (double)ld->flows_ok * 1e6 / (double)span : 0.0;
}

static double steady_per_s(const struct load *ld)
{
    int64_t span = ld->steady_end_us - ld->steady_start_us;
    return span > 0 ? (double)ld->hist[HOP_AUTHED].count * 1e6 / (double)span : 0.0;
}

static void print_table(const struct load *ld)
{
    if (isatty(STDERR_FILENO) && !ld->opt.quiet)
        fputc('\n', stderr);
    printf("ssogate-load %s: %s\n", ld->opt.label ? ld->opt.label : "", ld->opt.target);
    printf("flows: %llu started, %llu ok, %llu failed; %.1f logins/s (concurrency %u, at most %u "
           "in flight)\n",
           (unsigned long long)ld->flows_started, (unsigned long long)ld->flows_ok,
           (unsigned long long)ld->flows_failed, logins_per_s(ld), ld->opt.concurrency,
           ld->in_flight_max);
    if (ld->steady_phase)
        printf("steady: %zu sessions, %llu requests at concurrency %u, %.1f requests/s\n",
               ld->session_count, (unsigned long long)ld->steady_done, ld->opt.request_concurrency,
               steady_per_s(ld));
    printf("%-17s %9s %9s %9s %9s %9s %9s\n", "hop", "count", "mean ms", "p50 ms", "p90 ms",
           "p99 ms", "max ms");
    for (int h = 0; h < HOP_COUNT; h++) {
        const struct sg_hist *hist = &ld->hist[h];
        if (hist->count == 0)
            continue;
        printf("%-17s %9llu %9.2f %9.2f %9.2f %9.2f %9.2f\n", hop_names[h],
               (unsigned long long)hist->count, sg_hist_mean(hist) / 1000.0,
               ms(sg_hist_percentile(hist, 50)), ms(sg_hist_percentile(hist, 90)),
               ms(sg_hist_percentile(hist, 99)), ms(hist->max_us));
    }
    uint64_t errors = error_total(ld);
    printf("errors: %llu\n", (unsigned long long)errors);
    for (unsigned i = 0; i < ld->error_kind_count; i++)
        printf("  %-40s %llu\n", ld->errors[i].kind, (unsigned long long)ld->errors[i].count);
    if (ld->errors_other > 0)
        printf("  %-40s %llu\n", "other", (unsigned long long)ld->errors_other);
    fflush(stdout);
}

/* Writes s as a JSON string; our strings are printable ASCII, anything else is escaped. */
static void json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

static int write_json(const struct load *ld, const char *file)
{
    static const double points[] = {0,  5,  10, 15,   20,   25,    30,    35, 40, 45,
                                    50, 55, 60, 65,   70,   75,    80,    85, 90, 95,
                                    97, 98, 99, 99.5, 99.9, 99.95, 99.99, 100};
    FILE *out = fopen(file, "w");
    if (out == NULL) {
        fprintf(stderr, "ssogate-load: %s: %s\n", file, strerror(errno));
        return SG_EIO;
    }
    fprintf(out, "{\n  \"label\": ");
    json_string(out, ld->opt.label ? ld->opt.label : "");
    fprintf(out, ",\n  \"target\": ");
    json_string(out, ld->opt.target);
    fprintf(out,
            ",\n  \"options\": {\"flows\": %llu, \"concurrency\": %u, \"duration_s\": %.3f, "
            "\"think_ms\": %u, \"requests\": %u, \"timeout_ms\": %u, \"rate\": %.3f, "
            "\"sessions\": %llu, \"request_concurrency\": %u, \"accounts\": %zu, "
            "\"one_connection\": %s},\n",
            (unsigned long long)ld->opt.flows, ld->opt.concurrency, ld->opt.duration_s,
            ld->opt.think_ms, ld->opt.requests, ld->opt.timeout_ms, ld->opt.rate,
            (unsigned long long)ld->opt.sessions, ld->opt.request_concurrency, ld->account_count,
            ld->opt.one_connection ? "true" : "false");
    fprintf(
        out,
        "  \"flows\": {\"started\": %llu, \"ok\": %llu, \"failed\": %llu, \"in_flight_max\": %u},\n"
        "  \"login_seconds\": %.3f,\n  \"logins_per_s\": %.3f,\n",
        (unsigned long long)ld->flows_started, (unsigned long long)ld->flows_ok,
        (unsigned long long)ld->flows_failed, ld->in_flight_max,
        (double)(ld->logins_done_us - ld->start_us) / 1e6, logins_per_s(ld));
    fprintf(out,
            "  \"steady\": {\"sessions\": %zu, \"requests\": %llu, \"seconds\": %.3f, "
            "\"requests_per_s\": %.3f},\n",
            ld->steady_phase ? ld->session_count : 0, (unsigned long long)ld->steady_done,
            (double)(ld->steady_end_us - ld->steady_start_us) / 1e6, steady_per_s(ld));
    fprintf(out, "  \"hops\": {");
    bool first = true;
    for (int h = 0; h < HOP_COUNT; h++) {
        const struct sg_hist *hist = &ld->hist[h];
        if (hist->count == 0)
            continue;
        fprintf(out,
                "%s\n    \"%s\": {\"count\": %llu, \"mean_ms\": %.3f, \"p50_ms\": %.3f, "
                "\"p90_ms\": %.3f, \"p99_ms\": %.3f, \"p999_ms\": %.3f, \"max_ms\": %.3f,\n"
                "      \"percentiles\": [",
                first ? "" : ",", hop_names[h], (unsigned long long)hist->count,
                sg_hist_mean(hist) / 1000.0, ms(sg_hist_percentile(hist, 50)),
                ms(sg_hist_percentile(hist, 90)), ms(sg_hist_percentile(hist, 99)),
                ms(sg_hist_percentile(hist, 99.9)), ms(hist->max_us));
        for (size_t i = 0; i < SG_ARRAY_LEN(points); i++)
            fprintf(out, "%s[%g, %.3f]", i ? ", " : "", points[i],
                    ms(sg_hist_percentile(hist, points[i])));
        fprintf(out, "]}");
        first = false;
    }
    fprintf(out, "\n  },\n  \"errors_total\": %llu,\n  \"errors\": {",
            (unsigned long long)error_total(ld));
    for (unsigned i = 0; i < ld->error_kind_count; i++) {
        fprintf(out, "%s", i ? ", " : "");
        json_string(out, ld->errors[i].kind);
        fprintf(out, ": %llu", (unsigned long long)ld->errors[i].count);
    }
    if (ld->errors_other > 0)
        fprintf(out, "%s\"other\": %llu", ld->error_kind_count ? ", " : "",
                (unsigned long long)ld->errors_other);
    fprintf(out, "}\n}\n");
    if (fclose(out) != 0) {
        fprintf(stderr, "ssogate-load: %s: %s\n", file, strerror(errno));
        return SG_EIO;
    }
    return 0;
}

static int write_cookies(const struct load *ld, const char *file)
{
    FILE *out = fopen(file, "w");
    if (out == NULL) {
        fprintf(stderr, "ssogate-load: %s: %s\n", file, strerror(errno));
        return SG_EIO;
    }
    for (size_t i = 0; i < ld->session_count; i++)
        fprintf(out, "%s\n", ld->sessions[i]);
    if (fclose(out) != 0) {
        fprintf(stderr, "ssogate-load: %s: %s\n", file, strerror(errno));
        return SG_EIO;
    }
    return 0;
}

/* ---- setup ---- */

/* Adds one "login:password:base32secret" account (the password may hold ':'). */
static int add_account(struct load *ld, const char *line)
{
    const char *first = strchr(line, ':');
    const char *last = strrchr(line, ':');
    if (first == NULL || last == first || first == line)
        return SG_EINVAL;
    if (ld->account_count == ACCOUNTS_MAX)
        return SG_ETOOBIG;
    struct account a = {0};
    int n = sg_totp_base32_decode(last + 1, a.key, sizeof(a.key));
    if (n < 0)
        return SG_EINVAL;
    a.key_len = (size_t)n;
    a.login = sg_strndup(line, (size_t)(first - line));
    a.password = sg_strndup(first + 1, (size_t)(last - first - 1));
    ld->accounts = sg_realloc(ld->accounts, (ld->account_count + 1) * sizeof(a));
    ld->accounts[ld->account_count++] = a;
    return 0;
}

static int read_accounts(struct load *ld, const char *file)
{
    FILE *in = fopen(file, "r");
    if (in == NULL) {
        fprintf(stderr, "ssogate-load: %s: %s\n", file, strerror(errno));
        return SG_EIO;
    }
    char line[ACCOUNT_LINE_MAX];
    unsigned number = 0;
    int err = 0;
    while (err == 0 && fgets(line, sizeof(line), in) != NULL) {
        number++;
        size_t len = strlen(line);
        if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
            err = SG_ETOOBIG;
            break;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0 || line[0] == '#')
            continue;
        err = add_account(ld, line);
    }
    fclose(in);
    if (err != 0)
        fprintf(stderr, "ssogate-load: %s:%u: not login:password:base32secret (%s)\n", file, number,
                sg_strerror(err));
    return err;
}

/* Raises the descriptor limit to its hard limit; returns the soft limit now in force. */
static rlim_t raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ssogate-load --target URL (--accounts FILE | --account L:P:SECRET ...) "
            "[options]\n"
            "  --target URL              the gateway URL of a protected page\n"
            "  --ca FILE                 CA to verify the https IdP\n"
            "  --accounts FILE           lines login:password:base32_totp_secret (# comments)\n"
            "  --account L:P:S           one account (repeatable); flows use them in turn\n"
            "  --flows N                 login flows in all (default 100; 0 = until --duration)\n"
            "  --concurrency N           flows in flight at once, 1..%d (default 10)\n"
            "  --duration S              login mode: start no flow after S seconds;\n"
            "                            steady mode: length of the request phase\n"
            "  --rate R                  start at most R flows per second (default no limit)\n"
            "  --think-ms MS             pause before each form and authenticated request\n"
            "  --requests N              authenticated requests per flow after its login\n"
            "  --timeout-ms MS           bound on every wait of a request (default 30000)\n"
            "  --one-connection          a flow keeps one connection, not one to the gateway\n"
            "                            and one to the IdP (half the descriptors)\n"
            "  --sessions N              steady mode: log N flows in, then spread requests\n"
            "                            over their sessions\n"
            "  --request-concurrency N   steady mode: requests in flight (default 64)\n"
            "  --steady-requests N       steady mode: stop after N requests\n"
            "  --cookies-out FILE        write each logged-in session's Cookie header\n"
            "  --probe URL               meanwhile GET URL again and again (e.g. /_sso/healthz)\n"
            "  --probe-interval-ms MS    pause between probes (default 100)\n"
            "  --json FILE               write the results as JSON\n"
            "  --label TEXT              a name for the results\n"
            "  --quiet                   no progress line\n",
            CONCURRENCY_MAX);
}

static bool parse_number(const char *text, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

enum {
    OPT_TARGET = 256,
    OPT_CA,
    OPT_ACCOUNTS,
    OPT_ACCOUNT,
    OPT_FLOWS,
    OPT_CONCURRENCY,
    OPT_DURATION,
    OPT_RATE,
    OPT_THINK,
    OPT_REQUESTS,
    OPT_TIMEOUT,
    OPT_ONE_CONNECTION,
    OPT_SESSIONS,
    OPT_REQUEST_CONCURRENCY,
    OPT_STEADY_REQUESTS,
    OPT_COOKIES_OUT,
    OPT_PROBE,
    OPT_PROBE_INTERVAL,
    OPT_JSON,
    OPT_LABEL,
    OPT_QUIET,
    OPT_HELP
};

static const struct option long_options[] = {
    {"target", required_argument, NULL, OPT_TARGET},
    {"ca", required_argument, NULL, OPT_CA},
    {"accounts", required_argument, NULL, OPT_ACCOUNTS},
    {"account", required_argument, NULL, OPT_ACCOUNT},
    {"flows", required_argument, NULL, OPT_FLOWS},
    {"concurrency", required_argument, NULL, OPT_CONCURRENCY},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"rate", required_argument, NULL, OPT_RATE},
    {"think-ms", required_argument, NULL, OPT_THINK},
    {"requests", required_argument, NULL, OPT_REQUESTS},
    {"timeout-ms", required_argument, NULL, OPT_TIMEOUT},
    {"one-connection", no_argument, NULL, OPT_ONE_CONNECTION},
    {"sessions", required_argument, NULL, OPT_SESSIONS},
    {"request-concurrency", required_argument, NULL, OPT_REQUEST_CONCURRENCY},
    {"steady-requests", required_argument, NULL, OPT_STEADY_REQUESTS},
    {"cookies-out", required_argument, NULL, OPT_COOKIES_OUT},
    {"probe", required_argument, NULL, OPT_PROBE},
    {"probe-interval-ms", required_argument, NULL, OPT_PROBE_INTERVAL},
    {"json", required_argument, NULL, OPT_JSON},
    {"label", required_argument, NULL, OPT_LABEL},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* Parses the command line into ld. Returns 0, or 2 (usage error) after saying why. */
static int parse_options(struct load *ld, int argc, char **argv)
{
    struct options *o = &ld->opt;
    o->flows = 100;
    o->concurrency = 10;
    o->timeout_ms = 30000;
    o->request_concurrency = 64;
    o->probe_interval_ms = 100;
    bool flows_given = false;
    int c;
    while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        double v = 0;
        bool ok = true;
        switch (c) {
        case OPT_TARGET:
            o->target = optarg;
            break;
        case OPT_CA:
            o->ca_file = optarg;
            break;
        case OPT_ACCOUNTS:
            if (read_accounts(ld, optarg) != 0)
                return 2;
            break;
        case OPT_ACCOUNT:
            ok = add_account(ld, optarg) == 0;
            break;
        case OPT_FLOWS:
            ok = parse_number(optarg, 0, 1e12, &v);
            o->flows = (uint64_t)v;
            flows_given = true;
            break;
        case OPT_CONCURRENCY:
            ok = parse_number(optarg, 1, CONCURRENCY_MAX, &v);
            o->concurrency = (unsigned)v;
            break;
        case OPT_DURATION:
            ok = parse_number(optarg, 0, 86400, &v);
            o->duration_s = v;
            break;
        case OPT_RATE:
            ok = parse_number(optarg, 0, 1e6, &v);
            o->rate = v;
            break;
        case OPT_THINK:
            ok = parse_number(optarg, 0, 600000, &v);
            o->think_ms = (unsigned)v;
            break;
        case OPT_REQUESTS:
            ok = parse_number(optarg, 0, 1e6, &v);
            o->requests = (unsigned)v;
            break;
        case OPT_TIMEOUT:
            ok = parse_number(optarg, 1, 3600000, &v);
            o->timeout_ms = (unsigned)v;
            break;
        case OPT_ONE_CONNECTION:
            o->one_connection = true;
            break;
        case OPT_SESSIONS:
            ok = parse_number(optarg, 1, 1e8, &v);
            o->sessions = (uint64_t)v;
            break;
        case OPT_REQUEST_CONCURRENCY:
            ok = parse_number(optarg, 1, CONCURRENCY_MAX, &v);
            o->request_concurrency = (unsigned)v;
            break;
        case OPT_STEADY_REQUESTS:
            ok = parse_number(optarg, 0, 1e12, &v);
            o->steady_requests = (uint64_t)v;
            break;
        case OPT_COOKIES_OUT:
            o->cookies_out = optarg;
            break;
        case OPT_PROBE:
            o->probe = optarg;
            break;
        case OPT_PROBE_INTERVAL:
            ok = parse_number(optarg, 1, 60000, &v);
            o->probe_interval_ms = (unsigned)v;
            break;
        case OPT_JSON:
            o->json_file = optarg;
            break;
        case OPT_LABEL:
            o->label = optarg;
            break;
        case OPT_QUIET:
            o->quiet = true;
            break;
        case OPT_HELP:
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "ssogate-load: bad value for --%s: %s\n", long_options[c - 256].name,
                    optarg);
            return 2;
        }
    }
    if (optind < argc || o->target == NULL || ld->account_count == 0) {
        fprintf(stderr, "ssogate-load: %s\n",
                optind < argc       ? "unexpected argument"
                : o->target == NULL ? "--target is required"
                                    : "give at least one account (--accounts or --account)");
        usage(stderr);
        return 2;
    }
    if (o->sessions > 0)
        o->flows = o->sessions;
    else if (!flows_given && o->duration_s > 0)
        o->flows = 0;
    if (o->flows == 0 && o->duration_s <= 0) {
        fprintf(stderr, "ssogate-load: --flows 0 needs --duration\n");
        return 2;
    }
    if (sg_hurl_parse(o->target, &ld->target) != 0) {
        fprintf(stderr, "ssogate-load: --target: not an http(s) URL of a numeric host: %s\n",
                o->target);
        return 2;
    }
    if (o->probe != NULL && sg_hurl_parse(o->probe, &ld->probe_url) != 0) {
        fprintf(stderr, "ssogate-load: --probe: not an http(s) URL of a numeric host: %s\n",
                o->probe);
        return 2;
    }
    return 0;
}

static void load_clear(struct load *ld)
{
    for (size_t i = 0; i < ld->account_count; i++) {
        free(ld->accounts[i].login);
        free(ld->accounts[i].password);
    }
    free(ld->accounts);
    for (size_t i = 0; i < ld->session_count; i++)
        free(ld->sessions[i]);
    free(ld->sessions);
    if (ld->slots != NULL) {
        for (unsigned i = 0; i < ld->opt.request_concurrency; i++)
            sg_hconn_free(ld->slots[i].conn);
        free(ld->slots);
    }
    sg_hconn_free(ld->probe_conn);
    sg_hurl_clear(&ld->probe_url);
    sg_hurl_clear(&ld->target);
    free(ld->target_path);
    if (ld->spawner)
        event_free(ld->spawner);
    if (ld->progress)
        event_free(ld->progress);
    if (ld->sigint)
        event_free(ld->sigint);
    if (ld->probe_timer)
        event_free(ld->probe_timer);
    sg_hclient_free(ld->client);
    if (ld->base)
        event_base_free(ld->base);
}

int main(int argc, char **argv)
{
    static struct load ld;
    int rc = parse_options(&ld, argc, argv);
    if (rc != 0) {
        load_clear(&ld);
        return rc;
    }
    signal(SIGPIPE, SIG_IGN);
    rlim_t nofile = raise_nofile();
    rlim_t needed = (rlim_t)ld.opt.concurrency * (ld.opt.one_connection ? 1 : 2) + FD_SPARE;
    if (ld.opt.sessions > 0)
        needed += ld.opt.request_concurrency;
    if (nofile < needed) {
        fprintf(stderr,
                "ssogate-load: %u flows and %u requests in flight need %llu descriptors; the "
                "limit is %llu (raise it with ulimit -n)\n",
                ld.opt.concurrency, ld.opt.request_concurrency, (unsigned long long)needed,
                (unsigned long long)nofile);
        load_clear(&ld);
        return 2;
    }

    char errbuf[256];
    ld.base = event_base_new();
    if (ld.base == NULL || sg_hclient_new(ld.base, ld.opt.ca_file, (int)ld.opt.timeout_ms,
                                          &ld.client, errbuf, sizeof(errbuf)) != 0) {
        fprintf(stderr, "ssogate-load: %s\n", ld.base ? errbuf : "no event base");
        load_clear(&ld);
        return 1;
    }
    ld.target_path = sg_hurl_path(&ld.target);
    ld.spawner = evtimer_new(ld.base, on_spawn, &ld);
    ld.sigint = evsignal_new(ld.base, SIGINT, on_sigint, &ld);
    event_add(ld.sigint, NULL);
    if (!ld.opt.quiet) {
        ld.progress = event_new(ld.base, -1, EV_PERSIST, on_progress, &ld);
        struct timeval second = {.tv_sec = 1, .tv_usec = 0};
        event_add(ld.progress, &second);
    }
    ld.start_us = sg_mono_us();
    ld.last_login_us = ld.start_us;
    if (ld.opt.probe != NULL) {
        ld.probe_timer = evtimer_new(ld.base, on_probe_timer, &ld);
        struct timeval now = {0, 0};
        evtimer_add(ld.probe_timer, &now);
    }
    spawn(&ld);
    event_base_dispatch(ld.base);
    if (ld.logins_done_us == 0)
        ld.logins_done_us = sg_mono_us();
    if (ld.steady_phase && ld.steady_end_us == 0)
        ld.steady_end_us = sg_mono_us();

    print_table(&ld);
    rc = 0;
    if (ld.opt.json_file != NULL && write_json(&ld, ld.opt.json_file) != 0)
        rc = 1;
    if (ld.opt.cookies_out != NULL && write_cookies(&ld, ld.opt.cookies_out) != 0)
        rc = 1;
    load_clear(&ld);
    return rc;
}
