/* harness: the blocking WebSocket client (harness.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"
#include "harness_int.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "wsclient.h"
#include "wsframe.h"

/* ---- WebSocket client --------------------------------------------------- */

static void random_bytes(void *buf, size_t n)
{
    if (getrandom(buf, n, 0) != (ssize_t)n) {
        unsigned char *p = buf;
        for (size_t i = 0; i < n; i++)
            p[i] = (unsigned char)rand();
    }
}

int ws_connect(struct ws *c, int port, const char *path, const char *headers, int timeout_ms)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->status = -1;
    c->auto_pong = 1;
    long long deadline = h_mono_ms() + timeout_ms;
    int fd = hi_tcp_connect(port, deadline);
    if (fd < 0)
        return -1;
    unsigned char raw[16];
    char key[32], expect[32], got[128];
    random_bytes(raw, sizeof(raw));
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
    wsframe_accept_key(key, strlen(key), expect);
    char req[8192];
    int n = wsclient_request(req, sizeof(req), "127.0.0.1", port, path, key, headers);
    struct hi_bytes b = {0};
    if (n < 0 || hi_write_all(fd, req, (size_t)n, deadline) != 0)
        goto fail;
    long hlen = hi_read_headers(fd, &b, deadline);
    if (hlen < 0)
        goto fail;
    int status = hi_parse_status(b.p);
    if (status < 0)
        goto fail;
    c->status = status;
    if (status != 101) {
        struct hi_bytes body = {0};
        /* best effort: the body only helps diagnose a refusal */
        if (hi_read_body(fd, &b, hlen, &body, h_mono_ms() + 500) == 0)
            c->http_body = body.p;
        else
            free(body.p);
        close(fd);
        free(b.p);
        return status;
    }
    if (!hi_header_value(b.p, "Sec-WebSocket-Accept", got, sizeof(got)) || strcmp(got, expect)) {
        fprintf(stderr, "ws_connect: bad Sec-WebSocket-Accept '%s' (want '%s')\n", got, expect);
        goto fail;
    }
    /* keep bytes that followed the headers (the first frames, maybe) */
    c->fd = fd;
    c->len = b.len - (size_t)hlen;
    c->cap = b.cap;
    memmove(b.p, b.p + hlen, c->len);
    c->buf = (unsigned char *)b.p;
    return 101;
fail:
    close(fd);
    free(b.p);
    c->status = -1;
    return -1;
}

int ws_adopt(struct ws *c, int fd, const void *pending, size_t len)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->auto_pong = 1;
    size_t cap = len + 8192;
    c->buf = malloc(cap);
    if (!c->buf)
        return -1;
    if (len)
        memcpy(c->buf, pending, len);
    c->len = len;
    c->cap = cap;
    c->fd = fd;
    c->status = 101;
    return 0;
}

int ws_send(struct ws *c, int opcode, const void *data, size_t len)
{
    return ws_send_frame(c, 1, opcode, data, len);
}

unsigned char *ws_frame_encode(int b0, int masked, const void *data, size_t len, size_t *out_len)
{
    uint8_t mask[4];
    if (masked)
        random_bytes(mask, 4);
    size_t n = wsclient_frame_len(len, masked);
    unsigned char *frame = malloc(n);
    if (!frame)
        return NULL;
    *out_len = wsclient_frame(frame, n, b0, masked ? mask : NULL, data, len);
    return frame;
}

int ws_send_raw_frame(struct ws *c, int b0, int masked, const void *data, size_t len)
{
    if (c->fd < 0)
        return -1;
    size_t n;
    unsigned char *frame = ws_frame_encode(b0, masked, data, len, &n);
    if (!frame)
        return -1;
    int rc = hi_write_all(c->fd, frame, n, h_mono_ms() + 5000);
    free(frame);
    if ((b0 & 0x0f) == WS_CLOSE && rc == 0)
        c->sent_close = 1;
    return rc;
}

int ws_send_frame(struct ws *c, int fin, int opcode, const void *data, size_t len)
{
    return ws_send_raw_frame(c, (fin ? 0x80 : 0) | (opcode & 0x0f), 1, data, len);
}

int ws_send_text(struct ws *c, const char *text)
{
    return ws_send(c, WS_TEXT, text, strlen(text));
}

/* Parses one frame from c->buf. Returns 1 (fields set, bytes consumed), 0
 * when incomplete, -1 when malformed. */
static int parse_frame(struct ws *c, int *fin, int *opcode, char **data, size_t *len)
{
    struct wsclient_frame f;
    if (!wsclient_frame_parse(c->buf, c->len, &f))
        return 0;
    if (f.payload_len > (64u << 20))
        return -1;
    size_t h = f.header_len, plen = (size_t)f.payload_len;
    if (c->len < h + plen)
        return 0;
    char *p = malloc(plen + 1);
    if (!p)
        return -1;
    /* A server must not mask; this client reads it anyway, the tests of
     * what the gateway sends check the bytes themselves. */
    for (size_t i = 0; i < plen; i++)
        p[i] = (char)(c->buf[h + i] ^ (f.masked ? f.mask[i & 3] : 0));
    p[plen] = '\0';
    *fin = f.fin;
    *opcode = f.opcode;
    *data = p;
    *len = plen;
    c->len -= h + plen;
    memmove(c->buf, c->buf + h + plen, c->len);
    return 1;
}

