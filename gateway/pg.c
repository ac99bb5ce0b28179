/*
 * PostgreSQL on the event loop: see include/ssogate/pg.h for the contract.
 *
 * A connection goes WAIT -> CONNECTING (PQconnectPoll) -> SETUP (one
 * PQsendPrepare per statement) -> READY, and back to WAIT or CONNECTING when
 * it fails, breaks or is closed under a query past its deadline. A READY
 * connection runs one command at a time: a query from the FIFO queue, or the
 * LISTEN of the pool's listening connection.
 *
 * Callbacks never run in the middle of the pool's own work: a finished query
 * goes to the done list, a notification to the notes list, and every
 * libevent callback of the pool ends with deliver(), which runs them. A
 * callback may call any function of this API, sg_pg_free included: that
 * frees everything but the pool's own struct, which deliver() frees on its
 * way out.
 */
#include "ssogate/pg.h"

#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/log.h"
#include "ssogate/metrics.h"

#include <sys/queue.h>

#include <assert.h>
#include <ctype.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG_MAGIC       0x50475031u
#define PG_QUERY_MAGIC 0x50475131u

#define PG_POOL_MAX        64
#define PG_DEFAULT_MS      5000
#define PG_BACKOFF_MIN_MS  100
#define PG_BACKOFF_MAX_MS  5000
#define PG_STABLE_US       (1000 * 1000) /* up this long, a broken connection is remade at once */
#define PG_QUERIES_METRIC  "ssogate_pg_queries_total"
#define PG_CONNECTS_METRIC "ssogate_pg_connects_total"
#define PG_CLOSES_METRIC   "ssogate_pg_disconnects_total"

enum pg_query_state {
    Q_QUEUED,  /* in pg->queue */
    Q_RUNNING, /* sent on q->conn */
    Q_DONE,    /* in pg->done, its callback not run yet */
    Q_CALLING, /* its callback is running */
};

struct sg_pg_query {
    uint32_t magic;
    enum pg_query_state state;
    struct sg_pg *pg;
    struct pg_conn *conn; /* Q_RUNNING */
    char *statement;
    int nparams;
    char **params;
    sg_pg_result_fn fn; /* NULL once cancelled */
    void *arg;
    struct event *deadline;
    int64_t started_us;
    /* The outcome, once Q_DONE. */
    enum sg_pg_status status;
    PGresult *res;
    char *message;
    TAILQ_ENTRY(sg_pg_query) link; /* pg->queue or pg->done */
};
TAILQ_HEAD(pg_query_list, sg_pg_query);

enum pg_conn_state {
    CONN_WAIT,       /* timer pending: the next attempt */
    CONN_CONNECTING, /* PQconnectPoll */
    CONN_SETUP,      /* preparing the statements */
    CONN_READY,
};

enum pg_command {
    CMD_NONE,
    CMD_PREPARE, /* statements[step] */
    CMD_LISTEN,  /* listens[listened .. listen_upto) */
    CMD_QUERY,   /* query */
};

struct pg_conn {
    struct sg_pg *pg;
    unsigned index;
    enum pg_conn_state state;
    bool after_failure; /* CONN_WAIT because the last attempt failed */
    PGconn *pgconn;
    struct event *poll_ev; /* CONNECTING: the socket as PQconnectPoll asks */
    struct event *rd;      /* SETUP, READY: always read (notifications, a closed socket) */
    struct event *wr;      /* SETUP, READY: while PQflush has more to send */
    bool flushing;
    struct event *timer; /* WAIT: the next attempt; CONNECTING, SETUP: the attempt's bound */
    unsigned backoff_ms;
    int64_t up_since_us;
    enum pg_command cmd;
    PGresult *res; /* the result kept for the command running */
    size_t step;
    size_t listened; /* the listening connection: listens[0 .. listened) are in effect */
    size_t listen_upto;
    struct sg_pg_query *query;
    unsigned generation; /* changes with every close: a handler sees its connection replaced */
};

struct pg_listen {
    const char *channel; /* static */
    sg_pg_notify_fn fn;
    void (*on_resync)(void *arg);
    void *arg;
    bool resync_due;
};

struct pg_note {
    PGnotify *notify;
    TAILQ_ENTRY(pg_note) link;
};

struct sg_pg {
    uint32_t magic;
    struct event_base *base;
    char **keywords; /* for PQconnectStartParams, NULL-terminated */
    char **values;
    const struct sg_pg_statement *statements;
    size_t nstatements;
    unsigned statement_timeout_ms;
    unsigned connect_timeout_ms;
    struct pg_conn *conns;
    unsigned nconns;
    struct pg_query_list queue;
    unsigned queued;
    struct pg_query_list done;
    struct event *kick; /* dispatches from the loop: sg_pg_exec never runs a callback */
    struct pg_listen *listens;
    size_t nlistens;
    struct pg_conn *listener; /* the READY connection that holds the LISTENs */
    TAILQ_HEAD(, pg_note) notes;
    bool resync_due;
    bool closing;
    bool delivering; /* deliver() runs: sg_pg_free leaves the struct to it */
};

