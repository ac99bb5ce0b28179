#include "ssogate/session.h"

#include "ssogate/token.h"

#include "ssogate/common.h"
#include "ssogate/store.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Record layout, version 2 (integers big-endian):
 *   u8 version | i64 created_at | i64 last_seen | i64 expires_at | u32 idle_timeout_s
 *   then, for each field in enum field order: u32 length (FIELD_ABSENT when
 *   absent) and that many bytes, no NUL.
 * The record ends exactly after the last field. Version 2 added the last
 * two fields, idp_sid and claim_headers; version 1 records (without them)
 * still decode.
 */
#define SESSION_RECORD_VERSION 2
#define OFFSET_LAST_SEEN       9
#define RECORD_HEADER_LEN      29
#define FIELD_ABSENT           UINT32_MAX
#define SESSION_KEY_LEN        SHA256_DIGEST_LENGTH
#define OWNER_TEXT_MAX         (32 + 2 * SG_SESSION_ISSUER_MAX)
#define SWEEP_META_KEY         "session_sweep_next"
/* A sweep examines at most this many records per record it may delete, and at most SWEEP_SCAN_MAX.
 */
#define SWEEP_SCAN_FACTOR 16
#define SWEEP_SCAN_MAX    65536

enum field {
    FIELD_IDP_ISSUER = 0,
    FIELD_IDP_SUB,
    FIELD_IDP_TENANT,
    FIELD_EMAIL,
    FIELD_PSA_TENANT,
    FIELD_PSA_USER,
    FIELD_ID_TOKEN,
    FIELD_IDP_SID,       /* from version 2 */
    FIELD_CLAIM_HEADERS, /* from version 2 */
    FIELD_COUNT
};

/* The fields a record of each version holds. */
static int fields_of_version(unsigned version)
{
    return version == 1 ? FIELD_IDP_SID : version == SESSION_RECORD_VERSION ? FIELD_COUNT : -1;
}

#define SPEC(member, max_len, is_name, is_idp_text, text)                                          \
    {                                                                                              \
        offsetof(struct sg_session, member), (max_len), (is_name), (is_idp_text), (text)           \
    }
static const struct {
    size_t offset; /* of the char * in struct sg_session */
    size_t max;
    bool name;         /* an identifier: must not be empty when present */
    bool idp_text;     /* the IdP's text from JSON: must be UTF-8 to be written */
    const char *label; /* in sg_session_unstorable's answer */
} field_specs[FIELD_COUNT] = {
    [FIELD_IDP_ISSUER] = SPEC(idp_issuer, SG_SESSION_ISSUER_MAX, false, false, "iss"),
    [FIELD_IDP_SUB] = SPEC(idp_sub, SG_SESSION_NAME_MAX, true, true, "sub"),
    [FIELD_IDP_TENANT] = SPEC(idp_tenant, SG_SESSION_NAME_MAX, true, true, "idp_tenant"),
    [FIELD_EMAIL] = SPEC(email, SG_SESSION_EMAIL_MAX, false, true, "email"),
    [FIELD_PSA_TENANT] = SPEC(psa_tenant, SG_SESSION_NAME_MAX, true, false, "psa_tenant"),
    [FIELD_PSA_USER] = SPEC(psa_user, SG_SESSION_NAME_MAX, true, false, "psa_user"),
    [FIELD_ID_TOKEN] = SPEC(id_token, SG_SESSION_ID_TOKEN_MAX, false, false, "id_token"),
    [FIELD_IDP_SID] = SPEC(idp_sid, SG_SESSION_NAME_MAX, true, true, "sid"),
    [FIELD_CLAIM_HEADERS] =
        SPEC(claim_headers, SG_SESSION_CLAIMS_MAX, false, false, "claim_headers"),
};
#undef SPEC

/* A field of a record as it lies in the map (not NUL-terminated). */
struct field_view {
    const char *data; /* NULL when absent */
    size_t len;
};

struct record_view {
    int64_t created_at;
    int64_t last_seen;
    int64_t expires_at;
    uint32_t idle_timeout_s;
    struct field_view fields[FIELD_COUNT];
};

/* Owner hashes of one record: the IdP subject, the IdP session (sid) when known, and the PSA
 * user in link mode. */
struct owner_hashes {
    unsigned char hash[3][SESSION_KEY_LEN];
    size_t count;
};

static const char *const *field_in(const struct sg_session *s, enum field f)
{
    return (const char *const *)((const char *)s + field_specs[f].offset);
}

static char **field_ptr(struct sg_session *s, enum field f)
{
    return (char **)((char *)s + field_specs[f].offset);
}

void sg_session_new_id(char out[SG_SESSION_ID_SIZE])
{
    sg_random_token(32, out, SG_SESSION_ID_SIZE);
}

