/*
 * The configuration parser. yajl's callback parser builds a small bounded
 * tree (depth, value count and input size are capped, so no input can make
 * it recurse or allocate without limit); the tree is then walked against
 * per-object schemas that type-check, range-check and copy every value into
 * struct sg_config. Nothing is handed out before the whole file validated,
 * so a reload either gets a complete configuration or an error record that
 * names the key at fault. Error messages never repeat configured values:
 * a misplaced secret must not end up in a log.
 */
#include "ssogate/config.h"

#include "ssogate/clientaddr.h"
#include "ssogate/common.h"
#include "ssogate/cookies.h"
#include "ssogate/headers.h"
#include "ssogate/target.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yajl/yajl_parse.h>

#define SG_CONFIG_MAX_BYTES  (1024 * 1024)
#define SG_CONFIG_MAX_DEPTH  16
#define SG_CONFIG_MAX_VALUES 65536
#define SG_STRING_MAX_BYTES  4096
#define SG_SECRET_MAX_BYTES  4096
#define SG_PEM_MAX_BYTES     (4 * 1024 * 1024)
#define SG_URL_MAX_BYTES     2048
#define SG_SCHEMA_MAX_FIELDS 32
#define SG_MAX_LISTENERS     64
#define SG_MAX_ROUTES        256

#define SG_MS_PER_DAY  86400000u
#define SG_S_PER_DAY   86400u
#define SG_S_PER_MONTH (30u * 86400u)

enum node_type {
    NODE_NULL,
    NODE_BOOL,
    NODE_NUMBER,
    NODE_STRING,
    NODE_OBJECT,
    NODE_ARRAY,
};

struct member;

/* One JSON value of the parsed tree. */
struct node {
    enum node_type type;
    bool boolean;
    char *text;             /* string value, or a number as written; NUL-terminated */
    size_t len;             /* bytes in text, which may itself contain a NUL */
    struct member *members; /* object members, or array items (key NULL) */
    size_t count;
    size_t cap;
};

struct member {
    char *key;
    size_t key_len;
    struct node *value;
};

struct builder {
    struct node *root;
    struct node *stack[SG_CONFIG_MAX_DEPTH];
    size_t depth;
    char *key; /* object key waiting for its value */
    size_t key_len;
    size_t values;
    const char *error; /* why a callback stopped the parse; NULL = yajl's own error */
};

/* The state of one parse: where we are (for the error record) and what the
 * IdP's secret is to be read from once its whole object is known. */
struct parser {
    struct sg_config_error *err;
    const char *base_dir; /* NULL keeps relative file names as written */
    char path[sizeof(((struct sg_config_error *)0)->key)];
    size_t path_len;
    char *secret_file;   /* resolved idp.client_secret_file */
    char *secret_env;    /* idp.client_secret_env */
    char *conninfo_file; /* resolved store.conninfo_file */
    char *conninfo_env;  /* store.conninfo_env */
};

struct enum_name {
    const char *name;
    int value;
};

enum field_kind {
    FIELD_STRING, /* char *, optionally checked by field.check */
    FIELD_FILE,   /* char *, resolved against the base directory */
    FIELD_URL,    /* struct sg_url */
    FIELD_BOOL,   /* bool */
    FIELD_INT,    /* uint16_t, uint32_t or uint64_t (field.size) within min..max */
    FIELD_LIST,   /* NULL-terminated char **, min..max items, each checked by field.check */
    FIELD_ENUM,   /* an enum, from field.names */
    FIELD_OBJECT, /* a nested object described by field.object */
    FIELD_CUSTOM, /* field.parse does it all, given the object's base */
};

struct object_schema;

struct field {
    const char *name;
    enum field_kind kind;
    size_t offset;
    size_t size;
    bool required;
    uint64_t min;
    uint64_t max;
    int (*check)(struct parser *p, const char *value);
    const struct enum_name *names;
    const struct object_schema *object;
    int (*parse)(struct parser *p, const struct node *value, void *base);
};

struct object_schema {
    const struct field *fields;
    size_t count;
    int (*check)(struct parser *p, void *base); /* cross-field checks once the object is read */
};

/* Enums are stored through an int: make sure that is their size. */
_Static_assert(sizeof(enum sg_auth_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum sg_identity_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum sg_token_auth) == sizeof(int), "enum size");
_Static_assert(sizeof(enum sg_log_level) == sizeof(int), "enum size");

/* ---- the tree ---------------------------------------------------------- */

static void node_free(struct node *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->count; i++) {
        free(n->members[i].key);
        node_free(n->members[i].value);
    }
    free(n->members);
    free(n->text);
    free(n);
}

/* Creates a value and attaches it to the open container (or makes it the
 * root), taking the pending object key. Returns NULL when the value cap is
 * reached. */
static struct node *builder_add(struct builder *b, enum node_type type)
{
    if (b->values >= SG_CONFIG_MAX_VALUES) {
        b->error = "too many JSON values";
        return NULL;
    }
    if (b->depth == 0 && b->root != NULL) {
        b->error = "more than one top-level value";
        return NULL;
    }
    struct node *n = sg_calloc(1, sizeof(*n));
    n->type = type;
    b->values++;
    if (b->depth == 0) {
        b->root = n;
        return n;
    }
    struct node *parent = b->stack[b->depth - 1];
    if (parent->count == parent->cap) {
        parent->cap = parent->cap ? parent->cap * 2 : 8;
        parent->members = sg_realloc(parent->members, parent->cap * sizeof(*parent->members));
    }
    parent->members[parent->count++] = (struct member){b->key, b->key_len, n};
    b->key = NULL;
    b->key_len = 0;
    return n;
}

static int on_null(void *ctx)
{
    return builder_add(ctx, NODE_NULL) != NULL;
}

static int on_boolean(void *ctx, int value)
{
    struct node *n = builder_add(ctx, NODE_BOOL);
    if (n == NULL)
        return 0;
    n->boolean = value != 0;
    return 1;
}

static int on_text(void *ctx, enum node_type type, const char *text, size_t len)
{
    struct node *n = builder_add(ctx, type);
    if (n == NULL)
        return 0;
    n->text = sg_strndup(text, len);
    n->len = len;
    return 1;
}

static int on_number(void *ctx, const char *text, size_t len)
{
    return on_text(ctx, NODE_NUMBER, text, len);
}

static int on_string(void *ctx, const unsigned char *text, size_t len)
{
    return on_text(ctx, NODE_STRING, (const char *)text, len);
}

static int on_start(struct builder *b, enum node_type type)
{
    if (b->depth == SG_CONFIG_MAX_DEPTH) {
        b->error = "JSON nesting is too deep";
        return 0;
    }
    struct node *n = builder_add(b, type);
    if (n == NULL)
        return 0;
    b->stack[b->depth++] = n;
    return 1;
}

static int on_start_map(void *ctx)
{
    return on_start(ctx, NODE_OBJECT);
}

static int on_start_array(void *ctx)
{
    return on_start(ctx, NODE_ARRAY);
}

static int on_map_key(void *ctx, const unsigned char *key, size_t len)
{
    struct builder *b = ctx;
    free(b->key);
    b->key = sg_strndup((const char *)key, len);
    b->key_len = len;
    return 1;
}

static int on_end(void *ctx)
{
    struct builder *b = ctx;
    b->depth--;
    return 1;
}

/* ---- errors and key paths ---------------------------------------------- */

/* Records the current key path and a message; returns SG_ECONFIG. */
__attribute__((format(printf, 2, 3))) static int fail(struct parser *p, const char *fmt, ...)
{
    snprintf(p->err->key, sizeof(p->err->key), "%s", p->path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err->message, sizeof(p->err->message), fmt, ap);
    va_end(ap);
    return SG_ECONFIG;
}

static void path_append(struct parser *p, const char *s, size_t len)
{
    size_t room = sizeof(p->path) - 1 - p->path_len;
    if (len > room)
        len = room;
    memcpy(p->path + p->path_len, s, len);
    p->path_len += len;
    p->path[p->path_len] = '\0';
}

static void path_pop(struct parser *p, size_t saved)
{
    p->path_len = saved;
    p->path[saved] = '\0';
}

/* Appends ".key" (or "key" at the top); returns the length to pop back to.
 * Unknown keys come from the input: bytes that are not printable ASCII are
 * shown as '?' so the error record stays one clean line. */
static size_t path_push_key(struct parser *p, const char *key, size_t len)
{
    size_t saved = p->path_len;
    if (p->path_len > 0)
        path_append(p, ".", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)key[i];
        char shown = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
        path_append(p, &shown, 1);
    }
    return saved;
}

static size_t path_push_index(struct parser *p, size_t index)
{
    size_t saved = p->path_len;
    char text[32];
    int n = snprintf(text, sizeof(text), "[%zu]", index);
    path_append(p, text, (size_t)n);
    return saved;
}

/* Fails with the message at the key name below the current path. */
__attribute__((format(printf, 3, 4))) static int fail_at(struct parser *p, const char *key,
                                                         const char *fmt, ...)
{
    size_t saved = path_push_key(p, key, strlen(key));
    snprintf(p->err->key, sizeof(p->err->key), "%s", p->path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err->message, sizeof(p->err->message), fmt, ap);
    va_end(ap);
    path_pop(p, saved);
    return SG_ECONFIG;
}

/* ---- reading the input ------------------------------------------------- */

/* Reads at most max bytes of a regular file into a new NUL-terminated
 * buffer handed back in *out. Returns 0, SG_EIO (errno set), SG_EINVAL (not
 * a regular file) or SG_ETOOBIG. Opened without blocking: a FIFO would hold
 * the open (and a reload's event loop) until a writer came. */
