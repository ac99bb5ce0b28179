/*
 * A pool of keep-alive connections to one upstream (http or https). A pool
 * belongs to one configuration snapshot and is reference-counted: requests
 * in flight keep the pool of the snapshot they began with alive after a
 * reload replaced it.
 */
#ifndef SSOGATE_UPSTREAM_H
#define SSOGATE_UPSTREAM_H

#include "ssogate/config.h"

struct bufferevent;
struct event_base;
struct evdns_base;
struct evhttp_connection;
struct sg_upstream;
struct sg_upstream_slot;

/*
 * Creates a pool for cfg (borrowed for the call; the pool copies what it
 * needs). dns may be NULL for numeric hosts. For https the peer certificate
 * and host name are verified against cfg->ca_file or the system store.
 * Returns 0 and the pool with one reference in *out, or SG_ECONFIG with a
 * reason in errbuf (an unreadable CA file).
 */
int sg_upstream_new(struct event_base *base, struct evdns_base *dns,
                    const struct sg_upstream_config *cfg, struct sg_upstream **out, char *errbuf,
                    size_t errlen);

struct sg_upstream *sg_upstream_ref(struct sg_upstream *up);

/* Drops a reference; the pool and its connections are freed at zero. NULL-safe. */
void sg_upstream_unref(struct sg_upstream *up);

/*
 * Picks a connection for one request: an idle one if any, a new one while
 * the pool is below its size, else the least busy. Hands back the slot
 * (to pass to sg_upstream_release exactly once) and returns the connection,
 * borrowed from the pool until release.
 */
struct evhttp_connection *sg_upstream_acquire(struct sg_upstream *up,
                                              struct sg_upstream_slot **slot);

/* Ends the use of a slot taken by sg_upstream_acquire. */
void sg_upstream_release(struct sg_upstream_slot *slot);

/* A bufferevent event callback (event2/bufferevent.h's bufferevent_event_cb). */
typedef void (*sg_upstream_event_fn)(struct bufferevent *bev, short what, void *arg);

/*
 * Opens a new connection to up's host outside the pool, for a tunnel
 * (tunnel.h): a socket bufferevent, or for https a bufferevent_openssl with
 * the pool's SSL_CTX, SNI and the certificate verified against the host name
 * (or IP), as for the pool's own connections. The host is resolved through
 * the pool's evdns base. Callbacks are deferred, so none runs inside this
 * call: eventcb (with arg, borrowed) gets BEV_EVENT_CONNECTED once connected
 * (for https once the TLS handshake succeeded), else BEV_EVENT_ERROR or
 * BEV_EVENT_TIMEOUT after connect_timeout_ms, which is set as the read and
 * write timeout for the caller to change once connected. Returns the
 * bufferevent, handed to the caller (bufferevent_free closes it), or NULL
 * when the connection cannot even start. The pool is borrowed for the call.
 */
struct bufferevent *sg_upstream_connect(struct sg_upstream *up, sg_upstream_event_fn eventcb,
                                        void *arg);

#endif
