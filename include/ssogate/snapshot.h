/*
 * A snapshot: the configuration and the parts built from it that every
 * request of its generation uses (upstream pool, IdP state, signing key).
 * A snapshot is immutable once built; a reload builds a complete new one and
 * swaps it in only when it is whole (nginx's cycle), while requests in flight
 * keep the one they began with through their reference.
 */
#ifndef SSOGATE_SNAPSHOT_H
#define SSOGATE_SNAPSHOT_H

#include "ssogate/signer.h"

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evdns_base;
struct sg_assertions;
struct sg_config;
struct sg_oidc;
struct sg_store;
struct sg_upstream;
struct sg_uplink;

struct sg_snapshot {
    int refcount;
    uint64_t generation;
    struct sg_config *cfg;            /* owned reference */
    struct sg_upstream *upstream;     /* owned reference: connections to the upstream */
    struct sg_uplink *uplink;         /* owned reference: the proxy's exchanges (uplink.h) */
    struct sg_oidc *oidc;             /* owned; NULL without an idp */
    struct sg_signer signer;          /* owned */
    struct sg_assertions *assertions; /* owned: the assertions signed with signer */
    struct sg_signer client_key;      /* owned: private_key_jwt at the token endpoint, or empty */
};

/* What a snapshot's parts are built on; all borrowed, outliving every snapshot. */
struct sg_snapshot_env {
    struct event_base *base;
    struct evdns_base *dns;
    struct sg_store *store;
};

/*
 * Builds a snapshot of generation from a loaded configuration (the snapshot
 * takes the caller's reference to cfg, even on failure). previous (may be
 * NULL) is the snapshot it replaces: an IdP of the same issuer keeps its
 * discovery document and keys. Returns 0 and the snapshot in *out, or
 * SG_ECONFIG with a reason in errbuf.
 */
int sg_snapshot_new(const struct sg_snapshot_env *env, struct sg_config *cfg,
                    const struct sg_snapshot *previous, uint64_t generation,
                    struct sg_snapshot **out, char *errbuf, size_t errlen);
struct sg_snapshot *sg_snapshot_ref(struct sg_snapshot *snap);
void sg_snapshot_unref(struct sg_snapshot *snap);

#endif
