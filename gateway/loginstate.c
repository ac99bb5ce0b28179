#include "ssogate/loginstate.h"

#include "ssogate/common.h"
#include "ssogate/redirect.h"
#include "ssogate/store.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/*
 * Record layout, version 1 (integers big-endian):
 *   u8 version | i64 created | nonce (43) | verifier (43) | binding (32) |
 *   u8 purpose, then return_to, psa_tenant and psa_user, each as a u16
 *   length (0 when absent) and that many bytes, no NUL.
 * The record ends exactly after the last text.
 */
#define RECORD_VERSION  1
#define OFFSET_CREATED  1
#define OFFSET_NONCE    (OFFSET_CREATED + 8)
#define OFFSET_VERIFIER (OFFSET_NONCE + SG_LOGINSTATE_TOKEN_LEN)
#define OFFSET_BINDING  (OFFSET_VERIFIER + SG_LOGINSTATE_TOKEN_LEN)
#define OFFSET_PURPOSE  (OFFSET_BINDING + SG_LOGINSTATE_BINDING_LEN)
#define OFFSET_TEXTS    (OFFSET_PURPOSE + 1)

_Static_assert(SG_LOGINSTATE_BINDING_LEN == SHA256_DIGEST_LENGTH, "the binding is a SHA-256");
_Static_assert(SG_LOGINSTATE_TEXT_MAX >= SG_REDIRECT_MAX, "every valid return_to fits");
_Static_assert(SG_LOGINSTATE_TEXT_MAX <= UINT16_MAX, "a text length fits its u16");
_Static_assert(SG_LOGINSTATE_RECORD_MAX == OFFSET_TEXTS + 3 * (2 + SG_LOGINSTATE_TEXT_MAX),
               "the largest record is the fixed part and three full texts");

enum text { TEXT_RETURN_TO, TEXT_PSA_TENANT, TEXT_PSA_USER, TEXT_COUNT };

/* A decoded record, pointing into the bytes it was decoded from. */
struct record_view {
    int64_t created;
    const unsigned char *nonce;
    const unsigned char *verifier;
    const unsigned char *binding;
    enum sg_login_purpose purpose;
    const unsigned char *text[TEXT_COUNT];
    size_t text_len[TEXT_COUNT];
};

static const char *const status_names[] = {
    [SG_LOGINSTATE_OK] = "ok",
    [SG_LOGINSTATE_TRUNCATED] = "truncated",
    [SG_LOGINSTATE_BAD_VERSION] = "bad_version",
    [SG_LOGINSTATE_BAD_TOKEN] = "bad_token",
    [SG_LOGINSTATE_BAD_PURPOSE] = "bad_purpose",
    [SG_LOGINSTATE_BAD_TEXT] = "bad_text",
    [SG_LOGINSTATE_TRAILING] = "trailing",
};

const char *sg_loginstate_status_name(enum sg_loginstate_status status)
{
    if ((size_t)status >= SG_ARRAY_LEN(status_names))
        return "unknown";
    return status_names[status];
}

