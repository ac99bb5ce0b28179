/*
 * The PostgreSQL pool (gateway/pg.c) against a real PostgreSQL, no mocks.
 * tests/integration/pg_pool.test.js starts the server (lib/pg.js), makes a
 * fresh database per case and passes its conninfo in
 * SSOGATE_TEST_PG_CONNINFO.
 *
 * usage: test_pg CASE
 *   basic concurrent sql_error prepare_fails timeout cancel notify
 *   free_pending large                 need the server
 *   unreachable silent                 need nothing (a closed port, a mute one)
 *   restart                            commands on stdin, driven by the node test
 *
 * Each case prints "ok - ..." lines and exits 0, or stops at the first
 * "not ok - ..." line with status 1. A watchdog bounds every case. A 1 ms
 * repeating timer runs on the same loop throughout: the largest gap between
 * its ticks says whether anything blocked the loop.
 * SSOGATE_TEST_SLOWNESS (sanitizer builds) scales every time bound.
 */
#include "ssogate/common.h"
#include "ssogate/log.h"
#include "ssogate/pg.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <errno.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct event_base *base;
static unsigned slowness = 1;
static const char *conninfo;
static bool in_exec; /* a callback must never run inside sg_pg_exec */

static int64_t last_tick_us;
static int64_t max_gap_us;

/* ---- reporting ---- */

static void fail_at(const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5), noreturn));

