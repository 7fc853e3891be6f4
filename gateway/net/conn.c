#include "conn.h"

#include <errno.h>
#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "batchio.h"
#include "envelope.h"
#include "http.h"
#include "httphead.h"
#include "log.h"
#include "server.h"
#include "ws.h"

/* Longest request head taken (a browser's cookies plus an 8 KB token). */
#define HEAD_MAX 16384
/* A socket whose first bytes do not yet tell whose request it is looks
 * again this much later (instead of spinning on a readable socket). */
#define ROUTE_RETRY_MS 20
/* A request head must be complete within this; the client's close frame
 * must come within CLOSE_LINGER_MS of ours (then the socket closes anyway). */
#define HEAD_TIMEOUT_MS 10000
#define CLOSE_LINGER_MS 2000
/* Frames gathered into one sendmsg(). */
#define FLUSH_FRAMES 64
/* Sockets written per io_uring submit, and the bytes of small frames
 * they may copy together (see prepare_write). */
#define BATCH_SOCKETS 128
#define BATCH_GATHER (256 * 1024)

/* One socket's write: the front of its queue as iovecs. */
struct write_prep {
    uint8_t hdr[FLUSH_FRAMES][WS_HEADER_MAX];
    struct iovec iov[2 * FLUSH_FRAMES];
    struct msghdr msg;
    size_t total; /* bytes the iovecs hold */
};

/* Bytes of one socket's batched read: a heartbeat is 26 on the wire, and
 * a read that fills the slot goes on at once with read(). */
#define READ_SLOT 1024

/* The writes of one loop turn, or the reads of one pass over the client
 * set, submitted together (batchio.h says why). */
struct conn_batch {
    struct batchio io;
    struct write_prep prep[BATCH_SOCKETS];
    struct conn *conn[BATCH_SOCKETS];
    uint8_t reported[BATCH_SOCKETS];
    uint8_t gather[BATCH_GATHER];
    uint8_t in[BATCH_SOCKETS][READ_SLOT];
};

/* Every close code the server sends: its reason text and its metric. */
static const struct {
    uint16_t code;
    const char *text;
    enum close_reason reason;
} close_kinds[] = {
    {1001, "node draining", CLOSE_DRAINING},
    {1002, "protocol error", CLOSE_PROTOCOL},
    {1007, "invalid UTF-8", CLOSE_PROTOCOL},
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

/* ---- lists: sockets not (yet) registered, sockets with output ---- */

static void pending_link(struct conn *c)
{
    struct server *srv = c->srv;
    c->acct_prev = NULL;
    c->acct_next = srv->pending;
    if (srv->pending)
        srv->pending->acct_prev = c;
    srv->pending = c;
}

static void pending_unlink(struct conn *c)
{
    if (c->acct_prev)
        c->acct_prev->acct_next = c->acct_next;
    else if (c->srv->pending == c)
        c->srv->pending = c->acct_next;
    if (c->acct_next)
        c->acct_next->acct_prev = c->acct_prev;
    c->acct_prev = c->acct_next = NULL;
}

static void flush_unlink(struct conn *c)
{
    if (!c->flushing)
        return;
    if (c->flush_prev)
        c->flush_prev->flush_next = c->flush_next;
    else
        c->srv->flush = c->flush_next;
    if (c->flush_next)
        c->flush_next->flush_prev = c->flush_prev;
    c->flush_prev = c->flush_next = NULL;
    c->flushing = 0;
}

/* Output is written once per loop turn (conn_flush_all), so everything
 * queued for a socket meanwhile (a burst of broadcasts, a reply behind a
 * notification) leaves in one sendmsg(). A socket that is full waits for
 * POLLOUT instead. */
static void flush_later(struct conn *c)
{
    if (c->flushing || c->want_write || c->hold || c->state == CONN_DEAD)
        return;
    struct server *srv = c->srv;
    c->flushing = 1;
    c->flush_prev = NULL;
    c->flush_next = srv->flush;
    if (srv->flush)
        srv->flush->flush_prev = c;
    srv->flush = c;
}

/* ---- lifetime ---- */

static void on_io(struct conn *c, uint32_t events);
static void gate_set(struct server *srv, int open);

/* Every client socket is in one epoll set of ours, which libuv watches as
 * a single descriptor (conn_poll_start). Through a uv_poll_t per socket,
 * libuv spent four epoll_ctl calls on each connection (a probe ADD and DEL
 * in uv_poll_init, the ADD, the DEL at close) plus an ioctl; here it is one
 * ADD, and close() removes the socket. */
static int watch(struct conn *c, int op, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    return epoll_ctl(c->srv->conn_epfd, op, c->fd, &ev);
}

/* Frees a conn. Called only between batches of events (conn_reap), so no
 * event still in hand can point at it. */
static void conn_free(struct conn *c)
{
    while (c->q_len) {
        frame_unref(c->q[c->q_head]);
        c->q_head = (c->q_head + 1) & (c->q_cap - 1);
        c->q_len--;
    }
    for (uint32_t i = 0; i < c->n_held; i++)
        frame_unref(c->held[i]);
    free(c->held);
    free(c->q);
    free(c->rx);
    free(c->in);
    free(c);
}

static void conn_reap(struct server *srv)
{
    while (srv->dead) {
        struct conn *c = srv->dead;
        srv->dead = c->flush_next;
        conn_free(c);
    }
}

/* Marks c dead; it is freed by the next conn_reap. */
static void bury(struct conn *c)
{
    c->state = CONN_DEAD;
    c->flush_next = c->srv->dead;
    c->srv->dead = c;
}

void conn_accept(struct server *srv, int fd)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) {
        log_warn("accept_dropped", "error=\"out of memory\"");
        close(fd);
        return;
    }
    c->srv = srv;
    c->fd = fd;
    if (watch(c, EPOLL_CTL_ADD, EPOLLIN) < 0) {
        log_warn("accept_dropped", "error=\"epoll_ctl: %s\"", strerror(errno));
        free(c);
        close(fd);
        return;
    }
    c->hb.slot = c->exp.slot = -1;
    c->state = CONN_HEAD;
    pending_link(c);
    if (srv->conn_gathering) { /* its request is read as soon as it comes */
        uv_timer_stop(&srv->conn_gather);
        gate_set(srv, 1);
    }
    hb_schedule(&srv->expiry, c, uv_now(&srv->loop) + HEAD_TIMEOUT_MS);
}

