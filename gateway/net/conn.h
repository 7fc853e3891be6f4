/* conn: one client socket, from its first byte to its close; private to
 * net (the layer above sees struct conn through net.h's functions only).
 *
 * Frames are shared (frame.h): the queue holds references, never copies.
 * Every client socket is in one epoll set of ours (gate.c), and a full one
 * also in a second, for POLLOUT, until it drains. One whose input is in
 * progress (a frame or a message not whole yet, a burst) moves from the
 * first to a third, watched directly, until it is done. A closed conn is freed
 * between batches of events, after everything that can point at it (the
 * layer above, the timer wheel, the flush list) has dropped it.
 *
 * This header also declares what the files of net share with each other:
 * conn.c (lifetime), input.c, output.c and gate.c. */
#ifndef NOTIFY_CONN_H
#define NOTIFY_CONN_H

#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "batchio.h"
#include "net.h"
#include "wsframe.h"

/* Largest burst copied into one buffer before sendmsg (net->wbuf). */
#define CONN_GATHER_MAX (16 * 1024)
/* Frames gathered into one sendmsg(). */
#define FLUSH_FRAMES 64
/* Sockets written or read per io_uring submit, and the bytes of small
 * frames a submit's writes may copy together (output.c). */
#define BATCH_SOCKETS 128
#define BATCH_GATHER (256 * 1024)
/* Bytes of one socket's batched read: a heartbeat is 26 on the wire, and
 * a read that fills the slot goes on at once with read(). A read of this
 * much or more is a burst: its socket is read on at once (input.c). */
#define READ_SLOT 1024
/* A frame longer than this that did not come whole is read into a buffer
 * of its own, of its whole length, rather than carried from one read to
 * the next through net->rbuf (input.c). */
#define OWN_FRAME_MIN (64 * 1024)
/* net->rbuf: a kept partial frame (under OWN_FRAME_MIN) and a read after
 * it; also holds a whole request head (input.c's HEAD_MAX). */
#define READ_BUF (OWN_FRAME_MIN + 64 * 1024)

enum conn_state {
    CONN_HEAD,    /* reading the HTTP request head */
    CONN_OPEN,    /* upgraded: frames both ways */
    CONN_CLOSING, /* our close frame or HTTP refusal is queued or sent */
    CONN_DEAD,    /* socket closed; freed at the end of this loop turn */
};

struct conn {
    struct net *net;         /* the one transport */
    void *data;              /* the layer above's (conn_set_data) */
    struct conn *prev;       /* net->opening or net->open */
    struct conn *next;       /* (once dead: net->dead, freed between event batches) */
    struct conn *flush_prev; /* net->flush: written at the end of the loop turn */
    struct conn *flush_next;
    struct wheel_link timer; /* net->timers: head, linger or conn_set_timer */
    struct frame **q;        /* ring of queued frames, allocated lazily */
    uint32_t q_head;         /* index of the oldest queued frame */
    uint32_t q_len;          /* frames queued */
    uint32_t q_cap;          /* ring capacity (a power of two) */
    uint32_t q_bytes;        /* payload bytes queued */
    uint32_t q_off;          /* bytes of the oldest frame (header included) already sent */
    uint32_t in_len;         /* bytes in in */
    uint32_t in_cap;         /* in's size when it holds one long frame, read into it; else 0 */
    uint8_t *in;             /* bytes read but not yet parsed (a partial head or frame) */
    char *rx;                /* a fragmented client message being assembled */
    uint32_t rx_len;         /* bytes in rx */
    uint32_t rx_checked;     /* bytes of a text rx known to be UTF-8 (whole sequences) */
    uint64_t rl_at;          /* loop ms of the frame bucket's last refill; 0 = full */
    uint32_t rl_tokens;      /* the frame bucket, in thousandths of a frame */
    int fd;                  /* the socket */
    uint16_t close_code;     /* our close code; 0 = the client closed or vanished */
    uint8_t state;           /* enum conn_state */
    uint8_t route;           /* 1 + index in net->routes; 0 = not routed yet */
    uint8_t rx_op;           /* opcode of the message in rx; 0 = none */
    uint8_t flushing;        /* on net->flush */
    uint8_t want_write;      /* POLLOUT armed: the socket was full */
    uint8_t hold;            /* 101 queued, not written before conn_release_hold */
    uint8_t route_wait;      /* too few bytes to route yet: polling paused */
    uint8_t screen_wait;     /* a head for adoption not whole yet: woken by new bytes (ET) */
    uint8_t refused;         /* answered with an HTTP error status */
    uint8_t failed;          /* failed (RFC 6455 7.1.7): input dropped, FIN after our close */
    uint8_t close_sent;      /* our close frame is out: lingering for the client's */
    uint8_t peer_closed;     /* the client sent its close: the socket closes once ours is out */
    uint8_t read_on; /* in net->repfd, not epfd: input in progress, read without gathering */
    uint8_t stream;  /* an event stream (stream.c): raw bytes out, input dropped */
};

