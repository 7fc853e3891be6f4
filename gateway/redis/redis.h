/* redis: everything the gateway asks of Redis, behind one interface with
 * two implementations (redis_single.c for one server, redis_cluster.c for
 * Redis Cluster with sharded pub/sub), chosen once at start. The rest of
 * the gateway never checks which one runs.
 *
 * What it promises:
 *  - subscribe/unsubscribe an account's channel (and always the broadcast
 *    channel); each acknowledged subscribe calls ws_account_subscribed(),
 *    each lost one ws_account_lost() (its messages will need a replay);
 *    messages go to deliver.c;
 *  - run a command on the server that owns a key (or on every server);
 *  - say whether it is connected (commands accepted) and ready (every
 *    subscription current, for /readyz);
 *  - call server_on_redis_up() when (re)connected. */
#ifndef NOTIFY_REDIS_H
#define NOTIFY_REDIS_H

#include <hiredis/async.h>
#include <stddef.h>
#include <stdint.h>

#include "redis_cluster.h"
#include "redis_single.h"

struct server;
struct redis_link;

/* One implementation. Commands use hiredis's argv form; their callback
 * runs exactly once (with a NULL reply if the connection fails first)
 * unless the call returned -1. */
struct redis_ops {
    const char *name;            /* "single" or "cluster", for logs */
    const char *publish_command; /* PUBLISH, or SPUBLISH for sharded channels */
    int (*start)(struct redis_link *l);
    int (*ready)(const struct redis_link *l);
    int (*connected)(const struct redis_link *l);
    uint32_t (*subscribed)(const struct redis_link *l);
    int (*subscribe)(struct redis_link *l, const char *account);
    void (*unsubscribe)(struct redis_link *l, const char *account);
    int (*command)(struct redis_link *l, const char *key, size_t keylen, redisCallbackFn *cb,
                   void *privdata, int argc, const char **argv, const size_t *argvlen);
    int (*command_all)(struct redis_link *l, redisCallbackFn *cb, void *privdata, int argc,
                       const char **argv, const size_t *argvlen);
    int (*formatted)(struct redis_link *l, const char *key, size_t keylen, redisCallbackFn *cb,
                     void *privdata, const char *cmd, size_t len);
    int (*shard_of)(const struct redis_link *l, const char *key, size_t keylen);
    void (*stop)(struct redis_link *l);
};

struct redis_link {
    const struct redis_ops *ops; /* the implementation in use */
    struct server *srv;          /* owner */
    union {
        struct single_link single;   /* redis_single.c */
        struct cluster_link cluster; /* redis_cluster.c */
    } u;
};

/* Picks the implementation from the config (--redis-cluster or not). */
void redis_link_select(struct redis_link *l, struct server *srv);

/* Starts connecting; failures to connect are retried, never fatal.
 * Returns 0, or -1 if it could not even be set up. */
int redis_link_start(struct redis_link *l);

/* 1 while connected and every subscription is current (for /readyz). */
static inline int redis_link_ready(const struct redis_link *l)
{
    return l->ops->ready(l);
}

/* 1 once commands and subscribe requests are accepted. */
static inline int redis_link_connected(const struct redis_link *l)
{
    return l->ops->connected(l);
}

/* Account channels currently acknowledged (for /metrics). */
static inline uint32_t redis_link_subscribed(const struct redis_link *l)
{
    return l->ops->subscribed(l);
}

/* Asks for account's channel. Returns 0 when a subscribe is on its way
 * (ws_account_subscribed runs on its acknowledgement), 1 when the channel
 * is subscribed already, -1 when Redis is unreachable for it now (it is
 * subscribed, and ws_account_subscribed called, once Redis is back). */
static inline int redis_link_subscribe(struct redis_link *l, const char *account)
{
    return l->ops->subscribe(l, account);
}

static inline void redis_link_unsubscribe(struct redis_link *l, const char *account)
{
    l->ops->unsubscribe(l, account);
}

/* Queues a command on the server owning key (a key or channel name).
 * Returns 0, or -1 when that server is unreachable now. */
static inline int redis_link_command(struct redis_link *l, const char *key, size_t keylen,
                                     redisCallbackFn *cb, void *privdata, int argc,
                                     const char **argv, const size_t *argvlen)
{
    return l->ops->command(l, key, keylen, cb, privdata, argc, argv, argvlen);
}

/* Queues pre-formatted RESP on the server owning key, as hiredis's
 * redisAsyncFormattedCommand: the bytes may hold several commands, but
 * exactly one reply must come back (CLIENT REPLY OFF ... CLIENT REPLY ON),
 * for cb. Nothing is redirected: a command sent to a server that no longer
 * owns its key is lost. Returns 0, or -1 when that server is unreachable. */
static inline int redis_link_formatted(struct redis_link *l, const char *key, size_t keylen,
                                       redisCallbackFn *cb, void *privdata, const char *cmd,
                                       size_t len)
{
    return l->ops->formatted(l, key, keylen, cb, privdata, cmd, len);
}

/* Queues a command on every server (FUNCTION LOAD); cb runs once per
 * server. Returns the number of servers it was queued on. */
static inline int redis_link_command_all(struct redis_link *l, redisCallbackFn *cb, void *privdata,
                                         int argc, const char **argv, const size_t *argvlen)
{
    return l->ops->command_all(l, cb, privdata, argc, argv, argvlen);
}

/* Keys with the same shard may share one multi-key command. */
static inline int redis_link_shard_of(const struct redis_link *l, const char *key, size_t keylen)
{
    return l->ops->shard_of(l, key, keylen);
}

static inline const char *redis_link_publish_command(const struct redis_link *l)
{
    return l->ops->publish_command;
}

/* Disconnects and closes every handle. */
static inline void redis_link_stop(struct redis_link *l)
{
    l->ops->stop(l);
}

#endif
