/*
 * The wire check of a client connection: every byte a client sends goes
 * through llhttp in its strict mode (Debian's node-llhttp) as it arrives, before
 * libevent's HTTP parser reads it, for what evhttp cannot see once it has
 * turned a header line into a C string:
 *
 *  - a NUL (or another byte RFC 9110 forbids) anywhere in a header section
 *    (evhttp would end the value there and forward the rest of the request),
 *    and what evhttp would take but RFC 9112 lets a server refuse: white
 *    space between a field name and its colon, a header line ended by a
 *    bare LF;
 *    a body on a method that takes none (all but POST, PUT, PATCH and
 *    DELETE: evhttp reads no body of a HEAD, which would be read as the next
 *    request), and a method evhttp does not hand over (it answers 501 without
 *    reading a body);
 *    the request it belongs to, and every later one on the connection, is
 *    refused (sg_wire_verdict);
 *  - chunk extensions (RFC 9112 7.1.1), which libevent 2.1 refuses with a
 *    413: they are overwritten with spaces in place, which evhttp reads as
 *    the end of the chunk size, so they are accepted and dropped. A chunk
 *    size line is checked here, not by llhttp (wire.c size_line), and one
 *    longer than SG_WIRE_CHUNK_LINE_MAX is refused.
 *
 * The scanner runs from an evbuffer callback on the connection's input, which
 * libevent calls synchronously when bytes are added, before its own read
 * callback parses them. It stops for good at a request that asks for a
 * protocol switch (what follows may be a tunnel): sg_wire_stopped tells the
 * server to close such a connection after its answer unless it became one.
 */
#ifndef SSOGATE_WIRE_H
#define SSOGATE_WIRE_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define SG_WIRE_CHUNK_LINE_MAX 4096

struct sg_wire {
    llhttp_t parser;
    uint64_t received;     /* bytes scanned since the connection opened */
    uint64_t messages;     /* requests begun */
    uint64_t bad_message;  /* the request the stream went wrong in (1-based), 0 while none */
    uint64_t line_start;   /* where the chunk size line being received began */
    uint64_t stop_message; /* the request that asked for a protocol switch, 0 while none */
    const char *reason;    /* why bad_message went wrong */
    uint8_t body;          /* enum wire_body of wire.c */
    uint8_t pause;         /* enum wire_pause of wire.c */
    bool in_message;       /* between the first byte of a request and its end */
    bool unbounded;        /* a chunk size line grew past its limit without ending */
};

void sg_wire_init(struct sg_wire *w);

/* Scans the n_added bytes just appended to buf (the connection's input).
 * Returns true when the connection must be closed at once: a chunk size line
 * past its limit that has not ended, which evhttp would keep buffering. Every
 * other failure leaves the request to evhttp, which refuses it or hands it
 * over to be refused through sg_wire_verdict. */
bool sg_wire_scan(struct sg_wire *w, struct evbuffer *buf, size_t n_added);

/* NULL when request number `message` (1-based, in arrival order) was received
 * intact, otherwise why not: a static text for logs. */
const char *sg_wire_verdict(const struct sg_wire *w, uint64_t message);

/* True once request `message` or an earlier one asked for a protocol switch. */
bool sg_wire_stopped(const struct sg_wire *w, uint64_t message);

#endif
