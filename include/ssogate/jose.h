/*
 * JOSE for the OpenID Connect relying party and the identity assertion: JWK
 * sets (RFC 7517), compact JWS verify and sign (RFC 7515, RFC 7518, RFC 8037),
 * our own keys as PEM files, ID token claim checks (OpenID Connect Core
 * 3.1.3.7) and JWK thumbprints (RFC 7638). base64url is in b64url.h, the JSON
 * parser in json.h, random tokens and PKCE in token.h.
 *
 * Everything that reads untrusted input is bounded by the SG_JOSE_* limits and
 * never reads past the length it is given. Verification returns a status enum;
 * every value maps to one log reason (_str) and one metric label (_name).
 */
#ifndef SSOGATE_JOSE_H
#define SSOGATE_JOSE_H

#include <openssl/types.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#define SG_JOSE_MAX_TOKEN     16384        /* bytes of a compact JWS */
#define SG_JOSE_MAX_JWKS      (256 * 1024) /* bytes of a JWKS document */
#define SG_JOSE_MAX_KEYS      64           /* entries of a JWKS "keys" array */
#define SG_JOSE_MAX_KID       256          /* bytes of a "kid" */
#define SG_JOSE_RSA_MIN_BITS  2048
#define SG_JOSE_RSA_MAX_BITS  8192 /* bounds the cost of one verification */
#define SG_JWK_THUMBPRINT_LEN 43   /* base64url of a SHA-256, without NUL */

/* What went wrong while reading a JWKS or a key file. Any function taking one
 * accepts NULL. */
struct sg_jose_error {
    char where[64];    /* e.g. "keys[3]" or a file name */
    char what[192];    /* what is wrong */
    char openssl[256]; /* the OpenSSL error text, "" when OpenSSL said nothing */
};

/* ---- algorithms ---- */

/* Supported JWS algorithms, as bits so that an allow-list is one unsigned. */
enum sg_jws_alg {
    SG_JWS_RS256 = 1u << 0, /* RSASSA-PKCS1-v1_5 SHA-256 */
    SG_JWS_PS256 = 1u << 1, /* RSASSA-PSS SHA-256, MGF1-SHA-256, salt 32 */
    SG_JWS_ES256 = 1u << 2, /* ECDSA P-256 SHA-256, R||S */
    SG_JWS_EDDSA = 1u << 3, /* Ed25519 */
};
#define SG_JWS_ALGS_ALL (SG_JWS_RS256 | SG_JWS_PS256 | SG_JWS_ES256 | SG_JWS_EDDSA)

/* Sets *out from a JOSE "alg" name ("RS256", ...). Returns 0, or SG_EINVAL for
 * any other name, "none" and HS* included. */
int sg_jws_alg_parse(const char *name, enum sg_jws_alg *out);

/* The JOSE name of alg (static), or "?" for a value that is not one alg. */
const char *sg_jws_alg_name(enum sg_jws_alg alg);

/* ---- JWK and JWK sets ---- */

enum sg_jwk_kty {
    SG_JWK_RSA = 1,
    SG_JWK_EC,  /* P-256 only */
    SG_JWK_OKP, /* Ed25519 only */
};

/* A public verification key. All fields are owned by the set holding it. */
struct sg_jwk {
    char *kid; /* NULL when the JWK has none */
    enum sg_jwk_kty kty;
    unsigned alg; /* one enum sg_jws_alg bit, 0 when the JWK names no "alg" */
    char *use;    /* NULL or "sig" */
    EVP_PKEY *pkey;
    EVP_PKEY_CTX *verify_ctx; /* for ES256 (EC) and RS256 (RSA), made with pkey; may be NULL */
};

/* A key set. Read-only once built; keys[0..count) are usable keys. */
struct sg_jwk_set {
    struct sg_jwk *keys;
    size_t count;
    size_t skipped; /* JWKS entries left out (see sg_jwk_set_parse) */
};

/*
 * Parses a JWKS document (at most SG_JOSE_MAX_JWKS bytes, at most
 * SG_JOSE_MAX_KEYS entries). Entries that cannot serve to verify a JWS are
 * skipped and counted, not fatal: "use" other than "sig", "key_ops" without
 * "verify", an unknown kty, crv or alg, private key members, an RSA modulus
 * outside [SG_JOSE_RSA_MIN_BITS, SG_JOSE_RSA_MAX_BITS], an EC point not on the
 * curve, malformed members. When entries were skipped, err describes the first
 * one. Returns 0 and hands back *out (free with sg_jwk_set_free), possibly with
 * no key; SG_ETOOBIG; SG_EINVAL when the document is not a JSON object with a
 * "keys" array (err says why). json is borrowed.
 */
