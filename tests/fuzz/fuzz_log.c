/*
 * Fuzzes how a log line writes a value it was given (a path, a header, a
 * claim, a whoami answer: any bytes but NUL). The input is the value.
 *
 * Properties: the value is written as one JSON string that parses back; the
 * output is well-formed UTF-8 with no raw line break; a value of at most
 * SG_LOG_VALUE_MAX bytes that is well-formed UTF-8 comes back unchanged, a
 * longer one as a prefix of it ending in "..."; the parsed string never
 * holds more than 3 bytes for each byte of the value kept.
 */
#include "../../gateway/common.c"
#include "../../gateway/log.c"

#include <string.h>
#include <yajl/yajl_parse.h>
#include <yajl/yajl_tree.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *value = sg_malloc(size + 1);
    memcpy(value, data, size);
    value[size] = '\0';
    size_t len = strlen(value);

    yajl_gen gen = yajl_gen_alloc(NULL);
    yajl_gen_array_open(gen);
    gen_string(gen, value);
    yajl_gen_array_close(gen);
    const unsigned char *out;
    size_t out_len;
    if (yajl_gen_get_buf(gen, &out, &out_len) != yajl_gen_status_ok)
        abort();
    if (!sg_utf8_valid((const char *)out, out_len) || memchr(out, '\n', out_len) != NULL ||
        memchr(out, '\r', out_len) != NULL)
        abort();

    char *text = sg_strndup((const char *)out, out_len);
    char errbuf[128];
    yajl_val doc = yajl_tree_parse(text, errbuf, sizeof(errbuf));
    if (doc == NULL || !YAJL_IS_ARRAY(doc) || doc->u.array.len != 1 ||
        !YAJL_IS_STRING(doc->u.array.values[0]))
        abort();
    const char *back = YAJL_GET_STRING(doc->u.array.values[0]);
    size_t back_len = strlen(back);
    if (len <= SG_LOG_VALUE_MAX) {
        if (sg_utf8_valid(value, len) && strcmp(back, value) != 0)
            abort();
        if (back_len > 3 * len)
            abort();
    } else {
        if (back_len < 3 || strcmp(back + back_len - 3, "...") != 0 ||
            back_len > 3 * SG_LOG_VALUE_MAX + 3)
            abort();
        if (sg_utf8_valid(value, SG_LOG_VALUE_MAX) && strncmp(back, value, back_len - 3) != 0)
            abort();
    }
    yajl_tree_free(doc);
    free(text);
    yajl_gen_free(gen);
    free(value);
    return 0;
}