void conn_destroy(struct conn *c)
{
    if (c->state == CONN_DEAD)
        return;
    struct server *srv = c->srv;
    if (c->acct)
        ws_on_gone(c); /* the registry, presence and the wheels let go */
    else
        pending_unlink(c);
    hb_cancel(&srv->heartbeat, c);
    hb_cancel(&srv->expiry, c);
    flush_unlink(c);
    srv->metrics.queued_bytes -= c->q_bytes;
    c->q_bytes = 0;
    close(c->fd); /* also takes it out of the epoll set */
    c->fd = -1;
    bury(c);
}

void conn_destroy_all(struct server *srv)
{
    struct conn *c, *tmp;
    HASH_ITER(hh, srv->registry.by_id, c, tmp)
    {
        conn_destroy(c);
    }
    while (srv->pending)
        conn_destroy(srv->pending);
    conn_reap(srv);
}

/* Not GET /ws: lws serves it (HTTP routes, demo, POST /publish) and reads
 * the request itself, since routing only peeked at it. (lws's "readbuf"
 * adoption would take bytes we had read, but it serves them from inside
 * the call and, on a foreign libuv loop, leaves the rest of a body unread
 * until the socket happens to become readable again.) */
static void hand_to_lws(struct conn *c)
{
    struct server *srv = c->srv;
    int fd = c->fd;
    pending_unlink(c);
    hb_cancel(&srv->expiry, c);
    watch(c, EPOLL_CTL_DEL, 0); /* ours no more: lws polls it through libuv */
    bury(c);
    if (!lws_adopt_socket_vhost(srv->vhost, fd))
        log_warn("adopt_failed", "fd=%d", fd); /* lws closed fd */
}

static void on_route_retry(uv_timer_t *t)
{
    struct server *srv = t->data;
    for (struct conn *c = srv->pending; c; c = c->acct_next)
        if (c->route_wait) {
            c->route_wait = 0;
            watch(c, EPOLL_CTL_MOD, EPOLLIN);
        }
    srv->route_waiting = 0;
}

/* Whose request is it? "GET /ws" then '?' or ' ' is ours (returns 1);
 * anything else goes to lws untouched. */
