/*
 * The store's invariants, checked whole (ssogate-admin check, and before a
 * restore): the schema is the one this build reads (sg_store_open refuses
 * others), every record decodes, every tenant and user link points back from
 * its IdP side and no IdP-side entry lacks its PSA side, and every user link's
 * PSA tenant is linked to the user's IdP tenant (no orphan user link).
 */
#ifndef SSOGATE_STORECHECK_H
#define SSOGATE_STORECHECK_H

#include <stddef.h>
#include <stdio.h>

struct sg_store;

/*
 * Checks store (borrowed), writing one "problem: ..." line per problem and a
 * summary line to out. *problems gets their number. Returns 0 when the store
 * could be read whole (problems or not), SG_ESTORE otherwise. Lookups run in
 * their own transactions: on a store being changed, a problem seen once may
 * be a change in flight; check a backup for a settled answer.
 */
int sg_store_check(struct sg_store *store, FILE *out, size_t *problems);

#endif
