/*
 * JOSE: JWK sets, JWS verify/sign, our own PEM keys, ID token claims and
 * thumbprints. See include/ssogate/jose.h for the contracts.
 *
 * Untrusted input is checked before anything costly: sizes first, then
 * structure, then the header, then the key, and only then the signature.
 */
#include "ssogate/jose.h"

#include "ssogate/b64url.h"
#include "ssogate/common.h"
#include "ssogate/json.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- error record ---- */

static void jose_set_error(struct sg_jose_error *err, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void jose_set_error(struct sg_jose_error *err, const char *where, const char *fmt, ...)
{
    unsigned long code = ERR_peek_last_error();
    if (err == NULL) {
        ERR_clear_error();
        return;
    }
    snprintf(err->where, sizeof(err->where), "%s", where);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->what, sizeof(err->what), fmt, ap);
    va_end(ap);
    err->openssl[0] = '\0';
    if (code != 0)
        ERR_error_string_n(code, err->openssl, sizeof(err->openssl));
    ERR_clear_error();
}

/* ---- base64url into a new buffer ---- */

/* Decodes into a new buffer of at most max bytes; the caller frees *out. */
static int b64url_decode_alloc(const char *in, size_t len, size_t max, unsigned char **out,
                               size_t *out_len)
{
    size_t size = len / 4 * 3 + 2;
    if (size > max)
        size = max;
    unsigned char *buf = sg_malloc(size);
    int rc = sg_b64url_decode(in, len, buf, size, out_len);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    return 0;
}

/* ---- algorithms ---- */

static const struct {
    enum sg_jws_alg alg;
    const char *name;
} alg_names[] = {
    {SG_JWS_RS256, "RS256"},
    {SG_JWS_PS256, "PS256"},
    {SG_JWS_ES256, "ES256"},
    {SG_JWS_EDDSA, "EdDSA"},
};

int sg_jws_alg_parse(const char *name, enum sg_jws_alg *out)
{
    for (size_t i = 0; i < SG_ARRAY_LEN(alg_names); i++) {
        if (strcmp(name, alg_names[i].name) == 0) {
            *out = alg_names[i].alg;
            return 0;
        }
    }
    return SG_EINVAL;
}

const char *sg_jws_alg_name(enum sg_jws_alg alg)
{
    for (size_t i = 0; i < SG_ARRAY_LEN(alg_names); i++) {
        if (alg_names[i].alg == alg)
            return alg_names[i].name;
    }
    return "?";
}

static bool kty_suits(enum sg_jwk_kty kty, enum sg_jws_alg alg)
{
    switch (alg) {
    case SG_JWS_RS256:
    case SG_JWS_PS256:
        return kty == SG_JWK_RSA;
    case SG_JWS_ES256:
        return kty == SG_JWK_EC;
    case SG_JWS_EDDSA:
        return kty == SG_JWK_OKP;
    }
    return false;
}

bool sg_jwk_suits(const struct sg_jwk *key, enum sg_jws_alg alg)
{
    return kty_suits(key->kty, alg) && (key->alg == 0 || key->alg == (unsigned)alg);
}

/* ---- building EVP keys from public parameters ---- */

static EVP_PKEY *pkey_from_params(const char *type, OSSL_PARAM *params)
{
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    return pkey;
}

/* An RSA public key from big-endian n and e, or NULL with *why set. */
static EVP_PKEY *rsa_public_key(const unsigned char *n, size_t n_len, const unsigned char *e,
                                size_t e_len, const char **why)
{
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    BIGNUM *bn_n = BN_bin2bn(n, (int)n_len, NULL);
    BIGNUM *bn_e = BN_bin2bn(e, (int)e_len, NULL);
    if (bn_n == NULL || bn_e == NULL) {
        *why = "RSA parameters unreadable";
        goto end;
    }
    int bits = BN_num_bits(bn_n);
    if (bits < SG_JOSE_RSA_MIN_BITS || bits > SG_JOSE_RSA_MAX_BITS) {
        *why = "RSA modulus size not allowed";
        goto end;
    }
    /* A 64-bit cap on e keeps verification cheap; e must be odd and > 1. */
    if (!BN_is_odd(bn_n) || !BN_is_odd(bn_e) || BN_is_one(bn_e) || BN_num_bits(bn_e) > 64) {
        *why = "RSA parameters invalid";
        goto end;
    }
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) != 1 ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL) {
        *why = "RSA parameters unreadable";
        goto end;
    }
    pkey = pkey_from_params("RSA", params);
    if (pkey == NULL)
        *why = "RSA key refused by OpenSSL";
end:
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    return pkey;
}

/* A P-256 public key from 32-byte x and y, or NULL with *why set. */
static EVP_PKEY *ec_public_key(const unsigned char *x, const unsigned char *y, const char **why)
{
    unsigned char point[65];
    point[0] = POINT_CONVERSION_UNCOMPRESSED;
    memcpy(point + 1, x, 32);
    memcpy(point + 33, y, 32);
    char group[] = SN_X9_62_prime256v1;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)),
        OSSL_PARAM_construct_end(),
    };
    EVP_PKEY *pkey = pkey_from_params("EC", params);
    if (pkey == NULL) {
        *why = "EC point not on the curve";
        return NULL;
    }
    /* Import already decodes the point; the explicit check also refuses the
     * point at infinity and points outside the prime-order subgroup. */
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (ctx == NULL || EVP_PKEY_public_check(ctx) != 1) {
        *why = "EC point not on the curve";
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    return pkey;
}

/* ---- JWK sets ---- */

static const char *const private_members[] = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"};

/* Decodes the base64url string member name of jwk into exactly want bytes
 * (want 0: 1 to max bytes). */
static int jwk_bytes(yajl_val jwk, const char *name, size_t want, size_t max, unsigned char *out,
                     size_t *out_len)
{
    const char *text = YAJL_GET_STRING(sg_json_member(jwk, name));
    if (text == NULL)
        return SG_EINVAL;
    size_t len = 0;
    if (sg_b64url_decode(text, strlen(text), out, want ? want : max, &len) != 0)
        return SG_EINVAL;
    if ((want && len != want) || len == 0)
        return SG_EINVAL;
    *out_len = len;
    return 0;
}

/* Whether alg signs a SHA-256 digest through a prepared context, when the key has one. */
static bool through_prepared(enum sg_jws_alg alg, const EVP_PKEY_CTX *prepared)
{
    return (alg == SG_JWS_ES256 || alg == SG_JWS_RS256) && prepared != NULL;
}

