#include "ssogate/target.h"

#include "ssogate/common.h"
#include "ssogate/evmem.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A growing byte string; out of memory aborts. Everything this file
 * allocates, a target's strings included, is the allocator's of evmem.h (a
 * request makes several): sg_evmem_free, never free(). */
struct buf {
    char *data;
    size_t len;
    size_t cap;
};

static void buf_reserve(struct buf *b, size_t more)
{
    if (b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + more + 1)
        cap *= 2;
    b->data = sg_evmem_grow(b->data, cap);
    b->cap = cap;
}

static void buf_add(struct buf *b, const char *data, size_t len)
{
    buf_reserve(b, len);
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

static void buf_byte(struct buf *b, char c)
{
    buf_add(b, &c, 1);
}

/* Character classes of RFC 3986, one bit each in a table of the 256 bytes (unreserved is
 * sg_is_unreserved). */
enum {
    C_PCHAR = 1, /* unreserved, sub-delims, ':' and '@': raw in a path segment */
    C_QUERY = 2, /* pchar, '/', '?', and what browsers send raw in a query (WHATWG) */
};

static unsigned char char_class(unsigned char c)
{
    static unsigned char table[256];
    static bool ready;
    if (!ready) {
        for (int i = 1; i < 256; i++) {
            bool pchar = sg_is_unreserved((unsigned char)i) || strchr("!$&'()*+,;=:@", i) != NULL;
            bool query = pchar || strchr("/?[]{}|\\^`", i) != NULL;
            table[i] = (unsigned char)((pchar ? C_PCHAR : 0) | (query ? C_QUERY : 0));
        }
        ready = true;
    }
    return table[c];
}

static bool is_pchar(unsigned char c)
{
    return (char_class(c) & C_PCHAR) != 0;
}

static bool is_query_char(unsigned char c)
{
    return (char_class(c) & C_QUERY) != 0;
}

/* True when the two bytes at p (of which at least two remain) are hex digits. */
static bool hex_pair(const char *p, const char *end)
{
    return end - p >= 2 && sg_hex_value((unsigned char)p[0]) >= 0 &&
           sg_hex_value((unsigned char)p[1]) >= 0;
}

/*
 * UTF-8 well-formedness of the decoded bytes (RFC 3629): no overlong forms,
 * no surrogates, nothing above U+10FFFF. Fed one decoded byte at a time.
 */
struct utf8 {
    unsigned need;        /* continuation bytes still expected */
    unsigned char lo, hi; /* allowed range of the next continuation byte */
};

static bool utf8_feed(struct utf8 *u, unsigned char c)
{
    if (u->need > 0) {
        if (c < u->lo || c > u->hi)
            return false;
        u->need--;
        u->lo = 0x80;
        u->hi = 0xBF;
        return true;
    }
    u->lo = 0x80;
    u->hi = 0xBF;
    if (c < 0x80)
        return true;
    if (c >= 0xC2 && c <= 0xDF) {
        u->need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        u->need = 2;
        if (c == 0xE0)
            u->lo = 0xA0;
        else if (c == 0xED)
            u->hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        u->need = 3;
        if (c == 0xF0)
            u->lo = 0x90;
        else if (c == 0xF4)
            u->hi = 0x8F;
    } else {
        return false;
    }
    return true;
}

/* Segment flags of one normalising pass. */
struct pass {
    bool decode;         /* first pass: decode escapes, check every byte */
    bool keep_slash;     /* first pass: %2F stays (as part of its segment) */
    bool cut_parameters; /* a later pass: a segment ends at its first ';' */
    bool windows;        /* a segment may not end in '.' or a space */
    bool strict_empty;   /* a later pass: ".." after an empty segment is ambiguous */
    bool strict_dots;    /* a later pass with %2F decoded: a "." or ".." segment is ambiguous */
};

/*
 * Appends to seg the normalised form of one raw segment [p, end): escapes of
 * unreserved characters decoded, other escapes upper-cased, every byte
 * checked. Used by the first pass only.
 */
static enum sg_target_status segment_decode(const char *p, const char *end, bool keep_slash,
                                            struct utf8 *u, struct buf *seg)
{
    while (p < end) {
        if (*p != '%') {
            /* A run of raw bytes, copied at once. */
            const char *run = p;
            while (p < end && *p != '%') {
                if (!is_pchar((unsigned char)*p))
                    return SG_TARGET_BAD_BYTE;
                if (u->need > 0)
                    return SG_TARGET_BAD_UTF8;
                p++;
            }
            buf_add(seg, run, (size_t)(p - run));
            continue;
        }
        if (!hex_pair(p + 1, end))
            return SG_TARGET_BAD_ESCAPE;
        unsigned char v = (unsigned char)(sg_hex_value((unsigned char)p[1]) * 16 +
                                          sg_hex_value((unsigned char)p[2]));
        p += 3;
        if (v == 0)
            return SG_TARGET_ENCODED_NUL;
        if (v == '\\' || (v == '/' && !keep_slash))
            return SG_TARGET_ENCODED_SLASH;
        if (v == '%' && hex_pair(p, end))
            return SG_TARGET_DOUBLE_ENCODING;
        if (!utf8_feed(u, v))
            return SG_TARGET_BAD_UTF8;
        if (sg_is_unreserved(v)) {
            buf_byte(seg, (char)v);
        } else {
            char esc[3];
            sg_percent_byte(v, esc);
            buf_add(seg, esc, 3);
        }
    }
    return SG_TARGET_OK;
}

static bool ends_like_windows_trims(const char *s, size_t len)
{
    if (len == 0)
        return false;
    if (s[len - 1] == '.' || s[len - 1] == ' ')
        return true;
    return len >= 3 && memcmp(s + len - 3, "%20", 3) == 0;
}

/*
 * One normalising pass over the path [p, end) (it begins with '/'): segments
 * split at raw '/', each made canonical, "." and ".." applied (RFC 3986
 * 5.2.4), empty segments merged. The result goes to out.
 */
static enum sg_target_status normalize_path(const char *p, const char *end, const struct pass *pass,
                                            struct buf *out)
{
    enum sg_target_status status = SG_TARGET_OK;
    struct buf seg = {0};
    struct utf8 u = {0};
    size_t starts_here[16];
    size_t *starts = starts_here; /* where each kept segment's "/" begins in out */
    size_t depth = 0, cap = sizeof(starts_here) / sizeof(starts_here[0]);
    bool trailing = false;
    bool empty_seen = false;

    out->len = 0;
    buf_reserve(out, (size_t)(end - p));
    out->data[0] = '\0';
    p++; /* the leading '/' */
    for (;;) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *seg_end = slash ? slash : end;
        bool last = slash == NULL;

        /* The segment: decoded into seg (first pass), or the raw bytes in place. */
        const char *s = p;
        size_t len;
        if (pass->decode) {
            seg.len = 0;
            buf_reserve(&seg, 0);
            seg.data[0] = '\0';
            status = segment_decode(p, seg_end, pass->keep_slash, &u, &seg);
            if (status == SG_TARGET_OK && u.need > 0)
                status = SG_TARGET_BAD_UTF8; /* a character cut by '/' */
            if (status != SG_TARGET_OK)
                goto end;
            s = seg.data;
            len = seg.len;
        } else {
            const char *cut = seg_end;
            if (pass->cut_parameters) {
                const char *semi = memchr(p, ';', (size_t)(seg_end - p));
                if (semi != NULL)
                    cut = semi;
            }
            len = (size_t)(cut - p);
        }

        bool dot = len == 1 && s[0] == '.';
        bool dotdot = len == 2 && s[0] == '.' && s[1] == '.';
        if (pass->decode && len >= 2 && s[0] == '.' &&
            (s[1] == ';' || (len >= 3 && s[1] == '.' && s[2] == ';'))) {
            status = SG_TARGET_DOT_PARAMETER;
            goto end;
        }
        if (!last && len == 0)
            empty_seen = true;
        if ((dot || dotdot) && pass->strict_dots) {
            /* The first pass left no dot segment: this one is made by a decoded %2F
             * ("a%2F..%2Fb"). A server that decodes %2F and resolves dot segments
             * reads "b", one that decodes and does not (WSGI, PHP routers) reads
             * "a/../b" and routes it under "a". */
            status = SG_TARGET_ENCODED_SLASH;
            goto end;
        }
        if (dotdot && pass->strict_empty && empty_seen) {
            /* "a//..": RFC 3986 pops the empty segment, a server that
             * merges slashes first pops "a". Only a decoded %2F gets here. */
            status = SG_TARGET_ENCODED_SLASH;
            goto end;
        }
        if (dotdot) {
            if (depth == 0) {
                status = SG_TARGET_ABOVE_ROOT;
                goto end;
            }
            out->len = starts[--depth];
            out->data[out->len] = '\0';
        } else if (!dot && len > 0) {
            if (pass->windows && ends_like_windows_trims(s, len)) {
                status = SG_TARGET_TRAILING_DOT;
                goto end;
            }
            if (depth == cap) {
                cap *= 2;
                size_t *more = sg_evmem_alloc(cap * sizeof(*starts));
                memcpy(more, starts, depth * sizeof(*starts));
                if (starts != starts_here)
                    sg_evmem_free(starts);
                starts = more;
            }
            starts[depth++] = out->len;
            buf_byte(out, '/');
            buf_add(out, s, len);
        }
        if (last) {
            trailing = len == 0 || dot || dotdot;
            break;
        }
        p = slash + 1;
    }
    if (depth == 0 || trailing)
        buf_byte(out, '/');
end:
    sg_evmem_free(seg.data);
    if (starts != starts_here)
        sg_evmem_free(starts);
    return status;
}

