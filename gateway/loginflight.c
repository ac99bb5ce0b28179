#include "ssogate/loginflight.h"

#include "ssogate/common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define BUCKETS_MIN 64

/* A login this process started, under its state's name. */
struct entry {
    struct entry *chain;             /* the next in its bucket */
    struct entry *older, *newer;     /* every entry, in the order noted */
    struct entry *prev_of, *next_of; /* its owner's entries, in the order noted */
    struct owner *owner;
    int64_t created;
    char state[SG_LOGINSTATE_TOKEN_SIZE];
};

/* An address holding at least one login. */
struct owner {
    struct owner *chain;       /* the next in its bucket */
    struct owner *prev, *next; /* the owners holding as many logins, in the order they came to it */
    struct entry *oldest, *newest;
    size_t held;
    struct sg_loginaddr addr;
};

struct sg_loginflight {
    struct entry **entries;
    size_t entry_buckets; /* a power of two */
    size_t count;
    struct entry *oldest, *newest;
    struct owner **owners;
    size_t owner_buckets; /* a power of two */
    size_t owner_count;
    uint64_t seed;          /* addresses are the client's choice: their hash is keyed */
    struct owner **by_held; /* by_held[n]: the owners holding n logins (oldest first) */
    struct owner **by_held_tail;
    size_t by_held_len;
    size_t most; /* the largest n with an owner */
};

