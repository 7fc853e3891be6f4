/* input: what a client socket sends. First its request line, peeked to
 * route it (a claimed path, or the adopt function); then its request head,
 * read and parsed (common/httphead.c) and given to the route; then its
 * WebSocket frames (common/wsframe.c: masking, fragments, ping/pong, the
 * close handshake, UTF-8 text, the frame rate; 1002/1007/1008/1009, each
 * failing the connection), each complete message given to the route. */
#include "conn.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "httphead.h"
#include "validate.h"

/* Longest request head taken (a browser's cookies plus an 8 KB token). */
#define HEAD_MAX 16384
_Static_assert(HEAD_MAX <= READ_BUF, "a head is read into net->rbuf");
/* A socket whose first bytes do not yet tell whose request it is looks
 * again this much later (instead of spinning on a readable socket). */
#define ROUTE_RETRY_MS 20

/* ---- frames ---- */

/* Keeps the unparsed tail of buf for the next read; whole is the length
 * of the frame it starts (0: its header is not whole yet). A long frame
 * gets a buffer of its whole length, read into directly (read_own): its
 * bytes are copied once, not once per read. */
static void keep_input(struct conn *c, const uint8_t *p, size_t len, size_t whole)
{
    size_t size = whole > OWN_FRAME_MIN ? whole : len;
    c->in = malloc(size);
    if (!c->in) {
        conn_destroy(c);
        return;
    }
    memcpy(c->in, p, len);
    c->in_len = (uint32_t)len;
    c->in_cap = whole > OWN_FRAME_MIN ? (uint32_t)whole : 0;
}

/* Fails the connection for what the client sent (a frame it must not
 * send, text that is not UTF-8, a message too big, a flood): nothing more
 * it sends is processed (RFC 6455 7.1.7). */
static void fail(struct conn *c, uint16_t code)
{
    if (c->state == CONN_OPEN)
        conn_fail(c, code);
    else
        conn_destroy(c);
}

/* Whether c's frames are still read: open, or closing and waiting for
 * the client's close frame (a failed connection's input is dropped). */
static int parsing(const struct conn *c)
{
    return c->state == CONN_OPEN || (c->state == CONN_CLOSING && !c->failed);
}

static void append_rx(struct conn *c, const uint8_t *p, size_t len)
{
    if (!c->rx && !(c->rx = malloc((size_t)c->net->opt.max_message_bytes))) {
        conn_destroy(c);
        return;
    }
    memcpy(c->rx + c->rx_len, p, len);
    c->rx_len += (uint32_t)len;
}

/* A fragmented text message must be UTF-8 as far as it has come: a bad
 * fragment fails the connection when it arrives, not at the message's end
 * (RFC 6455 8.1), and only the last may leave a sequence unfinished.
 * Returns 0 or -1 (then fail with 1007). */
static int rx_text_ok(struct conn *c, int fin)
{
    int open = validate_utf8_partial(c->rx + c->rx_checked, c->rx_len - c->rx_checked);
    if (open < 0 || (fin && open))
        return -1;
    c->rx_checked = c->rx_len - (uint32_t)open;
    return 0;
}

static void message(struct conn *c, int binary, const char *buf, size_t len)
{
    const struct net_route *r = conn_route(c);
    r->h->on_message(r->ctx, c, binary, buf, len);
}

/* A ping or a pong: the client is there (liveness is the route's). */
static void alive(struct conn *c)
{
    const struct net_route *r = conn_route(c);
    if (c->state == CONN_OPEN)
        r->h->on_alive(r->ctx, c);
}

/* The frame bucket: frames_burst frames, refilled at frames_per_s
 * (README.md, "Slow clients and limits"). Every frame takes one, pings,
 * pongs and empty continuations too, since each costs a parse and a call
 * (and each ping a pong), except a close (it ends the connection) and a
 * fragment of at least NET_FRAGMENT_FREE bytes that is not its message's
 * last: a large message may come in many pieces, paid for by its bytes,
 * which --max-message-bytes bounds. Returns 1 when c is over it. */
