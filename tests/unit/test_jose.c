/*
 * JOSE unit tests: RFC 7515 A.2/A.3, RFC 8037 A.4/A.5 and RFC 7638 vectors,
 * the attacks a relying party must refuse (alg none, HS256 with an RSA public
 * key, jku/jwk/x5u/x5c/crit, kid confusion), JWKS hygiene and ID token claim
 * checks. Keys without a published vector are
 * generated here with OpenSSL EVP.
 */
#include "../../gateway/b64url.c"
#include "../../gateway/common.c"
#include "../../gateway/jose.c"
#include "../../gateway/json.c"

#include <openssl/hmac.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/* ---- vectors ---- */

/* RFC 7515 A.2 (also the RFC 7517 A.1 key). */
static const char rfc7515_rsa_n[] =
    "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-"
    "4qPCJrcS2mJPMEzP1Pt0Bm4d4Ql"
    "L-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-"
    "bSf63kpaSHSXndS5z5rexMdbBYUs"
    "LA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-"
    "DWNmoud"
    "F8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";

static const char rfc7515_payload_b64[] = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6"
                                          "Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";

static const char rfc7515_a2_token[] =
    "eyJhbGciOiJSUzI1NiJ9."
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    "."
    "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_"
    "O8W2Fp5jujG"
    "bds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_"
    "nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K"
    "0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-"
    "eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6"
    "LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";

/* RFC 7515 A.3. */
static const char rfc7515_ec_x[] = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
static const char rfc7515_ec_y[] = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
static const char rfc7515_a3_token[] =
    "eyJhbGciOiJFUzI1NiJ9."
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    "."
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";

/* RFC 8037 A.1, A.4. */
static const char rfc8037_x[] = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
static const char rfc8037_token[] =
    "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

/* ---- helpers ---- */

static struct sg_jwk_set *parse_set(const char *json)
{
    struct sg_jwk_set *set = NULL;
    struct sg_jose_error err;
    assert_int_equal(sg_jwk_set_parse(json, strlen(json), &set, &err), 0);
    assert_non_null(set);
    return set;
}

/* The RFC 7515 A.2 RSA key, A.3 EC key and RFC 8037 Ed25519 key with kids. */
static struct sg_jwk_set *rfc_set(void)
{
    char *json = sg_asprintf("{\"keys\":["
                             "{\"kty\":\"RSA\",\"kid\":\"rsa1\",\"n\":\"%s\",\"e\":\"AQAB\"},"
                             "{\"kty\":\"EC\",\"kid\":\"ec1\",\"crv\":\"P-256\",\"x\":\"%s\","
                             "\"y\":\"%s\"},"
                             "{\"kty\":\"OKP\",\"kid\":\"ed1\",\"crv\":\"Ed25519\",\"x\":\"%s\"}]}",
                             rfc7515_rsa_n, rfc7515_ec_x, rfc7515_ec_y, rfc8037_x);
    struct sg_jwk_set *set = parse_set(json);
    free(json);
    assert_int_equal(set->count, 3);
    return set;
}

static enum sg_jws_status verify(const char *token, const struct sg_jwk_set *set, unsigned allowed)
{
    struct sg_jws_result r = {0};
    enum sg_jws_status st = sg_jws_verify(token, strlen(token), set, allowed, &r);
    if (st == SG_JWS_OK) {
        assert_true(YAJL_IS_OBJECT(r.claims));
        assert_non_null(r.key);
    } else {
        assert_null(r.claims);
    }
    sg_jws_result_clear(&r);
    return st;
}

static char *b64(const char *text)
{
    return sg_b64url_encode_alloc(text, strlen(text));
}

/* A token signed with pkey for alg (PS256 with the given PSS salt length). */
static char *sign_token(const char *header, const char *payload, EVP_PKEY *pkey,
                        enum sg_jws_alg alg, int pss_salt)
{
    char *h = b64(header), *p = b64(payload);
    char *input = sg_asprintf("%s.%s", h, p);
    unsigned char *sig = NULL;
    size_t sig_len = 0;
    if (alg == SG_JWS_PS256) {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        EVP_PKEY_CTX *pctx = NULL;
        assert_int_equal(EVP_DigestSignInit(ctx, &pctx, EVP_sha256(), NULL, pkey), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, pss_salt), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()), 1);
        assert_int_equal(EVP_DigestSign(ctx, NULL, &sig_len, (unsigned char *)input, strlen(input)),
                         1);
        sig = sg_malloc(sig_len);
        assert_int_equal(EVP_DigestSign(ctx, sig, &sig_len, (unsigned char *)input, strlen(input)),
                         1);
        EVP_MD_CTX_free(ctx);
    } else {
        assert_int_equal(sign_raw(alg, pkey, NULL, input, strlen(input), &sig, &sig_len), 0);
    }
    char *s = sg_b64url_encode_alloc(sig, sig_len);
    char *t = sg_asprintf("%s.%s", input, s);
    free(h);
    free(p);
    free(input);
    free(sig);
    free(s);
    return t;
}

static EVP_PKEY *rsa_key(unsigned bits)
{
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
    assert_non_null(pkey);
    return pkey;
}

static EVP_PKEY *new_key(enum sg_jws_alg alg)
{
    EVP_PKEY *pkey = NULL;
    assert_int_equal(sg_jose_key_generate(alg, &pkey), 0);
    return pkey;
}

/* A set holding only pkey's public key under kid. */
static struct sg_jwk_set *set_of(EVP_PKEY *pkey, const char *kid)
{
    struct sg_jwk_set *set = sg_jwk_set_new();
    assert_int_equal(sg_jwk_set_add(set, pkey, kid), 0);
    return set;
}

/* ---- RFC vectors ---- */

static void test_rfc7515_a2_rs256(void **state)
{
    /* The RFC's header has no kid: the set's single RSA key is used. */
    char *json =
        sg_asprintf("{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAB\"}]}", rfc7515_rsa_n);
    struct sg_jwk_set *set = parse_set(json);
    free(json);
    struct sg_jws_result r = {0};
    assert_int_equal(
        sg_jws_verify(rfc7515_a2_token, strlen(rfc7515_a2_token), set, SG_JWS_RS256, &r),
        SG_JWS_OK);
    assert_int_equal(r.alg, SG_JWS_RS256);
    assert_string_equal(sg_jwt_claim_string(r.claims, "iss"), "joe");
    int64_t exp = 0;
    assert_int_equal(sg_jwt_claim_time(r.claims, "exp", &exp), 0);
    assert_int_equal(exp, 1300819380);
    bool root = false;
    assert_int_equal(sg_jwt_claim_bool(r.claims, "http://example.com/is_root", &root), 0);
    assert_true(root);
    sg_jws_result_clear(&r);

    /* RS256 verified, PS256 over the same bytes must not be. */
    assert_int_equal(verify(rfc7515_a2_token, set, SG_JWS_PS256 | SG_JWS_ES256),
                     SG_JWS_ALG_NOT_ALLOWED);
    /* Tampered signature and payload. */
    char *t = sg_strdup(rfc7515_a2_token);
    t[strlen(t) - 5] = t[strlen(t) - 5] == 'A' ? 'B' : 'A';
    assert_int_equal(verify(t, set, SG_JWS_ALGS_ALL), SG_JWS_BAD_SIGNATURE);
    free(t);
    char *p = b64("{\"iss\":\"joe\",\"exp\":1300819380,\"http://example.com/is_root\":false}");
    t = sg_asprintf("eyJhbGciOiJSUzI1NiJ9.%s.%s", p, strrchr(rfc7515_a2_token, '.') + 1);
    assert_int_equal(verify(t, set, SG_JWS_ALGS_ALL), SG_JWS_BAD_SIGNATURE);
    free(t);
    free(p);
    /* Truncated signature. */
    t = sg_strndup(rfc7515_a2_token, strlen(rfc7515_a2_token) - 2);
    assert_int_equal(verify(t, set, SG_JWS_ALGS_ALL), SG_JWS_BAD_SIGNATURE);
    free(t);
    sg_jwk_set_free(set);
}

