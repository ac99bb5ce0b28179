/*
 * The article's linking rules (B1-B11) as pure functions: no I/O, no store,
 * no HTTP. The callers (login.c for the callback, settings.c for My Settings
 * and its POSTs) gather what the PSA's whoami said about the caller, what the
 * ID token said and what the store holds, ask here what to do, and answer as
 * sg_linking_answer() says: one table gives every decision its metric
 * labels, log reason, HTTP status and page, redirect or notice.
 *
 * The store writes stay with the callers: a decision to link or unlink is
 * what to write. A one-to-one conflict (B4, B10) that a concurrent write
 * creates between the lookups and the write is still caught at write time;
 * the caller then answers SG_LINKING_TENANT_ALREADY_MAPPED or
 * SG_LINKING_USER_ALREADY_LINKED, as a conflict found here.
 */
#ifndef SSOGATE_LINKING_H
#define SSOGATE_LINKING_H

#include <stdbool.h>
#include <stddef.h>

/* What to do. Every value has exactly one entry in sg_linking_answer(). */
enum sg_linking_decision {
    /* The callback, every purpose (decision order 5 and 6). */
    SG_LINKING_NO_SECOND_FACTOR = 0, /* B3: amr holds none of the required values */
    SG_LINKING_IDP_INACTIVE,         /* B11: to the PSA login page with a notice */
    /* The callback of a login (B6, B9). */
    SG_LINKING_LOGIN_NOT_LINKED,    /* no user link for the IdP user */
    SG_LINKING_LOGIN_LINKED,        /* linked: go on and ask the PSA about its user */
    SG_LINKING_LOGIN_SESSION,       /* the PSA accepts its user: create the session */
    SG_LINKING_LOGIN_CLIENT_PORTAL, /* B9 */
    SG_LINKING_LOGIN_PSA_REFUSED,   /* the PSA user is inactive or unknown */
    SG_LINKING_LOGIN_PSA_UNREACHABLE,
    SG_LINKING_LOGIN_PSA_OTHER_USER, /* the PSA answered about another user than the linked one */
    /* The callback of a tenant link (B1, B2, B4). */
    SG_LINKING_TENANT_NO_IDP_TENANT,
    SG_LINKING_TENANT_NOT_MASTER,
    SG_LINKING_TENANT_MODULE_URL_MISMATCH, /* B2: the page names the expected URL */
    SG_LINKING_TENANT_ALREADY_MAPPED,      /* B4, either side */
    SG_LINKING_TENANT_LINK,                /* write the tenant link; the answer once written */
    /* The callback of a user link (B5, B10). */
    SG_LINKING_USER_TENANT_NOT_LINKED,
    SG_LINKING_USER_WRONG_IDP_TENANT,
    SG_LINKING_USER_ALREADY_LINKED, /* B10, either side */
    SG_LINKING_USER_LINK,           /* write the user link, then create the session */
    /* The PSA's answer at the callback of either link (B1, B9): the caller
     * may have changed since the POST that started the link. */
    SG_LINKING_LINK_PSA_CALLER_CHANGED, /* the PSA names nobody, or another user */
    SG_LINKING_LINK_PSA_CLIENT_PORTAL,  /* B9 */
    SG_LINKING_LINK_PSA_INACTIVE,
    SG_LINKING_LINK_PSA_NOT_ADMIN, /* B1, a tenant link */
    /* The POSTs of My Settings (B1, B5, B7, B8, B9). */
    SG_LINKING_TENANT_ENABLE_NOT_ADMIN,
    SG_LINKING_TENANT_ENABLE_ALREADY_ON, /* back to My Settings, no login */
    SG_LINKING_TENANT_ENABLE,            /* start a tenant link login */
    SG_LINKING_TENANT_DISABLE_NOT_ADMIN,
    SG_LINKING_TENANT_DISABLE, /* B7: delete the tenant link; the answer once deleted */
    SG_LINKING_USER_ENABLE_CLIENT_PORTAL,
    SG_LINKING_USER_ENABLE_INACTIVE,
    SG_LINKING_USER_ENABLE_TENANT_OFF,
    SG_LINKING_USER_ENABLE,  /* start a user link login */
    SG_LINKING_USER_DISABLE, /* B8: delete the user link; the answer once deleted */
    SG_LINKING_DECISION_COUNT,
};

/*
 * How a decision is answered. Strings are static; NULL means "none".
 * A status of 0 means the caller goes on: it starts a login, asks the PSA or
 * creates the session, and that step answers.
 */
struct sg_linking_answer {
    const char *name;           /* the decision's own name, for tests */
    int status;                 /* HTTP status */
    const char *login_result;   /* label of ssogate_logins_total{result} */
    const char *log_reason;     /* result of the "login" warning line of a refused callback */
    const char *link;           /* "tenant" or "user": the "link" log line is written */
    const char *link_result;    /* that line's result */
    const char *links_result;   /* label of ssogate_links_total{result} */
    const char *request_result; /* label of ssogate_link_requests_total{result} */
    const char *title;          /* the page, when neither location nor notice is set */
    const char *message;
    bool names_module_url; /* the message is followed by the expected module URL and tail */
    const char *tail;
    const char *location; /* redirect target */
    const char *notice;   /* to the PSA login page with ?sso_notice= this */
};

/* The answer of decision; never NULL. */
const struct sg_linking_answer *sg_linking_answer(enum sg_linking_decision decision);

/* The deployment's rules; borrowed from the configuration. */
struct sg_linking_rules {
    const char *const *required_amr; /* NULL-terminated */
    const char *module_url;          /* the region's expected module URL (B2) */
};

