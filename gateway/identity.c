#include "ssogate/identity.h"

#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/cookie.h"
#include "ssogate/jose.h"
#include "ssogate/log.h"
#include "ssogate/runtime.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

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
    if (err == 0 && sg_jose_key_alg(out->key, &alg) != 0) {
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
    sg_jwk_thumbprint(out->key, out->kid);
    return 0;
}

void sg_signer_clear(struct sg_signer *signer)
{
    EVP_PKEY_free(signer->key);
    signer->key = NULL;
}

void sg_signer_publish(const struct sg_runtime *rt, struct evbuffer *out)
{
    struct sg_jwk_set *set = sg_jwk_set_new();
    const struct sg_signer *current = &rt->current->signer;
    sg_jwk_set_add(set, current->key, current->kid);
    if (rt->retired.key != NULL && rt->retired_until > sg_now_s() &&
        strcmp(rt->retired.kid, current->kid) != 0) {
        sg_jwk_set_add(set, rt->retired.key, rt->retired.kid);
    }
    char *json = sg_jwk_set_export_json(set);
    evbuffer_add(out, json, strlen(json));
    free(json);
    sg_jwk_set_free(set);
}

bool sg_identity_cookie_secure(const struct sg_config *cfg)
{
    return cfg->public_url.https;
}

char *sg_identity_cookie_name(const struct sg_config *cfg, const char *suffix)
{
    return sg_asprintf("%s%s%s", sg_identity_cookie_secure(cfg) ? "__Host-" : "",
                       cfg->session.cookie_name, suffix);
}

bool sg_identity_cookie_get(struct evhttp_request *req, const struct sg_config *cfg,
                            const char *suffix, char *out, size_t len)
{
    const char *header = evhttp_find_header(evhttp_request_get_input_headers(req), "Cookie");
    if (header == NULL)
        return false;
    char *name = sg_identity_cookie_name(cfg, suffix);
    const char *value;
    size_t value_len;
    int err = sg_cookie_find(header, strlen(header), name, &value, &value_len);
    free(name);
    if (err != 0 || value_len != len)
        return false;
    memcpy(out, value, len);
    out[len] = '\0';
    return true;
}

int sg_identity_lookup(struct sg_runtime *rt, const struct sg_config *cfg,
                       struct evhttp_request *req, struct sg_identity *out)
{
    memset(out, 0, sizeof(*out));
    if (!sg_identity_cookie_get(req, cfg, "", out->session_id, SG_SESSION_ID_LEN))
        return SG_ENOENT;

    int64_t now = sg_now_s();
    int err = sg_session_get(rt->store, out->session_id, now, &out->session);
    if (err == 0)
        err = sg_session_touch(rt->store, out->session_id, now);
    if (err != 0) {
        sg_identity_clear(out);
        return err == SG_ENOENT || err == SG_EINVAL ? SG_ENOENT : err;
    }
    return 0;
}

void sg_identity_clear(struct sg_identity *identity)
{
    sg_session_clear(&identity->session);
    OPENSSL_cleanse(identity->session_id, sizeof(identity->session_id));
}

static void gen_string(yajl_gen g, const char *key, const char *value)
{
    if (value == NULL)
        return;
    yajl_gen_string(g, (const unsigned char *)key, strlen(key));
    yajl_gen_string(g, (const unsigned char *)value, strlen(value));
}

static void gen_integer(yajl_gen g, const char *key, int64_t value)
{
    yajl_gen_string(g, (const unsigned char *)key, strlen(key));
    yajl_gen_integer(g, (long long)value);
}

/* Signs a fresh assertion of the session for the upstream. */
static char *assertion_sign(const struct sg_snapshot *snap, const struct sg_session *s)
{
    const struct sg_config *cfg = snap->cfg;
    bool link = cfg->identity == SG_IDENTITY_LINK && s->psa_user != NULL;
    int64_t now = sg_now_s();
    char jti[32];
    sg_jose_random_token(16, jti, sizeof(jti));

    yajl_gen g = yajl_gen_alloc(NULL);
    yajl_gen_map_open(g);
    gen_string(g, "iss", cfg->public_url.text);
    gen_string(g, "aud", cfg->upstream.url.text);
    gen_integer(g, "iat", now);
    gen_integer(g, "exp", now + cfg->assertion.ttl_s);
    gen_string(g, "jti", jti);
    gen_string(g, "sub", link ? s->psa_user : s->idp_sub);
    if (link) {
        gen_string(g, "psa_tenant", s->psa_tenant);
        gen_string(g, "psa_user", s->psa_user);
    }
    gen_string(g, "idp_tenant", s->idp_tenant);
    gen_string(g, "idp_sub", s->idp_sub);
    gen_string(g, "email", s->email);
    yajl_gen_map_close(g);

    const unsigned char *payload;
    size_t len;
    yajl_gen_get_buf(g, &payload, &len);
    char *token = NULL;
    if (sg_jws_sign(snap->signer.key, snap->signer.kid, (const char *)payload, len, &token) != 0)
        token = NULL;
    yajl_gen_free(g);
    return token;
}