static void test_rfc7515_a3_es256(void **state)
{
    char *json = sg_asprintf(
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\",\"use\":\"sig\"}]}",
        rfc7515_ec_x, rfc7515_ec_y);
    struct sg_jwk_set *set = parse_set(json);
    free(json);
    assert_int_equal(verify(rfc7515_a3_token, set, SG_JWS_ES256), SG_JWS_OK);
    char *t = sg_strdup(rfc7515_a3_token);
    t[strlen(t) - 3] = t[strlen(t) - 3] == 'A' ? 'B' : 'A';
    assert_int_equal(verify(t, set, SG_JWS_ES256), SG_JWS_BAD_SIGNATURE);
    free(t);
    char *p = b64("{\"iss\":\"eve\"}");
    t = sg_asprintf("eyJhbGciOiJFUzI1NiJ9.%s.%s", p, strrchr(rfc7515_a3_token, '.') + 1);
    assert_int_equal(verify(t, set, SG_JWS_ES256), SG_JWS_BAD_SIGNATURE);
    free(t);
    free(p);
    /* A DER signature instead of R||S is refused. */
    t = sg_asprintf("eyJhbGciOiJFUzI1NiJ9.%s.MEUCIQDtEhU3ljbEg8L38VWAfUAqOyKA",
                    rfc7515_payload_b64);
    assert_int_equal(verify(t, set, SG_JWS_ES256), SG_JWS_BAD_SIGNATURE);
    free(t);
    sg_jwk_set_free(set);
}

static void test_rfc8037_ed25519(void **state)
{
    char *json =
        sg_asprintf("{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\"}]}", rfc8037_x);
    struct sg_jwk_set *set = parse_set(json);
    free(json);
    /* A.5: the signature verifies; the payload is text, not a JSON object, so
     * the token as a whole is refused after the signature check. */
    const char *dot2 = strrchr(rfc8037_token, '.');
    unsigned char sig[64];
    size_t sig_len = 0;
    assert_int_equal(sg_b64url_decode(dot2 + 1, strlen(dot2 + 1), sig, sizeof(sig), &sig_len), 0);
    assert_true(signature_verifies(SG_JWS_EDDSA, &set->keys[0],
                                   (const unsigned char *)rfc8037_token,
                                   (size_t)(dot2 - rfc8037_token), sig, sig_len));
    assert_int_equal(verify(rfc8037_token, set, SG_JWS_EDDSA), SG_JWS_BAD_PAYLOAD);
    char *t = sg_strdup(rfc8037_token);
    t[25] ^= 1; /* a payload character */
    assert_int_equal(verify(t, set, SG_JWS_EDDSA), SG_JWS_BAD_SIGNATURE);
    free(t);
    sig[10] ^= 1;
    assert_false(signature_verifies(SG_JWS_EDDSA, &set->keys[0],
                                    (const unsigned char *)rfc8037_token,
                                    (size_t)(dot2 - rfc8037_token), sig, sig_len));
    /* A.4: signing with the RFC's private key gives the RFC's signature. */
    unsigned char d[32];
    size_t d_len = 0;
    assert_int_equal(
        sg_b64url_decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A", 43, d, sizeof(d), &d_len),
        0);
    EVP_PKEY *priv = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, d, d_len);
    assert_non_null(priv);
    unsigned char *mine = NULL;
    size_t mine_len = 0;
    assert_int_equal(sign_raw(SG_JWS_EDDSA, priv, NULL, rfc8037_token,
                              (size_t)(dot2 - rfc8037_token), &mine, &mine_len),
                     0);
    char *mine_b64 = sg_b64url_encode_alloc(mine, mine_len);
    assert_string_equal(mine_b64, dot2 + 1);
    /* RFC 8037 A.3: the key's thumbprint. */
    char thumb[SG_JWK_THUMBPRINT_LEN + 1];
    assert_int_equal(sg_jwk_thumbprint(priv, thumb), 0);
    assert_string_equal(thumb, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    free(mine_b64);
    free(mine);
    EVP_PKEY_free(priv);
    sg_jwk_set_free(set);
}

static void test_rfc7638_thumbprint(void **state)
{
    const char *json = "{\"keys\":[{\"kty\":\"RSA\",\"n\":"
                       "\"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAA"
                       "tVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-"
                       "5JsGY4Hc5n9yBXArwl93lqt7_RN"
                       "5w6Cf0h4QyQ5v-65YGjQR0_"
                       "FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbIS"
                       "D08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-"
                       "csFCur-kEgU8awapJzKn"
                       "qDKgw\",\"e\":\"AQAB\",\"alg\":\"RS256\",\"kid\":\"2011-04-29\"}]}";
    struct sg_jwk_set *set = parse_set(json);
    char thumb[SG_JWK_THUMBPRINT_LEN + 1];
    assert_int_equal(sg_jwk_thumbprint(set->keys[0].pkey, thumb), 0);
    assert_string_equal(thumb, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    sg_jwk_set_free(set);
}

/* ---- attacks ---- */

static void test_alg_none(void **state)
{
    struct sg_jwk_set *set = rfc_set();
    static const char *const headers[] = {"{\"alg\":\"none\"}", "{\"alg\":\"None\"}",
                                          "{\"alg\":\"NONE\",\"kid\":\"rsa1\"}"};
    for (size_t i = 0; i < SG_ARRAY_LEN(headers); i++) {
        char *h = b64(headers[i]);
        char *t = sg_asprintf("%s.%s.", h, rfc7515_payload_b64);
        assert_int_equal(verify(t, set, SG_JWS_ALGS_ALL), SG_JWS_ALG_NONE);
        free(t);
        free(h);
    }
    /* RFC 7515 A.5, the unsecured JWS as published. */
    char *t = sg_asprintf("eyJhbGciOiJub25lIn0.%s.", rfc7515_payload_b64);
    assert_int_equal(verify(t, set, SG_JWS_ALGS_ALL), SG_JWS_ALG_NONE);
    free(t);
    sg_jwk_set_free(set);
}

static void test_hs256_with_rsa_public_key(void **state)
{
    /* The classic confusion: HMAC keyed with the RSA public key the verifier
     * holds. HS* is never accepted, whatever the allow-list. */
    EVP_PKEY *rsa = rsa_key(2048);
    struct sg_jwk_set *set = set_of(rsa, "rsa1");
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(bio, rsa), 1);
    char *pem = NULL;
    long pem_len = BIO_get_mem_data(bio, &pem);
    char *h = b64("{\"alg\":\"HS256\",\"kid\":\"rsa1\"}");
    char *input = sg_asprintf("%s.%s", h, rfc7515_payload_b64);
    unsigned char mac[32];
    unsigned int mac_len = 0;
    assert_non_null(HMAC(EVP_sha256(), pem, (int)pem_len, (unsigned char *)input, strlen(input),
                         mac, &mac_len));
    char *m = sg_b64url_encode_alloc(mac, mac_len);
    char *t = sg_asprintf("%s.%s", input, m);
    assert_int_equal(verify(t, set, SG_JWS_ALGS_ALL), SG_JWS_ALG_NOT_ALLOWED);
    assert_int_equal(verify(t, set, ~0u), SG_JWS_ALG_NOT_ALLOWED);
    free(t);
    free(m);
    free(input);
    free(h);
    BIO_free(bio);
    sg_jwk_set_free(set);
    EVP_PKEY_free(rsa);
}

