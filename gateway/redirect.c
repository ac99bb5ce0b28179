#include "ssogate/redirect.h"

#include <string.h>

bool sg_redirect_target_valid(const char *target)
{
    size_t len = strlen(target);
    if (len == 0 || len > SG_REDIRECT_MAX || target[0] != '/')
        return false;
    if (len > 1 && (target[1] == '/' || target[1] == '\\'))
        return false;
    for (const unsigned char *p = (const unsigned char *)target; *p; p++) {
        if (*p < 0x21 || *p > 0x7e || *p == '\\')
            return false;
    }
    return true;
}