static void fail_at(const char *file, int line, const char *expr, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    printf("not ok - %s:%d: %s: %s\n", file, line, expr, msg);
    fflush(stdout);
    exit(1);
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail_at(__FILE__, __LINE__, #cond, __VA_ARGS__);                                       \
    } while (0)

static void ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ok(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("ok - ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
}

/* ---- the loop ---- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    int64_t now = sg_mono_us();
    if (last_tick_us != 0 && now - last_tick_us > max_gap_us)
        max_gap_us = now - last_tick_us;
    last_tick_us = now;
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    printf("not ok - watchdog: the case did not end within %u s\n", *(unsigned *)arg);
    fflush(stdout);
    _exit(1);
}

static unsigned ms(unsigned n)
{
    return n * slowness;
}

/* Timers fire up to a few ms early: libevent reads CLOCK_MONOTONIC_COARSE. */
static int64_t elapsed_ms(int64_t since_us)
{
    return (sg_mono_us() - since_us) / 1000;
}

/* Runs the loop until *counter reaches target or ms pass; returns whether it did. */
static bool wait_count(const unsigned *counter, unsigned target, unsigned limit_ms)
{
    int64_t end = sg_mono_us() + (int64_t)limit_ms * 1000;
    while (*counter < target) {
        if (sg_mono_us() > end)
            return false;
        event_base_loop(base, EVLOOP_ONCE);
    }
    return true;
}

static void run_for(unsigned n_ms)
{
    int64_t end = sg_mono_us() + (int64_t)n_ms * 1000;
    while (sg_mono_us() < end)
        event_base_loop(base, EVLOOP_ONCE);
}

static void gaps_reset(void)
{
    last_tick_us = 0;
    max_gap_us = 0;
}

/* ---- queries ---- */

static const struct sg_pg_statement statements[] = {
    {"echo", "SELECT $1::int + $2::int, $3::text, ($4::text IS NULL)::text", 4},
    {"double", "SELECT $1::int * 2, pg_backend_pid(), pg_sleep(0.005)", 1},
    {"sleep", "SELECT pg_backend_pid(), pg_sleep($1::float8)", 1},
    {"pid", "SELECT pg_backend_pid()", 0},
    {"notify", "SELECT pg_notify($1, $2)", 2},
    {"divide", "SELECT 1 / $1::int", 1},
    {"create", "CREATE TABLE IF NOT EXISTS sg_unique (id int PRIMARY KEY)", 0},
    {"measure", "SELECT length($1::text), md5($1::text)", 1},
    {"repeat", "SELECT repeat('x', $1::int), md5(repeat('x', $1::int))", 1},
};

static const struct sg_pg_statement insert_statements[] = {
    {"insert", "INSERT INTO sg_unique VALUES ($1::int)", 1},
    {"pid", "SELECT pg_backend_pid()", 0},
};

struct rec {
    unsigned *count; /* shared by a batch */
    unsigned calls;
    enum sg_pg_status status;
    char sqlstate[6];
    char cells[3][64];
    int rows;
    int64_t at_us;
};

static unsigned total_done;

static void on_result(void *arg, const struct sg_pg_result *r)
{
    struct rec *rec = arg;
    CHECK(!in_exec, "a callback ran inside sg_pg_exec");
    rec->calls++;
    total_done++;
    if (rec->count != NULL)
        (*rec->count)++;
    rec->status = r->status;
    rec->at_us = sg_mono_us();
    snprintf(rec->sqlstate, sizeof(rec->sqlstate), "%s", r->sqlstate ? r->sqlstate : "");
    CHECK(r->status == SG_PG_OK || r->message != NULL, "a message for every failure");
    CHECK((r->status == SG_PG_OK || r->status == SG_PG_SQL_ERROR) == (r->res != NULL),
          "res with OK and SQL_ERROR only (status %d)", r->status);
    if (r->status == SG_PG_OK) {
        rec->rows = PQntuples(r->res);
        for (int i = 0; i < 3 && i < PQnfields(r->res) && rec->rows > 0; i++)
            snprintf(rec->cells[i], sizeof(rec->cells[i]), "%s", PQgetvalue(r->res, 0, i));
    }
}

static struct sg_pg_query *exec(struct sg_pg *pg, const char *statement, int n,
                                const char *const *values, unsigned timeout_ms, struct rec *rec)
{
    in_exec = true;
    struct sg_pg_query *q = sg_pg_exec(pg, statement, n, values, NULL, timeout_ms, on_result, rec);
    in_exec = false;
    return q;
}

static struct sg_pg *pool_with(const char *info, unsigned size, unsigned statement_ms,
                               unsigned connect_ms, const struct sg_pg_statement *st, size_t n)
{
    struct sg_pg_config cfg = {
        .conninfo = info,
        .pool_size = size,
        .statement_timeout_ms = statement_ms,
        .connect_timeout_ms = connect_ms,
    };
    char err[256] = "";
    struct sg_pg *pg = sg_pg_new(base, &cfg, st, n, err, sizeof(err));
    CHECK(pg != NULL, "sg_pg_new: %s", err);
    return pg;
}

static struct sg_pg *pool(unsigned size, unsigned statement_ms)
{
    return pool_with(conninfo, size, statement_ms, ms(5000), statements, SG_ARRAY_LEN(statements));
}

static unsigned pool_up(const struct sg_pg *pg)
{
    unsigned up;
    sg_pg_stats(pg, &up, NULL);
    return up;
}

/* Runs the loop until n connections are up. */
static void wait_up(struct sg_pg *pg, unsigned n)
{
    int64_t end = sg_mono_us() + (int64_t)ms(10000) * 1000;
    while (pool_up(pg) < n) {
        CHECK(sg_mono_us() < end, "%u connection(s) up within 10 s (%u)", n, pool_up(pg));
        event_base_loop(base, EVLOOP_ONCE);
    }
}

/* Runs one query to its end and returns its record. */
static struct rec run1(struct sg_pg *pg, const char *statement, int n, const char *const *values,
                       unsigned timeout_ms)
{
    struct rec rec = {0};
    exec(pg, statement, n, values, timeout_ms, &rec);
    CHECK(wait_count(&rec.calls, 1, ms(15000)), "%s answered within 15 s", statement);
    return rec;
}

static const char *backend_pid(struct sg_pg *pg, char *out, size_t len)
{
    struct rec r = run1(pg, "pid", 0, NULL, 0);
    CHECK(r.status == SG_PG_OK, "pid: status %d", r.status);
    snprintf(out, len, "%s", r.cells[0]);
    return out;
}

/* ---- cases ---- */

static void case_basic(void)
{
    struct sg_pg *pg = pool(2, 5000);
    const char *values[] = {"40", "2", "héllo wörld", NULL};
    struct rec r = run1(pg, "echo", 4, values, 0);
    CHECK(r.status == SG_PG_OK, "echo: status %d", r.status);
    CHECK(r.rows == 1, "one row (%d)", r.rows);
    CHECK(strcmp(r.cells[0], "42") == 0, "40 + 2 (%s)", r.cells[0]);
    CHECK(strcmp(r.cells[1], "héllo wörld") == 0, "text in UTF-8 (%s)", r.cells[1]);
    CHECK(strcmp(r.cells[2], "true") == 0, "NULL parameter (%s)", r.cells[2]);
    CHECK(sg_pg_available(pg), "available");
    ok("a prepared SELECT with parameters (text, UTF-8, NULL)");

    /* lengths: only the first bytes of a parameter count */
    struct rec r2 = {0};
    const char *v2[] = {"12345", "1", "abcdef", "x"};
    const int lengths[] = {2, 1, 3, 1};
    in_exec = true;
    sg_pg_exec(pg, "echo", 4, v2, lengths, 0, on_result, &r2);
    in_exec = false;
    CHECK(wait_count(&r2.calls, 1, ms(5000)), "answered");
    CHECK(r2.status == SG_PG_OK && strcmp(r2.cells[0], "13") == 0 &&
              strcmp(r2.cells[1], "abc") == 0 && strcmp(r2.cells[2], "false") == 0,
          "lengths honoured (%s, %s, %s)", r2.cells[0], r2.cells[1], r2.cells[2]);
    ok("parameter lengths");

    struct rec r3 = run1(pg, "echo", 4, values, 0);
    CHECK(r3.status == SG_PG_OK, "echo again");
    unsigned up, queued;
    sg_pg_stats(pg, &up, &queued);
    CHECK(up >= 1 && up <= 2 && queued == 0, "stats: up %u queued %u", up, queued);
    ok("stats: %u up, %u queued", up, queued);
    sg_pg_free(pg);
}

static void case_concurrent(void)
{
    enum { N = 50 };
    struct sg_pg *pg = pool(3, 5000);
    wait_up(pg, 3);
    static struct rec recs[N];
    unsigned done = 0;
    char values[N][16];
    for (int i = 0; i < N; i++) {
        recs[i] = (struct rec){.count = &done};
        snprintf(values[i], sizeof(values[i]), "%d", i);
        const char *v[] = {values[i]};
        exec(pg, "double", 1, v, 0, &recs[i]);
    }
    unsigned queued;
    sg_pg_stats(pg, NULL, &queued);
    CHECK(queued == N, "all %d queued before the loop runs (%u)", N, queued);
    CHECK(wait_count(&done, N, ms(20000)), "%d answers (%u)", N, done);
    char pids[3][64] = {"", "", ""};
    int distinct = 0;
    for (int i = 0; i < N; i++) {
        CHECK(recs[i].calls == 1, "query %d answered once (%u)", i, recs[i].calls);
        CHECK(recs[i].status == SG_PG_OK, "query %d ok (%d)", i, recs[i].status);
        CHECK(atoi(recs[i].cells[0]) == 2 * i, "query %d: %s", i, recs[i].cells[0]);
        bool seen = false;
        for (int j = 0; j < distinct; j++)
            seen = seen || strcmp(pids[j], recs[i].cells[1]) == 0;
        if (!seen) {
            CHECK(distinct < 3, "at most 3 server processes");
            snprintf(pids[distinct++], sizeof(pids[0]), "%s", recs[i].cells[1]);
        }
    }
    CHECK(distinct == 3, "the 3 connections all served (%d)", distinct);
    /* FIFO: a query never starts after one queued later, so the first answer is one of the
     * first three sent. */
    int first = 0;
    for (int i = 1; i < N; i++)
        if (recs[i].at_us < recs[first].at_us)
            first = i;
    CHECK(first < 3, "the first answer is of the first three queued (%d)", first);
    ok("%d concurrent queries over a pool of 3: every answer right, 3 connections used", N);
    sg_pg_free(pg);
}

static void case_sql_error(void)
{
    struct sg_pg *setup = pool(1, 5000);
    struct rec c = run1(setup, "create", 0, NULL, 0);
    CHECK(c.status == SG_PG_OK, "CREATE TABLE (%d)", c.status);
    sg_pg_free(setup);

    struct sg_pg *pg =
        pool_with(conninfo, 2, 5000, ms(5000), insert_statements, SG_ARRAY_LEN(insert_statements));
    const char *one[] = {"1"};
    struct rec r1 = run1(pg, "insert", 1, one, 0);
    CHECK(r1.status == SG_PG_OK, "first insert (%d)", r1.status);
    struct rec r2 = run1(pg, "insert", 1, one, 0);
    CHECK(r2.status == SG_PG_SQL_ERROR, "second insert fails (%d)", r2.status);
    CHECK(strcmp(r2.sqlstate, "23505") == 0, "unique_violation (%s)", r2.sqlstate);
    ok("unique violation: SG_PG_SQL_ERROR, sqlstate 23505");

    struct rec r3 = run1(pg, "no_such_statement", 0, NULL, 0);
    CHECK(r3.status == SG_PG_SQL_ERROR && strcmp(r3.sqlstate, "26000") == 0,
          "unknown statement: %d %s", r3.status, r3.sqlstate);
    struct rec r4 = run1(pg, "insert", 0, NULL, 0);
    CHECK(r4.status == SG_PG_SQL_ERROR && strcmp(r4.sqlstate, "08P01") == 0,
          "missing parameter: %d %s", r4.status, r4.sqlstate);
    const char *bad[] = {"not a number"};
    struct rec r5 = run1(pg, "insert", 1, bad, 0);
    CHECK(r5.status == SG_PG_SQL_ERROR && strcmp(r5.sqlstate, "22P02") == 0, "invalid input: %d %s",
          r5.status, r5.sqlstate);
    ok("unknown statement 26000, missing parameter 08P01, invalid input 22P02: SQL errors");
    sg_pg_free(pg);

    pg = pool(1, 5000);
    char before[64], after[64];
    backend_pid(pg, before, sizeof(before));
    const char *zero[] = {"0"};
    struct rec r6 = run1(pg, "divide", 1, zero, 0);
    CHECK(r6.status == SG_PG_SQL_ERROR && strcmp(r6.sqlstate, "22012") == 0,
          "division by zero: %d %s", r6.status, r6.sqlstate);
    backend_pid(pg, after, sizeof(after));
    CHECK(strcmp(before, after) == 0, "the connection survives SQL errors (%s, %s)", before, after);
    ok("division by zero 22012; the connection is kept");
    sg_pg_free(pg);
}

static void case_prepare_fails(void)
{
    static const struct sg_pg_statement broken[] = {
        {"missing", "SELECT * FROM no_such_table", 0},
    };
    struct sg_pg *pg = pool_with(conninfo, 2, 5000, ms(5000), broken, 1);
    run_for(ms(300));
    CHECK(!sg_pg_available(pg), "no connection is up while a statement cannot be prepared");
    struct rec r = run1(pg, "missing", 0, NULL, 0);
    CHECK(r.status == SG_PG_UNAVAILABLE, "SG_PG_UNAVAILABLE (%d)", r.status);
    ok("a statement that cannot be prepared: the pool stays down, queries unavailable");
    sg_pg_free(pg);
}

static void case_timeout(void)
{
    /* The deadline passes while the query runs: TIMEOUT on time, the connection remade. */
    struct sg_pg *pg = pool(1, 5000);
    char before[64], after[64];
    backend_pid(pg, before, sizeof(before));
    const char *three[] = {"3"};
    int64_t t0 = sg_mono_us();
    struct rec r = run1(pg, "sleep", 1, three, 300);
    int64_t took = (r.at_us - t0) / 1000;
    CHECK(r.status == SG_PG_TIMEOUT, "TIMEOUT (%d)", r.status);
    CHECK(took >= 290 && took <= 300 + ms(150), "within the deadline and a margin (%lld ms)",
          (long long)took);
    ok("pg_sleep(3) with a 300 ms deadline: SG_PG_TIMEOUT after %lld ms", (long long)took);
    t0 = sg_mono_us();
    backend_pid(pg, after, sizeof(after));
    CHECK(strcmp(before, after) != 0, "a new server process after the close (%s)", after);
    ok("the pool works after, on a new connection (%lld ms)", (long long)elapsed_ms(t0));

    /* A queued query's deadline passes while another runs. */
    const char *one[] = {"1"};
    struct rec running = {0}, queued = {0};
    t0 = sg_mono_us();
    exec(pg, "sleep", 1, one, ms(3000), &running);
    exec(pg, "pid", 0, NULL, 150, &queued);
    CHECK(wait_count(&queued.calls, 1, ms(3000)), "the queued query ends");
    took = (queued.at_us - t0) / 1000;
    CHECK(queued.status == SG_PG_TIMEOUT && running.calls == 0,
          "queued: TIMEOUT (%d) while the other runs", queued.status);
    CHECK(took >= 140 && took <= 150 + ms(150), "on time (%lld ms)", (long long)took);
    CHECK(wait_count(&running.calls, 1, ms(5000)), "the running query ends");
    CHECK(running.status == SG_PG_OK, "the running query: OK (%d)", running.status);
    ok("a queued query past its deadline: SG_PG_TIMEOUT after %lld ms, the running one unharmed",
       (long long)took);
    sg_pg_free(pg);

    /* The server's statement_timeout: TIMEOUT with 57014, the connection kept. */
    pg = pool(1, 300);
    backend_pid(pg, before, sizeof(before));
    t0 = sg_mono_us();
    r = run1(pg, "sleep", 1, three, ms(3000));
    took = (r.at_us - t0) / 1000;
    CHECK(r.status == SG_PG_TIMEOUT && strcmp(r.sqlstate, "57014") == 0,
          "the server's statement_timeout: %d %s", r.status, r.sqlstate);
    CHECK(took >= 290 && took < ms(2000), "after about 300 ms (%lld)", (long long)took);
    backend_pid(pg, after, sizeof(after));
    CHECK(strcmp(before, after) == 0, "the same connection (%s, %s)", before, after);
    ok("statement_timeout set on the connection: 57014 after %lld ms, connection kept",
       (long long)took);
    sg_pg_free(pg);
}

static void case_cancel(void)
{
    struct sg_pg *pg = pool(1, 5000);
    char before[64], after[64];
    backend_pid(pg, before, sizeof(before));
    struct rec a = {0}, b = {0}, c = {0}, d = {0};
    const char *v[] = {"0.3"};
    struct sg_pg_query *qa = exec(pg, "sleep", 1, v, 0, &a);
    struct sg_pg_query *qb = exec(pg, "pid", 0, NULL, 0, &b);
    sg_pg_cancel(qb); /* queued */
    exec(pg, "pid", 0, NULL, 0, &c);
    run_for(80);
    sg_pg_cancel(qa); /* running */
    struct sg_pg_query *qd = exec(pg, "pid", 0, NULL, 0, &d);
    sg_pg_cancel(qd); /* before the loop ever ran */
    sg_pg_cancel(NULL);
    CHECK(wait_count(&c.calls, 1, ms(5000)), "the query after them is answered");
    run_for(100);
    CHECK(a.calls == 0 && b.calls == 0 && d.calls == 0, "no callback for cancelled queries");
    CHECK(c.status == SG_PG_OK, "the next query: OK (%d)", c.status);
    backend_pid(pg, after, sizeof(after));
    CHECK(strcmp(before, after) == 0, "a cancelled running query keeps its connection");
    ok("sg_pg_cancel: queued, running and never-started queries call nothing back");
    sg_pg_free(pg);
}

/* A parameter larger than the socket buffers (PQflush answers 1: the write event), an answer
 * larger than libpq's read buffer (and, over TLS, than a TLS record). */
static unsigned large_calls;
static size_t large_len;
static char large_md5[40];

static void on_large(void *arg, const struct sg_pg_result *r)
{
    large_calls++;
    CHECK(r->status == SG_PG_OK, "large: status %d (%s)", r->status, r->message);
    large_len = strlen(PQgetvalue(r->res, 0, 0));
    snprintf(large_md5, sizeof(large_md5), "%s", PQgetvalue(r->res, 0, 1));
}

static void case_large(void)
{
    enum { BIG = 8 << 20 };
    struct sg_pg *pg = pool(2, 20000);
    char *big = sg_malloc(BIG + 1);
    memset(big, 'x', BIG);
    big[BIG] = '\0';
    const char *v[] = {big};
    struct rec r = {0};
    exec(pg, "measure", 1, v, ms(20000), &r);
    free(big); /* the parameters were copied */
    CHECK(wait_count(&r.calls, 1, ms(30000)), "answered");
    CHECK(r.status == SG_PG_OK && atoi(r.cells[0]) == BIG, "8 MiB parameter sent whole (%d, %s)",
          r.status, r.cells[0]);
    ok("an 8 MiB parameter");

    char count[16];
    snprintf(count, sizeof(count), "%d", BIG / 2);
    const char *n[] = {count};
    in_exec = true;
    sg_pg_exec(pg, "repeat", 1, n, NULL, ms(20000), on_large, NULL);
    in_exec = false;
    CHECK(wait_count(&large_calls, 1, ms(30000)), "answered");
    CHECK(large_len == BIG / 2, "a 4 MiB answer read whole (%zu)", large_len);
    struct rec m = {0};
    const char *again[] = {count};
    exec(pg, "repeat", 1, again, ms(20000), &m);
    CHECK(wait_count(&m.calls, 1, ms(30000)) && m.status == SG_PG_OK, "answered");
    ok("a 4 MiB answer (md5 %s)", large_md5);
    sg_pg_free(pg);
}

struct listener {
    unsigned resyncs;
    unsigned notes;
    char channel[64];
    char payload[128];
};

static void on_note(void *arg, const char *channel, const char *payload)
{
    struct listener *l = arg;
    l->notes++;
    snprintf(l->channel, sizeof(l->channel), "%s", channel);
    snprintf(l->payload, sizeof(l->payload), "%s", payload);
}

static void on_resync(void *arg)
{
    struct listener *l = arg;
    l->resyncs++;
}

static void case_notify(void)
{
    struct sg_pg *pg = pool(2, 5000);
    struct listener one = {0}, two = {0};
    sg_pg_listen(pg, "sg_test_one", on_note, on_resync, &one);
    CHECK(wait_count(&one.resyncs, 1, ms(10000)), "on_resync once the LISTEN is in effect");
    const char *n1[] = {"sg_test_one", "héllo"};
    struct rec r = run1(pg, "notify", 2, n1, 0);
    CHECK(r.status == SG_PG_OK, "pg_notify (%d)", r.status);
    CHECK(wait_count(&one.notes, 1, ms(5000)), "the notification arrives");
    CHECK(strcmp(one.channel, "sg_test_one") == 0 && strcmp(one.payload, "héllo") == 0,
          "channel and payload (%s, %s)", one.channel, one.payload);
    ok("NOTIFY sent through the pool arrives at the listener");

    sg_pg_listen(pg, "sg_test_two", on_note, on_resync, &two);
    CHECK(wait_count(&two.resyncs, 1, ms(10000)), "a later LISTEN is issued too");
    const char *n2[] = {"sg_test_two", ""};
    run1(pg, "notify", 2, n2, 0);
    const char *n3[] = {"sg_test_other", "x"};
    run1(pg, "notify", 2, n3, 0);
    CHECK(wait_count(&two.notes, 1, ms(5000)), "the second channel's notification arrives");
    run_for(100);
    CHECK(one.notes == 1 && two.notes == 1, "each channel to its own callback (%u, %u)", one.notes,
          two.notes);
    CHECK(one.resyncs == 1, "no resync without a reconnection (%u)", one.resyncs);
    ok("a second channel; a channel nobody listens to reaches nobody");
    sg_pg_free(pg);
}

static unsigned closed_port(int *keep, bool listening)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "bind: %s", strerror(errno));
    socklen_t len = sizeof(sa);
    CHECK(getsockname(fd, (struct sockaddr *)&sa, &len) == 0, "getsockname");
    if (listening) {
        CHECK(listen(fd, 16) == 0, "listen: %s", strerror(errno));
        *keep = fd;
    } else {
        close(fd);
    }
    return ntohs(sa.sin_port);
}

