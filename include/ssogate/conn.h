/*
 * A client connection, as a request's handler sees it (server.c implements
 * it): the one close watcher, the switch to a tunnel, and whether it is TLS.
 */
#ifndef SSOGATE_CONN_H
#define SSOGATE_CONN_H

#include <stdbool.h>

struct sg_conn;

/*
 * Called once when the client connection closes, before its requests are
 * freed. A request still waiting for its reply is then detached by libevent
 * and left to its handler (request.c frees it).
 */
typedef void (*sg_conn_close_fn)(void *arg);

/* Sets (or, with fn NULL, clears) the one close watcher of a connection. */
void sg_conn_on_close(struct sg_conn *conn, sg_conn_close_fn fn, void *arg);

/* Marks a connection taken over from HTTP (a tunnel): no request deadline
 * applies to it any more and it is never closed as idle. */
void sg_conn_set_tunnel(struct sg_conn *conn);

/* NULL when the wire check (wire.h) found nothing wrong up to the end of the
 * connection's current request, otherwise why: a static text. */
const char *sg_conn_wire_error(const struct sg_conn *conn);

/* True when the client reached a TLS listener. */
bool sg_conn_is_tls(const struct sg_conn *conn);

/*
 * Writes the answer queued on a plain connection now, not when the loop
 * next finds the socket writable, and when all of it went out tells libevent
 * so at once: one loop iteration and two epoll_ctl less per answer. The
 * request answered is finished (and freed) inside the call; a TLS
 * connection, a tunnel's, or an answer the socket does not take whole, is
 * left to libevent. Called by the server after a request's handler returned, by
 * sg_request_finish for an answer given later, and by the proxy.
 */
void sg_conn_flush(struct sg_conn *conn);

#endif
