#include "ssogate/pgstore.h"

#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/log.h"
#include "ssogate/metrics.h"
#include "ssogate/pg.h"
#include "ssogate/pgschema.h"
#include "ssogate/store.h"

#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Idle-time touches waiting to be written, at most; more are dropped (the
 * local cache keeps the session alive meanwhile). */
#define TOUCH_MAX 4096
/* Session ends kept until PostgreSQL takes them, at most (a logout sends up
 * to 16 ids, made-up ones too); past that an end is sent once, unkept. */
#define ENDS_MAX 65536
/* Kept ends sent again at once, at most, each its own statement: a row held
 * locked elsewhere delays only its own end. */
#define ENDS_RESEND_MAX  64
#define SWEEP_AT_CONNECT 1000
/* A query's own deadline is this much past the server's statement_timeout,
 * so that the server cancels a slow statement (the connection stays) before
 * the pool gives up on it (the connection is closed). */
#define DEADLINE_MARGIN_MS 1000
/* Session ids PostgreSQL did not know, remembered so that a client sending
 * made-up cookies costs the database one query per id, not one per request.
 * Safe for ever: an id is never given out again. A power of two. */
#define MISSES_SLOTS       8192
#define TOUCH_FLUSH_S      1
#define SCHEMA_CONNECT_S   2
#define HEX_KEY_LEN        (2 * SG_SESSION_KEY_LEN)
#define LOGINSTATE_KEY_LEN SHA256_DIGEST_LENGTH

/* ---- statements ---------------------------------------------------------- */

/* Identifiers and records travel as hex text: decode($n, 'hex') in, encode(x, 'hex') out. */
enum stmt {
    ST_LS_PUT,
    ST_LS_TAKE,
    ST_S_CREATE,
    ST_S_GET,
    ST_S_DELETE,
    ST_S_DELETE_IDP,
    ST_S_DELETE_SID,
    ST_S_END_IDP,
    ST_S_END_SID,
    ST_S_DELETE_IDP_ONCE,
    ST_S_DELETE_SID_ONCE,
    ST_S_TOUCH,
    ST_S_SWEEP,
    ST_LS_SWEEP,
    ST_J_SWEEP,
    ST_T_LINK,
    ST_T_UNLINK,
    ST_U_LINK,
    ST_U_UNLINK,
    ST_S_DELETE_PSA,
    ST_U_FACTS,
    ST_LINKS_OF,
    ST_LINKS_ALL,
    ST__COUNT
};