static void conn_start(struct pg_conn *c);
static void conn_pump(struct pg_conn *c);
static void on_poll(evutil_socket_t fd, short what, void *arg);
static void on_io(evutil_socket_t fd, short what, void *arg);

static struct timeval ms_tv(unsigned ms)
{
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

/* libpq's messages end with a newline and may span lines ("\n\tIs the server running..."): one
 * line for the log and the callbacks. The caller owns the result. */
static char *one_line(const char *msg)
{
    if (msg == NULL || *msg == '\0')
        return sg_strdup("unknown error");
    char *out = sg_malloc(strlen(msg) + 1);
    size_t n = 0;
    bool space = false;
    for (const char *p = msg; *p != '\0'; p++) {
        if (isspace((unsigned char)*p)) {
            space = n > 0;
            continue;
        }
        if (space)
            out[n++] = ' ';
        space = false;
        out[n++] = *p;
    }
    out[n] = '\0';
    return out;
}

static const char *status_label(enum sg_pg_status status)
{
    switch (status) {
    case SG_PG_OK:
        return "ok";
    case SG_PG_SQL_ERROR:
        return "sql_error";
    case SG_PG_TIMEOUT:
        return "timeout";
    case SG_PG_UNAVAILABLE:
        break;
    }
    return "unavailable";
}

/* ---- conninfo ---- */

/*
 * libpq quotes the offending part of a conninfo in its parse errors, and for
 * a URI that is the whole string, password included: quoted parts are left
 * out of the message.
 */
static void conninfo_error(char *errbuf, size_t errlen, const char *msg)
{
    char *line = one_line(msg != NULL ? msg : "out of memory");
    char *out = sg_malloc(strlen(line) * 3 + 1);
    size_t n = 0;
    bool quoted = false;
    for (const char *p = line; *p != '\0'; p++) {
        if (*p == '"') {
            if (!quoted) {
                memcpy(out + n, "\"...\"", 5);
                n += 5;
            }
            quoted = !quoted;
        } else if (!quoted) {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
    sg_errbuf(errbuf, errlen, "postgresql conninfo: %s", out);
    free(out);
    free(line);
}

static void param_add(struct sg_pg *pg, size_t *n, const char *keyword, char *value)
{
    pg->keywords[*n] = sg_strdup(keyword);
    pg->values[*n] = value;
    (*n)++;
}

/*
 * The connection parameters: the user's, with the server's statement_timeout
 * appended to their options (so it holds from the connection's first
 * statement, with no round trip of its own), UTF-8, and an application_name
 * unless they chose one.
 */
static void params_build(struct sg_pg *pg, const PQconninfoOption *opts)
{
    size_t count = 0;
    for (const PQconninfoOption *o = opts; o->keyword != NULL; o++)
        count++;
    pg->keywords = sg_calloc(count + 4, sizeof(char *));
    pg->values = sg_calloc(count + 4, sizeof(char *));
    char *timeout = sg_asprintf("-c statement_timeout=%u", pg->statement_timeout_ms);
    bool have_options = false, have_app = false, have_encoding = false;
    size_t n = 0;
    for (const PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL || o->val[0] == '\0')
            continue;
        if (strcmp(o->keyword, "options") == 0) {
            param_add(pg, &n, o->keyword, sg_asprintf("%s %s", o->val, timeout));
            have_options = true;
            continue;
        }
        have_app = have_app || strcmp(o->keyword, "fallback_application_name") == 0;
        have_encoding = have_encoding || strcmp(o->keyword, "client_encoding") == 0;
        param_add(pg, &n, o->keyword, sg_strdup(o->val));
    }
    if (!have_options)
        param_add(pg, &n, "options", sg_strdup(timeout));
    if (!have_app)
        param_add(pg, &n, "fallback_application_name", sg_strdup("ssogate"));
    if (!have_encoding)
        param_add(pg, &n, "client_encoding", sg_strdup("UTF8"));
    free(timeout);
}

/* ---- queries ---- */

static void query_free(struct sg_pg_query *q)
{
    event_free(q->deadline);
    PQclear(q->res);
    for (int i = 0; i < q->nparams; i++)
        free(q->params[i]);
    free(q->params);
    free(q->statement);
    free(q->message);
    q->magic = 0;
    free(q);
}

/* Data exceptions (class 22) quote the input in their message: only their sqlstate is logged. */
static void query_log(const struct sg_pg_query *q)
{
    enum sg_log_level level = q->status == SG_PG_SQL_ERROR ? SG_LOG_INFO : SG_LOG_WARN;
    if (!sg_log_enabled(level))
        return;
    const char *sqlstate = q->res != NULL ? PQresultErrorField(q->res, PG_DIAG_SQLSTATE) : NULL;
    bool quotes_input = sqlstate != NULL && strncmp(sqlstate, "22", 2) == 0;
    sg_log_fields(level, "pg_query_failed",
                  (struct sg_log_field[]){
                      SG_LOG_STR("statement", q->statement),
                      SG_LOG_STR("result", status_label(q->status)),
                      SG_LOG_INT("elapsed_ms", (sg_mono_us() - q->started_us) / 1000),
                      SG_LOG_STR("sqlstate", sqlstate),
                      SG_LOG_STR("error", quotes_input ? NULL : q->message),
                  },
                  5);
}

/*
 * Ends q, already detached from the queue or its connection, with status
 * (res and message are taken): counted, logged, and put on the done list for
 * deliver(), or freed when it was cancelled.
 */
static void query_end(struct sg_pg_query *q, enum sg_pg_status status, PGresult *res, char *message)
{
    struct sg_pg *pg = q->pg;
    q->conn = NULL;
    evtimer_del(q->deadline);
    q->status = status;
    q->res = res;
    q->message = message;
    sg_metrics_count(PG_QUERIES_METRIC, "result", status_label(status));
    if (status != SG_PG_OK)
        query_log(q);
    if (q->fn == NULL) {
        query_free(q);
        return;
    }
    q->state = Q_DONE;
    TAILQ_INSERT_TAIL(&pg->done, q, link);
}

/* Runs the callback of a query taken off the done list, then frees it. */
static void query_call(struct sg_pg_query *q)
{
    q->state = Q_CALLING;
    struct sg_pg_result result = {.status = q->status, .message = q->message};
    if (q->res != NULL) {
        if (q->status == SG_PG_OK || q->status == SG_PG_SQL_ERROR)
            result.res = q->res;
        result.sqlstate = PQresultErrorField(q->res, PG_DIAG_SQLSTATE);
    }
    if (q->fn != NULL)
        q->fn(q->arg, &result);
    query_free(q);
}

static void queue_fail_all(struct sg_pg *pg, const char *why)
{
    struct sg_pg_query *q;
    while ((q = TAILQ_FIRST(&pg->queue)) != NULL) {
        TAILQ_REMOVE(&pg->queue, q, link);
        pg->queued--;
        query_end(q, SG_PG_UNAVAILABLE, NULL, sg_strdup(why));
    }
}

/*
 * False when every connection is waiting out its backoff after a failed
 * attempt: nothing is connecting and nothing is up, so a query would only
 * wait for its deadline.
 */
static bool pg_reachable(const struct sg_pg *pg)
{
    for (unsigned i = 0; i < pg->nconns; i++) {
        const struct pg_conn *c = &pg->conns[i];
        if (c->state != CONN_WAIT || !c->after_failure)
            return true;
    }
    return false;
}

/*
 * How a finished command went. Errors of the connection itself (class 08
 * but 08P01, which is a malformed call; 57P0x, the server shutting down;
 * libpq's own, which carry no sqlstate) are UNAVAILABLE, and *lost says the
 * connection must be remade. 57014 is the server's statement_timeout (or an
 * operator's pg_cancel_backend).
 */
static enum sg_pg_status result_status(const PGresult *res, bool *lost)
{
    *lost = false;
    if (res == NULL) {
        *lost = true;
        return SG_PG_UNAVAILABLE;
    }
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return SG_PG_OK;
    if (st == PGRES_EMPTY_QUERY)
        return SG_PG_SQL_ERROR;
    const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (sqlstate == NULL) { /* libpq's own error, or a response it could not make sense of */
        *lost = true;
        return SG_PG_UNAVAILABLE;
    }
    if (strcmp(sqlstate, "57014") == 0)
        return SG_PG_TIMEOUT;
    if ((strncmp(sqlstate, "08", 2) == 0 && strcmp(sqlstate, "08P01") != 0) ||
        strncmp(sqlstate, "57P", 3) == 0) {
        *lost = true;
        return SG_PG_UNAVAILABLE;
    }
    return SG_PG_SQL_ERROR;
}

/* The server's primary message (no DETAIL: it quotes key values), else libpq's. */
static char *result_message(const PGresult *res)
{
    if (res == NULL)
        return sg_strdup("no result");
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    return one_line(primary != NULL ? primary : PQresultErrorMessage(res));
}

/* ---- notifications and callbacks ---- */

static void note_call(struct sg_pg *pg, const PGnotify *n)
{
    for (size_t i = 0; !pg->closing && i < pg->nlistens; i++) {
        struct pg_listen *l = &pg->listens[i];
        if (strcmp(l->channel, n->relname) == 0)
            l->fn(l->arg, n->relname, n->extra != NULL ? n->extra : "");
    }
}

/*
 * Runs what finished: query callbacks in the order their queries ended,
 * then notifications, then on_resync. The last thing every libevent
 * callback of the pool does. A callback may free the pool: then nothing
 * but the closing flag is read, and the struct is freed here.
 */
static void deliver(struct sg_pg *pg)
{
    if (pg->delivering)
        return;
    pg->delivering = true;
    struct sg_pg_query *q;
    while (!pg->closing && (q = TAILQ_FIRST(&pg->done)) != NULL) {
        TAILQ_REMOVE(&pg->done, q, link);
        query_call(q);
    }
    struct pg_note *note;
    while (!pg->closing && (note = TAILQ_FIRST(&pg->notes)) != NULL) {
        TAILQ_REMOVE(&pg->notes, note, link);
        note_call(pg, note->notify);
        PQfreemem(note->notify);
        free(note);
    }
    while (!pg->closing && pg->resync_due) {
        pg->resync_due = false;
        for (size_t i = 0; !pg->closing && i < pg->nlistens; i++) {
            if (!pg->listens[i].resync_due)
                continue;
            pg->listens[i].resync_due = false;
            if (pg->listens[i].on_resync != NULL)
                pg->listens[i].on_resync(pg->listens[i].arg);
        }
    }
    pg->delivering = false;
    if (pg->closing) {
        pg->magic = 0;
        free(pg);
    }
}

static void kick(struct sg_pg *pg)
{
    if (!pg->closing)
        event_active(pg->kick, EV_TIMEOUT, 0);
}

/* Hands the LISTENs to a READY connection, an idle one if there is one; it issues them when
 * next idle. */
static void listener_pick(struct sg_pg *pg)
{
    if (pg->closing || pg->listener != NULL)
        return;
    struct pg_conn *best = NULL;
    for (unsigned i = 0; i < pg->nconns; i++) {
        struct pg_conn *c = &pg->conns[i];
        if (c->state != CONN_READY)
            continue;
        if (best == NULL || (best->cmd != CMD_NONE && c->cmd == CMD_NONE))
            best = c;
    }
    if (best != NULL) {
        pg->listener = best;
        best->listened = 0;
        kick(pg);
    }
}

/* ---- connections ---- */

/*
 * Drops the connection's libpq object and its events; its query, if any, has
 * been detached. The events go first: libevent must stop watching the
 * socket before libpq closes it, or a new socket with the same number would
 * never be watched. Leaves the connection in CONN_WAIT, timer stopped.
 */
static void conn_close(struct pg_conn *c)
{
    struct sg_pg *pg = c->pg;
    assert(c->query == NULL);
    if (c->poll_ev != NULL)
        event_free(c->poll_ev);
    if (c->rd != NULL)
        event_free(c->rd);
    if (c->wr != NULL)
        event_free(c->wr);
    c->poll_ev = c->rd = c->wr = NULL;
    c->flushing = false;
    evtimer_del(c->timer);
    PQclear(c->res);
    c->res = NULL;
    c->cmd = CMD_NONE;
    if (c->pgconn != NULL)
        PQfinish(c->pgconn);
    c->pgconn = NULL;
    c->generation++;
    c->state = CONN_WAIT;
    c->after_failure = false;
    if (pg->listener == c) {
        pg->listener = NULL;
        c->listened = 0;
        listener_pick(pg);
    }
}

/* Backoff: 100 ms doubling to 5 s, less up to a quarter at random so that several gateways do
 * not come back in step. */
static unsigned conn_backoff(struct pg_conn *c)
{
    c->backoff_ms = c->backoff_ms == 0 ? PG_BACKOFF_MIN_MS : c->backoff_ms * 2;
    if (c->backoff_ms > PG_BACKOFF_MAX_MS)
        c->backoff_ms = PG_BACKOFF_MAX_MS;
    uint32_t r;
    sg_random_bytes(&r, sizeof(r));
    return c->backoff_ms - r % (c->backoff_ms / 4 + 1);
}

static void conn_wait(struct pg_conn *c, unsigned delay_ms)
{
    struct timeval tv = ms_tv(delay_ms);
    evtimer_add(c->timer, &tv);
}

/*
 * A connection attempt failed (connecting or preparing): retried after the
 * backoff. When no connection is left up or trying, the queue is failed.
 */
static void conn_fail(struct pg_conn *c, const char *why)
{
    struct sg_pg *pg = c->pg;
    char *line = one_line(why); /* why may belong to the PGconn closed below */
    unsigned delay = conn_backoff(c);
    sg_log_fields(SG_LOG_WARN, "pg_connect_failed",
                  (struct sg_log_field[]){SG_LOG_INT("conn", c->index), SG_LOG_STR("error", line),
                                          SG_LOG_INT("retry_ms", delay)},
                  3);
    sg_metrics_count(PG_CONNECTS_METRIC, "result", "failed");
    conn_close(c);
    c->after_failure = true;
    conn_wait(c, delay);
    free(line);
    if (!pg_reachable(pg))
        queue_fail_all(pg, "database unavailable: no connection could be made");
}

/*
 * A READY connection broke: its query ends with UNAVAILABLE (it may have
 * committed: it is never sent again). A connection that had been up a while
 * is remade at once; one that breaks soon after connecting backs off.
 */
static void conn_lost(struct pg_conn *c, const char *why)
{
    char *line = one_line(why);
    struct sg_pg_query *q = c->query;
    c->query = NULL;
    bool stable = sg_mono_us() - c->up_since_us >= PG_STABLE_US;
    sg_log_fields(SG_LOG_WARN, "pg_connection_lost",
                  (struct sg_log_field[]){SG_LOG_INT("conn", c->index), SG_LOG_STR("error", line),
                                          SG_LOG_STR("statement", q != NULL ? q->statement : NULL)},
                  3);
    sg_metrics_count(PG_CLOSES_METRIC, "reason", "lost");
    conn_close(c);
    if (q != NULL)
        query_end(q, SG_PG_UNAVAILABLE, NULL, sg_asprintf("connection lost: %s", line));
    free(line);
    if (stable) {
        c->backoff_ms = 0;
        conn_start(c);
    } else {
        conn_wait(c, conn_backoff(c));
    }
}

/* The socket broke, or libpq gave up on it. */
static void conn_broken(struct pg_conn *c, const char *why)
{
    if (c->state == CONN_READY)
        conn_lost(c, why);
    else
        conn_fail(c, why);
}

/* Sends what libpq holds; returns -1 when the connection is broken. */
static int conn_flush(struct pg_conn *c)
{
    int r = PQflush(c->pgconn);
    if (r < 0)
        return -1;
    c->flushing = r == 1;
    if (c->flushing)
        event_add(c->wr, NULL);
    return 0;
}

/* Watches the socket as PQconnectPoll asked. The socket may have changed between polls (another
 * host, a retry without SSL): the event is made anew each time. */
static void conn_poll_watch(struct pg_conn *c, short what)
{
    if (c->poll_ev != NULL)
        event_free(c->poll_ev);
    c->poll_ev = NULL;
    int fd = PQsocket(c->pgconn);
    if (fd < 0) {
        conn_fail(c, "libpq has no socket");
        return;
    }
    c->poll_ev = event_new(c->pg->base, fd, what, on_poll, c);
    event_add(c->poll_ev, NULL);
}

static void conn_ready(struct pg_conn *c)
{
    struct sg_pg *pg = c->pg;
    evtimer_del(c->timer);
    c->state = CONN_READY;
    c->up_since_us = sg_mono_us();
    sg_log_fields(SG_LOG_INFO, "pg_connected",
                  (struct sg_log_field[]){SG_LOG_INT("conn", c->index),
                                          SG_LOG_STR("host", PQhost(c->pgconn)),
                                          SG_LOG_STR("port", PQport(c->pgconn)),
                                          SG_LOG_INT("server_pid", PQbackendPID(c->pgconn)),
                                          SG_LOG_INT("server_version", PQserverVersion(c->pgconn))},
                  5);
    sg_metrics_count(PG_CONNECTS_METRIC, "result", "ok");
    if (pg->listener == NULL) {
        pg->listener = c;
        c->listened = 0;
    }
    conn_pump(c);
}

/* Prepares the next statement, or declares the connection ready. */
static void conn_setup_next(struct pg_conn *c)
{
    struct sg_pg *pg = c->pg;
    if (c->step >= pg->nstatements) {
        conn_ready(c);
        return;
    }
    const struct sg_pg_statement *s = &pg->statements[c->step];
    c->cmd = CMD_PREPARE;
    if (!PQsendPrepare(c->pgconn, s->name, s->sql, s->nparams, NULL) || conn_flush(c) < 0)
        conn_fail(c, PQerrorMessage(c->pgconn));
}

/* PQconnectPoll said OK: non-blocking from now on, the socket watched for the connection's
 * life, then the statements. */
static void conn_connected(struct pg_conn *c)
{
    struct sg_pg *pg = c->pg;
    event_free(c->poll_ev);
    c->poll_ev = NULL;
    if (PQsetnonblocking(c->pgconn, 1) != 0) {
        conn_fail(c, PQerrorMessage(c->pgconn));
        return;
    }
    int fd = PQsocket(c->pgconn);
    c->rd = event_new(pg->base, fd, EV_READ | EV_PERSIST, on_io, c);
    c->wr = event_new(pg->base, fd, EV_WRITE, on_io, c);
    event_add(c->rd, NULL);
    c->state = CONN_SETUP;
    c->step = 0;
    conn_setup_next(c);
}

/* Starts an attempt, bounded by connect_timeout_ms (libpq's own connect_timeout does not apply
 * to PQconnectPoll). */
/* What the server says outside a query's answer (a shutdown, a warning):
 * libpq would print it on stderr; the gateway's log lines are JSON. */
static void on_notice(void *arg, const char *message)
{
    sg_log_fields(SG_LOG_INFO, "pg_notice", (struct sg_log_field[]){SG_LOG_STR("message", message)},
                  1);
}

static void conn_start(struct pg_conn *c)
{
    struct sg_pg *pg = c->pg;
    c->state = CONN_CONNECTING;
    c->after_failure = false;
    c->pgconn =
        PQconnectStartParams((const char *const *)pg->keywords, (const char *const *)pg->values, 0);
    if (c->pgconn == NULL)
        abort(); /* libpq is out of memory */
    PQsetNoticeProcessor(c->pgconn, on_notice, NULL);
    conn_wait(c, pg->connect_timeout_ms);
    if (PQstatus(c->pgconn) == CONNECTION_BAD) {
        conn_fail(c, PQerrorMessage(c->pgconn));
        return;
    }
    /* As if PQconnectPoll had answered PGRES_POLLING_WRITING, as libpq asks. */
    conn_poll_watch(c, EV_WRITE);
}

static void conn_send_query(struct pg_conn *c, struct sg_pg_query *q)
{
    q->state = Q_RUNNING;
    q->conn = c;
    c->query = q;
    c->cmd = CMD_QUERY;
    if (!PQsendQueryPrepared(c->pgconn, q->statement, q->nparams, (const char *const *)q->params,
                             NULL, NULL, 0) ||
        conn_flush(c) < 0)
        conn_lost(c, PQerrorMessage(c->pgconn));
}

/* LISTEN for the channels registered since the last one, in one simple query. */
static void conn_send_listen(struct pg_conn *c)
{
    struct sg_pg *pg = c->pg;
    char *sql = sg_strdup("");
    for (size_t i = c->listened; i < pg->nlistens; i++) {
        const char *channel = pg->listens[i].channel;
        char *quoted = PQescapeIdentifier(c->pgconn, channel, strlen(channel));
        if (quoted == NULL)
            abort(); /* out of memory: the channel is a static identifier */
        char *more = sg_asprintf("%sLISTEN %s;", sql, quoted);
        PQfreemem(quoted);
        free(sql);
        sql = more;
    }
    c->cmd = CMD_LISTEN;
    c->listen_upto = pg->nlistens;
    int sent = PQsendQuery(c->pgconn, sql);
    free(sql);
    if (!sent || conn_flush(c) < 0)
        conn_lost(c, PQerrorMessage(c->pgconn));
}

/* Gives an idle READY connection its next command: the listener's LISTENs first, then the
 * head of the queue. */
static void conn_pump(struct pg_conn *c)
{
    struct sg_pg *pg = c->pg;
    if (pg->closing || c->state != CONN_READY || c->cmd != CMD_NONE)
        return;
    if (pg->listener == c && c->listened < pg->nlistens) {
        conn_send_listen(c);
        return;
    }
    struct sg_pg_query *q = TAILQ_FIRST(&pg->queue);
    if (q == NULL)
        return;
    TAILQ_REMOVE(&pg->queue, q, link);
    pg->queued--;
    conn_send_query(c, q);
}

/* Keeps one result of the command running: the first error, else the last. */
static void conn_keep_result(struct pg_conn *c, PGresult *res)
{
    if (c->res != NULL && PQresultStatus(c->res) == PGRES_FATAL_ERROR) {
        PQclear(res);
        return;
    }
    PQclear(c->res);
    c->res = res;
}

/* The command running has all its results. It may close the connection, or start another
 * command on it. */
static void conn_command_done(struct pg_conn *c)
{
    struct sg_pg *pg = c->pg;
    PGresult *res = c->res;
    enum pg_command cmd = c->cmd;
    c->res = NULL;
    c->cmd = CMD_NONE;
    bool lost;
    enum sg_pg_status status = result_status(res, &lost);
    if (cmd == CMD_QUERY) {
        struct sg_pg_query *q = c->query;
        c->query = NULL;
        char *message = status == SG_PG_OK ? NULL : result_message(res);
        char *why = lost ? sg_strdup(message) : NULL;
        query_end(q, status, res, message);
        if (lost)
            conn_lost(c, why);
        free(why);
        return;
    }
    if (status != SG_PG_OK) {
        char *message = result_message(res);
        const char *what = cmd == CMD_PREPARE ? pg->statements[c->step].name : "LISTEN";
        char *why = sg_asprintf("%s: %s", what, message);
        PQclear(res);
        conn_fail(c, why);
        free(why);
        free(message);
        return;
    }
    PQclear(res);
    if (cmd == CMD_PREPARE) {
        c->step++;
        conn_setup_next(c);
        return;
    }
    for (size_t i = c->listened; i < c->listen_upto; i++)
        pg->listens[i].resync_due = true;
    pg->resync_due = true;
    sg_log_fields(SG_LOG_INFO, "pg_listening",
                  (struct sg_log_field[]){SG_LOG_INT("conn", c->index),
                                          SG_LOG_INT("channels", (int64_t)c->listen_upto)},
                  2);
    c->listened = c->listen_upto;
}

/*
 * Reads what arrived. Over TLS, OpenSSL may keep part of a record that libpq's buffer had no room
 * for: the socket then shows nothing more to read, so the read is repeated while OpenSSL holds
 * bytes (bounded: each round takes at least what libpq's buffer grows by).
 */
static bool conn_consume(struct pg_conn *c)
{
    for (int round = 0; round < 64; round++) {
        if (!PQconsumeInput(c->pgconn))
            return false;
        SSL *ssl = PQsslInUse(c->pgconn) ? PQsslStruct(c->pgconn, "OpenSSL") : NULL;
        if (ssl == NULL || SSL_pending(ssl) == 0)
            return true;
    }
    return true;
}

static void conn_collect_notes(struct pg_conn *c)
{
    PGnotify *n;
    while ((n = PQnotifies(c->pgconn)) != NULL) {
        struct pg_note *note = sg_malloc(sizeof(*note));
        note->notify = n;
        TAILQ_INSERT_TAIL(&c->pg->notes, note, link);
    }
}

/*
 * The socket is readable (or, for the write event, writable): what arrived
 * is consumed, notifications collected, pending output flushed, and the
 * results of the command running taken as long as libpq has them whole.
 */
static void conn_io(struct pg_conn *c, short what)
{
    unsigned generation = c->generation;
    if ((what & EV_READ) && !conn_consume(c)) {
        conn_broken(c, PQerrorMessage(c->pgconn));
        return;
    }
    conn_collect_notes(c);
    if (c->flushing && conn_flush(c) < 0) {
        conn_broken(c, PQerrorMessage(c->pgconn));
        return;
    }
    while (c->cmd != CMD_NONE && !PQisBusy(c->pgconn)) {
        PGresult *res = PQgetResult(c->pgconn);
        if (res == NULL) {
            conn_command_done(c);
            if (c->generation != generation)
                return;
            continue;
        }
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            PQclear(res);
            conn_broken(c, "COPY is not supported");
            return;
        }
        conn_keep_result(c, res);
    }
    conn_collect_notes(c);
    if (PQstatus(c->pgconn) == CONNECTION_BAD) {
        conn_broken(c, PQerrorMessage(c->pgconn));
        return;
    }
    conn_pump(c);
}

/* The read and write events of a SETUP or READY connection. */
static void on_io(evutil_socket_t fd, short what, void *arg)
{
    struct pg_conn *c = arg;
    struct sg_pg *pg = c->pg;
    conn_io(c, what);
    deliver(pg);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    struct pg_conn *c = arg;
    struct sg_pg *pg = c->pg;
    switch (PQconnectPoll(c->pgconn)) {
    case PGRES_POLLING_READING:
        conn_poll_watch(c, EV_READ);
        break;
    case PGRES_POLLING_WRITING:
        conn_poll_watch(c, EV_WRITE);
        break;
    case PGRES_POLLING_OK:
        conn_connected(c);
        break;
    default:
        conn_fail(c, PQerrorMessage(c->pgconn));
        break;
    }
    deliver(pg);
}

/* WAIT: the next attempt is due. CONNECTING, SETUP: the attempt took too long. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct pg_conn *c = arg;
    struct sg_pg *pg = c->pg;
    if (c->state == CONN_WAIT) {
        conn_start(c);
    } else if (c->state != CONN_READY) {
        char *why =
            sg_asprintf("no connection within connect_timeout_ms (%u)", pg->connect_timeout_ms);
        conn_fail(c, why);
        free(why);
    }
    deliver(pg);
}

/*
 * A query's deadline passed. Queued, it leaves the queue; running, its
 * connection is closed (libpq 15 cannot cancel without blocking) and remade
 * at once; the server's statement_timeout ends the statement there.
 */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct sg_pg_query *q = arg;
    struct sg_pg *pg = q->pg;
    assert(q->magic == PG_QUERY_MAGIC);
    int64_t ms = (sg_mono_us() - q->started_us) / 1000;
    char *message = sg_asprintf("deadline passed after %lld ms", (long long)ms);
    if (q->state == Q_QUEUED) {
        TAILQ_REMOVE(&pg->queue, q, link);
        pg->queued--;
        query_end(q, SG_PG_TIMEOUT, NULL, message);
    } else {
        assert(q->state == Q_RUNNING);
        struct pg_conn *c = q->conn;
        c->query = NULL;
        query_end(q, SG_PG_TIMEOUT, NULL, message);
        sg_metrics_count(PG_CLOSES_METRIC, "reason", "deadline");
        conn_close(c);
        conn_start(c);
    }
    deliver(pg);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct sg_pg *pg = arg;
    if (!TAILQ_EMPTY(&pg->queue) && !pg_reachable(pg))
        queue_fail_all(pg, "database unavailable: every connection is waiting to retry");
    for (unsigned i = 0; i < pg->nconns; i++)
        conn_pump(&pg->conns[i]);
    deliver(pg);
}

