#include "form.h"

#include "ssogate/common.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ATTR_NAME_MAX 64
#define ATTRS_MAX     16

struct attr {
    char name[ATTR_NAME_MAX];
    char *value;
};

struct tag {
    struct attr attrs[ATTRS_MAX];
    unsigned count;
};

static void tag_clear(struct tag *t)
{
    for (unsigned i = 0; i < t->count; i++)
        free(t->attrs[i].value);
    t->count = 0;
}

static const char *tag_attr(const struct tag *t, const char *name)
{
    for (unsigned i = 0; i < t->count; i++) {
        if (strcmp(t->attrs[i].name, name) == 0)
            return t->attrs[i].value;
    }
    return NULL;
}

/* Appends the entity-decoded text [p, end) to a new string; NULL when longer than the bound. */
static char *decode_entities(const char *p, const char *end)
{
    if ((size_t)(end - p) > SG_FORM_VALUE_MAX)
        return NULL;
    char *out = sg_malloc((size_t)(end - p) + 1);
    size_t used = 0;
    while (p < end) {
        if (*p != '&') {
            out[used++] = *p++;
            continue;
        }
        const char *semi = memchr(p, ';', (size_t)(end - p) < 12 ? (size_t)(end - p) : 12);
        long code = -1;
        if (semi != NULL) {
            size_t n = (size_t)(semi - p - 1);
            const char *name = p + 1;
            if (n == 3 && memcmp(name, "amp", 3) == 0)
                code = '&';
            else if (n == 2 && memcmp(name, "lt", 2) == 0)
                code = '<';
            else if (n == 2 && memcmp(name, "gt", 2) == 0)
                code = '>';
            else if (n == 4 && memcmp(name, "quot", 4) == 0)
                code = '"';
            else if (n == 4 && memcmp(name, "apos", 4) == 0)
                code = '\'';
            else if (n >= 2 && name[0] == '#') {
                char digits[12];
                memcpy(digits, name + 1, n - 1);
                digits[n - 1] = '\0';
                char *num_end;
                bool hex = digits[0] == 'x' || digits[0] == 'X';
                code = strtol(hex ? digits + 1 : digits, &num_end, hex ? 16 : 10);
                if (*num_end != '\0' || num_end == (hex ? digits + 1 : digits))
                    code = -1;
            }
        }
        /* Only ASCII is decoded: the IdP's forms carry nothing else. */
        if (code > 0 && code < 128) {
            out[used++] = (char)code;
            p = semi + 1;
        } else {
            out[used++] = *p++;
        }
    }
    out[used] = '\0';
    return out;
}

/*
 * Parses the attributes of a start tag from p (just after its name) up to
 * its '>'. Returns the position after '>', or NULL when the tag does not end
 * within the text or an attribute value is too long.
 */
static const char *parse_tag(const char *p, const char *end, struct tag *t)
{
    while (p < end) {
        while (p < end && isspace((unsigned char)*p))
            p++;
        if (p < end && *p == '>')
            return p + 1;
        if (p < end && *p == '/') {
            p++;
            continue;
        }
        const char *name = p;
        while (p < end && !isspace((unsigned char)*p) && *p != '=' && *p != '>' && *p != '/')
            p++;
        size_t name_len = (size_t)(p - name);
        while (p < end && isspace((unsigned char)*p))
            p++;
        const char *value = p, *value_end = p;
        if (p < end && *p == '=') {
            p++;
            while (p < end && isspace((unsigned char)*p))
                p++;
            if (p < end && (*p == '"' || *p == '\'')) {
                char quote = *p++;
                value = p;
                const char *close = memchr(p, quote, (size_t)(end - p));
                if (close == NULL)
                    return NULL;
                value_end = close;
                p = close + 1;
            } else {
                value = p;
                while (p < end && !isspace((unsigned char)*p) && *p != '>')
                    p++;
                value_end = p;
            }
        }
        if (name_len == 0 || name_len >= ATTR_NAME_MAX || t->count == ATTRS_MAX)
            continue;
        char lower[ATTR_NAME_MAX];
        for (size_t i = 0; i < name_len; i++)
            lower[i] = (char)tolower((unsigned char)name[i]);
        lower[name_len] = '\0';
        if (tag_attr(t, lower) != NULL)
            continue;
        char *decoded = decode_entities(value, value_end);
        if (decoded == NULL)
            return NULL;
        memcpy(t->attrs[t->count].name, lower, name_len + 1);
        t->attrs[t->count].value = decoded;
        t->count++;
    }
    return NULL;
}

