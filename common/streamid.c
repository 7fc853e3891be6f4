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

int stream_expiry_from_payload(const char *payload, size_t len, int64_t *ms)
{
    static const char id_head[] = "{\"id\":\"";
    static const char key[] = "\"expires_at\":";
    size_t at = 1;
    if (len < 2 || payload[0] != '{')
        return -1;
    if (len > sizeof(id_head) - 1 && !memcmp(payload, id_head, sizeof(id_head) - 1)) {
        const char *start = payload + sizeof(id_head) - 1;
        size_t room = len - (sizeof(id_head) - 1);
        const char *quote = memchr(start, '"', room < STREAM_ID_MAX ? room : STREAM_ID_MAX);
        if (!quote || (size_t)(quote - payload) + 2 >= len || quote[1] != ',')
            return -1;
        at = (size_t)(quote - payload) + 2;
    }
    if (len - at < sizeof(key) - 1 || memcmp(payload + at, key, sizeof(key) - 1) != 0)
        return -1;
    at += sizeof(key) - 1;
    int64_t v = 0;
    size_t digits = 0;
    while (at < len && payload[at] >= '0' && payload[at] <= '9' && digits < 16) {
        v = v * 10 + (payload[at++] - '0');
        digits++;
    }
    if (!digits || at >= len || (payload[at] != ',' && payload[at] != '}'))
        return -1;
    *ms = v;
    return 0;
}
