#include "ssogate/clientaddr.h"

#include "ssogate/common.h"

#include <sys/queue.h>

#include <arpa/inet.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* text[0..len) as an address of family (inet_pton's strict forms). */
static bool pton(int family, const char *text, size_t len, void *out)
{
    char buf[SG_ADDR_TEXT_SIZE];
    if (len == 0 || len >= sizeof(buf) || memchr(text, '\0', len) != NULL)
        return false;
    memcpy(buf, text, len);
    buf[len] = '\0';
    return inet_pton(family, buf, out) == 1;
}

int sg_cidr_parse(const char *text, struct sg_cidr *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    const char *slash = strchr(text, '/');
    size_t len = slash != NULL ? (size_t)(slash - text) : strlen(text);
    unsigned max;
    if (pton(AF_INET, text, len, out->addr)) {
        out->family = AF_INET;
        max = 32;
    } else if (pton(AF_INET6, text, len, out->addr)) {
        out->family = AF_INET6;
        max = 128;
    } else {
        *why = "must be a numeric IPv4 or IPv6 address, optionally with /BITS";
        return SG_EINVAL;
    }
    unsigned bits = max;
    if (slash != NULL) {
        const char *d = slash + 1;
        size_t n = strlen(d);
        if (n == 0 || n > 3 || strspn(d, "0123456789") != n || (d[0] == '0' && n > 1)) {
            *why = "the prefix length must be a decimal number";
            return SG_EINVAL;
        }
        bits = (unsigned)strtoul(d, NULL, 10);
        if (bits > max) {
            *why = "the prefix length is longer than the address";
            return SG_EINVAL;
        }
    }
    out->bits = (uint8_t)bits;
    for (unsigned i = bits; i < max; i++) {
        if (out->addr[i / 8] & (0x80u >> (i % 8))) {
            *why = "has bits set past its prefix length";
            return SG_EINVAL;
        }
    }
    /* Peers are matched with IPv4-mapped addresses taken as IPv4: so is such a block. */
    if (out->family == AF_INET6 && bits >= 96 && memcmp(out->addr, v4_mapped, 12) == 0) {
        memmove(out->addr, out->addr + 12, 4);
        memset(out->addr + 4, 0, 12);
        out->family = AF_INET;
        out->bits = (uint8_t)(bits - 96);
    }
    return 0;
}

/* sa's family and address bytes, an IPv4-mapped IPv6 address as IPv4; false
 * for another family. */
static bool addr_bytes(const struct sockaddr *sa, sa_family_t *family, const unsigned char **bytes)
{
    if (sa == NULL)
        return false;
    if (sa->sa_family == AF_INET) {
        *family = AF_INET;
        *bytes = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
        return true;
    }
    if (sa->sa_family != AF_INET6)
        return false;
    const unsigned char *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    if (memcmp(a, v4_mapped, sizeof(v4_mapped)) == 0) {
        *family = AF_INET;
        *bytes = a + sizeof(v4_mapped);
    } else {
        *family = AF_INET6;
        *bytes = a;
    }
    return true;
}

static bool in_block(const struct sg_cidr *c, sa_family_t family, const unsigned char *a)
{
    if (c->family != family)
        return false;
    unsigned whole = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->addr, a, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xffu << (8 - rest));
    return (c->addr[whole] & mask) == (a[whole] & mask);
}

bool sg_cidr_match(const struct sg_cidr *set, size_t n, const struct sockaddr *sa)
{
    sa_family_t family;
    const unsigned char *a;
    if (!addr_bytes(sa, &family, &a))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (in_block(&set[i], family, a))
            return true;
    }
    return false;
}

/* A port after an address: ":" and 1 to 5 digits. */
static bool is_port(const char *text, size_t len)
{
    if (len < 2 || len > 6 || text[0] != ':')
        return false;
    for (size_t i = 1; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return false;
    }
    return true;
}