/* The next start tag named name (case-insensitive) in [p, end): its '<', or NULL. */
static const char *find_tag(const char *p, const char *end, const char *name)
{
    size_t n = strlen(name);
    while (p < end) {
        const char *lt = memchr(p, '<', (size_t)(end - p));
        if (lt == NULL || (size_t)(end - lt) < n + 2)
            return NULL;
        if (strncasecmp(lt + 1, name, n) == 0 &&
            (isspace((unsigned char)lt[1 + n]) || lt[1 + n] == '>' || lt[1 + n] == '/'))
            return lt;
        p = lt + 1;
    }
    return NULL;
}

/* Whether an input of this type submits its value without a click or a check. */
static bool input_submits(const char *type)
{
    static const char *const skipped[] = {"submit", "button",   "image", "reset",
                                          "file",   "checkbox", "radio"};
    if (type == NULL)
        return true;
    for (size_t i = 0; i < SG_ARRAY_LEN(skipped); i++) {
        if (strcasecmp(type, skipped[i]) == 0)
            return false;
    }
    return true;
}

int sg_form_find(const char *html, size_t len, const char *id, struct sg_form *form)
{
    const char *end = html + len;
    const char *p = html;
    memset(form, 0, sizeof(*form));
    while ((p = find_tag(p, end, "form")) != NULL) {
        struct tag t = {.count = 0};
        const char *body = parse_tag(p + 5, end, &t);
        if (body == NULL) {
            tag_clear(&t);
            return SG_ENOENT;
        }
        const char *form_id = tag_attr(&t, "id");
        if (form_id == NULL || strcmp(form_id, id) != 0) {
            tag_clear(&t);
            p = body;
            continue;
        }
        const char *action = tag_attr(&t, "action");
        const char *method = tag_attr(&t, "method");
        form->action = sg_strdup(action ? action : "");
        form->method = sg_strdup(method ? method : "GET");
        for (char *m = form->method; *m; m++)
            *m = (char)toupper((unsigned char)*m);
        tag_clear(&t);

        const char *close = body;
        while ((close = memchr(close, '<', (size_t)(end - close))) != NULL) {
            if ((size_t)(end - close) >= 6 && strncasecmp(close, "</form", 6) == 0)
                break;
            close++;
        }
        const char *form_end = close ? close : end;
        const char *in = body;
        int err = 0;
        while (err == 0 && (in = find_tag(in, form_end, "input")) != NULL) {
            struct tag it = {.count = 0};
            const char *after = parse_tag(in + 6, form_end, &it);
            const char *name = tag_attr(&it, "name");
            if (after == NULL) {
                err = SG_ETOOBIG;
            } else if (name != NULL && name[0] != '\0' && input_submits(tag_attr(&it, "type"))) {
                const char *value = tag_attr(&it, "value");
                err = sg_form_set(form, name, value ? value : "");
            }
            tag_clear(&it);
            in = after;
        }
        if (err != 0)
            sg_form_clear(form);
        return err;
    }
    return SG_ENOENT;
}

int sg_form_set(struct sg_form *form, const char *name, const char *value)
{
    if (strlen(value) > SG_FORM_VALUE_MAX || strlen(name) > SG_FORM_VALUE_MAX)
        return SG_ETOOBIG;
    for (unsigned i = 0; i < form->field_count; i++) {
        if (strcmp(form->fields[i].name, name) == 0) {
            free(form->fields[i].value);
            form->fields[i].value = sg_strdup(value);
            return 0;
        }
    }
    if (form->field_count == SG_FORM_FIELDS_MAX)
        return SG_ETOOBIG;
    form->fields[form->field_count].name = sg_strdup(name);
    form->fields[form->field_count].value = sg_strdup(value);
    form->field_count++;
    return 0;
}

/* Appends s form-urlencoded (unreserved bytes as is, space as '+', the rest %XX). */
static size_t urlencode(const char *s, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t used = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '*') {
            out[used++] = (char)*p;
        } else if (*p == ' ') {
            out[used++] = '+';
        } else {
            out[used++] = '%';
            out[used++] = hex[*p >> 4];
            out[used++] = hex[*p & 15];
        }
    }
    return used;
}

char *sg_form_encode(const struct sg_form *form)
{
    size_t bytes = 1;
    for (unsigned i = 0; i < form->field_count; i++)
        bytes += 3 * (strlen(form->fields[i].name) + strlen(form->fields[i].value)) + 2;
    char *out = sg_malloc(bytes);
    size_t used = 0;
    for (unsigned i = 0; i < form->field_count; i++) {
        if (i > 0)
            out[used++] = '&';
        used += urlencode(form->fields[i].name, out + used);
        out[used++] = '=';
        used += urlencode(form->fields[i].value, out + used);
    }
    out[used] = '\0';
    return out;
}

void sg_form_clear(struct sg_form *form)
{
    if (form == NULL)
        return;
    free(form->action);
    free(form->method);
    for (unsigned i = 0; i < form->field_count; i++) {
        free(form->fields[i].name);
        free(form->fields[i].value);
    }
    memset(form, 0, sizeof(*form));
}
