#include "wheel.h"

#include <stdlib.h>

static struct wheel_link *link_of(const struct wheel *w, void *item)
{
    return (struct wheel_link *)((char *)item + w->link_offset);
}

static void *item_of(const struct wheel *w, struct wheel_link *l)
{
    return (char *)l - w->link_offset;
}

static void slot_push(struct wheel *w, uint32_t slot, struct wheel_link *l)
{
    l->slot = (int32_t)slot;
    l->prev = NULL;
    l->next = w->slots[slot];
    if (l->next)
        l->next->prev = l;
    w->slots[slot] = l;
}

static void link_remove(struct wheel *w, struct wheel_link *l)
{
    if (l->slot < 0)
        return;
    if (l->prev)
        l->prev->next = l->next;
    else
        w->slots[l->slot] = l->next;
    if (l->next)
        l->next->prev = l->prev;
    l->prev = l->next = NULL;
    l->slot = -1;
}

void wheel_cancel(struct wheel *w, void *item)
{
    link_remove(w, link_of(w, item));
}

void wheel_schedule(struct wheel *w, void *item, uint64_t at_ms)
{
    struct wheel_link *l = link_of(w, item);
    link_remove(w, l);
    /* Ticks ahead of the next one; a delay beyond the wheel lands in its
     * farthest slot and is simply rescheduled when that slot comes up. */
    uint64_t ahead =
        at_ms <= w->next_tick_at ? 0 : (at_ms - w->next_tick_at + w->tick_ms - 1) / w->tick_ms;
    if (ahead >= w->n_slots)
        ahead = w->n_slots - 1;
    slot_push(w, (uint32_t)((w->cursor + ahead) % w->n_slots), l);
}

static void on_tick(uv_timer_t *t)
{
    struct wheel *w = t->data;
    uint64_t now = uv_now(t->loop);
    /* The due slot moves to the extra slot n_slots before any callback
     * runs, so a callback may reschedule or cancel any item (itself or
     * another due one) and the walk below stays consistent. */
    uint32_t due = w->n_slots;
    w->slots[due] = w->slots[w->cursor];
    w->slots[w->cursor] = NULL;
    for (struct wheel_link *l = w->slots[due]; l; l = l->next)
        l->slot = (int32_t)due;
    w->cursor = (w->cursor + 1) % w->n_slots;
    w->next_tick_at = now + w->tick_ms;
    struct wheel_link *l;
    while ((l = w->slots[due])) {
        link_remove(w, l);
        w->due(w->data, item_of(w, l), now);
    }
}

int wheel_init(struct wheel *w, uv_loop_t *loop, uint64_t tick_ms, uint64_t max_delay_ms,
               size_t link_offset, wheel_due_fn *due, void *data)
{
    w->tick_ms = tick_ms;
    w->link_offset = link_offset;
    w->n_slots = (uint32_t)(max_delay_ms / tick_ms + 2);
    w->slots = calloc(w->n_slots + 1, sizeof(*w->slots)); /* + the due list */
    if (!w->slots)
        return UV_ENOMEM;
    w->cursor = 0;
    w->due = due;
    w->data = data;
    int rc = uv_timer_init(loop, &w->timer);
    if (rc < 0) {
        free(w->slots);
        w->slots = NULL;
        return rc;
    }
    w->timer.data = w;
    w->next_tick_at = uv_now(loop) + tick_ms;
    return uv_timer_start(&w->timer, on_tick, tick_ms, tick_ms);
}

static void on_closed(uv_handle_t *h)
{
    struct wheel *w = h->data;
    free(w->slots);
    w->slots = NULL;
}

void wheel_close(struct wheel *w)
{
    if (!w->slots || uv_is_closing((uv_handle_t *)&w->timer))
        return;
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, on_closed);
}