static const struct sg_pg_statement statements[ST__COUNT] = {
    [ST_LS_PUT] = {"ls_put",
                   "INSERT INTO login_states (state_hash, record, created_at)"
                   " VALUES (decode($1, 'hex'), decode($2, 'hex'), $3)",
                   3},
    [ST_LS_TAKE] = {"ls_take",
                    "DELETE FROM login_states WHERE state_hash = decode($1, 'hex')"
                    " RETURNING encode(record, 'hex')",
                    1},
    /* A session of a linked user only while the link still names that user
     * (a link removed during the login ended the user's sessions), the link
     * row locked against its removal until this commits; and of no IdP user
     * or IdP session that a logout at the IdP ended after the login began:
     * the marks $12 and $13 (NULL without a sid) kept until after $14.
     * Answers (ended by a logout, created). */
    [ST_S_CREATE] = {"s_create",
                     "WITH e AS (SELECT EXISTS (SELECT 1 FROM logout_jti WHERE jti_hash IN"
                     " (decode($12, 'hex'), decode($13, 'hex')) AND keep_until > $14::bigint)"
                     " AS ended), i AS (INSERT INTO sessions (id_hash, record, psa_tenant,"
                     " psa_user, idp_issuer, idp_sub, idp_sid, last_seen, idle_timeout_s,"
                     " expires_at) SELECT decode($1, 'hex'), decode($2, 'hex'), decode($3, 'hex'),"
                     " decode($4, 'hex'), decode($5, 'hex'), decode($6, 'hex'), decode($7, 'hex'),"
                     " $8::bigint, $9::integer, $10::bigint WHERE NOT (SELECT ended FROM e) AND"
                     " ($4::text IS NULL OR EXISTS (SELECT 1 FROM user_links WHERE psa_tenant ="
                     " decode($3, 'hex') AND psa_user = decode($4, 'hex') AND idp_tenant ="
                     " decode($11, 'hex') AND idp_sub = decode($6, 'hex') FOR KEY SHARE))"
                     " RETURNING 1) SELECT (SELECT ended FROM e), (SELECT count(*) FROM i)",
                     14},
    [ST_S_GET] = {"s_get",
                  "SELECT encode(record, 'hex'), last_seen, expires_at > $2"
                  " AND (idle_timeout_s = 0 OR last_seen + idle_timeout_s > $2)"
                  " FROM sessions WHERE id_hash = decode($1, 'hex')",
                  2},
    [ST_S_DELETE] = {"s_delete", "DELETE FROM sessions WHERE id_hash = decode($1, 'hex')", 1},
    [ST_S_DELETE_IDP] = {"s_delete_idp",
                         "WITH d AS (DELETE FROM sessions WHERE idp_issuer = decode($1, 'hex')"
                         " AND idp_sub = decode($2, 'hex') RETURNING 1) SELECT count(*) FROM d",
                         2},
    [ST_S_DELETE_SID] = {"s_delete_sid",
                         "WITH d AS (DELETE FROM sessions WHERE idp_issuer = decode($1, 'hex')"
                         " AND idp_sid = decode($2, 'hex') RETURNING 1) SELECT count(*) FROM d",
                         2},
    /* A logout at the IdP: the sessions deleted, and the owner's mark $3 (kept
     * until $4) stops the logins in flight from making one after it. */
    [ST_S_END_IDP] = {"s_end_idp",
                      "WITH m AS (INSERT INTO logout_jti (jti_hash, keep_until) VALUES"
                      " (decode($3, 'hex'), $4::bigint) ON CONFLICT (jti_hash) DO UPDATE SET"
                      " keep_until = GREATEST(logout_jti.keep_until, EXCLUDED.keep_until)), d AS"
                      " (DELETE FROM sessions WHERE idp_issuer = decode($1, 'hex') AND idp_sub ="
                      " decode($2, 'hex') RETURNING 1) SELECT count(*) FROM d",
                      4},
    [ST_S_END_SID] = {"s_end_sid",
                      "WITH m AS (INSERT INTO logout_jti (jti_hash, keep_until) VALUES"
                      " (decode($3, 'hex'), $4::bigint) ON CONFLICT (jti_hash) DO UPDATE SET"
                      " keep_until = GREATEST(logout_jti.keep_until, EXCLUDED.keep_until)), d AS"
                      " (DELETE FROM sessions WHERE idp_issuer = decode($1, 'hex') AND idp_sid ="
                      " decode($2, 'hex') RETURNING 1) SELECT count(*) FROM d",
                      4},
    /* A back-channel logout token: its jti recorded and the sessions deleted
     * in one statement, the DELETE (and the owner's mark $5, kept until $6)
     * only when the INSERT took the jti. A host sending the same jti meanwhile
     * waits on the row and then inserts nothing; a failure records nothing.
     * Answers (jti new, sessions ended). */
    [ST_S_DELETE_IDP_ONCE] = {"s_delete_idp_once",
                              "WITH j AS (INSERT INTO logout_jti (jti_hash, keep_until)"
                              " VALUES (decode($3, 'hex'), $4::bigint) ON CONFLICT DO NOTHING"
                              " RETURNING 1), m AS (INSERT INTO logout_jti (jti_hash, keep_until)"
                              " SELECT decode($5, 'hex'), $6::bigint WHERE EXISTS (SELECT 1 FROM j)"
                              " ON CONFLICT (jti_hash) DO UPDATE SET keep_until ="
                              " GREATEST(logout_jti.keep_until, EXCLUDED.keep_until)), d AS (DELETE"
                              " FROM sessions WHERE idp_issuer = decode($1, 'hex') AND idp_sub ="
                              " decode($2, 'hex') AND EXISTS (SELECT 1 FROM j) RETURNING 1) SELECT"
                              " (SELECT count(*) FROM j), (SELECT count(*) FROM d)",
                              6},
    [ST_S_DELETE_SID_ONCE] = {"s_delete_sid_once",
                              "WITH j AS (INSERT INTO logout_jti (jti_hash, keep_until)"
                              " VALUES (decode($3, 'hex'), $4::bigint) ON CONFLICT DO NOTHING"
                              " RETURNING 1), m AS (INSERT INTO logout_jti (jti_hash, keep_until)"
                              " SELECT decode($5, 'hex'), $6::bigint WHERE EXISTS (SELECT 1 FROM j)"
                              " ON CONFLICT (jti_hash) DO UPDATE SET keep_until ="
                              " GREATEST(logout_jti.keep_until, EXCLUDED.keep_until)), d AS (DELETE"
                              " FROM sessions WHERE idp_issuer = decode($1, 'hex') AND idp_sid ="
                              " decode($2, 'hex') AND EXISTS (SELECT 1 FROM j) RETURNING 1) SELECT"
                              " (SELECT count(*) FROM j), (SELECT count(*) FROM d)",
                              6},
    [ST_S_TOUCH] = {"s_touch",
                    "UPDATE sessions SET last_seen = t.seen FROM (SELECT decode(unnest($1::text[]),"
                    " 'hex') AS id_hash, unnest($2::bigint[]) AS seen) t"
                    " WHERE sessions.id_hash = t.id_hash AND sessions.last_seen < t.seen",
                    2},
    [ST_S_SWEEP] = {"s_sweep",
                    "DELETE FROM sessions WHERE id_hash IN (SELECT id_hash FROM sessions"
                    " WHERE expires_at <= $1 OR (idle_timeout_s > 0 AND last_seen + idle_timeout_s"
                    " <= $1) LIMIT $2)",
                    2},
    [ST_LS_SWEEP] = {"ls_sweep",
                     "DELETE FROM login_states WHERE state_hash IN (SELECT state_hash FROM"
                     " login_states WHERE created_at <= $1 LIMIT $2)",
                     2},
    [ST_J_SWEEP] = {"j_sweep",
                    "DELETE FROM logout_jti WHERE jti_hash IN (SELECT jti_hash FROM logout_jti"
                    " WHERE keep_until <= $1 LIMIT $2)",
                    2},
    [ST_T_LINK] = {"t_link",
                   "WITH ins AS (INSERT INTO tenant_links (psa_tenant, idp_tenant)"
                   " VALUES (decode($1, 'hex'), decode($2, 'hex')) RETURNING psa_tenant)"
                   " INSERT INTO link_audit (host, via, action, kind, psa_tenant, idp_tenant)"
                   " SELECT $3, $4, 'link', 'tenant', psa_tenant, decode($2, 'hex') FROM ins",
                   4},
    [ST_T_UNLINK] = {"t_unlink",
                     "WITH t AS (DELETE FROM tenant_links WHERE psa_tenant = decode($1, 'hex')"
                     " RETURNING idp_tenant), u AS (DELETE FROM user_links"
                     " WHERE psa_tenant = decode($1, 'hex') RETURNING psa_user, idp_tenant,"
                     " idp_sub), s AS (DELETE FROM sessions WHERE psa_tenant = decode($1, 'hex')"
                     " RETURNING 1), a AS (INSERT INTO link_audit (host, via, action, kind,"
                     " psa_tenant, psa_user, idp_tenant, idp_sub) SELECT $2, $3, 'unlink',"
                     " 'tenant', decode($1, 'hex'), NULL, idp_tenant, NULL FROM t UNION ALL"
                     " SELECT $2, $3, 'unlink', 'user', decode($1, 'hex'), psa_user, idp_tenant,"
                     " idp_sub FROM u) SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM u)",
                     3},
    [ST_U_LINK] = {"u_link",
                   "WITH t AS (SELECT 1 FROM tenant_links WHERE psa_tenant = decode($1, 'hex')"
                   " AND idp_tenant = decode($3, 'hex')), ins AS (INSERT INTO user_links"
                   " (psa_tenant, psa_user, idp_tenant, idp_sub, facts_known, staff, active)"
                   " SELECT decode($1, 'hex'), decode($2, 'hex'), decode($3, 'hex'),"
                   " decode($4, 'hex'), $5, $6, $7 FROM t RETURNING 1), a AS (INSERT INTO"
                   " link_audit (host, via, action, kind, psa_tenant, psa_user, idp_tenant,"
                   " idp_sub) SELECT $8, $9, 'link', 'user', decode($1, 'hex'), decode($2, 'hex'),"
                   " decode($3, 'hex'), decode($4, 'hex') FROM ins) SELECT count(*) FROM ins",
                   9},
    [ST_U_UNLINK] = {"u_unlink",
                     "WITH u AS (DELETE FROM user_links WHERE psa_tenant = decode($1, 'hex')"
                     " AND psa_user = decode($2, 'hex') RETURNING idp_tenant, idp_sub),"
                     " s AS (DELETE FROM sessions WHERE psa_tenant = decode($1, 'hex')"
                     " AND psa_user = decode($2, 'hex') RETURNING 1), a AS (INSERT INTO link_audit"
                     " (host, via, action, kind, psa_tenant, psa_user, idp_tenant, idp_sub)"
                     " SELECT $3, $4, 'unlink', 'user', decode($1, 'hex'), decode($2, 'hex'),"
                     " idp_tenant, idp_sub FROM u) SELECT count(*) FROM u",
                     4},
    /* After an unlink: its statement's snapshot, taken before a session INSERT
     * it waited for (the link row locked FOR KEY SHARE) committed, could not
     * see that session; this one, a statement later, does. */
    [ST_S_DELETE_PSA] = {"s_delete_psa",
                         "DELETE FROM sessions WHERE psa_tenant = decode($1, 'hex') AND"
                         " ($2::text IS NULL OR psa_user = decode($2, 'hex'))",
                         2},
    [ST_U_FACTS] = {"u_facts",
                    "UPDATE user_links SET facts_known = true, staff = $3, active = $4"
                    " WHERE psa_tenant = decode($1, 'hex') AND psa_user = decode($2, 'hex')"
                    " AND (NOT facts_known OR staff <> $3 OR active <> $4)",
                    4},
    [ST_LINKS_OF] = {"links_of",
                     "SELECT 't', encode(psa_tenant, 'hex'), NULL, encode(idp_tenant, 'hex'), NULL,"
                     " false, false, false FROM tenant_links WHERE psa_tenant = decode($1, 'hex')"
                     " UNION ALL SELECT 'u', encode(psa_tenant, 'hex'), encode(psa_user, 'hex'),"
                     " encode(idp_tenant, 'hex'), encode(idp_sub, 'hex'), facts_known, staff,"
                     " active FROM user_links WHERE psa_tenant = decode($1, 'hex')",
                     1},
    [ST_LINKS_ALL] = {"links_all",
                      "SELECT 't', encode(psa_tenant, 'hex'), NULL, encode(idp_tenant, 'hex'),"
                      " NULL, false, false, false FROM tenant_links UNION ALL SELECT 'u',"
                      " encode(psa_tenant, 'hex'), encode(psa_user, 'hex'),"
                      " encode(idp_tenant, 'hex'), encode(idp_sub, 'hex'), facts_known, staff,"
                      " active FROM user_links",
                      0},
};

/* ---- the store ------------------------------------------------------------ */

struct touch {
    char key[HEX_KEY_LEN + 1];
    int64_t seen;
};

/* A session cached here, in the order it was cached: dropped after cache_ttl_s. */
struct cached {
    unsigned char key[SG_SESSION_KEY_LEN];
    int64_t at_us;
};

struct sg_pgstore {
    struct sg_pg *pg;
    struct sg_store *cache;
    struct event_base *base;
    int64_t cache_ttl_us;
    unsigned deadline_ms; /* past the server's statement_timeout: the server cancels first */
    char host[128];
    struct touch *touches;
    size_t touch_count;
    struct event *flush;
    bool flushing;
    struct cached *cached; /* a ring: oldest at cached_head */
    size_t cached_head, cached_count, cached_cap;
    struct cached *fresh; /* key -> when it was fetched, open addressing; at_us 0 free, -1 gone */
    size_t fresh_used, fresh_cap;
    bool listening; /* the LISTEN connection is up and the links copy is current */
    /* Session ends PostgreSQL has not taken are kept in this host's store
     * (session_ends, see "session ends" below) and sent again: each second
     * while resend_due and the database answers, at each (re)connection. */
    bool resend_due;
    bool resend_full; /* the last round sent ENDS_RESEND_MAX: there may be more */
    size_t resending; /* OP_REDO statements in flight */
    unsigned char (*misses)[SG_SESSION_KEY_LEN]; /* by the key's first bytes; all zero = free */
};

