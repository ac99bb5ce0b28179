#include "ssogate/httpc.h"

#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/log.h"
#include "ssogate/upstream.h"

#include <sys/queue.h>

#include <assert.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HTTPC_MAGIC 0x48545043u

struct sg_httpc_request {
    uint32_t magic;
    struct sg_httpc *client;
    struct evhttp_request *req; /* NULL once libevent is done with it */
    struct sg_upstream_slot *slot;
    struct event *deadline;
    struct event *retry; /* pending: the second attempt, from the loop */
    sg_httpc_cb cb;
    void *arg;
    enum evhttp_request_error error;
    bool failed;
    bool too_big;
    bool retried;
    bool answered;         /* the head of an answer came */
    struct evbuffer *body; /* the answer so far, at most the client's max_response_bytes */
    /* What each attempt sends. */
    enum evhttp_cmd_type cmd;
    char *target;
    struct evkeyvalq headers;
    char *form; /* NULL: no body */
    struct sg_httpc_request *prev, *next;
};

struct sg_httpc {
    struct event_base *base;
    struct sg_upstream *pool; /* a reference */
    bool shared_pool; /* the pool carries other traffic: its connections keep their limits */
    char *host_header;
    size_t max_response_bytes;
    struct timeval timeout;
    struct sg_httpc_request *requests;
};

int sg_httpc_new(struct event_base *base, struct evdns_base *dns, const struct sg_url *url,
                 const struct sg_httpc_options *opts, struct sg_httpc **out, char *errbuf,
                 size_t errlen)
{
    char *ca_file = opts->ca_file ? sg_strdup(opts->ca_file) : NULL;
    struct sg_upstream_config pool_cfg = {
        .url = *url,
        .ca_file = ca_file,
        .connect_timeout_ms = opts->timeout_ms,
        .response_timeout_ms = opts->timeout_ms,
        .pool_size = opts->pool_size ? opts->pool_size : 4,
    };
    struct sg_upstream *pool;
    int err = sg_upstream_new(base, dns, &pool_cfg, &pool, errbuf, errlen);
    free(ca_file);
    if (err != 0)
        return err;

    bool default_port = url->port == (url->https ? 443 : 80);
    bool ipv6 = strchr(url->host, ':') != NULL;
    char *host_header =
        default_port ? sg_asprintf(ipv6 ? "[%s]" : "%s", url->host)
                     : sg_asprintf(ipv6 ? "[%s]:%u" : "%s:%u", url->host, (unsigned)url->port);
    *out = sg_httpc_new_on_pool(base, pool, host_header, opts);
    (*out)->shared_pool = false;
    sg_upstream_unref(pool); /* the client holds its own reference */
    free(host_header);
    return 0;
}

struct sg_httpc *sg_httpc_new_on_pool(struct event_base *base, struct sg_upstream *pool,
                                      const char *host_header, const struct sg_httpc_options *opts)
{
    struct sg_httpc *client = sg_calloc(1, sizeof(*client));
    client->base = base;
    client->pool = sg_upstream_ref(pool);
    client->shared_pool = true;
    client->host_header = sg_strdup(host_header);
    client->max_response_bytes = opts->max_response_bytes;
    client->timeout.tv_sec = opts->timeout_ms / 1000;
    client->timeout.tv_usec = (opts->timeout_ms % 1000) * 1000;
    return client;
}

static void request_unlink(struct sg_httpc_request *r)
{
    struct sg_httpc *client = r->client;
    if (r->prev)
        r->prev->next = r->next;
    else
        client->requests = r->next;
    if (r->next)
        r->next->prev = r->prev;
}

/* Ends a request: releases its slot and timer, runs the callback (unless cancelled), then frees
 * the body it lent. */
static void request_finish(struct sg_httpc_request *r, const char *err, int status,
                           const char *body, size_t len)
{
    assert(r->magic == HTTPC_MAGIC);
    request_unlink(r);
    event_free(r->deadline);
    if (r->retry != NULL)
        event_free(r->retry);
    if (r->slot != NULL)
        sg_upstream_release(r->slot);
    evhttp_clear_headers(&r->headers);
    free(r->target);
    free(r->form);
    r->magic = 0;
    sg_httpc_cb cb = r->cb;
    void *arg = r->arg;
    struct evbuffer *kept = r->body; /* body points into it: freed after the callback */
    free(r);
    if (cb != NULL)
        cb(err, status, body, len, arg);
    evbuffer_free(kept);
}

