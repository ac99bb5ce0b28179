/*
 * Logout started at the identity provider: OpenID Connect Back-Channel
 * Logout 1.0 (POST /_sso/backchannel-logout with a signed logout_token) and
 * Front-Channel Logout 1.0 (GET /_sso/frontchannel-logout?iss=&sid=, framed
 * by the IdP). Every gateway session of the IdP session (sid) or, without a
 * sid, of the user (sub) ends at once; WebSocket tunnels of those sessions
 * close within a second (tunnel.c checks the store), on every worker and
 * every host that shares the store.
 */
#ifndef SSOGATE_LOGOUT_H
#define SSOGATE_LOGOUT_H

#include <stddef.h>
#include <stdint.h>

struct sg_request;
struct sg_store;

/* Endpoints (router.c's table); each returns the status sent, or 0 while it waits. */
int sg_logout_backchannel(struct sg_request *r);
int sg_logout_frontchannel(struct sg_request *r);

/* Deletes at most max jti records past their keep-until time; *deleted (may be NULL) the count. */
int sg_logout_sweep(struct sg_store *store, int64_t now, size_t max, size_t *deleted);

#endif
