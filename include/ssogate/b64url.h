/*
 * base64url (RFC 4648 section 5, no padding): JWS parts, JWK members, random
 * tokens and the PKCE challenge. Decoding is strict and bounded, and never
 * reads past the length it is given.
 */
#ifndef SSOGATE_B64URL_H
#define SSOGATE_B64URL_H

#include <stddef.h>

/* Length of the encoding of n bytes, without the NUL. */
#define SG_B64URL_ENCODED_LEN(n) (((n) / 3) * 4 + ((n) % 3 ? (n) % 3 + 1 : 0))

/*
 * Encodes len bytes of in into out, NUL-terminated. Returns 0, or SG_ETOOBIG
 * when out_size < SG_B64URL_ENCODED_LEN(len) + 1. in and out are borrowed.
 */
int sg_b64url_encode(const void *in, size_t len, char *out, size_t out_size);

/* Same, into a new string the caller owns (frees with free()). */
char *sg_b64url_encode_alloc(const void *in, size_t len);

/*
 * Decodes len characters of in (no NUL needed) into out. Strict: only the
 * URL-safe alphabet, no padding, no whitespace, len % 4 != 1, and the unused
 * low bits of the last character must be zero (one encoding per value).
 * Returns 0 and sets *out_len; SG_EINVAL on malformed input; SG_ETOOBIG when
 * the result would not fit in out_size bytes (out is untouched then; after
 * SG_EINVAL its bytes are unspecified). in and out are borrowed.
 */
int sg_b64url_decode(const char *in, size_t len, unsigned char *out, size_t out_size,
                     size_t *out_len);

#endif
