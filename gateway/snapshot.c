#include "ssogate/snapshot.h"

#include "ssogate/assertion.h"
#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/oidc.h"
#include "ssogate/uplink.h"
#include "ssogate/upstream.h"

#include <stdlib.h>

int sg_snapshot_new(const struct sg_snapshot_env *env, struct sg_config *cfg,
                    const struct sg_snapshot *previous, uint64_t generation,
                    struct sg_snapshot **out, char *errbuf, size_t errlen)
{
    struct sg_upstream *upstream;
    int err = sg_upstream_new(env->base, env->dns, &cfg->upstream, &upstream, errbuf, errlen);
    if (err != 0) {
        sg_config_unref(cfg);
        return err;
    }
    struct sg_snapshot *snap = sg_calloc(1, sizeof(*snap));
    snap->refcount = 1;
    snap->cfg = cfg;
    snap->upstream = upstream;
    snap->uplink = sg_uplink_new(env->base, upstream, &cfg->upstream);
    snap->assertions = sg_assertions_new();
    err = sg_signer_load(cfg, &snap->signer, errbuf, errlen);
    if (err == 0)
        err = sg_signer_load_client(cfg, &snap->client_key, errbuf, errlen);
    if (err != 0) {
        sg_snapshot_unref(snap);
        return err;
    }
    if (cfg->idp != NULL)
        snap->oidc = sg_oidc_new(env->base, env->dns, env->store, cfg, &snap->client_key,
                                 previous != NULL ? previous->oidc : NULL);
    snap->generation = generation;
    *out = snap;
    return 0;
}

struct sg_snapshot *sg_snapshot_ref(struct sg_snapshot *snap)
{
    snap->refcount++;
    return snap;
}

void sg_snapshot_unref(struct sg_snapshot *snap)
{
    if (snap == NULL || --snap->refcount > 0)
        return;
    sg_oidc_free(snap->oidc);
    sg_assertions_free(snap->assertions);
    sg_signer_clear(&snap->signer);
    sg_signer_clear(&snap->client_key);
    sg_uplink_unref(snap->uplink);
    sg_upstream_unref(snap->upstream);
    sg_config_unref(snap->cfg);
    free(snap);
}