/* True when p holds SG_LOGINSTATE_TOKEN_LEN base64url characters (len is p's length). */
static bool token_valid(const unsigned char *p, size_t len)
{
    if (len != SG_LOGINSTATE_TOKEN_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = p[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_';
        if (!ok)
            return false;
    }
    return true;
}

static bool token_text_valid(const char *token)
{
    return token_valid((const unsigned char *)token, strnlen(token, SG_LOGINSTATE_TOKEN_LEN + 1));
}

static bool expired(int64_t created, int64_t now)
{
    /* now - created >= TTL, without overflow for any created a record holds */
    return created <= now - SG_LOGINSTATE_TTL_S;
}

static enum sg_loginstate_status record_parse(const unsigned char *p, size_t len,
                                              struct record_view *v)
{
    if (len < 1)
        return SG_LOGINSTATE_TRUNCATED;
    if (p[0] != RECORD_VERSION)
        return SG_LOGINSTATE_BAD_VERSION;
    if (len < OFFSET_TEXTS)
        return SG_LOGINSTATE_TRUNCATED;
    v->created = (int64_t)sg_store_get_be64(p + OFFSET_CREATED);
    v->nonce = p + OFFSET_NONCE;
    v->verifier = p + OFFSET_VERIFIER;
    v->binding = p + OFFSET_BINDING;
    if (!token_valid(v->nonce, SG_LOGINSTATE_TOKEN_LEN) ||
        !token_valid(v->verifier, SG_LOGINSTATE_TOKEN_LEN))
        return SG_LOGINSTATE_BAD_TOKEN;
    if (p[OFFSET_PURPOSE] > SG_LOGIN_LINK_USER)
        return SG_LOGINSTATE_BAD_PURPOSE;
    v->purpose = (enum sg_login_purpose)p[OFFSET_PURPOSE];
    size_t off = OFFSET_TEXTS;
    for (int i = 0; i < TEXT_COUNT; i++) {
        if (len - off < 2)
            return SG_LOGINSTATE_TRUNCATED;
        size_t n = (size_t)p[off] << 8 | p[off + 1];
        off += 2;
        if (n > len - off)
            return SG_LOGINSTATE_TRUNCATED;
        if (n > SG_LOGINSTATE_TEXT_MAX || memchr(p + off, '\0', n) != NULL)
            return SG_LOGINSTATE_BAD_TEXT;
        v->text[i] = p + off;
        v->text_len[i] = n;
        off += n;
    }
    if (v->text_len[TEXT_RETURN_TO] == 0)
        return SG_LOGINSTATE_BAD_TEXT;
    return off == len ? SG_LOGINSTATE_OK : SG_LOGINSTATE_TRAILING;
}

static char *text_copy(const struct record_view *v, enum text t)
{
    return v->text_len[t] > 0 ? sg_strndup((const char *)v->text[t], v->text_len[t]) : NULL;
}

static void copy_out(const struct record_view *v, struct sg_loginstate *out)
{
    memset(out, 0, sizeof(*out));
    out->created = v->created;
    memcpy(out->nonce, v->nonce, SG_LOGINSTATE_TOKEN_LEN);
    memcpy(out->verifier, v->verifier, SG_LOGINSTATE_TOKEN_LEN);
    memcpy(out->binding, v->binding, SG_LOGINSTATE_BINDING_LEN);
    out->purpose = v->purpose;
    out->return_to = text_copy(v, TEXT_RETURN_TO);
    out->psa_tenant = text_copy(v, TEXT_PSA_TENANT);
    out->psa_user = text_copy(v, TEXT_PSA_USER);
}

enum sg_loginstate_status sg_loginstate_decode(const void *data, size_t len,
                                               struct sg_loginstate *out)
{
    struct record_view view;
    enum sg_loginstate_status status = record_parse(data, len, &view);
    if (status == SG_LOGINSTATE_OK)
        copy_out(&view, out);
    else
        memset(out, 0, sizeof(*out));
    return status;
}

/* Appends text (NULL for none) with its u16 length at *off; false when it is too long. */
static bool put_text(unsigned char *out, size_t *off, const char *text)
{
    size_t len = text != NULL ? strnlen(text, SG_LOGINSTATE_TEXT_MAX + 1) : 0;
    if (len > SG_LOGINSTATE_TEXT_MAX)
        return false;
    out[*off] = (unsigned char)(len >> 8);
    out[*off + 1] = (unsigned char)(len & 0xff);
    if (len > 0)
        memcpy(out + *off + 2, text, len);
    *off += 2 + len;
    return true;
}

int sg_loginstate_encode(const struct sg_loginstate *s, unsigned char out[SG_LOGINSTATE_RECORD_MAX],
                         size_t *len)
{
    if (!token_text_valid(s->nonce) || !token_text_valid(s->verifier) ||
        (unsigned)s->purpose > SG_LOGIN_LINK_USER || s->return_to == NULL ||
        s->return_to[0] == '\0')
        return SG_EINVAL;
    out[0] = RECORD_VERSION;
    sg_store_put_be64(out + OFFSET_CREATED, (uint64_t)s->created);
    memcpy(out + OFFSET_NONCE, s->nonce, SG_LOGINSTATE_TOKEN_LEN);
    memcpy(out + OFFSET_VERIFIER, s->verifier, SG_LOGINSTATE_TOKEN_LEN);
    memcpy(out + OFFSET_BINDING, s->binding, SG_LOGINSTATE_BINDING_LEN);
    out[OFFSET_PURPOSE] = (unsigned char)s->purpose;
    size_t off = OFFSET_TEXTS;
    if (!put_text(out, &off, s->return_to) || !put_text(out, &off, s->psa_tenant) ||
        !put_text(out, &off, s->psa_user))
        return SG_EINVAL;
    *len = off;
    return 0;
}

static void state_key(const char *state, unsigned char key[SHA256_DIGEST_LENGTH])
{
    sg_sha256(state, strlen(state), key);
}

int sg_loginstate_put(struct sg_store *store, const struct sg_loginstate *s)
{
    unsigned char key[SHA256_DIGEST_LENGTH];
    unsigned char record[SG_LOGINSTATE_RECORD_MAX];
    size_t len;
    struct sg_store_txn txn;
    if (!token_text_valid(s->state))
        return SG_EINVAL;
    int err = sg_loginstate_encode(s, record, &len);
    if (err != 0)
        goto end;
    state_key(s->state, key);
    err = sg_store_txn_begin(store, true, &txn);
    if (err != 0)
        goto end;
    err = sg_store_put(&txn, SG_STORE_DB_LOGINS, key, sizeof(key), record, len, 0);
    if (err != 0) {
        sg_store_txn_abort(&txn);
        goto end;
    }
    err = sg_store_txn_commit(&txn, SG_STORE_LAZY);

end:
    OPENSSL_cleanse(record, sizeof(record));
    return err;
}

/* A decoded state taken from where it was kept: refused once expired, else named by state. */
static int finish_take(const char *state, int64_t now, struct sg_loginstate *out)
{
    if (expired(out->created, now)) {
        sg_loginstate_clear(out);
        return SG_ETIMEOUT;
    }
    memcpy(out->state, state, SG_LOGINSTATE_TOKEN_SIZE);
    return 0;
}

int sg_loginstate_take(struct sg_store *store, const char *state, int64_t now,
                       struct sg_loginstate *out)
{
    unsigned char key[SHA256_DIGEST_LENGTH];
    struct sg_store_txn txn;
    struct record_view view;
    bool decoded = false;
    memset(out, 0, sizeof(*out));
    if (!token_text_valid(state))
        return SG_ENOENT;
    state_key(state, key);
    int err = sg_store_txn_begin(store, true, &txn);
    if (err != 0)
        return err;
    void *val = NULL;
    size_t len = 0;
    err = sg_store_take(&txn, SG_STORE_DB_LOGINS, key, sizeof(key), &val, &len);
    if (err == 0) {
        decoded = record_parse(val, len, &view) == SG_LOGINSTATE_OK;
        if (decoded)
            copy_out(&view, out);
        OPENSSL_cleanse(val, len);
        free(val);
    }
    if (err != 0) {
        sg_store_txn_abort(&txn);
        return err;
    }
    err = sg_store_txn_commit(&txn, SG_STORE_LAZY);
    if (err != 0) {
        sg_loginstate_clear(out);
        return err;
    }
    return decoded ? finish_take(state, now, out) : SG_ENOENT;
}

int sg_loginstate_count(struct sg_store *store, size_t *count)
{
    struct sg_store_stats stats;
    *count = 0;
    int err = sg_store_stats(store, &stats);
    if (err != 0)
        return err;
    *count = stats.entries[SG_STORE_DB_LOGINS];
    return 0;
}

/* A login state to sweep: expired, or unreadable whatever wrote it. */
static bool state_doomed(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    const int64_t *now = arg;
    struct record_view view;
    return record_parse(val, vlen, &view) != SG_LOGINSTATE_OK || expired(view.created, *now);
}

int sg_loginstate_sweep(struct sg_store *store, int64_t now, size_t max, size_t *deleted)
{
    return sg_store_sweep(store, SG_STORE_DB_LOGINS, max, state_doomed, &now, deleted);
}

void sg_loginstate_clear(struct sg_loginstate *s)
{
    if (s == NULL)
        return;
    free(s->return_to);
    free(s->psa_tenant);
    free(s->psa_user);
    OPENSSL_cleanse(s, sizeof(*s));
}

/* ---- in memory: one process ---------------------------------------------- */

/* A state kept in memory: its name and its record, as the store would hold it. */
struct kept {
    struct kept *chain;         /* the next in its bucket */
    struct kept *older, *newer; /* put order: the sweep starts at the oldest */
    int64_t created;
    char state[SG_LOGINSTATE_TOKEN_SIZE];
    size_t len;
    unsigned char record[];
};

struct sg_loginstate_table {
    struct kept **buckets;
    size_t bucket_count; /* a power of two */
    size_t count;
    struct kept *oldest, *newest;
};

#define TABLE_BUCKETS_MIN 64

struct sg_loginstate_table *sg_loginstate_table_new(void)
{
    struct sg_loginstate_table *t = sg_calloc(1, sizeof(*t));
    t->bucket_count = TABLE_BUCKETS_MIN;
    t->buckets = sg_calloc(t->bucket_count, sizeof(*t->buckets));
    return t;
}

static void kept_free(struct kept *k)
{
    OPENSSL_cleanse(k, sizeof(*k) + k->len);
    free(k);
}

void sg_loginstate_table_free(struct sg_loginstate_table *t)
{
    if (t == NULL)
        return;
    for (struct kept *k = t->oldest, *next; k != NULL; k = next) {
        next = k->newer;
        kept_free(k);
    }
    free(t->buckets);
    free(t);
}

/* The bucket of a state (a token: 43 random characters, so FNV-1a spreads them). */
static size_t bucket_of(const struct sg_loginstate_table *t, const char *state)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < SG_LOGINSTATE_TOKEN_LEN; i++)
        h = (h ^ (unsigned char)state[i]) * 1099511628211ull;
    return (size_t)h & (t->bucket_count - 1);
}

