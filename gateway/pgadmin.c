#include "ssogate/pgadmin.h"

#include "ssogate/common.h"
#include "ssogate/links.h"
#include "ssogate/pgschema.h"
#include "ssogate/session.h"
#include "ssogate/store.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Type OIDs of the parameters sent (catalog/pg_type.h; fixed since PostgreSQL 7). */
#define OID_BOOL  16
#define OID_BYTEA 17
#define OID_INT8  20
#define OID_INT4  23
#define OID_TEXT  25

#define PARAMS_MAX 10
#define ID_SIZE    (SG_LINKS_ID_MAX + 1)
#define HOST_SIZE  256

/* A unique constraint refused a row: one of the one-to-one rules (B4, B10). */
#define SQLSTATE_UNIQUE "23505"

/* Results come back in binary: a bytea is its bytes, an int8 8 bytes big-endian. */
#define RESULT_BINARY 1
#define RESULT_TEXT   0

/*
 * One statement parameter. Identifiers and records go as bytea in binary
 * format (their bytes as they are: no escaping, no encoding check); numbers
 * and words go as text.
 */
struct param {
    Oid type;
    const char *value; /* NULL: SQL NULL */
    int len;
    int format; /* 0 text, 1 binary */
};

/* A NUL-terminated string as a bytea (NULL: SQL NULL). */
static struct param bytes_param(const char *s)
{
    return (struct param){OID_BYTEA, s, s != NULL ? (int)strlen(s) : 0, 1};
}

static struct param raw_param(const void *data, size_t len)
{
    return (struct param){OID_BYTEA, data, (int)len, 1};
}

static struct param text_param(Oid type, const char *s)
{
    return (struct param){type, s, 0, 0};
}

static PGresult *exec(PGconn *conn, const char *sql, const struct param *params, int count,
                      int result_format)
{
    Oid types[PARAMS_MAX] = {0};
    const char *values[PARAMS_MAX] = {NULL};
    int lengths[PARAMS_MAX] = {0};
    int formats[PARAMS_MAX] = {0};
    assert(count <= PARAMS_MAX);
    for (int i = 0; i < count; i++) {
        types[i] = params[i].type;
        values[i] = params[i].value;
        lengths[i] = params[i].len;
        formats[i] = params[i].format;
    }
    return PQexecParams(conn, sql, count, types, values, lengths, formats, result_format);
}

/*
 * 0 when res (may be NULL) is a success; SG_EEXIST when a unique constraint
 * refused a row; SG_ESTORE otherwise. errbuf gets what failed and the
 * server's first line in both error cases.
 */
static int result_err(PGconn *conn, const PGresult *res, const char *what, char *errbuf,
                      size_t errlen)
{
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_SINGLE_TUPLE)
        return 0;
    const char *msg = res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(conn);
    sg_errbuf(errbuf, errlen, "%s: %.*s", what, (int)strcspn(msg, "\n"), msg);
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return state != NULL && strcmp(state, SQLSTATE_UNIQUE) == 0 ? SG_EEXIST : SG_ESTORE;
}

