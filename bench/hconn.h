/*
 * The load tool's HTTP/1.1 client: URLs of numeric hosts, and one
 * connection to one origin at a time (plain or TLS through
 * bufferevent_openssl, resuming the TLS session of the connection before),
 * kept alive between requests, one request in flight.
 * A response is read whole (status, the few headers a browser needs here,
 * a bounded body: Content-Length, chunked, or up to the close). Every wait
 * is bounded by the client's timeout.
 */
#ifndef SSOGATE_BENCH_HCONN_H
#define SSOGATE_BENCH_HCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct evbuffer;

#define SG_HURL_HOST_MAX     64
#define SG_HURL_ORIGIN_MAX   96
#define SG_HURL_TARGET_MAX   8192
#define SG_HRESP_COOKIES_MAX 16
#define SG_HRESP_BODY_MAX    (1024 * 1024)

/* An absolute http(s) URL of a numeric host ("localhost" is taken as 127.0.0.1). */
struct sg_hurl {
    bool https;
    char host[SG_HURL_HOST_MAX];          /* without brackets */
    char authority[SG_HURL_HOST_MAX + 8]; /* the Host header: host[:port] as written */
    char origin[SG_HURL_ORIGIN_MAX]; /* "scheme://host:port": the key of jars and connections */
    uint16_t port;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char *target; /* path and query, owned; starts with '/' */
};

/*
 * Parses an absolute URL (borrowed) into *out (cleared first; the caller
 * clears it with sg_hurl_clear). Returns 0, or SG_EINVAL for anything but
 * http(s) with a numeric host, or SG_ETOOBIG.
 */
int sg_hurl_parse(const char *text, struct sg_hurl *out);

/*
 * Resolves a Location value (borrowed: an absolute URL, or a path starting
 * with '/', or a query starting with '?') against base into *out. Returns 0,
 * SG_EINVAL or SG_ETOOBIG.
 */
int sg_hurl_resolve(const struct sg_hurl *base, const char *location, struct sg_hurl *out);

/* Copies src into *dst (cleared first). */
void sg_hurl_copy(struct sg_hurl *dst, const struct sg_hurl *src);

/* Frees the target and empties the URL. NULL-safe. */
void sg_hurl_clear(struct sg_hurl *url);

/* The target's path without the query, newly allocated (the caller frees it). */
char *sg_hurl_path(const struct sg_hurl *url);

/* A response, borrowed by the callback for its duration. */
struct sg_hresp {
    int status;
    char *location;                          /* NULL when absent */
    char *set_cookies[SG_HRESP_COOKIES_MAX]; /* the first ones, if there are more */
    unsigned set_cookie_count;
    struct evbuffer *body; /* at most SG_HRESP_BODY_MAX bytes */
};

/*
 * Called once per request. err is NULL for a complete response, else a
 * static kind: "connect", "tls", "timeout", "closed", "parse", "too_big";
 * resp is then NULL. The callback may free the connection or start the next
 * request on it.
 */
typedef void (*sg_hconn_cb)(const char *err, const struct sg_hresp *resp, void *arg);

struct sg_hclient;
struct sg_hconn;

/*
 * The settings shared by every connection: the event base (borrowed), the
 * CA file (borrowed, read now; NULL = no https), the timeout of every wait
 * in milliseconds. Returns 0 and the client in *out, or SG_ECRYPTO with a
 * reason in errbuf.
 */
int sg_hclient_new(struct event_base *base, const char *ca_file, int timeout_ms,
                   struct sg_hclient **out, char *errbuf, size_t errlen);

/* Frees the client; every connection must be freed first. NULL-safe. */
void sg_hclient_free(struct sg_hclient *client);

/* Connections open now, of every origin (for the progress line). */
unsigned sg_hclient_open_count(const struct sg_hclient *client);

/* A connection object for the origin of url (borrowed); it connects at its first request. */
struct sg_hconn *sg_hconn_new(struct sg_hclient *client, const struct sg_hurl *url);

/* Closes and frees the connection; a request in flight ends without its callback. NULL-safe. */
void sg_hconn_free(struct sg_hconn *conn);

/* True when conn serves the origin of url. */
bool sg_hconn_same_origin(const struct sg_hconn *conn, const struct sg_hurl *url);

/*
 * Sends one request on conn, which must be idle: method and url (borrowed)
 * of conn's origin, optional cookie (the Cookie header value), and for a
 * POST an application/x-www-form-urlencoded body (borrowed; NULL for none).
 * Reconnects when the connection was closed; a request that a kept-alive
 * connection loses before any answer is sent once more on a new one, as
 * browsers do. Returns 0 (cb runs later, exactly once) or SG_EINVAL when
 * conn is busy or of another origin, SG_ECONFIG for https without a CA
 * file, or SG_EUPSTREAM when no socket could be made (cb does not run).
 */
int sg_hconn_request(struct sg_hconn *conn, const char *method, const struct sg_hurl *url,
                     const char *cookie, const char *body, sg_hconn_cb cb, void *arg);

#endif
