#include "ssogate/inject.h"

#include "ssogate/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct {
    const char *code;
    const char *text;
} notices[] = {
    {"inactive", "Your IT Complete account is inactive, so you were not signed in with it. Sign "
                 "in with your PSA password, or ask your administrator to reactivate the account."},
    {"denied", "IT Complete refused the sign-in: the account may be inactive, or the sign-in "
               "was cancelled. Sign in with your PSA password, or ask your administrator to "
               "check your IT Complete account."},
    {"not_linked", "Your IT Complete account is not linked to a user here yet. Sign in with your "
                   "PSA password, then enable Log in with IT Complete in My Settings."},
    {"failed", "Signing in with IT Complete did not complete. Try the button again, or sign in "
               "with your PSA password."},
};

const char *sg_inject_notice_text(const char *code)
{
    for (size_t i = 0; code != NULL && i < SG_ARRAY_LEN(notices); i++) {
        if (strcmp(code, notices[i].code) == 0)
            return notices[i].text;
    }
    return NULL;
}

/* Offset just past the first "<body" tag's ">", or 0 when there is none. */
static size_t after_body_tag(const char *html, size_t len)
{
    for (size_t i = 0; i + 5 <= len; i++) {
        if (html[i] != '<' || strncasecmp(html + i + 1, "body", 4) != 0)
            continue;
        size_t j = i + 5;
        if (j < len && html[j] != '>' && html[j] != ' ' && html[j] != '\t' && html[j] != '\n' &&
            html[j] != '\r')
            continue;
        while (j < len && html[j] != '>')
            j++;
        return j < len ? j + 1 : 0;
    }
    return 0;
}

/* Where the block goes: around the first marker, else after <body>. */
static size_t insertion_point(const char *html, size_t len, const char *marker, bool before,
                              bool *fell_back)
{
    *fell_back = false;
    if (marker != NULL) {
        const char *found = memmem(html, len, marker, strlen(marker));
        if (found != NULL)
            return (size_t)(found - html) + (before ? 0 : strlen(marker));
        *fell_back = true;
    }
    return after_body_tag(html, len);
}

char *sg_inject_login_block(const char *html, size_t len, const char *notice_code,
                            const char *marker, bool before, bool *fell_back, size_t *out_len)
{
    const char *notice = sg_inject_notice_text(notice_code);
    /* The block lives inside the PSA's page: its rules are scoped to its own id, so that they win
     * over the page's and leave the page's own elements alone. */
    char *block = sg_asprintf(
        "<div id=\"ssogate-login\" role=\"region\" aria-label=\"Log in with IT Complete\">"
        "<style>#ssogate-login{font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,Arial,"
        "sans-serif;box-sizing:border-box;max-width:32rem;margin:1rem auto;padding:1rem 1.25rem;"
        "border:1px solid #d6dde4;border-radius:8px;background:#fff;color:#1b2733}"
        "#ssogate-login p{margin:0 0 .75rem}"
        "#ssogate-login [role=alert]{background:#fef7e0;color:#6b4500;border:1px solid #f9ab00;"
        "padding:.75rem 1rem;border-radius:4px}"
        "#ssogate-login-button{display:inline-block;background:#0b57d0;color:#fff;"
        "padding:.55rem 1.2rem;border-radius:4px;text-decoration:none;font-weight:600}"
        "#ssogate-login-button:hover{background:#0842a0}"
        "#ssogate-login-button:focus{outline:3px solid #f9ab00;outline-offset:2px}</style>"
        "%s%s%s"
        "<p>Have an IT Complete account linked to your PSA user? Sign in with it and its "
        "6-digit code. Otherwise, use your PSA password below.</p>"
        "<a id=\"ssogate-login-button\" href=\"/_sso/login\">Log in with IT Complete</a></div>",
        notice ? "<p id=\"ssogate-notice\" role=\"alert\">" : "", notice ? notice : "",
        notice ? "</p>" : "");
    size_t at = insertion_point(html, len, marker, before, fell_back);
    size_t block_len = strlen(block);
    char *out = sg_malloc(len + block_len + 1);
    memcpy(out, html, at);
    memcpy(out + at, block, block_len);
    memcpy(out + at + block_len, html + at, len - at);
    out[len + block_len] = '\0';
    *out_len = len + block_len;
    free(block);
    return out;
}
