/* conn: one WebSocket connection's state and its outgoing queue.
 *
 * The struct lives in lws's per-session memory: lws allocates it zeroed
 * before the handshake and frees it after LWS_CALLBACK_CLOSED, so nothing
 * here may outlive that callback. Everything that can point at a conn
 * (registry, heartbeat wheel) drops it in conn_release(), called from CLOSED.
 *
 * Frames are shared (frame.h): the queue holds references, never copies. */
#ifndef NOTIFY_CONN_H
#define NOTIFY_CONN_H

#include <stdint.h>
#include <uthash.h>

#include "frame.h"
#include "heartbeat.h"
#include "ids.h"
#include "metrics.h"

struct server;
struct account;

struct conn {
    struct lws *wsi;        /* lws's handle; NULL before the upgrade */
    struct server *srv;     /* the one server */
    struct account *acct;   /* registry entry; NULL until registered */
    struct conn *acct_prev; /* the account's connections, doubly linked */
    struct conn *acct_next;
    UT_hash_handle hh;             /* registry: connection id -> conn */
    struct wheel_link hb;          /* heartbeat wheel: next silence check */
    struct wheel_link exp;         /* expiry wheel: token exp (JWT only) */
    uint64_t last_seen;            /* loop ms of the last sign of life */
    struct frame **q;              /* ring of queued frames, allocated lazily */
    uint32_t q_head;               /* index of the oldest queued frame */
    uint32_t q_len;                /* frames queued */
    uint32_t q_cap;                /* ring capacity (a power of two) */
    uint32_t q_bytes;              /* payload bytes queued */
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
    uint16_t close_code;           /* non-zero: close with it when writable */
    uint8_t ping_due;              /* send a ping at the next writable */
    uint8_t lws_closing;           /* closed from RECEIVE: lws runs the close handshake */
    uint8_t close_sent;            /* our close frame is out; lingering for the client */
    uint8_t registered;            /* the register reply was queued */
    uint8_t has_last_id;           /* last_id is set */
    uint8_t replay_pending;        /* history must be replayed once subscribed */
    uint8_t replaying;             /* a replay is in flight: live frames are held */
    uint8_t replay_exact;          /* replay_since is an id the client saw (gaps matter) */
    char id[CONN_ID_LEN + 1];      /* unique across nodes and restarts */
};

/* Largest write of several frames at once (server->batch_buf holds it). */
#define CONN_BATCH_MAX (64 * 1024)

/* Queues a reference to f and asks lws for a writable callback. When the
 * queue is over its bounds the connection is closed with 1013 instead (and
 * the queue emptied). Returns 0 if queued, -1 if not. */
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

/* Closes the connection with code and reason at its next writable callback;
 * queued frames are dropped at once. The first close asked for wins. */
void conn_close(struct conn *c, uint16_t code);

/* Writes queued frames (and a due ping or close) from the writable
 * callback. Returns -1 when lws must close the connection. */
int conn_on_writable(struct conn *c);

/* Frees everything the conn owns (queue, buffers); called once, from
 * CLOSED, after the registry and heartbeat wheel have dropped it. */
void conn_free_buffers(struct conn *c);

#endif