static void test_alg_not_allowed(void **state)
{
    EVP_PKEY *ec = new_key(SG_JWS_ES256);
    struct sg_jwk_set *set = set_of(ec, "k");
    char *t = sign_token("{\"alg\":\"ES256\",\"kid\":\"k\"}", "{\"a\":1}", ec, SG_JWS_ES256, 0);
    assert_int_equal(verify(t, set, SG_JWS_ES256), SG_JWS_OK);
    assert_int_equal(verify(t, set, SG_JWS_RS256 | SG_JWS_EDDSA), SG_JWS_ALG_NOT_ALLOWED);
    free(t);
    static const char *const algs[] = {"ES384", "RS512", "HS512", "es256", "", "PS256 "};
    for (size_t i = 0; i < SG_ARRAY_LEN(algs); i++) {
        char *hdr = sg_asprintf("{\"alg\":\"%s\",\"kid\":\"k\"}", algs[i]);
        t = sign_token(hdr, "{\"a\":1}", ec, SG_JWS_ES256, 0);
        assert_int_equal(verify(t, set, SG_JWS_ALGS_ALL), SG_JWS_ALG_NOT_ALLOWED);
        free(t);
        free(hdr);
    }
    sg_jwk_set_free(set);
    EVP_PKEY_free(ec);
}

static void test_forbidden_headers(void **state)
{
    EVP_PKEY *ec = new_key(SG_JWS_ES256);
    struct sg_jwk_set *set = set_of(ec, "k");
    static const struct {
        const char *header;
        enum sg_jws_status want;
    } cases[] = {
        {"{\"alg\":\"ES256\",\"kid\":\"k\",\"jku\":\"https://evil.example/jwks\"}",
         SG_JWS_FORBIDDEN_HEADER},
        {"{\"alg\":\"ES256\",\"kid\":\"k\",\"x5u\":\"https://evil.example/cert\"}",
         SG_JWS_FORBIDDEN_HEADER},
        {"{\"alg\":\"ES256\",\"kid\":\"k\",\"jwk\":{\"kty\":\"EC\"}}", SG_JWS_FORBIDDEN_HEADER},
        {"{\"alg\":\"ES256\",\"kid\":\"k\",\"x5c\":[\"MII\"]}", SG_JWS_FORBIDDEN_HEADER},
        {"{\"alg\":\"ES256\",\"kid\":\"k\",\"crit\":[\"exp\"],\"exp\":1}", SG_JWS_CRIT},
        {"{\"alg\":\"ES256\",\"kid\":\"k\",\"crit\":[]}", SG_JWS_CRIT},
        {"{\"alg\":\"ES256\",\"kid\":\"k\",\"b64\":false,\"crit\":[\"b64\"]}", SG_JWS_CRIT},
        {"{\"alg\":\"ES256\",\"kid\":7}", SG_JWS_BAD_HEADER},
        {"{\"alg\":256,\"kid\":\"k\"}", SG_JWS_BAD_HEADER},
        {"{\"kid\":\"k\"}", SG_JWS_BAD_HEADER},
        {"{\"alg\":\"ES256\",\"alg\":\"none\"}", SG_JWS_BAD_HEADER},
        {"{\"alg\":\"ES256\",\"kid\":\"k\"} ", SG_JWS_OK},
        {"[\"ES256\"]", SG_JWS_BAD_HEADER},
        {"{\"alg\":\"ES256\"", SG_JWS_BAD_HEADER},
        {"{\"alg\":\"ES256\\u0000\",\"kid\":\"k\"}", SG_JWS_BAD_HEADER},
        {"{\"alg\":\"ES256\",\"kid\":\"k\"/**/}", SG_JWS_BAD_HEADER},
        {"{\"alg\":\"ES256\",\"kid\":\"k\",\"typ\":\"JWT\",\"cty\":\"x\"}", SG_JWS_OK},
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(cases); i++) {
        char *t = sign_token(cases[i].header, "{\"a\":1}", ec, SG_JWS_ES256, 0);
        enum sg_jws_status st = verify(t, set, SG_JWS_ALGS_ALL);
        if (st != cases[i].want)
            fail_msg("%s: got %s", cases[i].header, sg_jws_status_name(st));
        free(t);
    }
    sg_jwk_set_free(set);
    EVP_PKEY_free(ec);
}

static void test_kid_selection(void **state)
{
    struct sg_jwk_set *set = rfc_set();
    EVP_PKEY *ec = new_key(SG_JWS_ES256);
    /* Unknown kid. */
    char *t = sign_token("{\"alg\":\"ES256\",\"kid\":\"nope\"}", "{\"a\":1}", ec, SG_JWS_ES256, 0);
    assert_int_equal(verify(t, set, SG_JWS_ALGS_ALL), SG_JWS_KID_UNKNOWN);
    free(t);
    /* kid of the RSA key with an ES256 token: never cross-type. */
    t = sign_token("{\"alg\":\"ES256\",\"kid\":\"rsa1\"}", "{\"a\":1}", ec, SG_JWS_ES256, 0);
    assert_int_equal(verify(t, set, SG_JWS_ALGS_ALL), SG_JWS_KEY_MISMATCH);
    free(t);
    /* The right kid and alg but another key's signature. */
    t = sign_token("{\"alg\":\"ES256\",\"kid\":\"ec1\"}", "{\"a\":1}", ec, SG_JWS_ES256, 0);
    assert_int_equal(verify(t, set, SG_JWS_ALGS_ALL), SG_JWS_BAD_SIGNATURE);
    free(t);
    /* No kid: one EC key in the set, so it is chosen (and does not verify). */
    t = sign_token("{\"alg\":\"ES256\"}", "{\"a\":1}", ec, SG_JWS_ES256, 0);
    assert_int_equal(verify(t, set, SG_JWS_ALGS_ALL), SG_JWS_BAD_SIGNATURE);
    assert_int_equal(sg_jwk_set_add(set, ec, "ec2"), 0);
    /* No kid and now two EC keys: ambiguous. */
    assert_int_equal(verify(t, set, SG_JWS_ALGS_ALL), SG_JWS_KID_UNKNOWN);
    free(t);
    t = sign_token("{\"alg\":\"ES256\",\"kid\":\"ec2\"}", "{\"a\":1}", ec, SG_JWS_ES256, 0);
    assert_int_equal(verify(t, set, SG_JWS_ALGS_ALL), SG_JWS_OK);
    free(t);
    /* Empty key set. */
    struct sg_jwk_set *empty = sg_jwk_set_new();
    t = sign_token("{\"alg\":\"ES256\"}", "{\"a\":1}", ec, SG_JWS_ES256, 0);
    assert_int_equal(verify(t, empty, SG_JWS_ALGS_ALL), SG_JWS_KID_UNKNOWN);
    assert_int_equal(verify(t, NULL, SG_JWS_ALGS_ALL), SG_JWS_KID_UNKNOWN);
    free(t);
    /* A key restricted to RS256 does not verify PS256. */
    EVP_PKEY *rsa = rsa_key(2048);
    char *jwk = sg_jwk_export_json(rsa, "r");
    char *doc = sg_asprintf("{\"keys\":[%.*s,\"alg\":\"RS256\"}]}", (int)strlen(jwk) - 1, jwk);
    struct sg_jwk_set *rs = parse_set(doc);
    t = sign_token("{\"alg\":\"PS256\",\"kid\":\"r\"}", "{\"a\":1}", rsa, SG_JWS_PS256, 32);
    assert_int_equal(verify(t, rs, SG_JWS_ALGS_ALL), SG_JWS_KEY_MISMATCH);
    free(t);
    free(doc);
    free(jwk);
    sg_jwk_set_free(rs);
    EVP_PKEY_free(rsa);
    sg_jwk_set_free(empty);
    EVP_PKEY_free(ec);
    sg_jwk_set_free(set);
}

