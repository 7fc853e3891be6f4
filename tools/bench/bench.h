/* bench: load generator and measuring instrument for notify-gateway (and for
 * the reference forwarder, run the same way).
 *
 * One parent process publishes through Redis (its own hiredis connection) and
 * measures the server (/proc/<pid>/stat, /proc/<pid>/status, Redis INFO
 * commandstats); --procs worker processes hold the WebSocket connections,
 * each a single epoll loop with its own minimal client framing. Workers and
 * parent share one anonymous mapping: live counters and latency histograms.
 *
 *   bench SCENARIO[,SCENARIO...] [flags]   scenarios: idle unicast unicast-max
 *                                broadcast connect-storm reconnect-storm rolling
 *
 * Several scenarios joined by commas run one after the other on the same
 * connections, each after a "phase=<name>" line (host scale: connecting a
 * million takes minutes, so bench/million.sh holds them once for all).
 *
 * With --transport sse the connections are GET /sse event streams (the
 * gateway's Server-Sent Events) instead of WebSockets: the same messages,
 * read from data: lines; no heartbeats (the client of a stream never
 * speaks).
 *
 * Every published body is "<kind> <CLOCK_MONOTONIC ns> <seq>": kind u is a
 * per-account sequence (each connection of the account expects 0,1,2...),
 * kind b a global broadcast sequence. A number lower than expected counts as
 * a duplicate; lost = expected - (delivered - duplicates).
 *
 * With --redis-cluster the parent reads the slot map once (CLUSTER SLOTS),
 * keeps one publisher connection per primary and SPUBLISHes each message to
 * the owner of its channel's slot; it also reports each primary's CPU (INFO
 * cpu) over the measured interval.
 *
 * The parts: options.c (the command line), hist.c (latency histograms),
 * worker.c (the connections of one worker process), publisher.c (Redis),
 * report.c (samples of the server and the key=value output), main.c (the
 * scenarios). The output is key=value lines, read by the scripts in bench/. */
#ifndef NOTIFY_BENCH_H
#define NOTIFY_BENCH_H

#include <stdint.h>
#include <sys/types.h>

#define MAXPROCS 128
#define MAXPIDS 128 /* one per --reuse-port process (bench/million.sh runs 80) */
#define MAXPHASES 8
#define HBUCKETS 4608
#define MAXNOISE 8 /* --noise-pid */

/* ---------------------------------------------------------------- options */

enum scenario {
    SC_IDLE,
    SC_UNICAST,
    SC_UNICAST_MAX,
    SC_BROADCAST,
    SC_CONNECT_STORM,
    SC_RECONNECT_STORM,
    SC_ROLLING
};

struct bench_opts {
    const char *scenario_name; /* as given: one name or several, comma-joined */
    enum scenario phases[MAXPHASES];
    int n_phases;
    char host[64];
    int port;
    char rhost[128];
    int rport;
    const char *cluster; /* --redis-cluster seeds, NULL = one Redis */
    const char *prefix;
    int jwt;
    const char *secret;
    long conns, accounts;
    int procs;
    double hb;       /* heartbeat interval, s (0 = none) */
    double rate;     /* publishes per second */
    double duration; /* measured seconds */
    double hold;     /* idle in a sequence of scenarios: held seconds (0 = --duration) */
    double rolling;  /* rolling: seconds (0 = --duration) */
    double warmup;   /* seconds before measuring (unicast-max) */
    long window;     /* unicast-max: deliveries in flight */
    int count;       /* broadcast rounds */
    int burst;       /* broadcasts per round */
    double interval; /* s between broadcast rounds */
    int cycles;      /* reconnect-storm cycles */
    int inflight;    /* connects in flight per process */
    int msg_size;    /* approximate envelope bytes */
    int history;     /* unicast through FCALL notify_publish instead of PUBLISH */
    int ack;         /* notify_publish ... ack N (implies history); clients acknowledge */
    int ready_on_upgrade;
    int sse; /* --transport sse: GET /sse event streams instead of WebSockets */
    int src_ips;
    const char *label;
    pid_t spid[MAXPIDS];
    int nspid;
    pid_t noise_pid[MAXNOISE]; /* --noise-pid: the host's threads to watch (noise) */
    int n_noise;
    double settle;
    double connect_timeout;
};

