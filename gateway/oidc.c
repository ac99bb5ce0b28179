#include "ssogate/oidc.h"

#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/httpc.h"
#include "ssogate/jose.h"
#include "ssogate/json.h"
#include "ssogate/jwks.h"
#include "ssogate/log.h"
#include "ssogate/metrics.h"
#include "ssogate/signer.h"
#include "ssogate/token.h"

#include <sys/queue.h>

#include <assert.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

#define EXCHANGE_MAGIC 0x4f494443u
#define MAX_ORIGINS    4
#define MAX_IAT_AGE_S  600
#define RETRY_MIN_S    1
#define RETRY_MAX_S    60
#define IDP_POOL_MIN   8
#define IDP_POOL_MAX   2048

struct origin_client {
    char *origin; /* scheme://host:port */
    struct sg_httpc *client;
};

struct sg_oidc_exchange {
    uint32_t magic;
    struct sg_oidc *oidc;
    struct sg_httpc_request *http;
    char *nonce;
    char *id_token;
    bool waiting_keys;
    bool refetched;
    bool logout;         /* a back-channel logout token, not a code exchange */
    bool userinfo_asked; /* idp.userinfo: the endpoint was asked (or failed to be) */
    char *access_token;
    struct event *deliver; /* hands a result known at once to the callback, later */
    enum sg_oidc_status result;
    const char *result_detail;
    yajl_val result_claims;
    sg_oidc_exchange_cb cb;
    void *arg;
    struct sg_oidc_exchange *prev, *next; /* in key_waiters while waiting_keys */
};

struct sg_oidc {
    struct event_base *base;
    struct evdns_base *dns;
    const struct sg_signer *client_key; /* private_key_jwt; borrowed from the snapshot */
    const struct sg_config *cfg;
    const struct sg_idp_config *idp;
    char *redirect_uri;
    unsigned allowed_algs;

    char *issuer;      /* as the discovery document states it */
    bool iss_response; /* authorization responses carry iss (RFC 9207) */
    char *authorization_endpoint;
    char *token_endpoint;
    char *jwks_uri;
    char *end_session_endpoint;
    char *userinfo_endpoint;
    struct sg_httpc_request *discovery_req;
    unsigned discovery_backoff_s;

    struct sg_jwks *jwks;
    struct sg_httpc_request *jwks_req;
    struct sg_oidc_exchange *key_waiters;

    struct origin_client origins[MAX_ORIGINS];
    size_t origin_count;
    struct event *refresh;
};

static const char *const status_names[SG_OIDC_STATUS_COUNT] = {
    [SG_OIDC_OK] = "ok",
    [SG_OIDC_TOKEN_UNREACHABLE] = "token_unreachable",
    [SG_OIDC_TOKEN_ERROR] = "token_error",
    [SG_OIDC_NO_ID_TOKEN] = "no_id_token",
    [SG_OIDC_JWS_INVALID] = "jws_invalid",
    [SG_OIDC_USERINFO_FAILED] = "userinfo_failed",
    [SG_OIDC_USERINFO_INVALID] = "userinfo_invalid",
    [SG_OIDC_CLAIMS_INVALID] = "claims_invalid",
};

const char *sg_oidc_status_name(enum sg_oidc_status status)
{
    return status_names[status];
}

static void fetch_discovery(struct sg_oidc *oidc);
static void fetch_keys(struct sg_oidc *oidc);

/*
 * Connections kept to one IdP origin. A code exchange holds its connection
 * until the token endpoint answers, so a slow IdP needs as many connections
 * as logins wait on it: up to logins_in_flight, within bounds.
 */
static unsigned idp_pool_size(const struct sg_config *cfg)
{
    uint32_t n = cfg->limits.logins_in_flight;
    return n < IDP_POOL_MIN ? IDP_POOL_MIN : n > IDP_POOL_MAX ? IDP_POOL_MAX : (unsigned)n;
}

/*
 * Splits an absolute URL into the client of its origin and the request
 * target (path and query). The scheme must be https unless the configuration
 * allows plain http. Returns the client, or NULL with a reason in errbuf.
 */
