#include "streamid.h"

#include <stdio.h>
#include <string.h>

#include "validate.h"

static uint64_t digits(const char *s, size_t len)
{
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++)
        v = v * 10 + (uint64_t)(s[i] - '0');
    return v;
}

int stream_id_parse(const char *s, size_t len, struct stream_id *out)
{
    if (!validate_stream_id(s, len))
        return -1;
    const char *dash = memchr(s, '-', len);
    out->ms = digits(s, (size_t)(dash - s));
    out->seq = digits(dash + 1, len - (size_t)(dash - s) - 1);
    return 0;
}

int stream_id_cmp(const struct stream_id *a, const struct stream_id *b)
{
    if (a->ms != b->ms)
        return a->ms < b->ms ? -1 : 1;
    if (a->seq != b->seq)
        return a->seq < b->seq ? -1 : 1;
    return 0;
}

void stream_id_format(const struct stream_id *id, char *buf, size_t size)
{
    snprintf(buf, size, "%llu-%llu", (unsigned long long)id->ms, (unsigned long long)id->seq);
}

int stream_id_from_payload(const char *payload, size_t len, struct stream_id *out)
{
    static const char head[] = "{\"id\":\"";
    size_t hlen = sizeof(head) - 1;
    if (len < hlen + 4 || memcmp(payload, head, hlen) != 0)
        return -1;
    const char *start = payload + hlen;
    const char *quote = memchr(start, '"', len - hlen < STREAM_ID_MAX ? len - hlen : STREAM_ID_MAX);
    if (!quote)
        return -1;
    return stream_id_parse(start, (size_t)(quote - start), out);
}
