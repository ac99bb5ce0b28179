/*
 * My Settings and the link endpoints: GET /_sso/settings (HTML), GET
 * /_sso/status (JSON), POST /_sso/tenant/enable|disable (PSA admins) and
 * POST /_sso/user/enable|disable. Each first asks the PSA who the caller is
 * (whoami.h). Every POST must come from the gateway's own origin and carry
 * the CSRF token of the page that made it (a double-submit cookie).
 */
#ifndef SSOGATE_SETTINGS_H
#define SSOGATE_SETTINGS_H

struct evhttp_request;
struct sg_access;
struct sg_conn;
struct sg_runtime;

/*
 * Handles /_sso/<name> when it is one of the endpoints above. Returns the
 * status sent, 0 when the handler took the access record and answers later,
 * or -1 when name is not one of its endpoints.
 */
int sg_settings_handle(struct sg_runtime *rt, struct evhttp_request *req, struct sg_conn *conn,
                       struct sg_access *access, const char *name);

#endif
