#include "ssogate/headers.h"

#include "ssogate/common.h"
#include "ssogate/cookie.h"

#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <ctype.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#define NAME(text)                                                                                 \
    {                                                                                              \
        text, sizeof(text) - 1                                                                     \
    }
static const struct {
    const char *text;
    size_t len;
} hop_by_hop[] = {
    NAME("Connection"),
    NAME("Keep-Alive"),
    NAME("Proxy-Authenticate"),
    NAME("Proxy-Authorization"),
    NAME("Proxy-Connection"),
    NAME("TE"),
    NAME("Trailer"),
    NAME("Transfer-Encoding"),
    NAME("Upgrade"),
};

/* Set by the gateway from the connection itself; a client's values are dropped
 * (X-Forwarded-For is read by the proxy, which appends to it), as is every
 * X-Forwarded-* name (sg_headers_gateway_owned).
 * Expect too: the gateway has read the whole body before it forwards, and an
 * interim 100 from the upstream would be taken for the response.
 * The rest say where the request came from, or which URL it was, as a proxy in
 * front would (RFC 7239, nginx, IIS URL Rewrite, load balancers, CDNs): from a
 * client they would let it choose the address, scheme, host, prefix or path an
 * upstream framework takes for the request's. */
static const struct {
    const char *text;
    size_t len;
} gateway_owned[] = {
    NAME("Host"),
    NAME("Cookie"),
    NAME("Content-Length"),
    NAME("Expect"),
    NAME("X-Request-Id"),
    NAME("Forwarded"),
    NAME("X-Real-IP"),
    NAME("X-Client-IP"),
    NAME("Client-IP"),
    NAME("True-Client-IP"),
    NAME("X-Cluster-Client-IP"),
    NAME("X-Original-URL"),
    NAME("X-Rewrite-URL"),
    NAME("X-Original-Host"),
    NAME("X-Host"),
    NAME("Front-End-Https"),
    NAME("X-Url-Scheme"),
    NAME("X-Original-Forwarded-For"),
};
#undef NAME

/* Named in Connection, these would let a client remove what the gateway
 * relies on, or what the upstream needs to frame and place the request. */
static const char *const connection_protected[] = {
    "Host", "Content-Length", "Transfer-Encoding", "Cookie", "X-Request-Id",
};

static unsigned char fold(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return (unsigned char)(c - 'A' + 'a');
    return c == '_' ? '-' : c;
}

/* Compares the first n bytes of a and b as header names (see sg_headers_name_eq). */
static bool name_prefix_eq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i] == '\0' || b[i] == '\0' || fold((unsigned char)a[i]) != fold((unsigned char)b[i]))
            return false;
    }
    return true;
}

bool sg_headers_name_eq(const char *a, const char *b)
{
    for (;; a++, b++) {
        if (fold((unsigned char)*a) != fold((unsigned char)*b))
            return false;
        if (*a == '\0')
            return true;
    }
}

/* One of gateway_owned; len is name's length (only names of that length are compared). */
static bool owned_name(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(gateway_owned) / sizeof(gateway_owned[0]); i++) {
        if (gateway_owned[i].len == len && sg_headers_name_eq(name, gateway_owned[i].text))
            return true;
    }
    return false;
}

/* "Connection", any case (sg_headers_name_eq's answer: the name has no '-' for a '_' to fold to).
 * A message has a dozen header names and at most one of them a Connection, and three of nginx's
 * begin with "Con": one pass that stops at the first byte that differs, the end of name included
 * (a NUL is no letter, so nothing past it is read). */
static bool is_connection(const char *name)
{
    static const char lower[] = "connection";
    for (size_t i = 0; i < sizeof(lower) - 1; i++) {
        if ((name[i] | 0x20) != lower[i])
            return false;
    }
    return name[sizeof(lower) - 1] == '\0';
}

bool sg_headers_is_hop_by_hop(const char *name)
{
    /* Most names have a length no hop-by-hop name has: one strlen decides for them. */
    size_t len = strlen(name);
    for (size_t i = 0; i < sizeof(hop_by_hop) / sizeof(hop_by_hop[0]); i++) {
        if (hop_by_hop[i].len == len && sg_headers_name_eq(name, hop_by_hop[i].text))
            return true;
    }
    return false;
}

