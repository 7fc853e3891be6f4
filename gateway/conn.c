#include "conn.h"

#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "log.h"
#include "server.h"

/* lws-write.h keeps LWS_WRITE_CLOSE (4) out of its public enum ("handled
 * by lws_close_reason()"), but lws_write() still frames it as a close. */
#define WS_WRITE_CLOSE ((enum lws_write_protocol)4)

/* Seconds a closing connection waits for the client's own close. */
#define CLOSE_LINGER_S 2

/* Ping payload: lws raises RECEIVE_PONG only for pongs that carry data. */
static const char ping_payload[] = "hb";

/* Every close code the server sends: its reason text and its metric. */
static const struct {
    uint16_t code;
    const char *text;
    enum close_reason reason;
} close_kinds[] = {
    {1001, "node draining", CLOSE_DRAINING},
    {1008, "policy violation", CLOSE_POLICY},
    {1009, "message too big", CLOSE_TOO_BIG},
    {1011, "internal error", CLOSE_CLIENT},
    {1013, "slow consumer", CLOSE_SLOW_CONSUMER},
    {4401, "token expired", CLOSE_TOKEN_EXPIRED},
    {4408, "heartbeat timeout", CLOSE_HEARTBEAT_TIMEOUT},
};

const char *conn_close_text(uint16_t code)
{
    for (size_t i = 0; i < sizeof(close_kinds) / sizeof(close_kinds[0]); i++)
        if (close_kinds[i].code == code)
            return close_kinds[i].text;
    return "";
}

enum close_reason conn_close_reason(uint16_t code)
{
    for (size_t i = 0; i < sizeof(close_kinds) / sizeof(close_kinds[0]); i++)
        if (close_kinds[i].code == code)
            return close_kinds[i].reason;
    return CLOSE_CLIENT; /* 0: the client closed or vanished */
}

static void drop_queue(struct conn *c)
{
    while (c->q_len) {
        frame_unref(c->q[c->q_head]);
        c->q_head = (c->q_head + 1) & (c->q_cap - 1);
        c->q_len--;
    }
    if (c->q_bytes) /* a conn that never registered has no srv and no bytes */
        c->srv->metrics.queued_bytes -= c->q_bytes;
    c->q_bytes = 0;
    c->q_head = 0;
}

static void drop_held(struct conn *c)
{
    for (uint32_t i = 0; i < c->n_held; i++)
        frame_unref(c->held[i]);
    free(c->held);
    c->held = NULL;
    c->n_held = c->cap_held = 0;
}

void conn_close(struct conn *c, uint16_t code)
{
    if (!c->wsi || c->close_code)
        return;
    c->close_code = code;
    drop_queue(c);
    drop_held(c);
    lws_callback_on_writable(c->wsi);
}

static int grow(struct conn *c)
{
    uint32_t cap = c->q_cap ? c->q_cap * 2 : 8;
    struct frame **q = malloc(sizeof(*q) * cap);
    if (!q)
        return -1;
    for (uint32_t i = 0; i < c->q_len; i++)
        q[i] = c->q[(c->q_head + i) & (c->q_cap - 1)];
    free(c->q);
    c->q = q;
    c->q_head = 0;
    c->q_cap = cap;
    return 0;
}

int conn_send(struct conn *c, struct frame *f)
{
    struct server *srv = c->srv;
    if (c->close_code)
        return -1;
    if (c->q_len >= (uint32_t)srv->cfg->max_queue_messages ||
        (uint64_t)c->q_bytes + f->len > (uint64_t)srv->cfg->max_queue_bytes) {
        srv->metrics.dropped[DROP_SLOW_CONSUMER] += c->q_len + 1;
        srv->metrics.closed[CLOSE_SLOW_CONSUMER]++;
        log_info("slow_consumer_closed", "conn=%s account=%s queued=%u bytes=%u", c->id,
                 c->acct ? c->acct->id : "-", c->q_len, c->q_bytes);
        conn_close(c, 1013);
        return -1;
    }
    if (c->q_len == c->q_cap && grow(c) < 0) {
        srv->metrics.dropped[DROP_NO_MEMORY]++;
        return -1;
    }
    frame_ref(f);
    c->q[(c->q_head + c->q_len) & (c->q_cap - 1)] = f;
    c->q_len++;
    c->q_bytes += f->len;
    srv->metrics.queued_bytes += f->len;
    if (c->q_len == 1)
        lws_callback_on_writable(c->wsi);
    return 0;
}

