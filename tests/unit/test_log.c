/*
 * Log line unit tests: every line is one JSON object of valid UTF-8, whatever
 * bytes a value carries (invalid, overlong, surrogate, cut by truncation).
 */
#include "../../gateway/common.c"
#include "../../gateway/log.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include <cmocka.h>

#define REPLACEMENT "\xef\xbf\xbd"

/* The one line fn writes on stderr, parsed (yajl_tree_parse refuses invalid UTF-8). */
static yajl_val logged(void (*fn)(const char *), const char *value)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(f), STDERR_FILENO) >= 0);
    fn(value);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    char line[8192];
    rewind(f);
    size_t n = fread(line, 1, sizeof(line) - 1, f);
    fclose(f);
    line[n] = '\0';
    assert_true(n > 0 && line[n - 1] == '\n');
    assert_null(memchr(line, '\n', n - 1)); /* one line */
    char errbuf[256];
    yajl_val doc = yajl_tree_parse(line, errbuf, sizeof(errbuf));
    if (doc == NULL)
        print_error("not JSON (%s): %s\n", errbuf, line);
    assert_non_null(doc);
    return doc;
}

static void log_detail(const char *value)
{
    sg_log_fields(SG_LOG_WARN, "test", (struct sg_log_field[]){SG_LOG_STR("detail", value)}, 1);
}

static void log_message(const char *value)
{
    sg_log(SG_LOG_WARN, "test", "%s", value);
}

static const char *member(yajl_val doc, const char *name)
{
    const char *path[] = {name, NULL};
    yajl_val v = yajl_tree_get(doc, path, yajl_t_string);
    assert_non_null(v);
    return YAJL_GET_STRING(v);
}

static void test_values_are_valid_utf8(void **state)
{
    static const struct {
        const char *in;
        const char *out;
    } cases[] = {
        {"plain /path?x", "plain /path?x"},
        {"quote \" backslash \\ newline \n nul-less \x01",
         "quote \" backslash \\ newline \n nul-less \x01"},
        {"\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e", "\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e"},
        {"a\xff"
         "b",
         "a" REPLACEMENT "b"},
        {"\xed\xb2\x80", REPLACEMENT REPLACEMENT REPLACEMENT}, /* a lone surrogate (\udc80) */
        {"\xc0\xaf", REPLACEMENT REPLACEMENT},                 /* an overlong '/' */
        {"\xe0\x80\xaf", REPLACEMENT REPLACEMENT REPLACEMENT}, /* an overlong '/' */
        {"\xf4\x90\x80\x80", REPLACEMENT REPLACEMENT REPLACEMENT REPLACEMENT}, /* past U+10FFFF */
        {"cut \xe2\x82", "cut " REPLACEMENT REPLACEMENT},
        {"\x80"
         "x",
         REPLACEMENT "x"},
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(cases); i++) {
        yajl_val doc = logged(log_detail, cases[i].in);
        assert_string_equal(member(doc, "detail"), cases[i].out);
        yajl_tree_free(doc);
    }
}

/* sg_log's message is cut at 1023 bytes, which may fall inside a sequence. */
static void test_cut_message(void **state)
{
    char value[1100];
    memset(value, 'a', 1022);
    strcpy(value + 1022, "\xe2\x82\xac tail");
    yajl_val doc = logged(log_message, value);
    const char *msg = member(doc, "msg");
    assert_int_equal(strlen(msg), 1022 + 3);
    assert_string_equal(msg + 1022, REPLACEMENT);
    yajl_tree_free(doc);
}

/* A value over SG_LOG_VALUE_MAX is cut before a character, marked with "...". */
static void test_long_value(void **state)
{
    static char value[3 * SG_LOG_VALUE_MAX];
    memset(value, 'a', sizeof(value) - 1);
    yajl_val doc = logged(log_detail, value);
    const char *detail = member(doc, "detail");
    assert_int_equal(strlen(detail), SG_LOG_VALUE_MAX + 3);
    assert_string_equal(detail + SG_LOG_VALUE_MAX, "...");
    yajl_tree_free(doc);
    /* a 3-byte character across the cut is left out whole */
    memset(value, 'a', SG_LOG_VALUE_MAX - 1);
    strcpy(value + SG_LOG_VALUE_MAX - 1, "\xe2\x82\xac tail");
    doc = logged(log_detail, value);
    detail = member(doc, "detail");
    assert_int_equal(strlen(detail), SG_LOG_VALUE_MAX - 1 + 3);
    assert_string_equal(detail + SG_LOG_VALUE_MAX - 1, "...");
    yajl_tree_free(doc);
    /* one of exactly SG_LOG_VALUE_MAX bytes is whole */
    memset(value, 'b', SG_LOG_VALUE_MAX);
    value[SG_LOG_VALUE_MAX] = '\0';
    doc = logged(log_detail, value);
    assert_int_equal(strlen(member(doc, "detail")), SG_LOG_VALUE_MAX);
    yajl_tree_free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_are_valid_utf8),
        cmocka_unit_test(test_cut_message),
        cmocka_unit_test(test_long_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
