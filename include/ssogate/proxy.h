/*
 * Forwarding to the upstream: header filtering, X-Forwarded-*, streaming of
 * the response with backpressure (the upstream is not read while the
 * client's output is above a high-water mark), 502/504 pages.
 */
#ifndef SSOGATE_PROXY_H
#define SSOGATE_PROXY_H

struct sg_identity;
struct sg_request;

/* Bytes queued to a client above which the upstream is no longer read. */
#define SG_PROXY_HIGH_WATER (256 * 1024)

/*
 * Forwards r to the upstream of its snapshot; r waits (request.h) until the
 * response, or an error page, is sent to the client. identity (borrowed for
 * the call, may be NULL) adds the X-SSO-* headers; the gateway's own cookies
 * never go upstream. A WebSocket handshake goes to the tunnel (tunnel.h).
 */
void sg_proxy_forward(struct sg_request *r, const struct sg_identity *identity);

#endif