static void on_error(enum evhttp_request_error error, void *arg)
{
    struct sg_httpc_request *r = arg;
    r->failed = true;
    r->error = error;
}

static void on_retry(evutil_socket_t fd, short what, void *arg);

/*
 * A kept-alive connection the server closes as a request goes out (its idle
 * timeout: 5 s in Node.js) ends that request before the head of an answer.
 * Such a request is sent once more, on a new connection: the server did not
 * answer it, and a token request it did take is refused the second time (a
 * code is single-use), never doubled. From the loop, not from inside
 * libevent's callback on the connection that closed.
 */
static bool retry_once(struct sg_httpc_request *r)
{
    if (r->retried || r->answered || !r->failed || r->error != EVREQ_HTTP_EOF)
        return false;
    r->retried = true;
    sg_upstream_release(r->slot);
    r->slot = NULL;
    sg_log(SG_LOG_INFO, "http_client",
           "the connection closed before an answer to %s: sent again on a new connection",
           r->target);
    static const struct timeval now = {0, 0};
    r->retry = evtimer_new(r->client->base, on_retry, r);
    evtimer_add(r->retry, &now);
    return true;
}

static void on_done(struct evhttp_request *req, void *arg)
{
    struct sg_httpc_request *r = arg;
    r->req = NULL;
    if (r->too_big) {
        request_finish(r, "too_big", 0, NULL, 0);
        return;
    }
    if (retry_once(r))
        return;
    if (r->failed || req == NULL || evhttp_request_get_response_code(req) == 0) {
        const char *why = !r->failed                             ? "connect"
                          : r->error == EVREQ_HTTP_TIMEOUT       ? "timeout"
                          : r->error == EVREQ_HTTP_DATA_TOO_LONG ? "too_big"
                                                                 : "broken";
        request_finish(r, why, 0, NULL, 0);
        return;
    }
    /* What the last chunk callback left (libevent drains after each one). */
    evbuffer_add_buffer(r->body, evhttp_request_get_input_buffer(req));
    size_t len = evbuffer_get_length(r->body);
    if (len > r->client->max_response_bytes) {
        request_finish(r, "too_big", 0, NULL, 0);
        return;
    }
    evbuffer_add(r->body, "", 1);
    const char *body = (const char *)evbuffer_pullup(r->body, -1);
    request_finish(r, NULL, evhttp_request_get_response_code(req), body, len);
}

static int on_head(struct evhttp_request *req, void *arg)
{
    struct sg_httpc_request *r = arg;
    r->answered = true;
    return 0;
}

/* Keeps at most max_response_bytes of the answer; past that, the rest is
 * read and dropped (a shared connection stays usable) and the request ends
 * with "too_big". */
