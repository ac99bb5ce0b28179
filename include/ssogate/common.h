/*
 * Shared definitions: error codes, allocation helpers that abort on out of
 * memory, and small utilities used by every module.
 */
#ifndef SSOGATE_COMMON_H
#define SSOGATE_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Error codes: 0 is success, every failure is one of these (negative). */
enum sg_error {
    SG_OK = 0,
    SG_EINVAL = -1,        /* bad argument or malformed input */
    SG_ENOENT = -2,        /* no such record */
    SG_EEXIST = -3,        /* record exists (one-to-one conflict) */
    SG_EIO = -4,           /* file or store I/O failed */
    SG_ETOOBIG = -5,       /* input exceeds a configured limit */
    SG_ECRYPTO = -6,       /* OpenSSL reported a failure */
    SG_ECONFIG = -7,       /* configuration refused */
    SG_ESTORE = -8,        /* the store backend reported a failure */
    SG_ETIMEOUT = -9,      /* a deadline passed */
    SG_EUPSTREAM = -10,    /* a peer (upstream, IdP) failed */
    SG_EUNAVAILABLE = -11, /* the shared store cannot be reached now */
    SG_ENOSPACE = -12,     /* the store's filesystem is full (or over quota) */
    SG_EENDED = -13        /* a logout ended what this was for while it was in flight */
};

/* Returns a static, human-readable text for an SG_E* code. */
const char *sg_strerror(int err);

/* Says so on stderr and aborts: what every allocation below does when malloc fails. */
_Noreturn void sg_out_of_memory(size_t size);

/* Allocation that never returns NULL: out of memory aborts the process. */
void *sg_malloc(size_t size);
void *sg_calloc(size_t count, size_t size);
void *sg_realloc(void *ptr, size_t size);
char *sg_strdup(const char *s);
char *sg_strndup(const char *s, size_t n);

/* printf into a newly allocated string; the caller owns the result. */
char *sg_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* printf into an error buffer of len bytes (nothing when buf is NULL or len 0). */
void sg_errbuf(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Frees *pp (NULL-safe) and clears the pointer. */
#define SG_FREE(p)                                                                                 \
    do {                                                                                           \
        free(p);                                                                                   \
        (p) = NULL;                                                                                \
    } while (0)

#define SG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* One bit per byte value, the 256 of them in four words known at compile time: a class of bytes
 * tested without a branch (names and values are checked on every request). */
#define SG_BYTE_BIT(c)         ((uint64_t)1 << ((c)&63))
#define SG_BYTE_BITS(from, to) (((uint64_t)2 << ((to)&63)) - SG_BYTE_BIT(from))
static inline bool sg_byte_in(const uint64_t set[4], unsigned char c)
{
    return (set[c >> 6] >> (c & 63)) & 1;
}

/* RFC 9110 5.6.2 tchar, what a header name or a cookie name is made of: "!" / "#" / "$" / "%" /
 * "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA. */
static inline bool sg_is_tchar(unsigned char c)
{
    static const uint64_t tchar[4] = {
        SG_BYTE_BIT('!') | SG_BYTE_BITS('#', '\'') | SG_BYTE_BIT('*') | SG_BYTE_BIT('+') |
            SG_BYTE_BIT('-') | SG_BYTE_BIT('.') | SG_BYTE_BITS('0', '9'),
        SG_BYTE_BITS('A', 'Z') | SG_BYTE_BITS('^', '`') | SG_BYTE_BITS('a', 'z') |
            SG_BYTE_BIT('|') | SG_BYTE_BIT('~'),
    };
    return sg_byte_in(tchar, c);
}

/* RFC 3986 2.3 unreserved: ALPHA / DIGIT / "-" / "." / "_" / "~", what percent-encoding leaves as
 * it is. */
static inline bool sg_is_unreserved(unsigned char c)
{
    static const uint64_t unreserved[4] = {
        SG_BYTE_BIT('-') | SG_BYTE_BIT('.') | SG_BYTE_BITS('0', '9'),
        SG_BYTE_BITS('A', 'Z') | SG_BYTE_BIT('_') | SG_BYTE_BITS('a', 'z') | SG_BYTE_BIT('~'),
    };
    return sg_byte_in(unreserved, c);
}

/* Wall-clock seconds since the epoch, and a monotonic clock in microseconds. */
int64_t sg_now_s(void);
int64_t sg_mono_us(void);

/* Constant-time comparison of two byte strings of equal length. */
int sg_memeq_ct(const void *a, const void *b, size_t len);

/* Fills buf with len cryptographically random bytes (OpenSSL RAND); aborts on failure. */
void sg_random_bytes(void *buf, size_t len);

/* FNV-1a of len bytes from seed, finished with a 64-bit mixer (MurmurHash3's): for hash tables;
 * keys a client chooses (addresses) take a random seed. */
uint64_t sg_hash_bytes(uint64_t seed, const void *data, size_t len);

#define SG_SHA256_LEN 32

/* The SHA-256 of len bytes of data into out, as SHA256() but without its per-call fetch. */
void sg_sha256(const void *data, size_t len, unsigned char out[SG_SHA256_LEN]);

/* Writes 2*len lowercase hex digits and a NUL into out (size >= 2*len+1). */
void sg_hex_encode(const unsigned char *in, size_t len, char *out);

/* The value of one hex digit (either case), or -1. */
int sg_hex_value(unsigned char c);

/* The length of the well-formed UTF-8 sequence (RFC 3629: no overlong form, no surrogate, nothing
 * past U+10FFFF) s starts with, len (at least 1) bytes left; 0 when it starts none. */
size_t sg_utf8_sequence(const unsigned char *s, size_t len);

/* True when len bytes of s are well-formed UTF-8. */
bool sg_utf8_valid(const char *s, size_t len);

/* Writes byte v percent-encoded ("%XY", uppercase hex, RFC 3986 2.1) into out, no NUL. */
static inline void sg_percent_byte(unsigned char v, char out[3])
{
    static const char digits[] = "0123456789ABCDEF";
    out[0] = '%';
    out[1] = digits[v >> 4];
    out[2] = digits[v & 15];
}

/*
 * s percent-encoded (RFC 3986 section 2.1, uppercase hex) in a new string: every byte but the
 * unreserved characters, and with space_as_plus a space as "+" (form encoding). The same output
 * as evhttp_uriencode(s, -1, space_as_plus), without a printf call per encoded byte.
 */
char *sg_percent_encode(const char *s, bool space_as_plus);

#endif
