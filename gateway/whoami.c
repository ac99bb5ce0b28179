/*
 * The whoami adapter on httpc.c. See include/ssogate/whoami.h.
 */
#include "ssogate/whoami.h"

#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/cookies.h"
#include "ssogate/httpc.h"
#include "ssogate/identity.h"
#include "ssogate/json.h"
#include "ssogate/request.h"
#include "ssogate/snapshot.h"
#include "ssogate/upstream.h"

#include <sys/queue.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>

struct sg_whoami_request {
    struct sg_config *cfg;   /* a reference */
    struct sg_httpc *client; /* over the snapshot's PSA pool, for this request */
    sg_whoami_cb cb;
    void *arg;
};

static const char *const error_names[SG_WHOAMI__COUNT] = {
    [SG_WHOAMI_OK] = "ok",
    [SG_WHOAMI_UNAUTHENTICATED] = "unauthenticated",
    [SG_WHOAMI_UNREACHABLE] = "unreachable",
    [SG_WHOAMI_TIMEOUT] = "timeout",
    [SG_WHOAMI_BAD_ANSWER] = "bad_answer",
};

const char *sg_whoami_error_name(enum sg_whoami_error err)
{
    return (unsigned)err < SG_WHOAMI__COUNT ? error_names[err] : "unknown";
}

/* A string or an integer as text; NULL for anything else. */
static char *scalar_text(yajl_val v)
{
    const char *text = YAJL_IS_STRING(v) ? v->u.string : NULL;
    if (text != NULL && *text != '\0')
        return sg_strdup(text);
    if (YAJL_IS_INTEGER(v))
        return sg_asprintf("%lld", YAJL_GET_INTEGER(v));
    return NULL;
}

int sg_whoami_parse(const struct sg_whoami_config *w, yajl_val doc, struct sg_psa_user *out)
{
    memset(out, 0, sizeof(*out));
    out->tenant = scalar_text(sg_json_pointer(doc, w->tenant));
    out->user = scalar_text(sg_json_pointer(doc, w->user));
    if (out->tenant == NULL || out->user == NULL) {
        sg_whoami_clear(out);
        return SG_EINVAL;
    }
    out->admin = YAJL_IS_TRUE(sg_json_pointer(doc, w->admin));
    yajl_val active = sg_json_pointer(doc, w->active);
    out->active = active == NULL || YAJL_IS_TRUE(active);
    yajl_val kind = sg_json_pointer(doc, w->kind);
    const char *kind_text = YAJL_IS_STRING(kind) ? kind->u.string : NULL;
    out->staff = kind_text != NULL && strcmp(kind_text, w->staff_kind) == 0;
    return 0;
}

void sg_whoami_clear(struct sg_psa_user *user)
{
    SG_FREE(user->tenant);
    SG_FREE(user->user);
}

static void request_free(struct sg_whoami_request *w)
{
    sg_httpc_free(w->client);
    sg_config_unref(w->cfg);
    free(w);
}

static void finish(struct sg_whoami_request *w, enum sg_whoami_error err,
                   const struct sg_psa_user *user)
{
    sg_whoami_cb cb = w->cb;
    void *arg = w->arg;
    request_free(w);
    cb(err, user, arg);
}

/* httpc's reasons: "timeout", "too_big", else the PSA could not be reached. */
static enum sg_whoami_error transport_error(const char *err)
{
    if (strcmp(err, "timeout") == 0)
        return SG_WHOAMI_TIMEOUT;
    if (strcmp(err, "too_big") == 0)
        return SG_WHOAMI_BAD_ANSWER;
    return SG_WHOAMI_UNREACHABLE;
}

static void on_answer(const char *err, int status, const char *body, size_t len, void *arg)
{
    struct sg_whoami_request *w = arg;
    if (err != NULL) {
        finish(w, transport_error(err), NULL);
        return;
    }
    if (status == 401 || status == 403) {
        finish(w, SG_WHOAMI_UNAUTHENTICATED, NULL);
        return;
    }
    yajl_val doc = NULL;
    struct sg_psa_user user;
    if (status != 200 || sg_json_parse_object(body, len, SG_WHOAMI_MAX_BYTES, &doc) != 0 ||
        sg_whoami_parse(&w->cfg->psa.whoami, doc, &user) != 0) {
        if (doc != NULL)
            yajl_tree_free(doc);
        finish(w, SG_WHOAMI_BAD_ANSWER, NULL);
        return;
    }
    yajl_tree_free(doc);
    finish(w, SG_WHOAMI_OK, &user);
    sg_whoami_clear(&user);
}

struct sg_whoami_request *sg_whoami_fetch(const struct sg_whoami_query *query, sg_whoami_cb cb,
                                          void *arg)
{
    const struct sg_config *cfg = query->cfg;
    struct sg_whoami_request *w = sg_calloc(1, sizeof(*w));
    w->cfg = sg_config_ref(query->cfg);
    w->cb = cb;
    w->arg = arg;
    struct sg_httpc_options opts = {
        .timeout_ms = cfg->upstream.connect_timeout_ms + cfg->upstream.response_timeout_ms,
        .max_response_bytes = SG_WHOAMI_MAX_BYTES,
    };
    w->client = sg_httpc_new_on_pool(query->base, query->pool, cfg->upstream.host, &opts);

    struct evkeyvalq headers = TAILQ_HEAD_INITIALIZER(headers);
    evhttp_add_header(&headers, "X-Forwarded-Host", cfg->upstream.host);
    char *cookie = sg_cookies_strip(cfg, query->caller);
    if (cookie != NULL)
        evhttp_add_header(&headers, "Cookie", cookie);
    free(cookie);
    const struct evkeyval *h;
    if (query->identity != NULL) {
        TAILQ_FOREACH(h, query->identity, next)
        evhttp_add_header(&headers, h->key, h->value);
    }
    char *target = sg_asprintf("%s%s", cfg->upstream.url.path, cfg->psa.whoami.path);
    sg_httpc_get_with(w->client, target, &headers, on_answer, w);
    free(target);
    evhttp_clear_headers(&headers);
    return w;
}

struct sg_whoami_request *sg_whoami_fetch_caller(struct sg_request *r,
                                                 struct sg_session_writer *writer, sg_whoami_cb cb,
                                                 void *arg)
{
    struct sg_identity identity;
    struct evkeyvalq headers = TAILQ_HEAD_INITIALIZER(headers);
    if (sg_identity_lookup(r->store, writer, r->shared, r->snap->cfg, r->req, false, &identity) ==
        0) {
        sg_identity_add_headers(r->snap, &identity, &headers);
        sg_identity_clear(&identity);
    }
    struct sg_whoami_query query = {.base = r->base,
                                    .pool = r->snap->upstream,
                                    .cfg = r->snap->cfg,
                                    .caller = evhttp_request_get_input_headers(r->req),
                                    .identity = &headers};
    struct sg_whoami_request *w = sg_whoami_fetch(&query, cb, arg);
    evhttp_clear_headers(&headers);
    return w;
}

void sg_whoami_cancel(struct sg_whoami_request *w)
{
    /* Freeing the client cancels its request without the callback. */
    request_free(w);
}
