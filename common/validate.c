#include "validate.h"

#include <stdint.h>

int validate_account_id(const char *s, size_t len)
{
    if (len == 0 || len > ACCOUNT_ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '_' || c == '.' || c == '@' || c == ':' || c == '-')
            continue;
        return 0;
    }
    return 1;
}

size_t validate_utf8_seq(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 1;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 2;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 3;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (avail <= n)
        return 0;
    for (size_t k = 1; k <= n; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n + 1;
}

int validate_utf8(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t n = validate_utf8_seq(s + i, len - i);
        if (!n)
            return 0;
        i += n;
    }
    return 1;
}

/* The bytes a sequence whose first byte is c takes (0: c starts none). */
static size_t seq_len(unsigned char c)
{
    return c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
}

int validate_utf8_partial(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t n = validate_utf8_seq(s + i, len - i);
        if (n) {
            i += n;
            continue;
        }
        size_t want = seq_len(s[i]), have = len - i;
        if (!want || have >= want)
            return -1;
        if (have == 1)
            return 1; /* a lead byte alone: any of them can still be finished */
        /* Whether a sequence is allowed is decided by its first two bytes
         * (overlong forms, surrogates and code points past U+10FFFF all
         * start with a pair of their own), so the smallest completion
         * answers for every one. */
        unsigned char pad[4] = {0x80, 0x80, 0x80, 0x80};
        for (size_t k = 0; k < have; k++)
            pad[k] = s[i + k];
        return validate_utf8_seq(pad, want) ? (int)have : -1;
    }
    return 0;
}

/* Parses one decimal u64 field; returns the number of digits consumed, 0 on
 * overflow or no digits. */
static size_t parse_u64(const char *s, size_t len)
{
    uint64_t v = 0;
    size_t i = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
        i++;
    }
    return i;
}

int validate_stream_id(const char *s, size_t len)
{
    if (len == 0 || len > 41)
        return 0;
    size_t a = parse_u64(s, len);
    if (a == 0 || a == len || s[a] != '-')
        return 0;
    size_t b = parse_u64(s + a + 1, len - a - 1);
    return b > 0 && a + 1 + b == len;
}
