/*
 * Fuzzes the request-target normaliser. The first byte chooses the options
 * (bit 0 keep_encoded_slash, bit 1 case_insensitive, bit 2 asterisk_allowed,
 * bit 3 https, bits 4-5 the host, bits 6-7 the port), the rest is the target.
 *
 * Properties of an OK result: the path begins with '/' (or is "*"), has no
 * "//", no dot segment, no dot segment with parameters, only pchar bytes,
 * escapes with upper-case hex that decode to neither an unreserved character,
 * NUL, '\', a kept-only '/', nor a second escape, and decodes to UTF-8; the
 * match path is the path with %2F decoded, ';' parameters cut and dot segments
 * removed (lower case when case-insensitive), so it holds no ';', and the
 * variants are exactly the other distinct readings (%2F not decoded, ';' not
 * cut), each as normalised as the match path; the query is
 * the input's, byte for byte, and holds only query bytes; normalising
 * path[?query] again gives the same result. A refusal zeroes *out. The options
 * only ever do what they say: case_insensitive changes the match path's case
 * and may add refusals, keep_encoded_slash only matters with %2F, and
 * asterisk_allowed only for "*".
 */
#include "../../gateway/common.c"
#include "../../gateway/evmem.c"
#include "../../gateway/target.c"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const hosts[] = {"gw.example", "::1", "127.0.0.1", "GW.Example"};
static const uint16_t ports[] = {80, 443, 8080, 8443};

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_target: %s:%d: %s\n", __FILE__, __LINE__, #cond);                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static bool same(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static bool spec_is_upper_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

static bool spec_is_hex(char c)
{
    return spec_is_upper_hex(c) || (c >= 'a' && c <= 'f');
}

static int spec_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return c - 'A' + 10;
}

static bool spec_is_unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

static bool spec_is_sub_delim(unsigned char c)
{
    return c != '\0' && strchr("!$&'()*+,;=", c) != NULL;
}

/* RFC 3986 query bytes plus what WHATWG lets browsers send unencoded. */
static bool spec_is_query_byte(unsigned char c)
{
    return spec_is_unreserved(c) || spec_is_sub_delim(c) ||
           (c != '\0' && strchr(":@/?%[]{}|\\^`", c));
}

/* True when the n bytes of s are well-formed UTF-8 (no overlong form, no
 * surrogate, nothing above U+10FFFF). */
static bool spec_is_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t more;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            more = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            more = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            more = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i <= more)
            return false;
        for (size_t k = 1; k <= more; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((more == 2 && cp < 0x800) || (more == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += more + 1;
    }
    return true;
}

/* Checks the shape of a normalised path: begins with '/', no empty segment
 * but the last, no "." or ".." segment. */
static void check_segments(const char *path)
{
    CHECK(path[0] == '/');
    CHECK(strstr(path, "//") == NULL);
    const char *seg = path + 1;
    for (;;) {
        size_t n = strcspn(seg, "/");
        CHECK(!(n == 1 && seg[0] == '.'));
        CHECK(!(n == 2 && seg[0] == '.' && seg[1] == '.'));
        if (seg[n] == '\0')
            break;
        seg += n + 1;
    }
}

/* Checks the forwarded path's bytes and escapes. */
static void check_path_bytes(const char *path, const struct sg_target_options *opts)
{
    size_t n = strlen(path);
    unsigned char *decoded = malloc(n + 1);
    size_t d = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c == '%') {
            CHECK(i + 2 < n && spec_is_upper_hex(path[i + 1]) && spec_is_upper_hex(path[i + 2]));
            unsigned char v =
                (unsigned char)(spec_hex_value(path[i + 1]) * 16 + spec_hex_value(path[i + 2]));
            CHECK(!spec_is_unreserved(v));
            CHECK(v != 0 && v != '\\');
            CHECK(v != '/' || opts->keep_encoded_slash);
            if (v == '%')
                CHECK(!(i + 4 < n && spec_is_hex(path[i + 3]) && spec_is_hex(path[i + 4])));
            decoded[d++] = v;
            i += 2;
        } else {
            CHECK(spec_is_unreserved(c) || spec_is_sub_delim(c) || c == ':' || c == '@' ||
                  c == '/');
            decoded[d++] = c;
        }
    }
    CHECK(spec_is_utf8(decoded, d));
    free(decoded);

    /* No dot segment with parameters. (Segments ending in '.' or a space with
     * case-insensitive paths are checked on the match path: a forwarded
     * segment may end in '.' when it is "x%2F.." or "x;y.", which the match
     * path resolves or cuts.) */
    const char *seg = path + 1;
    for (;;) {
        size_t len = strcspn(seg, "/");
        CHECK(strncmp(seg, ".;", 2) != 0 && strncmp(seg, "..;", 3) != 0);
        if (seg[len] == '\0')
            break;
        seg += len + 1;
    }
}

