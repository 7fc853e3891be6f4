/* wsframe: the WebSocket wire format (RFC 6455), as pure functions.
 *
 * The gateway reads client frames and writes server frames on its own
 * sockets (gateway/net/input.c, output.c); everything here works on byte buffers only, so
 * it is unit-tested and fuzzed without a socket. */
#ifndef NOTIFY_WSFRAME_H
#define NOTIFY_WSFRAME_H

#include <stddef.h>
#include <stdint.h>

enum ws_opcode {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

/* Largest server frame header: 2 bytes plus an 8-byte length. */
#define WS_HEADER_MAX 10

/* One client frame's header, as wsframe_parse() read it. */
struct wsframe {
    uint8_t fin;          /* last fragment of its message */
    uint8_t opcode;       /* enum ws_opcode */
    uint8_t mask[4];      /* the client's masking key */
    size_t header_len;    /* bytes of header before the payload */
    uint64_t payload_len; /* bytes of payload after the header */
};

enum wsframe_result {
    WSFRAME_OK = 0,          /* *out is filled in */
    WSFRAME_INCOMPLETE = -1, /* more bytes are needed to read the header */
    WSFRAME_PROTOCOL = -2,   /* not a valid client frame: close with 1002 */
};

/* Reads the frame header at buf[0..len). A client frame must be masked,
 * must not set RSV1-3 (no extension is negotiated), must use a known
 * opcode, and a control frame (close, ping, pong) must have FIN set and at
 * most 125 bytes of payload; a 64-bit length must have its top bit clear.
 * A length written with more bytes than it needs is accepted (reading it
 * leniently loses nothing). Returns WSFRAME_OK with *out set, or one of the
 * other results; never reads past buf[len - 1]. The payload itself is not
 * looked at (it may not have arrived yet).
 * Clarified: the 125-byte limit applies to the length's value, however it is
 * encoded; a byte is judged as soon as it is in buf, so a bad first byte
 * gives WSFRAME_PROTOCOL even when len is 1. */
enum wsframe_result wsframe_parse(const uint8_t *buf, size_t len, struct wsframe *out);

/* Unmasks len payload bytes in place; offset is the position of p[0]
 * within the frame's payload (so a payload can be unmasked in pieces). */
void wsframe_unmask(uint8_t *p, size_t len, const uint8_t mask[4], uint64_t offset);

/* Writes the header of an unmasked server frame (FIN set) with opcode and
 * payload_len into out (at least WS_HEADER_MAX bytes). Returns its length:
 * 2, 4 or 10. */
size_t wsframe_header(uint8_t *out, enum ws_opcode opcode, uint64_t payload_len);

/* Bytes wsframe_header() writes for payload_len. */
static inline size_t wsframe_header_len(uint64_t payload_len)
{
    return payload_len < 126 ? 2 : payload_len < 65536 ? 4 : 10;
}

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key of key_len bytes:
 * base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")), written as
 * 28 characters and a NUL into out. Returns 0, or -1 if key_len > 256 (or
 * if OpenSSL cannot hash: no provider with SHA-1). */
int wsframe_accept_key(const char *key, size_t key_len, char out[29]);

/* A close frame's payload: the 2-byte code and the reason text. Returns
 * the code, 1005 ("no status") for an empty payload, or 0 when the payload
 * is invalid (1 byte long, a code that must not be sent on the wire, or a
 * reason that is not UTF-8): the caller answers 1002 then. */
uint16_t wsframe_close_code(const uint8_t *payload, size_t len);

#endif