/*
 * A context that signs (sign) or verifies with pkey a SHA-256 digest as ES256 (EC P-256) or RS256
 * (RSA, PKCS #1 v1.5) do, made once per key: OpenSSL 3 otherwise fetches the algorithms and builds
 * a context for each signature, about a sixth of an ES256 signature's cost. NULL for other keys
 * (Ed25519 signs the message itself) and when OpenSSL refuses; the callers then take the general
 * path.
 */
static EVP_PKEY_CTX *prepared_ctx(EVP_PKEY *pkey, enum sg_jwk_kty kty, bool sign)
{
    if (kty != SG_JWK_EC && kty != SG_JWK_RSA)
        return NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    bool ok = ctx != NULL && (sign ? EVP_PKEY_sign_init(ctx) : EVP_PKEY_verify_init(ctx)) == 1 &&
              EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1 &&
              (kty != SG_JWK_RSA || EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1);
    if (!ok) {
        EVP_PKEY_CTX_free(ctx);
        ERR_clear_error();
        return NULL;
    }
    return ctx;
}

/*
 * Reads one JWKS entry into key. Returns 0, or SG_EINVAL with *why saying why
 * the entry cannot serve (the caller skips it).
 */
static int jwk_read(yajl_val jwk, struct sg_jwk *key, const char **why)
{
    unsigned char n[SG_JOSE_RSA_MAX_BITS / 8], e[8], x[32], y[32];
    size_t n_len = 0, e_len = 0, len = 0;
    memset(key, 0, sizeof(*key));
    if (!YAJL_IS_OBJECT(jwk)) {
        *why = "not an object";
        return SG_EINVAL;
    }
    if (sg_json_has_duplicate_keys(jwk)) {
        *why = "member named twice";
        return SG_EINVAL;
    }
    for (size_t i = 0; i < SG_ARRAY_LEN(private_members); i++) {
        if (sg_json_member(jwk, private_members[i]) != NULL) {
            *why = "holds private key material";
            return SG_EINVAL;
        }
    }
    yajl_val use = sg_json_member(jwk, "use");
    if (use != NULL && (!YAJL_IS_STRING(use) || strcmp(use->u.string, "sig") != 0)) {
        *why = "use is not sig";
        return SG_EINVAL;
    }
    yajl_val ops = sg_json_member(jwk, "key_ops");
    if (ops != NULL && !sg_jwt_claim_contains(jwk, "key_ops", "verify")) {
        *why = "key_ops lacks verify";
        return SG_EINVAL;
    }
    yajl_val kid = sg_json_member(jwk, "kid");
    if (kid != NULL && (!YAJL_IS_STRING(kid) || strlen(kid->u.string) > SG_JOSE_MAX_KID)) {
        *why = "kid not a string of at most 256 bytes";
        return SG_EINVAL;
    }
    enum sg_jws_alg alg = 0;
    yajl_val alg_v = sg_json_member(jwk, "alg");
    if (alg_v != NULL && (!YAJL_IS_STRING(alg_v) || sg_jws_alg_parse(alg_v->u.string, &alg) != 0)) {
        *why = "unsupported alg";
        return SG_EINVAL;
    }
    const char *kty = YAJL_GET_STRING(sg_json_member(jwk, "kty"));
    const char *crv = YAJL_GET_STRING(sg_json_member(jwk, "crv"));
    EVP_PKEY *pkey = NULL;
    if (kty == NULL) {
        *why = "no kty";
        return SG_EINVAL;
    } else if (strcmp(kty, "RSA") == 0) {
        key->kty = SG_JWK_RSA;
        if (jwk_bytes(jwk, "n", 0, sizeof(n), n, &n_len) != 0 ||
            jwk_bytes(jwk, "e", 0, sizeof(e), e, &e_len) != 0) {
            *why = "RSA n or e missing, malformed or too long";
            return SG_EINVAL;
        }
        pkey = rsa_public_key(n, n_len, e, e_len, why);
    } else if (strcmp(kty, "EC") == 0) {
        key->kty = SG_JWK_EC;
        if (crv == NULL || strcmp(crv, "P-256") != 0) {
            *why = "unsupported EC curve";
            return SG_EINVAL;
        }
        if (jwk_bytes(jwk, "x", 32, 32, x, &len) != 0 ||
            jwk_bytes(jwk, "y", 32, 32, y, &len) != 0) {
            *why = "EC x or y missing or not 32 bytes";
            return SG_EINVAL;
        }
        pkey = ec_public_key(x, y, why);
    } else if (strcmp(kty, "OKP") == 0) {
        key->kty = SG_JWK_OKP;
        if (crv == NULL || strcmp(crv, "Ed25519") != 0) {
            *why = "unsupported OKP curve";
            return SG_EINVAL;
        }
        if (jwk_bytes(jwk, "x", 32, 32, x, &len) != 0) {
            *why = "OKP x missing or not 32 bytes";
            return SG_EINVAL;
        }
        pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, 32);
        if (pkey == NULL)
            *why = "Ed25519 key refused by OpenSSL";
    } else {
        *why = "unsupported kty";
        return SG_EINVAL;
    }
    if (pkey == NULL)
        return SG_EINVAL;
    if (alg != 0 && !kty_suits(key->kty, alg)) {
        EVP_PKEY_free(pkey);
        *why = "alg does not fit kty";
        return SG_EINVAL;
    }
    key->pkey = pkey;
    key->verify_ctx = prepared_ctx(pkey, key->kty, false);
    key->alg = alg;
    key->kid = kid != NULL ? sg_strdup(kid->u.string) : NULL;
    key->use = use != NULL ? sg_strdup("sig") : NULL;
    return 0;
}

static void jwk_clear(struct sg_jwk *key)
{
    SG_FREE(key->kid);
    SG_FREE(key->use);
    EVP_PKEY_CTX_free(key->verify_ctx);
    key->verify_ctx = NULL;
    EVP_PKEY_free(key->pkey);
    key->pkey = NULL;
}

struct sg_jwk_set *sg_jwk_set_new(void)
{
    struct sg_jwk_set *set = sg_calloc(1, sizeof(*set));
    set->keys = sg_calloc(SG_JOSE_MAX_KEYS, sizeof(*set->keys));
    return set;
}

void sg_jwk_set_free(struct sg_jwk_set *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->count; i++)
        jwk_clear(&set->keys[i]);
    free(set->keys);
    free(set);
}