/* One socket's write: the front of its queue as iovecs. */
struct write_prep {
    uint8_t hdr[FLUSH_FRAMES][WS_HEADER_MAX];
    struct iovec iov[2 * FLUSH_FRAMES];
    struct msghdr msg;
    size_t total; /* bytes the iovecs hold */
};

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

/* The route c's request was for. */
static inline const struct net_route *conn_route(const struct conn *c)
{
    return &c->net->routes[c->route - 1];
}

/* The files of net call each other bottom up, never back: conn.c <-
 * output.c <- input.c <- gate.c <- net.c (the layer above is reached only
 * through the handler table); stream.c opens an event stream on top of
 * output.c, whose frames eventstream.c (pure) turns into stream bytes. */

/* ---- conn.c: lifetime, the lists, the client set, the timer ---- */

/* A new socket (nonblocking, accepted): watched in the client set, its
 * request head awaited. Returns NULL after logging why and closing fd. */
struct conn *conn_new(struct net *n, int fd);

/* Adds (EPOLL_CTL_ADD) c to the client set, or changes what it is watched
 * for. Returns epoll_ctl's result. */
int conn_watch(struct conn *c, int op, uint32_t events);

/* Moves c to the set of sockets read on at once (net->repfd, on) or back
 * to the client set (off). Nothing without gathering (no repfd). */
void conn_read_on(struct conn *c, int on);

/* Not a route's request: net->adopt takes the socket, unread. */
void conn_hand_off(struct conn *c);

/* The request head was read and handed to the route: c joins net->open
 * when it was upgraded, or stays on net->opening while a refusal lingers. */
void conn_headed(struct conn *c);

/* c has output: written at the end of this loop turn (net->flush). */
void conn_flush_later(struct conn *c);

/* c leaves net->flush. */
void conn_flush_unlink(struct conn *c);

/* The timer wheel's callback: a head or a close that never came ends the
 * socket; an open connection's timer is its route's. */
void conn_on_timer(void *data, void *item, uint64_t now);

/* The reason text sent with a close code. */
const char *conn_close_text(uint16_t code);

/* Frees the conns closed since the last call (between event batches). */
void conn_reap(struct net *n);

/* ---- output.c: the queue, writes, closing ---- */

/* Appends f to c's queue, bounds aside. Returns 0 or -1 (no memory). */
int output_enqueue(struct conn *c, struct frame *f);

/* Drops queued frames, except one already partly written (the stream
 * would be cut mid-frame) or the held 101 (the close must follow it). */
void output_drop(struct conn *c);

/* Watches (on) or stops watching a full socket for POLLOUT. */
void output_arm_write(struct conn *c, int on);

/* Writes c's queue now (POLLOUT came), until empty or full. */
void output_flush(struct conn *c);

/* The prepare handle: writes what every connection queued during this
 * loop turn, just before the loop waits. */
void output_flush_all(uv_prepare_t *h);

/* Runs the n operations queued on b for b->conn[0..n), each reported to
 * done; if the ring fails, the unreported connections close. */
void output_batch_run(struct conn_batch *b, unsigned n, batchio_done_fn *done);

/* The client closes: our answer echoes its code (0: none), then the
 * socket closes. */
void conn_echo_close(struct conn *c, uint16_t code);

/* Fails the connection (RFC 6455 7.1.7) for what the client sent: from
 * now on nothing it sends is processed; what was queued before goes out,
 * then our close with code, then our FIN, without waiting for the
 * client's close. The socket is read and dropped until the client closes
 * too (or the linger passes), so no reset eats the close frame. */
void conn_fail(struct conn *c, uint16_t code);

/* ---- input.c: routing, the request head, frames ---- */

/* What epoll reported for c (EPOLLIN, EPOLLOUT, hang-ups). */
void input_on_io(struct conn *c, uint32_t events);

/* n bytes of a batched read, in a slot of the batch. */
void input_take(struct conn *c, uint8_t *data, size_t n);

/* Whether c's readable bytes are client frames, which a batched read can
 * take. */
int input_reads_frames(const struct conn *c);

/* ---- gate.c: the passes over the client sets, gathering ---- */

/* A connection is opening: input is read as it comes until it is. */
void gate_opening(struct net *n);

/* The end of a loop turn: if pushes went out (net->pushed_at), a gate shut
 * for gathering opens, and input is read as it comes for a window. */
void gate_turn_end(struct net *n);

/* Creates the epoll sets and has the loop watch them. Returns 0 or a
 * negative errno/libuv code. */
int gate_start(struct net *n);

/* Closes the sets and their handles (teardown). */
void gate_stop(struct net *n);

#endif
