/*
 * Fuzzes the client's address behind trusted proxies. The input is a set of
 * X-Forwarded-For lines split at '\n' (a client's and proxies' choice, every
 * byte but NUL and '\n'); the first line is also tried as a trusted_proxies
 * block.
 *
 * Properties: the walk takes at most SG_FORWARDED_MAX_HOPS elements; without
 * a hop the client is the peer; with hops it is an IPv4 or IPv6 address, and
 * when it is not trusted the input held it. Every address the parser takes
 * prints as text that parses back to the same address. A block that parses
 * has a prefix within its family's length and holds its own address.
 */
#include "../../gateway/clientaddr.c"
#include "../../gateway/common.c"

#include <event2/http.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static union sg_sockaddr v4(const char *text)
{
    union sg_sockaddr a;
    if (!sg_forwarded_parse(text, strlen(text), &a))
        abort();
    return a;
}

/* text(a) parses back to a, printed the same. */
static void check_round_trip(const union sg_sockaddr *a)
{
    char text[SG_ADDR_TEXT_SIZE], again[SG_ADDR_TEXT_SIZE];
    sg_addr_text(&a->sa, text);
    union sg_sockaddr b;
    if (!sg_forwarded_parse(text, strlen(text), &b))
        abort();
    sg_addr_text(&b.sa, again);
    if (strcmp(text, again) != 0)
        abort();
}

static void check_block(const char *text)
{
    struct sg_cidr c;
    const char *why = NULL;
    if (sg_cidr_parse(text, &c, &why) != 0) {
        if (why == NULL)
            abort();
        return;
    }
    if ((c.family == AF_INET && c.bits > 32) || (c.family == AF_INET6 && c.bits > 128) ||
        (c.family != AF_INET && c.family != AF_INET6))
        abort();
    union sg_sockaddr own = {0};
    if (c.family == AF_INET) {
        own.in.sin_family = AF_INET;
        memcpy(&own.in.sin_addr, c.addr, 4);
    } else {
        own.in6.sin6_family = AF_INET6;
        memcpy(&own.in6.sin6_addr, c.addr, 16);
    }
    if (!sg_cidr_match(&c, 1, &own.sa))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (memchr(data, '\0', size) != NULL)
        return 0;
    struct evkeyvalq headers;
    TAILQ_INIT(&headers);
    char *copy = sg_strndup((const char *)data, size);
    char *line = copy;
    for (;;) {
        char *nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        if (line == copy)
            check_block(line);
        evhttp_add_header(&headers, "X-Forwarded-For", line);
        for (char *e = line; *e != '\0';) {
            size_t len = strcspn(e, ",");
            union sg_sockaddr a;
            if (sg_forwarded_parse(e, len, &a))
                check_round_trip(&a);
            e += len + (e[len] == ',');
        }
        if (nl == NULL)
            break;
        line = nl + 1;
    }

    struct sg_cidr set[3];
    const char *why;
    if (sg_cidr_parse("10.0.0.0/8", &set[0], &why) != 0 ||
        sg_cidr_parse("2001:db8::/32", &set[1], &why) != 0 ||
        sg_cidr_parse("192.0.2.1", &set[2], &why) != 0)
        abort();
    union sg_sockaddr peer = v4("10.1.1.1"), client;
    unsigned hops = sg_client_addr(set, 3, &peer.sa, &headers, &client);
    char got[SG_ADDR_TEXT_SIZE];
    sg_addr_text(&client.sa, got);
    if (hops > SG_FORWARDED_MAX_HOPS || (hops == 0 && strcmp(got, "10.1.1.1") != 0))
        abort();
    if (hops > 0 && client.sa.sa_family != AF_INET && client.sa.sa_family != AF_INET6)
        abort();
    if (hops > 0 && !sg_cidr_match(set, 3, &client.sa) &&
        memmem(data, size, got, strlen(got)) == NULL && client.sa.sa_family == AF_INET)
        abort();

    /* An untrusted peer is the client whatever the lines say. */
    union sg_sockaddr outsider = v4("198.51.100.1");
    if (sg_client_addr(set, 3, &outsider.sa, &headers, &client) != 0)
        abort();
    sg_addr_text(&client.sa, got);
    if (strcmp(got, "198.51.100.1") != 0)
        abort();

    evhttp_clear_headers(&headers);
    free(copy);
    return 0;
}
