/*
 * Tenant and user links between the PSA and the IdP, in the store.
 *
 * A tenant link joins one PSA tenant and one IdP tenant; a user link joins a
 * PSA user (psa_tenant, psa_user) and an IdP user (idp_tenant, idp_sub). Both
 * are one-to-one in both directions and indexed both ways (tenant_by_psa,
 * tenant_by_idp, user_by_psa, user_by_idp). Every change runs in one write
 * transaction that also ends the affected sessions, and is fsynced before the
 * function returns success: a link change the user saw succeed survives a
 * crash. That fsync blocks the caller for a disk flush; link changes are rare.
 *
 * Ids are non-empty, at most SG_LINKS_ID_MAX bytes, with no NUL or control
 * character. Composite keys join two ids with a NUL byte, which no id can
 * contain, so they are unambiguous and fit the store's key limit.
 */
#ifndef SSOGATE_LINKS_H
#define SSOGATE_LINKS_H

#include <stdbool.h>
#include <stddef.h>

struct sg_store;
struct sg_store_txn;

#define SG_LINKS_ID_MAX 255

enum sg_link_kind {
    SG_LINK_TENANT = 0,
    SG_LINK_USER,
};

/* One link. Strings are borrowed; psa_user and idp_sub are NULL for a tenant link. */
struct sg_link {
    enum sg_link_kind kind;
    const char *psa_tenant;
    const char *psa_user;
    const char *idp_tenant;
    const char *idp_sub;
    const struct sg_links_user_facts *facts; /* user links being added: kept facts, or NULL */
};

/* True when id is acceptable as a tenant or user id (see above). */
bool sg_links_id_valid(const char *id);

/*
 * Links psa_tenant to idp_tenant (both borrowed). Linking the same pair
 * again succeeds. Returns 0, SG_EEXIST when either side is linked to another
 * tenant (B4), SG_EINVAL (bad id), SG_ESTORE, or SG_EIO (written but the
 * fsync failed).
 */
int sg_links_tenant_put(struct sg_store *store, const char *psa_tenant, const char *idp_tenant);

/*
 * Finds the tenant linked to a PSA tenant (resp. IdP tenant). Returns 0 and,
 * when the out pointer is not NULL, hands back a new string (caller frees);
 * SG_ENOENT when not linked, SG_EINVAL (bad id) or SG_ESTORE.
 */
int sg_links_tenant_get_by_psa(struct sg_store *store, const char *psa_tenant, char **idp_tenant);
int sg_links_tenant_get_by_idp(struct sg_store *store, const char *idp_tenant, char **psa_tenant);

/*
 * Unlinks psa_tenant (B7): removes the tenant link, every user link of that
 * tenant and every session of those users, in one transaction. *users
 * (may be NULL) gets the number of user links removed. Returns 0, SG_ENOENT
 * (tenant not linked), SG_EINVAL, SG_ESTORE or SG_EIO.
 */
int sg_links_tenant_delete(struct sg_store *store, const char *psa_tenant, size_t *users);

/*
 * What the PSA said about a linked PSA user, kept with the user link so that
 * an SSO login can decide B9 without asking the PSA (psa.whoami.at_login
 * "link"). A link stored before facts were kept (or imported) has none:
 * known is false, and staff and active read true, because a user link is
 * only made for a staff, active PSA user (sg_linking_user_enable).
 */
struct sg_links_user_facts {
    bool known; /* false: no facts stored with the link */
    bool staff; /* not a client-portal user */
    bool active;
};

/*
 * Links the PSA user (psa_tenant, psa_user) to the IdP user (idp_tenant,
 * idp_sub); all borrowed. facts (borrowed; NULL or not known for none) are
 * kept with the link; linking the same pair again succeeds and replaces the
 * kept facts with known ones. Returns 0, SG_ENOENT when psa_tenant is not
 * linked, SG_EINVAL when it is linked to another IdP tenant than idp_tenant
 * or an id is bad, SG_EEXIST when either user is linked to someone else
 * (B10), SG_ESTORE or SG_EIO.
 */