/* The link that points at state's entry (or the end of its bucket's chain). */
static struct kept **table_find(struct sg_loginstate_table *t, const char *state)
{
    struct kept **at = &t->buckets[bucket_of(t, state)];
    while (*at != NULL && !sg_memeq_ct((*at)->state, state, SG_LOGINSTATE_TOKEN_LEN))
        at = &(*at)->chain;
    return at;
}

/* Takes the entry *at points at out of the table (the caller frees it). */
static struct kept *table_unlink(struct sg_loginstate_table *t, struct kept **at)
{
    struct kept *k = *at;
    *at = k->chain;
    if (k->older != NULL)
        k->older->newer = k->newer;
    else
        t->oldest = k->newer;
    if (k->newer != NULL)
        k->newer->older = k->older;
    else
        t->newest = k->older;
    t->count--;
    return k;
}

/* Doubles the buckets once there are more states than buckets. */
static void table_grow(struct sg_loginstate_table *t)
{
    size_t count = t->bucket_count * 2;
    struct kept **buckets = sg_calloc(count, sizeof(*buckets));
    t->bucket_count = count;
    for (struct kept *k = t->oldest; k != NULL; k = k->newer) {
        size_t b = bucket_of(t, k->state);
        k->chain = buckets[b];
        buckets[b] = k;
    }
    free(t->buckets);
    t->buckets = buckets;
}

