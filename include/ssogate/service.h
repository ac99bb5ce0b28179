/*
 * The service manager (systemd) side of the daemon: the notify protocol
 * (READY, RELOADING, STOPPING, STATUS, the watchdog) and socket activation.
 * Every function is a no-op when the daemon was not started by a service
 * manager (no NOTIFY_SOCKET, no LISTEN_FDS) or was built without libsystemd.
 *
 * READY=1 means: the store is open, the configuration loaded and every
 * listener accepts. IdP discovery runs in the background and may finish
 * later; until it has, /_sso/login answers 503 and STATUS says so.
 *
 * With workers > 1 a worker speaks for its supervisor: it pings the watchdog
 * and takes the inherited sockets when WATCHDOG_PID or LISTEN_PID names its
 * parent (the unit sets NotifyAccess=all for that).
 */
#ifndef SSOGATE_SERVICE_H
#define SSOGATE_SERVICE_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

/* Writes the STATUS text (requests and logins in flight, ...) into buf. */
typedef void (*sg_service_status_fn)(void *arg, char *buf, size_t len);

/*
 * Sends READY=1 and a STATUS line from status(arg). The first call also
 * starts, on base, the timer that sends WATCHDOG=1 at half of WATCHDOG_USEC
 * and refreshes STATUS, and closes, with a log line, every inherited socket
 * no listener took. arg is borrowed until sg_service_free.
 */
void sg_service_ready(struct event_base *base, sg_service_status_fn status, void *arg);

/* Sends RELOADING=1 with MONOTONIC_USEC; sg_service_ready follows the reload. */
void sg_service_reloading(void);

/* Sends STOPPING=1: the drain has begun. The watchdog keeps running. */
void sg_service_stopping(void);

/* Stops the timer; call before the event base is freed. */
void sg_service_free(void);

/*
 * Returns the listening socket the service manager passed (LISTEN_FDS) for
 * this numeric address and port, handed over to the caller (non-blocking,
 * close-on-exec), or -1 when there is none: the caller binds its own.
 */
int sg_service_inherited_fd(const char *address, uint16_t port);

#endif
