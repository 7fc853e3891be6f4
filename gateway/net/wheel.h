/* wheel: a timing wheel over the items of one kind (connections, in the
 * gateway: their silence checks, their timeouts).
 *
 * Each item sits in the slot of the tick at which it next needs a look; a
 * tick fires every tick_ms and hands the due slot to the callback, which
 * reschedules, closes or forgets each item. Activity elsewhere only
 * updates a timestamp, so a busy item costs nothing until its slot comes
 * up, and a tick's cost is the number of items due in it, never the
 * number held. An item embeds one struct wheel_link per wheel it can be
 * in; the wheel finds it from its link by a fixed offset. */
#ifndef NOTIFY_WHEEL_H
#define NOTIFY_WHEEL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* An item's place in one wheel. */
struct wheel_link {
    struct wheel_link *prev; /* neighbours in the slot's list */
    struct wheel_link *next;
    int32_t slot; /* -1 when not scheduled */
};

/* Called once per due item, which is already out of the wheel: the
 * callback reschedules it with wheel_schedule() or lets it go. */
typedef void wheel_due_fn(void *data, void *item, uint64_t now);

struct wheel {
    uv_timer_t timer;          /* ticks every tick_ms */
    struct wheel_link **slots; /* n_slots lists of items, + the one being handed over */
    uint32_t n_slots;          /* covers the longest delay plus one tick */
    uint32_t cursor;           /* slot of the next tick */
    uint64_t tick_ms;          /* time between ticks */
    uint64_t next_tick_at;     /* loop ms of the next tick */
    size_t link_offset;        /* where this wheel's wheel_link sits in an item */
    wheel_due_fn *due;         /* what to do with a due item */
    void *data;                /* passed to due */
};

/* Marks a link as in no wheel (before its item's first wheel_schedule). */
static inline void wheel_link_init(struct wheel_link *l)
{
    l->prev = l->next = NULL;
    l->slot = -1;
}

/* Allocates the wheel for delays up to max_delay_ms and starts the timer.
 * Returns 0, or a negative libuv/errno code. */
int wheel_init(struct wheel *w, uv_loop_t *loop, uint64_t tick_ms, uint64_t max_delay_ms,
               size_t link_offset, wheel_due_fn *due, void *data);

/* (Re)schedules item for the first tick at or after loop time at_ms; a
 * delay beyond the wheel's reach lands in its farthest slot, and the
 * callback reschedules it then. */
void wheel_schedule(struct wheel *w, void *item, uint64_t at_ms);

/* Takes item out of the wheel if it is in it. */
void wheel_cancel(struct wheel *w, void *item);

/* Stops the timer and closes it; the slots are freed in its close callback. */
void wheel_close(struct wheel *w);

#endif
