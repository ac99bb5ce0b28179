/*
 * One request the gateway handles, from the router's first look until its
 * answer is handed to libevent (nginx's request with its pool cleanups, h2o's
 * h2o_req_t). The router begins every request here; a handler answers at once
 * or waits (token exchange, JWKS refetch, whoami, link write, upstream) and
 * answers later. Either way the request ends in sg_request_finish, which
 * counts the status, writes the access-log line, leaves the in-flight set
 * (a drain waits for that set to empty), releases the connection's close
 * watcher, runs the cleanups and drops the snapshot reference.
 *
 * When the client goes away while a handler waits, the handler's gone
 * function runs (it cancels what it waits for) and the request finishes with
 * status 499; the handler must not touch the request afterwards.
 */
#ifndef SSOGATE_REQUEST_H
#define SSOGATE_REQUEST_H

#include "ssogate/clientaddr.h"
#include "ssogate/target.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evhttp_request;
struct evkeyvalq;
struct sg_conn;
struct sg_logins;
struct sg_pgstore;
struct sg_store;
struct sg_tunnels;
struct sg_runtime;
struct sg_snapshot;
struct sg_requests;
struct sg_request;

#define SG_REQUEST_ID_SIZE 40

typedef void (*sg_request_fn)(struct sg_request *r, void *arg);

struct sg_request_cleanup {
    sg_request_fn fn;
    void *arg;
    struct sg_request_cleanup *next;
};

/* Fields a handler reads; the rest is request.c's. */
struct sg_request {
    uint32_t magic;
    struct evhttp_request *req; /* borrowed from libevent until the request finishes */
    struct sg_conn *conn;
    struct sg_snapshot *snap; /* owned reference: the snapshot the request began with */
    /* The long-lived parts (borrowed from the runtime, set by the router). */
    struct sg_runtime *rt;
    struct event_base *base;
    struct sg_store *store;    /* with store.type postgresql: this host's cache of shared */
    struct sg_pgstore *shared; /* store.type postgresql, else NULL */
    struct sg_logins *logins;
    struct sg_tunnels *tunnels;
    char id[SG_REQUEST_ID_SIZE];
    const char *method;       /* static string */
    struct sg_target target;  /* owned; target.path is "" until normalised */
    union sg_sockaddr client; /* the client's address (clientaddr.h): the peer, or behind
                               * trusted proxies whom they forwarded for */
    int64_t start_us;
    int64_t upstream_us; /* time to the upstream's answer, for the access log */
    /* The answer for the access log when the client goes away first: 499 and
     * the bytes sent so far, unless the gone function says otherwise. */
    int gone_status;
    uint64_t gone_bytes;

    struct sg_requests *set;
    sg_request_fn gone; /* while waiting: the handler's cancel function */
    void *gone_arg;
    bool waiting;
    struct evkeyvalq *params; /* the query, parsed at the first sg_request_param */
    struct sg_request_cleanup *cleanups;
    struct sg_request *prev, *next;
};

/* The requests in flight, and the draining flag. */
struct sg_requests *sg_requests_new(void);

/* Frees the set; requests still in it finish with 503 first (at exit). NULL-safe. */
void sg_requests_free(struct sg_requests *set);
unsigned sg_requests_in_flight(const struct sg_requests *set);

/* From now on every answer carries Connection: close. */
void sg_requests_drain(struct sg_requests *set);
bool sg_requests_draining(const struct sg_requests *set);

/*
 * Begins a request for req on conn (both borrowed from libevent) with a
 * reference to snap: a fresh request id, the method, an empty target. The
 * request is in flight until sg_request_finish.
 */
struct sg_request *sg_request_begin(struct sg_requests *set, struct sg_runtime *rt,
                                    struct sg_snapshot *snap, struct evhttp_request *req,
                                    struct sg_conn *conn);

/*
 * The handler answers later. gone (may be NULL) runs if the client goes
 * away first; it must cancel the handler's waits and free its own state, and
 * the request then finishes with 499.
 */
void sg_request_wait(struct sg_request *r, sg_request_fn gone, void *arg);

/* True once sg_request_wait was called (the router leaves the request alone). */
bool sg_request_waiting(const struct sg_request *r);

/* Ends a wait without finishing: the handler goes on (and may wait again). */
void sg_request_resume(struct sg_request *r);

/* Runs fn(r, arg) when the request finishes, newest first. */
void sg_request_on_finish(struct sg_request *r, sg_request_fn fn, void *arg);

/* Ends the request after its answer (status, body bytes) was handed to libevent;
 * an answer given while the request waited is written at once (sg_conn_flush),
 * which may free the evhttp request: nothing may use it after this call. */
void sg_request_finish(struct sg_request *r, int status, uint64_t bytes);

/* True when the answer should close the connection (the gateway drains). */
bool sg_request_draining(const struct sg_request *r);

/* The answers every handler needs; each returns the status it sent. */
int sg_request_page(struct sg_request *r, int status, const char *title, const char *message);
int sg_request_redirect(struct sg_request *r, int status, const char *location);

/* A query parameter of the target (decoded, borrowed until the request finishes), or NULL. */
const char *sg_request_param(struct sg_request *r, const char *name);

/* A request header (the first of its name), or NULL. */
const char *sg_request_header(const struct sg_request *r, const char *name);

/* GET or HEAD. */
bool sg_request_is_get(const struct sg_request *r);

/*
 * Records that the upstream's answer to r tried to set the gateway's own
 * cookies, whose Set-Cookie lines were dropped (sg_cookie_sets_any): a
 * warning and one ssogate_upstream_headers_dropped_total{reason="gateway_cookie"}.
 */
void sg_request_upstream_cookies_dropped(const struct sg_request *r);

#endif