enum op_kind {
    OP_PLAIN,       /* done(arg, err) from the command status */
    OP_LS_TAKE,     /* decode the login state */
    OP_S_CREATE,    /* cache the session */
    OP_S_FETCH,     /* cache the fetched session */
    OP_S_DELETE,    /* drop the cached session */
    OP_S_OWNER,     /* count the sessions ended */
    OP_S_JTI,       /* the same, unless the jti was taken before */
    OP_T_LINK,      /* refresh the tenant's links here */
    OP_U_LINK,      /* count(*) = 0: the tenant is not linked to that IdP tenant */
    OP_UNLINK,      /* refresh the tenant's links here */
    OP_REFRESH,     /* internal: a tenant's links after a notification */
    OP_REFRESH_ALL, /* internal: every link, after (re)connecting */
    OP_BACKGROUND,  /* internal: touches, sweeps, facts */
    OP_REDO,        /* internal: a session end sent again */
};

struct sg_pgstore_op {
    struct sg_pgstore *ps;
    enum op_kind kind;
    struct sg_pg_query *query;
    sg_pgstore_done_fn done;
    void *arg;
    char tenant[SG_LINKS_ID_MAX + 1];   /* OP_T_LINK, OP_UNLINK, OP_REFRESH, OP_U_LINK */
    char psa_user[SG_LINKS_ID_MAX + 1]; /* OP_UNLINK of a user link; "" for a tenant's */
    unsigned char key[SG_SESSION_KEY_LEN];
    unsigned char *record; /* OP_S_CREATE: the encoded session */
    size_t record_len;
    struct sg_loginstate *state_out; /* OP_LS_TAKE */
    char state[SG_LOGINSTATE_TOKEN_SIZE];
    size_t *count_out; /* OP_S_OWNER, OP_S_JTI */
    bool kept;         /* OP_S_DELETE: the end is in session_ends */
    /* OP_S_OWNER, OP_S_JTI: the plain DELETE sent again once it is done (hex
     * issuer and value), for a login's session its statement could not see. */
    char *again[2];
    bool again_by_sid;
};

/* ---- helpers -------------------------------------------------------------- */

static char *hex_of(const void *data, size_t len)
{
    char *out = sg_malloc(2 * len + 1);
    sg_hex_encode(data, len, out);
    return out;
}

static char *hex_text(const char *s)
{
    return s != NULL ? hex_of(s, strlen(s)) : NULL;
}

