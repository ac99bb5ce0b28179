/*
 * Bounded, strict JSON objects for everything the gateway reads from outside:
 * JOSE headers and payloads, JWK sets, OpenID Connect discovery and token
 * responses, whoami answers. Parsed with yajl's tree API.
 */
#ifndef SSOGATE_JSON_H
#define SSOGATE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <yajl/yajl_tree.h>

#define SG_JSON_MAX_DEPTH 16 /* nesting of any JSON we parse */

/*
 * Parses len bytes of text as one JSON object with yajl: at most max_len bytes,
 * nesting at most SG_JSON_MAX_DEPTH, no comments, no NUL byte nor \u0000
 * escape, valid UTF-8, and no member name twice in the top-level object.
 * Returns 0 and hands back *out (free with yajl_tree_free); SG_ETOOBIG;
 * SG_EINVAL when it is not such an object. text is borrowed.
 */
int sg_json_parse_object(const char *text, size_t len, size_t max_len, yajl_val *out);

/* The member called name of object obj, or NULL (obj may be NULL). Borrowed from obj. */
yajl_val sg_json_member(yajl_val obj, const char *name);

/* Whether obj (an object, borrowed) names a member twice: two readers could disagree. */
bool sg_json_has_duplicate_keys(yajl_val obj);

/*
 * Resolves an RFC 6901 JSON pointer in doc ("" is doc itself; "~0" is '~'
 * and "~1" is '/' in a name; an array index is decimal). NULL when it names
 * nothing or pointer is NULL. Borrowed from doc.
 */
yajl_val sg_json_pointer(yajl_val doc, const char *pointer);

#endif