/*
 * A later pass: one reading of the forwarded path that an upstream may make,
 * with kept %2F decoded to '/' (decode_slash) and ';' parameters cut (cut).
 */
static enum sg_target_status reading(const char *path, const struct sg_target_options *opts,
                                     bool decode_slash, bool cut, char **out)
{
    struct buf src = {0}, norm = {0};
    size_t len = strlen(path);
    const char *from = path;
    if (decode_slash) {
        buf_reserve(&src, len);
        src.data[0] = '\0';
        for (const char *p = path, *esc; *p != '\0'; p = esc + 3) {
            esc = strstr(p, "%2F");
            if (esc == NULL) {
                buf_add(&src, p, strlen(p));
                break;
            }
            buf_add(&src, p, (size_t)(esc - p));
            buf_byte(&src, '/');
        }
        from = src.data;
        len = src.len;
    }
    struct pass pass = {.cut_parameters = cut,
                        .windows = opts->case_insensitive,
                        .strict_empty = true,
                        .strict_dots = decode_slash};
    enum sg_target_status status = normalize_path(from, from + len, &pass, &norm);
    sg_evmem_free(src.data);
    if (status != SG_TARGET_OK) {
        sg_evmem_free(norm.data);
        return status;
    }
    if (opts->case_insensitive) {
        for (size_t i = 0; i < norm.len; i++) {
            if (norm.data[i] >= 'A' && norm.data[i] <= 'Z')
                norm.data[i] = (char)(norm.data[i] - 'A' + 'a');
        }
    }
    *out = norm.data;
    return SG_TARGET_OK;
}