bool sg_headers_is_identity(const char *name)
{
    return name_prefix_eq(name, "X-SSO-", 6);
}

bool sg_headers_is_token(const char *name)
{
    if (*name == '\0')
        return false;
    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
        if (!sg_is_tchar(*p))
            return false;
    }
    return true;
}

/* The next comma-separated option of a Connection value from *p: false at
 * the end; else its first byte and length, and *p moves past it. */
static bool next_option(const char **p, const char **start, size_t *len)
{
    while (**p == ' ' || **p == '\t' || **p == ',')
        (*p)++;
    *start = *p;
    while (**p != '\0' && **p != ',' && **p != ' ' && **p != '\t')
        (*p)++;
    *len = (size_t)(*p - *start);
    return *len > 0;
}

bool sg_headers_listed_in_connection(const char *connection, const char *name)
{
    if (connection == NULL)
        return false;
    size_t name_len = strlen(name);
    const char *p = connection, *start;
    size_t len;
    while (next_option(&p, &start, &len)) {
        if (len == name_len && strncasecmp(start, name, len) == 0)
            return true;
    }
    return false;
}

/* True when name is listed in any of the Connection header lines of headers. */
static bool listed_in_any_connection(const struct evkeyvalq *headers, const char *name)
{
    const struct evkeyval *h;
    TAILQ_FOREACH(h, headers, next)
    {
        if (is_connection(h->key) && sg_headers_listed_in_connection(h->value, name))
            return true;
    }
    return false;
}

bool sg_headers_gateway_owned(const char *name)
{
    /* Every such name begins with one of these letters ('_' folds to '-'). */
    switch (fold((unsigned char)name[0])) {
    case 'c':
    case 'e':
    case 'f':
    case 'h':
    case 'k':
    case 'p':
    case 't':
    case 'u':
    case 'x':
        break;
    default:
        return false;
    }
    size_t len = strlen(name);
    return sg_headers_is_hop_by_hop(name) || sg_headers_is_identity(name) ||
           (len >= 12 && name_prefix_eq(name, "X-Forwarded-", 12)) || owned_name(name, len);
}

#define CONNECTION_LINES_MAX 8

/* True when name is one of list (NULL-terminated, may be NULL), '_' taken as '-'. */
static bool in_null_list(const char *name, const char *const *list)
{
    for (; list != NULL && *list != NULL; list++) {
        if (sg_headers_name_eq(name, *list))
            return true;
    }
    return false;
}

void sg_lines_start(struct sg_lines *lines, struct evbuffer *out)
{
    lines->out = out; /* data is not zeroed: only len bytes of it are ever read */
    lines->len = 0;
}

void sg_lines_end(struct sg_lines *lines)
{
    if (lines->len > 0)
        evbuffer_add(lines->out, lines->data, lines->len);
    lines->len = 0;
}

/* As evhttp_add_header did, a name or value with a CR or LF is refused. */
bool sg_lines_add(struct sg_lines *lines, const char *name, const char *value)
{
    size_t name_len = strcspn(name, "\r\n"), value_len = strcspn(value, "\r\n");
    if (name[name_len] != '\0' || value[value_len] != '\0')
        return false;
    size_t len = name_len + value_len + 4;
    if (len > sizeof(lines->data) - lines->len)
        sg_lines_end(lines);
    if (len > sizeof(lines->data)) {
        evbuffer_add(lines->out, name, name_len);
        evbuffer_add(lines->out, ": ", 2);
        evbuffer_add(lines->out, value, value_len);
        evbuffer_add(lines->out, "\r\n", 2);
        return true;
    }
    char *at = lines->data + lines->len;
    memcpy(at, name, name_len);
    at[name_len] = ':';
    at[name_len + 1] = ' ';
    memcpy(at + name_len + 2, value, value_len);
    at[len - 2] = '\r';
    at[len - 1] = '\n';
    lines->len += len;
    return true;
}

