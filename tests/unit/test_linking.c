/*
 * Linking unit tests: the article's rules B1-B11 as tables of inputs (what
 * the ID token said, what the PSA said about its caller, what the store
 * holds) and the decision each must give, without an IdP, a PSA or a store;
 * and the answer table that turns every decision into what the gateway says.
 */
#include "../../gateway/linking.c"
#include "ssogate/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#define US_URL "https://bms.kaseya.com"
#define UK_URL "https://bmsemea.kaseya.com"

static const char *const required_amr[] = {"otp", "mfa", NULL};
static const struct sg_linking_rules rules = {.required_amr = required_amr, .module_url = US_URL};

static const char *const amr_otp[] = {"pwd", "otp"};
static const char *const amr_mfa[] = {"mfa"};
static const char *const amr_password[] = {"pwd"};
static const char *const urls_us[] = {US_URL};
static const char *const urls_us_variant[] = {"HTTPS://BMS.Kaseya.com//"};
static const char *const urls_uk[] = {UK_URL};
static const char *const urls_several[] = {"https://other.example", UK_URL, US_URL "/"};
static const char *const urls_prefix[] = {US_URL ".evil.example"};

/* A master account of IdP tenant "idp-1" with 2FA, the region's module URL, active. */
static struct sg_linking_token master(void)
{
    return (struct sg_linking_token){.sub = "alice",
                                     .idp_tenant = "idp-1",
                                     .master = true,
                                     .active = true,
                                     .module_urls = urls_us,
                                     .module_url_count = 1,
                                     .amr = amr_otp,
                                     .amr_count = 2};
}

/* A plain user of IdP tenant "idp-1". */
static struct sg_linking_token user_token(void)
{
    struct sg_linking_token t = master();
    t.master = false;
    t.module_url_count = 0;
    return t;
}

static struct sg_linking_token no_second_factor(struct sg_linking_token t)
{
    t.amr = amr_password;
    t.amr_count = 1;
    return t;
}

static struct sg_linking_token inactive(struct sg_linking_token t)
{
    t.active = false;
    return t;
}

static struct sg_linking_token idp_tenant(struct sg_linking_token t, const char *tenant)
{
    t.idp_tenant = tenant;
    return t;
}

static struct sg_linking_token module_urls(struct sg_linking_token t, const char *const *urls,
                                           size_t count)
{
    t.module_urls = urls;
    t.module_url_count = count;
    return t;
}

static void expect_decision(const char *what, enum sg_linking_decision got,
                            enum sg_linking_decision want)
{
    if (got != want)
        fail_msg("%s: got %s, want %s", what, sg_linking_answer(got)->name,
                 sg_linking_answer(want)->name);
}

static void test_token_checks(void **state)
{
    static const struct {
        const char *what;
        struct sg_linking_token token;
        enum sg_linking_decision want;
    } cases[] = {
        {"B3: otp among the amr",
         {.amr = amr_otp, .amr_count = 2, .active = true},
         SG_LINKING_LOGIN_SESSION},
        {"B3: mfa", {.amr = amr_mfa, .amr_count = 1, .active = true}, SG_LINKING_LOGIN_SESSION},
        {"B3: password only",
         {.amr = amr_password, .amr_count = 1, .active = true},
         SG_LINKING_NO_SECOND_FACTOR},
        {"B3: no amr", {.active = true}, SG_LINKING_NO_SECOND_FACTOR},
        {"B11: inactive",
         {.amr = amr_otp, .amr_count = 2, .active = false},
         SG_LINKING_IDP_INACTIVE},
        {"B3 before B11", {.active = false}, SG_LINKING_NO_SECOND_FACTOR},
    };
    (void)state;
    /* Claims mode with an empty required_amr: no amr needed, B11 still applies. */
    static const char *const none[] = {NULL};
    const struct sg_linking_rules no_amr = {.required_amr = none, .module_url = US_URL};
    expect_decision("no amr required",
                    sg_linking_check_token(&no_amr, &(struct sg_linking_token){.active = true}),
                    SG_LINKING_LOGIN_SESSION);
    expect_decision("no amr required, inactive",
                    sg_linking_check_token(&no_amr, &(struct sg_linking_token){.active = false}),
                    SG_LINKING_IDP_INACTIVE);
    for (size_t i = 0; i < SG_ARRAY_LEN(cases); i++)
        expect_decision(cases[i].what, sg_linking_check_token(&rules, &cases[i].token),
                        cases[i].want);
}

