/*
 * The PostgreSQL schema of the shared store, its migrations and the check of
 * a database's version. These calls block: they are for ssogate-admin and
 * for the daemon's start, before its event loop serves anything.
 *
 * Tables (version 1):
 *   ssogate_schema   one row: the schema version
 *   tenant_links     psa_tenant PRIMARY KEY, idp_tenant UNIQUE: the one-to-one
 *                    tenant rule (B4) is the database's
 *   user_links       (psa_tenant, psa_user) PRIMARY KEY, (idp_tenant, idp_sub)
 *                    UNIQUE (B10), facts; a user link needs its tenant linked
 *                    to the same IdP tenant: a foreign key on (psa_tenant,
 *                    idp_tenant) that cascades, so no race between hosts can
 *                    leave a user link without its tenant's
 *   sessions         id_hash (SHA-256 of the session id) PRIMARY KEY, the
 *                    record (session.c's layout), last_seen, expires_at
 *   session_owners   (owner_hash, id_hash): sessions by PSA user, IdP user
 *                    and IdP session, for revocation; cascades with sessions
 *   login_states     state_hash PRIMARY KEY, record, created_at: single use
 *                    (DELETE ... RETURNING)
 *   link_audit       every link change: when, which host, what
 *
 * Version 2 adds:
 *   logout_jti       jti_hash (SHA-256 of issuer NUL jti) PRIMARY KEY,
 *                    keep_until: the back-channel logout tokens the cluster
 *                    accepted, each recorded in the statement that ended its
 *                    sessions
 */
#ifndef SSOGATE_PGSCHEMA_H
#define SSOGATE_PGSCHEMA_H

#include <libpq-fe.h>
#include <stddef.h>

/* The schema version this build reads and writes. */
#define SG_PGSCHEMA_VERSION 2

/* The notification channel of the shared store (pgstore.c). */
#define SG_PGSCHEMA_CHANNEL "ssogate"

/*
 * Reads the database's schema version into *version: 0 when the schema was
 * never applied. Returns 0, or SG_ESTORE with errbuf filled.
 */
int sg_pgschema_version(PGconn *conn, int *version, char *errbuf, size_t errlen);

/*
 * Checks that the database holds exactly this build's schema. Returns 0, or
 * SG_ESTORE with a message saying what to do (run `ssogate-admin migrate`,
 * or upgrade the gateway when the database is newer).
 */
int sg_pgschema_check(PGconn *conn, char *errbuf, size_t errlen);

/*
 * Applies the migrations the database lacks, each in its own transaction
 * under an advisory lock (two hosts migrating at once take turns). Refuses a
 * database newer than this build. *from and *to (may be NULL) get the
 * versions before and after. Returns 0 or SG_ESTORE with errbuf filled.
 */
int sg_pgschema_migrate(PGconn *conn, int *from, int *to, char *errbuf, size_t errlen);

/* Connects with a bound on the time (blocking). Returns NULL with errbuf
 * filled. The message never holds the conninfo. */
PGconn *sg_pgschema_connect(const char *conninfo, unsigned timeout_s, char *errbuf, size_t errlen);

#endif
