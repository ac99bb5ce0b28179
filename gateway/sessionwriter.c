#include "ssogate/sessionwriter.h"

#include "ssogate/common.h"
#include "ssogate/links.h"
#include "ssogate/log.h"
#include "ssogate/metrics.h"
#include "ssogate/session.h"
#include "ssogate/store.h"

#include <event2/event.h>
#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define WRITES_METRIC "ssogate_session_writes_total"

/* The user link a session of a linked user stands on. */
struct link_of {
    char *idp_tenant, *idp_sub, *psa_tenant, *psa_user;
};

struct sg_session_write {
    struct sg_session_write *next;
    unsigned char key[SG_SESSION_KEY_LEN];
    unsigned char *record;
    size_t len;
    struct link_of *link; /* NULL: a session of no PSA user */
    /* The marks of an IdP logout that would stop it (sg_session_ended_keys). */
    unsigned char ended_keys[2][SG_SESSION_ENDED_KEY_LEN];
    size_t ended_count;
    int64_t began;            /* the login's start */
    sg_session_written_cb cb; /* NULL once cancelled */
    void *arg;
};

struct touch {
    unsigned char key[SG_SESSION_KEY_LEN];
    int64_t now;
};

struct sg_session_writer {
    struct sg_store *store;
    struct event *flush; /* active while something is queued */
    struct sg_session_write *creates, **creates_tail;
    size_t create_count;
    struct touch *touches;
    size_t touch_count, touch_cap;
};

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    sg_session_writer_flush(arg);
}

struct sg_session_writer *sg_session_writer_new(struct event_base *base, struct sg_store *store)
{
    struct sg_session_writer *w = sg_calloc(1, sizeof(*w));
    w->store = store;
    w->flush = event_new(base, -1, 0, on_flush, w);
    w->creates_tail = &w->creates;
    return w;
}

void sg_session_writer_free(struct sg_session_writer *w)
{
    if (w == NULL)
        return;
    sg_session_writer_flush(w);
    event_free(w->flush);
    free(w->touches);
    free(w);
}

static void link_free(struct link_of *l)
{
    if (l == NULL)
        return;
    free(l->idp_tenant);
    free(l->idp_sub);
    free(l->psa_tenant);
    free(l->psa_user);
    free(l);
}

/* Makes the flush event active: it runs after what is already active in this iteration. */
static void schedule(struct sg_session_writer *w)
{
    if (w->create_count + w->touch_count == 1)
        event_active(w->flush, EV_TIMEOUT, 1);
}

struct sg_session_write *sg_session_writer_create(struct sg_session_writer *w, const char *id,
                                                  const struct sg_session *rec, int64_t began,
                                                  sg_session_written_cb cb, void *arg)
{
    unsigned char *record;
    size_t len;
    unsigned char ended_keys[2][SG_SESSION_ENDED_KEY_LEN];
    size_t ended_count;
    if (!sg_session_id_valid(id) || sg_session_ended_keys(rec, ended_keys, &ended_count) != 0 ||
        sg_session_encode(rec, &record, &len) != 0)
        return NULL;
    struct sg_session_write *write = sg_calloc(1, sizeof(*write));
    memcpy(write->ended_keys, ended_keys, sizeof(ended_keys));
    write->ended_count = ended_count;
    write->began = began;
    sg_session_key(id, write->key);
    write->record = record;
    write->len = len;
    if (rec->psa_user != NULL) {
        write->link = sg_malloc(sizeof(*write->link));
        *write->link = (struct link_of){sg_strdup(rec->idp_tenant ? rec->idp_tenant : ""),
                                        sg_strdup(rec->idp_sub ? rec->idp_sub : ""),
                                        sg_strdup(rec->psa_tenant ? rec->psa_tenant : ""),
                                        sg_strdup(rec->psa_user)};
    }
    write->cb = cb;
    write->arg = arg;
    *w->creates_tail = write;
    w->creates_tail = &write->next;
    w->create_count++;
    schedule(w);
    return write;
}

