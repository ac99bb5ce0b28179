/*
 * WebSocket tunnels (RFC 6455): a handshake is forwarded to the upstream on
 * a connection of its own; when the upstream switches protocols, the client
 * connection is taken from libevent's HTTP server and the two connections
 * are spliced byte for byte, with backpressure both ways. Other upgrade
 * protocols (h2c) are never tunnelled. How the client connection is taken
 * over, and how a tunnel ends, is told at the top of gateway/tunnel.c.
 */
#ifndef SSOGATE_TUNNEL_H
#define SSOGATE_TUNNEL_H

#include <stdbool.h>

struct evbuffer;
struct evhttp_request;
struct evkeyvalq;
struct event_base;
struct sg_request;
struct sg_tunnels;

/* The tunnels of a process, and the timer that checks them once a second. */
struct sg_tunnels *sg_tunnels_new(struct event_base *base);

/* Frees the set; every tunnel's request has finished before. NULL-safe. */
void sg_tunnels_free(struct sg_tunnels *tunnels);
struct sg_identity;

/* Bytes queued towards one side of a tunnel above which the other side is no
 * longer read; reading resumes once half of it has been written. */
#define SG_TUNNEL_BUFFER_MAX (256 * 1024)

/* Bounds on the upstream's answer to a handshake: its head, and the body of a
 * refusal (a longer one is answered 502). */
#define SG_TUNNEL_HEAD_MAX (64 * 1024)
#define SG_TUNNEL_BODY_MAX (256 * 1024)

/*
 * True when req (borrowed) is a WebSocket handshake the gateway tunnels: a
 * GET in HTTP/1.1 without a body, exactly one Upgrade header whose value is
 * the token "websocket" (case-insensitive), and "upgrade" among the options
 * of its Connection header(s). Anything else, "Upgrade: h2c" included, is an
 * ordinary request whose Upgrade header is dropped as hop-by-hop.
 */
bool sg_tunnel_is_handshake(struct evhttp_request *req);

/*
 * Forwards the handshake r to the upstream of its snapshot on a new
 * connection, and answers it: with the upstream's 101 followed by the
 * tunnel, with the upstream's other answer relayed (and the connection
 * closed), or with a 502/504 page. r waits (request.h), so it counts in
 * flight, until the tunnel ends; the tunnel becomes its gone function in
 * place of the caller's. head is the request head as built for an ordinary
 * forward (request line; headers filtered, X-Forwarded-*, identity; without
 * Connection, Upgrade and the empty line), taken by the tunnel. identity (may be
 * NULL) is borrowed for the call: the tunnel keeps a copy of its session id
 * and is closed as soon as that session is gone from the store.
 */
void sg_tunnel_start(struct sg_request *r, struct evbuffer *head,
                     const struct sg_identity *identity);

#endif