/* B6 and the login's refusals: linked or not, 2FA, inactive. */
static void test_login(void **state)
{
    const struct sg_linking_links linked = {.user_psa_tenant = "psa-1", .user_psa_user = "bob"};
    const struct sg_linking_links none = {0};
    const struct {
        const char *what;
        struct sg_linking_token token;
        const struct sg_linking_links *links;
        enum sg_linking_decision want;
    } cases[] = {
        {"B6: linked user", user_token(), &linked, SG_LINKING_LOGIN_LINKED},
        {"not linked", user_token(), &none, SG_LINKING_LOGIN_NOT_LINKED},
        {"no IdP tenant", idp_tenant(user_token(), NULL), &linked, SG_LINKING_LOGIN_NOT_LINKED},
        {"B3", no_second_factor(user_token()), &linked, SG_LINKING_NO_SECOND_FACTOR},
        {"B11", inactive(user_token()), &linked, SG_LINKING_IDP_INACTIVE},
    };
    (void)state;
    for (size_t i = 0; i < SG_ARRAY_LEN(cases); i++)
        expect_decision(cases[i].what, sg_linking_login(&rules, &cases[i].token, cases[i].links),
                        cases[i].want);
}

/* B6 and B9: what the PSA says about the linked user of a login. */
static void test_login_psa(void **state)
{
    static const struct sg_linking_caller staff = {"psa-1", "bob", false, true, true};
    static const struct sg_linking_caller portal = {"psa-1", "carol", false, false, true};
    static const struct sg_linking_caller portal_inactive = {"psa-1", "carol", false, false, false};
    static const struct sg_linking_caller staff_inactive = {"psa-1", "bob", true, true, false};
    static const struct {
        const char *what;
        const struct sg_linking_caller *caller;
        bool reachable;
        const char *linked_user; /* in PSA tenant psa-1 */
        enum sg_linking_decision want;
    } cases[] = {
        {"B6: active staff user", &staff, true, "bob", SG_LINKING_LOGIN_SESSION},
        {"B9: client portal user", &portal, true, "carol", SG_LINKING_LOGIN_CLIENT_PORTAL},
        {"B9: inactive client portal user", &portal_inactive, true, "carol",
         SG_LINKING_LOGIN_CLIENT_PORTAL},
        {"inactive PSA user", &staff_inactive, true, "bob", SG_LINKING_LOGIN_PSA_REFUSED},
        {"PSA names nobody", NULL, true, "bob", SG_LINKING_LOGIN_PSA_REFUSED},
        {"PSA unreachable", NULL, false, "bob", SG_LINKING_LOGIN_PSA_UNREACHABLE},
        {"PSA names another (staff) user", &staff, true, "carol", SG_LINKING_LOGIN_PSA_OTHER_USER},
    };
    (void)state;
    for (size_t i = 0; i < SG_ARRAY_LEN(cases); i++)
        expect_decision(cases[i].what,
                        sg_linking_login_psa(cases[i].caller, cases[i].reachable, "psa-1",
                                             cases[i].linked_user),
                        cases[i].want);
    static const struct sg_linking_caller other_tenant = {"psa-2", "bob", false, true, true};
    expect_decision("PSA names a user of another tenant",
                    sg_linking_login_psa(&other_tenant, true, "psa-1", "bob"),
                    SG_LINKING_LOGIN_PSA_OTHER_USER);
}

/* B1 and B9 at a link's callback: what the PSA says now about the caller
 * (psa-1, bob) who started the link. */
