/* libFuzzer target: wsframe_parse, wsframe_unmask, wsframe_header,
 * wsframe_accept_key and wsframe_close_code, each checked against
 * invariants and a plain reference (header fields read bit by bit from the
 * RFC 6455 layout, the accept key through OpenSSL's own base64). */
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"
#include "wsframe.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* The header's result judged from the RFC 6455 figure in section 5.2,
 * written as a whole-header check rather than byte by byte. */
static enum wsframe_result ref_parse(const uint8_t *b, size_t len, struct wsframe *out)
{
    if (len < 2) {
        /* Only the first byte can already be wrong. */
        if (len == 1) {
            int op = b[0] & 0x0f;
            int known = op <= 2 || (op >= 8 && op <= 10);
            if ((b[0] & 0x70) || !known || (op >= 8 && !(b[0] & 0x80)))
                return WSFRAME_PROTOCOL;
        }
        return WSFRAME_INCOMPLETE;
    }
    int fin = b[0] >> 7, rsv = (b[0] >> 4) & 7, op = b[0] & 0x0f;
    int masked = b[1] >> 7, len7 = b[1] & 0x7f;
    int known = op <= 2 || (op >= 8 && op <= 10);
    int control = op >= 8;
    if (rsv || !known || (control && !fin) || !masked)
        return WSFRAME_PROTOCOL;
    size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    if (ext == 8 && len >= 3 && b[2] >= 0x80)
        return WSFRAME_PROTOCOL;
    if (len < 2 + ext)
        return WSFRAME_INCOMPLETE;
    uint64_t plen = (uint64_t)len7;
    if (ext == 2)
        plen = (uint64_t)b[2] * 256 + b[3];
    if (ext == 8) {
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = plen * 256 + b[2 + i];
    }
    if (control && plen > 125)
        return WSFRAME_PROTOCOL;
    if (len < 2 + ext + 4)
        return WSFRAME_INCOMPLETE;
    out->fin = (uint8_t)fin;
    out->opcode = (uint8_t)op;
    for (int i = 0; i < 4; i++)
        out->mask[i] = b[2 + ext + i];
    out->header_len = 2 + ext + 4;
    out->payload_len = plen;
    return WSFRAME_OK;
}

static void check_parse(const uint8_t *buf, size_t size)
{
    struct wsframe f, r;
    memset(&f, 0, sizeof(f));
    memset(&r, 0, sizeof(r));
    enum wsframe_result got = wsframe_parse(buf, size, &f);
    enum wsframe_result want = ref_parse(buf, size, &r);
    CHECK(got == want);
    if (got == WSFRAME_INCOMPLETE)
        CHECK(size < 14);
    if (got != WSFRAME_OK)
        return;
    CHECK(f.header_len <= size);
    CHECK(f.header_len == 6 || f.header_len == 8 || f.header_len == 14);
    CHECK(f.fin == r.fin && f.opcode == r.opcode && f.header_len == r.header_len &&
          f.payload_len == r.payload_len && memcmp(f.mask, r.mask, 4) == 0);
    CHECK(f.payload_len >> 63 == 0);
    CHECK(f.opcode < 8 || (f.fin && f.payload_len <= 125));

    /* Exactly the header is enough; every shorter prefix is INCOMPLETE. */
    struct wsframe g;
    CHECK(wsframe_parse(buf, f.header_len, &g) == WSFRAME_OK);
    CHECK(g.fin == f.fin && g.opcode == f.opcode && g.header_len == f.header_len &&
          g.payload_len == f.payload_len && memcmp(g.mask, f.mask, 4) == 0);
    for (size_t n = 0; n < f.header_len; n++)
        CHECK(wsframe_parse(buf, n, &g) == WSFRAME_INCOMPLETE);

    /* Re-encoded (shortest length form, as the server writes it, plus the
     * mask bit and key a client adds), it parses back to the same values. */
    uint8_t enc[WS_HEADER_MAX + 4];
    size_t n = wsframe_header(enc, (enum ws_opcode)f.opcode, f.payload_len);
    CHECK(n == wsframe_header_len(f.payload_len));
    CHECK(n + 4 <= f.header_len);
    enc[1] |= 0x80;
    memcpy(enc + n, f.mask, 4);
    CHECK(wsframe_parse(enc, n + 4, &g) == WSFRAME_OK);
    CHECK(g.fin == 1 && g.opcode == f.opcode && g.payload_len == f.payload_len &&
          g.header_len == n + 4 && memcmp(g.mask, f.mask, 4) == 0);
    /* When the frame was written in the shortest form and with FIN, the
     * re-encoding is byte for byte the same header. */
    if (f.fin && n + 4 == f.header_len)
        CHECK(memcmp(enc, buf, n + 4) == 0);
}

/* A prefix that is already refused stays refused as bytes arrive. */
static void check_prefixes(const uint8_t *buf, size_t size)
{
    struct wsframe f;
    enum wsframe_result full = wsframe_parse(buf, size, &f);
    size_t lim = size < 16 ? size : 16;
    for (size_t n = 0; n < lim; n++) {
        enum wsframe_result r = wsframe_parse(buf, n, &f);
        CHECK(r == WSFRAME_INCOMPLETE || r == WSFRAME_PROTOCOL || r == WSFRAME_OK);
        if (r == WSFRAME_PROTOCOL)
            CHECK(full == WSFRAME_PROTOCOL);
        if (full == WSFRAME_INCOMPLETE)
            CHECK(r == WSFRAME_INCOMPLETE);
    }
}

