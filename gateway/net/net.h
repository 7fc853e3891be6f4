/* net: the transport. Our own sockets, from accept() to close(): the
 * request head, WebSocket frames both ways, the output queue of each
 * socket and the loop's batched reads and writes.
 *
 * The gateway speaks WebSocket on its own sockets rather than through
 * lws, whose per-connection state and writable round trip cost more than
 * the rest of a delivery (README.md, "Why WebSocket connections bypass
 * lws"). What the frames mean is not net's business: the layer above
 * claims request paths (net_route) and gets, through a table of handlers,
 * each complete request head for its path, each complete client message,
 * the timers it set and the end of each socket. Anything that is no
 * route's (plain HTTP: /healthz, /metrics, POST /publish, the demo) is
 * handed, unread, to the adopt function given to net_init (lws, in the
 * gateway).
 *
 * Inside (one file per job, each calling only those before it): conn.c
 * is a socket's lifetime (its lists, close, timeouts), output.c queues
 * frames, closes and refuses, and writes once per loop turn, input.c
 * routes and reads request heads and client frames, gate.c holds the epoll
 * sets and gathers sparse client input, net.c sets it all up and accepts;
 * batchio.c submits a loop turn's reads or writes together, listener.c
 * accepts, frame.c is the shared frame, wheel.c the timing wheel.
 *
 * A second path (GET /sse) is claimed with a second net_route and its own
 * handlers. Its connections are event streams (stream.c): a 200 and raw
 * bytes rather than a 101 and WebSocket frames; the same conn_send and
 * conn_close serve both, so the layer above does not care which it has.
 *
 * net includes nothing above it; what it counts for /metrics goes into the
 * counters struct it is given (common/counters.h). */
#ifndef NOTIFY_NET_H
#define NOTIFY_NET_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "counters.h"
#include "frame.h"
#include "listener.h"
#include "wheel.h"

struct conn;       /* one client socket; private to net (conn.h) */
struct conn_batch; /* io_uring reads and writes (conn.h) */
struct httphead;

/* The frame rate allowed to a client (README.md, "Slow clients and
 * limits"): bursts of 40 frames, 20 a second after that; a fragment of
 * NET_FRAGMENT_FREE bytes or more that is not its message's last is not
 * counted. */
#define NET_FRAMES_BURST 40
#define NET_FRAMES_PER_S 20
#define NET_FRAGMENT_FREE 1024

/* Paths that can be claimed, and the longest one. */
#define NET_ROUTES_MAX 4
#define NET_PATH_MAX 32

/* What the layer above does with the sockets of its path. ctx is the
 * value given to net_route. Every handler may close the connection. */
struct net_handlers {
    /* A complete request head for the path: before returning, refuse it
     * (conn_refuse), upgrade it (conn_upgrade) or close it
     * (conn_destroy). */
    void (*on_head)(void *ctx, struct conn *c, const struct httphead *h);
    /* A complete client message (text, or binary), reassembled from its
     * fragments; text is valid UTF-8 (net fails the connection with 1007
     * otherwise); buf is valid during the call only. */
    void (*on_message)(void *ctx, struct conn *c, int binary, const char *buf, size_t len);
    /* A ping or a pong from the client: a sign of life. */
    void (*on_alive)(void *ctx, struct conn *c);
    /* The timer set with conn_set_timer came due on an open connection. */
    void (*on_timeout)(void *ctx, struct conn *c);
    /* c's queue (frames, bytes) is over its bounds: it closes with 1013
     * now. Called for a connection that has data, before the close. */
    void (*on_overflow)(void *ctx, struct conn *c, uint32_t frames, uint32_t bytes);
    /* The socket of a connection that has data (conn_set_data) closes:
     * everything above lets go of c, which is freed before the loop's
     * next batch of events. Called once. */
    void (*on_gone)(void *ctx, struct conn *c);
    /* c is freed now: its data can go too. */
    void (*on_free)(void *ctx, void *data);
};

