/*
 * Header filtering between the client and the upstream: hop-by-hop headers
 * (RFC 9110 section 7.6.1) never cross the gateway, and the identity
 * namespace (X-SSO-* and configured names) is only ever written by the
 * gateway itself.
 */
#ifndef SSOGATE_HEADERS_H
#define SSOGATE_HEADERS_H

#include <stdbool.h>
#include <stddef.h>

struct evkeyvalq;

/* True for the fixed hop-by-hop header names (case-insensitive). */
bool sg_headers_is_hop_by_hop(const char *name);

/* True for a header in the gateway's identity namespace: X-SSO-* (case-insensitive). */
bool sg_headers_is_identity(const char *name);

/* True when name is listed in the Connection header value connection (may be NULL). */
bool sg_headers_listed_in_connection(const char *connection, const char *name);

/*
 * Copies the client's request headers from `in` to `out` for the upstream:
 * drops hop-by-hop headers, headers named in Connection, the identity
 * namespace, Content-Length (libevent sets it from the body), and the
 * X-Forwarded-Proto, X-Forwarded-Host and X-Request-Id headers that the
 * gateway sets itself (X-Forwarded-For is kept: the proxy appends to it). Both lists are borrowed.
 */
void sg_headers_copy_request(const struct evkeyvalq *in, struct evkeyvalq *out);

/*
 * Copies the upstream's response headers for the client: drops hop-by-hop
 * headers and headers named in Connection; keeps Content-Length so that a
 * sized response streams without chunking.
 */
void sg_headers_copy_response(const struct evkeyvalq *in, struct evkeyvalq *out);

/* Sum of name and value lengths plus separators, as on the wire. */
size_t sg_headers_wire_size(const struct evkeyvalq *headers);

#endif
