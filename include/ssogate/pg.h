/*
 * PostgreSQL on the event loop (libpq, asynchronous): a small pool of
 * connections to one database, prepared statements, a deadline for every
 * query, reconnection with backoff, and LISTEN/NOTIFY.
 *
 * Nothing here blocks: connections are made with PQconnectStart and
 * PQconnectPoll, queries are sent with PQsendQueryPrepared on non-blocking
 * connections, and each connection's socket is watched by libevent. libpq's
 * multi-host conninfo (host=a,b target_session_attrs=read-write) is passed
 * through, so a reconnection follows a primary failover.
 *
 * One query runs at a time on a connection; queries wait in one FIFO queue
 * for a free connection. Every query ends with exactly one call of its
 * callback (unless cancelled first): with its result, an SQL error, its
 * deadline passed, or the database unavailable. A query whose deadline
 * passes while it runs closes its connection (libpq 15 has no non-blocking
 * cancel), which is then made again; the server's own statement_timeout
 * (set on every connection) ends the query there.
 */
#ifndef SSOGATE_PG_H
#define SSOGATE_PG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct sg_pg;
struct sg_pg_query;

/* A statement prepared on every connection when it is made. */
struct sg_pg_statement {
    const char *name;
    const char *sql;
    int nparams;
};

struct sg_pg_config {
    const char *conninfo;          /* libpq connection string or URI */
    unsigned pool_size;            /* connections, 1..64 */
    unsigned statement_timeout_ms; /* the server's statement_timeout, and each query's default deadline */
    unsigned connect_timeout_ms;   /* for one connection attempt */
};

enum sg_pg_status {
    SG_PG_OK = 0,      /* res holds the result (PGRES_TUPLES_OK or PGRES_COMMAND_OK) */
    SG_PG_SQL_ERROR,   /* the server refused the statement: sqlstate says why */
    SG_PG_TIMEOUT,     /* the deadline passed */
    SG_PG_UNAVAILABLE, /* no connection could be made, or it broke under the query */
};

struct sg_pg_result {
    enum sg_pg_status status;
    const PGresult *res; /* SG_PG_OK and SG_PG_SQL_ERROR; valid during the callback only */
    const char *sqlstate; /* SG_PG_SQL_ERROR: five characters, e.g. "23505" (unique_violation) */
    const char *message;  /* a line for the log, every status but OK */
};

typedef void (*sg_pg_result_fn)(void *arg, const struct sg_pg_result *result);
typedef void (*sg_pg_notify_fn)(void *arg, const char *channel, const char *payload);

/*
 * A pool that starts connecting at once; statements (static, kept) are
 * prepared on each connection. Returns NULL with errbuf filled only when the
 * conninfo cannot be parsed (PQconninfoParse); an unreachable server is not
 * an error here.
 */
struct sg_pg *sg_pg_new(struct event_base *base, const struct sg_pg_config *cfg,
                        const struct sg_pg_statement *statements, size_t count, char *errbuf,
                        size_t errlen);

/* Frees the pool. Queries still pending are ended with SG_PG_UNAVAILABLE
 * first, synchronously. */
void sg_pg_free(struct sg_pg *pg);

/*
 * Runs a prepared statement with text parameters (values[i] NULL is SQL
 * NULL; lengths may be NULL for NUL-terminated text). The parameters are
 * copied. timeout_ms 0 means the configured statement_timeout_ms. The
 * callback is never called before sg_pg_exec returns. The returned handle
 * stays valid until the callback has run or sg_pg_cancel.
 */
struct sg_pg_query *sg_pg_exec(struct sg_pg *pg, const char *statement, int nparams,
                               const char *const *values, const int *lengths, unsigned timeout_ms,
                               sg_pg_result_fn fn, void *arg);

/* The callback of q will not run (its result, if it comes, is dropped). */
void sg_pg_cancel(struct sg_pg_query *q);

/* Calls fn for every NOTIFY on channel (a static identifier), on every
 * connection the pool makes from now on (one connection of the pool holds
 * the LISTEN). on_resync, if not NULL, runs each time that listening
 * connection is (re)made: notifications may have been missed meanwhile. */
void sg_pg_listen(struct sg_pg *pg, const char *channel, sg_pg_notify_fn fn,
                  void (*on_resync)(void *arg), void *arg);

/* True while at least one connection is up. */
bool sg_pg_available(const struct sg_pg *pg);

/* For /_sso/healthz and the metrics: connections up, queries queued. */
void sg_pg_stats(const struct sg_pg *pg, unsigned *up, unsigned *queued);

#endif
