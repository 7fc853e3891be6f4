/* wsclient: the client side of the WebSocket wire format (RFC 6455), as
 * pure functions on byte buffers: the upgrade request, client frames
 * (masked) and the headers of the server's frames.
 *
 * Shared by the bench tool's epoll clients and the tests' blocking client
 * (tests/integration/harness_ws.c), which own their sockets. The server
 * side is common/wsframe.h; the Sec-WebSocket-Accept a client checks is
 * wsframe_accept_key there. */
#ifndef NOTIFY_WSCLIENT_H
#define NOTIFY_WSCLIENT_H

#include <stddef.h>
#include <stdint.h>

/* Largest client frame header: 2 bytes, an 8-byte length, a 4-byte mask. */
#define WSCLIENT_HEADER_MAX 14

/* Writes "GET <path> HTTP/1.1" with Host <host>:<port>, the Upgrade,
 * Connection, Sec-WebSocket-Key <key> and Sec-WebSocket-Version 13 lines,
 * then headers (extra "Name: value\r\n" lines, may be NULL) and the blank
 * line, NUL-terminated. Returns its length, or -1 when it does not fit. */
int wsclient_request(char *buf, size_t size, const char *host, int port, const char *path,
                     const char *key, const char *headers);

/* Bytes of a client frame of len payload bytes, masked or not. */
static inline size_t wsclient_frame_len(size_t len, int masked)
{
    return (len < 126 ? 2 : len <= 0xffff ? 4 : 10) + (masked ? 4 : 0) + len;
}

/* Encodes one frame whose first byte is b0 as given (FIN, RSV1-3, opcode:
 * anything, valid or not) into out, masked with mask, or unmasked (mask
 * bit clear) when mask is NULL. Returns the bytes written
 * (wsclient_frame_len), or 0 when they exceed cap. */
size_t wsclient_frame(uint8_t *out, size_t cap, int b0, const uint8_t *mask, const void *data,
                      size_t len);

/* One frame's header as the server sent it. */
struct wsclient_frame {
    int fin;              /* last fragment of its message */
    int opcode;           /* low 4 bits of the first byte */
    int masked;           /* mask bit set (a server must not: the caller judges) */
    uint8_t mask[4];      /* when masked */
    size_t header_len;    /* bytes before the payload, mask included */
    uint64_t payload_len; /* bytes of payload after the header */
};

/* Reads the frame header at p[0..n). Returns 1 with *f filled (the payload
 * may not have arrived yet: it has when n >= header_len + payload_len), or
 * 0 when more bytes are needed for the header. */
int wsclient_frame_parse(const uint8_t *p, size_t n, struct wsclient_frame *f);

/* The status code of a close frame's payload, 1005 ("no status") when it
 * has none. */
int wsclient_close_code(const void *payload, size_t len);

#endif
