/* heap: gives back to the kernel the memory a burst used and freed.
 *
 * glibc's malloc returns freed memory to the kernel only from the top of
 * its heap. A burst (after a Redis outage, every account's channel
 * subscribed again and every client's presence written again, with their
 * commands, replies and callbacks) allocates below and between the live
 * connections and frees it all a moment later: the free chunks stay in the
 * heap, and in the process's RSS, until reused: after a few outages, a
 * third of the process (BENCHMARKS.md, "Memory after a Redis outage").
 *
 * Every HEAP_CHECK_MS the heap's free bytes are read (mallinfo2); when they
 * grew by HEAP_TRIM_MIN since the last trim, malloc_trim(0) hands the
 * whole free pages inside the heap back (MADV_DONTNEED) and the process's
 * RSS shrinks by what it freed. A no-op without glibc. */
#ifndef NOTIFY_HEAP_H
#define NOTIFY_HEAP_H

#include <stddef.h>
#include <uv.h>

#include "counters.h"

#define HEAP_CHECK_MS 5000
#define HEAP_TRIM_MIN (1024 * 1024)

struct heap {
    uv_timer_t timer;
    struct metrics *metrics; /* heap_trims, heap_released_bytes */
    size_t free_floor;       /* free bytes just after the last trim, or fewer since */
};

/* Starts the check on loop. Returns 0, or a libuv error. */
int heap_init(struct heap *h, uv_loop_t *loop, struct metrics *metrics);

/* Trims now if the free bytes grew enough; returns the bytes the RSS
 * shrank by (0 when it did not trim). The timer calls it. */
size_t heap_trim_if_grown(struct heap *h);

/* Stops and closes the timer (at teardown). */
void heap_stop(struct heap *h);

#endif
