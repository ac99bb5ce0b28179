/*
 * Fuzz target for what the gateway does with outside input on its way to a
 * redirect or a page: return_to validation (an accepted value must be a
 * local path) and the login-page block insertion into arbitrary HTML.
 */
#include "../../gateway/common.c"
#include "../../gateway/inject.c"
#include "../../gateway/redirect.c"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    if (sg_redirect_target_valid(text)) {
        if (text[0] != '/' || text[1] == '/' || text[1] == '\\' || strchr(text, '\\') != NULL)
            abort();
        for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
            if (*p < 0x21 || *p > 0x7e)
                abort();
        }
    }
    size_t out_len;
    bool fell_back;
    /* The page's first bytes, when there are some, are also the marker looked for. */
    char marker[5] = "";
    memcpy(marker, data, size < 4 ? size : 4);
    bool has_marker = marker[0] != '\0' && strlen(marker) == (size < 4 ? size : 4);
    char *page =
        sg_inject_login_block((const char *)data, size, size > 0 ? "inactive" : NULL,
                              has_marker ? marker : NULL, size % 2 == 0, &fell_back, &out_len);
    if (out_len <= size || memmem(page, out_len, "ssogate-login", 13) == NULL || fell_back)
        abort();
    free(page);
    free(text);
    return 0;
}
