#include "counters.h"

static const char *reject_names[REJECT__COUNT] = {
    "bad_request", "unauthorized", "forbidden",        "not_found", "account_full",
    "node_full",   "draining",     "upgrade_required", "malformed", "timeout"};

const uint64_t counters_latency_bounds_ns[METRICS_LATENCY_BUCKETS - 1] = {
    50000,    100000,   250000,   500000,    1000000,   2500000,   5000000,
    10000000, 25000000, 50000000, 100000000, 250000000, 1000000000};

const char *counters_reject_name(enum reject_reason r)
{
    return reject_names[r];
}

void counters_observe_latency(struct metrics *m, uint64_t ns)
{
    int b = 0;
    while (b < METRICS_LATENCY_BUCKETS - 1 && ns > counters_latency_bounds_ns[b])
        b++;
    m->latency_buckets[b]++;
    m->latency_count++;
    m->latency_sum_ns += ns;
}
