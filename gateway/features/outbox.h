/* outbox: the sweep that turns missed acknowledgement deadlines into
 * entries of <prefix>undelivered (README.md "Acknowledgements and the
 * undelivered outbox").
 *
 * Deadlines live only in Redis: notify_publish ... ack N puts each in a
 * ZSET of its slot (one ZSET on a single Redis). Every --ack-sweep-ms each
 * node asks every primary to sweep the slots it owns (FCALL notify_sweep);
 * a short lease in Redis (three periods) lets one node do it while it
 * lives, another take over when it dies. A sweep is one atomic function:
 * a due deadline leaves its ZSET and becomes an outbox entry in the same
 * step, so whichever node runs it, however many race, each is written
 * once.
 *
 * In a cluster <prefix>receipts and <prefix>undelivered live in one slot,
 * on one primary, and a function may only write its own slot: entries are
 * written to the slot's relay stream instead, and the sweep hands them
 * back; this node copies each to its stream (FCALL notify_relay, which
 * remembers account and id so a copy made twice, by a node that died
 * before the delete, is written once) and then deletes it from the relay. */
#ifndef NOTIFY_OUTBOX_H
#define NOTIFY_OUTBOX_H

#include <uv.h>

#include "redis.h"

struct server;

struct outbox {
    uv_timer_t timer;                  /* the sweep period */
    uint8_t inflight[REDIS_MAX_NODES]; /* a sweep of that primary awaits its answer */
};

/* Starts the sweep timer. Returns 0 or -1. */
int outbox_init(struct server *srv);

/* Stops the timer (teardown); answers still in flight are ignored. */
void outbox_close(struct server *srv);

#endif