void sg_session_write_cancel(struct sg_session_write *write)
{
    if (write != NULL)
        write->cb = NULL;
}

void sg_session_writer_touch(struct sg_session_writer *w, const char *id, int64_t now)
{
    if (!sg_session_id_valid(id))
        return;
    if (w->touch_count == w->touch_cap) {
        w->touch_cap = w->touch_cap ? w->touch_cap * 2 : 64;
        w->touches = sg_realloc(w->touches, w->touch_cap * sizeof(*w->touches));
    }
    struct touch *t = &w->touches[w->touch_count++];
    sg_session_key(id, t->key);
    t->now = now;
    schedule(w);
}

size_t sg_session_writer_pending(const struct sg_session_writer *w)
{
    return w->create_count + w->touch_count;
}

/* Everything queued, in one write transaction: 0 once committed, else the first failure. */
static int write_all(struct sg_session_writer *w, struct sg_session_write *creates,
                     size_t touch_count, int *create_errs)
{
    struct sg_store_txn txn;
    int err = sg_store_txn_begin(w->store, true, &txn);
    if (err != 0)
        return err;
    size_t i = 0;
    for (struct sg_session_write *c = creates; c != NULL && err == 0; c = c->next, i++) {
        /* A link removed while the login was in flight (an admin, the user's
         * Disable elsewhere) ended its sessions, and so did a logout at the
         * IdP of its user or IdP session: none is made after it. */
        const struct link_of *l = c->link;
        create_errs[i] = sg_session_ended_since_txn(&txn, c->ended_keys, c->ended_count, c->began);
        if (create_errs[i] == 0 && l != NULL)
            create_errs[i] =
                sg_links_user_is_txn(&txn, l->idp_tenant, l->idp_sub, l->psa_tenant, l->psa_user);
        /* An id already used (256 random bits: never) fails that login alone. */
        if (create_errs[i] == 0)
            create_errs[i] = sg_session_insert_txn(&txn, c->key, c->record, c->len);
        if (create_errs[i] != 0 && create_errs[i] != SG_EEXIST && create_errs[i] != SG_ENOENT &&
            create_errs[i] != SG_EINVAL && create_errs[i] != SG_EENDED)
            err = create_errs[i];
    }
    for (size_t t = 0; t < touch_count && err == 0; t++) {
        int rc = sg_session_touch_txn(&txn, w->touches[t].key, w->touches[t].now);
        if (rc != 0 && rc != SG_ENOENT)
            err = rc;
    }
    if (err != 0) {
        sg_store_txn_abort(&txn);
        return err;
    }
    return sg_store_txn_commit(&txn, SG_STORE_LAZY);
}

void sg_session_writer_flush(struct sg_session_writer *w)
{
    struct sg_session_write *creates = w->creates;
    size_t create_count = w->create_count, touch_count = w->touch_count;
    if (create_count + touch_count == 0)
        return;
    int *create_errs = sg_calloc(create_count + 1, sizeof(*create_errs));
    int err = write_all(w, creates, touch_count, create_errs);
    /* Everything queued is handled: callbacks may queue more, for the next flush. */
    w->creates = NULL;
    w->creates_tail = &w->creates;
    w->create_count = 0;
    w->touch_count = 0;
    event_del(w->flush);
    if (err != 0) {
        sg_metrics_error(SG_MERR_STORE);
        sg_metrics_count(WRITES_METRIC, "result", "failed");
        sg_log(SG_LOG_ERROR, "session_write",
               "%zu new sessions and %zu touches could not be written: %s", create_count,
               touch_count, sg_strerror(err));
    } else {
        sg_metrics_count(WRITES_METRIC, "result", "ok");
    }
    size_t i = 0;
    for (struct sg_session_write *c = creates, *next; c != NULL; c = next, i++) {
        next = c->next;
        if (c->cb != NULL)
            c->cb(c->arg, err != 0 ? err : create_errs[i]);
        OPENSSL_cleanse(c->record, c->len);
        free(c->record);
        link_free(c->link);
        free(c);
    }
    free(create_errs);
}