/*
 * Signed assertions are reused for half their lifetime: signing costs more
 * than the rest of a proxied request. A 4-way set-associative cache keyed by
 * session id and snapshot generation (a reload may change the key or the
 * claims); a full set gives up its entry that is due soonest. Sized so that
 * tens of thousands of sessions rarely evict each other.
 */
#define ASSERTION_CACHE_SETS 16384
#define ASSERTION_CACHE_WAYS 4

static struct assertion_slot {
    char session_id[SG_SESSION_ID_SIZE];
    uint64_t generation;
    int64_t refresh_at;
    char *token;
} assertion_cache[ASSERTION_CACHE_SETS][ASSERTION_CACHE_WAYS];

static size_t set_of(const char *session_id)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)session_id; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return (size_t)(h % ASSERTION_CACHE_SETS);
}

static const char *assertion_get(const struct sg_snapshot *snap, const struct sg_identity *identity)
{
    struct assertion_slot *set = assertion_cache[set_of(identity->session_id)];
    struct assertion_slot *victim = &set[0];
    int64_t now = sg_now_s();
    for (size_t way = 0; way < ASSERTION_CACHE_WAYS; way++) {
        struct assertion_slot *slot = &set[way];
        if (slot->token != NULL &&
            sg_memeq_ct(slot->session_id, identity->session_id, SG_SESSION_ID_SIZE)) {
            if (slot->generation == snap->generation && now < slot->refresh_at)
                return slot->token;
            victim = slot;
            break;
        }
        if (victim->token != NULL && (slot->token == NULL || slot->refresh_at < victim->refresh_at))
            victim = slot;
    }
    char *token = assertion_sign(snap, &identity->session);
    if (token == NULL)
        return NULL;
    free(victim->token);
    victim->token = token;
    memcpy(victim->session_id, identity->session_id, SG_SESSION_ID_SIZE);
    victim->generation = snap->generation;
    victim->refresh_at = now + snap->cfg->assertion.ttl_s / 2;
    return token;
}

void sg_identity_cache_clear(void)
{
    for (size_t i = 0; i < ASSERTION_CACHE_SETS; i++) {
        for (size_t way = 0; way < ASSERTION_CACHE_WAYS; way++)
            SG_FREE(assertion_cache[i][way].token);
    }
}

int sg_identity_add_headers(const struct sg_snapshot *snap, const struct sg_identity *identity,
                            struct evkeyvalq *headers)
{
    const struct sg_session *s = &identity->session;
    const char *assertion = assertion_get(snap, identity);
    if (assertion == NULL)
        return SG_ECRYPTO;
    evhttp_add_header(headers, "X-SSO-Subject", s->idp_sub);
    if (s->idp_tenant != NULL)
        evhttp_add_header(headers, "X-SSO-IdP-Tenant", s->idp_tenant);
    if (s->email != NULL)
        evhttp_add_header(headers, "X-SSO-Email", s->email);
    if (snap->cfg->identity == SG_IDENTITY_LINK && s->psa_user != NULL) {
        evhttp_add_header(headers, "X-SSO-Tenant", s->psa_tenant);
        evhttp_add_header(headers, "X-SSO-User", s->psa_user);
    }
    evhttp_add_header(headers, "X-SSO-Assertion", assertion);
    return 0;
}

void sg_identity_end(struct sg_runtime *rt, const struct sg_config *cfg,
                     const struct sg_identity *identity, struct evhttp_request *req)
{
    sg_session_delete(rt->store, identity->session_id);
    char *name = sg_identity_cookie_name(cfg, "");
    char *header = NULL;
    struct sg_cookie_attrs attrs = {
        .path = "/",
        .max_age = 0,
        .http_only = true,
        .secure = sg_identity_cookie_secure(cfg),
        .same_site = SG_COOKIE_SAME_SITE_LAX,
    };
    if (sg_cookie_format(name, "", &attrs, &header) == 0)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Set-Cookie", header);
    free(header);
    free(name);
}
