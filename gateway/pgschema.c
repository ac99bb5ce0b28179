#include "ssogate/pgschema.h"

#include "ssogate/common.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The advisory lock migrations take: two hosts migrating at once take turns. */
#define MIGRATE_LOCK "7283917301"

/*
 * Migration N brings a database from version N-1 to N. Identifiers and
 * session fields are bytea: the gateway compares them byte for byte and they
 * need not be UTF-8. The triggers notify every gateway host of what it may
 * hold in its cache: a session ended ("s <hex id_hash>"), a tenant's links
 * changed ("l <hex psa_tenant>").
 */
static const char *const migrations[SG_PGSCHEMA_VERSION] = {
    "CREATE TABLE tenant_links ("
    "  psa_tenant bytea PRIMARY KEY,"
    "  idp_tenant bytea NOT NULL UNIQUE,"
    "  created_at timestamptz NOT NULL DEFAULT now(),"
    "  UNIQUE (psa_tenant, idp_tenant));"
    "CREATE TABLE user_links ("
    "  psa_tenant bytea NOT NULL,"
    "  psa_user bytea NOT NULL,"
    "  idp_tenant bytea NOT NULL,"
    "  idp_sub bytea NOT NULL,"
    "  facts_known boolean NOT NULL DEFAULT false,"
    "  staff boolean NOT NULL DEFAULT false,"
    "  active boolean NOT NULL DEFAULT false,"
    "  created_at timestamptz NOT NULL DEFAULT now(),"
    "  PRIMARY KEY (psa_tenant, psa_user),"
    "  UNIQUE (idp_tenant, idp_sub),"
    "  FOREIGN KEY (psa_tenant, idp_tenant) REFERENCES tenant_links (psa_tenant, idp_tenant)"
    "    ON DELETE CASCADE);"
    "CREATE TABLE sessions ("
    "  id_hash bytea PRIMARY KEY,"
    "  record bytea NOT NULL,"
    "  psa_tenant bytea,"
    "  psa_user bytea,"
    "  idp_issuer bytea NOT NULL,"
    "  idp_sub bytea NOT NULL,"
    "  idp_sid bytea,"
    "  last_seen bigint NOT NULL,"
    "  idle_timeout_s integer NOT NULL,"
    "  expires_at bigint NOT NULL);"
    "CREATE INDEX sessions_psa ON sessions (psa_tenant, psa_user);"
    "CREATE INDEX sessions_idp ON sessions (idp_issuer, idp_sub);"
    "CREATE INDEX sessions_sid ON sessions (idp_issuer, idp_sid) WHERE idp_sid IS NOT NULL;"
    "CREATE INDEX sessions_expiry ON sessions (expires_at);"
    "CREATE TABLE login_states ("
    "  state_hash bytea PRIMARY KEY,"
    "  record bytea NOT NULL,"
    "  created_at bigint NOT NULL);"
    "CREATE INDEX login_states_created ON login_states (created_at);"
    "CREATE TABLE link_audit ("
    "  id bigserial PRIMARY KEY,"
    "  at timestamptz NOT NULL DEFAULT now(),"
    "  host text NOT NULL,"
    "  via text NOT NULL,"
    "  action text NOT NULL,"
    "  kind text NOT NULL,"
    "  psa_tenant bytea NOT NULL,"
    "  psa_user bytea,"
    "  idp_tenant bytea,"
    "  idp_sub bytea);"
    "CREATE FUNCTION ssogate_session_ended() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN PERFORM pg_notify('" SG_PGSCHEMA_CHANNEL "', 's ' || encode(OLD.id_hash, 'hex'));"
    " RETURN NULL; END $$;"
    "CREATE TRIGGER sessions_ended AFTER DELETE ON sessions"
    "  FOR EACH ROW EXECUTE FUNCTION ssogate_session_ended();"
    "CREATE FUNCTION ssogate_links_changed() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN PERFORM pg_notify('" SG_PGSCHEMA_CHANNEL "', 'l ' ||"
    "   encode(CASE WHEN TG_OP = 'DELETE' THEN OLD.psa_tenant ELSE NEW.psa_tenant END, 'hex'));"
    " IF TG_OP = 'UPDATE' AND OLD.psa_tenant <> NEW.psa_tenant THEN"
    "   PERFORM pg_notify('" SG_PGSCHEMA_CHANNEL "', 'l ' || encode(OLD.psa_tenant, 'hex'));"
    " END IF;"
    " RETURN NULL; END $$;"
    "CREATE TRIGGER tenant_links_changed AFTER INSERT OR UPDATE OR DELETE ON tenant_links"
    "  FOR EACH ROW EXECUTE FUNCTION ssogate_links_changed();"
    "CREATE TRIGGER user_links_changed AFTER INSERT OR UPDATE OR DELETE ON user_links"
    "  FOR EACH ROW EXECUTE FUNCTION ssogate_links_changed();",
    /* Back-channel logout tokens accepted by any host, by SHA-256(issuer NUL
     * jti), so that a token is accepted once per cluster; kept until
     * keep_until (seconds), then swept. */
    "CREATE TABLE logout_jti ("
    "  jti_hash bytea PRIMARY KEY,"
    "  keep_until bigint NOT NULL);"
    "CREATE INDEX logout_jti_expiry ON logout_jti (keep_until);",
};

