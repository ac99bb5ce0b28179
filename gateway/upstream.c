#include "ssogate/upstream.h"

#include "ssogate/common.h"
#include "ssogate/log.h"

#include <arpa/inet.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Response headers from the upstream are bounded; bodies stream. */
#define UPSTREAM_MAX_HEADER_BYTES (64 * 1024)

struct sg_upstream_slot {
    struct sg_upstream *pool;
    struct evhttp_connection *conn;
    unsigned active;
    bool dead; /* an https connection that closed: libevent cannot reconnect it, recreate */
};

struct sg_upstream {
    int refcount;
    struct event_base *base;
    struct evdns_base *dns;
    char *host;
    uint16_t port;
    bool host_is_ip;
    struct timeval timeout;
    struct timeval connect_timeout; /* raw connections (sg_upstream_connect) */
    SSL_CTX *ssl_ctx;               /* NULL for plain http */
    struct sg_upstream_slot *slots;
    size_t slot_count;
    size_t next; /* where the search for an idle slot starts: spreads the load */
};

static bool is_ip_literal(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

int sg_upstream_new(struct event_base *base, struct evdns_base *dns,
                    const struct sg_upstream_config *cfg, struct sg_upstream **out, char *errbuf,
                    size_t errlen)
{
    struct sg_upstream *up = sg_calloc(1, sizeof(*up));
    up->refcount = 1;
    up->base = base;
    up->dns = dns;
    up->host = sg_strdup(cfg->url.host);
    up->port = cfg->url.port;
    up->host_is_ip = is_ip_literal(up->host);
    up->timeout.tv_sec = cfg->response_timeout_ms / 1000;
    up->timeout.tv_usec = (cfg->response_timeout_ms % 1000) * 1000;
    up->connect_timeout.tv_sec = cfg->connect_timeout_ms / 1000;
    up->connect_timeout.tv_usec = (cfg->connect_timeout_ms % 1000) * 1000;
    up->slot_count = cfg->pool_size ? cfg->pool_size : 1;
    up->slots = sg_calloc(up->slot_count, sizeof(*up->slots));
    for (size_t i = 0; i < up->slot_count; i++)
        up->slots[i].pool = up;

    if (cfg->url.https) {
        up->ssl_ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_min_proto_version(up->ssl_ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(up->ssl_ctx, SSL_VERIFY_PEER, NULL);
        int ok = cfg->ca_file ? SSL_CTX_load_verify_locations(up->ssl_ctx, cfg->ca_file, NULL)
                              : SSL_CTX_set_default_verify_paths(up->ssl_ctx);
        if (ok != 1) {
            snprintf(errbuf, errlen, "upstream.ca_file: cannot load %s: %s",
                     cfg->ca_file ? cfg->ca_file : "the system CA store",
                     ERR_reason_error_string(ERR_get_error()));
            ERR_clear_error();
            sg_upstream_unref(up);
            return SG_ECONFIG;
        }
    }
    *out = up;
    return 0;
}

struct sg_upstream *sg_upstream_ref(struct sg_upstream *up)
{
    up->refcount++;
    return up;
}

static void slot_close(struct sg_upstream_slot *slot)
{
    if (slot->conn == NULL)
        return;
    evhttp_connection_set_closecb(slot->conn, NULL, NULL);
    evhttp_connection_free(slot->conn);
    slot->conn = NULL;
    slot->dead = false;
}

/* Runs from the event loop, never from inside a connection's own callback. */
static void pool_free_deferred(evutil_socket_t fd, short what, void *arg)
{
    struct sg_upstream *up = arg;
    for (size_t i = 0; i < up->slot_count; i++)
        slot_close(&up->slots[i]);
    SSL_CTX_free(up->ssl_ctx);
    free(up->slots);
    free(up->host);
    free(up);
}

void sg_upstream_unref(struct sg_upstream *up)
{
    if (up == NULL || --up->refcount > 0)
        return;
    /* The last reference is often dropped inside a request callback of one
     * of these connections; freeing it there would pull it out from under
     * libevent, so the pool is freed on the next loop iteration. */
    static const struct timeval now = {0, 0};
    if (event_base_once(up->base, -1, EV_TIMEOUT, pool_free_deferred, up, &now) != 0)
        pool_free_deferred(-1, 0, up);
}

static void on_https_close(struct evhttp_connection *conn, void *arg)
{
    struct sg_upstream_slot *slot = arg;
    slot->dead = true;
}

/* A new TLS session for a connection to up: SNI and the peer's name (or IP) verified. */
static SSL *ssl_new(struct sg_upstream *up)
{
    SSL *ssl = SSL_new(up->ssl_ctx);
    if (ssl == NULL)
        abort();
    if (!up->host_is_ip) {
        SSL_set_tlsext_host_name(ssl, up->host);
        SSL_set1_host(ssl, up->host);
    } else {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), up->host);
    }
    return ssl;
}

