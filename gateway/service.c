#include "ssogate/service.h"

#include "ssogate/common.h"
#include "ssogate/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifdef SG_HAVE_LIBSYSTEMD

#include <systemd/sd-daemon.h>

/* STATUS is refreshed at least this often, and at each watchdog ping. */
#define STATUS_INTERVAL_US 5000000ULL

/* The process's link to its service manager (the environment it was started with). */
static struct {
    sg_service_status_fn status;
    void *status_arg;
    struct event *timer;
    uint64_t watchdog_us;
    bool started;
    bool notify_failed;
    bool listen_loaded;
    int listen_count;
    int *listen_fds;     /* -1 once taken or closed */
    char **listen_names; /* from LISTEN_FDNAMES */
} svc;

/*
 * With workers > 1 the service manager's variables name the supervisor, the
 * worker's parent: the worker takes them over by naming itself, so that
 * libsystemd's own checks accept them.
 */
static void adopt_parent_pid(const char *name)
{
    const char *value = getenv(name);
    if (value == NULL)
        return;
    char *end;
    errno = 0;
    unsigned long pid = strtoul(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0' || pid != (unsigned long)getppid())
        return;
    char self[24];
    snprintf(self, sizeof(self), "%ld", (long)getpid());
    setenv(name, self, 1);
}

/* Sends one notify message; a failure is logged once (the manager is gone). */
static void notify(const char *message)
{
    int rc = sd_notify(0, message);
    if (rc < 0 && !svc.notify_failed) {
        svc.notify_failed = true;
        sg_log(SG_LOG_WARN, "service_notify", "cannot notify the service manager: %s",
               strerror(-rc));
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    char status[200];
    char message[260];
    svc.status(svc.status_arg, status, sizeof(status));
    snprintf(message, sizeof(message), "%sSTATUS=%s", svc.watchdog_us > 0 ? "WATCHDOG=1\n" : "",
             status);
    notify(message);
}

static void listen_fds_load(void)
{
    if (svc.listen_loaded)
        return;
    svc.listen_loaded = true;
    adopt_parent_pid("LISTEN_PID");
    char **names = NULL;
    int count = sd_listen_fds_with_names(1, &names);
    if (count < 0) {
        sg_log(SG_LOG_ERROR, "socket_activation", "LISTEN_FDS refused: %s", strerror(-count));
        return;
    }
    svc.listen_count = count;
    svc.listen_names = names;
    svc.listen_fds = sg_calloc((size_t)count + 1, sizeof(*svc.listen_fds));
    for (int i = 0; i < count; i++)
        svc.listen_fds[i] = SD_LISTEN_FDS_START + i;
}

static const char *listen_name(int i)
{
    return svc.listen_names != NULL && svc.listen_names[i] != NULL ? svc.listen_names[i] : "";
}

/* True when fd listens on exactly this address and port. */
static bool socket_matches(int fd, const struct sockaddr_storage *want)
{
    struct sockaddr_storage have = {0};
    socklen_t len = sizeof(have);
    if (sd_is_socket_inet(fd, want->ss_family, SOCK_STREAM, 1, 0) <= 0 ||
        getsockname(fd, (struct sockaddr *)&have, &len) != 0 || have.ss_family != want->ss_family)
        return false;
    if (have.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&have;
        const struct sockaddr_in *b = (const struct sockaddr_in *)want;
        return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&have;
    const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)want;
    return a->sin6_port == b->sin6_port &&
           memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0;
}

int sg_service_inherited_fd(const char *address, uint16_t port)
{
    listen_fds_load();
    if (svc.listen_count == 0)
        return -1;
    struct sockaddr_storage want = {0};
    int wlen = sizeof(want);
    if (evutil_parse_sockaddr_port(address, (struct sockaddr *)&want, &wlen) != 0)
        return -1;
    if (want.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&want)->sin6_port = htons(port);
    else
        ((struct sockaddr_in *)&want)->sin_port = htons(port);
    for (int i = 0; i < svc.listen_count; i++) {
        int fd = svc.listen_fds[i];
        if (fd < 0 || !socket_matches(fd, &want))
            continue;
        svc.listen_fds[i] = -1;
        evutil_make_socket_nonblocking(fd);
        evutil_make_socket_closeonexec(fd);
        sg_log_fields(SG_LOG_INFO, "socket_inherited",
                      (struct sg_log_field[]){SG_LOG_STR("address", address),
                                              SG_LOG_INT("port", port), SG_LOG_INT("fd", fd),
                                              SG_LOG_STR("name", listen_name(i))},
                      4);
        return fd;
    }
    return -1;
}

/* Closes the inherited sockets no listener took, and forgets the rest. */
static void listen_fds_release(void)
{
    for (int i = 0; i < svc.listen_count; i++) {
        if (svc.listen_fds[i] < 0)
            continue;
        sg_log_fields(SG_LOG_WARN, "socket_unused",
                      (struct sg_log_field[]){SG_LOG_INT("fd", svc.listen_fds[i]),
                                              SG_LOG_STR("name", listen_name(i))},
                      2);
        close(svc.listen_fds[i]);
    }
    for (int i = 0; svc.listen_names != NULL && svc.listen_names[i] != NULL; i++)
        free(svc.listen_names[i]);
    free(svc.listen_names);
    free(svc.listen_fds);
    svc.listen_names = NULL;
    svc.listen_fds = NULL;
    svc.listen_count = 0;
}

static void start(struct event_base *base)
{
    svc.started = true;
    listen_fds_load();
    listen_fds_release();
    if (getenv("NOTIFY_SOCKET") == NULL)
        return;
    adopt_parent_pid("WATCHDOG_PID");
    uint64_t watchdog_us = 0;
    if (sd_watchdog_enabled(0, &watchdog_us) > 0)
        svc.watchdog_us = watchdog_us;
    uint64_t interval = STATUS_INTERVAL_US;
    if (svc.watchdog_us > 0 && svc.watchdog_us / 2 < interval)
        interval = svc.watchdog_us / 2;
    const struct timeval tv = {(time_t)(interval / 1000000), (suseconds_t)(interval % 1000000)};
    svc.timer = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    event_add(svc.timer, &tv);
    sg_log_fields(SG_LOG_INFO, "service",
                  (struct sg_log_field[]){SG_LOG_INT("watchdog_us", (int64_t)svc.watchdog_us),
                                          SG_LOG_INT("interval_us", (int64_t)interval)},
                  2);
}

void sg_service_ready(struct event_base *base, sg_service_status_fn status_fn, void *arg)
{
    svc.status = status_fn;
    svc.status_arg = arg;
    if (!svc.started)
        start(base);
    if (svc.timer == NULL)
        return;
    char status[200];
    char message[260];
    status_fn(arg, status, sizeof(status));
    snprintf(message, sizeof(message), "READY=1\nSTATUS=%s", status);
    notify(message);
}

void sg_service_reloading(void)
{
    if (svc.timer == NULL)
        return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    char message[120];
    snprintf(message, sizeof(message),
             "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading the configuration",
             (unsigned long long)now.tv_sec * 1000000ULL + (unsigned long long)now.tv_nsec / 1000);
    notify(message);
}

void sg_service_stopping(void)
{
    if (svc.timer != NULL)
        notify("STOPPING=1\nSTATUS=draining");
}

void sg_service_free(void)
{
    if (svc.timer != NULL)
        event_free(svc.timer);
    svc.timer = NULL;
    listen_fds_release();
    svc.status = NULL;
    svc.status_arg = NULL;
}

#else /* built without libsystemd: no service manager to talk to */

void sg_service_ready(struct event_base *base, sg_service_status_fn status, void *arg)
{
}

void sg_service_reloading(void)
{
}

void sg_service_stopping(void)
{
}

void sg_service_free(void)
{
}

int sg_service_inherited_fd(const char *address, uint16_t port)
{
    return -1;
}

#endif
