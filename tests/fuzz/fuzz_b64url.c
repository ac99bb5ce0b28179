/*
 * Fuzzes strict base64url both ways and checks its properties: whatever
 * decodes re-encodes to the very same text (one encoding per value), whatever
 * is encoded decodes back, and a too small output buffer is refused.
 */
#include "../../gateway/b64url.c"
#include "../../gateway/common.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    size_t max = size / 4 * 3 + 2;
    unsigned char *out = sg_malloc(max);
    size_t out_len = 0;
    if (sg_b64url_decode(text, size, out, max, &out_len) == 0) {
        char *again = sg_b64url_encode_alloc(out, out_len);
        if (strlen(again) != size || memcmp(again, text, size) != 0)
            abort();
        free(again);
        size_t short_len = 0;
        if (out_len > 0 && sg_b64url_decode(text, size, out, out_len - 1, &short_len) != SG_ETOOBIG)
            abort();
    }
    free(out);

    char *encoded = sg_b64url_encode_alloc(data, size);
    if (strlen(encoded) != SG_B64URL_ENCODED_LEN(size))
        abort();
    unsigned char *back = sg_malloc(size);
    size_t back_len = 0;
    if (sg_b64url_decode(encoded, strlen(encoded), back, size, &back_len) != 0 ||
        back_len != size || memcmp(back, data, size) != 0)
        abort();
    free(back);
    free(encoded);
    return 0;
}
