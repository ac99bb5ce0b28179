#include "ssogate/linking.h"

#include <assert.h>
#include <string.h>
#include <strings.h>

#define REFUSED(value, result, status_, title_, message_)                                          \
    [value] = {.name = #value,                                                                     \
               .status = (status_),                                                                \
               .login_result = (result),                                                           \
               .log_reason = (result),                                                             \
               .title = (title_),                                                                  \
               .message = (message_)}
#define LINK_REFUSED(value, kind, result, label, status_, title_, message_)                        \
    [value] = {.name = #value,                                                                     \
               .status = (status_),                                                                \
               .login_result = (label),                                                            \
               .link = (kind),                                                                     \
               .link_result = (result),                                                            \
               .links_result = (result),                                                           \
               .title = (title_),                                                                  \
               .message = (message_)}
/* A link refused at its callback by what the PSA now says about the caller. */
#define PSA_REFUSED_LINK(value, result, title_, message_)                                          \
    [value] = {.name = #value,                                                                     \
               .status = 403,                                                                      \
               .login_result = (result),                                                           \
               .log_reason = (result),                                                             \
               .links_result = (result),                                                           \
               .title = (title_),                                                                  \
               .message = (message_)}
#define NOT_ALLOWED(value, result, message_)                                                       \
    [value] = {.name = #value,                                                                     \
               .status = 403,                                                                      \
               .request_result = (result),                                                         \
               .title = "Not allowed",                                                             \
               .message = (message_)}

