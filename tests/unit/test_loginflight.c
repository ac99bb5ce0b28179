/*
 * Unit tests of the logins in flight by client address (red team D, finding
 * 2): which login is given up at the cap, the counts as logins come and go,
 * expiry, the bound on what is noted, and the addresses logins count under.
 */
#include "../../gateway/common.c"
#include "../../gateway/loginflight.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#define NOW ((int64_t)1700000000)
#define MAX ((size_t)1000)

/* A state name (43 characters) made of n. */
static void state_of(int n, char out[SG_LOGINSTATE_TOKEN_SIZE])
{
    snprintf(out, SG_LOGINSTATE_TOKEN_SIZE, "%043d", n);
}

static struct sg_loginaddr v4(const char *text)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    inet_pton(AF_INET, text, &sin.sin_addr);
    struct sg_loginaddr a;
    sg_loginaddr_of((const struct sockaddr *)&sin, &a);
    return a;
}

static void add(struct sg_loginflight *lf, int n, const struct sg_loginaddr *a, int64_t created)
{
    char state[SG_LOGINSTATE_TOKEN_SIZE];
    state_of(n, state);
    sg_loginflight_add(lf, state, a, created, MAX);
}

/* Evicts for newcomer and asserts the login given up was number n of address owner. */
static void assert_evicts(struct sg_loginflight *lf, const struct sg_loginaddr *newcomer, int n,
                          const struct sg_loginaddr *owner)
{
    char state[SG_LOGINSTATE_TOKEN_SIZE], want[SG_LOGINSTATE_TOKEN_SIZE];
    struct sg_loginaddr addr;
    size_t held;
    state_of(n, want);
    assert_true(sg_loginflight_evict(lf, newcomer, state, &addr, &held));
    assert_string_equal(state, want);
    assert_memory_equal(addr.bytes, owner->bytes, sizeof(addr.bytes));
}

/* A flooder holding the most loses its oldest, again and again; users keep theirs. */
static void test_flooder_loses_its_own(void **unused)
{
    (void)unused;
    struct sg_loginflight *lf = sg_loginflight_new();
    struct sg_loginaddr user1 = v4("192.0.2.1"), user2 = v4("192.0.2.2"),
                        flood = v4("198.51.100.7");
    add(lf, 1, &user1, NOW);
    for (int i = 0; i < 100; i++)
        add(lf, 100 + i, &flood, NOW + 1);
    add(lf, 2, &user2, NOW + 2);
    assert_int_equal(sg_loginflight_count(lf), 102);
    assert_int_equal(sg_loginflight_held(lf, &flood), 100);
    for (int i = 0; i < 99; i++)
        assert_evicts(lf, &user2, 100 + i, &flood);
    /* Three addresses with one each: the newcomer's own goes first (it would hold two). */
    assert_evicts(lf, &user1, 1, &user1);
    /* A newcomer holding none: the first address that came to one (the flooder came back to it). */
    struct sg_loginaddr other = v4("203.0.113.9");
    assert_evicts(lf, &other, 2, &user2);
    assert_evicts(lf, &other, 199, &flood);
    assert_int_equal(sg_loginflight_count(lf), 0);
    char state[SG_LOGINSTATE_TOKEN_SIZE];
    struct sg_loginaddr addr;
    size_t held;
    assert_false(sg_loginflight_evict(lf, &other, state, &addr, &held));
    sg_loginflight_free(lf);
}

/* Removal (a callback), expiry and the bound on what is noted keep the counts right. */
static void test_remove_expire_bound(void **unused)
{
    (void)unused;
    struct sg_loginflight *lf = sg_loginflight_new();
    struct sg_loginaddr a = v4("192.0.2.1"), b = v4("192.0.2.2");
    for (int i = 0; i < 3000; i++)
        add(lf, i, i % 3 ? &a : &b, NOW + i);
    assert_int_equal(sg_loginflight_count(lf), MAX); /* the oldest 2000 forgotten */
    char state[SG_LOGINSTATE_TOKEN_SIZE];
    state_of(2999, state);
    sg_loginflight_remove(lf, state);
    sg_loginflight_remove(lf, state);
    sg_loginflight_remove(lf, "short");
    sg_loginflight_remove(lf, NULL);
    assert_int_equal(sg_loginflight_count(lf), MAX - 1);
    sg_loginflight_expire(lf, NOW + 2499 + SG_LOGINSTATE_TTL_S, 10000);
    assert_int_equal(sg_loginflight_count(lf), 499); /* 2500..2998 are left */
    assert_int_equal(sg_loginflight_held(lf, &a) + sg_loginflight_held(lf, &b), 499);
    assert_evicts(lf, &b, 2500, &a); /* a holds 333, b 166 */
    sg_loginflight_expire(lf, NOW + 1000000, 10000);
    assert_int_equal(sg_loginflight_count(lf), 0);
    assert_int_equal(sg_loginflight_held(lf, &a), 0);
    sg_loginflight_free(lf);
    sg_loginflight_free(NULL);
}

/* IPv4 counts by address, IPv6 by /64, an IPv4-mapped IPv6 address as the IPv4 one. */
static void test_addresses(void **unused)
{
    (void)unused;
    struct sockaddr_in6 s1 = {.sin6_family = AF_INET6}, s2 = s1, s3 = s1, mapped = s1;
    inet_pton(AF_INET6, "2001:db8:1:2::1", &s1.sin6_addr);
    inet_pton(AF_INET6, "2001:db8:1:2:ffff::9", &s2.sin6_addr);
    inet_pton(AF_INET6, "2001:db8:1:3::1", &s3.sin6_addr);
    inet_pton(AF_INET6, "::ffff:192.0.2.1", &mapped.sin6_addr);
    struct sg_loginaddr a1, a2, a3, am, v = v4("192.0.2.1");
    sg_loginaddr_of((const struct sockaddr *)&s1, &a1);
    sg_loginaddr_of((const struct sockaddr *)&s2, &a2);
    sg_loginaddr_of((const struct sockaddr *)&s3, &a3);
    sg_loginaddr_of((const struct sockaddr *)&mapped, &am);
    assert_memory_equal(a1.bytes, a2.bytes, 16);
    assert_memory_not_equal(a1.bytes, a3.bytes, 16);
    assert_memory_equal(am.bytes, v.bytes, 16);
    char text[SG_LOGINADDR_TEXT_SIZE];
    sg_loginaddr_format(&a1, text);
    assert_string_equal(text, "2001:db8:1:2::/64");
    sg_loginaddr_format(&am, text);
    assert_string_equal(text, "192.0.2.1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flooder_loses_its_own),
        cmocka_unit_test(test_remove_expire_bound),
        cmocka_unit_test(test_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
