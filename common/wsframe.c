#include "wsframe.h"

#include <pthread.h>
#include <string.h>

#include <openssl/evp.h>

#include "validate.h"

/* RFC 6455 section 1.3: appended to the client's key before hashing. */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

#define WS_ACCEPT_KEY_MAX 256

/* SHA-1, fetched from OpenSSL's providers once. SHA1() and EVP_sha1() look
 * the algorithm up again on every call (EVP_MD_fetch was ~2,100 of the
 * ~5,700 instructions an accept key cost on each connect). A fetched
 * EVP_MD is immutable and reference counted by OpenSSL, so one can serve
 * every call and thread; pthread_once makes the first fetch race-free for
 * any threaded user of this library. Never freed: one small object for
 * the life of the process, still reachable at exit. NULL if no provider
 * has SHA-1. */
static EVP_MD *sha1_md;
static pthread_once_t sha1_once = PTHREAD_ONCE_INIT;

static void sha1_fetch(void)
{
    sha1_md = EVP_MD_fetch(NULL, "SHA1", NULL);
}

static int opcode_is_known(uint8_t op)
{
    return op == WS_OP_CONT || op == WS_OP_TEXT || op == WS_OP_BINARY || op == WS_OP_CLOSE ||
           op == WS_OP_PING || op == WS_OP_PONG;
}

enum wsframe_result wsframe_parse(const uint8_t *buf, size_t len, struct wsframe *out)
{
    /* Each byte is judged as soon as it has arrived, so a bad frame is
     * refused without waiting for bytes the peer may never send; a prefix
     * of a valid header is therefore always INCOMPLETE. */
    if (len < 1)
        return WSFRAME_INCOMPLETE;
    uint8_t b0 = buf[0];
    uint8_t fin = b0 >> 7;
    uint8_t opcode = b0 & 0x0F;
    if (b0 & 0x70) /* RSV1-3: meaningful only with an extension */
        return WSFRAME_PROTOCOL;
    if (!opcode_is_known(opcode))
        return WSFRAME_PROTOCOL;
    int control = (opcode & 0x08) != 0;
    if (control && !fin)
        return WSFRAME_PROTOCOL;

    if (len < 2)
        return WSFRAME_INCOMPLETE;
    uint8_t b1 = buf[1];
    if (!(b1 & 0x80)) /* section 5.1: the server must close on an unmasked frame */
        return WSFRAME_PROTOCOL;
    uint8_t len7 = b1 & 0x7F;

    size_t ext = len7 == 127 ? 8 : len7 == 126 ? 2 : 0;
    if (ext == 8 && len >= 3 && (buf[2] & 0x80))
        return WSFRAME_PROTOCOL;
    if (len < 2 + ext)
        return WSFRAME_INCOMPLETE;
    uint64_t payload_len = len7;
    if (ext) {
        payload_len = 0;
        for (size_t i = 0; i < ext; i++)
            payload_len = (payload_len << 8) | buf[2 + i];
    }
    /* Judged on the value, not on the 7-bit field, since a longer length
     * encoding than needed is accepted. */
    if (control && payload_len > 125)
        return WSFRAME_PROTOCOL;

    size_t header_len = 2 + ext + 4;
    if (len < header_len)
        return WSFRAME_INCOMPLETE;
    out->fin = fin;
    out->opcode = opcode;
    memcpy(out->mask, buf + 2 + ext, 4);
    out->header_len = header_len;
    out->payload_len = payload_len;
    return WSFRAME_OK;
}

void wsframe_unmask(uint8_t *p, size_t len, const uint8_t mask[4], uint64_t offset)
{
    /* Rotate the key once so that p[i] pairs with key[i % 4]; the loop then
     * needs no 64-bit arithmetic per byte and the compiler can vectorise it. */
    uint8_t key[4];
    for (unsigned i = 0; i < 4; i++)
        key[i] = mask[(offset + i) & 3];
    for (size_t i = 0; i < len; i++)
        p[i] ^= key[i & 3];
}

size_t wsframe_header(uint8_t *out, enum ws_opcode opcode, uint64_t payload_len)
{
    out[0] = (uint8_t)(0x80 | (opcode & 0x0F));
    if (payload_len < 126) {
        out[1] = (uint8_t)payload_len;
        return 2;
    }
    if (payload_len < 65536) {
        out[1] = 126;
        out[2] = (uint8_t)(payload_len >> 8);
        out[3] = (uint8_t)payload_len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(payload_len >> (56 - 8 * i));
    return 10;
}

/* Standard base64 with padding; out gets 4 * ceil(len / 3) characters and
 * a NUL. */
static void base64_encode(const uint8_t *in, size_t len, char *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? alphabet[v & 63] : '=';
    }
    out[o] = '\0';
}

int wsframe_accept_key(const char *key, size_t key_len, char out[29])
{
    /* The bound keeps the concatenation on the stack; a real key is 24
     * characters (16 random bytes in base64). */
    if (key_len > WS_ACCEPT_KEY_MAX)
        return -1;
    uint8_t tmp[WS_ACCEPT_KEY_MAX + sizeof(ws_guid) - 1];
    if (key_len)
        memcpy(tmp, key, key_len);
    memcpy(tmp + key_len, ws_guid, sizeof(ws_guid) - 1);
    uint8_t digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    pthread_once(&sha1_once, sha1_fetch);
    if (!sha1_md ||
        !EVP_Digest(tmp, key_len + sizeof(ws_guid) - 1, digest, &digest_len, sha1_md, NULL) ||
        digest_len != 20)
        return -1;
    base64_encode(digest, digest_len, out);
    return 0;
}

/* RFC 6455 section 7.4: the codes a peer may put in a close frame. 1004
 * is reserved, 1005, 1006 and 1015 are only reported locally, and
 * 1016-2999 belong to the protocol and its extensions. */
static int close_code_is_sendable(uint16_t code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

uint16_t wsframe_close_code(const uint8_t *payload, size_t len)
{
    if (len == 0)
        return 1005;
    if (len == 1)
        return 0;
    uint16_t code = (uint16_t)((payload[0] << 8) | payload[1]);
    if (!close_code_is_sendable(code))
        return 0;
    if (!validate_utf8((const char *)payload + 2, len - 2))
        return 0;
    return code;
}