/* Decodes hex text into a new buffer with a NUL after it; NULL when malformed. */
static unsigned char *unhex(const char *hex, size_t *len)
{
    size_t n = strlen(hex);
    if (n % 2 != 0)
        return NULL;
    unsigned char *out = sg_malloc(n / 2 + 1);
    for (size_t i = 0; i < n / 2; i++) {
        int hi = sg_hex_value((unsigned char)hex[2 * i]),
            lo = sg_hex_value((unsigned char)hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(out);
            return NULL;
        }
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    out[n / 2] = '\0';
    *len = n / 2;
    return out;
}

/* Decodes hex text holding an identifier (no NUL inside); NULL when malformed. */
static char *unhex_text(const char *hex)
{
    size_t len;
    unsigned char *out = unhex(hex, &len);
    if (out != NULL && memchr(out, '\0', len) != NULL) {
        free(out);
        return NULL;
    }
    return (char *)out;
}

/* A query's result as a metric label. */
static const char *status_label(enum sg_pg_status status)
{
    static const char *const labels[] = {
        [SG_PG_OK] = "ok",
        [SG_PG_SQL_ERROR] = "sql_error",
        [SG_PG_TIMEOUT] = "timeout",
        [SG_PG_UNAVAILABLE] = "unavailable",
    };
    return labels[status];
}

static void count_query(const struct sg_pg_result *res)
{
    sg_metrics_count("ssogate_shared_store_queries_total", "result", status_label(res->status));
    if (res->status != SG_PG_OK)
        sg_log_fields(
            res->status == SG_PG_SQL_ERROR ? SG_LOG_ERROR : SG_LOG_WARN, "shared_store",
            (struct sg_log_field[]){SG_LOG_STR("result", status_label(res->status)),
                                    SG_LOG_STR("sqlstate", res->sqlstate ? res->sqlstate : ""),
                                    SG_LOG_STR("detail", res->message ? res->message : "")},
            3);
}

/* The SG_E* code of a result that is not OK. */
static int error_of(const struct sg_pg_result *res)
{
    if (res->status == SG_PG_SQL_ERROR)
        return res->sqlstate != NULL && strcmp(res->sqlstate, "23505") == 0 ? SG_EEXIST : SG_ESTORE;
    return SG_EUNAVAILABLE;
}

static struct sg_pgstore_op *op_new(struct sg_pgstore *ps, enum op_kind kind,
                                    sg_pgstore_done_fn done, void *arg)
{
    struct sg_pgstore_op *op = sg_calloc(1, sizeof(*op));
    op->ps = ps;
    op->kind = kind;
    op->done = done;
    op->arg = arg;
    return op;
}

static void op_free(struct sg_pgstore_op *op)
{
    free(op->again[0]);
    free(op->again[1]);
    if (op->record != NULL) {
        OPENSSL_cleanse(op->record, op->record_len);
        free(op->record);
    }
    OPENSSL_cleanse(op->state, sizeof(op->state));
    free(op);
}

static void on_result(void *arg, const struct sg_pg_result *res);
static bool end_kept(struct sg_pgstore *ps, const unsigned char key[SG_SESSION_KEY_LEN]);
static void end_result(struct sg_pgstore_op *op, const struct sg_pg_result *res);

/* Sends statement st for op; NULL values are SQL NULL. Frees values[]. */
static struct sg_pgstore_op *op_send(struct sg_pgstore_op *op, enum stmt st, char **values, int n)
{
    op->query = sg_pg_exec(op->ps->pg, statements[st].name, n, (const char *const *)values, NULL,
                           op->ps->deadline_ms, on_result, op);
    for (int i = 0; i < n; i++)
        free(values[i]);
    return op;
}

/* ---- the session cache ---------------------------------------------------- */

/*
 * A cached session is trusted for cache_ttl_s from when it was fetched (the
 * table "fresh"); past that the router fetches it again before the request.
 * Its local copy is deleted CACHE_GRACE_US later, unless fetched again
 * meanwhile, so that a request that found it fresh still finds it while it
 * waits on something else (the PSA, the IdP).
 */
#define CACHE_GRACE_US (30 * INT64_C(1000000))

static size_t fresh_index(const struct sg_pgstore *ps, const unsigned char key[SG_SESSION_KEY_LEN])
{
    uint64_t h;
    memcpy(&h, key, sizeof(h)); /* a SHA-256: its bytes are uniform */
    return (size_t)h & (ps->fresh_cap - 1);
}

/* The slot of key; else, for_insert, the first reusable one on its path
 * (a key is looked for up to a free slot, past slots it went from). NULL when
 * there is none. */
static struct cached *fresh_find(const struct sg_pgstore *ps,
                                 const unsigned char key[SG_SESSION_KEY_LEN], bool for_insert)
{
    if (ps->fresh_cap == 0)
        return NULL;
    struct cached *reusable = NULL;
    for (size_t i = fresh_index(ps, key), n = 0; n < ps->fresh_cap;
         i = (i + 1) & (ps->fresh_cap - 1), n++) {
        struct cached *e = &ps->fresh[i];
        if (e->at_us > 0 && memcmp(e->key, key, SG_SESSION_KEY_LEN) == 0)
            return e;
        if (e->at_us <= 0 && reusable == NULL)
            reusable = e;
        if (e->at_us == 0)
            break;
    }
    return for_insert ? reusable : NULL;
}

/* A slot for key: the table is never more than half used, so there is one. */
static struct cached *fresh_slot(struct sg_pgstore *ps, const unsigned char key[SG_SESSION_KEY_LEN])
{
    struct cached *e = fresh_find(ps, key, true);
    if (e == NULL)
        abort();
    return e;
}

static void fresh_put(struct sg_pgstore *ps, const unsigned char key[SG_SESSION_KEY_LEN],
                      int64_t at_us)
{
    if (2 * (ps->fresh_used + 1) > ps->fresh_cap) {
        struct cached *old = ps->fresh;
        size_t old_cap = ps->fresh_cap;
        ps->fresh_cap = old_cap ? 2 * old_cap : 1024;
        ps->fresh = sg_calloc(ps->fresh_cap, sizeof(*ps->fresh));
        ps->fresh_used = 0;
        for (size_t i = 0; i < old_cap; i++) {
            if (old[i].at_us > 0) {
                *fresh_slot(ps, old[i].key) = old[i];
                ps->fresh_used++;
            }
        }
        free(old);
    }
    struct cached *e = fresh_slot(ps, key);
    if (e->at_us == 0)
        ps->fresh_used++; /* a slot left by a deletion was counted already */
    memcpy(e->key, key, SG_SESSION_KEY_LEN);
    e->at_us = at_us;
}

static int64_t fresh_get(const struct sg_pgstore *ps, const unsigned char key[SG_SESSION_KEY_LEN])
{
    const struct cached *e = fresh_find(ps, key, false);
    return e != NULL ? e->at_us : 0;
}

static void fresh_del(struct sg_pgstore *ps, const unsigned char key[SG_SESSION_KEY_LEN])
{
    struct cached *e = fresh_find(ps, key, false);
    if (e != NULL)
        e->at_us = -1; /* still counted in fresh_used until the table grows */
}

static void cache_note(struct sg_pgstore *ps, const unsigned char key[SG_SESSION_KEY_LEN])
{
    if (ps->cached_count == ps->cached_cap) {
        size_t cap = ps->cached_cap ? 2 * ps->cached_cap : 1024;
        struct cached *grown = sg_calloc(cap, sizeof(*grown));
        for (size_t i = 0; i < ps->cached_count; i++)
            grown[i] = ps->cached[(ps->cached_head + i) % ps->cached_cap];
        free(ps->cached);
        ps->cached = grown;
        ps->cached_cap = cap;
        ps->cached_head = 0;
    }
    struct cached *c = &ps->cached[(ps->cached_head + ps->cached_count++) % ps->cached_cap];
    memcpy(c->key, key, SG_SESSION_KEY_LEN);
    c->at_us = sg_mono_us();
    fresh_put(ps, key, c->at_us);
}

/* Deletes the local copies of sessions past cache_ttl_s and the grace, unless
 * fetched again since (from the one-second timer). */
static void expire_cache(struct sg_pgstore *ps)
{
    int64_t now = sg_mono_us();
    while (ps->cached_count > 0) {
        struct cached *c = &ps->cached[ps->cached_head];
        if (now - c->at_us < ps->cache_ttl_us + CACHE_GRACE_US)
            break;
        if (fresh_get(ps, c->key) == c->at_us) {
            sg_session_delete_key(ps->cache, c->key); /* SG_ENOENT when it went meanwhile */
            fresh_del(ps, c->key);
        }
        ps->cached_head = (ps->cached_head + 1) % ps->cached_cap;
        ps->cached_count--;
    }
}

struct drop_state {
    struct sg_pgstore *ps;
    unsigned char (*keys)[SG_SESSION_KEY_LEN];
    size_t count, cap;
};

static int collect_session(const unsigned char *key, const void *record, size_t len, void *arg)
{
    struct drop_state *st = arg;
    if (st->count == st->cap) {
        st->cap = st->cap ? 2 * st->cap : 256;
        st->keys = sg_realloc(st->keys, st->cap * sizeof(*st->keys));
    }
    memcpy(st->keys[st->count++], key, SG_SESSION_KEY_LEN);
    return 0;
}

/* At start: a previous run's cached sessions are not trusted. */
static void cache_clear(struct sg_pgstore *ps)
{
    struct drop_state st = {.ps = ps};
    sg_session_each(ps->cache, collect_session, &st);
    for (size_t i = 0; i < st.count; i++)
        sg_session_delete_key(ps->cache, st.keys[i]);
    free(st.keys);
}

/* Caches a session record from PostgreSQL with last_seen from its column. */
static int cache_put(struct sg_pgstore *ps, const unsigned char key[SG_SESSION_KEY_LEN],
                     const unsigned char *record, size_t len, int64_t last_seen)
{
    struct sg_session s;
    int err = sg_session_decode(record, len, &s);
    if (err != 0)
        return err;
    if (last_seen > s.last_seen)
        s.last_seen = last_seen;
    unsigned char *data = NULL;
    size_t data_len = 0;
    err = sg_session_encode(&s, &data, &data_len);
    if (err == 0)
        err = sg_session_put_key(ps->cache, key, data, data_len);
    if (err == 0)
        cache_note(ps, key);
    sg_session_clear(&s);
    free(data);
    return err;
}

static unsigned char *miss_slot(struct sg_pgstore *ps, const unsigned char key[SG_SESSION_KEY_LEN])
{
    size_t h = ((size_t)key[0] << 8 | key[1]) | ((size_t)key[2] << 16);
    return ps->misses[h & (MISSES_SLOTS - 1)];
}

bool sg_pgstore_session_cached(struct sg_pgstore *ps, const char *id)
{
    unsigned char key[SG_SESSION_KEY_LEN];
    sg_session_key(id, key);
    int64_t fetched = fresh_get(ps, key);
    if (fetched > 0 && sg_mono_us() - fetched < ps->cache_ttl_us &&
        sg_session_get(ps->cache, id, sg_now_s(), NULL) == 0)
        return true;
    if (memcmp(miss_slot(ps, key), key, SG_SESSION_KEY_LEN) == 0) {
        sg_metrics_count("ssogate_shared_store_session_fetches_total", "result", "known_unknown");
        return true; /* known to be unknown: not asked again */
    }
    if (!end_kept(ps, key))
        return false;
    /* Ended here, not yet in PostgreSQL: its row there must not bring it back. */
    sg_metrics_count("ssogate_shared_store_session_fetches_total", "result", "ended_here");
    return true;
}

/* ---- links ------------------------------------------------------------- */

/* Rebuilds links from rows (kind, psa_tenant, psa_user, idp_tenant, idp_sub,
 * facts_known, staff, active), all hex; then replaces one tenant's links
 * here, or all of them. */
static int links_apply(struct sg_pgstore *ps, const PGresult *res, const char *tenant)
{
    int rows = PQntuples(res);
    struct sg_link *links = sg_calloc((size_t)rows + 1, sizeof(*links));
    struct sg_links_user_facts *facts = sg_calloc((size_t)rows + 1, sizeof(*facts));
    char **texts = sg_calloc(4 * (size_t)rows + 1, sizeof(*texts));
    int err = 0;
    for (int i = 0; err == 0 && i < rows; i++) {
        bool user = PQgetvalue(res, i, 0)[0] == 'u';
        char **t = &texts[4 * i];
        for (int c = 0; c < 4; c++) {
            if (!PQgetisnull(res, i, 1 + c) &&
                (t[c] = unhex_text(PQgetvalue(res, i, 1 + c))) == NULL)
                err = SG_ESTORE;
        }
        facts[i] = (struct sg_links_user_facts){.known = PQgetvalue(res, i, 5)[0] == 't',
                                                .staff = PQgetvalue(res, i, 6)[0] == 't',
                                                .active = PQgetvalue(res, i, 7)[0] == 't'};
        links[i] = (struct sg_link){.kind = user ? SG_LINK_USER : SG_LINK_TENANT,
                                    .psa_tenant = t[0],
                                    .psa_user = t[1],
                                    .idp_tenant = t[2],
                                    .idp_sub = t[3],
                                    .facts = user ? &facts[i] : NULL};
    }
    if (err == 0)
        err = tenant != NULL ? sg_links_replace_tenant(ps->cache, tenant, links, (size_t)rows)
                             : sg_links_replace_all(ps->cache, links, (size_t)rows);
    for (int i = 0; i < 4 * rows; i++)
        free(texts[i]);
    free(texts);
    free(facts);
    free(links);
    if (err != 0) {
        sg_metrics_error(SG_MERR_STORE);
        sg_log(SG_LOG_ERROR, "shared_store", "links copy not updated: %s", sg_strerror(err));
    }
    return err;
}

/* Reads one tenant's links again (after a change here or a notification). */
static void refresh_tenant(struct sg_pgstore *ps, const char *tenant)
{
    struct sg_pgstore_op *op = op_new(ps, OP_REFRESH, NULL, NULL);
    snprintf(op->tenant, sizeof(op->tenant), "%s", tenant);
    char *values[] = {hex_text(tenant)};
    op_send(op, ST_LINKS_OF, values, 1);
}

/* ---- results -------------------------------------------------------------- */

static void finish_op(struct sg_pgstore_op *op, int err)
{
    if (op->done != NULL)
        op->done(op->arg, err);
    op_free(op);
}

static int ls_take_result(struct sg_pgstore_op *op, const PGresult *res)
{
    if (PQntuples(res) != 1)
        return SG_ENOENT;
    size_t len;
    unsigned char *record = unhex(PQgetvalue(res, 0, 0), &len);
    if (record == NULL)
        return SG_ESTORE;
    enum sg_loginstate_status st = sg_loginstate_decode(record, len, op->state_out);
    OPENSSL_cleanse(record, len);
    free(record);
    if (st != SG_LOGINSTATE_OK)
        return SG_ESTORE;
    snprintf(op->state_out->state, sizeof(op->state_out->state), "%s", op->state);
    if (op->state_out->created <= sg_now_s() - SG_LOGINSTATE_TTL_S) {
        sg_loginstate_clear(op->state_out);
        return SG_ETIMEOUT;
    }
    return 0;
}

/* The database does not have session key (alive): nor may this host. */
static int fetched_none(struct sg_pgstore *ps, const unsigned char key[SG_SESSION_KEY_LEN])
{
    sg_session_delete_key(ps->cache, key);
    fresh_del(ps, key);
    return SG_ENOENT;
}

static int fetch_result(struct sg_pgstore_op *op, const PGresult *res)
{
    if (end_kept(op->ps, op->key))
        return fetched_none(op->ps, op->key); /* ended here while the fetch ran */
    if (PQntuples(res) != 1) {
        memcpy(miss_slot(op->ps, op->key), op->key, SG_SESSION_KEY_LEN);
        return fetched_none(op->ps, op->key);
    }
    /* Expired there: not remembered as unknown, since a touch another host
     * has not written yet may still bring it back. */
    if (strcmp(PQgetvalue(res, 0, 2), "t") != 0)
        return fetched_none(op->ps, op->key);
    size_t len;
    unsigned char *record = unhex(PQgetvalue(res, 0, 0), &len);
    if (record == NULL)
        return SG_ESTORE;
    int err = cache_put(op->ps, op->key, record, len, strtoll(PQgetvalue(res, 0, 1), NULL, 10));
    OPENSSL_cleanse(record, len);
    free(record);
    return err == SG_EINVAL ? SG_ESTORE : err;
}

/* Deletes, in a statement of its own, the sessions a logout's statement could
 * not see: a login's, inserted while it ran, before the owner's mark
 * committed. A failure is counted by the query. */
static void sessions_of_logged_out(struct sg_pgstore *ps, struct sg_pgstore_op *logout)
{
    char *values[] = {logout->again[0], logout->again[1]};
    logout->again[0] = logout->again[1] = NULL; /* op_send frees them */
    op_send(op_new(ps, OP_BACKGROUND, NULL, NULL),
            logout->again_by_sid ? ST_S_DELETE_SID : ST_S_DELETE_IDP, values, 2);
}

/* Deletes, in a statement of its own, the sessions an unlink's statement
 * could not see (ST_S_DELETE_PSA); a failure is counted by the query. */
static void sessions_of_unlinked(struct sg_pgstore *ps, const struct sg_pgstore_op *unlink)
{
    char *values[] = {hex_text(unlink->tenant),
                      unlink->psa_user[0] != '\0' ? hex_text(unlink->psa_user) : NULL};
    op_send(op_new(ps, OP_BACKGROUND, NULL, NULL), ST_S_DELETE_PSA, values, 2);
}

static void on_result(void *arg, const struct sg_pg_result *result)
{
    struct sg_pgstore_op *op = arg;
    struct sg_pgstore *ps = op->ps;
    op->query = NULL;
    count_query(result);
    if (op->kind == OP_S_DELETE || op->kind == OP_REDO)
        end_result(op, result);
    if (result->status != SG_PG_OK) {
        if (op->kind == OP_REFRESH_ALL && result->status != SG_PG_SQL_ERROR)
            ps->listening = false; /* tried again at the next resync */
        /* A session fetched because its cached copy is past cache_ttl_s: that
         * copy is not trusted any longer, whether or not the database answers. */
        if (op->kind == OP_S_FETCH)
            fetched_none(ps, op->key);
        /* A one-to-one conflict this host did not see coming: its copy of the
         * links is behind (another host's link, a notice not yet here). */
        if ((op->kind == OP_T_LINK || op->kind == OP_U_LINK) && error_of(result) == SG_EEXIST)
            op_send(op_new(ps, OP_REFRESH_ALL, NULL, NULL), ST_LINKS_ALL, NULL, 0);
        finish_op(op, error_of(result));
        return;
    }
    const PGresult *res = result->res;
    int err = 0;
    switch (op->kind) {
    case OP_PLAIN:
    case OP_BACKGROUND:
        break;
    case OP_LS_TAKE:
        err = ls_take_result(op, res);
        break;
    case OP_S_CREATE:
        if (PQntuples(res) != 1 || PQnfields(res) != 2) {
            err = SG_ESTORE;
            break;
        }
        if (strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
            err = SG_EENDED; /* a logout at the IdP came while the login was in flight */
            break;
        }
        if (strcmp(PQgetvalue(res, 0, 1), "1") != 0) {
            err = SG_ENOENT; /* the user's link is gone */
            break;
        }
        err = sg_session_put_key(ps->cache, op->key, op->record, op->record_len);
        if (err == 0)
            cache_note(ps, op->key);
        else
            err = 0; /* in PostgreSQL: the next request fetches it */
        break;
    case OP_S_FETCH:
        err = fetch_result(op, res);
        break;
    case OP_S_DELETE:
        sg_session_delete_key(ps->cache, op->key);
        break;
    case OP_REDO:
        break;
    case OP_S_OWNER:
        if (op->count_out != NULL && PQntuples(res) == 1)
            *op->count_out = strtoul(PQgetvalue(res, 0, 0), NULL, 10);
        sessions_of_logged_out(ps, op);
        break;
    case OP_S_JTI:
        if (PQntuples(res) != 1 || PQnfields(res) != 2) {
            err = SG_ESTORE;
        } else if (strcmp(PQgetvalue(res, 0, 0), "0") == 0) {
            err = SG_EEXIST; /* a host accepted that jti before: nothing ended */
        } else {
            if (op->count_out != NULL)
                *op->count_out = strtoul(PQgetvalue(res, 0, 1), NULL, 10);
            sessions_of_logged_out(ps, op);
        }
        break;
    case OP_U_LINK:
        if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 0), "1") != 0)
            err = SG_ENOENT; /* the tenant is not (or no longer) linked to that IdP tenant */
        refresh_tenant(ps, op->tenant);
        break;
    case OP_T_LINK:
        refresh_tenant(ps, op->tenant);
        break;
    case OP_UNLINK:
        refresh_tenant(ps, op->tenant);
        sessions_of_unlinked(ps, op);
        break;
    case OP_REFRESH:
        links_apply(ps, res, op->tenant);
        break;
    case OP_REFRESH_ALL:
        if (links_apply(ps, res, NULL) != 0)
            ps->listening = false;
        break;
    }
    finish_op(op, err);
}