/* ---- the API ---- */

struct sg_pg *sg_pg_new(struct event_base *base, const struct sg_pg_config *cfg,
                        const struct sg_pg_statement *statements, size_t count, char *errbuf,
                        size_t errlen)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(cfg->conninfo != NULL ? cfg->conninfo : "", &err);
    if (opts == NULL) {
        conninfo_error(errbuf, errlen, err);
        PQfreemem(err);
        return NULL;
    }
    struct sg_pg *pg = sg_calloc(1, sizeof(*pg));
    pg->magic = PG_MAGIC;
    pg->base = base;
    pg->statements = statements;
    pg->nstatements = count;
    pg->statement_timeout_ms =
        cfg->statement_timeout_ms ? cfg->statement_timeout_ms : PG_DEFAULT_MS;
    pg->connect_timeout_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : PG_DEFAULT_MS;
    params_build(pg, opts);
    PQconninfoFree(opts);
    pg->nconns = cfg->pool_size < 1             ? 1
                 : cfg->pool_size > PG_POOL_MAX ? PG_POOL_MAX
                                                : cfg->pool_size;
    pg->conns = sg_calloc(pg->nconns, sizeof(*pg->conns));
    TAILQ_INIT(&pg->queue);
    TAILQ_INIT(&pg->done);
    TAILQ_INIT(&pg->notes);
    pg->kick = event_new(base, -1, 0, on_kick, pg);
    for (unsigned i = 0; i < pg->nconns; i++) {
        struct pg_conn *c = &pg->conns[i];
        c->pg = pg;
        c->index = i;
        c->timer = evtimer_new(base, on_timer, c);
    }
    for (unsigned i = 0; i < pg->nconns; i++)
        conn_start(&pg->conns[i]);
    return pg;
}