/* The one table: every decision's metric labels, log reason and answer. */
static const struct sg_linking_answer answers[SG_LINKING_DECISION_COUNT] = {
    REFUSED(SG_LINKING_NO_SECOND_FACTOR, "no_second_factor", 403,
            "Two-factor authentication required",
            "Your sign-in did not include a second factor (a 6-digit code). Set up two-factor "
            "authentication at the identity provider, then sign in again."),
    [SG_LINKING_IDP_INACTIVE] = {.name = "SG_LINKING_IDP_INACTIVE",
                                 .status = 302,
                                 .login_result = "inactive",
                                 .notice = "inactive"},
    [SG_LINKING_LOGIN_NOT_LINKED] = {.name = "SG_LINKING_LOGIN_NOT_LINKED",
                                     .status = 302,
                                     .login_result = "not_linked",
                                     .notice = "not_linked"},
    [SG_LINKING_LOGIN_LINKED] = {.name = "SG_LINKING_LOGIN_LINKED"},
    [SG_LINKING_LOGIN_SESSION] = {.name = "SG_LINKING_LOGIN_SESSION"},
    REFUSED(SG_LINKING_LOGIN_CLIENT_PORTAL, "client_portal", 403,
            "Not available for client portal users",
            "Client portal users cannot log in with IT Complete. Sign in with your PSA password."),
    REFUSED(SG_LINKING_LOGIN_PSA_REFUSED, "psa_refused", 403, "The PSA did not accept this account",
            "Your PSA user is inactive or no longer exists, so you were not signed in. Ask your "
            "PSA administrator."),
    REFUSED(SG_LINKING_LOGIN_PSA_UNREACHABLE, "psa_unreachable", 502, "The PSA did not answer",
            "The gateway could not check your PSA user. Please try again in a moment."),
    REFUSED(SG_LINKING_LOGIN_PSA_OTHER_USER, "psa_other_user", 403, "The PSA named another user",
            "The PSA answered about another user than the one linked to your IT Complete account, "
            "so you were not signed in. Sign out of the PSA in this browser and try again."),
    LINK_REFUSED(SG_LINKING_TENANT_NO_IDP_TENANT, "tenant", "no_idp_tenant", "no_idp_tenant", 403,
                 "No IT Complete tenant",
                 "Your IT Complete account does not belong to a tenant, so there is nothing to "
                 "link. Sign in with your tenant's master account."),
    LINK_REFUSED(SG_LINKING_TENANT_NOT_MASTER, "tenant", "not_master", "not_master", 403,
                 "A master account is required",
                 "Only an IT Complete master account can turn on IT Complete for this tenant. "
                 "Sign in with your tenant's master account and try again."),
    [SG_LINKING_TENANT_MODULE_URL_MISMATCH] =
        {.name = "SG_LINKING_TENANT_MODULE_URL_MISMATCH",
         .status = 403,
         .login_result = "module_url_mismatch",
         .link = "tenant",
         .link_result = "module_url_mismatch",
         .links_result = "module_url_mismatch",
         .title = "Module URL does not match",
         .message = "Your IT Complete tenant's module URL for this PSA is not this region's. In IT "
                    "Complete, set Admin Settings > Module URLs > BMS (and Profile Settings > "
                    "Module URLs) to ",
         .names_module_url = true,
         .tail = ", then turn IT Complete on again."},
    LINK_REFUSED(SG_LINKING_TENANT_ALREADY_MAPPED, "tenant", "already_mapped",
                 "tenant_already_mapped", 409, "Already mapped to another tenant",
                 "This IT Complete tenant is already mapped to another PSA tenant. You can only "
                 "connect one PSA tenant to one IT Complete tenant at a time: turn it off in the "
                 "other PSA tenant first."),
    [SG_LINKING_TENANT_LINK] = {.name = "SG_LINKING_TENANT_LINK",
                                .status = 302,
                                .link = "tenant",
                                .link_result = "linked",
                                .links_result = "linked",
                                .location = "/_sso/settings?done=tenant_linked"},
    LINK_REFUSED(SG_LINKING_USER_TENANT_NOT_LINKED, "user", "tenant_not_linked",
                 "tenant_not_linked", 409, "IT Complete is off for your company",
                 "An administrator must turn on IT Complete for your company before you can "
                 "enable it for your login."),
    LINK_REFUSED(SG_LINKING_USER_WRONG_IDP_TENANT, "user", "wrong_idp_tenant", "wrong_idp_tenant",
                 403, "Another IT Complete tenant",
                 "The IT Complete account you signed in with belongs to another tenant than your "
                 "company's. Sign in with your own company account."),
    LINK_REFUSED(SG_LINKING_USER_ALREADY_LINKED, "user", "already_linked", "user_already_linked",
                 409, "Account already linked",
                 "This IT Complete account is already linked to another PSA user (or your PSA "
                 "user to another IT Complete account). An IT Complete account can be linked to "
                 "one PSA user only; disable the other link first."),
    [SG_LINKING_USER_LINK] = {.name = "SG_LINKING_USER_LINK",
                              .link = "user",
                              .link_result = "linked",
                              .links_result = "linked"},
    PSA_REFUSED_LINK(SG_LINKING_LINK_PSA_CALLER_CHANGED, "psa_caller_changed",
                     "Signed in to the PSA as someone else",
                     "The PSA no longer names the user who started this (you signed out of the "
                     "PSA, or in as another user), so nothing was linked. Sign in to the PSA and "
                     "start again from My Settings."),
    PSA_REFUSED_LINK(SG_LINKING_LINK_PSA_CLIENT_PORTAL, "client_portal",
                     "Not available for client portal users",
                     "Client portal users cannot use Log in with IT Complete, so nothing was "
                     "linked. Keep signing in with your PSA password."),
    PSA_REFUSED_LINK(SG_LINKING_LINK_PSA_INACTIVE, "psa_inactive", "Your PSA user is inactive",
                     "Your PSA user is inactive, so nothing was linked. Ask your administrator to "
                     "reactivate it."),
    PSA_REFUSED_LINK(SG_LINKING_LINK_PSA_NOT_ADMIN, "not_admin", "Not allowed",
                     "Only a PSA administrator can turn IT Complete on for the company, and the "
                     "PSA no longer says you are one, so nothing was changed. Ask one of your "
                     "administrators."),
    NOT_ALLOWED(SG_LINKING_TENANT_ENABLE_NOT_ADMIN, "not_admin",
                "Only a PSA administrator can turn IT Complete on for the company, so nothing was "
                "changed. Ask one of your administrators."),
    [SG_LINKING_TENANT_ENABLE_ALREADY_ON] = {.name = "SG_LINKING_TENANT_ENABLE_ALREADY_ON",
                                             .status = 303,
                                             .location = "/_sso/settings"},
    [SG_LINKING_TENANT_ENABLE] = {.name = "SG_LINKING_TENANT_ENABLE"},
    NOT_ALLOWED(SG_LINKING_TENANT_DISABLE_NOT_ADMIN, "not_admin",
                "Only a PSA administrator can turn IT Complete off for the company, so nothing "
                "was changed. Ask one of your administrators."),
    [SG_LINKING_TENANT_DISABLE] = {.name = "SG_LINKING_TENANT_DISABLE",
                                   .status = 303,
                                   .link = "tenant",
                                   .link_result = "unlinked",
                                   .links_result = "tenant_unlinked",
                                   .location = "/_sso/settings?done=tenant_unlinked"},
    NOT_ALLOWED(SG_LINKING_USER_ENABLE_CLIENT_PORTAL, "client_portal",
                "Client portal users cannot use Log in with IT Complete, so nothing was changed. "
                "Keep signing in with your PSA password."),
    NOT_ALLOWED(SG_LINKING_USER_ENABLE_INACTIVE, "inactive",
                "Your PSA user is inactive, so Log in with IT Complete cannot be enabled. Ask your "
                "administrator to reactivate it."),
    [SG_LINKING_USER_ENABLE_TENANT_OFF] = {.name = "SG_LINKING_USER_ENABLE_TENANT_OFF",
                                           .status = 409,
                                           .title = "IT Complete is off for your company",
                                           .message =
                                               "An administrator must turn on IT Complete for "
                                               "your company before you can enable it for your "
                                               "login. Nothing was changed."},
    [SG_LINKING_USER_ENABLE] = {.name = "SG_LINKING_USER_ENABLE"},
    [SG_LINKING_USER_DISABLE] = {.name = "SG_LINKING_USER_DISABLE",
                                 .status = 303,
                                 .link = "user",
                                 .link_result = "unlinked",
                                 .links_result = "user_unlinked",
                                 .location = "/_sso/settings?done=user_unlinked"},
};

