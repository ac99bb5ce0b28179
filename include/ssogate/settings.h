/*
 * My Settings and the link endpoints: GET /_sso/settings (HTML), GET
 * /_sso/status (JSON), POST /_sso/tenant/enable|disable (PSA admins) and
 * POST /_sso/user/enable|disable. Each first asks the PSA who the caller is
 * (whoami.h). Every POST must come from the gateway's own origin and carry
 * the CSRF token of the page that made it (a double-submit cookie).
 */
#ifndef SSOGATE_SETTINGS_H
#define SSOGATE_SETTINGS_H

struct sg_request;

/* The endpoints (router.c's table); each returns the status sent, or 0 when
 * it waits for the PSA's answer (request.h). */
int sg_settings_page(struct sg_request *r);
int sg_settings_status(struct sg_request *r);
int sg_settings_tenant_enable(struct sg_request *r);
int sg_settings_tenant_disable(struct sg_request *r);
int sg_settings_user_enable(struct sg_request *r);
int sg_settings_user_disable(struct sg_request *r);

#endif