static struct sg_httpc *client_for(struct sg_oidc *oidc, const char *url, char **target,
                                   char *errbuf, size_t errlen)
{
    struct evhttp_uri *uri = evhttp_uri_parse_with_flags(url, 0);
    struct sg_httpc *client = NULL;
    char *origin = NULL;

    if (uri == NULL || evhttp_uri_get_scheme(uri) == NULL || evhttp_uri_get_host(uri) == NULL) {
        snprintf(errbuf, errlen, "not an absolute URL");
        goto end;
    }
    const char *scheme = evhttp_uri_get_scheme(uri);
    bool https = strcmp(scheme, "https") == 0;
    if (!https && !(strcmp(scheme, "http") == 0 && oidc->idp->allow_insecure_http)) {
        snprintf(errbuf, errlen, "scheme %s refused (https required)", scheme);
        goto end;
    }
    int port = evhttp_uri_get_port(uri);
    if (port < 0)
        port = https ? 443 : 80;
    const char *host = evhttp_uri_get_host(uri);
    origin = sg_asprintf("%s://%s:%d", https ? "https" : "http", host, port);
    const char *path = evhttp_uri_get_path(uri);
    const char *query = evhttp_uri_get_query(uri);
    *target =
        sg_asprintf("%s%s%s", (path && *path) ? path : "/", query ? "?" : "", query ? query : "");

    for (size_t i = 0; i < oidc->origin_count; i++) {
        if (strcmp(oidc->origins[i].origin, origin) == 0) {
            client = oidc->origins[i].client;
            goto end;
        }
    }
    if (oidc->origin_count == MAX_ORIGINS) {
        snprintf(errbuf, errlen, "too many distinct IdP origins");
        goto end;
    }
    char *host_copy = sg_strdup(host);
    char empty[1] = "";
    struct sg_url u = {
        .text = origin, .https = https, .host = host_copy, .port = (uint16_t)port, .path = empty};
    struct sg_httpc_options opts = {
        .ca_file = oidc->idp->ca_file,
        .timeout_ms = oidc->idp->timeout_ms,
        .max_response_bytes = SG_OIDC_MAX_DOCUMENT,
        .pool_size = idp_pool_size(oidc->cfg),
    };
    int err = sg_httpc_new(oidc->base, oidc->dns, &u, &opts, &client, errbuf, errlen);
    free(host_copy);
    if (err != 0) {
        client = NULL;
        goto end;
    }
    oidc->origins[oidc->origin_count].origin = origin;
    oidc->origins[oidc->origin_count].client = client;
    oidc->origin_count++;
    origin = NULL;

end:
    if (client == NULL && *target != NULL)
        SG_FREE(*target);
    free(origin);
    if (uri != NULL)
        evhttp_uri_free(uri);
    return client;
}

static void count_fetch(const char *document, const char *result)
{
    sg_metrics_count(strcmp(document, "jwks") == 0 ? "ssogate_idp_jwks_fetches_total"
                                                   : "ssogate_idp_discovery_fetches_total",
                     "result", result);
}

static void schedule_refresh(struct sg_oidc *oidc, unsigned seconds)
{
    struct timeval tv = {seconds, 0};
    evtimer_add(oidc->refresh, &tv);
}

static char *member_string(yajl_val doc, const char *name)
{
    yajl_val v = sg_json_member(doc, name);
    return YAJL_IS_STRING(v) ? sg_strdup(YAJL_GET_STRING(v)) : NULL;
}

/* Compares issuers as RFC 8414 does, forgiving one trailing slash on either side. */
static bool issuer_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 0 && a[la - 1] == '/')
        la--;
    if (lb > 0 && b[lb - 1] == '/')
        lb--;
    return la == lb && memcmp(a, b, la) == 0;
}

static void discovery_failed(struct sg_oidc *oidc, const char *why)
{
    count_fetch("discovery", why);
    sg_log_fields(SG_LOG_ERROR, "idp_discovery",
                  (struct sg_log_field[]){SG_LOG_STR("issuer", oidc->idp->issuer.text),
                                          SG_LOG_STR("reason", why),
                                          SG_LOG_INT("retry_s", oidc->discovery_backoff_s)},
                  3);
    schedule_refresh(oidc, oidc->discovery_backoff_s);
    oidc->discovery_backoff_s =
        oidc->discovery_backoff_s * 2 > RETRY_MAX_S ? RETRY_MAX_S : oidc->discovery_backoff_s * 2;
}

