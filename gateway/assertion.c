#include "ssogate/assertion.h"

#include "ssogate/claimheaders.h"
#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/jose.h"
#include "ssogate/metrics.h"
#include "ssogate/session.h"
#include "ssogate/signer.h"
#include "ssogate/token.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

/*
 * An 8-way set-associative cache keyed by session id; a full set gives up its
 * entry that is due soonest, and a session evicted signs again at its next
 * request. Eight ways over 8,192 sets rather than four over 16,384 (the same
 * 65,536 slots): with 20,000 sessions about 0.05% of them find their set full
 * instead of 0.8%, each of which signed on every request (the slots are
 * calloc'd: untouched sets cost no memory). Each set starts with its ways'
 * tags (the session id's hash, 0 for an empty way), one cache line, so that a
 * hit reads that line and its own slot's, not all eight slots.
 */
#define CACHE_SETS 8192
#define CACHE_WAYS 8

/* Signatures made, by reason: a session's first (or one its cache way lost), or a refresh of one
 * past refresh_at. Many sessions signed at once come due together: after an idle spell longer than
 * ttl_s / 2, each one's next request signs again. */
#define SIGNED_METRIC "ssogate_assertions_signed_total"

struct slot {
    char session_id[SG_SESSION_ID_SIZE];
    int64_t refresh_at;
    char *token;
};

struct set {
    uint64_t tags[CACHE_WAYS];
    struct slot slots[CACHE_WAYS];
};

struct sg_assertions {
    struct set sets[CACHE_SETS];
};

struct sg_assertions *sg_assertions_new(void)
{
    return sg_calloc(1, sizeof(struct sg_assertions));
}

void sg_assertions_free(struct sg_assertions *cache)
{
    if (cache == NULL)
        return;
    for (size_t i = 0; i < CACHE_SETS; i++) {
        for (size_t way = 0; way < CACHE_WAYS; way++)
            free(cache->sets[i].slots[way].token);
    }
    free(cache);
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

/* One claim header as a member of the assertion's "claim_headers" object. */
static void gen_claim_header(const char *name, const char *value, void *arg)
{
    gen_string(arg, name, value);
}

/* Signs a fresh assertion of the session for the upstream. */
static char *sign(const struct sg_config *cfg, const struct sg_signer *signer,
                  const struct sg_session *s, int64_t now)
{
    bool link = cfg->identity == SG_IDENTITY_LINK && s->psa_user != NULL;
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
    if (s->claim_headers != NULL && cfg->claim_header_count > 0) {
        /* The same values as the claim headers, vouched for by the signature. */
        yajl_gen_string(g, (const unsigned char *)"claim_headers", strlen("claim_headers"));
        yajl_gen_map_open(g);
        sg_claim_headers_each(cfg, s->claim_headers, gen_claim_header, g);
        yajl_gen_map_close(g);
    }
    yajl_gen_map_close(g);

    const unsigned char *payload;
    size_t len;
    yajl_gen_get_buf(g, &payload, &len);
    char *token = NULL;
    if (sg_jws_sign(signer->key, signer->sign_ctx, signer->kid, (const char *)payload, len,
                    &token) != 0)
        token = NULL;
    yajl_gen_free(g);
    return token;
}

/* The session id's hash (FNV-1a): its set, and with its low bit set (never 0) its tag. */
static uint64_t hash_of(const char *session_id)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)session_id; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h;
}

const char *sg_assertions_get(struct sg_assertions *cache, const struct sg_config *cfg,
                              const struct sg_signer *signer, const char *session_id,
                              const struct sg_session *s)
{
    uint64_t hash = hash_of(session_id);
    uint64_t tag = hash | 1;
    struct set *set = &cache->sets[hash % CACHE_SETS];
    int64_t now = sg_now_s();
    size_t victim = CACHE_WAYS;
    for (size_t way = 0; way < CACHE_WAYS; way++) {
        struct slot *slot = &set->slots[way];
        if (set->tags[way] == tag &&
            sg_memeq_ct(slot->session_id, session_id, SG_SESSION_ID_SIZE)) {
            if (now < slot->refresh_at)
                return slot->token;
            victim = way;
            break;
        }
    }
    bool refresh = victim != CACHE_WAYS;
    if (!refresh) {
        /* A miss: the first empty way, else the one due soonest. */
        victim = 0;
        for (size_t way = 1; way < CACHE_WAYS && set->tags[victim] != 0; way++) {
            if (set->tags[way] == 0 || set->slots[way].refresh_at < set->slots[victim].refresh_at)
                victim = way;
        }
    }
    char *token = sign(cfg, signer, s, now);
    if (token == NULL)
        return NULL;
    sg_metrics_count(SIGNED_METRIC, "reason", refresh ? "refresh" : "new");
    struct slot *slot = &set->slots[victim];
    free(slot->token);
    slot->token = token;
    memcpy(slot->session_id, session_id, SG_SESSION_ID_SIZE);
    slot->refresh_at = now + cfg->assertion.ttl_s / 2;
    set->tags[victim] = tag;
    return token;
}
