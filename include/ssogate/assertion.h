/*
 * The X-SSO-Assertion of a session: a JWS signed with the gateway's key
 * (signer.h) telling the upstream who the caller is. Signing costs more than
 * the rest of a proxied request, so each snapshot keeps a cache of the
 * assertions it signed, reused for half their lifetime. A reload starts with
 * an empty cache (the key or the claims may have changed).
 */
#ifndef SSOGATE_ASSERTION_H
#define SSOGATE_ASSERTION_H

struct sg_assertions;
struct sg_config;
struct sg_session;
struct sg_signer;

struct sg_assertions *sg_assertions_new(void);
void sg_assertions_free(struct sg_assertions *cache); /* NULL-safe */

/*
 * The assertion of the session called session_id (a NUL-terminated session
 * id) with the claims of s, signed with signer for cfg's upstream: one from
 * the cache when it was signed at most assertion.ttl_s / 2 ago, else a fresh
 * one. Borrowed from the cache until the next call. NULL when signing fails.
 */
const char *sg_assertions_get(struct sg_assertions *cache, const struct sg_config *cfg,
                              const struct sg_signer *signer, const char *session_id,
                              const struct sg_session *s);

#endif