int ws_recv(struct ws *c, struct ws_msg *m, int timeout_ms)
{
    memset(m, 0, sizeof(*m));
    long long deadline = h_mono_ms() + timeout_ms;
    for (;;) {
        int fin, op;
        char *data;
        size_t len;
        int pr = parse_frame(c, &fin, &op, &data, &len);
        if (pr < 0)
            return WS_ERROR;
        if (pr == 1) {
            if (op == WS_PING) {
                c->pings++;
                if (c->auto_pong) {
                    ws_send(c, WS_PONG, data, len);
                    free(data);
                    continue;
                }
            }
            if (op >= 8) {
                m->opcode = op;
                m->data = data;
                m->len = len;
                if (op == WS_CLOSE) {
                    m->close_code = wsclient_close_code(data, len);
                    if (len >= 2) {
                        memmove(data, data + 2, len - 2);
                        m->len = len - 2;
                        data[m->len] = '\0';
                    }
                    c->close_code = m->close_code;
                    if (!c->sent_close) {
                        unsigned char echo[2] = {(unsigned char)(m->close_code >> 8),
                                                 (unsigned char)m->close_code};
                        ws_send(c, WS_CLOSE, echo, m->close_code == 1005 ? 0 : 2);
                    }
                }
                return op;
            }
            /* data frame, maybe a fragment */
            if (op != 0) {
                free(c->frag);
                c->frag = NULL;
                c->frag_len = 0;
                c->frag_op = op;
            }
            char *nf = realloc(c->frag, c->frag_len + len + 1);
            if (!nf) {
                free(data);
                return WS_ERROR;
            }
            memcpy(nf + c->frag_len, data, len);
            c->frag = nf;
            c->frag_len += len;
            c->frag[c->frag_len] = '\0';
            free(data);
            if (!fin)
                continue;
            m->opcode = c->frag_op;
            m->data = c->frag;
            m->len = c->frag_len;
            c->frag = NULL;
            c->frag_len = 0;
            return m->opcode;
        }
        if (c->fd < 0)
            return WS_ERROR;
        if (c->cap - c->len < 4096) {
            size_t cap = c->cap ? c->cap * 2 : 8192;
            unsigned char *nb = realloc(c->buf, cap);
            if (!nb)
                return WS_ERROR;
            c->buf = nb;
            c->cap = cap;
        }
        ssize_t n = hi_read_some(c->fd, c->buf + c->len, c->cap - c->len, deadline);
        if (n == -2)
            return WS_TIMEOUT;
        if (n <= 0) {
            c->eof = 1;
            return WS_ERROR;
        }
        c->len += (size_t)n;
    }
}

void ws_msg_free(struct ws_msg *m)
{
    free(m->data);
    m->data = NULL;
}

char *ws_recv_text(struct ws *c, int timeout_ms)
{
    long long deadline = h_mono_ms() + timeout_ms;
    for (;;) {
        struct ws_msg m;
        int op = ws_recv(c, &m, hi_remaining(deadline));
        if (op == WS_TEXT)
            return m.data;
        ws_msg_free(&m);
        if (op != WS_PING && op != WS_PONG && op != WS_BINARY)
            return NULL;
    }
}

int ws_wait_close(struct ws *c, int timeout_ms)
{
    long long deadline = h_mono_ms() + timeout_ms;
    for (;;) {
        struct ws_msg m;
        int op = ws_recv(c, &m, hi_remaining(deadline));
        ws_msg_free(&m);
        if (op == WS_CLOSE)
            return c->close_code;
        if (op == WS_TIMEOUT)
            return 0;
        if (op == WS_ERROR)
            return -1;
    }
}

void ws_close(struct ws *c, int code)
{
    if (c->fd >= 0) {
        if (!c->sent_close && !c->close_code && !c->eof) {
            unsigned char p[2] = {(unsigned char)(code >> 8), (unsigned char)code};
            ws_send(c, WS_CLOSE, p, 2);
        }
        close(c->fd);
        c->fd = -1;
    }
    free(c->buf);
    free(c->frag);
    free(c->http_body);
    c->buf = NULL;
    c->frag = NULL;
    c->http_body = NULL;
    c->len = c->cap = c->frag_len = 0;
}

void ws_drop(struct ws *c)
{
    if (c->fd >= 0) {
        struct linger l = {1, 0}; /* RST instead of FIN */
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
        close(c->fd);
        c->fd = -1;
    }
    c->sent_close = 1;
    ws_close(c, 1000);
}
