/*
 * HTML forms as the load tool reads them from the IdP's login pages: a form
 * found by its id, its action and method, and the fields it would submit
 * (text, hidden and password inputs with their values). Reading never goes
 * past the given length, and every count and size is bounded.
 */
#ifndef SSOGATE_BENCH_FORM_H
#define SSOGATE_BENCH_FORM_H

#include <stddef.h>

#define SG_FORM_FIELDS_MAX 32
#define SG_FORM_VALUE_MAX  4096

struct sg_form_field {
    char *name;
    char *value;
};

struct sg_form {
    char *action; /* as written in the page (entity-decoded); "" when absent */
    char *method; /* upper case; "GET" when absent */
    struct sg_form_field fields[SG_FORM_FIELDS_MAX];
    unsigned field_count;
};

/*
 * Finds the form whose id attribute is id (borrowed) in html (borrowed, len
 * bytes, need not be NUL-terminated) and fills *form, which the caller
 * clears with sg_form_clear. Returns 0, SG_ENOENT when no such form is in
 * the page, or SG_ETOOBIG when it has too many fields or too long a value.
 */
int sg_form_find(const char *html, size_t len, const char *id, struct sg_form *form);

/* Sets field name to value (both borrowed, copied), replacing an existing one. Returns 0 or
 * SG_ETOOBIG. */
int sg_form_set(struct sg_form *form, const char *name, const char *value);

/* The fields as application/x-www-form-urlencoded, newly allocated (the caller frees it). */
char *sg_form_encode(const struct sg_form *form);

/* Frees what the form holds and empties it. NULL-safe. */
void sg_form_clear(struct sg_form *form);

#endif
