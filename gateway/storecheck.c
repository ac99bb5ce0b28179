#include "ssogate/storecheck.h"

#include "ssogate/common.h"
#include "ssogate/links.h"
#include "ssogate/store.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct check_state {
    size_t tenants, users, problems;
    struct sg_store *store;
    FILE *out;
};

static void problem(struct check_state *st, const struct sg_link *link, const char *what)
{
    st->problems++;
    if (link->kind == SG_LINK_TENANT)
        fprintf(st->out, "problem: tenant %s <-> %s: %s\n", link->psa_tenant, link->idp_tenant,
                what);
    else
        fprintf(st->out, "problem: user %s/%s <-> %s/%s: %s\n", link->psa_tenant, link->psa_user,
                link->idp_tenant, link->idp_sub, what);
}

static bool same(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* One link, seen from its PSA side: the IdP side must point back, a user's tenant must be linked.
 */
static int check_one(const struct sg_link *link, void *arg)
{
    struct check_state *st = arg;
    char *a = NULL, *b = NULL;
    if (link->kind == SG_LINK_TENANT) {
        st->tenants++;
        if (sg_links_tenant_get_by_idp(st->store, link->idp_tenant, &a) != 0 ||
            !same(a, link->psa_tenant))
            problem(st, link, "the IdP tenant does not point back");
    } else {
        st->users++;
        if (sg_links_user_get_by_idp(st->store, link->idp_tenant, link->idp_sub, &a, &b) != 0 ||
            !same(a, link->psa_tenant) || !same(b, link->psa_user))
            problem(st, link, "the IdP user does not point back");
        free(a);
        a = NULL;
        if (sg_links_tenant_get_by_psa(st->store, link->psa_tenant, &a) != 0 ||
            !same(a, link->idp_tenant))
            problem(st, link, "its PSA tenant is not linked to its IdP tenant (an orphan)");
    }
    free(a);
    free(b);
    return 0;
}

int sg_store_check(struct sg_store *store, FILE *out, size_t *problems)
{
    struct check_state st = {.store = store, .out = out};
    struct sg_store_stats stats;
    if (sg_links_foreach(store, check_one, &st) != 0 || sg_store_stats(store, &stats) != 0) {
        fprintf(
            out,
            "problem: the store cannot be read whole (a malformed record or a store failure)\n");
        *problems = st.problems + 1;
        return SG_ESTORE;
    }
    /* Every PSA-side entry pointed back; equal counts leave no IdP-side entry without one. */
    if (stats.entries[SG_STORE_DB_TENANT_BY_IDP] != st.tenants) {
        st.problems++;
        fprintf(out, "problem: %zu IdP-side tenant entries for %zu tenant links\n",
                stats.entries[SG_STORE_DB_TENANT_BY_IDP], st.tenants);
    }
    if (stats.entries[SG_STORE_DB_USER_BY_IDP] != st.users) {
        st.problems++;
        fprintf(out, "problem: %zu IdP-side user entries for %zu user links\n",
                stats.entries[SG_STORE_DB_USER_BY_IDP], st.users);
    }
    fprintf(out, "schema %d, %zu tenant links, %zu user links, %zu sessions: %zu problems\n",
            SG_STORE_SCHEMA_VERSION, st.tenants, st.users, stats.entries[SG_STORE_DB_SESSIONS],
            st.problems);
    *problems = st.problems;
    return 0;
}