static void check_gaps(void)
{
    int64_t limit = 50 * 1000 * (int64_t)slowness;
    CHECK(max_gap_us < limit, "the loop never blocked: largest gap %lld us", (long long)max_gap_us);
    ok("the 1 ms timer kept firing: largest gap %lld us", (long long)max_gap_us);
}

static void case_unreachable(void)
{
    unsigned port = closed_port(NULL, false);
    char info[128];
    snprintf(info, sizeof(info), "host=127.0.0.1 port=%u user=postgres dbname=postgres", port);
    gaps_reset();
    struct sg_pg *pg = pool_with(info, 3, 5000, 1000, statements, SG_ARRAY_LEN(statements));
    unsigned done = 0;
    struct rec recs[5];
    int64_t t0 = sg_mono_us();
    for (int i = 0; i < 5; i++) {
        recs[i] = (struct rec){.count = &done};
        exec(pg, "pid", 0, NULL, 0, &recs[i]);
    }
    CHECK(wait_count(&done, 5, ms(3000)), "5 answers (%u)", done);
    int64_t took = elapsed_ms(t0);
    for (int i = 0; i < 5; i++)
        CHECK(recs[i].status == SG_PG_UNAVAILABLE, "query %d: UNAVAILABLE (%d)", i, recs[i].status);
    CHECK(took < ms(1000), "at once, not at the deadline (%lld ms)", (long long)took);
    CHECK(!sg_pg_available(pg), "not available");
    ok("closed port: queries end with SG_PG_UNAVAILABLE after %lld ms", (long long)took);

    /* Through the backoff: every query ends quickly, whatever the connections are doing. */
    for (int round = 0; round < 6; round++) {
        run_for(250);
        struct rec r = {0};
        t0 = sg_mono_us();
        exec(pg, "pid", 0, NULL, 0, &r);
        CHECK(wait_count(&r.calls, 1, ms(3000)), "answered");
        CHECK(r.status == SG_PG_UNAVAILABLE, "UNAVAILABLE (%d)", r.status);
        CHECK(elapsed_ms(t0) < ms(1000), "quickly (%lld ms)", (long long)elapsed_ms(t0));
    }
    ok("during the backoff too");
    sg_pg_free(pg);
    check_gaps();
}

