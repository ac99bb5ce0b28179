/*
 * Same-origin and double-submit checks. See include/ssogate/csrf.h.
 */
#include "ssogate/csrf.h"

#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/cookies.h"
#include "ssogate/token.h"

#include <event2/http.h>
#include <openssl/crypto.h>
#include <string.h>

static const char *const result_names[SG_CSRF__COUNT] = {
    [SG_CSRF_OK] = "ok",
    [SG_CSRF_NO_ORIGIN] = "no_origin",
    [SG_CSRF_CROSS_ORIGIN] = "cross_origin",
    [SG_CSRF_CROSS_REFERER] = "cross_referer",
    [SG_CSRF_NO_COOKIE] = "no_cookie",
    [SG_CSRF_NO_FIELD] = "no_field",
    [SG_CSRF_MISMATCH] = "mismatch",
};

const char *sg_csrf_result_name(enum sg_csrf_result r)
{
    return (unsigned)r < SG_CSRF__COUNT ? result_names[r] : "unknown";
}

enum sg_csrf_result sg_csrf_same_origin(const struct sg_config *cfg, const struct evkeyvalq *in)
{
    const char *pub = cfg->public_url.text;
    const char *origin = evhttp_find_header(in, "Origin");
    if (origin != NULL)
        return strcmp(origin, pub) == 0 ? SG_CSRF_OK : SG_CSRF_CROSS_ORIGIN;
    const char *referer = evhttp_find_header(in, "Referer");
    if (referer == NULL)
        return SG_CSRF_NO_ORIGIN;
    /* The origin must end where public_url ends: "https://gw.example.com.evil/"
     * and "https://gw.example.com@evil/" share its prefix. */
    size_t len = strlen(pub);
    return strncmp(referer, pub, len) == 0 && referer[len] == '/' ? SG_CSRF_OK
                                                                  : SG_CSRF_CROSS_REFERER;
}

enum sg_csrf_result sg_csrf_double_submit(const struct sg_config *cfg, const struct evkeyvalq *in,
                                          const char *field)
{
    char cookie[SG_CSRF_TOKEN_SIZE];
    if (!sg_cookies_get(in, cfg, SG_COOKIE_CSRF, cookie, SG_CSRF_TOKEN_LEN))
        return SG_CSRF_NO_COOKIE;
    enum sg_csrf_result r = SG_CSRF_NO_FIELD;
    if (field != NULL)
        r = strlen(field) == SG_CSRF_TOKEN_LEN && sg_memeq_ct(field, cookie, SG_CSRF_TOKEN_LEN)
                ? SG_CSRF_OK
                : SG_CSRF_MISMATCH;
    OPENSSL_cleanse(cookie, sizeof(cookie));
    return r;
}

bool sg_csrf_token(const struct sg_config *cfg, const struct evkeyvalq *in,
                   char out[SG_CSRF_TOKEN_SIZE])
{
    if (sg_cookies_get(in, cfg, SG_COOKIE_CSRF, out, SG_CSRF_TOKEN_LEN))
        return false;
    sg_random_token(32, out, SG_CSRF_TOKEN_SIZE);
    return true;
}