int sg_jwk_set_parse(const char *json, size_t len, struct sg_jwk_set **out,
                     struct sg_jose_error *err)
{
    yajl_val doc = NULL;
    struct sg_jwk_set *set = NULL;
    int rc = sg_json_parse_object(json, len, SG_JOSE_MAX_JWKS, &doc);
    if (rc == SG_ETOOBIG) {
        jose_set_error(err, "JWKS", "document larger than %d bytes", SG_JOSE_MAX_JWKS);
        goto end;
    }
    if (rc != 0) {
        jose_set_error(err, "JWKS", "not a JSON object (or nested deeper than %d)",
                       SG_JSON_MAX_DEPTH);
        goto end;
    }
    yajl_val keys = sg_json_member(doc, "keys");
    if (!YAJL_IS_ARRAY(keys)) {
        jose_set_error(err, "JWKS", "no \"keys\" array");
        rc = SG_EINVAL;
        goto end;
    }
    if (keys->u.array.len > SG_JOSE_MAX_KEYS) {
        jose_set_error(err, "JWKS", "more than %d keys", SG_JOSE_MAX_KEYS);
        rc = SG_ETOOBIG;
        goto end;
    }
    set = sg_jwk_set_new();
    for (size_t i = 0; i < keys->u.array.len; i++) {
        const char *why = NULL;
        if (jwk_read(keys->u.array.values[i], &set->keys[set->count], &why) == 0) {
            set->count++;
            continue;
        }
        if (set->skipped++ == 0) {
            char where[32];
            snprintf(where, sizeof(where), "keys[%zu]", i);
            jose_set_error(err, where, "key skipped: %s", why);
        }
        ERR_clear_error();
    }
    *out = set;
    set = NULL;
end:
    sg_jwk_set_free(set);
    yajl_tree_free(doc);
    return rc;
}

/* Which kty pkey is, or 0 when we do not support it. */
static enum sg_jwk_kty pkey_kty(EVP_PKEY *pkey)
{
    if (EVP_PKEY_is_a(pkey, "RSA"))
        return SG_JWK_RSA;
    if (EVP_PKEY_is_a(pkey, "ED25519"))
        return SG_JWK_OKP;
    if (EVP_PKEY_is_a(pkey, "EC")) {
        char group[64];
        if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                           NULL) == 1 &&
            strcmp(group, SN_X9_62_prime256v1) == 0)
            return SG_JWK_EC;
    }
    return 0;
}

int sg_jwk_set_add(struct sg_jwk_set *set, EVP_PKEY *pkey, const char *kid)
{
    enum sg_jwk_kty kty = pkey_kty(pkey);
    if (kty == 0)
        return SG_EINVAL;
    if (kty == SG_JWK_RSA) {
        int bits = EVP_PKEY_get_bits(pkey);
        if (bits < SG_JOSE_RSA_MIN_BITS || bits > SG_JOSE_RSA_MAX_BITS)
            return SG_EINVAL;
    }
    if (set->count >= SG_JOSE_MAX_KEYS)
        return SG_ETOOBIG;
    /* Keep the public half only, so that a set never holds a private key. */
    char *json = sg_jwk_export_json(pkey, kid);
    if (json == NULL)
        return SG_EINVAL;
    yajl_val jwk = NULL;
    int rc = sg_json_parse_object(json, strlen(json), SG_JOSE_MAX_JWKS, &jwk);
    free(json);
    if (rc != 0)
        return SG_EINVAL;
    const char *why = NULL;
    rc = jwk_read(jwk, &set->keys[set->count], &why);
    yajl_tree_free(jwk);
    if (rc != 0) {
        ERR_clear_error();
        return SG_EINVAL;
    }
    set->count++;
    return 0;
}

const struct sg_jwk *sg_jwk_set_find(const struct sg_jwk_set *set, const char *kid,
                                     enum sg_jws_alg alg)
{
    const struct sg_jwk *found = NULL;
    if (set == NULL)
        return NULL;
    if (kid != NULL) {
        for (size_t i = 0; i < set->count; i++) {
            const struct sg_jwk *k = &set->keys[i];
            if (k->kid == NULL || strcmp(k->kid, kid) != 0)
                continue;
            if (sg_jwk_suits(k, alg))
                return k;
            if (found == NULL)
                found = k;
        }
        return found;
    }
    for (size_t i = 0; i < set->count; i++) {
        if (!sg_jwk_suits(&set->keys[i], alg))
            continue;
        if (found != NULL)
            return NULL;
        found = &set->keys[i];
    }
    return found;
}

/* ---- JWK export and thumbprint ---- */

/* The public members of pkey as base64url strings (the caller frees each). */
struct public_members {
    enum sg_jwk_kty kty;
    char *a; /* RSA n, EC/OKP x */
    char *b; /* RSA e, EC y */
};

static void public_members_clear(struct public_members *m)
{
    SG_FREE(m->a);
    SG_FREE(m->b);
}

static char *bn_param_b64(EVP_PKEY *pkey, const char *name, int pad)
{
    BIGNUM *bn = NULL;
    char *text = NULL;
    if (EVP_PKEY_get_bn_param(pkey, name, &bn) != 1)
        return NULL;
    int len = pad ? pad : BN_num_bytes(bn);
    unsigned char *buf = sg_malloc((size_t)len);
    if (BN_bn2binpad(bn, buf, len) == len)
        text = sg_b64url_encode_alloc(buf, (size_t)len);
    free(buf);
    BN_free(bn);
    return text;
}

