/*
 * A cookie jar for one simulated browser of the load tool. Cookies are kept
 * per origin ("host:port", as the gateway and the IdP on 127.0.0.1 must not
 * see each other's cookies) and per path (RFC 6265 path-match); Max-Age and
 * Expires in the past remove a cookie, other expiry is ignored (a flow lives
 * seconds). Bounded: cookies over SG_JAR_COOKIE_MAX bytes are refused, and
 * past SG_JAR_MAX cookies the oldest goes.
 */
#ifndef SSOGATE_BENCH_JAR_H
#define SSOGATE_BENCH_JAR_H

#define SG_JAR_MAX        32
#define SG_JAR_COOKIE_MAX 4096

struct sg_jar;

/* A new empty jar; the caller owns it (sg_jar_free). */
struct sg_jar *sg_jar_new(void);

/* Frees the jar and its cookies. NULL-safe. */
void sg_jar_free(struct sg_jar *jar);

/*
 * Stores one Set-Cookie header value (borrowed) received from origin
 * (borrowed) for request_path (borrowed, the path without the query): adds,
 * replaces or removes the cookie. Returns 0, or SG_EINVAL for a malformed
 * or SG_ETOOBIG for an oversized header, which are ignored as a browser
 * would.
 */
int sg_jar_store(struct sg_jar *jar, const char *origin, const char *request_path,
                 const char *set_cookie);

/*
 * The Cookie header value ("a=1; b=2") a request to origin and path
 * (borrowed) carries, longest path first, newly allocated (the caller frees
 * it), or NULL when no cookie applies.
 */
char *sg_jar_header(const struct sg_jar *jar, const char *origin, const char *path);

/* The value of cookie name of origin (borrowed; valid until the jar changes), or NULL. */
const char *sg_jar_get(const struct sg_jar *jar, const char *origin, const char *name);

#endif
