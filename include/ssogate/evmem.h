/*
 * libevent's memory: a free list per size class in front of malloc,
 * installed with event_set_mem_functions (nginx's pools and h2o's mem
 * caches play the same part). A proxied request makes 25 allocations and
 * 25 frees inside libevent: the request object, a copy of every header
 * name and value, buffer chains of 1 to 8 KiB. glibc's tcache keeps at
 * most seven blocks of a size and none above 1032 bytes, so most of them
 * went through _int_malloc and _int_free: with the gateway's own, malloc,
 * calloc and free took a fifth of its user-space instructions per request
 * (bench/profile --callgrind).
 *
 * Blocks up to 64 KiB come in 23 classes (32, 48, 64, 96, ... 65536 bytes:
 * each power of two and the midpoint above it); a freed block goes to its
 * class's list, which holds at most 512 KiB and 1024 blocks, the rest going
 * back to malloc. Larger blocks go straight to malloc. Each block carries a
 * 16-byte header (its class and a mark), so that a double free or a pointer
 * that is not the allocator's aborts at once with a message rather than
 * corrupting the heap. Under AddressSanitizer a cached block is poisoned and
 * the lists hand blocks out oldest first, so that a use after free inside
 * the lists' depth is still reported.
 *
 * One process, one thread: the lists are not locked.
 */
#ifndef SSOGATE_EVMEM_H
#define SSOGATE_EVMEM_H

#include <stddef.h>

/* Makes libevent allocate here. Call before any libevent function
 * allocates (first thing in main); once only. */
void sg_evmem_install(void);

/*
 * Takes a string that a libevent function returned for its caller to free
 * (evhttp_htmlescape): returns a copy from malloc, to be
 * freed with free(), and releases the original with the allocator libevent
 * used. NULL gives NULL.
 */
char *sg_evmem_take(char *s);

/* The allocator itself (what libevent calls once installed; also for the
 * tests). malloc and realloc return NULL when malloc does. */
void *sg_evmem_malloc(size_t size);
void *sg_evmem_realloc(void *ptr, size_t size);
void sg_evmem_free(void *ptr);

/* For the gateway's own short-lived memory (a request's target, its
 * proxy state): as sg_malloc, sg_calloc, sg_realloc and sg_strndup, out
 * of memory aborting; freed with sg_evmem_free, never free(). */
void *sg_evmem_alloc(size_t size);
void *sg_evmem_zalloc(size_t size);
void *sg_evmem_grow(void *ptr, size_t size);
char *sg_evmem_strndup(const char *s, size_t n);

/* What the lists hold now. */
struct sg_evmem_stats {
    size_t cached_blocks;
    size_t cached_bytes;
};
void sg_evmem_stats(struct sg_evmem_stats *out);

/* Gives every cached block back to malloc. */
void sg_evmem_trim(void);

#endif