/*
 * Characters that a case-insensitive server may take for ASCII letters: their
 * simple upper case (dotless i, long s: .NET, Windows, JavaScript) or lower
 * case (I with dot, Kelvin sign) is one, or their full case folding is
 * (sharp s, capital sharp s, the Latin ligatures: Python's casefold,
 * JavaScript's toUpperCase). As escaped in a case-insensitive reading
 * (lower-case hex). The fullwidth letters and digits, which NFKC and
 * Windows' best-fit conversion make ASCII, are read by fullwidth_ascii.
 */
static const struct {
    const char *escaped;
    const char *ascii;
} ascii_folds[] = {
    {"%c4%b0", "i"},     {"%c4%b1", "i"},      {"%c5%bf", "s"},      {"%e2%84%aa", "k"},
    {"%c3%9f", "ss"},    {"%e1%ba%9e", "ss"},  {"%ef%ac%80", "ff"},  {"%ef%ac%81", "fi"},
    {"%ef%ac%82", "fl"}, {"%ef%ac%83", "ffi"}, {"%ef%ac%84", "ffl"}, {"%ef%ac%85", "st"},
    {"%ef%ac%86", "st"},
};

/* The ASCII letter or digit of the fullwidth one escaped at p (U+FF10..FF19, FF21..FF3A,
 * FF41..FF5A, lower-cased), or 0. */