static int read_file(const char *path, size_t max, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return SG_EIO;
    int rc = 0;
    char *buf = NULL;
    size_t len = 0;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = SG_EIO;
        goto end;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = SG_EINVAL;
        goto end;
    }
    if ((uint64_t)st.st_size > max) {
        rc = SG_ETOOBIG;
        goto end;
    }
    /* One byte more than allowed tells a file that grew since fstat. */
    buf = sg_malloc(max + 2);
    while (len <= max) {
        ssize_t n = read(fd, buf + len, max + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = SG_EIO;
            goto end;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len > max) {
        rc = SG_ETOOBIG;
        goto end;
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    buf = NULL;
end:
    if (buf != NULL) {
        OPENSSL_cleanse(buf, max + 2);
        free(buf);
    }
    int saved_errno = errno;
    close(fd);
    errno = saved_errno;
    return rc;
}

/* Fills the error record for a read_file failure; what names the file. */
static void read_error(struct parser *p, int rc, const char *what, size_t max)
{
    if (rc == SG_ETOOBIG)
        fail(p, "%s is larger than %zu bytes", what, max);
    else if (rc == SG_EINVAL)
        fail(p, "%s is not a regular file", what);
    else
        fail(p, "cannot read %s: %s", what, strerror(errno));
}

/* Parses json into a tree handed back in *out. Returns 0 or SG_ECONFIG. */
static int tree_parse(struct parser *p, const char *json, size_t len, struct node **out)
{
    static const yajl_callbacks callbacks = {
        .yajl_null = on_null,
        .yajl_boolean = on_boolean,
        .yajl_number = on_number,
        .yajl_string = on_string,
        .yajl_start_map = on_start_map,
        .yajl_map_key = on_map_key,
        .yajl_end_map = on_end,
        .yajl_start_array = on_start_array,
        .yajl_end_array = on_end,
    };
    struct builder b = {0};
    *out = NULL;
    yajl_handle h = yajl_alloc(&callbacks, NULL, &b);
    if (h == NULL) {
        fprintf(stderr, "ssogate: out of memory allocating the JSON parser\n");
        abort();
    }
    /* yajl's defaults are what we want: strict JSON, no comments, UTF-8
     * validated, one value, no trailing garbage. */
    bool at_end = false;
    yajl_status status = yajl_parse(h, (const unsigned char *)json, len);
    if (status == yajl_status_ok) {
        at_end = true;
        status = yajl_complete_parse(h);
    }
    if (status == yajl_status_ok) {
        *out = b.root;
        yajl_free(h);
        return 0;
    }
    int rc;
    if (b.error != NULL) {
        rc = fail(p, "%s (at most %d levels and %d values)", b.error, SG_CONFIG_MAX_DEPTH,
                  SG_CONFIG_MAX_VALUES);
    } else {
        /* yajl's short message does not quote the input; the long one would. */
        size_t offset = at_end ? len : yajl_get_bytes_consumed(h);
        if (offset > len)
            offset = len;
        size_t line = 1, column = 1;
        for (size_t i = 0; i < offset; i++) {
            if (json[i] == '\n') {
                line++;
                column = 1;
            } else {
                column++;
            }
        }
        unsigned char *message = yajl_get_error(h, 0, NULL, 0);
        const char *text = message ? (const char *)message : "unknown error";
        size_t text_len = strlen(text);
        while (text_len > 0 && (text[text_len - 1] == '\n' || text[text_len - 1] == ' '))
            text_len--;
        rc = fail(p, "invalid JSON at line %zu, column %zu: %.*s", line, column, (int)text_len,
                  text);
        if (message != NULL)
            yajl_free_error(h, message);
    }
    yajl_free(h);
    free(b.key);
    node_free(b.root);
    return rc;
}

/* ---- URLs ---------------------------------------------------------------- */

static bool is_host_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

/* sg_url_parse with a reason for the error record (*why, static text).
 * out owns its strings on success and is zeroed on failure. */
static int url_parse(const char *text, struct sg_url *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    size_t len = strlen(text);
    if (len == 0 || len > SG_URL_MAX_BYTES) {
        *why = "must be 1 to 2048 characters";
        return SG_EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c <= 0x20 || c >= 0x7f || c == '\\') {
            *why = "must not contain spaces, backslashes, control or non-ASCII characters";
            return SG_EINVAL;
        }
    }
    if (strpbrk(text, "?#") != NULL) {
        *why = "must not have a query or a fragment";
        return SG_EINVAL;
    }
    bool https;
    const char *authority;
    if (strncasecmp(text, "https://", 8) == 0) {
        https = true;
        authority = text + 8;
    } else if (strncasecmp(text, "http://", 7) == 0) {
        https = false;
        authority = text + 7;
    } else {
        *why = "must start with http:// or https://";
        return SG_EINVAL;
    }
    const char *authority_end = strchr(authority, '/');
    if (authority_end == NULL)
        authority_end = text + len;
    size_t authority_len = (size_t)(authority_end - authority);
    if (memchr(authority, '@', authority_len) != NULL) {
        *why = "must not contain user information (user:password@)";
        return SG_EINVAL;
    }
    const char *host, *host_end, *rest;
    if (authority[0] == '[') {
        host = authority + 1;
        host_end = memchr(host, ']', (size_t)(authority_end - host));
        if (host_end == NULL) {
            *why = "has an unterminated [IPv6] address";
            return SG_EINVAL;
        }
        char address[INET6_ADDRSTRLEN];
        size_t host_len = (size_t)(host_end - host);
        unsigned char binary[16];
        if (host_len == 0 || host_len >= sizeof(address)) {
            *why = "has an invalid IPv6 address";
            return SG_EINVAL;
        }
        memcpy(address, host, host_len);
        address[host_len] = '\0';
        if (inet_pton(AF_INET6, address, binary) != 1) {
            *why = "has an invalid IPv6 address";
            return SG_EINVAL;
        }
        rest = host_end + 1;
    } else {
        host = authority;
        host_end = memchr(host, ':', authority_len);
        if (host_end == NULL)
            host_end = authority_end;
        if (host_end == host) {
            *why = "must have a host";
            return SG_EINVAL;
        }
        if (host_end - host > 253) {
            *why = "has a host name longer than 253 characters";
            return SG_EINVAL;
        }
        for (const char *c = host; c < host_end; c++) {
            if (!is_host_char((unsigned char)*c)) {
                *why = "has an invalid host name";
                return SG_EINVAL;
            }
        }
        rest = host_end;
    }
    uint32_t port = https ? 443 : 80;
    if (rest < authority_end) {
        if (*rest != ':') {
            *why = "has characters after the host";
            return SG_EINVAL;
        }
        const char *digits = rest + 1;
        size_t count = (size_t)(authority_end - digits);
        if (count == 0 || count > 5) {
            *why = "has an invalid port";
            return SG_EINVAL;
        }
        port = 0;
        for (size_t i = 0; i < count; i++) {
            if (digits[i] < '0' || digits[i] > '9') {
                *why = "has an invalid port";
                return SG_EINVAL;
            }
            port = port * 10 + (uint32_t)(digits[i] - '0');
        }
        if (port == 0 || port > 65535) {
            *why = "has a port outside 1..65535";
            return SG_EINVAL;
        }
    }
    size_t path_len = (size_t)(text + len - authority_end);
    while (path_len > 0 && authority_end[path_len - 1] == '/')
        path_len--;
    out->text = sg_strndup(text, (size_t)(authority_end - text) + path_len);
    out->https = https;
    out->host = sg_strndup(host, (size_t)(host_end - host));
    out->port = (uint16_t)port;
    out->path = sg_strndup(authority_end, path_len);
    return 0;
}

int sg_url_parse(const char *text, struct sg_url *out)
{
    const char *why;
    if (text == NULL) {
        memset(out, 0, sizeof(*out));
        return SG_EINVAL;
    }
    return url_parse(text, out, &why);
}

void sg_url_clear(struct sg_url *url)
{
    if (url == NULL)
        return;
    free(url->text);
    free(url->host);
    free(url->path);
    memset(url, 0, sizeof(*url));
}

/* ---- value checks -------------------------------------------------------- */

static const char *type_name(enum node_type type)
{
    switch (type) {
    case NODE_NULL:
        return "null";
    case NODE_BOOL:
        return "a boolean";
    case NODE_NUMBER:
        return "a number";
    case NODE_STRING:
        return "a string";
    case NODE_OBJECT:
        return "an object";
    case NODE_ARRAY:
        return "an array";
    }
    return "unknown";
}

/* A non-empty string without control characters (NUL included); *out is
 * borrowed from the tree. */
static int string_value(struct parser *p, const struct node *v, const char **out)
{
    if (v->type != NODE_STRING)
        return fail(p, "must be a string, not %s", type_name(v->type));
    if (v->len == 0)
        return fail(p, "must not be empty");
    if (v->len > SG_STRING_MAX_BYTES)
        return fail(p, "must be at most %d bytes", SG_STRING_MAX_BYTES);
    for (size_t i = 0; i < v->len; i++) {
        unsigned char c = (unsigned char)v->text[i];
        if (c < 0x20 || c == 0x7f)
            return fail(p, "must not contain control characters");
    }
    *out = v->text;
    return 0;
}

/* A non-negative integer written without fraction or exponent, within
 * min..max. The number is read from its text, so values beyond 64 bits are
 * refused rather than rounded. */
static int integer_value(struct parser *p, const struct node *v, uint64_t min, uint64_t max,
                         uint64_t *out)
{
    if (v->type != NODE_NUMBER)
        return fail(p, "must be an integer, not %s", type_name(v->type));
    const char *s = v->text;
    if (s[0] == '-')
        return fail(p, "must not be negative");
    if (strpbrk(s, ".eE") != NULL)
        return fail(p, "must be a whole number (no fraction or exponent)");
    uint64_t value = 0;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return fail(p, "must be an integer");
        unsigned digit = (unsigned)(*s - '0');
        if (value > (UINT64_MAX - digit) / 10)
            return fail(p, "must be between %" PRIu64 " and %" PRIu64, min, max);
        value = value * 10 + digit;
    }
    if (value < min || value > max)
        return fail(p, "must be between %" PRIu64 " and %" PRIu64, min, max);
    *out = value;
    return 0;
}