int sg_jwk_set_parse(const char *json, size_t len, struct sg_jwk_set **out,
                     struct sg_jose_error *err);

/* An empty set, to fill with sg_jwk_set_add. Free with sg_jwk_set_free. */
struct sg_jwk_set *sg_jwk_set_new(void);

/*
 * Adds the public half of pkey (EC P-256, Ed25519 or RSA of a supported size)
 * under kid (may be NULL). pkey and kid are borrowed: the set keeps its own
 * copies. Returns 0, SG_EINVAL for an unsupported key, SG_ETOOBIG when the set
 * is full.
 */
int sg_jwk_set_add(struct sg_jwk_set *set, EVP_PKEY *pkey, const char *kid);

/* NULL-safe. */
void sg_jwk_set_free(struct sg_jwk_set *set);

/*
 * The key a JWS with header kid (NULL when it has none) and alg should be
 * verified with. With a kid: the first key of that kid that suits alg, else
 * the first key of that kid (sg_jws_verify then reports KEY_MISMATCH), else
 * NULL. Without a kid: the one key that suits alg when there is exactly one,
 * else NULL. Borrowed from set.
 */
const struct sg_jwk *sg_jwk_set_find(const struct sg_jwk_set *set, const char *kid,
                                     enum sg_jws_alg alg);

/* Whether key may verify alg: kty fits alg and the key's own alg, if any, is alg. */
bool sg_jwk_suits(const struct sg_jwk *key, enum sg_jws_alg alg);

/*
 * Writes the public JWK of pkey as one JSON object into g: kty and its public
 * members, "kid" when kid is not NULL, "use":"sig" and the "alg" the key signs
 * with (RS256 for RSA). Returns 0 or SG_EINVAL for an unsupported key. All
 * borrowed.
 */
int sg_jwk_export_gen(yajl_gen g, EVP_PKEY *pkey, const char *kid);

/* The same object as a new string the caller owns, or NULL for an unsupported key. */
char *sg_jwk_export_json(EVP_PKEY *pkey, const char *kid);

/* {"keys":[...]} with every key of set, as a new string the caller owns. */
char *sg_jwk_set_export_json(const struct sg_jwk_set *set);

/*
 * The RFC 7638 thumbprint of pkey's public key (SHA-256, base64url), usable as
 * a kid: writes SG_JWK_THUMBPRINT_LEN characters and a NUL into out. Returns 0,
 * or SG_EINVAL for an unsupported key.
 */
int sg_jwk_thumbprint(EVP_PKEY *pkey, char out[SG_JWK_THUMBPRINT_LEN + 1]);

/* ---- JWS verification ---- */

enum sg_jws_status {
    SG_JWS_OK = 0,
    SG_JWS_MALFORMED,        /* not three base64url parts */
    SG_JWS_TOO_BIG,          /* longer than SG_JOSE_MAX_TOKEN */
    SG_JWS_BAD_HEADER,       /* header not a JSON object, no string alg, non-string kid */
    SG_JWS_ALG_NONE,         /* alg "none" */
    SG_JWS_ALG_NOT_ALLOWED,  /* HS*, unsupported, or not in the caller's allow-list */
    SG_JWS_FORBIDDEN_HEADER, /* jku, x5u, jwk or x5c: keys come only from our JWKS */
    SG_JWS_CRIT,             /* any crit: we understand no extension */
    SG_JWS_KID_UNKNOWN,      /* no key for that kid, or no kid and no single suitable key */
    SG_JWS_KEY_MISMATCH,     /* the kid's key is of another type or alg */
    SG_JWS_BAD_SIGNATURE,    /* signature does not verify */
    SG_JWS_BAD_PAYLOAD,      /* payload not a JSON object */
    SG_JWS_STATUS_COUNT
};

/* One human-readable reason per status, for logs (static). */
const char *sg_jws_status_str(enum sg_jws_status status);

/* One short snake_case label per status, for metrics (static). */
const char *sg_jws_status_name(enum sg_jws_status status);

/* What sg_jws_verify hands back. Initialize to all zero; release with sg_jws_result_clear. */
struct sg_jws_result {
    yajl_val header;          /* owned; set once the header parsed, even on a later failure */
    yajl_val claims;          /* owned; set only on SG_JWS_OK */
    const struct sg_jwk *key; /* borrowed from the key set; set only on SG_JWS_OK */
    enum sg_jws_alg alg;      /* set only on SG_JWS_OK */
};