static void test_link_psa(void **state)
{
    static const struct sg_linking_caller admin = {"psa-1", "bob", true, true, true};
    static const struct sg_linking_caller staff = {"psa-1", "bob", false, true, true};
    static const struct sg_linking_caller portal = {"psa-1", "bob", true, false, true};
    static const struct sg_linking_caller inactive_admin = {"psa-1", "bob", true, true, false};
    static const struct sg_linking_caller other_user = {"psa-1", "carol", true, true, true};
    static const struct sg_linking_caller other_tenant = {"psa-2", "bob", true, true, true};
    static const struct {
        const char *what;
        const struct sg_linking_caller *caller;
        bool reachable, tenant;
        enum sg_linking_decision want;
    } cases[] = {
        {"B1: still an admin", &admin, true, true, SG_LINKING_TENANT_LINK},
        {"B5: still staff", &staff, true, false, SG_LINKING_USER_LINK},
        {"B1: no longer an admin", &staff, true, true, SG_LINKING_LINK_PSA_NOT_ADMIN},
        {"B9: now a client portal user", &portal, true, false, SG_LINKING_LINK_PSA_CLIENT_PORTAL},
        {"B9: a client portal admin", &portal, true, true, SG_LINKING_LINK_PSA_CLIENT_PORTAL},
        {"now inactive", &inactive_admin, true, false, SG_LINKING_LINK_PSA_INACTIVE},
        {"now inactive, tenant", &inactive_admin, true, true, SG_LINKING_LINK_PSA_INACTIVE},
        {"signed out of the PSA", NULL, true, false, SG_LINKING_LINK_PSA_CALLER_CHANGED},
        {"signed in as another user", &other_user, true, true, SG_LINKING_LINK_PSA_CALLER_CHANGED},
        {"another tenant's user", &other_tenant, true, false, SG_LINKING_LINK_PSA_CALLER_CHANGED},
        {"PSA unreachable", NULL, false, true, SG_LINKING_LOGIN_PSA_UNREACHABLE},
    };
    (void)state;
    for (size_t i = 0; i < SG_ARRAY_LEN(cases); i++)
        expect_decision(cases[i].what,
                        sg_linking_link_psa(cases[i].caller, cases[i].reachable, "psa-1", "bob",
                                            cases[i].tenant),
                        cases[i].want);
}

/* B1, B2, B4 and the tenant link's refusals, for PSA tenant "psa-1". */
static void test_tenant(void **state)
{
    const struct sg_linking_links none = {0};
    const struct sg_linking_links same = {.tenant_idp = "idp-1", .tenant_psa = "psa-1"};
    const struct sg_linking_links idp_taken = {.tenant_psa = "psa-2"};
    const struct sg_linking_links psa_taken = {.tenant_idp = "idp-2"};
    const struct {
        const char *what;
        struct sg_linking_token token;
        const struct sg_linking_links *links;
        enum sg_linking_decision want;
    } cases[] = {
        {"B1: master account, module URL matches", master(), &none, SG_LINKING_TENANT_LINK},
        {"B1: the same pair again", master(), &same, SG_LINKING_TENANT_LINK},
        {"B2: module URL case and slashes aside", module_urls(master(), urls_us_variant, 1), &none,
         SG_LINKING_TENANT_LINK},
        {"B2: one of several module URLs", module_urls(master(), urls_several, 3), &none,
         SG_LINKING_TENANT_LINK},
        {"B2: another region's module URL", module_urls(master(), urls_uk, 1), &none,
         SG_LINKING_TENANT_MODULE_URL_MISMATCH},
        {"B2: a longer host", module_urls(master(), urls_prefix, 1), &none,
         SG_LINKING_TENANT_MODULE_URL_MISMATCH},
        {"B2: no module URL", module_urls(master(), NULL, 0), &none,
         SG_LINKING_TENANT_MODULE_URL_MISMATCH},
        {"not a master account", module_urls(user_token(), urls_us, 1), &none,
         SG_LINKING_TENANT_NOT_MASTER},
        {"no IdP tenant", idp_tenant(master(), NULL), &none, SG_LINKING_TENANT_NO_IDP_TENANT},
        {"B4: IdP tenant linked to another PSA tenant", master(), &idp_taken,
         SG_LINKING_TENANT_ALREADY_MAPPED},
        {"B4: PSA tenant linked to another IdP tenant", master(), &psa_taken,
         SG_LINKING_TENANT_ALREADY_MAPPED},
        {"B3", no_second_factor(master()), &none, SG_LINKING_NO_SECOND_FACTOR},
        {"B11", inactive(master()), &none, SG_LINKING_IDP_INACTIVE},
        {"not master before B2", module_urls(user_token(), urls_uk, 1), &none,
         SG_LINKING_TENANT_NOT_MASTER},
        {"B2 before B4", module_urls(master(), urls_uk, 1), &idp_taken,
         SG_LINKING_TENANT_MODULE_URL_MISMATCH},
    };
    (void)state;
    for (size_t i = 0; i < SG_ARRAY_LEN(cases); i++)
        expect_decision(cases[i].what,
                        sg_linking_tenant(&rules, &cases[i].token, "psa-1", cases[i].links),
                        cases[i].want);
}

