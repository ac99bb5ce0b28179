/*
 * Process-wide metrics, rendered in the Prometheus text format. The event
 * loop is single-threaded, so plain integers suffice; each worker process
 * keeps its own.
 */
#ifndef SSOGATE_METRICS_H
#define SSOGATE_METRICS_H

#include <stdint.h>

struct evbuffer;

/* Error kinds: each is one value of the label kind of ssogate_errors_total. */
enum sg_metric_error {
    SG_MERR_BAD_REQUEST = 0,
    SG_MERR_HEADER_TOO_BIG,
    SG_MERR_BODY_TOO_BIG,
    SG_MERR_CLIENT_TIMEOUT,
    SG_MERR_CONNECTION_LIMIT,
    SG_MERR_TLS_HANDSHAKE,
    SG_MERR_UPSTREAM_CONNECT,
    SG_MERR_UPSTREAM_TIMEOUT,
    SG_MERR_UPSTREAM_BROKEN,
    SG_MERR_UPSTREAM_INVALID,
    SG_MERR_CLIENT_ABORTED,
    SG_MERR_RELOAD,
    SG_MERR_STORE,
    SG_MERR_ASSERTION,
    SG_MERR__COUNT
};

/* Records one response sent to a client with this status. */
void sg_metrics_response(int status);

/* Records the time from sending a request upstream to its response headers. */
void sg_metrics_upstream_latency(int64_t micros);

void sg_metrics_error(enum sg_metric_error kind);
void sg_metrics_reload(int ok);
void sg_metrics_connections(int64_t delta);

/*
 * Counts one event of a labelled counter family, e.g.
 * sg_metrics_count("ssogate_logins_total", "result", "ok"). Names are static
 * strings (borrowed for the life of the process); a family is declared by
 * its first use. Not for the per-request hot path.
 */
void sg_metrics_count(const char *family, const char *label, const char *value);

/* Label value of an error kind. */
const char *sg_metrics_error_name(enum sg_metric_error kind);

/* Appends every metric in the Prometheus text exposition format. */
void sg_metrics_render(struct evbuffer *out);

#endif
