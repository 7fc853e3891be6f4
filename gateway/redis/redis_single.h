/* redis_single: the redis.h interface on one Redis server.
 *
 *  - the subscriber connection holds SUBSCRIBE notify:broadcast and one
 *    notify:acct:{<account>} per account present on this node, and hands
 *    each message to deliver.c;
 *  - the command connection carries everything else (presence, node
 *    registry, history).
 *
 * Subscribe and unsubscribe requests are collected and flushed together a
 * millisecond later, so a connect storm becomes a few SUBSCRIBE commands
 * with many channels rather than one per account. When either connection
 * drops, both are torn down and re-established with capped exponential
 * backoff and jitter; once both are up again every local account is
 * resubscribed in batches and server_on_redis_up runs. State changes are
 * logged once, not per attempt. */
#ifndef NOTIFY_REDIS_SINGLE_H
#define NOTIFY_REDIS_SINGLE_H

#include <hiredis/async.h>
#include <stdint.h>
#include <uv.h>

#include "respbuf.h"
#include "rnames.h"

struct server;
struct pending_sub;
struct redis_ops;

enum link_state {
    LINK_DOWN,       /* waiting to (re)connect */
    LINK_CONNECTING, /* contexts created, handshake (AUTH, SELECT) running */
    LINK_SYNCING,    /* connected; resubscribing the node's accounts */
    LINK_UP,         /* connected and every subscription current */
    LINK_STOPPED,    /* shut down for good */
};

struct single_link {
    struct server *srv;          /* owner */
    redisAsyncContext *sub;      /* subscriber connection, NULL when down */
    redisAsyncContext *cmd;      /* command connection, NULL when down */
    enum link_state state;       /* see above */
    int sub_handshake_ok;        /* AUTH accepted and broadcast subscribed */
    int cmd_handshake_ok;        /* AUTH and SELECT accepted */
    uint32_t sync_acks_left;     /* subscribe acks still due before LINK_UP */
    uint32_t backoff_ms;         /* next reconnect delay before jitter */
    int was_up;                  /* has been up once: next up is a reconnect */
    int logged_down;             /* a "down" line was logged for this outage */
    uv_timer_t reconnect_timer;  /* fires the next connection attempt */
    uv_timer_t flush_timer;      /* fires the batched (un)subscribe flush */
    uv_timer_t health_timer;     /* PINGs the command connection */
    uint64_t ping_sent_at;       /* loop ms of the unanswered health PING, 0 = none */
    uint64_t connecting_since;   /* loop ms the current attempt began */
    struct pending_sub *pending; /* (un)subscribes waiting for the flush */
    uint32_t subscribed;         /* account channels acknowledged by Redis */
    struct respbuf sub_out;      /* an (UN)SUBSCRIBE being written, memory kept */
    char bcast[RNAME_MAX];       /* the broadcast channel's name */
    size_t bcast_len;            /* its length */
};

extern const struct redis_ops redis_single_ops;

#endif
