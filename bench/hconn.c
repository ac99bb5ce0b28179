#include "hconn.h"

#include "ssogate/common.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Bounds on what a response may hold before its body. */
#define LINE_MAX_BYTES   8192
#define HEADERS_MAX      100
#define CHUNK_LINE_BYTES 64

struct sg_hclient {
    struct event_base *base;
    SSL_CTX *ssl_ctx;
    struct timeval timeout;
    unsigned open_count;
};

enum body_mode { BODY_CLOSE, BODY_LENGTH, BODY_CHUNKED };

enum read_state {
    READ_IDLE,
    READ_STATUS,
    READ_HEADERS,
    READ_BODY_LENGTH,
    READ_CHUNK_SIZE,
    READ_CHUNK_DATA,
    READ_CHUNK_CRLF,
    READ_TRAILERS,
    READ_BODY_CLOSE
};

struct sg_hconn {
    struct sg_hclient *client;
    struct sg_hurl url; /* the origin; target unused */
    struct bufferevent *bev;
    SSL_SESSION *session; /* to resume TLS on the next connection, as a browser does */
    bool connected;
    bool reused;           /* the current request went out on a connection that served one before */
    bool got_bytes;        /* some of the current response arrived */
    bool close_after;      /* the response says the connection ends with it */
    bool head;             /* the current request is a HEAD: no body follows */
    struct evbuffer *sent; /* the current request, kept to send once more */
    enum read_state state;
    enum body_mode body_mode;
    uint64_t remaining; /* body bytes or chunk bytes still to read */
    unsigned header_count;
    struct sg_hresp resp;
    sg_hconn_cb cb;
    void *arg;
};

/* ---- URLs ---- */

void sg_hurl_clear(struct sg_hurl *url)
{
    if (url == NULL)
        return;
    free(url->target);
    memset(url, 0, sizeof(*url));
}

void sg_hurl_copy(struct sg_hurl *dst, const struct sg_hurl *src)
{
    sg_hurl_clear(dst);
    *dst = *src;
    dst->target = src->target ? sg_strdup(src->target) : NULL;
}

char *sg_hurl_path(const struct sg_hurl *url)
{
    size_t len = strcspn(url->target, "?");
    return sg_strndup(url->target, len);
}

/* Fills the address of host (numeric, or localhost) and port. */
static int set_address(struct sg_hurl *url)
{
    const char *host = strcmp(url->host, "localhost") == 0 ? "127.0.0.1" : url->host;
    memset(&url->addr, 0, sizeof(url->addr));
    struct sockaddr_in *sin = (struct sockaddr_in *)&url->addr;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&url->addr;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(url->port);
        url->addr_len = sizeof(*sin);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(url->port);
        url->addr_len = sizeof(*sin6);
        return 0;
    }
    return SG_EINVAL;
}