int conn_send_envelope(struct conn *c, const char *type, const char *body, const char *meta)
{
    size_t len;
    char *json = envelope_build(type, body, meta, &len);
    struct frame *f = json ? frame_new(json, len) : NULL;
    free(json);
    if (!f) {
        c->srv->metrics.dropped[DROP_NO_MEMORY]++;
        return -1;
    }
    int rc = conn_send(c, f);
    frame_unref(f);
    return rc;
}

int conn_deliver(struct conn *c, struct frame *f)
{
    if (c->close_code)
        return -1;
    if (c->replaying) {
        if (c->n_held >= (uint32_t)c->srv->cfg->max_queue_messages) {
            c->srv->metrics.dropped[DROP_SLOW_CONSUMER] += c->n_held + 1;
            conn_close(c, 1013);
            return -1;
        }
        if (c->n_held == c->cap_held) {
            uint32_t cap = c->cap_held ? c->cap_held * 2 : 8;
            struct frame **held = realloc(c->held, sizeof(*held) * cap);
            if (!held) {
                c->srv->metrics.dropped[DROP_NO_MEMORY]++;
                return -1;
            }
            c->held = held;
            c->cap_held = cap;
        }
        frame_ref(f);
        c->held[c->n_held++] = f;
        return 0;
    }
    if (f->has_id) {
        if (c->has_last_id && stream_id_cmp(&f->id, &c->last_id) <= 0)
            return 0; /* already delivered by a replay */
        c->last_id = f->id;
        c->has_last_id = 1;
    }
    return conn_send(c, f);
}

void conn_release_held(struct conn *c)
{
    c->replaying = 0;
    struct frame **held = c->held;
    uint32_t n = c->n_held;
    c->held = NULL;
    c->n_held = c->cap_held = 0;
    for (uint32_t i = 0; i < n; i++) {
        conn_deliver(c, held[i]);
        frame_unref(held[i]);
    }
    free(held);
}

/* Bytes of the WebSocket header of an unmasked server frame of len bytes. */
static size_t ws_header_len(size_t len)
{
    return len < 126 ? 2 : len < 65536 ? 4 : 10;
}

static unsigned char *ws_header(unsigned char *p, size_t len)
{
    *p++ = 0x81; /* FIN, text */
    if (len < 126) {
        *p++ = (unsigned char)len;
    } else if (len < 65536) {
        *p++ = 126;
        *p++ = (unsigned char)(len >> 8);
        *p++ = (unsigned char)len;
    } else {
        *p++ = 127;
        for (int i = 7; i >= 0; i--)
            *p++ = (unsigned char)((uint64_t)len >> (8 * i));
    }
    return p;
}

/* Several queued frames in one write: each framed by us, the lot handed to
 * lws as raw bytes, so a burst costs one send() per socket instead of one
 * per frame (and one lws_send_pipe_choked() poll per frame). Safe because
 * the vhost negotiates no extension (no permessage-deflate): a text frame
 * on the wire is exactly header + payload, and every frame we write is a
 * complete one (FIN set), so lws's own framing state is never mid-message. */
static int write_batch(struct conn *c)
{
    size_t total = 0;
    uint32_t n = 0;
    while (n < c->q_len) {
        struct frame *f = c->q[(c->q_head + n) & (c->q_cap - 1)];
        size_t need = ws_header_len(f->len) + f->len;
        if (total + need > CONN_BATCH_MAX)
            break;
        total += need;
        n++;
    }
    /* One scratch buffer for the whole server: the loop has one thread,
     * and lws copies whatever the socket does not take at once. */
    unsigned char *buf = c->srv->batch_buf;
    unsigned char *p = buf + LWS_PRE;
    for (uint32_t i = 0; i < n; i++) {
        struct frame *f = c->q[(c->q_head + i) & (c->q_cap - 1)];
        p = ws_header(p, f->len);
        memcpy(p, frame_payload(f), f->len);
        p += f->len;
    }
    int rc = lws_write(c->wsi, buf + LWS_PRE, total, LWS_WRITE_RAW);
    if (rc < (int)total)
        return -1;
    uint64_t now = uv_hrtime();
    for (uint32_t i = 0; i < n; i++) {
        struct frame *f = c->q[c->q_head];
        if (f->arrived_ns) {
            c->srv->metrics.delivered++;
            metrics_observe_latency(&c->srv->metrics, now - f->arrived_ns);
        }
        c->q_head = (c->q_head + 1) & (c->q_cap - 1);
        c->q_len--;
        c->q_bytes -= f->len;
        c->srv->metrics.queued_bytes -= f->len;
        frame_unref(f);
    }
    if (c->q_len)
        lws_callback_on_writable(c->wsi);
    return 0;
}