static int route(struct conn *c)
{
    static const char ours[] = "GET /ws";
    struct server *srv = c->srv;
    char peek[8];
    ssize_t n = recv(c->fd, peek, sizeof(peek), MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (n <= 0) {
        conn_destroy(c);
        return 0;
    }
    size_t k = n < 7 ? (size_t)n : 7;
    if (memcmp(peek, ours, k) != 0 || (n == 8 && peek[7] != ' ' && peek[7] != '?')) {
        hand_to_lws(c);
        return 0;
    }
    if (n < 8) {
        /* A request line trickling in: look again shortly. */
        watch(c, EPOLL_CTL_MOD, 0);
        c->route_wait = 1;
        if (!srv->route_waiting++)
            uv_timer_start(&srv->route_timer, on_route_retry, ROUTE_RETRY_MS, 0);
        return 0;
    }
    c->routed = 1;
    return 1;
}

/* ---- output ---- */

/* A full socket waits for POLLOUT in a set of its own (conn_wepfd), which
 * the loop always watches: its output then never waits for the input
 * gate, and one stuck client does not keep the gate open for all. */
static void arm_write(struct conn *c, int on)
{
    if (c->want_write == on || c->state == CONN_DEAD)
        return;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(c->srv->conn_wepfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, c->fd, &ev) < 0) {
        log_warn("write_watch_failed", "conn=%s error=\"epoll_ctl: %s\"", c->id, strerror(errno));
        if (on) { /* it could never be written again */
            conn_destroy(c);
            return;
        }
    }
    c->want_write = (uint8_t)on;
}

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
    struct server *srv = c->srv;
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
            srv->metrics.delivered++;
            counters_observe_latency(&srv->metrics, now - f->arrived_ns);
        }
        c->q_head = (c->q_head + 1) & (c->q_cap - 1);
        c->q_len--;
        c->q_bytes -= f->len;
        srv->metrics.queued_bytes -= f->len;
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
     * a reset makes the client's kernel throw our last bytes away. */
    if (c->refused)
        shutdown(c->fd, SHUT_WR);
}

/* Points p at the front of c's queue (at most FLUSH_FRAMES frames). A
 * burst of small frames (a header and a payload each) is copied into
 * gather first when it fits in room: the kernel's per-segment work on
 * twenty small iovecs cost more than the copy (broadcast bursts). Returns
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
    arm_write(c, 0);
    drained(c);
}

/* Applies the result of writing p (bytes, or -errno as io_uring reports
 * it). Returns 1 when it all went out and more is queued. */
static int wrote(struct conn *c, const struct write_prep *p, long r)
{
    if (r == -EINTR)
        return 1;
    if (r == -EAGAIN || r == -EWOULDBLOCK) {
        arm_write(c, 1);
        return 0;
    }
    if (r < 0) {
        conn_destroy(c); /* EPIPE, ECONNRESET: the client is gone */
        return 0;
    }
    consume(c, (size_t)r, uv_hrtime());
    if ((size_t)r < p->total) {
        arm_write(c, 1);
        return 0;
    }
    if (c->q_len)
        return 1;
    written_all(c);
    return 0;
}

/* Writes c's queue now, one sendmsg() per FLUSH_FRAMES frames, until it is
 * empty or the socket is full. */
