/*
 * ssogate: arguments, signals and the event base. Everything else lives in
 * the library so that tests and tools link the same code.
 */
#include "sg_build.h"
#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/identity.h"
#include "ssogate/log.h"
#include "ssogate/login.h"
#include "ssogate/runtime.h"
#include "ssogate/server.h"
#include "ssogate/service.h"
#include "ssogate/session.h"
#include "ssogate/signer.h"
#include "ssogate/store.h"

#include <event2/dns.h>
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char usage[] =
    "Usage: ssogate -c FILE [-t]\n"
    "\n"
    "A single sign-on gateway in front of a PSA.\n"
    "\n"
    "  -c, --config FILE  the configuration file (JSON)\n"
    "  -t, --test         check the configuration and exit: 0 if valid, 1 if not\n"
    "  -h, --help         print this help and exit\n"
    "  -V, --version      print the version and exit\n"
    "\n"
    "Signals: SIGHUP reloads the configuration (a bad file is refused and the\n"
    "running one kept); SIGTERM or SIGINT stops accepting, lets requests in\n"
    "flight finish for up to drain_timeout_s, and exits 0.\n";

#define SWEEP_INTERVAL_S 30
#define SWEEP_BATCH      1000

struct drain {
    struct sg_runtime *rt;
    struct event *tick;
    int64_t deadline_us;
};

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    struct drain *d = arg;
    bool done = d->rt->requests_in_flight == 0 && !sg_server_writing(d->rt->server);
    if (done || sg_mono_us() >= d->deadline_us) {
        if (d->rt->requests_in_flight > 0)
            sg_log(SG_LOG_WARN, "shutdown", "drain timeout: %u requests cut short",
                   d->rt->requests_in_flight);
        event_base_loopbreak(d->rt->base);
    }
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    struct drain *d = arg;
    struct sg_runtime *rt = d->rt;

    if (rt->draining) {
        sg_log(SG_LOG_WARN, "shutdown", "second stop signal: exiting now");
        event_base_loopbreak(rt->base);
        return;
    }
    rt->draining = true;
    sg_service_stopping();
    sg_server_stop_accepting(rt->server);
    sg_log(SG_LOG_INFO, "shutdown", "signal %d: draining %u requests in flight", (int)sig,
           rt->requests_in_flight);
    d->deadline_us = sg_mono_us() + (int64_t)rt->current->cfg->drain_timeout_s * 1000000;
    static const struct timeval tick = {0, 50000};
    d->tick = event_new(rt->base, -1, EV_PERSIST, on_drain_tick, d);
    event_add(d->tick, &tick);
    on_drain_tick(-1, 0, d);
}

/* Expired sessions are deleted in small batches so that no transaction is long. */
static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct sg_runtime *rt = arg;
    size_t deleted = 0;
    if (sg_session_sweep(rt->store, sg_now_s(), SWEEP_BATCH, &deleted) != 0)
        sg_log(SG_LOG_ERROR, "session_sweep", "store failure");
    else if (deleted > 0)
        sg_log(SG_LOG_DEBUG, "session_sweep", "%zu expired sessions deleted", deleted);
    sg_logins_sweep(rt->logins, sg_now_s(), SWEEP_BATCH);
}

static void on_reload_signal(evutil_socket_t sig, short what, void *arg)
{
    struct sg_runtime *rt = arg;
    if (!rt->draining) {
        sg_service_reloading();
        sg_runtime_reload(rt);
        sg_service_ready(rt);
    }
}

static int check_only(const char *path)
{
    struct sg_config_error err = {0};
    struct sg_config *cfg = NULL;
    if (sg_config_load(path, &cfg, &err) != 0) {
        fprintf(stderr, "ssogate: %s: %s: %s\n", err.file, err.key, err.message);
        return 1;
    }
    char reason[600];
    struct sg_signer signer;
    int rc = sg_server_check(cfg, reason, sizeof(reason));
    if (rc == 0 && cfg->assertion.key_file != NULL) {
        rc = sg_signer_load(cfg, &signer, reason, sizeof(reason));
        if (rc == 0)
            sg_signer_clear(&signer);
    }
    sg_config_unref(cfg);
    if (rc != 0) {
        fprintf(stderr, "ssogate: %s: %s\n", path, reason);
        return 1;
    }
    printf("ssogate: %s: configuration is valid\n", path);
    return 0;
}

