/*
 * RFC 6238 TOTP codes (HMAC-SHA-1, 30-second steps, 6 digits) for the load
 * tool, which types the IdP's second factor as a user's authenticator would.
 */
#ifndef SSOGATE_BENCH_TOTP_H
#define SSOGATE_BENCH_TOTP_H

#include <stddef.h>
#include <stdint.h>

/* Longest shared secret accepted, in bytes once decoded (RFC 4226 asks for at least 16). */
#define SG_TOTP_SECRET_MAX 64

/*
 * Decodes an RFC 4648 base32 secret (upper or lower case, '=' padding and
 * spaces ignored) into out (out_size bytes). Returns the decoded length, or
 * SG_EINVAL for a character outside the alphabet, an empty secret, or one
 * that does not fit.
 */
int sg_totp_base32_decode(const char *text, unsigned char *out, size_t out_size);

/*
 * Writes the 6-digit code of key (borrowed, key_len bytes) for Unix time
 * unix_s into code (7 bytes, NUL-terminated). Returns 0 or SG_ECRYPTO.
 */
int sg_totp_code(const unsigned char *key, size_t key_len, int64_t unix_s, char code[7]);

#endif