/* A path on the gateway's own site: "/x/y", without anything a browser or
 * the upstream could read differently from us. */
static int check_site_path(struct parser *p, const char *s)
{
    if (s[0] != '/')
        return fail(p, "must start with /");
    if (s[1] == '/')
        return fail(p, "must not start with //");
    for (const char *c = s; *c != '\0'; c++) {
        if (*c == ' ' || *c == '?' || *c == '#' || *c == '\\' || (unsigned char)*c >= 0x7f)
            return fail(p, "must be a plain path (no spaces, ?, #, \\ or non-ASCII)");
    }
    for (const char *segment = s + 1; segment != NULL;) {
        const char *slash = strchr(segment, '/');
        size_t n = slash ? (size_t)(slash - segment) : strlen(segment);
        if ((n == 1 && segment[0] == '.') || (n == 2 && segment[0] == '.' && segment[1] == '.'))
            return fail(p, "must not contain . or .. segments");
        segment = slash ? slash + 1 : NULL;
    }
    return 0;
}

static int check_route_prefix(struct parser *p, const char *s)
{
    int rc = check_site_path(p, s);
    if (rc != 0)
        return rc;
    if (strcmp(s, "/_sso") == 0 || strncmp(s, "/_sso/", 6) == 0)
        return fail(p, "must not be under /_sso/, which belongs to the gateway");
    /* Requests are matched on their normalised path: a prefix in another
     * form would never match anything. */
    struct sg_target_options opts = {0};
    struct sg_target target;
    size_t len = strlen(s);
    while (len > 1 && s[len - 1] == '/')
        len--;
    bool same = sg_target_normalize(s, len, &opts, &target) == SG_TARGET_OK &&
                strlen(target.match) == len && memcmp(target.match, s, len) == 0;
    sg_target_clear(&target);
    if (!same)
        return fail(p, "must be a normalised path (no '.', '..', '//', ';', escapes of "
                       "unreserved characters, lower-case hex)");
    return 0;
}

/* An RFC 6901 JSON pointer into the whoami answer. */
static int check_pointer(struct parser *p, const char *s)
{
    if (s[0] != '/')
        return fail(p, "must be a JSON pointer starting with /");
    for (const char *c = s; *c != '\0'; c++) {
        if (*c == '~' && c[1] != '0' && c[1] != '1')
            return fail(p, "has a ~ not followed by 0 or 1");
    }
    return 0;
}

/* RFC 6749 scope-token, also used for amr values: printable, no space,
 * quote or backslash. */
static int check_token(struct parser *p, const char *s)
{
    for (const char *c = s; *c != '\0'; c++) {
        if (*c == ' ' || *c == '"' || *c == '\\' || (unsigned char)*c >= 0x7f)
            return fail(p, "must not contain spaces, quotes, backslashes or non-ASCII");
    }
    return 0;
}

static int check_algorithm(struct parser *p, const char *s)
{
    static const char *const allowed[] = {"RS256", "PS256", "ES256", "EdDSA"};
    for (size_t i = 0; i < SG_ARRAY_LEN(allowed); i++) {
        if (strcmp(s, allowed[i]) == 0)
            return 0;
    }
    return fail(p, "must be one of RS256, PS256, ES256, EdDSA (none and HMAC are never allowed)");
}

/* RFC 6265 cookie-name (an RFC 7230 token). The gateway adds "__Host-"
 * itself for an https site, so a configured prefix would be doubled. */
