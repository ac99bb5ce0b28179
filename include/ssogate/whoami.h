/*
 * The whoami adapter: who the caller is in the PSA. The gateway asks the
 * upstream's whoami endpoint, asynchronously, with the caller's own PSA
 * cookies, and reads the answer through the configured JSON pointers.
 */
#ifndef SSOGATE_WHOAMI_H
#define SSOGATE_WHOAMI_H

#include <stdbool.h>
#include <yajl/yajl_tree.h>

struct evhttp_request;
struct sg_identity;
struct sg_snapshot;
struct sg_whoami_request;

#define SG_WHOAMI_MAX_BYTES (64 * 1024)

/* The PSA caller. Strings are owned (sg_whoami_clear). */
struct sg_psa_user {
    char *tenant;
    char *user;
    bool admin;
    bool staff; /* kind equals psa.whoami.staff_kind: not a client-portal user */
    bool active;
};

/*
 * err is NULL when the PSA named its caller (user filled, borrowed for the
 * call); else "unauthenticated" (the PSA refused: no PSA session),
 * "unreachable", "timeout" or "bad_answer".
 */
typedef void (*sg_whoami_cb)(const char *err, const struct sg_psa_user *user, void *arg);

/*
 * Asks the upstream of snap (borrowed; the request keeps a reference) who the
 * caller of req (borrowed for the call: its Cookie header is copied) is.
 * identity (may be NULL; borrowed for the call) is the caller's SSO session:
 * its X-SSO-* headers and assertion go along, so that a user signed in with
 * IT Complete only is known to the PSA too. Returns a handle valid until the
 * callback runs or sg_whoami_cancel; the callback never runs before this
 * returns.
 */
struct sg_whoami_request *sg_whoami_fetch(struct sg_snapshot *snap, struct evhttp_request *req,
                                          const struct sg_identity *identity, sg_whoami_cb cb,
                                          void *arg);

/* Cancels: the callback will not run. */
void sg_whoami_cancel(struct sg_whoami_request *request);

/*
 * Reads a PSA user out of a whoami document with the configured pointers.
 * Returns 0 and fills *out, or SG_EINVAL when tenant or user is missing.
 */
int sg_whoami_parse(const struct sg_snapshot *snap, yajl_val doc, struct sg_psa_user *out);
void sg_whoami_clear(struct sg_psa_user *user);

/* Resolves an RFC 6901 JSON pointer in doc; NULL when it names nothing. */
yajl_val sg_json_pointer(yajl_val doc, const char *pointer);

#endif
