/*
 * Fuzzes the request header validator. The input is a header section: lines
 * split at '\n' (a trailing '\r' dropped), name and value split at the first
 * ':', the value trimmed as libevent's parser trims it (leading spaces,
 * trailing spaces and tabs). The entries are built by hand, so names and
 * values may hold anything but NUL and '\n'.
 *
 * Properties: sg_headers_validate is deterministic, its status is in range
 * and answered 400, or 501 for transfer_encoding; an OK section (HTTP/1.1 or
 * 1.0) has token names, values without control bytes but HTAB, at most one
 * Content-Length of digits, Transfer-Encoding only as one "chunked" line
 * without Content-Length and never in 1.0, exactly one Host in 1.1 (at most
 * one in 1.0), and no Connection option naming a protected header; 1.1 and
 * 1.0 only differ by those Host and Transfer-Encoding rules. The name
 * helpers agree with their documentation, and an OK section copied for the
 * upstream keeps no header of the identity namespace. Any section, taken as
 * an upstream's answer, is written for the client as whole CRLF lines, each
 * one of its headers in order, none hop-by-hop or named in its Connection
 * headers, Content-Length only when not dropped, with flags that say what was
 * written.
 */
#include "../../gateway/common.c"
#include "../../gateway/cookie.c"
#include "../../gateway/headers.c"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_headers: %s:%d: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static bool spec_is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool own_is_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++) {
        if (!spec_is_tchar((unsigned char)*s))
            return false;
    }
    return true;
}

static char spec_fold(char c)
{
    if (c >= 'A' && c <= 'Z')
        return (char)(c - 'A' + 'a');
    return c == '_' ? '-' : c;
}

/* The documented sg_headers_name_eq, on the first n bytes of a. */
static bool own_name_eq_n(const char *a, size_t n, const char *b)
{
    if (strlen(b) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (spec_fold(a[i]) != spec_fold(b[i]))
            return false;
    }
    return true;
}

static bool own_is_identity(const char *name)
{
    return strlen(name) >= 6 && own_name_eq_n(name, 6, "x-sso-");
}

/* True when the Connection option (n bytes) names a header the gateway
 * depends on. */
static bool protected_option(const char *option, size_t n)
{
    static const char *const names[] = {"Host", "Content-Length", "Transfer-Encoding", "Cookie",
                                        "X-Request-Id"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (n == strlen(names[i]) && strncasecmp(option, names[i], n) == 0)
            return true;
    }
    return (n >= 12 && strncasecmp(option, "X-Forwarded-", 12) == 0) ||
           (n >= 6 && own_name_eq_n(option, 6, "x-sso-"));
}

static bool spec_is_digits(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
    }
    return true;
}

/* Builds the list; returns the number of lines. */
static size_t parse(const uint8_t *data, size_t size, struct evkeyvalq *headers)
{
    size_t lines = 0;
    const char *p = (const char *)data, *end = p + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl ? nl : end;
        size_t line_len = (size_t)(line_end - p);
        if (line_len > 0 && p[line_len - 1] == '\r')
            line_len--;
        const char *colon = memchr(p, ':', line_len);
        size_t name_len = colon ? (size_t)(colon - p) : line_len;
        const char *value = colon ? colon + 1 : p + line_len;
        size_t value_len = (size_t)(p + line_len - value);
        while (value_len > 0 && *value == ' ') {
            value++;
            value_len--;
        }
        while (value_len > 0 && (value[value_len - 1] == ' ' || value[value_len - 1] == '\t'))
            value_len--;
        struct evkeyval *e = calloc(1, sizeof(*e));
        e->key = strndup(p, name_len);
        e->value = strndup(value, value_len);
        TAILQ_INSERT_TAIL(headers, e, next);
        lines++;
        p = nl ? nl + 1 : end;
    }
    return lines;
}

static void check_status(enum sg_headers_status status)
{
    CHECK(status >= SG_HEADERS_OK && status < SG_HEADERS__COUNT);
    CHECK(sg_headers_status_name(status) != NULL);
    if (status != SG_HEADERS_OK)
        CHECK(sg_headers_status_http(status) ==
              (status == SG_HEADERS_TRANSFER_ENCODING ? 501 : 400));
}

