/*
 * Gateway sessions in the store.
 *
 * A session id is 256 random bits in base64url (43 characters), sent to the
 * browser in the session cookie. The store never holds the id itself: the key
 * of a record is SHA-256(id), so reading the store (or a backup of it) gives
 * no usable cookie.
 *
 * Each session is indexed by its owners in sessions_by_owner, so that every
 * session of a person can be ended at once: always by its IdP subject
 * (sg_session_owner_idp of idp_issuer and idp_sub), and in link mode also by
 * its PSA user (sg_session_owner_psa of psa_tenant and psa_user). The owners
 * are derived from the record's fields, which are therefore its owner key.
 *
 * Records are a versioned binary layout with length-prefixed fields; decoding
 * is bounds-checked and a record that does not decode gives SG_ESTORE.
 */
#ifndef SSOGATE_SESSION_H
#define SSOGATE_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sg_store;
struct sg_store_txn;

#define SG_SESSION_ID_LEN  43
#define SG_SESSION_ID_SIZE (SG_SESSION_ID_LEN + 1)

/* Bounds on record fields, in bytes. */
#define SG_SESSION_NAME_MAX     255 /* idp_sub, idp_tenant, psa_tenant, psa_user */
#define SG_SESSION_ISSUER_MAX   1024
#define SG_SESSION_EMAIL_MAX    512
#define SG_SESSION_ID_TOKEN_MAX 32768
#define SG_SESSION_CLAIMS_MAX   65536 /* the encoded claim_headers */

/*
 * Touch writes last_seen only when it is at least this old (or a tenth of
 * the idle timeout when that is shorter), so that most requests read only.
 */
#define SG_SESSION_TOUCH_INTERVAL_S 60

/*
 * A session record. String fields are NUL-terminated, owned by the struct
 * when it was filled by sg_session_get (free with sg_session_clear) and
 * borrowed by sg_session_create. Optional fields are NULL when absent.
 * Filled from a record, the fields lie in one allocation, strings.
 */
struct sg_session {
    int64_t created_at;      /* seconds since the epoch */
    int64_t last_seen;       /* last activity, updated by sg_session_touch */
    uint32_t idle_timeout_s; /* expired when now - last_seen >= this; 0 = no idle limit */
    int64_t expires_at;      /* absolute expiry: expired when now >= this */
    char *idp_issuer;        /* optional */
    char *idp_sub;           /* required */
    char *idp_tenant;        /* optional */
    char *email;             /* optional */
    char *psa_tenant;        /* link mode: both psa_tenant and psa_user, or neither */
    char *psa_user;
    char *id_token; /* optional: the raw ID token, for RP-initiated logout's id_token_hint */
    char *idp_sid;  /* optional: the IdP session (the ID token's sid), for IdP-initiated logout */
    char *claim_headers; /* optional: the claim_headers of the login, encoded by identity.c */
    char *strings;       /* when not NULL, every field points into it (a copied record) */
};

/* Writes a new random session id (43 base64url characters and a NUL) into out. */
void sg_session_new_id(char out[SG_SESSION_ID_SIZE]);

/* True when id has the shape of a session id (43 base64url characters). */
bool sg_session_id_valid(const char *id);

/*
 * Builds the owner string of a PSA user (psa_tenant, psa_user) or of an IdP
 * subject (issuer, may be NULL, and sub). Both are unambiguous whatever the
 * ids contain. Returns 0 and hands back a new string in *out (caller frees),
 * or SG_EINVAL for a missing or oversized id (*out NULL).
 */
int sg_session_owner_psa(const char *psa_tenant, const char *psa_user, char **out);
int sg_session_owner_idp(const char *issuer, const char *sub, char **out);

/* The owner string of an IdP session: issuer (may be NULL) and the sid claim. */
int sg_session_owner_sid(const char *issuer, const char *sid, char **out);

