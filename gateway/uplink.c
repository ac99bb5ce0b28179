#include "ssogate/uplink.h"

#include "ssogate/common.h"
#include "ssogate/headers.h"
#include "ssogate/log.h"
#include "ssogate/metrics.h"
#include "ssogate/upstream.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <llhttp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>
#include <unistd.h>

/* Bytes asked of a socket at a time. */
#define READ_SIZE 16384

struct sg_uplink {
    int refcount;
    struct event_base *base;
    struct sg_upstream *up; /* makes the connections */
    struct timeval timeout; /* response_timeout_ms */
    bool tls;
    size_t idle_max;
    size_t idle_count;
    struct sg_uplink_conn *idle; /* most recently used first */
};

/* Where a header's name and value lie in the head while it is parsed (offsets into it). */
struct span {
    size_t name;
    size_t name_len;
    size_t value; /* 0 until the value is seen: a value never starts the head */
    size_t value_len;
};

struct sg_uplink_conn {
    struct sg_uplink *pool;             /* a reference of its own while not idle */
    struct sg_uplink_conn *prev, *next; /* in pool->idle */
    bool idle;
    bool open;
    int fd;                  /* plain http once connected, else -1 */
    struct bufferevent *bev; /* while connecting, and for https */
    struct event *rev;       /* plain http: readable, persistent */
    struct event *wev;       /* plain http: writable, only while output is left */
    struct event *timer;     /* response_timeout_ms: the head's deadline, then between reads */
    struct event *kick;      /* a dispatch from the loop (resume, failures) */
    struct evbuffer *in;     /* plain http */
    struct evbuffer *out;    /* the request, kept until the exchange ends (for a retry) */
    size_t sent;             /* bytes of out handed to the socket or the TLS layer */
    struct evbuffer *body;   /* the response's body bytes not yet handed over */

    /* The exchange; cb is NULL when there is none. */
    const struct sg_uplink_callbacks *cb;
    void *arg;
    bool head_request;
    bool retry_ok;    /* idempotent: may be sent again on a fresh connection */
    bool reused;      /* the connection carried an earlier exchange */
    bool received;    /* a byte of the response has arrived */
    bool send_waited; /* the request's sending waited for the socket (a large body) */
    bool paused;
    bool eof;            /* the upstream closed, or the connection broke */
    bool connect_failed; /* no connection could be made */
    bool timed_out;
    bool head_done;
    bool head_whole; /* the parser saw the head's end */
    bool message_done;
    bool bad;         /* the head broke a rule the parser does not check */
    bool keep_alive;  /* the response, read whole, lets the connection carry another */
    bool unread_body; /* a bodiless answer (to a HEAD, a 1xx, 204, 304) announced a body */
    bool dispatching; /* callbacks are running: a cancel only marks */
    bool cancelled;
    enum sg_uplink_result failure; /* why a failed exchange failed, and its detail (static) */
    const char *detail;
    size_t scan_from; /* where the search for the end of the head resumes */
    llhttp_t parser;
    char *head; /* the head being parsed: contiguous, in the input */
    const char *reason;
    size_t reason_at, reason_len;
    struct span *spans; /* from 1: spans[0] is never used */
    struct sg_header *headers;
    size_t count, cap;
};

static void conn_dispatch(struct sg_uplink_conn *c);

static struct evbuffer *conn_input(struct sg_uplink_conn *c)
{
    return c->bev != NULL ? bufferevent_get_input(c->bev) : c->in;
}

/* ---- the pool ---------------------------------------------------------- */

struct sg_uplink *sg_uplink_new(struct event_base *base, struct sg_upstream *up,
                                const struct sg_upstream_config *cfg)
{
    struct sg_uplink *pool = sg_calloc(1, sizeof(*pool));
    pool->refcount = 1;
    pool->base = base;
    pool->up = sg_upstream_ref(up);
    pool->timeout.tv_sec = cfg->response_timeout_ms / 1000;
    pool->timeout.tv_usec = (cfg->response_timeout_ms % 1000) * 1000;
    pool->tls = cfg->url.https;
    pool->idle_max = cfg->pool_size;
    return pool;
}