const struct sg_linking_answer *sg_linking_answer(enum sg_linking_decision decision)
{
    assert(decision < SG_LINKING_DECISION_COUNT && answers[decision].name != NULL);
    return &answers[decision];
}

static bool same(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

bool sg_linking_url_equal(const char *url, const char *expected)
{
    size_t la = strlen(url), lb = strlen(expected);
    while (la > 0 && url[la - 1] == '/')
        la--;
    while (lb > 0 && expected[lb - 1] == '/')
        lb--;
    return la == lb && strncasecmp(url, expected, la) == 0;
}

/* An empty required_amr (claims mode only: policy.c refuses it in link mode) asks for nothing. */
static bool has_second_factor(const struct sg_linking_rules *rules,
                              const struct sg_linking_token *token)
{
    if (rules->required_amr[0] == NULL)
        return true;
    for (const char *const *required = rules->required_amr; *required != NULL; required++) {
        for (size_t i = 0; i < token->amr_count; i++) {
            if (strcmp(token->amr[i], *required) == 0)
                return true;
        }
    }
    return false;
}

static bool module_url_matches(const struct sg_linking_rules *rules,
                               const struct sg_linking_token *token)
{
    for (size_t i = 0; i < token->module_url_count; i++) {
        if (sg_linking_url_equal(token->module_urls[i], rules->module_url))
            return true;
    }
    return false;
}

/* The caller may turn the company's switch on or off, and sees it (B1, B7). */
static bool manages_tenant(const struct sg_linking_caller *caller)
{
    return caller->admin && caller->staff;
}

enum sg_linking_decision sg_linking_check_token(const struct sg_linking_rules *rules,
                                                const struct sg_linking_token *token)
{
    if (!has_second_factor(rules, token))
        return SG_LINKING_NO_SECOND_FACTOR;
    if (!token->active)
        return SG_LINKING_IDP_INACTIVE;
    return SG_LINKING_LOGIN_SESSION;
}

enum sg_linking_decision sg_linking_login(const struct sg_linking_rules *rules,
                                          const struct sg_linking_token *token,
                                          const struct sg_linking_links *links)
{
    enum sg_linking_decision checked = sg_linking_check_token(rules, token);
    if (checked != SG_LINKING_LOGIN_SESSION)
        return checked;
    if (token->idp_tenant == NULL || links->user_psa_tenant == NULL || links->user_psa_user == NULL)
        return SG_LINKING_LOGIN_NOT_LINKED;
    return SG_LINKING_LOGIN_LINKED;
}

/* The PSA's answer is about the PSA user (psa_tenant, psa_user). */
static bool names(const struct sg_linking_caller *caller, const char *psa_tenant,
                  const char *psa_user)
{
    return same(caller->tenant, psa_tenant) && same(caller->user, psa_user);
}

enum sg_linking_decision sg_linking_login_psa(const struct sg_linking_caller *caller,
                                              bool reachable, const char *psa_tenant,
                                              const char *psa_user)
{
    if (!reachable)
        return SG_LINKING_LOGIN_PSA_UNREACHABLE;
    if (caller == NULL)
        return SG_LINKING_LOGIN_PSA_REFUSED;
    if (!names(caller, psa_tenant, psa_user))
        return SG_LINKING_LOGIN_PSA_OTHER_USER;
    if (!caller->staff)
        return SG_LINKING_LOGIN_CLIENT_PORTAL;
    if (!caller->active)
        return SG_LINKING_LOGIN_PSA_REFUSED;
    return SG_LINKING_LOGIN_SESSION;
}

enum sg_linking_decision sg_linking_link_psa(const struct sg_linking_caller *caller, bool reachable,
                                             const char *psa_tenant, const char *psa_user,
                                             bool tenant)
{
    if (!reachable)
        return SG_LINKING_LOGIN_PSA_UNREACHABLE;
    if (caller == NULL || !names(caller, psa_tenant, psa_user))
        return SG_LINKING_LINK_PSA_CALLER_CHANGED;
    if (!caller->staff)
        return SG_LINKING_LINK_PSA_CLIENT_PORTAL;
    if (!caller->active)
        return SG_LINKING_LINK_PSA_INACTIVE;
    if (tenant && !manages_tenant(caller))
        return SG_LINKING_LINK_PSA_NOT_ADMIN;
    return tenant ? SG_LINKING_TENANT_LINK : SG_LINKING_USER_LINK;
}

enum sg_linking_decision sg_linking_tenant(const struct sg_linking_rules *rules,
                                           const struct sg_linking_token *token,
                                           const char *psa_tenant,
                                           const struct sg_linking_links *links)
{
    enum sg_linking_decision checked = sg_linking_check_token(rules, token);
    if (checked != SG_LINKING_LOGIN_SESSION)
        return checked;
    if (token->idp_tenant == NULL)
        return SG_LINKING_TENANT_NO_IDP_TENANT;
    if (!token->master)
        return SG_LINKING_TENANT_NOT_MASTER;
    if (!module_url_matches(rules, token))
        return SG_LINKING_TENANT_MODULE_URL_MISMATCH;
    if ((links->tenant_psa != NULL && !same(links->tenant_psa, psa_tenant)) ||
        (links->tenant_idp != NULL && !same(links->tenant_idp, token->idp_tenant)))
        return SG_LINKING_TENANT_ALREADY_MAPPED;
    return SG_LINKING_TENANT_LINK;
}

enum sg_linking_decision sg_linking_user(const struct sg_linking_rules *rules,
                                         const struct sg_linking_token *token,
                                         const char *psa_tenant, const char *psa_user,
                                         const struct sg_linking_links *links)
{
    enum sg_linking_decision checked = sg_linking_check_token(rules, token);
    if (checked != SG_LINKING_LOGIN_SESSION)
        return checked;
    if (links->tenant_idp == NULL)
        return SG_LINKING_USER_TENANT_NOT_LINKED;
    if (!same(links->tenant_idp, token->idp_tenant))
        return SG_LINKING_USER_WRONG_IDP_TENANT;
    bool idp_user_elsewhere =
        links->user_psa_user != NULL &&
        !(same(links->user_psa_tenant, psa_tenant) && same(links->user_psa_user, psa_user));
    bool psa_user_elsewhere =
        links->user_idp_sub != NULL &&
        !(same(links->user_idp_tenant, token->idp_tenant) && same(links->user_idp_sub, token->sub));
    if (idp_user_elsewhere || psa_user_elsewhere)
        return SG_LINKING_USER_ALREADY_LINKED;
    return SG_LINKING_USER_LINK;
}

enum sg_linking_decision sg_linking_tenant_enable(const struct sg_linking_caller *caller,
                                                  const struct sg_linking_links *links)
{
    if (!manages_tenant(caller))
        return SG_LINKING_TENANT_ENABLE_NOT_ADMIN;
    if (links->tenant_idp != NULL)
        return SG_LINKING_TENANT_ENABLE_ALREADY_ON;
    return SG_LINKING_TENANT_ENABLE;
}

enum sg_linking_decision sg_linking_tenant_disable(const struct sg_linking_caller *caller)
{
    return manages_tenant(caller) ? SG_LINKING_TENANT_DISABLE : SG_LINKING_TENANT_DISABLE_NOT_ADMIN;
}

enum sg_linking_decision sg_linking_user_enable(const struct sg_linking_caller *caller,
                                                const struct sg_linking_links *links)
{
    if (!caller->staff)
        return SG_LINKING_USER_ENABLE_CLIENT_PORTAL;
    if (!caller->active)
        return SG_LINKING_USER_ENABLE_INACTIVE;
    if (links->tenant_idp == NULL)
        return SG_LINKING_USER_ENABLE_TENANT_OFF;
    return SG_LINKING_USER_ENABLE;
}

enum sg_linking_decision sg_linking_user_disable(void)
{
    return SG_LINKING_USER_DISABLE;
}

enum sg_linking_offer sg_linking_user_offer(const struct sg_linking_caller *caller,
                                            const struct sg_linking_links *links)
{
    if (!caller->staff)
        return SG_LINKING_OFFER_USER_PORTAL;
    if (links->user_idp_sub != NULL)
        return SG_LINKING_OFFER_USER_DISABLE;
    if (links->tenant_idp != NULL)
        return SG_LINKING_OFFER_USER_ENABLE;
    return SG_LINKING_OFFER_USER_NOT_YET;
}

enum sg_linking_offer sg_linking_tenant_offer(const struct sg_linking_caller *caller,
                                              const struct sg_linking_links *links)
{
    if (!manages_tenant(caller))
        return SG_LINKING_OFFER_TENANT_NONE;
    return links->tenant_idp != NULL ? SG_LINKING_OFFER_TENANT_DISABLE
                                     : SG_LINKING_OFFER_TENANT_ENABLE;
}