int sg_hurl_parse(const char *text, struct sg_hurl *out)
{
    memset(out, 0, sizeof(*out));
    const char *p;
    if (strncasecmp(text, "http://", 7) == 0) {
        p = text + 7;
    } else if (strncasecmp(text, "https://", 8) == 0) {
        out->https = true;
        p = text + 8;
    } else {
        return SG_EINVAL;
    }
    size_t authority_len = strcspn(p, "/?#");
    const char *rest = p + authority_len;
    if (authority_len == 0 || authority_len >= SG_HURL_HOST_MAX || memchr(p, '@', authority_len))
        return SG_EINVAL;
    memcpy(out->authority, p, authority_len);
    out->authority[authority_len] = '\0';

    const char *host = out->authority;
    size_t host_len;
    const char *port_text = NULL;
    if (host[0] == '[') {
        const char *close = strchr(host, ']');
        if (close == NULL)
            return SG_EINVAL;
        host++;
        host_len = (size_t)(close - host);
        if (close[1] == ':')
            port_text = close + 2;
        else if (close[1] != '\0')
            return SG_EINVAL;
    } else {
        const char *colon = strchr(host, ':');
        host_len = colon ? (size_t)(colon - host) : strlen(host);
        port_text = colon ? colon + 1 : NULL;
    }
    if (host_len == 0)
        return SG_EINVAL;
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    out->port = out->https ? 443 : 80;
    if (port_text != NULL) {
        char *end;
        long port = strtol(port_text, &end, 10);
        if (*end != '\0' || end == port_text || port < 1 || port > 65535)
            return SG_EINVAL;
        out->port = (uint16_t)port;
    }
    if (set_address(out) != 0)
        return SG_EINVAL;
    snprintf(out->origin, sizeof(out->origin), "%s://%s:%u", out->https ? "https" : "http",
             out->host, (unsigned)out->port);

    size_t target_len = strcspn(rest, "#");
    if (target_len >= SG_HURL_TARGET_MAX)
        return SG_ETOOBIG;
    for (size_t i = 0; i < target_len; i++) {
        if ((unsigned char)rest[i] <= 0x20 || (unsigned char)rest[i] >= 0x7f)
            return SG_EINVAL;
    }
    if (target_len == 0 || rest[0] == '?')
        out->target = sg_asprintf("/%.*s", (int)target_len, rest);
    else
        out->target = sg_strndup(rest, target_len);
    return 0;
}

int sg_hurl_resolve(const struct sg_hurl *base, const char *location, struct sg_hurl *out)
{
    if (location[0] != '/' && location[0] != '?')
        return sg_hurl_parse(location, out);
    if (location[0] == '/' && location[1] == '/')
        return SG_EINVAL;
    size_t len = strcspn(location, "#");
    if (len >= SG_HURL_TARGET_MAX)
        return SG_ETOOBIG;
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)location[i] <= 0x20 || (unsigned char)location[i] >= 0x7f)
            return SG_EINVAL;
    }
    memset(out, 0, sizeof(*out));
    *out = *base;
    if (location[0] == '?') {
        char *path = sg_hurl_path(base);
        out->target = sg_asprintf("%s%.*s", path, (int)len, location);
        free(path);
    } else {
        out->target = sg_strndup(location, len);
    }
    return 0;
}

/* ---- the client ---- */

int sg_hclient_new(struct event_base *base, const char *ca_file, int timeout_ms,
                   struct sg_hclient **out, char *errbuf, size_t errlen)
{
    SSL_CTX *ctx = NULL;
    if (ca_file != NULL) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (ctx == NULL || SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
            const char *why = ERR_reason_error_string(ERR_get_error());
            snprintf(errbuf, errlen, "%s: %s", ca_file, why ? why : "cannot load the CA file");
            SSL_CTX_free(ctx);
            return SG_ECRYPTO;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    }
    struct sg_hclient *client = sg_calloc(1, sizeof(*client));
    client->base = base;
    client->ssl_ctx = ctx;
    client->timeout.tv_sec = timeout_ms / 1000;
    client->timeout.tv_usec = (timeout_ms % 1000) * 1000;
    *out = client;
    return 0;
}

void sg_hclient_free(struct sg_hclient *client)
{
    if (client == NULL)
        return;
    SSL_CTX_free(client->ssl_ctx);
    free(client);
}

unsigned sg_hclient_open_count(const struct sg_hclient *client)
{
    return client->open_count;
}

/* ---- connections ---- */

static void resp_clear(struct sg_hresp *resp)
{
    free(resp->location);
    for (unsigned i = 0; i < resp->set_cookie_count; i++)
        free(resp->set_cookies[i]);
    if (resp->body)
        evbuffer_free(resp->body);
    memset(resp, 0, sizeof(*resp));
}