void sg_loginaddr_of(const struct sockaddr *sa, struct sg_loginaddr *out)
{
    static const unsigned char v4_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(out, 0, sizeof(*out));
    if (sa != NULL && sa->sa_family == AF_INET) {
        memcpy(out->bytes, v4_prefix, sizeof(v4_prefix));
        memcpy(out->bytes + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa != NULL && sa->sa_family == AF_INET6) {
        const unsigned char *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        memcpy(out->bytes, a, memcmp(a, v4_prefix, sizeof(v4_prefix)) == 0 ? 16 : 8);
    }
}

void sg_loginaddr_format(const struct sg_loginaddr *a, char out[SG_LOGINADDR_TEXT_SIZE])
{
    static const unsigned char v4_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    char text[INET6_ADDRSTRLEN];
    if (memcmp(a->bytes, v4_prefix, sizeof(v4_prefix)) == 0) {
        inet_ntop(AF_INET, a->bytes + 12, text, sizeof(text));
        snprintf(out, SG_LOGINADDR_TEXT_SIZE, "%s", text);
    } else {
        inet_ntop(AF_INET6, a->bytes, text, sizeof(text));
        snprintf(out, SG_LOGINADDR_TEXT_SIZE, "%s/64", text);
    }
}

struct sg_loginflight *sg_loginflight_new(void)
{
    struct sg_loginflight *lf = sg_calloc(1, sizeof(*lf));
    lf->entry_buckets = BUCKETS_MIN;
    lf->entries = sg_calloc(lf->entry_buckets, sizeof(*lf->entries));
    lf->owner_buckets = BUCKETS_MIN;
    lf->owners = sg_calloc(lf->owner_buckets, sizeof(*lf->owners));
    sg_random_bytes(&lf->seed, sizeof(lf->seed));
    return lf;
}

void sg_loginflight_free(struct sg_loginflight *lf)
{
    if (lf == NULL)
        return;
    for (struct entry *e = lf->oldest, *next; e != NULL; e = next) {
        next = e->newer;
        free(e);
    }
    for (size_t i = 0; i < lf->owner_buckets; i++) {
        for (struct owner *o = lf->owners[i], *next; o != NULL; o = next) {
            next = o->chain;
            free(o);
        }
    }
    free(lf->entries);
    free(lf->owners);
    free(lf->by_held);
    free(lf->by_held_tail);
    free(lf);
}

static struct entry **entry_slot(struct sg_loginflight *lf, const char *state)
{
    size_t b = (size_t)sg_hash_bytes(0, state, SG_LOGINSTATE_TOKEN_LEN) & (lf->entry_buckets - 1);
    struct entry **at = &lf->entries[b];
    while (*at != NULL && !sg_memeq_ct((*at)->state, state, SG_LOGINSTATE_TOKEN_LEN))
        at = &(*at)->chain;
    return at;
}

static struct owner **owner_slot(const struct sg_loginflight *lf, const struct sg_loginaddr *addr)
{
    size_t b =
        (size_t)sg_hash_bytes(lf->seed, addr->bytes, sizeof(addr->bytes)) & (lf->owner_buckets - 1);
    struct owner **at = &lf->owners[b];
    while (*at != NULL && memcmp((*at)->addr.bytes, addr->bytes, sizeof(addr->bytes)) != 0)
        at = &(*at)->chain;
    return at;
}

/* Doubles the buckets of entries once there are more entries than buckets. */
static void entries_grow(struct sg_loginflight *lf)
{
    free(lf->entries);
    lf->entry_buckets *= 2;
    lf->entries = sg_calloc(lf->entry_buckets, sizeof(*lf->entries));
    for (struct entry *e = lf->oldest; e != NULL; e = e->newer) {
        struct entry **at = entry_slot(lf, e->state);
        e->chain = NULL;
        *at = e;
    }
}

/* Doubles the buckets of owners once there are more owners than buckets. */
static void owners_grow(struct sg_loginflight *lf)
{
    struct owner **old = lf->owners;
    size_t old_count = lf->owner_buckets;
    lf->owner_buckets *= 2;
    lf->owners = sg_calloc(lf->owner_buckets, sizeof(*lf->owners));
    for (size_t i = 0; i < old_count; i++) {
        for (struct owner *o = old[i], *next; o != NULL; o = next) {
            next = o->chain;
            struct owner **at = owner_slot(lf, &o->addr);
            o->chain = NULL;
            *at = o;
        }
    }
    free(old);
}

/* Takes o out of the list of the owners holding as many logins as it does. */
static void held_unlink(struct sg_loginflight *lf, struct owner *o)
{
    if (o->prev != NULL)
        o->prev->next = o->next;
    else
        lf->by_held[o->held] = o->next;
    if (o->next != NULL)
        o->next->prev = o->prev;
    else
        lf->by_held_tail[o->held] = o->prev;
    o->prev = o->next = NULL;
}

/* Puts o last in the list of the owners holding as many logins as it does. */
static void held_link(struct sg_loginflight *lf, struct owner *o)
{
    if (o->held >= lf->by_held_len) {
        size_t len = lf->by_held_len ? lf->by_held_len * 2 : 16;
        lf->by_held = sg_realloc(lf->by_held, len * sizeof(*lf->by_held));
        lf->by_held_tail = sg_realloc(lf->by_held_tail, len * sizeof(*lf->by_held_tail));
        memset(lf->by_held + lf->by_held_len, 0, (len - lf->by_held_len) * sizeof(*lf->by_held));
        memset(lf->by_held_tail + lf->by_held_len, 0,
               (len - lf->by_held_len) * sizeof(*lf->by_held_tail));
        lf->by_held_len = len;
    }
    o->prev = lf->by_held_tail[o->held];
    if (o->prev != NULL)
        o->prev->next = o;
    else
        lf->by_held[o->held] = o;
    lf->by_held_tail[o->held] = o;
    if (o->held > lf->most)
        lf->most = o->held;
}

void sg_loginflight_add(struct sg_loginflight *lf, const char *state,
                        const struct sg_loginaddr *addr, int64_t created, size_t max)
{
    if (*entry_slot(lf, state) != NULL)
        return;
    struct owner **oat = owner_slot(lf, addr);
    struct owner *o = *oat;
    if (o == NULL) {
        o = sg_calloc(1, sizeof(*o));
        o->addr = *addr;
        *oat = o;
        if (++lf->owner_count > lf->owner_buckets)
            owners_grow(lf);
    } else {
        held_unlink(lf, o);
    }
    o->held++;
    held_link(lf, o);

    struct entry *e = sg_calloc(1, sizeof(*e));
    memcpy(e->state, state, SG_LOGINSTATE_TOKEN_LEN);
    e->created = created;
    e->owner = o;
    e->prev_of = o->newest;
    if (o->newest != NULL)
        o->newest->next_of = e;
    else
        o->oldest = e;
    o->newest = e;
    e->older = lf->newest;
    if (lf->newest != NULL)
        lf->newest->newer = e;
    else
        lf->oldest = e;
    lf->newest = e;
    *entry_slot(lf, state) = e;
    if (++lf->count > lf->entry_buckets)
        entries_grow(lf);
    while (lf->count > max)
        sg_loginflight_remove(lf, lf->oldest->state);
}

/* Forgets the entry *at points at, and its owner once it holds no other. */
static void entry_drop(struct sg_loginflight *lf, struct entry **at)
{
    struct entry *e = *at;
    *at = e->chain;
    if (e->older != NULL)
        e->older->newer = e->newer;
    else
        lf->oldest = e->newer;
    if (e->newer != NULL)
        e->newer->older = e->older;
    else
        lf->newest = e->older;
    lf->count--;

    struct owner *o = e->owner;
    if (e->prev_of != NULL)
        e->prev_of->next_of = e->next_of;
    else
        o->oldest = e->next_of;
    if (e->next_of != NULL)
        e->next_of->prev_of = e->prev_of;
    else
        o->newest = e->prev_of;
    free(e);

    held_unlink(lf, o);
    /* A count moves by one: the largest empties only into the one below it. */
    if (o->held == lf->most && lf->by_held[o->held] == NULL)
        lf->most--;
    if (--o->held > 0) {
        held_link(lf, o);
        return;
    }
    struct owner **oat = owner_slot(lf, &o->addr);
    *oat = o->chain;
    lf->owner_count--;
    free(o);
}

void sg_loginflight_remove(struct sg_loginflight *lf, const char *state)
{
    if (state == NULL || strnlen(state, SG_LOGINSTATE_TOKEN_LEN + 1) != SG_LOGINSTATE_TOKEN_LEN)
        return;
    struct entry **at = entry_slot(lf, state);
    if (*at != NULL)
        entry_drop(lf, at);
}

void sg_loginflight_expire(struct sg_loginflight *lf, int64_t now, size_t max)
{
    for (size_t n = 0; n < max && lf->oldest != NULL; n++) {
        if (lf->oldest->created > now - SG_LOGINSTATE_TTL_S)
            return;
        sg_loginflight_remove(lf, lf->oldest->state);
    }
}

size_t sg_loginflight_count(const struct sg_loginflight *lf)
{
    return lf->count;
}

size_t sg_loginflight_held(const struct sg_loginflight *lf, const struct sg_loginaddr *addr)
{
    const struct owner *o = *owner_slot(lf, addr);
    return o != NULL ? o->held : 0;
}

bool sg_loginflight_evict(struct sg_loginflight *lf, const struct sg_loginaddr *newcomer,
                          char state[SG_LOGINSTATE_TOKEN_SIZE], struct sg_loginaddr *addr,
                          size_t *held)
{
    if (lf->most == 0)
        return false;
    struct owner *o = *owner_slot(lf, newcomer);
    if (o == NULL || o->held < lf->most)
        o = lf->by_held[lf->most];
    memcpy(state, o->oldest->state, SG_LOGINSTATE_TOKEN_SIZE);
    *addr = o->addr;
    *held = o->held;
    sg_loginflight_remove(lf, state);
    return true;
}
