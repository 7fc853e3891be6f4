#include "keyslot.h"

#include <string.h>

static uint16_t crc16(const unsigned char *p, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned keyslot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t from = (size_t)(open - key) + 1;
        const char *close = memchr(open + 1, '}', len - from);
        if (close && close > open + 1)
            return crc16((const unsigned char *)open + 1, (size_t)(close - open - 1)) %
                   KEYSLOT_COUNT;
    }
    return crc16((const unsigned char *)key, len) % KEYSLOT_COUNT;
}

void keyslot_tags(char *out)
{
    static const char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    enum { A = sizeof(alphabet) - 1 };
    unsigned filled = 0;
    memset(out, 0, (size_t)KEYSLOT_COUNT * KEYSLOT_TAG_LEN);
    for (unsigned n = 0; n < A * A * A * A && filled < KEYSLOT_COUNT; n++) {
        unsigned char t[KEYSLOT_TAG_LEN] = {
            (unsigned char)alphabet[n / (A * A * A)], (unsigned char)alphabet[n / (A * A) % A],
            (unsigned char)alphabet[n / A % A], (unsigned char)alphabet[n % A]};
        unsigned slot = crc16(t, sizeof(t)) % KEYSLOT_COUNT;
        char *at = out + (size_t)slot * KEYSLOT_TAG_LEN;
        if (!at[0]) {
            memcpy(at, t, sizeof(t));
            filled++;
        }
    }
}
