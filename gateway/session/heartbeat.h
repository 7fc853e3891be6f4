/* heartbeat: a timing wheel over connections (silence checks; token
 * expiry runs on a second one with one-second ticks).
 *
 * Each connection sits in the slot of the tick at which it next needs a
 * look; a tick fires every --heartbeat-check seconds and hands the due slot
 * to the callback, which closes, pings or reschedules each connection.
 * Activity only updates conn->last_seen, so a busy connection costs nothing
 * until its slot comes up, and a tick's cost is the number of connections
 * due in it, never the number held. */
#ifndef NOTIFY_HEARTBEAT_H
#define NOTIFY_HEARTBEAT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct conn;

/* A connection's place in one wheel; struct conn holds one per wheel. */
struct wheel_link {
    struct wheel_link *prev; /* neighbours in the slot's list */
    struct wheel_link *next;
    int32_t slot; /* -1 when not scheduled */
};

/* Called once per due connection, which is already out of the wheel: the
 * callback reschedules it with hb_schedule() or closes it. */
typedef void hb_due_fn(void *data, struct conn *c, uint64_t now);

struct hb_wheel {
    uv_timer_t timer;          /* ticks every tick_ms */
    struct wheel_link **slots; /* n_slots lists of connections, + the one being handed over */
    uint32_t n_slots;          /* covers the longest delay plus one tick */
    uint32_t cursor;           /* slot of the next tick */
    uint64_t tick_ms;          /* --heartbeat-check in ms */
    uint64_t next_tick_at;     /* loop ms of the next tick */
    size_t link_offset;        /* where this wheel's wheel_link sits in struct conn */
    hb_due_fn *due;            /* what to do with a due connection */
    void *data;                /* passed to due */
};

/* Allocates the wheel for delays up to max_delay_ms and starts the timer.
 * Returns 0, or a negative libuv/errno code. */
int hb_init(struct hb_wheel *w, uv_loop_t *loop, uint64_t tick_ms, uint64_t max_delay_ms,
            size_t link_offset, hb_due_fn *due, void *data);

/* (Re)schedules c for the first tick at or after loop time at_ms. */
void hb_schedule(struct hb_wheel *w, struct conn *c, uint64_t at_ms);

/* Takes c out of the wheel if it is in it. */
void hb_cancel(struct hb_wheel *w, struct conn *c);

/* Stops the timer and closes it; the slots are freed in its close callback. */
void hb_close(struct hb_wheel *w);

#endif