static int check_cookie_name(struct parser *p, const char *s)
{
    static const char specials[] = "!#$%&'*+-.^_`|~";
    if (strlen(s) > 64)
        return fail(p, "must be at most 64 characters");
    for (const char *c = s; *c != '\0'; c++) {
        unsigned char u = (unsigned char)*c;
        bool alnum = (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9');
        if (!alnum && strchr(specials, u) == NULL)
            return fail(p, "must be a cookie name token (letters, digits, !#$%%&'*+-.^_`|~)");
    }
    if (strncasecmp(s, "__Host-", 7) == 0 || strncasecmp(s, "__Secure-", 9) == 0)
        return fail(p, "must not start with __Host- or __Secure- (the gateway adds __Host-)");
    return 0;
}

static int check_address(struct parser *p, const char *s)
{
    unsigned char binary[16];
    if (inet_pton(AF_INET, s, binary) != 1 && inet_pton(AF_INET6, s, binary) != 1)
        return fail(p, "must be a numeric IPv4 or IPv6 address (no brackets, no host name)");
    return 0;
}

static int check_env_name(struct parser *p, const char *s)
{
    for (const char *c = s; *c != '\0'; c++) {
        unsigned char u = (unsigned char)*c;
        bool ok = (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || u == '_' ||
                  (c != s && u >= '0' && u <= '9');
        if (!ok)
            return fail(p, "must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)");
    }
    return 0;
}

static int check_region_name(struct parser *p, const char *s)
{
    if (strlen(s) > 32)
        return fail(p, "must be at most 32 characters");
    return check_token(p, s);
}

/* Resolves a relative file name against the base directory; the result is
 * handed back in *out. */
static int resolve_file(struct parser *p, const char *name, char **out)
{
    char *resolved = NULL;
    if (name[0] == '/' || p->base_dir == NULL || p->base_dir[0] == '\0')
        resolved = sg_strdup(name);
    else
        resolved = sg_asprintf("%s/%s", p->base_dir, name);
    if (strlen(resolved) >= PATH_MAX) {
        free(resolved);
        return fail(p, "is longer than %d bytes once resolved", PATH_MAX - 1);
    }
    *out = resolved;
    return 0;
}

/*
 * A file that OpenSSL reads later (certificates, keys, CAs) must be a regular
 * file of at most SG_PEM_MAX_BYTES: a FIFO would block the check or the
 * reload's event loop until a writer came, a device (/dev/zero) would never
 * end. One that cannot be looked at is left to the loader, which says why.
 */
static int file_check(struct parser *p, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return 0;
    if (!S_ISREG(st.st_mode))
        return fail(p, "%s is not a regular file", path);
    if (st.st_size > SG_PEM_MAX_BYTES)
        return fail(p, "%s is larger than %d bytes", path, SG_PEM_MAX_BYTES);
    return 0;
}

/* Frees a NULL-terminated list and its strings; NULL-safe. */
static void list_free(char **list)
{
    if (list == NULL)
        return;
    for (char **item = list; *item != NULL; item++)
        free(*item);
    free(list);
}

/* A new NULL-terminated list of copies of items; the caller owns it. */
static char **list_new(const char *const *items, size_t count)
{
    char **list = sg_calloc(count + 1, sizeof(*list));
    for (size_t i = 0; i < count; i++)
        list[i] = sg_strdup(items[i]);
    return list;
}

/* ---- the schema walk ----------------------------------------------------- */

static int parse_object(struct parser *p, const struct node *obj,
                        const struct object_schema *schema, void *base);

/* Stores in *out the value of the name in v; names ends with a NULL name. */
static int parse_enum(struct parser *p, const struct node *v, const struct enum_name *names,
                      int *out)
{
    const char *s = NULL;
    int rc = string_value(p, v, &s);
    if (rc != 0)
        return rc;
    char expected[128] = "";
    size_t used = 0;
    for (size_t i = 0; names[i].name != NULL; i++) {
        if (strcmp(s, names[i].name) == 0) {
            *out = names[i].value;
            return 0;
        }
        int n = snprintf(expected + used, sizeof(expected) - used, "%s%s", i ? ", " : "",
                         names[i].name);
        if (n > 0 && (size_t)n < sizeof(expected) - used)
            used += (size_t)n;
    }
    return fail(p, "must be one of: %s", expected);
}

/* Replaces the list in *out (the old one is freed) with copies of v's
 * strings, only once every item passed f->check. */
static int parse_list(struct parser *p, const struct field *f, const struct node *v, char ***out)
{
    if (v->type != NODE_ARRAY)
        return fail(p, "must be an array, not %s", type_name(v->type));
    if (v->count < f->min || v->count > f->max)
        return fail(p, "must have %" PRIu64 " to %" PRIu64 " items", f->min, f->max);
    char **list = sg_calloc(v->count + 1, sizeof(*list));
    for (size_t i = 0; i < v->count; i++) {
        size_t saved = path_push_index(p, i);
        const char *s = NULL;
        int rc = string_value(p, v->members[i].value, &s);
        if (rc == 0 && f->check != NULL)
            rc = f->check(p, s);
        path_pop(p, saved);
        if (rc != 0) {
            list_free(list);
            return rc;
        }
        list[i] = sg_strdup(s);
    }
    list_free(*out);
    *out = list;
    return 0;
}

/* Checks v and stores it in base at f's offset, replacing (and freeing)
 * the default there; the configuration owns what is stored. */
static int parse_field(struct parser *p, const struct field *f, const struct node *v, void *base)
{
    void *target = (char *)base + f->offset;
    const char *s = NULL;
    uint64_t number = 0;
    int rc;
    switch (f->kind) {
    case FIELD_STRING:
        if ((rc = string_value(p, v, &s)) != 0)
            return rc;
        if (f->check != NULL && (rc = f->check(p, s)) != 0)
            return rc;
        free(*(char **)target);
        *(char **)target = sg_strdup(s);
        return 0;
    case FIELD_FILE: {
        char *resolved = NULL;
        if ((rc = string_value(p, v, &s)) != 0 || (rc = resolve_file(p, s, &resolved)) != 0)
            return rc;
        if (f->check != NULL && (rc = f->check(p, resolved)) != 0) {
            free(resolved);
            return rc;
        }
        free(*(char **)target);
        *(char **)target = resolved;
        return 0;
    }
    case FIELD_URL: {
        struct sg_url url;
        const char *why;
        if ((rc = string_value(p, v, &s)) != 0)
            return rc;
        if (url_parse(s, &url, &why) != 0)
            return fail(p, "is not a valid http(s) URL: %s", why);
        sg_url_clear(target);
        *(struct sg_url *)target = url;
        return 0;
    }
    case FIELD_BOOL:
        if (v->type != NODE_BOOL)
            return fail(p, "must be true or false, not %s", type_name(v->type));
        *(bool *)target = v->boolean;
        return 0;
    case FIELD_INT:
        if ((rc = integer_value(p, v, f->min, f->max, &number)) != 0)
            return rc;
        if (f->size == sizeof(uint16_t))
            *(uint16_t *)target = (uint16_t)number;
        else if (f->size == sizeof(uint32_t))
            *(uint32_t *)target = (uint32_t)number;
        else
            *(uint64_t *)target = number;
        return 0;
    case FIELD_LIST:
        return parse_list(p, f, v, target);
    case FIELD_ENUM:
        return parse_enum(p, v, f->names, target);
    case FIELD_OBJECT:
        return parse_object(p, v, f->object, target);
    case FIELD_CUSTOM:
        return f->parse(p, v, base);
    }
    return fail(p, "internal error: unknown field kind");
}

static const struct field *find_field(const struct object_schema *schema, const char *key,
                                      size_t len)
{
    for (size_t i = 0; i < schema->count; i++) {
        const char *name = schema->fields[i].name;
        if (strlen(name) == len && memcmp(name, key, len) == 0)
            return &schema->fields[i];
    }
    return NULL;
}

/* Reads obj into base as the schema says: every key known, none twice,
 * every required one present, then the schema's cross-field check. */
static int parse_object(struct parser *p, const struct node *obj,
                        const struct object_schema *schema, void *base)
{
    bool seen[SG_SCHEMA_MAX_FIELDS] = {false};
    if (obj->type != NODE_OBJECT)
        return fail(p, "must be an object, not %s", type_name(obj->type));
    for (size_t i = 0; i < obj->count; i++) {
        const struct member *m = &obj->members[i];
        size_t saved = path_push_key(p, m->key, m->key_len);
        const struct field *f = find_field(schema, m->key, m->key_len);
        int rc;
        if (f == NULL) {
            rc = fail(p, "unknown key");
        } else if (seen[f - schema->fields]) {
            rc = fail(p, "duplicate key");
        } else {
            seen[f - schema->fields] = true;
            rc = parse_field(p, f, m->value, base);
        }
        path_pop(p, saved);
        if (rc != 0)
            return rc;
    }
    for (size_t i = 0; i < schema->count; i++) {
        if (schema->fields[i].required && !seen[i])
            return fail_at(p, schema->fields[i].name, "is required");
    }
    return schema->check != NULL ? schema->check(p, base) : 0;
}

#define SG_FIELD(k, key, type, member, req)                                                        \
    .name = key, .kind = k, .offset = offsetof(type, member), .size = sizeof(((type *)0)->member), \
    .required = req
#define SG_F_STRING(key, type, member, req, chk)                                                   \
    {                                                                                              \
        SG_FIELD(FIELD_STRING, key, type, member, req), .check = chk                               \
    }
/* A file OpenSSL reads (file_check); SG_F_PATH: any path, such as a directory. */
#define SG_F_FILE(key, type, member, req)                                                          \
    {                                                                                              \
        SG_FIELD(FIELD_FILE, key, type, member, req), .check = file_check                          \
    }
#define SG_F_PATH(key, type, member, req)                                                          \
    {                                                                                              \
        SG_FIELD(FIELD_FILE, key, type, member, req)                                               \
    }
#define SG_F_URL(key, type, member, req)                                                           \
    {                                                                                              \
        SG_FIELD(FIELD_URL, key, type, member, req)                                                \
    }
#define SG_F_BOOL(key, type, member)                                                               \
    {                                                                                              \
        SG_FIELD(FIELD_BOOL, key, type, member, false)                                             \
    }
#define SG_F_INT(key, type, member, req, lo, hi)                                                   \
    {                                                                                              \
        SG_FIELD(FIELD_INT, key, type, member, req), .min = lo, .max = hi                          \
    }
#define SG_F_LIST(key, type, member, lo, hi, chk)                                                  \
    {                                                                                              \
        SG_FIELD(FIELD_LIST, key, type, member, false), .min = lo, .max = hi, .check = chk         \
    }
#define SG_F_ENUM(key, type, member, req, table)                                                   \
    {                                                                                              \
        SG_FIELD(FIELD_ENUM, key, type, member, req), .names = table                               \
    }
#define SG_F_OBJECT(key, type, member, req, schema)                                                \
    {                                                                                              \
        SG_FIELD(FIELD_OBJECT, key, type, member, req), .object = &schema                          \
    }
/* An object whose keys fill fields of the enclosing struct itself. */
#define SG_F_INLINE(key, req, schema)                                                              \
    {                                                                                              \
        .name = key, .kind = FIELD_OBJECT, .required = req, .object = &schema                      \
    }
#define SG_F_CUSTOM(key, req, fn)                                                                  \
    {                                                                                              \
        .name = key, .kind = FIELD_CUSTOM, .required = req, .parse = fn                            \
    }
#define SG_SCHEMA(fields, chk)                                                                     \
    {                                                                                              \
        fields, SG_ARRAY_LEN(fields), chk                                                          \
    }

static const struct enum_name auth_names[] = {
    {"none", SG_AUTH_NONE},
    {"optional", SG_AUTH_OPTIONAL},
    {"required", SG_AUTH_REQUIRED},
    {NULL, 0},
};

static const struct enum_name identity_names[] = {
    {"link", SG_IDENTITY_LINK},
    {"claims", SG_IDENTITY_CLAIMS},
    {NULL, 0},
};

static const struct enum_name store_type_names[] = {
    {"lmdb", SG_STORE_TYPE_LMDB},
    {"postgresql", SG_STORE_TYPE_POSTGRESQL},
    {NULL, 0},
};

static const struct enum_name paths_names[] = {
    {"case-sensitive", SG_PATHS_CASE_SENSITIVE},
    {"case-insensitive", SG_PATHS_CASE_INSENSITIVE},
    {NULL, 0},
};

static const struct enum_name escaped_slashes_names[] = {
    {"refuse", SG_ESCAPED_SLASHES_REFUSE},
    {"keep", SG_ESCAPED_SLASHES_KEEP},
    {NULL, 0},
};

static const struct enum_name host_header_names[] = {
    {"public", SG_HOST_HEADER_PUBLIC},
    {"upstream", SG_HOST_HEADER_UPSTREAM},
    {NULL, 0},
};

static const struct enum_name token_auth_names[] = {
    {"client_secret_basic", SG_TOKEN_AUTH_CLIENT_SECRET_BASIC},
    {"client_secret_post", SG_TOKEN_AUTH_CLIENT_SECRET_POST},
    {"private_key_jwt", SG_TOKEN_AUTH_PRIVATE_KEY_JWT},
    {NULL, 0},
};

static const struct enum_name log_level_names[] = {
    {"debug", SG_LOG_DEBUG},
    {"info", SG_LOG_INFO},
    {"warn", SG_LOG_WARN},
    {"error", SG_LOG_ERROR},
    {NULL, 0},
};

static const char *const default_scopes[] = {"openid", "email", "profile"};
static const char *const default_algorithms[] = {"RS256", "PS256", "ES256", "EdDSA"};
static const char *const default_amr[] = {"otp", "mfa"};

/* The regions of the article and the module URL each expects. */
static const struct {
    const char *name;
    const char *module_url;
} regions[] = {
    {"US", "https://bms.kaseya.com"},
    {"UK", "https://bmsemea.kaseya.com"},
    {"APAC", "https://bmsapac.kaseya.com"},
};

/* -- listeners -- */

static const struct field tls_fields[] = {
    SG_F_FILE("cert", struct sg_listener_config, tls_cert, true),
    SG_F_FILE("key", struct sg_listener_config, tls_key, true),
};
static const struct object_schema tls_schema = SG_SCHEMA(tls_fields, NULL);

static const struct field listener_fields[] = {
    SG_F_STRING("address", struct sg_listener_config, address, true, check_address),
    SG_F_INT("port", struct sg_listener_config, port, true, 0, 65535),
    SG_F_INLINE("tls", false, tls_schema),
};
static const struct object_schema listener_schema = SG_SCHEMA(listener_fields, NULL);

/* Reads 1..64 listeners; two may not share an address and a fixed port. */
static int parse_listeners(struct parser *p, const struct node *v, void *base)
{
    struct sg_config *cfg = base;
    if (v->type != NODE_ARRAY)
        return fail(p, "must be an array, not %s", type_name(v->type));
    if (v->count == 0 || v->count > SG_MAX_LISTENERS)
        return fail(p, "must have 1 to %d listeners", SG_MAX_LISTENERS);
    cfg->listeners = sg_calloc(v->count, sizeof(*cfg->listeners));
    cfg->listener_count = v->count;
    for (size_t i = 0; i < v->count; i++) {
        struct sg_listener_config *l = &cfg->listeners[i];
        size_t saved = path_push_index(p, i);
        int rc = parse_object(p, v->members[i].value, &listener_schema, l);
        for (size_t j = 0; rc == 0 && j < i; j++) {
            const struct sg_listener_config *other = &cfg->listeners[j];
            if (l->port != 0 && l->port == other->port && strcmp(l->address, other->address) == 0)
                rc = fail(p, "same address and port as listeners[%zu]", j);
        }
        path_pop(p, saved);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* -- trusted_proxies, metrics_from -- */

/* Reads 0..64 address blocks into *out (n of them); the same block twice is refused as a likely
 * slip. */
static int parse_blocks(struct parser *p, const struct node *v, struct sg_cidr **out, size_t *n)
{
    if (v->type != NODE_ARRAY)
        return fail(p, "must be an array, not %s", type_name(v->type));
    if (v->count > SG_MAX_ADDRESS_BLOCKS)
        return fail(p, "must have at most %d address blocks", SG_MAX_ADDRESS_BLOCKS);
    free(*out);
    *out = sg_calloc(v->count + 1, sizeof(**out));
    *n = 0;
    for (size_t i = 0; i < v->count; i++) {
        size_t saved = path_push_index(p, i);
        const char *text;
        const char *why;
        struct sg_cidr *c = &(*out)[i];
        int rc = string_value(p, v->members[i].value, &text);
        if (rc == 0 && sg_cidr_parse(text, c, &why) != 0)
            rc = fail(p, "%s", why);
        for (size_t j = 0; rc == 0 && j < i; j++) {
            if (memcmp(c, &(*out)[j], sizeof(*c)) == 0)
                rc = fail(p, "the same block as [%zu]", j);
        }
        path_pop(p, saved);
        if (rc != 0)
            return rc;
        (*n)++;
    }
    return 0;
}

static int parse_trusted_proxies(struct parser *p, const struct node *v, void *base)
{
    struct sg_config *cfg = base;
    return parse_blocks(p, v, &cfg->trusted_proxies, &cfg->trusted_proxy_count);
}

static int parse_metrics_from(struct parser *p, const struct node *v, void *base)
{
    struct sg_config *cfg = base;
    return parse_blocks(p, v, &cfg->metrics_from, &cfg->metrics_from_count);
}

/* -- upstream, psa -- */

static const struct field upstream_fields[] = {
    SG_F_URL("url", struct sg_upstream_config, url, true),
    SG_F_FILE("ca_file", struct sg_upstream_config, ca_file, false),
    SG_F_INT("connect_timeout_ms", struct sg_upstream_config, connect_timeout_ms, false, 1,
             SG_MS_PER_DAY),
    SG_F_INT("response_timeout_ms", struct sg_upstream_config, response_timeout_ms, false, 1,
             SG_MS_PER_DAY),
    SG_F_INT("pool_size", struct sg_upstream_config, pool_size, false, 1, 4096),
    SG_F_ENUM("paths", struct sg_upstream_config, paths, false, paths_names),
    SG_F_ENUM("escaped_slashes", struct sg_upstream_config, escaped_slashes, false,
              escaped_slashes_names),
    SG_F_ENUM("host_header", struct sg_upstream_config, host_header, false, host_header_names),
    SG_F_INT("websocket_idle_timeout_s", struct sg_upstream_config, websocket_idle_timeout_s, false,
             1, 86400),
};
static const struct object_schema upstream_schema = SG_SCHEMA(upstream_fields, NULL);

static const struct enum_name at_login_names[] = {
    {"assertion", SG_WHOAMI_AT_LOGIN_ASSERTION},
    {"link", SG_WHOAMI_AT_LOGIN_LINK},
    {"skip", SG_WHOAMI_AT_LOGIN_SKIP},
    {NULL, 0},
};

static const struct field whoami_fields[] = {
    SG_F_STRING("path", struct sg_whoami_config, path, false, check_site_path),
    SG_F_STRING("tenant", struct sg_whoami_config, tenant, false, check_pointer),
    SG_F_STRING("user", struct sg_whoami_config, user, false, check_pointer),
    SG_F_STRING("admin", struct sg_whoami_config, admin, false, check_pointer),
    SG_F_STRING("kind", struct sg_whoami_config, kind, false, check_pointer),
    SG_F_STRING("active", struct sg_whoami_config, active, false, check_pointer),
    SG_F_STRING("staff_kind", struct sg_whoami_config, staff_kind, false, NULL),
    SG_F_ENUM("at_login", struct sg_whoami_config, at_login, false, at_login_names),
};
static const struct object_schema whoami_schema = SG_SCHEMA(whoami_fields, NULL);

static int check_marker(struct parser *p, const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 256)
        return fail(p, "must be 1 to 256 bytes");
    for (const char *c = s; *c != '\0'; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return fail(p, "must not contain control characters");
    }
    return 0;
}

static const struct enum_name position_names[] = {
    {"after", SG_BUTTON_AFTER},
    {"before", SG_BUTTON_BEFORE},
    {NULL, 0},
};

static const struct field login_button_fields[] = {
    SG_F_STRING("marker", struct sg_login_button_config, marker, true, check_marker),
    SG_F_ENUM("position", struct sg_login_button_config, position, false, position_names),
};
static const struct object_schema login_button_schema = SG_SCHEMA(login_button_fields, NULL);

static const struct field psa_fields[] = {
    SG_F_STRING("login_path", struct sg_psa_config, login_path, false, check_site_path),
    SG_F_STRING("home_path", struct sg_psa_config, home_path, false, check_site_path),
    SG_F_STRING("logout_path", struct sg_psa_config, logout_path, false, check_site_path),
    SG_F_OBJECT("whoami", struct sg_psa_config, whoami, false, whoami_schema),
    SG_F_OBJECT("login_button", struct sg_psa_config, login_button, false, login_button_schema),
};
static const struct object_schema psa_schema = SG_SCHEMA(psa_fields, NULL);

/* -- idp -- */

static int parse_secret_file(struct parser *p, const struct node *v, void *base)
{
    const char *s = NULL;
    int rc = string_value(p, v, &s);
    if (rc == 0)
        rc = resolve_file(p, s, &p->secret_file);
    return rc;
}

static int parse_secret_env(struct parser *p, const struct node *v, void *base)
{
    const char *s = NULL;
    int rc = string_value(p, v, &s);
    if (rc == 0)
        rc = check_env_name(p, s);
    if (rc == 0)
        p->secret_env = sg_strdup(s);
    return rc;
}

/* Reads the client secret from p->secret_file into *out. Messages name the
 * file, never its contents. */
static int read_secret_file(struct parser *p, char **out)
{
    char *buf;
    size_t len;
    int rc = read_file(p->secret_file, SG_SECRET_MAX_BYTES, &buf, &len);
    if (rc != 0) {
        read_error(p, rc, p->secret_file, SG_SECRET_MAX_BYTES);
        return SG_ECONFIG;
    }
    /* Editors end files with a newline that is not part of the secret. */
    if (len > 0 && buf[len - 1] == '\n')
        len--;
    if (len > 0 && buf[len - 1] == '\r')
        len--;
    if (len == 0)
        rc = fail(p, "%s is empty", p->secret_file);
    else if (memchr(buf, '\0', len) != NULL)
        rc = fail(p, "%s contains a NUL byte", p->secret_file);
    else
        *out = sg_strndup(buf, len);
    OPENSSL_cleanse(buf, len);
    free(buf);
    return rc;
}

static int idp_check(struct parser *p, void *base)
{
    struct sg_idp_config *idp = base;
    if (!idp->issuer.https && !idp->allow_insecure_http)
        return fail_at(p, "issuer",
                       "must use https (set idp.allow_insecure_http only for loopback tests)");
    bool has_openid = false;
    for (char **scope = idp->scopes; *scope != NULL; scope++)
        has_openid = has_openid || strcmp(*scope, "openid") == 0;
    if (!has_openid)
        return fail_at(p, "scopes", "must include openid");
    if (p->secret_file != NULL && p->secret_env != NULL)
        return fail(p, "give only one of client_secret_file and client_secret_env");
    if (idp->token_auth == SG_TOKEN_AUTH_PRIVATE_KEY_JWT) {
        if (idp->client_key_file == NULL)
            return fail_at(p, "client_key_file", "is required with token_auth private_key_jwt");
        if (p->secret_file != NULL || p->secret_env != NULL)
            return fail(p, "token_auth private_key_jwt uses client_key_file, not a client secret");
        return 0;
    }
    if (idp->client_key_file != NULL)
        return fail_at(p, "client_key_file", "is used only with token_auth private_key_jwt");
    if (p->secret_file == NULL && p->secret_env == NULL)
        return fail(p, "needs client_secret_file or client_secret_env");
    if (p->secret_file != NULL) {
        size_t saved = path_push_key(p, "client_secret_file", strlen("client_secret_file"));
        int rc = read_secret_file(p, &idp->client_secret);
        path_pop(p, saved);
        return rc;
    }
    const char *secret = getenv(p->secret_env);
    if (secret == NULL)
        return fail_at(p, "client_secret_env", "environment variable %s is not set", p->secret_env);
    if (secret[0] == '\0')
        return fail_at(p, "client_secret_env", "environment variable %s is empty", p->secret_env);
    idp->client_secret = sg_strdup(secret);
    return 0;
}

static const struct field claims_fields[] = {
    SG_F_STRING("tenant", struct sg_claims_config, tenant, false, NULL),
    SG_F_STRING("master", struct sg_claims_config, master, false, NULL),
    SG_F_STRING("module_urls", struct sg_claims_config, module_urls, false, NULL),
    SG_F_STRING("module", struct sg_claims_config, module, false, NULL),
    SG_F_STRING("active", struct sg_claims_config, active, false, NULL),
    SG_F_STRING("email", struct sg_claims_config, email, false, NULL),
};
static const struct object_schema claims_schema = SG_SCHEMA(claims_fields, NULL);

static const struct field idp_fields[] = {
    SG_F_URL("issuer", struct sg_idp_config, issuer, true),
    SG_F_STRING("client_id", struct sg_idp_config, client_id, true, NULL),
    SG_F_CUSTOM("client_secret_file", false, parse_secret_file),
    SG_F_CUSTOM("client_secret_env", false, parse_secret_env),
    SG_F_LIST("scopes", struct sg_idp_config, scopes, 1, 32, check_token),
    SG_F_FILE("ca_file", struct sg_idp_config, ca_file, false),
    SG_F_BOOL("allow_insecure_http", struct sg_idp_config, allow_insecure_http),
    SG_F_INT("connect_timeout_ms", struct sg_idp_config, connect_timeout_ms, false, 1,
             SG_MS_PER_DAY),
    SG_F_INT("timeout_ms", struct sg_idp_config, timeout_ms, false, 1, SG_MS_PER_DAY),
    SG_F_INT("clock_skew_s", struct sg_idp_config, clock_skew_s, false, 0, 3600),
    SG_F_ENUM("token_auth", struct sg_idp_config, token_auth, false, token_auth_names),
    SG_F_FILE("client_key_file", struct sg_idp_config, client_key_file, false),
    SG_F_BOOL("userinfo", struct sg_idp_config, userinfo),
    SG_F_LIST("algorithms", struct sg_idp_config, algorithms, 1, 4, check_algorithm),
    SG_F_OBJECT("claims", struct sg_idp_config, claims, false, claims_schema),
};
static const struct object_schema idp_schema = SG_SCHEMA(idp_fields, idp_check);

/* Frees the IdP settings, wiping the secret first; NULL-safe. */
static void idp_free(struct sg_idp_config *idp)
{
    if (idp == NULL)
        return;
    sg_url_clear(&idp->issuer);
    free(idp->client_id);
    if (idp->client_secret != NULL) {
        OPENSSL_cleanse(idp->client_secret, strlen(idp->client_secret));
        free(idp->client_secret);
    }
    list_free(idp->scopes);
    free(idp->ca_file);
    free(idp->client_key_file);
    list_free(idp->algorithms);
    free(idp->claims.tenant);
    free(idp->claims.master);
    free(idp->claims.module_urls);
    free(idp->claims.module);
    free(idp->claims.active);
    free(idp->claims.email);
    free(idp);
}

/* Creates cfg->idp with its defaults and reads v into it. */
static int parse_idp(struct parser *p, const struct node *v, void *base)
{
    struct sg_config *cfg = base;
    struct sg_idp_config *idp = sg_calloc(1, sizeof(*idp));
    /* Attached before parsing so that a failure frees it with the rest. */
    cfg->idp = idp;
    idp->scopes = list_new(default_scopes, SG_ARRAY_LEN(default_scopes));
    idp->connect_timeout_ms = 2000;
    idp->timeout_ms = 10000;
    idp->clock_skew_s = 60;
    idp->token_auth = SG_TOKEN_AUTH_CLIENT_SECRET_BASIC;
    idp->algorithms = list_new(default_algorithms, SG_ARRAY_LEN(default_algorithms));
    idp->claims.tenant = sg_strdup("tenant");
    idp->claims.master = sg_strdup("master");
    idp->claims.module_urls = sg_strdup("module_urls");
    idp->claims.module = sg_strdup("bms");
    idp->claims.active = sg_strdup("active");
    idp->claims.email = sg_strdup("email");
    return parse_object(p, v, &idp_schema, idp);
}

/* -- region, session, routes -- */

/* Stores the normalised text of a valid URL as region.module_url. */
static int parse_module_url(struct parser *p, const struct node *v, void *base)
{
    struct sg_region_config *region = base;
    const char *s = NULL, *why = NULL;
    struct sg_url url;
    int rc = string_value(p, v, &s);
    if (rc != 0)
        return rc;
    if (url_parse(s, &url, &why) != 0)
        return fail(p, "is not a valid http(s) URL: %s", why);
    free(region->module_url);
    region->module_url = sg_strdup(url.text);
    sg_url_clear(&url);
    return 0;
}

/* Known region names are stored in capitals; they give the module URL
 * unless one is configured. */
static int region_check(struct parser *p, void *base)
{
    struct sg_region_config *region = base;
    for (size_t i = 0; i < SG_ARRAY_LEN(regions); i++) {
        if (strcasecmp(region->name, regions[i].name) != 0)
            continue;
        free(region->name);
        region->name = sg_strdup(regions[i].name);
        if (region->module_url == NULL)
            region->module_url = sg_strdup(regions[i].module_url);
        return 0;
    }
    if (region->module_url == NULL)
        return fail_at(p, "module_url", "is required when region.name is not US, UK or APAC");
    return 0;
}

static const struct field region_fields[] = {
    SG_F_STRING("name", struct sg_region_config, name, true, check_region_name),
    SG_F_CUSTOM("module_url", false, parse_module_url),
};
static const struct object_schema region_schema = SG_SCHEMA(region_fields, region_check);

static int parse_region(struct parser *p, const struct node *v, void *base)
{
    struct sg_config *cfg = base;
    /* The US default gives way entirely to what is configured. */
    SG_FREE(cfg->region.name);
    SG_FREE(cfg->region.module_url);
    return parse_object(p, v, &region_schema, &cfg->region);
}

static int session_check(struct parser *p, void *base)
{
    const struct sg_session_config *session = base;
    if (session->absolute_timeout_s < session->idle_timeout_s)
        return fail_at(p, "absolute_timeout_s", "must not be less than idle_timeout_s");
    return 0;
}

static const struct field session_fields[] = {
    SG_F_STRING("cookie_name", struct sg_session_config, cookie_name, false, check_cookie_name),
    SG_F_INT("idle_timeout_s", struct sg_session_config, idle_timeout_s, false, 1, SG_S_PER_DAY),
    SG_F_INT("absolute_timeout_s", struct sg_session_config, absolute_timeout_s, false, 1,
             SG_S_PER_MONTH),
};
static const struct object_schema session_schema = SG_SCHEMA(session_fields, session_check);

static const struct field route_fields[] = {
    SG_F_STRING("prefix", struct sg_route_config, prefix, true, check_route_prefix),
    SG_F_ENUM("auth", struct sg_route_config, auth, true, auth_names),
};
static const struct object_schema route_schema = SG_SCHEMA(route_fields, NULL);

/* Reads the route table: prefixes lose trailing slashes and must differ. */
static int parse_routes(struct parser *p, const struct node *v, void *base)
{
    struct sg_config *cfg = base;
    if (v->type != NODE_ARRAY)
        return fail(p, "must be an array, not %s", type_name(v->type));
    if (v->count > SG_MAX_ROUTES)
        return fail(p, "must have at most %d routes", SG_MAX_ROUTES);
    cfg->routes = sg_calloc(v->count, sizeof(*cfg->routes));
    cfg->route_count = v->count;
    for (size_t i = 0; i < v->count; i++) {
        struct sg_route_config *route = &cfg->routes[i];
        size_t saved = path_push_index(p, i);
        int rc = parse_object(p, v->members[i].value, &route_schema, route);
        if (rc == 0) {
            /* "/admin/" and "/admin" are the same segment-boundary prefix. */
            size_t len = strlen(route->prefix);
            while (len > 1 && route->prefix[len - 1] == '/')
                route->prefix[--len] = '\0';
        }
        for (size_t j = 0; rc == 0 && j < i; j++) {
            if (strcmp(route->prefix, cfg->routes[j].prefix) == 0)
                rc = fail_at(p, "prefix", "same prefix as routes[%zu]", j);
        }
        path_pop(p, saved);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int parse_claim_headers(struct parser *p, const struct node *v, void *base)
{
    struct sg_config *cfg = base;
    if (v->type != NODE_OBJECT)
        return fail(p, "must be an object, not %s", type_name(v->type));
    if (v->count > SG_MAX_CLAIM_HEADERS)
        return fail(p, "must have at most %d headers", SG_MAX_CLAIM_HEADERS);
    cfg->claim_headers = sg_calloc(v->count + 1, sizeof(*cfg->claim_headers));
    cfg->claim_header_names = sg_calloc(v->count + 1, sizeof(*cfg->claim_header_names));
    for (size_t i = 0; i < v->count; i++) {
        const struct member *m = &v->members[i];
        size_t saved = path_push_key(p, m->key, m->key_len);
        int rc = 0;
        if (strlen(m->key) != m->key_len || !sg_headers_is_token(m->key) || m->key_len > 128)
            rc = fail(p, "a header name must be a token of at most 128 characters");
        else if (sg_headers_gateway_owned(m->key) || strncasecmp(m->key, "Content-", 8) == 0 ||
                 strncasecmp(m->key, "Content_", 8) == 0)
            rc = fail(p, "names a header the gateway owns or one that frames the body");
        else if (m->value->type != NODE_STRING || strlen(m->value->text) != m->value->len)
            rc = fail(p, "must be a JSON pointer string");
        else
            rc = check_pointer(p, m->value->text);
        for (size_t j = 0; rc == 0 && j < i; j++) {
            if (sg_headers_name_eq(m->key, cfg->claim_headers[j].name))
                rc = fail(p, "same header as %s", cfg->claim_headers[j].name);
        }
        path_pop(p, saved);
        if (rc != 0)
            return rc;
        cfg->claim_headers[i].name = sg_strdup(m->key);
        cfg->claim_headers[i].pointer = sg_strdup(m->value->text);
        cfg->claim_header_names[i] = cfg->claim_headers[i].name;
        cfg->claim_header_count = i + 1;
    }
    return 0;
}

/* -- store -- */

static int parse_conninfo_file(struct parser *p, const struct node *v, void *base)
{
    const char *s = NULL;
    int rc = string_value(p, v, &s);
    if (rc == 0)
        rc = resolve_file(p, s, &p->conninfo_file);
    return rc;
}

static int parse_conninfo_env(struct parser *p, const struct node *v, void *base)
{
    const char *s = NULL;
    int rc = string_value(p, v, &s);
    if (rc == 0)
        rc = check_env_name(p, s);
    if (rc == 0)
        p->conninfo_env = sg_strdup(s);
    return rc;
}

/* True when every comma-separated entry of hosts is an IP address or a socket directory. */
static bool hosts_are_addresses(const char *hosts)
{
    char buf[256];
    while (*hosts != '\0') {
        size_t len = strcspn(hosts, ",");
        if (len == 0 || len >= sizeof(buf))
            return false;
        memcpy(buf, hosts, len);
        buf[len] = '\0';
        unsigned char addr[sizeof(struct in6_addr)];
        if (buf[0] != '/' && buf[0] != '@' && inet_pton(AF_INET, buf, addr) != 1 &&
            inet_pton(AF_INET6, buf, addr) != 1)
            return false;
        hosts += len;
        if (*hosts == ',')
            hosts++;
    }
    return true;
}

/*
 * Copies the first line of libpq's message into out with each quoted part
 * elided: libpq quotes the text it stopped at, which may be the password
 * (missing "=" after "WORD", or the whole postgresql://user:password@ URI).
 */
static void conninfo_message(const char *msg, char *out, size_t size)
{
    size_t n = 0;
    bool quoted = false;
    for (; *msg != '\0' && *msg != '\n' && n + 4 < size; msg++) {
        if (*msg == '"') {
            if (!quoted) {
                memcpy(out + n, "\"...", 4);
                n += 4;
            }
            quoted = !quoted;
        }
        if (!quoted)
            out[n++] = *msg;
    }
    out[n] = '\0';
}

/*
 * The connection string, whichever way it is given, must parse (no
 * connection is made), and name its servers by address: libpq resolves host
 * names with a getaddrinfo that would block the event loop.
 */
static int conninfo_check(struct parser *p, const char *key, const char *conninfo)
{
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &msg);
    if (opts == NULL) {
        char shown[256];
        conninfo_message(msg != NULL ? msg : "", shown, sizeof(shown));
        PQfreemem(msg);
        return fail_at(p, key, "is not a libpq connection string: %s", shown);
    }
    const char *host = NULL, *hostaddr = NULL;
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "hostaddr") == 0)
            hostaddr = o->val;
    }
    bool by_address = (hostaddr != NULL && hostaddr[0] != '\0') || host == NULL ||
                      host[0] == '\0' || hosts_are_addresses(host);
    PQconninfoFree(opts);
    if (!by_address)
        return fail_at(p, key,
                       "names a server by host name: give its address (host=10.0.0.5,10.0.0.6 or "
                       "hostaddr=), which the gateway connects to without a blocking DNS lookup");
    return 0;
}

static int store_check(struct parser *p, void *base)
{
    struct sg_store_config *store = base;
    int given = (store->conninfo != NULL) + (p->conninfo_file != NULL) + (p->conninfo_env != NULL);
    if (store->type == SG_STORE_TYPE_LMDB) {
        if (given != 0)
            return fail(p, "type lmdb takes no conninfo");
        return 0;
    }
    if (given != 1)
        return fail(p, "type postgresql needs exactly one of conninfo, conninfo_file and "
                       "conninfo_env");
    if (p->conninfo_file != NULL) {
        char *buf;
        size_t len;
        size_t saved = path_push_key(p, "conninfo_file", strlen("conninfo_file"));
        int rc = read_file(p->conninfo_file, SG_SECRET_MAX_BYTES, &buf, &len);
        if (rc != 0) {
            read_error(p, rc, p->conninfo_file, SG_SECRET_MAX_BYTES);
            path_pop(p, saved);
            return SG_ECONFIG;
        }
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
            len--;
        if (len == 0 || memchr(buf, '\0', len) != NULL)
            rc = fail(p, "%s is empty or holds a NUL byte", p->conninfo_file);
        else
            store->conninfo = sg_strndup(buf, len);
        OPENSSL_cleanse(buf, len);
        free(buf);
        path_pop(p, saved);
        if (rc != 0)
            return rc;
        return conninfo_check(p, "conninfo_file", store->conninfo);
    }
    if (p->conninfo_env != NULL) {
        const char *value = getenv(p->conninfo_env);
        if (value == NULL || value[0] == '\0')
            return fail_at(p, "conninfo_env", "environment variable %s is not set or empty",
                           p->conninfo_env);
        store->conninfo = sg_strdup(value);
        return conninfo_check(p, "conninfo_env", store->conninfo);
    }
    return conninfo_check(p, "conninfo", store->conninfo);
}

static const struct field store_fields[] = {
    SG_F_ENUM("type", struct sg_store_config, type, false, store_type_names),
    SG_F_STRING("conninfo", struct sg_store_config, conninfo, false, NULL),
    SG_F_CUSTOM("conninfo_file", false, parse_conninfo_file),
    SG_F_CUSTOM("conninfo_env", false, parse_conninfo_env),
    SG_F_INT("pool_size", struct sg_store_config, pool_size, false, 1, 64),
    SG_F_INT("statement_timeout_ms", struct sg_store_config, statement_timeout_ms, false, 10,
             600000),
    SG_F_INT("cache_ttl_s", struct sg_store_config, cache_ttl_s, false, 1, 3600),
};
static const struct object_schema store_schema = SG_SCHEMA(store_fields, store_check);

/* -- the top level -- */

static const struct field limits_fields[] = {
    SG_F_INT("header_bytes", struct sg_limits_config, header_bytes, false, 1024, 1024 * 1024),
    SG_F_INT("body_bytes", struct sg_limits_config, body_bytes, false, 0, UINT64_C(4) << 30),
    SG_F_INT("body_memory_bytes", struct sg_limits_config, body_memory_bytes, false,
             UINT64_C(1) << 20, UINT64_C(1) << 40),
    SG_F_INT("connections", struct sg_limits_config, connections, false, 1, 1000000),
    SG_F_INT("tunnels", struct sg_limits_config, tunnels, false, 1, 1000000),
    SG_F_INT("connections_per_address", struct sg_limits_config, connections_per_address, false, 0,
             1000000),
    SG_F_INT("logins_in_flight", struct sg_limits_config, logins_in_flight, false, 1, 1000000),
    SG_F_INT("client_timeout_s", struct sg_limits_config, client_timeout_s, false, 1, SG_S_PER_DAY),
    SG_F_INT("min_body_rate", struct sg_limits_config, min_body_rate, false, 1, 1u << 30),
};
static const struct object_schema limits_schema = SG_SCHEMA(limits_fields, NULL);

static const struct field assertion_fields[] = {
    SG_F_FILE("key_file", struct sg_assertion_config, key_file, false),
    SG_F_INT("ttl_s", struct sg_assertion_config, ttl_s, false, 1, 300),
};
static const struct object_schema assertion_schema = SG_SCHEMA(assertion_fields, NULL);

static const struct field log_fields[] = {
    SG_F_ENUM("level", struct sg_config, log_level, false, log_level_names),
    SG_F_BOOL("access", struct sg_config, access_log),
};
static const struct object_schema log_schema = SG_SCHEMA(log_fields, NULL);

/* limits.body_memory_bytes when not set (and limits.body_bytes is smaller). */
#define BODY_MEMORY_DEFAULT (UINT64_C(256) << 20)

/* "host[:port]" of url, the port left out when it is the scheme's default. */
static char *url_authority(const struct sg_url *url)
{
    bool v6 = strchr(url->host, ':') != NULL;
    bool default_port = url->port == (url->https ? 443 : 80);
    if (default_port)
        return sg_asprintf(v6 ? "[%s]" : "%s", url->host);
    return sg_asprintf(v6 ? "[%s]:%u" : "%s:%u", url->host, (unsigned)url->port);
}

/* Checks that need the whole file: what depends on an IdP being there. */
static int config_check(struct parser *p, void *base)
{
    struct sg_config *cfg = base;
    if (cfg->public_url.path[0] != '\0')
        return fail_at(p, "public_url", "must not have a path: the gateway serves the whole site");
    for (size_t i = 0; i < SG_COOKIE__COUNT; i++)
        free(cfg->session.cookies[i]);
    sg_cookies_names(cfg->session.cookie_name, cfg->public_url.https, cfg->session.cookies);
    free(cfg->upstream.host);
    cfg->upstream.host =
        url_authority(cfg->upstream.host_header == SG_HOST_HEADER_UPSTREAM ? &cfg->upstream.url
                                                                           : &cfg->public_url);
    if (cfg->limits.body_memory_bytes == 0)
        cfg->limits.body_memory_bytes = cfg->limits.body_bytes > BODY_MEMORY_DEFAULT
                                            ? cfg->limits.body_bytes
                                            : BODY_MEMORY_DEFAULT;
    else if (cfg->limits.body_memory_bytes < cfg->limits.body_bytes)
        return fail_at(p, "limits.body_memory_bytes", "must be at least limits.body_bytes");
    if (cfg->limits.tunnels == 0)
        cfg->limits.tunnels = cfg->limits.connections > 1 ? cfg->limits.connections / 2 : 1;
    else if (cfg->limits.tunnels > cfg->limits.connections)
        return fail_at(p, "limits.tunnels", "must not be more than limits.connections");
    if (cfg->idp == NULL && cfg->identity == SG_IDENTITY_CLAIMS)
        return fail_at(p, "identity", "claims needs an idp");
    if (cfg->required_amr[0] == NULL && cfg->identity == SG_IDENTITY_LINK)
        return fail_at(p, "required_amr",
                       "may be empty only with identity \"claims\": linking keeps the second "
                       "factor mandatory");
    for (size_t i = 0; cfg->idp == NULL && i < cfg->route_count; i++) {
        if (cfg->routes[i].auth != SG_AUTH_REQUIRED)
            continue;
        size_t saved = path_push_key(p, "routes", strlen("routes"));
        path_push_index(p, i);
        int rc = fail_at(p, "auth", "required needs an idp to log in with");
        path_pop(p, saved);
        return rc;
    }
    return 0;
}

static const struct field config_fields[] = {
    SG_F_CUSTOM("listeners", true, parse_listeners),
    SG_F_CUSTOM("trusted_proxies", false, parse_trusted_proxies),
    SG_F_CUSTOM("metrics_from", false, parse_metrics_from),
    SG_F_URL("public_url", struct sg_config, public_url, true),
    SG_F_OBJECT("upstream", struct sg_config, upstream, true, upstream_schema),
    SG_F_OBJECT("psa", struct sg_config, psa, false, psa_schema),
    SG_F_CUSTOM("idp", false, parse_idp),
    SG_F_LIST("required_amr", struct sg_config, required_amr, 0, 16, check_token),
    SG_F_CUSTOM("region", false, parse_region),
    SG_F_OBJECT("session", struct sg_config, session, false, session_schema),
    SG_F_CUSTOM("routes", false, parse_routes),
    SG_F_CUSTOM("claim_headers", false, parse_claim_headers),
    SG_F_ENUM("identity", struct sg_config, identity, false, identity_names),
    SG_F_PATH("data_dir", struct sg_config, data_dir, true),
    SG_F_OBJECT("store", struct sg_config, store, false, store_schema),
    SG_F_OBJECT("limits", struct sg_config, limits, false, limits_schema),
    SG_F_OBJECT("assertion", struct sg_config, assertion, false, assertion_schema),
    SG_F_INLINE("log", false, log_schema),
    SG_F_INT("workers", struct sg_config, workers, false, 1, 64),
    SG_F_INT("drain_timeout_s", struct sg_config, drain_timeout_s, false, 1, 3600),
};
static const struct object_schema config_schema = SG_SCHEMA(config_fields, config_check);

_Static_assert(SG_ARRAY_LEN(config_fields) <= SG_SCHEMA_MAX_FIELDS, "too many fields");
_Static_assert(SG_ARRAY_LEN(idp_fields) <= SG_SCHEMA_MAX_FIELDS, "too many fields");

/* ---- the configuration object ------------------------------------------ */

/* A configuration holding every default of config.h, refcount 1. */
static struct sg_config *config_new(void)
{
    struct sg_config *cfg = sg_calloc(1, sizeof(*cfg));
    cfg->refcount = 1;
    cfg->upstream.connect_timeout_ms = 2000;
    cfg->upstream.response_timeout_ms = 30000;
    cfg->upstream.pool_size = 64;
    cfg->upstream.websocket_idle_timeout_s = 300;
    cfg->psa.login_path = sg_strdup("/login");
    cfg->psa.home_path = sg_strdup("/");
    cfg->psa.logout_path = sg_strdup("/logout");
    cfg->psa.whoami.path = sg_strdup("/api/whoami");
    cfg->psa.whoami.tenant = sg_strdup("/tenant");
    cfg->psa.whoami.user = sg_strdup("/user");
    cfg->psa.whoami.admin = sg_strdup("/admin");
    cfg->psa.whoami.kind = sg_strdup("/kind");
    cfg->psa.whoami.active = sg_strdup("/active");
    cfg->psa.whoami.staff_kind = sg_strdup("staff");
    cfg->required_amr = list_new(default_amr, SG_ARRAY_LEN(default_amr));
    cfg->region.name = sg_strdup(regions[0].name);
    cfg->region.module_url = sg_strdup(regions[0].module_url);
    cfg->session.cookie_name = sg_strdup("ssogate");
    cfg->session.idle_timeout_s = 1800;
    cfg->session.absolute_timeout_s = 43200;
    cfg->identity = SG_IDENTITY_LINK;
    cfg->store.pool_size = 4;
    cfg->store.statement_timeout_ms = 2000;
    cfg->store.cache_ttl_s = 30;
    cfg->limits.header_bytes = 16384;
    cfg->limits.body_bytes = 10 * 1024 * 1024;
    cfg->limits.connections = 10000;
    cfg->limits.logins_in_flight = 10000;
    cfg->limits.client_timeout_s = 30;
    cfg->limits.min_body_rate = 1024;
    cfg->assertion.ttl_s = 60;
    cfg->log_level = SG_LOG_INFO;
    cfg->access_log = true;
    cfg->workers = 1;
    cfg->drain_timeout_s = 10;
    static const char *const loopback[] = {"127.0.0.0/8", "::1"};
    cfg->metrics_from = sg_calloc(2, sizeof(*cfg->metrics_from));
    for (size_t i = 0; i < 2; i++) {
        const char *why;
        if (sg_cidr_parse(loopback[i], &cfg->metrics_from[cfg->metrics_from_count++], &why) != 0)
            abort();
    }
    return cfg;
}

/* Frees cfg and all it owns, also when it was only partly filled. */
static void config_free(struct sg_config *cfg)
{
    free(cfg->path);
    for (size_t i = 0; i < cfg->listener_count; i++) {
        free(cfg->listeners[i].address);
        free(cfg->listeners[i].tls_cert);
        free(cfg->listeners[i].tls_key);
    }
    free(cfg->listeners);
    free(cfg->trusted_proxies);
    free(cfg->metrics_from);
    sg_url_clear(&cfg->public_url);
    sg_url_clear(&cfg->upstream.url);
    free(cfg->upstream.ca_file);
    free(cfg->upstream.host);
    free(cfg->psa.login_path);
    free(cfg->psa.home_path);
    free(cfg->psa.logout_path);
    free(cfg->psa.login_button.marker);
    free(cfg->psa.whoami.path);
    free(cfg->psa.whoami.tenant);
    free(cfg->psa.whoami.user);
    free(cfg->psa.whoami.admin);
    free(cfg->psa.whoami.kind);
    free(cfg->psa.whoami.active);
    free(cfg->psa.whoami.staff_kind);
    idp_free(cfg->idp);
    list_free(cfg->required_amr);
    free(cfg->region.name);
    free(cfg->region.module_url);
    free(cfg->session.cookie_name);
    for (size_t i = 0; i < SG_COOKIE__COUNT; i++)
        free(cfg->session.cookies[i]);
    for (size_t i = 0; i < cfg->route_count; i++)
        free(cfg->routes[i].prefix);
    free(cfg->routes);
    for (size_t i = 0; i < cfg->claim_header_count; i++) {
        free(cfg->claim_headers[i].name);
        free(cfg->claim_headers[i].pointer);
    }
    free(cfg->claim_headers);
    free(cfg->claim_header_names);
    free(cfg->data_dir);
    if (cfg->store.conninfo != NULL)
        OPENSSL_cleanse(cfg->store.conninfo, strlen(cfg->store.conninfo));
    free(cfg->store.conninfo);
    free(cfg->assertion.key_file);
    free(cfg);
}

static void error_start(struct sg_config_error *err, const char *name)
{
    memset(err, 0, sizeof(*err));
    snprintf(err->file, sizeof(err->file), "%s", name);
}

int sg_config_parse(const char *name, const char *base_dir, const char *json, size_t len,
                    struct sg_config **out, struct sg_config_error *err)
{
    struct sg_config_error scratch;
    struct parser p = {.err = err ? err : &scratch, .base_dir = base_dir};
    struct node *root = NULL;
    struct sg_config *cfg = NULL;
    int rc;
    *out = NULL;
    if (name == NULL)
        name = "(configuration)";
    error_start(p.err, name);
    if (json == NULL)
        json = "";
    if (len > SG_CONFIG_MAX_BYTES) {
        rc = fail(&p, "is larger than %d bytes", SG_CONFIG_MAX_BYTES);
        goto end;
    }
    if ((rc = tree_parse(&p, json, len, &root)) != 0)
        goto end;
    if (root == NULL) {
        rc = fail(&p, "holds no JSON value");
        goto end;
    }
    if (root->type != NODE_OBJECT) {
        rc = fail(&p, "the top level must be a JSON object, not %s", type_name(root->type));
        goto end;
    }
    cfg = config_new();
    cfg->path = sg_strdup(name);
    rc = parse_object(&p, root, &config_schema, cfg);
end:
    node_free(root);
    free(p.secret_file);
    free(p.secret_env);
    free(p.conninfo_file);
    free(p.conninfo_env);
    if (rc != 0) {
        if (cfg != NULL)
            config_free(cfg);
        return SG_ECONFIG;
    }
    *out = cfg;
    return 0;
}

int sg_config_load(const char *path, struct sg_config **out, struct sg_config_error *err)
{
    struct sg_config_error scratch;
    struct parser p = {.err = err ? err : &scratch};
    char *json = NULL, *dir = NULL, *base_dir = NULL;
    size_t len;
    *out = NULL;
    error_start(p.err, path);
    int rc = read_file(path, SG_CONFIG_MAX_BYTES, &json, &len);
    if (rc != 0) {
        read_error(&p, rc, "the file", SG_CONFIG_MAX_BYTES);
        return SG_ECONFIG;
    }
    /* Relative names inside are taken from the file's own directory, made
     * absolute so that they do not depend on the daemon's working directory. */
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        dir = sg_strdup(".");
    else if (slash == path)
        dir = sg_strdup("/");
    else
        dir = sg_strndup(path, (size_t)(slash - path));
    base_dir = realpath(dir, NULL);
    rc = sg_config_parse(path, base_dir ? base_dir : dir, json, len, out, p.err);
    free(base_dir);
    free(dir);
    free(json);
    return rc;
}

struct sg_config *sg_config_ref(struct sg_config *cfg)
{
    cfg->refcount++;
    return cfg;
}

void sg_config_unref(struct sg_config *cfg)
{
    if (cfg == NULL || --cfg->refcount > 0)
        return;
    config_free(cfg);
}

/* A prefix matches the path itself and whatever lies below it on a segment
 * boundary: "/admin" matches "/admin", "/admin/x" and "/admin?x", never
 * "/administrator". */
const struct sg_route_config *sg_config_route(const struct sg_config *cfg, const char *path)
{
    static const struct sg_route_config default_route = {"/", SG_AUTH_OPTIONAL};
    const struct sg_route_config *best = &default_route;
    size_t best_len = 0;
    if (cfg == NULL || path == NULL)
        return best;
    for (size_t i = 0; i < cfg->route_count; i++) {
        const struct sg_route_config *route = &cfg->routes[i];
        size_t len = strlen(route->prefix);
        if (len > best_len && sg_target_under(path, route->prefix,
                                              cfg->upstream.paths == SG_PATHS_CASE_INSENSITIVE)) {
            best = route;
            best_len = len;
        }
    }
    return best;
}

bool sg_config_path_is(const struct sg_config *cfg, const char *match, const char *path)
{
    if (cfg->upstream.paths == SG_PATHS_CASE_INSENSITIVE)
        return strcasecmp(match, path) == 0;
    return strcmp(match, path) == 0;
}

bool sg_config_path_under(const struct sg_config *cfg, const char *match, const char *prefix)
{
    return sg_target_under(match, prefix, cfg->upstream.paths == SG_PATHS_CASE_INSENSITIVE);
}