/* Ends every query still pending, synchronously: those finished with their result, the others
 * with UNAVAILABLE. A callback may queue more: they are ended too. */
static void pg_end_all(struct sg_pg *pg)
{
    for (;;) {
        struct sg_pg_query *q = TAILQ_FIRST(&pg->done);
        if (q != NULL) {
            TAILQ_REMOVE(&pg->done, q, link);
            query_call(q);
            continue;
        }
        for (unsigned i = 0; q == NULL && i < pg->nconns; i++) {
            q = pg->conns[i].query;
            pg->conns[i].query = NULL;
        }
        if (q == NULL && (q = TAILQ_FIRST(&pg->queue)) != NULL) {
            TAILQ_REMOVE(&pg->queue, q, link);
            pg->queued--;
        }
        if (q == NULL)
            return;
        query_end(q, SG_PG_UNAVAILABLE, NULL, sg_strdup("the pool was freed"));
    }
}

void sg_pg_free(struct sg_pg *pg)
{
    if (pg == NULL)
        return;
    assert(pg->magic == PG_MAGIC);
    pg->closing = true;
    pg_end_all(pg);
    for (unsigned i = 0; i < pg->nconns; i++) {
        conn_close(&pg->conns[i]);
        event_free(pg->conns[i].timer);
    }
    struct pg_note *note;
    while ((note = TAILQ_FIRST(&pg->notes)) != NULL) {
        TAILQ_REMOVE(&pg->notes, note, link);
        PQfreemem(note->notify);
        free(note);
    }
    event_free(pg->kick);
    for (size_t i = 0; pg->keywords[i] != NULL; i++) {
        free(pg->keywords[i]);
        free(pg->values[i]);
    }
    free(pg->keywords);
    free(pg->values);
    free(pg->listens);
    free(pg->conns);
    pg->listens = NULL;
    pg->nlistens = 0;
    if (pg->delivering)
        return; /* freed by deliver() on its way out */
    pg->magic = 0;
    free(pg);
}

