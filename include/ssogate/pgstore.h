/*
 * The shared store of several gateway hosts: PostgreSQL is the truth for
 * links, sessions, login states and the back-channel logout tokens accepted,
 * and this host's LMDB store is its cache.
 *
 * - Login states live only in PostgreSQL: a login started on one host
 *   completes on any other, and DELETE ... RETURNING keeps them single-use.
 * - Sessions are written to PostgreSQL first, then cached here. A session
 *   missing from the cache is fetched (the request waits). A cached session
 *   is trusted for at most cache_ttl_s after its fetch: then the next request
 *   fetches it again (its local copy stays 30 s longer for requests already
 *   past that check, and goes at once when the database cannot be asked). Every deletion in
 * PostgreSQL (logout, an unlink, back-channel logout, ssogate-admin, expiry) is notified by a
 *   trigger and each host drops the session at once; cache_ttl_s bounds the
 *   staleness only when a host misses notifications (its listening
 *   connection broke). Idle-time touches are written behind, in one
 *   statement a second.
 * - Links are written to PostgreSQL first (its UNIQUE constraints are the
 *   one-to-one rules: of two hosts linking at the same instant exactly one
 *   wins), then into this host's copy. Every host keeps a full copy of the
 *   links, replaced from PostgreSQL whenever its listening connection is
 *   (re)made and refreshed tenant by tenant on each notification, so link
 *   lookups stay local and synchronous.
 *
 * Every asynchronous call ends with exactly one call of its done function
 * (never before the call returns) unless cancelled first. Errors:
 * SG_ENOENT, SG_EEXIST (a one-to-one conflict), SG_EUNAVAILABLE (no
 * connection, or the deadline passed), SG_ESTORE, SG_EINVAL.
 */
#ifndef SSOGATE_PGSTORE_H
#define SSOGATE_PGSTORE_H

#include "ssogate/links.h"
#include "ssogate/loginstate.h"
#include "ssogate/session.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct sg_store;
struct sg_store_config;
struct sg_pgstore;
struct sg_pgstore_op;

typedef void (*sg_pgstore_done_fn)(void *arg, int err);

/*
 * Opens the shared store: checks the database's schema when it can be
 * reached (blocking, at start only: a wrong version is refused; an
 * unreachable database is not, the gateway then starts degraded), empties
 * the session cache and starts the pool. cache is this host's store (kept
 * borrowed). Returns NULL with errbuf filled.
 */
struct sg_pgstore *sg_pgstore_open(struct event_base *base, const struct sg_store_config *cfg,
                                   struct sg_store *cache, char *errbuf, size_t errlen);

/* Writes the pending touches (best effort, without waiting) and frees. */
void sg_pgstore_free(struct sg_pgstore *ps);

/* True while the database can be reached (for /_sso/healthz). */
bool sg_pgstore_available(const struct sg_pgstore *ps);

/* The done function of op will not run. */
void sg_pgstore_cancel(struct sg_pgstore_op *op);

/* Login states. take fills *out (cleared with sg_loginstate_clear) on 0;
 * SG_ETIMEOUT when it had expired, SG_ENOENT when unknown or used. */
struct sg_pgstore_op *sg_pgstore_loginstate_put(struct sg_pgstore *ps,
                                                const struct sg_loginstate *s,
                                                sg_pgstore_done_fn done, void *arg);
struct sg_pgstore_op *sg_pgstore_loginstate_take(struct sg_pgstore *ps, const char *state,
                                                 struct sg_loginstate *out, sg_pgstore_done_fn done,
                                                 void *arg);

/* Deletes the login state called state (borrowed) in the background: a
 * login given up at limits.logins_in_flight. Nothing when unavailable. */
void sg_pgstore_loginstate_drop(struct sg_pgstore *ps, const char *state);

/* Creates a session in PostgreSQL, then in the cache, for a login begun at
 * began: SG_ENOENT when its user's link went meanwhile, SG_EENDED when a
 * logout at the IdP ended its IdP user or IdP session after the second began. */
struct sg_pgstore_op *sg_pgstore_session_create(struct sg_pgstore *ps, const char *id,
                                                const struct sg_session *rec, int64_t began,
                                                sg_pgstore_done_fn done, void *arg);

