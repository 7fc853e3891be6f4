/* metrics: the Prometheus text rendering of the node's counters
 * (GET /metrics). The counters themselves (common/counters.h) are plain
 * integers bumped on the hot path by every layer; only rendering formats
 * text. */
#ifndef NOTIFY_METRICS_H
#define NOTIFY_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "counters.h"

/* Live values owned elsewhere, sampled when rendering. */
struct metrics_gauges {
    uint64_t connections;
    uint64_t accounts;
    uint64_t subscribed_accounts;
    int redis_up;
    int ready;
    int draining;
    int io_uring;                    /* client writes batched through io_uring */
    double webhook_oldest_pending_s; /* age of the oldest event this node is sending, 0 = none */
};

/* Renders the Prometheus text exposition into buf; returns its length, or
 * the length it would need when size is too small (like snprintf). */
size_t metrics_render(const struct metrics *m, const struct metrics_gauges *g, char *buf,
                      size_t size);

#endif
