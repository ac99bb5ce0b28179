/*
 * base64url (RFC 4648 section 5) without padding, strict on decode. See
 * include/ssogate/b64url.h for the contracts.
 */
#include "ssogate/b64url.h"

#include "ssogate/common.h"

#include <stdint.h>
#include <stdlib.h>

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* The 6-bit value of c, or -1 when c is not in the URL-safe alphabet. */
static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

int sg_b64url_encode(const void *in, size_t len, char *out, size_t out_size)
{
    const unsigned char *p = in;
    if (len > (SIZE_MAX - 4) / 4 * 3 || out_size < SG_B64URL_ENCODED_LEN(len) + 1)
        return SG_ETOOBIG;
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = b64url_alphabet[v >> 18];
        out[o++] = b64url_alphabet[(v >> 12) & 63];
        out[o++] = b64url_alphabet[(v >> 6) & 63];
        out[o++] = b64url_alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = b64url_alphabet[v >> 18];
        out[o++] = b64url_alphabet[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = b64url_alphabet[v >> 18];
        out[o++] = b64url_alphabet[(v >> 12) & 63];
        out[o++] = b64url_alphabet[(v >> 6) & 63];
    }
    out[o] = '\0';
    return 0;
}

char *sg_b64url_encode_alloc(const void *in, size_t len)
{
    if (len > (SIZE_MAX - 4) / 4 * 3)
        abort();
    size_t size = SG_B64URL_ENCODED_LEN(len) + 1;
    char *out = sg_malloc(size);
    if (sg_b64url_encode(in, len, out, size) != 0)
        abort();
    return out;
}

int sg_b64url_decode(const char *in, size_t len, unsigned char *out, size_t out_size,
                     size_t *out_len)
{
    size_t rem = len % 4;
    if (rem == 1)
        return SG_EINVAL;
    size_t need = len / 4 * 3 + (rem ? rem - 1 : 0);
    for (size_t i = 0; i < len; i++) {
        if (b64url_value((unsigned char)in[i]) < 0)
            return SG_EINVAL;
    }
    /* The unused low bits of the last character must be zero, else two texts
     * would decode to the same bytes. */
    if (rem == 2 && (b64url_value((unsigned char)in[len - 1]) & 15) != 0)
        return SG_EINVAL;
    if (rem == 3 && (b64url_value((unsigned char)in[len - 1]) & 3) != 0)
        return SG_EINVAL;
    if (need > out_size)
        return SG_ETOOBIG;
    size_t o = 0, i = 0;
    for (; i + 4 <= len; i += 4) {
        uint32_t v = (uint32_t)b64url_value((unsigned char)in[i]) << 18 |
                     (uint32_t)b64url_value((unsigned char)in[i + 1]) << 12 |
                     (uint32_t)b64url_value((unsigned char)in[i + 2]) << 6 |
                     (uint32_t)b64url_value((unsigned char)in[i + 3]);
        out[o++] = (unsigned char)(v >> 16);
        out[o++] = (unsigned char)(v >> 8);
        out[o++] = (unsigned char)v;
    }
    if (rem >= 2) {
        uint32_t v = (uint32_t)b64url_value((unsigned char)in[i]) << 18 |
                     (uint32_t)b64url_value((unsigned char)in[i + 1]) << 12;
        if (rem == 3)
            v |= (uint32_t)b64url_value((unsigned char)in[i + 2]) << 6;
        out[o++] = (unsigned char)(v >> 16);
        if (rem == 3)
            out[o++] = (unsigned char)(v >> 8);
    }
    *out_len = o;
    return 0;
}
