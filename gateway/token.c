/*
 * Random tokens and the PKCE S256 challenge. See include/ssogate/token.h for
 * the contracts.
 */
#include "ssogate/token.h"

#include "ssogate/b64url.h"
#include "ssogate/common.h"

#include <openssl/crypto.h>

int sg_pkce_challenge_s256(const char *verifier, size_t len, char out[SG_PKCE_CHALLENGE_LEN + 1])
{
    if (len < 43 || len > 128)
        return SG_EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (!sg_is_unreserved((unsigned char)verifier[i])) /* RFC 7636 4.1: unreserved only */
            return SG_EINVAL;
    }
    unsigned char digest[SG_SHA256_LEN];
    sg_sha256(verifier, len, digest);
    return sg_b64url_encode(digest, sizeof(digest), out, SG_PKCE_CHALLENGE_LEN + 1);
}

int sg_random_tokens(size_t nbytes, char *const outs[], size_t count, size_t out_size)
{
    unsigned char buf[512];
    if (nbytes == 0 || count == 0 || nbytes > sizeof(buf) / count)
        return SG_EINVAL;
    if (out_size < SG_B64URL_ENCODED_LEN(nbytes) + 1)
        return SG_ETOOBIG;
    /* One draw for all: each RAND_bytes call costs a getpid(2) (OpenSSL's fork check). */
    sg_random_bytes(buf, nbytes * count);
    int rc = 0;
    for (size_t i = 0; i < count && rc == 0; i++)
        rc = sg_b64url_encode(buf + i * nbytes, nbytes, outs[i], out_size);
    OPENSSL_cleanse(buf, nbytes * count);
    return rc;
}

int sg_random_token(size_t nbytes, char *out, size_t out_size)
{
    return sg_random_tokens(nbytes, &out, 1, out_size);
}
