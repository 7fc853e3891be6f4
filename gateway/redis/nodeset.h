/* nodeset: the inside of redis.h, shared by nodeset.c (primaries, their
 * connections, what their subscribers read, the slot map, health),
 * commands.c (routing commands by slot, which calls nodeset.c) and subs.c
 * (the subscription table), which nodeset.c calls and which calls nothing
 * back. Not for use outside gateway/redis/. */
#ifndef NOTIFY_NODESET_H
#define NOTIFY_NODESET_H

#include <hiredis/async.h>
#include <stddef.h>
#include <stdint.h>

#include "redis.h"
#include "redis_uv.h"
#include "respbuf.h"

/* One primary of the set. */
struct redis_node {
    struct redis_link *l;          /* owner */
    int index;                     /* in l->nodes */
    char host[SLOTMAP_HOST_MAX];   /* as the config or CLUSTER SLOTS names it */
    int port;                      /* its port */
    redisAsyncContext *cmd;        /* command connection; NULL when down */
    redisAsyncContext *sub;        /* subscriber connection; NULL when down */
    int cmd_ok;                    /* handshake answered: AUTH, SELECT, FUNCTION LOAD */
    int sub_ok;                    /* handshake answered: AUTH, PING */
    int in_map;                    /* named by the latest map */
    int ping_pending;              /* the health PING on sub is unanswered */
    struct redis_uv_pushes pushes; /* its subscriber's handlers (subs.c) */
    struct respbuf out;            /* (un)subscribes being written to sub */
    struct respbuf batch;          /* channels of the command being built */
    size_t batch_n;                /* how many */
    int batch_subscribe;           /* that command subscribes (1) or not (0) */
};

/* ---- nodeset.c, for commands.c ---- */

/* Asks for the slot map again (in a cluster; one Redis: reconnects what
 * is down) in delay_ms; 0 = on the next loop turn, replacing an attempt
 * already due, which otherwise stands. Nothing once stopped. */
void nodeset_refresh_soon(struct redis_link *l, uint32_t delay_ms);

/* ---- subs.c, for nodeset.c ---- */

/* Creates the table with the broadcast channel's entry. -1 = no memory. */
int subs_init(struct redis_link *l);
void subs_free(struct redis_link *l);

/* A subscription confirmation read on the subscriber of node index:
 * returns 1 when it acknowledged an entry (on_subscribed ran), -1 when it
 * said an acknowledged entry's slot moved away (on_lost ran; the map
 * needs a refresh), 0 when it changed nothing. */
int subs_on_confirm(struct redis_link *l, int index, const struct resp_confirmation *c);

/* n's subscriber connection went away: its entries are unsent again
 * (on_lost for the acknowledged ones). */
void subs_node_lost(struct redis_link *l, int index);

/* Sends every entry that is not where the map says it belongs: to the
 * owner whose subscriber is up, after an unsubscribe on the old owner
 * (on_lost if it was acknowledged there). Readiness waits for them. */
void subs_place_all(struct redis_link *l);

/* Once a second: unsent entries are sent if their owner is up, and in a
 * cluster entries sent but unacknowledged for two calls are sent again (a
 * MOVED answer names no channel); returns 1 when some entry has no
 * reachable owner. */
int subs_health(struct redis_link *l);

#endif
