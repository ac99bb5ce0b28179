/*
 * Fuzzes the wire check (gateway/wire.c), which writes into the connection's
 * input buffer. The first input byte picks the read size (1 to 64 bytes, or
 * all at once), the rest is the client's byte stream.
 *
 * Properties: no crash; the buffer keeps its length; a byte it changed became
 * a space and was neither CR nor LF; reading the stream in pieces gives the
 * same verdicts, protocol switch and bytes as reading it at once; and a
 * stream it blanked scans the same the second time, changing nothing more
 * (the blanking is idempotent).
 */
#include "../../gateway/common.c"
#include "../../gateway/wire.c"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_wire: %s:%d: %s\n", __FILE__, __LINE__, #cond);                  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct run {
    struct sg_wire wire;
    uint8_t *out;
};

static void scan(struct run *r, const uint8_t *in, size_t len, size_t step)
{
    struct evbuffer *buf = evbuffer_new();
    sg_wire_init(&r->wire);
    for (size_t off = 0; off < len;) {
        size_t n = step == 0 || len - off < step ? len - off : step;
        evbuffer_add(buf, in + off, n);
        sg_wire_scan(&r->wire, buf, n);
        off += n;
    }
    CHECK(evbuffer_get_length(buf) == len);
    r->out = malloc(len ? len : 1);
    evbuffer_copyout(buf, r->out, len);
    evbuffer_free(buf);
}

static void same_verdicts(const struct sg_wire *a, const struct sg_wire *b)
{
    CHECK(a->bad_message == b->bad_message);
    CHECK(a->stop_message == b->stop_message);
    for (uint64_t m = 1; m <= a->messages + 1; m++) {
        CHECK((sg_wire_verdict(a, m) == NULL) == (sg_wire_verdict(b, m) == NULL));
        CHECK(sg_wire_stopped(a, m) == sg_wire_stopped(b, m));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = data[0] & 0x3f;
    const uint8_t *in = data + 1;
    size_t len = size - 1;

    struct run whole, pieces, again;
    scan(&whole, in, len, 0);
    scan(&pieces, in, len, step);
    for (size_t i = 0; i < len; i++) {
        if (whole.out[i] != in[i])
            CHECK(whole.out[i] == ' ' && in[i] != '\r' && in[i] != '\n');
    }
    CHECK(memcmp(whole.out, pieces.out, len) == 0);
    same_verdicts(&whole.wire, &pieces.wire);

    scan(&again, whole.out, len, 0);
    CHECK(memcmp(again.out, whole.out, len) == 0);
    same_verdicts(&whole.wire, &again.wire);

    free(whole.out);
    free(pieces.out);
    free(again.out);
    return 0;
}
