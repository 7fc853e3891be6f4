#include "resp.h"

#include <stdint.h>
#include <string.h>

/* Redis refuses bulk strings over 512 MB (proto-max-bulk-len): anything
 * longer is not a reply from Redis. A subscriber connection's replies have
 * 2 to 4 elements; a longer array is left to hiredis (resp_scan says -1,
 * and the caller hands hiredis the rest). */
#define BULK_MAX (512LL * 1024 * 1024)
#define COUNT_MAX (1LL << 20)
/* Larger integers are not read as numbers (no overflow on the way). */
#define INTEGER_MAX (1LL << 62)

/* A header line: a type byte, a signed decimal, CRLF. Returns the bytes it
 * takes, 0 when incomplete, -1 when malformed; *value gets the number. */
static long read_number_line(const char *p, size_t len, long long max, long long *value)
{
    size_t i = 1;
    int neg = 0;
    if (i < len && p[i] == '-') {
        neg = 1;
        i++;
    }
    long long v = 0;
    size_t digits = 0;
    for (; i < len && p[i] >= '0' && p[i] <= '9'; i++, digits++) {
        v = v * 10 + (p[i] - '0');
        if (v > max)
            return -1;
    }
    if (i + 2 > len)
        return 0;
    if (!digits || p[i] != '\r' || p[i + 1] != '\n')
        return -1;
    *value = neg ? -v : v;
    return (long)(i + 2);
}

/* A simple string, error or integer line: everything up to CRLF. */
static long read_line(const char *p, size_t len)
{
    const char *cr = memchr(p, '\r', len);
    if (!cr || (size_t)(cr - p) + 2 > len)
        return 0;
    return cr[1] == '\n' ? (long)(cr - p) + 2 : -1;
}

/* One bulk string at p: its length in bytes, 0 or -1 as above; *s and
 * *n get its content (NULL for a null bulk). */
static long read_bulk(const char *p, size_t len, const char **s, size_t *n)
{
    long long blen;
    long h = read_number_line(p, len, BULK_MAX, &blen);
    if (h <= 0)
        return h;
    if (blen < 0) {
        if (blen != -1)
            return -1;
        *s = NULL;
        *n = 0;
        return h;
    }
    if ((size_t)h + (size_t)blen + 2 > len)
        return 0;
    if (p[h + blen] != '\r' || p[h + blen + 1] != '\n')
        return -1;
    *s = p + h;
    *n = (size_t)blen;
    return h + (long)blen + 2;
}

/* The bulk string at buf[*off..len) that is not null: advances *off past
 * it; 0 when it is anything else or incomplete. */
static int next_bulk(const char *buf, size_t len, size_t *off, const char **s, size_t *n)
{
    if (*off >= len || buf[*off] != '$')
        return 0;
    long used = read_bulk(buf + *off, len - *off, s, n);
    if (used <= 0 || !*s)
        return 0;
    *off += (size_t)used;
    return 1;
}

/* The common case first: *3, then three bulk strings, the first of them
 * "message" or "smessage". Returns the push's length, or 0 when the reply
 * is anything else or incomplete (the general scan then decides). */
static long scan_message(const char *buf, size_t len, struct resp_message *msg)
{
    size_t off = 4;
    const char *kind;
    size_t kind_len;
    if (len < off || memcmp(buf, "*3\r\n", 4) != 0 ||
        !next_bulk(buf, len, &off, &kind, &kind_len) ||
        !((kind_len == 7 && memcmp(kind, "message", 7) == 0) ||
          (kind_len == 8 && memcmp(kind, "smessage", 8) == 0)) ||
        !next_bulk(buf, len, &off, &msg->channel, &msg->channel_len) ||
        !next_bulk(buf, len, &off, &msg->payload, &msg->payload_len))
        return 0;
    return (long)off;
}

long resp_scan(const char *buf, size_t len, struct resp_message *msg, int *is_message)
{
    *is_message = 0;
    long m = scan_message(buf, len, msg);
    if (m > 0) {
        *is_message = 1;
        return m;
    }
    /* Any reply: count the values still to read; an array's header adds
     * its elements. Nesting needs no stack, since RESP writes a tree in
     * prefix order. */
    size_t off = 0;
    long long pending = 1;
    while (pending > 0) {
        if (off >= len)
            return 0;
        const char *p = buf + off;
        size_t left = len - off;
        long n;
        long long count;
        const char *s;
        size_t slen;
        switch (p[0]) {
        case '+':
        case '-':
        case ':':
            n = read_line(p, left);
            break;
        case '$':
            n = read_bulk(p, left, &s, &slen);
            break;
        case '*':
            n = read_number_line(p, left, COUNT_MAX, &count);
            if (n > 0 && count < -1)
                return -1;
            if (n > 0 && count > 0)
                pending += count;
            break;
        default:
            return -1;
        }
        if (n <= 0)
            return n;
        off += (size_t)n;
        pending--;
    }
    return (long)off;
}

/* The confirmation kinds: the verb's name, whether it subscribes, whether
 * it is sharded. */
static const struct {
    const char *name;
    size_t len;
    int subscribe, sharded;
} confirm_kinds[] = {
    {"subscribe", 9, 1, 0},
    {"unsubscribe", 11, 0, 0},
    {"ssubscribe", 10, 1, 1},
    {"sunsubscribe", 12, 0, 1},
};

int resp_confirmation(const char *buf, size_t len, struct resp_confirmation *c)
{
    size_t off = 4;
    const char *kind;
    size_t kind_len;
    long long count;
    if (len < off || memcmp(buf, "*3\r\n", 4) != 0 || !next_bulk(buf, len, &off, &kind, &kind_len))
        return 0;
    size_t k = 0, n_kinds = sizeof(confirm_kinds) / sizeof(confirm_kinds[0]);
    while (k < n_kinds && !(kind_len == confirm_kinds[k].len &&
                            memcmp(kind, confirm_kinds[k].name, kind_len) == 0))
        k++;
    if (k == n_kinds || !next_bulk(buf, len, &off, &c->channel, &c->channel_len) || off >= len ||
        buf[off] != ':')
        return 0;
    long n = read_number_line(buf + off, len - off, INTEGER_MAX, &count);
    if (n <= 0 || off + (size_t)n != len)
        return 0;
    c->subscribe = confirm_kinds[k].subscribe;
    c->sharded = confirm_kinds[k].sharded;
    c->count = count;
    return 1;
}