static void test_ps256(void **state)
{
    EVP_PKEY *rsa = rsa_key(2048);
    struct sg_jwk_set *set = set_of(rsa, "r");
    const char *payload = "{\"sub\":\"alice\"}";
    char *t = sign_token("{\"alg\":\"PS256\",\"kid\":\"r\"}", payload, rsa, SG_JWS_PS256, 32);
    assert_int_equal(verify(t, set, SG_JWS_PS256), SG_JWS_OK);
    assert_int_equal(verify(t, set, SG_JWS_RS256), SG_JWS_ALG_NOT_ALLOWED);
    char *bad = sg_strdup(t);
    bad[strlen(bad) - 2] = bad[strlen(bad) - 2] == 'A' ? 'B' : 'A';
    assert_int_equal(verify(bad, set, SG_JWS_PS256), SG_JWS_BAD_SIGNATURE);
    free(bad);
    free(t);
    /* Salt length other than 32. */
    t = sign_token("{\"alg\":\"PS256\",\"kid\":\"r\"}", payload, rsa, SG_JWS_PS256, 20);
    assert_int_equal(verify(t, set, SG_JWS_PS256), SG_JWS_BAD_SIGNATURE);
    free(t);
    /* A PKCS#1 v1.5 signature labelled PS256, and a PSS one labelled RS256. */
    t = sign_token("{\"alg\":\"PS256\",\"kid\":\"r\"}", payload, rsa, SG_JWS_RS256, 0);
    assert_int_equal(verify(t, set, SG_JWS_ALGS_ALL), SG_JWS_BAD_SIGNATURE);
    free(t);
    t = sign_token("{\"alg\":\"RS256\",\"kid\":\"r\"}", payload, rsa, SG_JWS_PS256, 32);
    assert_int_equal(verify(t, set, SG_JWS_ALGS_ALL), SG_JWS_BAD_SIGNATURE);
    free(t);
    t = sign_token("{\"alg\":\"RS256\",\"kid\":\"r\"}", payload, rsa, SG_JWS_RS256, 0);
    assert_int_equal(verify(t, set, SG_JWS_RS256), SG_JWS_OK);
    free(t);
    sg_jwk_set_free(set);
    EVP_PKEY_free(rsa);
}

static void test_token_structure(void **state)
{
    struct sg_jwk_set *set = rfc_set();
    EVP_PKEY *ed = new_key(SG_JWS_EDDSA);
    struct sg_jwk_set *own = set_of(ed, "e");
    char *good = sign_token("{\"alg\":\"EdDSA\",\"kid\":\"e\"}", "{\"a\":1}", ed, SG_JWS_EDDSA, 0);
    assert_int_equal(verify(good, own, SG_JWS_EDDSA), SG_JWS_OK);
    char *h = sg_strndup(good, (size_t)(strchr(good, '.') - good));
    static const char *const malformed[] = {
        "", ".", "..", "...", "a.b", "a.b.c.d", "eyJhbGciOiJFUzI1NiJ9..sig", ".eyJhIjoxfQ.sig",
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(malformed); i++)
        assert_int_equal(verify(malformed[i], set, SG_JWS_ALGS_ALL), SG_JWS_MALFORMED);
    /* Padding, standard alphabet, whitespace in any part. */
    char *t = sg_asprintf("%s=.eyJhIjoxfQ.%s", h, strrchr(good, '.') + 1);
    assert_int_equal(verify(t, own, SG_JWS_ALGS_ALL), SG_JWS_MALFORMED);
    free(t);
    t = sg_asprintf("%s.eyJhIjoxfQ==.%s", h, strrchr(good, '.') + 1);
    assert_int_equal(verify(t, own, SG_JWS_ALGS_ALL), SG_JWS_MALFORMED);
    free(t);
    t = sg_asprintf("%s.eyJhIjoxfQ.%s+", h, strrchr(good, '.') + 1);
    assert_int_equal(verify(t, own, SG_JWS_ALGS_ALL), SG_JWS_MALFORMED);
    free(t);
    size_t good_len = strlen(good);
    t = sg_malloc(good_len + 2);
    t[0] = ' ';
    memcpy(t + 1, good, good_len + 1);
    assert_int_equal(verify(t, own, SG_JWS_ALGS_ALL), SG_JWS_MALFORMED);
    free(t);
    /* Non-canonical last character in the signature (unused bits set). */
    t = sg_strdup(good);
    char *last = t + strlen(t) - 1;
    *last = b64url_alphabet[b64url_value((unsigned char)*last) | 1];
    assert_int_equal(verify(t, own, SG_JWS_ALGS_ALL), SG_JWS_MALFORMED);
    free(t);
    /* Header that is not JSON. */
    char *nh = b64("{alg:ES256}");
    t = sg_asprintf("%s.eyJhIjoxfQ.AAAA", nh);
    assert_int_equal(verify(t, set, SG_JWS_ALGS_ALL), SG_JWS_BAD_HEADER);
    free(t);
    free(nh);
    /* Oversize: checked before anything else. */
    char *big = sg_malloc(SG_JOSE_MAX_TOKEN + 2);
    memset(big, 'A', SG_JOSE_MAX_TOKEN + 1);
    big[10] = '.';
    big[20] = '.';
    big[SG_JOSE_MAX_TOKEN + 1] = '\0';
    assert_int_equal(verify(big, set, SG_JWS_ALGS_ALL), SG_JWS_TOO_BIG);
    free(big);
    /* The length given is what is read: a NUL inside is a bad character. */
    struct sg_jws_result r = {0};
    assert_int_equal(sg_jws_verify(good, strlen(good) + 1, own, SG_JWS_EDDSA, &r),
                     SG_JWS_MALFORMED);
    sg_jws_result_clear(&r);
    assert_int_equal(sg_jws_verify(good, strlen(good) - 2, own, SG_JWS_EDDSA, &r),
                     SG_JWS_BAD_SIGNATURE);
    assert_non_null(r.header); /* handed back for logging the kid */
    sg_jws_result_clear(&r);
    free(h);
    free(good);
    sg_jwk_set_free(own);
    sg_jwk_set_free(set);
    EVP_PKEY_free(ed);
}

static void test_bad_payloads(void **state)
{
    EVP_PKEY *ec = new_key(SG_JWS_ES256);
    struct sg_jwk_set *set = set_of(ec, "k");
    static const char *const payloads[] = {
        "[1]",
        "\"s\"",
        "12",
        "{\"a\":1",
        "{\"a\":1,\"a\":2}",
        "{\"sub\":\"x\\u0000y\"}",
        "",
        "{\"a\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]}",
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(payloads); i++) {
        char *t = sign_token("{\"alg\":\"ES256\",\"kid\":\"k\"}", payloads[i], ec, SG_JWS_ES256, 0);
        enum sg_jws_status st = verify(t, set, SG_JWS_ES256);
        /* An empty payload leaves an empty middle part: malformed. */
        assert_int_equal(st, payloads[i][0] ? SG_JWS_BAD_PAYLOAD : SG_JWS_MALFORMED);
        free(t);
    }
    sg_jwk_set_free(set);
    EVP_PKEY_free(ec);
}

static void test_status_strings(void **state)
{
    for (int i = 0; i < SG_JWS_STATUS_COUNT; i++) {
        assert_non_null(jws_status_texts[i].name);
        assert_non_null(jws_status_texts[i].reason);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(sg_jws_status_name(i), sg_jws_status_name(j));
    }
    for (int i = 0; i < SG_JWT_STATUS_COUNT; i++) {
        assert_non_null(jwt_status_texts[i].name);
        assert_non_null(jwt_status_texts[i].reason);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(sg_jwt_status_name(i), sg_jwt_status_name(j));
    }
    assert_string_equal(sg_jws_status_str(SG_JWS_STATUS_COUNT), "unknown status");
    assert_string_equal(sg_jwt_status_name(SG_JWT_STATUS_COUNT), "unknown");
}

/* ---- JWKS ---- */

static struct sg_jwk_set *parse_one(const char *jwk, struct sg_jose_error *err)
{
    char *doc = sg_asprintf("{\"keys\":[%s]}", jwk);
    struct sg_jwk_set *set = NULL;
    memset(err, 0, sizeof(*err));
    assert_int_equal(sg_jwk_set_parse(doc, strlen(doc), &set, err), 0);
    free(doc);
    return set;
}

