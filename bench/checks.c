/*
 * What the strict data path costs per request (issue 9): the target
 * normaliser, the header validator and the filtered header copy with the
 * upstream Cookie line, on a typical browser request, timed over many
 * rounds; and, apart, the wire check (wire.c: the request's bytes through
 * llhttp as they arrive). The peer measured in the same run is libevent's own parse of the
 * same target (evhttp_uri_parse_with_flags), which evhttp does for every
 * request anyway.
 *
 * Usage: ssogate-bench-checks [ROUNDS]   (default 1000000)
 */
#include "ssogate/common.h"
#include "ssogate/config.h"
#include "ssogate/cookies.h"
#include "ssogate/headers.h"
#include "ssogate/target.h"
#include "ssogate/wire.h"

#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char target[] = "/app/tickets/1234/notes?view=full&sort=desc&page=2";

static const char *const request_headers[][2] = {
    {"Host", "psa.example.com"},
    {"User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"},
    {"Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
    {"Accept-Language", "en-GB,en;q=0.9"},
    {"Accept-Encoding", "gzip, deflate, br"},
    {"Referer", "https://psa.example.com/app/tickets"},
    {"Cookie", "ssogate=Q2hhbmdlTWVDaGFuZ2VNZUNoYW5nZU1lQ2hhbmdlTWU; psa_sid=abc123; theme=dark"},
    {"Connection", "keep-alive"},
    {"Upgrade-Insecure-Requests", "1"},
    {"Sec-Fetch-Dest", "document"},
    {"Sec-Fetch-Mode", "navigate"},
    {"Sec-Fetch-Site", "same-origin"},
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 1000000;
    if (rounds <= 0) {
        fprintf(stderr, "usage: ssogate-bench-checks [ROUNDS]\n");
        return 2;
    }
    static const char json[] = "{\"listeners\":[{\"address\":\"127.0.0.1\",\"port\":8080}],"
                               "\"public_url\":\"https://psa.example.com\","
                               "\"upstream\":{\"url\":\"http://127.0.0.1:9000\"},"
                               "\"data_dir\":\"/tmp\"}";
    struct sg_config *cfg = NULL;
    if (sg_config_parse("bench.json", NULL, json, strlen(json), &cfg, NULL) != 0)
        return 1;
    struct evkeyvalq in;
    TAILQ_INIT(&in);
    for (size_t i = 0; i < SG_ARRAY_LEN(request_headers); i++)
        evhttp_add_header(&in, request_headers[i][0], request_headers[i][1]);
    struct sg_target_options opts = {.https = true, .host = "psa.example.com", .port = 443};

    struct evbuffer *out = evbuffer_new();
    double start = now_s();
    size_t sink = 0;
    for (long i = 0; i < rounds; i++) {
        struct sg_target t;
        if (sg_target_normalize(target, sizeof(target) - 1, &opts, &t) != SG_TARGET_OK ||
            sg_headers_validate(&in, true) != SG_HEADERS_OK)
            return 1;
        sg_headers_copy_request(&in, out, NULL);
        char *cookie = sg_cookies_strip(cfg, &in);
        sink += strlen(t.path) + strlen(cookie);
        free(cookie);
        evbuffer_drain(out, evbuffer_get_length(out));
        sg_target_clear(&t);
    }
    double checks = now_s() - start;
    evbuffer_free(out);

    /* The same request as bytes, scanned as they would arrive, then drained as evhttp would. */
    struct evbuffer *head = evbuffer_new();
    evbuffer_add_printf(head, "GET %s HTTP/1.1\r\n", target);
    for (size_t i = 0; i < SG_ARRAY_LEN(request_headers); i++)
        evbuffer_add_printf(head, "%s: %s\r\n", request_headers[i][0], request_headers[i][1]);
    evbuffer_add(head, "\r\n", 2);
    size_t head_len = evbuffer_get_length(head);
    const char *bytes = (const char *)evbuffer_pullup(head, -1);
    struct evbuffer *conn = evbuffer_new();
    struct sg_wire wire;
    sg_wire_init(&wire);
    start = now_s();
    for (long i = 0; i < rounds; i++) {
        evbuffer_add(conn, bytes, head_len);
        sg_wire_scan(&wire, conn, head_len);
        evbuffer_drain(conn, head_len);
    }
    double wire_s = now_s() - start;
    if (sg_wire_verdict(&wire, (uint64_t)rounds) != NULL)
        return 1;
    start = now_s();
    for (long i = 0; i < rounds; i++) {
        evbuffer_add(conn, bytes, head_len);
        evbuffer_drain(conn, head_len);
    }
    wire_s -= now_s() - start; /* the buffer's own cost, which evhttp pays anyway */

    start = now_s();
    for (long i = 0; i < rounds; i++) {
        struct evhttp_uri *uri = evhttp_uri_parse_with_flags(target, EVHTTP_URI_NONCONFORMANT);
        sink += strlen(evhttp_uri_get_path(uri));
        evhttp_uri_free(uri);
    }
    double peer = now_s() - start;

    printf("strict checks (normalise, validate, filtered copy, upstream Cookie): %.0f ns/request\n",
           checks / (double)rounds * 1e9);
    printf("peer: libevent's parse of the same target: %.0f ns/request\n",
           peer / (double)rounds * 1e9);
    printf("ratio checks/peer: %.2f (sink %zu)\n", checks / peer, sink % 10);
    printf("wire check (llhttp over the %zu-byte head): %.0f ns/request\n", head_len,
           wire_s / (double)rounds * 1e9);
    evbuffer_free(conn);
    evbuffer_free(head);
    evhttp_clear_headers(&in);
    sg_config_unref(cfg);
    return 0;
}