/* B2: the refusal names the region's expected URL, as the callers build it. */
static void test_module_url_page(void **state)
{
    const struct sg_linking_answer *a = sg_linking_answer(SG_LINKING_TENANT_MODULE_URL_MISMATCH);
    char page[1024];
    (void)state;
    assert_true(a->names_module_url);
    snprintf(page, sizeof(page), "%s%s%s", a->message, rules.module_url, a->tail);
    assert_non_null(strstr(page, "Module URLs) to " US_URL ", then turn IT Complete on again."));
    assert_int_equal(a->status, 403);
}

/* B5, B10 and the user link's refusals, for PSA user ("psa-1", "bob"). */
static void test_user(void **state)
{
    const struct sg_linking_links off = {0};
    const struct sg_linking_links on = {.tenant_idp = "idp-1"};
    const struct sg_linking_links same = {.tenant_idp = "idp-1",
                                          .user_idp_tenant = "idp-1",
                                          .user_idp_sub = "alice",
                                          .user_psa_tenant = "psa-1",
                                          .user_psa_user = "bob"};
    const struct sg_linking_links idp_user_taken = {
        .tenant_idp = "idp-1", .user_psa_tenant = "psa-1", .user_psa_user = "dave"};
    const struct sg_linking_links psa_user_taken = {
        .tenant_idp = "idp-1", .user_idp_tenant = "idp-1", .user_idp_sub = "erin"};
    const struct {
        const char *what;
        struct sg_linking_token token;
        const struct sg_linking_links *links;
        enum sg_linking_decision want;
    } cases[] = {
        {"B5: IdP user of the linked tenant", user_token(), &on, SG_LINKING_USER_LINK},
        {"B5: a master account is a user too", master(), &on, SG_LINKING_USER_LINK},
        {"B5: the same pair again", user_token(), &same, SG_LINKING_USER_LINK},
        {"before the tenant is linked", user_token(), &off, SG_LINKING_USER_TENANT_NOT_LINKED},
        {"IdP user of another tenant", idp_tenant(user_token(), "idp-2"), &on,
         SG_LINKING_USER_WRONG_IDP_TENANT},
        {"IdP user of no tenant", idp_tenant(user_token(), NULL), &on,
         SG_LINKING_USER_WRONG_IDP_TENANT},
        {"B10: IdP user linked to another PSA user", user_token(), &idp_user_taken,
         SG_LINKING_USER_ALREADY_LINKED},
        {"B10: PSA user linked to another IdP user", user_token(), &psa_user_taken,
         SG_LINKING_USER_ALREADY_LINKED},
        {"B3", no_second_factor(user_token()), &on, SG_LINKING_NO_SECOND_FACTOR},
        {"B11", inactive(user_token()), &on, SG_LINKING_IDP_INACTIVE},
        {"tenant not linked before another tenant", idp_tenant(user_token(), "idp-2"), &off,
         SG_LINKING_USER_TENANT_NOT_LINKED},
    };
    (void)state;
    for (size_t i = 0; i < SG_ARRAY_LEN(cases); i++)
        expect_decision(cases[i].what,
                        sg_linking_user(&rules, &cases[i].token, "psa-1", "bob", cases[i].links),
                        cases[i].want);
}