/*
 * One reading of the forwarded path as documented: %2F decoded to '/' when
 * decode_slash, every segment cut at its first ';' when cut, then empty, "."
 * and ".." segments resolved, a trailing slash kept, lower case when
 * case-insensitive. The match path is the reading with both. Returns NULL
 * when ".." goes above the root.
 */
static char *expected_reading(const char *path, bool decode_slash, bool cut_parameters,
                              bool case_insensitive)
{
    size_t n = strlen(path);
    char *decoded = malloc(n + 1);
    size_t d = 0;
    for (size_t i = 0; i < n; i++) {
        if (decode_slash && strncmp(path + i, "%2F", 3) == 0) {
            decoded[d++] = '/';
            i += 2;
        } else {
            decoded[d++] = path[i];
        }
    }
    decoded[d] = '\0';

    char *out = malloc(d + 2);
    size_t o = 0;
    size_t *starts = malloc((d + 1) * sizeof(*starts));
    size_t depth = 0;
    bool trailing = false;
    const char *seg = decoded + 1;
    for (;;) {
        size_t len = strcspn(seg, "/");
        size_t cut = cut_parameters ? strcspn(seg, ";/") : len;
        bool last = seg[len] == '\0';
        trailing = false;
        if (cut == 0 || (cut == 1 && seg[0] == '.')) {
            trailing = true;
        } else if (cut == 2 && seg[0] == '.' && seg[1] == '.') {
            if (depth == 0) {
                free(decoded);
                free(out);
                free(starts);
                return NULL;
            }
            o = starts[--depth];
            trailing = true;
        } else {
            starts[depth++] = o;
            out[o++] = '/';
            memcpy(out + o, seg, cut);
            o += cut;
        }
        if (last)
            break;
        seg += len + 1;
    }
    if (trailing || o == 0)
        out[o++] = '/';
    out[o] = '\0';
    if (case_insensitive) {
        for (char *p = out; *p; p++) {
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        }
    }
    free(decoded);
    free(starts);
    return out;
}

/* Checks one reading of the path (the match path or a variant). */
static void check_reading(const char *reading, const struct sg_target_options *opts)
{
    check_segments(reading);
    for (const char *p = reading; *p; p++) {
        if (*p == '%') {
            CHECK(spec_is_hex(p[1]) && spec_is_hex(p[2]));
            if (!opts->case_insensitive)
                CHECK(spec_is_upper_hex(p[1]) && spec_is_upper_hex(p[2]));
            p += 2;
        } else if (opts->case_insensitive) {
            CHECK(!(*p >= 'A' && *p <= 'Z'));
        }
    }
    if (opts->case_insensitive) {
        for (const char *seg = reading + 1;;) {
            size_t len = strcspn(seg, "/");
            CHECK(len == 0 || seg[len - 1] != '.');
            CHECK(!(len >= 3 && strncmp(seg + len - 3, "%20", 3) == 0));
            if (seg[len] == '\0')
                break;
            seg += len + 1;
        }
    }
    CHECK(sg_target_under(reading, reading, opts->case_insensitive));
    CHECK(sg_target_under(reading, "/", opts->case_insensitive));
}

/* The ASCII letters a case-insensitive server may take a code point for (its simple upper or lower
 * case, or its full case folding, is ASCII; the fullwidth letters and digits, which NFKC makes
 * ASCII), or NULL. */