static void on_discovery(const char *err, int status, const char *body, size_t len, void *arg)
{
    struct sg_oidc *oidc = arg;
    yajl_val doc = NULL;
    oidc->discovery_req = NULL;

    if (err != NULL) {
        discovery_failed(oidc, err);
        return;
    }
    if (status != 200 || sg_json_parse_object(body, len, SG_OIDC_MAX_DOCUMENT, &doc) != 0) {
        discovery_failed(oidc, status != 200 ? "http_status" : "bad_json");
        return;
    }
    char *issuer = member_string(doc, "issuer");
    char *authorization = member_string(doc, "authorization_endpoint");
    char *token = member_string(doc, "token_endpoint");
    char *jwks = member_string(doc, "jwks_uri");
    char *end_session = member_string(doc, "end_session_endpoint");
    char *userinfo = member_string(doc, "userinfo_endpoint");
    bool iss_response =
        YAJL_IS_TRUE(sg_json_member(doc, "authorization_response_iss_parameter_supported"));
    yajl_tree_free(doc);

    const char *problem = NULL;
    if (issuer == NULL || !issuer_equal(issuer, oidc->idp->issuer.text))
        problem = "issuer_mismatch";
    else if (authorization == NULL || token == NULL || jwks == NULL ||
             (oidc->idp->userinfo && userinfo == NULL))
        problem = "endpoint_missing";
    if (problem != NULL) {
        free(issuer);
        free(authorization);
        free(token);
        free(jwks);
        free(end_session);
        free(userinfo);
        discovery_failed(oidc, problem);
        return;
    }
    free(oidc->issuer);
    free(oidc->authorization_endpoint);
    free(oidc->token_endpoint);
    free(oidc->jwks_uri);
    free(oidc->end_session_endpoint);
    free(oidc->userinfo_endpoint);
    oidc->userinfo_endpoint = userinfo;
    oidc->issuer = issuer;
    oidc->authorization_endpoint = authorization;
    oidc->token_endpoint = token;
    oidc->jwks_uri = jwks;
    oidc->end_session_endpoint = end_session;
    oidc->iss_response = iss_response;
    oidc->discovery_backoff_s = RETRY_MIN_S;
    count_fetch("discovery", "ok");
    sg_log_fields(SG_LOG_INFO, "idp_discovery",
                  (struct sg_log_field[]){SG_LOG_STR("issuer", issuer),
                                          SG_LOG_BOOL("end_session", end_session != NULL)},
                  2);
    if (sg_jwks_stale(oidc->jwks, sg_now_s(), SG_OIDC_REFRESH_S))
        fetch_keys(oidc);
    schedule_refresh(oidc, SG_OIDC_REFRESH_S);
}

static void fetch_discovery(struct sg_oidc *oidc)
{
    char errbuf[256];
    char *target = NULL;
    char *url = sg_asprintf("%s/.well-known/openid-configuration", oidc->idp->issuer.text);
    struct sg_httpc *client = client_for(oidc, url, &target, errbuf, sizeof(errbuf));
    free(url);
    if (client == NULL) {
        discovery_failed(oidc, "client");
        return;
    }
    oidc->discovery_req = sg_httpc_get(client, target, on_discovery, oidc);
    free(target);
}

static void on_refresh(evutil_socket_t fd, short what, void *arg)
{
    struct sg_oidc *oidc = arg;
    if (oidc->discovery_req == NULL)
        fetch_discovery(oidc);
}

static enum sg_oidc_status verify(struct sg_oidc_exchange *ex, yajl_val *claims,
                                  const char **detail);
static void exchange_finish(struct sg_oidc_exchange *ex, enum sg_oidc_status status,
                            const char *detail, yajl_val claims);

/* Keys arrived (or the fetch failed): every waiting exchange verifies again, once. */
static void wake_key_waiters(struct sg_oidc *oidc)
{
    while (oidc->key_waiters != NULL) {
        struct sg_oidc_exchange *ex = oidc->key_waiters;
        oidc->key_waiters = ex->next;
        if (oidc->key_waiters)
            oidc->key_waiters->prev = NULL;
        ex->next = ex->prev = NULL;
        ex->waiting_keys = false;
        ex->refetched = true;
        yajl_val claims = NULL;
        const char *detail = NULL;
        enum sg_oidc_status status = verify(ex, &claims, &detail);
        exchange_finish(ex, status, detail, claims);
    }
}

static void on_keys(const char *err, int status, const char *body, size_t len, void *arg)
{
    struct sg_oidc *oidc = arg;
    oidc->jwks_req = NULL;
    const char *result = err ? err : status != 200 ? "http_status" : "ok";

    if (err == NULL && status == 200 &&
        sg_jwks_replace(oidc->jwks, oidc->issuer, body, len, sg_now_s()) != 0)
        result = "invalid";
    count_fetch("jwks", result);
    if (strcmp(result, "ok") != 0)
        sg_log(SG_LOG_ERROR, "idp_jwks", "JWKS fetch failed (%s): keeping the cached keys", result);
    wake_key_waiters(oidc);
}

