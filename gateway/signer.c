#include "ssogate/signer.h"

#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/jose.h"
#include "ssogate/log.h"

#include <event2/buffer.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ASSERTION_KEY_FILE "assertion-key.pem"

int sg_signer_load(const struct sg_config *cfg, struct sg_signer *out, char *errbuf, size_t errlen)
{
    struct sg_jose_error jerr = {0};
    char *generated = NULL;
    int err;

    memset(out, 0, sizeof(*out));
    if (cfg->assertion.key_file != NULL) {
        err = sg_jose_key_load_pem(cfg->assertion.key_file, &out->key, &jerr);
    } else {
        generated = sg_asprintf("%s/%s", cfg->data_dir, ASSERTION_KEY_FILE);
        err = sg_jose_key_load_or_create(generated, SG_JWS_ES256, &out->key, &jerr);
    }
    enum sg_jws_alg alg;
    if (err == 0 && (sg_jose_key_alg(out->key, &alg) != 0 || alg == SG_JWS_RS256)) {
        snprintf(jerr.what, sizeof(jerr.what), "the key is neither EC P-256 nor Ed25519");
        err = SG_EINVAL;
    }
    if (err != 0) {
        snprintf(errbuf, errlen, "assertion.key_file: %s: %s%s%s",
                 cfg->assertion.key_file ? cfg->assertion.key_file : generated, jerr.what,
                 jerr.openssl[0] ? ": " : "", jerr.openssl);
        EVP_PKEY_free(out->key);
        out->key = NULL;
        free(generated);
        return err;
    }
    free(generated);
    out->alg = sg_jws_alg_name(alg);
    out->sign_ctx = sg_jws_sign_ctx_new(out->key);
    sg_jwk_thumbprint(out->key, out->kid);
    return 0;
}

int sg_signer_load_client(const struct sg_config *cfg, struct sg_signer *out, char *errbuf,
                          size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (cfg->idp == NULL || cfg->idp->token_auth != SG_TOKEN_AUTH_PRIVATE_KEY_JWT)
        return 0;
    struct sg_jose_error jerr = {0};
    enum sg_jws_alg alg;
    int err = sg_jose_key_load_pem(cfg->idp->client_key_file, &out->key, &jerr);
    if (err == 0 && sg_jose_key_alg(out->key, &alg) != 0)
        err = SG_EINVAL; /* sg_jose_key_load_pem refuses such keys already */
    if (err != 0) {
        snprintf(errbuf, errlen, "idp.client_key_file: %s: %s%s%s", cfg->idp->client_key_file,
                 jerr.what, jerr.openssl[0] ? ": " : "", jerr.openssl);
        EVP_PKEY_free(out->key);
        out->key = NULL;
        return err;
    }
    out->alg = sg_jws_alg_name(alg);
    out->sign_ctx = sg_jws_sign_ctx_new(out->key);
    sg_jwk_thumbprint(out->key, out->kid);
    return 0;
}

void sg_signer_clear(struct sg_signer *signer)
{
    EVP_PKEY_CTX_free(signer->sign_ctx);
    signer->sign_ctx = NULL;
    EVP_PKEY_free(signer->key);
    signer->key = NULL;
}

void sg_retired_add(struct sg_retired *retired, const struct sg_signer *key, int64_t until,
                    int64_t now)
{
    size_t at = SG_RETIRED_MAX;
    for (size_t i = 0; i < SG_RETIRED_MAX && at == SG_RETIRED_MAX; i++) {
        if (retired->keys[i].key != NULL && strcmp(retired->keys[i].kid, key->kid) == 0)
            at = i;
    }
    for (size_t i = 0; i < SG_RETIRED_MAX && at == SG_RETIRED_MAX; i++) {
        if (retired->keys[i].key == NULL || retired->until[i] <= now)
            at = i;
    }
    if (at == SG_RETIRED_MAX) {
        at = 0;
        for (size_t i = 1; i < SG_RETIRED_MAX; i++) {
            if (retired->until[i] < retired->until[at])
                at = i;
        }
        sg_log(SG_LOG_WARN, "reload",
               "more than %d signing keys retired within an assertion's lifetime: key %s is no "
               "longer published, %lld s before the assertions it signed expire",
               SG_RETIRED_MAX, retired->keys[at].kid, (long long)(retired->until[at] - now));
    }
    struct sg_signer *place = &retired->keys[at];
    sg_signer_clear(place);
    *place = *key;
    place->sign_ctx = NULL; /* a retired key only verifies */
    EVP_PKEY_up_ref(place->key);
    retired->until[at] = until;
}

void sg_retired_clear(struct sg_retired *retired)
{
    for (size_t i = 0; i < SG_RETIRED_MAX; i++)
        sg_signer_clear(&retired->keys[i]);
}

void sg_signer_publish(const struct sg_signer *current, const struct sg_retired *retired,
                       int64_t now, struct evbuffer *out)
{
    struct sg_jwk_set *set = sg_jwk_set_new();
    sg_jwk_set_add(set, current->key, current->kid);
    for (size_t i = 0; i < SG_RETIRED_MAX; i++) {
        const struct sg_signer *key = &retired->keys[i];
        if (key->key != NULL && retired->until[i] > now && strcmp(key->kid, current->kid) != 0)
            sg_jwk_set_add(set, key->key, key->kid);
    }
    char *json = sg_jwk_set_export_json(set);
    evbuffer_add(out, json, strlen(json));
    free(json);
    sg_jwk_set_free(set);
}
