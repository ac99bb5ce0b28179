/*
 * Unit tests of the request-target normaliser (policy/README.md, "The request
 * target"): a table of inputs with their exact result or refusal, every OK
 * result normalised a second time, the options, sg_target_under, and reads
 * bounded by len.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>

#include <cmocka.h>

#include "../../gateway/common.c"
#include "../../gateway/evmem.c"
#include "../../gateway/target.c"

/* A vector whose exact refusal reason the documentation leaves open: any
 * refusal passes, OK fails. */
#define ANY_REFUSAL (-1)

/* The option sets of the table. Absolute-form targets are matched against
 * the authority of each set. */
enum profile {
    P_PLAIN,      /* http://gw.example (port 80), nothing kept, case-sensitive */
    P_KEEP,       /* %2F kept */
    P_CI,         /* case-insensitive paths */
    P_KEEP_CI,    /* both */
    P_STAR,       /* OPTIONS */
    P_HTTPS,      /* https://gw.example (port 443) */
    P_HTTPS_8443, /* https://gw.example:8443 */
    P_HTTP_8080,  /* http://gw.example:8080 */
    P_V6,         /* http://[::1]:8080 */
    P__COUNT
};

static const struct sg_target_options profiles[P__COUNT] = {
    [P_PLAIN] = {.host = "gw.example", .port = 80},
    [P_KEEP] = {.keep_encoded_slash = true, .host = "gw.example", .port = 80},
    [P_CI] = {.case_insensitive = true, .host = "gw.example", .port = 80},
    [P_KEEP_CI] = {.keep_encoded_slash = true,
                   .case_insensitive = true,
                   .host = "gw.example",
                   .port = 80},
    [P_STAR] = {.asterisk_allowed = true, .host = "gw.example", .port = 80},
    [P_HTTPS] = {.https = true, .host = "gw.example", .port = 443},
    [P_HTTPS_8443] = {.https = true, .host = "gw.example", .port = 8443},
    [P_HTTP_8080] = {.host = "gw.example", .port = 8080},
    [P_V6] = {.host = "::1", .port = 8080},
};

struct vector {
    enum profile profile;
    const char *raw;
    size_t len; /* 0: strlen(raw) */
    int status; /* an enum sg_target_status, or ANY_REFUSAL */
    const char *path;
    const char *match; /* NULL: the same as path */
    const char *query; /* NULL: the target had no '?' */
};

#define OK(p, raw, path)                                                                           \
    {                                                                                              \
        p, raw, 0, SG_TARGET_OK, path, NULL, NULL                                                  \
    }
#define OKQ(p, raw, path, query)                                                                   \
    {                                                                                              \
        p, raw, 0, SG_TARGET_OK, path, NULL, query                                                 \
    }
#define OKM(p, raw, path, match, query)                                                            \
    {                                                                                              \
        p, raw, 0, SG_TARGET_OK, path, match, query                                                \
    }
#define NO(p, raw, status)                                                                         \
    {                                                                                              \
        p, raw, 0, status, NULL, NULL, NULL                                                        \
    }
/* raw is a string literal holding a NUL byte. */
#define NO_N(p, raw, status)                                                                       \
    {                                                                                              \
        p, raw, sizeof(raw) - 1, status, NULL, NULL, NULL                                          \
    }

