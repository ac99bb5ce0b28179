/*
 * The asynchronous HTTP client the gateway uses to talk to the identity
 * provider and to the PSA's whoami: one client per origin, over a keep-alive
 * pool (upstream.h) with evdns for names and bufferevent_openssl for https
 * (peer certificate and host name verified). A client owns its pool
 * (sg_httpc_new) or shares one that also carries other traffic, the PSA
 * upstream of a snapshot (sg_httpc_new_on_pool). Every exchange is bounded:
 * a deadline for the whole exchange and a cap on the response body.
 */
#ifndef SSOGATE_HTTPC_H
#define SSOGATE_HTTPC_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evdns_base;
struct evkeyvalq;
struct sg_httpc;
struct sg_httpc_request;
struct sg_upstream;
struct sg_url;

/*
 * Called once per request. err is NULL on success (any HTTP status) or a
 * short static reason ("timeout", "connect", "too_big", "broken"); status
 * is the HTTP status (0 on error); body (NUL-terminated, len bytes) is
 * borrowed for the call.
 */
typedef void (*sg_httpc_cb)(const char *err, int status, const char *body, size_t len, void *arg);

struct sg_httpc_options {
    const char *ca_file; /* NULL = system store */
    uint32_t timeout_ms; /* the whole exchange */
    size_t max_response_bytes;
    unsigned pool_size;
};

/*
 * Creates a client for the origin of url (borrowed). Returns 0 and the
 * client in *out, or SG_ECONFIG with a reason in errbuf.
 */
int sg_httpc_new(struct event_base *base, struct evdns_base *dns, const struct sg_url *url,
                 const struct sg_httpc_options *opts, struct sg_httpc **out, char *errbuf,
                 size_t errlen);

/*
 * Creates a client over pool (a reference is taken), an existing pool that
 * may carry other traffic: its connections keep their own limits, the body
 * cap is applied as the answer arrives (the rest of a larger answer is read
 * and dropped). host_header (copied) is sent as Host. Of opts only
 * timeout_ms and max_response_bytes apply. Never fails.
 */
struct sg_httpc *sg_httpc_new_on_pool(struct event_base *base, struct sg_upstream *pool,
                                      const char *host_header, const struct sg_httpc_options *opts);

/* Frees the client; requests in flight are cancelled without their callback. NULL-safe. */
void sg_httpc_free(struct sg_httpc *client);

/*
 * Starts a GET of target (path and query, borrowed) with Accept: application/json.
 * Returns a handle valid until the callback runs or sg_httpc_cancel.
 */
struct sg_httpc_request *sg_httpc_get(struct sg_httpc *client, const char *target, sg_httpc_cb cb,
                                      void *arg);

/*
 * The same with headers (borrowed for the call; may be NULL) added after
 * Host, Accept and User-Agent, in order, each as it is.
 */
struct sg_httpc_request *sg_httpc_get_with(struct sg_httpc *client, const char *target,
                                           const struct evkeyvalq *headers, sg_httpc_cb cb,
                                           void *arg);

/*
 * Starts a POST of an application/x-www-form-urlencoded body (borrowed) to
 * target; authorization (may be NULL) is sent as the Authorization header.
 */
struct sg_httpc_request *sg_httpc_post_form(struct sg_httpc *client, const char *target,
                                            const char *body, const char *authorization,
                                            sg_httpc_cb cb, void *arg);

/* Cancels a request: its callback will not run. */
void sg_httpc_cancel(struct sg_httpc_request *request);

#endif
