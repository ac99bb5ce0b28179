/*
 * Login state: an OpenID Connect login in flight between /_sso/login and
 * /_sso/callback, kept in the store's "logins" database so that any worker
 * process can finish a login another one started.
 *
 * The key of a record is SHA-256(state), never the state itself. A state is
 * taken (read and deleted) in one write transaction, so it is used at most
 * once across every worker. A state has expired once SG_LOGINSTATE_TTL_S
 * seconds have passed since it was created.
 *
 * Records are a versioned binary layout with length-prefixed texts. Decoding
 * is bounds-checked and accepts any bytes (a record another worker wrote, or
 * one corrupted on disk), answering with a status that says what was wrong.
 */
#ifndef SSOGATE_LOGINSTATE_H
#define SSOGATE_LOGINSTATE_H

#include <stddef.h>
#include <stdint.h>

struct sg_store;

/* Seconds a login may take, from /_sso/login to the callback. */
#define SG_LOGINSTATE_TTL_S 600
/* state, nonce and PKCE verifier: 32 random bytes in base64url. */
#define SG_LOGINSTATE_TOKEN_LEN  43
#define SG_LOGINSTATE_TOKEN_SIZE (SG_LOGINSTATE_TOKEN_LEN + 1)
/* The SHA-256 of the browser's binding cookie. */
#define SG_LOGINSTATE_BINDING_LEN 32
/* Bytes of return_to, psa_tenant and psa_user each (SG_REDIRECT_MAX). */
#define SG_LOGINSTATE_TEXT_MAX 2048
/* Bytes of the largest record. */
#define SG_LOGINSTATE_RECORD_MAX                                                                   \
    (1 + 8 + 2 * SG_LOGINSTATE_TOKEN_LEN + SG_LOGINSTATE_BINDING_LEN + 1 +                         \
     3 * (2 + SG_LOGINSTATE_TEXT_MAX))

/* What a login is for; carried in the login state. */
enum sg_login_purpose {
    SG_LOGIN_SESSION = 0, /* log in: a new gateway session */
    SG_LOGIN_LINK_TENANT, /* link the caller's PSA tenant to the IdP tenant */
    SG_LOGIN_LINK_USER,   /* link the caller's PSA user to the IdP user */
};

/*
 * A login in flight. Texts are NUL-terminated; they are owned by the struct
 * when it was filled by sg_loginstate_take or sg_loginstate_decode (free
 * them with sg_loginstate_clear) and borrowed by sg_loginstate_put and
 * sg_loginstate_encode. An empty text is stored as absent (NULL).
 */
struct sg_loginstate {
    char state[SG_LOGINSTATE_TOKEN_SIZE]; /* the key's preimage: not in the record */
    char nonce[SG_LOGINSTATE_TOKEN_SIZE];
    char verifier[SG_LOGINSTATE_TOKEN_SIZE];
    unsigned char binding[SG_LOGINSTATE_BINDING_LEN];
    enum sg_login_purpose purpose;
    char *return_to;  /* required: a local path */
    char *psa_tenant; /* optional: the PSA caller a link is for */
    char *psa_user;   /* optional */
    int64_t created;  /* seconds since the epoch */
};

/* What decoding a record found; one value per reason a record is refused. */
enum sg_loginstate_status {
    SG_LOGINSTATE_OK = 0,
    SG_LOGINSTATE_TRUNCATED,   /* ends inside its fixed part, or a length points past the end */
    SG_LOGINSTATE_BAD_VERSION, /* a layout this build does not know */
    SG_LOGINSTATE_BAD_TOKEN,   /* nonce or verifier not 43 base64url characters */
    SG_LOGINSTATE_BAD_PURPOSE, /* not an enum sg_login_purpose */
    SG_LOGINSTATE_BAD_TEXT,    /* a text over its bound or holding a NUL; return_to missing */
    SG_LOGINSTATE_TRAILING,    /* bytes after the last field */
};

/* The name of a status (for logs and metrics labels); a static string. */
const char *sg_loginstate_status_name(enum sg_loginstate_status status);

