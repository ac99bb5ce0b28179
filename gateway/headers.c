#include "ssogate/headers.h"

#include <sys/queue.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <string.h>
#include <strings.h>

static const char *const hop_by_hop[] = {
    "Connection",
    "Keep-Alive",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Connection",
    "TE",
    "Trailer",
    "Transfer-Encoding",
    "Upgrade",
};

/* Set by the gateway from the connection itself; a client's values are dropped.
 * Expect too: the gateway has read the whole body before it forwards, and an
 * interim 100 from the upstream would be taken for the response. */
static const char *const gateway_owned[] = {
    "Content-Length", "Expect", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Request-Id",
};

static bool in_list(const char *name, const char *const *list, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (strcasecmp(name, list[i]) == 0)
            return true;
    }
    return false;
}

bool sg_headers_is_hop_by_hop(const char *name)
{
    return in_list(name, hop_by_hop, sizeof(hop_by_hop) / sizeof(hop_by_hop[0]));
}

bool sg_headers_is_identity(const char *name)
{
    return strncasecmp(name, "X-SSO-", 6) == 0;
}

bool sg_headers_listed_in_connection(const char *connection, const char *name)
{
    if (connection == NULL)
        return false;
    size_t name_len = strlen(name);
    const char *p = connection;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *start = p;
        while (*p != '\0' && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        size_t len = (size_t)(p - start);
        if (len == name_len && len > 0 && strncasecmp(start, name, len) == 0)
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
        if (strcasecmp(h->key, "Connection") == 0 &&
            sg_headers_listed_in_connection(h->value, name))
            return true;
    }
    return false;
}

void sg_headers_copy_request(const struct evkeyvalq *in, struct evkeyvalq *out)
{
    const struct evkeyval *h;

    TAILQ_FOREACH(h, in, next)
    {
        if (sg_headers_is_hop_by_hop(h->key) || sg_headers_is_identity(h->key) ||
            in_list(h->key, gateway_owned, sizeof(gateway_owned) / sizeof(gateway_owned[0])) ||
            listed_in_any_connection(in, h->key))
            continue;
        evhttp_add_header(out, h->key, h->value);
    }
}

void sg_headers_copy_response(const struct evkeyvalq *in, struct evkeyvalq *out)
{
    const struct evkeyval *h;

    TAILQ_FOREACH(h, in, next)
    {
        if (sg_headers_is_hop_by_hop(h->key) || listed_in_any_connection(in, h->key))
            continue;
        evhttp_add_header(out, h->key, h->value);
    }
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
