/* output: each socket's queue of frames (a ring of references) and its
 * writes. Output is written once per loop turn (output_flush_all, run by a
 * prepare handle just before the loop waits), so everything queued for a
 * socket meanwhile (a burst of broadcasts, a reply behind a notification)
 * leaves in one sendmsg(); the loop turn's sendmsg()s go to the kernel
 * together through io_uring when it works (batchio.h). A socket that is
 * full waits for POLLOUT instead (gate.c). */
#include "conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "eventstream.h"
#include "httpstatus.h"
#include "log.h"

/* The client's close frame must come within this of ours (then the socket
 * closes anyway); an HTTP refusal lingers as long for the client to read
 * it. */
#define CLOSE_LINGER_MS 2000

/* ---- a full socket ---- */

void output_arm_write(struct conn *c, int on)
{
    if (c->want_write == on || c->state == CONN_DEAD)
        return;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(c->net->wepfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, c->fd, &ev) < 0) {
        log_warn("write_watch_failed", "fd=%d error=\"epoll_ctl: %s\"", c->fd, strerror(errno));
        if (on) { /* it could never be written again */
            conn_destroy(c);
            return;
        }
    }
    c->want_write = (uint8_t)on;
}

/* ---- writing ---- */

/* Bytes of WebSocket header before f's payload on the wire (none for raw
 * bytes such as the 101). */
static size_t frame_header_len(const struct frame *f)
{
    return f->opcode == FRAME_RAW ? 0 : wsframe_header_len(f->len);
}

static size_t frame_header(struct frame *f, uint8_t *hdr)
{
    return f->opcode == FRAME_RAW ? 0 : wsframe_header(hdr, (enum ws_opcode)f->opcode, f->len);
}

/* w bytes went out: the frames they finish leave the queue. */
static void consume(struct conn *c, size_t w, uint64_t now)
{
    struct metrics *m = c->net->metrics;
    while (w && c->q_len) {
        struct frame *f = c->q[c->q_head];
        size_t whole = frame_header_len(f) + f->len;
        size_t left = whole - c->q_off;
        if (w < left) {
            c->q_off += (uint32_t)w;
            return;
        }
        w -= left;
        c->q_off = 0;
        if (f->arrived_ns) { /* a notification, not one of our replies */
            m->delivered++;
            counters_observe_latency(m, now - f->arrived_ns);
        }
        c->q_head = (c->q_head + 1) & (c->q_cap - 1);
        c->q_len--;
        c->q_bytes -= f->len;
        m->queued_bytes -= f->len;
        frame_unref(f);
    }
}

/* Everything queued was written: a closing socket moves on. */
static void drained(struct conn *c)
{
    if (c->q_cap > 16) { /* a long burst is over: give the big ring back */
        free(c->q);
        c->q = NULL;
        c->q_cap = 0;
        c->q_head = 0;
    }
    if (c->state != CONN_CLOSING || c->close_sent)
        return;
    c->close_sent = 1;
    if (c->peer_closed) {
        conn_destroy(c); /* our answer to the client's close is out */
        return;
    }
    /* An HTTP refusal ends with our FIN; after a close frame the client
     * answers with its own, then we close. Either way the socket stays
     * open (reading and dropping) until the client closes or the linger
     * passes: closing with unread input would reset the connection, and
     * a reset makes the client's kernel throw our last bytes away. A
     * failed connection ends with our FIN too: the client's close is not
     * waited for (RFC 6455 7.1.7). */
    if (c->refused || c->failed || c->stream)
        shutdown(c->fd, SHUT_WR);
}

/* Points p at the front of c's queue (at most FLUSH_FRAMES frames). A
 * burst of small frames (a header and a payload each) is copied into
 * gather first when it fits in room: the kernel's per-segment work on
 * twenty small iovecs costs more than the copy (broadcast bursts). Returns
 * the bytes of gather used. */