/* True when a session id needs no question to PostgreSQL: cached here, or
 * already answered unknown (ids are never given out twice). */
bool sg_pgstore_session_cached(struct sg_pgstore *ps, const char *id);

/* Fetches a live session from PostgreSQL into the cache: 0 or SG_ENOENT. */
struct sg_pgstore_op *sg_pgstore_session_fetch(struct sg_pgstore *ps, const char *id,
                                               sg_pgstore_done_fn done, void *arg);

/* Records activity on a session, written behind (no done function). */
void sg_pgstore_session_touch(struct sg_pgstore *ps, const char *id, int64_t now);

/*
 * Ends one session everywhere: here at once, then deleted in PostgreSQL. The
 * end is first kept in this host's store (table session_ends) and stays
 * there until PostgreSQL has run the DELETE: every failure (no connection,
 * the deadline, an SQL error such as a statement_timeout under a row lock)
 * is sent again, each second while the database answers, at each
 * (re)connection and at the next start. Meanwhile this host refuses the
 * session (sg_pgstore_session_cached is true, no fetch caches it). done gets
 * PostgreSQL's first answer (0 when it took the end).
 */
struct sg_pgstore_op *sg_pgstore_session_delete(struct sg_pgstore *ps, const char *id,
                                                sg_pgstore_done_fn done, void *arg);

/* Ends everywhere every session of an IdP user (issuer, subject value) or,
 * by_sid, of an IdP session (issuer, sid value): back- and front-channel
 * logout. *ended (may be NULL) gets how many. The owner's mark
 * (sg_session_mark_ended_txn) goes with it: a login of that owner in flight
 * creates no session after it, and the DELETE is sent again once done, for a
 * session inserted while it ran. (Sessions of a PSA user end
 * with its link: sg_pgstore_user_unlink, sg_pgstore_tenant_unlink.) */
struct sg_pgstore_op *sg_pgstore_session_delete_owner(struct sg_pgstore *ps, bool by_sid,
                                                      const char *issuer, const char *value,
                                                      size_t *ended, sg_pgstore_done_fn done,
                                                      void *arg);

/*
 * The same for a back-channel logout token, accepted once by the cluster: its
 * jti_key (SHA-256 of issuer NUL jti, borrowed) is recorded, kept until
 * keep_until (then swept), in the statement that ends the sessions, so that
 * a failure records nothing and the IdP's retry is accepted. SG_EEXIST when
 * a host accepted that jti before: no session ended.
 */
struct sg_pgstore_op *sg_pgstore_session_delete_owner_once(struct sg_pgstore *ps, bool by_sid,
                                                           const char *issuer, const char *value,
                                                           const void *jti_key, size_t jti_len,
                                                           int64_t keep_until, size_t *ended,
                                                           sg_pgstore_done_fn done, void *arg);

/* Links; via says where the change came from, for the audit ("login",
 * "settings"). */
struct sg_pgstore_op *sg_pgstore_tenant_link(struct sg_pgstore *ps, const char *psa_tenant,
                                             const char *idp_tenant, const char *via,
                                             sg_pgstore_done_fn done, void *arg);
struct sg_pgstore_op *sg_pgstore_tenant_unlink(struct sg_pgstore *ps, const char *psa_tenant,
                                               const char *via, sg_pgstore_done_fn done, void *arg);
struct sg_pgstore_op *sg_pgstore_user_link(struct sg_pgstore *ps, const char *psa_tenant,
                                           const char *psa_user, const char *idp_tenant,
                                           const char *idp_sub,
                                           const struct sg_links_user_facts *facts, const char *via,
                                           sg_pgstore_done_fn done, void *arg);
struct sg_pgstore_op *sg_pgstore_user_unlink(struct sg_pgstore *ps, const char *psa_tenant,
                                             const char *psa_user, const char *via,
                                             sg_pgstore_done_fn done, void *arg);

/* Keeps what the PSA said of a linked user (no done function: best effort). */
void sg_pgstore_user_facts(struct sg_pgstore *ps, const char *psa_tenant, const char *psa_user,
                           bool staff, bool active);

/* Deletes up to max expired sessions, login states and logout jtis in
 * PostgreSQL. */
void sg_pgstore_sweep(struct sg_pgstore *ps, int64_t now, size_t max);

#endif
