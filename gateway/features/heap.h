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
 * Every HEAP_CHECK_MS the process's RSS is read (/proc/self/statm, a few
 * microseconds). Once it has grown by HEAP_TRIM_MIN since the last trim and
 * then stopped growing (by less than HEAP_GROWING since the previous
 * check), malloc_trim(0) hands the whole free pages inside the heap back
 * (MADV_DONTNEED): once after each burst or wave of connections. The heap
 * itself is walked only then: a walk holds up every delivery behind it
 * (BENCHMARKS.md, "Memory after a Redis outage"), so a node whose RSS holds
 * steady never walks it. Memory freed without the RSS growing first (clients
 * leaving) is kept for the next ones. A no-op without glibc. */
#ifndef NOTIFY_HEAP_H
#define NOTIFY_HEAP_H

#include <stddef.h>
#include <uv.h>

#include "counters.h"

#define HEAP_CHECK_MS 2000
#define HEAP_TRIM_MIN (1024 * 1024)
#define HEAP_GROWING (256 * 1024)

struct heap {
    uv_timer_t timer;
    struct metrics *metrics; /* heap_trims, heap_released_bytes */
    size_t rss_mark;         /* RSS just after the last trim (or at start), or less since */
    size_t rss_last;         /* RSS at the previous check */
};

/* Starts the check on loop. Returns 0, or a libuv error. */
int heap_init(struct heap *h, uv_loop_t *loop, struct metrics *metrics);

/* The rule above, given the RSS now (bytes): 1 to trim now, else 0.
 * Updates h's marks either way. */
int heap_should_trim(struct heap *h, size_t rss);

/* Trims now if heap_should_trim says so; returns the bytes the RSS shrank
 * by (0 when it did not trim). The timer calls it. */
size_t heap_trim_if_grown(struct heap *h);

/* Stops and closes the timer (at teardown). */
void heap_stop(struct heap *h);

#endif