static void fetch_keys(struct sg_oidc *oidc)
{
    char errbuf[256];
    char *target = NULL;
    if (oidc->jwks_req != NULL || oidc->jwks_uri == NULL)
        return;
    struct sg_httpc *client = client_for(oidc, oidc->jwks_uri, &target, errbuf, sizeof(errbuf));
    if (client == NULL) {
        sg_log(SG_LOG_ERROR, "idp_jwks", "jwks_uri refused: %s", errbuf);
        count_fetch("jwks", "client");
        wake_key_waiters(oidc);
        return;
    }
    oidc->jwks_req = sg_httpc_get(client, target, on_keys, oidc);
    free(target);
}

/* Verifies the exchange's ID token. Returns -1 when it waits for a key refetch. */
static int verify_token(struct sg_oidc_exchange *ex, yajl_val *claims_out, const char **detail)
{
    struct sg_oidc *oidc = ex->oidc;
    struct sg_jws_result res = {0};
    enum sg_jws_status jst = SG_JWS_KID_UNKNOWN;
    int status;

    const struct sg_jwk_set *keys = sg_jwks_keys(oidc->jwks);
    if (keys != NULL)
        jst = sg_jws_verify(ex->id_token, strlen(ex->id_token), keys, oidc->allowed_algs, &res);
    if (jst == SG_JWS_KID_UNKNOWN && !ex->refetched) {
        int64_t now = sg_now_s();
        bool allowed = oidc->jwks_req != NULL || sg_jwks_refetch_allowed(oidc->jwks, now);
        if (allowed && oidc->jwks_uri != NULL) {
            sg_jws_result_clear(&res);
            ex->waiting_keys = true;
            ex->next = oidc->key_waiters;
            if (oidc->key_waiters)
                oidc->key_waiters->prev = ex;
            oidc->key_waiters = ex;
            if (oidc->jwks_req == NULL) {
                sg_jwks_refetch_started(oidc->jwks, now);
                fetch_keys(oidc);
            }
            return -1;
        }
        sg_metrics_count("ssogate_idp_jwks_refetch_total", "result", "rate_limited");
    }
    if (jst != SG_JWS_OK) {
        *detail = sg_jws_status_name(jst);
        status = SG_OIDC_JWS_INVALID;
        goto end;
    }
    struct sg_jwt_expect expect = {
        .issuer = oidc->issuer,
        .client_id = oidc->idp->client_id,
        .nonce = ex->nonce,
        .now = sg_now_s(),
        .skew_s = oidc->idp->clock_skew_s,
        .max_iat_age_s = MAX_IAT_AGE_S,
    };
    enum sg_jwt_status cst = ex->logout ? sg_jwt_validate_logout_token(res.claims, &expect)
                                        : sg_jwt_validate_id_token(res.claims, &expect);
    if (cst != SG_JWT_OK) {
        *detail = sg_jwt_status_name(cst);
        status = SG_OIDC_CLAIMS_INVALID;
        goto end;
    }
    *claims_out = res.claims;
    res.claims = NULL;
    *detail = "ok";
    status = SG_OIDC_OK;

end:
    sg_jws_result_clear(&res);
    return status;
}

static enum sg_oidc_status verify(struct sg_oidc_exchange *ex, yajl_val *claims,
                                  const char **detail)
{
    int rc = verify_token(ex, claims, detail);
    return rc < 0 ? SG_OIDC_STATUS_COUNT : (enum sg_oidc_status)rc;
}

static void exchange_free(struct sg_oidc_exchange *ex)
{
    ex->magic = 0;
    if (ex->deliver != NULL)
        event_free(ex->deliver);
    if (ex->result_claims != NULL)
        yajl_tree_free(ex->result_claims);
    free(ex->nonce);
    free(ex->id_token);
    if (ex->access_token != NULL)
        OPENSSL_cleanse(ex->access_token, strlen(ex->access_token));
    free(ex->access_token);
    free(ex);
}

static void ask_userinfo(struct sg_oidc_exchange *ex, yajl_val claims);

/* Runs the callback unless the exchange now waits for keys (status SG_OIDC_STATUS_COUNT) or,
 * with idp.userinfo, for the userinfo endpoint. */