static size_t prepare_write(struct conn *c, struct write_prep *p, uint8_t *gather, size_t room)
{
    size_t niov = 0, total = 0, skip = c->q_off;
    for (uint32_t n = 0; n < c->q_len && n < FLUSH_FRAMES; n++) {
        struct frame *f = c->q[(c->q_head + n) & (c->q_cap - 1)];
        size_t hl = frame_header(f, p->hdr[n]);
        if (skip < hl) {
            p->iov[niov].iov_base = p->hdr[n] + skip;
            p->iov[niov++].iov_len = hl - skip;
            total += hl - skip;
            skip = 0;
        } else {
            skip -= hl;
        }
        if (f->len > skip) {
            p->iov[niov].iov_base = f->data + skip;
            p->iov[niov++].iov_len = f->len - skip;
            total += f->len - skip;
        }
        skip = 0;
    }
    size_t used = 0;
    if (niov > 2 && total <= CONN_GATHER_MAX && total <= room) {
        for (size_t i = 0; i < niov; i++) {
            memcpy(gather + used, p->iov[i].iov_base, p->iov[i].iov_len);
            used += p->iov[i].iov_len;
        }
        p->iov[0].iov_base = gather;
        p->iov[0].iov_len = total;
        niov = 1;
    }
    memset(&p->msg, 0, sizeof(p->msg));
    p->msg.msg_iov = p->iov;
    p->msg.msg_iovlen = niov;
    p->total = total;
    return used;
}

/* The queue is empty: a full socket's POLLOUT is no longer wanted and a
 * closing one moves on. */
static void written_all(struct conn *c)
{
    output_arm_write(c, 0);
    drained(c);
}

/* Applies the result of writing p (bytes, or -errno as io_uring reports
 * it). Returns 1 when it all went out and more is queued. */
static int wrote(struct conn *c, const struct write_prep *p, long r)
{
    if (r == -EINTR)
        return 1;
    if (r == -EAGAIN || r == -EWOULDBLOCK) {
        output_arm_write(c, 1);
        return 0;
    }
    if (r < 0) {
        conn_destroy(c); /* EPIPE, ECONNRESET: the client is gone */
        return 0;
    }
    consume(c, (size_t)r, uv_hrtime());
    if ((size_t)r < p->total) {
        output_arm_write(c, 1);
        return 0;
    }
    if (c->q_len)
        return 1;
    written_all(c);
    return 0;
}