static void conn_free(struct sg_uplink_conn *c);

static void pool_free_deferred(evutil_socket_t fd, short what, void *arg)
{
    struct sg_uplink *pool = arg;
    while (pool->idle != NULL)
        conn_free(pool->idle);
    sg_upstream_unref(pool->up);
    free(pool);
}

void sg_uplink_unref(struct sg_uplink *pool)
{
    if (pool == NULL || --pool->refcount > 0)
        return;
    /* Often dropped inside a callback of one of its connections: freed from the loop. */
    static const struct timeval now = {0, 0};
    if (event_base_once(pool->base, -1, EV_TIMEOUT, pool_free_deferred, pool, &now) != 0)
        pool_free_deferred(-1, 0, pool);
}

static void idle_remove(struct sg_uplink_conn *c)
{
    struct sg_uplink *pool = c->pool;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        pool->idle = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->idle = false;
    pool->idle_count--;
}

/* Closes c's socket (or its bufferevent) and what reads and writes it. */
static void conn_close(struct sg_uplink_conn *c)
{
    if (c->rev != NULL)
        event_free(c->rev);
    if (c->wev != NULL)
        event_free(c->wev);
    c->rev = c->wev = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    if (c->bev != NULL)
        bufferevent_free(c->bev);
    c->bev = NULL;
    if (c->in != NULL)
        evbuffer_free(c->in);
    c->in = NULL;
    c->open = false;
}

/* Frees c, closing its connection; a connection not idle gives its pool reference back. */
static void conn_free(struct sg_uplink_conn *c)
{
    struct sg_uplink *pool = c->pool;
    bool held = !c->idle;
    if (c->idle)
        idle_remove(c);
    conn_close(c);
    event_free(c->timer);
    event_free(c->kick);
    evbuffer_free(c->out);
    evbuffer_free(c->body);
    free(c->spans);
    free(c->headers);
    free(c);
    if (held)
        sg_uplink_unref(pool);
}

/* The exchange is over: c waits for the next one, or is closed. */
static void conn_release(struct sg_uplink_conn *c, bool reusable)
{
    struct sg_uplink *pool = c->pool;
    /* Kept only while the pool has another owner: a retired pool keeps nothing. */
    if (!reusable || pool->refcount < 2 || pool->idle_count >= pool->idle_max) {
        conn_free(c);
        return;
    }
    c->idle = true;
    c->next = pool->idle;
    if (pool->idle != NULL)
        pool->idle->prev = c;
    pool->idle = c;
    pool->idle_count++;
    pool->refcount--;
}

/* ---- writing ------------------------------------------------------------ */

/* Segments of the request not yet sent, at most max of them; the count. */
static int unsent(struct sg_uplink_conn *c, struct evbuffer_iovec *vec, int max)
{
    struct evbuffer_ptr at;
    if (evbuffer_ptr_set(c->out, &at, c->sent, EVBUFFER_PTR_SET) != 0)
        return 0;
    int n = evbuffer_peek(c->out, -1, &at, vec, max);
    return n < max ? n : max;
}

static void arm_timer(struct sg_uplink_conn *c);

/*
 * Sends what is left of the request; it stays in c->out for a retry. Over
 * plain http the loop watches for writability only while some is left.
 */
static void conn_flush(struct sg_uplink_conn *c)
{
    struct evbuffer_iovec vec[8];
    if (c->bev != NULL) {
        /* The TLS layer takes a copy. */
        int n;
        while ((n = unsent(c, vec, 8)) > 0) {
            for (int i = 0; i < n; i++) {
                bufferevent_write(c->bev, vec[i].iov_base, vec[i].iov_len);
                c->sent += vec[i].iov_len;
            }
        }
        return;
    }
    int n;
    while ((n = unsent(c, vec, 8)) > 0) {
        struct iovec iov[8];
        for (int i = 0; i < n; i++) {
            iov[i].iov_base = vec[i].iov_base;
            iov[i].iov_len = vec[i].iov_len;
        }
        ssize_t w = writev(c->fd, iov, n);
        if (w > 0) {
            c->sent += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            /* The read side reports the broken connection. */
            c->sent = evbuffer_get_length(c->out);
            c->eof = true;
            event_active(c->kick, EV_TIMEOUT, 1);
            break;
        }
        /* A body the upstream takes slowly: response_timeout_ms is the wait
         * between writes until it is sent, then the head's deadline. */
        c->send_waited = true;
        arm_timer(c);
        event_add(c->wev, NULL);
        return;
    }
    if (c->send_waited && !c->received)
        arm_timer(c);
    c->send_waited = false;
    event_del(c->wev);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    conn_flush(arg);
}

