#include "ssogate/jwks.h"

#include "ssogate/common.h"
#include "ssogate/log.h"
#include "ssogate/metrics.h"
#include "ssogate/store.h"

#include <stdlib.h>
#include <string.h>

/* Layout of a jwks record: version byte, fetch time, then the JSON. */
#define RECORD_VERSION 1
#define HEADER_LEN     9

struct sg_jwks {
    struct sg_store *store; /* borrowed */
    struct sg_jwk_set *keys;
    int64_t fetched_at;
    int64_t last_unknown_kid_fetch;
};

struct sg_jwks *sg_jwks_new(struct sg_store *store, const struct sg_jwks *previous)
{
    struct sg_jwks *jwks = sg_calloc(1, sizeof(*jwks));
    jwks->store = store;
    if (previous != NULL)
        jwks->last_unknown_kid_fetch = previous->last_unknown_kid_fetch;
    return jwks;
}

void sg_jwks_free(struct sg_jwks *jwks)
{
    if (jwks == NULL)
        return;
    sg_jwk_set_free(jwks->keys);
    free(jwks);
}

/* Parses json into the cache's keys, logging the outcome. Returns 0 or SG_EINVAL. */
static int keys_set(struct sg_jwks *jwks, const char *json, size_t len, int64_t fetched_at,
                    const char *source)
{
    struct sg_jose_error jerr = {0};
    struct sg_jwk_set *set = NULL;
    if (sg_jwk_set_parse(json, len, &set, &jerr) != 0) {
        sg_log_fields(SG_LOG_ERROR, "idp_jwks",
                      (struct sg_log_field[]){SG_LOG_STR("source", source),
                                              SG_LOG_STR("where", jerr.where),
                                              SG_LOG_STR("reason", jerr.what)},
                      3);
        return SG_EINVAL;
    }
    sg_jwk_set_free(jwks->keys);
    jwks->keys = set;
    jwks->fetched_at = fetched_at;
    sg_log_fields(SG_LOG_INFO, "idp_jwks",
                  (struct sg_log_field[]){SG_LOG_STR("source", source),
                                          SG_LOG_INT("keys", (int64_t)set->count),
                                          SG_LOG_INT("skipped", (int64_t)set->skipped)},
                  3);
    return 0;
}

int sg_jwks_load(struct sg_jwks *jwks, const char *issuer)
{
    char *json = NULL;
    size_t len = 0;
    int64_t fetched_at = 0;
    int err = sg_jwks_store_get(jwks->store, issuer, &json, &len, &fetched_at);
    if (err != 0)
        return err;
    err = keys_set(jwks, json, len, fetched_at, "store");
    free(json);
    return err;
}

int sg_jwks_replace(struct sg_jwks *jwks, const char *issuer, const char *json, size_t len,
                    int64_t fetched_at)
{
    int err = keys_set(jwks, json, len, fetched_at, "fetch");
    if (err != 0)
        return err;
    if (sg_jwks_store_put(jwks->store, issuer, json, len, fetched_at) != 0) {
        sg_metrics_error(SG_MERR_STORE);
        sg_log(SG_LOG_ERROR, "idp_jwks", "could not cache the JWKS in the store");
    }
    return 0;
}

const struct sg_jwk_set *sg_jwks_keys(const struct sg_jwks *jwks)
{
    return jwks->keys;
}

bool sg_jwks_stale(const struct sg_jwks *jwks, int64_t now, int64_t max_age_s)
{
    return jwks->keys == NULL || now - jwks->fetched_at >= max_age_s;
}

bool sg_jwks_refetch_allowed(const struct sg_jwks *jwks, int64_t now)
{
    return now - jwks->last_unknown_kid_fetch >= SG_JWKS_REFETCH_S;
}

void sg_jwks_refetch_started(struct sg_jwks *jwks, int64_t now)
{
    jwks->last_unknown_kid_fetch = now;
}

/* Checks a JWKS issuer as a store key. Returns 0, SG_EINVAL (empty) or SG_ETOOBIG. */
static int record_key(const char *issuer, size_t *len)
{
    *len = issuer != NULL ? strlen(issuer) : 0;
    if (*len == 0)
        return SG_EINVAL;
    return *len > SG_STORE_KEY_MAX ? SG_ETOOBIG : 0;
}

int sg_jwks_store_put(struct sg_store *store, const char *issuer, const char *json, size_t len,
                      int64_t fetched_at)
{
    size_t klen;
    int err = record_key(issuer, &klen);
    if (err != 0)
        return err;
    if (json == NULL || len == 0)
        return SG_EINVAL;
    if (len > SG_JWKS_MAX)
        return SG_ETOOBIG;

    size_t size = HEADER_LEN + len;
    unsigned char *record = sg_malloc(size);
    record[0] = RECORD_VERSION;
    sg_store_put_be64(record + 1, (uint64_t)fetched_at);
    memcpy(record + HEADER_LEN, json, len);
    struct sg_store_txn txn;
    err = sg_store_txn_begin(store, true, &txn);
    if (err == 0) {
        err = sg_store_put(&txn, SG_STORE_DB_JWKS, issuer, klen, record, size, 0);
        if (err == 0)
            err = sg_store_txn_commit(&txn, SG_STORE_LAZY);
        else
            sg_store_txn_abort(&txn);
    }
    free(record);
    return err;
}

int sg_jwks_store_get(struct sg_store *store, const char *issuer, char **json, size_t *len,
                      int64_t *fetched_at)
{
    *json = NULL;
    *len = 0;
    size_t klen;
    int err = record_key(issuer, &klen);
    if (err != 0)
        return err == SG_ETOOBIG ? SG_ENOENT : err;

    struct sg_store_txn txn;
    err = sg_store_txn_begin(store, false, &txn);
    if (err != 0)
        return err;
    const void *val;
    size_t size;
    err = sg_store_get(&txn, SG_STORE_DB_JWKS, issuer, klen, &val, &size);
    if (err != 0) {
        sg_store_txn_abort(&txn);
        return err;
    }
    const unsigned char *p = val;
    if (size <= HEADER_LEN || size - HEADER_LEN > SG_JWKS_MAX || p[0] != RECORD_VERSION) {
        sg_store_txn_abort(&txn);
        return SG_ESTORE;
    }
    *len = size - HEADER_LEN;
    *json = sg_strndup((const char *)p + HEADER_LEN, *len);
    if (fetched_at != NULL)
        *fetched_at = (int64_t)sg_store_get_be64(p + 1);
    sg_store_txn_abort(&txn);
    return 0;
}
