/*
 * Fuzzes JWKS parsing. Every key that is kept must export to a JWK that
 * parses back to a key of the same thumbprint, and must be found by its kid.
 */
#include "../../gateway/b64url.c"
#include "../../gateway/common.c"
#include "../../gateway/jose.c"
#include "../../gateway/json.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_key(const struct sg_jwk_set *set, const struct sg_jwk *key)
{
    char thumb[SG_JWK_THUMBPRINT_LEN + 1], again[SG_JWK_THUMBPRINT_LEN + 1];
    if (sg_jwk_thumbprint(key->pkey, thumb) != 0 || strlen(thumb) != SG_JWK_THUMBPRINT_LEN)
        abort();
    char *jwk = sg_jwk_export_json(key->pkey, key->kid);
    if (jwk == NULL)
        abort();
    char *doc = sg_asprintf("{\"keys\":[%s]}", jwk);
    struct sg_jwk_set *back = NULL;
    if (sg_jwk_set_parse(doc, strlen(doc), &back, NULL) != 0 || back->count != 1 ||
        sg_jwk_thumbprint(back->keys[0].pkey, again) != 0 || strcmp(thumb, again) != 0)
        abort();
    sg_jwk_set_free(back);
    free(doc);
    free(jwk);
    static const enum sg_jws_alg algs[] = {SG_JWS_RS256, SG_JWS_PS256, SG_JWS_ES256, SG_JWS_EDDSA};
    for (size_t i = 0; i < SG_ARRAY_LEN(algs); i++) {
        const struct sg_jwk *found = sg_jwk_set_find(set, key->kid, algs[i]);
        if (key->kid != NULL && found == NULL)
            abort();
        if (found != NULL && key->kid != NULL && strcmp(found->kid, key->kid) != 0)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sg_jwk_set *set = NULL;
    struct sg_jose_error err;
    int rc = sg_jwk_set_parse((const char *)data, size, &set, &err);
    if ((rc == 0) != (set != NULL))
        abort();
    if (rc != 0)
        return 0;
    if (set->count + set->skipped > SG_JOSE_MAX_KEYS)
        abort();
    for (size_t i = 0; i < set->count; i++)
        check_key(set, &set->keys[i]);
    char *all = sg_jwk_set_export_json(set);
    struct sg_jwk_set *back = NULL;
    if (sg_jwk_set_parse(all, strlen(all), &back, NULL) != 0 || back->count != set->count)
        abort();
    sg_jwk_set_free(back);
    free(all);
    sg_jwk_set_free(set);
    return 0;
}