/*
 * Stores a new session under id with the fields of rec (borrowed), indexed
 * under its owners. Returns 0, SG_EINVAL (malformed id, missing idp_sub, only
 * one of psa_tenant/psa_user, an empty id field, a field over its bound or
 * holding a control character, expires_at <= created_at), SG_EEXIST (id
 * already used), SG_ETOOBIG (store full) or SG_ESTORE.
 */
int sg_session_create(struct sg_store *store, const char *id, const struct sg_session *rec);

/*
 * Looks up the session id at time now. Returns 0 and fills *out (caller
 * clears it with sg_session_clear; out may be NULL to test existence),
 * SG_ENOENT when there is none or it has expired (idle or absolute; an
 * expired record is deleted), SG_EINVAL when id is not a session id, or
 * SG_ESTORE (store failure, corrupt record). On error *out is zeroed.
 */
int sg_session_get(struct sg_store *store, const char *id, int64_t now, struct sg_session *out);

/* The same without the ID token (id_token NULL): what a proxied request needs, a
 * copy of some 1 KiB less. */
int sg_session_get_brief(struct sg_store *store, const char *id, int64_t now,
                         struct sg_session *out);

/*
 * Records activity on session id at time now. Writes only when last_seen is
 * older than the touch interval. Returns 0, SG_ENOENT (missing or expired;
 * an expired record is deleted), SG_EINVAL or SG_ESTORE.
 */
int sg_session_touch(struct sg_store *store, const char *id, int64_t now);

/*
 * True when a session just read (s, borrowed) is due a touch at now: a
 * caller that holds the record skips sg_session_touch (and its read) when
 * false, as sg_session_touch itself would write nothing.
 */
bool sg_session_touch_due(const struct sg_session *s, int64_t now);

/*
 * True when the session s (borrowed) has expired at now, idle or absolute:
 * the rule sg_session_get applies, for a caller holding a decoded record
 * (ssogate-admin copy skips expired sessions).
 */
bool sg_session_expired(const struct sg_session *s, int64_t now);

/*
 * True when the session s (borrowed) has outlived the timeouts idle_timeout_s
 * and absolute_timeout_s (counted from its created_at) at now: a reload may
 * have lowered the configuration's below those its record was made with.
 */
bool sg_session_outlived(const struct sg_session *s, uint32_t idle_timeout_s,
                         uint32_t absolute_timeout_s, int64_t now);

/* Deletes session id. Returns 0, SG_ENOENT, SG_EINVAL or SG_ESTORE. */
int sg_session_delete(struct sg_store *store, const char *id);

/*
 * Deletes every session of owner (a string from sg_session_owner_*,
 * borrowed). *deleted (may be NULL) gets the number of sessions removed.
 * Returns 0 (also when there were none) or SG_ESTORE.
 */
int sg_session_delete_by_owner(struct sg_store *store, const char *owner, size_t *deleted);

/*
 * Same as sg_session_delete_by_owner inside the caller's write transaction
 * (borrowed), which the caller commits or aborts.
 */
int sg_session_delete_by_owner_txn(struct sg_store_txn *txn, const char *owner, size_t *deleted);

/*
 * An IdP logout's mark on owner (from sg_session_owner_idp or _sid): its
 * sessions ended at a time a login of that owner may still be in flight
 * (between the IdP's token and its session write). The mark is kept
 * SG_SESSION_ENDED_KEEP_S in the logout_jti table (here, or PostgreSQL's)
 * under sg_session_ended_key, its value the keep-until time (big-endian
 * seconds): the logout's time is that minus SG_SESSION_ENDED_KEEP_S. A login
 * begun in an earlier second writes no session (SG_EENDED); one begun in the
 * logout's second does (a user signing in again at once must not be refused).
 */
#define SG_SESSION_ENDED_KEEP_S  3600
#define SG_SESSION_ENDED_KEY_LEN 32

/* The key of owner's mark: never the key of a jti (logout.c's start with the issuer). */
void sg_session_ended_key(const char *owner, unsigned char key[SG_SESSION_ENDED_KEY_LEN]);

