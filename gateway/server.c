#include "ssogate/server.h"

#include "ssogate/clientaddr.h"
#include "ssogate/common.h"
#include "ssogate/conn.h"
#include "ssogate/headers.h"
#include "ssogate/log.h"
#include "ssogate/loginflight.h"
#include "ssogate/metrics.h"
#include "ssogate/service.h"
#include "ssogate/wire.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* libevent answers 413 by itself past this multiple of the configured
 * header limit; below it the gateway answers 431 (see router.c). */
#define HEADER_HARD_LIMIT_FACTOR 2
#define LISTEN_BACKLOG           4096
/* A connection accepted this recently is expected to send a request (sg_server_expecting). */
#define FIRST_REQUEST_GRACE_US 200000
/* At the connection limit, a connection that has sent nothing for this long is closed (reclaim). */
#define UNUSED_GRACE_US 1000000
/* At the connection limit, a request still incomplete this long after its first byte, beyond what
 * limits.min_body_rate allows for the bytes it sent, is closed (reclaim). */
#define STALLED_GRACE_US 2000000

struct listener {
    struct sg_server *srv;
    struct evhttp *http;
    struct evconnlistener *lev; /* owned by http once bound */
    struct evhttp_bound_socket *bound;
    SSL_CTX *ssl_ctx; /* NULL for plain http */
    char *address;
    uint16_t port;            /* bound */
    uint16_t configured_port; /* as configured: 0 picks a free one */
};

/*
 * One client connection. libevent gives no hook when an incoming connection
 * closes before its first request, so the gateway holds a reference on each
 * bufferevent it creates and notices the close either through the closecb
 * (installed at the first request) or, for connections that never sent one,
 * through a sweep that sees libevent cleared the callbacks when it let go.
 */
struct sg_conn {
    struct listener *listener;
    struct bufferevent *bev; /* our reference, dropped in conn_release */
    struct evbuffer_cb_entry *input_cb;
    int64_t accepted_us;
    /* A request is being received: bytes came in since the last request was
     * handed over (or since accept). Its deadline is reading_since +
     * client_timeout + reading_bytes / min_body_rate. */
    bool reading;
    uint64_t held;     /* of reading_bytes, what counts in the server's held (body_memory_bytes) */
    bool addr_seen;    /* its first bytes came: limits.connections_per_address applied */
    bool addr_counted; /* counted under addr in the server's per_address */
    struct sg_loginaddr addr; /* its client's address (IPv4, or IPv6 /64) */
    bool tunnel;              /* no longer HTTP: no request deadline, never idle */
    bool closing;             /* shut down by the gateway, waiting for libevent */
    bool bounded;             /* keep_reading's read watermark is set */
    int64_t reading_since;
    uint64_t reading_bytes;
    int64_t last_active_us; /* last byte received or request handed over */
    bool seen_request;      /* moved to the active list */
    bool close_hooked;      /* evhttp's closecb is on_conn_close */
    evutil_socket_t fd;     /* -1 until the first request */
    sg_conn_close_fn on_close;
    void *on_close_arg;
    struct event *release; /* runs once libevent has let go of the bufferevent */
    struct sg_wire wire;   /* the wire check of what the client sends (wire.h) */
    /* evhttp's event callback, while on_busy_event stands in for it (on_request). */
    bufferevent_event_cb evhttp_eventcb;
    void *evhttp_eventarg;
    uint64_t requests; /* handed over so far, the current one included */
    struct sg_conn *prev, *next;
};

struct sg_server {
    struct event_base *base;
    sg_server_handler handler;
    void *handler_arg;
    struct listener *listeners;
    size_t listener_count;
    struct sg_conn *pending; /* accepted, no request yet; oldest first */
    struct sg_conn *pending_tail;
    struct sg_conn *active; /* at least one request seen */
    size_t connection_count;
    size_t connection_limit;
    int64_t client_timeout_us;
    uint64_t min_body_rate; /* bytes per second */
    size_t input_max;       /* bytes a client's unread input may hold (on_request) */
    /* Bytes of requests being received (their bodies wait in memory until handed over), and
     * their bound, limits.body_memory_bytes: past it the connection holding the most is closed. */
    uint64_t held;
    uint64_t held_max;
    struct sg_log_every held_log; /* body_memory_full lines */
    /* limits.connections_per_address (0: none), counted from a connection's first bytes; peers in
     * trusted_proxies (copied here) are not counted. */
    struct sg_addrcount *per_address;
    size_t per_address_max;
    struct sg_cidr *trusted;
    size_t trusted_count;
    struct sg_log_every per_address_log; /* connections_per_address lines */
    bool accepting_paused;
    bool stopped;
    bool freeing; /* connections close synchronously: no deferred release */
    struct event *sweep;
    struct event *reclaim_timer; /* the next connection that sent nothing reaches the grace */
    struct sg_conn **by_fd;      /* active connections by socket */
    size_t by_fd_len;
};

static void list_remove(struct sg_server *srv, struct sg_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (srv->pending == c)
        srv->pending = c->next;
    else
        srv->active = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else if (srv->pending_tail == c)
        srv->pending_tail = c->prev;
    c->prev = c->next = NULL;
}

