/*
 * The PSA's own login page, unchanged upstream, gains the "Log in with IT
 * Complete" button and, after a refused SSO login, a notice saying why: the
 * gateway inserts one small block, once, before or after a configured marker
 * (psa.login_button, e.g. inside the PSA's sign-in card), or right after the
 * page's <body> tag when no marker is configured or the page lacks it.
 */
#ifndef SSOGATE_INJECT_H
#define SSOGATE_INJECT_H

#include <stdbool.h>
#include <stddef.h>

#define SG_INJECT_MAX_PAGE (1024 * 1024) /* larger login pages pass through unchanged */

/* The notice text of a notice code ("inactive", "denied", "not_linked", "failed"); NULL if unknown.
 */
const char *sg_inject_notice_text(const char *code);

/*
 * Returns a new buffer (caller frees) holding html (len bytes, borrowed) with
 * the block inserted before or after (before is true) the first occurrence of
 * marker, or, when marker is NULL or not in the page, after the first
 * <body ...> tag (at the start when there is none); its length in *out_len.
 * *fell_back is set when a marker was given but not found. notice_code may be
 * NULL.
 */
char *sg_inject_login_block(const char *html, size_t len, const char *notice_code,
                            const char *marker, bool before, bool *fell_back, size_t *out_len);

#endif
