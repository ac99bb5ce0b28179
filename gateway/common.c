#include "ssogate/common.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct {
    int code;
    const char *text;
} error_texts[] = {
    {SG_OK, "success"},
    {SG_EINVAL, "invalid input"},
    {SG_ENOENT, "not found"},
    {SG_EEXIST, "already exists"},
    {SG_EIO, "input/output error"},
    {SG_ETOOBIG, "too large"},
    {SG_ECRYPTO, "cryptographic failure"},
    {SG_ECONFIG, "configuration refused"},
    {SG_ESTORE, "store failure"},
    {SG_ETIMEOUT, "timed out"},
    {SG_EUPSTREAM, "peer failed"},
    {SG_EUNAVAILABLE, "shared store unavailable"},
    {SG_ENOSPACE, "no space left on the store's filesystem"},
    {SG_EENDED, "ended by a logout"},
};

const char *sg_strerror(int err)
{
    for (size_t i = 0; i < SG_ARRAY_LEN(error_texts); i++) {
        if (error_texts[i].code == err)
            return error_texts[i].text;
    }
    return "unknown error";
}

size_t sg_utf8_sequence(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xbf;
    size_t n;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        lo = c == 0xe0 ? 0xa0 : lo;
        hi = c == 0xed ? 0x9f : hi;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        lo = c == 0xf0 ? 0x90 : lo;
        hi = c == 0xf4 ? 0x8f : hi;
    } else {
        return 0;
    }
    if (len < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    }
    return n;
}

bool sg_utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t k = sg_utf8_sequence(u + i, len - i);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

void sg_out_of_memory(size_t size)
{
    fprintf(stderr, "ssogate: out of memory allocating %zu bytes\n", size);
    abort();
}

void *sg_malloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL)
        sg_out_of_memory(size);
    return p;
}

void *sg_calloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (p == NULL)
        sg_out_of_memory(count * size);
    return p;
}

void *sg_realloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);
    if (p == NULL)
        sg_out_of_memory(size);
    return p;
}

char *sg_strdup(const char *s)
{
    return sg_strndup(s, strlen(s));
}

char *sg_strndup(const char *s, size_t n)
{
    char *p = sg_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void sg_errbuf(char *buf, size_t len, const char *fmt, ...)
{
    if (buf == NULL || len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

char *sg_asprintf(const char *fmt, ...)
{
    char small[1024]; /* one pass for the URLs and forms of a login (about 400 bytes) */
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    char *p = sg_malloc((size_t)n + 1);
    if ((size_t)n < sizeof(small)) {
        memcpy(p, small, (size_t)n + 1);
        return p;
    }
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

int64_t sg_now_s(void)
{
    return (int64_t)time(NULL);
}

int64_t sg_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int sg_memeq_ct(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}

uint64_t sg_hash_bytes(uint64_t seed, const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ull ^ seed;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

void sg_random_bytes(void *buf, size_t len)
{
    if (RAND_bytes(buf, (int)len) != 1) {
        fprintf(stderr, "ssogate: RAND_bytes failed\n");
        abort();
    }
}

void sg_sha256(const void *data, size_t len, unsigned char out[SG_SHA256_LEN])
{
    /* Fetched once, and one context kept (one thread a process): SHA256() fetches the
     * implementation on every call (OpenSSL 3) and EVP_Digest makes and frees a context, each
     * of which costs more than hashing a session id. */
    static EVP_MD *md;
    static EVP_MD_CTX *ctx;
    if (md == NULL)
        md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (ctx == NULL)
        ctx = EVP_MD_CTX_new();
    if (md == NULL || ctx == NULL || EVP_DigestInit_ex2(ctx, md, NULL) != 1 ||
        EVP_DigestUpdate(ctx, data, len) != 1 || EVP_DigestFinal_ex(ctx, out, NULL) != 1) {
        fprintf(stderr, "ssogate: SHA-256 failed\n");
        abort();
    }
}

int sg_hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void sg_hex_encode(const unsigned char *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

char *sg_percent_encode(const char *s, bool space_as_plus)
{
    size_t len = strlen(s);
    if (len > (SIZE_MAX - 1) / 3)
        sg_out_of_memory(SIZE_MAX);
    char *out = sg_malloc(3 * len + 1), *at = out;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (sg_is_unreserved(*p)) {
            *at++ = (char)*p;
        } else if (*p == ' ' && space_as_plus) {
            *at++ = '+';
        } else {
            sg_percent_byte(*p, at);
            at += 3;
        }
    }
    *at = '\0';
    return out;
}