bool sg_headers_add_line(struct evbuffer *out, const char *name, const char *value)
{
    struct sg_lines lines;
    sg_lines_start(&lines, out);
    bool added = sg_lines_add(&lines, name, value);
    sg_lines_end(&lines);
    return added;
}

void sg_headers_copy_request(const struct evkeyvalq *in, struct evbuffer *out,
                             const char *const *also_owned)
{
    const struct evkeyval *h;
    const char *connection[CONNECTION_LINES_MAX];
    size_t lines = 0;
    bool many = false;

    TAILQ_FOREACH(h, in, next)
    {
        if (!is_connection(h->key))
            continue;
        if (lines == CONNECTION_LINES_MAX)
            many = true;
        else
            connection[lines++] = h->value;
    }
    struct sg_lines kept;
    sg_lines_start(&kept, out);
    TAILQ_FOREACH(h, in, next)
    {
        if (sg_headers_gateway_owned(h->key) || in_null_list(h->key, also_owned))
            continue;
        bool listed = many && listed_in_any_connection(in, h->key);
        for (size_t i = 0; i < lines && !listed; i++)
            listed = sg_headers_listed_in_connection(connection[i], h->key);
        if (!listed)
            sg_lines_add(&kept, h->key, h->value);
    }
    sg_lines_end(&kept);
}

/* True when name is listed in any Connection header of in[0..count). */
static bool listed_in_any_array(const struct sg_header *in, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++) {
        if (is_connection(in[i].name) && sg_headers_listed_in_connection(in[i].value, name))
            return true;
    }
    return false;
}

#define CONNECTION_OPTIONS_MAX 16

/* The options named by the Connection headers of an upstream's answer, found once (many is set when
 * there are more than CONNECTION_OPTIONS_MAX: then each name is looked for in every header). */
struct connection_options {
    struct {
        const char *at;
        size_t len;
    } options[CONNECTION_OPTIONS_MAX];
    size_t count;
    bool many;
};

static void find_connection(const struct sg_header *in, size_t count, struct connection_options *c)
{
    c->count = 0;
    c->many = false;
    for (size_t i = 0; i < count && !c->many; i++) {
        if (!is_connection(in[i].name))
            continue;
        const char *p = in[i].value, *start;
        size_t len;
        while (next_option(&p, &start, &len)) {
            if (c->count == CONNECTION_OPTIONS_MAX) {
                c->many = true;
                break;
            }
            c->options[c->count].at = start;
            c->options[c->count++].len = len;
        }
    }
}

/* The response headers that reach the client: not hop-by-hop, not named in a Connection header. */
static bool response_header_kept(const struct sg_header *in, size_t count, size_t i,
                                 const struct connection_options *c)
{
    if (sg_headers_is_hop_by_hop(in[i].name))
        return false;
    if (c->many)
        return !listed_in_any_array(in, count, in[i].name);
    size_t len = strlen(in[i].name);
    for (size_t k = 0; k < c->count; k++) {
        if (c->options[k].len == len && strncasecmp(c->options[k].at, in[i].name, len) == 0)
            return false;
    }
    return true;
}

/* A Set-Cookie line of the upstream's that sets one of owned (the first letter decides for most
 * names without a call). */
static bool sets_owned_cookie(const struct sg_header *h, const char *const *owned)
{
    return owned != NULL && (h->name[0] == 'S' || h->name[0] == 's') &&
           strcasecmp(h->name, "Set-Cookie") == 0 && sg_cookie_sets_any(h->value, owned);
}

size_t sg_headers_copy_response(const struct sg_header *in, size_t count, struct evkeyvalq *out,
                                const char *const *owned_cookies)
{
    struct connection_options connection;
    find_connection(in, count, &connection);
    size_t dropped = 0;
    for (size_t i = 0; i < count; i++) {
        if (!response_header_kept(in, count, i, &connection))
            continue;
        if (sets_owned_cookie(&in[i], owned_cookies))
            dropped++;
        else
            evhttp_add_header(out, in[i].name, in[i].value);
    }
    return dropped;
}