static void expect_skipped(const char *jwk, const char *why)
{
    struct sg_jose_error err;
    struct sg_jwk_set *set = parse_one(jwk, &err);
    assert_int_equal(set->count, 0);
    assert_int_equal(set->skipped, 1);
    assert_string_equal(err.where, "keys[0]");
    if (strstr(err.what, why) == NULL)
        fail_msg("%s: %s", jwk, err.what);
    sg_jwk_set_free(set);
}

static void test_jwks_bad_keys(void **state)
{
    /* Short RSA modulus. */
    EVP_PKEY *small = rsa_key(1024);
    struct public_members m;
    assert_int_equal(public_members_get(small, &m), 0);
    char *jwk = sg_asprintf("{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"}", m.a, m.b);
    expect_skipped(jwk, "RSA modulus size");
    free(jwk);
    public_members_clear(&m);
    EVP_PKEY_free(small);
    /* And a 1024-bit key cannot be added from EVP either. */
    small = rsa_key(1024);
    struct sg_jwk_set *set = sg_jwk_set_new();
    assert_int_equal(sg_jwk_set_add(set, small, "s"), SG_EINVAL);
    sg_jwk_set_free(set);
    EVP_PKEY_free(small);

    /* Off-curve EC point: the A.3 x with a changed y. */
    jwk = sg_asprintf("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\","
                      "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI6a0\"}",
                      rfc7515_ec_x);
    expect_skipped(jwk, "not on the curve");
    free(jwk);
    jwk = sg_asprintf("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\","
                      "\"y\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}",
                      rfc7515_ec_x);
    expect_skipped(jwk, "not on the curve");
    free(jwk);
    expect_skipped(
        "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
        "\"y\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}",
        "not on the curve");
    jwk = sg_asprintf("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%.42s\"}",
                      rfc7515_ec_x, rfc7515_ec_y);
    expect_skipped(jwk, "EC x or y");
    free(jwk);
    jwk = sg_asprintf("{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"%s\",\"y\":\"%s\"}", rfc7515_ec_x,
                      rfc7515_ec_y);
    expect_skipped(jwk, "unsupported EC curve");
    free(jwk);
    /* Private parts, other uses, unknown types. */
    jwk = sg_asprintf("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\","
                      "\"d\":\"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI\"}",
                      rfc7515_ec_x, rfc7515_ec_y);
    expect_skipped(jwk, "private");
    free(jwk);
    jwk =
        sg_asprintf("{\"kty\":\"RSA\",\"use\":\"enc\",\"n\":\"%s\",\"e\":\"AQAB\"}", rfc7515_rsa_n);
    expect_skipped(jwk, "use");
    free(jwk);
    jwk = sg_asprintf("{\"kty\":\"RSA\",\"key_ops\":[\"encrypt\"],\"n\":\"%s\",\"e\":\"AQAB\"}",
                      rfc7515_rsa_n);
    expect_skipped(jwk, "key_ops");
    free(jwk);
    jwk = sg_asprintf("{\"kty\":\"RSA\",\"alg\":\"ES256\",\"n\":\"%s\",\"e\":\"AQAB\"}",
                      rfc7515_rsa_n);
    expect_skipped(jwk, "alg does not fit");
    free(jwk);
    jwk = sg_asprintf("{\"kty\":\"RSA\",\"alg\":\"RS512\",\"n\":\"%s\",\"e\":\"AQAB\"}",
                      rfc7515_rsa_n);
    expect_skipped(jwk, "unsupported alg");
    free(jwk);
    jwk = sg_asprintf("{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQ\"}", rfc7515_rsa_n);
    expect_skipped(jwk, "RSA parameters invalid");
    free(jwk);
    jwk = sg_asprintf("{\"kty\":\"RSA\",\"n\":\"%s==\",\"e\":\"AQAB\"}", rfc7515_rsa_n);
    expect_skipped(jwk, "RSA n or e");
    free(jwk);
    expect_skipped("{\"kty\":\"oct\",\"k\":\"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ\"}", "private");
    expect_skipped("{\"kty\":\"oct\"}", "unsupported kty");
    expect_skipped("{\"kty\":\"OKP\",\"crv\":\"Ed448\",\"x\":\"AAAA\"}", "unsupported OKP curve");
    expect_skipped("{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"AAAA\"}", "unsupported OKP curve");
    expect_skipped("{\"crv\":\"Ed25519\",\"x\":\"AAAA\"}", "no kty");
    expect_skipped("\"key\"", "not an object");
    expect_skipped("{\"kty\":\"OKP\",\"kty\":\"EC\"}", "twice");
    jwk = sg_asprintf("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":5,\"x\":\"%s\"}", rfc8037_x);
    expect_skipped(jwk, "kid");
    free(jwk);

    /* One bad key among good ones: the good ones stay. */
    char *doc = sg_asprintf("{\"keys\":[{\"kty\":\"oct\",\"k\":\"AA\"},"
                            "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\",\"kid\":\"a\"},"
                            "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\",\"use\":"
                            "\"sig\",\"alg\":\"ES256\",\"kid\":\"b\",\"x5c\":[\"MIIB\"]}],"
                            "\"extra\":{}}",
                            rfc8037_x, rfc7515_ec_x, rfc7515_ec_y);
    struct sg_jose_error err;
    assert_int_equal(sg_jwk_set_parse(doc, strlen(doc), &set, &err), 0);
    assert_int_equal(set->count, 2);
    assert_int_equal(set->skipped, 1);
    assert_string_equal(set->keys[0].kid, "a");
    assert_int_equal(set->keys[0].kty, SG_JWK_OKP);
    assert_null(set->keys[0].use);
    assert_int_equal(set->keys[1].alg, SG_JWS_ES256);
    assert_string_equal(set->keys[1].use, "sig");
    sg_jwk_set_free(set);
    free(doc);
}

static void test_jwks_bad_documents(void **state)
{
    static const struct {
        const char *doc;
        int rc;
    } cases[] = {
        {"", SG_EINVAL},
        {"not json", SG_EINVAL},
        {"[]", SG_EINVAL},
        {"{}", SG_EINVAL},
        {"{\"keys\":{}}", SG_EINVAL},
        {"{\"keys\":\"x\"}", SG_EINVAL},
        {"{\"keys\":[]", SG_EINVAL},
        {"{\"keys\":[],\"keys\":[]}", SG_EINVAL},
        {"{\"keys\":[]}", 0},
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(cases); i++) {
        struct sg_jwk_set *set = NULL;
        struct sg_jose_error err;
        memset(&err, 0, sizeof(err));
        assert_int_equal(sg_jwk_set_parse(cases[i].doc, strlen(cases[i].doc), &set, &err),
                         cases[i].rc);
        if (cases[i].rc == 0) {
            assert_int_equal(set->count, 0);
            sg_jwk_set_free(set);
        } else {
            assert_null(set);
            assert_string_equal(err.where, "JWKS");
        }
    }
    /* Too many keys, and too large a document. */
    size_t n = SG_JOSE_MAX_KEYS + 1;
    char *doc = sg_malloc(16 + n * 3);
    strcpy(doc, "{\"keys\":[");
    for (size_t i = 0; i < n; i++)
        strcat(doc, i ? ",{}" : "{}");
    strcat(doc, "]}");
    struct sg_jwk_set *set = NULL;
    assert_int_equal(sg_jwk_set_parse(doc, strlen(doc), &set, NULL), SG_ETOOBIG);
    free(doc);
    doc = sg_malloc(SG_JOSE_MAX_JWKS + 2);
    memset(doc, ' ', SG_JOSE_MAX_JWKS + 1);
    memcpy(doc, "{\"keys\":[]}", 11);
    assert_int_equal(sg_jwk_set_parse(doc, SG_JOSE_MAX_JWKS + 1, &set, NULL), SG_ETOOBIG);
    assert_int_equal(sg_jwk_set_parse(doc, SG_JOSE_MAX_JWKS, &set, NULL), 0);
    sg_jwk_set_free(set);
    free(doc);
}

