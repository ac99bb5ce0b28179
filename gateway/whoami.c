#include "ssogate/whoami.h"

#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/cookies.h"
#include "ssogate/identity.h"
#include "ssogate/json.h"
#include "ssogate/runtime.h"
#include "ssogate/upstream.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sg_whoami_request {
    struct sg_snapshot *snap;
    struct evhttp_request *up;
    struct evhttp_connection *conn;
    struct sg_upstream_slot *slot;
    struct event *deferred; /* reports a failure to start after the caller returned */
    sg_whoami_cb cb;
    void *arg;
    bool failed;
    bool too_big;
    enum evhttp_request_error error;
    struct evbuffer *body; /* bounded by SG_WHOAMI_MAX_BYTES */
};

yajl_val sg_json_pointer(yajl_val doc, const char *pointer)
{
    if (pointer == NULL)
        return NULL;
    if (*pointer == '\0')
        return doc;
    if (*pointer != '/')
        return NULL;
    yajl_val node = doc;
    const char *p = pointer;
    char token[256];
    while (*p == '/' && node != NULL) {
        p++;
        size_t n = 0;
        while (*p != '\0' && *p != '/') {
            char c = *p++;
            if (c == '~') {
                if (*p == '0')
                    c = '~';
                else if (*p == '1')
                    c = '/';
                else
                    return NULL;
                p++;
            }
            if (n + 1 >= sizeof(token))
                return NULL;
            token[n++] = c;
        }
        token[n] = '\0';
        if (YAJL_IS_OBJECT(node)) {
            yajl_val next = NULL;
            for (size_t i = 0; i < node->u.object.len; i++) {
                if (strcmp(node->u.object.keys[i], token) == 0) {
                    next = node->u.object.values[i];
                    break;
                }
            }
            node = next;
        } else if (YAJL_IS_ARRAY(node)) {
            char *end;
            unsigned long index = strtoul(token, &end, 10);
            if (*token == '\0' || *end != '\0' || index >= node->u.array.len)
                return NULL;
            node = node->u.array.values[index];
        } else {
            return NULL;
        }
    }
    return node;
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

int sg_whoami_parse(const struct sg_snapshot *snap, yajl_val doc, struct sg_psa_user *out)
{
    const struct sg_whoami_config *w = &snap->cfg->psa.whoami;
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
    if (w->slot != NULL)
        sg_upstream_release(w->slot);
    if (w->deferred != NULL)
        event_free(w->deferred);
    evbuffer_free(w->body);
    sg_snapshot_unref(w->snap);
    free(w);
}

static void finish(struct sg_whoami_request *w, const char *err, const struct sg_psa_user *user)
{
    sg_whoami_cb cb = w->cb;
    void *arg = w->arg;
    request_free(w);
    cb(err, user, arg);
}

static void on_error(enum evhttp_request_error error, void *arg)
{
    struct sg_whoami_request *w = arg;
    w->failed = true;
    w->error = error;
}

static void on_done(struct evhttp_request *up, void *arg)
{
    struct sg_whoami_request *w = arg;
    w->up = NULL;
    int status = up ? evhttp_request_get_response_code(up) : 0;
    if (w->failed || status == 0) {
        finish(w, w->failed && w->error == EVREQ_HTTP_TIMEOUT ? "timeout" : "unreachable", NULL);
        return;
    }
    if (status == 401 || status == 403) {
        finish(w, "unauthenticated", NULL);
        return;
    }
    size_t len = evbuffer_get_length(w->body);
    yajl_val doc = NULL;
    struct sg_psa_user user;
    if (status != 200 || w->too_big ||
        sg_json_parse_object((const char *)evbuffer_pullup(w->body, -1), len, SG_WHOAMI_MAX_BYTES,
                             &doc) != 0 ||
        sg_whoami_parse(w->snap, doc, &user) != 0) {
        if (doc != NULL)
            yajl_tree_free(doc);
        finish(w, "bad_answer", NULL);
        return;
    }
    yajl_tree_free(doc);
    finish(w, NULL, &user);
    sg_whoami_clear(&user);
}

/* Keeps at most SG_WHOAMI_MAX_BYTES of the answer: the connection is shared
 * with proxied traffic, so its own body limit stays unset. */
static void on_chunk(struct evhttp_request *up, void *arg)
{
    struct sg_whoami_request *w = arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(up);
    if (w->too_big ||
        evbuffer_get_length(w->body) + evbuffer_get_length(in) > SG_WHOAMI_MAX_BYTES) {
        w->too_big = true;
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    evbuffer_add_buffer(w->body, in);
}

static void on_deferred_failure(evutil_socket_t fd, short what, void *arg)
{
    finish(arg, "unreachable", NULL);
}

struct sg_whoami_request *sg_whoami_fetch(struct sg_snapshot *snap, struct evhttp_request *req,
                                          const struct sg_identity *identity, sg_whoami_cb cb,
                                          void *arg)
{
    const struct sg_config *cfg = snap->cfg;
    struct sg_whoami_request *w = sg_calloc(1, sizeof(*w));
    w->snap = sg_snapshot_ref(snap);
    w->cb = cb;
    w->arg = arg;

    w->body = evbuffer_new();
    w->up = evhttp_request_new(on_done, w);
    evhttp_request_set_error_cb(w->up, on_error);
    evhttp_request_set_chunked_cb(w->up, on_chunk);
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    struct evkeyvalq *out = evhttp_request_get_output_headers(w->up);
    evhttp_add_header(out, "Host", cfg->upstream.host);
    evhttp_add_header(out, "X-Forwarded-Host", cfg->upstream.host);
    evhttp_add_header(out, "Accept", "application/json");
    char *cookie = sg_cookies_strip(cfg, in);
    if (cookie != NULL)
        evhttp_add_header(out, "Cookie", cookie);
    free(cookie);
    if (identity != NULL)
        sg_identity_add_headers(snap, identity, out);
    char *target = sg_asprintf("%s%s", cfg->upstream.url.path, cfg->psa.whoami.path);
    w->conn = sg_upstream_acquire(snap->upstream, &w->slot);
    if (evhttp_make_request(w->conn, w->up, EVHTTP_REQ_GET, target) != 0) {
        w->up = NULL;
        static const struct timeval now = {0, 0};
        w->deferred = evtimer_new(evhttp_connection_get_base(w->conn), on_deferred_failure, w);
        evtimer_add(w->deferred, &now);
    }
    free(target);
    return w;
}

void sg_whoami_cancel(struct sg_whoami_request *w)
{
    if (w->up != NULL) {
        struct evhttp_request *up = w->up;
        w->up = NULL;
        evhttp_request_set_error_cb(up, NULL);
        evhttp_cancel_request(up);
    }
    request_free(w);
}