/* ---- reading ------------------------------------------------------------ */

/*
 * Starts response_timeout_ms: at the request's sending it is the deadline of
 * the final answer's head, which bytes trickled into the head or 1xx answers
 * do not extend; once the head is read, each body read starts it again
 * (on_received).
 */
static void arm_timer(struct sg_uplink_conn *c)
{
    if (c->cb != NULL && !c->paused)
        event_add(c->timer, &c->pool->timeout);
}

static void on_received(struct sg_uplink_conn *c)
{
    c->received = true;
    if (c->head_done)
        arm_timer(c);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct sg_uplink_conn *c = arg;
    struct evbuffer_iovec vec[2];
    int nvec = evbuffer_reserve_space(c->in, READ_SIZE, vec, 2);
    struct iovec iov[2];
    for (int i = 0; i < nvec; i++) {
        iov[i].iov_base = vec[i].iov_base;
        iov[i].iov_len = vec[i].iov_len;
    }
    ssize_t n = readv(fd, iov, nvec);
    if (n > 0) {
        size_t left = (size_t)n;
        for (int i = 0; i < nvec; i++) {
            vec[i].iov_len = left < vec[i].iov_len ? left : vec[i].iov_len;
            left -= vec[i].iov_len;
        }
        evbuffer_commit_space(c->in, vec, nvec);
        on_received(c);
    } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        c->eof = true;
        event_del(c->rev);
    }
    conn_dispatch(c);
}

static void on_tls_read(struct bufferevent *bev, void *arg)
{
    struct sg_uplink_conn *c = arg;
    on_received(c);
    conn_dispatch(c);
}

static void on_tls_event(struct bufferevent *bev, short what, void *arg)
{
    struct sg_uplink_conn *c = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        c->eof = true;
        bufferevent_disable(bev, EV_READ | EV_WRITE);
    }
    conn_dispatch(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct sg_uplink_conn *c = arg;
    c->timed_out = true;
    conn_dispatch(c);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    conn_dispatch(arg);
}

static void on_connect_event(struct bufferevent *bev, short what, void *arg)
{
    struct sg_uplink_conn *c = arg;
    if (!(what & BEV_EVENT_CONNECTED)) {
        c->connect_failed = true;
        c->timed_out = (what & BEV_EVENT_TIMEOUT) != 0;
        conn_dispatch(c);
        return;
    }
    c->open = true;
    if (c->pool->tls) {
        bufferevent_set_timeouts(bev, NULL, NULL);
        bufferevent_setcb(bev, on_tls_read, NULL, on_tls_event, c);
        bufferevent_enable(bev, c->paused ? EV_WRITE : EV_READ | EV_WRITE);
    } else {
        /* The socket is the connection's own from here: one registration for reading. */
        c->fd = bufferevent_getfd(bev);
        bufferevent_setfd(bev, -1);
        bufferevent_free(bev);
        c->bev = NULL;
        struct event_base *base = c->pool->base;
        c->rev = event_new(base, c->fd, EV_READ | EV_PERSIST, on_readable, c);
        c->wev = event_new(base, c->fd, EV_WRITE | EV_PERSIST, on_writable, c);
        c->in = evbuffer_new();
        if (c->rev == NULL || c->wev == NULL || c->in == NULL)
            abort();
        if (!c->paused)
            event_add(c->rev, NULL);
    }
    arm_timer(c);
    conn_flush(c);
}

/* ---- the response ------------------------------------------------------- */

static int on_status(llhttp_t *parser, const char *at, size_t len)
{
    struct sg_uplink_conn *c = parser->data;
    c->reason_at = (size_t)(at - c->head); /* terminated in head_strings */
    c->reason_len = len;
    return 0;
}