/* Takes a socket whose request is for no claimed path: fd is the
 * callee's from then on, with its first bytes still unread. */
typedef void net_adopt_fn(void *ctx, int fd);

/* Looks at (peeks, never reads) the first request of a socket for no
 * claimed path before it is adopted, with the adopt function's ctx:
 * returns 0 to adopt it, NET_SCREEN_WAIT while the request head is not
 * whole (asked again when more bytes come), NET_SCREEN_GONE when the peer
 * went away, or an HTTP status to refuse it with, *why its body text. */
typedef int net_screen_fn(void *ctx, int fd, const char **why);
#define NET_SCREEN_WAIT (-1)
#define NET_SCREEN_GONE (-2)

struct net_options {
    int max_message_bytes;  /* a client message over this closes with 1009 */
    int max_queue_messages; /* a queue over either bound closes with 1013 */
    int max_queue_bytes;
    int input_batch_ms; /* gathering window for sparse input; 0 = none */
    int frames_burst;   /* client frames allowed at once (input.c says which count), */
    int frames_per_s;   /* refilled at this rate; more closes with 1008; 0 = no limit */
    int io_uring;       /* batch reads and writes through io_uring when it works */
};

/* A claimed path: "GET <path>" then ' ' or '?'. */
struct net_route {
    char path[NET_PATH_MAX]; /* "/ws" */
    size_t len;              /* strlen(path) */
    const struct net_handlers *h;
    void *ctx;
};

struct net {
    struct net_options opt;
    uv_loop_t *loop;
    struct metrics *metrics; /* counters, owned by the caller */
    net_adopt_fn *adopt;     /* where sockets of no route go */
    void *adopt_ctx;
    net_screen_fn *screen; /* NULL: sockets of no route are adopted at once */
    struct net_route routes[NET_ROUTES_MAX];
    unsigned n_routes;
    size_t peek_len;          /* bytes that tell every route apart: "GET " path ' ' */
    struct listener listener; /* our listening socket */
    struct wheel timers;      /* one-second ticks: heads, lingers, conn_set_timer */
    uint8_t *rbuf;            /* every socket reads into this (one thread), READ_BUF */
    uint8_t *wbuf;            /* CONN_GATHER_MAX: a burst gathered for one write */
    struct conn *opening;     /* sockets not upgraded: reading a head, or refused */
    struct conn *open;        /* upgraded sockets */
    struct conn *flush;       /* sockets with output queued this loop turn, oldest first */
    struct conn *flush_tail;  /* the newest of them */
    struct conn *dead;        /* closed sockets, freed between event batches */
    struct conn_batch *batch; /* io_uring reads and writes; NULL: a call each */
    int epfd;                 /* epoll set of every client socket */
    int gate;                 /* epoll set of epfd alone, shut while gathering; -1 = none */
    uv_poll_t poll;           /* the loop's watch on gate (or epfd) */
    int wepfd;                /* epoll set of the full sockets, for POLLOUT */
    uv_poll_t wpoll;          /* the loop's watch on wepfd */
    int repfd;                /* epoll set of sockets with input in progress; -1 = none */
    uv_poll_t rpoll;          /* the loop's watch on repfd */
    int writing;              /* a batch of writes is out: no queue is written meanwhile */
    uv_timer_t gather;        /* input_batch_ms: epfd read again */
    int gathering;            /* gate shut, gather running */
    uint64_t woken;           /* loop ms of the last wakeup for client input */
    int in_pass;              /* inside a pass over a client set: what is sent answers input */
    uint64_t pushed_at;       /* loop ms of the last frame sent outside a pass */
    uv_prepare_t flush_prep;  /* before the loop waits: the gate, then net->flush written */
    uv_timer_t route_timer;   /* sockets with a few bytes of request line look again */
    uint32_t route_waiting;   /* how many */
    int started;              /* the handles are initialised */
};

/* Sets up the epoll sets, buffers and handles on loop. Sockets of no
 * route go to adopt(adopt_ctx, fd). Returns 0, or a negative errno/libuv
 * code. */