/* Runs a statement whose result is not needed. 0 or the error of result_err. */
static int command(PGconn *conn, const char *sql, const struct param *params, int count,
                   const char *what, size_t *rows, char *errbuf, size_t errlen)
{
    PGresult *res = exec(conn, sql, params, count, RESULT_TEXT);
    int err = result_err(conn, res, what, errbuf, errlen);
    if (err == 0 && rows != NULL)
        *rows = strtoull(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return err;
}

static int begin(PGconn *conn, bool read_only, char *errbuf, size_t errlen)
{
    /* A read is one snapshot across its statements, as LMDB's read transaction is. */
    return command(conn, read_only ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" : "BEGIN",
                   NULL, 0, "beginning a transaction", NULL, errbuf, errlen);
}

/* Ends the transaction: commits when err is 0, rolls back otherwise. Returns err or the
 * commit's failure. */
static int finish(PGconn *conn, int err, char *errbuf, size_t errlen)
{
    if (err != 0) {
        PQclear(PQexec(conn, "ROLLBACK"));
        return err;
    }
    PGresult *res = PQexec(conn, "COMMIT");
    err = result_err(conn, res, "committing", errbuf, errlen);
    /* A transaction the server had already aborted answers COMMIT with ROLLBACK. */
    if (err == 0 && strcmp(PQcmdStatus(res), "COMMIT") != 0) {
        sg_errbuf(errbuf, errlen, "committing: the server rolled the transaction back");
        err = SG_ESTORE;
    }
    PQclear(res);
    return err;
}

/*
 * Runs a query in single-row mode, calling fn for each row (the result
 * holds that one row, valid during the call): a large table never sits in
 * memory whole. A non-zero return of fn stops the calls (the remaining rows
 * are read and dropped) and is returned.
 */
typedef int (*row_fn)(const PGresult *row, void *arg);

static int stream(PGconn *conn, const char *sql, const char *what, row_fn fn, void *arg,
                  char *errbuf, size_t errlen)
{
    if (!PQsendQueryParams(conn, sql, 0, NULL, NULL, NULL, NULL, RESULT_BINARY)) {
        const char *msg = PQerrorMessage(conn);
        sg_errbuf(errbuf, errlen, "%s: %.*s", what, (int)strcspn(msg, "\n"), msg);
        return SG_ESTORE;
    }
    PQsetSingleRowMode(conn);
    int rc = 0;
    PGresult *res;
    while ((res = PQgetResult(conn)) != NULL) {
        int err = result_err(conn, res, what, errbuf, errlen);
        if (err != 0 && rc == 0)
            rc = err;
        else if (rc == 0 && PQresultStatus(res) == PGRES_SINGLE_TUPLE)
            rc = fn(res, arg);
        PQclear(res);
    }
    return rc;
}

/* The audit rows' origin: this host and the caller's word. */
struct audit {
    char host[HOST_SIZE];
    const char *via;
};

static void audit_init(struct audit *a, const char *via)
{
    if (gethostname(a->host, sizeof(a->host)) != 0)
        strcpy(a->host, "unknown");
    a->host[sizeof(a->host) - 1] = '\0';
    a->via = via;
}

/* Copies the bytea of column col (row 0) into out when it is a valid id. */
static bool id_get(const PGresult *row, int col, char out[ID_SIZE])
{
    int len = PQgetlength(row, 0, col);
    if (PQgetisnull(row, 0, col) || len <= 0 || len > SG_LINKS_ID_MAX)
        return false;
    memcpy(out, PQgetvalue(row, 0, col), (size_t)len);
    out[len] = '\0';
    /* strlen catches a NUL inside, which sg_links_id_valid cannot see. */
    return strlen(out) == (size_t)len && sg_links_id_valid(out);
}

/* ---- adding and removing links ---- */

enum put_result {
    PUT_ADDED,
    PUT_PRESENT,
};

/*
 * Maps the answer word of the statements below to a put_result, or to the
 * error links.c gives for the same case.
 */
static int put_answer(const PGresult *res, enum put_result *out)
{
    static const struct {
        const char *word;
        int err;
        enum put_result result;
    } answers[] = {
        {"added", 0, PUT_ADDED},
        {"present", 0, PUT_PRESENT},
        {"conflict", SG_EEXIST, PUT_ADDED},
        {"no tenant", SG_ENOENT, PUT_ADDED},
        {"other tenant", SG_EINVAL, PUT_ADDED},
    };
    if (PQntuples(res) != 1)
        return SG_ESTORE;
    const char *word = PQgetvalue(res, 0, 0);
    for (size_t i = 0; i < SG_ARRAY_LEN(answers); i++) {
        if (strcmp(word, answers[i].word) == 0) {
            *out = answers[i].result;
            return answers[i].err;
        }
    }
    return SG_ESTORE;
}

/*
 * One statement: the tenant link is added (with its audit row) unless either
 * side is linked already; the answer says which case it was.
 */
static const char tenant_put_sql[] =
    "WITH cur AS ("
    "  SELECT psa_tenant, idp_tenant FROM tenant_links WHERE psa_tenant = $1 OR idp_tenant = $2),"
    " added AS ("
    "  INSERT INTO tenant_links (psa_tenant, idp_tenant)"
    "  SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM cur) RETURNING 1),"
    " audit AS ("
    "  INSERT INTO link_audit (host, via, action, kind, psa_tenant, idp_tenant)"
    "  SELECT $3, $4, 'link', 'tenant', $1, $2 FROM added)"
    " SELECT CASE WHEN EXISTS (SELECT 1 FROM added) THEN 'added'"
    "  WHEN EXISTS (SELECT 1 FROM cur WHERE psa_tenant = $1 AND idp_tenant = $2) THEN 'present'"
    "  ELSE 'conflict' END";

/*
 * The same for a user link, after its tenant's: the tenant's row is locked
 * FOR SHARE while the link is added (the foreign key of user_links makes a
 * user link without its tenant's impossible in any case).
 */
static const char user_put_sql[] =
    "WITH tenant AS ("
    "  SELECT idp_tenant FROM tenant_links WHERE psa_tenant = $1 FOR SHARE),"
    " cur AS ("
    "  SELECT psa_tenant, psa_user, idp_tenant, idp_sub FROM user_links"
    "  WHERE (psa_tenant = $1 AND psa_user = $2) OR (idp_tenant = $3 AND idp_sub = $4)),"
    " added AS ("
    "  INSERT INTO user_links (psa_tenant, psa_user, idp_tenant, idp_sub, facts_known, staff,"
    "   active)"
    "  SELECT $1, $2, $3, $4, $7, $8, $9"
    "  WHERE EXISTS (SELECT 1 FROM tenant WHERE idp_tenant = $3)"
    "   AND NOT EXISTS (SELECT 1 FROM cur) RETURNING 1),"
    " audit AS ("
    "  INSERT INTO link_audit (host, via, action, kind, psa_tenant, psa_user, idp_tenant, idp_sub)"
    "  SELECT $5, $6, 'link', 'user', $1, $2, $3, $4 FROM added)"
    " SELECT CASE WHEN EXISTS (SELECT 1 FROM added) THEN 'added'"
    "  WHEN NOT EXISTS (SELECT 1 FROM tenant) THEN 'no tenant'"
    "  WHEN NOT EXISTS (SELECT 1 FROM tenant WHERE idp_tenant = $3) THEN 'other tenant'"
    "  WHEN EXISTS (SELECT 1 FROM cur WHERE psa_tenant = $1 AND psa_user = $2"
    "   AND idp_tenant = $3 AND idp_sub = $4) THEN 'present'"
    "  ELSE 'conflict' END";

/*
 * Adds one link inside the caller's transaction, with the rules of links.c
 * (tenant_put_txn, user_put_txn). facts (may be NULL) are kept with a new
 * user link. Returns 0 with *result, SG_EEXIST, SG_ENOENT, SG_EINVAL or
 * SG_ESTORE.
 */
static int link_put(PGconn *conn, const struct audit *audit, const struct sg_link *link,
                    const struct sg_links_user_facts *facts, enum put_result *result, char *errbuf,
                    size_t errlen)
{
    PGresult *res;
    if (link->kind == SG_LINK_TENANT) {
        if (!sg_links_id_valid(link->psa_tenant) || !sg_links_id_valid(link->idp_tenant))
            return SG_EINVAL;
        struct param params[] = {
            bytes_param(link->psa_tenant),
            bytes_param(link->idp_tenant),
            text_param(OID_TEXT, audit->host),
            text_param(OID_TEXT, audit->via),
        };
        res = exec(conn, tenant_put_sql, params, (int)SG_ARRAY_LEN(params), RESULT_TEXT);
    } else {
        if (!sg_links_id_valid(link->psa_tenant) || !sg_links_id_valid(link->psa_user) ||
            !sg_links_id_valid(link->idp_tenant) || !sg_links_id_valid(link->idp_sub))
            return SG_EINVAL;
        bool known = facts != NULL && facts->known;
        struct param params[] = {
            bytes_param(link->psa_tenant),
            bytes_param(link->psa_user),
            bytes_param(link->idp_tenant),
            bytes_param(link->idp_sub),
            text_param(OID_TEXT, audit->host),
            text_param(OID_TEXT, audit->via),
            text_param(OID_BOOL, known ? "t" : "f"),
            text_param(OID_BOOL, known && facts->staff ? "t" : "f"),
            text_param(OID_BOOL, known && facts->active ? "t" : "f"),
        };
        res = exec(conn, user_put_sql, params, (int)SG_ARRAY_LEN(params), RESULT_TEXT);
    }
    int err = result_err(conn, res, "adding a link", errbuf, errlen);
    if (err == 0)
        err = put_answer(res, result);
    if (err == SG_ESTORE && PQresultStatus(res) == PGRES_TUPLES_OK)
        sg_errbuf(errbuf, errlen, "adding a link: an unexpected answer");
    PQclear(res);
    return err;
}

/* What applying a list of links did; failed is the index of the link refused. */
struct apply_counts {
    size_t added[2];   /* by enum sg_link_kind */
    size_t present[2]; /* by enum sg_link_kind */
    size_t failed;
};

/*
 * Adds links inside the caller's transaction, tenant links first (so that a
 * user link may come before its tenant's in the list), stopping at the first
 * refusal. facts is NULL or parallel to links.
 */
static int apply_links(PGconn *conn, const struct audit *audit, const struct sg_link *links,
                       const struct sg_links_user_facts *facts, size_t count,
                       struct apply_counts *counts, char *errbuf, size_t errlen)
{
    static const enum sg_link_kind passes[] = {SG_LINK_TENANT, SG_LINK_USER};
    *counts = (struct apply_counts){.failed = 0};
    for (size_t i = 0; i < count; i++) {
        if (links[i].kind != SG_LINK_TENANT && links[i].kind != SG_LINK_USER) {
            counts->failed = i;
            return SG_EINVAL;
        }
    }
    for (size_t p = 0; p < SG_ARRAY_LEN(passes); p++) {
        for (size_t i = 0; i < count; i++) {
            if (links[i].kind != passes[p])
                continue;
            enum put_result result;
            int err = link_put(conn, audit, &links[i], facts != NULL ? &facts[i] : NULL, &result,
                               errbuf, errlen);
            if (err != 0) {
                counts->failed = i;
                return err;
            }
            if (result == PUT_ADDED)
                counts->added[links[i].kind]++;
            else
                counts->present[links[i].kind]++;
        }
    }
    return 0;
}

int sg_pgadmin_import(PGconn *conn, const struct sg_link *links, size_t count, const char *via,
                      size_t *failed, size_t *added, char *errbuf, size_t errlen)
{
    struct audit audit;
    struct apply_counts counts = {.failed = 0};
    audit_init(&audit, via);
    int err = begin(conn, false, errbuf, errlen);
    if (err != 0)
        return err;
    err = apply_links(conn, &audit, links, NULL, count, &counts, errbuf, errlen);
    err = finish(conn, err, errbuf, errlen);
    if (failed != NULL)
        *failed = counts.failed;
    if (added != NULL)
        *added = err == 0 ? counts.added[SG_LINK_TENANT] + counts.added[SG_LINK_USER] : 0;
    return err;
}

/* Unlinks with an audit row per link removed. */
static const char tenant_delete_sql[] =
    "WITH gone AS (DELETE FROM tenant_links WHERE psa_tenant = $1"
    "  RETURNING psa_tenant, idp_tenant)"
    " INSERT INTO link_audit (host, via, action, kind, psa_tenant, idp_tenant)"
    " SELECT $2, $3, 'unlink', 'tenant', psa_tenant, idp_tenant FROM gone";

static const char tenant_users_delete_sql[] =
    "WITH gone AS (DELETE FROM user_links WHERE psa_tenant = $1"
    "  RETURNING psa_tenant, psa_user, idp_tenant, idp_sub)"
    " INSERT INTO link_audit (host, via, action, kind, psa_tenant, psa_user, idp_tenant, idp_sub)"
    " SELECT $2, $3, 'unlink', 'user', psa_tenant, psa_user, idp_tenant, idp_sub FROM gone";

static const char user_delete_sql[] =
    "WITH gone AS (DELETE FROM user_links WHERE psa_tenant = $1 AND psa_user = $4"
    "  RETURNING psa_tenant, psa_user, idp_tenant, idp_sub)"
    " INSERT INTO link_audit (host, via, action, kind, psa_tenant, psa_user, idp_tenant, idp_sub)"
    " SELECT $2, $3, 'unlink', 'user', psa_tenant, psa_user, idp_tenant, idp_sub FROM gone";

int sg_pgadmin_tenant_delete(PGconn *conn, const char *psa_tenant, const char *via, size_t *users,
                             size_t *sessions, char *errbuf, size_t errlen)
{
    size_t tenants = 0, removed_users = 0, removed_sessions = 0;
    if (users != NULL)
        *users = 0;
    if (sessions != NULL)
        *sessions = 0;
    if (!sg_links_id_valid(psa_tenant))
        return SG_EINVAL;
    struct audit audit;
    audit_init(&audit, via);
    struct param params[] = {
        bytes_param(psa_tenant),
        text_param(OID_TEXT, audit.host),
        text_param(OID_TEXT, audit.via),
    };
    int err = begin(conn, false, errbuf, errlen);
    if (err != 0)
        return err;
    /* The user links first: the tenant's row would take them along (the
     * foreign key cascades) without their audit rows. */
    err = command(conn, tenant_users_delete_sql, params, 3, "removing the user links",
                  &removed_users, errbuf, errlen);
    if (err == 0)
        err = command(conn, tenant_delete_sql, params, 3, "removing the tenant link", &tenants,
                      errbuf, errlen);
    if (err == 0 && tenants == 0)
        err = SG_ENOENT;
    if (err == 0)
        err = command(conn, "DELETE FROM sessions WHERE psa_tenant = $1", params, 1,
                      "ending the sessions", &removed_sessions, errbuf, errlen);
    err = finish(conn, err, errbuf, errlen);
    if (err == 0 && users != NULL)
        *users = removed_users;
    if (err == 0 && sessions != NULL)
        *sessions = removed_sessions;
    return err;
}

int sg_pgadmin_user_delete(PGconn *conn, const char *psa_tenant, const char *psa_user,
                           const char *via, size_t *sessions, char *errbuf, size_t errlen)
{
    size_t removed = 0, removed_sessions = 0;
    if (sessions != NULL)
        *sessions = 0;
    if (!sg_links_id_valid(psa_tenant) || !sg_links_id_valid(psa_user))
        return SG_EINVAL;
    struct audit audit;
    audit_init(&audit, via);
    struct param params[] = {
        bytes_param(psa_tenant),
        text_param(OID_TEXT, audit.host),
        text_param(OID_TEXT, audit.via),
        bytes_param(psa_user),
    };
    int err = begin(conn, false, errbuf, errlen);
    if (err != 0)
        return err;
    err = command(conn, user_delete_sql, params, 4, "removing the user link", &removed, errbuf,
                  errlen);
    if (err == 0 && removed == 0)
        err = SG_ENOENT;
    struct param session_params[] = {params[0], params[3]};
    if (err == 0)
        err = command(conn, "DELETE FROM sessions WHERE psa_tenant = $1 AND psa_user = $2",
                      session_params, 2, "ending the sessions", &removed_sessions, errbuf, errlen);
    err = finish(conn, err, errbuf, errlen);
    if (err == 0 && sessions != NULL)
        *sessions = removed_sessions;
    return err;
}

/* ---- reading ---- */

static const char tenants_sql[] =
    "SELECT psa_tenant, idp_tenant FROM tenant_links ORDER BY psa_tenant";

/* The user links with the IdP tenant their PSA tenant is linked to (NULL: none), for check. */
static const char users_sql[] =
    "SELECT u.psa_tenant, u.psa_user, u.idp_tenant, u.idp_sub, t.idp_tenant"
    " FROM user_links u LEFT JOIN tenant_links t ON t.psa_tenant = u.psa_tenant"
    " ORDER BY u.psa_tenant, u.psa_user";

struct foreach_state {
    enum sg_link_kind kind;
    sg_links_foreach_fn fn;
    void *arg;
    char *errbuf;
    size_t errlen;
};

static int foreach_row(const PGresult *row, void *arg)
{
    struct foreach_state *st = arg;
    char ids[4][ID_SIZE];
    int columns = st->kind == SG_LINK_TENANT ? 2 : 4;
    for (int c = 0; c < columns; c++) {
        if (!id_get(row, c, ids[c])) {
            sg_errbuf(st->errbuf, st->errlen,
                      "a %s link holds a malformed id: run ssogate-admin check",
                      st->kind == SG_LINK_TENANT ? "tenant" : "user");
            return SG_ESTORE;
        }
    }
    struct sg_link link = {.kind = st->kind, .psa_tenant = ids[0]};
    if (st->kind == SG_LINK_TENANT) {
        link.idp_tenant = ids[1];
    } else {
        link.psa_user = ids[1];
        link.idp_tenant = ids[2];
        link.idp_sub = ids[3];
    }
    return st->fn(&link, st->arg);
}

int sg_pgadmin_foreach(PGconn *conn, sg_links_foreach_fn fn, void *arg, char *errbuf, size_t errlen)
{
    struct foreach_state st = {SG_LINK_TENANT, fn, arg, errbuf, errlen};
    int err = begin(conn, true, errbuf, errlen);
    if (err != 0)
        return err;
    err = stream(conn, tenants_sql, "reading the tenant links", foreach_row, &st, errbuf, errlen);
    st.kind = SG_LINK_USER;
    if (err == 0)
        err = stream(conn, users_sql, "reading the user links", foreach_row, &st, errbuf, errlen);
    /* Nothing was written: ending the snapshot either way. */
    PQclear(PQexec(conn, "ROLLBACK"));
    return err;
}

int sg_pgadmin_stats(PGconn *conn, struct sg_pgadmin_stats *out, char *errbuf, size_t errlen)
{
    *out = (struct sg_pgadmin_stats){0};
    PGresult *res = PQexec(conn, "SELECT (SELECT count(*) FROM tenant_links),"
                                 " (SELECT count(*) FROM user_links),"
                                 " (SELECT count(*) FROM sessions),"
                                 " (SELECT count(*) FROM login_states),"
                                 " (SELECT count(*) FROM link_audit),"
                                 " (SELECT count(*) FROM logout_jti)");
    int err = result_err(conn, res, "counting the rows", errbuf, errlen);
    if (err == 0 && (PQntuples(res) != 1 || PQnfields(res) != 6)) {
        sg_errbuf(errbuf, errlen, "counting the rows: an unexpected answer");
        err = SG_ESTORE;
    }
    if (err == 0) {
        size_t *fields[] = {&out->tenant_links, &out->user_links, &out->sessions,
                            &out->login_states, &out->link_audit, &out->logout_jti};
        for (int i = 0; i < 6; i++)
            *fields[i] = strtoull(PQgetvalue(res, 0, i), NULL, 10);
    }
    PQclear(res);
    return err;
}

/* ---- check ---- */

struct check_state {
    FILE *out;
    size_t tenants, users, sessions, problems;
};

/* Prints column col (row 0) as an id when it is one, else as hex bytes. */
static void print_id(FILE *out, const PGresult *row, int col)
{
    char id[ID_SIZE];
    if (id_get(row, col, id)) {
        fputs(id, out);
        return;
    }
    if (PQgetisnull(row, 0, col)) {
        fputs("NULL", out);
        return;
    }
    const unsigned char *p = (const unsigned char *)PQgetvalue(row, 0, col);
    int len = PQgetlength(row, 0, col);
    fputs("0x", out);
    for (int i = 0; i < len && i < 2 * SG_LINKS_ID_MAX; i++)
        fprintf(out, "%02x", p[i]);
}

/* "problem: tenant A <-> B: what", or the user link's, from the row's first columns. */
static void link_problem(struct check_state *st, enum sg_link_kind kind, const PGresult *row,
                         const char *what)
{
    st->problems++;
    if (kind == SG_LINK_TENANT) {
        fputs("problem: tenant ", st->out);
        print_id(st->out, row, 0);
        fputs(" <-> ", st->out);
        print_id(st->out, row, 1);
    } else {
        fputs("problem: user ", st->out);
        print_id(st->out, row, 0);
        fputc('/', st->out);
        print_id(st->out, row, 1);
        fputs(" <-> ", st->out);
        print_id(st->out, row, 2);
        fputc('/', st->out);
        print_id(st->out, row, 3);
    }
    fprintf(st->out, ": %s\n", what);
}

static int check_tenant(const PGresult *row, void *arg)
{
    struct check_state *st = arg;
    char id[ID_SIZE];
    st->tenants++;
    if (!id_get(row, 0, id) || !id_get(row, 1, id))
        link_problem(st, SG_LINK_TENANT, row, "a malformed id");
    return 0;
}

static int check_user(const PGresult *row, void *arg)
{
    struct check_state *st = arg;
    char id[ID_SIZE];
    st->users++;
    if (!id_get(row, 0, id) || !id_get(row, 1, id) || !id_get(row, 2, id) || !id_get(row, 3, id))
        link_problem(st, SG_LINK_USER, row, "a malformed id");
    int len = PQgetlength(row, 0, 2);
    if (PQgetisnull(row, 0, 4) || PQgetlength(row, 0, 4) != len ||
        memcmp(PQgetvalue(row, 0, 4), PQgetvalue(row, 0, 2), (size_t)len) != 0)
        link_problem(st, SG_LINK_USER, row,
                     "its PSA tenant is not linked to its IdP tenant (an orphan)");
    return 0;
}

/* True when column col (row 0) holds s: NULL for SQL NULL (empty_for_null: an empty bytea). */
static bool column_is(const PGresult *row, int col, const char *s, bool empty_for_null)
{
    if (s == NULL && !empty_for_null)
        return PQgetisnull(row, 0, col);
    if (s == NULL)
        s = "";
    size_t len = strlen(s);
    return !PQgetisnull(row, 0, col) && (size_t)PQgetlength(row, 0, col) == len &&
           memcmp(PQgetvalue(row, 0, col), s, len) == 0;
}

/* An integer column (binary: 4 or 8 bytes, big-endian) equals v. */
static bool int_column_is(const PGresult *row, int col, int64_t v)
{
    const unsigned char *p = (const unsigned char *)PQgetvalue(row, 0, col);
    int len = PQgetlength(row, 0, col);
    if (PQgetisnull(row, 0, col))
        return false;
    if (len == 8)
        return (int64_t)sg_store_get_be64(p) == v;
    return len == 4 && (int64_t)(int32_t)sg_store_get_be32(p) == v;
}

static const char sessions_sql[] =
    "SELECT id_hash, record, psa_tenant, psa_user, idp_issuer, idp_sub, idp_sid,"
    " idle_timeout_s, expires_at FROM sessions ORDER BY id_hash";

/* Which column of sessions_sql disagrees with the decoded record s, or NULL. */
static const char *session_mismatch(const PGresult *row, const struct sg_session *s)
{
    if (!column_is(row, 2, s->psa_tenant, false))
        return "psa_tenant";
    if (!column_is(row, 3, s->psa_user, false))
        return "psa_user";
    if (!column_is(row, 4, s->idp_issuer, true))
        return "idp_issuer";
    if (!column_is(row, 5, s->idp_sub, false))
        return "idp_sub";
    if (!column_is(row, 6, s->idp_sid, false))
        return "idp_sid";
    if (!int_column_is(row, 7, s->idle_timeout_s))
        return "idle_timeout_s";
    if (!int_column_is(row, 8, s->expires_at))
        return "expires_at";
    return NULL;
}

static int check_session(const PGresult *row, void *arg)
{
    struct check_state *st = arg;
    st->sessions++;
    char hex[2 * SG_SESSION_KEY_LEN + 1] = "";
    if (PQgetlength(row, 0, 0) != SG_SESSION_KEY_LEN) {
        st->problems++;
        fprintf(st->out, "problem: a session's id_hash is %d bytes, not %d\n",
                PQgetlength(row, 0, 0), SG_SESSION_KEY_LEN);
        return 0;
    }
    sg_hex_encode((const unsigned char *)PQgetvalue(row, 0, 0), SG_SESSION_KEY_LEN, hex);
    struct sg_session s;
    if (sg_session_decode(PQgetvalue(row, 0, 1), (size_t)PQgetlength(row, 0, 1), &s) != 0) {
        st->problems++;
        fprintf(st->out, "problem: session %s: the record does not decode\n", hex);
        return 0;
    }
    const char *column = session_mismatch(row, &s);
    if (column != NULL) {
        st->problems++;
        fprintf(st->out, "problem: session %s: %s disagrees with the record\n", hex, column);
    }
    sg_session_clear(&s);
    return 0;
}

int sg_pgadmin_check(PGconn *conn, FILE *out, size_t *problems, char *errbuf, size_t errlen)
{
    struct check_state st = {.out = out};
    *problems = 0;
    int err = sg_pgschema_check(conn, errbuf, errlen);
    if (err != 0) {
        fprintf(out, "problem: %s\n", errbuf);
        *problems = 1;
        return err;
    }
    err = begin(conn, true, errbuf, errlen);
    if (err == 0)
        err = stream(conn, tenants_sql, "reading the tenant links", check_tenant, &st, errbuf,
                     errlen);
    if (err == 0)
        err = stream(conn, users_sql, "reading the user links", check_user, &st, errbuf, errlen);
    if (err == 0)
        err =
            stream(conn, sessions_sql, "reading the sessions", check_session, &st, errbuf, errlen);
    PQclear(PQexec(conn, "ROLLBACK"));
    if (err != 0) {
        fprintf(out, "problem: the store cannot be read whole: %s\n", errbuf);
        *problems = st.problems + 1;
        return err;
    }
    fprintf(out, "schema %d, %zu tenant links, %zu user links, %zu sessions: %zu problems\n",
            SG_PGSCHEMA_VERSION, st.tenants, st.users, st.sessions, st.problems);
    *problems = st.problems;
    return 0;
}

/* ---- copy from LMDB ---- */

/* The links of the LMDB store, copied out of its read transaction. */
struct link_list {
    struct sg_link *links;
    struct sg_links_user_facts *facts;
    char **strings; /* the copies the links point to, four per link (NULL: none) */
    size_t count, cap;
};

static const char *keep(struct link_list *list, int slot, const char *s)
{
    char *copy = s != NULL ? sg_strdup(s) : NULL;
    list->strings[4 * list->count + (size_t)slot] = copy;
    return copy;
}

static int collect_link(const struct sg_link *link, void *arg)
{
    struct link_list *list = arg;
    if (list->count == list->cap) {
        list->cap = list->cap ? 2 * list->cap : 64;
        list->links = sg_realloc(list->links, list->cap * sizeof(*list->links));
        list->facts = sg_realloc(list->facts, list->cap * sizeof(*list->facts));
        list->strings = sg_realloc(list->strings, 4 * list->cap * sizeof(*list->strings));
    }
    list->links[list->count] = (struct sg_link){
        .kind = link->kind,
        .psa_tenant = keep(list, 0, link->psa_tenant),
        .psa_user = keep(list, 1, link->psa_user),
        .idp_tenant = keep(list, 2, link->idp_tenant),
        .idp_sub = keep(list, 3, link->idp_sub),
    };
    list->facts[list->count] = (struct sg_links_user_facts){.known = false};
    list->count++;
    return 0;
}

static void link_list_free(struct link_list *list)
{
    for (size_t i = 0; i < 4 * list->count; i++)
        free(list->strings[i]);
    free(list->strings);
    free(list->links);
    free(list->facts);
}

/*
 * Reads every link of the LMDB store and the facts kept with each user
 * link. The facts are read after the walk (LMDB allows one read transaction
 * per thread): a link removed in between reads as one without facts.
 */
static int read_lmdb_links(struct sg_store *store, struct link_list *list, char *errbuf,
                           size_t errlen)
{
    int err = sg_links_foreach(store, collect_link, list);
    for (size_t i = 0; err == 0 && i < list->count; i++) {
        const struct sg_link *l = &list->links[i];
        if (l->kind != SG_LINK_USER)
            continue;
        err = sg_links_user_facts_get(store, l->idp_tenant, l->idp_sub, &list->facts[i]);
        if (err == SG_ENOENT) {
            list->facts[i] = (struct sg_links_user_facts){.known = false};
            err = 0;
        }
    }
    if (err != 0)
        sg_errbuf(errbuf, errlen, "reading the links of the LMDB store: %s", sg_strerror(err));
    return err;
}

/* Why a link of the copy was refused, in words. */
static const char *refusal(int err)
{
    switch (err) {
    case SG_EEXIST:
        return "conflicts with a link in PostgreSQL";
    case SG_ENOENT:
        return "its PSA tenant is not linked in PostgreSQL";
    case SG_EINVAL:
        return "its PSA tenant is linked to another IdP tenant in PostgreSQL, or an id is "
               "malformed";
    default:
        return sg_strerror(err);
    }
}

static const char session_put_sql[] =
    "INSERT INTO sessions (id_hash, record, psa_tenant, psa_user, idp_issuer, idp_sub, idp_sid,"
    " last_seen, idle_timeout_s, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    " ON CONFLICT (id_hash) DO NOTHING";

struct copy_state {
    PGconn *conn;
    int64_t now;
    struct sg_pgadmin_copy_counts *counts;
    bool pg_failed; /* errbuf says why */
    char *errbuf;
    size_t errlen;
};

/*
 * Copies one LMDB session, unless it has expired or PostgreSQL has one
 * under the same key already (then PostgreSQL's is the one in use: kept).
 */
static int copy_session(const unsigned char *key, const void *record, size_t len, void *arg)
{
    struct copy_state *st = arg;
    struct sg_session s;
    if (sg_session_decode(record, len, &s) != 0) {
        st->counts->session_malformed++;
        return 0;
    }
    if (sg_session_expired(&s, st->now)) {
        st->counts->session_expired++;
        sg_session_clear(&s);
        return 0;
    }
    char last_seen[24], idle[16], expires[24];
    snprintf(last_seen, sizeof(last_seen), "%lld", (long long)s.last_seen);
    snprintf(idle, sizeof(idle), "%u", s.idle_timeout_s);
    snprintf(expires, sizeof(expires), "%lld", (long long)s.expires_at);
    struct param params[] = {
        raw_param(key, SG_SESSION_KEY_LEN),
        raw_param(record, len),
        bytes_param(s.psa_tenant),
        bytes_param(s.psa_user),
        bytes_param(s.idp_issuer != NULL ? s.idp_issuer : ""),
        bytes_param(s.idp_sub),
        bytes_param(s.idp_sid),
        text_param(OID_INT8, last_seen),
        text_param(OID_INT4, idle),
        text_param(OID_INT8, expires),
    };
    size_t rows = 0;
    int err = command(st->conn, session_put_sql, params, (int)SG_ARRAY_LEN(params),
                      "copying a session", &rows, st->errbuf, st->errlen);
    sg_session_clear(&s);
    if (err != 0) {
        st->pg_failed = true;
        return SG_ESTORE;
    }
    if (rows == 1)
        st->counts->sessions++;
    else
        st->counts->session_present++;
    return 0;
}

int sg_pgadmin_copy(PGconn *conn, struct sg_store *store, int64_t now,
                    struct sg_pgadmin_copy_counts *counts, char *errbuf, size_t errlen)
{
    *counts = (struct sg_pgadmin_copy_counts){0};
    struct link_list list = {0};
    struct audit audit;
    struct apply_counts applied;
    audit_init(&audit, "copy");
    int err = read_lmdb_links(store, &list, errbuf, errlen);
    if (err != 0)
        goto end;
    err = begin(conn, false, errbuf, errlen);
    if (err != 0)
        goto end;
    err = apply_links(conn, &audit, list.links, list.facts, list.count, &applied, errbuf, errlen);
    if (err != 0 && err != SG_ESTORE) {
        const struct sg_link *l = &list.links[applied.failed];
        if (l->kind == SG_LINK_TENANT)
            sg_errbuf(errbuf, errlen, "tenant %s <-> %s: %s", l->psa_tenant, l->idp_tenant,
                      refusal(err));
        else
            sg_errbuf(errbuf, errlen, "user %s/%s <-> %s/%s: %s", l->psa_tenant, l->psa_user,
                      l->idp_tenant, l->idp_sub, refusal(err));
    }
    if (err == 0) {
        struct copy_state st = {conn, now, counts, false, errbuf, errlen};
        err = sg_session_each(store, copy_session, &st);
        if (err != 0 && !st.pg_failed)
            sg_errbuf(errbuf, errlen, "reading the sessions of the LMDB store: %s",
                      sg_strerror(err));
    }
    err = finish(conn, err, errbuf, errlen);
    if (err == 0) {
        counts->tenant_links = applied.added[SG_LINK_TENANT];
        counts->user_links = applied.added[SG_LINK_USER];
        counts->tenant_present = applied.present[SG_LINK_TENANT];
        counts->user_present = applied.present[SG_LINK_USER];
    } else {
        size_t expired = counts->session_expired;
        *counts = (struct sg_pgadmin_copy_counts){0};
        counts->session_expired = expired;
    }

end:
    link_list_free(&list);
    return err;
}
