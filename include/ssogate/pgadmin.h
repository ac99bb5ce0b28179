/*
 * ssogate-admin's work on the PostgreSQL shared store (schema in
 * pgschema.h): the link operations of links.h with the same rules and
 * errors, the store's counts and invariants, and the copy of an LMDB store
 * into it. Blocking libpq, one statement after the other: for the admin tool
 * only, never for the daemon's event loop.
 *
 * Every change of a link writes a link_audit row in the transaction that
 * makes it: host (gethostname), via (the caller's word: "admin" or "copy"),
 * action ("link" or "unlink"), kind ("tenant" or "user") and the ids.
 *
 * The rules, as links.c applies them on LMDB:
 *   - a tenant link (B4) or a user link (B10) already present with the same
 *     two sides is left alone (success); either side linked to another is a
 *     conflict (SG_EEXIST). The UNIQUE constraints enforce the same, so a
 *     gateway linking at the same moment gives SG_EEXIST too.
 *   - a user link needs its PSA tenant linked (SG_ENOENT) to the user's IdP
 *     tenant (SG_EINVAL). The schema's foreign key from user_links to
 *     tenant_links (psa_tenant, idp_tenant), which cascades, keeps a user
 *     link from outliving its tenant link whatever races.
 *   - unlinking a tenant (B7) removes its user links and every session of
 *     its users (sessions.psa_tenant) in one transaction; unlinking a user
 *     (B8) removes that user's sessions.
 *
 * Every function takes a connection (borrowed) that is in no transaction,
 * and leaves it in none. Failures other than the rules above return
 * SG_ESTORE with errbuf filled (what failed, the server's first line).
 */
#ifndef SSOGATE_PGADMIN_H
#define SSOGATE_PGADMIN_H

#include "ssogate/links.h"

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct sg_store;

/* Row counts of the shared store's tables. */
struct sg_pgadmin_stats {
    size_t tenant_links;
    size_t user_links;
    size_t sessions;
    size_t login_states;
    size_t link_audit;
    size_t logout_jti;
};

/*
 * Calls fn for every tenant link, then every user link, ordered by PSA ids
 * (bytes, as LMDB orders them), from one snapshot (a read-only repeatable
 * read transaction). Returns 0, fn's non-zero value, or SG_ESTORE (also for
 * a stored id that is not a valid id: sg_pgadmin_check names them).
 */
int sg_pgadmin_foreach(PGconn *conn, sg_links_foreach_fn fn, void *arg, char *errbuf,
                       size_t errlen);

/*
 * Adds count links (borrowed), tenant links first, in one transaction, as
 * sg_links_import does: refused whole on the first problem with nothing
 * changed, *failed (may be NULL) the index of the offending link and the
 * error its _put would give (SG_EEXIST, SG_ENOENT, SG_EINVAL). Links already
 * present are left alone; *added (may be NULL) gets the number of new ones.
 * via names the audit rows' origin ("admin").
 */
int sg_pgadmin_import(PGconn *conn, const struct sg_link *links, size_t count, const char *via,
                      size_t *failed, size_t *added, char *errbuf, size_t errlen);

/*
 * Unlinks psa_tenant (B7): the tenant link, its user links and their
 * sessions, in one transaction. *users and *sessions (may be NULL) get the
 * numbers removed. Returns 0, SG_ENOENT (not linked), SG_EINVAL (bad id) or
 * SG_ESTORE.
 */
int sg_pgadmin_tenant_delete(PGconn *conn, const char *psa_tenant, const char *via, size_t *users,
                             size_t *sessions, char *errbuf, size_t errlen);

/*
 * Unlinks the PSA user (psa_tenant, psa_user) (B8) and ends its sessions,
 * in one transaction; *sessions (may be NULL) gets their number. Returns 0,
 * SG_ENOENT, SG_EINVAL or SG_ESTORE.
 */
int sg_pgadmin_user_delete(PGconn *conn, const char *psa_tenant, const char *psa_user,
                           const char *via, size_t *sessions, char *errbuf, size_t errlen);

/* Fills *out with the row counts. Returns 0 or SG_ESTORE. */
int sg_pgadmin_stats(PGconn *conn, struct sg_pgadmin_stats *out, char *errbuf, size_t errlen);

/*
 * Checks the store whole: the schema is this build's, every stored id is
 * valid, every user link's PSA tenant is linked to the user's IdP tenant,
 * and every session's record decodes and agrees with its columns (all but
 * last_seen, which a touch may move ahead of the record). Writes one
 * "problem: ..." line per problem and a summary line to out; *problems gets
 * their number. Returns 0 when the store could be read whole (problems or
 * not), SG_ESTORE otherwise.
 */
int sg_pgadmin_check(PGconn *conn, FILE *out, size_t *problems, char *errbuf, size_t errlen);

/* What sg_pgadmin_copy did. */
struct sg_pgadmin_copy_counts {
    size_t tenant_links, user_links, sessions;            /* written */
    size_t tenant_present, user_present, session_present; /* already there, left alone */
    size_t session_expired;                               /* expired at now: not copied */
    size_t session_malformed; /* records that do not decode: not copied */
};

/*
 * Copies the links (with their facts) and the sessions of the LMDB store
 * (borrowed) into PostgreSQL in one transaction, audit rows via "copy". A
 * link already in PostgreSQL with the same two sides, or a session with the
 * same key, is left alone, so a second copy writes nothing; a link that
 * conflicts with one in PostgreSQL refuses the copy whole (SG_EEXIST, or
 * the error of sg_pgadmin_import) with errbuf naming the link and nothing
 * written. Sessions expired at now are not copied. Returns 0 with *counts
 * filled, or an error with errbuf filled.
 */
int sg_pgadmin_copy(PGconn *conn, struct sg_store *store, int64_t now,
                    struct sg_pgadmin_copy_counts *counts, char *errbuf, size_t errlen);

#endif
