/* numfmt: integers written as text without printf, for the paths that
 * write one per connect or per command (printf's format parsing showed in
 * profiles of both). */
#ifndef NOTIFY_NUMFMT_H
#define NOTIFY_NUMFMT_H

#include <stddef.h>
#include <stdint.h>

/* v in decimal into out, without a NUL; returns its length (1 to 20). */
static inline size_t numfmt_u64(char out[20], uint64_t v)
{
    char rev[20];
    size_t n = 0;
    do
        rev[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = rev[n - 1 - i];
    return n;
}

#endif
