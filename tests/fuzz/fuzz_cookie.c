/*
 * Fuzzes the Cookie header parser. Properties: a found value lies inside the
 * input; once a cookie is removed it cannot be found any more and the result
 * is no longer than twice the input; a formatted Set-Cookie value parses back
 * to its own name and value.
 */
#include "../../gateway/common.c"
#include "../../gateway/cookie.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_name(const char *header, size_t size, const char *name)
{
    const char *value = NULL;
    size_t value_len = 0;
    int rc = sg_cookie_find(header, size, name, &value, &value_len);
    if (rc == 0 && (value < header || value + value_len > header + size))
        abort();
    char *removed = NULL;
    if (sg_cookie_remove(header, size, name, &removed) != 0) {
        if (size <= SG_COOKIE_MAX_HEADER)
            abort();
        return;
    }
    size_t removed_len = strlen(removed);
    if (removed_len > 2 * size ||
        sg_cookie_find(removed, removed_len, name, &value, &value_len) != SG_ENOENT)
        abort();
    free(removed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *header = (const char *)data;
    check_name(header, size, "sso_session");
    check_name(header, size, "sid");

    /* "name\nvalue" formats as a Set-Cookie value when both are valid. */
    const char *nl = memchr(header, '\n', size);
    if (nl == NULL)
        return 0;
    char *name = sg_strndup(header, (size_t)(nl - header));
    char *value = sg_strndup(nl + 1, size - (size_t)(nl + 1 - header));
    struct sg_cookie_attrs attrs = {.path = "/",
                                    .max_age = (int64_t)size - 8,
                                    .http_only = true,
                                    .secure = true,
                                    .same_site = SG_COOKIE_SAME_SITE_LAX};
    char *out = NULL;
    if (strlen(name) == (size_t)(nl - header) &&
        strlen(value) == size - (size_t)(nl + 1 - header) &&
        sg_cookie_format(name, value, &attrs, &out) == 0) {
        const char *found = NULL;
        size_t found_len = 0;
        if (sg_cookie_find(out, strcspn(out, ";"), name, &found, &found_len) != 0 ||
            found_len != strlen(value) || memcmp(found, value, found_len) != 0)
            abort();
        free(out);
    }
    free(name);
    free(value);
    return 0;
}
