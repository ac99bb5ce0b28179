/*
 * The HTTP client against a raw server on loopback that misbehaves the way
 * kept-alive servers do: it closes an idle connection just as the next
 * request arrives (sent once more, on a new connection), closes every
 * connection without answering (sent twice, then "broken"), or closes in the
 * middle of an answer (never sent again).
 */
#include "ssogate/config.h"
#include "ssogate/httpc.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <cmocka.h>

enum mode {
    CLOSE_SECOND_ON_FIRST, /* answers, but drops the second request of the first connection */
    CLOSE_ALWAYS,          /* drops every request unanswered */
    CLOSE_MID_ANSWER,      /* sends a head and part of the body, then closes */
};

struct server {
    struct event_base *base;
    struct evconnlistener *listener;
    enum mode mode;
    unsigned connections;
    unsigned open; /* connections not closed yet */
    unsigned requests;
};

struct conn {
    struct server *srv;
    unsigned number; /* 1 for the first connection */
    unsigned requests;
};

struct result {
    bool done;
    char err[32];
    int status;
    char body[64];
};

static void conn_close(struct bufferevent *bev, struct conn *c)
{
    c->srv->open--;
    bufferevent_free(bev);
    free(c);
}

/* One whole request in the input (head, and a body of Content-Length bytes): drained, true. */
static bool take_request(struct evbuffer *in)
{
    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (end.pos < 0)
        return false;
    size_t head = (size_t)end.pos + 4;
    char *text = (char *)evbuffer_pullup(in, (ev_ssize_t)head);
    size_t body = 0;
    for (char *p = text; p < text + head; p = strchr(p, '\n') + 1) {
        if (strncasecmp(p, "Content-Length:", 15) == 0)
            body = strtoul(p + 15, NULL, 10);
    }
    if (evbuffer_get_length(in) < head + body)
        return false;
    evbuffer_drain(in, head + body);
    return true;
}

static void on_server_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct server *srv = c->srv;
    while (take_request(bufferevent_get_input(bev))) {
        c->requests++;
        srv->requests++;
        bool drop = srv->mode == CLOSE_ALWAYS ||
                    (srv->mode == CLOSE_SECOND_ON_FIRST && c->number == 1 && c->requests == 2);
        if (drop) {
            conn_close(bev, c);
            return;
        }
        if (srv->mode == CLOSE_MID_ANSWER) {
            static const char part[] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab";
            assert_int_equal(send(bufferevent_getfd(bev), part, sizeof(part) - 1, 0),
                             sizeof(part) - 1);
            conn_close(bev, c);
            return;
        }
        char answer[128];
        int len = snprintf(answer, sizeof(answer),
                           "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nconn%04u", c->number);
        bufferevent_write(bev, answer, (size_t)len);
    }
}

static void on_server_event(struct bufferevent *bev, short what, void *arg)
{
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        conn_close(bev, arg);
}

static void on_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    struct server *srv = arg;
    struct conn *c = calloc(1, sizeof(*c));
    c->srv = srv;
    c->number = ++srv->connections;
    srv->open++;
    struct bufferevent *bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(bev, on_server_read, NULL, on_server_event, c);
    bufferevent_enable(bev, EV_READ);
}

static uint16_t server_start(struct server *srv, struct event_base *base, enum mode mode)
{
    memset(srv, 0, sizeof(*srv));
    srv->base = base;
    srv->mode = mode;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    srv->listener =
        evconnlistener_new_bind(base, on_accept, srv, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
                                (struct sockaddr *)&sin, sizeof(sin));
    assert_non_null(srv->listener);
    struct sockaddr_in bound;
    socklen_t len = sizeof(bound);
    getsockname(evconnlistener_get_fd(srv->listener), (struct sockaddr *)&bound, &len);
    return ntohs(bound.sin_port);
}

static void on_answer(const char *err, int status, const char *body, size_t len, void *arg)
{
    struct result *res = arg;
    res->done = true;
    snprintf(res->err, sizeof(res->err), "%s", err ? err : "");
    res->status = status;
    snprintf(res->body, sizeof(res->body), "%.*s", (int)len, body ? body : "");
}

/* Posts a form and runs the loop (at most 5 s) until the answer. */
static void post(struct event_base *base, struct sg_httpc *client, struct result *res)
{
    memset(res, 0, sizeof(*res));
    sg_httpc_post_form(client, "/token", "code=abc", NULL, on_answer, res);
    for (int i = 0; i < 5000 && !res->done; i++)
        event_base_loop(base, EVLOOP_ONCE);
    assert_true(res->done);
}

static struct sg_httpc *client_new(struct event_base *base, uint16_t port)
{
    struct sg_url url = {.host = "127.0.0.1", .port = port};
    struct sg_httpc_options opts = {.timeout_ms = 5000, .max_response_bytes = 4096, .pool_size = 1};
    struct sg_httpc *client = NULL;
    char errbuf[256];
    assert_int_equal(sg_httpc_new(base, NULL, &url, &opts, &client, errbuf, sizeof(errbuf)), 0);
    return client;
}

/* A loop, a server in mode and a client of a pool of one connection to it. */
struct fixture {
    struct event_base *base;
    struct server srv;
    struct sg_httpc *client;
};

static void fixture_start(struct fixture *f, enum mode mode)
{
    f->base = event_base_new();
    f->client = client_new(f->base, server_start(&f->srv, f->base, mode));
}

/* Frees the client, then runs the loop (bounded) until its pool is freed (on the loop's next
 * turn) and the server has seen every connection close. */
static void fixture_end(struct fixture *f)
{
    sg_httpc_free(f->client);
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    static const struct timeval turn = {0, 10000};
    for (int i = 0; i < 500 && f->srv.open > 0; i++) { /* 5 s at most */
        event_base_loopexit(f->base, &turn);
        event_base_dispatch(f->base);
    }
    assert_int_equal(f->srv.open, 0);
    evconnlistener_free(f->srv.listener);
    event_base_free(f->base);
}

static void test_closed_when_reused(void **state)
{
    struct fixture f;
    fixture_start(&f, CLOSE_SECOND_ON_FIRST);
    struct result res;
    post(f.base, f.client, &res);
    assert_string_equal(res.err, "");
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body, "conn0001");
    post(f.base, f.client, &res);
    assert_string_equal(res.err, "");
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body, "conn0002"); /* on a new connection */
    assert_int_equal(f.srv.requests, 3);
    assert_int_equal(f.srv.connections, 2);
    fixture_end(&f);
}

static void test_closed_twice(void **state)
{
    struct fixture f;
    fixture_start(&f, CLOSE_ALWAYS);
    struct result res;
    post(f.base, f.client, &res);
    assert_string_equal(res.err, "broken");
    assert_int_equal(res.status, 0);
    assert_int_equal(f.srv.requests, 2); /* sent once more, never a third time */
    fixture_end(&f);
}

static void test_closed_mid_answer(void **state)
{
    struct fixture f;
    fixture_start(&f, CLOSE_MID_ANSWER);
    struct result res;
    post(f.base, f.client, &res);
    assert_string_equal(res.err, "broken");
    assert_int_equal(f.srv.requests, 1); /* answered in part: never sent again */
    fixture_end(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_closed_when_reused),
        cmocka_unit_test(test_closed_twice),
        cmocka_unit_test(test_closed_mid_answer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