static void set_accepting(struct sg_server *srv, bool on)
{
    if (srv->stopped || srv->accepting_paused == !on)
        return;
    srv->accepting_paused = !on;
    for (size_t i = 0; i < srv->listener_count; i++) {
        if (srv->listeners[i].lev == NULL)
            continue;
        if (on)
            evconnlistener_enable(srv->listeners[i].lev);
        else
            evconnlistener_disable(srv->listeners[i].lev);
    }
    if (!on) {
        sg_metrics_error(SG_MERR_CONNECTION_LIMIT);
        sg_log(SG_LOG_WARN, "connection_limit", "%zu connections open: accepting paused",
               srv->connection_count);
    }
}

/* c's request bytes no longer count against limits.body_memory_bytes: handed over, tunnelled,
 * closing or gone. */
static void held_release(struct sg_server *srv, struct sg_conn *c)
{
    srv->held -= c->held;
    c->held = 0;
}

/* A TLS connection ended before its handshake did: counted, and logged with OpenSSL's reason
 * (an old protocol version, no shared cipher, plain HTTP), or why the gateway closed it. */
static void tls_handshake_failed(const struct sg_conn *c)
{
    unsigned long err = bufferevent_get_openssl_error(c->bev);
    const char *reason = err != 0 ? ERR_reason_error_string(err) : NULL;
    if (reason == NULL)
        reason = c->closing ? "closed by the gateway" : "closed before the handshake ended";
    sg_metrics_error(SG_MERR_TLS_HANDSHAKE);
    sg_log_fields(
        SG_LOG_INFO, "tls_handshake",
        (struct sg_log_field[]){SG_LOG_STR("result", "failed"), SG_LOG_STR("reason", reason)}, 2);
}

static void conn_release(struct sg_server *srv, struct sg_conn *c)
{
    /* A request the wire check found malformed that never reached the router: libevent refused
     * it itself (its bare 400, or 501 for a method it does not hand over) or the connection ended
     * first. Counted and logged here, as the router does for the ones it refuses. */
    if (c->wire.bad_message > c->requests) {
        sg_metrics_error(SG_MERR_BAD_REQUEST);
        sg_metrics_count("ssogate_bad_requests_total", "reason", "malformed_wire");
        sg_log_fields(SG_LOG_INFO, "bad_request",
                      (struct sg_log_field[]){SG_LOG_STR("reason", "malformed_wire"),
                                              SG_LOG_STR("detail", c->wire.reason),
                                              SG_LOG_STR("answered_by", "libevent")},
                      3);
    }
    held_release(srv, c);
    if (c->addr_counted)
        sg_addrcount_remove(srv->per_address, c->addr.bytes);
    list_remove(srv, c);
    if (c->fd >= 0 && srv->by_fd[c->fd] == c)
        srv->by_fd[c->fd] = NULL;
    if (!c->seen_request && c->listener->ssl_ctx != NULL) {
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        if (ssl != NULL && !SSL_is_init_finished(ssl))
            tls_handshake_failed(c);
    }
    evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->input_cb);
    bufferevent_decref(c->bev);
    if (c->release != NULL)
        event_free(c->release);
    free(c);
    srv->connection_count--;
    sg_metrics_connections(-1);
    if (srv->connection_count < srv->connection_limit)
        set_accepting(srv, true);
}

static void conn_release_deferred(evutil_socket_t fd, short what, void *arg)
{
    struct sg_conn *c = arg;
    conn_release(c->listener->srv, c);
}

static void on_conn_close(struct evhttp_connection *evcon, void *arg)
{
    struct sg_conn *c = arg;
    static const struct timeval now = {0, 0};

    if (c->on_close != NULL) {
        sg_conn_close_fn fn = c->on_close;
        c->on_close = NULL;
        fn(c->on_close_arg);
    }
    if (c->listener->srv->freeing)
        return;
    /* libevent frees the bufferevent right after this callback returns. */
    c->release = evtimer_new(c->listener->srv->base, conn_release_deferred, c);
    evtimer_add(c->release, &now);
}

static bool released_by_libevent(struct bufferevent *bev)
{
    bufferevent_data_cb readcb, writecb;
    bufferevent_event_cb eventcb;
    void *arg;
    bufferevent_getcb(bev, &readcb, &writecb, &eventcb, &arg);
    return readcb == NULL && writecb == NULL && eventcb == NULL;
}

/* Closes a connection from under libevent: it sees the end of the stream
 * and frees the connection the usual way. */
static void conn_shutdown(struct sg_conn *c)
{
    evutil_socket_t sock = bufferevent_getfd(c->bev);
    if (sock >= 0)
        shutdown(sock, SHUT_RDWR);
    c->closing = true;
    c->reading = false;
    held_release(c->listener->srv, c);
}

/* True while a request of c is being handled or answered: evhttp does not read requests then. */
static bool in_flight(const struct sg_conn *c)
{
    bufferevent_data_cb readcb;
    bufferevent_getcb(c->bev, &readcb, NULL, NULL, NULL);
    return readcb == NULL || !(bufferevent_get_enabled(c->bev) & EV_READ);
}

/* The evhttp connection of c while evhttp's callbacks are on its bufferevent
 * (they take it as their argument): from accept until a request is handed over. */
