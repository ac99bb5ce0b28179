/*
 * The gateway's own cookies. See include/ssogate/cookies.h for the contracts.
 */
#include "ssogate/cookies.h"

#include "ssogate/common.h"
#include "ssogate/cookie.h"
#include "ssogate/loginstate.h"

#include <sys/queue.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* How long a cookie lives in the browser. */
enum lifetime {
    LIFETIME_SESSION_TIMEOUT, /* session.absolute_timeout_s */
    LIFETIME_LOGIN,           /* SG_LOGINSTATE_TTL_S: as long as a login state */
    LIFETIME_BROWSER,         /* no Max-Age: until the browser closes */
};

/* The one table of the gateway's cookies. Every one is host-only (__Host-
 * when https), on Path=/ and HttpOnly: no script of the PSA reads them. */
static const struct cookie_kind {
    const char *suffix;
    enum sg_cookie_same_site same_site;
    enum lifetime lifetime;
} kinds[SG_COOKIE__COUNT] = {
    [SG_COOKIE_SESSION] = {"", SG_COOKIE_SAME_SITE_LAX, LIFETIME_SESSION_TIMEOUT},
    /* Lax: it must come back with the top-level redirect from the IdP. */
    [SG_COOKIE_LOGIN] = {"_login", SG_COOKIE_SAME_SITE_LAX, LIFETIME_LOGIN},
    /* Strict: only My Settings' own forms post it. */
    [SG_COOKIE_CSRF] = {"_csrf", SG_COOKIE_SAME_SITE_STRICT, LIFETIME_BROWSER},
};

void sg_cookies_names(const char *base, bool https, char *names[SG_COOKIE__COUNT])
{
    for (size_t i = 0; i < SG_COOKIE__COUNT; i++)
        names[i] = sg_asprintf("%s%s%s", https ? "__Host-" : "", base, kinds[i].suffix);
}

const char *sg_cookies_name(const struct sg_config *cfg, enum sg_cookie_kind kind)
{
    return cfg->session.cookies[kind];
}

const char *const *sg_cookies_all(const struct sg_config *cfg)
{
    return (const char *const *)cfg->session.cookies;
}

static int add_set_cookie(struct evkeyvalq *headers, const struct sg_config *cfg,
                          enum sg_cookie_kind kind, const char *value, int64_t max_age)
{
    struct sg_cookie_attrs attrs = {
        .path = "/",
        .max_age = max_age,
        .http_only = true,
        .secure = cfg->public_url.https,
        .same_site = kinds[kind].same_site,
    };
    char *header = NULL;
    int err = sg_cookie_format(sg_cookies_name(cfg, kind), value, &attrs, &header);
    if (err != 0)
        return err;
    evhttp_add_header(headers, "Set-Cookie", header);
    free(header);
    return 0;
}

int sg_cookies_set(struct evkeyvalq *headers, const struct sg_config *cfg, enum sg_cookie_kind kind,
                   const char *value)
{
    int64_t max_age = -1;
    if (kinds[kind].lifetime == LIFETIME_SESSION_TIMEOUT)
        max_age = cfg->session.absolute_timeout_s;
    else if (kinds[kind].lifetime == LIFETIME_LOGIN)
        max_age = SG_LOGINSTATE_TTL_S;
    return add_set_cookie(headers, cfg, kind, value, max_age);
}

void sg_cookies_clear(struct evkeyvalq *headers, const struct sg_config *cfg,
                      enum sg_cookie_kind kind)
{
    add_set_cookie(headers, cfg, kind, "", 0);
}

size_t sg_cookies_values(const struct evkeyvalq *in, const struct sg_config *cfg,
                         enum sg_cookie_kind kind, size_t len, char *out, size_t max)
{
    const char *name = sg_cookies_name(cfg, kind);
    size_t count = 0;
    const struct evkeyval *h;
    TAILQ_FOREACH(h, in, next)
    {
        if (strcasecmp(h->key, "Cookie") != 0)
            continue;
        const char *rest = h->value;
        size_t rest_len = strlen(rest);
        const char *value;
        size_t value_len;
        while (sg_cookie_find(rest, rest_len, name, &value, &value_len) == 0) {
            size_t consumed = (size_t)(value - rest) + value_len;
            rest += consumed;
            rest_len -= consumed;
            if (value_len != len)
                continue;
            bool seen = false;
            for (size_t i = 0; i < count && !seen; i++)
                seen = memcmp(out + i * (len + 1), value, len) == 0;
            if (seen)
                continue;
            if (count == max)
                return count;
            memcpy(out + count * (len + 1), value, len);
            out[count * (len + 1) + len] = '\0';
            count++;
        }
    }
    return count;
}

bool sg_cookies_get(const struct evkeyvalq *in, const struct sg_config *cfg,
                    enum sg_cookie_kind kind, char *out, size_t len)
{
    char *values = sg_malloc(2 * (len + 1));
    size_t count = sg_cookies_values(in, cfg, kind, len, values, 2);
    if (count == 1)
        memcpy(out, values, len + 1);
    free(values);
    return count == 1;
}

char *sg_cookies_strip(const struct sg_config *cfg, const struct evkeyvalq *in)
{
    const char *const *names = sg_cookies_all(cfg);
    char *joined = NULL;
    const struct evkeyval *h;

    TAILQ_FOREACH(h, in, next)
    {
        if (strcasecmp(h->key, "Cookie") != 0)
            continue;
        char *kept = NULL;
        if (sg_cookie_remove_any(h->value, strlen(h->value), names, SG_COOKIE__COUNT, &kept) != 0)
            continue; /* too big to read: dropped whole */
        if (*kept == '\0') {
            free(kept);
        } else if (joined == NULL) {
            joined = kept;
        } else {
            char *both = sg_asprintf("%s; %s", joined, kept);
            free(joined);
            free(kept);
            joined = both;
        }
    }
    return joined;
}