static int on_header_field(llhttp_t *parser, const char *at, size_t len)
{
    struct sg_uplink_conn *c = parser->data;
    if (c->head_whole)
        return 0; /* a trailer of a chunked body: dropped */
    if (c->count + 1 == c->cap) {
        c->cap *= 2;
        c->spans = sg_realloc(c->spans, c->cap * sizeof(*c->spans));
        c->headers = sg_realloc(c->headers, c->cap * sizeof(*c->headers));
    }
    struct span *s = &c->spans[++c->count];
    s->name = (size_t)(at - c->head);
    s->name_len = len;
    s->value = 0;
    return 0;
}

static int on_header_value(llhttp_t *parser, const char *at, size_t len)
{
    struct sg_uplink_conn *c = parser->data;
    if (c->head_whole)
        return 0;
    struct span *s = &c->spans[c->count];
    if (c->count == 0 || s->value != 0) {
        c->bad = true; /* a value in pieces (obs-fold): RFC 9112 5.2 allows a 502 */
        return HPE_USER;
    }
    s->value = (size_t)(at - c->head);
    s->value_len = len;
    return 0;
}

static int on_headers_complete(llhttp_t *parser)
{
    struct sg_uplink_conn *c = parser->data;
    c->head_whole = true;
    /* 1: no body whatever the headers say (llhttp would wait for a 304's Content-Length). */
    unsigned status = parser->status_code;
    if (!(c->head_request || status / 100 == 1 || status == 204 || status == 304))
        return 0;
    /* An upstream that sends the body all the same (a HEAD answered as a GET, a common bug) may
     * send it after this head has been read: on a kept connection those bytes would be read as
     * the answer to the next request, another user's. Such a connection is not kept. */
    c->unread_body = (parser->flags & F_CHUNKED) ||
                     ((parser->flags & F_CONTENT_LENGTH) && parser->content_length > 0);
    return 1;
}

static int on_body(llhttp_t *parser, const char *at, size_t len)
{
    struct sg_uplink_conn *c = parser->data;
    evbuffer_add(c->body, at, len);
    return 0;
}

static int on_message_complete(llhttp_t *parser)
{
    struct sg_uplink_conn *c = parser->data;
    c->message_done = true;
    c->keep_alive = llhttp_should_keep_alive(parser);
    return HPE_PAUSED; /* whatever follows is not part of this response */
}