static int run(const char *path)
{
    struct sg_config_error cerr = {0};
    struct sg_config *cfg = NULL;
    struct sg_runtime rt = {0};
    struct drain drain = {.rt = &rt};
    struct event *signals[4] = {0};
    struct event *sweep = NULL;
    char errbuf[512];
    int status = 1;

    if (sg_config_load(path, &cfg, &cerr) != 0) {
        fprintf(stderr, "ssogate: %s: %s: %s\n", cerr.file, cerr.key, cerr.message);
        return 1;
    }
    sg_log_set_level(cfg->log_level);
    signal(SIGPIPE, SIG_IGN);

    rt.config_path = sg_strdup(path);
    /* One thread: no locks. The changelist folds the many enable/disable
     * pairs of a proxied request into one epoll_ctl per descriptor. */
    struct event_config *event_cfg = event_config_new();
    event_config_set_flag(event_cfg, EVENT_BASE_FLAG_NOLOCK | EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    rt.base = event_base_new_with_config(event_cfg);
    event_config_free(event_cfg);
    rt.dns = evdns_base_new(rt.base,
                            EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (rt.base == NULL || rt.dns == NULL) {
        sg_log(SG_LOG_ERROR, "startup", "cannot create the event base or the resolver");
        sg_config_unref(cfg);
        goto end;
    }
    if (sg_store_open(cfg->data_dir, &rt.store, errbuf, sizeof(errbuf)) != 0) {
        sg_log(SG_LOG_ERROR, "startup", "store: %s", errbuf);
        sg_config_unref(cfg);
        goto end;
    }
    rt.logins = sg_logins_new(&rt);
    if (sg_snapshot_new(&rt, cfg, &rt.current, errbuf, sizeof(errbuf)) != 0) {
        sg_log(SG_LOG_ERROR, "startup", "%s", errbuf);
        goto end;
    }
    if (sg_server_start(&rt, rt.current->cfg, &rt.server, errbuf, sizeof(errbuf)) != 0) {
        sg_log(SG_LOG_ERROR, "startup", "%s", errbuf);
        goto end;
    }

    signals[0] = evsignal_new(rt.base, SIGHUP, on_reload_signal, &rt);
    signals[1] = evsignal_new(rt.base, SIGTERM, on_stop_signal, &drain);
    signals[2] = evsignal_new(rt.base, SIGINT, on_stop_signal, &drain);
    for (size_t i = 0; i < 3; i++)
        evsignal_add(signals[i], NULL);
    static const struct timeval sweep_every = {SWEEP_INTERVAL_S, 0};
    sweep = event_new(rt.base, -1, EV_PERSIST, on_sweep, &rt);
    event_add(sweep, &sweep_every);

    sg_log_fields(
        SG_LOG_INFO, "started",
        (struct sg_log_field[]){SG_LOG_STR("version", SG_VERSION), SG_LOG_STR("config", path)}, 2);
    sg_service_ready(&rt);
    event_base_dispatch(rt.base);
    sg_log(SG_LOG_INFO, "shutdown", "stopped");
    status = 0;

end:
    sg_service_free();
    for (size_t i = 0; i < SG_ARRAY_LEN(signals); i++) {
        if (signals[i] != NULL)
            event_free(signals[i]);
    }
    if (drain.tick != NULL)
        event_free(drain.tick);
    if (sweep != NULL)
        event_free(sweep);
    sg_server_free(rt.server);
    sg_logins_free(rt.logins);
    sg_snapshot_unref(rt.current);
    sg_signer_clear(&rt.retired);
    if (rt.dns != NULL)
        evdns_base_free(rt.dns, 0);
    /* Run deferred frees (connection pools) before the base goes. */
    if (rt.base != NULL) {
        event_base_loop(rt.base, EVLOOP_NONBLOCK);
        event_base_free(rt.base);
    }
    if (rt.store != NULL && sg_store_sync(rt.store) != 0)
        sg_log(SG_LOG_ERROR, "shutdown", "the store could not be flushed to disk");
    sg_store_close(rt.store);
    sg_identity_cache_clear();
    free(rt.config_path);
    return status;
}

/*
 * With workers > 1 this process only supervises: it forks the workers (each
 * binds the listeners with SO_REUSEPORT and opens the LMDB environment
 * itself), forwards SIGHUP, SIGTERM and SIGINT to them, restarts a worker that
 * died on its own, and exits when every worker has exited after a stop.
 */
static int supervise(const char *path, unsigned workers)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);

    pid_t *pids = sg_calloc(workers, sizeof(*pids));
    bool stopping = false;
    int status = 0;

    for (;;) {
        for (unsigned i = 0; i < workers && !stopping; i++) {
            if (pids[i] != 0)
                continue;
            pid_t pid = fork();
            if (pid == 0) {
                sigprocmask(SIG_UNBLOCK, &set, NULL);
                _exit(run(path));
            }
            if (pid < 0) {
                sg_log(SG_LOG_ERROR, "supervisor", "fork failed");
                stopping = true;
                status = 1;
                break;
            }
            pids[i] = pid;
            sg_log_fields(SG_LOG_INFO, "worker",
                          (struct sg_log_field[]){SG_LOG_INT("worker", i), SG_LOG_INT("pid", pid)},
                          2);
        }
        unsigned alive = 0;
        for (unsigned i = 0; i < workers; i++)
            alive += pids[i] != 0;
        if (alive == 0)
            break;

        siginfo_t info;
        int sig = sigwaitinfo(&set, &info);
        if (sig == SIGCHLD) {
            int wstatus;
            pid_t pid;
            while ((pid = waitpid(-1, &wstatus, WNOHANG)) > 0) {
                for (unsigned i = 0; i < workers; i++) {
                    if (pids[i] != pid)
                        continue;
                    pids[i] = 0;
                    bool clean = WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0;
                    if (!clean)
                        status = 1;
                    if (!stopping) {
                        sg_log(SG_LOG_ERROR, "worker", "worker %u (pid %d) died: restarting", i,
                               (int)pid);
                        sleep(1);
                    }
                }
            }
        } else if (sig == SIGHUP || sig == SIGTERM || sig == SIGINT) {
            if (sig != SIGHUP) {
                stopping = true;
                status = 0;
            }
            for (unsigned i = 0; i < workers; i++) {
                if (pids[i] != 0)
                    kill(pids[i], sig);
            }
        }
    }
    free(pids);
    return status;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    int test = 0;
    int opt;

    while ((opt = getopt_long(argc, argv, "c:thV", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            test = 1;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        case 'V':
            printf("ssogate %s\n", SG_VERSION);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (path == NULL || optind != argc) {
        fputs(usage, stderr);
        return 2;
    }
    if (test)
        return check_only(path);

    struct sg_config_error cerr = {0};
    struct sg_config *cfg = NULL;
    if (sg_config_load(path, &cfg, &cerr) != 0) {
        fprintf(stderr, "ssogate: %s: %s: %s\n", cerr.file, cerr.key, cerr.message);
        return 1;
    }
    unsigned workers = cfg->workers;
    for (size_t i = 0; workers > 1 && i < cfg->listener_count; i++) {
        if (cfg->listeners[i].port == 0) {
            fprintf(stderr, "ssogate: %s: listeners[%zu].port: workers > 1 need a fixed port\n",
                    path, i);
            sg_config_unref(cfg);
            return 1;
        }
    }
    sg_log_set_level(cfg->log_level);
    sg_config_unref(cfg);
    return workers > 1 ? supervise(path, workers) : run(path);
}