static void case_silent(void)
{
    int fd = -1;
    unsigned port = closed_port(&fd, true); /* accepts TCP (backlog), never answers */
    char info[128];
    snprintf(info, sizeof(info), "host=127.0.0.1 port=%u user=postgres dbname=postgres", port);
    gaps_reset();
    struct sg_pg *pg = pool_with(info, 2, 5000, 300, statements, SG_ARRAY_LEN(statements));
    struct rec quick = {0}, patient = {0};
    int64_t t0 = sg_mono_us();
    exec(pg, "pid", 0, NULL, 100, &quick);
    exec(pg, "pid", 0, NULL, 5000, &patient);
    CHECK(wait_count(&quick.calls, 1, ms(3000)), "the first query ends");
    int64_t took = (quick.at_us - t0) / 1000;
    CHECK(quick.status == SG_PG_TIMEOUT && took >= 90 && took <= 100 + ms(150),
          "its 100 ms deadline: %d after %lld ms", quick.status, (long long)took);
    CHECK(wait_count(&patient.calls, 1, ms(3000)), "the second query ends");
    took = (patient.at_us - t0) / 1000;
    CHECK(patient.status == SG_PG_UNAVAILABLE && took >= 290 && took <= 300 + ms(200),
          "connect_timeout_ms (300): %d after %lld ms", patient.status, (long long)took);
    ok("a server that never answers: deadline %s, then UNAVAILABLE at connect_timeout_ms",
       "honoured");
    sg_pg_free(pg);
    close(fd);
    check_gaps();
}