static int flooded(struct conn *c, const struct wsframe *fr)
{
    const struct net_options *o = &c->net->opt;
    if (!o->frames_burst || fr->opcode == WS_OP_CLOSE ||
        (!fr->fin && fr->opcode < WS_OP_CLOSE && fr->payload_len >= NET_FRAGMENT_FREE))
        return 0;
    uint64_t now = uv_now(c->net->loop), cap = (uint64_t)o->frames_burst * 1000;
    uint64_t tokens = c->rl_at ? c->rl_tokens + (now - c->rl_at) * (uint64_t)o->frames_per_s : cap;
    c->rl_tokens = (uint32_t)(tokens > cap ? cap : tokens);
    c->rl_at = now;
    if (c->rl_tokens < 1000)
        return 1;
    c->rl_tokens -= 1000;
    return 0;
}

static void on_frame(struct conn *c, const struct wsframe *fr, uint8_t *p)
{
    size_t len = (size_t)fr->payload_len;
    if (c->state == CONN_CLOSING) {
        /* Only the client's answer to our close matters now. It may come
         * in the same read as the frame we are closing on, before our close
         * is written: then the socket closes once ours is out (output.c). */
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
            fail(c, 1002); /* a new message inside a fragmented one */
            return;
        }
        if (fr->fin) {
            if (fr->opcode == WS_OP_TEXT && !validate_utf8((const char *)p, len))
                fail(c, 1007);
            else
                message(c, fr->opcode == WS_OP_BINARY, (const char *)p, len);
            return;
        }
        c->rx_op = fr->opcode;
        append_rx(c, p, len);
        if (c->rx && c->rx_op == WS_OP_TEXT && rx_text_ok(c, 0) < 0)
            fail(c, 1007);
        return;
    case WS_OP_CONT:
        if (!c->rx_op) {
            fail(c, 1002);
            return;
        }
        append_rx(c, p, len);
        if (c->state != CONN_OPEN)
            return;
        if (c->rx_op == WS_OP_TEXT && rx_text_ok(c, fr->fin) < 0) {
            fail(c, 1007);
            return;
        }
        if (fr->fin) {
            int binary = c->rx_op == WS_OP_BINARY;
            c->rx_op = 0;
            message(c, binary, c->rx, c->rx_len);
            free(c->rx);
            c->rx = NULL;
            c->rx_len = c->rx_checked = 0;
        }
        return;
    case WS_OP_PING: {
        struct frame *pong = frame_new_op(WS_OP_PONG, p, len);
        if (pong)
            conn_send(c, pong);
        frame_unref(pong);
        alive(c);
        return;
    }
    case WS_OP_PONG:
        alive(c);
        return;
    case WS_OP_CLOSE: {
        uint16_t code = wsframe_close_code(p, len);
        if (!code) {
            /* A bad close is a close all the same: the client sends
             * nothing more, so ours (1002) ends the connection. */
            c->peer_closed = 1;
            fail(c, 1002);
            return;
        }
        /* The client closes: answer with its code, then close the socket
         * (the server closes TCP first, RFC 6455 7.1.1). */
        conn_echo_close(c, code == 1005 ? 0 : code);
        return;
    }
    default:
        fail(c, 1002);
    }
}

static void parse_frames(struct conn *c, uint8_t *buf, size_t len)
{
    uint64_t max = (uint64_t)c->net->opt.max_message_bytes;
    size_t pos = 0, whole = 0;
    while (pos < len && parsing(c)) {
        struct wsframe fr;
        enum wsframe_result r = wsframe_parse(buf + pos, len - pos, &fr);
        if (r == WSFRAME_INCOMPLETE)
            break;
        if (r != WSFRAME_OK) {
            fail(c, 1002);
            return;
        }
        if (fr.opcode < WS_OP_CLOSE && (uint64_t)c->rx_len + fr.payload_len > max) {
            fail(c, 1009);
            return;
        }
        if (len - pos - fr.header_len < fr.payload_len) {
            whole = fr.header_len + (size_t)fr.payload_len; /* bounded by max just above */
            break;                                          /* the payload is still on its way */
        }
        uint8_t *p = buf + pos + fr.header_len;
        pos += fr.header_len + (size_t)fr.payload_len;
        if (c->state == CONN_OPEN && flooded(c, &fr)) {
            fail(c, 1008);
            return;
        }
        wsframe_unmask(p, (size_t)fr.payload_len, fr.mask, 0);
        on_frame(c, &fr, p);
    }
    if (pos < len && parsing(c))
        keep_input(c, buf + pos, len - pos, whole);
}

