/*
 * The gateway's own cookies: the one table of them (config.h's enum
 * sg_cookie_kind: name suffix, Path, HttpOnly, Secure, SameSite, the
 * __Host- prefix and the Max-Age policy) and the only code that builds a
 * Set-Cookie for them, reads them from a request, or strips them from the
 * Cookie lines a request carries upstream (proxy and whoami alike).
 *
 * Underneath, cookie.h parses and formats RFC 6265 text; no other module
 * knows a cookie name. The full names are derived once per configuration by
 * sg_cookies_names (policy.c stores them in cfg->session.cookies[]) so that
 * reading them costs nothing per request.
 */
#ifndef SSOGATE_COOKIES_H
#define SSOGATE_COOKIES_H

#include "ssogate/config.h"

#include <stdbool.h>
#include <stddef.h>

struct evkeyvalq;

/*
 * Fills names[kind] (new strings, the caller frees them) with the full name
 * of every gateway cookie: "__Host-" when https (a host-only cookie with
 * Secure and Path=/ that a sibling domain cannot set), then base (the
 * configured session.cookie_name, a token), then the kind's suffix
 * ("", "_login", "_csrf").
 */
void sg_cookies_names(const char *base, bool https, char *names[SG_COOKIE__COUNT]);

/* The full name of cookie kind in cfg (borrowed from cfg). */
const char *sg_cookies_name(const struct sg_config *cfg, enum sg_cookie_kind kind);

/* The full names of all the gateway's cookies, NULL-terminated (borrowed from cfg). */
const char *const *sg_cookies_all(const struct sg_config *cfg);

/*
 * Adds to headers (a response's output headers) a Set-Cookie for kind with
 * value (cookie-octets) and the table's attributes: Path=/, HttpOnly,
 * Secure when public_url is https, SameSite Lax (session, login) or Strict
 * (csrf), and Max-Age session.absolute_timeout_s (session),
 * SG_LOGINSTATE_TTL_S (login) or none: a browser-session cookie (csrf).
 * Returns 0, or SG_EINVAL (nothing added) when value is not cookie-octets.
 */
int sg_cookies_set(struct evkeyvalq *headers, const struct sg_config *cfg, enum sg_cookie_kind kind,
                   const char *value);

/* Adds to headers a Set-Cookie that deletes kind now (empty, Max-Age=0, an Expires in 1970). */
void sg_cookies_clear(struct evkeyvalq *headers, const struct sg_config *cfg,
                      enum sg_cookie_kind kind);

/*
 * Collects the distinct values of cookie kind that are exactly len bytes
 * long, from every Cookie line of in (a request's input headers), in order,
 * at most max of them, into out (max slots of len + 1 bytes, NUL-terminated).
 * Values of another length are garbage to the gateway and skipped. Returns
 * how many were found.
 */
size_t sg_cookies_values(const struct evkeyvalq *in, const struct sg_config *cfg,
                         enum sg_cookie_kind kind, size_t len, char *out, size_t max);

/*
 * Copies the value of kind into out (len + 1 bytes) when in's Cookie lines
 * carry exactly one distinct value of exactly len bytes; false when there is
 * none or when two differ (one was planted: neither is trusted).
 */
bool sg_cookies_get(const struct evkeyvalq *in, const struct sg_config *cfg,
                    enum sg_cookie_kind kind, char *out, size_t len);

/*
 * The Cookie header for the upstream: the pairs of every Cookie line of in
 * (borrowed), in order, each kept byte for byte, joined with "; ", without
 * any of the gateway's cookies. A line longer than SG_COOKIE_MAX_HEADER is
 * dropped whole (it cannot be read, so it cannot be cleaned). Hands back a
 * new string, or NULL when nothing is left.
 */
char *sg_cookies_strip(const struct sg_config *cfg, const struct evkeyvalq *in);

#endif
