#include "jar.h"

#include "ssogate/common.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct jar_cookie {
    char *origin;
    char *name;
    char *value;
    char *path;
    unsigned long order; /* creation order, for the header's tie-break and eviction */
};

struct sg_jar {
    struct jar_cookie cookies[SG_JAR_MAX];
    unsigned count;
    unsigned long next_order;
};

struct sg_jar *sg_jar_new(void)
{
    return sg_calloc(1, sizeof(struct sg_jar));
}

static void cookie_clear(struct jar_cookie *c)
{
    free(c->origin);
    free(c->name);
    free(c->value);
    free(c->path);
    memset(c, 0, sizeof(*c));
}

void sg_jar_free(struct sg_jar *jar)
{
    if (jar == NULL)
        return;
    for (unsigned i = 0; i < jar->count; i++)
        cookie_clear(&jar->cookies[i]);
    free(jar);
}

static void remove_at(struct sg_jar *jar, unsigned i)
{
    cookie_clear(&jar->cookies[i]);
    jar->cookies[i] = jar->cookies[jar->count - 1];
    memset(&jar->cookies[jar->count - 1], 0, sizeof(jar->cookies[0]));
    jar->count--;
}

/* Copies [start, end) without surrounding spaces and tabs into a new string. */
static char *trimmed(const char *start, const char *end)
{
    while (start < end && (*start == ' ' || *start == '\t'))
        start++;
    while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    return sg_strndup(start, (size_t)(end - start));
}

/* RFC 6265 5.1.4 default-path of a request path. */
static char *default_path(const char *request_path)
{
    const char *last = strrchr(request_path, '/');
    if (request_path[0] != '/' || last == NULL || last == request_path)
        return sg_strdup("/");
    return sg_strndup(request_path, (size_t)(last - request_path));
}

/* True when an Expires date lies in the past (a removal); unparsable dates count as future. */
static bool expires_past(const char *value)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(value, "%a, %d %b %Y %H:%M:%S", &tm);
    if (end == NULL) {
        memset(&tm, 0, sizeof(tm));
        end = strptime(value, "%a, %d-%b-%Y %H:%M:%S", &tm);
    }
    return end != NULL && timegm(&tm) <= time(NULL);
}

int sg_jar_store(struct sg_jar *jar, const char *origin, const char *request_path,
                 const char *set_cookie)
{
    size_t total = strlen(set_cookie);
    if (total > SG_JAR_COOKIE_MAX)
        return SG_ETOOBIG;
    const char *end = set_cookie + total;
    const char *semi = memchr(set_cookie, ';', total);
    const char *pair_end = semi ? semi : end;
    const char *eq = memchr(set_cookie, '=', (size_t)(pair_end - set_cookie));
    if (eq == NULL)
        return SG_EINVAL;
    char *name = trimmed(set_cookie, eq);
    if (name[0] == '\0') {
        free(name);
        return SG_EINVAL;
    }
    char *value = trimmed(eq + 1, pair_end);
    char *path = NULL;
    bool removal = false;
    bool has_max_age = false;
    const char *attr = semi;
    while (attr != NULL && attr < end) {
        const char *start = attr + 1;
        const char *next = memchr(start, ';', (size_t)(end - start));
        const char *stop = next ? next : end;
        const char *aeq = memchr(start, '=', (size_t)(stop - start));
        char *key = trimmed(start, aeq ? aeq : stop);
        char *avalue = aeq ? trimmed(aeq + 1, stop) : sg_strdup("");
        if (strcasecmp(key, "path") == 0 && avalue[0] == '/') {
            free(path);
            path = sg_strdup(avalue);
        } else if (strcasecmp(key, "max-age") == 0 && avalue[0] != '\0') {
            has_max_age = true;
            char *num_end;
            long long seconds = strtoll(avalue, &num_end, 10);
            removal = *num_end == '\0' && seconds <= 0;
        } else if (strcasecmp(key, "expires") == 0 && !has_max_age) {
            removal = expires_past(avalue);
        }
        free(key);
        free(avalue);
        attr = next;
    }
    if (path == NULL)
        path = default_path(request_path);

    for (unsigned i = 0; i < jar->count; i++) {
        struct jar_cookie *c = &jar->cookies[i];
        if (strcmp(c->origin, origin) == 0 && strcmp(c->name, name) == 0 &&
            strcmp(c->path, path) == 0) {
            remove_at(jar, i);
            break;
        }
    }
    if (removal) {
        free(name);
        free(value);
        free(path);
        return 0;
    }
    if (jar->count == SG_JAR_MAX) {
        unsigned oldest = 0;
        for (unsigned i = 1; i < jar->count; i++) {
            if (jar->cookies[i].order < jar->cookies[oldest].order)
                oldest = i;
        }
        remove_at(jar, oldest);
    }
    struct jar_cookie *c = &jar->cookies[jar->count++];
    c->origin = sg_strdup(origin);
    c->name = name;
    c->value = value;
    c->path = path;
    c->order = jar->next_order++;
    return 0;
}

/* RFC 6265 5.1.4 path-match. */
static bool path_matches(const char *request_path, const char *cookie_path)
{
    size_t len = strlen(cookie_path);
    if (strncmp(request_path, cookie_path, len) != 0)
        return false;
    return request_path[len] == '\0' || cookie_path[len - 1] == '/' || request_path[len] == '/';
}

char *sg_jar_header(const struct sg_jar *jar, const char *origin, const char *path)
{
    const struct jar_cookie *chosen[SG_JAR_MAX];
    unsigned n = 0;
    size_t bytes = 0;
    for (unsigned i = 0; i < jar->count; i++) {
        const struct jar_cookie *c = &jar->cookies[i];
        if (strcmp(c->origin, origin) == 0 && path_matches(path, c->path)) {
            chosen[n++] = c;
            bytes += strlen(c->name) + strlen(c->value) + 3;
        }
    }
    if (n == 0)
        return NULL;
    /* Insertion sort: longest path first, then oldest first (RFC 6265 5.4). */
    for (unsigned i = 1; i < n; i++) {
        const struct jar_cookie *c = chosen[i];
        size_t len = strlen(c->path);
        unsigned j = i;
        while (j > 0) {
            size_t prev_len = strlen(chosen[j - 1]->path);
            if (prev_len > len || (prev_len == len && chosen[j - 1]->order < c->order))
                break;
            chosen[j] = chosen[j - 1];
            j--;
        }
        chosen[j] = c;
    }
    char *out = sg_malloc(bytes + 1);
    size_t used = 0;
    for (unsigned i = 0; i < n; i++) {
        size_t name_len = strlen(chosen[i]->name), value_len = strlen(chosen[i]->value);
        if (i > 0) {
            memcpy(out + used, "; ", 2);
            used += 2;
        }
        memcpy(out + used, chosen[i]->name, name_len);
        used += name_len;
        out[used++] = '=';
        memcpy(out + used, chosen[i]->value, value_len);
        used += value_len;
    }
    out[used] = '\0';
    return out;
}

const char *sg_jar_get(const struct sg_jar *jar, const char *origin, const char *name)
{
    for (unsigned i = 0; i < jar->count; i++) {
        const struct jar_cookie *c = &jar->cookies[i];
        if (strcmp(c->origin, origin) == 0 && strcmp(c->name, name) == 0)
            return c->value;
    }
    return NULL;
}
