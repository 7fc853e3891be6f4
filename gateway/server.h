/* server: the one struct that owns everything a node runs.
 *
 * One process, one thread, one libuv loop: our WebSocket sockets, lws (as
 * a foreign loop, for plain HTTP), the hiredis connections and our timers
 * all run on srv->loop, so nothing is locked. Besides the log level
 * (log.c), nothing is global: modules get the server, or the part they
 * own, as an argument.
 *
 * The layers, bottom up: common/ (pure code), net/ (the transport: struct
 * net), session/ (a connection bound to an account: struct sessions and
 * the registry), redis/ and features/. server.c wires them: it fills the
 * session's hooks and answers the Redis link's events. */
#ifndef NOTIFY_SERVER_H
#define NOTIFY_SERVER_H

#include <libwebsockets.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "heap.h"
#include "history.h"
#include "metrics.h"
#include "net.h"
#include "outbox.h"
#include "presence.h"
#include "presence_events.h"
#include "redis.h"
#include "registry.h"
#include "session.h"
#include "sse.h"
#include "wallclock.h"
#include "webhook_sender.h"

struct server {
    const struct config *cfg;   /* parsed flags; read-only */
    uv_loop_t loop;             /* the loop everything runs on */
    struct lws_context *lws;    /* lws, on our loop, for plain HTTP */
    struct lws_vhost *vhost;    /* the one vhost: net hands it plain HTTP */
    struct net net;             /* our sockets: the transport */
    struct sessions sessions;   /* connections bound to accounts */
    struct sse sse;             /* GET /sse: sessions carried by event streams */
    struct registry registry;   /* connections and accounts (the session's) */
    struct redis_link redis;    /* subscriber + command connections */
    struct presence presence;   /* presence and node registry in Redis */
    struct history history;     /* replays waiting for another try */
    struct outbox outbox;       /* the sweep of acknowledgement deadlines */
    struct metrics metrics;     /* counters for /metrics */
    struct heap heap;           /* hands back what a burst freed */
    char *notify_lib;           /* lua/notify.lua with the flags filled in */
    char *http_scratch;         /* HTTP_HEAD_MAX: a plain-HTTP head, peeked (http_screen) */
    int64_t started_at;         /* Unix seconds at start */
    uv_signal_t sigterm;        /* starts the drain */
    uv_signal_t sigint;         /* starts the drain */
    uv_timer_t drain_timer;     /* closes connections in slices */
    int draining;               /* 1 once SIGTERM/SIGINT arrived */
    uint64_t drain_close_from;  /* loop ms from which sockets are closed */
    uint64_t drain_deadline;    /* loop ms by which every socket is closed */
    int drained;                /* 1 once every connection is gone */
    int stopping;               /* 1 once teardown began */
    uint64_t invalid_logged_at; /* loop ms of the last invalid-payload log */
    uint64_t invalid_unlogged;  /* invalid payloads since that log line */
    struct presence_events pev; /* online/offline transitions (--presence-events) */
    struct webhook_sender wh;   /* events POSTed to --webhook-url */
    struct webhook_sender whu;  /* undelivered-outbox entries POSTed there too */
};

/* Builds everything and starts listening. Returns 0, or -1 after logging
 * why (the caller exits 1). */
int server_init(struct server *srv, const struct config *cfg);

/* Runs the loop until the drain completes; then tears down. Returns the
 * process exit code. */
int server_run(struct server *srv);

/* Starts the graceful shutdown: /readyz answers 503 and upgrades are
 * refused for --drain-delay, then the connections close (1001) in slices
 * over --drain-seconds. A second call exits at once. */
void server_drain(struct server *srv);

#endif
