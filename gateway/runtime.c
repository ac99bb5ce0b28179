#include "ssogate/runtime.h"

#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/log.h"
#include "ssogate/login.h"
#include "ssogate/logout.h"
#include "ssogate/metrics.h"
#include "ssogate/oidc.h"
#include "ssogate/pgstore.h"
#include "ssogate/request.h"
#include "ssogate/service.h"
#include "ssogate/session.h"
#include "ssogate/sessionwriter.h"
#include "ssogate/signer.h"
#include "ssogate/snapshot.h"
#include "ssogate/store.h"
#include "ssogate/tunnel.h"

#include <event2/dns.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SWEEP_INTERVAL_S 30
#define SWEEP_BATCH      1000
#define DRAIN_TICK_US    50000

struct sg_runtime {
    struct event_base *base;
    struct evdns_base *dns;
    char *config_path;
    struct sg_snapshot *current; /* owned reference; never NULL once started */
    struct sg_server *server;
    struct sg_store *store;
    struct sg_pgstore *shared; /* store.type postgresql: the truth, store its cache */
    struct sg_logins *logins;  /* logins in flight */
    struct sg_session_writer *session_writer; /* session writes of an iteration, one commit */
    struct sg_tunnels *tunnels;               /* WebSocket tunnels open */
    struct sg_requests *requests;             /* every request in flight */
    struct sg_retired retired;                /* the signing keys reloads replaced */
    uint64_t next_generation;
    struct event *signals[3];
    struct event *sweep;
    struct event *drain_tick;
    int64_t drain_deadline_us;
};

/* The service manager's STATUS line. */
static void service_status(void *arg, char *buf, size_t len)
{
    const struct sg_runtime *rt = arg;
    const struct sg_oidc *oidc = rt->current->oidc;
    const char *idp = oidc == NULL          ? ""
                      : sg_oidc_ready(oidc) ? ", IdP ready"
                                            : ", IdP discovery pending";
    struct sg_store_stats stats;
    size_t sessions =
        sg_store_stats(rt->store, &stats) == 0 ? stats.entries[SG_STORE_DB_SESSIONS] : 0;
    snprintf(buf, len, "%s%zu sessions, %u requests in flight, %zu logins in flight%s",
             sg_requests_draining(rt->requests) ? "draining: " : "", sessions,
             sg_requests_in_flight(rt->requests), sg_logins_count(rt->logins), idp);
}

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    struct sg_runtime *rt = arg;
    unsigned in_flight = sg_requests_in_flight(rt->requests);
    bool done = in_flight == 0 && !sg_server_writing(rt->server) &&
                !sg_server_expecting(rt->server, sg_mono_us());
    if (done || sg_mono_us() >= rt->drain_deadline_us) {
        if (in_flight > 0)
            sg_log(SG_LOG_WARN, "shutdown", "drain timeout: %u requests cut short", in_flight);
        event_base_loopbreak(rt->base);
    }
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    struct sg_runtime *rt = arg;

    if (sg_requests_draining(rt->requests)) {
        sg_log(SG_LOG_WARN, "shutdown", "second stop signal: exiting now");
        event_base_loopbreak(rt->base);
        return;
    }
    sg_requests_drain(rt->requests);
    sg_service_stopping();
    sg_server_stop_accepting(rt->server);
    sg_log(SG_LOG_INFO, "shutdown", "signal %d: draining %u requests in flight", (int)sig,
           sg_requests_in_flight(rt->requests));
    rt->drain_deadline_us = sg_mono_us() + (int64_t)rt->current->cfg->drain_timeout_s * 1000000;
    static const struct timeval tick = {0, DRAIN_TICK_US};
    rt->drain_tick = event_new(rt->base, -1, EV_PERSIST, on_drain_tick, rt);
    event_add(rt->drain_tick, &tick);
    on_drain_tick(-1, 0, rt);
}

static void on_reload_signal(evutil_socket_t sig, short what, void *arg)
{
    struct sg_runtime *rt = arg;
    if (!sg_requests_draining(rt->requests)) {
        sg_service_reloading();
        sg_runtime_reload(rt);
        sg_service_ready(rt->base, service_status, rt);
    }
}

/* Expired sessions and login states are deleted in small batches so that no transaction is long. */
static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct sg_runtime *rt = arg;
    size_t deleted = 0;
    if (sg_session_sweep(rt->store, sg_now_s(), SWEEP_BATCH, &deleted) != 0)
        sg_log(SG_LOG_ERROR, "session_sweep", "store failure");
    else if (deleted > 0)
        sg_log(SG_LOG_DEBUG, "session_sweep", "%zu expired sessions deleted", deleted);
    sg_logins_sweep(rt->logins, sg_now_s(), SWEEP_BATCH);
    if (rt->shared != NULL)
        sg_pgstore_sweep(rt->shared, sg_now_s(), SWEEP_BATCH);
    if (sg_logout_sweep(rt->store, sg_now_s(), SWEEP_BATCH, NULL) != 0)
        sg_log(SG_LOG_ERROR, "logout_sweep", "store failure");
}

