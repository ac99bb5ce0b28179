/*
 * Fuzzes JWS verification against a fixed JWKS (the RFC 7515 A.2 RSA key, the
 * A.3 P-256 key and the RFC 8037 Ed25519 key, which also sign the corpus'
 * valid tokens; see gen-corpus.js), then ID token claim checks and the claim
 * helpers on whatever claims verify. Each input is used four ways:
 *  1. as a compact token;
 *  2. as "HEADER\nPAYLOAD\nSIGNATURE", each part base64url-encoded here, so
 *     that mutations reach the header's JSON rather than its encoding;
 *  3. its PAYLOAD signed here with the RFC 8037 private key: the token must
 *     verify exactly when the payload is a JSON object we accept;
 *  4. as claims JSON.
 */
#include "../../gateway/b64url.c"
#include "../../gateway/common.c"
#include "../../gateway/jose.c"
#include "../../gateway/json.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fixed_jwks[] =
    "{\"keys\":["
    "{\"kty\":\"RSA\",\"kid\":\"rsa1\",\"use\":\"sig\",\"e\":\"AQAB\",\"n\":\"ofgWCuLjybRlzo0tZWJjN"
    "iuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgN"
    "MsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UT"
    "o7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9ia"
    "GNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ\"},"
    "{\"kty\":\"EC\",\"kid\":\"ec1\",\"crv\":\"P-256\","
    "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
    "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"},"
    "{\"kty\":\"OKP\",\"kid\":\"ed1\",\"crv\":\"Ed25519\",\"alg\":\"EdDSA\","
    "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}]}";

static const struct sg_jwt_expect expect = {
    .issuer = "https://idp.example",
    .client_id = "client-1",
    .nonce = "n-0S6_WzA2Mj",
    .now = 1700000000,
    .skew_s = 60,
    .max_iat_age_s = 600,
};

static void use_claims(yajl_val claims)
{
    const char *values[8];
    size_t count = 0;
    bool flag = false;
    int64_t t = 0;
    enum sg_jwt_status st = sg_jwt_validate_id_token(claims, &expect);
    if (sg_jwt_status_name(st) == NULL || sg_jwt_status_str(st) == NULL)
        abort();
    if (sg_jwt_claim_strings(claims, "amr", values, 8, &count) == 0 && count > 8)
        abort();
    (void)sg_jwt_claim_contains(claims, "amr", "otp");
    (void)sg_jwt_claim_bool(claims, "active", &flag);
    (void)sg_jwt_claim_time(claims, "auth_time", &t);
    (void)sg_jwt_claim_string(claims, "email");
}

static enum sg_jws_status verify(const char *token, size_t len, const struct sg_jwk_set *keys)
{
    struct sg_jws_result result = {0};
    enum sg_jws_status st = sg_jws_verify(token, len, keys, SG_JWS_ALGS_ALL, &result);
    if (sg_jws_status_name(st) == NULL || sg_jws_status_str(st) == NULL)
        abort();
    if ((st == SG_JWS_OK) != (result.claims != NULL && result.key != NULL))
        abort();
    if (st == SG_JWS_OK)
        use_claims(result.claims);
    sg_jws_result_clear(&result);
    return st;
}

/* Paths 2 and 3 of the header comment. */
static void structured(const char *data, size_t size, const struct sg_jwk_set *keys,
                       EVP_PKEY *signer)
{
    const char *nl1 = memchr(data, '\n', size);
    if (nl1 == NULL)
        return;
    const char *payload = nl1 + 1;
    const char *nl2 = memchr(payload, '\n', size - (size_t)(payload - data));
    size_t payload_len = nl2 ? (size_t)(nl2 - payload) : size - (size_t)(payload - data);
    const char *sig = nl2 ? nl2 + 1 : payload + payload_len;
    size_t sig_len = size - (size_t)(sig - data);

    char *h = sg_b64url_encode_alloc(data, (size_t)(nl1 - data));
    char *p = sg_b64url_encode_alloc(payload, payload_len);
    char *s = sg_b64url_encode_alloc(sig, sig_len);
    char *token = sg_asprintf("%s.%s.%s", h, p, s);
    verify(token, strlen(token), keys);
    free(token);
    free(h);
    free(p);
    free(s);

    char *signed_token = NULL;
    if (sg_jws_sign(signer, NULL, "ed1", payload, payload_len, &signed_token) != 0)
        abort();
    size_t len = strlen(signed_token);
    if (len <= SG_JOSE_MAX_TOKEN) {
        yajl_val v = NULL;
        bool object = sg_json_parse_object(payload, payload_len, SG_JOSE_MAX_TOKEN, &v) == 0;
        yajl_tree_free(v);
        enum sg_jws_status st = verify(signed_token, len, keys);
        if ((st == SG_JWS_OK) != object)
            abort();
        if (!object && st != SG_JWS_BAD_PAYLOAD && !(payload_len == 0 && st == SG_JWS_MALFORMED))
            abort();
    }
    free(signed_token);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sg_jwk_set *keys;
    static EVP_PKEY *signer;
    if (keys == NULL) {
        static const unsigned char rfc8037_d[32] = {0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60,
                                                    0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
                                                    0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19,
                                                    0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60};
        signer = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, rfc8037_d, 32);
        if (signer == NULL || sg_jwk_set_parse(fixed_jwks, strlen(fixed_jwks), &keys, NULL) != 0 ||
            keys->count != 3)
            abort();
    }
    verify((const char *)data, size, keys);
    structured((const char *)data, size, keys, signer);

    yajl_val claims = NULL;
    if (sg_json_parse_object((const char *)data, size, SG_JOSE_MAX_TOKEN, &claims) == 0) {
        use_claims(claims);
        yajl_tree_free(claims);
    }
    return 0;
}