static const struct sg_linking_caller admin = {"psa-1", "ann", true, true, true};
static const struct sg_linking_caller admin_portal = {"psa-1", "pat", true, false, true};
static const struct sg_linking_caller staff = {"psa-1", "bob", false, true, true};
static const struct sg_linking_caller staff_inactive = {"psa-1", "ivy", false, true, false};
static const struct sg_linking_caller portal = {"psa-1", "carol", false, false, true};

/* B1, B5, B7, B8, B9: who may call the POSTs of My Settings. */
static void test_settings_posts(void **state)
{
    const struct sg_linking_links off = {0};
    const struct sg_linking_links on = {.tenant_idp = "idp-1"};
    (void)state;

    expect_decision("B1: admin, tenant off", sg_linking_tenant_enable(&admin, &off),
                    SG_LINKING_TENANT_ENABLE);
    expect_decision("admin, tenant already on", sg_linking_tenant_enable(&admin, &on),
                    SG_LINKING_TENANT_ENABLE_ALREADY_ON);
    expect_decision("non-admin tenant enable", sg_linking_tenant_enable(&staff, &off),
                    SG_LINKING_TENANT_ENABLE_NOT_ADMIN);
    expect_decision("client-portal admin tenant enable",
                    sg_linking_tenant_enable(&admin_portal, &off),
                    SG_LINKING_TENANT_ENABLE_NOT_ADMIN);
    expect_decision("non-admin tenant enable, tenant on", sg_linking_tenant_enable(&staff, &on),
                    SG_LINKING_TENANT_ENABLE_NOT_ADMIN);

    expect_decision("B7: admin", sg_linking_tenant_disable(&admin), SG_LINKING_TENANT_DISABLE);
    expect_decision("B7: non-admin", sg_linking_tenant_disable(&staff),
                    SG_LINKING_TENANT_DISABLE_NOT_ADMIN);
    expect_decision("B7: client-portal admin", sg_linking_tenant_disable(&admin_portal),
                    SG_LINKING_TENANT_DISABLE_NOT_ADMIN);

    expect_decision("B5: staff, tenant on", sg_linking_user_enable(&staff, &on),
                    SG_LINKING_USER_ENABLE);
    expect_decision("B5: admin, tenant on", sg_linking_user_enable(&admin, &on),
                    SG_LINKING_USER_ENABLE);
    expect_decision("B9: client portal", sg_linking_user_enable(&portal, &on),
                    SG_LINKING_USER_ENABLE_CLIENT_PORTAL);
    expect_decision("B9: client-portal admin", sg_linking_user_enable(&admin_portal, &on),
                    SG_LINKING_USER_ENABLE_CLIENT_PORTAL);
    expect_decision("inactive PSA user", sg_linking_user_enable(&staff_inactive, &on),
                    SG_LINKING_USER_ENABLE_INACTIVE);
    expect_decision("user enable before the tenant is linked", sg_linking_user_enable(&staff, &off),
                    SG_LINKING_USER_ENABLE_TENANT_OFF);

    expect_decision("B8: anyone", sg_linking_user_disable(), SG_LINKING_USER_DISABLE);
}