static const struct vector vectors[] = {
    /* Plain origin-form. */
    OK(P_PLAIN, "/", "/"),
    OK(P_PLAIN, "/a", "/a"),
    OK(P_PLAIN, "/a/b/c", "/a/b/c"),
    OK(P_PLAIN, "/a/", "/a/"),
    OK(P_PLAIN, "/index.html", "/index.html"),
    OK(P_PLAIN, "/a:b@c", "/a:b@c"),
    OK(P_PLAIN, "/Mixed/Case", "/Mixed/Case"),
    OK(P_PLAIN, "/-._~", "/-._~"),
    OKM(P_PLAIN, "/a!$&'()*+,;=:@b", "/a!$&'()*+,;=:@b", "/a!$&'()*+,", NULL),

    /* The query: forwarded byte for byte once checked. */
    OKQ(P_PLAIN, "/a?b=c", "/a", "b=c"),
    OKQ(P_PLAIN, "/a?", "/a", ""),
    OKQ(P_PLAIN, "/?", "/", ""),
    OKQ(P_PLAIN, "/a?b?c/d", "/a", "b?c/d"),
    OKQ(P_PLAIN, "/a/../b?x/../y", "/b", "x/../y"),
    OKQ(P_PLAIN, "/a?%2f", "/a", "%2f"),
    OKQ(P_PLAIN, "/a?%41%2e", "/a", "%41%2e"),
    OKQ(P_PLAIN, "/a?q='[]{}|\\^`", "/a", "q='[]{}|\\^`"),
    OKQ(P_PLAIN, "/a?k=v&k2=v2;x:@!$()*+,", "/a", "k=v&k2=v2;x:@!$()*+,"),

    /* RFC 3986 section 5.4 examples (base http://a/b/c/d;p?q), as paths. */
    OK(P_PLAIN, "/b/c/g", "/b/c/g"),
    OK(P_PLAIN, "/b/c/./g", "/b/c/g"),
    OK(P_PLAIN, "/b/c/g/", "/b/c/g/"),
    OKM(P_PLAIN, "/b/c/g;x", "/b/c/g;x", "/b/c/g", NULL),
    OKM(P_PLAIN, "/b/c/d;p?y", "/b/c/d;p", "/b/c/d", "y"),
    OKQ(P_PLAIN, "/b/c/g?y", "/b/c/g", "y"),
    OK(P_PLAIN, "/b/c/.", "/b/c/"),
    OK(P_PLAIN, "/b/c/./", "/b/c/"),
    OK(P_PLAIN, "/b/c/..", "/b/"),
    OK(P_PLAIN, "/b/c/../", "/b/"),
    OK(P_PLAIN, "/b/c/../g", "/b/g"),
    OK(P_PLAIN, "/b/c/../..", "/"),
    OK(P_PLAIN, "/b/c/../../", "/"),
    OK(P_PLAIN, "/b/c/../../g", "/g"),
    NO(P_PLAIN, "/b/c/../../../g", SG_TARGET_ABOVE_ROOT),
    NO(P_PLAIN, "/b/c/../../../../g", SG_TARGET_ABOVE_ROOT),
    OK(P_PLAIN, "/./g", "/g"),
    NO(P_PLAIN, "/../g", SG_TARGET_ABOVE_ROOT),
    OK(P_PLAIN, "/b/c/g.", "/b/c/g."),
    OK(P_PLAIN, "/b/c/.g", "/b/c/.g"),
    OK(P_PLAIN, "/b/c/g..", "/b/c/g.."),
    OK(P_PLAIN, "/b/c/..g", "/b/c/..g"),
    OK(P_PLAIN, "/b/c/./../g", "/b/g"),
    OK(P_PLAIN, "/b/c/./g/.", "/b/c/g/"),
    OK(P_PLAIN, "/b/c/g/./h", "/b/c/g/h"),
    OK(P_PLAIN, "/b/c/g/../h", "/b/c/h"),
    OKM(P_PLAIN, "/b/c/g;x=1/./y", "/b/c/g;x=1/y", "/b/c/g/y", NULL),
    OK(P_PLAIN, "/b/c/g;x=1/../y", "/b/c/y"),
    /* RFC 3986 section 5.2.4's own examples. */
    OK(P_PLAIN, "/a/b/c/./../../g", "/a/g"),
    OK(P_PLAIN, "/mid/content=5/../6", "/mid/6"),
    /* More dot segments. */
    OK(P_PLAIN, "/.", "/"),
    OK(P_PLAIN, "/a/..", "/"),
    OK(P_PLAIN, "/a/../", "/"),
    NO(P_PLAIN, "/..", SG_TARGET_ABOVE_ROOT),
    NO(P_PLAIN, "/a/../..", SG_TARGET_ABOVE_ROOT),
    NO(P_PLAIN, "/a/../../b", SG_TARGET_ABOVE_ROOT),
    OK(P_PLAIN, "/...", "/..."),
    OK(P_PLAIN, "/a/.../b", "/a/.../b"),

    /* Repeated slashes. */
    OK(P_PLAIN, "//", "/"),
    OK(P_PLAIN, "//app///x", "/app/x"),
    OK(P_PLAIN, "/a//", "/a/"),
    OK(P_PLAIN, "///a", "/a"),
    OK(P_PLAIN, "//a/./b//", "/a/b/"),

    /* Escapes: unreserved decoded, the rest kept with upper-case hex. */
    OK(P_PLAIN, "/%61", "/a"),
    OK(P_PLAIN, "/%2e", "/"),
    OK(P_PLAIN, "/a/%2e%2e/b", "/b"),
    OK(P_PLAIN, "/a/%2E%2E", "/"),
    OK(P_PLAIN, "/a/.%2e/b", "/b"),
    NO(P_PLAIN, "/%2e%2e/x", SG_TARGET_ABOVE_ROOT),
    NO(P_PLAIN, "/a/%2E%2e/%2e./x", SG_TARGET_ABOVE_ROOT),
    OK(P_PLAIN, "/%7E", "/~"),
    OK(P_PLAIN, "/%7euser", "/~user"),
    OK(P_PLAIN, "/%41%5a%30%39%2D%5F%2e%7e", "/AZ09-_.~"),
    OK(P_PLAIN, "/a%20b", "/a%20b"),
    OK(P_PLAIN, "/a%c3%a9", "/a%C3%A9"),
    OK(P_PLAIN, "/%3b", "/%3B"),
    OK(P_PLAIN, "/a%3Fb", "/a%3Fb"),
    OK(P_PLAIN, "/a%23b", "/a%23b"),
    OK(P_PLAIN, "/a%3a%40", "/a%3A%40"),
    OK(P_PLAIN, "/%E2%82%AC", "/%E2%82%AC"),
    OK(P_PLAIN, "/%f0%9f%98%80", "/%F0%9F%98%80"),
    OK(P_PLAIN, "/100%25", "/100%25"),
    OK(P_PLAIN, "/a%25zz", "/a%25zz"),
    OK(P_PLAIN, "/app%20/x", "/app%20/x"),
    OK(P_PLAIN, "/app./x", "/app./x"),

    /* ';' parameters: forwarded, cut per segment for matching. */
    OKM(P_PLAIN, "/app;jsessionid=1/x", "/app;jsessionid=1/x", "/app/x", NULL),
    OKM(P_PLAIN, "/app;x", "/app;x", "/app", NULL),
    OKM(P_PLAIN, "/;x/a", "/;x/a", "/a", NULL),
    OKM(P_PLAIN, "/a;b;c/d;e", "/a;b;c/d;e", "/a/d", NULL),
    OKM(P_PLAIN, "/a/;x", "/a/;x", "/a/", NULL),
    OK(P_PLAIN, "/a;x/../b", "/b"),
    OKM(P_PLAIN, "/a;/b", "/a;/b", "/a/b", NULL),
    OKM(P_PLAIN, "/a/b;x=../c", "/a/b;x=../c", "/a/b/c", NULL),
    OKM(P_PLAIN, "/admin;/x?y", "/admin;/x", "/admin/x", "y"),

    /* Dot segments with parameters. */
    NO(P_PLAIN, "/..;/", SG_TARGET_DOT_PARAMETER),
    NO(P_PLAIN, "/a/..;/b", SG_TARGET_DOT_PARAMETER),
    NO(P_PLAIN, "/.;x/a", SG_TARGET_DOT_PARAMETER),
    NO(P_PLAIN, "/a/%2e%2e;x/b", SG_TARGET_DOT_PARAMETER),
    NO(P_PLAIN, "/a/.;", SG_TARGET_DOT_PARAMETER),
    NO(P_PLAIN, "/public/..;jsessionid=1/admin", SG_TARGET_DOT_PARAMETER),

    /* Encoded slashes. */
    NO(P_PLAIN, "/a%2Fb", SG_TARGET_ENCODED_SLASH),
    NO(P_PLAIN, "/a%2fb", SG_TARGET_ENCODED_SLASH),
    NO(P_PLAIN, "/a%5Cb", SG_TARGET_ENCODED_SLASH),
    NO(P_PLAIN, "/a%5cb", SG_TARGET_ENCODED_SLASH),
    NO(P_PLAIN, "/public%2F..%2Fadmin", SG_TARGET_ENCODED_SLASH),
    OKM(P_KEEP, "/a%2Fb", "/a%2Fb", "/a/b", NULL),
    OKM(P_KEEP, "/a%2fb", "/a%2Fb", "/a/b", NULL),
    NO(P_KEEP, "/a%5Cb", SG_TARGET_ENCODED_SLASH),
    NO(P_KEEP, "/a%5c..%5cb", SG_TARGET_ENCODED_SLASH),
    /* A kept %2F making a dot segment: a server that decodes %2F and resolves
     * dot segments reads "/b", one that decodes and does not (WSGI, PHP
     * routers) reads "/a/../b" and routes it under "/a". */
    NO(P_KEEP, "/a%2F..%2Fb", SG_TARGET_ENCODED_SLASH),
    NO(P_KEEP, "/a%2F%2e%2E%2Fb", SG_TARGET_ENCODED_SLASH),
    NO(P_KEEP, "/app%2F..%2Fpublic%2Fx", SG_TARGET_ENCODED_SLASH),
    NO(P_KEEP, "/app%2F..", SG_TARGET_ENCODED_SLASH),
    NO(P_KEEP, "/app%2Fsecret%2F..%2F..", SG_TARGET_ENCODED_SLASH),
    NO(P_KEEP, "/a%2F.%2Fb", SG_TARGET_ENCODED_SLASH),
    NO(P_KEEP, "/a%2F.", SG_TARGET_ENCODED_SLASH),
    NO(P_KEEP, "/pub%2F..%2Fadmin?x", SG_TARGET_ENCODED_SLASH),
    OKM(P_KEEP, "/a%2F%2Fb", "/a%2F%2Fb", "/a/b", NULL),
    OKM(P_KEEP, "/a%2F;x/b", "/a%2F;x/b", "/a/b", NULL),
    OKM(P_KEEP, "/a%2F.x%2F..x", "/a%2F.x%2F..x", "/a/.x/..x", NULL),
    /* A kept %2F forming an empty segment before "..": "a//.." pops the empty
     * segment (RFC 3986) or "a" (servers merging slashes first). */
    NO(P_KEEP, "/%2F..%2F..%2Fetc", SG_TARGET_ENCODED_SLASH),
    NO(P_KEEP, "/app%2F%2F../x", SG_TARGET_ENCODED_SLASH),
    /* The gateway resolves it before forwarding: nothing left to read twice. */
    OK(P_KEEP, "/a/b%2F/../c", "/a/c"),

    /* %00, double encoding, malformed escapes. */
    NO(P_PLAIN, "/a%00b", SG_TARGET_ENCODED_NUL),
    NO(P_PLAIN, "/%00", SG_TARGET_ENCODED_NUL),
    NO(P_PLAIN, "/%252e", SG_TARGET_DOUBLE_ENCODING),
    NO(P_PLAIN, "/a%252F", SG_TARGET_DOUBLE_ENCODING),
    NO(P_PLAIN, "/%2541", SG_TARGET_DOUBLE_ENCODING),
    /* An escape that only appears once unreserved escapes are decoded. */
    NO(P_PLAIN, "/%25%34%31", SG_TARGET_DOUBLE_ENCODING),
    NO(P_PLAIN, "/%25%32%65", SG_TARGET_DOUBLE_ENCODING),
    NO(P_PLAIN, "/%25%341", SG_TARGET_DOUBLE_ENCODING),
    NO(P_PLAIN, "/%254%31", SG_TARGET_DOUBLE_ENCODING),
    NO(P_PLAIN, "/%25%32%46", SG_TARGET_DOUBLE_ENCODING),
    /* Forwarded as /%2561dmin, which a double-decoding upstream reads as /admin. */
    NO(P_PLAIN, "/%25%36%31dmin", SG_TARGET_DOUBLE_ENCODING),
    NO(P_PLAIN, "/%zz", SG_TARGET_BAD_ESCAPE),
    NO(P_PLAIN, "/%u002e", SG_TARGET_BAD_ESCAPE),
    NO(P_PLAIN, "/a%", SG_TARGET_BAD_ESCAPE),
    NO(P_PLAIN, "/a%2", SG_TARGET_BAD_ESCAPE),
    NO(P_PLAIN, "/a%g1", SG_TARGET_BAD_ESCAPE),
    NO(P_PLAIN, "/a%1g/b", SG_TARGET_BAD_ESCAPE),
    NO(P_PLAIN, "/a%%41", SG_TARGET_BAD_ESCAPE),

    /* Decoded bytes that are not UTF-8. */
    NO(P_PLAIN, "/%C0%AF", SG_TARGET_BAD_UTF8),
    NO(P_PLAIN, "/%FF", SG_TARGET_BAD_UTF8),
    NO(P_PLAIN, "/%ED%A0%80", SG_TARGET_BAD_UTF8),
    NO(P_PLAIN, "/%C3", SG_TARGET_BAD_UTF8),
    NO(P_PLAIN, "/%C3/x", SG_TARGET_BAD_UTF8),
    NO(P_PLAIN, "/%80", SG_TARGET_BAD_UTF8),
    NO(P_PLAIN, "/%E0%80%AF", SG_TARGET_BAD_UTF8),
    NO(P_PLAIN, "/%F4%90%80%80", SG_TARGET_BAD_UTF8),
    NO(P_PLAIN, "/%C3a", SG_TARGET_BAD_UTF8),
    NO(P_PLAIN, "/%F8%88%80%80%80", SG_TARGET_BAD_UTF8),
    NO(P_PLAIN, "/%e2%82", SG_TARGET_BAD_UTF8),

    /* Bytes outside pchar. */
    NO(P_PLAIN, "/a b", SG_TARGET_BAD_BYTE),
    NO(P_PLAIN, "/a\tb", SG_TARGET_BAD_BYTE),
    NO(P_PLAIN, "/a\x01", SG_TARGET_BAD_BYTE),
    NO(P_PLAIN, "/a\x7f", SG_TARGET_BAD_BYTE),
    NO(P_PLAIN, "/a\x80", SG_TARGET_BAD_BYTE),
    NO(P_PLAIN, "/caf\xc3\xa9", SG_TARGET_BAD_BYTE),
    NO(P_PLAIN, "/a\"b", SG_TARGET_BAD_BYTE),
    NO(P_PLAIN, "/a<b>", SG_TARGET_BAD_BYTE),
    NO(P_PLAIN, "/a\\b", SG_TARGET_BAD_BYTE),
    NO(P_PLAIN, "/..\\x", SG_TARGET_BAD_BYTE),
    NO(P_PLAIN, "/a^b", SG_TARGET_BAD_BYTE),
    NO(P_PLAIN, "/a`b", SG_TARGET_BAD_BYTE),
    NO(P_PLAIN, "/a{b}", SG_TARGET_BAD_BYTE),
    NO(P_PLAIN, "/a|b", SG_TARGET_BAD_BYTE),
    NO(P_PLAIN, "/a[b]", SG_TARGET_BAD_BYTE),
    NO(P_PLAIN, "/a\r\nb", SG_TARGET_BAD_BYTE),
    NO_N(P_PLAIN, "/a\0b", SG_TARGET_BAD_BYTE),
    NO_N(P_PLAIN, "/admin\0/public", SG_TARGET_BAD_BYTE),

    /* Fragments. */
    NO(P_PLAIN, "/a#b", SG_TARGET_FRAGMENT),
    NO(P_PLAIN, "/#", SG_TARGET_FRAGMENT),
    NO(P_PLAIN, "/a/b#/../c", SG_TARGET_FRAGMENT),
    NO(P_PLAIN, "/a?b#c", ANY_REFUSAL),

    /* The query's own refusals. */
    NO(P_PLAIN, "/a?b c", SG_TARGET_BAD_QUERY),
    NO(P_PLAIN, "/a?b\"c", SG_TARGET_BAD_QUERY),
    NO(P_PLAIN, "/a?<script>", SG_TARGET_BAD_QUERY),
    NO(P_PLAIN, "/a?\x7f", SG_TARGET_BAD_QUERY),
    NO(P_PLAIN, "/a?\xc3\xa9", SG_TARGET_BAD_QUERY),
    NO(P_PLAIN, "/a?b\tc", SG_TARGET_BAD_QUERY),
    NO(P_PLAIN, "/a?b\x01", SG_TARGET_BAD_QUERY),
    NO(P_PLAIN, "/a?x\r\nSet-Cookie:x", SG_TARGET_BAD_QUERY),
    NO_N(P_PLAIN, "/?\0", SG_TARGET_BAD_QUERY),
    NO(P_PLAIN, "/a?%zz", ANY_REFUSAL),
    NO(P_PLAIN, "/a?b=%", ANY_REFUSAL),
    NO(P_PLAIN, "/a?b=%4", ANY_REFUSAL),

    /* Neither origin-form, absolute-form nor "*". */
    NO(P_PLAIN, "", SG_TARGET_EMPTY),
    NO(P_PLAIN, "a/b", SG_TARGET_EMPTY),
    NO(P_PLAIN, "?a", SG_TARGET_EMPTY),
    NO(P_PLAIN, "index.html", SG_TARGET_EMPTY),
    NO(P_PLAIN, "../a", SG_TARGET_EMPTY),
    NO(P_STAR, "x", SG_TARGET_EMPTY),

    /* "*": OPTIONS only. */
    NO(P_PLAIN, "*", SG_TARGET_ASTERISK),
    NO(P_CI, "*", SG_TARGET_ASTERISK),
    NO(P_KEEP, "*", SG_TARGET_ASTERISK),
    NO(P_STAR, "*x", ANY_REFUSAL),
    NO(P_STAR, "*/a", ANY_REFUSAL),

    /* Absolute-form against http://gw.example. */
    OK(P_PLAIN, "http://gw.example/a", "/a"),
    OK(P_PLAIN, "http://GW.Example/a", "/a"),
    OKQ(P_PLAIN, "http://gw.example:80/a/../b?x=1", "/b", "x=1"),
    OKM(P_PLAIN, "http://gw.example/a;p/./b", "/a;p/b", "/a/b", NULL),
    NO(P_PLAIN, "http://gw.example:8080/a", SG_TARGET_FOREIGN_AUTHORITY),
    NO(P_PLAIN, "https://gw.example/a", SG_TARGET_FOREIGN_AUTHORITY),
    NO(P_PLAIN, "http://evil.example/a", SG_TARGET_FOREIGN_AUTHORITY),
    NO(P_PLAIN, "http://gw.example.evil/a", SG_TARGET_FOREIGN_AUTHORITY),
    NO(P_PLAIN, "http://gw.exampl/a", SG_TARGET_FOREIGN_AUTHORITY),
    NO(P_PLAIN, "http://gw.example@evil.example/a", ANY_REFUSAL),
    NO(P_PLAIN, "http://evil.example@gw.example/a", ANY_REFUSAL),
    NO(P_PLAIN, "http://gw.example:99999/a", ANY_REFUSAL),
    NO(P_PLAIN, "ftp://gw.example/a", ANY_REFUSAL),
    NO(P_PLAIN, "http://gw.example/a%2Fb", SG_TARGET_ENCODED_SLASH),
    NO(P_PLAIN, "http://gw.example/a#x", SG_TARGET_FRAGMENT),
    NO(P_PLAIN, "http://gw.example/../a", SG_TARGET_ABOVE_ROOT),
    /* https, default and explicit port. */
    OK(P_HTTPS, "https://gw.example/a", "/a"),
    OK(P_HTTPS, "https://gw.example:443/a", "/a"),
    NO(P_HTTPS, "http://gw.example/a", SG_TARGET_FOREIGN_AUTHORITY),
    NO(P_HTTPS, "https://gw.example:8443/a", SG_TARGET_FOREIGN_AUTHORITY),
    NO(P_HTTPS, "https://gw.example:80/a", SG_TARGET_FOREIGN_AUTHORITY),
    OKQ(P_HTTPS_8443, "https://gw.example:8443/x?y", "/x", "y"),
    NO(P_HTTPS_8443, "https://gw.example/x", SG_TARGET_FOREIGN_AUTHORITY),
    NO(P_HTTPS_8443, "https://gw.example:443/x", SG_TARGET_FOREIGN_AUTHORITY),
    OK(P_HTTP_8080, "http://gw.example:8080/x", "/x"),
    NO(P_HTTP_8080, "http://gw.example/x", SG_TARGET_FOREIGN_AUTHORITY),
    NO(P_HTTP_8080, "http://gw.example:80/x", SG_TARGET_FOREIGN_AUTHORITY),
    /* IPv6 in brackets. */
    OK(P_V6, "http://[::1]:8080/x", "/x"),
    NO(P_V6, "http://[::1]/x", SG_TARGET_FOREIGN_AUTHORITY),
    NO(P_V6, "http://[::2]:8080/x", SG_TARGET_FOREIGN_AUTHORITY),
    NO(P_V6, "http://gw.example:8080/x", SG_TARGET_FOREIGN_AUTHORITY),
    NO(P_V6, "http://::1:8080/x", ANY_REFUSAL),
    NO(P_V6, "http://[::1:8080/x", ANY_REFUSAL),

    /* Case-insensitive paths. */
    OKM(P_CI, "/Admin/X", "/Admin/X", "/admin/x", NULL),
    OKM(P_CI, "/ADMIN;JSESSIONID=X/Y", "/ADMIN;JSESSIONID=X/Y", "/admin/y", NULL),
    OKM(P_CI, "/a/./B/../C", "/a/C", "/a/c", NULL),
    OKM(P_CI, "/%41dmin", "/Admin", "/admin", NULL),
    OKM(P_CI, "/A?Q=B", "/A", "/a", "Q=B"),
    OKM(P_KEEP_CI, "/A%2fB", "/A%2FB", "/a/b", NULL),
    OKM(P_CI, "http://GW.EXAMPLE/Admin", "/Admin", "/admin", NULL),
    NO(P_CI, "/app./x", SG_TARGET_TRAILING_DOT),
    NO(P_CI, "/app%20/x", SG_TARGET_TRAILING_DOT),
    NO(P_CI, "/x/app.", SG_TARGET_TRAILING_DOT),
    NO(P_CI, "/a/.../b", SG_TARGET_TRAILING_DOT),
    NO(P_CI, "/admin%2e/x", SG_TARGET_TRAILING_DOT),
    NO(P_KEEP_CI, "/Admin%20", SG_TARGET_TRAILING_DOT),
    NO(P_CI, "/a%2Fb", SG_TARGET_ENCODED_SLASH),
};

