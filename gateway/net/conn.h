/* conn: one client socket, from its first byte to its close.
 *
 * The gateway speaks WebSocket on its own sockets: lws's per-connection
 * state (about 2 KB) and its writable round trip (two epoll_ctl calls per
 * delivered message) were the largest costs left in BENCHMARKS.md. A conn
 * reads the request head, hands anything that is not GET /ws to lws (plain
 * HTTP: /healthz, /metrics, /publish, the demo), and otherwise reads client
 * frames and writes queued frames itself with one sendmsg() per socket per
 * loop turn. What the frames mean is ws.c's business.
 *
 * Frames are shared (frame.h): the queue holds references, never copies.
 * Every client socket is in one epoll set of ours (conn_poll_start), and
 * a full one also in a second, for POLLOUT, until it drains. A
 * closed conn is freed between batches of events, after everything that
 * can point at it (registry, wheels, flush list) has dropped it. */
#ifndef NOTIFY_CONN_H
#define NOTIFY_CONN_H

#include <stdint.h>
#include <uthash.h>
#include <uv.h>

#include "frame.h"
#include "heartbeat.h"
#include "ids.h"
#include "metrics.h"
#include "streamid.h"

struct server;
struct account;

/* Largest burst copied into one buffer before sendmsg (server->wbuf). */
#define CONN_GATHER_MAX (16 * 1024)

enum conn_state {
    CONN_HEAD,    /* reading the HTTP request head */
    CONN_OPEN,    /* upgraded: frames both ways */
    CONN_CLOSING, /* our close frame or HTTP refusal is queued or sent */
    CONN_DEAD,    /* socket closed; freed at the end of this loop turn */
};

struct conn {
    uv_poll_t poll;                /* the socket, readable (and writable when full) */
    struct server *srv;            /* the one server */
    struct account *acct;          /* registry entry; NULL until registered */
    struct conn *acct_prev;        /* the account's connections (before: the */
    struct conn *acct_next;        /* server's list of unregistered sockets) */
    struct conn *flush_prev;       /* srv->flush: written at the end of the loop turn */
    struct conn *flush_next;       /* (once dead: srv->dead, freed between event batches) */
    UT_hash_handle hh;             /* registry: connection id -> conn */
    struct wheel_link hb;          /* heartbeat wheel: next silence check */
    struct wheel_link exp;         /* 1 s wheel: token exp, handshake and close timeouts */
    uint64_t last_seen;            /* loop ms of the last sign of life */
    struct frame **q;              /* ring of queued frames, allocated lazily */
    uint32_t q_head;               /* index of the oldest queued frame */
    uint32_t q_len;                /* frames queued */
    uint32_t q_cap;                /* ring capacity (a power of two) */
    uint32_t q_bytes;              /* payload bytes queued */
    uint32_t q_off;                /* bytes of the oldest frame (header included) already sent */
    uint8_t *in;                   /* bytes read but not yet parsed (a partial head or frame) */
    uint32_t in_len;               /* bytes in in */
    char *rx;                      /* a fragmented client message being assembled */
    uint32_t rx_len;               /* bytes in rx */
    uint32_t errors;               /* error replies in the current window */
    uint64_t errors_since;         /* loop ms the error window started */
    uint64_t rl_at;                /* loop ms of the last rate-limit refill */
    uint32_t rl_tokens;            /* rate-limit bucket, in thousandths of a frame */
    int64_t token_exp;             /* JWT exp in Unix seconds; 0 = none */
    int64_t connected_at;          /* Unix ms of the upgrade */
    struct stream_id last_id;      /* newest history id delivered, when has_last_id */
    struct stream_id replay_since; /* replay from here when replay_pending */
    struct frame **held;           /* live notifications held during a replay */
    uint32_t n_held;               /* frames in held */
    uint32_t cap_held;             /* capacity of held */
    int fd;                        /* the socket */
    uint16_t close_code;           /* our close code; 0 = the client closed or vanished */
    uint8_t state;                 /* enum conn_state */
    uint8_t rx_op;                 /* opcode of the message in rx; 0 = none */
    uint8_t flushing;              /* on srv->flush */
    uint8_t want_write;            /* POLLOUT armed: the socket was full */
    uint8_t hold;                  /* 101 queued, not written before the register reply */
    uint8_t routed;                /* the request is GET /ws (ours) */
    uint8_t route_wait;            /* too few bytes to route yet: polling paused */
    uint8_t lws_wait;              /* a head for lws not whole yet: woken by new bytes (ET) */
    uint8_t refused;               /* answered with an HTTP error status */
    uint8_t close_sent;            /* our close frame is out: lingering for the client's */
    uint8_t peer_closed;      /* the client sent its close: the socket closes once ours is out */
    uint8_t registered;       /* the register reply was queued */
    uint8_t has_last_id;      /* last_id is set */
    uint8_t replay_pending;   /* history must be replayed once subscribed */
    uint8_t replaying;        /* a replay is in flight: live frames are held */
    uint8_t replay_exact;     /* replay_since is an id the client saw (gaps matter) */
    char id[CONN_ID_LEN + 1]; /* unique across nodes and restarts */
};

/* Starts serving an accepted socket (nonblocking): its request head is
 * read, then it is either upgraded here or handed to lws. On failure the
 * socket is closed. */
void conn_accept(struct server *srv, int fd);

/* Queues the HTTP 101 answer. It is written together with the register
 * reply (conn_release_hold), so a client costs one write to open. */
int conn_upgrade(struct conn *c, const char *accept_key, int with_protocol);

/* Lets the held 101 (and whatever was queued behind it) go out. */
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

/* Builds a server message (envelope.h) and queues it for c alone (register,
 * heartbeat-free replies, errors, gaps). Returns 0, or -1 if not queued. */
int conn_send_envelope(struct conn *c, const char *type, const char *body, const char *meta);

/* Delivers a notification: held while a replay is in flight, skipped when
 * its history id is not newer than the last one this connection got, else
 * queued with conn_send(). Returns 0 when queued, held or skipped. */
int conn_deliver(struct conn *c, struct frame *f);

/* The replay is over: delivers the held frames (deduplicated) in order. */
void conn_release_held(struct conn *c);

/* The reason text sent with a close code, and the metric it counts in. */
const char *conn_close_text(uint16_t code);
enum close_reason conn_close_reason(uint16_t code);

/* Closes the connection with code and its reason text: queued frames are
 * dropped, the close frame is sent, and the socket closes when the client
 * answers (or after a short linger). The first close asked for wins. */
void conn_close(struct conn *c, uint16_t code);

/* Closes the socket now, without a close frame (teardown, a dead peer, a
 * handshake or close that timed out). */
void conn_destroy(struct conn *c);

/* Writes what every connection queued during this loop turn (run by a
 * prepare handle, just before the loop waits). */
void conn_flush_all(struct server *srv);

/* The 1 s wheel's timeouts that belong to the socket (a head that never
 * completes, a close the client never answers). Returns 1 if it handled c. */
int conn_timeout(struct conn *c);

/* Closes every socket at once (teardown). */
void conn_destroy_all(struct server *srv);

/* Creates the epoll set of client sockets and has the loop watch it.
 * Returns 0 or a negative errno/libuv code. */
int conn_poll_start(struct server *srv);

/* Closes every socket and the set (teardown). */
void conn_poll_stop(struct server *srv);

#endif