/* Frees the pool from inside a callback: the rest end there and then. */
static struct sg_pg *freed_in_callback;
static unsigned after_free_calls;

static void on_result_then_free(void *arg, const struct sg_pg_result *r)
{
    on_result(arg, r);
    if (freed_in_callback != NULL) {
        struct sg_pg *pg = freed_in_callback;
        freed_in_callback = NULL;
        unsigned before = total_done;
        sg_pg_free(pg);
        after_free_calls = total_done - before;
    }
}

static void case_free_pending(void)
{
    struct sg_pg *pg = pool(2, 5000);
    wait_up(pg, 2);
    unsigned done = 0;
    struct rec recs[7];
    const char *v[] = {"2"};
    for (int i = 0; i < 7; i++) {
        recs[i] = (struct rec){.count = &done};
        if (i < 2)
            exec(pg, "sleep", 1, v, 0, &recs[i]);
        else
            exec(pg, "pid", 0, NULL, 0, &recs[i]);
    }
    run_for(100);
    CHECK(done == 0, "nothing answered yet (%u)", done);
    sg_pg_free(pg);
    CHECK(done == 7, "all 7 ended inside sg_pg_free (%u)", done);
    for (int i = 0; i < 7; i++)
        CHECK(recs[i].status == SG_PG_UNAVAILABLE, "query %d: UNAVAILABLE (%d)", i, recs[i].status);
    ok("sg_pg_free ends 2 running and 5 queued queries with UNAVAILABLE, synchronously");

    /* A pool still connecting. */
    pg = pool(2, 5000);
    struct rec early = {0};
    exec(pg, "pid", 0, NULL, 0, &early);
    sg_pg_free(pg);
    CHECK(early.calls == 1 && early.status == SG_PG_UNAVAILABLE, "ended by free (%u, %d)",
          early.calls, early.status);
    ok("sg_pg_free of a pool still connecting");

    /* sg_pg_free from a callback. */
    pg = pool(1, 5000);
    wait_up(pg, 1);
    struct rec first = {0}, second = {0}, third = {0};
    freed_in_callback = pg;
    in_exec = true;
    sg_pg_exec(pg, "pid", 0, NULL, NULL, 0, on_result_then_free, &first);
    in_exec = false;
    exec(pg, "pid", 0, NULL, 0, &second);
    exec(pg, "sleep", 1, v, 0, &third);
    CHECK(wait_count(&first.calls, 1, ms(5000)), "the first answer");
    CHECK(second.calls == 1 && third.calls == 1 && after_free_calls == 2,
          "the others ended inside sg_pg_free (%u, %u, %u)", second.calls, third.calls,
          after_free_calls);
    CHECK(third.status == SG_PG_UNAVAILABLE, "the sleeping one: UNAVAILABLE (%d)", third.status);
    run_for(200);
    ok("sg_pg_free from a result callback");
}

