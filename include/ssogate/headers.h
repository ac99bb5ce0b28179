/*
 * Header filtering between the client and the upstream: hop-by-hop headers
 * (RFC 9110 section 7.6.1) never cross the gateway, and the identity
 * namespace (X-SSO-* and configured names) is only ever written by the
 * gateway itself.
 */
#ifndef SSOGATE_HEADERS_H
#define SSOGATE_HEADERS_H

#include <stdbool.h>
#include <stddef.h>

struct evbuffer;
struct evkeyvalq;

/* A header as parsed from an upstream response: both texts borrowed. */
struct sg_header {
    const char *name;
    const char *value;
};

/* True when value holds only visible ASCII, obs-text, SP and HTAB (a field value, RFC 9110 5.5,
 * and a reason phrase, RFC 9112 4, alike). */
bool sg_headers_value_ok(const char *value);

/*
 * Header lines gathered in a buffer of their own before they go to an
 * evbuffer, with one evbuffer_add for many lines: sg_lines_start, then
 * sg_lines_add for each, then sg_lines_end (which adds what is left; nothing
 * else may be added to out in between).
 */
struct sg_lines {
    struct evbuffer *out;
    size_t len;
    char data[2048];
};

void sg_lines_start(struct sg_lines *lines, struct evbuffer *out);

/* As sg_headers_add_line, into lines. */
bool sg_lines_add(struct sg_lines *lines, const char *name, const char *value);

void sg_lines_end(struct sg_lines *lines);

/* Appends the line "name: value" CRLF to out and returns true; nothing, and false, when either
 * holds a CR or LF (the line would split into headers of the writer's choosing). */
bool sg_headers_add_line(struct evbuffer *out, const char *name, const char *value);

/* True for the fixed hop-by-hop header names (case-insensitive). */
bool sg_headers_is_hop_by_hop(const char *name);

/*
 * True for a header in the gateway's identity namespace: X-SSO-*, compared
 * case-insensitively with '_' and '-' taken as equal (CGI, WSGI, PHP and IIS
 * fold them together, so "X_SSO_User" would read as X-SSO-User upstream).
 */
bool sg_headers_is_identity(const char *name);

/* True when a and b are the same header name for any upstream: ASCII case
 * folded, '_' taken as '-'. */
bool sg_headers_name_eq(const char *a, const char *b);

/* True when name is an RFC 9110 token (tchar only, at least one byte). */
bool sg_headers_is_token(const char *name);

/* Why a request's header section is refused (RFC 9110, RFC 9112). */
enum sg_headers_status {
    SG_HEADERS_OK = 0,
    SG_HEADERS_BAD_NAME,                /* not a token: space before ':', CTL, separator, empty */
    SG_HEADERS_BAD_VALUE,               /* CR, LF, NUL, DEL or a CTL other than HTAB */
    SG_HEADERS_BAD_CONTENT_LENGTH,      /* not 1*DIGIT, too large, or more than one line */
    SG_HEADERS_TRANSFER_ENCODING,       /* anything but exactly "chunked" (answered 501) */
    SG_HEADERS_LENGTH_AND_CHUNKED,      /* Content-Length and Transfer-Encoding together */
    SG_HEADERS_CHUNKED_HTTP10,          /* Transfer-Encoding in an HTTP/1.0 request */
    SG_HEADERS_NO_HOST,                 /* HTTP/1.1 without Host */
    SG_HEADERS_SEVERAL_HOSTS,           /* more than one Host line */
    SG_HEADERS_BAD_HOST,                /* Host is not uri-host [":" port] */
    SG_HEADERS_PROTECTED_IN_CONNECTION, /* Connection names Host, Content-Length, ... */
    SG_HEADERS__COUNT
};

/*
 * Checks a request's header section as received (in is borrowed): every
 * name a token, every value free of control bytes, at most one well-formed
 * Content-Length, Transfer-Encoding exactly "chunked" and never with
 * Content-Length or in HTTP/1.0, exactly one valid Host in HTTP/1.1 (at most
 * one in 1.0), and no Connection option naming a header the gateway
 * depends on (Host, Content-Length, Transfer-Encoding, Cookie, X-Forwarded-*,
 * X-Request-Id, the identity namespace).
 */
enum sg_headers_status sg_headers_validate(const struct evkeyvalq *in, bool http11);

/* The HTTP status that answers a refusal: 501 for an unknown transfer coding, else 400. */
int sg_headers_status_http(enum sg_headers_status status);

/* The reason of a status as a short snake_case word ("bad_name"). */
const char *sg_headers_status_name(enum sg_headers_status status);

/* True when name is listed in the Connection header value connection (may be NULL). */
bool sg_headers_listed_in_connection(const char *connection, const char *name);

/*
 * Writes the client's request headers from `in` to `out` for the upstream,
 * as header lines:
 * drops hop-by-hop headers, headers named in Connection, and every header
 * whose name, with '_' taken as '-', is one the gateway owns: the identity
 * namespace, Content-Length, Expect, Host, Cookie, every X-Forwarded-*,
 * X-Request-Id (the proxy sets those itself), what a proxy in front would say
 * of the request's origin or URL (Forwarded, X-Real-IP, X-Client-IP,
 * Client-IP, True-Client-IP, X-Cluster-Client-IP, X-Original-URL,
 * X-Rewrite-URL, X-Original-Host, X-Host, Front-End-Https, X-Url-Scheme,
 * X-Original-Forwarded-For), and the names of also_owned (NULL-terminated,
 * may be NULL: the claim_headers). All borrowed.
 */
void sg_headers_copy_request(const struct evkeyvalq *in, struct evbuffer *out,
                             const char *const *also_owned);

/*
 * True when the client's header name (with '_' taken as '-') is one the
 * gateway drops or sets itself (see sg_headers_copy_request).
 */
bool sg_headers_gateway_owned(const char *name);

/*
 * Copies the upstream's count response headers for the client: drops
 * hop-by-hop headers, headers named in Connection, and Set-Cookie lines that
 * set a cookie of owned_cookies (NULL-terminated, may be NULL; read as
 * sg_cookie_sets_any reads it: the gateway's own, which only it may set); keeps Content-Length so
 * that a sized response streams without chunking. Returns how many Set-Cookie lines it dropped.
 */
size_t sg_headers_copy_response(const struct sg_header *in, size_t count, struct evkeyvalq *out,
                                const char *const *owned_cookies);

#define SG_RESPONSE_HAS_LENGTH     1u /* a Content-Length line was written */
#define SG_RESPONSE_HAS_DATE       2u /* a Date line was written */
#define SG_RESPONSE_DROPPED_COOKIE 4u /* a Set-Cookie line of owned_cookies was dropped */

/*
 * The same headers as sg_headers_copy_response, written as "name: value"
 * CRLF lines to out (a line holding a CR or LF is left out, as
 * sg_headers_add_line does), without Content-Length when drop_length is set.
 * Returns the SG_RESPONSE_ flags of what was written or dropped.
 */
unsigned sg_headers_write_response(const struct sg_header *in, size_t count, struct evbuffer *out,
                                   bool drop_length, const char *const *owned_cookies);

/* Sum of name and value lengths plus separators, as on the wire. */
size_t sg_headers_wire_size(const struct evkeyvalq *headers);

/* Asks for the client connection to close after this answer: one
 * "Connection: close" among the answer's headers, however often asked. */
void sg_headers_close_connection(struct evkeyvalq *out);

#endif
