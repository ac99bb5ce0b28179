/*
 * JSON unit tests: what sg_json_parse_object refuses (non-objects, duplicate
 * members, comments, NUL, bad UTF-8, nesting, size) and what it accepts.
 */
#include "../../gateway/common.c"
#include "../../gateway/json.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void test_json_parse(void **state)
{
    yajl_val v = NULL;
    static const char *const bad[] = {
        "",
        "[]",
        "\"s\"",
        "{\"a\":1,\"a\":2}",                           /* duplicate member */
        "{\"a\":1}/*c*/",                              /* comment */
        "{\"a\":/*c*/1}",                              /* comment */
        "{\"a\":\"x\\u0000y\"}",                       /* NUL escape */
        "{\"a\":1} x",                                 /* trailing garbage */
        "{\"a\":\"\xff\"}",                            /* bad UTF-8 */
        "{\"a\":[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}", /* too deep */
        "{\"a\":\"unterminated\\",
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(bad); i++)
        assert_int_equal(sg_json_parse_object(bad[i], strlen(bad[i]), 1000, &v), SG_EINVAL);
    assert_int_equal(sg_json_parse_object("{\"a\":1}\0{", 9, 1000, &v), SG_EINVAL);
    assert_int_equal(sg_json_parse_object("{\"a\":1}", 7, 6, &v), SG_ETOOBIG);
    const char *ok = "{\"a\":[[[[[[[[[[[[[[1]]]]]]]]]]]]]],\"b\":\"\\u00e9\\\"{[\"}";
    assert_int_equal(sg_json_parse_object(ok, strlen(ok), 1000, &v), 0);
    assert_string_equal(YAJL_GET_STRING(sg_json_member(v, "b")), "\xc3\xa9\"{[");
    assert_null(sg_json_member(v, "c"));
    yajl_tree_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
