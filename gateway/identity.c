#include "ssogate/identity.h"

#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/cookies.h"
#include "ssogate/jose.h"
#include "ssogate/log.h"
#include "ssogate/metrics.h"
#include "ssogate/runtime.h"
#include "ssogate/signer.h"
#include "ssogate/token.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

static bool same_owner(const struct sg_session *a, const struct sg_session *b)
{
    const char *fa[] = {a->idp_issuer, a->idp_sub, a->psa_tenant, a->psa_user};
    const char *fb[] = {b->idp_issuer, b->idp_sub, b->psa_tenant, b->psa_user};
    for (size_t i = 0; i < SG_ARRAY_LEN(fa); i++) {
        if ((fa[i] == NULL) != (fb[i] == NULL) || (fa[i] != NULL && strcmp(fa[i], fb[i]) != 0))
            return false;
    }
    return true;
}

#define SESSION_COOKIES_MAX 4

int sg_identity_lookup(struct sg_runtime *rt, const struct sg_config *cfg,
                       struct evhttp_request *req, struct sg_identity *out)
{
    char ids[SESSION_COOKIES_MAX][SG_SESSION_ID_SIZE];
    memset(out, 0, sizeof(*out));
    size_t count = sg_cookies_values(evhttp_request_get_input_headers(req), cfg, SG_COOKIE_SESSION,
                                     SG_SESSION_ID_LEN, &ids[0][0], SESSION_COOKIES_MAX);

    int64_t now = sg_now_s();
    bool found = false;
    int err = 0;
    for (size_t i = 0; i < count; i++) {
        struct sg_session other;
        struct sg_session *into = found ? &other : &out->session;
        int rc = sg_session_get(rt->store, ids[i], now, into);
        if (rc == SG_ENOENT || rc == SG_EINVAL)
            continue; /* unknown, expired or garbage: never hides the real one */
        if (rc != 0) {
            err = rc;
            break;
        }
        if (!found) {
            found = true;
            memcpy(out->session_id, ids[i], SG_SESSION_ID_SIZE);
            continue;
        }
        bool same = same_owner(&out->session, &other);
        sg_session_clear(&other);
        if (!same) {
            /* Sessions of two identities: one was planted (cookie tossing). */
            sg_metrics_count("ssogate_session_cookie_conflicts_total", "result", "refused");
            sg_log(SG_LOG_WARN, "session_cookie_conflict",
                   "cookies of sessions of different users: none is used");
            err = SG_EEXIST;
            break;
        }
    }
    OPENSSL_cleanse(ids, sizeof(ids));
    if (err == 0 && !found)
        err = SG_ENOENT;
    if (err == 0)
        err = sg_session_touch(rt->store, out->session_id, now);
    if (err != 0) {
        sg_identity_clear(out);
        return err == SG_EINVAL ? SG_ENOENT : err;
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
    sg_random_token(16, jti, sizeof(jti));

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
    sg_cookies_clear(evhttp_request_get_output_headers(req), cfg, SG_COOKIE_SESSION);
}
