/*
 * Session writes of one event-loop iteration in one store commit.
 *
 * A login's new session and the idle-time touches of authenticated requests
 * are queued here, and the first one queued in an iteration makes an event
 * active that runs after the callbacks already active in it: that event
 * writes everything queued in one write transaction, one commit, then calls
 * each create's callback. A login therefore answers (sets the cookie) only
 * once its session is committed, as when it wrote alone, and a request never
 * opens a write transaction of its own for a touch.
 *
 * A session of a linked user (rec->psa_user set) is written only while the
 * IdP user is still linked to that PSA user, checked in the commit's
 * transaction: a link removed while its login was in flight (whose removal
 * ended the user's sessions) leaves no session made after it; the create's
 * callback gets SG_ENOENT. Likewise a session whose IdP user or IdP session
 * a logout at the IdP ended after the second began, the login's start (the marks
 * of sg_session_mark_ended_txn): SG_EENDED.
 *
 * A touch is written behind: it sets last_seen only on a record that is
 * still there in the commit's transaction (LMDB serialises write
 * transactions across the workers), so a session deleted meanwhile, by this
 * process or another, stays deleted. A touch lost to a failed commit costs
 * at most one touch interval of idle time; it is counted and logged.
 */
#ifndef SSOGATE_SESSIONWRITER_H
#define SSOGATE_SESSIONWRITER_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct sg_session;
struct sg_session_write;
struct sg_session_writer;
struct sg_store;

/* Called once a queued create is committed (err 0) or not (an SG_E* code). */
typedef void (*sg_session_written_cb)(void *arg, int err);

/* A writer over store (borrowed) on base (borrowed). */
struct sg_session_writer *sg_session_writer_new(struct event_base *base, struct sg_store *store);

/* Writes what is queued (no callback runs: every request is over), then frees. NULL-safe. */
void sg_session_writer_free(struct sg_session_writer *w);

/*
 * Queues a new session id with the fields of rec (borrowed: encoded here), of
 * a login begun at began.
 * cb runs from the event loop, never before this returns. Returns the
 * queued write, or NULL when id or rec is invalid (nothing queued, cb never
 * runs).
 */
struct sg_session_write *sg_session_writer_create(struct sg_session_writer *w, const char *id,
                                                  const struct sg_session *rec, int64_t began,
                                                  sg_session_written_cb cb, void *arg);

/* The create's callback will not run (the session is written all the same). NULL-safe. */
void sg_session_write_cancel(struct sg_session_write *write);

/* Queues a touch of session id at now (see sg_session_touch); an invalid id is ignored. */
void sg_session_writer_touch(struct sg_session_writer *w, const char *id, int64_t now);

/* Writes what is queued now, in one commit (the iteration's event does this). */
void sg_session_writer_flush(struct sg_session_writer *w);

/* Creates and touches queued and not yet written. */
size_t sg_session_writer_pending(const struct sg_session_writer *w);

#endif