/* Not const: llhttp_init takes a pointer it only reads through. */
static llhttp_settings_t settings = {
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/*
 * The length of the head at the start of p (through the empty line), or 0
 * while it is not whole; *from is where the next search starts.
 */
static size_t head_length(const char *p, size_t len, size_t *from)
{
    size_t i = *from;
    while (i < len) {
        const char *lf = memchr(p + i, '\n', len - i);
        if (lf == NULL)
            break;
        i = (size_t)(lf - p);
        if (i + 1 < len && p[i + 1] == '\n')
            return i + 2;
        if (i + 2 < len && p[i + 1] == '\r' && p[i + 2] == '\n')
            return i + 3;
        if (i + 2 >= len) {
            *from = i; /* the bytes that decide have not come yet */
            return 0;
        }
        i++;
    }
    *from = len;
    return 0;
}

/* Ends the text at head + at in place, without its trailing white space. */
static const char *terminate(char *head, size_t at, size_t len)
{
    while (len > 0 && (head[at + len - 1] == ' ' || head[at + len - 1] == '\t'))
        len--;
    if (len == 0)
        return "";
    head[at + len] = '\0'; /* a byte of the head after the text: a space, CR, LF or ':' */
    return head + at;
}

/* Makes the parsed head's texts C strings; false when a name is not a token. */
static bool head_strings(struct sg_uplink_conn *c)
{
    c->reason = c->reason_len > 0 ? terminate(c->head, c->reason_at, c->reason_len) : "";
    for (size_t i = 1; i <= c->count; i++) {
        struct span *s = &c->spans[i];
        if (s->name_len == 0)
            return false;
        c->head[s->name + s->name_len] = '\0'; /* the ':' */
        c->headers[i - 1].name = c->head + s->name;
        if (!sg_headers_is_token(c->headers[i - 1].name))
            return false;
        /* An empty value is reported at the start of the next line: not written to. */
        c->headers[i - 1].value =
            s->value_len > 0 ? terminate(c->head, s->value, s->value_len) : "";
    }
    return true;
}

enum step { STEP_MORE, STEP_HEAD, STEP_DONE, STEP_BAD };

/* Records why the exchange fails (detail is static); STEP_BAD. */
static enum step failed(struct sg_uplink_conn *c, enum sg_uplink_result result, const char *detail)
{
    c->failure = result;
    c->detail = detail;
    return STEP_BAD;
}

/*
 * True when the head's transfer coding is one the gateway decodes: none, or
 * a lone chunked, the rule requests are held to (sg_headers_validate). The
 * body of any other ("gzip, chunked") would reach the client still coded,
 * labelled as plain content: RFC 9112 6.1 lets a recipient decode or keep
 * codings, not drop their names.
 */
static bool coding_ok(const struct sg_uplink_conn *c)
{
    /* llhttp saw no Transfer-Encoding (most answers): nothing to look for. */
    if (!(c->parser.flags & F_TRANSFER_ENCODING))
        return true;
    unsigned codings = 0;
    for (size_t i = 0; i < c->count; i++) {
        if (strcasecmp(c->headers[i].name, "Transfer-Encoding") == 0 &&
            (++codings > 1 || strcasecmp(c->headers[i].value, "chunked") != 0))
            return false;
    }
    return true;
}

/* Parses a head from the input; STEP_HEAD leaves it there for on_head. */
static enum step parse_head(struct sg_uplink_conn *c, struct evbuffer *in, size_t *head_parsed)
{
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (len > SG_UPLINK_HEAD_MAX)
            len = SG_UPLINK_HEAD_MAX;
        if (len == 0)
            return STEP_MORE;
        c->head = (char *)evbuffer_pullup(in, (ev_ssize_t)len);
        size_t end = head_length(c->head, len, &c->scan_from);
        if (end == 0 && len == SG_UPLINK_HEAD_MAX)
            return failed(c, SG_UPLINK_INVALID, "head_too_large");
        if (end == 0)
            return STEP_MORE;
        c->scan_from = 0;
        llhttp_init(&c->parser, HTTP_RESPONSE, &settings);
        c->parser.data = c;
        c->reason_len = 0;
        c->count = 0;
        c->head_whole = c->message_done = false;
        /* The head alone: its end either ends the response (no body) or leaves
         * the parser waiting for the body, which parse_body reads. */
        llhttp_errno_t err = llhttp_execute(&c->parser, c->head, end);
        if (c->bad)
            return failed(c, SG_UPLINK_INVALID, "obs_fold");
        if (!(err == HPE_OK || (err == HPE_PAUSED && c->message_done)))
            return failed(c, SG_UPLINK_INVALID, llhttp_errno_name(err));
        if (!c->head_whole)
            return failed(c, SG_UPLINK_INVALID, "malformed_head");
        int status = (int)c->parser.status_code;
        if (status < 100 || status > 599)
            return failed(c, SG_UPLINK_INVALID, "bad_status"); /* llhttp takes "20" or "999" */
        if (status / 100 == 1 && status != 101) {
            /* 100 Continue, 103 Early Hints: the answer follows, and is still awaited (a 1xx
             * answer ends a message of its own for llhttp, not the exchange: conn_dispatch). */
            evbuffer_drain(in, end);
            c->message_done = false;
            continue;
        }
        /* A protocol switch is a tunnel's (tunnel.h). */
        if (status == 101)
            return failed(c, SG_UPLINK_INVALID, "unexpected_101");
        if (!head_strings(c))
            return failed(c, SG_UPLINK_INVALID, "bad_header_name");
        if (!coding_ok(c))
            return failed(c, SG_UPLINK_INVALID, "transfer_coding");
        *head_parsed = end;
        return STEP_HEAD;
    }
}

