/*
 * The identity provider's signing keys as the relying party caches them: the
 * JWKS in memory, persisted in the store per issuer with its fetch time (so a
 * restart or a reload verifies logins before the first fetch answers), and
 * the policy of refetching it when an ID token names an unknown kid: at most
 * once per SG_JWKS_REFETCH_S. The HTTP fetches themselves are oidc.c's.
 */
#ifndef SSOGATE_JWKS_H
#define SSOGATE_JWKS_H

#include "ssogate/jose.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sg_store;
struct sg_jwks;

#define SG_JWKS_REFETCH_S 30 /* minimum spacing of unknown-kid refetches */
/* Largest JWKS document the store accepts. */
#define SG_JWKS_MAX (1024 * 1024)

/*
 * Creates an empty cache persisted in store (borrowed; it must outlive the
 * cache). previous (borrowed, may be NULL) is the cache of the same issuer
 * being replaced: its last unknown-kid refetch time carries over, so a reload
 * does not reset the rate limit. Free with sg_jwks_free.
 */
struct sg_jwks *sg_jwks_new(struct sg_store *store, const struct sg_jwks *previous);

/* Frees the cache and its keys. NULL-safe. */
void sg_jwks_free(struct sg_jwks *jwks);

/*
 * Loads the JWKS the store holds for issuer (borrowed). A record that cannot
 * be read or a document that does not parse is ignored (the latter is logged):
 * the keys then come from the next fetch. Returns 0, SG_ENOENT (nothing
 * stored), SG_ESTORE (corrupt record) or SG_EINVAL (invalid JWKS).
 */
int sg_jwks_load(struct sg_jwks *jwks, const char *issuer);

/*
 * Replaces the keys with the JWKS document just fetched for issuer (json:
 * len bytes, borrowed) and persists it with fetched_at. A document that does
 * not parse is logged and leaves the keys as they were: returns SG_EINVAL.
 * A store failure is logged and counted but the new keys are used: returns 0.
 */
int sg_jwks_replace(struct sg_jwks *jwks, const char *issuer, const char *json, size_t len,
                    int64_t fetched_at);

/* The keys (borrowed until the next replace), or NULL before any was loaded. */
const struct sg_jwk_set *sg_jwks_keys(const struct sg_jwks *jwks);

/* True when no keys are loaded or they were fetched max_age_s or more before now. */
bool sg_jwks_stale(const struct sg_jwks *jwks, int64_t now, int64_t max_age_s);

/* True when an unknown kid may trigger a refetch now (SG_JWKS_REFETCH_S since the last). */
bool sg_jwks_refetch_allowed(const struct sg_jwks *jwks, int64_t now);

/* Records that an unknown-kid refetch started at now. */
void sg_jwks_refetch_started(struct sg_jwks *jwks, int64_t now);

/*
 * The store record of issuer's JWKS: a version byte, the fetch time, the
 * JSON. sg_jwks_store_put writes len bytes of json (borrowed), not synced
 * (the cache can be refetched); returns 0, SG_EINVAL (empty issuer or json),
 * SG_ETOOBIG (issuer longer than SG_STORE_KEY_MAX, json larger than
 * SG_JWKS_MAX or the store full) or SG_ESTORE.
 */
int sg_jwks_store_put(struct sg_store *store, const char *issuer, const char *json, size_t len,
                      int64_t fetched_at);

/*
 * Copies out the stored JWKS of issuer: *json gets a new NUL-terminated
 * buffer that the caller frees, *len its length without the NUL, *fetched_at
 * the fetch time (fetched_at may be NULL). Returns 0, SG_ENOENT (none stored),
 * SG_EINVAL or SG_ESTORE (corrupt record); on error *json is NULL.
 */
int sg_jwks_store_get(struct sg_store *store, const char *issuer, char **json, size_t *len,
                      int64_t *fetched_at);

#endif
