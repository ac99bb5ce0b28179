/*
 * Cross-site request forgery checks of the gateway's state-changing POSTs,
 * as pure functions of the configuration and a request's headers:
 *
 * - same origin: the Origin header equals public_url (a browser sends it on
 *   every cross-origin POST and on same-origin ones too); without Origin, the
 *   Referer lies on public_url's origin. Sign-out and My Settings use it.
 * - double submit: My Settings' forms carry a random token that equals the
 *   gateway's *_csrf cookie (SameSite=Strict, HttpOnly), compared in
 *   constant time. A cross-site page can neither read the cookie nor set it
 *   on this host (__Host- when https).
 */
#ifndef SSOGATE_CSRF_H
#define SSOGATE_CSRF_H

#include <stdbool.h>
#include <stddef.h>

struct evkeyvalq;
struct sg_config;

/* A token: 32 random bytes in base64url. */
#define SG_CSRF_TOKEN_LEN  43
#define SG_CSRF_TOKEN_SIZE (SG_CSRF_TOKEN_LEN + 1)

/* Why a request passes or not; one value, one reason (sg_csrf_result_name). */
enum sg_csrf_result {
    SG_CSRF_OK = 0,
    SG_CSRF_NO_ORIGIN,     /* neither Origin nor Referer */
    SG_CSRF_CROSS_ORIGIN,  /* an Origin other than public_url ("null" included) */
    SG_CSRF_CROSS_REFERER, /* no Origin, and a Referer outside public_url's origin */
    SG_CSRF_NO_COOKIE,     /* no *_csrf cookie of the right length, or two different ones */
    SG_CSRF_NO_FIELD,      /* the form has no csrf field */
    SG_CSRF_MISMATCH,      /* the field differs from the cookie */
    SG_CSRF__COUNT
};

/* A short snake_case name of r for logs and metric labels; "unknown" out of range. */
const char *sg_csrf_result_name(enum sg_csrf_result r);

/*
 * Whether the request of headers in (borrowed) comes from cfg's public_url:
 * its first Origin header is exactly public_url (scheme, host and port, no
 * path nor trailing slash); without an Origin header, its Referer is
 * public_url followed by "/". SG_CSRF_OK, _NO_ORIGIN, _CROSS_ORIGIN or
 * _CROSS_REFERER.
 */
enum sg_csrf_result sg_csrf_same_origin(const struct sg_config *cfg, const struct evkeyvalq *in);

/*
 * The double-submit check: field (the form's csrf value, NULL when absent)
 * against the one *_csrf cookie of in's Cookie lines, in constant time for
 * equal lengths. SG_CSRF_OK, _NO_COOKIE, _NO_FIELD or _MISMATCH.
 */
/*
 * A state-changing form POST of the gateway's own pages: same origin, then
 * the form's "csrf" field (form: the urlencoded body, len bytes, borrowed;
 * at most SG_CSRF_FORM_MAX) equal to the cookie (double submit).
 */
#define SG_CSRF_FORM_MAX 4096
enum sg_csrf_result sg_csrf_form(const struct sg_config *cfg, const struct evkeyvalq *in,
                                 const char *form, size_t len);

enum sg_csrf_result sg_csrf_double_submit(const struct sg_config *cfg, const struct evkeyvalq *in,
                                          const char *field);

/*
 * The token a page embeds in its forms: the one of in's *_csrf cookie when
 * there is exactly one, else a new random one. Returns true when the token
 * is new: the caller sets the cookie (cookies.h, SG_COOKIE_CSRF) with it.
 */
bool sg_csrf_token(const struct sg_config *cfg, const struct evkeyvalq *in,
                   char out[SG_CSRF_TOKEN_SIZE]);

#endif