int net_init(struct net *n, uv_loop_t *loop, const struct net_options *opt, struct metrics *metrics,
             net_adopt_fn *adopt, void *adopt_ctx);

/* Screens sockets of no route before they are adopted (net_screen_fn). */
void net_set_screen(struct net *n, net_screen_fn *screen);

/* Claims "GET <path>" for h (called with ctx). Returns 0, or -1 when the
 * table is full or the path too long. */
int net_route(struct net *n, const char *path, const struct net_handlers *h, void *ctx);

/* Binds and starts accepting (listener.h). Returns 0, or -1 with a
 * reason in err. */
int net_listen(struct net *n, const char *host, int port, int reuse_port, char *err, size_t errlen);

/* Stops accepting: the listening socket closes, so that on a port shared
 * with --reuse-port the kernel hands every new connection to the other
 * processes; open sockets carry on. */
void net_unlisten(struct net *n);

/* Stops accepting, closes every socket at once (those with data through
 * on_gone) and closes the handles (teardown). */
void net_close(struct net *n);

/* Frees the buffers, once the loop has run the close callbacks. */
void net_free(struct net *n);

/* 1 when reads and writes go through io_uring. */
int net_batched(const struct net *n);

/* ---- one connection, for the layer above ---- */

/* The layer above's value attached to c (NULL until set). */
void *conn_data(const struct conn *c);
void conn_set_data(struct conn *c, void *data);

/* The socket (getpeername, logs). */
int conn_fd(const struct conn *c);

/* 1 while upgraded and not closing: frames can still be queued. */
int conn_is_open(const struct conn *c);

/* The close code we sent, 0 when the client closed or vanished (or not
 * closed yet). */
uint16_t conn_close_code(const struct conn *c);

/* Queues the HTTP 101 answer and holds it (with anything queued behind
 * it) until conn_release_hold, so the layer above can send its first
 * message in the same write. Returns 0, or -1 (then close c). */
int conn_upgrade(struct conn *c, const char *accept_key, int with_protocol);

/* Answers the request head with 200 and opens an event stream
 * (text/event-stream) instead of a WebSocket: from then on every frame
 * queued with conn_send goes out in its event-stream form (eventstream.h)
 * and conn_close ends the stream with "event: close". origin (olen bytes,
 * or NULL) is echoed for cross-origin pages; a peer that stops
 * acknowledging for dead_after_ms is dropped. The head is held like the
 * 101 (conn_release_hold). Returns 0, or -1 (then close c). */
int conn_stream_open(struct conn *c, const char *origin, size_t olen, unsigned dead_after_ms);

/* Lets the held 101 and what follows it go out. */
void conn_release_hold(struct conn *c);

/* Answers the request head with an HTTP status and a short text body and
 * closes the socket once it is sent (and the client has had a moment to
 * read it). */
void conn_refuse(struct conn *c, int status, const char *body);

/* Queues a reference to f; it goes out at the end of this loop turn,
 * together with whatever else was queued for c. When the queue is over its
 * bounds the connection is closed with 1013 instead (and the queue
 * emptied). Returns 0 if queued, -1 if not. */
int conn_send(struct conn *c, struct frame *f);

/* Closes the connection with code and its reason text: queued frames are
 * dropped, the close frame is sent, and the socket closes when the client
 * answers (or after a short linger). The first close asked for wins. */
void conn_close(struct conn *c, uint16_t code);

/* Closes the socket now, without a close frame (a dead peer, a failed
 * upgrade, teardown). */
void conn_destroy(struct conn *c);

/* Sets c's one timer (one-second ticks) to loop time at_ms, replacing any
 * earlier one: on_timeout runs then. A time beyond the wheel's reach (ten
 * minutes) runs on_timeout early, and the handler sets it again. */
void conn_set_timer(struct conn *c, uint64_t at_ms);

/* The metric a close code counts in (1013: slow_consumer, ...). */
enum close_reason conn_close_reason(uint16_t code);

#endif
