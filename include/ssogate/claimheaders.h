/*
 * claim_headers (config.h): the claims of a login rendered as header values,
 * encoded once for the session (struct sg_session claim_headers) and read
 * back for each request (identity.c) and each signed assertion (assertion.c).
 * The encoding is "<len>:<name><len>:<value>" repeated: no separator a value
 * could forge.
 */
#ifndef SSOGATE_CLAIMHEADERS_H
#define SSOGATE_CLAIMHEADERS_H

#include <yajl/yajl_tree.h>

struct sg_config;

#define SG_CLAIM_HEADER_MAX 4096 /* bytes of one claim header's value */

/*
 * The claim_headers of cfg for a login's claims (borrowed), encoded for the
 * session (struct sg_session claim_headers): each mapped claim present and
 * not null, rendered as a header value (a string as is; a number as written;
 * true/false; an array of those joined with "," with "," and "%" in its
 * strings escaped as %2C and %25). A claim that cannot be a header value
 * (an object, nested arrays, control characters, over SG_CLAIM_HEADER_MAX
 * bytes) is left out with a warning (request_id, borrowed) and a metric.
 * Returns a new string, or NULL when no header results.
 */
char *sg_claim_headers_encode(const struct sg_config *cfg, yajl_val claims, const char *request_id);

/* Called with each header name (cfg's spelling) and value; both borrowed for the call. */
typedef void (*sg_claim_header_fn)(const char *name, const char *value, void *arg);

/*
 * Calls fn for each header of encoded (from sg_claim_headers_encode) that
 * cfg still maps, in the encoded order; stops at a malformed entry.
 */
void sg_claim_headers_each(const struct sg_config *cfg, const char *encoded, sg_claim_header_fn fn,
                           void *arg);

#endif