static void on_chunk(struct evhttp_request *req, void *arg)
{
    struct sg_httpc_request *r = arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    if (r->too_big ||
        evbuffer_get_length(r->body) + evbuffer_get_length(in) > r->client->max_response_bytes) {
        r->too_big = true;
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    evbuffer_add_buffer(r->body, in);
}

static void cancel_in_libevent(struct sg_httpc_request *r)
{
    if (r->req != NULL) {
        struct evhttp_request *req = r->req;
        r->req = NULL;
        r->cb = NULL; /* the error callback of a cancel must not reach the caller */
        evhttp_cancel_request(req);
    }
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct sg_httpc_request *r = arg;
    sg_httpc_cb cb = r->cb;
    void *cb_arg = r->arg;
    cancel_in_libevent(r);
    r->cb = cb;
    r->arg = cb_arg;
    request_finish(r, "timeout", 0, NULL, 0);
}

/* Sends r (again): a new libevent request on a connection of the pool. */
static void send_attempt(struct sg_httpc_request *r)
{
    struct sg_httpc *client = r->client;
    r->failed = false;
    r->req = evhttp_request_new(on_done, r);
    evhttp_request_set_error_cb(r->req, on_error);
    evhttp_request_set_chunked_cb(r->req, on_chunk);
    evhttp_request_set_header_cb(r->req, on_head);
    struct evkeyvalq *headers = evhttp_request_get_output_headers(r->req);
    const struct evkeyval *h;
    TAILQ_FOREACH(h, &r->headers, next)
    evhttp_add_header(headers, h->key, h->value);
    if (r->form != NULL)
        evbuffer_add(evhttp_request_get_output_buffer(r->req), r->form, strlen(r->form));

    struct evhttp_connection *conn = sg_upstream_acquire(client->pool, &r->slot);
    if (!client->shared_pool)
        evhttp_connection_set_max_body_size(conn, (ev_ssize_t)client->max_response_bytes);
    if (evhttp_make_request(conn, r->req, r->cmd, r->target) != 0) {
        r->req = NULL; /* libevent freed it */
        /* Report asynchronously: callers never see their callback run
         * before the start function returned. */
        r->failed = true;
        r->error = EVREQ_HTTP_EOF;
        event_del(r->deadline);
        static const struct timeval now = {0, 0};
        evtimer_add(r->deadline, &now);
        return;
    }
    /* evhttp queues the head and the body as two pieces, which would go out
     * as two TLS records and two writes; with Nagle's algorithm the second
     * waited for the server's delayed ACK, about 40 ms more for every token
     * exchange. One piece, one record, one write, sent at once. The socket
     * exists once the request is made (connecting, or kept alive). */
    struct bufferevent *bev = evhttp_connection_get_bufferevent(conn);
    evbuffer_pullup(bufferevent_get_output(bev), -1);
    evutil_socket_t fd = bufferevent_getfd(bev);
    static const int one = 1;
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct sg_httpc_request *r = arg;
    event_free(r->retry);
    r->retry = NULL;
    send_attempt(r);
}

static struct sg_httpc_request *request_start(struct sg_httpc *client, enum evhttp_cmd_type cmd,
                                              const char *target, const struct evkeyvalq *extra,
                                              const char *body, const char *authorization,
                                              sg_httpc_cb cb, void *arg)
{
    struct sg_httpc_request *r = sg_calloc(1, sizeof(*r));
    r->magic = HTTPC_MAGIC;
    r->client = client;
    r->cb = cb;
    r->arg = arg;
    r->next = client->requests;
    if (client->requests)
        client->requests->prev = r;
    client->requests = r;

    r->body = evbuffer_new();
    r->cmd = cmd;
    r->target = sg_strdup(target);
    r->form = body != NULL ? sg_strdup(body) : NULL;
    TAILQ_INIT(&r->headers);
    evhttp_add_header(&r->headers, "Host", client->host_header);
    evhttp_add_header(&r->headers, "Accept", "application/json");
    evhttp_add_header(&r->headers, "User-Agent", "ssogate");
    if (authorization != NULL)
        evhttp_add_header(&r->headers, "Authorization", authorization);
    const struct evkeyval *h;
    if (extra != NULL) {
        TAILQ_FOREACH(h, extra, next)
        evhttp_add_header(&r->headers, h->key, h->value);
    }
    if (body != NULL)
        evhttp_add_header(&r->headers, "Content-Type", "application/x-www-form-urlencoded");

    r->deadline = evtimer_new(client->base, on_deadline, r);
    evtimer_add(r->deadline, &client->timeout);
    send_attempt(r);
    return r;
}

struct sg_httpc_request *sg_httpc_get(struct sg_httpc *client, const char *target, sg_httpc_cb cb,
                                      void *arg)
{
    return request_start(client, EVHTTP_REQ_GET, target, NULL, NULL, NULL, cb, arg);
}

struct sg_httpc_request *sg_httpc_get_with(struct sg_httpc *client, const char *target,
                                           const struct evkeyvalq *headers, sg_httpc_cb cb,
                                           void *arg)
{
    return request_start(client, EVHTTP_REQ_GET, target, headers, NULL, NULL, cb, arg);
}

struct sg_httpc_request *sg_httpc_post_form(struct sg_httpc *client, const char *target,
                                            const char *body, const char *authorization,
                                            sg_httpc_cb cb, void *arg)
{
    return request_start(client, EVHTTP_REQ_POST, target, NULL, body, authorization, cb, arg);
}

void sg_httpc_cancel(struct sg_httpc_request *r)
{
    cancel_in_libevent(r);
    r->cb = NULL;
    request_finish(r, "cancelled", 0, NULL, 0);
}

void sg_httpc_free(struct sg_httpc *client)
{
    if (client == NULL)
        return;
    while (client->requests != NULL)
        sg_httpc_cancel(client->requests);
    sg_upstream_unref(client->pool);
    free(client->host_header);
    free(client);
}
