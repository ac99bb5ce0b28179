/*
 * Cookie header parsing and Set-Cookie formatting (RFC 6265 section 4).
 * See include/ssogate/cookie.h for the contracts.
 */
#include "ssogate/cookie.h"

#include "ssogate/common.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* RFC 6265 cookie-octet: printable ASCII but for space, '"', ',', ';', '\\'. */
static bool is_cookie_octet(unsigned char c)
{
    return c == 0x21 || (c >= 0x23 && c <= 0x2b) || (c >= 0x2d && c <= 0x3a) ||
           (c >= 0x3c && c <= 0x5b) || (c >= 0x5d && c <= 0x7e);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

static bool valid_name(const char *name, size_t len)
{
    if (len == 0 || len > SG_COOKIE_MAX_NAME)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!sg_is_tchar((unsigned char)name[i])) /* RFC 6265: a name is a token */
            return false;
    }
    return true;
}

static bool valid_value(const char *value, size_t len)
{
    if (len > SG_COOKIE_MAX_VALUE)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!is_cookie_octet((unsigned char)value[i]))
            return false;
    }
    return true;
}

/* One ';'-separated piece of a Cookie header, spaces trimmed. */
struct pair {
    const char *start; /* the whole piece */
    size_t len;
    const char *name; /* NULL when the piece has no '=' */
    size_t name_len;
    const char *value;
    size_t value_len;
};

/*
 * Reads the piece starting at header[*pos] and moves *pos past its ';'.
 * Returns false at the end of the header.
 */
static bool next_pair(const char *header, size_t len, size_t *pos, struct pair *p)
{
    size_t i = *pos;
    while (i < len && (is_space(header[i]) || header[i] == ';'))
        i++;
    if (i >= len)
        return false;
    const char *semi = memchr(header + i, ';', len - i);
    size_t end = semi ? (size_t)(semi - header) : len;
    *pos = semi ? end + 1 : len;
    size_t piece_end = end;
    while (piece_end > i && is_space(header[piece_end - 1]))
        piece_end--;
    memset(p, 0, sizeof(*p));
    p->start = header + i;
    p->len = piece_end - i;
    const char *eq = memchr(p->start, '=', p->len);
    if (eq == NULL)
        return true;
    size_t name_end = (size_t)(eq - p->start);
    while (name_end > 0 && is_space(p->start[name_end - 1]))
        name_end--;
    p->name = p->start;
    p->name_len = name_end;
    size_t value_start = (size_t)(eq - p->start) + 1;
    while (value_start < p->len && is_space(p->start[value_start]))
        value_start++;
    p->value = p->start + value_start;
    p->value_len = p->len - value_start;
    return true;
}

/* Whether p is well-formed; strips the optional double quotes of its value. */
static bool pair_well_formed(struct pair *p)
{
    if (p->name == NULL || !valid_name(p->name, p->name_len))
        return false;
    if (p->value_len >= 2 && p->value[0] == '"' && p->value[p->value_len - 1] == '"') {
        p->value++;
        p->value_len -= 2;
    }
    return valid_value(p->value, p->value_len);
}

int sg_cookie_find(const char *header, size_t len, const char *name, const char **value,
                   size_t *value_len)
{
    size_t name_len = strlen(name);
    if (!valid_name(name, name_len))
        return SG_EINVAL;
    if (len > SG_COOKIE_MAX_HEADER)
        return SG_ETOOBIG;
    size_t pos = 0;
    struct pair p;
    while (next_pair(header, len, &pos, &p)) {
        /* The name first: one equal to name (a valid one) is itself valid. */
        if (p.name == NULL || p.name_len != name_len || memcmp(p.name, name, name_len) != 0 ||
            !pair_well_formed(&p))
            continue;
        *value = p.value;
        *value_len = p.value_len;
        return 0;
    }
    return SG_ENOENT;
}

int sg_cookie_remove(const char *header, size_t len, const char *name, char **out)
{
    return sg_cookie_remove_any(header, len, &name, 1, out);
}

static bool named(const char *name, size_t name_len, const char *const *names, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (strlen(names[i]) == name_len && memcmp(name, names[i], name_len) == 0)
            return true;
    }
    return false;
}

