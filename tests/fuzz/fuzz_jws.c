/*
 * Fuzzes JWS verification against a fixed JWKS (the RFC 7515 A.2 RSA key, the
 * A.3 P-256 key and the RFC 8037 Ed25519 key, which also sign the corpus'
 * valid tokens; see gen-corpus.js), then ID token claim checks and the claim
 * helpers on whatever claims verify, and on the input itself read as JSON.
 */
#include "../../gateway/common.c"
#include "../../gateway/jose.c"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sg_jwk_set *keys;
    if (keys == NULL && sg_jwk_set_parse(fixed_jwks, strlen(fixed_jwks), &keys, NULL) != 0)
        abort();
    if (keys->count != 3)
        abort();

    struct sg_jws_result result = {0};
    enum sg_jws_status st =
        sg_jws_verify((const char *)data, size, keys, SG_JWS_ALGS_ALL, &result);
    if (sg_jws_status_name(st) == NULL || sg_jws_status_str(st) == NULL)
        abort();
    if ((st == SG_JWS_OK) != (result.claims != NULL && result.key != NULL))
        abort();
    if (st == SG_JWS_OK)
        use_claims(result.claims);
    sg_jws_result_clear(&result);

    yajl_val claims = NULL;
    if (sg_jose_json_parse_object((const char *)data, size, SG_JOSE_MAX_TOKEN, &claims) == 0) {
        use_claims(claims);
        yajl_tree_free(claims);
    }
    return 0;
}