static void flush(struct conn *c)
{
    if (!c->q_len) {
        written_all(c);
        return;
    }
    struct write_prep p;
    long r;
    do {
        prepare_write(c, &p, c->srv->wbuf, CONN_GATHER_MAX);
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
        flush_later(c); /* the rest of a long queue: in the next submit */
}

/* Runs the n operations queued on b for b->conn[0..n), each reported to
 * done. If the ring itself fails, whether the unreported ones happened is
 * unknown, and a stream cannot be patched: those connections close, and
 * their clients reconnect and resume. */
static void batch_run(struct conn_batch *b, unsigned n, batchio_done_fn *done)
{
    if (batchio_run(&b->io, done, b) == 0)
        return;
    for (unsigned i = 0; i < n; i++)
        if (!b->reported[i])
            conn_destroy(b->conn[i]);
}

/* Up to BATCH_SOCKETS sockets of the flush list written by one submit. */
static void flush_batch(struct server *srv, struct conn_batch *b)
{
    unsigned n = 0;
    size_t gathered = 0;
    while (srv->flush && n < BATCH_SOCKETS) {
        struct conn *c = srv->flush;
        flush_unlink(c);
        if (!c->q_len) {
            written_all(c);
            continue;
        }
        gathered += prepare_write(c, &b->prep[n], b->gather + gathered, BATCH_GATHER - gathered);
        if (batchio_add_sendmsg(&b->io, c->fd, &b->prep[n].msg, n) < 0) {
            flush(c); /* cannot happen: the ring has room for a batch */
            continue;
        }
        b->conn[n] = c;
        b->reported[n] = 0;
        n++;
    }
    batch_run(b, n, batch_done);
}

void conn_flush_all(struct server *srv)
{
    struct conn_batch *b = srv->conn_batch;
    while (srv->flush) {
        if (b) {
            flush_batch(srv, b);
        } else {
            struct conn *c = srv->flush;
            flush_unlink(c);
            flush(c);
        }
    }
    conn_reap(srv); /* closed by timers, Redis callbacks or this flush */
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

/* Appends f to the queue, bounds aside. */
static int enqueue(struct conn *c, struct frame *f)
{
    if (c->q_len == c->q_cap && grow(c) < 0) {
        c->srv->metrics.dropped[DROP_NO_MEMORY]++;
        return -1;
    }
    frame_ref(f);
    c->q[(c->q_head + c->q_len) & (c->q_cap - 1)] = f;
    c->q_len++;
    c->q_bytes += f->len;
    c->srv->metrics.queued_bytes += f->len;
    flush_later(c);
    return 0;
}

/* Drops queued frames, except one already partly written (the stream
 * would be cut mid-frame) or the held 101 (the close must follow it). */
static void drop_queue(struct conn *c)
{
    uint32_t keep = c->q_len && (c->q_off || c->q[c->q_head]->opcode == FRAME_RAW);
    while (c->q_len > keep) {
        uint32_t last = (c->q_head + c->q_len - 1) & (c->q_cap - 1);
        c->q_bytes -= c->q[last]->len;
        c->srv->metrics.queued_bytes -= c->q[last]->len;
        frame_unref(c->q[last]);
        c->q_len--;
    }
    for (uint32_t i = 0; i < c->n_held; i++)
        frame_unref(c->held[i]);
    free(c->held);
    c->held = NULL;
    c->n_held = c->cap_held = 0;
}

/* Queues the last bytes the socket will carry (a close frame or an HTTP
 * refusal) and starts the linger. */
static void finish_with(struct conn *c, struct frame *last)
{
    struct server *srv = c->srv;
    drop_queue(c);
    c->state = CONN_CLOSING;
    c->hold = 0;
    hb_cancel(&srv->heartbeat, c);
    hb_schedule(&srv->expiry, c, uv_now(&srv->loop) + CLOSE_LINGER_MS);
    if (!last || enqueue(c, last) < 0)
        conn_destroy(c);
}

static void send_close(struct conn *c, uint16_t code, const char *text)
{
    uint8_t payload[2 + 64];
    size_t tlen = strnlen(text, 64), len = code ? 2 + tlen : 0;
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    memcpy(payload + 2, text, tlen);
    struct frame *f = frame_new_op(WS_OP_CLOSE, payload, len);
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
    /* Pieces copied rather than snprintf'd: its format parsing was ~900
     * instructions of every connect (callgrind, connect storm). */
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
    struct server *srv = c->srv;
    c->state = CONN_OPEN;
    c->hold = 1;
    hb_cancel(&srv->expiry, c); /* the head timeout */
    int rc = enqueue(c, f);
    frame_unref(f);
    return rc;
}

void conn_release_hold(struct conn *c)
{
    if (!c->hold)
        return;
    c->hold = 0;
    if (c->q_len)
        flush_later(c);
}

int conn_send(struct conn *c, struct frame *f)
{
    struct server *srv = c->srv;
    if (c->state != CONN_OPEN)
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
    return enqueue(c, f);
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
    if (c->state != CONN_OPEN)
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

int conn_timeout(struct conn *c)
{
    if (c->state == CONN_OPEN)
        return 0;
    if (c->state == CONN_HEAD)
        c->srv->metrics.rejected[REJECT_TIMEOUT]++;
    conn_destroy(c);
    return 1;
}

/* ---- input ---- */

/* Keeps the unparsed tail of buf for the next read. */
static void keep_input(struct conn *c, const uint8_t *p, size_t len)
{
    c->in = malloc(len);
    if (!c->in) {
        conn_destroy(c);
        return;
    }
    memcpy(c->in, p, len);
    c->in_len = (uint32_t)len;
}

static void protocol_error(struct conn *c, uint16_t code)
{
    if (c->state == CONN_OPEN)
        conn_close(c, code);
    else
        conn_destroy(c);
}

static void append_rx(struct conn *c, const uint8_t *p, size_t len)
{
    if (!c->rx && !(c->rx = malloc((size_t)c->srv->cfg->max_message_bytes))) {
        conn_destroy(c);
        return;
    }
    memcpy(c->rx + c->rx_len, p, len);
    c->rx_len += (uint32_t)len;
}

static void on_frame(struct conn *c, const struct wsframe *fr, uint8_t *p)
{
    struct server *srv = c->srv;
    size_t len = (size_t)fr->payload_len;
    if (c->state == CONN_CLOSING) {
        /* Only the client's answer to our close matters now. It may come
         * in the same read as the frame we are closing on, before our close
         * is written: then the socket closes once ours is out (drained). */
        if (fr->opcode == WS_OP_CLOSE) {
            if (c->close_sent)
                conn_destroy(c);
            else
                c->peer_closed = 1;
        }
        return;
    }
    switch (fr->opcode) {
    case WS_OP_TEXT:
    case WS_OP_BINARY:
        if (c->rx_op) {
            protocol_error(c, 1002); /* a new message inside a fragmented one */
            return;
        }
        if (fr->fin) {
            ws_on_message(c, fr->opcode == WS_OP_BINARY, (const char *)p, len);
            return;
        }
        c->rx_op = fr->opcode;
        append_rx(c, p, len);
        return;
    case WS_OP_CONT:
        if (!c->rx_op) {
            protocol_error(c, 1002);
            return;
        }
        append_rx(c, p, len);
        if (fr->fin && c->state == CONN_OPEN) {
            int binary = c->rx_op == WS_OP_BINARY;
            c->rx_op = 0;
            ws_on_message(c, binary, c->rx, c->rx_len);
            free(c->rx);
            c->rx = NULL;
            c->rx_len = 0;
        }
        return;
    case WS_OP_PING: {
        c->last_seen = uv_now(&srv->loop);
        struct frame *pong = frame_new_op(WS_OP_PONG, p, len);
        if (pong)
            conn_send(c, pong);
        frame_unref(pong);
        return;
    }
    case WS_OP_PONG:
        c->last_seen = uv_now(&srv->loop);
        return;
    case WS_OP_CLOSE: {
        uint16_t code = wsframe_close_code(p, len);
        if (!code) {
            /* A bad close is a close all the same: the client sends
             * nothing more, so ours (1002) ends the connection. */
            c->peer_closed = 1;
            protocol_error(c, 1002);
            return;
        }
        /* The client closes: answer with its code, then close the socket
         * (the server closes TCP first, RFC 6455 7.1.1). */
        c->peer_closed = 1;
        send_close(c, code == 1005 ? 0 : code, "");
        return;
    }
    default:
        protocol_error(c, 1002);
    }
}

static void parse_frames(struct conn *c, uint8_t *buf, size_t len)
{
    uint64_t max = (uint64_t)c->srv->cfg->max_message_bytes;
    size_t pos = 0;
    while (pos < len && c->state != CONN_DEAD) {
        struct wsframe fr;
        enum wsframe_result r = wsframe_parse(buf + pos, len - pos, &fr);
        if (r == WSFRAME_INCOMPLETE)
            break;
        if (r != WSFRAME_OK) {
            protocol_error(c, 1002);
            return;
        }
        if (fr.opcode < WS_OP_CLOSE && (uint64_t)c->rx_len + fr.payload_len > max) {
            protocol_error(c, 1009);
            return;
        }
        if (len - pos - fr.header_len < fr.payload_len)
            break; /* the payload is still on its way */
        uint8_t *p = buf + pos + fr.header_len;
        wsframe_unmask(p, (size_t)fr.payload_len, fr.mask, 0);
        pos += fr.header_len + (size_t)fr.payload_len;
        on_frame(c, &fr, p);
    }
    if (pos < len && c->state != CONN_DEAD)
        keep_input(c, buf + pos, len - pos);
}

/* Reads into the server's buffer after what was kept from the last read;
 * returns the bytes now in it, or 0 when there is nothing (more) to do. */
static size_t read_frames_input(struct conn *c)
{
    uint8_t *buf = c->srv->rbuf;
    size_t have = c->in_len;
    if (have)
        memcpy(buf, c->in, have);
    ssize_t n = read(c->fd, buf + have, c->srv->rbuf_size - have);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (n <= 0) {
        conn_destroy(c); /* the client went away (or reset) */
        return 0;
    }
    free(c->in);
    c->in = NULL;
    c->in_len = 0;
    return have + (size_t)n;
}

/* n bytes of a batched read, in a slot of the batch: parsed where they
 * are unless part of a frame was kept from the last read. */
static void take_input(struct conn *c, uint8_t *data, size_t n)
{
    if (c->in_len) {
        uint8_t *buf = c->srv->rbuf; /* holds a kept frame and a slot */
        size_t have = c->in_len;
        memcpy(buf, c->in, have);
        memcpy(buf + have, data, n);
        free(c->in);
        c->in = NULL;
        c->in_len = 0;
        data = buf;
        n += have;
    }
    parse_frames(c, data, n);
}

static void read_head(struct conn *c)
{
    struct server *srv = c->srv;
    if (!c->routed && !route(c))
        return;
    /* A head that did not come whole is gathered in its own HEAD_MAX
     * buffer, read into directly: one trickling in byte by byte costs no
     * copies. */
    uint8_t *buf = c->in ? c->in : srv->rbuf;
    size_t have = c->in_len;
    ssize_t n = read(c->fd, buf + have, HEAD_MAX - have);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        conn_destroy(c);
        return;
    }
    have += (size_t)n;
    struct httphead h;
    size_t head_len = 0;
    switch (httphead_parse((const char *)buf, have, &h, &head_len)) {
    case HTTPHEAD_INCOMPLETE:
        if (have >= HEAD_MAX) {
            srv->metrics.rejected[REJECT_MALFORMED]++;
            conn_refuse(c, 431, "request head too large\n");
        } else if (c->in || (c->in = malloc(HEAD_MAX))) {
            if (buf != c->in)
                memcpy(c->in, buf, have);
            c->in_len = (uint32_t)have;
        } else {
            conn_destroy(c);
        }
        return;
    case HTTPHEAD_BAD:
        srv->metrics.rejected[REJECT_MALFORMED]++;
        conn_refuse(c, 400, "malformed request\n");
        return;
    case HTTPHEAD_TOO_MANY:
        srv->metrics.rejected[REJECT_MALFORMED]++;
        conn_refuse(c, 431, "too many headers\n");
        return;
    case HTTPHEAD_OK:
        break;
    }
    /* The head buffer is ours from here: frames after the head may need a
     * new c->in. */
    uint8_t *own = c->in;
    c->in = NULL;
    c->in_len = 0;
    pending_unlink(c);
    ws_on_head(c, &h);
    if (c->state != CONN_DEAD && !c->acct)
        pending_link(c); /* refused: lingering until closed */
    if (c->state == CONN_OPEN && have > head_len)
        parse_frames(c, buf + head_len, have - head_len);
    free(own);
}

static void on_io(struct conn *c, uint32_t events)
{
    if (events & EPOLLOUT) {
        flush(c); /* disarms POLLOUT once the queue is empty */
        if (c->state == CONN_DEAD)
            return;
    }
    /* A hang-up or an error shows as a read of 0 or -1. */
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    switch (c->state) {
    case CONN_HEAD:
        read_head(c);
        return;
    case CONN_OPEN:
    case CONN_CLOSING:
        if (c->refused) { /* an HTTP refusal: drop what the client still sends */
            char sink[4096];
            ssize_t n = read(c->fd, sink, sizeof(sink));
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                conn_destroy(c);
            return;
        }
        {
            size_t have = read_frames_input(c);
            if (have)
                parse_frames(c, c->srv->rbuf, have);
        }
        return;
    default:
        return;
    }
}

/* Events per epoll_wait: a connect storm or a broadcast's replies are
 * taken in batches, and libuv calls again while the set stays readable. */
#define EVENT_BATCH 256

static void on_conn_events(uv_poll_t *h, int status, int events);

static void read_done(void *ctx, uint64_t user, int result)
{
    struct conn_batch *b = ctx;
    struct conn *c = b->conn[user];
    b->reported[user] = 1;
    if (c->state == CONN_DEAD || result == -EAGAIN || result == -EINTR)
        return;
    if (result <= 0) {
        conn_destroy(c); /* the client went away (or reset) */
        return;
    }
    take_input(c, b->in[user], (size_t)result);
    /* A full slot: there may be more, read at once rather than a pass
     * later; unless the frames led to a close (say 1009 on an oversize
     * frame's header), whose frame must go out before the rest of the
     * stream, unparseable now, ends the connection. */
    if (result == READ_SLOT && c->state == CONN_OPEN)
        on_io(c, EPOLLIN);
}

/* Whether a readable socket's bytes are client frames for parse_frames,
 * which a batched read can take. */
static int reads_frames(const struct conn *c)
{
    return (c->state == CONN_OPEN || c->state == CONN_CLOSING) && !c->refused;
}

/* Handles what is ready in a client socket set (conn_epfd or
 * conn_wepfd); returns how many events. The frames of a pass are read
 * with one submit (a heartbeat from each of a gathered pass's clients);
 * anything else in the pass is handled in turn, after the reads queued
 * before it. */
static int conn_drain(struct server *srv, int epfd)
{
    struct epoll_event ev[EVENT_BATCH];
    struct conn_batch *b = srv->conn_batch;
    unsigned queued = 0;
    int n = epoll_wait(epfd, ev, EVENT_BATCH, 0);
    for (int i = 0; i < n; i++) {
        struct conn *c = ev[i].data.ptr;
        int batched = b && ev[i].events == EPOLLIN && reads_frames(c);
        if (queued && (!batched || queued == BATCH_SOCKETS)) {
            batch_run(b, queued, read_done);
            queued = 0;
        }
        if (c->state == CONN_DEAD) /* closed earlier in this batch */
            continue;
        if (batched && batchio_add_recv(&b->io, c->fd, b->in[queued], READ_SLOT, queued) == 0) {
            b->conn[queued] = c;
            b->reported[queued++] = 0;
            continue;
        }
        on_io(c, ev[i].events);
    }
    if (queued)
        batch_run(b, queued, read_done);
    conn_reap(srv);
    return n < 0 ? 0 : n;
}

/* Client input is sparse when a node is idle (a heartbeat every few ms at
 * host scale) and each wakeup of the process costs more than the read and
 * the reply it serves (bench/analysis.md). So after a wakeup for client
 * input that came within --input-batch-ms of the previous one, the set is
 * not watched for --input-batch-ms: what arrives meanwhile is read in one
 * pass, until a pass finds nothing and the watch resumes.
 * Deliveries never wait: they start from the Redis socket, watched
 * directly, and are written in the same loop turn. A full batch means the
 * loop is busy anyway, so the set stays watched. So does it while a
 * connection is opening (srv->pending): a handshake never waits, and a
 * connect storm runs as without gathering. Nor does a full socket's
 * POLLOUT, which is watched in another set (arm_write).
 *
 * Not watching is done through a gate: libuv watches an epoll set holding
 * only conn_epfd, and a MOD shuts it (no events) or opens it (EPOLLIN).
 * (uv_poll_stop/start would DEL and ADD conn_epfd in libuv's set, and
 * adding an epoll set to another makes the kernel walk every socket in it
 * for loops: 5% of the profile at 16,000 sockets.) */

/* Opens (EPOLLIN) or shuts (no events) the gate. */
static void gate_set(struct server *srv, int open)
{
    struct epoll_event ev = {.events = open ? EPOLLIN : 0};
    srv->conn_gathering = !open;
    if (epoll_ctl(srv->conn_gate, EPOLL_CTL_MOD, srv->conn_epfd, &ev) < 0)
        log_error("conn_gate_failed", "error=\"epoll_ctl: %s\"", strerror(errno));
}

static void on_gather(uv_timer_t *t);

/* After a pass over the client set: gather for a while, unless the loop
 * is busy (a full batch) or a connection is opening. */
static void gather_or_watch(struct server *srv, int n)
{
    if (n < EVENT_BATCH && !srv->pending) {
        if (!srv->conn_gathering)
            gate_set(srv, 0);
        uv_timer_start(&srv->conn_gather, on_gather, srv->cfg->input_batch_ms, 0);
    } else if (srv->conn_gathering) {
        gate_set(srv, 1);
    }
}

static void on_gather(uv_timer_t *t)
{
    struct server *srv = t->data;
    int n = conn_drain(srv, srv->conn_epfd);
    if (n == 0 && srv->conn_gathering)
        gate_set(srv, 1); /* quiet: sleep until the next arrival */
    else
        gather_or_watch(srv, n);
}

/* The server behind a poll of a client set, or NULL after logging the
 * poll's error. */
static struct server *polled(uv_poll_t *h, int status)
{
    if (status < 0) {
        log_error("conn_poll_failed", "error=\"%s\"", uv_strerror(status));
        return NULL;
    }
    return h->data;
}

static void on_write_events(uv_poll_t *h, int status, int events)
{
    struct server *srv = polled(h, status);
    (void)events;
    if (srv)
        conn_drain(srv, srv->conn_wepfd);
}

static void on_conn_events(uv_poll_t *h, int status, int events)
{
    struct server *srv = polled(h, status);
    (void)events;
    if (!srv)
        return;
    int n = conn_drain(srv, srv->conn_epfd);
    if (srv->conn_gate < 0)
        return;
    /* Input sparser than one wakeup per window is read as it comes:
     * gathering it would only add a timer's wakeup to each arrival. */
    uint64_t now = uv_now(&srv->loop);
    int frequent = now - srv->conn_woken < (uint64_t)srv->cfg->input_batch_ms;
    srv->conn_woken = now;
    if (frequent)
        gather_or_watch(srv, n);
}

/* Batched writes when asked for and io_uring works here; else a sendmsg
 * per socket. */
static void batch_open(struct server *srv)
{
    if (!srv->cfg->io_uring)
        return;
    struct conn_batch *b = malloc(sizeof(*b));
    char err[160];
    if (b && batchio_init(&b->io, BATCH_SOCKETS, err, sizeof(err)) == 0) {
        srv->conn_batch = b;
        log_info("io_uring", "reads=batched writes=batched sockets_per_submit=%d", BATCH_SOCKETS);
        return;
    }
    log_warn("io_uring_unavailable", "reason=\"%s\" reads=read writes=sendmsg",
             b ? err : "out of memory");
    free(b);
}

int conn_poll_start(struct server *srv)
{
    srv->conn_gate = -1;
    srv->conn_epfd = epoll_create1(EPOLL_CLOEXEC);
    if (srv->conn_epfd < 0)
        return -errno;
    int watched = srv->conn_epfd, rc;
    if ((srv->conn_wepfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        rc = -errno;
        goto fail;
    }
    if ((rc = uv_poll_init(&srv->loop, &srv->conn_wpoll, srv->conn_wepfd)) < 0)
        goto fail;
    srv->conn_wpoll.data = srv;
    if ((rc = uv_poll_start(&srv->conn_wpoll, UV_READABLE, on_write_events)) < 0)
        goto fail;
    if (srv->cfg->input_batch_ms > 0) {
        struct epoll_event ev = {.events = EPOLLIN};
        if ((srv->conn_gate = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
            epoll_ctl(srv->conn_gate, EPOLL_CTL_ADD, srv->conn_epfd, &ev) < 0) {
            rc = -errno;
            goto fail;
        }
        watched = srv->conn_gate;
    }
    if ((rc = uv_poll_init(&srv->loop, &srv->conn_poll, watched)) < 0)
        goto fail;
    batch_open(srv);
    srv->conn_poll.data = srv;
    uv_timer_init(&srv->loop, &srv->conn_gather);
    srv->conn_gather.data = srv;
    return uv_poll_start(&srv->conn_poll, UV_READABLE, on_conn_events);
fail: /* start-up fails and the process exits (main): the polls need no close */
    if (srv->conn_gate >= 0)
        close(srv->conn_gate);
    if (srv->conn_wepfd >= 0)
        close(srv->conn_wepfd);
    close(srv->conn_epfd);
    srv->conn_gate = srv->conn_wepfd = srv->conn_epfd = -1;
    return rc;
}

static void on_conn_poll_closed(uv_handle_t *h)
{
    struct server *srv = h->data;
    close(srv->conn_epfd);
    if (srv->conn_gate >= 0)
        close(srv->conn_gate);
    srv->conn_epfd = srv->conn_gate = -1;
}

static void on_conn_wpoll_closed(uv_handle_t *h)
{
    struct server *srv = h->data;
    close(srv->conn_wepfd);
    srv->conn_wepfd = -1;
}

void conn_poll_stop(struct server *srv)
{
    conn_destroy_all(srv);
    if (srv->conn_batch) {
        batchio_free(&srv->conn_batch->io);
        free(srv->conn_batch);
        srv->conn_batch = NULL;
    }
    if (srv->conn_epfd >= 0 && !uv_is_closing((uv_handle_t *)&srv->conn_poll)) {
        uv_timer_stop(&srv->conn_gather);
        uv_close((uv_handle_t *)&srv->conn_gather, NULL);
        uv_close((uv_handle_t *)&srv->conn_poll, on_conn_poll_closed);
        uv_close((uv_handle_t *)&srv->conn_wpoll, on_conn_wpoll_closed);
    }
}