static void exchange_finish(struct sg_oidc_exchange *ex, enum sg_oidc_status status,
                            const char *detail, yajl_val claims)
{
    assert(ex->magic == EXCHANGE_MAGIC);
    if (status == SG_OIDC_STATUS_COUNT)
        return;
    if (status == SG_OIDC_OK && !ex->logout && ex->oidc->idp->userinfo && !ex->userinfo_asked) {
        ask_userinfo(ex, claims);
        return;
    }
    sg_oidc_exchange_cb cb = ex->cb;
    void *arg = ex->arg;
    char *id_token = ex->id_token;
    ex->id_token = NULL;
    exchange_free(ex);
    cb(status, detail, claims, id_token, arg);
    free(id_token);
    if (claims != NULL)
        yajl_tree_free(claims);
}

/* Claims that describe the authentication itself come from the ID token only. */
static const char *const id_token_only[] = {"iss", "aud",     "azp",       "exp", "iat",
                                            "nbf", "nonce",   "auth_time", "acr", "amr",
                                            "sid", "at_hash", "c_hash",    "jti", "sub"};

/* Adds to claims each member of extra (a userinfo object) that claims lacks, moved from extra. */
static void merge_claims(yajl_val claims, yajl_val extra)
{
    for (size_t i = 0; i < extra->u.object.len; i++) {
        const char *key = extra->u.object.keys[i];
        bool skip = sg_json_member(claims, key) != NULL;
        for (size_t j = 0; !skip && j < SG_ARRAY_LEN(id_token_only); j++)
            skip = strcmp(key, id_token_only[j]) == 0;
        if (skip)
            continue;
        size_t n = claims->u.object.len;
        claims->u.object.keys = sg_realloc((void *)claims->u.object.keys, (n + 1) * sizeof(char *));
        claims->u.object.values = sg_realloc(claims->u.object.values, (n + 1) * sizeof(yajl_val));
        claims->u.object.keys[n] = sg_strdup(key);
        claims->u.object.values[n] = extra->u.object.values[i];
        extra->u.object.values[i] = NULL;
        claims->u.object.len = n + 1;
    }
}

static void userinfo_failed(struct sg_oidc_exchange *ex, yajl_val claims,
                            enum sg_oidc_status status, const char *detail)
{
    yajl_tree_free(claims);
    sg_metrics_count("ssogate_idp_userinfo_total", "result", detail);
    exchange_finish(ex, status, detail, NULL);
}

static void on_userinfo(const char *err, int status, const char *body, size_t len, void *arg)
{
    struct sg_oidc_exchange *ex = arg;
    ex->http = NULL;
    yajl_val claims = ex->result_claims;
    ex->result_claims = NULL;
    yajl_val doc = NULL;
    if (err != NULL) {
        userinfo_failed(ex, claims, SG_OIDC_USERINFO_FAILED, err);
        return;
    }
    if (status != 200 || sg_json_parse_object(body, len, SG_OIDC_MAX_DOCUMENT, &doc) != 0) {
        userinfo_failed(ex, claims, SG_OIDC_USERINFO_FAILED,
                        status != 200 ? "http_status" : "bad_json");
        return;
    }
    const char *sub = sg_jwt_claim_string(doc, "sub");
    const char *id_sub = sg_jwt_claim_string(claims, "sub");
    if (sub == NULL || id_sub == NULL || strcmp(sub, id_sub) != 0) {
        yajl_tree_free(doc);
        userinfo_failed(ex, claims, SG_OIDC_USERINFO_INVALID, "sub_mismatch");
        return;
    }
    merge_claims(claims, doc);
    yajl_tree_free(doc);
    sg_metrics_count("ssogate_idp_userinfo_total", "result", "ok");
    exchange_finish(ex, SG_OIDC_OK, "ok", claims);
}

/*
 * Asks the userinfo endpoint with the exchange's access token, keeping claims
 * (the verified ID token's, owned) until it answers; without a token or an
 * endpoint the exchange ends as failed at once.
 */
static void ask_userinfo(struct sg_oidc_exchange *ex, yajl_val claims)
{
    struct sg_oidc *oidc = ex->oidc;
    ex->userinfo_asked = true;
    char errbuf[256];
    char *target = NULL;
    struct sg_httpc *client =
        ex->access_token == NULL || oidc->userinfo_endpoint == NULL
            ? NULL
            : client_for(oidc, oidc->userinfo_endpoint, &target, errbuf, sizeof(errbuf));
    if (client == NULL) {
        userinfo_failed(ex, claims, SG_OIDC_USERINFO_FAILED,
                        ex->access_token == NULL ? "no_access_token" : "endpoint");
        return;
    }
    struct evkeyvalq headers;
    TAILQ_INIT(&headers);
    char *bearer = sg_asprintf("Bearer %s", ex->access_token);
    evhttp_add_header(&headers, "Authorization", bearer);
    OPENSSL_cleanse(bearer, strlen(bearer));
    free(bearer);
    ex->result_claims = claims;
    ex->http = sg_httpc_get_with(client, target, &headers, on_userinfo, ex);
    evhttp_clear_headers(&headers);
    free(target);
}

