/* server: the one struct that owns everything a node runs.
 *
 * One process, one thread, one libuv loop: our WebSocket sockets, lws (as
 * a foreign loop, for plain HTTP), the hiredis connections and our timers
 * all run on srv->loop, so nothing is locked. There is no other global state; modules get the
 * server (or the part they own) as an argument. */
#ifndef NOTIFY_SERVER_H
#define NOTIFY_SERVER_H

#include <libwebsockets.h>
#include <stdint.h>
#include <uv.h>

#include "auth.h"
#include "config.h"
#include "frame.h"
#include "heartbeat.h"
#include "history.h"
#include "ids.h"
#include "listener.h"
#include "metrics.h"
#include "presence.h"
#include "redis.h"
#include "registry.h"

/* Largest token read from a header or the query (an RS256 token fits). */
#define SERVER_TOKEN_MAX 8192

struct server {
    const struct config *cfg;      /* parsed flags; read-only */
    uv_loop_t loop;                /* the loop everything runs on */
    struct lws_context *lws;       /* lws, on our loop, for plain HTTP */
    struct lws_vhost *vhost;       /* the one vhost, fed by conn.c */
    struct listener listener;      /* our listening socket */
    struct registry registry;      /* connections and accounts */
    struct hb_wheel heartbeat;     /* silence detection and pings */
    struct hb_wheel expiry;        /* token expiry (4401), one-second ticks */
    struct redis_link redis;       /* subscriber + command connections */
    struct presence presence;      /* presence and node registry in Redis */
    struct history history;        /* replays waiting for another try */
    struct auth auth;              /* JWT verification key */
    struct metrics metrics;        /* counters for /metrics */
    struct idgen ids;              /* connection ids */
    struct frame *heartbeat_reply; /* the constant heartbeat answer, shared */
    struct frame *ping;            /* the server's ping, shared */
    uint8_t *rbuf;                 /* every socket reads into this (one thread) */
    size_t rbuf_size;              /* a whole client frame and then some */
    uint8_t *wbuf;                 /* CONN_GATHER_MAX: a burst gathered for one write */
    struct conn *flush;            /* sockets with output queued this loop turn */
    struct conn_batch *conn_batch; /* io_uring writes (conn.c); NULL: sendmsg */
    struct conn *pending;          /* sockets not registered: head, refused */
    struct conn *dead;             /* closed sockets, freed between event batches */
    int conn_epfd;                 /* epoll set of every client socket (conn.c) */
    int conn_gate;           /* epoll set of conn_epfd alone, shut while gathering; -1 = none */
    uv_poll_t conn_poll;     /* the loop's watch on conn_gate (or conn_epfd) */
    int conn_wepfd;          /* epoll set of the full sockets, for POLLOUT (conn.c) */
    uv_poll_t conn_wpoll;    /* the loop's watch on conn_wepfd */
    uv_timer_t conn_gather;  /* --input-batch-ms: conn_epfd read again */
    int conn_gathering;      /* conn_gate shut, conn_gather running */
    uint64_t conn_woken;     /* loop ms of the last wakeup for client input */
    uv_prepare_t flush_prep; /* writes srv->flush before the loop waits */
    uv_timer_t route_timer;  /* sockets with a few bytes of request line look again */
    uint32_t route_waiting;  /* how many (conn.c) */
    char *token_buf;         /* SERVER_TOKEN_MAX, a handshake\'s token */
    char *notify_lib;        /* lua/notify.lua with the flags filled in */
    char **origins;          /* --allowed-origins split; NULL = any */
    size_t n_origins;        /* length of origins */
    uint64_t heartbeat_interval_ms; /* advertised client heartbeat period */
    uint64_t heartbeat_timeout_ms;  /* silence before close 4408 */
    uint64_t ping_after_ms;         /* silence after which the server pings */
    int64_t started_at;             /* Unix seconds at start */
    uv_signal_t sigterm;            /* starts the drain */
    uv_signal_t sigint;             /* starts the drain */
    uv_timer_t drain_timer;         /* closes connections in slices */
    int draining;                   /* 1 once SIGTERM/SIGINT arrived */
    uint64_t drain_close_from;      /* loop ms from which sockets are closed */
    uint64_t drain_deadline;        /* loop ms by which every socket is closed */
    int drained;                    /* 1 once every connection is gone */
    int stopping;                   /* 1 once teardown began */
    uint64_t invalid_logged_at;     /* loop ms of the last invalid-payload log */
    uint64_t invalid_unlogged;      /* invalid payloads since that log line */
    uint64_t reject_logged_at;      /* loop ms of the last rejection log line */
    uint64_t reject_unlogged;       /* rejections since that line */
};

/* Builds everything and starts listening. Returns 0, or -1 after logging
 * why (the caller exits 1). */
int server_init(struct server *srv, const struct config *cfg);

/* Runs the loop until the drain completes; then tears down. Returns the
 * process exit code. */
int server_run(struct server *srv);

/* Starts the graceful shutdown of contract section 8. */
void server_drain(struct server *srv);

/* A connection closed while draining: finishes the drain after the last. */
void server_drain_progress(struct server *srv);

/* 1 when /readyz should answer 200. */
int server_ready(const struct server *srv);

void server_gauges(const struct server *srv, struct metrics_gauges *g);

/* Wall clock in Unix ms. */
int64_t server_wall_ms(void);

#endif