static char fullwidth_ascii(const char *p)
{
    if (strncmp(p, "%ef%b", 5) != 0 || (p[5] != 'c' && p[5] != 'd') || p[6] != '%')
        return 0;
    int hi = sg_hex_value((unsigned char)p[7]);
    int lo = hi < 0 ? -1 : sg_hex_value((unsigned char)p[8]);
    if (lo < 0)
        return 0;
    unsigned cp = (p[5] == 'c' ? 0xff00u : 0xff40u) + (unsigned)(hi * 16 + lo) - 0x80u;
    if (cp >= 0xff10 && cp <= 0xff19)
        return (char)('0' + (cp - 0xff10));
    if (cp >= 0xff21 && cp <= 0xff3a)
        return (char)('a' + (cp - 0xff21));
    if (cp >= 0xff41 && cp <= 0xff5a)
        return (char)('a' + (cp - 0xff41));
    return 0;
}

/* Appends to out the ASCII of the character escaped at p when it is one of ascii_folds or a
 * fullwidth letter or digit; returns the bytes of p it took, 0 for any other character. */
static size_t fold_at(const char *p, struct buf *out)
{
    for (size_t i = 0; i < SG_ARRAY_LEN(ascii_folds); i++) {
        size_t len = strlen(ascii_folds[i].escaped);
        if (strncmp(p, ascii_folds[i].escaped, len) == 0) {
            buf_add(out, ascii_folds[i].ascii, strlen(ascii_folds[i].ascii));
            return len;
        }
    }
    char wide = fullwidth_ascii(p);
    if (wide == 0)
        return 0;
    buf_byte(out, wide);
    return 9; /* "%ef%bX%XX" */
}

/* reading with every character of ascii_folds replaced by its letters, and every fullwidth letter
 * or digit by its ASCII one; NULL when it has none. */
static char *ascii_folded(const char *reading)
{
    if (strstr(reading, "%c") == NULL && strstr(reading, "%e") == NULL)
        return NULL;
    struct buf out = {0};
    bool folded = false;
    for (const char *p = reading; *p != '\0';) {
        size_t took = *p == '%' ? fold_at(p, &out) : 0;
        if (took > 0) {
            p += took;
            folded = true;
        } else {
            buf_byte(&out, *p++);
        }
    }
    if (!folded) {
        sg_evmem_free(out.data);
        return NULL;
    }
    return out.data;
}

/* Whether the escaped text at s (of len bytes) begins with c: the byte itself or its escape
 * (lower-case hex, as in a case-insensitive reading); *used is how many bytes that took. */
static bool starts_with_char(const char *s, size_t len, char c, const char *escaped, size_t *used)
{
    *used = len >= 1 && s[0] == c ? 1 : len >= 3 && strncmp(s, escaped, 3) == 0 ? 3 : 0;
    return *used > 0;
}

/* Whether the segment [s, s + len) is an ASP.NET cookieless value, "(X(...))", its parentheses
 * raw or escaped: ASP.NET on IIS takes it out of the path before the application routes it. */