unsigned sg_headers_write_response(const struct sg_header *in, size_t count, struct evbuffer *out,
                                   bool drop_length, const char *const *owned_cookies)
{
    struct connection_options connection;
    find_connection(in, count, &connection);
    struct sg_lines lines;
    sg_lines_start(&lines, out);
    unsigned seen = 0;
    for (size_t i = 0; i < count; i++) {
        if (!response_header_kept(in, count, i, &connection))
            continue;
        if (sets_owned_cookie(&in[i], owned_cookies)) {
            seen |= SG_RESPONSE_DROPPED_COOKIE;
            continue;
        }
        size_t len = strlen(in[i].name);
        unsigned is = len == 14 && strcasecmp(in[i].name, "Content-Length") == 0
                          ? SG_RESPONSE_HAS_LENGTH
                      : len == 4 && strcasecmp(in[i].name, "Date") == 0 ? SG_RESPONSE_HAS_DATE
                                                                        : 0;
        if ((is == SG_RESPONSE_HAS_LENGTH && drop_length) ||
            !sg_lines_add(&lines, in[i].name, in[i].value))
            continue;
        seen |= is;
    }
    sg_lines_end(&lines);
    return seen;
}

size_t sg_headers_wire_size(const struct evkeyvalq *headers)
{
    size_t total = 0;
    const struct evkeyval *h;

    TAILQ_FOREACH(h, headers, next)
    {
        total += strlen(h->key) + strlen(h->value) + 4;
    }
    return total;
}

static bool value_bytes_ok(const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f)
            return false;
    }
    return true;
}

/* Eight bytes at a time: a word with no byte below 0x20 and none equal to
 * 0x7f is fine as it is; any other (a tab, or a real control) is looked at
 * byte by byte. Every request's header values pass here. */
bool sg_headers_value_ok(const char *value)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    const unsigned char *p = (const unsigned char *)value;
    size_t len = strlen(value), i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        uint64_t del = w ^ (0x7f * ones);
        bool suspect = (((w - 0x20 * ones) & ~w) | ((del - ones) & ~del)) & highs;
        if (suspect && !value_bytes_ok(p + i, 8))
            return false;
    }
    return value_bytes_ok(p + i, len - i);
}

static bool digits_only(const char *value)
{
    size_t n = 0;
    for (; value[n] != '\0'; n++) {
        if (value[n] < '0' || value[n] > '9')
            return false;
    }
    return n > 0 && n <= 18; /* fits in an int64 */
}

/* uri-host [ ":" port ]: reg-name or an IP literal in brackets (RFC 3986 3.2.2). */
static bool host_ok(const char *value)
{
    const char *p = value;
    if (*p == '[') {
        const char *close = strchr(p, ']');
        if (close == NULL || close == p + 1)
            return false;
        for (const char *q = p + 1; q < close; q++) {
            if (strchr("0123456789abcdefABCDEF:.", *q) == NULL)
                return false;
        }
        p = close + 1;
    } else {
        const char *start = p;
        while (*p != '\0' && *p != ':') {
            unsigned char c = (unsigned char)*p;
            bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
            if (c == '%') {
                /* pct-encoded: exactly two hex digits */
                if (!isxdigit((unsigned char)p[1]) || !isxdigit((unsigned char)p[2]))
                    return false;
                p += 3;
                continue;
            }
            if (!alnum && strchr("-._~!$&'()*+,;=", c) == NULL)
                return false;
            p++;
        }
        if (p == start)
            return false;
    }
    if (*p == '\0')
        return true;
    if (*p != ':')
        return false;
    p++;
    size_t digits = 0;
    for (; *p != '\0'; p++, digits++) {
        if (*p < '0' || *p > '9' || digits >= 5)
            return false;
    }
    return true; /* "host:" is allowed: an empty port means the default */
}

/* True when a Connection value names a header the gateway depends on. */
/* True when the Connection option [start, start + len) names a header the
 * gateway depends on: one of connection_protected, any X-Forwarded-*, or the
 * identity namespace, whatever its length. */