static void close_socket(struct sg_hconn *conn)
{
    if (conn->bev == NULL)
        return;
    SSL *ssl = conn->url.https ? bufferevent_openssl_get_ssl(conn->bev) : NULL;
    SSL_SESSION *session = ssl != NULL && conn->connected ? SSL_get1_session(ssl) : NULL;
    if (session != NULL && SSL_SESSION_is_resumable(session)) {
        SSL_SESSION_free(conn->session);
        conn->session = session;
    } else {
        SSL_SESSION_free(session);
    }
    bufferevent_free(conn->bev);
    conn->bev = NULL;
    conn->connected = false;
    conn->client->open_count--;
}

struct sg_hconn *sg_hconn_new(struct sg_hclient *client, const struct sg_hurl *url)
{
    struct sg_hconn *conn = sg_calloc(1, sizeof(*conn));
    conn->client = client;
    conn->url = *url;
    conn->url.target = NULL;
    return conn;
}

void sg_hconn_free(struct sg_hconn *conn)
{
    if (conn == NULL)
        return;
    close_socket(conn);
    SSL_SESSION_free(conn->session);
    resp_clear(&conn->resp);
    if (conn->sent)
        evbuffer_free(conn->sent);
    free(conn);
}

bool sg_hconn_same_origin(const struct sg_hconn *conn, const struct sg_hurl *url)
{
    return strcmp(conn->url.origin, url->origin) == 0;
}

/* Ends the current request: resets the state, then calls back (which may free conn). */
static void finish(struct sg_hconn *conn, const char *err)
{
    sg_hconn_cb cb = conn->cb;
    void *arg = conn->arg;
    conn->cb = NULL;
    conn->state = READ_IDLE;
    if (conn->sent) {
        evbuffer_free(conn->sent);
        conn->sent = NULL;
    }
    if (err != NULL || conn->close_after)
        close_socket(conn);
    else if (conn->bev)
        bufferevent_set_timeouts(conn->bev, NULL, NULL);
    struct sg_hresp resp = conn->resp;
    memset(&conn->resp, 0, sizeof(conn->resp));
    cb(err, err ? NULL : &resp, arg);
    resp_clear(&resp);
}

