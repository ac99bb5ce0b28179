/*
 * libevent's allocator (evmem.c): every size lands in a class that holds it
 * and is at most half as large again, freed blocks are reused, the lists
 * keep no more than their limits, realloc keeps the contents, large blocks
 * bypass the lists, a double free or a foreign pointer aborts, and libevent
 * itself runs on it once installed.
 */
#include "../../gateway/common.c"
#include "../../gateway/evmem.c"

#include <event2/buffer.h>
#include <event2/http.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

static size_t cached_bytes(void)
{
    struct sg_evmem_stats st;
    sg_evmem_stats(&st);
    return st.cached_bytes;
}

static size_t cached_blocks(void)
{
    struct sg_evmem_stats st;
    sg_evmem_stats(&st);
    return st.cached_blocks;
}

static void test_classes_fit(void **state)
{
    for (size_t size = 0; size <= 70000; size += size < 300 ? 1 : 97) {
        sg_evmem_trim();
        unsigned char *p = sg_evmem_malloc(size);
        assert_non_null(p);
        memset(p, 0xa5, size);
        sg_evmem_free(p);
        size_t held = cached_bytes();
        if (size > 65536) {
            assert_int_equal(held, 0); /* large: straight back to malloc */
            continue;
        }
        assert_true(held >= size);
        assert_true(held >= 32);
        assert_true(held <= 32 || held * 2 <= size * 3 + 2); /* at most half as large again */
    }
    for (uint32_t cls = 0; cls < CLASSES; cls++) {
        assert_int_equal(class_of(capacity(cls)), cls);
        if (cls + 1 < CLASSES) /* past the last class a block is large: class_of is not asked */
            assert_int_equal(class_of(capacity(cls) + 1), cls + 1);
    }
    sg_evmem_trim();
}

static void test_reuse(void **state)
{
    sg_evmem_trim();
    void *p = sg_evmem_malloc(100);
    sg_evmem_free(p);
    assert_int_equal(cached_blocks(), 1);
    void *q = sg_evmem_malloc(110); /* the same class (128) */
    assert_ptr_equal(p, q);
    assert_int_equal(cached_blocks(), 0);
    void *r = sg_evmem_malloc(20); /* another class: a new block */
    assert_ptr_not_equal(r, q);
    sg_evmem_free(q);
    sg_evmem_free(r);
    assert_int_equal(cached_blocks(), 2);
    sg_evmem_trim();
    assert_int_equal(cached_blocks(), 0);
}

static void test_limits(void **state)
{
    static void *blocks[2000];
    const struct {
        size_t size, kept;
    } cases[] = {{64, 1024}, {1024, 512}, {8192, 64}, {65536, 8}};
    for (size_t c = 0; c < SG_ARRAY_LEN(cases); c++) {
        sg_evmem_trim();
        for (size_t i = 0; i < SG_ARRAY_LEN(blocks); i++)
            blocks[i] = sg_evmem_malloc(cases[c].size);
        for (size_t i = 0; i < SG_ARRAY_LEN(blocks); i++)
            sg_evmem_free(blocks[i]);
        assert_int_equal(cached_blocks(), cases[c].kept);
        assert_true(cached_bytes() <= 512 * 1024);
    }
    sg_evmem_trim();
}

static void test_realloc_keeps(void **state)
{
    sg_evmem_trim();
    unsigned char *p = sg_evmem_realloc(NULL, 40);
    for (size_t i = 0; i < 40; i++)
        p[i] = (unsigned char)i;
    assert_ptr_equal(sg_evmem_realloc(p, 48), p); /* still in its class */
    assert_ptr_equal(sg_evmem_realloc(p, 10), p);
    size_t sizes[] = {1000, 5000, 70000, 200000, 3000, 40};
    for (size_t s = 0; s < SG_ARRAY_LEN(sizes); s++) {
        p = sg_evmem_realloc(p, sizes[s]);
        assert_non_null(p);
        for (size_t i = 0; i < 40; i++)
            assert_int_equal(p[i], (unsigned char)i);
    }
    sg_evmem_free(p);
    sg_evmem_trim();
}

/* Runs fn in a child; true when the child was killed by SIGABRT or ended with an error. */
static bool dies(void (*fn)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        freopen("/dev/null", "w", stderr);
        fn();
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT) ||
           (WIFEXITED(status) && WEXITSTATUS(status) != 0);
}

/* Called through a volatile pointer: the compiler must not see (and warn
 * about) the use after free that these cases commit on purpose. */
static void (*volatile free_it)(void *) = sg_evmem_free;

static void double_free(void)
{
    void *p = sg_evmem_malloc(64);
    free_it(p);
    free_it(p);
}

static void foreign_free(void)
{
    void *p = malloc(64);
    memset(p, 0, 64);
    free_it(p);
}

static void double_realloc(void)
{
    void *p = sg_evmem_malloc(64);
    free_it(p);
    sg_evmem_realloc(p, 128);
}

static void nothing(void)
{
    sg_evmem_free(sg_evmem_malloc(64));
}

static void test_misuse_aborts(void **state)
{
    assert_false(dies(nothing));
    assert_true(dies(double_free));
    assert_true(dies(foreign_free));
    assert_true(dies(double_realloc));
}

#if EVMEM_OLDEST_FIRST
static void test_poisoned_while_cached(void **state)
{
    sg_evmem_trim();
    char *p = sg_evmem_malloc(300);
    sg_evmem_free(p);
    assert_true(__asan_address_is_poisoned(p));
    assert_true(__asan_address_is_poisoned(p + 299));
    char *q = sg_evmem_malloc(300);
    assert_ptr_equal(p, q);
    assert_false(__asan_address_is_poisoned(q + 299));
    sg_evmem_free(q);
    sg_evmem_trim();
}
#endif

/* Last: once installed, libevent allocates here for the rest of the process. */
static void test_libevent_on_it(void **state)
{
    sg_evmem_trim();
    sg_evmem_install();
    struct evbuffer *buf = evbuffer_new();
    for (int i = 0; i < 1000; i++)
        evbuffer_add_printf(buf, "line %d of some text\r\n", i);
    char *line = evbuffer_readln(buf, NULL, EVBUFFER_EOL_CRLF);
    assert_string_equal(line, "line 0 of some text");
    sg_evmem_free(line);
    evbuffer_free(buf);
    assert_true(cached_blocks() > 0); /* the buffer's chains came back to the lists */
    char *enc = sg_evmem_take(evhttp_uriencode("a b&c", -1, 0));
    assert_string_equal(enc, "a%20b%26c");
    free(enc);
    assert_null(sg_evmem_take(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classes_fit),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_realloc_keeps),
        cmocka_unit_test(test_misuse_aborts),
#if EVMEM_OLDEST_FIRST
        cmocka_unit_test(test_poisoned_while_cached),
#endif
        cmocka_unit_test(test_libevent_on_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
