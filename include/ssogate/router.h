/*
 * The first stop of every request: the gateway's own endpoints under
 * /_sso/, everything else to the proxy.
 */
#ifndef SSOGATE_ROUTER_H
#define SSOGATE_ROUTER_H

#include "ssogate/target.h"

#include <stdint.h>

struct evhttp_request;
struct sg_runtime;
struct sg_conn;

/* Handles one request; the request and conn are borrowed from libevent. */
void sg_router_handle(struct sg_runtime *rt, struct evhttp_request *req, struct sg_conn *conn);

/*
 * A request's record: its id, method and normalised target (target.h), used
 * for the route decision, the request line sent upstream and the access-log
 * line (the path without its query). A handler that answers later takes the
 * record by struct copy.
 */
struct sg_access {
    char request_id[40];
    const char *method;      /* static string */
    struct sg_target target; /* owned; target.path is "" until normalised */
    int64_t start_us;
};

/* Fills an access record from req (borrowed), with an empty target; free
 * with sg_access_clear. */
void sg_access_init(struct sg_access *access, struct evhttp_request *req, int64_t start_us);
void sg_access_clear(struct sg_access *access);

/* Writes one access-log line. */
void sg_access_log(const struct sg_access *access, int status, uint64_t bytes, int64_t upstream_us);

#endif