static bool cookieless_segment(const char *s, size_t len)
{
    size_t a, b;
    if (!starts_with_char(s, len, '(', "%28", &a) || len < a + 1 || s[a] < 'a' || s[a] > 'z' ||
        !starts_with_char(s + a + 1, len - a - 1, '(', "%28", &b))
        return false;
    size_t head = a + 1 + b;
    /* The last two characters: "))" raw, escaped or mixed. */
    size_t tail = 0;
    for (int k = 0; k < 2; k++) {
        size_t left = len - head - tail;
        if (left >= 1 && s[len - tail - 1] == ')')
            tail += 1;
        else if (left >= 3 && strncmp(s + len - tail - 3, "%29", 3) == 0)
            tail += 3;
        else
            return false;
    }
    return true;
}

/* reading without its cookieless segments; NULL when it has none. */
static char *cookieless_stripped(const char *reading)
{
    if (strstr(reading, "/(") == NULL && strstr(reading, "/%28") == NULL)
        return NULL;
    struct buf out = {0};
    bool stripped = false;
    for (const char *p = reading; *p == '/';) {
        const char *seg = p + 1;
        size_t len = strcspn(seg, "/");
        if (cookieless_segment(seg, len)) {
            stripped = true;
        } else if (len > 0 || seg[len] == '\0') {
            buf_byte(&out, '/');
            buf_add(&out, seg, len);
        }
        p = seg + len;
    }
    if (!stripped) {
        sg_evmem_free(out.data);
        return NULL;
    }
    if (out.len == 0)
        buf_byte(&out, '/');
    return out.data;
}

/* Adds reading to out's variants unless it is the match path or one of them (then frees it). */
static void add_variant(struct sg_target *out, char *reading)
{
    bool seen = strcmp(reading, out->match) == 0;
    for (size_t i = 0; i < out->variant_count && !seen; i++)
        seen = strcmp(reading, out->variants[i]) == 0;
    if (seen)
        sg_evmem_free(reading);
    else
        out->variants[out->variant_count++] = reading;
}

/*
 * Every reading of the forwarded path: the match path (kept %2F decoded,
 * parameters cut) and, where the path has a kept %2F or a ';', the others
 * (not decoded, not cut, both), as out->variants; with case-insensitive
 * paths (IIS), each of those again with the characters of ascii_folds as their
 * ASCII letters, then each again without ASP.NET's cookieless segments. Any
 * reading that is ambiguous or above the root refuses the target.
 */
static enum sg_target_status readings(const struct sg_target_options *opts, struct sg_target *out)
{
    bool has_slash = opts->keep_encoded_slash && strstr(out->path, "%2F") != NULL;
    bool has_param = strchr(out->path, ';') != NULL;
    enum sg_target_status status = reading(out->path, opts, true, true, &out->match);
    static const bool others[3][2] = {{false, false}, {true, false}, {false, true}};
    for (size_t v = 0; status == SG_TARGET_OK && v < 3; v++) {
        bool decode = others[v][0] && has_slash, cut = others[v][1] && has_param;
        if (decode == has_slash && cut == has_param)
            continue; /* reads as the match path does */
        char *variant = NULL;
        status = reading(out->path, opts, decode, cut, &variant);
        if (status != SG_TARGET_OK)
            break;
        add_variant(out, variant);
    }
    if (status != SG_TARGET_OK || !opts->case_insensitive)
        return status;
    for (int pass = 0; pass < 2; pass++) {
        char *(*other)(const char *) = pass == 0 ? ascii_folded : cookieless_stripped;
        size_t before = out->variant_count;
        char *read = other(out->match);
        if (read != NULL)
            add_variant(out, read);
        for (size_t i = 0; i < before; i++) {
            read = other(out->variants[i]);
            if (read != NULL)
                add_variant(out, read);
        }
    }
    return SG_TARGET_OK;
}