struct summary {
    size_t hosts, lengths, encodings;
};

/* Checks what an OK status promises; returns the counts that differ between
 * versions. */
static struct summary check_ok(const struct evkeyvalq *headers)
{
    struct summary s = {0, 0, 0};
    const struct evkeyval *h;
    TAILQ_FOREACH(h, headers, next)
    {
        CHECK(own_is_token(h->key));
        for (const unsigned char *v = (const unsigned char *)h->value; *v; v++)
            CHECK((*v >= 0x20 || *v == '\t') && *v != 0x7f);
        if (strcasecmp(h->key, "Host") == 0) {
            s.hosts++;
            CHECK(strpbrk(h->value, " \t/?#@\\") == NULL);
        } else if (strcasecmp(h->key, "Content-Length") == 0) {
            s.lengths++;
            CHECK(spec_is_digits(h->value));
        } else if (strcasecmp(h->key, "Transfer-Encoding") == 0) {
            s.encodings++;
            CHECK(strcasecmp(h->value, "chunked") == 0);
        } else if (strcasecmp(h->key, "Connection") == 0) {
            for (const char *o = h->value; *o;) {
                o += strspn(o, " \t,");
                size_t n = strcspn(o, " \t,");
                CHECK(!protected_option(o, n));
                o += n;
            }
        }
    }
    CHECK(s.lengths <= 1 && s.encodings <= 1 && s.hosts <= 1);
    CHECK(s.encodings == 0 || s.lengths == 0);
    return s;
}

/* The name helpers against their documentation, on the names of the list. */
static void check_names(const struct evkeyvalq *headers)
{
    const struct evkeyval *h, *prev = NULL;
    TAILQ_FOREACH(h, headers, next)
    {
        CHECK(sg_headers_is_token(h->key) == own_is_token(h->key));
        CHECK(sg_headers_is_identity(h->key) == own_is_identity(h->key));
        CHECK(sg_headers_name_eq(h->key, h->key));
        if (prev != NULL) {
            bool eq = sg_headers_name_eq(h->key, prev->key);
            CHECK(eq == sg_headers_name_eq(prev->key, h->key));
            CHECK(eq == own_name_eq_n(h->key, strlen(h->key), prev->key));
        }
        prev = h;
    }
}

/* Copying an accepted section for the upstream never keeps a header of the
 * identity namespace, however it spells '-'. */
static void check_copy(const struct evkeyvalq *in)
{
    struct evbuffer *lines = evbuffer_new();
    sg_headers_copy_request(in, lines, NULL);
    char *line;
    while ((line = evbuffer_readln(lines, NULL, EVBUFFER_EOL_CRLF_STRICT)) != NULL) {
        char *colon = strstr(line, ": ");
        CHECK(colon != NULL);
        *colon = '\0';
        CHECK(!own_is_identity(line));
        CHECK(!sg_headers_is_hop_by_hop(line));
        free(line);
    }
    CHECK(evbuffer_get_length(lines) == 0);
    evbuffer_free(lines);
}

/* True when name is among the comma-separated options of any Connection header of in. */
static bool own_listed(const struct sg_header *in, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++) {
        if (strcasecmp(in[i].name, "Connection") != 0)
            continue;
        for (const char *o = in[i].value; *o;) {
            o += strspn(o, " \t,");
            size_t n = strcspn(o, " \t,");
            if (n > 0 && strlen(name) == n && strncasecmp(name, o, n) == 0)
                return true;
            o += n;
        }
    }
    return false;
}

/* The gateway's cookies in the checks below (a case variant is the same cookie to it). */
static const char *const owned_cookies[] = {"ssogate", "__Host-ssogate_login", NULL};

/* Whether a Set-Cookie value names one of owned_cookies, read as a browser reads it: the name ends
 * at the first '=' or ';', blanks around it and a leading run of '=' (a nameless cookie's value
 * that the browser sends back as NAME=v) are not part of it. */
