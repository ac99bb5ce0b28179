/*
 * Unit tests of the client's address (gateway/clientaddr.c): trusted_proxies'
 * address blocks, X-Forwarded-For elements, and the walk from the right that
 * never takes an address the client wrote itself.
 */
#include "../../gateway/clientaddr.c"
#include "../../gateway/common.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <event2/http.h>

static struct sg_cidr cidr(const char *text)
{
    struct sg_cidr c;
    const char *why = NULL;
    assert_int_equal(sg_cidr_parse(text, &c, &why), 0);
    return c;
}

static void refused(const char *text, const char *want)
{
    struct sg_cidr c;
    const char *why = NULL;
    assert_int_equal(sg_cidr_parse(text, &c, &why), SG_EINVAL);
    assert_non_null(why);
    assert_non_null(strstr(why, want));
}

static union sg_sockaddr addr(const char *text)
{
    union sg_sockaddr a;
    assert_true(sg_forwarded_parse(text, strlen(text), &a));
    return a;
}

static void assert_text(const union sg_sockaddr *a, const char *want)
{
    char text[SG_ADDR_TEXT_SIZE];
    sg_addr_text(&a->sa, text);
    assert_string_equal(text, want);
}

static void test_blocks(void **unused)
{
    (void)unused;
    struct sg_cidr c = cidr("10.0.0.0/8");
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.bits, 8);
    assert_int_equal(cidr("192.0.2.7").bits, 32);
    assert_int_equal(cidr("::1").bits, 128);
    assert_int_equal(cidr("fd00::/8").family, AF_INET6);
    assert_int_equal(cidr("0.0.0.0/0").bits, 0);
    assert_int_equal(cidr("::/0").bits, 0);
    assert_int_equal(cidr("192.0.2.128/25").bits, 25);
    c = cidr("::ffff:10.0.0.0/104");
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.bits, 8);
    assert_memory_equal(c.addr, cidr("10.0.0.0/8").addr, sizeof(c.addr));
    assert_int_equal(cidr("::ffff:0:0/96").family, AF_INET);
    assert_int_equal(cidr("::ffff:0:0/96").bits, 0);

    refused("10.0.0.1/8", "past its prefix");
    refused("192.0.2.129/25", "past its prefix");
    refused("10.0.0.0/33", "longer than the address");
    refused("::/129", "longer than the address");
    refused("10.0.0.0/", "decimal");
    refused("10.0.0.0/08", "decimal");
    refused("10.0.0.0/8x", "decimal");
    refused("10.0.0.0/-1", "decimal");
    refused("10.0.0.0/1000", "decimal");
    refused("proxy.example", "numeric");
    refused("10.0.0", "numeric");
    refused("[::1]", "numeric");
    refused("fe80::1%eth0", "numeric");
    refused("", "numeric");
}

static void test_match(void **unused)
{
    (void)unused;
    struct sg_cidr set[] = {cidr("10.0.0.0/8"), cidr("192.0.2.128/25"), cidr("fd00::/8")};
    union sg_sockaddr a = addr("10.200.1.2");
    assert_true(sg_cidr_match(set, 3, &a.sa));
    a = addr("11.0.0.1");
    assert_false(sg_cidr_match(set, 3, &a.sa));
    a = addr("192.0.2.200");
    assert_true(sg_cidr_match(set, 3, &a.sa));
    a = addr("192.0.2.127");
    assert_false(sg_cidr_match(set, 3, &a.sa));
    a = addr("fdab::1");
    assert_true(sg_cidr_match(set, 3, &a.sa));
    a = addr("fe00::1");
    assert_false(sg_cidr_match(set, 3, &a.sa));
    /* A dual-stack listener's IPv4 peer is an IPv4 address; an IPv6 block
     * does not take an IPv4 address, nor the other way round. */
    a = addr("::ffff:10.1.2.3");
    assert_true(sg_cidr_match(set, 3, &a.sa));
    assert_text(&a, "10.1.2.3");
    struct sg_cidr all_v6 = cidr("::/0");
    assert_false(sg_cidr_match(&all_v6, 1, &a.sa));
    struct sg_cidr all_v4 = cidr("0.0.0.0/0");
    a = addr("2001:db8::1");
    assert_false(sg_cidr_match(&all_v4, 1, &a.sa));
    assert_false(sg_cidr_match(set, 0, &a.sa));
    assert_false(sg_cidr_match(set, 3, NULL));
}