/* A %25 before two hex digits in the result: a server decoding twice would
 * see an escape that the gateway never checked (also when decoding
 * unreserved escapes formed it, as in "%25%32%65"). */
static bool double_encoded(const char *path)
{
    for (const char *p = strstr(path, "%25"); p != NULL; p = strstr(p + 1, "%25")) {
        if (sg_hex_value((unsigned char)p[3]) >= 0 && sg_hex_value((unsigned char)p[4]) >= 0)
            return true;
    }
    return false;
}

/*
 * Absolute-form (RFC 9112 3.2.2): "http(s)://authority[path][?query]". The
 * authority must be the gateway's own; *rest points at what follows it.
 */
static enum sg_target_status absolute_form(const char *raw, const char *end,
                                           const struct sg_target_options *opts, const char **rest)
{
    bool https;
    const char *p;
    if ((size_t)(end - raw) >= 7 && strncasecmp(raw, "http://", 7) == 0) {
        https = false;
        p = raw + 7;
    } else if ((size_t)(end - raw) >= 8 && strncasecmp(raw, "https://", 8) == 0) {
        https = true;
        p = raw + 8;
    } else {
        return SG_TARGET_EMPTY;
    }
    const char *auth_end = p;
    while (auth_end < end && *auth_end != '/' && *auth_end != '?' && *auth_end != '#')
        auth_end++;
    *rest = auth_end;
    if (opts->host == NULL || https != opts->https || auth_end == p)
        return SG_TARGET_FOREIGN_AUTHORITY;

    const char *host = p, *host_end;
    const char *port = NULL;
    if (*p == '[') {
        host = p + 1;
        host_end = memchr(host, ']', (size_t)(auth_end - host));
        if (host_end == NULL)
            return SG_TARGET_FOREIGN_AUTHORITY;
        if (host_end + 1 < auth_end) {
            if (host_end[1] != ':')
                return SG_TARGET_FOREIGN_AUTHORITY;
            port = host_end + 2;
        }
    } else {
        host_end = memchr(p, ':', (size_t)(auth_end - p));
        if (host_end != NULL)
            port = host_end + 1;
        else
            host_end = auth_end;
    }
    size_t host_len = (size_t)(host_end - host);
    if (host_len == 0 || host_len != strlen(opts->host) ||
        strncasecmp(host, opts->host, host_len) != 0)
        return SG_TARGET_FOREIGN_AUTHORITY;

    unsigned long port_value = https ? 443 : 80;
    if (port != NULL && port < auth_end) {
        port_value = 0;
        for (const char *d = port; d < auth_end; d++) {
            if (*d < '0' || *d > '9' || port_value > 65535)
                return SG_TARGET_FOREIGN_AUTHORITY;
            port_value = port_value * 10 + (unsigned long)(*d - '0');
        }
    }
    if (port_value != opts->port)
        return SG_TARGET_FOREIGN_AUTHORITY;
    return SG_TARGET_OK;
}

static enum sg_target_status check_query(const char *p, const char *end)
{
    for (; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '%') {
            if (!hex_pair(p + 1, end))
                return SG_TARGET_BAD_QUERY;
            p += 2;
        } else if (!is_query_char(c)) {
            return SG_TARGET_BAD_QUERY;
        }
    }
    return SG_TARGET_OK;
}

enum sg_target_status sg_target_normalize(const char *raw, size_t len,
                                          const struct sg_target_options *opts,
                                          struct sg_target *out)
{
    memset(out, 0, sizeof(*out));
    if (len == 0)
        return SG_TARGET_EMPTY;
    if (len > SG_TARGET_MAX_LEN)
        return SG_TARGET_TOO_LONG;
    const char *end = raw + len;
    if (memchr(raw, '#', len) != NULL)
        return SG_TARGET_FRAGMENT;
    if (len == 1 && raw[0] == '*') {
        if (!opts->asterisk_allowed)
            return SG_TARGET_ASTERISK;
        out->path = sg_evmem_strndup("*", 1);
        out->match = sg_evmem_strndup("*", 1);
        out->asterisk = true;
        return SG_TARGET_OK;
    }