bool sg_session_id_valid(const char *id)
{
    /* strnlen read the NUL after the id: no byte past it is read again. */
    if (id == NULL || strnlen(id, SG_SESSION_ID_LEN + 1) != SG_SESSION_ID_LEN)
        return false;
    for (size_t i = 0; i < SG_SESSION_ID_LEN; i++) {
        unsigned char c = (unsigned char)id[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_';
        if (!ok)
            return false;
    }
    return true;
}

static void session_key(const char *id, unsigned char key[SESSION_KEY_LEN])
{
    sg_sha256(id, SG_SESSION_ID_LEN, key);
}

/* A field is bounded and free of control characters (which would let it split a header). */
static bool field_bytes_valid(const char *p, size_t len, size_t max, bool name)
{
    if (len > max || (name && len == 0))
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/* Whether field f of rec (present) can be stored; *len is its length (up to its maximum + 1). */
static bool field_storable(const struct sg_session *rec, enum field f, size_t *len)
{
    const char *s = *field_in(rec, f);
    *len = strnlen(s, field_specs[f].max + 1);
    /* The IdP's text must be UTF-8 too (a JSON "\udc80" decodes to a lone surrogate: an upstream
     * that drops or replaces the bad bytes could read another user's name in it). The PSA's ids
     * are opaque bytes (the links keep them so); a record read back is checked as written. */
    return field_bytes_valid(s, *len, field_specs[f].max, field_specs[f].name) &&
           (!field_specs[f].idp_text || sg_utf8_valid(s, *len));
}

/*
 * Writes the owner text "<kind>:<len>:<a>,<len>:<b>," into buf (OWNER_TEXT_MAX
 * bytes): the lengths make it unambiguous whatever a and b contain.
 */
static int owner_text(const char *kind, const char *a, size_t alen, const char *b, size_t blen,
                      char *buf)
{
    if (alen > SG_SESSION_ISSUER_MAX || blen > SG_SESSION_ISSUER_MAX)
        return SG_EINVAL;
    int n = snprintf(buf, OWNER_TEXT_MAX, "%s:%zu:%.*s,%zu:%.*s,", kind, alen, (int)alen, a, blen,
                     (int)blen, b);
    if (n < 0 || (size_t)n >= OWNER_TEXT_MAX)
        return SG_EINVAL;
    return 0;
}

static int owner_psa_text(const char *tenant, size_t tlen, const char *user, size_t ulen, char *buf)
{
    return owner_text("psa", tenant, tlen, user, ulen, buf);
}

static int owner_idp_text(const char *issuer, size_t ilen, const char *sub, size_t slen, char *buf)
{
    return owner_text("idp", issuer, ilen, sub, slen, buf);
}

static int owner_sid_text(const char *issuer, size_t ilen, const char *sid, size_t slen, char *buf)
{
    return owner_text("sid", issuer, ilen, sid, slen, buf);
}

int sg_session_owner_psa(const char *psa_tenant, const char *psa_user, char **out)
{
    *out = NULL;
    if (psa_tenant == NULL || psa_user == NULL)
        return SG_EINVAL;
    size_t tlen = strlen(psa_tenant);
    size_t ulen = strlen(psa_user);
    if (!field_bytes_valid(psa_tenant, tlen, SG_SESSION_NAME_MAX, true) ||
        !field_bytes_valid(psa_user, ulen, SG_SESSION_NAME_MAX, true))
        return SG_EINVAL;
    char buf[OWNER_TEXT_MAX];
    int err = owner_psa_text(psa_tenant, tlen, psa_user, ulen, buf);
    if (err != 0)
        return err;
    *out = sg_strdup(buf);
    return 0;
}

int sg_session_owner_idp(const char *issuer, const char *sub, char **out)
{
    *out = NULL;
    if (sub == NULL)
        return SG_EINVAL;
    if (issuer == NULL)
        issuer = "";
    size_t ilen = strlen(issuer);
    size_t slen = strlen(sub);
    if (!field_bytes_valid(issuer, ilen, SG_SESSION_ISSUER_MAX, false) ||
        !field_bytes_valid(sub, slen, SG_SESSION_NAME_MAX, true))
        return SG_EINVAL;
    char buf[OWNER_TEXT_MAX];
    int err = owner_idp_text(issuer, ilen, sub, slen, buf);
    if (err != 0)
        return err;
    *out = sg_strdup(buf);
    return 0;
}

int sg_session_owner_sid(const char *issuer, const char *sid, char **out)
{
    *out = NULL;
    if (sid == NULL)
        return SG_EINVAL;
    if (issuer == NULL)
        issuer = "";
    size_t ilen = strlen(issuer);
    size_t slen = strlen(sid);
    if (!field_bytes_valid(issuer, ilen, SG_SESSION_ISSUER_MAX, false) ||
        !field_bytes_valid(sid, slen, SG_SESSION_NAME_MAX, true))
        return SG_EINVAL;
    char buf[OWNER_TEXT_MAX];
    int err = owner_sid_text(issuer, ilen, sid, slen, buf);
    if (err != 0)
        return err;
    *out = sg_strdup(buf);
    return 0;
}

static void owner_hash(const char *owner, size_t len, unsigned char hash[SESSION_KEY_LEN])
{
    sg_sha256(owner, len, hash);
}

/*
 * Checks the relations between fields: idp_sub is required and psa_tenant and
 * psa_user come together.
 */
static bool fields_consistent(const struct field_view *f)
{
    if (f[FIELD_IDP_SUB].data == NULL)
        return false;
    return (f[FIELD_PSA_TENANT].data == NULL) == (f[FIELD_PSA_USER].data == NULL);
}

/*
 * Decodes a record without copying. Returns 0 or SG_ESTORE when it is
 * malformed. Without id_token the ID token's bytes are framed but not
 * scanned: a read that never uses them (every proxied request) does not
 * touch the kilobyte they take.
 */
static int record_decode_some(const void *data, size_t size, struct record_view *v, bool id_token)
{
    const unsigned char *p = data;
    int field_count = size < RECORD_HEADER_LEN ? -1 : fields_of_version(p[0]);
    if (field_count < 0)
        return SG_ESTORE;
    v->created_at = (int64_t)sg_store_get_be64(p + 1);
    v->last_seen = (int64_t)sg_store_get_be64(p + OFFSET_LAST_SEEN);
    v->expires_at = (int64_t)sg_store_get_be64(p + 17);
    v->idle_timeout_s = sg_store_get_be32(p + 25);
    size_t pos = RECORD_HEADER_LEN;
    for (int f = field_count; f < FIELD_COUNT; f++) {
        v->fields[f].data = NULL;
        v->fields[f].len = 0;
    }
    for (int f = 0; f < field_count; f++) {
        if (size - pos < 4)
            return SG_ESTORE;
        uint32_t len = sg_store_get_be32(p + pos);
        pos += 4;
        if (len == FIELD_ABSENT) {
            v->fields[f].data = NULL;
            v->fields[f].len = 0;
            continue;
        }
        if (len > size - pos)
            return SG_ESTORE;
        const char *bytes = (const char *)p + pos;
        bool scan = id_token || f != FIELD_ID_TOKEN;
        if (scan ? !field_bytes_valid(bytes, len, field_specs[f].max, field_specs[f].name)
                 : len > field_specs[f].max)
            return SG_ESTORE;
        v->fields[f].data = bytes;
        v->fields[f].len = len;
        pos += len;
    }
    if (pos != size || !fields_consistent(v->fields))
        return SG_ESTORE;
    return 0;
}

static int record_decode(const void *data, size_t size, struct record_view *v)
{
    return record_decode_some(data, size, v, true);
}

/* Validates rec and encodes it into a new buffer (*out, caller frees). Returns 0 or SG_EINVAL. */
static int record_encode(const struct sg_session *rec, unsigned char **out, size_t *out_len)
{
    struct field_view fields[FIELD_COUNT];
    size_t size = RECORD_HEADER_LEN;
    for (int f = 0; f < FIELD_COUNT; f++) {
        const char *s = *field_in(rec, f);
        fields[f].data = s;
        fields[f].len = 0;
        size += 4;
        if (s == NULL)
            continue;
        if (!field_storable(rec, f, &fields[f].len))
            return SG_EINVAL;
        size += fields[f].len;
    }
    if (!fields_consistent(fields) || rec->expires_at <= rec->created_at)
        return SG_EINVAL;

    unsigned char *p = sg_malloc(size);
    p[0] = SESSION_RECORD_VERSION;
    sg_store_put_be64(p + 1, (uint64_t)rec->created_at);
    sg_store_put_be64(p + OFFSET_LAST_SEEN, (uint64_t)rec->last_seen);
    sg_store_put_be64(p + 17, (uint64_t)rec->expires_at);
    sg_store_put_be32(p + 25, rec->idle_timeout_s);
    size_t pos = RECORD_HEADER_LEN;
    for (int f = 0; f < FIELD_COUNT; f++) {
        if (fields[f].data == NULL) {
            sg_store_put_be32(p + pos, FIELD_ABSENT);
            pos += 4;
            continue;
        }
        sg_store_put_be32(p + pos, (uint32_t)fields[f].len);
        pos += 4;
        memcpy(p + pos, fields[f].data, fields[f].len);
        pos += fields[f].len;
    }
    *out = p;
    *out_len = size;
    return 0;
}

/* The one expiry rule, of a stored record and of a decoded one. */
static bool expired_at(int64_t expires_at, int64_t last_seen, uint32_t idle_timeout_s, int64_t now)
{
    if (now >= expires_at)
        return true;
    /* Written so that no stored value can overflow the arithmetic. */
    return idle_timeout_s > 0 && last_seen <= now - (int64_t)idle_timeout_s;
}

static bool record_expired(const struct record_view *v, int64_t now)
{
    return expired_at(v->expires_at, v->last_seen, v->idle_timeout_s, now);
}

/* The owner hashes of a decoded record. */
static int record_owners(const struct record_view *v, struct owner_hashes *owners)
{
    const struct field_view *f = v->fields;
    char text[OWNER_TEXT_MAX];
    owners->count = 0;
    const char *issuer = f[FIELD_IDP_ISSUER].data != NULL ? f[FIELD_IDP_ISSUER].data : "";
    int err = owner_idp_text(issuer, f[FIELD_IDP_ISSUER].len, f[FIELD_IDP_SUB].data,
                             f[FIELD_IDP_SUB].len, text);
    if (err != 0)
        return err;
    owner_hash(text, strlen(text), owners->hash[owners->count++]);
    if (f[FIELD_PSA_TENANT].data != NULL) {
        err = owner_psa_text(f[FIELD_PSA_TENANT].data, f[FIELD_PSA_TENANT].len,
                             f[FIELD_PSA_USER].data, f[FIELD_PSA_USER].len, text);
        if (err != 0)
            return err;
        owner_hash(text, strlen(text), owners->hash[owners->count++]);
    }
    if (f[FIELD_IDP_SID].data != NULL) {
        err = owner_sid_text(issuer, f[FIELD_IDP_ISSUER].len, f[FIELD_IDP_SID].data,
                             f[FIELD_IDP_SID].len, text);
        if (err != 0)
            return err;
        owner_hash(text, strlen(text), owners->hash[owners->count++]);
    }
    return 0;
}

/* Adds (add) or removes the index entries owner -> key. */
static int index_owners(struct sg_store_txn *txn, const struct owner_hashes *owners,
                        const unsigned char key[SESSION_KEY_LEN], bool add)
{
    for (size_t i = 0; i < owners->count; i++) {
        const unsigned char *hash = owners->hash[i];
        int err = add ? sg_store_put(txn, SG_STORE_DB_SESSIONS_BY_OWNER, hash, SESSION_KEY_LEN, key,
                                     SESSION_KEY_LEN, SG_STORE_NOOVERWRITE)
                      : sg_store_delete(txn, SG_STORE_DB_SESSIONS_BY_OWNER, hash, SESSION_KEY_LEN,
                                        key, SESSION_KEY_LEN);
        if (err != 0 && err != SG_EEXIST && err != SG_ENOENT)
            return err;
    }
    return 0;
}

/*
 * Deletes the session stored under key and its index entries, in txn.
 * A record that does not decode is deleted too (its index entries, if any,
 * are removed when their owner's sessions are deleted). With only_expired,
 * a record that decodes is deleted only if it has expired at now.
 * Returns 0, SG_ENOENT (none, or not expired) or SG_ESTORE.
 */
static int delete_key_txn(struct sg_store_txn *txn, const unsigned char key[SESSION_KEY_LEN],
                          bool only_expired, int64_t now)
{
    const void *val;
    size_t size;
    int err = sg_store_get(txn, SG_STORE_DB_SESSIONS, key, SESSION_KEY_LEN, &val, &size);
    if (err != 0)
        return err;
    /* The owners are hashed before any write, which may move the record. */
    struct record_view view;
    struct owner_hashes owners = {.count = 0};
    if (record_decode(val, size, &view) == 0) {
        if (only_expired && !record_expired(&view, now))
            return SG_ENOENT;
        err = record_owners(&view, &owners);
        if (err != 0)
            return SG_ESTORE;
    }
    err = index_owners(txn, &owners, key, false);
    if (err != 0)
        return err;
    return sg_store_delete(txn, SG_STORE_DB_SESSIONS, key, SESSION_KEY_LEN, NULL, 0);
}

/* Deletes session key if it is (still) expired at now, in its own write transaction. */
static void delete_expired(struct sg_store *store, const unsigned char key[SESSION_KEY_LEN],
                           int64_t now)
{
    struct sg_store_txn txn;
    if (sg_store_txn_begin(store, true, &txn) != 0)
        return;
    if (delete_key_txn(&txn, key, true, now) == 0)
        sg_store_txn_commit(&txn, SG_STORE_LAZY);
    else
        sg_store_txn_abort(&txn);
}

int sg_session_insert_txn(struct sg_store_txn *txn, const unsigned char key[SG_SESSION_KEY_LEN],
                          const void *record, size_t len)
{
    struct record_view view;
    struct owner_hashes owners;
    if (record_decode(record, len, &view) != 0 || record_owners(&view, &owners) != 0)
        return SG_EINVAL;
    int err = sg_store_put(txn, SG_STORE_DB_SESSIONS, key, SESSION_KEY_LEN, record, len,
                           SG_STORE_NOOVERWRITE);
    return err != 0 ? err : index_owners(txn, &owners, key, true);
}

int sg_session_create(struct sg_store *store, const char *id, const struct sg_session *rec)
{
    if (!sg_session_id_valid(id))
        return SG_EINVAL;
    unsigned char *data = NULL;
    size_t size = 0;
    int err = record_encode(rec, &data, &size);
    if (err != 0)
        return err;
    unsigned char key[SESSION_KEY_LEN];
    session_key(id, key);

    struct sg_store_txn txn;
    err = sg_store_txn_begin(store, true, &txn);
    if (err != 0)
        goto end;
    err = sg_session_insert_txn(&txn, key, data, size);
    if (err == 0)
        err = sg_store_txn_commit(&txn, SG_STORE_LAZY);
    else
        sg_store_txn_abort(&txn);
end:
    SG_FREE(data);
    return err;
}

/* Copies a record's fields into out, in one allocation; the ID token only with id_token. */
static void copy_out(const struct record_view *v, struct sg_session *out, bool id_token)
{
    out->created_at = v->created_at;
    out->last_seen = v->last_seen;
    out->idle_timeout_s = v->idle_timeout_s;
    out->expires_at = v->expires_at;
    size_t total = 0;
    for (int f = 0; f < FIELD_COUNT; f++) {
        const struct field_view *fv = &v->fields[f];
        if (fv->data != NULL && (id_token || f != FIELD_ID_TOKEN))
            total += fv->len + 1;
    }
    char *at = out->strings = sg_malloc(total > 0 ? total : 1);
    for (int f = 0; f < FIELD_COUNT; f++) {
        const struct field_view *fv = &v->fields[f];
        bool wanted = fv->data != NULL && (id_token || f != FIELD_ID_TOKEN);
        *field_ptr(out, f) = wanted ? at : NULL;
        if (wanted) {
            memcpy(at, fv->data, fv->len);
            at[fv->len] = '\0';
            at += fv->len + 1;
        }
    }
}

/*
 * Reads session key at now in a read transaction. With out, copies the
 * record (the ID token with id_token); *last_seen and *idle_timeout_s (may
 * be NULL) get those fields.
 * An expired record is deleted. Returns 0, SG_ENOENT or SG_ESTORE.
 */
static int read_session(struct sg_store *store, const unsigned char key[SESSION_KEY_LEN],
                        int64_t now, struct sg_session *out, bool id_token, int64_t *last_seen,
                        uint32_t *idle_timeout_s)
{
    struct sg_store_txn txn;
    int err = sg_store_txn_begin(store, false, &txn);
    if (err != 0)
        return err;
    const void *val;
    size_t size;
    err = sg_store_get(&txn, SG_STORE_DB_SESSIONS, key, SESSION_KEY_LEN, &val, &size);
    if (err != 0) {
        sg_store_txn_abort(&txn);
        return err;
    }
    struct record_view view;
    if (record_decode_some(val, size, &view, id_token && out != NULL) != 0) {
        sg_store_txn_abort(&txn);
        return SG_ESTORE;
    }
    if (record_expired(&view, now)) {
        sg_store_txn_abort(&txn);
        delete_expired(store, key, now);
        return SG_ENOENT;
    }
    if (out != NULL)
        copy_out(&view, out, id_token);
    if (last_seen != NULL)
        *last_seen = view.last_seen;
    if (idle_timeout_s != NULL)
        *idle_timeout_s = view.idle_timeout_s;
    sg_store_txn_abort(&txn);
    return 0;
}

static int get_session(struct sg_store *store, const char *id, int64_t now, struct sg_session *out,
                       bool id_token)
{
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (!sg_session_id_valid(id))
        return SG_EINVAL;
    unsigned char key[SESSION_KEY_LEN];
    session_key(id, key);
    return read_session(store, key, now, out, id_token, NULL, NULL);
}

int sg_session_get(struct sg_store *store, const char *id, int64_t now, struct sg_session *out)
{
    return get_session(store, id, now, out, true);
}

int sg_session_get_brief(struct sg_store *store, const char *id, int64_t now,
                         struct sg_session *out)
{
    return get_session(store, id, now, out, false);
}

static int64_t touch_interval(uint32_t idle_timeout_s)
{
    int64_t interval = SG_SESSION_TOUCH_INTERVAL_S;
    if (idle_timeout_s > 0 && idle_timeout_s / 10 < interval)
        interval = idle_timeout_s / 10;
    return interval > 0 ? interval : 1;
}

int sg_session_touch_txn(struct sg_store_txn *txn, const unsigned char key[SG_SESSION_KEY_LEN],
                         int64_t now)
{
    const void *val;
    size_t size;
    int err = sg_store_get(txn, SG_STORE_DB_SESSIONS, key, SESSION_KEY_LEN, &val, &size);
    if (err != 0)
        return err;
    struct record_view view;
    if (record_decode(val, size, &view) != 0)
        return SG_ESTORE;
    /* Another process may have expired or touched it since our read. */
    if (record_expired(&view, now))
        return SG_ENOENT;
    if (view.last_seen >= now)
        return 0;
    unsigned char *copy = sg_malloc(size);
    memcpy(copy, val, size);
    sg_store_put_be64(copy + OFFSET_LAST_SEEN, (uint64_t)now);
    err = sg_store_put(txn, SG_STORE_DB_SESSIONS, key, SESSION_KEY_LEN, copy, size, 0);
    free(copy);
    return err;
}

/* Rewrites last_seen of session key to now, in a write transaction. */
static int write_last_seen(struct sg_store *store, const unsigned char key[SESSION_KEY_LEN],
                           int64_t now)
{
    struct sg_store_txn txn;
    int err = sg_store_txn_begin(store, true, &txn);
    if (err != 0)
        return err;
    err = sg_session_touch_txn(&txn, key, now);
    if (err != 0) {
        sg_store_txn_abort(&txn);
        return err;
    }
    return sg_store_txn_commit(&txn, SG_STORE_LAZY);
}

bool sg_session_touch_due(const struct sg_session *s, int64_t now)
{
    return s->last_seen <= now - touch_interval(s->idle_timeout_s);
}

bool sg_session_expired(const struct sg_session *s, int64_t now)
{
    return expired_at(s->expires_at, s->last_seen, s->idle_timeout_s, now);
}

bool sg_session_outlived(const struct sg_session *s, uint32_t idle_timeout_s,
                         uint32_t absolute_timeout_s, int64_t now)
{
    return expired_at(s->created_at + (int64_t)absolute_timeout_s, s->last_seen, idle_timeout_s,
                      now);
}

int sg_session_touch(struct sg_store *store, const char *id, int64_t now)
{
    if (!sg_session_id_valid(id))
        return SG_EINVAL;
    unsigned char key[SESSION_KEY_LEN];
    session_key(id, key);
    int64_t last_seen = 0;
    uint32_t idle = 0;
    int err = read_session(store, key, now, NULL, false, &last_seen, &idle);
    if (err != 0)
        return err;
    if (last_seen > now - touch_interval(idle))
        return 0;
    return write_last_seen(store, key, now);
}

int sg_session_delete(struct sg_store *store, const char *id)
{
    if (!sg_session_id_valid(id))
        return SG_EINVAL;
    unsigned char key[SESSION_KEY_LEN];
    session_key(id, key);
    return sg_session_delete_key(store, key);
}

/* The session keys found under one owner, collected by collect_key. */
struct key_list {
    unsigned char (*keys)[SESSION_KEY_LEN];
    size_t count;
    size_t cap;
};

static int collect_key(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct key_list *list = arg;
    if (vlen != SESSION_KEY_LEN)
        return 0;
    if (list->count == list->cap) {
        list->cap = list->cap ? 2 * list->cap : 8;
        list->keys = sg_realloc(list->keys, list->cap * sizeof(*list->keys));
    }
    memcpy(list->keys[list->count++], val, SESSION_KEY_LEN);
    return 0;
}

int sg_session_delete_by_owner_txn(struct sg_store_txn *txn, const char *owner, size_t *deleted)
{
    if (deleted != NULL)
        *deleted = 0;
    if (owner == NULL || owner[0] == '\0')
        return SG_EINVAL;
    unsigned char hash[SESSION_KEY_LEN];
    owner_hash(owner, strlen(owner), hash);

    /* Collect the keys first: deleting a session edits the index the scan walks. */
    struct key_list list = {NULL, 0, 0};
    int err = sg_store_scan(txn, SG_STORE_DB_SESSIONS_BY_OWNER, hash, sizeof(hash), sizeof(hash),
                            collect_key, &list);
    size_t removed = 0;
    for (size_t i = 0; err == 0 && i < list.count; i++) {
        int del = delete_key_txn(txn, list.keys[i], false, 0);
        if (del == 0)
            removed++;
        else if (del != SG_ENOENT)
            err = del;
    }
    SG_FREE(list.keys);
    if (err != 0)
        return err;
    /* Entries left by undecodable records. */
    err = sg_store_delete(txn, SG_STORE_DB_SESSIONS_BY_OWNER, hash, sizeof(hash), NULL, 0);
    if (err != 0 && err != SG_ENOENT)
        return err;
    if (deleted != NULL)
        *deleted = removed;
    return 0;
}

int sg_session_delete_by_owner(struct sg_store *store, const char *owner, size_t *deleted)
{
    if (deleted != NULL)
        *deleted = 0;
    struct sg_store_txn txn;
    int err = sg_store_txn_begin(store, true, &txn);
    if (err != 0)
        return err;
    err = sg_session_delete_by_owner_txn(&txn, owner, deleted);
    if (err != 0) {
        sg_store_txn_abort(&txn);
        if (deleted != NULL)
            *deleted = 0;
        return err;
    }
    return sg_store_txn_commit(&txn, SG_STORE_LAZY);
}

void sg_session_ended_key(const char *owner, unsigned char key[SG_SESSION_ENDED_KEY_LEN])
{
    /* A jti's key hashes its issuer first, a URL: a NUL first byte never is. */
    static const char domain[] = "\0ended\0";
    size_t dlen = sizeof(domain) - 1;
    size_t olen = strlen(owner);
    char *text = sg_malloc(dlen + olen);
    memcpy(text, domain, dlen);
    memcpy(text + dlen, owner, olen);
    sg_sha256(text, dlen + olen, key);
    free(text);
}

int sg_session_mark_ended_txn(struct sg_store_txn *txn, const char *owner, int64_t now)
{
    unsigned char key[SG_SESSION_ENDED_KEY_LEN];
    unsigned char until[8];
    sg_session_ended_key(owner, key);
    sg_store_put_be64(until, (uint64_t)(now + SG_SESSION_ENDED_KEEP_S));
    return sg_store_put(txn, SG_STORE_DB_LOGOUT_JTI, key, sizeof(key), until, sizeof(until), 0);
}

int sg_session_ended_keys(const struct sg_session *rec,
                          unsigned char keys[2][SG_SESSION_ENDED_KEY_LEN], size_t *count)
{
    *count = 0;
    char *owner = NULL;
    if (sg_session_owner_idp(rec->idp_issuer, rec->idp_sub, &owner) != 0)
        return SG_EINVAL;
    sg_session_ended_key(owner, keys[(*count)++]);
    free(owner);
    if (rec->idp_sid != NULL && sg_session_owner_sid(rec->idp_issuer, rec->idp_sid, &owner) == 0) {
        sg_session_ended_key(owner, keys[(*count)++]);
        free(owner);
    }
    return 0;
}

int sg_session_ended_since_txn(struct sg_store_txn *txn,
                               const unsigned char keys[][SG_SESSION_ENDED_KEY_LEN], size_t count,
                               int64_t began)
{
    for (size_t i = 0; i < count; i++) {
        const void *val;
        size_t vlen;
        int err = sg_store_get(txn, SG_STORE_DB_LOGOUT_JTI, keys[i], SG_SESSION_ENDED_KEY_LEN, &val,
                               &vlen);
        if (err == SG_ENOENT)
            continue;
        if (err != 0)
            return err;
        if (vlen == 8 && (int64_t)sg_store_get_be64(val) - SG_SESSION_ENDED_KEEP_S > began)
            return SG_EENDED;
    }
    return 0;
}

/* A sweep's walk over the sessions: see sweep_entry. */
struct sweep {
    int64_t now;
    size_t max;
    size_t scan_limit;
    size_t scanned;
    unsigned char (*keys)[SESSION_KEY_LEN]; /* room for max */
    size_t count;
    unsigned char next[SESSION_KEY_LEN];
    bool has_next;
};

/*
 * Examines one session: collects its key when it is expired or undecodable,
 * and stops at scan_limit records or max keys, leaving in next the first key
 * not examined.
 */
static int sweep_entry(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct sweep *sw = arg;
    if (sw->scanned == sw->scan_limit || sw->count == sw->max) {
        if (klen == SESSION_KEY_LEN) {
            memcpy(sw->next, key, SESSION_KEY_LEN);
            sw->has_next = true;
        }
        return SG_STORE_STOP;
    }
    sw->scanned++;
    struct record_view view;
    bool doomed = record_decode(val, vlen, &view) != 0 || record_expired(&view, sw->now);
    if (doomed && klen == SESSION_KEY_LEN)
        memcpy(sw->keys[sw->count++], key, SESSION_KEY_LEN);
    return 0;
}

int sg_session_sweep(struct sg_store *store, int64_t now, size_t max, size_t *deleted)
{
    if (deleted != NULL)
        *deleted = 0;
    if (max == 0)
        return 0;
    size_t scan_limit =
        max > SWEEP_SCAN_MAX / SWEEP_SCAN_FACTOR ? SWEEP_SCAN_MAX : max * SWEEP_SCAN_FACTOR;
    if (max > scan_limit)
        max = scan_limit;

    struct sg_store_txn txn;
    int err = sg_store_txn_begin(store, true, &txn);
    if (err != 0)
        return err;
    const char *meta_key = SWEEP_META_KEY;
    size_t meta_len = strlen(SWEEP_META_KEY);
    unsigned char start[SESSION_KEY_LEN];
    size_t start_len = 0;
    const void *val;
    size_t vlen;
    if (sg_store_get(&txn, SG_STORE_DB_META, meta_key, meta_len, &val, &vlen) == 0 &&
        vlen == SESSION_KEY_LEN) {
        memcpy(start, val, SESSION_KEY_LEN);
        start_len = SESSION_KEY_LEN;
    }

    struct sweep sw = {.now = now, .max = max, .scan_limit = scan_limit};
    sw.keys = sg_malloc(max * sizeof(*sw.keys));
    size_t removed = 0;
    err = sg_store_scan(&txn, SG_STORE_DB_SESSIONS, start, start_len, 0, sweep_entry, &sw);
    for (size_t i = 0; err == 0 && i < sw.count; i++) {
        int del = delete_key_txn(&txn, sw.keys[i], true, now);
        if (del == 0)
            removed++;
        else if (del != SG_ENOENT)
            err = del;
    }
    SG_FREE(sw.keys);
    if (err == 0) {
        if (sw.has_next) {
            err = sg_store_put(&txn, SG_STORE_DB_META, meta_key, meta_len, sw.next, SESSION_KEY_LEN,
                               0);
        } else {
            err = sg_store_delete(&txn, SG_STORE_DB_META, meta_key, meta_len, NULL, 0);
            if (err == SG_ENOENT)
                err = 0;
        }
    }
    if (err != 0) {
        sg_store_txn_abort(&txn);
        return err;
    }
    err = sg_store_txn_commit(&txn, SG_STORE_LAZY);
    if (err == 0 && deleted != NULL)
        *deleted = removed;
    return err;
}

const char *sg_session_unstorable(const struct sg_session *rec)
{
    size_t len;
    for (int f = 0; f < FIELD_COUNT; f++) {
        if (*field_in(rec, f) != NULL && !field_storable(rec, f, &len))
            return field_specs[f].label;
    }
    return NULL;
}

void sg_session_clear(struct sg_session *session)
{
    if (session == NULL)
        return;
    if (session->strings != NULL) {
        free(session->strings);
    } else {
        for (int f = 0; f < FIELD_COUNT; f++)
            free(*field_ptr(session, f));
    }
    memset(session, 0, sizeof(*session));
}

/* ---- by key, for the shared store (pgstore.c) and ssogate-admin copy ----- */

void sg_session_key(const char *id, unsigned char key[SG_SESSION_KEY_LEN])
{
    session_key(id, key);
}

int sg_session_encode(const struct sg_session *rec, unsigned char **out, size_t *len)
{
    return record_encode(rec, out, len);
}

int sg_session_decode(const void *data, size_t len, struct sg_session *out)
{
    memset(out, 0, sizeof(*out));
    struct record_view view;
    if (record_decode(data, len, &view) != 0)
        return SG_ESTORE;
    copy_out(&view, out, true);
    return 0;
}

int sg_session_put_key(struct sg_store *store, const unsigned char key[SG_SESSION_KEY_LEN],
                       const void *record, size_t len)
{
    struct record_view view;
    struct owner_hashes owners;
    if (record_decode(record, len, &view) != 0 || record_owners(&view, &owners) != 0)
        return SG_EINVAL;
    struct sg_store_txn txn;
    int err = sg_store_txn_begin(store, true, &txn);
    if (err != 0)
        return err;
    err = delete_key_txn(&txn, key, false, 0);
    if (err == SG_ENOENT)
        err = 0;
    if (err == 0)
        err = sg_store_put(&txn, SG_STORE_DB_SESSIONS, key, SESSION_KEY_LEN, record, len, 0);
    if (err == 0)
        err = index_owners(&txn, &owners, key, true);
    if (err != 0) {
        sg_store_txn_abort(&txn);
        return err;
    }
    return sg_store_txn_commit(&txn, SG_STORE_LAZY);
}

int sg_session_delete_key(struct sg_store *store, const unsigned char key[SG_SESSION_KEY_LEN])
{
    struct sg_store_txn txn;
    int err = sg_store_txn_begin(store, true, &txn);
    if (err != 0)
        return err;
    err = delete_key_txn(&txn, key, false, 0);
    if (err != 0) {
        sg_store_txn_abort(&txn);
        return err;
    }
    return sg_store_txn_commit(&txn, SG_STORE_LAZY);
}

struct each_state {
    sg_session_each_fn fn;
    void *arg;
};

static int each_entry(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    struct each_state *st = arg;
    if (klen != SESSION_KEY_LEN)
        return 0;
    return st->fn(key, val, vlen, st->arg);
}

int sg_session_each(struct sg_store *store, sg_session_each_fn fn, void *arg)
{
    struct sg_store_txn txn;
    int err = sg_store_txn_begin(store, false, &txn);
    if (err != 0)
        return err;
    struct each_state st = {fn, arg};
    err = sg_store_scan(&txn, SG_STORE_DB_SESSIONS, NULL, 0, 0, each_entry, &st);
    sg_store_txn_abort(&txn);
    return err;
}
