/* presence_events: online and offline transitions of accounts, written to
 * <prefix>presence:events (README.md "Presence events"), with
 * --presence-events.
 *
 * A node tells Redis only what it alone knows: that this process (its
 * incarnation, "<node id>/<ms>", new at every start and Redis reconnect) now holds a
 * first connection of an account, or has lost its last one. The functions
 * of lua/presence_events.lua keep, for every account, which incarnations
 * hold it and its last state, and write a transition when the holders go
 * from none to some or back, atomically with the stream: the states
 * alternate and each is written once whatever the nodes do at the same
 * moment. Changes are queued and sent as one FCALL per PEVENTS_BATCH, one
 * at a time (a failed batch is sent again: the changes are idempotent).
 *
 * Every PEVENTS_SWEEP_MS each node refreshes its incarnation's expiry
 * (now + --presence-ttl) and sweeps: the accounts of incarnations that
 * stopped refreshing (killed, or cut from Redis longer than the TTL) lose
 * that holder, and offlines pending for --presence-debounce-ms are written
 * if nobody came back. Sweeps of several nodes are serialized by Redis, so
 * each lapsed holder is removed once. */
#ifndef NOTIFY_PRESENCE_EVENTS_H
#define NOTIFY_PRESENCE_EVENTS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "rnames.h"

#define PEVENTS_BATCH 1000
#define PEVENTS_SWEEP_MS 1000

struct server;
struct pevents_op;

struct presence_events {
    struct server *srv;       /* owner */
    int on;                   /* --presence-events */
    char incarnation[200];    /* "<node id>/<ms>": this process as a holder, since then */
    char stream[RNAME_MAX];   /* <prefix>presence:events */
    size_t stream_len;        /* its length */
    uv_timer_t flush_timer;   /* sends queued changes shortly after the first */
    uv_timer_t sweep_timer;   /* every PEVENTS_SWEEP_MS */
    struct pevents_op *ops;   /* queued changes, in order */
    size_t n_ops, cap_ops;    /* length and capacity of ops */
    size_t n_flying;          /* ops[0..n_flying) are in the FCALL in flight */
    int sweeping;             /* a sweep is in flight */
    int stopped;              /* presence_events_stop ran */
    uint64_t dropped;         /* changes dropped while Redis was away too long */
    long long incarnation_ms; /* the ms part of incarnation */
    int registered;           /* resync ran once: a later one is a reconnect */
    char retire[200];         /* an incarnation to remove once the new one is recorded */
};

/* Appends lua/presence_events.lua to the notify library text *lib
 * (realloc'd): every node loads the same library, flags or not. -1 when
 * out of memory. */
int presence_events_library(char **lib);

/* Sets up; does nothing more unless cfg->presence_events. */
int presence_events_init(struct presence_events *pe, struct server *srv);

/* This process got the first connection of account / lost its last one. */
void presence_events_up(struct presence_events *pe, const char *account);
void presence_events_down(struct presence_events *pe, const char *account);

/* Redis is (back) up. After a reconnect the process takes a new
 * incarnation, records every account it holds under it, then removes the
 * old one: what Redis kept of the old one (perhaps not all: a restart, a
 * failover) no longer matters, and the accounts held throughout see no
 * event. Departures while Redis was away are written then. */
void presence_events_resync(struct presence_events *pe);

/* Clean shutdown: everything this incarnation holds goes at once (offline
 * after the debounce unless held elsewhere). Closes the timers; runs once. */
void presence_events_stop(struct presence_events *pe);

#endif