void sg_pgstore_cancel(struct sg_pgstore_op *op)
{
    if (op == NULL)
        return;
    /* The query's answer still updates this host's copies; only the caller
     * (and what it lent) is forgotten. A login state taken meanwhile is gone:
     * that login cannot complete anyway. */
    op->done = NULL;
    op->arg = NULL;
    op->count_out = NULL;
    if (op->kind == OP_LS_TAKE) {
        sg_pg_cancel(op->query);
        op_free(op);
    }
}

/* ---- session ends ------------------------------------------------------------ */

/*
 * A session end is kept in this host's store (session_ends, a lazy commit:
 * it survives the process stopping or dying) before its DELETE is sent, and
 * goes from there only once PostgreSQL has run that DELETE (a row already
 * gone is as good). Every failure keeps it: no connection, the deadline, an
 * SQL error (a statement_timeout under a row lock held elsewhere). Until
 * then this host refuses the session, not fetching it again; the other hosts
 * learn of the end when PostgreSQL takes it.
 */
/* The value of a kept end: whether this host held the session (made-up ids, a flood of them
 * in logouts' cookies, are not). */
#define END_KNOWN   "k"
#define END_UNKNOWN ""

struct unknown_end {
    bool found;
    unsigned char key[SG_SESSION_KEY_LEN];
};

static int find_unknown_end(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct unknown_end *u = arg;
    if (klen != SG_SESSION_KEY_LEN || vlen != 0)
        return 0;
    memcpy(u->key, key, SG_SESSION_KEY_LEN);
    u->found = true;
    return SG_STORE_STOP;
}

/* Keeps the end of session key, which this host held (known) or not. With
 * the table full, an end of a session this host held takes the place of one
 * it did not: a logout carrying made-up ids cannot crowd out a real one. */
