/* presence: this node's connections and the node itself, kept in Redis
 * (README.md "Presence").
 *
 * Every connection is a member "<node id>/<connection id>" of
 * notify:presence:{<account>} scored with its expiry (Unix ms); the key
 * expires with its newest member. Changes are queued and applied by one
 * EVAL (lua/presence.lua) per PRESENCE_BATCH changes. Every ttl/3 seconds
 * all live connections are re-scored with pipelined commands (no script:
 * a script blocks Redis while it runs), a hundredth of the accounts at a
 * time, with replies switched off: per account one ZADD of its connections
 * and PEXPIREAT, plus ZREMRANGEBYSCORE on one pass in ten. The node itself
 * is a member of notify:nodes plus the hash notify:node:<id>, refreshed on
 * the same timer. A node that dies without cleanup simply stops
 * refreshing: its entries expire within the TTL. */
#ifndef NOTIFY_PRESENCE_H
#define NOTIFY_PRESENCE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "respbuf.h"

#define PRESENCE_BATCH 1000

struct server;
struct presence_op;
struct refresh_item;

struct presence {
    struct server *srv;                  /* owner */
    uv_timer_t refresh_timer;            /* every ttl/3 s: re-score everything */
    uv_timer_t flush_timer;              /* applies queued changes shortly after the first */
    struct presence_op *ops;             /* queued changes, in order */
    size_t n_ops;                        /* length of ops */
    size_t cap_ops;                      /* capacity of ops */
    uint64_t dropped_ops;                /* changes dropped while Redis was away too long */
    uint64_t ticks;                      /* refresh ticks so far */
    struct refresh_item *items;          /* a tick's accounts, sorted by server */
    uint32_t cap_items;                  /* capacity of items */
    struct respbuf out;                  /* a tick's RESP or a batch's EVAL, memory kept */
    int stopped;                         /* presence_stop() ran: timers closed */
    void (*on_stopped)(struct server *); /* set by presence_stop */
};

int presence_init(struct presence *p, struct server *srv);

/* A connection appeared or went away on this node. */
void presence_add(struct presence *p, const char *account, const char *conn_id);
void presence_remove(struct presence *p, const char *account, const char *conn_id);

/* Redis is (back) up: re-register the node and every live connection. */
void presence_resync(struct presence *p);

/* Clean shutdown: removes this node's remaining entries and the node
 * registry entries, then calls done (at once if Redis is down; done may be
 * NULL). Closes the timers; runs once. */
void presence_stop(struct presence *p, void (*done)(struct server *));

#endif