struct sg_pg_query *sg_pg_exec(struct sg_pg *pg, const char *statement, int nparams,
                               const char *const *values, const int *lengths, unsigned timeout_ms,
                               sg_pg_result_fn fn, void *arg)
{
    assert(pg->magic == PG_MAGIC);
    struct sg_pg_query *q = sg_calloc(1, sizeof(*q));
    q->magic = PG_QUERY_MAGIC;
    q->pg = pg;
    q->statement = sg_strdup(statement);
    q->nparams = nparams > 0 ? nparams : 0;
    q->params = sg_calloc(q->nparams + 1, sizeof(char *));
    for (int i = 0; i < q->nparams; i++) {
        if (values[i] != NULL)
            q->params[i] =
                lengths != NULL ? sg_strndup(values[i], (size_t)lengths[i]) : sg_strdup(values[i]);
    }
    q->fn = fn;
    q->arg = arg;
    q->started_us = sg_mono_us();
    q->deadline = evtimer_new(pg->base, on_deadline, q);
    /* The loop's cached time may be well behind when a burst of work runs between polls: the
     * deadline counts from now. */
    event_base_update_cache_time(pg->base);
    struct timeval tv = ms_tv(timeout_ms ? timeout_ms : pg->statement_timeout_ms);
    evtimer_add(q->deadline, &tv);
    q->state = Q_QUEUED;
    TAILQ_INSERT_TAIL(&pg->queue, q, link);
    pg->queued++;
    kick(pg);
    return q;
}