/* After a read (got bytes, 0 when there was nothing): a socket whose input
 * is in progress (a frame or a fragmented message not whole yet) or that
 * came in a burst is read on at once, not after the gathering window
 * (gate.c); one whose input is done goes back to the client set. */
static void settle(struct conn *c, size_t got)
{
    if (c->state != CONN_DEAD)
        conn_read_on(c, c->in_len || c->rx_op || got >= READ_SLOT);
}

/* The next bytes of a long frame, into its own buffer (keep_input), only
 * up to its end; once it is whole it is parsed there. */
static void read_own(struct conn *c)
{
    ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        conn_destroy(c); /* the client went away (or reset) */
        return;
    }
    if (n > 0)
        c->in_len += (uint32_t)n;
    if (c->in_len < c->in_cap) {
        settle(c, 0); /* in progress: read on */
        return;
    }
    uint8_t *frame = c->in;
    size_t len = c->in_len;
    c->in = NULL;
    c->in_len = c->in_cap = 0;
    parse_frames(c, frame, len);
    free(frame);
    settle(c, 0);
}

/* Reads into the transport's buffer after what was kept from the last
 * read, and parses what is whole. */
static void read_frames(struct conn *c)
{
    if (c->in_cap) {
        read_own(c);
        return;
    }
    uint8_t *buf = c->net->rbuf;
    size_t have = c->in_len;
    if (have)
        memcpy(buf, c->in, have);
    ssize_t n = read(c->fd, buf + have, READ_BUF - have);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        settle(c, 0);
        return;
    }
    if (n <= 0) {
        conn_destroy(c); /* the client went away (or reset) */
        return;
    }
    free(c->in);
    c->in = NULL;
    c->in_len = 0;
    parse_frames(c, buf, have + (size_t)n);
    settle(c, (size_t)n);
}

