/* libFuzzer target: stream_id_parse and stream_id_from_payload (the `since`
 * query of a connecting client and the id at the head of every published
 * payload), checked against a simple reference and a format round trip. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "streamid.h"

/* Reference: "<digits>-<digits>", each fitting in a uint64_t. */
static int ref_parse(const uint8_t *s, size_t len, struct stream_id *out)
{
    uint64_t part[2] = {0, 0};
    size_t i = 0;
    for (int k = 0; k < 2; k++) {
        size_t start = i;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            uint64_t d = (uint64_t)(s[i] - '0');
            if (part[k] > (UINT64_MAX - d) / 10)
                return -1;
            part[k] = part[k] * 10 + d;
            i++;
        }
        if (i == start)
            return -1;
        if (k == 0) {
            if (i >= len || s[i] != '-')
                return -1;
            i++;
        }
    }
    if (i != len)
        return -1;
    out->ms = part[0];
    out->seq = part[1];
    return 0;
}

static void check_parse(const uint8_t *data, size_t size)
{
    /* an exact-size heap copy, so reads past the end are caught */
    char *s = malloc(size ? size : 1);
    if (!s)
        return;
    memcpy(s, data, size);
    struct stream_id id = {7, 7}, ref;
    int rc = stream_id_parse(s, size, &id);
    int rrc = ref_parse(data, size, &ref);
    /* the parser also bounds the length (41 bytes: 20 + 1 + 20 digits) */
    if (rc == 0) {
        if (rrc != 0 || size > 41 || id.ms != ref.ms || id.seq != ref.seq)
            abort();
        char buf[STREAM_ID_MAX];
        stream_id_format(&id, buf, sizeof(buf));
        struct stream_id back;
        if (stream_id_parse(buf, strlen(buf), &back) != 0 || stream_id_cmp(&back, &id) != 0)
            abort();
    } else {
        if (rc != -1 || (rrc == 0 && size <= 41))
            abort();
    }
    free(s);
}

static void check_payload(const uint8_t *data, size_t size)
{
    char *s = malloc(size ? size : 1);
    if (!s)
        return;
    memcpy(s, data, size);
    struct stream_id id;
    int rc = stream_id_from_payload(s, size, &id);
    if (rc == 0) {
        static const char head[] = "{\"id\":\"";
        size_t hlen = sizeof(head) - 1;
        if (size <= hlen || memcmp(s, head, hlen) != 0)
            abort();
        const char *q = memchr(s + hlen, '"', size - hlen);
        if (!q)
            abort();
        struct stream_id again;
        if (stream_id_parse(s + hlen, (size_t)(q - (s + hlen)), &again) != 0 ||
            stream_id_cmp(&again, &id) != 0)
            abort();
    } else if (rc != -1) {
        abort();
    }
    free(s);
}

/* cmp is an order: antisymmetric and consistent with equality. */
static void check_cmp(const uint8_t *data, size_t size)
{
    const uint8_t *sep = memchr(data, ',', size);
    if (!sep)
        return;
    struct stream_id a, b;
    size_t alen = (size_t)(sep - data);
    if (ref_parse(data, alen, &a) != 0 || ref_parse(sep + 1, size - alen - 1, &b) != 0)
        return;
    int ab = stream_id_cmp(&a, &b), ba = stream_id_cmp(&b, &a);
    if ((ab < 0) != (ba > 0) || (ab == 0) != (ba == 0))
        abort();
    if ((ab == 0) != (a.ms == b.ms && a.seq == b.seq))
        abort();
    if (stream_id_cmp(&a, &a) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_parse(data, size);
    check_payload(data, size);
    check_cmp(data, size);
    return 0;
}