void sg_pg_cancel(struct sg_pg_query *q)
{
    if (q == NULL)
        return;
    assert(q->magic == PG_QUERY_MAGIC);
    struct sg_pg *pg = q->pg;
    switch (q->state) {
    case Q_QUEUED:
        TAILQ_REMOVE(&pg->queue, q, link);
        pg->queued--;
        query_free(q);
        break;
    case Q_DONE:
        TAILQ_REMOVE(&pg->done, q, link);
        query_free(q);
        break;
    case Q_RUNNING: /* its connection is busy until the result comes: dropped then */
    case Q_CALLING:
        q->fn = NULL;
        break;
    }
}

void sg_pg_listen(struct sg_pg *pg, const char *channel, sg_pg_notify_fn fn,
                  void (*on_resync)(void *arg), void *arg)
{
    assert(pg->magic == PG_MAGIC);
    pg->listens = sg_realloc(pg->listens, (pg->nlistens + 1) * sizeof(*pg->listens));
    pg->listens[pg->nlistens++] =
        (struct pg_listen){.channel = channel, .fn = fn, .on_resync = on_resync, .arg = arg};
    listener_pick(pg);
    kick(pg);
}

bool sg_pg_available(const struct sg_pg *pg)
{
    for (unsigned i = 0; i < pg->nconns; i++) {
        if (pg->conns[i].state == CONN_READY)
            return true;
    }
    return false;
}

void sg_pg_stats(const struct sg_pg *pg, unsigned *up, unsigned *queued)
{
    unsigned n = 0;
    for (unsigned i = 0; i < pg->nconns; i++)
        n += pg->conns[i].state == CONN_READY;
    if (up != NULL)
        *up = n;
    if (queued != NULL)
        *queued = pg->queued;
}