static int public_members_get(EVP_PKEY *pkey, struct public_members *m)
{
    memset(m, 0, sizeof(*m));
    m->kty = pkey_kty(pkey);
    switch (m->kty) {
    case SG_JWK_RSA:
        m->a = bn_param_b64(pkey, OSSL_PKEY_PARAM_RSA_N, 0);
        m->b = bn_param_b64(pkey, OSSL_PKEY_PARAM_RSA_E, 0);
        break;
    case SG_JWK_EC:
        m->a = bn_param_b64(pkey, OSSL_PKEY_PARAM_EC_PUB_X, 32);
        m->b = bn_param_b64(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
        break;
    case SG_JWK_OKP: {
        unsigned char raw[32];
        size_t raw_len = sizeof(raw);
        if (EVP_PKEY_get_raw_public_key(pkey, raw, &raw_len) == 1 && raw_len == 32)
            m->a = sg_b64url_encode_alloc(raw, raw_len);
        m->b = sg_strdup("");
        break;
    }
    default:
        return SG_EINVAL;
    }
    if (m->a == NULL || m->b == NULL) {
        public_members_clear(m);
        ERR_clear_error();
        return SG_EINVAL;
    }
    return 0;
}

static void gen_string(yajl_gen g, const char *s)
{
    yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

static void gen_pair(yajl_gen g, const char *key, const char *value)
{
    gen_string(g, key);
    gen_string(g, value);
}

int sg_jwk_export_gen(yajl_gen g, EVP_PKEY *pkey, const char *kid)
{
    struct public_members m;
    if (public_members_get(pkey, &m) != 0)
        return SG_EINVAL;
    yajl_gen_map_open(g);
    switch (m.kty) {
    case SG_JWK_RSA:
        gen_pair(g, "kty", "RSA");
        gen_pair(g, "n", m.a);
        gen_pair(g, "e", m.b);
        break;
    case SG_JWK_EC:
        gen_pair(g, "kty", "EC");
        gen_pair(g, "crv", "P-256");
        gen_pair(g, "x", m.a);
        gen_pair(g, "y", m.b);
        gen_pair(g, "alg", "ES256");
        break;
    case SG_JWK_OKP:
        gen_pair(g, "kty", "OKP");
        gen_pair(g, "crv", "Ed25519");
        gen_pair(g, "x", m.a);
        gen_pair(g, "alg", "EdDSA");
        break;
    }
    gen_pair(g, "use", "sig");
    if (kid != NULL)
        gen_pair(g, "kid", kid);
    yajl_gen_map_close(g);
    public_members_clear(&m);
    return 0;
}

/* The text g holds, as a new string. */
static char *gen_take(yajl_gen g)
{
    const unsigned char *buf = NULL;
    size_t len = 0;
    yajl_gen_get_buf(g, &buf, &len);
    return sg_strndup((const char *)buf, len);
}

char *sg_jwk_export_json(EVP_PKEY *pkey, const char *kid)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g == NULL)
        abort();
    char *json = sg_jwk_export_gen(g, pkey, kid) == 0 ? gen_take(g) : NULL;
    yajl_gen_free(g);
    return json;
}

char *sg_jwk_set_export_json(const struct sg_jwk_set *set)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g == NULL)
        abort();
    yajl_gen_map_open(g);
    gen_string(g, "keys");
    yajl_gen_array_open(g);
    for (size_t i = 0; set != NULL && i < set->count; i++)
        sg_jwk_export_gen(g, set->keys[i].pkey, set->keys[i].kid);
    yajl_gen_array_close(g);
    yajl_gen_map_close(g);
    char *json = gen_take(g);
    yajl_gen_free(g);
    return json;
}

int sg_jwk_thumbprint(EVP_PKEY *pkey, char out[SG_JWK_THUMBPRINT_LEN + 1])
{
    struct public_members m;
    if (public_members_get(pkey, &m) != 0)
        return SG_EINVAL;
    /* RFC 7638: the required members only, in lexicographic order, no
     * whitespace. base64url never needs JSON escaping. */
    char *canonical = NULL;
    switch (m.kty) {
    case SG_JWK_RSA:
        canonical = sg_asprintf("{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}", m.b, m.a);
        break;
    case SG_JWK_EC:
        canonical =
            sg_asprintf("{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", m.a, m.b);
        break;
    case SG_JWK_OKP:
        canonical = sg_asprintf("{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"%s\"}", m.a);
        break;
    }
    public_members_clear(&m);
    unsigned char digest[32];
    unsigned int digest_len = 0;
    int ok = canonical != NULL &&
             EVP_Digest(canonical, strlen(canonical), digest, &digest_len, EVP_sha256(), NULL) == 1;
    free(canonical);
    if (!ok) {
        ERR_clear_error();
        return SG_ECRYPTO;
    }
    return sg_b64url_encode(digest, digest_len, out, SG_JWK_THUMBPRINT_LEN + 1);
}

/* ---- JWS verification ---- */

static const struct {
    const char *name;
    const char *reason;
} jws_status_texts[SG_JWS_STATUS_COUNT] = {
    [SG_JWS_OK] = {"ok", "token verified"},
    [SG_JWS_MALFORMED] = {"malformed", "token is not three base64url parts"},
    [SG_JWS_TOO_BIG] = {"too_big", "token exceeds the size limit"},
    [SG_JWS_BAD_HEADER] = {"bad_header", "header is not a JSON object with a string alg"},
    [SG_JWS_ALG_NONE] = {"alg_none", "alg none refused"},
    [SG_JWS_ALG_NOT_ALLOWED] = {"alg_not_allowed", "alg not in the allowed list"},
    [SG_JWS_FORBIDDEN_HEADER] = {"forbidden_header", "header names a key (jku, x5u, jwk, x5c)"},
    [SG_JWS_CRIT] = {"crit", "header has crit extensions"},
    [SG_JWS_KID_UNKNOWN] = {"kid_unknown", "no key for the token's kid"},
    [SG_JWS_KEY_MISMATCH] = {"key_mismatch", "key type or alg does not fit the token's alg"},
    [SG_JWS_BAD_SIGNATURE] = {"bad_signature", "signature does not verify"},
    [SG_JWS_BAD_PAYLOAD] = {"bad_payload", "payload is not a JSON object"},
};

const char *sg_jws_status_str(enum sg_jws_status status)
{
    if ((unsigned)status >= SG_JWS_STATUS_COUNT)
        return "unknown status";
    return jws_status_texts[status].reason;
}

const char *sg_jws_status_name(enum sg_jws_status status)
{
    if ((unsigned)status >= SG_JWS_STATUS_COUNT)
        return "unknown";
    return jws_status_texts[status].name;
}

void sg_jws_result_clear(struct sg_jws_result *result)
{
    if (result == NULL)
        return;
    yajl_tree_free(result->header);
    yajl_tree_free(result->claims);
    memset(result, 0, sizeof(*result));
}

/* JWS ES256 carries R||S; EVP wants a DER ECDSA-Sig-Value. Returns the DER
 * length written into *der (the caller frees it), or 0. */
static int ecdsa_raw_to_der(const unsigned char *raw, unsigned char **der)
{
    int len = 0;
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, 32, NULL);
    BIGNUM *s = BN_bin2bn(raw + 32, 32, NULL);
    if (sig == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(sig, r, s) != 1) {
        BN_free(r);
        BN_free(s);
    } else {
        *der = NULL;
        len = i2d_ECDSA_SIG(sig, der);
        if (len < 0)
            len = 0;
    }
    ECDSA_SIG_free(sig);
    return len;
}

/* Whether sig is alg's signature of input under key. Length checks first so
 * that OpenSSL only sees well-formed signatures. */