static struct evhttp_connection *connection_new(struct sg_upstream *up,
                                                struct sg_upstream_slot *slot)
{
    struct evhttp_connection *conn;

    if (up->ssl_ctx != NULL) {
        SSL *ssl = ssl_new(up);
        struct bufferevent *bev = bufferevent_openssl_socket_new(
            up->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
        conn = evhttp_connection_base_bufferevent_new(up->base, up->dns, bev, up->host, up->port);
        evhttp_connection_set_closecb(conn, on_https_close, slot);
    } else {
        conn = evhttp_connection_base_new(up->base, up->dns, up->host, up->port);
    }
    if (conn == NULL) {
        sg_log(SG_LOG_ERROR, "upstream", "cannot create a connection to %s:%u", up->host,
               (unsigned)up->port);
        abort();
    }
    evhttp_connection_set_timeout_tv(conn, &up->timeout);
    evhttp_connection_set_retries(conn, 0);
    evhttp_connection_set_max_headers_size(conn, UPSTREAM_MAX_HEADER_BYTES);
    return conn;
}

struct evhttp_connection *sg_upstream_acquire(struct sg_upstream *up,
                                              struct sg_upstream_slot **slot_out)
{
    struct sg_upstream_slot *chosen = NULL;
    struct sg_upstream_slot *least = NULL;

    for (size_t n = 0; n < up->slot_count; n++) {
        struct sg_upstream_slot *slot = &up->slots[(up->next + n) % up->slot_count];
        if (slot->active == 0) {
            chosen = slot;
            if (slot->conn != NULL && !slot->dead)
                break;
            continue;
        }
        if (least == NULL || slot->active < least->active)
            least = slot;
    }
    if (chosen == NULL)
        chosen = least != NULL ? least : &up->slots[0];
    up->next = (size_t)(chosen - up->slots + 1) % up->slot_count;

    if (chosen->dead && chosen->active == 0)
        slot_close(chosen);
    if (chosen->conn == NULL)
        chosen->conn = connection_new(up, chosen);
    chosen->active++;
    sg_upstream_ref(up);
    *slot_out = chosen;
    return chosen->conn;
}

void sg_upstream_release(struct sg_upstream_slot *slot)
{
    slot->active--;
    sg_upstream_unref(slot->pool);
}

struct bufferevent *sg_upstream_connect(struct sg_upstream *up, sg_upstream_event_fn eventcb,
                                        void *arg)
{
    /* Deferred callbacks: an immediate failure (a resolver or socket error)
     * is reported from the loop, never from inside this call. */
    int options = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
    struct bufferevent *bev =
        up->ssl_ctx != NULL ? bufferevent_openssl_socket_new(up->base, -1, ssl_new(up),
                                                             BUFFEREVENT_SSL_CONNECTING, options)
                            : bufferevent_socket_new(up->base, -1, options);
    if (bev == NULL)
        abort();
    bufferevent_setcb(bev, NULL, NULL, eventcb, arg);
    bufferevent_set_timeouts(bev, &up->connect_timeout, &up->connect_timeout);
    if (bufferevent_socket_connect_hostname(bev, up->dns, AF_UNSPEC, up->host, up->port) != 0) {
        bufferevent_free(bev);
        return NULL;
    }
    return bev;
}