static const char *spec_ascii_letters(uint32_t cp)
{
    static char wide[2];
    if ((cp >= 0xff10 && cp <= 0xff19) || (cp >= 0xff21 && cp <= 0xff3a) ||
        (cp >= 0xff41 && cp <= 0xff5a)) {
        wide[0] = cp <= 0xff19 ? (char)('0' + cp - 0xff10)
                               : (char)('a' + (cp - (cp <= 0xff3a ? 0xff21 : 0xff41)));
        return wide;
    }
    switch (cp) {
    case 0x130: /* I with dot above: lower case i */
    case 0x131: /* dotless i: upper case I */
        return "i";
    case 0x17f: /* long s: upper case S */
        return "s";
    case 0x212a: /* Kelvin sign: lower case k */
        return "k";
    case 0xdf:   /* sharp s: folds to ss */
    case 0x1e9e: /* capital sharp s: folds to ss */
        return "ss";
    case 0xfb00:
        return "ff";
    case 0xfb01:
        return "fi";
    case 0xfb02:
        return "fl";
    case 0xfb03:
        return "ffi";
    case 0xfb04:
        return "ffl";
    case 0xfb05:
    case 0xfb06:
        return "st";
    default:
        return NULL;
    }
}

/* reading (escaped, valid UTF-8) with each code point of spec_ascii_letters replaced by its
 * letters; NULL when none is there. Decodes the escapes into code points. */
static char *spec_ascii_folded(const char *reading)
{
    size_t n = strlen(reading);
    char *out = malloc(n + 1);
    size_t o = 0;
    bool folded = false;
    for (size_t i = 0; i < n;) {
        uint32_t cp = 0;
        size_t used = 0;
        if (reading[i] == '%' && i + 2 < n + 1) {
            unsigned lead =
                (unsigned)(spec_hex_value(reading[i + 1]) * 16 + spec_hex_value(reading[i + 2]));
            size_t extra = lead >= 0xf0 ? 3 : lead >= 0xe0 ? 2 : lead >= 0xc0 ? 1 : 0;
            cp = extra == 0 ? lead : lead & (0x3f >> extra);
            used = 3;
            for (size_t k = 0; k < extra && i + used + 2 < n + 1 && reading[i + used] == '%'; k++) {
                unsigned b = (unsigned)(spec_hex_value(reading[i + used + 1]) * 16 +
                                        spec_hex_value(reading[i + used + 2]));
                cp = cp << 6 | (b & 0x3f);
                used += 3;
            }
        }
        const char *letters = used > 0 ? spec_ascii_letters(cp) : NULL;
        if (letters != NULL) {
            memcpy(out + o, letters, strlen(letters));
            o += strlen(letters);
            folded = true;
            i += used;
        } else if (used > 0) {
            memcpy(out + o, reading + i, used);
            o += used;
            i += used;
        } else {
            out[o++] = reading[i++];
        }
    }
    out[o] = '\0';
    if (!folded) {
        free(out);
        return NULL;
    }
    return out;
}

/* reading without its ASP.NET cookieless segments, "(x(...))" with raw or escaped parentheses;
 * NULL when it has none. A segment is unescaped of %28 and %29, then its shape is tested. */
