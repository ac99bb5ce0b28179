#include "ssogate/identity.h"

#include "ssogate/assertion.h"
#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/cookies.h"
#include "ssogate/headers.h"
#include "ssogate/jose.h"
#include "ssogate/json.h"
#include "ssogate/log.h"
#include "ssogate/metrics.h"
#include "ssogate/snapshot.h"
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

int sg_identity_lookup(struct sg_store *store, const struct sg_config *cfg,
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
        int rc = sg_session_get(store, ids[i], now, into);
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
    if (err == 0 && sg_session_touch_due(&out->session, now)) /* one read per request otherwise */
        err = sg_session_touch(store, out->session_id, now);
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

/* Appends a scalar claim: a string as is (escaped as an array item), a number as written, a
 * boolean as true/false. Returns false for anything else. */
static bool render_scalar(yajl_val v, bool item, struct evbuffer *out)
{
    if (YAJL_IS_STRING(v)) {
        for (const char *c = v->u.string; *c != '\0'; c++) {
            if (item && (*c == ',' || *c == '%'))
                evbuffer_add_printf(out, "%%%02X", (unsigned char)*c);
            else
                evbuffer_add(out, c, 1);
        }
        return true;
    }
    if (YAJL_IS_NUMBER(v)) {
        evbuffer_add_printf(out, "%s", v->u.number.r);
        return true;
    }
    if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)) {
        evbuffer_add_printf(out, "%s", YAJL_IS_TRUE(v) ? "true" : "false");
        return true;
    }
    return false;
}

/* Renders a claim as a header value into out; NULL, or why it cannot be one. */
static const char *render_claim(yajl_val v, struct evbuffer *out)
{
    if (YAJL_IS_ARRAY(v)) {
        for (size_t i = 0; i < v->u.array.len; i++) {
            if (i > 0)
                evbuffer_add(out, ",", 1);
            if (!render_scalar(v->u.array.values[i], true, out))
                return "nested";
        }
    } else if (!render_scalar(v, false, out)) {
        return "object";
    }
    size_t len = evbuffer_get_length(out);
    if (len > SG_CLAIM_HEADER_MAX)
        return "too_long";
    const unsigned char *p = evbuffer_pullup(out, -1);
    for (size_t i = 0; i < len; i++) {
        if (p[i] < 0x20 || p[i] == 0x7f)
            return "control";
    }
    return NULL;
}

char *sg_identity_claim_headers(const struct sg_config *cfg, yajl_val claims,
                                const char *request_id)
{
    struct evbuffer *encoded = evbuffer_new();
    struct evbuffer *value = evbuffer_new();
    for (size_t i = 0; i < cfg->claim_header_count; i++) {
        const struct sg_claim_header *h = &cfg->claim_headers[i];
        yajl_val v = sg_json_pointer(claims, h->pointer);
        if (v == NULL || YAJL_IS_NULL(v))
            continue; /* absent: no header */
        evbuffer_drain(value, evbuffer_get_length(value));
        const char *why = render_claim(v, value);
        size_t len = evbuffer_get_length(value);
        if (why == NULL &&
            evbuffer_get_length(encoded) + strlen(h->name) + len + 48 > SG_SESSION_CLAIMS_MAX)
            why = "total_too_long";
        if (why != NULL) {
            sg_metrics_count("ssogate_claim_headers_dropped_total", "reason", why);
            sg_log_fields(SG_LOG_WARN, "claim_header",
                          (struct sg_log_field[]){
                              SG_LOG_STR("request_id", request_id), SG_LOG_STR("header", h->name),
                              SG_LOG_STR("result", "dropped"), SG_LOG_STR("reason", why)},
                          4);
            continue;
        }
        evbuffer_add_printf(encoded, "%zu:%s%zu:", strlen(h->name), h->name, len);
        evbuffer_add_buffer(encoded, value);
    }
    size_t len = evbuffer_get_length(encoded);
    char *out = len > 0 ? sg_strndup((const char *)evbuffer_pullup(encoded, -1), len) : NULL;
    evbuffer_free(value);
    evbuffer_free(encoded);
    return out;
}

/* Reads "<len>:" at *p (within end); false when malformed. */
static bool read_length(const char **p, const char *end, size_t *len)
{
    size_t n = 0;
    const char *c = *p;
    while (c < end && *c >= '0' && *c <= '9' && n <= SG_SESSION_CLAIMS_MAX)
        n = n * 10 + (size_t)(*c++ - '0');
    if (c == *p || c >= end || *c != ':' || n > (size_t)(end - c - 1))
        return false;
    *p = c + 1;
    *len = n;
    return true;
}

/* Adds the session's claim headers that the current configuration still maps. */
static void add_claim_headers(const struct sg_config *cfg, const char *encoded,
                              struct evkeyvalq *headers)
{
    const char *p = encoded, *end = encoded + strlen(encoded);
    size_t name_len, value_len;
    while (p < end && read_length(&p, end, &name_len)) {
        const char *name = p;
        p += name_len;
        if (!read_length(&p, end, &value_len))
            return;
        char *n = sg_strndup(name, name_len);
        for (size_t i = 0; i < cfg->claim_header_count; i++) {
            if (sg_headers_name_eq(n, cfg->claim_headers[i].name)) {
                char *v = sg_strndup(p, value_len);
                evhttp_add_header(headers, cfg->claim_headers[i].name, v);
                free(v);
                break;
            }
        }
        free(n);
        p += value_len;
    }
}

int sg_identity_add_headers(const struct sg_snapshot *snap, const struct sg_identity *identity,
                            struct evkeyvalq *headers)
{
    const struct sg_session *s = &identity->session;
    const char *assertion =
        sg_assertions_get(snap->assertions, snap->cfg, &snap->signer, identity->session_id, s);
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
    if (s->claim_headers != NULL && snap->cfg->claim_header_count > 0)
        add_claim_headers(snap->cfg, s->claim_headers, headers);
    return 0;
}

void sg_identity_end(struct sg_store *store, const struct sg_config *cfg,
                     const struct sg_identity *identity, struct evhttp_request *req)
{
    sg_session_delete(store, identity->session_id);
    sg_cookies_clear(evhttp_request_get_output_headers(req), cfg, SG_COOKIE_SESSION);
}