static bool signature_verifies(enum sg_jws_alg alg, const struct sg_jwk *key,
                               const unsigned char *input, size_t input_len,
                               const unsigned char *sig, size_t sig_len)
{
    EVP_PKEY *pkey = key->pkey;
    bool ok = false;
    unsigned char *der = NULL;
    const EVP_MD *md = alg == SG_JWS_EDDSA ? NULL : EVP_sha256();
    EVP_PKEY_CTX *pctx = NULL;
    EVP_MD_CTX *ctx = NULL;
    switch (alg) {
    case SG_JWS_RS256:
    case SG_JWS_PS256:
        if (sig_len != (size_t)EVP_PKEY_get_size(pkey))
            goto end;
        break;
    case SG_JWS_ES256: {
        if (sig_len != 64)
            goto end;
        int der_len = ecdsa_raw_to_der(sig, &der);
        if (der_len == 0)
            goto end;
        sig = der;
        sig_len = (size_t)der_len;
        break;
    }
    case SG_JWS_EDDSA:
        if (sig_len != 64)
            goto end;
        break;
    }
    if (through_prepared(alg, key->verify_ctx)) {
        unsigned char digest[SG_SHA256_LEN];
        sg_sha256(input, input_len, digest);
        ok = EVP_PKEY_verify(key->verify_ctx, sig, sig_len, digest, sizeof(digest)) == 1;
        goto end;
    }
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestVerifyInit(ctx, &pctx, md, NULL, pkey) != 1)
        goto end;
    if (alg == SG_JWS_PS256 && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
                                EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) != 1 ||
                                EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) != 1))
        goto end;
    ok = EVP_DigestVerify(ctx, sig, sig_len, input, input_len) == 1;
end:
    OPENSSL_free(der);
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return ok;
}

/* Header checks in the order of enum sg_jws_status; sets *alg on OK. */
static enum sg_jws_status check_header(yajl_val header, unsigned allowed_algs, enum sg_jws_alg *alg,
                                       const char **kid)
{
    static const char *const forbidden[] = {"jku", "x5u", "jwk", "x5c"};
    const char *name = YAJL_GET_STRING(sg_json_member(header, "alg"));
    if (name == NULL)
        return SG_JWS_BAD_HEADER;
    if (strcasecmp(name, "none") == 0)
        return SG_JWS_ALG_NONE;
    if (sg_jws_alg_parse(name, alg) != 0 || (allowed_algs & (unsigned)*alg) == 0)
        return SG_JWS_ALG_NOT_ALLOWED;
    for (size_t i = 0; i < SG_ARRAY_LEN(forbidden); i++) {
        if (sg_json_member(header, forbidden[i]) != NULL)
            return SG_JWS_FORBIDDEN_HEADER;
    }
    if (sg_json_member(header, "crit") != NULL)
        return SG_JWS_CRIT;
    yajl_val kid_v = sg_json_member(header, "kid");
    if (kid_v != NULL && !YAJL_IS_STRING(kid_v))
        return SG_JWS_BAD_HEADER;
    *kid = YAJL_GET_STRING(kid_v);
    return SG_JWS_OK;
}

enum sg_jws_status sg_jws_verify(const char *token, size_t len, const struct sg_jwk_set *keys,
                                 unsigned allowed_algs, struct sg_jws_result *result)
{
    enum sg_jws_status status;
    unsigned char *header_raw = NULL, *payload_raw = NULL, *sig = NULL;
    size_t header_len = 0, payload_len = 0, sig_len = 0;
    yajl_val header = NULL, claims = NULL;
    enum sg_jws_alg alg = 0;
    const char *kid = NULL;
    const struct sg_jwk *key = NULL;
    int rc;

    if (len > SG_JOSE_MAX_TOKEN)
        return SG_JWS_TOO_BIG;
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL)
        return SG_JWS_MALFORMED;
    const char *payload_b64 = dot1 + 1, *sig_b64 = dot2 + 1;
    size_t header_b64_len = (size_t)(dot1 - token);
    size_t payload_b64_len = (size_t)(dot2 - payload_b64);
    size_t sig_b64_len = len - (size_t)(sig_b64 - token);
    if (header_b64_len == 0 || payload_b64_len == 0) {
        status = SG_JWS_MALFORMED;
        goto end;
    }

    if (b64url_decode_alloc(token, header_b64_len, SG_JOSE_MAX_TOKEN, &header_raw, &header_len) !=
        0) {
        status = SG_JWS_MALFORMED;
        goto end;
    }
    if (sg_json_parse_object((const char *)header_raw, header_len, SG_JOSE_MAX_TOKEN, &header) !=
        0) {
        status = SG_JWS_BAD_HEADER;
        goto end;
    }
    result->header = header;
    status = check_header(header, allowed_algs, &alg, &kid);
    if (status != SG_JWS_OK)
        goto end;

    /* 1024 bytes hold the largest RSA signature we accept; a longer one
     * cannot verify. */
    rc = b64url_decode_alloc(sig_b64, sig_b64_len, SG_JOSE_RSA_MAX_BITS / 8, &sig, &sig_len);
    if (rc == SG_ETOOBIG) {
        status = SG_JWS_BAD_SIGNATURE;
        goto end;
    }
    if (rc != 0 || b64url_decode_alloc(payload_b64, payload_b64_len, SG_JOSE_MAX_TOKEN,
                                       &payload_raw, &payload_len) != 0) {
        status = SG_JWS_MALFORMED;
        goto end;
    }

    key = sg_jwk_set_find(keys, kid, alg);
    if (key == NULL) {
        status = SG_JWS_KID_UNKNOWN;
        goto end;
    }
    if (!sg_jwk_suits(key, alg)) {
        status = SG_JWS_KEY_MISMATCH;
        goto end;
    }
    /* The signing input is the ASCII of the first two parts as received. */
    if (!signature_verifies(alg, key, (const unsigned char *)token, (size_t)(dot2 - token), sig,
                            sig_len)) {
        status = SG_JWS_BAD_SIGNATURE;
        goto end;
    }
    if (sg_json_parse_object((const char *)payload_raw, payload_len, SG_JOSE_MAX_TOKEN, &claims) !=
        0) {
        status = SG_JWS_BAD_PAYLOAD;
        goto end;
    }
    result->claims = claims;
    result->key = key;
    result->alg = alg;
    status = SG_JWS_OK;
end:
    free(header_raw);
    free(payload_raw);
    free(sig);
    return status;
}

/* ---- signing and our own keys ---- */

