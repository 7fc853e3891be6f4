/* redis_cluster: the redis.h interface on Redis Cluster, with sharded
 * pub/sub (contract section 9).
 *
 * The slot map comes from CLUSTER SLOTS (asked of any reachable primary,
 * else of the --redis-cluster seeds). Each primary gets a hiredis command
 * connection (key commands, routed by slot; FUNCTION LOAD) and a sharded
 * subscriber connection (shardsub.c) holding SSUBSCRIBE for the channels
 * whose slot it owns, notify:broadcast included.
 *
 * The map is refreshed whenever something says it moved: MOVED/ASK or
 * CLUSTERDOWN on a command, a lost connection, or an "sunsubscribe" pushed
 * by a primary whose slot went elsewhere. After a refresh, every channel
 * whose owner changed is subscribed on the new owner, and its account's
 * connections replay from history what was published meanwhile
 * (ws_account_lost, then ws_account_subscribed on the new acknowledgement).
 * Client connections stay open throughout. */
#ifndef NOTIFY_REDIS_CLUSTER_H
#define NOTIFY_REDIS_CLUSTER_H

#include <hiredis/async.h>
#include <stdint.h>
#include <uv.h>

#define CLUSTER_MAX_NODES 64

struct server;
struct cnode;
struct csub;
struct redis_ops;

struct cluster_link {
    struct server *srv;                     /* owner */
    struct cnode *nodes[CLUSTER_MAX_NODES]; /* primaries by index; NULL = free slot */
    int16_t slot_node[16384];               /* owner index per slot, -1 = unknown */
    int map_ok;                             /* every slot has a reachable owner */
    int up;                                 /* map complete, every primary connected */
    int was_up;                             /* up once: the next up is a reconnect */
    int stopped;                            /* redis_link_stop ran */
    struct csub *subs;                      /* channels wanted, by account */
    uint32_t n_acked;                       /* account channels acknowledged */
    redisAsyncContext *probe;               /* seed connection asking CLUSTER SLOTS */
    int next_seed;                          /* seed to try next */
    char asked_host[256];                   /* host the last CLUSTER SLOTS went to */
    int refreshing;                         /* a CLUSTER SLOTS is in flight */
    uint32_t backoff_ms;                    /* delay before the next refresh attempt */
    int logged_down;                        /* a "down" line was logged */
    uv_timer_t refresh_timer;               /* the next map refresh */
    uv_timer_t health_timer;                /* resends unacknowledged subscribes */
};

extern const struct redis_ops redis_cluster_ops;

#endif
