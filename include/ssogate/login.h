/*
 * The login endpoints: /_sso/login starts an authorization code flow,
 * /_sso/callback finishes it (the decision order of the specification),
 * /_sso/logout ends the session. Login state is short-lived
 * (SG_LOGINSTATE_TTL_S), single-use, bound to the browser that started it by
 * a cookie, bounded by limits.logins_in_flight, and kept in the store so
 * that any worker can finish a login another started (in memory when there
 * is one worker: see sg_logins_new).
 */
#ifndef SSOGATE_LOGIN_H
#define SSOGATE_LOGIN_H

#include "ssogate/loginstate.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sg_logins;
struct sg_pgstore;
struct sg_request;
struct sg_session_writer;
struct sg_store;

/*
 * The logins in flight on this process, over the login states in store
 * (borrowed), in shared (borrowed; NULL without the shared store), or, with
 * in_memory, in this process's memory: for a gateway that alone finishes the
 * logins it starts (one worker and the LMDB store; several workers share
 * their states through the store, and with the shared store they are in
 * PostgreSQL). New sessions go through writer (borrowed; NULL: each written
 * in a transaction of its own).
 */
struct sg_logins *sg_logins_new(struct sg_store *store, struct sg_pgstore *shared,
                                struct sg_session_writer *writer, bool in_memory);

/* Frees the logins; every callback's request has finished before. NULL-safe. */
void sg_logins_free(struct sg_logins *logins);

/* Logins in flight: states kept (in the LMDB store: by every worker; with the shared store:
 * started by this process) plus callbacks running here. */
size_t sg_logins_count(struct sg_logins *logins);

/* Deletes at most max expired (or unreadable) login states; returns how many. */
size_t sg_logins_sweep(struct sg_logins *logins, int64_t now, size_t max);

/*
 * The endpoints (router.c's table); each sends its answer and returns the
 * status, or waits (request.h) and returns 0.
 */
int sg_login_start(struct sg_request *r);
int sg_login_callback(struct sg_request *r);
int sg_login_logout(struct sg_request *r);

/*
 * Starts an authorization code flow for purpose, answering r with a
 * redirect (status: 302 for a GET, 303 after a POST) to the IdP. psa_tenant
 * and psa_user (borrowed, NULL for a plain login) name the PSA caller a link
 * is for. Returns the status sent.
 */
int sg_login_begin(struct sg_request *r, enum sg_login_purpose purpose, const char *return_to,
                   const char *psa_tenant, const char *psa_user, int status);

/* Starts a login (sg_login_begin: a 302 to the IdP) for a page that requires a
 * session; it returns to r's normalised target, the one the route was decided
 * on. Returns as sg_login_begin. */
int sg_login_redirect_required(struct sg_request *r);

#endif