/* ---- restart: driven by the node test through stdin ---- */

static struct sg_pg *restart_pg;
static struct listener restart_listener;
static struct event *stdin_ev;
static char line_buf[1024];
static size_t line_len;

struct cmd_query {
    long id;
    int64_t t0;
};

static void on_cmd_result(void *arg, const struct sg_pg_result *r)
{
    struct cmd_query *cq = arg;
    const char *names[] = {"ok", "sql_error", "timeout", "unavailable"};
    printf("{\"event\":\"result\",\"id\":%ld,\"result\":\"%s\",\"ms\":%lld}\n", cq->id,
           names[r->status], (long long)elapsed_ms(cq->t0));
    fflush(stdout);
    free(cq);
}

static void on_restart_note(void *arg, const char *channel, const char *payload)
{
    printf("{\"event\":\"notify\",\"payload\":\"%s\"}\n", payload);
    fflush(stdout);
}

static void on_restart_resync(void *arg)
{
    restart_listener.resyncs++;
    printf("{\"event\":\"resync\",\"n\":%u}\n", restart_listener.resyncs);
    fflush(stdout);
}

/*
 * query ID            SELECT pg_backend_pid(), deadline 2 s
 * notify ID PAYLOAD   SELECT pg_notify('sg_restart', PAYLOAD) (PAYLOAD: no spaces)
 * stats               {"event":"stats","up":N,"queued":N}
 * quit                frees the pool, prints the largest tick gap, exits 0
 */
