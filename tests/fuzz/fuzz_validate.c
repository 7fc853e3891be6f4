/* libFuzzer target: validate_account_id, validate_utf8 and
 * validate_stream_id, each compared with a plain reference written
 * differently (UTF-8 from the Unicode table of well-formed byte sequences,
 * stream ids through strtoull). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"

static int ref_account(const unsigned char *s, size_t len)
{
    if (len < 1 || len > 128)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.@:-", s[i]) ||
            s[i] == '\0')
            return 0;
    return 1;
}

static int in(unsigned char c, unsigned char lo, unsigned char hi)
{
    return c >= lo && c <= hi;
}

/* Unicode 15, table 3-7: well-formed UTF-8 byte sequences. */
static int ref_utf8(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char a = s[i];
        size_t left = len - i;
        if (a <= 0x7f) {
            i += 1;
        } else if (in(a, 0xc2, 0xdf) && left >= 2 && in(s[i + 1], 0x80, 0xbf)) {
            i += 2;
        } else if (left >= 3 && in(s[i + 2], 0x80, 0xbf) &&
                   ((a == 0xe0 && in(s[i + 1], 0xa0, 0xbf)) ||
                    (in(a, 0xe1, 0xec) && in(s[i + 1], 0x80, 0xbf)) ||
                    (a == 0xed && in(s[i + 1], 0x80, 0x9f)) ||
                    (in(a, 0xee, 0xef) && in(s[i + 1], 0x80, 0xbf)))) {
            i += 3;
        } else if (left >= 4 && in(s[i + 2], 0x80, 0xbf) && in(s[i + 3], 0x80, 0xbf) &&
                   ((a == 0xf0 && in(s[i + 1], 0x90, 0xbf)) ||
                    (in(a, 0xf1, 0xf3) && in(s[i + 1], 0x80, 0xbf)) ||
                    (a == 0xf4 && in(s[i + 1], 0x80, 0x8f)))) {
            i += 4;
        } else {
            return 0;
        }
    }
    return 1;
}

/* Decimal digits only, at least one, with a value that fits in 64 bits
 * (leading zeros allowed, as Redis allows them). */
static int ref_u64(const char *s, size_t len)
{
    char tmp[64];
    if (len == 0 || len >= sizeof(tmp))
        return 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    errno = 0;
    (void)strtoull(tmp, NULL, 10);
    return errno == 0;
}

/* "<ms>-<seq>", at most 41 bytes (two 20-digit numbers and the dash). */
static int ref_stream(const char *s, size_t len)
{
    if (len > 41)
        return 0;
    const char *dash = memchr(s, '-', len);
    if (!dash)
        return 0;
    size_t a = (size_t)(dash - s);
    return ref_u64(s, a) && ref_u64(dash + 1, len - a - 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy so ASan catches any read past the end. */
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    const unsigned char *u = (const unsigned char *)buf;

    if (validate_account_id(buf, size) != ref_account(u, size))
        abort();
    if (validate_utf8(buf, size) != ref_utf8(u, size))
        abort();
    if (validate_stream_id(buf, size) != ref_stream(buf, size))
        abort();
    /* every prefix too, cheaply for the short inputs */
    if (size <= 64)
        for (size_t n = 0; n < size; n++)
            if (validate_utf8(buf, n) != ref_utf8(u, n) ||
                validate_stream_id(buf, n) != ref_stream(buf, n) ||
                validate_account_id(buf, n) != ref_account(u, n))
                abort();
    free(buf);
    return 0;
}
