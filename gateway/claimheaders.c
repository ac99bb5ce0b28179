#include "ssogate/claimheaders.h"

#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/headers.h"
#include "ssogate/json.h"
#include "ssogate/log.h"
#include "ssogate/metrics.h"
#include "ssogate/session.h"

#include <event2/buffer.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

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
    if (!sg_utf8_valid((const char *)p, len))
        return "not_utf8"; /* a JSON "\udc80": a lone surrogate */
    return NULL;
}

char *sg_claim_headers_encode(const struct sg_config *cfg, yajl_val claims, const char *request_id)
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

void sg_claim_headers_each(const struct sg_config *cfg, const char *encoded, sg_claim_header_fn fn,
                           void *arg)
{
    const char *p = encoded, *end = encoded + strlen(encoded);
    size_t name_len, value_len;
    while (cfg->claim_header_count > 0 && p < end && read_length(&p, end, &name_len)) {
        const char *name = p;
        p += name_len;
        if (!read_length(&p, end, &value_len))
            return;
        char *n = sg_strndup(name, name_len);
        for (size_t i = 0; i < cfg->claim_header_count; i++) {
            if (sg_headers_name_eq(n, cfg->claim_headers[i].name)) {
                char *v = sg_strndup(p, value_len);
                fn(cfg->claim_headers[i].name, v, arg);
                free(v);
                break;
            }
        }
        free(n);
        p += value_len;
    }
}
