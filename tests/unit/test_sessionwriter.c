/*
 * Unit tests of the session writer (issue 12): the creates and touches of
 * one loop iteration in one commit, the create's callback only once it is
 * committed, and a touch written behind that never brings back a session
 * deleted meanwhile (logged out, revoked, by this process or another).
 */
#include "ssogate/common.h"
#include "ssogate/session.h"
#include "ssogate/sessionwriter.h"
#include "ssogate/store.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <event2/event.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fixture {
    char dir[64];
    struct sg_store *store;
    struct event_base *base;
    struct sg_session_writer *writer;
};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *fx = sg_calloc(1, sizeof(*fx));
    strcpy(fx->dir, "/tmp/sg-writer-XXXXXX");
    if (mkdtemp(fx->dir) == NULL)
        return -1;
    char err[256];
    if (sg_store_open(fx->dir, &fx->store, err, sizeof(err)) != 0)
        return -1;
    fx->base = event_base_new();
    fx->writer = sg_session_writer_new(fx->base, fx->store);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    sg_session_writer_free(fx->writer);
    event_base_free(fx->base);
    sg_store_close(fx->store);
    nftw(fx->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

static struct sg_session record(int64_t now, char *sub)
{
    return (struct sg_session){
        .created_at = now,
        .last_seen = now,
        .idle_timeout_s = 3600,
        .expires_at = now + 43200,
        .idp_issuer = (char *)"https://idp.example",
        .idp_sub = sub,
    };
}

struct written {
    int calls;
    int err;
    struct sg_store *store;
    const char *id;
    int found_when_called; /* sg_session_get's answer inside the callback */
};

static void on_written(void *arg, int err)
{
    struct written *w = arg;
    w->calls++;
    w->err = err;
    w->found_when_called = sg_session_get(w->store, w->id, sg_now_s(), NULL);
}

/* The last_seen of session id as stored. */
static int64_t last_seen(struct sg_store *store, const char *id)
{
    struct sg_session s;
    assert_int_equal(sg_session_get(store, id, sg_now_s(), &s), 0);
    int64_t seen = s.last_seen;
    sg_session_clear(&s);
    return seen;
}

static void test_creates_one_commit(void **state)
{
    struct fixture *fx = *state;
    int64_t now = sg_now_s();
    char ids[3][SG_SESSION_ID_SIZE];
    struct written w[3] = {{0}};
    for (int i = 0; i < 3; i++) {
        sg_session_new_id(ids[i]);
        struct sg_session rec = record(now, (char *)"alice");
        w[i] = (struct written){.store = fx->store, .id = ids[i], .found_when_called = -1};
        assert_non_null(sg_session_writer_create(fx->writer, ids[i], &rec, 0, on_written, &w[i]));
    }
    /* nothing is written, and no callback runs, before the iteration's event */
    assert_int_equal(sg_session_writer_pending(fx->writer), 3);
    assert_int_equal(sg_session_get(fx->store, ids[0], now, NULL), SG_ENOENT);
    assert_int_equal(w[0].calls, 0);
    event_base_loop(fx->base, EVLOOP_NONBLOCK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(w[i].calls, 1);
        assert_int_equal(w[i].err, 0);
        assert_int_equal(w[i].found_when_called, 0); /* committed before the callback */
    }
    assert_int_equal(sg_session_writer_pending(fx->writer), 0);

    /* a cancelled create is written, its callback never runs */
    char id[SG_SESSION_ID_SIZE];
    sg_session_new_id(id);
    struct sg_session rec = record(now, (char *)"bob");
    struct written gone = {.store = fx->store, .id = id};
    sg_session_write_cancel(sg_session_writer_create(fx->writer, id, &rec, 0, on_written, &gone));
    event_base_loop(fx->base, EVLOOP_NONBLOCK);
    assert_int_equal(gone.calls, 0);
    assert_int_equal(sg_session_get(fx->store, id, now, NULL), 0);

    /* an invalid id or record queues nothing */
    assert_null(sg_session_writer_create(fx->writer, "short", &rec, 0, on_written, &gone));
    rec.idp_sub = NULL;
    assert_null(sg_session_writer_create(fx->writer, id, &rec, 0, on_written, &gone));
    assert_int_equal(sg_session_writer_pending(fx->writer), 0);

    /* an id already used fails that create alone */
    struct sg_session again = record(now, (char *)"carol");
    char other[SG_SESSION_ID_SIZE];
    sg_session_new_id(other);
    struct written dup = {.store = fx->store, .id = id}, fresh = {.store = fx->store, .id = other};
    sg_session_writer_create(fx->writer, id, &again, 0, on_written, &dup);
    sg_session_writer_create(fx->writer, other, &again, 0, on_written, &fresh);
    event_base_loop(fx->base, EVLOOP_NONBLOCK);
    assert_int_equal(dup.err, SG_EEXIST);
    assert_int_equal(fresh.err, 0);
    assert_int_equal(fresh.found_when_called, 0);
}

static void test_touch_written_behind(void **state)
{
    struct fixture *fx = *state;
    int64_t now = sg_now_s();
    char id[SG_SESSION_ID_SIZE];
    sg_session_new_id(id);
    struct sg_session rec = record(now - 100, (char *)"alice");
    assert_int_equal(sg_session_create(fx->store, id, &rec), 0);

    /* many touches of one iteration: written once, at its end */
    for (int i = 0; i < 5; i++)
        sg_session_writer_touch(fx->writer, id, now);
    sg_session_writer_touch(fx->writer, "not an id", now);
    assert_int_equal(sg_session_writer_pending(fx->writer), 5);
    assert_int_equal(last_seen(fx->store, id), now - 100);
    event_base_loop(fx->base, EVLOOP_NONBLOCK);
    assert_int_equal(last_seen(fx->store, id), now);

    /* a touch never moves last_seen back */
    sg_session_writer_touch(fx->writer, id, now - 50);
    sg_session_writer_flush(fx->writer);
    assert_int_equal(last_seen(fx->store, id), now);
}

/* Issue 12: a touch queued before a logout (or a revocation by another
 * process) must not bring the session back when it is written. */
static void test_touch_after_delete_does_not_resurrect(void **state)
{
    struct fixture *fx = *state;
    int64_t now = sg_now_s();
    char id[SG_SESSION_ID_SIZE], kept[SG_SESSION_ID_SIZE];
    sg_session_new_id(id);
    sg_session_new_id(kept);
    struct sg_session rec = record(now - 100, (char *)"alice");
    assert_int_equal(sg_session_create(fx->store, id, &rec), 0);
    struct sg_session other = record(now - 100, (char *)"bob");
    assert_int_equal(sg_session_create(fx->store, kept, &other), 0);

    sg_session_writer_touch(fx->writer, id, now);
    sg_session_writer_touch(fx->writer, kept, now);
    /* logged out by its owner while the touch waits */
    char *owner = NULL;
    assert_int_equal(sg_session_owner_idp("https://idp.example", "alice", &owner), 0);
    size_t deleted = 0;
    assert_int_equal(sg_session_delete_by_owner(fx->store, owner, &deleted), 0);
    free(owner);
    assert_int_equal(deleted, 1);
    event_base_loop(fx->base, EVLOOP_NONBLOCK);
    assert_int_equal(sg_session_get(fx->store, id, now, NULL), SG_ENOENT);
    assert_int_equal(last_seen(fx->store, kept), now); /* the other touch is written */

    /* deleted by id, through a second store handle (another worker's environment) */
    char err[256];
    struct sg_store *second = NULL;
    assert_int_equal(sg_store_open(fx->dir, &second, err, sizeof(err)), 0);
    sg_session_writer_touch(fx->writer, kept, now + 1);
    assert_int_equal(sg_session_delete(second, kept), 0);
    sg_store_close(second);
    event_base_loop(fx->base, EVLOOP_NONBLOCK);
    assert_int_equal(sg_session_get(fx->store, kept, now + 1, NULL), SG_ENOENT);

    /* an expired session is not made alive again by a late touch */
    char old[SG_SESSION_ID_SIZE];
    sg_session_new_id(old);
    struct sg_session idle = record(now - 7200, (char *)"carol"); /* idle for 2 h, limit 1 h */
    assert_int_equal(sg_session_create(fx->store, old, &idle), 0);
    sg_session_writer_touch(fx->writer, old, now);
    sg_session_writer_flush(fx->writer);
    assert_int_equal(sg_session_get(fx->store, old, now, NULL), SG_ENOENT);
}

/* Marks owner's sessions ended at at, in a transaction of its own. */
static void mark_ended(struct sg_store *store, const char *owner, int64_t at)
{
    struct sg_store_txn txn;
    assert_int_equal(sg_store_txn_begin(store, true, &txn), 0);
    assert_int_equal(sg_session_mark_ended_txn(&txn, owner, at), 0);
    assert_int_equal(sg_store_txn_commit(&txn, SG_STORE_LAZY), 0);
}

/* Queues a create of rec for a login begun at began, flushes: the callback's err. */
static int create_begun(struct fixture *fx, struct sg_session *rec, int64_t began)
{
    char id[SG_SESSION_ID_SIZE];
    sg_session_new_id(id);
    struct written w = {.store = fx->store, .id = id};
    assert_non_null(sg_session_writer_create(fx->writer, id, rec, began, on_written, &w));
    sg_session_writer_flush(fx->writer);
    assert_int_equal(w.calls, 1);
    if (w.err != 0)
        assert_int_equal(w.found_when_called, SG_ENOENT); /* nothing written */
    return w.err;
}

/* A logout at the IdP (its user, or its IdP session) while a login of it is
 * in flight: the login writes no session after it; a login begun after it
 * does, and the marks of one user or IdP session stop no other. */
static void test_create_after_logout_refused(void **state)
{
    struct fixture *fx = *state;
    int64_t now = sg_now_s();
    char *owner = NULL;
    struct sg_session alice = record(now, (char *)"alice");
    assert_int_equal(sg_session_owner_idp(alice.idp_issuer, "alice", &owner), 0);
    mark_ended(fx->store, owner, now);
    free(owner);
    assert_int_equal(create_begun(fx, &alice, now - 5), SG_EENDED);
    assert_int_equal(create_begun(fx, &alice, now - 1), SG_EENDED);
    assert_int_equal(create_begun(fx, &alice, now), 0); /* begun in the logout's second */
    assert_int_equal(create_begun(fx, &alice, now + 1), 0);
    struct sg_session bob = record(now, (char *)"bob");
    assert_int_equal(create_begun(fx, &bob, now - 5), 0);

    /* by IdP session: that sid's logins stop, the same user's other IdP session's do not */
    struct sg_session carol = record(now, (char *)"carol");
    carol.idp_sid = (char *)"sid-1";
    assert_int_equal(sg_session_owner_sid(carol.idp_issuer, "sid-1", &owner), 0);
    mark_ended(fx->store, owner, now);
    free(owner);
    assert_int_equal(create_begun(fx, &carol, now - 5), SG_EENDED);
    carol.idp_sid = (char *)"sid-2";
    assert_int_equal(create_begun(fx, &carol, now - 5), 0);
    /* another issuer's user of the same sub is another owner */
    alice.idp_issuer = (char *)"https://other.example";
    assert_int_equal(create_begun(fx, &alice, now - 5), 0);
}

/* What is queued when the writer goes (the gateway stops) is written. */
static void test_free_writes_queued(void **state)
{
    struct fixture *fx = *state;
    int64_t now = sg_now_s();
    char id[SG_SESSION_ID_SIZE];
    sg_session_new_id(id);
    struct sg_session rec = record(now, (char *)"alice");
    sg_session_write_cancel(sg_session_writer_create(fx->writer, id, &rec, 0, NULL, NULL));
    sg_session_writer_free(fx->writer);
    fx->writer = NULL;
    assert_int_equal(sg_session_get(fx->store, id, now, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_creates_one_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_touch_written_behind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_touch_after_delete_does_not_resurrect, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_create_after_logout_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_writes_queued, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