static struct evhttp_connection *evhttp_of(const struct sg_conn *c)
{
    void *evcon;
    bufferevent_getcb(c->bev, NULL, NULL, NULL, &evcon);
    return evcon;
}

/* libevent frees a connection that has had no request without a close
 * callback of ours: one is set (hook_close) to release its slot at once
 * rather than at the next sweep. reclaim_one closes c so. */
static void hook_close(struct sg_conn *c)
{
    if (c->close_hooked)
        return;
    evhttp_connection_set_closecb(evhttp_of(c), on_conn_close, c);
    c->close_hooked = true;
}

static void reclaim_one(struct sg_conn *c)
{
    hook_close(c);
    conn_shutdown(c);
}

/* True when the request being received has taken longer than base_us, plus
 * what min_body_rate allows for the bytes it sent (see struct sg_conn). */
static bool request_slower(const struct sg_server *srv, const struct sg_conn *c, int64_t now,
                           int64_t base_us)
{
    if (!c->reading || c->tunnel || c->closing || in_flight(c))
        return false;
    int64_t allowance = (int64_t)(c->reading_bytes * 1000000 / srv->min_body_rate);
    return now - c->reading_since > base_us + allowance;
}

/* True when the request being received is past its deadline. */
static bool request_late(const struct sg_server *srv, const struct sg_conn *c, int64_t now)
{
    return request_slower(srv, c, now, srv->client_timeout_us);
}

/*
 * Closes every connection whose request has been coming in for more than
 * STALLED_GRACE_US beyond its min_body_rate allowance: a byte now and then
 * (a slowloris) would hold a slot for client_timeout_s. Returns the number
 * closed.
 */
static size_t close_stalled(struct sg_server *srv, int64_t now)
{
    size_t closed = 0;
    struct sg_conn *lists[2] = {srv->pending, srv->active};
    for (size_t i = 0; i < 2; i++) {
        for (struct sg_conn *c = lists[i]; c != NULL; c = c->next) {
            if (!request_slower(srv, c, now, STALLED_GRACE_US))
                continue;
            reclaim_one(c);
            sg_metrics_count("ssogate_idle_connections_closed_total", "reason", "stalled");
            closed++;
        }
    }
    return closed;
}

/*
 * Closes the keep-alive connection that has been idle longest (waiting for
 * its next request, nothing received). Returns false when none is idle.
 */
static bool close_longest_idle(struct sg_server *srv)
{
    struct sg_conn *oldest = NULL;
    for (struct sg_conn *c = srv->active; c != NULL; c = c->next) {
        if (c->reading || c->tunnel || c->closing || in_flight(c))
            continue; /* receiving, tunnelled, or a request in the works */
        if (oldest == NULL || c->last_active_us < oldest->last_active_us)
            oldest = c;
    }
    if (oldest == NULL)
        return false;
    conn_shutdown(oldest);
    sg_metrics_count("ssogate_idle_connections_closed_total", "reason", "connection_limit");
    return true;
}

/*
 * Closes every connection that has sent no byte in the UNUSED_GRACE_US since
 * its accept, oldest first (the pending list is in accept order, so they are
 * its head). Returns the number closed.
 */
static size_t close_unused(struct sg_server *srv, int64_t now)
{
    size_t closed = 0;
    for (struct sg_conn *c = srv->pending; c != NULL && now - c->accepted_us >= UNUSED_GRACE_US;
         c = c->next) {
        if (c->closing || c->reading_bytes > 0 || released_by_libevent(c->bev))
            continue;
        reclaim_one(c);
        sg_metrics_count("ssogate_idle_connections_closed_total", "reason", "no_request");
        closed++;
    }
    return closed;
}

/* When the oldest connection that has sent nothing reaches the grace, or 0 if there is none. */
static int64_t next_unused_due(const struct sg_server *srv)
{
    for (const struct sg_conn *c = srv->pending; c != NULL; c = c->next) {
        if (!c->closing && c->reading_bytes == 0 && !released_by_libevent(c->bev))
            return c->accepted_us + UNUSED_GRACE_US;
    }
    return 0;
}

/* Releases the slots of connections libevent closed before any request (the
 * client left: libevent frees them without a close callback of ours). Not
 * from an accept: the connection being accepted has no callbacks yet. */
static void release_dead(struct sg_server *srv)
{
    for (struct sg_conn *c = srv->pending, *next; c != NULL; c = next) {
        next = c->next;
        if (!c->seen_request && released_by_libevent(c->bev))
            conn_release(srv, c);
    }
}

/*
 * At the connection limit (at the accept that reaches it, at every sweep
 * while accepting is paused, and when the oldest connection that has sent
 * nothing reaches the grace): frees slots held without use, so that idle
 * connections cannot exhaust the limit. The connections that have sent
 * nothing within the grace go first, all of them (a client that opens a
 * connection and sends nothing for a second while the gateway is full has no
 * claim to a slot); then those whose request stalls (close_stalled); when
 * there is none, the longest-idle keep-alive connection. A request coming in
 * at min_body_rate or faster keeps its slot until its deadline.
 */
