#include "totp.h"

#include "ssogate/common.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#define TOTP_STEP_S  30
#define TOTP_DIGITS  6
#define TOTP_MODULUS 1000000u /* 10^TOTP_DIGITS */

static int base32_value(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a';
    if (c >= '2' && c <= '7')
        return c - '2' + 26;
    return -1;
}

int sg_totp_base32_decode(const char *text, unsigned char *out, size_t out_size)
{
    uint32_t bits = 0;
    unsigned bit_count = 0;
    size_t len = 0;
    for (const char *p = text; *p != '\0'; p++) {
        if (*p == '=' || *p == ' ')
            continue;
        int v = base32_value((unsigned char)*p);
        if (v < 0)
            return SG_EINVAL;
        bits = (bits << 5) | (uint32_t)v;
        bit_count += 5;
        if (bit_count >= 8) {
            if (len == out_size)
                return SG_EINVAL;
            bit_count -= 8;
            out[len++] = (unsigned char)(bits >> bit_count);
            bits &= (1u << bit_count) - 1;
        }
    }
    return len == 0 ? SG_EINVAL : (int)len;
}

int sg_totp_code(const unsigned char *key, size_t key_len, int64_t unix_s, char code[7])
{
    uint64_t counter = (uint64_t)(unix_s / TOTP_STEP_S);
    unsigned char message[8];
    for (int i = 7; i >= 0; i--) {
        message[i] = (unsigned char)(counter & 0xff);
        counter >>= 8;
    }
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0;
    if (HMAC(EVP_sha1(), key, (int)key_len, message, sizeof(message), mac, &mac_len) == NULL ||
        mac_len < 20)
        return SG_ECRYPTO;
    /* RFC 4226 5.3 dynamic truncation. */
    unsigned offset = mac[mac_len - 1] & 0x0f;
    uint32_t binary = ((uint32_t)(mac[offset] & 0x7f) << 24) | ((uint32_t)mac[offset + 1] << 16) |
                      ((uint32_t)mac[offset + 2] << 8) | (uint32_t)mac[offset + 3];
    uint32_t value = binary % TOTP_MODULUS;
    for (int i = TOTP_DIGITS - 1; i >= 0; i--) {
        code[i] = (char)('0' + value % 10);
        value /= 10;
    }
    code[TOTP_DIGITS] = '\0';
    return 0;
}