void output_flush(struct conn *c)
{
    if (!c->q_len) {
        written_all(c);
        return;
    }
    struct write_prep p;
    long r;
    do {
        prepare_write(c, &p, c->net->wbuf, CONN_GATHER_MAX);
        ssize_t w = sendmsg(c->fd, &p.msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        r = w < 0 ? -errno : (long)w;
    } while (wrote(c, &p, r));
}

static void batch_done(void *ctx, uint64_t user, int result)
{
    struct conn_batch *b = ctx;
    struct conn *c = b->conn[user];
    b->reported[user] = 1;
    if (wrote(c, &b->prep[user], result))
        conn_flush_later(c); /* the rest of a long queue: in the next submit */
}

void output_batch_run(struct conn_batch *b, unsigned n, batchio_done_fn *done)
{
    /* If the ring itself fails, whether the unreported operations happened
     * is unknown, and a stream cannot be patched: those connections close,
     * and their clients reconnect and resume. */
    if (batchio_run(&b->io, done, b) == 0)
        return;
    for (unsigned i = 0; i < n; i++)
        if (!b->reported[i])
            conn_destroy(b->conn[i]);
}

/* Up to BATCH_SOCKETS sockets of the flush list written by one submit. */
static void flush_batch(struct net *net, struct conn_batch *b)
{
    unsigned n = 0;
    size_t gathered = 0;
    while (net->flush && n < BATCH_SOCKETS) {
        struct conn *c = net->flush;
        conn_flush_unlink(c);
        if (!c->q_len) {
            written_all(c);
            continue;
        }
        gathered += prepare_write(c, &b->prep[n], b->gather + gathered, BATCH_GATHER - gathered);
        if (batchio_add_sendmsg(&b->io, c->fd, &b->prep[n].msg, n) < 0) {
            output_flush(c); /* cannot happen: the ring has room for a batch */
            continue;
        }
        b->conn[n] = c;
        b->reported[n] = 0;
        n++;
    }
    net->writing = 1; /* the prepared writes point into their queues */
    output_batch_run(b, n, batch_done);
    net->writing = 0;
}

void output_flush_all(uv_prepare_t *h)
{
    struct net *net = h->data;
    struct conn_batch *b = net->batch;
    while (net->flush) {
        if (b) {
            flush_batch(net, b);
        } else {
            struct conn *c = net->flush;
            conn_flush_unlink(c);
            output_flush(c);
        }
    }
    conn_reap(net); /* closed by timers, Redis callbacks or this flush */
}

/* ---- the queue ---- */

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

int output_enqueue(struct conn *c, struct frame *f)
{
    struct metrics *m = c->net->metrics;
    if (c->q_len == c->q_cap && grow(c) < 0) {
        m->dropped[DROP_NO_MEMORY]++;
        return -1;
    }
    frame_ref(f);
    c->q[(c->q_head + c->q_len) & (c->q_cap - 1)] = f;
    c->q_len++;
    c->q_bytes += f->len;
    m->queued_bytes += f->len;
    conn_flush_later(c);
    return 0;
}

void output_drop(struct conn *c)
{
    struct metrics *m = c->net->metrics;
    uint32_t keep = c->q_len && (c->q_off || c->q[c->q_head]->opcode == FRAME_RAW);
    while (c->q_len > keep) {
        uint32_t last = (c->q_head + c->q_len - 1) & (c->q_cap - 1);
        c->q_bytes -= c->q[last]->len;
        m->queued_bytes -= c->q[last]->len;
        frame_unref(c->q[last]);
        c->q_len--;
    }
}

static int over_bounds(const struct conn *c, const struct frame *f)
{
    const struct net_options *o = &c->net->opt;
    return c->q_len >= (uint32_t)o->max_queue_messages ||
           (uint64_t)c->q_bytes + f->len > (uint64_t)o->max_queue_bytes;
}

/* c's queue is at its bounds before the loop turn's flush: a burst (a
 * Redis read of up to 1 MiB, a node that was stalled) is queued whole
 * before anything is written. Before c is judged, it is given what its
 * socket takes now. Whatever else comes of the write (a full socket, an
 * error) is left to the flush or the POLLOUT it waits for: nothing is
 * armed or closed under the caller (a delivery going through an
 * account's connections). */
static void write_ahead(struct conn *c)
{
    if (c->hold || c->net->writing)
        return;
    struct write_prep p;
    for (;;) {
        prepare_write(c, &p, c->net->wbuf, CONN_GATHER_MAX);
        ssize_t w = sendmsg(c->fd, &p.msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        consume(c, (size_t)w, uv_hrtime());
        if ((size_t)w < p.total || !c->q_len)
            return;
    }
}

int conn_send(struct conn *c, struct frame *f)
{
    struct net *n = c->net;
    if (c->state != CONN_OPEN)
        return -1;
    if (!n->in_pass)
        n->pushed_at = uv_now(n->loop); /* a push, not an answer to input: gate.c */
    if (c->stream) {                    /* its event-stream form, shared like f (eventstream.h) */
        int no_memory;
        if (!(f = eventstream_form(f, &no_memory))) {
            n->metrics->dropped[DROP_NO_MEMORY] += (uint64_t)no_memory;
            return no_memory ? -1 : 0;
        }
    }
    if (over_bounds(c, f))
        write_ahead(c);
    /* A slow consumer does not take what it is sent: its queue is still
     * over a bound once its socket took all it would. */
    if (over_bounds(c, f)) {
        /* The close counts in closed[] once, when the socket goes (its
         * close code says why). */
        n->metrics->dropped[DROP_SLOW_CONSUMER] += c->q_len + 1;
        if (c->data)
            conn_route(c)->h->on_overflow(conn_route(c)->ctx, c, c->q_len, c->q_bytes);
        conn_close(c, 1013);
        return -1;
    }
    return output_enqueue(c, f);
}

/* ---- the last bytes: close frames and refusals ---- */

/* Queues the last bytes the socket will carry (a close frame or an HTTP
 * refusal) and starts the linger. */
static void finish_with(struct conn *c, struct frame *last)
{
    struct net *n = c->net;
    if (!c->failed)
        output_drop(c); /* a failed connection's replies were owed before its fault */
    c->state = CONN_CLOSING;
    c->hold = 0;
    wheel_schedule(&n->timers, c, uv_now(n->loop) + CLOSE_LINGER_MS);
    if (!last || output_enqueue(c, last) < 0)
        conn_destroy(c);
}

static void send_close(struct conn *c, uint16_t code, const char *text)
{
    uint8_t payload[2 + 64];
    size_t tlen = strnlen(text, 64), len = code ? 2 + tlen : 0;
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    memcpy(payload + 2, text, tlen);
    struct frame *f =
        c->stream ? eventstream_close(code, text) : frame_new_op(WS_OP_CLOSE, payload, len);
    finish_with(c, f);
    frame_unref(f);
}

void conn_close(struct conn *c, uint16_t code)
{
    if (c->state != CONN_OPEN)
        return;
    c->close_code = code;
    send_close(c, code, conn_close_text(code));
}

void conn_fail(struct conn *c, uint16_t code)
{
    if (c->state != CONN_OPEN)
        return;
    c->failed = 1;
    conn_close(c, code);
}

void conn_echo_close(struct conn *c, uint16_t code)
{
    c->peer_closed = 1;
    send_close(c, code, "");
}

void conn_refuse(struct conn *c, int status, const char *body)
{
    if (c->state != CONN_HEAD)
        return;
    char buf[1024];
    int n = http_format_status(
        buf, sizeof(buf), status,
        status == 426 ? "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" : "", body);
    c->refused = 1;
    struct frame *f = n > 0 ? frame_new_op(FRAME_RAW, buf, (size_t)n) : NULL;
    finish_with(c, f);
    frame_unref(f);
}

int conn_upgrade(struct conn *c, const char *accept_key, int with_protocol)
{
    /* Pieces copied rather than snprintf'd: format parsing is a visible
     * share of a connect. */
    static const char head[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\nSec-WebSocket-Accept: ";
    static const char tail_proto[] = "\r\nSec-WebSocket-Protocol: notify\r\n\r\n";
    static const char tail_plain[] = "\r\n\r\n";
    const char *tail = with_protocol ? tail_proto : tail_plain;
    size_t tlen = with_protocol ? sizeof(tail_proto) - 1 : sizeof(tail_plain) - 1;
    char buf[256];
    size_t klen = strlen(accept_key), n = 0;
    if (klen > sizeof(buf) - (sizeof(head) - 1) - (sizeof(tail_proto) - 1))
        return -1; /* never: the key is 28 characters */
    memcpy(buf, head, sizeof(head) - 1);
    n += sizeof(head) - 1;
    memcpy(buf + n, accept_key, klen);
    n += klen;
    memcpy(buf + n, tail, tlen);
    n += tlen;
    struct frame *f = frame_new_op(FRAME_RAW, buf, n);
    if (!f)
        return -1;
    c->state = CONN_OPEN;
    c->hold = 1;
    wheel_cancel(&c->net->timers, c); /* the head timeout */
    int rc = output_enqueue(c, f);
    frame_unref(f);
    return rc;
}

void conn_release_hold(struct conn *c)
{
    if (!c->hold)
        return;
    c->hold = 0;
    if (c->q_len)
        conn_flush_later(c);
}