#define VECTOR_COUNT (sizeof(vectors) / sizeof(vectors[0]))

static size_t raw_len(const struct vector *v)
{
    return v->len != 0 ? v->len : strlen(v->raw);
}

/* Normalises len bytes of raw from an exact-size heap copy, so that a read
 * past len is an AddressSanitizer error, not a lucky NUL. */
static enum sg_target_status normalize_copy(const char *raw, size_t len,
                                            const struct sg_target_options *opts,
                                            struct sg_target *out)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, raw, len);
    enum sg_target_status status = sg_target_normalize(copy, len, opts, out);
    free(copy);
    return status;
}

static void assert_zeroed(const struct sg_target *t)
{
    assert_int_equal(t->variant_count, 0);
    assert_null(t->path);
    assert_null(t->match);
    assert_null(t->query);
    assert_false(t->asterisk);
    assert_false(t->absolute);
}

static void print_vector(const struct vector *v)
{
    fprintf(stderr, "vector (profile %d): \"", (int)v->profile);
    size_t len = raw_len(v);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v->raw[i];
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
            fprintf(stderr, "\\x%02x", c);
        else
            fputc(c, stderr);
    }
    fprintf(stderr, "\"\n");
}

static bool same_string(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static char sentinel[] = "sentinel";

static const char *show(const char *s)
{
    return s != NULL ? s : "(null)";
}

/* Checks one vector; returns false (after printing why) when it fails. */
static bool check_vector(const struct vector *v)
{
    /* Filled with a sentinel, so that a field the normaliser leaves alone shows. */
    struct sg_target t = {
        .path = sentinel, .match = sentinel, .query = sentinel, .asterisk = true, .absolute = true};
    enum sg_target_status got = normalize_copy(v->raw, raw_len(v), &profiles[v->profile], &t);
    bool ok = true;

    if (t.path == sentinel || t.match == sentinel || t.query == sentinel) {
        print_vector(v);
        fprintf(stderr, "  %s left a field of *out unset\n", sg_target_status_name(got));
        ok = false;
        if (t.path == sentinel)
            t.path = NULL;
        if (t.match == sentinel)
            t.match = NULL;
        if (t.query == sentinel)
            t.query = NULL;
    }

    if (v->status == ANY_REFUSAL) {
        if (got == SG_TARGET_OK) {
            print_vector(v);
            fprintf(stderr, "  expected a refusal, got ok (path %s, match %s, query %s)\n",
                    show(t.path), show(t.match), show(t.query));
            ok = false;
        }
    } else if ((int)got != v->status) {
        print_vector(v);
        fprintf(stderr, "  expected %s, got %s", sg_target_status_name(v->status),
                sg_target_status_name(got));
        if (got == SG_TARGET_OK)
            fprintf(stderr, " (path %s, match %s, query %s)", show(t.path), show(t.match),
                    show(t.query));
        fprintf(stderr, "\n");
        ok = false;
    } else if (got == SG_TARGET_OK) {
        const char *match = v->match != NULL ? v->match : v->path;
        if (!same_string(t.path, v->path) || !same_string(t.match, match) ||
            !same_string(t.query, v->query) || t.asterisk) {
            print_vector(v);
            fprintf(stderr, "  expected path %s, match %s, query %s\n", v->path, match,
                    show(v->query));
            fprintf(stderr, "  got      path %s, match %s, query %s\n", show(t.path), show(t.match),
                    show(t.query));
            ok = false;
        }
        bool other_readings = strchr(v->path, ';') != NULL ||
                              (profiles[v->profile].keep_encoded_slash && strstr(v->path, "%2F"));
        if (!other_readings && t.variant_count != 0) {
            print_vector(v);
            fprintf(stderr, "  %zu variants (first %s) of a path with one reading\n",
                    t.variant_count, t.variants[0]);
            ok = false;
        }
        bool absolute = v->raw[0] != '/';
        if (t.absolute != absolute) {
            print_vector(v);
            fprintf(stderr, "  absolute is %d\n", t.absolute);
            ok = false;
        }
    }
    if (got != SG_TARGET_OK) {
        if (t.path != NULL || t.match != NULL || t.query != NULL || t.asterisk || t.absolute ||
            t.variant_count != 0) {
            print_vector(v);
            fprintf(stderr, "  refused, but *out is not zeroed\n");
            ok = false;
        }
    }
    sg_target_clear(&t);
    return ok;
}

static void test_vectors(void **state)
{
    size_t failed = 0;
    for (size_t i = 0; i < VECTOR_COUNT; i++) {
        if (!check_vector(&vectors[i]))
            failed++;
    }
    if (failed > 0)
        fail_msg("%zu of %zu vectors failed", failed, VECTOR_COUNT);
}

static bool same_variants(const struct sg_target *a, const struct sg_target *b)
{
    if (a->variant_count != b->variant_count)
        return false;
    for (size_t i = 0; i < a->variant_count; i++) {
        if (!same_string(a->variants[i], b->variants[i]))
            return false;
    }
    return true;
}

/* Normalising path[?query] of every OK result again gives the same result. */
static void test_idempotent(void **state)
{
    size_t failed = 0, checked = 0;
    for (size_t i = 0; i < VECTOR_COUNT; i++) {
        const struct vector *v = &vectors[i];
        const struct sg_target_options *opts = &profiles[v->profile];
        struct sg_target first = {0}, second = {0};
        if (normalize_copy(v->raw, raw_len(v), opts, &first) != SG_TARGET_OK)
            continue;
        size_t len = strlen(first.path) + (first.query ? 1 + strlen(first.query) : 0);
        char *again = malloc(len + 1);
        assert_non_null(again);
        snprintf(again, len + 1, "%s%s%s", first.path, first.query ? "?" : "",
                 first.query ? first.query : "");
        enum sg_target_status status = normalize_copy(again, len, opts, &second);
        checked++;
        if (status != SG_TARGET_OK || !same_string(first.path, second.path) ||
            !same_string(first.match, second.match) || !same_string(first.query, second.query) ||
            !same_variants(&first, &second)) {
            print_vector(v);
            fprintf(stderr, "  first:  path %s, match %s, query %s\n", first.path, first.match,
                    show(first.query));
            fprintf(stderr, "  second (%s): path %s, match %s, query %s\n",
                    sg_target_status_name(status), show(second.path), show(second.match),
                    show(second.query));
            failed++;
        }
        free(again);
        sg_target_clear(&first);
        sg_target_clear(&second);
    }
    assert_true(checked >= 100);
    if (failed > 0)
        fail_msg("%zu of %zu OK vectors are not idempotent", failed, checked);
}

/* Every refusal reason appears at least twice in the table (too_long is in
 * its own test below). */
static void test_every_reason_covered(void **state)
{
    unsigned count[SG_TARGET__COUNT] = {0};
    for (size_t i = 0; i < VECTOR_COUNT; i++) {
        if (vectors[i].status >= 0)
            count[vectors[i].status]++;
    }
    count[SG_TARGET_TOO_LONG] += 2;
    for (int s = 0; s < SG_TARGET__COUNT; s++) {
        if (count[s] < 2)
            fail_msg("%s has %u vectors", sg_target_status_name(s), count[s]);
    }
    assert_true(VECTOR_COUNT >= 120);
}

static void test_too_long(void **state)
{
    const struct sg_target_options *opts = &profiles[P_PLAIN];
    char *raw = malloc(SG_TARGET_MAX_LEN + 300);
    assert_non_null(raw);
    struct sg_target t = {0};

    /* Exactly the limit: accepted. */
    raw[0] = '/';
    memset(raw + 1, 'a', SG_TARGET_MAX_LEN - 1);
    assert_int_equal(normalize_copy(raw, SG_TARGET_MAX_LEN, opts, &t), SG_TARGET_OK);
    assert_int_equal(strlen(t.path), SG_TARGET_MAX_LEN);
    sg_target_clear(&t);

    /* One byte over. */
    memset(raw + 1, 'a', SG_TARGET_MAX_LEN);
    assert_int_equal(normalize_copy(raw, SG_TARGET_MAX_LEN + 1, opts, &t), SG_TARGET_TOO_LONG);
    assert_zeroed(&t);

    /* The query counts, even when the path alone would fit. */
    memset(raw + 1, 'a', 8000);
    raw[8001] = '?';
    memset(raw + 8002, 'b', 250);
    assert_int_equal(normalize_copy(raw, 8252, opts, &t), SG_TARGET_TOO_LONG);
    assert_zeroed(&t);

    /* Dot segments that would shrink under the limit do not help. */
    for (size_t i = 0; i + 2 <= SG_TARGET_MAX_LEN + 2; i += 2)
        memcpy(raw + i, "/.", 2);
    assert_int_equal(normalize_copy(raw, SG_TARGET_MAX_LEN + 2, opts, &t), SG_TARGET_TOO_LONG);
    assert_zeroed(&t);
    free(raw);
}

/* The raw target is read up to len only: no NUL needed, bytes after len
 * ignored. */
static void test_reads_len_only(void **state)
{
    const struct sg_target_options *opts = &profiles[P_PLAIN];
    struct sg_target t = {0};

    /* Exact-size buffers ending in the middle of an escape or a dot segment. */
    assert_int_equal(normalize_copy("/a/b?x", 6, opts, &t), SG_TARGET_OK);
    assert_string_equal(t.path, "/a/b");
    assert_string_equal(t.query, "x");
    sg_target_clear(&t);
    assert_int_equal(normalize_copy("/a%41", 4, opts, &t), SG_TARGET_BAD_ESCAPE);
    assert_int_equal(normalize_copy("/a%", 3, opts, &t), SG_TARGET_BAD_ESCAPE);
    assert_int_equal(normalize_copy("/a/..", 5, opts, &t), SG_TARGET_OK);
    assert_string_equal(t.path, "/");
    sg_target_clear(&t);
    assert_int_equal(normalize_copy("/a/.", 4, opts, &t), SG_TARGET_OK);
    assert_string_equal(t.path, "/a/");
    sg_target_clear(&t);
    assert_int_equal(normalize_copy("/a?", 3, opts, &t), SG_TARGET_OK);
    assert_string_equal(t.query, "");
    sg_target_clear(&t);
    assert_int_equal(normalize_copy("/", 1, opts, &t), SG_TARGET_OK);
    assert_string_equal(t.path, "/");
    sg_target_clear(&t);

    /* Bytes past len are not part of the target. */
    const char *longer = "/a/b?q#frag";
    assert_int_equal(sg_target_normalize(longer, 4, opts, &t), SG_TARGET_OK);
    assert_string_equal(t.path, "/a/b");
    assert_null(t.query);
    sg_target_clear(&t);
    assert_int_equal(sg_target_normalize("/a/..junk", 5, opts, &t), SG_TARGET_OK);
    assert_string_equal(t.path, "/");
    sg_target_clear(&t);
    assert_int_equal(sg_target_normalize("/%2", 2, opts, &t), SG_TARGET_BAD_ESCAPE);
    assert_int_equal(sg_target_normalize("*", 0, &profiles[P_STAR], &t), SG_TARGET_EMPTY);
    assert_zeroed(&t);
}

static void test_asterisk(void **state)
{
    struct sg_target t = {0};
    assert_int_equal(normalize_copy("*", 1, &profiles[P_STAR], &t), SG_TARGET_OK);
    assert_string_equal(t.path, "*");
    assert_true(t.asterisk);
    assert_false(t.absolute);
    assert_null(t.query);
    assert_non_null(t.match);
    sg_target_clear(&t);
    assert_zeroed(&t);

    /* "*" normalised again is still "*". */
    assert_int_equal(normalize_copy("*", 1, &profiles[P_STAR], &t), SG_TARGET_OK);
    struct sg_target again = {0};
    assert_int_equal(normalize_copy(t.path, strlen(t.path), &profiles[P_STAR], &again),
                     SG_TARGET_OK);
    assert_string_equal(again.path, t.path);
    assert_string_equal(again.match, t.match);
    sg_target_clear(&t);
    sg_target_clear(&again);

    /* An origin-form target with OPTIONS is an ordinary one. */
    assert_int_equal(normalize_copy("/a", 2, &profiles[P_STAR], &t), SG_TARGET_OK);
    assert_false(t.asterisk);
    assert_string_equal(t.path, "/a");
    sg_target_clear(&t);

    assert_int_equal(normalize_copy("*", 1, &profiles[P_PLAIN], &t), SG_TARGET_ASTERISK);
    assert_zeroed(&t);
}

static void test_absolute_flag(void **state)
{
    struct sg_target t = {0};
    assert_int_equal(normalize_copy("http://gw.example/a?b", 21, &profiles[P_PLAIN], &t),
                     SG_TARGET_OK);
    assert_true(t.absolute);
    assert_false(t.asterisk);
    assert_string_equal(t.path, "/a");
    assert_string_equal(t.query, "b");
    sg_target_clear(&t);
    assert_int_equal(normalize_copy("/a", 2, &profiles[P_PLAIN], &t), SG_TARGET_OK);
    assert_false(t.absolute);
    sg_target_clear(&t);
}

/* The same target under each option: the forwarded path does not depend on
 * case_insensitive, and keep_encoded_slash changes nothing without %2F. */
static void test_options_consistent(void **state)
{
    for (size_t i = 0; i < VECTOR_COUNT; i++) {
        const struct vector *v = &vectors[i];
        if (v->profile != P_PLAIN || v->status != SG_TARGET_OK)
            continue;
        struct sg_target plain = {0}, other = {0};
        assert_int_equal(normalize_copy(v->raw, raw_len(v), &profiles[P_PLAIN], &plain),
                         SG_TARGET_OK);
        assert_int_equal(normalize_copy(v->raw, raw_len(v), &profiles[P_KEEP], &other),
                         SG_TARGET_OK);
        assert_string_equal(plain.path, other.path);
        assert_string_equal(plain.match, other.match);
        sg_target_clear(&other);
        if (normalize_copy(v->raw, raw_len(v), &profiles[P_CI], &other) == SG_TARGET_OK) {
            assert_string_equal(plain.path, other.path);
            assert_string_equal(show(plain.query), show(other.query));
            if (strchr(plain.match, '%') == NULL) {
                char *lower = strdup(plain.match);
                for (char *p = lower; *p; p++)
                    *p = (char)tolower((unsigned char)*p);
                assert_string_equal(other.match, lower);
                free(lower);
            }
        }
        sg_target_clear(&plain);
        sg_target_clear(&other);
    }
}

/* The other readings of a path with ';' or a kept %2F (policy/README.md:
 * "the strictest route wins"), compared as sets. */
static void test_variants(void **state)
{
    static const struct {
        enum profile profile;
        const char *raw;
        const char *match;
        const char *variants[SG_TARGET_VARIANTS_MAX + 1];
    } cases[] = {
        {P_PLAIN, "/app;x/y", "/app/y", {"/app;x/y"}},
        {P_PLAIN, "/public;x", "/public", {"/public;x"}},
        {P_PLAIN, "/a;b;c/d;e?q", "/a/d", {"/a;b;c/d;e"}},
        {P_CI, "/App;X/Y", "/app/y", {"/app;x/y"}},
        {P_KEEP, "/a%2Fb", "/a/b", {"/a%2Fb"}},
        {P_KEEP, "/a%2Fb%2Fc", "/a/b/c", {"/a%2Fb%2Fc"}},
        {P_CI, "/Adm%C4%B1n/x", "/adm%c4%b1n/x", {"/admin/x"}},
        {P_CI, "/%C5%BFettings", "/%c5%bfettings", {"/settings"}},
        {P_CI, "/%E2%84%AAey/%C4%B0d", "/%e2%84%aaey/%c4%b0d", {"/key/id"}},
        {P_CI, "/stra%C3%9Fe/%EF%AC%81le", "/stra%c3%9fe/%ef%ac%81le", {"/strasse/file"}},
        {P_CI, "/caf%C3%A9", "/caf%c3%a9", {NULL}},
        {P_CI, "/cla%E1%BA%9Eic", "/cla%e1%ba%9eic", {"/classic"}},
        {P_CI,
         "/%EF%BD%93ettings/%EF%BC%B3%EF%BC%91",
         "/%ef%bd%93ettings/%ef%bc%b3%ef%bc%91",
         {"/settings/s1"}},
        {P_CI, "/%EF%BC%8F%EF%BD%9B", "/%ef%bc%8f%ef%bd%9b", {NULL}},
        {P_CI, "/(S(x))/Settings", "/(s(x))/settings", {"/settings"}},
        {P_CI, "/app/(A(tok%2B))/", "/app/(a(tok%2b))/", {"/app/"}},
        {P_CI, "/%28F%28x%29%29", "/%28f%28x%29%29", {"/"}},
        {P_CI, "/(s(x)/y", "/(s(x)/y", {NULL}},
        {P_CI, "/(1(x))/y", "/(1(x))/y", {NULL}},
        {P_PLAIN, "/(S(x))/settings", "/(S(x))/settings", {NULL}},
        {P_PLAIN, "/adm%C4%B1n", "/adm%C4%B1n", {NULL}},
        {P_KEEP_CI,
         "/a%C4%B1%2Fb;x",
         "/a%c4%b1/b",
         {"/a%c4%b1%2fb;x", "/a%c4%b1/b;x", "/a%c4%b1%2fb", "/ai/b", "/ai%2fb;x", "/ai/b;x",
          "/ai%2fb"}},
        {P_KEEP_CI, "/A%2fB", "/a/b", {"/a%2fb"}},
        {P_KEEP, "/a%2Fb;x/c", "/a/b/c", {"/a%2Fb;x/c", "/a/b;x/c", "/a%2Fb/c"}},
        {P_PLAIN, "/a/b", "/a/b", {NULL}},
        {P_KEEP, "/a/b", "/a/b", {NULL}},
        {P_PLAIN, "/a%3Bb", "/a%3Bb", {NULL}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sg_target t = {0};
        assert_int_equal(
            normalize_copy(cases[i].raw, strlen(cases[i].raw), &profiles[cases[i].profile], &t),
            SG_TARGET_OK);
        assert_string_equal(t.match, cases[i].match);
        size_t expected = 0;
        while (cases[i].variants[expected] != NULL)
            expected++;
        if (t.variant_count != expected)
            fail_msg("%s: %zu variants, expected %zu", cases[i].raw, t.variant_count, expected);
        for (size_t e = 0; e < expected; e++) {
            bool found = false;
            for (size_t g = 0; g < t.variant_count; g++)
                found = found || strcmp(t.variants[g], cases[i].variants[e]) == 0;
            if (!found)
                fail_msg("%s: variant %s missing", cases[i].raw, cases[i].variants[e]);
        }
        sg_target_clear(&t);
        assert_zeroed(&t);
    }
}

static void test_clear(void **state)
{
    sg_target_clear(NULL);
    struct sg_target t = {0};
    sg_target_clear(&t);
    assert_zeroed(&t);
    assert_int_equal(normalize_copy("/a;b?c", 6, &profiles[P_PLAIN], &t), SG_TARGET_OK);
    sg_target_clear(&t);
    assert_zeroed(&t);
    sg_target_clear(&t);
}

static void test_status_names(void **state)
{
    static const struct {
        enum sg_target_status status;
        const char *name;
    } documented[] = {
        {SG_TARGET_EMPTY, "empty"},
        {SG_TARGET_TOO_LONG, "too_long"},
        {SG_TARGET_BAD_BYTE, "bad_byte"},
        {SG_TARGET_BAD_ESCAPE, "bad_escape"},
        {SG_TARGET_ENCODED_NUL, "encoded_nul"},
        {SG_TARGET_ENCODED_SLASH, "encoded_slash"},
        {SG_TARGET_DOUBLE_ENCODING, "double_encoding"},
        {SG_TARGET_BAD_UTF8, "bad_utf8"},
        {SG_TARGET_ABOVE_ROOT, "above_root"},
        {SG_TARGET_DOT_PARAMETER, "dot_parameter"},
        {SG_TARGET_TRAILING_DOT, "trailing_dot"},
        {SG_TARGET_BAD_QUERY, "bad_query"},
        {SG_TARGET_FRAGMENT, "fragment"},
        {SG_TARGET_FOREIGN_AUTHORITY, "foreign_authority"},
        {SG_TARGET_ASTERISK, "asterisk"},
    };
    assert_int_equal(sizeof(documented) / sizeof(documented[0]), SG_TARGET__COUNT - 1);
    for (size_t i = 0; i < sizeof(documented) / sizeof(documented[0]); i++)
        assert_string_equal(sg_target_status_name(documented[i].status), documented[i].name);
    /* Every name distinct and snake_case. */
    for (int a = 0; a < SG_TARGET__COUNT; a++) {
        const char *name = sg_target_status_name(a);
        assert_non_null(name);
        assert_true(name[0] != '\0');
        for (const char *p = name; *p; p++)
            assert_true((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_');
        for (int b = a + 1; b < SG_TARGET__COUNT; b++)
            assert_string_not_equal(name, sg_target_status_name(b));
    }
}

static void test_under(void **state)
{
    assert_true(sg_target_under("/admin", "/admin", false));
    assert_true(sg_target_under("/admin/", "/admin", false));
    assert_true(sg_target_under("/admin/x/y", "/admin", false));
    assert_false(sg_target_under("/administrator", "/admin", false));
    assert_false(sg_target_under("/admin.html", "/admin", false));
    assert_false(sg_target_under("/admi", "/admin", false));
    assert_false(sg_target_under("/", "/admin", false));
    assert_false(sg_target_under("/public/admin", "/admin", false));
    assert_false(sg_target_under("/admin;x", "/admin", false));
    assert_true(sg_target_under("/a/b/c", "/a/b", false));
    assert_false(sg_target_under("/a/bc", "/a/b", false));
    /* "/" is every path's prefix. */
    assert_true(sg_target_under("/", "/", false));
    assert_true(sg_target_under("/x", "/", false));
    assert_true(sg_target_under("/administrator", "/", true));
    /* Case. */
    assert_false(sg_target_under("/ADMIN/x", "/admin", false));
    assert_false(sg_target_under("/Admin", "/admin", false));
    assert_true(sg_target_under("/ADMIN/x", "/admin", true));
    assert_true(sg_target_under("/Admin", "/admin", true));
    assert_false(sg_target_under("/ADMINISTRATOR", "/admin", true));

    /* On normalised match paths: what a client hides, routing still sees. */
    static const struct {
        enum profile profile;
        const char *raw;
        bool under_admin;
    } cases[] = {
        {P_PLAIN, "/admin", true},
        {P_PLAIN, "/admin;jsessionid=1/x", true},
        {P_PLAIN, "/public/../admin/x", true},
        {P_PLAIN, "//admin", true},
        {P_PLAIN, "/%61dmin", true},
        {P_PLAIN, "/administrator", false},
        {P_PLAIN, "/Admin", false},
        {P_CI, "/Admin", true},
        {P_CI, "/ADMIN;x/y", true},
        {P_KEEP, "/admin%2Fx", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sg_target t = {0};
        const struct sg_target_options *opts = &profiles[cases[i].profile];
        assert_int_equal(normalize_copy(cases[i].raw, strlen(cases[i].raw), opts, &t),
                         SG_TARGET_OK);
        if (sg_target_under(t.match, "/admin", opts->case_insensitive) != cases[i].under_admin)
            fail_msg("%s: match %s under /admin is not %d", cases[i].raw, t.match,
                     cases[i].under_admin);
        assert_true(sg_target_under(t.match, "/", opts->case_insensitive));
        sg_target_clear(&t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_idempotent),
        cmocka_unit_test(test_every_reason_covered),
        cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_reads_len_only),
        cmocka_unit_test(test_asterisk),
        cmocka_unit_test(test_absolute_flag),
        cmocka_unit_test(test_options_consistent),
        cmocka_unit_test(test_clear),
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_under),
        cmocka_unit_test(test_variants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