static void on_read(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

/* Opens a socket (and TLS) to the origin and queues the kept request on it. */
static int open_socket(struct sg_hconn *conn)
{
    struct sg_hclient *client = conn->client;
    struct bufferevent *bev;
    if (conn->url.https) {
        if (client->ssl_ctx == NULL)
            return SG_EINVAL;
        SSL *ssl = SSL_new(client->ssl_ctx);
        if (ssl == NULL)
            return SG_ECRYPTO;
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        if (strcmp(conn->url.host, "localhost") == 0) {
            X509_VERIFY_PARAM_set1_host(param, "localhost", 0);
            SSL_set_tlsext_host_name(ssl, "localhost");
        } else {
            X509_VERIFY_PARAM_set1_ip_asc(param, conn->url.host);
        }
        if (conn->session != NULL)
            SSL_set_session(ssl, conn->session);
        bev = bufferevent_openssl_socket_new(client->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                             BEV_OPT_CLOSE_ON_FREE);
        if (bev == NULL) {
            SSL_free(ssl);
            return SG_ECRYPTO;
        }
        /* Servers that close without close_notify (node among them) are not in error. */
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    } else {
        bev = bufferevent_socket_new(client->base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (bev == NULL)
            return SG_EUPSTREAM;
    }
    bufferevent_setcb(bev, on_read, NULL, on_event, conn);
    bufferevent_set_timeouts(bev, &client->timeout, &client->timeout);
    if (bufferevent_socket_connect(bev, (struct sockaddr *)&conn->url.addr,
                                   (int)conn->url.addr_len) != 0) {
        bufferevent_free(bev);
        return SG_EUPSTREAM;
    }
    int one = 1;
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    conn->bev = bev;
    conn->connected = false;
    client->open_count++;
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    return 0;
}

/* Puts the kept request on the wire (once more, after a lost keep-alive connection). */
static int send_kept(struct sg_hconn *conn)
{
    if (conn->bev == NULL) {
        int err = open_socket(conn);
        if (err != 0)
            return err;
    }
    struct evbuffer *copy = evbuffer_new();
    evbuffer_add_buffer_reference(copy, conn->sent);
    bufferevent_write_buffer(conn->bev, copy);
    evbuffer_free(copy);
    return 0;
}

int sg_hconn_request(struct sg_hconn *conn, const char *method, const struct sg_hurl *url,
                     const char *cookie, const char *body, sg_hconn_cb cb, void *arg)
{
    if (conn->cb != NULL || !sg_hconn_same_origin(conn, url))
        return SG_EINVAL;
    if (url->https && conn->client->ssl_ctx == NULL)
        return SG_ECONFIG;
    struct evbuffer *req = evbuffer_new();
    evbuffer_add_printf(req,
                        "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: ssogate-load/1\r\n"
                        "Accept: text/html,*/*\r\n",
                        method, url->target, url->authority);
    if (cookie != NULL)
        evbuffer_add_printf(req, "Cookie: %s\r\n", cookie);
    if (body != NULL)
        evbuffer_add_printf(req,
                            "Origin: %s://%s\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                            "Content-Length: %zu\r\n\r\n%s",
                            url->https ? "https" : "http", url->authority, strlen(body), body);
    else
        evbuffer_add(req, "\r\n", 2);

    conn->sent = req;
    conn->reused = conn->bev != NULL;
    conn->got_bytes = false;
    conn->close_after = false;
    conn->head = strcmp(method, "HEAD") == 0;
    conn->state = READ_STATUS;
    conn->header_count = 0;
    resp_clear(&conn->resp);
    conn->resp.body = evbuffer_new();
    if (conn->bev)
        bufferevent_set_timeouts(conn->bev, &conn->client->timeout, &conn->client->timeout);
    int err = send_kept(conn);
    if (err != 0) {
        conn->state = READ_IDLE;
        evbuffer_free(conn->sent);
        conn->sent = NULL;
        resp_clear(&conn->resp);
        return SG_EUPSTREAM;
    }
    conn->cb = cb;
    conn->arg = arg;
    return 0;
}

/* Reads a CRLF line of at most limit bytes. Returns the line (the caller frees it), or NULL: with
 * *err set when it is too long, without when it has not fully arrived. */
static char *read_line(struct evbuffer *input, size_t limit, const char **err)
{
    size_t len;
    char *line = evbuffer_readln(input, &len, EVBUFFER_EOL_CRLF);
    if (line == NULL) {
        if (evbuffer_get_length(input) > limit)
            *err = "too_big";
        return NULL;
    }
    if (len > limit) {
        free(line);
        *err = "too_big";
        return NULL;
    }
    return line;
}

static const char *parse_status(struct sg_hconn *conn, const char *line)
{
    int major, minor, status;
    if (sscanf(line, "HTTP/%d.%d %3d", &major, &minor, &status) != 3 || major != 1 ||
        status < 100 || status > 599)
        return "parse";
    conn->resp.status = status;
    conn->close_after = minor == 0;
    conn->body_mode = BODY_CLOSE;
    conn->header_count = 0;
    return NULL;
}

static const char *parse_header(struct sg_hconn *conn, char *line)
{
    char *colon = strchr(line, ':');
    if (colon == NULL || colon == line)
        return "parse";
    *colon = '\0';
    char *value = colon + 1;
    while (*value == ' ' || *value == '\t')
        value++;
    size_t vlen = strlen(value);
    while (vlen > 0 && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
        value[--vlen] = '\0';
    struct sg_hresp *resp = &conn->resp;
    if (strcasecmp(line, "content-length") == 0) {
        char *end;
        unsigned long long n = strtoull(value, &end, 10);
        if (*end != '\0' || !isdigit((unsigned char)value[0]))
            return "parse";
        if (n > SG_HRESP_BODY_MAX)
            return "too_big";
        if (conn->body_mode != BODY_CHUNKED) {
            conn->body_mode = BODY_LENGTH;
            conn->remaining = n;
        }
    } else if (strcasecmp(line, "transfer-encoding") == 0) {
        if (strcasestr(value, "chunked") == NULL)
            return "parse";
        conn->body_mode = BODY_CHUNKED;
    } else if (strcasecmp(line, "connection") == 0) {
        if (strcasestr(value, "close") != NULL)
            conn->close_after = true;
        else if (strcasestr(value, "keep-alive") != NULL)
            conn->close_after = false;
    } else if (strcasecmp(line, "location") == 0) {
        free(resp->location);
        resp->location = sg_strdup(value);
    } else if (strcasecmp(line, "set-cookie") == 0) {
        if (resp->set_cookie_count < SG_HRESP_COOKIES_MAX)
            resp->set_cookies[resp->set_cookie_count++] = sg_strdup(value);
    }
    return NULL;
}

/* After the blank line that ends the headers: sets up the body. Returns true when complete. */
static bool headers_done(struct sg_hconn *conn)
{
    int status = conn->resp.status;
    if (status < 200) {
        /* An interim answer: the real one follows. */
        conn->state = READ_STATUS;
        free(conn->resp.location);
        conn->resp.location = NULL;
        return false;
    }
    if (conn->head || status == 204 || status == 304)
        return true;
    switch (conn->body_mode) {
    case BODY_LENGTH:
        conn->state = READ_BODY_LENGTH;
        return conn->remaining == 0;
    case BODY_CHUNKED:
        conn->state = READ_CHUNK_SIZE;
        return false;
    case BODY_CLOSE:
    default:
        conn->state = READ_BODY_CLOSE;
        conn->close_after = true;
        return false;
    }
}

/* Moves up to n body bytes from input; "too_big" past the bound. */
static const char *take_body(struct sg_hconn *conn, struct evbuffer *input, size_t n)
{
    if (evbuffer_get_length(conn->resp.body) + n > SG_HRESP_BODY_MAX)
        return "too_big";
    evbuffer_remove_buffer(input, conn->resp.body, n);
    return NULL;
}

/* One step of the parser: DONE, MORE (wait for input), AGAIN (go on), or an error kind in *err. */
enum step { STEP_DONE, STEP_MORE, STEP_AGAIN, STEP_ERROR };

static enum step parse_step(struct sg_hconn *conn, struct evbuffer *input, const char **err)
{
    char *line;
    switch (conn->state) {
    case READ_IDLE:
        /* Bytes nobody asked for: the connection is out of step. */
        *err = "parse";
        return evbuffer_get_length(input) > 0 ? STEP_ERROR : STEP_MORE;
    case READ_STATUS:
        if ((line = read_line(input, LINE_MAX_BYTES, err)) == NULL)
            return *err ? STEP_ERROR : STEP_MORE;
        *err = parse_status(conn, line);
        free(line);
        conn->state = READ_HEADERS;
        return *err ? STEP_ERROR : STEP_AGAIN;
    case READ_HEADERS:
        if ((line = read_line(input, LINE_MAX_BYTES, err)) == NULL)
            return *err ? STEP_ERROR : STEP_MORE;
        if (line[0] == '\0') {
            free(line);
            return headers_done(conn) ? STEP_DONE : STEP_AGAIN;
        }
        if (++conn->header_count > HEADERS_MAX) {
            free(line);
            *err = "too_big";
            return STEP_ERROR;
        }
        *err = parse_header(conn, line);
        free(line);
        return *err ? STEP_ERROR : STEP_AGAIN;
    case READ_BODY_LENGTH:
    case READ_CHUNK_DATA: {
        size_t have = evbuffer_get_length(input);
        size_t n = have < conn->remaining ? have : (size_t)conn->remaining;
        if ((*err = take_body(conn, input, n)) != NULL)
            return STEP_ERROR;
        conn->remaining -= n;
        if (conn->remaining > 0)
            return STEP_MORE;
        if (conn->state == READ_BODY_LENGTH)
            return STEP_DONE;
        conn->state = READ_CHUNK_CRLF;
        return STEP_AGAIN;
    }
    case READ_CHUNK_SIZE: {
        if ((line = read_line(input, CHUNK_LINE_BYTES, err)) == NULL)
            return *err ? STEP_ERROR : STEP_MORE;
        char *end;
        unsigned long long size = strtoull(line, &end, 16);
        bool ok = end != line && isxdigit((unsigned char)line[0]) &&
                  (*end == '\0' || *end == ';' || *end == ' ');
        free(line);
        if (!ok) {
            *err = "parse";
            return STEP_ERROR;
        }
        if (size > SG_HRESP_BODY_MAX) {
            *err = "too_big";
            return STEP_ERROR;
        }
        conn->remaining = size;
        conn->state = size == 0 ? READ_TRAILERS : READ_CHUNK_DATA;
        return STEP_AGAIN;
    }
    case READ_CHUNK_CRLF:
    case READ_TRAILERS: {
        if ((line = read_line(input, LINE_MAX_BYTES, err)) == NULL)
            return *err ? STEP_ERROR : STEP_MORE;
        bool empty = line[0] == '\0';
        free(line);
        if (conn->state == READ_CHUNK_CRLF) {
            if (!empty) {
                *err = "parse";
                return STEP_ERROR;
            }
            conn->state = READ_CHUNK_SIZE;
            return STEP_AGAIN;
        }
        if (empty)
            return STEP_DONE;
        if (++conn->header_count > 2 * HEADERS_MAX) {
            *err = "too_big";
            return STEP_ERROR;
        }
        return STEP_AGAIN;
    }
    case READ_BODY_CLOSE:
        *err = take_body(conn, input, evbuffer_get_length(input));
        return *err ? STEP_ERROR : STEP_MORE;
    }
    *err = "parse";
    return STEP_ERROR;
}

/* Parses what arrived. Returns MORE, DONE, or ERROR with the kind in *err. */
static enum step parse_input(struct sg_hconn *conn, struct evbuffer *input, const char **err)
{
    enum step step;
    do {
        *err = NULL;
        step = parse_step(conn, input, err);
    } while (step == STEP_AGAIN);
    return step;
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct sg_hconn *conn = arg;
    struct evbuffer *input = bufferevent_get_input(bev);
    if (conn->cb == NULL) {
        /* Idle: anything arriving now is out of step; the next request starts afresh. */
        close_socket(conn);
        return;
    }
    if (evbuffer_get_length(input) > 0)
        conn->got_bytes = true;
    const char *err;
    enum step step = parse_input(conn, input, &err);
    if (step == STEP_MORE)
        return;
    finish(conn, step == STEP_DONE ? NULL : err);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct sg_hconn *conn = arg;
    if (what & BEV_EVENT_CONNECTED) {
        conn->connected = true;
        return;
    }
    if (conn->cb == NULL) {
        /* An idle kept-alive connection went away. */
        close_socket(conn);
        return;
    }
    if ((what & BEV_EVENT_EOF) && conn->state == READ_BODY_CLOSE) {
        const char *err;
        enum step step = parse_input(conn, bufferevent_get_input(bev), &err);
        finish(conn, step == STEP_ERROR ? err : NULL);
        return;
    }
    bool lost_before_answer = !conn->got_bytes && (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR));
    if (conn->reused && lost_before_answer) {
        conn->reused = false;
        close_socket(conn);
        if (send_kept(conn) == 0)
            return;
        finish(conn, "connect");
        return;
    }
    const char *err;
    if (what & BEV_EVENT_TIMEOUT)
        err = "timeout";
    else if (!conn->connected && conn->url.https && bufferevent_get_openssl_error(bev) != 0)
        err = "tls";
    else if (!conn->connected)
        err = "connect";
    else
        err = "closed";
    finish(conn, err);
}
