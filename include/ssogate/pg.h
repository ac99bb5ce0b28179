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
 *
 * The rules, in detail:
 * - statement_timeout is sent in the startup packet of every connection
 *   ("-c statement_timeout=N" appended to the conninfo's options); a
 *   statement the server cancels for it (57014) ends with SG_PG_TIMEOUT and
 *   the connection stays up.
 * - A connection attempt (connect, authentication, preparing the
 *   statements) is bounded by connect_timeout_ms. A failed attempt is
 *   retried after a backoff: 100 ms doubling to 5 s (less up to a quarter at
 *   random). A connection that breaks after being up for 1 s or more is made
 *   again at once and its backoff starts over; one that breaks sooner backs
 *   off. A statement that cannot be prepared (a missing table, say) fails the
 *   attempt like a refused connection.
 * - Unavailable: while every connection of the pool is waiting out its
 *   backoff after a failed attempt (none up, none connecting), a query fails
 *   at once with SG_PG_UNAVAILABLE, and so do the queued queries the moment
 *   the last attempt fails. A query queued while a connection is being made
 *   waits for it, up to its deadline.
 * - A connection that breaks under a query ends it with SG_PG_UNAVAILABLE;
 *   the query is never sent again (it may have committed). Errors of the
 *   connection reported by the server (class 08 but 08P01, 57P01-57P04:
 *   shutdown, crash, database dropped) count as broken connections.
 * - Callbacks (results, notifications, on_resync) run from the event loop,
 *   never inside a call of this API but sg_pg_free; any of them may call any
 *   function of this API, sg_pg_free included.
 * - Host names in the conninfo are resolved by libpq with getaddrinfo, which
 *   blocks: give addresses (host=10.0.0.5, or hostaddr) for a loop that must
 *   never wait on DNS.
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
    unsigned pool_size;            /* connections, 1..64 (0 is taken as 1, more than 64 as 64) */
    unsigned statement_timeout_ms; /* the server's statement_timeout, and each query's default
                                      deadline; 0: 5000 */
    unsigned connect_timeout_ms;   /* for one connection attempt; 0: 5000 */
};

enum sg_pg_status {
    SG_PG_OK = 0,      /* res holds the result (PGRES_TUPLES_OK or PGRES_COMMAND_OK) */
    SG_PG_SQL_ERROR,   /* the server refused the statement: sqlstate says why */
    SG_PG_TIMEOUT,     /* the deadline passed */
    SG_PG_UNAVAILABLE, /* no connection could be made, or it broke under the query */
};

struct sg_pg_result {
    enum sg_pg_status status;
    const PGresult *res;  /* SG_PG_OK and SG_PG_SQL_ERROR; valid during the callback only */
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
 * connection is (re)made: notifications may have been missed meanwhile.
 * It runs once the LISTEN is in effect, the first time included: a NOTIFY
 * sent after on_resync has run arrives. */
void sg_pg_listen(struct sg_pg *pg, const char *channel, sg_pg_notify_fn fn,
                  void (*on_resync)(void *arg), void *arg);

/* True while at least one connection is up. */
bool sg_pg_available(const struct sg_pg *pg);

/* For /_sso/healthz and the metrics: connections up, queries queued. */
void sg_pg_stats(const struct sg_pg *pg, unsigned *up, unsigned *queued);

#endif