    const char *path = raw;
    bool absolute = false;
    if (raw[0] != '/') {
        enum sg_target_status status = absolute_form(raw, end, opts, &path);
        if (status != SG_TARGET_OK)
            return status;
        absolute = true;
    }
    const char *query = memchr(path, '?', (size_t)(end - path));
    const char *path_end = query ? query : end;
    if (query != NULL) {
        enum sg_target_status status = check_query(query + 1, end);
        if (status != SG_TARGET_OK)
            return status;
    }

    struct buf forwarded = {0};
    enum sg_target_status status;
    struct pass first = {.decode = true, .keep_slash = opts->keep_encoded_slash};
    if (path == path_end) {
        buf_byte(&forwarded, '/'); /* "http://host" or "http://host?q" */
        status = SG_TARGET_OK;
    } else {
        status = normalize_path(path, path_end, &first, &forwarded);
    }
    if (status == SG_TARGET_OK && double_encoded(forwarded.data))
        status = SG_TARGET_DOUBLE_ENCODING;
    if (status != SG_TARGET_OK) {
        sg_evmem_free(forwarded.data);
        return status;
    }
    out->path = forwarded.data;
    status = readings(opts, out);
    if (status != SG_TARGET_OK) {
        sg_target_clear(out);
        return status;
    }
    out->absolute = absolute;
    if (query != NULL)
        out->query = sg_evmem_strndup(query + 1, (size_t)(end - query - 1));
    return SG_TARGET_OK;
}

char *sg_target_origin_form(const struct sg_target *target)
{
    return sg_asprintf("%s%s%s", target->path, target->query ? "?" : "",
                       target->query ? target->query : "");
}

void sg_target_clear(struct sg_target *target)
{
    if (target == NULL)
        return;
    sg_evmem_free(target->path);
    sg_evmem_free(target->match);
    for (size_t i = 0; i < target->variant_count; i++)
        sg_evmem_free(target->variants[i]);
    sg_evmem_free(target->query);
    memset(target, 0, sizeof(*target));
}

const char *sg_target_status_name(enum sg_target_status status)
{
    static const char *const names[SG_TARGET__COUNT] = {
        [SG_TARGET_OK] = "ok",
        [SG_TARGET_EMPTY] = "empty",
        [SG_TARGET_TOO_LONG] = "too_long",
        [SG_TARGET_BAD_BYTE] = "bad_byte",
        [SG_TARGET_BAD_ESCAPE] = "bad_escape",
        [SG_TARGET_ENCODED_NUL] = "encoded_nul",
        [SG_TARGET_ENCODED_SLASH] = "encoded_slash",
        [SG_TARGET_DOUBLE_ENCODING] = "double_encoding",
        [SG_TARGET_BAD_UTF8] = "bad_utf8",
        [SG_TARGET_ABOVE_ROOT] = "above_root",
        [SG_TARGET_DOT_PARAMETER] = "dot_parameter",
        [SG_TARGET_TRAILING_DOT] = "trailing_dot",
        [SG_TARGET_BAD_QUERY] = "bad_query",
        [SG_TARGET_FRAGMENT] = "fragment",
        [SG_TARGET_FOREIGN_AUTHORITY] = "foreign_authority",
        [SG_TARGET_ASTERISK] = "asterisk",
    };
    return (unsigned)status < SG_TARGET__COUNT ? names[status] : "unknown";
}

bool sg_target_under(const char *match, const char *prefix, bool case_insensitive)
{
    size_t n = strlen(prefix);
    while (n > 0 && prefix[n - 1] == '/')
        n--;
    if (n == 0)
        return true;
    int diff = case_insensitive ? strncasecmp(match, prefix, n) : strncmp(match, prefix, n);
    return diff == 0 && (match[n] == '\0' || match[n] == '/');
}
