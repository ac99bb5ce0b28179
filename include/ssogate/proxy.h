/*
 * Forwarding to the upstream: header filtering, X-Forwarded-*, streaming of
 * the response with backpressure (the upstream is not read while the
 * client's output is above a high-water mark), 502/504 pages.
 */
#ifndef SSOGATE_PROXY_H
#define SSOGATE_PROXY_H

struct evhttp_request;
struct sg_access;
struct sg_identity;
struct sg_conn;
struct sg_runtime;

/* Bytes queued to a client above which the upstream is no longer read. */
#define SG_PROXY_HIGH_WATER (256 * 1024)

/*
 * Forwards req (borrowed from libevent until it completes) to the upstream of
 * the current snapshot, which the request keeps until it ends. The access
 * record is taken (moved from; the caller must not clear it). The response,
 * or an error page, is sent to the client. identity (borrowed for the call,
 * may be NULL) adds the X-SSO-* headers; the gateway's own cookies never go
 * upstream.
 */
void sg_proxy_forward(struct sg_runtime *rt, struct evhttp_request *req, struct sg_conn *conn,
                      struct sg_access *access, const struct sg_identity *identity);

#endif