/* Fills o from argv, exiting with a message (status 2) on bad usage, or
 * after --help (status 0). */
void opts_parse(struct bench_opts *o, int argc, char **argv);

/* "HOST:PORT" into host (hl bytes) and *port; 0, or -1. */
int opts_hostport(const char *s, char *host, size_t hl, int *port);

/* Connections of account a: the conns spread evenly over the accounts. */
long opts_acct_conns(const struct bench_opts *o, long a);

/* -------------------------------------------------------------- histogram */

/* Latencies in microseconds: exact below 256 us, then 128 buckets per
 * power of two. */
struct hist {
    uint64_t n, sum_us, max_us;
    uint64_t b[HBUCKETS];
};

void hist_add(struct hist *h, uint64_t ns);
void hist_merge(struct hist *d, const struct hist *s);
/* The p-th percentile, ms. */
double hist_pct(const struct hist *h, double p);

/* ---------------------------------------------------------- shared memory */

enum phase { PH_INIT, PH_CONNECT, PH_HOLD, PH_RECONNECT, PH_STOP };

/* One worker's counters, written by it and read by the parent. */
struct worker_stats {
    uint64_t established, failed, dropped, ready_last_ns, connect_done;
    uint64_t delivered, dup, delivered_b, dup_b, hb_replies, pings, errors, other;
    uint64_t last_rx_ns, cycle_done, cpu_us, http_fail, close_codes[8];
    uint64_t reconnected, retries; /* rolling: connections back after a server close */
    struct hist lat, conn_lat, reconn_lat;
    struct hist lat_quiet; /* with --noise-pid: lat of the messages no burst touched */
    uint64_t lat_noisy;    /* and how many it left out */
};

/* ------------------------------------------------------------------ noise */

/* The host's own bursts. On a small shared host, other programs' threads
 * (here, the sandbox's agent, every second) take a CPU away from the
 * server, Redis and the bench at once, and the messages in flight then
 * wait whoever the server is: the largest part of p99 and p99.9 at
 * 20,000/s (BENCHMARKS.md, "Stop 20"). With
 * --noise-pid, a monitor process records when those threads ran, and each
 * latency also goes to lat_quiet unless a burst overlapped the message's
 * flight or ended less than NOISE_SLACK_NS before it was sent (a backlog
 * still draining). */
#define NOISE_MAX 4096 /* bursts kept (a ring) */
#define NOISE_SLACK_NS 5000000ull

struct noise_burst {
    uint64_t start, end, ran_ns; /* CLOCK_MONOTONIC ns; CPU time they took */
};

struct noise_log {
    uint64_t seen_ns; /* complete up to here */
    uint64_t n;       /* bursts ever; b[i % NOISE_MAX] */
    struct noise_burst b[NOISE_MAX];
};

/* The mapping parent and workers share. */
struct bench_shm {
    int phase, cycle; /* set by the parent */
    int reconnect;    /* set by the parent: a connection the server closes comes back */
    uint64_t t0;
    uint64_t lat_t0; /* when lat was last reset */
    struct worker_stats w[MAXPROCS];
    struct noise_log noise;
};

uint64_t now_ns(void);

/* The monitor (a forked process) until the parent sets PH_STOP. */
void noise_run(const struct bench_opts *o, struct bench_shm *shm) __attribute__((noreturn));

/* 1 if a logged burst touched a message sent at a and received at b. */
int noise_overlaps(const struct noise_log *log, uint64_t a, uint64_t b);

static inline int ld(const int *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline uint64_t ld64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}
static inline void st64(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}
/* Only the owning worker writes its counters: no read-modify-write race. */
static inline void inc64(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

/* ----------------------------------------------------------------- worker */

/* Runs worker w (a forked process) until the parent sets PH_STOP; never
 * returns. */
void worker_run(const struct bench_opts *o, struct bench_shm *shm, int w) __attribute__((noreturn));

#endif
