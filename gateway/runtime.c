#include "ssogate/runtime.h"

#include "ssogate/common.h"
#include "ssogate/log.h"
#include "ssogate/metrics.h"
#include "ssogate/oidc.h"
#include "ssogate/server.h"
#include "ssogate/upstream.h"

#include <stdio.h>
#include <string.h>
#include <stdlib.h>

int sg_snapshot_new(struct sg_runtime *rt, struct sg_config *cfg, struct sg_snapshot **out,
                    char *errbuf, size_t errlen)
{
    struct sg_upstream *upstream;
    int err = sg_upstream_new(rt->base, rt->dns, &cfg->upstream, &upstream, errbuf, errlen);
    if (err != 0) {
        sg_config_unref(cfg);
        return err;
    }
    struct sg_snapshot *snap = sg_calloc(1, sizeof(*snap));
    snap->refcount = 1;
    snap->cfg = cfg;
    snap->upstream = upstream;
    err = sg_signer_load(cfg, &snap->signer, errbuf, errlen);
    if (err == 0 && cfg->idp != NULL)
        snap->oidc = sg_oidc_new(rt, cfg, rt->current ? rt->current->oidc : NULL);
    if (err != 0) {
        sg_snapshot_unref(snap);
        return err;
    }
    snap->generation = ++rt->next_generation;
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
    sg_signer_clear(&snap->signer);
    sg_upstream_unref(snap->upstream);
    sg_config_unref(snap->cfg);
    free(snap);
}

int sg_runtime_reload(struct sg_runtime *rt)
{
    struct sg_config_error cerr = {0};
    struct sg_config *cfg = NULL;
    struct sg_snapshot *snap = NULL;
    char reason[1200];

    int err = sg_config_load(rt->config_path, &cfg, &cerr);
    if (err != 0) {
        snprintf(reason, sizeof(reason), "%s: %s: %s", cerr.file, cerr.key, cerr.message);
        goto end;
    }
    err = sg_snapshot_new(rt, cfg, &snap, reason, sizeof(reason));
    if (err != 0)
        goto end;
    sg_server_apply(rt->server, snap->cfg);
    sg_log_set_level(snap->cfg->log_level);
    if (strcmp(rt->current->signer.kid, snap->signer.kid) != 0) {
        /* Assertions signed with the old key stay verifiable until they expire. */
        sg_signer_retire(&rt->retired, &rt->current->signer);
        rt->retired_until = sg_now_s() + rt->current->cfg->assertion.ttl_s;
    }
    sg_snapshot_unref(rt->current);
    rt->current = snap;

end:
    if (err != 0) {
        sg_metrics_reload(0);
        sg_metrics_error(SG_MERR_RELOAD);
        sg_log_fields(
            SG_LOG_ERROR, "reload",
            (struct sg_log_field[]){SG_LOG_STR("result", "refused"), SG_LOG_STR("reason", reason)},
            2);
    } else {
        sg_metrics_reload(1);
        sg_log_fields(
            SG_LOG_INFO, "reload",
            (struct sg_log_field[]){SG_LOG_STR("result", "ok"),
                                    SG_LOG_INT("generation", (int64_t)rt->current->generation)},
            2);
    }
    return err;
}