/* ---- signing, keys, export ---- */

static void test_sign_verify_roundtrip(void **state)
{
    static const enum sg_jws_alg algs[] = {SG_JWS_ES256, SG_JWS_EDDSA};
    for (size_t i = 0; i < SG_ARRAY_LEN(algs); i++) {
        EVP_PKEY *key = new_key(algs[i]);
        char kid[SG_JWK_THUMBPRINT_LEN + 1];
        assert_int_equal(sg_jwk_thumbprint(key, kid), 0);
        /* Publish as our JWKS would, and read it back as a relying party would. */
        struct sg_jwk_set *own = set_of(key, kid);
        char *jwks = sg_jwk_set_export_json(own);
        struct sg_jwk_set *set = parse_set(jwks);
        assert_int_equal(set->count, 1);
        assert_string_equal(set->keys[0].kid, kid);
        assert_int_equal(set->keys[0].alg, algs[i]);
        char again[SG_JWK_THUMBPRINT_LEN + 1];
        assert_int_equal(sg_jwk_thumbprint(set->keys[0].pkey, again), 0);
        assert_string_equal(again, kid);

        const char *payload = "{\"iss\":\"https://gw\",\"sub\":\"u1\",\"n\":\"\\\"q\\\"\"}";
        char *token = NULL;
        assert_int_equal(sg_jws_sign(key, NULL, kid, payload, strlen(payload), &token), 0);
        struct sg_jws_result r = {0};
        assert_int_equal(sg_jws_verify(token, strlen(token), set, algs[i], &r), SG_JWS_OK);
        assert_int_equal(r.alg, algs[i]);
        assert_string_equal(sg_jwt_claim_string(r.claims, "sub"), "u1");
        assert_string_equal(sg_jwt_claim_string(r.claims, "n"), "\"q\"");
        assert_string_equal(sg_jwt_claim_string(r.header, "typ"), "JWT");
        assert_string_equal(sg_jwt_claim_string(r.header, "kid"), kid);
        assert_string_equal(sg_jwt_claim_string(r.header, "alg"), sg_jws_alg_name(algs[i]));
        sg_jws_result_clear(&r);
        assert_null(r.header);

        /* Tampered payload and signature. */
        char *dot1 = strchr(token, '.');
        char saved = dot1[3];
        dot1[3] = saved == 'A' ? 'B' : 'A';
        assert_int_equal(verify(token, set, algs[i]), SG_JWS_BAD_SIGNATURE);
        dot1[3] = saved;
        assert_int_equal(verify(token, set, algs[i]), SG_JWS_OK);
        char *dot2 = strrchr(token, '.');
        dot2[5] = dot2[5] == 'A' ? 'B' : 'A';
        assert_int_equal(verify(token, set, algs[i]), SG_JWS_BAD_SIGNATURE);
        free(token);

        /* Without a kid. */
        assert_int_equal(sg_jws_sign(key, NULL, NULL, payload, strlen(payload), &token), 0);
        assert_int_equal(verify(token, set, SG_JWS_ALGS_ALL), SG_JWS_OK);
        free(token);

        /* The exported JWK never carries the private key. */
        char *jwk = sg_jwk_export_json(key, "x");
        assert_null(strstr(jwk, "\"d\""));
        free(jwk);
        free(jwks);
        sg_jwk_set_free(set);
        sg_jwk_set_free(own);
        EVP_PKEY_free(key);
    }
    /* RSA keys of 2048 bits or more sign RS256 (private_key_jwt), verified by their own JWK;
     * shorter ones do not sign. */
    EVP_PKEY *rsa = rsa_key(2048);
    char *token = NULL;
    assert_int_equal(sg_jws_sign(rsa, NULL, "r", "{}", 2, &token), 0);
    assert_non_null(strstr(token, "eyJhbGciOiJSUzI1NiI")); /* {"alg":"RS256" */
    char *jwk = sg_jwk_export_json(rsa, "r");
    char *doc = sg_asprintf("{\"keys\":[%s]}", jwk);
    struct sg_jwk_set *set = parse_set(doc);
    assert_int_equal(verify(token, set, SG_JWS_RS256), SG_JWS_OK);
    assert_int_not_equal(verify(token, set, SG_JWS_PS256), SG_JWS_OK);
    sg_jwk_set_free(set);
    free(doc);
    free(jwk);
    free(token);
    EVP_PKEY_free(rsa);
    EVP_PKEY *small = rsa_key(1024);
    token = NULL;
    assert_int_equal(sg_jws_sign(small, NULL, "s", "{}", 2, &token), SG_EINVAL);
    assert_null(token);
    EVP_PKEY_free(small);
    EVP_PKEY *out = NULL;
    assert_int_equal(sg_jose_key_generate(SG_JWS_RS256, &out), SG_EINVAL);
}

/* payload signed with key (the general path), then verified against set for alg. */
static enum sg_jws_status signed_then_verified(EVP_PKEY *key, const struct sg_jwk_set *set,
                                               const char *payload, unsigned alg)
{
    char *token = NULL;
    assert_int_equal(sg_jws_sign(key, NULL, set->keys[0].kid, payload, strlen(payload), &token), 0);
    enum sg_jws_status status = verify(token, set, alg);
    free(token);
    return status;
}

/*
 * The prepared contexts (sg_jws_sign_ctx_new, a JWK's verify_ctx) give what the general path
 * gives: RS256 signatures byte for byte (PKCS #1 v1.5 is deterministic), ES256 ones verified both
 * ways, and each context, used again and again and after a refusal, still refuses a tampered
 * token or another key's signature.
 */
static void test_prepared_contexts(void **state)
{
    EVP_PKEY *keys[] = {EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), rsa_key(2048)};
    EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    enum sg_jws_alg algs[] = {SG_JWS_ES256, SG_JWS_RS256};
    const char *payload = "{\"sub\":\"u1\",\"exp\":4102444800}";
    for (size_t k = 0; k < SG_ARRAY_LEN(keys); k++) {
        EVP_PKEY_CTX *ctx = sg_jws_sign_ctx_new(keys[k]);
        assert_non_null(ctx);
        struct sg_jwk_set *set = sg_jwk_set_new();
        assert_int_equal(sg_jwk_set_add(set, keys[k], "k"), 0);
        assert_non_null(set->keys[0].verify_ctx);
        struct sg_jwk general = set->keys[0];
        general.verify_ctx = NULL;
        for (int round = 0; round < 8; round++) {
            char *prepared_token = NULL, *general_token = NULL;
            assert_int_equal(
                sg_jws_sign(keys[k], ctx, "k", payload, strlen(payload), &prepared_token), 0);
            assert_int_equal(
                sg_jws_sign(keys[k], NULL, "k", payload, strlen(payload), &general_token), 0);
            if (algs[k] == SG_JWS_RS256)
                assert_string_equal(prepared_token, general_token);
            const char *tokens[] = {prepared_token, general_token};
            for (size_t t = 0; t < SG_ARRAY_LEN(tokens); t++) {
                const char *dot2 = strrchr(tokens[t], '.');
                unsigned char sig[512];
                size_t sig_len = 0;
                assert_int_equal(
                    sg_b64url_decode(dot2 + 1, strlen(dot2 + 1), sig, sizeof(sig), &sig_len), 0);
                size_t input_len = (size_t)(dot2 - tokens[t]);
                const unsigned char *input = (const unsigned char *)tokens[t];
                assert_true(
                    signature_verifies(algs[k], &set->keys[0], input, input_len, sig, sig_len));
                assert_true(signature_verifies(algs[k], &general, input, input_len, sig, sig_len));
                sig[sig_len / 2] ^= 1;
                assert_false(
                    signature_verifies(algs[k], &set->keys[0], input, input_len, sig, sig_len));
                assert_false(signature_verifies(algs[k], &general, input, input_len, sig, sig_len));
                sig[sig_len / 2] ^= 1;
                assert_false(
                    signature_verifies(algs[k], &set->keys[0], input, input_len - 1, sig, sig_len));
                assert_int_equal(verify(tokens[t], set, algs[k]), SG_JWS_OK);
            }
            free(prepared_token);
            free(general_token);
        }
        /* Another key's signature, through the same prepared context. */
        if (algs[k] == SG_JWS_ES256)
            assert_int_equal(signed_then_verified(other, set, payload, SG_JWS_ES256),
                             SG_JWS_BAD_SIGNATURE);
        sg_jwk_set_free(set);
        EVP_PKEY_CTX_free(ctx);
        EVP_PKEY_free(keys[k]);
    }
    EVP_PKEY_free(other);
    /* Ed25519 signs the message itself: no prepared context, the general path signs. */
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_null(sg_jws_sign_ctx_new(ed));
    struct sg_jwk_set *set = sg_jwk_set_new();
    assert_int_equal(sg_jwk_set_add(set, ed, "e"), 0);
    assert_null(set->keys[0].verify_ctx);
    assert_int_equal(signed_then_verified(ed, set, payload, SG_JWS_EDDSA), SG_JWS_OK);
    sg_jwk_set_free(set);
    EVP_PKEY_free(ed);
}