static char *spec_cookieless_stripped(const char *reading)
{
    size_t n = strlen(reading);
    char *out = malloc(n + 2);
    size_t o = 0;
    bool stripped = false;
    const char *p = reading;
    while (*p == '/') {
        const char *seg = p + 1;
        size_t len = strcspn(seg, "/");
        char plain[4096];
        size_t k = 0;
        for (size_t i = 0; i < len && k < sizeof(plain) - 1; i++) {
            if (i + 3 <= len && strncmp(seg + i, "%28", 3) == 0) {
                plain[k++] = '(';
                i += 2;
            } else if (i + 3 <= len && strncmp(seg + i, "%29", 3) == 0) {
                plain[k++] = ')';
                i += 2;
            } else {
                plain[k++] = seg[i];
            }
        }
        bool cookieless = k >= 5 && plain[0] == '(' && plain[1] >= 'a' && plain[1] <= 'z' &&
                          plain[2] == '(' && plain[k - 2] == ')' && plain[k - 1] == ')';
        if (cookieless) {
            stripped = true;
        } else if (len > 0 || seg[len] == '\0') {
            out[o++] = '/';
            memcpy(out + o, seg, len);
            o += len;
        }
        p = seg + len;
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = '\0';
    if (!stripped) {
        free(out);
        return NULL;
    }
    return out;
}

static bool same_text(const char *a, const char *b, bool case_insensitive)
{
    return case_insensitive ? strcasecmp(a, b) == 0 : strcmp(a, b) == 0;
}

/* The match path and the variants: exactly the distinct readings of the
 * path, the match path the one with %2F decoded and parameters cut. */
static void check_readings(const struct sg_target *t, const struct sg_target_options *opts)
{
    bool ci = opts->case_insensitive;
    CHECK(strchr(t->match, ';') == NULL);
    CHECK(strstr(t->match, "%2F") == NULL && strstr(t->match, "%2f") == NULL);
    check_reading(t->match, opts);
    char *expected = expected_reading(t->path, true, true, ci);
    CHECK(expected != NULL && same_text(expected, t->match, ci));
    free(expected);

    CHECK(t->variant_count <= SG_TARGET_VARIANTS_MAX);
    bool has_slash = opts->keep_encoded_slash && strstr(t->path, "%2F") != NULL;
    bool has_param = strchr(t->path, ';') != NULL;
    char *readings[15];
    size_t count = 0;
    for (int decode = 0; decode <= 1; decode++) {
        for (int cut = 0; cut <= 1; cut++) {
            if ((decode && cut) || (decode && !has_slash) || (cut && !has_param))
                continue;
            char *r = expected_reading(t->path, decode, cut, ci);
            CHECK(r != NULL);
            bool seen = same_text(r, t->match, ci);
            for (size_t i = 0; i < count && !seen; i++)
                seen = same_text(r, readings[i], ci);
            if (seen)
                free(r);
            else
                readings[count++] = r;
        }
    }
    /* Case-insensitive: each of those again with the characters a server may fold to ASCII, then
     * each again without ASP.NET's cookieless segments. */
    for (int pass = 0; ci && pass < 2; pass++) {
        for (size_t i = 0, before = count; i <= before; i++) {
            const char *from = i == 0 ? t->match : readings[i - 1];
            char *f = pass == 0 ? spec_ascii_folded(from) : spec_cookieless_stripped(from);
            if (f == NULL)
                continue;
            bool seen = same_text(f, t->match, ci);
            for (size_t k = 0; k < count && !seen; k++)
                seen = same_text(f, readings[k], ci);
            if (seen)
                free(f);
            else
                readings[count++] = f;
        }
    }
    CHECK(t->variant_count == count);
    for (size_t v = 0; v < t->variant_count; v++) {
        check_reading(t->variants[v], opts);
        CHECK(!same_text(t->variants[v], t->match, ci));
        bool found = false;
        for (size_t i = 0; i < count; i++)
            found = found || same_text(t->variants[v], readings[i], ci);
        CHECK(found);
    }
    for (size_t i = 0; i < count; i++)
        free(readings[i]);
}

/* Normalises from an exact-size copy, so a read past len is caught. */
static enum sg_target_status normalize(const char *raw, size_t len,
                                       const struct sg_target_options *opts, struct sg_target *out)
{
    char *copy = malloc(len ? len : 1);
    memcpy(copy, raw, len);
    enum sg_target_status status = sg_target_normalize(copy, len, opts, out);
    free(copy);
    CHECK(status >= SG_TARGET_OK && status < SG_TARGET__COUNT);
    CHECK(sg_target_status_name(status) != NULL);
    if (status != SG_TARGET_OK)
        CHECK(out->path == NULL && out->match == NULL && out->query == NULL && !out->asterisk &&
              !out->absolute && out->variant_count == 0);
    else
        CHECK(out->path != NULL && out->match != NULL);
    return status;
}

static bool same_result(const struct sg_target *a, const struct sg_target *b)
{
    if (a->variant_count != b->variant_count)
        return false;
    for (size_t i = 0; i < a->variant_count; i++) {
        if (!same(a->variants[i], b->variants[i]))
            return false;
    }
    return same(a->path, b->path) && same(a->match, b->match) && same(a->query, b->query) &&
           a->asterisk == b->asterisk;
}

static void check_ok(const char *raw, size_t len, const struct sg_target_options *opts,
                     const struct sg_target *t)
{
    if (t->asterisk) {
        CHECK(opts->asterisk_allowed && len == 1 && raw[0] == '*');
        CHECK(strcmp(t->path, "*") == 0 && t->query == NULL && !t->absolute &&
              t->variant_count == 0);
    } else {
        CHECK(t->absolute == (len > 0 && raw[0] != '/'));
        check_segments(t->path);
        check_path_bytes(t->path, opts);
        check_readings(t, opts);
    }

    /* The query, byte for byte. */
    const char *mark = memchr(raw, '?', len);
    if (mark == NULL) {
        CHECK(t->query == NULL);
    } else {
        size_t query_len = len - (size_t)(mark + 1 - raw);
        CHECK(t->query != NULL && strlen(t->query) == query_len &&
              memcmp(t->query, mark + 1, query_len) == 0);
        for (size_t i = 0; i < query_len; i++) {
            CHECK(spec_is_query_byte((unsigned char)t->query[i]));
            if (t->query[i] == '%')
                CHECK(i + 2 < query_len && spec_is_hex(t->query[i + 1]) &&
                      spec_is_hex(t->query[i + 2]));
        }
    }
    CHECK(strlen(t->path) + (t->query ? strlen(t->query) + 1 : 0) <= len);

    /* Idempotence. */
    size_t again_len = strlen(t->path) + (t->query ? 1 + strlen(t->query) : 0);
    char *again = malloc(again_len + 1);
    snprintf(again, again_len + 1, "%s%s%s", t->path, t->query ? "?" : "",
             t->query ? t->query : "");
    struct sg_target second;
    CHECK(normalize(again, again_len, opts, &second) == SG_TARGET_OK);
    CHECK(same_result(t, &second));
    CHECK(!second.absolute);
    sg_target_clear(&second);
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t bits = data[0];
    struct sg_target_options opts = {
        .keep_encoded_slash = (bits & 1) != 0,
        .case_insensitive = (bits & 2) != 0,
        .asterisk_allowed = (bits & 4) != 0,
        .https = (bits & 8) != 0,
        .host = hosts[(bits >> 4) & 3],
        .port = ports[(bits >> 6) & 3],
    };
    const char *raw = (const char *)data + 1;
    size_t len = size - 1;

    struct sg_target t;
    memset(&t, 0, sizeof(t));
    enum sg_target_status status = normalize(raw, len, &opts, &t);
    if (status == SG_TARGET_OK)
        check_ok(raw, len, &opts, &t);

    /* Each option does only what it says. */
    struct sg_target other;
    struct sg_target_options flipped = opts;
    flipped.case_insensitive = !opts.case_insensitive;
    enum sg_target_status other_status = normalize(raw, len, &flipped, &other);
    const struct sg_target *ci = opts.case_insensitive ? &t : &other;
    const struct sg_target *cs = opts.case_insensitive ? &other : &t;
    enum sg_target_status ci_status = opts.case_insensitive ? status : other_status;
    enum sg_target_status cs_status = opts.case_insensitive ? other_status : status;
    if (ci_status == SG_TARGET_OK) {
        CHECK(cs_status == SG_TARGET_OK);
        CHECK(same(ci->path, cs->path) && same(ci->query, cs->query));
        CHECK(strcasecmp(ci->match, cs->match) == 0);
    }
    sg_target_clear(&other);

    flipped = opts;
    flipped.keep_encoded_slash = !opts.keep_encoded_slash;
    other_status = normalize(raw, len, &flipped, &other);
    const struct sg_target *kept = opts.keep_encoded_slash ? &t : &other;
    const struct sg_target *refused = opts.keep_encoded_slash ? &other : &t;
    enum sg_target_status kept_status = opts.keep_encoded_slash ? status : other_status;
    enum sg_target_status refused_status = opts.keep_encoded_slash ? other_status : status;
    if (refused_status == SG_TARGET_OK) {
        CHECK(kept_status == SG_TARGET_OK && same_result(kept, refused));
    } else if (kept_status == SG_TARGET_OK) {
        CHECK(refused_status == SG_TARGET_ENCODED_SLASH &&
              (memmem(raw, len, "%2F", 3) != NULL || memmem(raw, len, "%2f", 3) != NULL));
    }
    sg_target_clear(&other);

    if (!(len == 1 && raw[0] == '*')) {
        flipped = opts;
        flipped.asterisk_allowed = !opts.asterisk_allowed;
        other_status = normalize(raw, len, &flipped, &other);
        CHECK(other_status == status);
        if (status == SG_TARGET_OK)
            CHECK(same_result(&t, &other) && !t.asterisk);
        sg_target_clear(&other);
    }
    sg_target_clear(&t);
    return 0;
}
