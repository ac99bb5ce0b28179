/*
 * Listeners (plain or TLS), client connection accounting, limits and the
 * graceful stop. Every request is handed to the handler given at start (as
 * evhttp_set_gencb does); the server knows nothing of what handles it.
 */
#ifndef SSOGATE_SERVER_H
#define SSOGATE_SERVER_H

#include "ssogate/config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct sg_server;
struct sg_conn;
struct evhttp_request;

/* Handles one request; req and conn are borrowed from libevent. */
typedef void (*sg_server_handler)(struct evhttp_request *req, struct sg_conn *conn, void *arg);

/*
 * Binds every listener of cfg (borrowed) and starts serving on base, each
 * request going to handler(req, conn, arg). Logs a "listening" line per
 * listener with the bound port. Returns 0 and the server in *out, or
 * SG_ECONFIG / SG_EIO with a reason in errbuf.
 */
int sg_server_start(struct event_base *base, const struct sg_config *cfg, sg_server_handler handler,
                    void *arg, struct sg_server **out, char *errbuf, size_t errlen);

/*
 * Checks what sg_server_start would load from files (TLS certificates and
 * keys) without binding. Returns 0 or SG_ECONFIG with a reason in errbuf.
 */
int sg_server_check(const struct sg_config *cfg, char *errbuf, size_t errlen);

/*
 * Applies a reloaded cfg (borrowed): its limits, and its TLS certificates and
 * keys, read again, for the connections accepted from now on. Listeners are
 * not rebound: a new address, port or TLS setting is logged as waiting for the
 * next start. Returns 0, or SG_ECONFIG with a reason in errbuf (a TLS file
 * that cannot be used) and nothing changed.
 */
int sg_server_apply(struct sg_server *srv, const struct sg_config *cfg, char *errbuf,
                    size_t errlen);

/*
 * True while a request is on its way: some of it has arrived, or the
 * connection was accepted less than 200 ms before now_us and has sent
 * nothing yet. A drain waits for it (up to its deadline), so that a client
 * whose connection was accepted just before the stop gets its answer rather
 * than a reset.
 */
bool sg_server_expecting(const struct sg_server *srv, int64_t now_us);

/* True while an answer is still being written to some client: a drain waits
 * for it, so that an answer handed to libevent is not cut off at exit. */
bool sg_server_writing(const struct sg_server *srv);

/* Closes the listening sockets; open connections go on. */
void sg_server_stop_accepting(struct sg_server *srv);

/* Frees the server and closes every connection. NULL-safe. */
void sg_server_free(struct sg_server *srv);

#endif
