/*
 * The request target, normalised once per request (RFC 3986 sections 5.2.4
 * and 6.2.2, RFC 9112 section 3.2). The route decision, the gateway's own
 * endpoints and the request line sent upstream all come from the one result,
 * so the gateway and the upstream cannot disagree about which resource was
 * asked for. Anything ambiguous is refused, never repaired.
 *
 * The forwarded path: percent-encoded unreserved characters decoded, the hex
 * of every escape that stays upper-cased, "." and ".." segments removed,
 * repeated slashes merged. The match path (for routing only) is the forwarded
 * path with kept %2F decoded to "/", ";" parameters cut from every segment,
 * then normalised again, and folded to lower case when paths are
 * case-insensitive; where an upstream may read the path otherwise (not
 * decoding %2F, not cutting ';'), those readings are kept too, and the route
 * is the strictest of all. The query is forwarded byte for byte once checked.
 */
#ifndef SSOGATE_TARGET_H
#define SSOGATE_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest request target accepted (bytes, as received). */
#define SG_TARGET_MAX_LEN 8192

/* Every way a target can be refused; each maps to one reason string (the
 * log line and the metric label) and to 400, except where noted. */
enum sg_target_status {
    SG_TARGET_OK = 0,
    SG_TARGET_EMPTY,           /* nothing, or neither "/...", "http(s)://..." nor "*" */
    SG_TARGET_TOO_LONG,        /* over SG_TARGET_MAX_LEN */
    SG_TARGET_BAD_BYTE,        /* a byte RFC 3986 does not allow in a path (space, CTL, '\', ...) */
    SG_TARGET_BAD_ESCAPE,      /* '%' not followed by two hex digits */
    SG_TARGET_ENCODED_NUL,     /* %00 */
    SG_TARGET_ENCODED_SLASH,   /* %2F (unless kept by configuration) or %5C */
    SG_TARGET_DOUBLE_ENCODING, /* %25 followed by two hex digits */
    SG_TARGET_BAD_UTF8,        /* decoded bytes that are not well-formed UTF-8 */
    SG_TARGET_ABOVE_ROOT,      /* ".." above "/" */
    SG_TARGET_DOT_PARAMETER,   /* ".;x" or "..;x": a dot segment some servers see through */
    SG_TARGET_TRAILING_DOT,    /* case-insensitive paths: a segment ending in '.' or space */
    SG_TARGET_BAD_QUERY,       /* a query byte outside RFC 3986 (and WHATWG's tolerance) */
    SG_TARGET_FRAGMENT,        /* '#' in a request target */
    SG_TARGET_FOREIGN_AUTHORITY, /* absolute-form for another scheme, host or port */
    SG_TARGET_ASTERISK,          /* "*" with a method other than OPTIONS */
    SG_TARGET__COUNT
};

/* How to normalise; strings are borrowed. */
struct sg_target_options {
    bool keep_encoded_slash; /* forward %2F unchanged (routing still sees '/'); default refuse */
    bool case_insensitive;   /* the match path is folded to lower case (IIS) */
    bool asterisk_allowed;   /* the method is OPTIONS */
    /* The gateway's own authority, for absolute-form targets. */
    bool https;
    const char *host; /* without brackets for IPv6 */
    uint16_t port;
};

#define SG_TARGET_VARIANTS_MAX 15

/* A normalised target. Every string is owned (sg_target_clear frees them). */
struct sg_target {
    char *path;  /* forwarded path, begins with '/'; "*" for the asterisk form */
    char *match; /* path the routes and the gateway's endpoints are matched on */
    /* The other readings an upstream may make of path when it holds a kept
     * %2F or a ';' (not decoding %2F, not cutting parameters) and, with
     * case-insensitive paths, a character a server may fold to ASCII letters
     * (dotless i, long s, ...) or an ASP.NET cookieless segment ("(S(x))"):
     * the route is the strictest of those of match and every variant. */
    char *variants[SG_TARGET_VARIANTS_MAX];
    size_t variant_count;
    char *query;   /* without '?', NULL when the target had none ("" when it had "?") */
    bool asterisk; /* OPTIONS * */
    bool absolute; /* came in absolute-form (reduced to origin-form) */
};

/*
 * Normalises raw (len bytes, as on the request line; need not be
 * NUL-terminated). Returns SG_TARGET_OK and fills *out, or a refusal with *out
 * zeroed. Normalising out->path (with out->query) again gives the same
 * result.
 */
enum sg_target_status sg_target_normalize(const char *raw, size_t len,
                                          const struct sg_target_options *opts,
                                          struct sg_target *out);

/* The target as forwarded, in origin-form: path, then "?" and the query when
 * it had one. Hands back a new string. */
char *sg_target_origin_form(const struct sg_target *target);

/* Frees what a target owns and zeroes it. NULL-safe. */
void sg_target_clear(struct sg_target *target);

/* The reason of a status as a short snake_case word ("encoded_slash"). */
const char *sg_target_status_name(enum sg_target_status status);

/*
 * True when the match path match lies under the route prefix prefix (a
 * match path itself: decoded, lower case when case_insensitive): equal, or
 * followed by '/'. The prefix "/" matches everything.
 */
bool sg_target_under(const char *match, const char *prefix, bool case_insensitive);

#endif
