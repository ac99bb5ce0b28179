#include "ssogate/evmem.h"

#include "ssogate/common.h"

#include <event2/event.h>
#include <sanitizer/asan_interface.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define EVMEM_OLDEST_FIRST 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EVMEM_OLDEST_FIRST 1
#endif
#endif
#ifndef EVMEM_OLDEST_FIRST
#define EVMEM_OLDEST_FIRST 0
#endif

#define MIN_SHIFT   5  /* the smallest class: 32 bytes */
#define MAX_SHIFT   16 /* the largest: 64 KiB */
#define CLASSES     (2 * (MAX_SHIFT - MIN_SHIFT) + 1)
#define LARGE       UINT32_MAX
#define LIST_BYTES  (512 * 1024)
#define LIST_BLOCKS 1024
#define MARK_LIVE   0x4c4d4753u /* "SGML" */
#define MARK_CACHED 0x434d4753u /* "SGMC" */

struct head {
    union {
        struct head *next; /* while cached */
        size_t size;       /* a large block's */
    } u;
    uint32_t cls;
    uint32_t mark;
};

_Static_assert(sizeof(struct head) == 16, "the header keeps malloc's 16-byte alignment");

struct list {
    struct head *first, *last;
    size_t count;
};

static struct list lists[CLASSES];
static bool installed;

/* Each class's size, and how many of its blocks its list keeps. */
#define CLASS(bytes)                                                                               \
    {                                                                                              \
        (bytes), LIST_BYTES / (bytes) < LIST_BLOCKS ? LIST_BYTES / (bytes) : LIST_BLOCKS           \
    }
static const struct {
    size_t bytes;
    size_t keep;
} classes[CLASSES] = {
    CLASS(32),    CLASS(48),    CLASS(64),    CLASS(96),    CLASS(128),   CLASS(192),
    CLASS(256),   CLASS(384),   CLASS(512),   CLASS(768),   CLASS(1024),  CLASS(1536),
    CLASS(2048),  CLASS(3072),  CLASS(4096),  CLASS(6144),  CLASS(8192),  CLASS(12288),
    CLASS(16384), CLASS(24576), CLASS(32768), CLASS(49152), CLASS(65536),
};

static size_t capacity(uint32_t cls)
{
    return classes[cls].bytes;
}

/* The smallest class that holds size bytes (size at most 64 KiB): a power
 * of two is class 2 * (log2 - 5), the midpoint below it one less. */
static uint32_t class_of(size_t size)
{
    if (size <= (size_t)1 << MIN_SHIFT)
        return 0;
    /* size is in (2^(bits-1), 2^bits]; the midpoint class is 3 * 2^(bits-2). */
    unsigned bits = 64 - (unsigned)__builtin_clzll((unsigned long long)(size - 1));
    uint32_t cls = 2 * (bits - MIN_SHIFT);
    return size <= (size_t)3 << (bits - 2) ? cls - 1 : cls;
}

static struct head *head_of(void *ptr, const char *what)
{
    struct head *h = (struct head *)ptr - 1;
    if (h->mark != MARK_LIVE) {
        fprintf(stderr, "ssogate: %s of %p: %s\n", what, ptr,
                h->mark == MARK_CACHED ? "already freed" : "not allocated by sg_evmem");
        abort();
    }
    return h;
}

static void *block_new(uint32_t cls, size_t size)
{
    struct head *h = malloc(sizeof(*h) + size);
    if (h == NULL)
        return NULL;
    h->cls = cls;
    h->mark = MARK_LIVE;
    if (cls == LARGE)
        h->u.size = size;
    return h + 1;
}

void *sg_evmem_malloc(size_t size)
{
    if (size > (size_t)1 << MAX_SHIFT)
        return block_new(LARGE, size);
    uint32_t cls = class_of(size);
    struct list *l = &lists[cls];
    struct head *h = l->first;
    if (h == NULL)
        return block_new(cls, capacity(cls));
    l->first = h->u.next;
    if (l->first == NULL)
        l->last = NULL;
    l->count--;
    h->mark = MARK_LIVE;
    ASAN_UNPOISON_MEMORY_REGION(h + 1, capacity(cls));
    return h + 1;
}

void sg_evmem_free(void *ptr)
{
    if (ptr == NULL)
        return;
    struct head *h = head_of(ptr, "free");
    if (h->cls == LARGE || lists[h->cls].count >= classes[h->cls].keep) {
        h->mark = 0;
        free(h);
        return;
    }
    struct list *l = &lists[h->cls];
    h->mark = MARK_CACHED;
    ASAN_POISON_MEMORY_REGION(ptr, capacity(h->cls));
    if (EVMEM_OLDEST_FIRST && l->last != NULL) {
        h->u.next = NULL;
        l->last->u.next = h;
        l->last = h;
    } else {
        h->u.next = l->first;
        l->first = h;
        if (l->last == NULL)
            l->last = h;
    }
    l->count++;
}

void *sg_evmem_realloc(void *ptr, size_t size)
{
    if (ptr == NULL)
        return sg_evmem_malloc(size);
    struct head *h = head_of(ptr, "realloc");
    bool large = size > (size_t)1 << MAX_SHIFT;
    if (h->cls == LARGE && large) {
        struct head *grown = realloc(h, sizeof(*h) + size);
        if (grown == NULL)
            return NULL;
        grown->u.size = size;
        return grown + 1;
    }
    size_t have = h->cls == LARGE ? h->u.size : capacity(h->cls);
    if (h->cls != LARGE && size <= have)
        return ptr;
    void *moved = sg_evmem_malloc(size);
    if (moved == NULL)
        return NULL;
    memcpy(moved, ptr, have < size ? have : size);
    sg_evmem_free(ptr);
    return moved;
}

static void *or_abort(void *p, size_t size)
{
    if (p == NULL)
        sg_out_of_memory(size);
    return p;
}

void *sg_evmem_alloc(size_t size)
{
    return or_abort(sg_evmem_malloc(size), size);
}

void *sg_evmem_zalloc(size_t size)
{
    return memset(sg_evmem_alloc(size), 0, size);
}

void *sg_evmem_grow(void *ptr, size_t size)
{
    return or_abort(sg_evmem_realloc(ptr, size), size);
}

char *sg_evmem_strndup(const char *s, size_t n)
{
    char *copy = sg_evmem_alloc(n + 1);
    memcpy(copy, s, n);
    copy[n] = '\0';
    return copy;
}

void sg_evmem_install(void)
{
    if (installed)
        abort();
    event_set_mem_functions(sg_evmem_malloc, sg_evmem_realloc, sg_evmem_free);
    installed = true;
}

char *sg_evmem_take(char *s)
{
    if (s == NULL)
        return NULL;
    char *copy = sg_strdup(s);
    if (installed)
        sg_evmem_free(s);
    else
        free(s);
    return copy;
}

void sg_evmem_stats(struct sg_evmem_stats *out)
{
    out->cached_blocks = 0;
    out->cached_bytes = 0;
    for (uint32_t cls = 0; cls < CLASSES; cls++) {
        out->cached_blocks += lists[cls].count;
        out->cached_bytes += lists[cls].count * capacity(cls);
    }
}

void sg_evmem_trim(void)
{
    for (uint32_t cls = 0; cls < CLASSES; cls++) {
        struct head *h = lists[cls].first;
        while (h != NULL) {
            struct head *next = h->u.next;
            ASAN_UNPOISON_MEMORY_REGION(h + 1, capacity(cls));
            free(h);
            h = next;
        }
        lists[cls] = (struct list){0};
    }
}
