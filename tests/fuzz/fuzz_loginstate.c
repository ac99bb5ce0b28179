/*
 * Fuzzes the login-state record decoder with records as another worker
 * process, or a corrupted disk, might leave them in the store (issue 10).
 * Properties: a refused record leaves the output zeroed; an accepted one
 * has base64url nonce and verifier, a known purpose, a return_to, texts
 * within their bounds, and encodes back to exactly the input bytes.
 */
#include "../../gateway/common.c"
#include "../../gateway/loginstate.c"
#include "../../gateway/store.c"
#include "../../gateway/store_lmdb.c"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_text(const char *text)
{
    if (text != NULL && (text[0] == '\0' || strlen(text) > SG_LOGINSTATE_TEXT_MAX))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sg_loginstate out, zero;
    memset(&zero, 0, sizeof(zero));
    enum sg_loginstate_status status = sg_loginstate_decode(data, size, &out);
    if (strcmp(sg_loginstate_status_name(status), "unknown") == 0)
        abort();
    if (status != SG_LOGINSTATE_OK) {
        if (memcmp(&out, &zero, sizeof(out)) != 0)
            abort();
        return 0;
    }
    if (!token_text_valid(out.nonce) || !token_text_valid(out.verifier) || out.state[0] != '\0' ||
        (unsigned)out.purpose > SG_LOGIN_LINK_USER || out.return_to == NULL)
        abort();
    check_text(out.return_to);
    check_text(out.psa_tenant);
    check_text(out.psa_user);
    unsigned char record[SG_LOGINSTATE_RECORD_MAX];
    size_t len;
    if (sg_loginstate_encode(&out, record, &len) != 0 || len != size ||
        memcmp(record, data, size) != 0)
        abort();
    sg_loginstate_clear(&out);
    return 0;
}
