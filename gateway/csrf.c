/*
 * Same-origin and double-submit checks. See include/ssogate/csrf.h.
 */
#include "ssogate/csrf.h"

#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/cookies.h"
#include "ssogate/token.h"

#include <sys/queue.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <stdlib.h>
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

enum sg_csrf_result sg_csrf_form(const struct sg_config *cfg, const struct evkeyvalq *in,
                                 const char *form, size_t len)
{
    enum sg_csrf_result result = sg_csrf_same_origin(cfg, in);
    if (result != SG_CSRF_OK)
        return result;
    char *copy = len > 0 && len <= SG_CSRF_FORM_MAX && memchr(form, '\0', len) == NULL
                     ? sg_strndup(form, len)
                     : NULL;
    struct evkeyvalq fields;
    TAILQ_INIT(&fields);
    const char *token = NULL;
    if (copy != NULL && evhttp_parse_query_str(copy, &fields) == 0)
        token = evhttp_find_header(&fields, "csrf");
    result = sg_csrf_double_submit(cfg, in, token);
    evhttp_clear_headers(&fields);
    free(copy);
    return result;
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