bool sg_forwarded_parse(const char *text, size_t len, union sg_sockaddr *out)
{
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *sin = &out->in;
    struct sockaddr_in6 *sin6 = &out->in6;
    if (len > 0 && text[0] == '[') {
        const char *close = memchr(text, ']', len);
        if (close == NULL)
            return false;
        size_t after = len - (size_t)(close + 1 - text);
        if (after != 0 && !is_port(close + 1, after))
            return false;
        sin6->sin6_family = AF_INET6;
        return pton(AF_INET6, text + 1, (size_t)(close - text - 1), &sin6->sin6_addr);
    }
    sin6->sin6_family = AF_INET6;
    if (pton(AF_INET6, text, len, &sin6->sin6_addr))
        return true;
    memset(out, 0, sizeof(*out));
    sin->sin_family = AF_INET;
    const char *colon = memchr(text, ':', len);
    size_t addr_len = colon != NULL ? (size_t)(colon - text) : len;
    if (colon != NULL && !is_port(colon, len - addr_len))
        return false;
    return pton(AF_INET, text, addr_len, &sin->sin_addr);
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* The walk's state: where it stands, from the right. */
struct walk {
    const struct sg_cidr *set;
    size_t n;
    union sg_sockaddr *out;
    unsigned hops;
    bool done;
};

/* Takes the elements of one X-Forwarded-For line, right to left. */
static void walk_line(struct walk *w, const char *value)
{
    size_t end = strlen(value);
    while (!w->done && end > 0) {
        size_t start = end;
        while (start > 0 && value[start - 1] != ',')
            start--;
        size_t a = start, b = end;
        while (a < b && is_ows(value[a]))
            a++;
        while (b > a && is_ows(value[b - 1]))
            b--;
        end = start > 0 ? start - 1 : 0;
        if (a == b) /* an empty list element */
            continue;
        union sg_sockaddr hop;
        if (w->hops == SG_FORWARDED_MAX_HOPS || !sg_forwarded_parse(value + a, b - a, &hop)) {
            w->done = true;
            return;
        }
        w->hops++;
        *w->out = hop;
        if (!sg_cidr_match(w->set, w->n, &hop.sa))
            w->done = true;
    }
}

unsigned sg_client_addr(const struct sg_cidr *set, size_t n, const struct sockaddr *peer,
                        const struct evkeyvalq *headers, union sg_sockaddr *out)
{
    memset(out, 0, sizeof(*out));
    if (peer != NULL) {
        size_t len = peer->sa_family == AF_INET    ? sizeof(struct sockaddr_in)
                     : peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                   : 0;
        memcpy(out, peer, len);
    }
    if (n == 0 || !sg_cidr_match(set, n, peer))
        return 0;
    struct walk w = {.set = set, .n = n, .out = out};
    const struct evkeyval *h;
    TAILQ_FOREACH_REVERSE(h, headers, evkeyvalq, next)
    {
        if (w.done)
            break;
        if (strcasecmp(h->key, "X-Forwarded-For") == 0)
            walk_line(&w, h->value);
    }
    return w.hops;
}

struct addrcount_entry {
    struct addrcount_entry *next;
    unsigned char key[16];
    size_t count;
};

struct sg_addrcount {
    struct addrcount_entry **buckets;
    size_t bucket_count; /* a power of two */
    size_t size;
    uint64_t seed;
};

#define ADDRCOUNT_BUCKETS_MIN 64

struct sg_addrcount *sg_addrcount_new(void)
{
    struct sg_addrcount *ac = sg_calloc(1, sizeof(*ac));
    ac->bucket_count = ADDRCOUNT_BUCKETS_MIN;
    ac->buckets = sg_calloc(ac->bucket_count, sizeof(*ac->buckets));
    sg_random_bytes(&ac->seed, sizeof(ac->seed));
    return ac;
}

void sg_addrcount_free(struct sg_addrcount *ac)
{
    if (ac == NULL)
        return;
    for (size_t i = 0; i < ac->bucket_count; i++) {
        while (ac->buckets[i] != NULL) {
            struct addrcount_entry *e = ac->buckets[i];
            ac->buckets[i] = e->next;
            free(e);
        }
    }
    free(ac->buckets);
    free(ac);
}

static struct addrcount_entry **addrcount_slot(struct sg_addrcount *ac, const unsigned char key[16])
{
    size_t b = (size_t)sg_hash_bytes(ac->seed, key, 16) & (ac->bucket_count - 1);
    struct addrcount_entry **slot = &ac->buckets[b];
    while (*slot != NULL && memcmp((*slot)->key, key, 16) != 0)
        slot = &(*slot)->next;
    return slot;
}

/* Twice the buckets once the entries outnumber them. */
static void addrcount_grow(struct sg_addrcount *ac)
{
    size_t count = ac->bucket_count * 2;
    struct addrcount_entry **buckets = sg_calloc(count, sizeof(*buckets));
    for (size_t i = 0; i < ac->bucket_count; i++) {
        while (ac->buckets[i] != NULL) {
            struct addrcount_entry *e = ac->buckets[i];
            ac->buckets[i] = e->next;
            size_t b = (size_t)sg_hash_bytes(ac->seed, e->key, 16) & (count - 1);
            e->next = buckets[b];
            buckets[b] = e;
        }
    }
    free(ac->buckets);
    ac->buckets = buckets;
    ac->bucket_count = count;
}

size_t sg_addrcount_add(struct sg_addrcount *ac, const unsigned char key[16])
{
    struct addrcount_entry **slot = addrcount_slot(ac, key);
    if (*slot != NULL)
        return ++(*slot)->count;
    struct addrcount_entry *e = sg_calloc(1, sizeof(*e));
    memcpy(e->key, key, 16);
    e->count = 1;
    *slot = e;
    if (++ac->size > ac->bucket_count)
        addrcount_grow(ac);
    return 1;
}

void sg_addrcount_remove(struct sg_addrcount *ac, const unsigned char key[16])
{
    struct addrcount_entry **slot = addrcount_slot(ac, key);
    struct addrcount_entry *e = *slot;
    if (e == NULL || --e->count > 0)
        return;
    *slot = e->next;
    free(e);
    ac->size--;
}

size_t sg_addrcount_size(const struct sg_addrcount *ac)
{
    return ac->size;
}

void sg_addr_text(const struct sockaddr *sa, char out[SG_ADDR_TEXT_SIZE])
{
    sa_family_t family;
    const unsigned char *a;
    if (!addr_bytes(sa, &family, &a) || inet_ntop(family, a, out, SG_ADDR_TEXT_SIZE) == NULL)
        snprintf(out, SG_ADDR_TEXT_SIZE, "unknown");
}