static void reclaim(struct sg_server *srv, int64_t now)
{
    size_t closed = close_unused(srv, now);
    const char *reason = "no_request";
    if (closed == 0) {
        closed = close_stalled(srv, now);
        reason = "stalled";
    }
    if (closed == 0 && close_longest_idle(srv)) {
        closed = 1;
        reason = "connection_limit";
    }
    if (closed == 0) {
        int64_t due = next_unused_due(srv);
        if (due > 0) {
            int64_t wait = due > now ? due - now : 0;
            struct timeval tv = {(time_t)(wait / 1000000), (suseconds_t)(wait % 1000000)};
            evtimer_add(srv->reclaim_timer, &tv);
        }
        return;
    }
    sg_log_fields(SG_LOG_INFO, "idle_connections_closed",
                  (struct sg_log_field[]){SG_LOG_STR("reason", reason),
                                          SG_LOG_INT("closed", (int64_t)closed),
                                          SG_LOG_INT("open", (int64_t)srv->connection_count)},
                  3);
}

static void on_reclaim_timer(evutil_socket_t fd, short what, void *arg)
{
    struct sg_server *srv = arg;
    if (srv->accepting_paused && !srv->stopped) {
        /* At the limit, every connection is hooked: one whose client leaves
         * before a request frees its slot at once, not at the next sweep. */
        release_dead(srv);
        for (struct sg_conn *c = srv->pending; c != NULL; c = c->next)
            hook_close(c);
        reclaim(srv, sg_mono_us());
    }
}

/* Once a second: drop connections libevent closed before any request,
 * close those whose request does not arrive in time (slow loris), on a
 * connection's first request and on every later one, and, while accepting is
 * paused at the limit, reclaim the slots idle connections hold (nothing else
 * would until a connection ends). */
static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct sg_server *srv = arg;
    int64_t now = sg_mono_us();
    release_dead(srv);
    struct sg_conn *lists[2] = {srv->pending, srv->active};
    for (size_t i = 0; i < 2; i++) {
        for (struct sg_conn *c = lists[i]; c != NULL; c = c->next) {
            if (request_late(srv, c, now)) {
                conn_shutdown(c);
                sg_metrics_error(SG_MERR_CLIENT_TIMEOUT);
                sg_log(SG_LOG_INFO, "client_timeout", "no complete request in time: closing");
            }
        }
    }
    if (srv->accepting_paused && !srv->stopped)
        reclaim(srv, now);
}

/* Logs a connection closed at limits.body_memory_bytes (sg_log_every), with the bytes it held. */
static void held_log(struct sg_server *srv, uint64_t bytes)
{
    uint64_t closed;
    if (!sg_log_every_due(&srv->held_log, &closed))
        return;
    sg_log_fields(SG_LOG_WARN, "body_memory_full",
                  (struct sg_log_field[]){
                      SG_LOG_STR("msg", "requests being received hold limits.body_memory_bytes: "
                                        "the connection holding the most was closed"),
                      SG_LOG_INT("held", (int64_t)bytes),
                      SG_LOG_INT("limit", (int64_t)srv->held_max),
                      SG_LOG_INT("closed", (int64_t)closed)},
                  4);
}

/*
 * Past limits.body_memory_bytes, closes the connections holding the most
 * bytes of a request still being received until the rest fit: a client that
 * sends large bodies and stalls before their end (min_body_rate allows a
 * long wait for the bytes already sent) cannot make the gateway hold
 * connections x body_bytes, and small requests keep being received.
 */
static void held_shed(struct sg_server *srv)
{
    while (srv->held > srv->held_max) {
        struct sg_conn *most = NULL;
        for (int list = 0; list < 2; list++) {
            for (struct sg_conn *c = list == 0 ? srv->pending : srv->active; c != NULL;
                 c = c->next) {
                if (most == NULL || c->held > most->held)
                    most = c;
            }
        }
        if (most == NULL || most->held == 0)
            return;
        uint64_t bytes = most->held;
        conn_shutdown(most);
        sg_metrics_count("ssogate_idle_connections_closed_total", "reason", "body_memory");
        held_log(srv, bytes);
    }
}

/*
 * limits.connections_per_address, at a connection's first bytes: counts it
 * under its client's address (the peer: a balancer in trusted_proxies is not
 * counted, its clients being many) and answers false past the limit.
 */
static bool per_address_admit(struct sg_server *srv, struct sg_conn *c)
{
    if (srv->per_address_max == 0)
        return true;
    /* The address evhttp kept at accept: no system call. */
    const struct sockaddr *peer = evhttp_connection_get_addr(evhttp_of(c));
    if (peer == NULL || sg_cidr_match(srv->trusted, srv->trusted_count, peer))
        return true;
    sg_loginaddr_of(peer, &c->addr);
    c->addr_counted = true;
    if (sg_addrcount_add(srv->per_address, c->addr.bytes) <= srv->per_address_max)
        return true;
    sg_metrics_count("ssogate_idle_connections_closed_total", "reason", "per_address");
    uint64_t closed;
    if (sg_log_every_due(&srv->per_address_log, &closed)) {
        char text[SG_LOGINADDR_TEXT_SIZE];
        sg_loginaddr_format(&c->addr, text);
        sg_log_fields(SG_LOG_WARN, "connections_per_address",
                      (struct sg_log_field[]){
                          SG_LOG_STR("msg", "an address past limits.connections_per_address: "
                                            "its new connection was closed"),
                          SG_LOG_STR("address", text),
                          SG_LOG_INT("limit", (int64_t)srv->per_address_max),
                          SG_LOG_INT("closed", (int64_t)closed)},
                      4);
    }
    return false;
}

