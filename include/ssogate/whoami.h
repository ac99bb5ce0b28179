/*
 * The whoami adapter: who the caller is in the PSA. The gateway asks the
 * upstream's whoami endpoint, asynchronously through httpc.h over the
 * snapshot's PSA pool, with the caller's own PSA cookies (the gateway's
 * stripped, cookies.h) and, when it has one, the caller's SSO identity
 * headers, and reads the answer through the configured JSON pointers.
 */
#ifndef SSOGATE_WHOAMI_H
#define SSOGATE_WHOAMI_H

#include <stdbool.h>
#include <yajl/yajl_tree.h>

struct event_base;
struct evkeyvalq;
struct sg_config;
struct sg_request;
struct sg_session_writer;
struct sg_upstream;
struct sg_whoami_config;
struct sg_whoami_request;

/* Bytes of a whoami answer read at most; a larger one is a bad answer. */
#define SG_WHOAMI_MAX_BYTES (64 * 1024)

/* The PSA caller. Strings are owned (sg_whoami_clear). */
struct sg_psa_user {
    char *tenant;
    char *user;
    bool admin;
    bool staff; /* kind equals psa.whoami.staff_kind: not a client-portal user */
    bool active;
};

/* How a whoami call ended; one value, one reason (sg_whoami_error_name). */
enum sg_whoami_error {
    SG_WHOAMI_OK = 0,          /* the PSA named its caller */
    SG_WHOAMI_UNAUTHENTICATED, /* 401 or 403: the caller has no PSA session */
    SG_WHOAMI_UNREACHABLE,     /* no connection, or it broke */
    SG_WHOAMI_TIMEOUT,         /* no complete answer in time */
    SG_WHOAMI_BAD_ANSWER,      /* another status, too big, not JSON, or no tenant or user */
    SG_WHOAMI__COUNT
};

/* A short snake_case name of err for logs and metric labels; "unknown" out of range. */
const char *sg_whoami_error_name(enum sg_whoami_error err);

/* user is filled (borrowed for the call) when err is SG_WHOAMI_OK, else NULL. */
typedef void (*sg_whoami_cb)(enum sg_whoami_error err, const struct sg_psa_user *user, void *arg);

/* What a whoami call needs; all borrowed for the call to sg_whoami_fetch unless noted. */
struct sg_whoami_query {
    struct event_base *base;
    struct sg_upstream *pool;         /* the PSA upstream of the snapshot (a reference is kept) */
    struct sg_config *cfg;            /* upstream.host, upstream.url, psa.whoami, cookie names (a
                                         reference is kept) */
    const struct evkeyvalq *caller;   /* the caller's request headers: its Cookie lines */
    const struct evkeyvalq *identity; /* the X-SSO-* headers and assertion of the caller's
                                         session (identity.h), or NULL */
};

/*
 * Asks the PSA who the caller is: a GET of upstream.url's path plus
 * psa.whoami.path with Host and X-Forwarded-Host upstream.host, the caller's
 * Cookie lines without the gateway's cookies, and the identity headers (so
 * that a user signed in with IT Complete only is known to the PSA too). The
 * whole exchange is bounded by upstream.connect_timeout_ms +
 * response_timeout_ms, the answer by SG_WHOAMI_MAX_BYTES. Returns a handle
 * valid until the callback runs or sg_whoami_cancel; the callback never runs
 * before this returns.
 */
struct sg_whoami_request *sg_whoami_fetch(const struct sg_whoami_query *query, sg_whoami_cb cb,
                                          void *arg);

/*
 * Asks the PSA who the browser behind r is (sg_whoami_fetch): its PSA
 * cookies and, when it holds a live SSO session, that session's identity
 * headers. My Settings and the callback of a link ask this way, so both see
 * the same caller. r and writer (the process's session writer, for the
 * session's touch) borrowed for the call.
 */
struct sg_whoami_request *sg_whoami_fetch_caller(struct sg_request *r,
                                                 struct sg_session_writer *writer, sg_whoami_cb cb,
                                                 void *arg);

/* Cancels: the callback will not run. */
void sg_whoami_cancel(struct sg_whoami_request *request);

/*
 * Reads a PSA user out of a whoami document with the pointers of w.
 * Returns 0 and fills *out, or SG_EINVAL when tenant or user is missing.
 */
int sg_whoami_parse(const struct sg_whoami_config *w, yajl_val doc, struct sg_psa_user *out);
void sg_whoami_clear(struct sg_psa_user *user);

#endif