void input_take(struct conn *c, uint8_t *data, size_t n)
{
    if (!parsing(c))
        return;         /* failed: what the client still sends is dropped */
    assert(!c->in_cap); /* input_reads_frames: a long frame is read by read_own */
    /* Parsed where they are unless part of a frame was kept from the last
     * read. */
    size_t got = n;
    if (c->in_len) {
        uint8_t *buf = c->net->rbuf; /* holds a kept frame and a slot */
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
    if (got < READ_SLOT) /* a full slot is read on at once (gate.c), which settles */
        settle(c, got);
}

int input_reads_frames(const struct conn *c)
{
    /* Not a socket read on: a long frame goes into its own buffer, and a
     * burst would only fill the slot and be read again. */
    return parsing(c) && !c->refused && !c->read_on && !c->in_cap && !c->stream;
}

/* ---- routing ---- */

static void on_route_retry(uv_timer_t *t)
{
    struct net *n = t->data;
    for (struct conn *c = n->opening; c; c = c->next)
        if (c->route_wait) {
            c->route_wait = 0;
            conn_watch(c, EPOLL_CTL_MOD, EPOLLIN);
        }
    n->route_waiting = 0;
}

/* A request for no route: adopted once net->screen passes its head
 * (peeked: the adopter reads it), else refused. While the head is not
 * whole, only new bytes wake c (edge-triggered), as peeking leaves the
 * socket readable. */
static void hand_off(struct conn *c)
{
    struct net *n = c->net;
    const char *why = NULL;
    int verdict = n->screen ? n->screen(n->adopt_ctx, c->fd, &why) : 0;
    if (verdict == NET_SCREEN_WAIT) {
        if (!c->screen_wait) {
            c->screen_wait = 1;
            conn_watch(c, EPOLL_CTL_MOD, EPOLLIN | EPOLLET);
        }
    } else if (verdict == NET_SCREEN_GONE) {
        conn_destroy(c);
    } else if (verdict > 0) {
        n->metrics->rejected[REJECT_MALFORMED]++;
        conn_watch(c, EPOLL_CTL_MOD, EPOLLIN); /* level again: the refusal drains the socket */
        conn_refuse(c, verdict, why);
    } else {
        conn_hand_off(c);
    }
}

/* Whose request is it? "GET <path>" then '?' or ' ' for a claimed path
 * (returns 1, c->route set); anything else goes to net->adopt untouched,
 * since routing only peeks. (lws's "readbuf" adoption would take bytes we
 * had read, but it serves them from inside the call and, on a foreign
 * libuv loop, leaves the rest of a body unread until the socket happens to
 * become readable again.) */
static int route(struct conn *c)
{
    struct net *n = c->net;
    char peek[4 + NET_PATH_MAX + 1];
    ssize_t got = recv(c->fd, peek, n->peek_len, MSG_PEEK);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (got <= 0) {
        conn_destroy(c);
        return 0;
    }
    size_t have = (size_t)got;
    int maybe = 0; /* a route's prefix so far: wait for more */
    for (unsigned i = 0; i < n->n_routes; i++) {
        const struct net_route *r = &n->routes[i];
        size_t want = 4 + r->len + 1, k = have < want - 1 ? have : want - 1;
        if (memcmp(peek, "GET ", k < 4 ? k : 4) != 0 ||
            (k > 4 && memcmp(peek + 4, r->path, k - 4) != 0))
            continue;
        if (have < want) {
            maybe = 1;
            continue;
        }
        if (peek[want - 1] == ' ' || peek[want - 1] == '?') {
            c->route = (uint8_t)(i + 1);
            return 1;
        }
    }
    if (!maybe) {
        hand_off(c);
        return 0;
    }
    /* A request line trickling in: look again shortly. */
    conn_watch(c, EPOLL_CTL_MOD, 0);
    c->route_wait = 1;
    if (!n->route_waiting++)
        uv_timer_start(&n->route_timer, on_route_retry, ROUTE_RETRY_MS, 0);
    return 0;
}

/* ---- the request head ---- */

static void read_head(struct conn *c)
{
    struct net *n = c->net;
    if (!c->route && !route(c))
        return;
    /* A head that did not come whole is gathered in its own HEAD_MAX
     * buffer, read into directly: one trickling in byte by byte costs no
     * copies. */
    uint8_t *buf = c->in ? c->in : n->rbuf;
    size_t have = c->in_len;
    ssize_t got = read(c->fd, buf + have, HEAD_MAX - have);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (got <= 0) {
        conn_destroy(c);
        return;
    }
    have += (size_t)got;
    struct httphead h;
    size_t head_len = 0;
    switch (httphead_parse((const char *)buf, have, &h, &head_len)) {
    case HTTPHEAD_INCOMPLETE:
        if (have >= HEAD_MAX) {
            n->metrics->rejected[REJECT_MALFORMED]++;
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
        n->metrics->rejected[REJECT_MALFORMED]++;
        conn_refuse(c, 400, "malformed request\n");
        return;
    case HTTPHEAD_TOO_MANY:
        n->metrics->rejected[REJECT_MALFORMED]++;
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
    const struct net_route *r = conn_route(c);
    r->h->on_head(r->ctx, c, &h);
    conn_headed(c);
    if (c->state == CONN_OPEN && !c->stream && have > head_len) {
        parse_frames(c, buf + head_len, have - head_len);
        settle(c, have - head_len);
    }
    free(own);
}

void input_on_io(struct conn *c, uint32_t events)
{
    if (events & EPOLLOUT) {
        output_flush(c); /* disarms POLLOUT once the queue is empty */
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
        if (c->refused || c->failed || c->stream) { /* drop what the client still sends */
            char sink[4096];
            ssize_t got = read(c->fd, sink, sizeof(sink));
            if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR))
                conn_destroy(c);
            return;
        }
        read_frames(c);
        return;
    default:
        return;
    }
}