/*
 * True when a part of p after a ',' is a pair named in names. ',' separated
 * cookies in RFC 2965, and a proxy that joins several Cookie lines as it joins
 * other fields writes "a=1, NAME=v": an upstream that splits there reads NAME.
 */
static bool named_after_comma(const struct pair *p, const char *const *names, size_t count)
{
    const char *end = p->start + p->len;
    const char *c = p->start;
    while ((c = memchr(c, ',', (size_t)(end - c))) != NULL) {
        c++;
        while (c < end && is_space(*c))
            c++;
        const char *name_end = c;
        while (name_end < end && *name_end != '=' && *name_end != ',')
            name_end++;
        if (name_end == end || *name_end != '=')
            continue;
        while (name_end > c && is_space(name_end[-1]))
            name_end--;
        if (named(c, (size_t)(name_end - c), names, count))
            return true;
    }
    return false;
}

int sg_cookie_remove_any(const char *header, size_t len, const char *const *names, size_t count,
                         char **out)
{
    for (size_t i = 0; i < count; i++) {
        if (!valid_name(names[i], strlen(names[i])))
            return SG_EINVAL;
    }
    if (len > SG_COOKIE_MAX_HEADER)
        return SG_ETOOBIG;
    /* Kept pieces are at most len bytes with one ';' between each two, and
     * each such ';' may gain a space: 2 * len + 1 bytes always suffice. */
    char *copy = sg_malloc(2 * len + 1);
    size_t o = 0, pos = 0;
    struct pair p;
    while (next_pair(header, len, &pos, &p)) {
        if ((p.name != NULL && named(p.name, p.name_len, names, count)) ||
            named_after_comma(&p, names, count))
            continue;
        if (o > 0) {
            copy[o++] = ';';
            copy[o++] = ' ';
        }
        memcpy(copy + o, p.start, p.len);
        o += p.len;
    }
    copy[o] = '\0';
    *out = copy;
    return 0;
}

static bool valid_path(const char *path)
{
    if (strlen(path) > 1024)
        return false;
    for (const char *c = path; *c; c++) {
        if (*c < 0x20 || *c > 0x7e || *c == ';')
            return false;
    }
    return true;
}

int sg_cookie_format(const char *name, const char *value, const struct sg_cookie_attrs *attrs,
                     char **out)
{
    if (!valid_name(name, strlen(name)) || !valid_value(value, strlen(value)) ||
        (attrs->path != NULL && !valid_path(attrs->path)))
        return SG_EINVAL;
    char max_age[64] = "";
    if (attrs->max_age > 0)
        snprintf(max_age, sizeof(max_age), "; Max-Age=%" PRId64, attrs->max_age);
    else if (attrs->max_age == 0)
        snprintf(max_age, sizeof(max_age), "; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
    const char *same_site = "";
    if (attrs->same_site == SG_COOKIE_SAME_SITE_LAX)
        same_site = "; SameSite=Lax";
    else if (attrs->same_site == SG_COOKIE_SAME_SITE_STRICT)
        same_site = "; SameSite=Strict";
    *out =
        sg_asprintf("%s=%s%s%s%s%s%s%s", name, value, attrs->path ? "; Path=" : "",
                    attrs->path ? attrs->path : "", max_age, attrs->http_only ? "; HttpOnly" : "",
                    attrs->secure ? "; Secure" : "", same_site);
    return 0;
}

bool sg_cookie_sets_any(const char *set_cookie, const char *const *names)
{
    const char *end = set_cookie + strcspn(set_cookie, ";");
    const char *start = set_cookie;
    while (start < end && (is_space(*start) || *start == '='))
        start++;
    const char *eq = memchr(start, '=', (size_t)(end - start));
    const char *stop = eq != NULL ? eq : end;
    while (stop > start && is_space(stop[-1]))
        stop--;
    size_t len = (size_t)(stop - start);
    for (; *names != NULL; names++) {
        if (strlen(*names) == len && strncasecmp(*names, start, len) == 0)
            return true;
    }
    return false;
}
