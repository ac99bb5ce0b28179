/*
 * The running gateway: the event base and resolver, the store, the current
 * snapshot (snapshot.h), the listeners, the requests in flight, the signals
 * (SIGHUP reloads; SIGTERM/SIGINT drain and stop) and the periodic sweeps.
 * The struct is runtime.c's own; the router reads what a request needs
 * through the functions below.
 */
#ifndef SSOGATE_RUNTIME_H
#define SSOGATE_RUNTIME_H

#include "ssogate/server.h"

#include <stdbool.h>

struct evbuffer;
struct event_base;
struct sg_logins;
struct sg_pgstore;
struct sg_requests;
struct sg_runtime;
struct sg_session_writer;
struct sg_snapshot;
struct sg_store;
struct sg_tunnels;

/*
 * Loads the configuration at path, opens the store, builds the first
 * snapshot and starts the listeners, each request going to handler with the
 * runtime as its argument. Logs the reason of a failure. Returns 0 and the
 * runtime in *out, or an SG_E* code.
 */
int sg_runtime_new(const char *path, sg_server_handler handler, struct sg_runtime **out);

/* Runs the event loop until a stop signal's drain ends. Returns 0. */
int sg_runtime_run(struct sg_runtime *rt);

/* Stops everything, flushes the store and frees the runtime. NULL-safe. */
void sg_runtime_free(struct sg_runtime *rt);

/*
 * Reloads the configuration file: on success swaps in the new snapshot and
 * returns 0; on any failure logs the reason, counts it, keeps the current
 * snapshot and returns the error.
 */
int sg_runtime_reload(struct sg_runtime *rt);

/* What the router hands to a request; all borrowed from the runtime. */
struct sg_snapshot *sg_runtime_snapshot(const struct sg_runtime *rt);
struct sg_store *sg_runtime_store(const struct sg_runtime *rt);
struct sg_logins *sg_runtime_logins(const struct sg_runtime *rt);
struct sg_pgstore *sg_runtime_shared(const struct sg_runtime *rt); /* NULL with lmdb */
struct sg_tunnels *sg_runtime_tunnels(const struct sg_runtime *rt);
/* The session writer (sessionwriter.h); NULL-safe: NULL for a NULL runtime (unit tests). */
struct sg_session_writer *sg_runtime_session_writer(const struct sg_runtime *rt);
struct sg_requests *sg_runtime_requests(const struct sg_runtime *rt);
struct event_base *sg_runtime_base(const struct sg_runtime *rt);

/* The gateway's public keys (the current one and a retired one still valid) as a JWK set. */
void sg_runtime_publish_keys(const struct sg_runtime *rt, struct evbuffer *out);

#endif
