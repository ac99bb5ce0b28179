/*
 * ssogate: arguments, signals and the event base. Everything else lives in
 * the library so that tests and tools link the same code.
 */
#include "sg_build.h"
#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/evmem.h"
#include "ssogate/log.h"
#include "ssogate/router.h"
#include "ssogate/runtime.h"
#include "ssogate/server.h"
#include "ssogate/signer.h"

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
    if (rc == 0) {
        rc = sg_signer_load_client(cfg, &signer, reason, sizeof(reason));
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
    struct sg_runtime *rt;
    if (sg_runtime_new(path, sg_router_handle, &rt) != 0)
        return 1;
    sg_log_fields(
        SG_LOG_INFO, "started",
        (struct sg_log_field[]){SG_LOG_STR("version", SG_VERSION), SG_LOG_STR("config", path)}, 2);
    int status = sg_runtime_run(rt);
    sg_runtime_free(rt);
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

    sg_evmem_install();

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