PGconn *sg_pgschema_connect(const char *conninfo, unsigned timeout_s, char *errbuf, size_t errlen)
{
    char timeout[16];
    snprintf(timeout, sizeof(timeout), "%u", timeout_s);
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *values[] = {conninfo, timeout, "ssogate", NULL};
    PGconn *conn = PQconnectdbParams(keys, values, 1);
    if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
        const char *msg = conn ? PQerrorMessage(conn) : "out of memory";
        sg_errbuf(errbuf, errlen, "cannot connect to PostgreSQL: %.*s", (int)strcspn(msg, "\n"),
                  msg);
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

/* Runs one command; 0, or SG_ESTORE with the server's first message line. */
static int run(PGconn *conn, const char *sql, const char *what, char *errbuf, size_t errlen)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        const char *msg = PQresultErrorMessage(res);
        sg_errbuf(errbuf, errlen, "%s: %.*s", what, (int)strcspn(msg, "\n"), msg);
        rc = SG_ESTORE;
    }
    PQclear(res);
    return rc;
}

int sg_pgschema_version(PGconn *conn, int *version, char *errbuf, size_t errlen)
{
    *version = 0;
    PGresult *res = PQexec(conn, "SELECT to_regclass('ssogate_schema') IS NOT NULL");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        const char *msg = PQresultErrorMessage(res);
        sg_errbuf(errbuf, errlen, "reading the schema version: %.*s", (int)strcspn(msg, "\n"), msg);
        PQclear(res);
        return SG_ESTORE;
    }
    bool present = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!present)
        return 0;
    res = PQexec(conn, "SELECT max(version) FROM ssogate_schema");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        const char *msg = PQresultErrorMessage(res);
        sg_errbuf(errbuf, errlen, "reading the schema version: %.*s", (int)strcspn(msg, "\n"), msg);
        PQclear(res);
        return SG_ESTORE;
    }
    *version = PQgetisnull(res, 0, 0) ? 0 : atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return 0;
}

int sg_pgschema_check(PGconn *conn, char *errbuf, size_t errlen)
{
    int version;
    int rc = sg_pgschema_version(conn, &version, errbuf, errlen);
    if (rc != 0)
        return rc;
    if (version == SG_PGSCHEMA_VERSION)
        return 0;
    if (version > SG_PGSCHEMA_VERSION)
        sg_errbuf(errbuf, errlen,
                  "the database's schema is version %d, newer than this gateway's %d: upgrade "
                  "the gateway",
                  version, SG_PGSCHEMA_VERSION);
    else
        sg_errbuf(errbuf, errlen,
                  "the database's schema is version %d, this gateway needs %d: run "
                  "ssogate-admin migrate",
                  version, SG_PGSCHEMA_VERSION);
    return SG_ESTORE;
}

int sg_pgschema_migrate(PGconn *conn, int *from, int *to, char *errbuf, size_t errlen)
{
    int version = 0;
    int rc = run(conn, "SELECT pg_advisory_lock(" MIGRATE_LOCK ")", "taking the migration lock",
                 errbuf, errlen);
    if (rc != 0)
        return rc;
    rc = sg_pgschema_version(conn, &version, errbuf, errlen);
    if (from != NULL)
        *from = version;
    if (rc == 0 && version > SG_PGSCHEMA_VERSION) {
        sg_errbuf(errbuf, errlen,
                  "the database's schema is version %d, newer than this build's %d: nothing done",
                  version, SG_PGSCHEMA_VERSION);
        rc = SG_ESTORE;
    }
    if (rc == 0 && version == 0)
        rc = run(conn,
                 "CREATE TABLE IF NOT EXISTS ssogate_schema (version integer PRIMARY KEY,"
                 " applied_at timestamptz NOT NULL DEFAULT now())",
                 "creating ssogate_schema", errbuf, errlen);
    while (rc == 0 && version < SG_PGSCHEMA_VERSION) {
        char what[64], record[96];
        snprintf(what, sizeof(what), "migration %d", version + 1);
        snprintf(record, sizeof(record), "INSERT INTO ssogate_schema (version) VALUES (%d)",
                 version + 1);
        rc = run(conn, "BEGIN", what, errbuf, errlen);
        if (rc == 0)
            rc = run(conn, migrations[version], what, errbuf, errlen);
        if (rc == 0)
            rc = run(conn, record, what, errbuf, errlen);
        if (rc == 0)
            rc = run(conn, "COMMIT", what, errbuf, errlen);
        else
            PQclear(PQexec(conn, "ROLLBACK"));
        if (rc == 0)
            version++;
    }
    if (to != NULL)
        *to = version;
    PQclear(PQexec(conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK ")"));
    return rc;
}