/* Marks owner's sessions ended at now in txn (a write transaction, borrowed). 0 or SG_ESTORE. */
int sg_session_mark_ended_txn(struct sg_store_txn *txn, const char *owner, int64_t now);

/*
 * The keys of the marks that would stop rec's session: its IdP user's and,
 * when it has one, its IdP session's (count 1 or 2). SG_EINVAL for a record
 * without a valid subject.
 */
int sg_session_ended_keys(const struct sg_session *rec,
                          unsigned char keys[2][SG_SESSION_ENDED_KEY_LEN], size_t *count);

/*
 * SG_EENDED when one of keys (count) marks a logout in a later second than
 * began (the login's start), 0 when none does, else a store error.
 */
int sg_session_ended_since_txn(struct sg_store_txn *txn,
                               const unsigned char keys[][SG_SESSION_ENDED_KEY_LEN], size_t count,
                               int64_t began);

/*
 * Deletes up to max expired (or undecodable) sessions, examining a bounded
 * number of records per call and resuming where the previous call stopped,
 * so that a periodic timer eventually visits every record. *deleted (may be
 * NULL) gets the count. Returns 0 or SG_ESTORE.
 */
int sg_session_sweep(struct sg_store *store, int64_t now, size_t max, size_t *deleted);

/* Frees the strings of a record filled by sg_session_get and zeroes it. NULL-safe. */
void sg_session_clear(struct sg_session *session);

/* ---- by key: the shared store (pgstore.c) and ssogate-admin copy ---- */

#define SG_SESSION_KEY_LEN 32

/* The key a session is stored under: the SHA-256 of its id (valid id). */
void sg_session_key(const char *id, unsigned char key[SG_SESSION_KEY_LEN]);

/* The stored record of rec (validated): *out is the caller's. 0 or SG_EINVAL. */
int sg_session_encode(const struct sg_session *rec, unsigned char **out, size_t *len);

/*
 * The name of the first field of rec that a record cannot hold (a control
 * character, or longer than its maximum: "sub", "email", ...), or NULL when
 * every field can be stored. Values come from the IdP: a login checks them
 * before it stores, so that its user's data never passes for a store failure.
 */
const char *sg_session_unstorable(const struct sg_session *rec);

/* A stored record back into out (cleared with sg_session_clear). 0 or SG_ESTORE. */
int sg_session_decode(const void *data, size_t len, struct sg_session *out);

/* Stores record under key, replacing what was there, with its owner index. */
int sg_session_put_key(struct sg_store *store, const unsigned char key[SG_SESSION_KEY_LEN],
                       const void *record, size_t len);

/*
 * Inside the caller's write transaction (borrowed), which the caller commits
 * or aborts; a failure may leave part of the change in it.
 *
 * sg_session_insert_txn stores a new record (from sg_session_encode) under
 * key with its owner index: 0, SG_EINVAL (record), SG_EEXIST (key used),
 * SG_ETOOBIG or SG_ESTORE.
 *
 * sg_session_touch_txn sets last_seen of the session under key to now when
 * it is older; a session that is gone stays gone (a touch never writes a
 * record that is not there). 0, SG_ENOENT (missing or expired), SG_ESTORE or
 * SG_ETOOBIG.
 */
int sg_session_insert_txn(struct sg_store_txn *txn, const unsigned char key[SG_SESSION_KEY_LEN],
                          const void *record, size_t len);
int sg_session_touch_txn(struct sg_store_txn *txn, const unsigned char key[SG_SESSION_KEY_LEN],
                         int64_t now);

/* Deletes the session stored under key. 0, SG_ENOENT or SG_ESTORE. */
int sg_session_delete_key(struct sg_store *store, const unsigned char key[SG_SESSION_KEY_LEN]);

/* Calls fn for every stored session (key, record) in one read transaction;
 * fn returns 0 to go on, SG_STORE_STOP to stop, or an error. */
typedef int (*sg_session_each_fn)(const unsigned char *key, const void *record, size_t len,
                                  void *arg);
int sg_session_each(struct sg_store *store, sg_session_each_fn fn, void *arg);

#endif
