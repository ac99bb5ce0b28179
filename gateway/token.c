/*
 * Random tokens and the PKCE S256 challenge. See include/ssogate/token.h for
 * the contracts.
 */
#include "ssogate/token.h"

#include "ssogate/b64url.h"
#include "ssogate/common.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdbool.h>

static bool pkce_unreserved(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

int sg_pkce_challenge_s256(const char *verifier, size_t len, char out[SG_PKCE_CHALLENGE_LEN + 1])
{
    if (len < 43 || len > 128)
        return SG_EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (!pkce_unreserved(verifier[i]))
            return SG_EINVAL;
    }
    unsigned char digest[32];
    unsigned int digest_len = 0;
    if (EVP_Digest(verifier, len, digest, &digest_len, EVP_sha256(), NULL) != 1) {
        ERR_clear_error();
        return SG_ECRYPTO;
    }
    return sg_b64url_encode(digest, digest_len, out, SG_PKCE_CHALLENGE_LEN + 1);
}

int sg_random_token(size_t nbytes, char *out, size_t out_size)
{
    unsigned char buf[512];
    if (nbytes == 0 || nbytes > sizeof(buf))
        return SG_EINVAL;
    if (out_size < SG_B64URL_ENCODED_LEN(nbytes) + 1)
        return SG_ETOOBIG;
    sg_random_bytes(buf, nbytes);
    int rc = sg_b64url_encode(buf, nbytes, out, out_size);
    OPENSSL_cleanse(buf, nbytes);
    return rc;
}
