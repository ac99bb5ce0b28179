/*
 * The proxy's link to the upstream: keep-alive HTTP/1.1 connections that
 * carry one exchange (a request and its response) at a time.
 *
 * Over plain http a connection is a raw socket registered with the event
 * loop once, for reading (level-triggered, persistent), and written
 * directly; the loop is asked to watch for writability only when the kernel
 * takes less than a whole request. A request thus costs no event
 * (re)registration and no FIONREAD, where evhttp's client paid about three
 * epoll_ctl and an ioctl. An https upstream runs the same exchanges over a
 * bufferevent_openssl. Connections are made by sg_upstream_connect (name
 * resolution, TLS and its verification).
 *
 * Responses are read with llhttp (strict mode). The head is parsed once it is whole
 * (at most SG_UPLINK_HEAD_MAX bytes) from contiguous memory, so the header
 * names and values handed to on_head point into the connection's input
 * without a copy. 1xx answers other than 101 are skipped; a 101, a malformed
 * head, a header name that is not a token, a transfer coding other than a
 * lone chunked and a body that breaks off fail the exchange, and bytes after
 * the response close the connection.
 *
 * Idle connections stay open, at most upstream.pool_size of them (a busy
 * pool opens more, as nginx's keepalive does); one the upstream closes or
 * writes to while idle is dropped. The request stays in memory until its
 * exchange ends, so that an idempotent one can be sent again when a
 * kept-alive connection turns out closed (sg_uplink_send).
 */
#ifndef SSOGATE_UPLINK_H
#define SSOGATE_UPLINK_H

#include "ssogate/config.h"
#include "ssogate/headers.h"

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct evbuffer;
struct sg_upstream;
struct sg_uplink;
struct sg_uplink_conn;

/* Bytes of a response head (status line and headers) at most. */
#define SG_UPLINK_HEAD_MAX (64 * 1024)

enum sg_uplink_result {
    SG_UPLINK_OK = 0,
    SG_UPLINK_CONNECT, /* no connection could be made */
    SG_UPLINK_BROKEN,  /* the connection closed or broke before the response was whole */
    SG_UPLINK_INVALID, /* the response broke HTTP/1.1's rules (RFC 9112), or is one not taken */
    /* connect_timeout_ms; or response_timeout_ms: from the request's sending to the end of the
     * final response's head (1xx answers do not extend it), then between reads of the body */
    SG_UPLINK_TIMEOUT,
};

/* A response head, valid for the call of on_head only. */
struct sg_uplink_response {
    int status;
    const char *reason; /* "" when the upstream sent none */
    const struct sg_header *headers;
    size_t header_count;
};

/*
 * What an exchange reports, in this order: on_head once, on_body zero or
 * more times (body bytes so far, de-chunked, to be taken out of the buffer),
 * then on_done once with the last body bytes (empty when none are left or
 * the exchange failed). A failed exchange's detail says why, for the log: a
 * static string, llhttp's error name (HPE_...) for what llhttp refused, else
 * a snake_case word ("closed_before_answer", "obs_fold", "transfer_coding",
 * "head_timeout", ...); NULL on success. No callback runs inside
 * sg_uplink_send or sg_uplink_cancel, none after on_done or sg_uplink_cancel.
 */
struct sg_uplink_callbacks {
    void (*on_head)(void *arg, const struct sg_uplink_response *response);
    void (*on_body)(void *arg, struct evbuffer *body);
    void (*on_done)(void *arg, enum sg_uplink_result result, const char *detail,
                    struct evbuffer *body);
};

/*
 * A pool for cfg's upstream, connecting through up (a reference is taken).
 * The pool is reference-counted like sg_upstream: its exchanges in flight
 * keep it alive after a reload replaced it.
 */
struct sg_uplink *sg_uplink_new(struct event_base *base, struct sg_upstream *up,
                                const struct sg_upstream_config *cfg);

/* Drops a reference; the pool and its idle connections go at zero. NULL-safe. */
void sg_uplink_unref(struct sg_uplink *pool);

/* What sg_uplink_send is told of a request. */
enum sg_uplink_flags {
    SG_UPLINK_HEAD = 1,       /* a HEAD: the response has no body whatever its headers say */
    SG_UPLINK_IDEMPOTENT = 2, /* may be sent again (RFC 9110 9.2.2) */
};

/*
 * Sends request (the whole request: head and body; its bytes are taken) on
 * an idle connection or a new one; flags are sg_uplink_flags. An idempotent
 * request whose kept-alive connection closes before a byte of the answer is
 * sent once more on a new connection. Returns the connection, borrowed until
 * on_done or sg_uplink_cancel.
 */
struct sg_uplink_conn *sg_uplink_send(struct sg_uplink *pool, struct evbuffer *request,
                                      unsigned flags, const struct sg_uplink_callbacks *cb,
                                      void *arg);

/* Stops (true) or resumes (false) reading the response: backpressure. */
void sg_uplink_pause(struct sg_uplink_conn *conn, bool paused);

/* Abandons the exchange: no more callbacks, the connection is closed. */
void sg_uplink_cancel(struct sg_uplink_conn *conn);

#endif