static bool option_protected(const char *start, size_t len)
{
    static const char forwarded[] = "X-Forwarded-";
    if (len >= 6 && name_prefix_eq(start, "X-SSO-", 6))
        return true;
    if (len >= sizeof(forwarded) - 1 && name_prefix_eq(start, forwarded, sizeof(forwarded) - 1))
        return true;
    for (size_t i = 0; i < sizeof(connection_protected) / sizeof(connection_protected[0]); i++) {
        if (strlen(connection_protected[i]) == len &&
            name_prefix_eq(start, connection_protected[i], len))
            return true;
    }
    return false;
}

static bool connection_names_protected(const char *value)
{
    const char *p = value, *start;
    size_t len;
    while (next_option(&p, &start, &len)) {
        if (option_protected(start, len))
            return true;
    }
    return false;
}

enum sg_headers_status sg_headers_validate(const struct evkeyvalq *in, bool http11)
{
    const struct evkeyval *h;
    unsigned hosts = 0, lengths = 0, encodings = 0;
    const char *host = NULL;

    TAILQ_FOREACH(h, in, next)
    {
        if (!sg_headers_is_token(h->key))
            return SG_HEADERS_BAD_NAME;
        if (!sg_headers_value_ok(h->value))
            return SG_HEADERS_BAD_VALUE;
        char first = (char)(h->key[0] | 0x20);
        if (first != 'h' && first != 'c' && first != 't')
            continue; /* none of the names below */
        if (strcasecmp(h->key, "Host") == 0) {
            hosts++;
            host = h->value;
        } else if (strcasecmp(h->key, "Content-Length") == 0) {
            if (++lengths > 1 || !digits_only(h->value))
                return SG_HEADERS_BAD_CONTENT_LENGTH;
        } else if (strcasecmp(h->key, "Transfer-Encoding") == 0) {
            if (++encodings > 1 || strcasecmp(h->value, "chunked") != 0)
                return SG_HEADERS_TRANSFER_ENCODING;
        } else if (is_connection(h->key)) {
            if (connection_names_protected(h->value))
                return SG_HEADERS_PROTECTED_IN_CONNECTION;
        }
    }
    if (encodings > 0 && lengths > 0)
        return SG_HEADERS_LENGTH_AND_CHUNKED;
    if (encodings > 0 && !http11)
        return SG_HEADERS_CHUNKED_HTTP10;
    if (hosts > 1)
        return SG_HEADERS_SEVERAL_HOSTS;
    if (hosts == 0)
        return http11 ? SG_HEADERS_NO_HOST : SG_HEADERS_OK;
    return host_ok(host) ? SG_HEADERS_OK : SG_HEADERS_BAD_HOST;
}

int sg_headers_status_http(enum sg_headers_status status)
{
    return status == SG_HEADERS_TRANSFER_ENCODING ? 501 : 400;
}

const char *sg_headers_status_name(enum sg_headers_status status)
{
    static const char *const names[SG_HEADERS__COUNT] = {
        [SG_HEADERS_OK] = "ok",
        [SG_HEADERS_BAD_NAME] = "bad_name",
        [SG_HEADERS_BAD_VALUE] = "bad_value",
        [SG_HEADERS_BAD_CONTENT_LENGTH] = "bad_content_length",
        [SG_HEADERS_TRANSFER_ENCODING] = "transfer_encoding",
        [SG_HEADERS_LENGTH_AND_CHUNKED] = "length_and_chunked",
        [SG_HEADERS_CHUNKED_HTTP10] = "chunked_http10",
        [SG_HEADERS_NO_HOST] = "no_host",
        [SG_HEADERS_SEVERAL_HOSTS] = "several_hosts",
        [SG_HEADERS_BAD_HOST] = "bad_host",
        [SG_HEADERS_PROTECTED_IN_CONNECTION] = "protected_in_connection",
    };
    return (unsigned)status < SG_HEADERS__COUNT ? names[status] : "unknown";
}

void sg_headers_close_connection(struct evkeyvalq *out)
{
    const char *have = evhttp_find_header(out, "Connection");
    if (have != NULL && strcasecmp(have, "close") == 0)
        return;
    evhttp_remove_header(out, "Connection");
    evhttp_add_header(out, "Connection", "close");
}