static int snapshot_new(struct sg_runtime *rt, struct sg_config *cfg, struct sg_snapshot **out,
                        char *errbuf, size_t errlen)
{
    struct sg_snapshot_env env = {.base = rt->base, .dns = rt->dns, .store = rt->store};
    return sg_snapshot_new(&env, cfg, rt->current, rt->next_generation + 1, out, errbuf, errlen);
}

int sg_runtime_new(const char *path, sg_server_handler handler, struct sg_runtime **out)
{
    struct sg_config_error cerr = {0};
    struct sg_config *cfg = NULL;
    char errbuf[512];

    if (sg_config_load(path, &cfg, &cerr) != 0) {
        sg_log(SG_LOG_ERROR, "startup", "%s: %s: %s", cerr.file, cerr.key, cerr.message);
        return SG_ECONFIG;
    }
    sg_log_set_level(cfg->log_level);
    signal(SIGPIPE, SIG_IGN);

    struct sg_runtime *rt = sg_calloc(1, sizeof(*rt));
    rt->config_path = sg_strdup(path);
    rt->requests = sg_requests_new();
    /* One thread: no locks. The changelist folds the many enable/disable
     * pairs of a proxied request into one epoll_ctl per descriptor. */
    struct event_config *event_cfg = event_config_new();
    event_config_set_flag(event_cfg, EVENT_BASE_FLAG_NOLOCK | EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    rt->base = event_base_new_with_config(event_cfg);
    event_config_free(event_cfg);
    rt->dns = rt->base == NULL ? NULL
                               : evdns_base_new(rt->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                                              EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (rt->base == NULL || rt->dns == NULL) {
        sg_log(SG_LOG_ERROR, "startup", "cannot create the event base or the resolver");
        sg_config_unref(cfg);
        goto fail;
    }
    if (sg_store_open(cfg->data_dir, &rt->store, errbuf, sizeof(errbuf)) != 0) {
        sg_log(SG_LOG_ERROR, "startup", "store: %s", errbuf);
        sg_config_unref(cfg);
        goto fail;
    }
    if (cfg->store.type == SG_STORE_TYPE_POSTGRESQL) {
        rt->shared = sg_pgstore_open(rt->base, &cfg->store, rt->store, errbuf, sizeof(errbuf));
        if (rt->shared == NULL) {
            sg_log(SG_LOG_ERROR, "startup", "store: %s", errbuf);
            sg_config_unref(cfg);
            goto fail;
        }
    }
    rt->session_writer = sg_session_writer_new(rt->base, rt->store);
    /* Workers share login states through the store; a lone process keeps them in memory. */
    rt->logins = sg_logins_new(rt->store, rt->shared, rt->session_writer,
                               cfg->workers == 1 && rt->shared == NULL);
    rt->tunnels = sg_tunnels_new(rt->base);
    if (snapshot_new(rt, cfg, &rt->current, errbuf, sizeof(errbuf)) != 0) {
        sg_log(SG_LOG_ERROR, "startup", "%s", errbuf);
        goto fail;
    }
    rt->next_generation = rt->current->generation;
    if (sg_server_start(rt->base, rt->current->cfg, handler, rt, &rt->server, errbuf,
                        sizeof(errbuf)) != 0) {
        sg_log(SG_LOG_ERROR, "startup", "%s", errbuf);
        goto fail;
    }

    rt->signals[0] = evsignal_new(rt->base, SIGHUP, on_reload_signal, rt);
    rt->signals[1] = evsignal_new(rt->base, SIGTERM, on_stop_signal, rt);
    rt->signals[2] = evsignal_new(rt->base, SIGINT, on_stop_signal, rt);
    for (size_t i = 0; i < SG_ARRAY_LEN(rt->signals); i++)
        evsignal_add(rt->signals[i], NULL);
    static const struct timeval sweep_every = {SWEEP_INTERVAL_S, 0};
    rt->sweep = event_new(rt->base, -1, EV_PERSIST, on_sweep, rt);
    event_add(rt->sweep, &sweep_every);
    *out = rt;
    return 0;

fail:
    sg_runtime_free(rt);
    return SG_ECONFIG;
}

int sg_runtime_run(struct sg_runtime *rt)
{
    sg_service_ready(rt->base, service_status, rt);
    event_base_dispatch(rt->base);
    sg_log(SG_LOG_INFO, "shutdown", "stopped");
    return 0;
}

void sg_runtime_free(struct sg_runtime *rt)
{
    if (rt == NULL)
        return;
    for (size_t i = 0; i < SG_ARRAY_LEN(rt->signals); i++) {
        if (rt->signals[i] != NULL)
            event_free(rt->signals[i]);
    }
    if (rt->drain_tick != NULL)
        event_free(rt->drain_tick);
    if (rt->sweep != NULL)
        event_free(rt->sweep);
    sg_service_free();
    sg_server_free(rt->server); /* clients gone: their waiting requests are cancelled */
    sg_requests_free(rt->requests);
    sg_logins_free(rt->logins);
    sg_session_writer_free(rt->session_writer); /* what is queued goes to the store */
    sg_tunnels_free(rt->tunnels);
    sg_pgstore_free(rt->shared);
    sg_snapshot_unref(rt->current);
    sg_retired_clear(&rt->retired);
    if (rt->dns != NULL)
        evdns_base_free(rt->dns, 0);
    /* Run deferred frees (connection pools) before the base goes. */
    if (rt->base != NULL) {
        event_base_loop(rt->base, EVLOOP_NONBLOCK);
        event_base_free(rt->base);
    }
    if (rt->store != NULL && sg_store_sync(rt->store) != 0)
        sg_log(SG_LOG_ERROR, "shutdown", "the store could not be flushed to disk");
    sg_store_close(rt->store);
    free(rt->config_path);
    free(rt);
}

int sg_runtime_reload(struct sg_runtime *rt)
{
    struct sg_config_error cerr = {0};
    struct sg_config *cfg = NULL;
    struct sg_snapshot *snap = NULL;
    char reason[1200];

    int err = sg_config_load(rt->config_path, &cfg, &cerr);
    if (err != 0) {
        snprintf(reason, sizeof(reason), "%s: %s: %s", cerr.file, cerr.key, cerr.message);
        goto end;
    }
    err = snapshot_new(rt, cfg, &snap, reason, sizeof(reason));
    if (err != 0)
        goto end;
    err = sg_server_apply(rt->server, snap->cfg, reason, sizeof(reason));
    if (err != 0) {
        sg_snapshot_unref(snap);
        goto end;
    }
    const struct sg_store_config *was = &rt->current->cfg->store, *now = &snap->cfg->store;
    if (was->type != now->type || (was->conninfo != NULL && strcmp(was->conninfo, now->conninfo)))
        sg_log(SG_LOG_WARN, "reload", "store: a new store section takes effect at the next start");
    rt->next_generation = snap->generation;
    sg_log_set_level(snap->cfg->log_level);
    if (strcmp(rt->current->signer.kid, snap->signer.kid) != 0) {
        /* Assertions signed with the old key stay verifiable until they expire. */
        int64_t at = sg_now_s();
        sg_retired_add(&rt->retired, &rt->current->signer, at + rt->current->cfg->assertion.ttl_s,
                       at);
    }
    sg_snapshot_unref(rt->current);
    rt->current = snap;

end:
    if (err != 0) {
        sg_metrics_reload(0);
        sg_metrics_error(SG_MERR_RELOAD);
        sg_log_fields(
            SG_LOG_ERROR, "reload",
            (struct sg_log_field[]){SG_LOG_STR("result", "refused"), SG_LOG_STR("reason", reason)},
            2);
    } else {
        sg_metrics_reload(1);
        sg_log_fields(
            SG_LOG_INFO, "reload",
            (struct sg_log_field[]){SG_LOG_STR("result", "ok"),
                                    SG_LOG_INT("generation", (int64_t)rt->current->generation)},
            2);
    }
    return err;
}

struct sg_snapshot *sg_runtime_snapshot(const struct sg_runtime *rt)
{
    return rt->current;
}

struct sg_store *sg_runtime_store(const struct sg_runtime *rt)
{
    return rt->store;
}

struct sg_pgstore *sg_runtime_shared(const struct sg_runtime *rt)
{
    return rt->shared;
}

struct sg_logins *sg_runtime_logins(const struct sg_runtime *rt)
{
    return rt->logins;
}

struct sg_session_writer *sg_runtime_session_writer(const struct sg_runtime *rt)
{
    return rt != NULL ? rt->session_writer : NULL;
}

struct sg_tunnels *sg_runtime_tunnels(const struct sg_runtime *rt)
{
    return rt->tunnels;
}

struct sg_requests *sg_runtime_requests(const struct sg_runtime *rt)
{
    return rt->requests;
}

struct event_base *sg_runtime_base(const struct sg_runtime *rt)
{
    return rt->base;
}

void sg_runtime_publish_keys(const struct sg_runtime *rt, struct evbuffer *out)
{
    sg_signer_publish(&rt->current->signer, &rt->retired, sg_now_s(), out);
}