/* Frees what result holds and zeroes it. NULL-safe. */
void sg_jws_result_clear(struct sg_jws_result *result);

/*
 * Verifies a compact JWS of len bytes (no NUL needed) against keys, accepting
 * only the algorithms in allowed_algs (enum sg_jws_alg bits). The payload must
 * be a JSON object. token and keys are borrowed; result is filled as its
 * comment says and must be cleared by the caller whatever the status.
 */
enum sg_jws_status sg_jws_verify(const char *token, size_t len, const struct sg_jwk_set *keys,
                                 unsigned allowed_algs, struct sg_jws_result *result);

/* ---- JWS signing and our own keys ---- */

/* The alg pkey signs with: ES256 for EC P-256, EdDSA for Ed25519. Returns 0 or SG_EINVAL. */
int sg_jose_key_alg(EVP_PKEY *pkey, enum sg_jws_alg *out);

/*
 * A signing context for pkey, made once and kept beside it for sg_jws_sign: OpenSSL 3 otherwise
 * fetches the algorithms and builds a context for every signature, about a sixth of an ES256
 * signature's cost. NULL for an Ed25519 key (it signs the message itself, not a digest) and when
 * OpenSSL refuses. The caller frees it with EVP_PKEY_CTX_free; it holds a reference to pkey.
 */
EVP_PKEY_CTX *sg_jws_sign_ctx_new(EVP_PKEY *pkey);

/*
 * Signs payload (len bytes, normally a JSON object) with pkey (EC P-256 or
 * Ed25519) as a compact JWS with header {"alg":..,"kid":..,"typ":"JWT"} ("kid"
 * left out when kid is NULL). prepared is pkey's sg_jws_sign_ctx_new or NULL
 * (the same signature, at a higher cost). Returns 0 and hands back *out (the
 * caller frees it); SG_EINVAL for an unsupported key; SG_ECRYPTO. All inputs
 * borrowed.
 */
int sg_jws_sign(EVP_PKEY *pkey, EVP_PKEY_CTX *prepared, const char *kid, const char *payload,
                size_t len, char **out);

/* Generates a new private key for alg (SG_JWS_ES256 or SG_JWS_EDDSA). Returns 0
 * and hands back *out (EVP_PKEY_free), or SG_EINVAL / SG_ECRYPTO. */
int sg_jose_key_generate(enum sg_jws_alg alg, EVP_PKEY **out);

/*
 * Reads an unencrypted PEM private key (EC P-256 or Ed25519) from path. This
 * is file I/O: call it at start-up or reload, never on the event loop.
 * Returns 0 and hands back *out (EVP_PKEY_free); SG_ENOENT when the file does
 * not exist; SG_EIO; SG_EINVAL for a key that is not PEM or not supported.
 */
int sg_jose_key_load_pem(const char *path, EVP_PKEY **out, struct sg_jose_error *err);

/*
 * Writes pkey as a PKCS#8 PEM file at path, mode 0600, through a temporary
 * file renamed into place. Returns 0 or SG_EIO. Borrowed.
 */
int sg_jose_key_save_pem(const char *path, EVP_PKEY *pkey, struct sg_jose_error *err);

/*
 * Loads the key at path, or when there is none, generates one for alg and
 * saves it there. Returns 0 and hands back *out (EVP_PKEY_free), or the error
 * of the step that failed.
 */
int sg_jose_key_load_or_create(const char *path, enum sg_jws_alg alg, EVP_PKEY **out,
                               struct sg_jose_error *err);

/* ---- ID token claims ---- */

/* What an ID token must show. Strings are borrowed. */
struct sg_jwt_expect {
    const char *issuer;    /* "iss" must equal it */
    const char *client_id; /* must be in "aud"; "azp" must equal it when present */
    const char *nonce;     /* "nonce" must equal it; NULL when the request sent none */
    int64_t now;           /* seconds since the epoch */
    int64_t skew_s;        /* clock skew tolerated on exp, iat and nbf */
    int64_t max_iat_age_s; /* iat at most this old (plus skew); 0 = no bound */
};