static bool own_sets_owned(const char *value)
{
    char name[256];
    size_t n = 0;
    const char *p = value;
    while (*p == ' ' || *p == '\t' || *p == '=')
        p++;
    for (; *p != '\0' && *p != '=' && *p != ';'; p++) {
        if (n == sizeof(name) - 1)
            return false; /* longer than any owned name */
        name[n++] = *p;
    }
    while (n > 0 && (name[n - 1] == ' ' || name[n - 1] == '\t'))
        n--;
    name[n] = '\0';
    for (const char *const *o = owned_cookies; *o != NULL; o++) {
        if (strcasecmp(*o, name) == 0)
            return true;
    }
    return false;
}

/* The answer's head as the gateway writes it for the client (any list, as an upstream's parser
 * would hand it over): whole CRLF lines, in order, each an input header that is neither
 * hop-by-hop nor named in a Connection header nor a Set-Cookie of the gateway's cookies, no
 * Content-Length when asked, and flags that say what was written or dropped. */
static void check_response(const struct evkeyvalq *list, bool drop_length)
{
    struct sg_header in[64] = {{0}};
    size_t count = 0;
    const struct evkeyval *h;
    TAILQ_FOREACH(h, list, next)
    {
        if (count < sizeof(in) / sizeof(in[0]))
            in[count++] = (struct sg_header){h->key, h->value};
    }
    struct evbuffer *out = evbuffer_new();
    unsigned has = sg_headers_write_response(in, count, out, drop_length, owned_cookies);
    bool any_owned = false;
    for (size_t i = 0; i < count; i++)
        any_owned |= strcasecmp(in[i].name, "Set-Cookie") == 0 && own_sets_owned(in[i].value);
    CHECK(!(has & SG_RESPONSE_DROPPED_COOKIE) || any_owned);
    unsigned seen = has & SG_RESPONSE_DROPPED_COOKIE;
    size_t next = 0;
    char *line;
    while ((line = evbuffer_readln(out, NULL, EVBUFFER_EOL_CRLF_STRICT)) != NULL) {
        CHECK(strpbrk(line, "\r\n") == NULL);
        char *colon = strstr(line, ": ");
        CHECK(colon != NULL);
        *colon = '\0';
        while (next < count &&
               (strcmp(in[next].name, line) != 0 || strcmp(in[next].value, colon + 2) != 0))
            next++;
        CHECK(next < count);
        next++;
        CHECK(!sg_headers_is_hop_by_hop(line));
        CHECK(!own_listed(in, count, line));
        CHECK(strcasecmp(line, "Set-Cookie") != 0 || !own_sets_owned(colon + 2));
        if (strcasecmp(line, "Content-Length") == 0) {
            CHECK(!drop_length);
            seen |= SG_RESPONSE_HAS_LENGTH;
        }
        if (strcasecmp(line, "Date") == 0)
            seen |= SG_RESPONSE_HAS_DATE;
        free(line);
    }
    CHECK(evbuffer_get_length(out) == 0);
    CHECK(has == seen);
    evbuffer_free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct evkeyvalq headers;
    TAILQ_INIT(&headers);
    parse(data, size, &headers);

    enum sg_headers_status v11 = sg_headers_validate(&headers, true);
    enum sg_headers_status v10 = sg_headers_validate(&headers, false);
    check_status(v11);
    check_status(v10);
    CHECK(sg_headers_validate(&headers, true) == v11);
    CHECK(sg_headers_validate(&headers, false) == v10);

    if (v11 == SG_HEADERS_OK) {
        struct summary s = check_ok(&headers);
        CHECK(s.hosts == 1);
        CHECK(v10 == (s.encodings ? SG_HEADERS_CHUNKED_HTTP10 : SG_HEADERS_OK));
        check_copy(&headers);
    }
    if (v10 == SG_HEADERS_OK) {
        struct summary s = check_ok(&headers);
        CHECK(s.encodings == 0);
        CHECK(v11 == (s.hosts == 1 ? SG_HEADERS_OK : SG_HEADERS_NO_HOST));
        check_copy(&headers);
    }
    check_names(&headers);
    check_response(&headers, false);
    check_response(&headers, true);
    evhttp_clear_headers(&headers);
    return 0;
}
