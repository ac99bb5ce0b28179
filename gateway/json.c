/*
 * Bounded, strict JSON objects on top of yajl's tree parser. See
 * include/ssogate/json.h for the contracts.
 */
#include "ssogate/json.h"

#include "ssogate/common.h"

#include <stdlib.h>
#include <string.h>

/*
 * What yajl_tree_parse cannot be told to refuse, refused up front: nesting
 * deeper than SG_JSON_MAX_DEPTH (yajl_tree_free recurses), comments
 * (yajl_tree_parse enables them), a NUL byte (yajl_tree_parse stops at it) and
 * the \u0000 escape (a C string would end early: "RS256\u0000x" is "RS256").
 * The rest of the grammar is yajl's job.
 */
static int json_prescan(const char *text, size_t len)
{
    unsigned depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == '\0')
            return SG_EINVAL;
        if (in_string) {
            if (c == '"') {
                in_string = false;
            } else if (c == '\\') {
                if (i + 1 >= len)
                    return SG_EINVAL;
                if (text[i + 1] == 'u' && len - i >= 6 && memcmp(text + i + 2, "0000", 4) == 0)
                    return SG_EINVAL;
                i++;
            }
            continue;
        }
        switch (c) {
        case '"':
            in_string = true;
            break;
        case '{':
        case '[':
            if (++depth > SG_JSON_MAX_DEPTH)
                return SG_EINVAL;
            break;
        case '}':
        case ']':
            if (depth > 0)
                depth--;
            break;
        case '/':
            return SG_EINVAL;
        default:
            break;
        }
    }
    return 0;
}

static int compare_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

bool sg_json_has_duplicate_keys(yajl_val obj)
{
    size_t n = obj->u.object.len;
    if (n < 2)
        return false;
    const char **keys = sg_malloc(n * sizeof(*keys));
    memcpy(keys, obj->u.object.keys, n * sizeof(*keys));
    qsort(keys, n, sizeof(*keys), compare_keys);
    bool dup = false;
    for (size_t i = 1; i < n && !dup; i++)
        dup = strcmp(keys[i - 1], keys[i]) == 0;
    free(keys);
    return dup;
}

int sg_json_parse_object(const char *text, size_t len, size_t max_len, yajl_val *out)
{
    if (len > max_len)
        return SG_ETOOBIG;
    if (json_prescan(text, len) != 0)
        return SG_EINVAL;
    char *copy = sg_strndup(text, len);
    char errbuf[128];
    yajl_val v = yajl_tree_parse(copy, errbuf, sizeof(errbuf));
    free(copy);
    if (!YAJL_IS_OBJECT(v) || sg_json_has_duplicate_keys(v)) {
        yajl_tree_free(v);
        return SG_EINVAL;
    }
    *out = v;
    return 0;
}

yajl_val sg_json_member(yajl_val obj, const char *name)
{
    if (!YAJL_IS_OBJECT(obj))
        return NULL;
    for (size_t i = 0; i < obj->u.object.len; i++) {
        if (strcmp(obj->u.object.keys[i], name) == 0)
            return obj->u.object.values[i];
    }
    return NULL;
}

yajl_val sg_json_pointer(yajl_val doc, const char *pointer)
{
    if (pointer == NULL)
        return NULL;
    if (*pointer == '\0')
        return doc;
    if (*pointer != '/')
        return NULL;
    yajl_val node = doc;
    const char *p = pointer;
    char token[256];
    while (*p == '/' && node != NULL) {
        p++;
        size_t n = 0;
        while (*p != '\0' && *p != '/') {
            char c = *p++;
            if (c == '~') {
                if (*p == '0')
                    c = '~';
                else if (*p == '1')
                    c = '/';
                else
                    return NULL;
                p++;
            }
            if (n + 1 >= sizeof(token))
                return NULL;
            token[n++] = c;
        }
        token[n] = '\0';
        if (YAJL_IS_OBJECT(node)) {
            yajl_val next = NULL;
            for (size_t i = 0; i < node->u.object.len; i++) {
                if (strcmp(node->u.object.keys[i], token) == 0) {
                    next = node->u.object.values[i];
                    break;
                }
            }
            node = next;
        } else if (YAJL_IS_ARRAY(node)) {
            char *end;
            unsigned long index = strtoul(token, &end, 10);
            if (*token == '\0' || *end != '\0' || index >= node->u.array.len)
                return NULL;
            node = node->u.array.values[index];
        } else {
            return NULL;
        }
    }
    return node;
}
