/* What the parent measures and prints: samples of the server processes
 * and of Redis, the workers' counters summed, and the key=value lines. */
#ifndef NOTIFY_BENCH_REPORT_H
#define NOTIFY_BENCH_REPORT_H

#include <stdint.h>

#include "bench.h"
#include "publisher.h"

/* One run of a scenario, as the parent holds it. */
struct bench_run {
    const struct bench_opts *o;
    struct bench_shm *shm;
    struct publisher *pub;
};

/* The measured server and Redis at one instant. */
struct srvsample {
    double cpu_s; /* utime+stime of all server pids */
    /* /proc/<pid>/schedstat of all server pids: time runnable but waiting
     * for a CPU, and how many times they were given one */
    double runq_s;
    uint64_t slices;
    long rss_kb;
    uint64_t t;
    double rcpu[SLOTMAP_MAX_NODES];   /* --redis-cluster: used_cpu_sys+user of each primary */
    uint64_t rpub[SLOTMAP_MAX_NODES]; /* messages published to each primary so far */
};

struct srvsample report_sample(const struct bench_run *b);

/* server_runq_wait_pct (of the interval) and _per_slice_us over [a, b]:
 * how long the server waited for a CPU it was ready to use, which a
 * delivery behind it waits too. */
void report_runq(const struct srvsample *a, const struct srvsample *b);

/* Every worker's counters summed into t (latest times: the maximum). */
void report_sum(const struct bench_run *b, struct worker_stats *t);

/* Per primary over [a, b]: address, slots, what it carried and its CPU. */
void report_redis(const struct bench_run *b, const struct srvsample *s0,
                  const struct srvsample *s1);

/* redis_<command>_per_s of every command called between a and b but INFO. */
void report_cmdrates(const struct cmdstats *a, const struct cmdstats *b, double secs);

/* Connections and the server's memory once they are established. */
void report_common(const struct bench_run *b, const struct worker_stats *t,
                   const struct srvsample *base, const struct srvsample *conn);

/* What the workers saw besides deliveries: drops, replies, close codes. */
void report_end(const struct worker_stats *t);

/* <pfx>_samples, _p50_ms ... of the delivery latencies (pfx "lat"), the
 * connect latencies ("connect") or the rolling reconnects ("reconnect"). */
void report_lat(const struct bench_run *b, const char *pfx);

/* Empties the delivery latency histograms before a measured interval. */
void report_reset_lat(const struct bench_run *b);

#endif