static void restart_command(char *line)
{
    char word[16] = "", payload[128] = "";
    long id = 0;
    sscanf(line, "%15s %ld %127s", word, &id, payload);
    if (strcmp(word, "query") == 0 || strcmp(word, "notify") == 0) {
        struct cmd_query *cq = sg_calloc(1, sizeof(*cq));
        cq->id = id;
        cq->t0 = sg_mono_us();
        const char *values[] = {"sg_restart", payload};
        bool notify = word[0] == 'n';
        sg_pg_exec(restart_pg, notify ? "notify" : "pid", notify ? 2 : 0, values, NULL, ms(2000),
                   on_cmd_result, cq);
    } else if (strcmp(word, "stats") == 0) {
        unsigned up, queued;
        sg_pg_stats(restart_pg, &up, &queued);
        printf("{\"event\":\"stats\",\"up\":%u,\"queued\":%u}\n", up, queued);
        fflush(stdout);
    } else if (strcmp(word, "quit") == 0) {
        sg_pg_free(restart_pg);
        restart_pg = NULL;
        printf("{\"event\":\"quit\",\"max_gap_us\":%lld}\n", (long long)max_gap_us);
        fflush(stdout);
        event_base_loopbreak(base);
    }
}

static void on_stdin(evutil_socket_t fd, short what, void *arg)
{
    ssize_t n = read(fd, line_buf + line_len, sizeof(line_buf) - 1 - line_len);
    if (n <= 0) {
        restart_command((char[]){"quit"});
        return;
    }
    line_len += (size_t)n;
    line_buf[line_len] = '\0';
    char *nl;
    while (restart_pg != NULL && (nl = strchr(line_buf, '\n')) != NULL) {
        *nl = '\0';
        restart_command(line_buf);
        size_t used = (size_t)(nl + 1 - line_buf);
        memmove(line_buf, nl + 1, line_len - used + 1);
        line_len -= used;
    }
    if (line_len == sizeof(line_buf) - 1)
        line_len = 0; /* an overlong line is dropped */
}