int sg_jose_key_alg(EVP_PKEY *pkey, enum sg_jws_alg *out)
{
    switch (pkey_kty(pkey)) {
    case SG_JWK_EC:
        *out = SG_JWS_ES256;
        return 0;
    case SG_JWK_OKP:
        *out = SG_JWS_EDDSA;
        return 0;
    case SG_JWK_RSA:
        if (EVP_PKEY_get_bits(pkey) < 2048)
            return SG_EINVAL;
        *out = SG_JWS_RS256;
        return 0;
    default:
        return SG_EINVAL;
    }
}

EVP_PKEY_CTX *sg_jws_sign_ctx_new(EVP_PKEY *pkey)
{
    return prepared_ctx(pkey, pkey_kty(pkey), true);
}

/* The signature of input with pkey for alg (ES256 and RS256 through prepared, when not NULL) into
 * a new buffer, as OpenSSL gives it (DER for ES256). */
static int sign_der(enum sg_jws_alg alg, EVP_PKEY *pkey, EVP_PKEY_CTX *prepared, const char *input,
                    size_t input_len, unsigned char **out, size_t *out_len)
{
    int rc = SG_ECRYPTO;
    unsigned char *sig = NULL;
    size_t sig_len = 0;
    EVP_MD_CTX *ctx = NULL;
    if (through_prepared(alg, prepared)) {
        unsigned char digest[SG_SHA256_LEN];
        sg_sha256(input, input_len, digest);
        if (EVP_PKEY_sign(prepared, NULL, &sig_len, digest, sizeof(digest)) != 1)
            goto end;
        sig = sg_malloc(sig_len);
        if (EVP_PKEY_sign(prepared, sig, &sig_len, digest, sizeof(digest)) != 1)
            goto end;
    } else {
        const EVP_MD *md = alg == SG_JWS_EDDSA ? NULL : EVP_sha256();
        ctx = EVP_MD_CTX_new();
        if (ctx == NULL || EVP_DigestSignInit(ctx, NULL, md, NULL, pkey) != 1 ||
            EVP_DigestSign(ctx, NULL, &sig_len, (const unsigned char *)input, input_len) != 1)
            goto end;
        sig = sg_malloc(sig_len);
        if (EVP_DigestSign(ctx, sig, &sig_len, (const unsigned char *)input, input_len) != 1)
            goto end;
    }
    *out = sig;
    *out_len = sig_len;
    sig = NULL;
    rc = 0;
end:
    EVP_MD_CTX_free(ctx);
    free(sig);
    return rc;
}

/* Signs input with pkey for alg into a new buffer (JWS form: R||S for ES256). */
static int sign_raw(enum sg_jws_alg alg, EVP_PKEY *pkey, EVP_PKEY_CTX *prepared, const char *input,
                    size_t input_len, unsigned char **out, size_t *out_len)
{
    unsigned char *sig = NULL;
    size_t sig_len = 0;
    ECDSA_SIG *ecdsa = NULL;
    int rc = sign_der(alg, pkey, prepared, input, input_len, &sig, &sig_len);
    if (rc != 0)
        goto end;
    rc = SG_ECRYPTO;
    if (alg == SG_JWS_ES256) {
        const unsigned char *p = sig;
        const BIGNUM *r = NULL, *s = NULL;
        ecdsa = d2i_ECDSA_SIG(NULL, &p, (long)sig_len);
        if (ecdsa == NULL)
            goto end;
        ECDSA_SIG_get0(ecdsa, &r, &s);
        unsigned char *raw = sg_malloc(64);
        if (BN_bn2binpad(r, raw, 32) != 32 || BN_bn2binpad(s, raw + 32, 32) != 32) {
            free(raw);
            goto end;
        }
        free(sig);
        sig = raw;
        sig_len = 64;
    }
    *out = sig;
    *out_len = sig_len;
    sig = NULL;
    rc = 0;
end:
    ECDSA_SIG_free(ecdsa);
    free(sig);
    ERR_clear_error();
    return rc;
}

int sg_jws_sign(EVP_PKEY *pkey, EVP_PKEY_CTX *prepared, const char *kid, const char *payload,
                size_t len, char **out)
{
    enum sg_jws_alg alg;
    if (sg_jose_key_alg(pkey, &alg) != 0)
        return SG_EINVAL;
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g == NULL)
        abort();
    yajl_gen_map_open(g);
    gen_pair(g, "alg", sg_jws_alg_name(alg));
    if (kid != NULL)
        gen_pair(g, "kid", kid);
    gen_pair(g, "typ", "JWT");
    yajl_gen_map_close(g);
    const unsigned char *header = NULL;
    size_t header_len = 0;
    yajl_gen_get_buf(g, &header, &header_len);
    char *header_b64 = sg_b64url_encode_alloc(header, header_len);
    yajl_gen_free(g);
    char *payload_b64 = sg_b64url_encode_alloc(payload, len);
    char *input = sg_asprintf("%s.%s", header_b64, payload_b64);
    free(header_b64);
    free(payload_b64);

    unsigned char *sig = NULL;
    size_t sig_len = 0;
    int rc = sign_raw(alg, pkey, prepared, input, strlen(input), &sig, &sig_len);
    if (rc == 0) {
        char *sig_b64 = sg_b64url_encode_alloc(sig, sig_len);
        *out = sg_asprintf("%s.%s", input, sig_b64);
        free(sig_b64);
    }
    free(sig);
    free(input);
    return rc;
}

int sg_jose_key_generate(enum sg_jws_alg alg, EVP_PKEY **out)
{
    EVP_PKEY *pkey = NULL;
    if (alg == SG_JWS_ES256)
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", SN_X9_62_prime256v1);
    else if (alg == SG_JWS_EDDSA)
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    else
        return SG_EINVAL;
    if (pkey == NULL) {
        ERR_clear_error();
        return SG_ECRYPTO;
    }
    *out = pkey;
    return 0;
}