static int end_keep(struct sg_pgstore *ps, const unsigned char key[SG_SESSION_KEY_LEN], bool known)
{
    struct sg_store_stats stats;
    int err = sg_store_stats(ps->cache, &stats);
    bool full = err == 0 && stats.entries[SG_STORE_DB_SESSION_ENDS] >= ENDS_MAX;
    if (full && !known)
        err = SG_ETOOBIG;
    struct sg_store_txn txn;
    if (err == 0)
        err = sg_store_txn_begin(ps->cache, true, &txn);
    if (err != 0)
        return err;
    if (full) {
        struct unknown_end unknown = {0};
        err = sg_store_scan(&txn, SG_STORE_DB_SESSION_ENDS, NULL, 0, 0, find_unknown_end, &unknown);
        if (err == 0 && unknown.found)
            err = sg_store_delete(&txn, SG_STORE_DB_SESSION_ENDS, unknown.key, SG_SESSION_KEY_LEN,
                                  NULL, 0);
        else if (err == 0)
            err = SG_ETOOBIG; /* every kept end is of a session this host held */
    }
    if (err == 0)
        err = sg_store_put(&txn, SG_STORE_DB_SESSION_ENDS, key, SG_SESSION_KEY_LEN,
                           known ? END_KNOWN : END_UNKNOWN, strlen(known ? END_KNOWN : END_UNKNOWN),
                           0);
    if (err != 0) {
        sg_store_txn_abort(&txn);
        return err;
    }
    return sg_store_txn_commit(&txn, SG_STORE_LAZY);
}

/* PostgreSQL took the end of session key: it is no longer kept here. */
static void end_taken(struct sg_pgstore *ps, const unsigned char key[SG_SESSION_KEY_LEN])
{
    struct sg_store_txn txn;
    int err = sg_store_txn_begin(ps->cache, true, &txn);
    if (err != 0)
        return;
    err = sg_store_delete(&txn, SG_STORE_DB_SESSION_ENDS, key, SG_SESSION_KEY_LEN, NULL, 0);
    if (err == 0)
        sg_store_txn_commit(&txn, SG_STORE_LAZY);
    else
        sg_store_txn_abort(&txn); /* SG_ENOENT: another worker's resend took it */
}

/* True while the end of session key waits here for PostgreSQL. */
static bool end_kept(struct sg_pgstore *ps, const unsigned char key[SG_SESSION_KEY_LEN])
{
    struct sg_store_txn txn;
    if (sg_store_txn_begin(ps->cache, false, &txn) != 0)
        return false;
    const void *val;
    size_t len;
    bool kept =
        sg_store_get(&txn, SG_STORE_DB_SESSION_ENDS, key, SG_SESSION_KEY_LEN, &val, &len) == 0;
    sg_store_txn_commit(&txn, SG_STORE_LAZY);
    return kept;
}

static int collect_end(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct drop_state *st = arg;
    if (klen != SG_SESSION_KEY_LEN)
        return 0; /* no build of ours wrote it */
    memcpy(st->keys[st->count++], key, SG_SESSION_KEY_LEN);
    return st->count == st->cap ? SG_STORE_STOP : 0;
}

/* Sends again the first ENDS_RESEND_MAX kept session ends, unless a round is
 * in flight or the database cannot be reached (the next resync then sends). */
static void ends_resend(struct sg_pgstore *ps)
{
    if (ps->resending > 0 || !sg_pg_available(ps->pg))
        return;
    unsigned char keys[ENDS_RESEND_MAX][SG_SESSION_KEY_LEN];
    struct drop_state st = {.ps = ps, .keys = keys, .cap = ENDS_RESEND_MAX};
    struct sg_store_txn txn;
    int err = sg_store_txn_begin(ps->cache, false, &txn);
    if (err == 0) {
        err = sg_store_scan(&txn, SG_STORE_DB_SESSION_ENDS, NULL, 0, 0, collect_end, &st);
        sg_store_txn_commit(&txn, SG_STORE_LAZY);
    }
    if (err != 0) {
        sg_metrics_error(SG_MERR_STORE);
        sg_log(SG_LOG_ERROR, "shared_store", "kept session ends not read: %s", sg_strerror(err));
        return; /* still due: the next second tries again */
    }
    ps->resend_due = false;
    ps->resend_full = st.count == ENDS_RESEND_MAX;
    for (size_t i = 0; i < st.count; i++) {
        struct sg_pgstore_op *op = op_new(ps, OP_REDO, NULL, NULL);
        memcpy(op->key, keys[i], SG_SESSION_KEY_LEN);
        char *values[] = {hex_of(op->key, sizeof(op->key))};
        ps->resending++;
        op_send(op, ST_S_DELETE, values, 1);
    }
    OPENSSL_cleanse(keys, sizeof(keys));
}

/* The answer to a session end (OP_S_DELETE) or to its resend (OP_REDO). */
static void end_result(struct sg_pgstore_op *op, const struct sg_pg_result *res)
{
    struct sg_pgstore *ps = op->ps;
    if (res->status == SG_PG_OK) {
        end_taken(ps, op->key);
    } else if (op->kind == OP_REDO || op->kept) {
        ps->resend_due = true;
        if (op->kind == OP_S_DELETE) {
            sg_metrics_count("ssogate_shared_store_session_ends_deferred_total", "reason",
                             status_label(res->status));
            sg_log(SG_LOG_WARN, "shared_store",
                   "a session end is kept on this host and sent again until PostgreSQL takes it");
        }
    } else {
        sg_metrics_error(SG_MERR_STORE);
        sg_metrics_count("ssogate_shared_store_session_ends_lost_total", "reason", "not_kept");
        sg_log(SG_LOG_ERROR, "shared_store",
               "a session end could not be kept on this host nor sent: it lives on other hosts");
    }
    if (op->kind != OP_REDO || --ps->resending > 0)
        return;
    if (!ps->resend_due && ps->resend_full)
        ends_resend(ps); /* the next ones at once */
}

static void sweep_now(struct sg_pgstore *ps);

/* ---- notifications -------------------------------------------------------- */

static void on_notify(void *arg, const char *channel, const char *payload)
{
    struct sg_pgstore *ps = arg;
    if (payload[0] == 's' && payload[1] == ' ') {
        size_t len;
        unsigned char *key = unhex(payload + 2, &len);
        if (key != NULL && len == SG_SESSION_KEY_LEN)
            sg_session_delete_key(ps->cache, key);
        free(key);
        sg_metrics_count("ssogate_shared_store_notifications_total", "kind", "session");
    } else if (payload[0] == 'l' && payload[1] == ' ') {
        char *tenant = unhex_text(payload + 2);
        if (tenant != NULL && sg_links_id_valid(tenant))
            refresh_tenant(ps, tenant);
        free(tenant);
        sg_metrics_count("ssogate_shared_store_notifications_total", "kind", "links");
    }
}

/*
 * The listening connection was (re)made: the links copy, which has no other
 * bound, is read again. Cached sessions are not dropped: a notice missed
 * meanwhile is bounded by cache_ttl_s like any other, and the LISTEN moving
 * to another connection as the server shuts down would otherwise empty the
 * cache just before the outage it is there for.
 */
static void on_resync(void *arg)
{
    struct sg_pgstore *ps = arg;
    ps->resend_due = true;
    ends_resend(ps);
    sweep_now(ps);
    ps->listening = true;
    op_send(op_new(ps, OP_REFRESH_ALL, NULL, NULL), ST_LINKS_ALL, NULL, 0);
    sg_log(SG_LOG_INFO, "shared_store", "connected: links copy renewed");
}

/* ---- touches -------------------------------------------------------------- */

static void on_touch_flush(evutil_socket_t fd, short what, void *arg)
{
    struct sg_pgstore *ps = arg;
    expire_cache(ps);
    if (ps->touch_count == 0 || !sg_pg_available(ps->pg))
        return;
    struct text_list {
        char *text;
        size_t len, cap;
    } keys = {0}, seen = {0};
    struct text_list *lists[] = {&keys, &seen};
    for (size_t l = 0; l < 2; l++) {
        lists[l]->cap = ps->touch_count * (HEX_KEY_LEN + 2) + 3;
        lists[l]->text = sg_malloc(lists[l]->cap);
        lists[l]->text[lists[l]->len++] = '{';
    }
    for (size_t i = 0; i < ps->touch_count; i++) {
        keys.len += (size_t)snprintf(keys.text + keys.len, keys.cap - keys.len, "%s%s",
                                     i ? "," : "", ps->touches[i].key);
        seen.len += (size_t)snprintf(seen.text + seen.len, seen.cap - seen.len, "%s%lld",
                                     i ? "," : "", (long long)ps->touches[i].seen);
    }
    for (size_t l = 0; l < 2; l++) {
        lists[l]->text[lists[l]->len++] = '}';
        lists[l]->text[lists[l]->len] = '\0';
    }
    ps->touch_count = 0;
    char *values[] = {keys.text, seen.text};
    op_send(op_new(ps, OP_BACKGROUND, NULL, NULL), ST_S_TOUCH, values, 2);
}