static void on_token(const char *err, int status, const char *body, size_t len, void *arg)
{
    struct sg_oidc_exchange *ex = arg;
    yajl_val doc = NULL;
    ex->http = NULL;

    if (err != NULL) {
        exchange_finish(ex, SG_OIDC_TOKEN_UNREACHABLE, err, NULL);
        return;
    }
    if (sg_json_parse_object(body, len, SG_OIDC_MAX_DOCUMENT, &doc) != 0) {
        exchange_finish(ex, SG_OIDC_TOKEN_ERROR, status == 200 ? "bad_json" : "http_status", NULL);
        return;
    }
    if (status != 200) {
        yajl_tree_free(doc);
        exchange_finish(ex, SG_OIDC_TOKEN_ERROR, "oauth_error", NULL);
        return;
    }
    ex->id_token = member_string(doc, "id_token");
    ex->access_token = member_string(doc, "access_token");
    yajl_tree_free(doc);
    if (ex->id_token == NULL) {
        exchange_finish(ex, SG_OIDC_NO_ID_TOKEN, "id_token", NULL);
        return;
    }
    yajl_val claims = NULL;
    const char *detail = NULL;
    enum sg_oidc_status st = verify(ex, &claims, &detail);
    exchange_finish(ex, st, detail, claims);
}

static char *form_encode(const char *value)
{
    return sg_percent_encode(value, true);
}

