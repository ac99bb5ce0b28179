/*
 * The gateway's own signing key: it signs X-SSO-Assertion, and its public
 * half (with the keys reloads retired, while assertions they signed are still
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

/* Keys reloads replaced, each published until the assertions it signed have expired. */
#define SG_RETIRED_MAX 8

struct sg_retired {
    struct sg_signer keys[SG_RETIRED_MAX]; /* key NULL: an empty place */
    int64_t until[SG_RETIRED_MAX];
};

/*
 * Keeps a second reference to key (borrowed; its key gets one more
 * reference), without its signing context, published until until: in
 * place of an entry of the same kid, else of an expired or empty one, else
 * of the one due soonest (a warning: more than SG_RETIRED_MAX keys retired
 * within one assertion lifetime).
 */
void sg_retired_add(struct sg_retired *retired, const struct sg_signer *key, int64_t until,
                    int64_t now);

/* Releases every retired key. */
void sg_retired_clear(struct sg_retired *retired);

/*
 * Appends to out the JWKS of current and of each retired key whose until is
 * after now and whose kid is not current's. All borrowed.
 */
void sg_signer_publish(const struct sg_signer *current, const struct sg_retired *retired,
                       int64_t now, struct evbuffer *out);

#endif
