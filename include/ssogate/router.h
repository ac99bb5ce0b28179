/*
 * The first stop of every request: checks its framing and target (a refusal
 * closes the connection), then the gateway's own endpoints under /_sso/ (one
 * table in router.c), everything else to the proxy with the identity its
 * route asks for.
 */
#ifndef SSOGATE_ROUTER_H
#define SSOGATE_ROUTER_H

struct evhttp_request;
struct sg_conn;

/* An sg_server_handler (server.h); arg is the runtime (runtime.h). */
void sg_router_handle(struct evhttp_request *req, struct sg_conn *conn, void *arg);

#endif
