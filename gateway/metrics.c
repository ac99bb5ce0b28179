#include "ssogate/metrics.h"

#include "ssogate/common.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

static const char *const error_names[SG_MERR__COUNT] = {
    [SG_MERR_BAD_REQUEST] = "bad_request",
    [SG_MERR_HEADER_TOO_BIG] = "header_too_big",
    [SG_MERR_BODY_TOO_BIG] = "body_too_big",
    [SG_MERR_CLIENT_TIMEOUT] = "client_timeout",
    [SG_MERR_CONNECTION_LIMIT] = "connection_limit",
    [SG_MERR_TLS_HANDSHAKE] = "tls_handshake",
    [SG_MERR_UPSTREAM_CONNECT] = "upstream_connect",
    [SG_MERR_UPSTREAM_TIMEOUT] = "upstream_timeout",
    [SG_MERR_UPSTREAM_BROKEN] = "upstream_broken",
    [SG_MERR_UPSTREAM_INVALID] = "upstream_invalid",
    [SG_MERR_CLIENT_ABORTED] = "client_aborted",
    [SG_MERR_RELOAD] = "reload",
    [SG_MERR_STORE] = "store",
    [SG_MERR_ASSERTION] = "assertion",
};

/* Upper bounds of the latency histogram, in microseconds. */
static const int64_t latency_bounds_us[] = {500,     1000,    2500,    5000,    10000,
                                            25000,   50000,   100000,  250000,  500000,
                                            1000000, 2500000, 5000000, 10000000};

static struct {
    uint64_t responses[6]; /* 1xx..5xx, and [0] for anything else */
    uint64_t latency_buckets[SG_ARRAY_LEN(latency_bounds_us)];
    uint64_t latency_count;
    int64_t latency_sum_us;
    uint64_t errors[SG_MERR__COUNT];
    uint64_t reloads_ok;
    uint64_t reloads_failed;
    int64_t connections_open;
} metrics;

#define MAX_SERIES 256

static struct series {
    const char *family;
    const char *label;
    const char *value;
    uint64_t count;
} series[MAX_SERIES];
static size_t series_count;

void sg_metrics_count(const char *family, const char *label, const char *value)
{
    for (size_t i = 0; i < series_count; i++) {
        struct series *s = &series[i];
        if (strcmp(s->family, family) == 0 && strcmp(s->value, value) == 0 &&
            strcmp(s->label, label) == 0) {
            s->count++;
            return;
        }
    }
    if (series_count == MAX_SERIES)
        return; /* bounded: a label that is not from a fixed set is a bug, not a reason to grow */
    series[series_count++] = (struct series){family, label, value, 1};
}

static void render_series(struct evbuffer *out)
{
    for (size_t i = 0; i < series_count; i++) {
        bool first = true;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(series[j].family, series[i].family) == 0) {
                first = false;
                break;
            }
        }
        if (!first)
            continue;
        evbuffer_add_printf(out, "# TYPE %s counter\n", series[i].family);
        for (size_t j = i; j < series_count; j++) {
            if (strcmp(series[j].family, series[i].family) == 0)
                evbuffer_add_printf(out, "%s{%s=\"%s\"} %" PRIu64 "\n", series[j].family,
                                    series[j].label, series[j].value, series[j].count);
        }
    }
}

void sg_metrics_response(int status)
{
    int class = status / 100;
    metrics.responses[(class >= 1 && class <= 5) ? class : 0]++;
}

void sg_metrics_upstream_latency(int64_t micros)
{
    metrics.latency_count++;
    metrics.latency_sum_us += micros;
    for (size_t i = 0; i < SG_ARRAY_LEN(latency_bounds_us); i++) {
        if (micros <= latency_bounds_us[i]) {
            metrics.latency_buckets[i]++;
            break;
        }
    }
}

void sg_metrics_error(enum sg_metric_error kind)
{
    metrics.errors[kind]++;
}

void sg_metrics_reload(int ok)
{
    if (ok)
        metrics.reloads_ok++;
    else
        metrics.reloads_failed++;
}

void sg_metrics_connections(int64_t delta)
{
    metrics.connections_open += delta;
}

const char *sg_metrics_error_name(enum sg_metric_error kind)
{
    return error_names[kind];
}

void sg_metrics_render(struct evbuffer *out)
{
    static const char *const class_names[6] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};

    evbuffer_add_printf(out, "# HELP ssogate_requests_total Responses sent, by status class.\n"
                             "# TYPE ssogate_requests_total counter\n");
    for (size_t i = 0; i < 6; i++)
        evbuffer_add_printf(out, "ssogate_requests_total{class=\"%s\"} %" PRIu64 "\n",
                            class_names[i], metrics.responses[i]);

    evbuffer_add_printf(out, "# HELP ssogate_upstream_latency_seconds Time to the upstream's "
                             "response headers.\n"
                             "# TYPE ssogate_upstream_latency_seconds histogram\n");
    uint64_t cumulative = 0;
    for (size_t i = 0; i < SG_ARRAY_LEN(latency_bounds_us); i++) {
        cumulative += metrics.latency_buckets[i];
        evbuffer_add_printf(out, "ssogate_upstream_latency_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                            (double)latency_bounds_us[i] / 1e6, cumulative);
    }
    evbuffer_add_printf(out,
                        "ssogate_upstream_latency_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n"
                        "ssogate_upstream_latency_seconds_sum %.6f\n"
                        "ssogate_upstream_latency_seconds_count %" PRIu64 "\n",
                        metrics.latency_count, (double)metrics.latency_sum_us / 1e6,
                        metrics.latency_count);

    evbuffer_add_printf(out,
                        "# HELP ssogate_connections_open Client connections open.\n"
                        "# TYPE ssogate_connections_open gauge\n"
                        "ssogate_connections_open %" PRId64 "\n",
                        metrics.connections_open);

    evbuffer_add_printf(out,
                        "# HELP ssogate_reloads_total Configuration reloads, by result.\n"
                        "# TYPE ssogate_reloads_total counter\n"
                        "ssogate_reloads_total{result=\"ok\"} %" PRIu64 "\n"
                        "ssogate_reloads_total{result=\"failed\"} %" PRIu64 "\n",
                        metrics.reloads_ok, metrics.reloads_failed);

    evbuffer_add_printf(out, "# HELP ssogate_errors_total Errors, by kind.\n"
                             "# TYPE ssogate_errors_total counter\n");
    for (size_t i = 0; i < SG_MERR__COUNT; i++)
        evbuffer_add_printf(out, "ssogate_errors_total{kind=\"%s\"} %" PRIu64 "\n", error_names[i],
                            metrics.errors[i]);
    render_series(out);
}
