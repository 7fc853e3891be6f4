/* redis: everything the gateway asks of Redis, as one node set.
 *
 * A node set is the primaries that own the 16384 hash slots: with
 * --redis-cluster their map comes from CLUSTER SLOTS (and is refreshed
 * whenever something says it moved); a single Redis is a set of one node
 * owning every slot (common/slotmap.h). Each primary gets two connections:
 *
 *  - a command connection (hiredis, through redis_uv.c): key commands,
 *    routed by slot. Its first command after every (re)connect, behind
 *    AUTH and SELECT, is FUNCTION LOAD REPLACE of the notify library, so a
 *    primary that restarted empty has the library before anything else
 *    reaches it;
 *  - a subscriber connection holding SUBSCRIBE (SSUBSCRIBE in a cluster,
 *    whose pub/sub is sharded) of the broadcast channel and of the channel
 *    of every account present on this node whose slot the primary owns.
 *    Its commands are written as RESP by us and every reply is read in
 *    place (redis_uv_take_replies): hiredis keeps nothing per channel, and
 *    a message reaches the events below as pointers into the read buffer.
 *
 * One subscription table (subs.c) says for each account where its
 * SUBSCRIBE went and whether it was acknowledged. Subscribe and
 * unsubscribe requests are collected and written together a millisecond
 * later (a connect storm becomes a few SUBSCRIBEs of many channels). When
 * a primary's connection fails, both of its connections are closed, its
 * acknowledged accounts are reported lost, and it is reconnected after a
 * capped exponential backoff with jitter (a fleet of gateways must not
 * come back in lockstep); once it is back, every channel it owns is
 * subscribed again. A primary whose subscriber connection leaves a PING
 * unanswered for 5 s after it left, with nothing else heard, is taken for
 * dead (a stopped Redis never closes the socket; redis_uv.h says how a
 * late loop of ours is told apart). The PING is not sent on the command
 * connection, where seconds of our own commands with replies off may be
 * ahead of it.
 *
 * It reports up only through struct redis_events; it knows nothing of
 * connections, accounts' sessions or features. */
#ifndef NOTIFY_REDIS_H
#define NOTIFY_REDIS_H

#include <hiredis/async.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "keyslot.h"
#include "respbuf.h"
#include "rnames.h"
#include "slotmap.h"

/* What the node set tells its owner; every handler gets data. Account ids
 * are NUL-terminated and valid during the call only; so are payloads,
 * which point into a read buffer. */
struct redis_events {
    /* a message published on account's channel */
    void (*on_message)(void *data, const char *account, size_t account_len, const char *payload,
                       size_t len);
    /* a message published on the broadcast channel */
    void (*on_broadcast)(void *data, const char *payload, size_t len);
    /* Redis acknowledged account's channel: what is published on it from
     * now on is delivered */
    void (*on_subscribed)(void *data, const char *account, size_t account_len);
    /* account's acknowledged channel is gone (its primary failed, or its
     * slot moved): messages may be missed until on_subscribed again */
    void (*on_lost)(void *data, const char *account, size_t account_len);
    /* connected: a complete map and both connections of every primary up
     * (the library loaded on each); runs after every reconnect */
    void (*on_up)(void *data);
    /* the last reachable primary was lost (on_lost ran for every
     * acknowledged account first) */
    void (*on_down)(void *data);
    void *data;
};

/* Most primaries in one set. */
#define REDIS_MAX_NODES SLOTMAP_MAX_NODES

struct redis_node; /* nodeset.h */
struct redis_sub;  /* subs.c */

/* The subscription table: account -> its entry (open addressing). */
struct redis_subs {
    struct redis_sub **slots; /* cap entries, NULL = free */
    uint32_t cap;             /* a power of two, or 0 */
    uint32_t n;               /* entries in the table */
    uint32_t n_acked;         /* account channels acknowledged (broadcast aside) */
    uint32_t n_unacked;       /* entries not acknowledged */
    uint32_t n_waited;        /* unacknowledged entries readiness waits for */
    struct redis_sub **queue; /* entries to (un)subscribe at the next flush */
    size_t n_queue, cap_queue;
    void *free_cells[9]; /* free entry memory by 16-byte size class (subs.c) */
    void **blocks;       /* the blocks entries are cut from */
    size_t n_blocks, cap_blocks;
};