/* Each second: the touches, and the kept session ends when a try failed. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct sg_pgstore *ps = arg;
    on_touch_flush(fd, what, ps);
    if (ps->resend_due)
        ends_resend(ps);
}

void sg_pgstore_session_touch(struct sg_pgstore *ps, const char *id, int64_t now)
{
    if (ps->touch_count == TOUCH_MAX) {
        sg_metrics_count("ssogate_shared_store_touches_dropped_total", "reason", "queue_full");
        return;
    }
    unsigned char key[SG_SESSION_KEY_LEN];
    sg_session_key(id, key);
    struct touch *t = &ps->touches[ps->touch_count++];
    sg_hex_encode(key, sizeof(key), t->key);
    t->seen = now;
}

/* ---- the calls -------------------------------------------------------------- */

struct sg_pgstore *sg_pgstore_open(struct event_base *base, const struct sg_store_config *cfg,
                                   struct sg_store *cache, char *errbuf, size_t errlen)
{
    char why[512];
    PGconn *conn = sg_pgschema_connect(cfg->conninfo, SCHEMA_CONNECT_S, why, sizeof(why));
    if (conn != NULL) {
        int rc = sg_pgschema_check(conn, errbuf, errlen);
        PQfinish(conn);
        if (rc != 0)
            return NULL;
    } else {
        sg_log(SG_LOG_WARN, "shared_store", "%s: starting degraded, connecting in the background",
               why);
    }
    struct sg_pg_config pcfg = {.conninfo = cfg->conninfo,
                                .pool_size = cfg->pool_size,
                                .statement_timeout_ms = cfg->statement_timeout_ms,
                                .connect_timeout_ms = cfg->statement_timeout_ms};
    struct sg_pgstore *ps = sg_calloc(1, sizeof(*ps));
    ps->base = base;
    ps->cache = cache;
    ps->cache_ttl_us = (int64_t)cfg->cache_ttl_s * 1000000;
    ps->deadline_ms = cfg->statement_timeout_ms + DEADLINE_MARGIN_MS;
    if (gethostname(ps->host, sizeof(ps->host) - 1) != 0)
        snprintf(ps->host, sizeof(ps->host), "unknown");
    ps->pg = sg_pg_new(base, &pcfg, statements, ST__COUNT, errbuf, errlen);
    if (ps->pg == NULL) {
        free(ps);
        return NULL;
    }
    cache_clear(ps);
    ps->misses = sg_calloc(MISSES_SLOTS, sizeof(*ps->misses));
    ps->touches = sg_calloc(TOUCH_MAX, sizeof(*ps->touches));
    ps->resend_due = true; /* a previous run's kept ends, at the first chance */
    ps->flush = event_new(base, -1, EV_PERSIST, on_tick, ps);
    struct timeval every = {TOUCH_FLUSH_S, 0};
    event_add(ps->flush, &every);
    sg_pg_listen(ps->pg, SG_PGSCHEMA_CHANNEL, on_notify, on_resync, ps);
    return ps;
}

void sg_pgstore_free(struct sg_pgstore *ps)
{
    if (ps == NULL)
        return;
    on_touch_flush(-1, 0, ps);
    event_free(ps->flush);
    sg_pg_free(ps->pg);
    free(ps->touches);
    free(ps->cached);
    free(ps->fresh);
    free(ps->misses);
    free(ps);
}

bool sg_pgstore_available(const struct sg_pgstore *ps)
{
    return sg_pg_available(ps->pg) && ps->listening;
}

struct sg_pgstore_op *sg_pgstore_loginstate_put(struct sg_pgstore *ps,
                                                const struct sg_loginstate *s,
                                                sg_pgstore_done_fn done, void *arg)
{
    unsigned char record[SG_LOGINSTATE_RECORD_MAX];
    size_t len;
    if (sg_loginstate_encode(s, record, &len) != 0)
        return NULL;
    unsigned char key[LOGINSTATE_KEY_LEN];
    SHA256((const unsigned char *)s->state, strlen(s->state), key);
    char *values[] = {hex_of(key, sizeof(key)), hex_of(record, len),
                      sg_asprintf("%lld", (long long)s->created)};
    OPENSSL_cleanse(record, len);
    return op_send(op_new(ps, OP_PLAIN, done, arg), ST_LS_PUT, values, 3);
}

struct sg_pgstore_op *sg_pgstore_loginstate_take(struct sg_pgstore *ps, const char *state,
                                                 struct sg_loginstate *out, sg_pgstore_done_fn done,
                                                 void *arg)
{
    memset(out, 0, sizeof(*out));
    if (strlen(state) != SG_LOGINSTATE_TOKEN_LEN)
        return NULL;
    struct sg_pgstore_op *op = op_new(ps, OP_LS_TAKE, done, arg);
    op->state_out = out;
    snprintf(op->state, sizeof(op->state), "%s", state);
    unsigned char key[LOGINSTATE_KEY_LEN];
    SHA256((const unsigned char *)state, strlen(state), key);
    char *values[] = {hex_of(key, sizeof(key))};
    return op_send(op, ST_LS_TAKE, values, 1);
}

void sg_pgstore_loginstate_drop(struct sg_pgstore *ps, const char *state)
{
    if (!sg_pg_available(ps->pg) || strlen(state) != SG_LOGINSTATE_TOKEN_LEN)
        return;
    unsigned char key[LOGINSTATE_KEY_LEN];
    SHA256((const unsigned char *)state, strlen(state), key);
    char *values[] = {hex_of(key, sizeof(key))};
    op_send(op_new(ps, OP_BACKGROUND, NULL, NULL), ST_LS_TAKE, values, 1);
}

struct sg_pgstore_op *sg_pgstore_session_create(struct sg_pgstore *ps, const char *id,
                                                const struct sg_session *rec, int64_t began,
                                                sg_pgstore_done_fn done, void *arg)
{
    unsigned char ended[2][SG_SESSION_ENDED_KEY_LEN];
    size_t ended_count;
    if (!sg_session_id_valid(id) || sg_session_ended_keys(rec, ended, &ended_count) != 0)
        return NULL;
    struct sg_pgstore_op *op = op_new(ps, OP_S_CREATE, done, arg);
    if (sg_session_encode(rec, &op->record, &op->record_len) != 0) {
        op_free(op);
        return NULL;
    }
    sg_session_key(id, op->key);
    char *values[] = {hex_of(op->key, sizeof(op->key)),
                      hex_of(op->record, op->record_len),
                      hex_text(rec->psa_tenant),
                      hex_text(rec->psa_user),
                      hex_text(rec->idp_issuer ? rec->idp_issuer : ""),
                      hex_text(rec->idp_sub),
                      hex_text(rec->idp_sid),
                      sg_asprintf("%lld", (long long)rec->last_seen),
                      sg_asprintf("%u", (unsigned)rec->idle_timeout_s),
                      sg_asprintf("%lld", (long long)rec->expires_at),
                      hex_text(rec->idp_tenant),
                      hex_of(ended[0], sizeof(ended[0])),
                      ended_count > 1 ? hex_of(ended[1], sizeof(ended[1])) : NULL,
                      sg_asprintf("%lld", (long long)(began + SG_SESSION_ENDED_KEEP_S))};
    return op_send(op, ST_S_CREATE, values, 14);
}

struct sg_pgstore_op *sg_pgstore_session_fetch(struct sg_pgstore *ps, const char *id,
                                               sg_pgstore_done_fn done, void *arg)
{
    if (!sg_session_id_valid(id))
        return NULL;
    /* Without the database a copy past cache_ttl_s is not renewed: it goes now,
     * rather than when a query queued behind a reconnection gives up. */
    if (!sg_pg_available(ps->pg)) {
        unsigned char key[SG_SESSION_KEY_LEN];
        sg_session_key(id, key);
        fetched_none(ps, key);
        return NULL;
    }
    struct sg_pgstore_op *op = op_new(ps, OP_S_FETCH, done, arg);
    sg_session_key(id, op->key);
    char *values[] = {hex_of(op->key, sizeof(op->key)), sg_asprintf("%lld", (long long)sg_now_s())};
    return op_send(op, ST_S_GET, values, 2);
}

struct sg_pgstore_op *sg_pgstore_session_delete(struct sg_pgstore *ps, const char *id,
                                                sg_pgstore_done_fn done, void *arg)
{
    if (!sg_session_id_valid(id))
        return NULL;
    struct sg_pgstore_op *op = op_new(ps, OP_S_DELETE, done, arg);
    sg_session_key(id, op->key);
    /* Here at once, whatever PostgreSQL says. */
    bool known = sg_session_delete_key(ps->cache, op->key) == 0;
    op->kept = end_keep(ps, op->key, known) == 0;
    fresh_del(ps, op->key);
    char *values[] = {hex_of(op->key, sizeof(op->key))};
    return op_send(op, ST_S_DELETE, values, 1);
}

