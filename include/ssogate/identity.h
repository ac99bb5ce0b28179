/*
 * Who the caller is, and how the upstream learns it: the session behind the
 * gateway's cookie, the X-SSO-* headers and the X-SSO-Assertion JWS signed
 * with the gateway's own key (published at /_sso/jwks.json).
 */
#ifndef SSOGATE_IDENTITY_H
#define SSOGATE_IDENTITY_H

#include "ssogate/config.h"
#include "ssogate/session.h"

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct evhttp_request;
struct evbuffer;
struct evkeyvalq;
struct sg_config;
struct sg_store;
struct sg_pgstore;
struct sg_session_writer;
struct sg_snapshot;

/* The caller's session, when its cookie names a live one. */
struct sg_identity {
    char session_id[SG_SESSION_ID_SIZE];
    struct sg_session session; /* owned */
};

/*
 * Finds the session of req's session cookie and records the activity. Every
 * session cookie value in every Cookie line is looked at (up to four):
 * unknown, expired and malformed ones are ignored; when the live ones belong
 * to different identities none is used. Returns 0 and fills *out (clear with
 * sg_identity_clear), SG_ENOENT when there is no live session, SG_EEXIST for
 * sessions of different identities, or SG_ESTORE. The session's ID token is
 * read only with id_token (logout's id_token_hint). One read transaction per
 * session cookie; a touch that is due is queued on writer (borrowed; NULL:
 * written at once, in a transaction of its own).
 */
int sg_identity_lookup(struct sg_store *store, struct sg_session_writer *writer,
                       struct sg_pgstore *shared, const struct sg_config *cfg,
                       struct evhttp_request *req, bool id_token, struct sg_identity *out);
void sg_identity_clear(struct sg_identity *identity);

/*
 * Adds X-SSO-Subject, -IdP-Tenant, -Email, -Tenant, -User (link mode) and an
 * X-SSO-Assertion for identity to headers: one signed at most ttl_s/2 ago for
 * this session and snapshot, else a fresh one; then the session's claim
 * headers still mapped by snap's claim_headers. Returns 0 or SG_ECRYPTO.
 */
int sg_identity_add_headers(const struct sg_snapshot *snap, const struct sg_identity *identity,
                            struct evkeyvalq *headers);

/* The same headers as lines "name: value" CRLF appended to out (the proxy's request). */
int sg_identity_write_headers(const struct sg_snapshot *snap, const struct sg_identity *identity,
                              struct evbuffer *out);

/* Called once a logout's ends were taken, or its wait is over. */
typedef void (*sg_identity_ended_fn)(void *arg);
struct sg_identity_ending;

/*
 * Ends every session whose cookie req carries (up to 16, four times as many
 * as sg_identity_lookup reads), whoever's it is: deleted from the store, and
 * with the shared store here at once and in PostgreSQL, the end kept on this
 * host until PostgreSQL takes it (pgstore.h). A logout that ended only the
 * session in use would leave a second one alive: another session of the same
 * user, or the victim's own behind a planted one (whose conflict leaves no
 * session in use at all). Adds to req's response a Set-Cookie that clears
 * the session cookie. store, shared (may be NULL), cfg and req borrowed.
 *
 * With ended (not NULL) and a database that answers, the caller may hold its
 * answer until every host refuses the sessions: returns a handle (cancel
 * with sg_identity_ending_cancel) and calls ended(arg) once, when PostgreSQL
 * answered every DELETE or after a second, whichever comes first (on base).
 * Returns NULL when there is nothing to wait for: ended is then not called.
 */
struct sg_identity_ending *sg_identity_end(struct sg_store *store, struct sg_pgstore *shared,
                                           struct event_base *base, const struct sg_config *cfg,
                                           struct evhttp_request *req, sg_identity_ended_fn ended,
                                           void *arg);

/*
 * A login's new session replaces whatever sessions req's cookies carry: they
 * end as with sg_identity_end, without waiting and without clearing the
 * cookie (the login sets the new one). A copy of the old cookie (a shared
 * computer, one taken before this login) does not outlive it. All borrowed.
 */
void sg_identity_end_replaced(struct sg_store *store, struct sg_pgstore *shared,
                              const struct sg_config *cfg, struct evhttp_request *req);

/* Stops waiting (ended will not be called; the ends go on) and frees. NULL-safe. */
void sg_identity_ending_cancel(struct sg_identity_ending *ending);

#endif
