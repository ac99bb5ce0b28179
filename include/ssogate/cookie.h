/*
 * Cookies (RFC 6265): find one in a Cookie request header, remove one from it
 * before the request goes upstream, and format a Set-Cookie value.
 *
 * The parser never reads past the length it is given and needs no NUL. A
 * cookie-string is "name=value" pairs separated by ";" and optional spaces or
 * tabs. A pair whose name is not a token or whose value holds a byte outside
 * RFC 6265's cookie-octet (optionally in double quotes) is skipped, not fatal.
 */
#ifndef SSOGATE_COOKIE_H
#define SSOGATE_COOKIE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SG_COOKIE_MAX_HEADER 65536 /* bytes of a Cookie header we look into */
#define SG_COOKIE_MAX_NAME   256   /* bytes of a cookie name */
#define SG_COOKIE_MAX_VALUE  4096  /* bytes of a cookie value */

/*
 * Finds the first well-formed pair called name (case-sensitive) in header
 * (len bytes). Returns 0 and points *value / *value_len into header (borrowed:
 * valid as long as header is), without surrounding double quotes; SG_ENOENT
 * when there is none; SG_ETOOBIG when len > SG_COOKIE_MAX_HEADER; SG_EINVAL
 * when name is not a cookie name.
 */
int sg_cookie_find(const char *header, size_t len, const char *name, const char **value,
                   size_t *value_len);

/*
 * Copies header (len bytes) without any pair whose name, spaces trimmed, is
 * name, nor any pair holding name after a ',' ("a=1, name=v": an upstream that
 * reads ',' as a separator sees name there), so that the gateway's own cookie
 * never reaches the upstream. Other pairs, well-formed or not, are kept as they
 * are (the upstream may read them more leniently than we do), joined by "; ". Returns 0 and hands
 * back *out, NUL-terminated, possibly "" (the caller frees it); SG_ETOOBIG; SG_EINVAL for a bad
 * name.
 */
int sg_cookie_remove(const char *header, size_t len, const char *name, char **out);

/* The same for count names at once, in one pass (names borrowed). */
int sg_cookie_remove_any(const char *header, size_t len, const char *const *names, size_t count,
                         char **out);

/*
 * True when set_cookie (a Set-Cookie field value) sets a cookie named in names
 * (NULL-terminated), compared without case. The name is what a browser takes
 * (RFC 6265bis 5.6): the text before the first '=' of the part before the
 * first ';', without blanks around it; a line with an empty name ("=NAME=v",
 * which a browser sends back as "NAME=v") is read past the '='.
 */
bool sg_cookie_sets_any(const char *set_cookie, const char *const *names);

enum sg_cookie_same_site {
    SG_COOKIE_SAME_SITE_UNSET = 0, /* no SameSite attribute */
    SG_COOKIE_SAME_SITE_LAX,       /* survives the top-level redirect back from the IdP */
    SG_COOKIE_SAME_SITE_STRICT,
};

/* Set-Cookie attributes. Strings are borrowed. */
struct sg_cookie_attrs {
    const char *path; /* NULL: no Path attribute */
    int64_t max_age;  /* > 0: Max-Age; 0: delete now (Max-Age=0 and an Expires in
                         1970); < 0: a session cookie */
    bool http_only;
    bool secure;
    enum sg_cookie_same_site same_site;
};

/*
 * Formats a Set-Cookie header value for name=value with attrs. name must be a
 * token of at most SG_COOKIE_MAX_NAME bytes, value cookie-octets of at most
 * SG_COOKIE_MAX_VALUE bytes (may be empty), path printable ASCII without ";".
 * Returns 0 and hands back *out (the caller frees it), or SG_EINVAL.
 */
int sg_cookie_format(const char *name, const char *value, const struct sg_cookie_attrs *attrs,
                     char **out);

#endif