/* What the ID token said. Everything borrowed. */
struct sg_linking_token {
    const char *sub;
    const char *idp_tenant;         /* NULL when the token names none */
    bool master;                    /* the master claim is true */
    bool active;                    /* false only when the active claim says false */
    const char *const *module_urls; /* the strings of the module URL claim */
    size_t module_url_count;
    const char *const *amr;
    size_t amr_count;
};

/* What the PSA's whoami said about its caller. Everything borrowed. */
struct sg_linking_caller {
    const char *tenant;
    const char *user;
    bool admin;
    bool staff; /* not a client-portal user */
    bool active;
};

/*
 * What the store holds around a decision, looked up by the caller; NULL for
 * "not linked". Everything borrowed.
 */
struct sg_linking_links {
    const char *tenant_idp;      /* the IdP tenant the PSA tenant is linked to */
    const char *tenant_psa;      /* the PSA tenant the token's IdP tenant is linked to */
    const char *user_idp_tenant; /* the IdP user the PSA user is linked to */
    const char *user_idp_sub;
    const char *user_psa_tenant; /* the PSA user the token's IdP user is linked to */
    const char *user_psa_user;
};

/* B3 then B11, for any login; SG_LINKING_LOGIN_SESSION when both hold. */
enum sg_linking_decision sg_linking_check_token(const struct sg_linking_rules *rules,
                                                const struct sg_linking_token *token);

/* True when a module URL names expected: case aside, trailing slashes aside (B2). */
bool sg_linking_url_equal(const char *url, const char *expected);

/*
 * The callback of a login (B3, B11, B6): SG_LINKING_LOGIN_LINKED when the IdP
 * user is linked (links->user_psa_*); the caller then asks the PSA and
 * decides with sg_linking_login_psa.
 */
enum sg_linking_decision sg_linking_login(const struct sg_linking_rules *rules,
                                          const struct sg_linking_token *token,
                                          const struct sg_linking_links *links);

/*
 * The PSA's answer about the linked user (psa_tenant, psa_user) of a login
 * (B9): caller is NULL when the PSA named nobody; reachable is false when it
 * did not answer. An answer about anyone else refuses the login.
 */
enum sg_linking_decision sg_linking_login_psa(const struct sg_linking_caller *caller,
                                              bool reachable, const char *psa_tenant,
                                              const char *psa_user);

/*
 * The PSA's answer, at the callback of a link, about the caller who started
 * it: the PSA user (psa_tenant, psa_user) of the POST, still staff and active
 * (B9), and for a tenant link still an admin (B1). caller and reachable as
 * for sg_linking_login_psa. Returns SG_LINKING_TENANT_LINK (tenant) or
 * SG_LINKING_USER_LINK when they hold, else the refusal.
 */
enum sg_linking_decision sg_linking_link_psa(const struct sg_linking_caller *caller, bool reachable,
                                             const char *psa_tenant, const char *psa_user,
                                             bool tenant);

/*
 * The callback of a tenant link (B3, B11, B1, B2, B4) for the PSA tenant
 * psa_tenant; links->tenant_idp and links->tenant_psa are looked up.
 */
enum sg_linking_decision sg_linking_tenant(const struct sg_linking_rules *rules,
                                           const struct sg_linking_token *token,
                                           const char *psa_tenant,
                                           const struct sg_linking_links *links);

/*
 * The callback of a user link (B3, B11, B5, B10) for the PSA user (psa_tenant,
 * psa_user); links->tenant_idp and both user links are looked up.
 */
enum sg_linking_decision sg_linking_user(const struct sg_linking_rules *rules,
                                         const struct sg_linking_token *token,
                                         const char *psa_tenant, const char *psa_user,
                                         const struct sg_linking_links *links);

/* The POSTs of My Settings; links->tenant_idp is looked up where needed. */
enum sg_linking_decision sg_linking_tenant_enable(const struct sg_linking_caller *caller,
                                                  const struct sg_linking_links *links);
enum sg_linking_decision sg_linking_tenant_disable(const struct sg_linking_caller *caller);
enum sg_linking_decision sg_linking_user_enable(const struct sg_linking_caller *caller,
                                                const struct sg_linking_links *links);
/* Any PSA user may disable their own link (B8), client-portal and inactive ones too. */
enum sg_linking_decision sg_linking_user_disable(void);

/* What My Settings offers the caller. */
enum sg_linking_offer {
    SG_LINKING_OFFER_USER_PORTAL = 0, /* B9: not available */
    SG_LINKING_OFFER_USER_DISABLE,    /* linked: Disable */
    SG_LINKING_OFFER_USER_ENABLE,     /* tenant linked: Enable */
    SG_LINKING_OFFER_USER_NOT_YET,    /* tenant not linked */
    SG_LINKING_OFFER_TENANT_NONE,     /* not an admin: no tenant switch */
    SG_LINKING_OFFER_TENANT_DISABLE,  /* tenant linked: Turn off */
    SG_LINKING_OFFER_TENANT_ENABLE,   /* Turn on */
};

/* The user section and the tenant switch of My Settings; links->tenant_idp
 * and links->user_idp_sub are looked up. */
enum sg_linking_offer sg_linking_user_offer(const struct sg_linking_caller *caller,
                                            const struct sg_linking_links *links);
enum sg_linking_offer sg_linking_tenant_offer(const struct sg_linking_caller *caller,
                                              const struct sg_linking_links *links);

#endif