int sg_loginstate_table_put(struct sg_loginstate_table *t, const struct sg_loginstate *s)
{
    unsigned char record[SG_LOGINSTATE_RECORD_MAX];
    size_t len;
    if (!token_text_valid(s->state))
        return SG_EINVAL;
    int err = sg_loginstate_encode(s, record, &len);
    if (err != 0)
        goto end;
    struct kept **at = table_find(t, s->state);
    if (*at != NULL)
        kept_free(table_unlink(t, at));
    struct kept *k = sg_malloc(sizeof(*k) + len);
    memcpy(k->state, s->state, SG_LOGINSTATE_TOKEN_SIZE);
    memcpy(k->record, record, len);
    k->len = len;
    k->created = s->created;
    k->older = t->newest;
    k->newer = NULL;
    if (t->newest != NULL)
        t->newest->newer = k;
    else
        t->oldest = k;
    t->newest = k;
    at = &t->buckets[bucket_of(t, k->state)];
    k->chain = *at;
    *at = k;
    if (++t->count > t->bucket_count)
        table_grow(t);

end:
    OPENSSL_cleanse(record, sizeof(record));
    return err;
}

int sg_loginstate_table_take(struct sg_loginstate_table *t, const char *state, int64_t now,
                             struct sg_loginstate *out)
{
    memset(out, 0, sizeof(*out));
    if (!token_text_valid(state))
        return SG_ENOENT;
    struct kept **at = table_find(t, state);
    if (*at == NULL)
        return SG_ENOENT;
    struct kept *k = table_unlink(t, at);
    enum sg_loginstate_status status = sg_loginstate_decode(k->record, k->len, out);
    kept_free(k);
    return status == SG_LOGINSTATE_OK ? finish_take(state, now, out) : SG_ENOENT;
}

size_t sg_loginstate_table_count(const struct sg_loginstate_table *t)
{
    return t->count;
}

size_t sg_loginstate_table_sweep(struct sg_loginstate_table *t, int64_t now, size_t max)
{
    size_t deleted = 0;
    while (deleted < max && t->oldest != NULL && expired(t->oldest->created, now)) {
        kept_free(table_unlink(t, table_find(t, t->oldest->state)));
        deleted++;
    }
    return deleted;
}