static char *basic_credentials(const char *client_id, const char *secret)
{
    char *id = form_encode(client_id);
    char *pw = form_encode(secret);
    char *joined = sg_asprintf("%s:%s", id, pw);
    size_t len = strlen(joined);
    char *b64 = sg_malloc(4 * ((len + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)joined, (int)len);
    char *header = sg_asprintf("Basic %s", b64);
    OPENSSL_cleanse(joined, len);
    free(id);
    free(pw);
    free(joined);
    free(b64);
    return header;
}

/* How long a client assertion is valid: one token request. */
#define CLIENT_ASSERTION_TTL_S 60

static void gen_pair(yajl_gen g, const char *key, const char *value)
{
    yajl_gen_string(g, (const unsigned char *)key, strlen(key));
    yajl_gen_string(g, (const unsigned char *)value, strlen(value));
}

static void gen_int(yajl_gen g, const char *key, int64_t value)
{
    yajl_gen_string(g, (const unsigned char *)key, strlen(key));
    yajl_gen_integer(g, (long long)value);
}

/*
 * The private_key_jwt client assertion (RFC 7523 2.2, OIDC Core 9): the
 * client itself as iss and sub, the token endpoint as aud, a fresh jti and a
 * short life. NULL when signing fails.
 */
static char *client_assertion(const struct sg_oidc *oidc)
{
    int64_t now = sg_now_s();
    char jti[48];
    sg_random_token(32, jti, sizeof(jti));
    yajl_gen g = yajl_gen_alloc(NULL);
    yajl_gen_map_open(g);
    gen_pair(g, "iss", oidc->idp->client_id);
    gen_pair(g, "sub", oidc->idp->client_id);
    gen_pair(g, "aud", oidc->token_endpoint);
    gen_pair(g, "jti", jti);
    gen_int(g, "iat", now);
    gen_int(g, "exp", now + CLIENT_ASSERTION_TTL_S);
    yajl_gen_map_close(g);
    const unsigned char *payload;
    size_t len;
    yajl_gen_get_buf(g, &payload, &len);
    char *jwt = NULL;
    if (sg_jws_sign(oidc->client_key->key, oidc->client_key->sign_ctx, oidc->client_key->kid,
                    (const char *)payload, len, &jwt) != 0)
        jwt = NULL;
    yajl_gen_free(g);
    return jwt;
}

struct sg_oidc_exchange *sg_oidc_exchange_code(struct sg_oidc *oidc, const char *code,
                                               const char *verifier, const char *nonce,
                                               sg_oidc_exchange_cb cb, void *arg)
{
    char errbuf[256];
    char *target = NULL;
    if (!sg_oidc_ready(oidc))
        return NULL;
    struct sg_httpc *client =
        client_for(oidc, oidc->token_endpoint, &target, errbuf, sizeof(errbuf));
    if (client == NULL) {
        sg_log(SG_LOG_ERROR, "idp_token", "token_endpoint refused: %s", errbuf);
        return NULL;
    }
    char *code_enc = form_encode(code);
    char *redirect_enc = form_encode(oidc->redirect_uri);
    char *verifier_enc = form_encode(verifier);
    char *body;
    char *authorization = NULL;
    if (oidc->idp->token_auth == SG_TOKEN_AUTH_PRIVATE_KEY_JWT) {
        char *assertion = client_assertion(oidc);
        if (assertion == NULL) {
            sg_metrics_error(SG_MERR_ASSERTION);
            sg_log(SG_LOG_ERROR, "idp_token", "signing the client assertion failed");
            free(code_enc);
            free(redirect_enc);
            free(verifier_enc);
            free(target);
            return NULL;
        }
        char *id_enc = form_encode(oidc->idp->client_id);
        body = sg_asprintf("grant_type=authorization_code&code=%s&redirect_uri=%s&code_verifier=%s"
                           "&client_id=%s&client_assertion_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3A"
                           "client-assertion-type%%3Ajwt-bearer&client_assertion=%s",
                           code_enc, redirect_enc, verifier_enc, id_enc, assertion);
        free(id_enc);
        free(assertion);
    } else if (oidc->idp->token_auth == SG_TOKEN_AUTH_CLIENT_SECRET_POST) {
        char *id_enc = form_encode(oidc->idp->client_id);
        char *secret_enc = form_encode(oidc->idp->client_secret);
        body = sg_asprintf("grant_type=authorization_code&code=%s&redirect_uri=%s&code_verifier=%s"
                           "&client_id=%s&client_secret=%s",
                           code_enc, redirect_enc, verifier_enc, id_enc, secret_enc);
        OPENSSL_cleanse(secret_enc, strlen(secret_enc));
        free(id_enc);
        free(secret_enc);
    } else {
        body = sg_asprintf("grant_type=authorization_code&code=%s&redirect_uri=%s&code_verifier=%s",
                           code_enc, redirect_enc, verifier_enc);
        authorization = basic_credentials(oidc->idp->client_id, oidc->idp->client_secret);
    }

    struct sg_oidc_exchange *ex = sg_calloc(1, sizeof(*ex));
    ex->magic = EXCHANGE_MAGIC;
    ex->oidc = oidc;
    ex->nonce = sg_strdup(nonce);
    ex->cb = cb;
    ex->arg = arg;
    ex->http = sg_httpc_post_form(client, target, body, authorization, on_token, ex);

    OPENSSL_cleanse(body, strlen(body));
    if (authorization != NULL)
        OPENSSL_cleanse(authorization, strlen(authorization));
    free(body);
    free(authorization);
    free(code_enc);
    free(redirect_enc);
    free(verifier_enc);
    free(target);
    return ex;
}

static void on_deliver(evutil_socket_t fd, short what, void *arg)
{
    struct sg_oidc_exchange *ex = arg;
    yajl_val claims = ex->result_claims;
    ex->result_claims = NULL;
    exchange_finish(ex, ex->result, ex->result_detail, claims);
}

struct sg_oidc_exchange *sg_oidc_verify_logout(struct sg_oidc *oidc, const char *token,
                                               sg_oidc_exchange_cb cb, void *arg)
{
    if (!sg_oidc_ready(oidc))
        return NULL;
    struct sg_oidc_exchange *ex = sg_calloc(1, sizeof(*ex));
    ex->magic = EXCHANGE_MAGIC;
    ex->oidc = oidc;
    ex->logout = true;
    ex->id_token = sg_strdup(token);
    ex->cb = cb;
    ex->arg = arg;
    yajl_val claims = NULL;
    const char *detail = NULL;
    enum sg_oidc_status status = verify(ex, &claims, &detail);
    if (status == SG_OIDC_STATUS_COUNT)
        return ex; /* waits for a key refetch (wake_key_waiters) */
    /* Known at once: the callback still runs from the event loop, never before this returns. */
    ex->result = status;
    ex->result_detail = detail;
    ex->result_claims = claims;
    static const struct timeval now = {0, 0};
    ex->deliver = evtimer_new(oidc->base, on_deliver, ex);
    evtimer_add(ex->deliver, &now);
    return ex;
}

const char *sg_oidc_issuer(const struct sg_oidc *oidc)
{
    return oidc->issuer;
}

const char *sg_oidc_response_iss_problem(const struct sg_oidc *oidc, const char *iss)
{
    if (oidc->issuer == NULL)
        return NULL;
    if (iss == NULL)
        return oidc->iss_response ? "iss_missing" : NULL;
    return strcmp(iss, oidc->issuer) == 0 ? NULL : "iss_mismatch";
}

void sg_oidc_exchange_cancel(struct sg_oidc_exchange *ex)
{
    assert(ex->magic == EXCHANGE_MAGIC);
    struct sg_oidc *oidc = ex->oidc;
    if (ex->http != NULL)
        sg_httpc_cancel(ex->http);
    if (ex->waiting_keys) {
        if (ex->prev)
            ex->prev->next = ex->next;
        else
            oidc->key_waiters = ex->next;
        if (ex->next)
            ex->next->prev = ex->prev;
    }
    exchange_free(ex);
}

struct sg_oidc *sg_oidc_new(struct event_base *base, struct evdns_base *dns, struct sg_store *store,
                            const struct sg_config *cfg, const struct sg_signer *client_key,
                            const struct sg_oidc *previous)
{
    struct sg_oidc *oidc = sg_calloc(1, sizeof(*oidc));
    oidc->base = base;
    oidc->dns = dns;
    oidc->client_key = client_key;
    oidc->cfg = cfg;
    oidc->idp = cfg->idp;
    oidc->redirect_uri = sg_asprintf("%s/_sso/callback", cfg->public_url.text);
    oidc->discovery_backoff_s = RETRY_MIN_S;
    for (char **alg = cfg->idp->algorithms; *alg != NULL; alg++) {
        enum sg_jws_alg bit;
        if (sg_jws_alg_parse(*alg, &bit) == 0)
            oidc->allowed_algs |= (unsigned)bit;
    }
    oidc->refresh = evtimer_new(base, on_refresh, oidc);

    bool same_issuer = previous != NULL && previous->issuer != NULL &&
                       issuer_equal(previous->idp->issuer.text, cfg->idp->issuer.text);
    if (same_issuer) {
        oidc->issuer = sg_strdup(previous->issuer);
        oidc->authorization_endpoint = sg_strdup(previous->authorization_endpoint);
        oidc->token_endpoint = sg_strdup(previous->token_endpoint);
        oidc->jwks_uri = sg_strdup(previous->jwks_uri);
        oidc->end_session_endpoint =
            previous->end_session_endpoint ? sg_strdup(previous->end_session_endpoint) : NULL;
        oidc->userinfo_endpoint =
            previous->userinfo_endpoint ? sg_strdup(previous->userinfo_endpoint) : NULL;
        oidc->iss_response = previous->iss_response;
    }
    oidc->jwks = sg_jwks_new(store, same_issuer ? previous->jwks : NULL);
    /* Nothing usable stored (or a corrupt record): the keys come from the first fetch. */
    sg_jwks_load(oidc->jwks, oidc->issuer ? oidc->issuer : cfg->idp->issuer.text);
    if (oidc->issuer != NULL)
        schedule_refresh(oidc, 0);
    else
        fetch_discovery(oidc);
    return oidc;
}

void sg_oidc_free(struct sg_oidc *oidc)
{
    if (oidc == NULL)
        return;
    while (oidc->key_waiters != NULL)
        sg_oidc_exchange_cancel(oidc->key_waiters);
    for (size_t i = 0; i < oidc->origin_count; i++) {
        sg_httpc_free(oidc->origins[i].client); /* cancels discovery, keys, exchanges */
        free(oidc->origins[i].origin);
    }
    event_free(oidc->refresh);
    sg_jwks_free(oidc->jwks);
    free(oidc->redirect_uri);
    free(oidc->issuer);
    free(oidc->authorization_endpoint);
    free(oidc->token_endpoint);
    free(oidc->jwks_uri);
    free(oidc->end_session_endpoint);
    free(oidc->userinfo_endpoint);
    free(oidc);
}

bool sg_oidc_ready(const struct sg_oidc *oidc)
{
    return oidc != NULL && oidc->issuer != NULL;
}

const char *sg_oidc_authorization_endpoint(const struct sg_oidc *oidc)
{
    return oidc->authorization_endpoint;
}

const char *sg_oidc_end_session_endpoint(const struct sg_oidc *oidc)
{
    return oidc->end_session_endpoint;
}

const char *sg_oidc_redirect_uri(const struct sg_oidc *oidc)
{
    return oidc->redirect_uri;
}