static void test_key_files(void **state)
{
    char dir[] = "/tmp/sg-jose-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *path = sg_asprintf("%s/signing.pem", dir);
    struct sg_jose_error err;
    EVP_PKEY *a = NULL, *b = NULL;
    assert_int_equal(sg_jose_key_load_pem(path, &a, &err), SG_ENOENT);
    assert_int_equal(sg_jose_key_load_or_create(path, SG_JWS_ES256, &a, &err), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(sg_jose_key_load_or_create(path, SG_JWS_EDDSA, &b, &err), 0);
    assert_int_equal(EVP_PKEY_eq(a, b), 1); /* the existing key, not a new one */
    char ta[SG_JWK_THUMBPRINT_LEN + 1], tb[SG_JWK_THUMBPRINT_LEN + 1];
    assert_int_equal(sg_jwk_thumbprint(a, ta), 0);
    assert_int_equal(sg_jwk_thumbprint(b, tb), 0);
    assert_string_equal(ta, tb);
    EVP_PKEY_free(b);
    b = NULL;
    /* A file that is no key, and an RSA key shorter than 2048 bits, are refused; RSA 2048 loads
     * (private_key_jwt; the assertion signer refuses RSA itself). */
    FILE *f = fopen(path, "w");
    fputs("not a key\n", f);
    fclose(f);
    assert_int_equal(sg_jose_key_load_pem(path, &b, &err), SG_EINVAL);
    assert_string_equal(err.where, path);
    EVP_PKEY *rsa = rsa_key(1024);
    assert_int_equal(sg_jose_key_save_pem(path, rsa, &err), 0);
    assert_int_equal(sg_jose_key_load_pem(path, &b, &err), SG_EINVAL);
    assert_non_null(strstr(err.what, "2048"));
    EVP_PKEY_free(rsa);
    rsa = rsa_key(2048);
    assert_int_equal(sg_jose_key_save_pem(path, rsa, &err), 0);
    assert_int_equal(sg_jose_key_load_pem(path, &b, &err), 0);
    assert_int_equal(EVP_PKEY_eq(rsa, b), 1);
    EVP_PKEY_free(b);
    b = NULL;
    EVP_PKEY_free(rsa);
    /* Ed25519 round trip. */
    EVP_PKEY *ed = new_key(SG_JWS_EDDSA);
    assert_int_equal(sg_jose_key_save_pem(path, ed, &err), 0);
    assert_int_equal(sg_jose_key_load_pem(path, &b, &err), 0);
    assert_int_equal(EVP_PKEY_eq(ed, b), 1);
    char *bad = sg_asprintf("%s/missing/key.pem", dir);
    assert_int_equal(sg_jose_key_save_pem(bad, ed, &err), SG_EIO);
    free(bad);
    EVP_PKEY_free(ed);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
    unlink(path);
    rmdir(dir);
    free(path);
}

/* ---- ID token claims ---- */

static const struct sg_jwt_expect base_expect = {
    .issuer = "https://idp.example",
    .client_id = "client-1",
    .nonce = "n-0S6_WzA2Mj",
    .now = 1700000000,
    .skew_s = 60,
    .max_iat_age_s = 600,
};

static enum sg_jwt_status validate(const char *claims_json, const struct sg_jwt_expect *expect)
{
    yajl_val claims = NULL;
    assert_int_equal(
        sg_json_parse_object(claims_json, strlen(claims_json), SG_JOSE_MAX_TOKEN, &claims), 0);
    enum sg_jwt_status st = sg_jwt_validate_id_token(claims, expect);
    yajl_tree_free(claims);
    return st;
}

/* Claims of a valid token with one member replaced or added (or removed with value NULL). */
static char *claims_with(const char *name, const char *value)
{
    static const char *const names[] = {"iss", "sub", "aud", "exp", "iat", "nonce"};
    static const char *const values[] = {
        "\"https://idp.example\"", "\"248289761001\"", "\"client-1\"", "1700000300", "1699999990",
        "\"n-0S6_WzA2Mj\""};
    char *out = sg_strdup("{");
    bool replaced = false;
    for (size_t i = 0; i < SG_ARRAY_LEN(names); i++) {
        const char *v = values[i];
        if (strcmp(names[i], name) == 0) {
            replaced = true;
            if (value == NULL)
                continue;
            v = value;
        }
        char *next = sg_asprintf("%s%s\"%s\":%s", out, strlen(out) > 1 ? "," : "", names[i], v);
        free(out);
        out = next;
    }
    char *next = (!replaced && value != NULL) ? sg_asprintf("%s,\"%s\":%s}", out, name, value)
                                              : sg_asprintf("%s}", out);
    free(out);
    return next;
}

static void expect_claims(const char *name, const char *value, enum sg_jwt_status want)
{
    char *claims = claims_with(name, value);
    enum sg_jwt_status st = validate(claims, &base_expect);
    if (st != want)
        fail_msg("%s: got %s, want %s", claims, sg_jwt_status_name(st), sg_jwt_status_name(want));
    free(claims);
}

static void test_claims(void **state)
{
    expect_claims("x", NULL, SG_JWT_OK);
    expect_claims("iss", NULL, SG_JWT_ISS_MISSING);
    expect_claims("iss", "7", SG_JWT_ISS_MISSING);
    expect_claims("iss", "\"https://evil.example\"", SG_JWT_ISS_MISMATCH);
    expect_claims("iss", "\"https://idp.example/\"", SG_JWT_ISS_MISMATCH);
    expect_claims("aud", NULL, SG_JWT_AUD_MISSING);
    expect_claims("aud", "[]", SG_JWT_AUD_MISSING);
    expect_claims("aud", "5", SG_JWT_AUD_MISSING);
    expect_claims("aud", "[\"client-1\",5]", SG_JWT_AUD_MISSING);
    expect_claims("aud", "\"client-2\"", SG_JWT_AUD_MISMATCH);
    expect_claims("aud", "[\"client-2\",\"other\"]", SG_JWT_AUD_MISMATCH);
    expect_claims("aud", "[\"client-1\"]", SG_JWT_OK);
    expect_claims("aud", "[\"client-1\",\"other\"]", SG_JWT_AZP_MISSING);
    expect_claims("azp", "\"client-1\"", SG_JWT_OK);
    expect_claims("azp", "\"other\"", SG_JWT_AZP_MISMATCH);
    expect_claims("azp", "[\"client-1\"]", SG_JWT_AZP_MISSING);
    char *c = sg_strdup("{\"iss\":\"https://idp.example\",\"sub\":\"s\","
                        "\"aud\":[\"other\",\"client-1\"],\"azp\":\"client-1\",\"exp\":1700000300,"
                        "\"iat\":1699999990,\"nonce\":\"n-0S6_WzA2Mj\"}");
    assert_int_equal(validate(c, &base_expect), SG_JWT_OK);
    free(c);
    c = sg_strdup("{\"iss\":\"https://idp.example\",\"sub\":\"s\","
                  "\"aud\":[\"other\",\"client-1\"],\"azp\":\"other\",\"exp\":1700000300,"
                  "\"iat\":1699999990,\"nonce\":\"n-0S6_WzA2Mj\"}");
    assert_int_equal(validate(c, &base_expect), SG_JWT_AZP_MISMATCH);
    free(c);

    expect_claims("exp", NULL, SG_JWT_EXP_MISSING);
    expect_claims("exp", "\"1700000300\"", SG_JWT_EXP_INVALID);
    expect_claims("exp", "1700000300.5", SG_JWT_EXP_INVALID);
    expect_claims("exp", "1.7e9", SG_JWT_EXP_INVALID);
    expect_claims("exp", "-1", SG_JWT_EXP_INVALID);
    expect_claims("exp", "99999999999999999999", SG_JWT_EXP_INVALID);
    expect_claims("exp", "253402300800", SG_JWT_EXP_INVALID);
    expect_claims("exp", "253402300799", SG_JWT_OK);
    expect_claims("exp", "true", SG_JWT_EXP_INVALID);
    expect_claims("exp", "1699999000", SG_JWT_EXPIRED);
    expect_claims("exp", "1699999940", SG_JWT_EXPIRED); /* now == exp + skew */
    expect_claims("exp", "1699999941", SG_JWT_OK);      /* within the skew */
    expect_claims("iat", NULL, SG_JWT_IAT_MISSING);
    expect_claims("iat", "1699999990.0", SG_JWT_IAT_INVALID);
    expect_claims("iat", "1700000061", SG_JWT_IAT_FUTURE);
    expect_claims("iat", "1700000060", SG_JWT_OK);
    expect_claims("iat", "1699999339", SG_JWT_IAT_TOO_OLD);
    expect_claims("iat", "1699999340", SG_JWT_OK);
    expect_claims("nbf", "1700000061", SG_JWT_NBF_FUTURE);
    expect_claims("nbf", "1700000060", SG_JWT_OK);
    expect_claims("nbf", "\"soon\"", SG_JWT_NBF_INVALID);
    expect_claims("nonce", NULL, SG_JWT_NONCE_MISSING);
    expect_claims("nonce", "12", SG_JWT_NONCE_MISSING);
    expect_claims("nonce", "\"n-0S6_WzA2Mk\"", SG_JWT_NONCE_MISMATCH);
    expect_claims("nonce", "\"n-0S6_WzA2Mj \"", SG_JWT_NONCE_MISMATCH);
    expect_claims("nonce", "\"\"", SG_JWT_NONCE_MISMATCH);
    expect_claims("sub", NULL, SG_JWT_SUB_MISSING);
    expect_claims("sub", "\"\"", SG_JWT_SUB_MISSING);
    expect_claims("sub", "42", SG_JWT_SUB_MISSING);

    /* No iat age bound, no nonce sent. */
    struct sg_jwt_expect e = base_expect;
    e.max_iat_age_s = 0;
    e.nonce = NULL;
    c = claims_with("iat", "1000");
    assert_int_equal(validate(c, &e), SG_JWT_OK);
    free(c);
    c = claims_with("nonce", NULL);
    assert_int_equal(validate(c, &e), SG_JWT_OK);
    free(c);
    assert_int_equal(sg_jwt_validate_id_token(NULL, &base_expect), SG_JWT_NOT_OBJECT);
}

static void test_claim_helpers(void **state)
{
    const char *json = "{\"amr\":[\"pwd\",\"otp\"],\"one\":\"mfa\",\"mixed\":[\"a\",1],"
                       "\"t\":true,\"f\":false,\"n\":null,\"num\":3}";
    yajl_val c = NULL;
    assert_int_equal(sg_json_parse_object(json, strlen(json), 1000, &c), 0);
    const char *v[4];
    size_t n = 0;
    assert_int_equal(sg_jwt_claim_strings(c, "amr", v, 4, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0], "pwd");
    assert_string_equal(v[1], "otp");
    assert_int_equal(sg_jwt_claim_strings(c, "amr", v, 1, &n), SG_ETOOBIG);
    assert_int_equal(sg_jwt_claim_strings(c, "one", v, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(sg_jwt_claim_strings(c, "mixed", v, 4, &n), SG_EINVAL);
    assert_int_equal(sg_jwt_claim_strings(c, "num", v, 4, &n), SG_EINVAL);
    assert_int_equal(sg_jwt_claim_strings(c, "none", v, 4, &n), SG_ENOENT);
    assert_true(sg_jwt_claim_contains(c, "amr", "otp"));
    assert_false(sg_jwt_claim_contains(c, "amr", "OTP"));
    assert_true(sg_jwt_claim_contains(c, "one", "mfa"));
    assert_false(sg_jwt_claim_contains(c, "none", "mfa"));
    bool b = false;
    assert_int_equal(sg_jwt_claim_bool(c, "t", &b), 0);
    assert_true(b);
    assert_int_equal(sg_jwt_claim_bool(c, "f", &b), 0);
    assert_false(b);
    assert_int_equal(sg_jwt_claim_bool(c, "n", &b), SG_EINVAL);
    assert_int_equal(sg_jwt_claim_bool(c, "one", &b), SG_EINVAL);
    assert_int_equal(sg_jwt_claim_bool(c, "none", &b), SG_ENOENT);
    assert_null(sg_jwt_claim_string(c, "num"));
    assert_string_equal(sg_jwt_claim_string(c, "one"), "mfa");
    int64_t t = 0;
    assert_int_equal(sg_jwt_claim_time(c, "num", &t), 0);
    assert_int_equal(t, 3);
    assert_int_equal(sg_jwt_claim_time(c, "one", &t), SG_EINVAL);
    yajl_tree_free(c);
}

/* ---- algorithm names ---- */

static void test_alg_names(void **state)
{
    enum sg_jws_alg alg = 0;
    static const char *const names[] = {"RS256", "PS256", "ES256", "EdDSA"};
    for (size_t i = 0; i < SG_ARRAY_LEN(names); i++) {
        assert_int_equal(sg_jws_alg_parse(names[i], &alg), 0);
        assert_string_equal(sg_jws_alg_name(alg), names[i]);
    }
    assert_int_equal(sg_jws_alg_parse("none", &alg), SG_EINVAL);
    assert_int_equal(sg_jws_alg_parse("HS256", &alg), SG_EINVAL);
    assert_int_equal(sg_jws_alg_parse("eddsa", &alg), SG_EINVAL);
    assert_string_equal(sg_jws_alg_name(SG_JWS_RS256 | SG_JWS_ES256), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {

        cmocka_unit_test(test_rfc7515_a2_rs256),
        cmocka_unit_test(test_rfc7515_a3_es256),
        cmocka_unit_test(test_rfc8037_ed25519),
        cmocka_unit_test(test_rfc7638_thumbprint),
        cmocka_unit_test(test_alg_none),
        cmocka_unit_test(test_hs256_with_rsa_public_key),
        cmocka_unit_test(test_alg_not_allowed),
        cmocka_unit_test(test_forbidden_headers),
        cmocka_unit_test(test_kid_selection),
        cmocka_unit_test(test_ps256),
        cmocka_unit_test(test_token_structure),
        cmocka_unit_test(test_bad_payloads),
        cmocka_unit_test(test_status_strings),
        cmocka_unit_test(test_jwks_bad_keys),
        cmocka_unit_test(test_jwks_bad_documents),
        cmocka_unit_test(test_sign_verify_roundtrip),
        cmocka_unit_test(test_prepared_contexts),
        cmocka_unit_test(test_key_files),
        cmocka_unit_test(test_claims),
        cmocka_unit_test(test_claim_helpers),
        cmocka_unit_test(test_alg_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
