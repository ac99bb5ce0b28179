/*
 * The unguessable values the gateway mints (login state, nonce, PKCE verifier,
 * session ids, CSRF tokens, assertion jti) and the PKCE S256 challenge derived
 * from a verifier (RFC 7636).
 */
#ifndef SSOGATE_TOKEN_H
#define SSOGATE_TOKEN_H

#include <stddef.h>

#define SG_PKCE_CHALLENGE_LEN 43

/*
 * Writes nbytes (1 to 512) random bytes from sg_random_bytes as base64url and a
 * NUL into out: state, nonce, PKCE verifier (32 bytes give a 43-character
 * verifier). Returns 0, SG_EINVAL for a bad nbytes, SG_ETOOBIG when out_size is
 * smaller than SG_B64URL_ENCODED_LEN(nbytes) + 1. out is borrowed.
 */
int sg_random_token(size_t nbytes, char *out, size_t out_size);

/*
 * sg_random_token for count tokens of nbytes each (count * nbytes at most 512),
 * drawn at once: outs[i] gets the i-th, each out_size bytes. Returns as
 * sg_random_token. outs is borrowed.
 */
int sg_random_tokens(size_t nbytes, char *const outs[], size_t count, size_t out_size);

/*
 * Writes the S256 code challenge of verifier (len bytes, 43 to 128 characters
 * of [A-Za-z0-9-._~]) and a NUL into out. Returns 0, or SG_EINVAL for a
 * malformed verifier. verifier is borrowed.
 */
int sg_pkce_challenge_s256(const char *verifier, size_t len, char out[SG_PKCE_CHALLENGE_LEN + 1]);

#endif