int sg_links_user_put(struct sg_store *store, const char *psa_tenant, const char *psa_user,
                      const char *idp_tenant, const char *idp_sub,
                      const struct sg_links_user_facts *facts);

/*
 * The facts kept with the link of the IdP user (idp_tenant, idp_sub), into
 * *facts (see struct sg_links_user_facts for a link without facts). Returns
 * 0, SG_ENOENT (not linked), SG_EINVAL (bad id) or SG_ESTORE.
 */
int sg_links_user_facts_get(struct sg_store *store, const char *idp_tenant, const char *idp_sub,
                            struct sg_links_user_facts *facts);

/*
 * Replaces the facts kept with the link of the PSA user (psa_tenant,
 * psa_user) by staff and active. Writes (durably) only when they differ
 * from the kept ones, so that calling it on every whoami answer costs a
 * lookup. Returns 0, SG_ENOENT (not linked), SG_EINVAL (bad id), SG_ESTORE
 * or SG_EIO.
 */
int sg_links_user_facts_set(struct sg_store *store, const char *psa_tenant, const char *psa_user,
                            bool staff, bool active);

/*
 * Finds the IdP user linked to a PSA user (resp. the PSA user linked to an IdP
 * user). Returns 0 and hands back new strings through the out pointers that
 * are not NULL (caller frees); SG_ENOENT, SG_EINVAL or SG_ESTORE.
 */
int sg_links_user_get_by_psa(struct sg_store *store, const char *psa_tenant, const char *psa_user,
                             char **idp_tenant, char **idp_sub);
int sg_links_user_get_by_idp(struct sg_store *store, const char *idp_tenant, const char *idp_sub,
                             char **psa_tenant, char **psa_user);

/*
 * In txn: whether the IdP user (idp_tenant, idp_sub) is linked to exactly the
 * PSA user (psa_tenant, psa_user). Returns 0 when it is, SG_ENOENT when not
 * (no link, or a link to another PSA user), SG_EINVAL or SG_ESTORE.
 */
int sg_links_user_is_txn(struct sg_store_txn *txn, const char *idp_tenant, const char *idp_sub,
                         const char *psa_tenant, const char *psa_user);

/*
 * Unlinks the PSA user (B8) and ends that user's sessions, in one
 * transaction. Returns 0, SG_ENOENT (not linked), SG_EINVAL, SG_ESTORE or
 * SG_EIO.
 */
int sg_links_user_delete(struct sg_store *store, const char *psa_tenant, const char *psa_user);

/*
 * Called for each link; link and its strings are valid only during the call.
 * A non-zero return stops the iteration and is returned by sg_links_foreach.
 */
typedef int (*sg_links_foreach_fn)(const struct sg_link *link, void *arg);

/*
 * Calls fn for every tenant link, then every user link, ordered by PSA ids,
 * all from one consistent snapshot (a read transaction held for the whole
 * walk: meant for an admin tool). Returns 0, fn's non-zero value, or
 * SG_ESTORE (store failure or a malformed entry).
 */
int sg_links_foreach(struct sg_store *store, sg_links_foreach_fn fn, void *arg);

/*
 * Applies count links (borrowed) in one durable transaction, tenant links
 * first, each as the matching _put would. Refused whole on the first problem:
 * nothing is changed, *failed (may be NULL) gets the index of the offending
 * link and the error is the one its _put would return (SG_EEXIST on a
 * conflict). Returns 0 when every link is stored.
 */
int sg_links_import(struct sg_store *store, const struct sg_link *links, size_t count,
                    size_t *failed);

/* Replaces this host's copy of one tenant's links (the tenant link and its
 * user links, none when count is 0) by links, in one transaction: what is
 * not in links goes, with the sessions of its users; what stays is left
 * alone (kept facts updated). For the shared store (pgstore.c). */
int sg_links_replace_tenant(struct sg_store *store, const char *psa_tenant,
                            const struct sg_link *links, size_t count);

/* Replaces every link of this host's copy by links, in one transaction. */
int sg_links_replace_all(struct sg_store *store, const struct sg_link *links, size_t count);

#endif