/* What My Settings offers: the user section for everyone, the switch for admins. */
static void test_offers(void **state)
{
    const struct sg_linking_links off = {0};
    const struct sg_linking_links on = {.tenant_idp = "idp-1"};
    const struct sg_linking_links linked = {
        .tenant_idp = "idp-1", .user_idp_tenant = "idp-1", .user_idp_sub = "alice"};
    (void)state;

    assert_int_equal(sg_linking_user_offer(&portal, &linked), SG_LINKING_OFFER_USER_PORTAL);
    assert_int_equal(sg_linking_user_offer(&admin_portal, &on), SG_LINKING_OFFER_USER_PORTAL);
    assert_int_equal(sg_linking_user_offer(&staff, &linked), SG_LINKING_OFFER_USER_DISABLE);
    assert_int_equal(sg_linking_user_offer(&staff, &on), SG_LINKING_OFFER_USER_ENABLE);
    assert_int_equal(sg_linking_user_offer(&staff_inactive, &on), SG_LINKING_OFFER_USER_ENABLE);
    assert_int_equal(sg_linking_user_offer(&staff, &off), SG_LINKING_OFFER_USER_NOT_YET);

    assert_int_equal(sg_linking_tenant_offer(&admin, &off), SG_LINKING_OFFER_TENANT_ENABLE);
    assert_int_equal(sg_linking_tenant_offer(&admin, &on), SG_LINKING_OFFER_TENANT_DISABLE);
    assert_int_equal(sg_linking_tenant_offer(&staff, &on), SG_LINKING_OFFER_TENANT_NONE);
    assert_int_equal(sg_linking_tenant_offer(&admin_portal, &on), SG_LINKING_OFFER_TENANT_NONE);
}

static void test_url_equal(void **state)
{
    (void)state;
    assert_true(sg_linking_url_equal(US_URL, US_URL));
    assert_true(sg_linking_url_equal(US_URL "/", US_URL));
    assert_true(sg_linking_url_equal(US_URL, US_URL "//"));
    assert_true(sg_linking_url_equal("HTTPS://BMS.KASEYA.COM", US_URL));
    assert_false(sg_linking_url_equal(UK_URL, US_URL));
    assert_false(sg_linking_url_equal(US_URL "/x", US_URL));
    assert_false(sg_linking_url_equal("", US_URL));
    assert_true(sg_linking_url_equal("/", ""));
}

/* Both NULL, or the same text. */
static bool text_is(const char *got, const char *want)
{
    return got == want || same(got, want);
}

