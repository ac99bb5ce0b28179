/*
 * Listeners (plain or TLS), client connection accounting, limits and the
 * graceful stop. Every request is handed to sg_router_handle (router.h).
 */
#ifndef SSOGATE_SERVER_H
#define SSOGATE_SERVER_H

#include "ssogate/config.h"

#include <stdbool.h>
#include <stddef.h>

struct sg_runtime;
struct sg_server;
struct sg_conn;
struct evhttp_request;

/*
 * Binds every listener of cfg (borrowed) and starts serving on rt's base.
 * Logs an "listening" line per listener with the bound port. Returns 0 and
 * the server in *out, or SG_ECONFIG / SG_EIO with a reason in errbuf.
 */
int sg_server_start(struct sg_runtime *rt, const struct sg_config *cfg, struct sg_server **out,
                    char *errbuf, size_t errlen);

/*
 * Checks what sg_server_start would load from files (TLS certificates and
 * keys) without binding. Returns 0 or SG_ECONFIG with a reason in errbuf.
 */
int sg_server_check(const struct sg_config *cfg, char *errbuf, size_t errlen);

/* Applies the limits of a reloaded cfg (borrowed) to new connections and requests. */
void sg_server_apply(struct sg_server *srv, const struct sg_config *cfg);

/* True while an answer is still being written to some client: a drain waits
 * for it, so that an answer handed to libevent is not cut off at exit. */
bool sg_server_writing(const struct sg_server *srv);

/* Closes the listening sockets; open connections go on. */
void sg_server_stop_accepting(struct sg_server *srv);

/* Frees the server and closes every connection. NULL-safe. */
void sg_server_free(struct sg_server *srv);

/*
 * When a client connection fails while a request on it still waits for its
 * reply, libevent detaches the request and leaves it to its handler. A close
 * watcher calls this on its request: it frees a detached request (one whose
 * reply can no longer be sent) and leaves an attached one to libevent.
 */
void sg_request_free_orphan(struct evhttp_request *req);

/* Called once when the client connection closes, before its requests are freed. */
typedef void (*sg_conn_close_fn)(void *arg);

/* Sets (or, with fn NULL, clears) the one close watcher of a connection. */
void sg_conn_on_close(struct sg_conn *conn, sg_conn_close_fn fn, void *arg);

/* Marks a connection taken over from HTTP (a tunnel): no request deadline
 * applies to it any more and it is never closed as idle. */
void sg_conn_set_tunnel(struct sg_conn *conn);

/* True when the client reached a TLS listener. */
bool sg_conn_is_tls(const struct sg_conn *conn);

#endif