struct redis_link {
    uv_loop_t *loop;                           /* the loop everything runs on */
    const struct config *cfg;                  /* --redis, --redis-cluster, prefix */
    struct redis_events ev;                    /* the owner's handlers */
    const char *library;                       /* FUNCTION LOAD text; NULL = none */
    int cluster;                               /* the map comes from CLUSTER SLOTS */
    struct redis_node *nodes[REDIS_MAX_NODES]; /* primaries by index; NULL = free */
    int8_t slot_node[KEYSLOT_COUNT];           /* owner index per slot, -1 = unknown */
    int map_ok;                                /* every slot has an owner */
    int up;                                    /* connected (redis_link_connected) */
    int was_up;                                /* up once: the next up is a reconnect */
    int ready_logged;                          /* redis_ready logged since the last up */
    int logged_down;                           /* redis_down logged for this outage */
    int stopped;                               /* redis_link_stop ran */
    uint32_t reconnects;                       /* ups after the first */
    uint32_t backoff_ms;                       /* the next retry's delay, before jitter */
    uv_timer_t retry_timer;                    /* the next (re)connect or map refresh */
    uv_timer_t health_timer;                   /* PINGs, timeouts, resends */
    uv_timer_t flush_timer;                    /* the batched (un)subscribes */
    redisAsyncContext *probe;                  /* seed connection asking CLUSTER SLOTS */
    int next_seed;                             /* seed to try next */
    int refreshing;                            /* a CLUSTER SLOTS is in flight */
    char asked_host[SLOTMAP_HOST_MAX];         /* host the last CLUSTER SLOTS went to */
    struct redis_subs subs;                    /* the subscription table (subs.c) */
    char bcast[RNAME_MAX];                     /* the broadcast channel's name */
    size_t bcast_len;                          /* its length */
};

/* Sets the link up from the config (--redis, or --redis-cluster seeds)
 * without connecting; ev is copied. */
void redis_link_init(struct redis_link *l, uv_loop_t *loop, const struct config *cfg,
                     const struct redis_events *ev);

/* Starts connecting; failures to connect are retried, never fatal.
 * library (kept, not copied; NULL for none) is loaded on every primary
 * as the first command of each command connection. Returns 0, or -1 if
 * it could not even be set up. */
int redis_link_start(struct redis_link *l, const char *library);

/* Disconnects and closes every handle; commands already queued are still
 * written. */
void redis_link_stop(struct redis_link *l);

/* "single" or "cluster", for logs. */
const char *redis_link_mode(const struct redis_link *l);

/* 1 while connected and every subscription made before the last
 * (re)connect or map change is acknowledged (for /readyz). */
int redis_link_ready(const struct redis_link *l);

/* 1 once commands and subscribe requests are accepted everywhere. */
int redis_link_connected(const struct redis_link *l);

/* Account channels currently acknowledged (for /metrics). */
uint32_t redis_link_subscribed(const struct redis_link *l);

/* Times the set came back up after being up (for /metrics). */
uint32_t redis_link_reconnects(const struct redis_link *l);

/* Asks for account's channel. Returns 0 when a subscribe is on its way
 * (on_subscribed runs on its acknowledgement), 1 when the channel is
 * acknowledged already, -1 when its primary is unreachable now (it is
 * subscribed, and on_subscribed runs, once the primary is back). */
int redis_link_subscribe(struct redis_link *l, const char *account);

void redis_link_unsubscribe(struct redis_link *l, const char *account);

/* Queues a command on the primary owning key (a key or channel name); cb
 * runs exactly once (with a NULL reply if the connection fails first)
 * unless this returns -1, which it does when that primary is unreachable
 * now. In a cluster, a MOVED, ASK or CLUSTERDOWN answer refreshes the map
 * (the caller still gets the answer). */
int redis_link_command(struct redis_link *l, const char *key, size_t keylen, redisCallbackFn *cb,
                       void *privdata, int argc, const char **argv, const size_t *argvlen);

/* Queues pre-formatted RESP on the primary owning key, as hiredis's
 * redisAsyncFormattedCommand: the bytes may hold several commands, but
 * exactly one reply must come back (CLIENT REPLY OFF ... CLIENT REPLY ON),
 * for cb. Nothing is redirected: a command sent to a primary that no
 * longer owns its key is lost. Returns 0, or -1 when it is unreachable. */
int redis_link_formatted(struct redis_link *l, const char *key, size_t keylen, redisCallbackFn *cb,
                         void *privdata, const char *cmd, size_t len);

/* Queues a command on every primary; cb runs once per primary. Returns
 * the number of primaries it was queued on. */
int redis_link_command_all(struct redis_link *l, redisCallbackFn *cb, void *privdata, int argc,
                           const char **argv, const size_t *argvlen);

/* Queues a command on the primary of index node (see
 * redis_link_slot_owner), as redis_link_command_all does on each: for
 * commands that name no key (a function of every slot a primary owns).
 * Returns 0, or -1 when there is no such primary or it is unreachable. */
int redis_link_command_node(struct redis_link *l, int node, redisCallbackFn *cb, void *privdata,
                            int argc, const char **argv, const size_t *argvlen);

/* The index of the primary owning slot (single Redis: 0 for every
 * slot), -1 when unknown. */
int redis_link_slot_owner(const struct redis_link *l, unsigned slot);

/* 1 with --redis-cluster. */
int redis_link_is_cluster(const struct redis_link *l);

/* Keys with the same shard may share one multi-key command. */
int redis_link_shard_of(const struct redis_link *l, const char *key, size_t keylen);

/* PUBLISH, or SPUBLISH for a cluster's sharded channels. */
const char *redis_link_publish_command(const struct redis_link *l);

#endif