static void test_elements(void **unused)
{
    (void)unused;
    assert_text((union sg_sockaddr[]){addr("203.0.113.7")}, "203.0.113.7");
    assert_text((union sg_sockaddr[]){addr("203.0.113.7:8080")}, "203.0.113.7");
    assert_text((union sg_sockaddr[]){addr("2001:db8::7")}, "2001:db8::7");
    assert_text((union sg_sockaddr[]){addr("[2001:db8::7]")}, "2001:db8::7");
    assert_text((union sg_sockaddr[]){addr("[2001:db8::7]:443")}, "2001:db8::7");
    const char *bad[] = {"unknown",
                         "_hidden",
                         "proxy.example",
                         "203.0.113.7:",
                         "203.0.113.7:123456",
                         "203.0.113.7:80x",
                         "[2001:db8::7",
                         "[2001:db8::7]x",
                         "[203.0.113.7]",
                         "203.0.113",
                         "203.0.113.7 ",
                         "",
                         "[]",
                         "1.2.3.4:5:6"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        union sg_sockaddr a;
        assert_false(sg_forwarded_parse(bad[i], strlen(bad[i]), &a));
    }
    union sg_sockaddr a;
    assert_false(sg_forwarded_parse("203.0.113.7\0x", 13, &a));
}

/* The client of a request from peer carrying the X-Forwarded-For lines (NULL-ended). */
static unsigned client_of(const struct sg_cidr *set, size_t n, const char *peer,
                          const char *const *lines, char out[SG_ADDR_TEXT_SIZE])
{
    struct evkeyvalq headers;
    TAILQ_INIT(&headers);
    for (size_t i = 0; lines[i] != NULL; i++)
        evhttp_add_header(&headers, i % 2 ? "x-forwarded-for" : "X-Forwarded-For", lines[i]);
    evhttp_add_header(&headers, "X_Forwarded_For", "198.51.100.66");
    evhttp_add_header(&headers, "X-Real-IP", "198.51.100.67");
    union sg_sockaddr from = addr(peer), client;
    unsigned hops = sg_client_addr(set, n, &from.sa, &headers, &client);
    evhttp_clear_headers(&headers);
    sg_addr_text(&client.sa, out);
    return hops;
}

#define LINES(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_walk(void **unused)
{
    (void)unused;
    struct sg_cidr set[] = {cidr("10.0.0.0/8"), cidr("::1")};
    char c[SG_ADDR_TEXT_SIZE];

    /* An untrusted peer is the client, whatever it sends. */
    assert_int_equal(client_of(set, 2, "198.51.100.1", LINES("203.0.113.7"), c), 0);
    assert_string_equal(c, "198.51.100.1");
    /* No trusted proxies: the peer. */
    assert_int_equal(client_of(set, 0, "10.0.0.1", LINES("203.0.113.7"), c), 0);
    assert_string_equal(c, "10.0.0.1");
    /* A trusted peer without the header is the client. */
    assert_int_equal(client_of(set, 2, "10.0.0.1", LINES(NULL), c), 0);
    assert_string_equal(c, "10.0.0.1");

    /* The proxy appended the client; what the client wrote stands to its left. */
    assert_int_equal(client_of(set, 2, "10.0.0.1", LINES("6.6.6.6, 203.0.113.7"), c), 1);
    assert_string_equal(c, "203.0.113.7");
    /* Two proxies: the inner one is passed over. */
    assert_int_equal(client_of(set, 2, "10.0.0.1", LINES("6.6.6.6, 203.0.113.7, 10.9.9.9"), c), 2);
    assert_string_equal(c, "203.0.113.7");
    /* Several lines are one list, in order. */
    assert_int_equal(client_of(set, 2, "::1", LINES("6.6.6.6", "203.0.113.7 ,10.9.9.9"), c), 2);
    assert_string_equal(c, "203.0.113.7");
    assert_int_equal(client_of(set, 2, "::1", LINES("203.0.113.8", "10.9.9.9"), c), 2);
    assert_string_equal(c, "203.0.113.8");
    /* Empty elements and spaces are nothing. */
    assert_int_equal(client_of(set, 2, "10.0.0.1", LINES(" , 203.0.113.7\t, ,"), c), 1);
    assert_string_equal(c, "203.0.113.7");
    /* An element that is no address ends the walk at the last trusted hop. */
    assert_int_equal(client_of(set, 2, "10.0.0.1", LINES("unknown"), c), 0);
    assert_string_equal(c, "10.0.0.1");
    assert_int_equal(client_of(set, 2, "10.0.0.1", LINES("203.0.113.7, unknown, 10.2.2.2"), c), 1);
    assert_string_equal(c, "10.2.2.2");
    /* Every element trusted: the leftmost. */
    assert_int_equal(client_of(set, 2, "10.0.0.1", LINES("10.3.3.3, 10.2.2.2"), c), 2);
    assert_string_equal(c, "10.3.3.3");
    /* Ports and brackets. */
    assert_int_equal(client_of(set, 2, "10.0.0.1", LINES("[2001:db8::7]:443, 10.2.2.2:80"), c), 2);
    assert_string_equal(c, "2001:db8::7");
}