/*
 * Encodes the fields of s (borrowed; state is not part of the record) into
 * out and its length into *len. Returns 0, or SG_EINVAL when nonce or
 * verifier is not a token, the purpose is unknown, return_to is missing or a
 * text is longer than SG_LOGINSTATE_TEXT_MAX.
 */
int sg_loginstate_encode(const struct sg_loginstate *s, unsigned char out[SG_LOGINSTATE_RECORD_MAX],
                         size_t *len);

/*
 * Decodes len bytes of data (borrowed, any bytes) into *out. On
 * SG_LOGINSTATE_OK the caller clears *out with sg_loginstate_clear; its state
 * is empty (the record does not hold it). On any other status *out is zeroed.
 */
enum sg_loginstate_status sg_loginstate_decode(const void *data, size_t len,
                                               struct sg_loginstate *out);

/*
 * Stores s (borrowed) under the SHA-256 of s->state, replacing any record
 * there. Not synced: a login lost in a power cut is started again. Returns 0,
 * SG_EINVAL (state not a token, or see sg_loginstate_encode), SG_ETOOBIG
 * (store full) or SG_ESTORE.
 */
int sg_loginstate_put(struct sg_store *store, const struct sg_loginstate *s);

/*
 * Reads and deletes the record of state (borrowed) in one write transaction,
 * at time now: whichever worker asks, a state is taken at most once. Returns
 * 0 and fills *out (clear it with sg_loginstate_clear), SG_ENOENT (no such
 * state, a string that cannot be one, or a record that does not decode),
 * SG_ETIMEOUT (the state had expired), or SG_ESTORE; on error *out is zeroed.
 * Expired and undecodable records are deleted as well.
 */
int sg_loginstate_take(struct sg_store *store, const char *state, int64_t now,
                       struct sg_loginstate *out);

/*
 * The number of login states kept, by every worker; expired ones count until
 * they are swept. Returns 0 and sets *count, or SG_ESTORE with *count 0.
 */
int sg_loginstate_count(struct sg_store *store, size_t *count);

/*
 * Deletes up to max states that have expired at now or do not decode.
 * *deleted (may be NULL) gets the number deleted, 0 on error. Returns 0,
 * SG_ETOOBIG or SG_ESTORE.
 */
int sg_loginstate_sweep(struct sg_store *store, int64_t now, size_t max, size_t *deleted);

/* Frees the texts of s, wipes its secrets and zeroes it. NULL-safe. */
void sg_loginstate_clear(struct sg_loginstate *s);

/*
 * Login states kept in this process's memory, for a gateway that is the only
 * process finishing its logins (one worker, no shared store): no store
 * transaction per login. The same records, rules and answers as the store's
 * functions above (single use, SG_LOGINSTATE_TTL_S); a state is found by its
 * name in a hash table, compared in constant time. Lost with the process,
 * as logins in flight may be (SPEC.md, Data).
 */
struct sg_loginstate_table;

struct sg_loginstate_table *sg_loginstate_table_new(void);

/* Frees the table and wipes the states it holds. NULL-safe. */
void sg_loginstate_table_free(struct sg_loginstate_table *t);

/* As sg_loginstate_put: 0 or SG_EINVAL. s is borrowed (copied in). */
int sg_loginstate_table_put(struct sg_loginstate_table *t, const struct sg_loginstate *s);

/* As sg_loginstate_take: 0 (fills *out), SG_ENOENT or SG_ETIMEOUT; the state is gone after. */
int sg_loginstate_table_take(struct sg_loginstate_table *t, const char *state, int64_t now,
                             struct sg_loginstate *out);

/* The number of states kept, expired ones until they are swept. */
size_t sg_loginstate_table_count(const struct sg_loginstate_table *t);

/*
 * Deletes up to max expired states, oldest put first, stopping at the first
 * that has not expired. Returns how many were deleted.
 */
size_t sg_loginstate_table_sweep(struct sg_loginstate_table *t, int64_t now, size_t max);

#endif