enum sg_jwt_status {
    SG_JWT_OK = 0,
    SG_JWT_NOT_OBJECT,      /* claims are not a JSON object */
    SG_JWT_ISS_MISSING,     /* no string "iss" */
    SG_JWT_ISS_MISMATCH,    /* "iss" is not the expected issuer */
    SG_JWT_AUD_MISSING,     /* no "aud", or neither a string nor an array of strings */
    SG_JWT_AUD_MISMATCH,    /* client_id not in "aud" */
    SG_JWT_AZP_MISSING,     /* several audiences and no string "azp" */
    SG_JWT_AZP_MISMATCH,    /* "azp" is not client_id */
    SG_JWT_EXP_MISSING,     /* no "exp" */
    SG_JWT_EXP_INVALID,     /* "exp" not a non-negative integer in range */
    SG_JWT_EXPIRED,         /* now >= exp + skew */
    SG_JWT_IAT_MISSING,     /* no "iat" */
    SG_JWT_IAT_INVALID,     /* "iat" not a non-negative integer in range */
    SG_JWT_IAT_FUTURE,      /* iat > now + skew */
    SG_JWT_IAT_TOO_OLD,     /* iat < now - max_iat_age - skew */
    SG_JWT_NBF_INVALID,     /* "nbf" present but not a non-negative integer in range */
    SG_JWT_NBF_FUTURE,      /* nbf > now + skew */
    SG_JWT_NONCE_MISSING,   /* a nonce was sent and the token has no string "nonce" */
    SG_JWT_NONCE_MISMATCH,  /* "nonce" differs */
    SG_JWT_SUB_MISSING,     /* no non-empty string "sub" */
    SG_JWT_NONCE_PRESENT,   /* a logout token holds a "nonce" */
    SG_JWT_EVENTS_MISSING,  /* a logout token without the back-channel logout event */
    SG_JWT_JTI_MISSING,     /* a logout token without a non-empty string "jti" */
    SG_JWT_SID_SUB_MISSING, /* a logout token with neither a string "sid" nor "sub" */
    SG_JWT_STATUS_COUNT
};

/* The event member of a back-channel logout token's "events" claim. */
#define SG_JWT_BACKCHANNEL_LOGOUT_EVENT "http://schemas.openid.net/event/backchannel-logout"

/*
 * Checks the claims of a verified logout token (OpenID Connect Back-Channel
 * Logout 1.0, 2.6): iss, aud (and azp) and iat as for an ID token, exp when
 * present (not expired), nbf when present, a non-empty jti, "events" an object whose
 * SG_JWT_BACKCHANNEL_LOGOUT_EVENT member is an object, a non-empty "sid" or
 * "sub" (strings when present), and no "nonce". expect->nonce is ignored.
 */
enum sg_jwt_status sg_jwt_validate_logout_token(yajl_val claims,
                                                const struct sg_jwt_expect *expect);

/* One human-readable reason per status, for logs (static). */
const char *sg_jwt_status_str(enum sg_jwt_status status);

/* One short snake_case label per status, for metrics (static). */
const char *sg_jwt_status_name(enum sg_jwt_status status);

/* Largest time claim accepted: 9999-12-31T23:59:59Z. */
#define SG_JWT_MAX_TIME INT64_C(253402300799)

/*
 * Checks the claims of an ID token (OpenID Connect Core 3.1.3.7, items 2-3,
 * 9-11) against expect, in the order of the enum. claims and expect borrowed.
 */
enum sg_jwt_status sg_jwt_validate_id_token(yajl_val claims, const struct sg_jwt_expect *expect);

/* The string claim name, or NULL when absent or not a string. Borrowed from claims. */
const char *sg_jwt_claim_string(yajl_val claims, const char *name);

/* Sets *out from the boolean claim name. Returns 0, SG_ENOENT when absent,
 * SG_EINVAL when not a boolean. */
int sg_jwt_claim_bool(yajl_val claims, const char *name, bool *out);

/* Sets *out from a time claim (integer in [0, SG_JWT_MAX_TIME]). Returns 0,
 * SG_ENOENT when absent, SG_EINVAL otherwise. */
int sg_jwt_claim_time(yajl_val claims, const char *name, int64_t *out);

/*
 * Collects the claim name when it is a string or an array of strings (as
 * "amr" or "aud"): up to max pointers into out, borrowed from claims, count in
 * *count. Returns 0, SG_ENOENT when absent, SG_EINVAL when of another type or
 * holding a non-string, SG_ETOOBIG when it has more than max values.
 */
int sg_jwt_claim_strings(yajl_val claims, const char *name, const char **out, size_t max,
                         size_t *count);

/* Whether the claim name is the string value, or an array holding it. */
bool sg_jwt_claim_contains(yajl_val claims, const char *name, const char *value);

#endif
