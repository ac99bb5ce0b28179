/*
 * The running gateway: the event base, the current configuration snapshot
 * and the long-lived parts every request reaches. A snapshot is immutable;
 * a reload builds a complete new one and swaps it in only when it is whole
 * (nginx's cycle), while requests in flight keep the one they began with.
 */
#ifndef SSOGATE_RUNTIME_H
#define SSOGATE_RUNTIME_H

#include "ssogate/config.h"
#include "ssogate/signer.h"

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct evdns_base;
struct sg_upstream;
struct sg_server;
struct sg_store;
struct sg_oidc;
struct sg_logins;

struct sg_snapshot {
    int refcount;
    uint64_t generation;
    struct sg_config *cfg;        /* owned reference */
    struct sg_upstream *upstream; /* owned reference */
    struct sg_oidc *oidc;         /* owned; NULL without an idp */
    struct sg_signer signer;      /* owned */
};

struct sg_runtime {
    struct event_base *base;
    struct evdns_base *dns;
    char *config_path;
    struct sg_snapshot *current; /* owned reference; never NULL once started */
    struct sg_server *server;
    struct sg_store *store;
    struct sg_logins *logins; /* logins in flight */
    struct sg_signer retired; /* the signing key a reload replaced */
    int64_t retired_until;    /* ...published until assertions it signed expired */
    uint64_t next_generation;
    bool draining;
    unsigned requests_in_flight;
};

/*
 * Builds a snapshot from a loaded configuration (the snapshot takes the
 * caller's reference to cfg, even on failure). Returns 0 and the snapshot in
 * *out, or SG_ECONFIG with a reason in errbuf.
 */
int sg_snapshot_new(struct sg_runtime *rt, struct sg_config *cfg, struct sg_snapshot **out,
                    char *errbuf, size_t errlen);
struct sg_snapshot *sg_snapshot_ref(struct sg_snapshot *snap);
void sg_snapshot_unref(struct sg_snapshot *snap);

/*
 * Reloads the configuration file: on success swaps in the new snapshot and
 * returns 0; on any failure logs the reason, counts it, keeps the current
 * snapshot and returns the error.
 */
int sg_runtime_reload(struct sg_runtime *rt);

#endif