int conn_on_writable(struct conn *c)
{
    if (c->lws_closing || c->close_sent)
        return 0; /* the close frame is on its way */
    if (c->close_code) {
        const char *text = conn_close_text(c->close_code);
        /* The close frame is written here: in lws 4.1, lws_close_reason()
         * followed by returning -1 from the writable callback drops the
         * socket without sending it (seen with a raw client). The socket
         * then stays open, reading and dropping what the client still
         * sends, until the client closes or CLOSE_LINGER_S passes: closing
         * with unread input would reset the connection, and a reset makes
         * the client's kernel throw the close frame away unread. */
        unsigned char buf[LWS_PRE + 2 + 64];
        size_t tlen = strlen(text);
        buf[LWS_PRE] = (unsigned char)(c->close_code >> 8);
        buf[LWS_PRE + 1] = (unsigned char)(c->close_code & 0xff);
        memcpy(buf + LWS_PRE + 2, text, tlen);
        if (lws_write(c->wsi, buf + LWS_PRE, 2 + tlen, WS_WRITE_CLOSE) < 0)
            return -1;
        c->close_sent = 1;
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, CLOSE_LINGER_S);
        return 0;
    }
    if (c->ping_due) {
        unsigned char buf[LWS_PRE + sizeof(ping_payload)];
        memcpy(buf + LWS_PRE, ping_payload, sizeof(ping_payload) - 1);
        c->ping_due = 0;
        if (lws_write(c->wsi, buf + LWS_PRE, sizeof(ping_payload) - 1, LWS_WRITE_PING) < 0)
            return -1;
        if (lws_send_pipe_choked(c->wsi)) {
            if (c->q_len)
                lws_callback_on_writable(c->wsi);
            return 0;
        }
    }
    /* A burst: frames that fit the batch buffer go out in one write. */
    if (c->q_len > 1 &&
        ws_header_len(c->q[c->q_head]->len) + c->q[c->q_head]->len <= CONN_BATCH_MAX)
        return write_batch(c);
    /* Several frames per callback while the socket takes them: under load
     * this saves a callback (and an epoll round) per frame. */
    while (c->q_len) {
        struct frame *f = c->q[c->q_head];
        if (lws_write(c->wsi, frame_payload(f), f->len, LWS_WRITE_TEXT) < (int)f->len)
            return -1;
        if (f->arrived_ns) { /* a notification, not one of our replies */
            c->srv->metrics.delivered++;
            metrics_observe_latency(&c->srv->metrics, uv_hrtime() - f->arrived_ns);
        }
        c->q_head = (c->q_head + 1) & (c->q_cap - 1);
        c->q_len--;
        c->q_bytes -= f->len;
        c->srv->metrics.queued_bytes -= f->len;
        frame_unref(f);
        if (c->q_len && lws_send_pipe_choked(c->wsi)) {
            lws_callback_on_writable(c->wsi);
            break;
        }
    }
    if (!c->q_len && c->q_cap > 8) {
        /* A burst is over: give the big ring back. */
        free(c->q);
        c->q = NULL;
        c->q_cap = 0;
        c->q_head = 0;
    }
    return 0;
}

void conn_free_buffers(struct conn *c)
{
    drop_queue(c);
    drop_held(c);
    free(c->q);
    c->q = NULL;
    c->q_cap = 0;
    free(c->rx);
    c->rx = NULL;
    c->rx_len = 0;
}