static void case_restart(void)
{
    restart_pg = pool(3, 5000);
    sg_pg_listen(restart_pg, "sg_restart", on_restart_note, on_restart_resync, NULL);
    stdin_ev = event_new(base, STDIN_FILENO, EV_READ | EV_PERSIST, on_stdin, NULL);
    event_add(stdin_ev, NULL);
    printf("{\"event\":\"started\"}\n");
    fflush(stdout);
    gaps_reset();
    event_base_dispatch(base);
    event_free(stdin_ev);
    if (restart_pg != NULL)
        sg_pg_free(restart_pg);
}

static const struct {
    const char *name;
    void (*run)(void);
    bool needs_server;
} cases[] = {
    {"basic", case_basic, true},         {"concurrent", case_concurrent, true},
    {"sql_error", case_sql_error, true}, {"prepare_fails", case_prepare_fails, true},
    {"timeout", case_timeout, true},     {"cancel", case_cancel, true},
    {"notify", case_notify, true},       {"free_pending", case_free_pending, true},
    {"large", case_large, true},         {"unreachable", case_unreachable, false},
    {"silent", case_silent, false},      {"restart", case_restart, true},
};

int main(int argc, char **argv)
{
    const char *slow = getenv("SSOGATE_TEST_SLOWNESS");
    if (slow != NULL && atoi(slow) > 1)
        slowness = (unsigned)atoi(slow);
    conninfo = getenv("SSOGATE_TEST_PG_CONNINFO");
    const char *name = argc > 1 ? argv[1] : "";
    for (size_t i = 0; i < SG_ARRAY_LEN(cases); i++) {
        if (strcmp(cases[i].name, name) != 0)
            continue;
        if (cases[i].needs_server && conninfo == NULL) {
            printf("not ok - %s needs SSOGATE_TEST_PG_CONNINFO\n", name);
            return 1;
        }
        sg_log_set_level(SG_LOG_DEBUG);
        base = event_base_new();
        struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
        struct timeval one_ms = {0, 1000};
        event_add(tick, &one_ms);
        static unsigned watchdog_s;
        watchdog_s = strcmp(name, "restart") == 0 ? 240 * slowness : 60 * slowness;
        struct event *watchdog = evtimer_new(base, on_watchdog, &watchdog_s);
        struct timeval wd = {watchdog_s, 0};
        evtimer_add(watchdog, &wd);
        cases[i].run();
        event_free(watchdog);
        event_free(tick);
        event_base_free(base);
        printf("# %s: done\n", name);
        return 0;
    }
    fprintf(stderr, "usage: test_pg CASE (");
    for (size_t i = 0; i < SG_ARRAY_LEN(cases); i++)
        fprintf(stderr, "%s%s", i ? " " : "", cases[i].name);
    fprintf(stderr, ")\n");
    return 2;
}