/* The hex key of the mark a logout of (issuer, sid or sub value) leaves: 0 or SG_EINVAL. */
static int owner_mark(bool by_sid, const char *issuer, const char *value,
                      char hex[2 * SG_SESSION_ENDED_KEY_LEN + 1])
{
    char *owner = NULL;
    int err = by_sid ? sg_session_owner_sid(issuer, value, &owner)
                     : sg_session_owner_idp(issuer, value, &owner);
    if (err != 0)
        return err;
    unsigned char key[SG_SESSION_ENDED_KEY_LEN];
    sg_session_ended_key(owner, key);
    free(owner);
    sg_hex_encode(key, sizeof(key), hex);
    return 0;
}

/* Keeps in op the plain DELETE of a logout's sessions, sent again once it is done. */
static void again_of(struct sg_pgstore_op *op, bool by_sid, const char *issuer, const char *value)
{
    op->again[0] = hex_text(issuer ? issuer : "");
    op->again[1] = hex_text(value);
    op->again_by_sid = by_sid;
}

struct sg_pgstore_op *sg_pgstore_session_delete_owner(struct sg_pgstore *ps, bool by_sid,
                                                      const char *issuer, const char *value,
                                                      size_t *ended, sg_pgstore_done_fn done,
                                                      void *arg)
{
    char mark[2 * SG_SESSION_ENDED_KEY_LEN + 1];
    if (value == NULL || owner_mark(by_sid, issuer, value, mark) != 0)
        return NULL;
    struct sg_pgstore_op *op = op_new(ps, OP_S_OWNER, done, arg);
    op->count_out = ended;
    again_of(op, by_sid, issuer, value);
    char *values[] = {hex_text(issuer ? issuer : ""), hex_text(value), sg_strdup(mark),
                      sg_asprintf("%lld", (long long)(sg_now_s() + SG_SESSION_ENDED_KEEP_S))};
    return op_send(op, by_sid ? ST_S_END_SID : ST_S_END_IDP, values, 4);
}

struct sg_pgstore_op *sg_pgstore_session_delete_owner_once(struct sg_pgstore *ps, bool by_sid,
                                                           const char *issuer, const char *value,
                                                           const void *jti_key, size_t jti_len,
                                                           int64_t keep_until, size_t *ended,
                                                           sg_pgstore_done_fn done, void *arg)
{
    char mark[2 * SG_SESSION_ENDED_KEY_LEN + 1];
    if (value == NULL || owner_mark(by_sid, issuer, value, mark) != 0)
        return NULL;
    struct sg_pgstore_op *op = op_new(ps, OP_S_JTI, done, arg);
    op->count_out = ended;
    again_of(op, by_sid, issuer, value);
    char *values[] = {hex_text(issuer ? issuer : ""),
                      hex_text(value),
                      hex_of(jti_key, jti_len),
                      sg_asprintf("%lld", (long long)keep_until),
                      sg_strdup(mark),
                      sg_asprintf("%lld", (long long)(sg_now_s() + SG_SESSION_ENDED_KEEP_S))};
    return op_send(op, by_sid ? ST_S_DELETE_SID_ONCE : ST_S_DELETE_IDP_ONCE, values, 6);
}

struct sg_pgstore_op *sg_pgstore_tenant_link(struct sg_pgstore *ps, const char *psa_tenant,
                                             const char *idp_tenant, const char *via,
                                             sg_pgstore_done_fn done, void *arg)
{
    if (!sg_links_id_valid(psa_tenant) || !sg_links_id_valid(idp_tenant))
        return NULL;
    struct sg_pgstore_op *op = op_new(ps, OP_T_LINK, done, arg);
    snprintf(op->tenant, sizeof(op->tenant), "%s", psa_tenant);
    char *values[] = {hex_text(psa_tenant), hex_text(idp_tenant), sg_strdup(ps->host),
                      sg_strdup(via)};
    return op_send(op, ST_T_LINK, values, 4);
}

struct sg_pgstore_op *sg_pgstore_tenant_unlink(struct sg_pgstore *ps, const char *psa_tenant,
                                               const char *via, sg_pgstore_done_fn done, void *arg)
{
    if (!sg_links_id_valid(psa_tenant))
        return NULL;
    struct sg_pgstore_op *op = op_new(ps, OP_UNLINK, done, arg);
    snprintf(op->tenant, sizeof(op->tenant), "%s", psa_tenant);
    char *values[] = {hex_text(psa_tenant), sg_strdup(ps->host), sg_strdup(via)};
    return op_send(op, ST_T_UNLINK, values, 3);
}

struct sg_pgstore_op *sg_pgstore_user_link(struct sg_pgstore *ps, const char *psa_tenant,
                                           const char *psa_user, const char *idp_tenant,
                                           const char *idp_sub,
                                           const struct sg_links_user_facts *facts, const char *via,
                                           sg_pgstore_done_fn done, void *arg)
{
    if (!sg_links_id_valid(psa_tenant) || !sg_links_id_valid(psa_user) ||
        !sg_links_id_valid(idp_tenant) || !sg_links_id_valid(idp_sub))
        return NULL;
    struct sg_pgstore_op *op = op_new(ps, OP_U_LINK, done, arg);
    snprintf(op->tenant, sizeof(op->tenant), "%s", psa_tenant);
    bool known = facts != NULL && facts->known;
    char *values[] = {hex_text(psa_tenant),
                      hex_text(psa_user),
                      hex_text(idp_tenant),
                      hex_text(idp_sub),
                      sg_strdup(known ? "true" : "false"),
                      sg_strdup(known && facts->staff ? "true" : "false"),
                      sg_strdup(known && facts->active ? "true" : "false"),
                      sg_strdup(ps->host),
                      sg_strdup(via)};
    return op_send(op, ST_U_LINK, values, 9);
}

struct sg_pgstore_op *sg_pgstore_user_unlink(struct sg_pgstore *ps, const char *psa_tenant,
                                             const char *psa_user, const char *via,
                                             sg_pgstore_done_fn done, void *arg)
{
    if (!sg_links_id_valid(psa_tenant) || !sg_links_id_valid(psa_user))
        return NULL;
    struct sg_pgstore_op *op = op_new(ps, OP_UNLINK, done, arg);
    snprintf(op->tenant, sizeof(op->tenant), "%s", psa_tenant);
    snprintf(op->psa_user, sizeof(op->psa_user), "%s", psa_user);
    char *values[] = {hex_text(psa_tenant), hex_text(psa_user), sg_strdup(ps->host),
                      sg_strdup(via)};
    return op_send(op, ST_U_UNLINK, values, 4);
}

void sg_pgstore_user_facts(struct sg_pgstore *ps, const char *psa_tenant, const char *psa_user,
                           bool staff, bool active)
{
    if (!sg_links_id_valid(psa_tenant) || !sg_links_id_valid(psa_user))
        return;
    char *values[] = {hex_text(psa_tenant), hex_text(psa_user), sg_strdup(staff ? "true" : "false"),
                      sg_strdup(active ? "true" : "false")};
    op_send(op_new(ps, OP_BACKGROUND, NULL, NULL), ST_U_FACTS, values, 4);
}

/* After each (re)connection: what expired meanwhile goes at once. */
static void sweep_now(struct sg_pgstore *ps)
{
    sg_pgstore_sweep(ps, sg_now_s(), SWEEP_AT_CONNECT);
}

void sg_pgstore_sweep(struct sg_pgstore *ps, int64_t now, size_t max)
{
    if (!sg_pg_available(ps->pg))
        return;
    char *sessions[] = {sg_asprintf("%lld", (long long)now), sg_asprintf("%zu", max)};
    op_send(op_new(ps, OP_BACKGROUND, NULL, NULL), ST_S_SWEEP, sessions, 2);
    char *states[] = {sg_asprintf("%lld", (long long)(now - SG_LOGINSTATE_TTL_S)),
                      sg_asprintf("%zu", max)};
    op_send(op_new(ps, OP_BACKGROUND, NULL, NULL), ST_LS_SWEEP, states, 2);
    char *jtis[] = {sg_asprintf("%lld", (long long)now), sg_asprintf("%zu", max)};
    op_send(op_new(ps, OP_BACKGROUND, NULL, NULL), ST_J_SWEEP, jtis, 2);
}
