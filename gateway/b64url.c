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

/* Each byte's 6-bit value in the URL-safe alphabet, XX (bit 7 set) for every
 * other byte: OR-ing the values of a text tells whether any was outside it. */
#define XX 0x80
static const unsigned char b64url_values[256] = {
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, 62, XX, XX,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, XX, XX, XX, XX, XX, XX, XX, 0,  1,  2,  3,  4,  5,  6,
    7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, XX, XX, XX, XX, 63,
    XX, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48,
    49, 50, 51, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
};

static unsigned b64url_value(unsigned char c)
{
    return b64url_values[c];
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
    const unsigned char *p = (const unsigned char *)in;
    size_t rem = len % 4;
    if (rem == 1)
        return SG_EINVAL;
    size_t need = len / 4 * 3 + (rem ? rem - 1 : 0);
    if (need > out_size) {
        for (size_t i = 0; i < len; i++) {
            if (b64url_value(p[i]) & XX)
                return SG_EINVAL;
        }
        return SG_ETOOBIG;
    }
    unsigned bad = 0; /* the OR of every value: XX set when a character was outside the alphabet */
    size_t o = 0, i = 0;
    for (; i + 4 <= len; i += 4) {
        unsigned a = b64url_value(p[i]), b = b64url_value(p[i + 1]);
        unsigned c = b64url_value(p[i + 2]), d = b64url_value(p[i + 3]);
        bad |= a | b | c | d;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | d;
        out[o++] = (unsigned char)(v >> 16);
        out[o++] = (unsigned char)(v >> 8);
        out[o++] = (unsigned char)v;
    }
    if (rem >= 2) {
        unsigned a = b64url_value(p[i]), b = b64url_value(p[i + 1]);
        unsigned c = rem == 3 ? b64url_value(p[i + 2]) : 0;
        bad |= a | b | c;
        /* The unused low bits of the last character must be zero, else two
         * texts would decode to the same bytes. */
        if ((rem == 2 ? b & 15 : c & 3) != 0)
            bad |= XX;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6;
        out[o++] = (unsigned char)(v >> 16);
        if (rem == 3)
            out[o++] = (unsigned char)(v >> 8);
    }
    if (bad & XX)
        return SG_EINVAL;
    *out_len = o;
    return 0;
}