/* Unmasking in three pieces equals unmasking at once, and twice is the
 * identity; key and offsets come from the input. */
static void check_unmask(const uint8_t *buf, size_t size)
{
    if (size < 6)
        return;
    uint8_t mask[4];
    memcpy(mask, buf, 4);
    size_t len = size - 6;
    uint64_t base = (uint64_t)buf[4] * 0x1000003u;
    size_t a = len ? buf[5] % (len + 1) : 0;
    size_t b = a + (len - a) / 2;
    uint8_t *once = malloc(len ? len : 1);
    uint8_t *pieces = malloc(len ? len : 1);
    CHECK(once && pieces);
    memcpy(once, buf + 6, len);
    memcpy(pieces, buf + 6, len);
    wsframe_unmask(once, len, mask, base);
    for (size_t i = 0; i < len; i++)
        CHECK(once[i] == (buf[6 + i] ^ mask[(base + i) % 4]));
    wsframe_unmask(pieces, a, mask, base);
    wsframe_unmask(pieces + a, b - a, mask, base + a);
    wsframe_unmask(pieces + b, len - b, mask, base + b);
    CHECK(memcmp(once, pieces, len) == 0);
    wsframe_unmask(once, len, mask, base);
    CHECK(memcmp(once, buf + 6, len) == 0);
    free(once);
    free(pieces);
}

/* Server headers for a length taken from the input decode back. */
static void check_header(const uint8_t *buf, size_t size)
{
    if (size < 9)
        return;
    uint64_t plen = 0;
    for (int i = 1; i < 9; i++)
        plen = plen << 8 | buf[i];
    /* Spread over the three size classes, not mostly 64-bit ones. */
    plen >>= (buf[0] & 0x3f);
    static const enum ws_opcode ops[] = {WS_OP_CONT,  WS_OP_TEXT, WS_OP_BINARY,
                                         WS_OP_CLOSE, WS_OP_PING, WS_OP_PONG};
    enum ws_opcode op = ops[(buf[0] >> 6) % 6];
    uint8_t h[WS_HEADER_MAX + 1];
    h[WS_HEADER_MAX] = 0x5a;
    size_t n = wsframe_header(h, op, plen);
    CHECK(h[WS_HEADER_MAX] == 0x5a);
    CHECK(n == wsframe_header_len(plen));
    CHECK(h[0] == (0x80 | op));
    CHECK((h[1] & 0x80) == 0);
    uint64_t back;
    if (n == 2) {
        back = h[1];
        CHECK(back < 126);
    } else if (n == 4) {
        CHECK(h[1] == 126);
        back = (uint64_t)h[2] << 8 | h[3];
        CHECK(back >= 126);
    } else {
        CHECK(n == 10 && h[1] == 127);
        back = 0;
        for (int i = 0; i < 8; i++)
            back = back << 8 | h[2 + i];
        CHECK(back >= 65536);
    }
    CHECK(back == plen);
}

static void check_accept(const uint8_t *buf, size_t size)
{
    char out[29];
    memset(out, 0x5a, sizeof(out));
    int r = wsframe_accept_key((const char *)buf, size, out);
    if (size > 256) {
        CHECK(r == -1);
        return;
    }
    CHECK(r == 0);
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char cat[256 + sizeof(guid)];
    memcpy(cat, buf, size);
    memcpy(cat + size, guid, sizeof(guid) - 1);
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1(cat, size + sizeof(guid) - 1, md);
    unsigned char want[32];
    CHECK(EVP_EncodeBlock(want, md, sizeof(md)) == 28);
    CHECK(memcmp(out, want, 29) == 0);
}

static void check_close(const uint8_t *buf, size_t size)
{
    uint16_t got = wsframe_close_code(buf, size);
    if (size == 0) {
        CHECK(got == 1005);
        return;
    }
    if (size == 1) {
        CHECK(got == 0);
        return;
    }
    unsigned code = (unsigned)buf[0] << 8 | buf[1];
    int sendable = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                   (code >= 3000 && code <= 4999);
    int ok = sendable && validate_utf8((const char *)buf + 2, size - 2);
    CHECK(got == (ok ? code : 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy so ASan catches any read past the end. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);

    check_parse(buf, size);
    check_prefixes(buf, size);
    /* A frame followed by another: parse the second header too, as the
     * gateway does after skipping a payload that fit in the buffer. */
    struct wsframe f;
    if (wsframe_parse(buf, size, &f) == WSFRAME_OK && f.payload_len <= size - f.header_len) {
        size_t next = f.header_len + (size_t)f.payload_len;
        check_parse(buf + next, size - next);
        if (f.opcode == WS_OP_CLOSE) {
            /* A close frame's payload as the gateway sees it: unmasked. */
            uint8_t *p = malloc(f.payload_len ? (size_t)f.payload_len : 1);
            CHECK(p != NULL);
            memcpy(p, buf + f.header_len, (size_t)f.payload_len);
            wsframe_unmask(p, (size_t)f.payload_len, f.mask, 0);
            check_close(p, (size_t)f.payload_len);
            free(p);
        }
    }
    check_unmask(buf, size);
    check_header(buf, size);
    check_accept(buf, size);
    check_close(buf, size);
    free(buf);
    return 0;
}
