#include "wsclient.h"

#include <stdio.h>
#include <string.h>

int wsclient_request(char *buf, size_t size, const char *host, int port, const char *path,
                     const char *key, const char *headers)
{
    int n = snprintf(buf, size,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     path, host, port, key, headers ? headers : "");
    return n < 0 || (size_t)n >= size ? -1 : n;
}

size_t wsclient_frame(uint8_t *out, size_t cap, int b0, const uint8_t *mask, const void *data,
                      size_t len)
{
    size_t total = wsclient_frame_len(len, mask != NULL);
    if (total > cap)
        return 0;
    size_t h = 0;
    uint8_t mbit = mask ? 0x80 : 0;
    out[h++] = (uint8_t)b0;
    if (len < 126) {
        out[h++] = (uint8_t)(mbit | len);
    } else if (len <= 0xffff) {
        out[h++] = mbit | 126;
        out[h++] = (uint8_t)(len >> 8);
        out[h++] = (uint8_t)len;
    } else {
        out[h++] = mbit | 127;
        for (int i = 7; i >= 0; i--)
            out[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    const uint8_t *d = data;
    if (!mask) {
        memcpy(out + h, d, len);
        return total;
    }
    memcpy(out + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < len; i++)
        out[h + i] = d[i] ^ mask[i & 3];
    return total;
}

int wsclient_frame_parse(const uint8_t *p, size_t n, struct wsclient_frame *f)
{
    if (n < 2)
        return 0;
    size_t h = 2;
    uint64_t len = p[1] & 0x7f;
    if (len == 126) {
        if (n < 4)
            return 0;
        len = (uint64_t)p[2] << 8 | p[3];
        h = 4;
    } else if (len == 127) {
        if (n < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | p[2 + i];
        h = 10;
    }
    f->masked = (p[1] & 0x80) != 0;
    if (f->masked) {
        if (n < h + 4)
            return 0;
        memcpy(f->mask, p + h, 4);
        h += 4;
    }
    f->fin = (p[0] & 0x80) != 0;
    f->opcode = p[0] & 0x0f;
    f->header_len = h;
    f->payload_len = len;
    return 1;
}

int wsclient_close_code(const void *payload, size_t len)
{
    const uint8_t *d = payload;
    return len >= 2 ? (d[0] << 8 | d[1]) : 1005;
}