/* Counts and checks what a client sends (wire.h), before evhttp reads it from
 * the same buffer. */
static void on_input(struct evbuffer *buffer, const struct evbuffer_cb_info *info, void *arg)
{
    struct sg_conn *c = arg;
    if (c->bounded) {
        /* evhttp reads again (its read callback is back): its parser takes the
         * input as it comes, so the bound is lifted. libevent's watermark
         * callback would re-arm the read event at every change of the input,
         * a dozen times a request, each line evhttp drains being one. */
        bufferevent_data_cb readcb;
        bufferevent_getcb(c->bev, &readcb, NULL, NULL, NULL);
        if (readcb != NULL) {
            c->bounded = false;
            bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
        }
    }
    if (info->n_added == 0)
        return;
    if (!c->addr_seen) {
        c->addr_seen = true;
        if (!per_address_admit(c->listener->srv, c)) {
            conn_shutdown(c);
            return;
        }
    }
    if (sg_wire_scan(&c->wire, buffer, info->n_added) && !c->closing) {
        conn_shutdown(c);
        sg_metrics_error(SG_MERR_BAD_REQUEST);
        sg_metrics_count("ssogate_bad_requests_total", "reason", "malformed_wire");
        sg_log(SG_LOG_INFO, "bad_request", "%s: closing", c->wire.reason);
    }
    int64_t now = sg_mono_us();
    c->last_active_us = now;
    if (!c->reading) {
        c->reading = true;
        c->reading_since = now;
        c->reading_bytes = 0;
    }
    c->reading_bytes += info->n_added;
    if (!c->closing && !c->tunnel) {
        struct sg_server *srv = c->listener->srv;
        c->held += info->n_added;
        srv->held += info->n_added;
        if (srv->held > srv->held_max)
            held_shed(srv);
    }
}

static struct bufferevent *on_new_connection(struct event_base *base, void *arg)
{
    struct listener *l = arg;
    struct sg_server *srv = l->srv;
    struct bufferevent *bev;