/* Parses body bytes from the input into c->body until it is empty or the response ends. */
static enum step parse_body(struct sg_uplink_conn *c, struct evbuffer *in)
{
    while (!c->message_done && !c->paused && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec vec;
        if (evbuffer_peek(in, -1, NULL, &vec, 1) < 1)
            break;
        llhttp_errno_t err = llhttp_execute(&c->parser, vec.iov_base, vec.iov_len);
        if (err != HPE_OK && !(err == HPE_PAUSED && c->message_done))
            return failed(c, SG_UPLINK_INVALID, llhttp_errno_name(err));
        const char *stop = err == HPE_OK ? (const char *)vec.iov_base + vec.iov_len
                                         : llhttp_get_error_pos(&c->parser);
        evbuffer_drain(in, (size_t)(stop - (const char *)vec.iov_base));
    }
    if (!c->message_done && c->eof && !c->paused) {
        /* A body that runs to the end of the connection ends here; any other is cut off. */
        llhttp_finish(&c->parser);
        if (!c->message_done)
            return failed(c, SG_UPLINK_BROKEN, "closed_mid_body");
    }
    return c->message_done ? STEP_DONE : STEP_MORE;
}

/* Ends the exchange with result (detail says why it failed) and hands c back to the pool (or
 * closes it). */
static void exchange_end(struct sg_uplink_conn *c, enum sg_uplink_result result, const char *detail)
{
    const struct sg_uplink_callbacks *cb = c->cb;
    void *arg = c->arg;
    c->cb = NULL;
    event_del(c->timer);
    /* Not after bytes out of turn, nor with part of the request unsent (an early answer). */
    bool reusable = result == SG_UPLINK_OK && c->open && !c->eof && c->keep_alive &&
                    !c->unread_body && evbuffer_get_length(conn_input(c)) == 0 &&
                    c->sent == evbuffer_get_length(c->out) &&
                    (c->bev == NULL || evbuffer_get_length(bufferevent_get_output(c->bev)) == 0);
    if (result != SG_UPLINK_OK)
        evbuffer_drain(c->body, evbuffer_get_length(c->body));
    c->dispatching = true;
    cb->on_done(arg, result, detail, c->body);
    c->dispatching = false;
    evbuffer_drain(c->body, evbuffer_get_length(c->body));
    evbuffer_drain(c->out, evbuffer_get_length(c->out));
    c->sent = 0;
    conn_release(c, reusable);
}

static void on_connect_event(struct bufferevent *bev, short what, void *arg);

/* Opens a connection for c's exchange (a new one, or again). */
static void conn_open(struct sg_uplink_conn *c)
{
    c->bev = sg_upstream_connect(c->pool->up, on_connect_event, c);
    if (c->bev == NULL) {
        c->connect_failed = true;
        event_active(c->kick, EV_TIMEOUT, 1);
    }
}

/*
 * A kept-alive connection closed without a byte of the answer: the upstream
 * most likely closed it as idle while the request was on its way, and did
 * not act on it. An idempotent request (RFC 9110 9.2.2) is sent once more on
 * a new connection; nginx does the same for a cached connection.
 */
static bool retry_on_new(struct sg_uplink_conn *c)
{
    if (!c->eof || !c->reused || c->received || !c->retry_ok)
        return false;
    sg_metrics_count("ssogate_upstream_retries_total", "reason", "keepalive_closed");
    sg_log(SG_LOG_INFO, "upstream_retry",
           "a kept-alive upstream connection closed before answering: request sent again on a new "
           "one");
    conn_close(c);
    event_del(c->timer);
    c->reused = c->eof = false;
    c->sent = 0;
    conn_open(c);
    return true;
}