/* Past SG_FORWARDED_MAX_HOPS elements the last trusted hop is the client. */
static void test_hop_bound(void **unused)
{
    (void)unused;
    struct sg_cidr set[] = {cidr("10.0.0.0/8")};
    char line[1024] = "203.0.113.7";
    for (int i = 40; i >= 1; i--) {
        size_t len = strlen(line);
        snprintf(line + len, sizeof(line) - len, ", 10.0.0.%d", i);
    }
    char c[SG_ADDR_TEXT_SIZE];
    assert_int_equal(client_of(set, 1, "10.0.0.1", LINES(line), c), SG_FORWARDED_MAX_HOPS);
    assert_string_equal(c, "10.0.0.32");
}

/* The connections of each address: counts up and down, entries go at zero, the table grows. */
static void test_addrcount(void **unused)
{
    (void)unused;
    struct sg_addrcount *ac = sg_addrcount_new();
    unsigned char a[16] = {1}, b[16] = {2};
    assert_int_equal(sg_addrcount_add(ac, a), 1);
    assert_int_equal(sg_addrcount_add(ac, a), 2);
    assert_int_equal(sg_addrcount_add(ac, b), 1);
    assert_int_equal(sg_addrcount_size(ac), 2);
    sg_addrcount_remove(ac, a);
    assert_int_equal(sg_addrcount_add(ac, a), 2);
    sg_addrcount_remove(ac, a);
    sg_addrcount_remove(ac, a);
    assert_int_equal(sg_addrcount_size(ac), 1);
    assert_int_equal(sg_addrcount_add(ac, a), 1);
    for (unsigned i = 0; i < 5000; i++) {
        unsigned char k[16] = {0};
        memcpy(k + 4, &i, sizeof(i));
        assert_int_equal(sg_addrcount_add(ac, k), 1);
    }
    assert_int_equal(sg_addrcount_size(ac), 5002);
    for (unsigned i = 0; i < 5000; i++) {
        unsigned char k[16] = {0};
        memcpy(k + 4, &i, sizeof(i));
        assert_int_equal(sg_addrcount_add(ac, k), 2);
        sg_addrcount_remove(ac, k);
        sg_addrcount_remove(ac, k);
    }
    assert_int_equal(sg_addrcount_size(ac), 2);
    assert_int_equal(sg_addrcount_add(ac, b), 2);
    sg_addrcount_free(ac);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocks),    cmocka_unit_test(test_match),
        cmocka_unit_test(test_elements),  cmocka_unit_test(test_walk),
        cmocka_unit_test(test_hop_bound), cmocka_unit_test(test_addrcount),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