    if (l->ssl_ctx != NULL) {
        bev = bufferevent_openssl_socket_new(base, -1, SSL_new(l->ssl_ctx),
                                             BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    } else {
        bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (bev == NULL)
        abort();
    bufferevent_incref(bev);

    struct sg_conn *c = sg_calloc(1, sizeof(*c));
    c->listener = l;
    c->bev = bev;
    c->accepted_us = sg_mono_us();
    c->reading = true; /* the first request's deadline runs from accept */
    c->reading_since = c->accepted_us;
    c->last_active_us = c->accepted_us;
    sg_wire_init(&c->wire);
    c->input_cb = evbuffer_add_cb(bufferevent_get_input(bev), on_input, c);
    c->fd = -1;
    c->prev = srv->pending_tail;
    if (srv->pending_tail)
        srv->pending_tail->next = c;
    else
        srv->pending = c;
    srv->pending_tail = c;
    srv->connection_count++;
    sg_metrics_connections(1);
    if (srv->connection_count >= srv->connection_limit) {
        set_accepting(srv, false);
        reclaim(srv, c->accepted_us);
        /* Once this accept is over: the slots of clients that left at once. */
        event_active(srv->reclaim_timer, EV_TIMEOUT, 1);
    }
    return bev;
}

static void conn_index(struct sg_server *srv, struct sg_conn *c, evutil_socket_t fd)
{
    if (fd < 0)
        return;
    if ((size_t)fd >= srv->by_fd_len) {
        size_t len = srv->by_fd_len ? srv->by_fd_len : 1024;
        while (len <= (size_t)fd)
            len *= 2;
        srv->by_fd = sg_realloc(srv->by_fd, len * sizeof(*srv->by_fd));
        memset(srv->by_fd + srv->by_fd_len, 0, (len - srv->by_fd_len) * sizeof(*srv->by_fd));
        srv->by_fd_len = len;
    }
    srv->by_fd[fd] = c;
    c->fd = fd;
}

/*
 * The connection of a request. Its socket stays open while the gateway holds
 * the bufferevent, so the descriptor names one connection only; a
 * connection's first request finds it in the (short) pending list.
 */
static struct sg_conn *conn_of_request(struct sg_server *srv, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    evutil_socket_t fd = bufferevent_getfd(bev);

    if (fd >= 0 && (size_t)fd < srv->by_fd_len && srv->by_fd[fd] != NULL &&
        srv->by_fd[fd]->bev == bev)
        return srv->by_fd[fd];

    for (struct sg_conn *c = srv->pending; c != NULL; c = c->next) {
        if (c->bev != bev)
            continue;
        list_remove(srv, c);
        c->seen_request = true;
        c->next = srv->active;
        if (srv->active)
            srv->active->prev = c;
        srv->active = c;
        conn_index(srv, c, fd);
        hook_close(c);
        return c;
    }
    abort(); /* every connection was registered when libevent asked for its bufferevent */
}

/*
 * While a request is handled, evhttp's events stand in for its own: a
 * read timeout means nothing then (the handler's own deadlines apply); the
 * end of the connection or an error goes to evhttp, which frees it.
 */
static void on_busy_event(struct bufferevent *bev, short what, void *arg)
{
    struct sg_conn *c = arg;
    if (what & BEV_EVENT_TIMEOUT) {
        bufferevent_enable(bev, EV_READ);
        return;
    }
    c->evhttp_eventcb(bev, what, c->evhttp_eventarg);
}

/*
 * evhttp stops reading a plain connection while its request is handled and
 * starts again after the answer: an epoll_ctl DEL and an ADD per request.
 * Reading goes on instead, with no read callback (bytes wait in the input,
 * at most input_max of them: a read watermark), so the changelist merges the
 * two into one EPOLL_CTL_MOD that changes nothing; evhttp takes its callbacks
 * back when it writes the answer. The bound holds through evhttp's answer
 * phase too, which reads without a callback, until evhttp reads the next
 * request (on_input lifts it).
 */
static void keep_reading(struct sg_server *srv, struct sg_conn *c)
{
    bufferevent_data_cb writecb;
    bufferevent_getcb(c->bev, NULL, &writecb, &c->evhttp_eventcb, &c->evhttp_eventarg);
    bufferevent_setcb(c->bev, NULL, writecb, on_busy_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, srv->input_max);
    c->bounded = true;
    bufferevent_enable(c->bev, EV_READ);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct listener *l = arg;
    struct sg_conn *c = conn_of_request(l->srv, req);
    c->reading = false; /* received in time; the next request's clock starts at its first byte */
    held_release(l->srv, c);
    c->last_active_us = sg_mono_us();
    c->requests++;
    /* The wire check stopped at a protocol switch: unless this request became
     * a tunnel, what follows it is not checked, so the connection ends. */
    if (sg_wire_stopped(&c->wire, c->requests))
        sg_headers_close_connection(evhttp_request_get_output_headers(req));
    if (l->ssl_ctx == NULL)
        keep_reading(l->srv, c);
    l->srv->handler(req, c, l->srv->handler_arg);
    /* An answer given at once (the request is finished) goes out now. */
    if (!released_by_libevent(c->bev))
        sg_conn_flush(c);
}

static SSL_CTX *tls_context_new(const struct sg_listener_config *lc, size_t index, char *errbuf,
                                size_t errlen)
{
    const char *files[2] = {lc->tls_cert, lc->tls_key};
    const char *keys[2] = {"cert", "key"};
    for (size_t i = 0; i < 2; i++) {
        if (access(files[i], R_OK) != 0) {
            snprintf(errbuf, errlen, "listeners[%zu].tls.%s: cannot read %s: %s", index, keys[i],
                     files[i], strerror(errno));
            return NULL;
        }
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    int bad = -1;
    if (SSL_CTX_use_certificate_chain_file(ctx, lc->tls_cert) != 1)
        bad = 0;
    else if (SSL_CTX_use_PrivateKey_file(ctx, lc->tls_key, SSL_FILETYPE_PEM) != 1 ||
             SSL_CTX_check_private_key(ctx) != 1)
        bad = 1;
    if (bad >= 0) {
        snprintf(errbuf, errlen, "listeners[%zu].tls.%s: cannot use %s: %s", index, keys[bad],
                 files[bad], ERR_reason_error_string(ERR_peek_last_error()));
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* Above evhttp's own header limit, so that it never waits for a line the watermark holds back. */
static size_t input_max(const struct sg_config *cfg)
{
    return cfg->limits.header_bytes * HEADER_HARD_LIMIT_FACTOR + 64 * 1024;
}

static void apply_limits(struct evhttp *http, const struct sg_config *cfg)
{
    evhttp_set_max_headers_size(http,
                                (ev_ssize_t)cfg->limits.header_bytes * HEADER_HARD_LIMIT_FACTOR);
    evhttp_set_max_body_size(http, (ev_ssize_t)cfg->limits.body_bytes);
    evhttp_set_timeout(http, (int)cfg->limits.client_timeout_s);
}

static int listener_bind(struct sg_server *srv, struct listener *l,
                         const struct sg_listener_config *lc, const struct sg_config *cfg,
                         char *errbuf, size_t errlen)
{
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    char spec[300];

    snprintf(spec, sizeof(spec), strchr(lc->address, ':') ? "[%s]:%u" : "%s:%u", lc->address,
             (unsigned)lc->port);
    /* Parsed without the port: libevent refuses port 0, which asks for any free port. */
    if (evutil_parse_sockaddr_port(lc->address, (struct sockaddr *)&ss, &sslen) != 0) {
        snprintf(errbuf, errlen, "listener %s: not a numeric address", spec);
        return SG_ECONFIG;
    }
    if (ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons(lc->port);
    else
        ((struct sockaddr_in *)&ss)->sin_port = htons(lc->port);
    l->srv = srv;
    l->address = sg_strdup(lc->address);
    l->configured_port = lc->port;
    if (lc->tls_cert != NULL) {
        l->ssl_ctx = tls_context_new(lc, (size_t)(l - srv->listeners), errbuf, errlen);
        if (l->ssl_ctx == NULL)
            return SG_ECONFIG;
    }
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE;
    if (cfg->workers > 1)
        flags |= LEV_OPT_REUSEABLE_PORT;
    int inherited = sg_service_inherited_fd(lc->address, lc->port);
    if (inherited >= 0)
        l->lev = evconnlistener_new(srv->base, NULL, NULL, flags, 0, inherited);
    else
        l->lev = evconnlistener_new_bind(srv->base, NULL, NULL, flags, LISTEN_BACKLOG,
                                         (struct sockaddr *)&ss, sslen);
    if (l->lev == NULL) {
        snprintf(errbuf, errlen, "listener %s: cannot bind: %s", spec,
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        return SG_EIO;
    }
    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    getsockname(evconnlistener_get_fd(l->lev), (struct sockaddr *)&bound, &blen);
    l->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);

    l->http = evhttp_new(srv->base);
    evhttp_set_allowed_methods(l->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    /* No EVHTTP_SERVER_LINGERING_CLOSE: libevent's lingering reads the whole
     * declared body before answering, so an absurd Content-Length would be
     * answered only by a timeout. Over-limit bodies get 413 at once. */
    apply_limits(l->http, cfg);
    evhttp_set_bevcb(l->http, on_new_connection, l);
    evhttp_set_gencb(l->http, on_request, l);
    l->bound = evhttp_bind_listener(l->http, l->lev);
    if (l->bound == NULL) {
        snprintf(errbuf, errlen, "listener %s: evhttp_bind_listener failed", spec);
        return SG_EIO;
    }
    sg_log_fields(SG_LOG_INFO, "listening",
                  (struct sg_log_field[]){SG_LOG_STR("address", l->address),
                                          SG_LOG_INT("port", l->port),
                                          SG_LOG_BOOL("tls", l->ssl_ctx != NULL)},
                  3);
    return 0;
}

int sg_server_check(const struct sg_config *cfg, char *errbuf, size_t errlen)
{
    for (size_t i = 0; i < cfg->listener_count; i++) {
        if (cfg->listeners[i].tls_cert == NULL)
            continue;
        SSL_CTX *ctx = tls_context_new(&cfg->listeners[i], i, errbuf, errlen);
        if (ctx == NULL)
            return SG_ECONFIG;
        SSL_CTX_free(ctx);
    }
    return 0;
}

/* The limits of cfg, for new connections and requests. */
static void apply_settings(struct sg_server *srv, const struct sg_config *cfg)
{
    srv->connection_limit = cfg->limits.connections;
    srv->client_timeout_us = (int64_t)cfg->limits.client_timeout_s * 1000000;
    srv->min_body_rate = cfg->limits.min_body_rate;
    srv->input_max = input_max(cfg);
    srv->held_max = cfg->limits.body_memory_bytes;
    if (srv->held > srv->held_max)
        held_shed(srv);
    srv->per_address_max = cfg->limits.connections_per_address;
    free(srv->trusted);
    srv->trusted = sg_calloc(cfg->trusted_proxy_count + 1, sizeof(*srv->trusted));
    if (cfg->trusted_proxy_count > 0)
        memcpy(srv->trusted, cfg->trusted_proxies,
               cfg->trusted_proxy_count * sizeof(*srv->trusted));
    srv->trusted_count = cfg->trusted_proxy_count;
    for (size_t i = 0; i < srv->listener_count; i++) {
        if (srv->listeners[i].http != NULL)
            apply_limits(srv->listeners[i].http, cfg);
    }
    set_accepting(srv, srv->connection_count < srv->connection_limit);
}

int sg_server_start(struct event_base *base, const struct sg_config *cfg, sg_server_handler handler,
                    void *arg, struct sg_server **out, char *errbuf, size_t errlen)
{
    struct sg_server *srv = sg_calloc(1, sizeof(*srv));
    srv->base = base;
    srv->handler = handler;
    srv->handler_arg = arg;
    srv->per_address = sg_addrcount_new();
    srv->listeners = sg_calloc(cfg->listener_count, sizeof(*srv->listeners));
    srv->listener_count = cfg->listener_count;
    apply_settings(srv, cfg);

    for (size_t i = 0; i < cfg->listener_count; i++) {
        int err = listener_bind(srv, &srv->listeners[i], &cfg->listeners[i], cfg, errbuf, errlen);
        if (err != 0) {
            sg_server_free(srv);
            return err;
        }
    }
    static const struct timeval second = {1, 0};
    srv->sweep = event_new(base, -1, EV_PERSIST, on_sweep, srv);
    event_add(srv->sweep, &second);
    srv->reclaim_timer = evtimer_new(base, on_reclaim_timer, srv);
    *out = srv;
    return 0;
}

/*
 * Reads the TLS certificate and key of every TLS listener of cfg again. A
 * running listener bound from the same address, port and TLS takes its new
 * context: connections accepted from now on get the new certificate, open ones
 * keep theirs (an SSL holds a reference to its context). Any other change of
 * the listeners waits for the next start, and a warning says so. Returns 0, or
 * SG_ECONFIG with a reason in errbuf and nothing changed.
 */
static int reload_tls(struct sg_server *srv, const struct sg_config *cfg, char *errbuf,
                      size_t errlen)
{
    SSL_CTX **contexts = sg_calloc(cfg->listener_count, sizeof(*contexts));
    int err = 0;
    for (size_t i = 0; i < cfg->listener_count && err == 0; i++) {
        if (cfg->listeners[i].tls_cert == NULL)
            continue;
        contexts[i] = tls_context_new(&cfg->listeners[i], i, errbuf, errlen);
        if (contexts[i] == NULL)
            err = SG_ECONFIG;
    }
    if (err != 0)
        goto end;
    bool changed = cfg->listener_count != srv->listener_count;
    for (size_t i = 0; i < srv->listener_count; i++) {
        struct listener *l = &srv->listeners[i];
        const struct sg_listener_config *lc = i < cfg->listener_count ? &cfg->listeners[i] : NULL;
        if (lc == NULL || strcmp(lc->address, l->address) != 0 || lc->port != l->configured_port ||
            (lc->tls_cert != NULL) != (l->ssl_ctx != NULL)) {
            changed = true;
            continue;
        }
        if (contexts[i] != NULL) {
            SSL_CTX_free(l->ssl_ctx);
            l->ssl_ctx = contexts[i];
            contexts[i] = NULL;
        }
    }
    if (changed)
        sg_log(SG_LOG_WARN, "reload",
               "listeners: a new address, port or TLS setting takes effect at the next start");
end:
    for (size_t i = 0; i < cfg->listener_count; i++)
        SSL_CTX_free(contexts[i]);
    free(contexts);
    return err;
}

int sg_server_apply(struct sg_server *srv, const struct sg_config *cfg, char *errbuf, size_t errlen)
{
    int err = reload_tls(srv, cfg, errbuf, errlen);
    if (err == 0)
        apply_settings(srv, cfg);
    return err;
}

void sg_server_stop_accepting(struct sg_server *srv)
{
    for (size_t i = 0; i < srv->listener_count; i++) {
        struct listener *l = &srv->listeners[i];
        if (l->bound != NULL) {
            evhttp_del_accept_socket(l->http, l->bound); /* closes the listening socket */
            l->bound = NULL;
            l->lev = NULL;
        }
    }
    srv->stopped = true;
}

void sg_server_free(struct sg_server *srv)
{
    if (srv == NULL)
        return;
    srv->freeing = true;
    if (srv->sweep != NULL)
        event_free(srv->sweep);
    if (srv->reclaim_timer != NULL)
        event_free(srv->reclaim_timer);
    for (size_t i = 0; i < srv->listener_count; i++) {
        struct listener *l = &srv->listeners[i];
        if (l->http != NULL)
            evhttp_free(l->http); /* frees its connections and the bound listener */
        else if (l->lev != NULL)
            evconnlistener_free(l->lev);
        SSL_CTX_free(l->ssl_ctx);
        free(l->address);
    }
    /* Every connection is closed now; drop the references still held. */
    struct sg_conn *lists[2] = {srv->pending, srv->active};
    for (size_t i = 0; i < 2; i++) {
        while (lists[i] != NULL) {
            struct sg_conn *next = lists[i]->next;
            evbuffer_remove_cb_entry(bufferevent_get_input(lists[i]->bev), lists[i]->input_cb);
            bufferevent_decref(lists[i]->bev);
            if (lists[i]->release != NULL)
                event_free(lists[i]->release);
            free(lists[i]);
            lists[i] = next;
        }
    }
    free(srv->by_fd);
    free(srv->listeners);
    free(srv->trusted);
    sg_addrcount_free(srv->per_address);
    free(srv);
}

void sg_conn_on_close(struct sg_conn *conn, sg_conn_close_fn fn, void *arg)
{
    conn->on_close = fn;
    conn->on_close_arg = arg;
}

const char *sg_conn_wire_error(const struct sg_conn *conn)
{
    return sg_wire_verdict(&conn->wire, conn->requests);
}

bool sg_conn_is_tls(const struct sg_conn *conn)
{
    return conn->listener->ssl_ctx != NULL;
}

void sg_conn_flush(struct sg_conn *conn)
{
    /* A tunnel's connection has the tunnel's callbacks, which must not run from here. */
    if (conn->listener->ssl_ctx != NULL || conn->tunnel)
        return;
    struct evbuffer *out = bufferevent_get_output(conn->bev);
    if (evbuffer_write(out, bufferevent_getfd(conn->bev)) <= 0 || evbuffer_get_length(out) > 0)
        return; /* libevent writes the rest once the socket takes it */
    /* What libevent's write callback would have said on the next loop iteration. */
    bufferevent_trigger(conn->bev, EV_WRITE, 0);
}

void sg_conn_set_tunnel(struct sg_conn *conn)
{
    conn->tunnel = true;
    conn->reading = false;
    held_release(conn->listener->srv, conn);
}

bool sg_server_expecting(const struct sg_server *srv, int64_t now_us)
{
    for (const struct sg_conn *c = srv->pending; c != NULL; c = c->next) {
        if (!c->closing &&
            (c->reading_bytes > 0 || now_us - c->accepted_us < FIRST_REQUEST_GRACE_US))
            return true;
    }
    for (const struct sg_conn *c = srv->active; c != NULL; c = c->next) {
        if (!c->closing && c->reading && c->reading_bytes > 0)
            return true;
    }
    return false;
}

bool sg_server_writing(const struct sg_server *srv)
{
    for (const struct sg_conn *c = srv->active; c != NULL; c = c->next) {
        if (!c->closing && evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
            return true;
    }
    return false;
}