/* Refuses to prompt for a passphrase: the default callback would read the tty. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return 0;
}

int sg_jose_key_load_pem(const char *path, EVP_PKEY **out, struct sg_jose_error *err)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        int e = errno;
        jose_set_error(err, path, "cannot open: %s", strerror(e));
        return e == ENOENT ? SG_ENOENT : SG_EIO;
    }
    EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
    fclose(f);
    if (pkey == NULL) {
        jose_set_error(err, path, "not an unencrypted PEM private key");
        return SG_EINVAL;
    }
    enum sg_jws_alg alg;
    if (sg_jose_key_alg(pkey, &alg) != 0) {
        EVP_PKEY_free(pkey);
        jose_set_error(err, path, "key is neither EC P-256, Ed25519 nor RSA of 2048 bits or more");
        return SG_EINVAL;
    }
    *out = pkey;
    return 0;
}

int sg_jose_key_save_pem(const char *path, EVP_PKEY *pkey, struct sg_jose_error *err)
{
    int rc = SG_EIO;
    char *tmp = sg_asprintf("%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (f == NULL) {
        jose_set_error(err, tmp, "cannot create: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        goto end;
    }
    bool written = PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) == 1;
    written = fflush(f) == 0 && fsync(fileno(f)) == 0 && written;
    if (fclose(f) != 0 || !written) {
        jose_set_error(err, tmp, "cannot write the key");
        unlink(tmp);
        goto end;
    }
    if (rename(tmp, path) != 0) {
        jose_set_error(err, path, "cannot rename into place: %s", strerror(errno));
        unlink(tmp);
        goto end;
    }
    rc = 0;
end:
    free(tmp);
    return rc;
}

int sg_jose_key_load_or_create(const char *path, enum sg_jws_alg alg, EVP_PKEY **out,
                               struct sg_jose_error *err)
{
    int rc = sg_jose_key_load_pem(path, out, err);
    if (rc != SG_ENOENT)
        return rc;
    EVP_PKEY *pkey = NULL;
    rc = sg_jose_key_generate(alg, &pkey);
    if (rc != 0) {
        jose_set_error(err, path, "cannot generate a %s key", sg_jws_alg_name(alg));
        return rc;
    }
    rc = sg_jose_key_save_pem(path, pkey, err);
    if (rc != 0) {
        EVP_PKEY_free(pkey);
        return rc;
    }
    *out = pkey;
    return 0;
}

/* ---- ID token claims ---- */

static const struct {
    const char *name;
    const char *reason;
} jwt_status_texts[SG_JWT_STATUS_COUNT] = {
    [SG_JWT_OK] = {"ok", "claims valid"},
    [SG_JWT_NOT_OBJECT] = {"not_object", "claims are not a JSON object"},
    [SG_JWT_ISS_MISSING] = {"iss_missing", "iss missing"},
    [SG_JWT_ISS_MISMATCH] = {"iss_mismatch", "iss is not the expected issuer"},
    [SG_JWT_AUD_MISSING] = {"aud_missing", "aud missing or not strings"},
    [SG_JWT_AUD_MISMATCH] = {"aud_mismatch", "aud does not hold our client_id"},
    [SG_JWT_AZP_MISSING] = {"azp_missing", "several audiences and no azp"},
    [SG_JWT_AZP_MISMATCH] = {"azp_mismatch", "azp is not our client_id"},
    [SG_JWT_EXP_MISSING] = {"exp_missing", "exp missing"},
    [SG_JWT_EXP_INVALID] = {"exp_invalid", "exp is not a valid time"},
    [SG_JWT_EXPIRED] = {"expired", "token expired"},
    [SG_JWT_IAT_MISSING] = {"iat_missing", "iat missing"},
    [SG_JWT_IAT_INVALID] = {"iat_invalid", "iat is not a valid time"},
    [SG_JWT_IAT_FUTURE] = {"iat_future", "iat is in the future"},
    [SG_JWT_IAT_TOO_OLD] = {"iat_too_old", "iat is too old"},
    [SG_JWT_NBF_INVALID] = {"nbf_invalid", "nbf is not a valid time"},
    [SG_JWT_NBF_FUTURE] = {"nbf_future", "token not yet valid (nbf)"},
    [SG_JWT_NONCE_MISSING] = {"nonce_missing", "nonce missing"},
    [SG_JWT_NONCE_MISMATCH] = {"nonce_mismatch", "nonce does not match"},
    [SG_JWT_SUB_MISSING] = {"sub_missing", "sub missing or empty"},
    [SG_JWT_NONCE_PRESENT] = {"nonce_present", "a logout token must not hold a nonce"},
    [SG_JWT_EVENTS_MISSING] = {"events_missing", "no back-channel logout event"},
    [SG_JWT_JTI_MISSING] = {"jti_missing", "jti missing or empty"},
    [SG_JWT_SID_SUB_MISSING] = {"sid_sub_missing", "neither sid nor sub"},
};

const char *sg_jwt_status_str(enum sg_jwt_status status)
{
    if ((unsigned)status >= SG_JWT_STATUS_COUNT)
        return "unknown status";
    return jwt_status_texts[status].reason;
}

const char *sg_jwt_status_name(enum sg_jwt_status status)
{
    if ((unsigned)status >= SG_JWT_STATUS_COUNT)
        return "unknown";
    return jwt_status_texts[status].name;
}

const char *sg_jwt_claim_string(yajl_val claims, const char *name)
{
    return YAJL_GET_STRING(sg_json_member(claims, name));
}

int sg_jwt_claim_bool(yajl_val claims, const char *name, bool *out)
{
    yajl_val v = sg_json_member(claims, name);
    if (v == NULL)
        return SG_ENOENT;
    if (!YAJL_IS_TRUE(v) && !YAJL_IS_FALSE(v))
        return SG_EINVAL;
    *out = YAJL_IS_TRUE(v);
    return 0;
}

int sg_jwt_claim_time(yajl_val claims, const char *name, int64_t *out)
{
    yajl_val v = sg_json_member(claims, name);
    if (v == NULL)
        return SG_ENOENT;
    /* Read the number's own text: yajl's flags would let "-0", "1.0" or
     * "1e9" through one way or another. Only plain digits are a time. */
    if (!YAJL_IS_NUMBER(v) || v->u.number.r == NULL)
        return SG_EINVAL;
    const char *text = v->u.number.r;
    size_t len = strlen(text);
    if (len == 0 || len > 12)
        return SG_EINVAL;
    int64_t t = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return SG_EINVAL;
        t = t * 10 + (text[i] - '0');
    }
    if (t > SG_JWT_MAX_TIME)
        return SG_EINVAL;
    *out = t;
    return 0;
}

int sg_jwt_claim_strings(yajl_val claims, const char *name, const char **out, size_t max,
                         size_t *count)
{
    yajl_val v = sg_json_member(claims, name);
    if (v == NULL)
        return SG_ENOENT;
    if (YAJL_IS_STRING(v)) {
        if (max < 1)
            return SG_ETOOBIG;
        out[0] = v->u.string;
        *count = 1;
        return 0;
    }
    if (!YAJL_IS_ARRAY(v))
        return SG_EINVAL;
    for (size_t i = 0; i < v->u.array.len; i++) {
        if (!YAJL_IS_STRING(v->u.array.values[i]))
            return SG_EINVAL;
    }
    if (v->u.array.len > max)
        return SG_ETOOBIG;
    for (size_t i = 0; i < v->u.array.len; i++)
        out[i] = v->u.array.values[i]->u.string;
    *count = v->u.array.len;
    return 0;
}

