/* storecheck.c: a consistent store passes; each broken invariant is one problem. */
#include "ssogate/common.h"
#include "ssogate/links.h"
#include "ssogate/store.h"
#include "ssogate/storecheck.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

struct fixture {
    char dir[64];
    struct sg_store *store;
};

static int setup(void **state)
{
    struct fixture *f = sg_calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/sg-test-check-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char err[256];
    assert_int_equal(sg_store_open(f->dir, &f->store, err, sizeof(err)), 0);
    assert_int_equal(sg_links_tenant_put(f->store, "p1", "i1"), 0);
    assert_int_equal(sg_links_user_put(f->store, "p1", "u1", "i1", "s1", NULL), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    sg_store_close(f->store);
    char *cmd = sg_asprintf("rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(f);
    return 0;
}

static void raw_put(struct sg_store *store, enum sg_store_db db, const char *key, size_t klen,
                    const char *val, size_t vlen)
{
    struct sg_store_txn txn;
    assert_int_equal(sg_store_txn_begin(store, true, &txn), 0);
    assert_int_equal(sg_store_put(&txn, db, key, klen, val, vlen, 0), 0);
    assert_int_equal(sg_store_txn_commit(&txn, SG_STORE_LAZY), 0);
}

/* Runs the check; returns its problem count, and its report in out (caller frees). */
static size_t check(struct sg_store *store, char **report)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    size_t problems = 99;
    assert_int_equal(sg_store_check(store, out, &problems), 0);
    fclose(out);
    *report = buf;
    return problems;
}

static void test_consistent(void **state)
{
    struct fixture *f = *state;
    char *report;
    assert_int_equal(check(f->store, &report), 0);
    assert_non_null(strstr(report, "1 tenant links, 1 user links"));
    free(report);
}

static void test_idp_side_without_psa_side(void **state)
{
    struct fixture *f = *state;
    raw_put(f->store, SG_STORE_DB_TENANT_BY_IDP, "i9", 2, "p9", 2);
    char *report;
    assert_int_equal(check(f->store, &report), 1);
    assert_non_null(strstr(report, "2 IdP-side tenant entries for 1 tenant links"));
    free(report);
}

static void test_not_pointing_back(void **state)
{
    struct fixture *f = *state;
    raw_put(f->store, SG_STORE_DB_TENANT_BY_IDP, "i1", 2, "p2", 2);
    raw_put(f->store, SG_STORE_DB_USER_BY_IDP, "i1\0s1", 5, "p1\0u2", 5);
    char *report;
    assert_int_equal(check(f->store, &report), 2);
    assert_non_null(strstr(report, "tenant p1 <-> i1: the IdP tenant does not point back"));
    assert_non_null(strstr(report, "user p1/u1 <-> i1/s1: the IdP user does not point back"));
    free(report);
}

static void test_orphan_user_link(void **state)
{
    struct fixture *f = *state;
    raw_put(f->store, SG_STORE_DB_USER_BY_PSA, "p7\0u7", 5, "i7\0s7", 5);
    raw_put(f->store, SG_STORE_DB_USER_BY_IDP, "i7\0s7", 5, "p7\0u7", 5);
    char *report;
    assert_int_equal(check(f->store, &report), 1);
    assert_non_null(strstr(report, "user p7/u7 <-> i7/s7: its PSA tenant is not linked"));
    free(report);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_consistent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idp_side_without_psa_side, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_pointing_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_orphan_user_link, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