static void conn_dispatch(struct sg_uplink_conn *c)
{
    if (c->cb == NULL) {
        conn_free(c); /* an idle connection closed, or spoke out of turn */
        return;
    }
    if (c->connect_failed && c->timed_out) {
        exchange_end(c, SG_UPLINK_TIMEOUT, "connect_timeout");
        return;
    }
    if (c->connect_failed) {
        exchange_end(c, SG_UPLINK_CONNECT, "connect_failed");
        return;
    }
    if (c->timed_out && !c->message_done) {
        exchange_end(c, SG_UPLINK_TIMEOUT, c->head_done ? "body_timeout" : "head_timeout");
        return;
    }
    struct evbuffer *in = conn_input(c);
    if (!c->head_done) {
        size_t head_parsed = 0;
        enum step step = parse_head(c, in, &head_parsed);
        if (step == STEP_MORE && !c->eof)
            return;
        if (step == STEP_MORE && retry_on_new(c))
            return;
        if (step == STEP_MORE)
            failed(c, SG_UPLINK_BROKEN, c->received ? "closed_in_head" : "closed_before_answer");
        if (step != STEP_HEAD) {
            exchange_end(c, c->failure, c->detail);
            return;
        }
        c->head_done = true;
        struct sg_uplink_response response = {.status = (int)c->parser.status_code,
                                              .reason = c->reason,
                                              .headers = c->headers,
                                              .header_count = c->count};
        c->dispatching = true;
        c->cb->on_head(c->arg, &response);
        c->dispatching = false;
        if (c->cancelled) {
            conn_free(c);
            return;
        }
        evbuffer_drain(in, head_parsed);
        arm_timer(c); /* the head is in: from here, the wait between body reads */
    }
    enum step step = parse_body(c, in);
    if (step == STEP_BAD) {
        exchange_end(c, c->failure, c->detail);
        return;
    }
    if (step == STEP_DONE) {
        exchange_end(c, SG_UPLINK_OK, NULL);
        return;
    }
    if (evbuffer_get_length(c->body) > 0) {
        c->dispatching = true;
        c->cb->on_body(c->arg, c->body);
        c->dispatching = false;
        if (c->cancelled)
            conn_free(c);
    }
}

/* ---- exchanges ---------------------------------------------------------- */

static struct sg_uplink_conn *conn_new(struct sg_uplink *pool)
{
    struct sg_uplink_conn *c = sg_calloc(1, sizeof(*c));
    c->pool = pool;
    c->fd = -1;
    c->timer = evtimer_new(pool->base, on_timer, c);
    c->kick = event_new(pool->base, -1, 0, on_kick, c);
    c->out = evbuffer_new();
    c->body = evbuffer_new();
    c->cap = 16;
    c->spans = sg_calloc(c->cap, sizeof(*c->spans));
    c->headers = sg_calloc(c->cap, sizeof(*c->headers));
    if (c->timer == NULL || c->kick == NULL || c->out == NULL || c->body == NULL)
        abort();
    conn_open(c);
    return c;
}

struct sg_uplink_conn *sg_uplink_send(struct sg_uplink *pool, struct evbuffer *request,
                                      unsigned flags, const struct sg_uplink_callbacks *cb,
                                      void *arg)
{
    struct sg_uplink_conn *c = pool->idle;
    if (c != NULL)
        idle_remove(c);
    else
        c = conn_new(pool);
    pool->refcount++;
    c->cb = cb;
    c->arg = arg;
    c->head_request = (flags & SG_UPLINK_HEAD) != 0;
    c->retry_ok = (flags & SG_UPLINK_IDEMPOTENT) != 0;
    c->reused = c->open;
    c->received = false;
    c->paused = c->eof = c->timed_out = c->head_done = c->message_done = c->bad = false;
    c->unread_body = false;
    c->cancelled = false;
    c->scan_from = 0;
    evbuffer_add_buffer(c->out, request);
    if (c->open) {
        arm_timer(c);
        conn_flush(c);
    }
    return c;
}

void sg_uplink_pause(struct sg_uplink_conn *c, bool paused)
{
    if (c->paused == paused)
        return;
    c->paused = paused;
    if (paused) {
        event_del(c->timer);
        if (c->rev != NULL)
            event_del(c->rev);
        else if (c->open)
            bufferevent_disable(c->bev, EV_READ);
        return;
    }
    arm_timer(c);
    if (c->rev != NULL && !c->eof)
        event_add(c->rev, NULL);
    else if (c->open && !c->eof)
        bufferevent_enable(c->bev, EV_READ);
    event_active(c->kick, EV_TIMEOUT, 1); /* what was read before the pause */
}

void sg_uplink_cancel(struct sg_uplink_conn *c)
{
    c->cb = NULL;
    if (c->dispatching)
        c->cancelled = true;
    else
        conn_free(c);
}