bool sg_jwt_claim_contains(yajl_val claims, const char *name, const char *value)
{
    yajl_val v = sg_json_member(claims, name);
    if (YAJL_IS_STRING(v))
        return strcmp(v->u.string, value) == 0;
    if (!YAJL_IS_ARRAY(v))
        return false;
    for (size_t i = 0; i < v->u.array.len; i++) {
        const char *s = YAJL_GET_STRING(v->u.array.values[i]);
        if (s != NULL && strcmp(s, value) == 0)
            return true;
    }
    return false;
}

/* Checks aud and azp (OpenID Connect Core 3.1.3.7 items 3 to 5). */
static enum sg_jwt_status check_audience(yajl_val claims, const char *client_id)
{
    yajl_val aud = sg_json_member(claims, "aud");
    size_t audiences;
    if (YAJL_IS_STRING(aud)) {
        audiences = 1;
    } else if (YAJL_IS_ARRAY(aud) && aud->u.array.len > 0) {
        audiences = aud->u.array.len;
        for (size_t i = 0; i < audiences; i++) {
            if (!YAJL_IS_STRING(aud->u.array.values[i]))
                return SG_JWT_AUD_MISSING;
        }
    } else {
        return SG_JWT_AUD_MISSING;
    }
    if (!sg_jwt_claim_contains(claims, "aud", client_id))
        return SG_JWT_AUD_MISMATCH;
    yajl_val azp = sg_json_member(claims, "azp");
    if (azp == NULL)
        return audiences > 1 ? SG_JWT_AZP_MISSING : SG_JWT_OK;
    if (!YAJL_IS_STRING(azp))
        return SG_JWT_AZP_MISSING;
    return strcmp(azp->u.string, client_id) == 0 ? SG_JWT_OK : SG_JWT_AZP_MISMATCH;
}

/* exp (required, or only checked when present), iat and nbf against expect's clock. */
static enum sg_jwt_status check_times(yajl_val claims, const struct sg_jwt_expect *expect,
                                      bool exp_required)
{
    int64_t exp, iat, nbf;
    int rc = sg_jwt_claim_time(claims, "exp", &exp);
    if (rc == SG_EINVAL || (rc == SG_ENOENT && exp_required))
        return rc == SG_ENOENT ? SG_JWT_EXP_MISSING : SG_JWT_EXP_INVALID;
    if (rc == 0 && expect->now >= exp + expect->skew_s)
        return SG_JWT_EXPIRED;
    rc = sg_jwt_claim_time(claims, "iat", &iat);
    if (rc != 0)
        return rc == SG_ENOENT ? SG_JWT_IAT_MISSING : SG_JWT_IAT_INVALID;
    if (iat > expect->now + expect->skew_s)
        return SG_JWT_IAT_FUTURE;
    if (expect->max_iat_age_s > 0 && iat < expect->now - expect->max_iat_age_s - expect->skew_s)
        return SG_JWT_IAT_TOO_OLD;
    rc = sg_jwt_claim_time(claims, "nbf", &nbf);
    if (rc == SG_EINVAL)
        return SG_JWT_NBF_INVALID;
    if (rc == 0 && nbf > expect->now + expect->skew_s)
        return SG_JWT_NBF_FUTURE;
    return SG_JWT_OK;
}

/* A claim that is absent, or a non-empty string; *out the string or NULL. False otherwise. */
static bool optional_string(yajl_val claims, const char *name, const char **out)
{
    yajl_val v = sg_json_member(claims, name);
    *out = YAJL_IS_STRING(v) && v->u.string[0] != '\0' ? v->u.string : NULL;
    return v == NULL || *out != NULL;
}

/* What every token from the IdP must show: an object from the expected issuer, for us, in time. */
static enum sg_jwt_status check_issued(yajl_val claims, const struct sg_jwt_expect *expect,
                                       bool exp_required)
{
    if (!YAJL_IS_OBJECT(claims))
        return SG_JWT_NOT_OBJECT;
    const char *iss = sg_jwt_claim_string(claims, "iss");
    if (iss == NULL)
        return SG_JWT_ISS_MISSING;
    if (strcmp(iss, expect->issuer) != 0)
        return SG_JWT_ISS_MISMATCH;
    enum sg_jwt_status status = check_audience(claims, expect->client_id);
    if (status != SG_JWT_OK)
        return status;
    return check_times(claims, expect, exp_required);
}

enum sg_jwt_status sg_jwt_validate_logout_token(yajl_val claims, const struct sg_jwt_expect *expect)
{
    enum sg_jwt_status status = check_issued(claims, expect, false);
    if (status != SG_JWT_OK)
        return status;
    if (sg_json_member(claims, "nonce") != NULL)
        return SG_JWT_NONCE_PRESENT;
    yajl_val events = sg_json_member(claims, "events");
    if (!YAJL_IS_OBJECT(events) ||
        !YAJL_IS_OBJECT(sg_json_member(events, SG_JWT_BACKCHANNEL_LOGOUT_EVENT)))
        return SG_JWT_EVENTS_MISSING;
    const char *jti = sg_jwt_claim_string(claims, "jti");
    if (jti == NULL || jti[0] == '\0')
        return SG_JWT_JTI_MISSING;
    const char *sid, *sub;
    if (!optional_string(claims, "sid", &sid) || !optional_string(claims, "sub", &sub) ||
        (sid == NULL && sub == NULL))
        return SG_JWT_SID_SUB_MISSING;
    return SG_JWT_OK;
}

enum sg_jwt_status sg_jwt_validate_id_token(yajl_val claims, const struct sg_jwt_expect *expect)
{
    enum sg_jwt_status status = check_issued(claims, expect, true);
    if (status != SG_JWT_OK)
        return status;
    if (expect->nonce != NULL) {
        const char *nonce = sg_jwt_claim_string(claims, "nonce");
        if (nonce == NULL)
            return SG_JWT_NONCE_MISSING;
        size_t len = strlen(expect->nonce);
        if (strlen(nonce) != len || !sg_memeq_ct(nonce, expect->nonce, len))
            return SG_JWT_NONCE_MISMATCH;
    }
    const char *sub = sg_jwt_claim_string(claims, "sub");
    if (sub == NULL || sub[0] == '\0')
        return SG_JWT_SUB_MISSING;
    return SG_JWT_OK;
}