/* The answers the integration tests and dashboards rely on, value by value. */
static void test_answers(void **state)
{
    static const struct {
        enum sg_linking_decision decision;
        int status;
        const char *login_result, *links_result, *request_result, *where;
    } want[] = {
        {SG_LINKING_NO_SECOND_FACTOR, 403, "no_second_factor", NULL, NULL, NULL},
        {SG_LINKING_IDP_INACTIVE, 302, "inactive", NULL, NULL, "inactive"},
        {SG_LINKING_LOGIN_NOT_LINKED, 302, "not_linked", NULL, NULL, "not_linked"},
        {SG_LINKING_LOGIN_LINKED, 0, NULL, NULL, NULL, NULL},
        {SG_LINKING_LOGIN_SESSION, 0, NULL, NULL, NULL, NULL},
        {SG_LINKING_LOGIN_CLIENT_PORTAL, 403, "client_portal", NULL, NULL, NULL},
        {SG_LINKING_LOGIN_PSA_REFUSED, 403, "psa_refused", NULL, NULL, NULL},
        {SG_LINKING_LOGIN_PSA_UNREACHABLE, 502, "psa_unreachable", NULL, NULL, NULL},
        {SG_LINKING_LOGIN_PSA_OTHER_USER, 403, "psa_other_user", NULL, NULL, NULL},
        {SG_LINKING_TENANT_NO_IDP_TENANT, 403, "no_idp_tenant", "no_idp_tenant", NULL, NULL},
        {SG_LINKING_TENANT_NOT_MASTER, 403, "not_master", "not_master", NULL, NULL},
        {SG_LINKING_TENANT_MODULE_URL_MISMATCH, 403, "module_url_mismatch", "module_url_mismatch",
         NULL, NULL},
        {SG_LINKING_TENANT_ALREADY_MAPPED, 409, "tenant_already_mapped", "already_mapped", NULL,
         NULL},
        {SG_LINKING_TENANT_LINK, 302, NULL, "linked", NULL, "/_sso/settings?done=tenant_linked"},
        {SG_LINKING_USER_TENANT_NOT_LINKED, 409, "tenant_not_linked", "tenant_not_linked", NULL,
         NULL},
        {SG_LINKING_USER_WRONG_IDP_TENANT, 403, "wrong_idp_tenant", "wrong_idp_tenant", NULL, NULL},
        {SG_LINKING_USER_ALREADY_LINKED, 409, "user_already_linked", "already_linked", NULL, NULL},
        {SG_LINKING_USER_LINK, 0, NULL, "linked", NULL, NULL},
        {SG_LINKING_LINK_PSA_CALLER_CHANGED, 403, "psa_caller_changed", "psa_caller_changed", NULL,
         NULL},
        {SG_LINKING_LINK_PSA_CLIENT_PORTAL, 403, "client_portal", "client_portal", NULL, NULL},
        {SG_LINKING_LINK_PSA_INACTIVE, 403, "psa_inactive", "psa_inactive", NULL, NULL},
        {SG_LINKING_LINK_PSA_NOT_ADMIN, 403, "not_admin", "not_admin", NULL, NULL},
        {SG_LINKING_TENANT_ENABLE_NOT_ADMIN, 403, NULL, NULL, "not_admin", NULL},
        {SG_LINKING_TENANT_ENABLE_ALREADY_ON, 303, NULL, NULL, NULL, "/_sso/settings"},
        {SG_LINKING_TENANT_ENABLE, 0, NULL, NULL, NULL, NULL},
        {SG_LINKING_TENANT_DISABLE_NOT_ADMIN, 403, NULL, NULL, "not_admin", NULL},
        {SG_LINKING_TENANT_DISABLE, 303, NULL, "tenant_unlinked", NULL,
         "/_sso/settings?done=tenant_unlinked"},
        {SG_LINKING_USER_ENABLE_CLIENT_PORTAL, 403, NULL, NULL, "client_portal", NULL},
        {SG_LINKING_USER_ENABLE_INACTIVE, 403, NULL, NULL, "inactive", NULL},
        {SG_LINKING_USER_ENABLE_TENANT_OFF, 409, NULL, NULL, NULL, NULL},
        {SG_LINKING_USER_ENABLE, 0, NULL, NULL, NULL, NULL},
        {SG_LINKING_USER_DISABLE, 303, NULL, "user_unlinked", NULL,
         "/_sso/settings?done=user_unlinked"},
    };
    (void)state;
    assert_int_equal(SG_ARRAY_LEN(want), SG_LINKING_DECISION_COUNT);
    for (size_t i = 0; i < SG_ARRAY_LEN(want); i++) {
        const struct sg_linking_answer *a = sg_linking_answer(want[i].decision);
        const char *where = a->notice != NULL ? a->notice : a->location;
        assert_int_equal(want[i].decision, i);
        assert_non_null(a->name);
        assert_int_equal(a->status, want[i].status);
        if (!text_is(a->login_result, want[i].login_result))
            fail_msg("%s: logins label %s", a->name, a->login_result);
        if (!text_is(a->links_result, want[i].links_result))
            fail_msg("%s: links label %s", a->name, a->links_result);
        if (!text_is(a->request_result, want[i].request_result))
            fail_msg("%s: requests label %s", a->name, a->request_result);
        if (!text_is(where, want[i].where))
            fail_msg("%s: goes to %s", a->name, where);
        /* A refusal says what happened on a page; a redirect has no page. */
        bool page = a->status >= 400;
        if (page != (a->title != NULL && a->message != NULL))
            fail_msg("%s: page and status disagree", a->name);
        if ((a->link != NULL) != (a->link_result != NULL))
            fail_msg("%s: a link log line needs its result", a->name);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_checks), cmocka_unit_test(test_login),
        cmocka_unit_test(test_login_psa),    cmocka_unit_test(test_link_psa),
        cmocka_unit_test(test_tenant),       cmocka_unit_test(test_module_url_page),
        cmocka_unit_test(test_user),         cmocka_unit_test(test_settings_posts),
        cmocka_unit_test(test_offers),       cmocka_unit_test(test_url_equal),
        cmocka_unit_test(test_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
