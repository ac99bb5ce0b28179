/*
 * The gateway's own signing key: it signs X-SSO-Assertion, and its public
 * half (with the key a reload retired, while assertions it signed are still
 * valid) is published at /_sso/jwks.json.
 */
#ifndef SSOGATE_SIGNER_H
#define SSOGATE_SIGNER_H

#include <openssl/types.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct sg_config;

/* The key that signs X-SSO-Assertion. */
struct sg_signer {
    EVP_PKEY *key;          /* owned; NULL once cleared */
    EVP_PKEY_CTX *sign_ctx; /* owned: sg_jws_sign_ctx_new(key), NULL for a retired key */
    char kid[64];
    const char *alg; /* "ES256" or "EdDSA" (static) */
};

/*
 * Loads cfg's assertion.key_file, or the key kept in the data directory
 * (assertion-key.pem, created as P-256 on first use). cfg is borrowed.
 * Returns 0 and fills *out (release with sg_signer_clear), or an error with a
 * reason in errbuf.
 */
int sg_signer_load(const struct sg_config *cfg, struct sg_signer *out, char *errbuf, size_t errlen);

/* Releases the signer's key. Safe on a cleared signer. */
void sg_signer_clear(struct sg_signer *signer);

/*
 * Loads the key the gateway authenticates itself with at the token endpoint
 * (idp.client_key_file, when idp.token_auth is private_key_jwt: EC P-256,
 * Ed25519 or RSA of 2048 bits or more), its kid the RFC 7638 thumbprint.
 * Without private_key_jwt *out is left empty (key NULL). Returns 0, or an
 * error with a reason in errbuf.
 */
int sg_signer_load_client(const struct sg_config *cfg, struct sg_signer *out, char *errbuf,
                          size_t errlen);

/*
 * Makes *retired a second reference to current's key (borrowed; its key gets
 * one more reference), releasing the key *retired held before.
 */
void sg_signer_retire(struct sg_signer *retired, const struct sg_signer *current);

/*
 * Appends to out the JWKS of current and, when it has a key, a kid of its own
 * and retired_until is after now, of retired. All borrowed.
 */
void sg_signer_publish(const struct sg_signer *current, const struct sg_signer *retired,
                       int64_t retired_until, int64_t now, struct evbuffer *out);

#endif
