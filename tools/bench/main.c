/* bench's parent: the scenarios (bench.h). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "publisher.h"
#include "report.h"

static void set_phase(const struct bench_run *b, int p)
{
    __atomic_store_n(&b->shm->phase, p, __ATOMIC_RELEASE);
}

/* Waits until every worker finished connecting (or the timeout). */
static double wait_connected(const struct bench_run *b, uint64_t t0)
{
    struct worker_stats t;
    for (;;) {
        report_sum(b, &t);
        if ((int)t.connect_done >= b->o->procs)
            break;
        if ((double)(now_ns() - t0) / 1e9 > b->o->connect_timeout + 5) {
            fprintf(stderr, "bench: connect phase timed out\n");
            break;
        }
        usleep(1000);
    }
    report_sum(b, &t);
    return t.ready_last_ns > t0 ? (double)(t.ready_last_ns - t0) / 1e9 : 0;
}

/* Waits for deliveries to reach the expectation, or for no progress. */
static void drain(const struct bench_run *b)
{
    struct worker_stats t;
    uint64_t last = 0, tlast = now_ns();
    for (;;) {
        report_sum(b, &t);
        uint64_t got = t.delivered + t.delivered_b;
        if (t.delivered - t.dup >= b->pub->expect_u && t.delivered_b - t.dup_b >= b->pub->expect_b)
            break;
        if (got != last) {
            last = got;
            tlast = now_ns();
        } else if ((double)(now_ns() - tlast) / 1e9 > b->o->settle + 1) {
            break;
        }
        usleep(1000);
    }
}

static void sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* idle: nothing published; what holding the connections costs. */
static void scenario_idle(const struct bench_run *b, const struct worker_stats *conn)
{
    const struct worker_stats t = *conn;
    struct cmdstats c0, c1;
    publisher_cmdstats(b->pub, &c0);
    struct srvsample i0 = report_sample(b);
    sleep_s(b->o->n_phases > 1 && b->o->hold > 0 ? b->o->hold : b->o->duration);
    struct srvsample i1 = report_sample(b);
    publisher_cmdstats(b->pub, &c1);
    double secs = (double)(i1.t - i0.t) / 1e9, cpu = i1.cpu_s - i0.cpu_s;
    printf("idle_s=%.2f\nserver_cpu_idle_s=%.3f\nserver_cpu_idle_pct=%.3f\n", secs, cpu,
           cpu / secs * 100);
    if (t.established)
        printf("server_cpu_idle_us_per_conn_s=%.3f\n", cpu * 1e6 / secs / (double)t.established);
    printf("server_rss_end_kb=%ld\n", i1.rss_kb);
    report_cmdrates(&c0, &c1, secs);
    if (b->o->cluster)
        report_redis(b, &i0, &i1);
}

/* unicast: --rate publishes per second; unicast-max (max): as fast as
 * deliveries come back, --window of them in flight, after --warmup. */
static void scenario_unicast(const struct bench_run *b, struct worker_stats *conn, int max)
{
    struct worker_stats t = *conn;
    report_reset_lat(b);
    uint64_t start = now_ns(), mstart = 0, dstart = 0;
    struct srvsample m0 = {0}, m1;
    double total = max ? b->o->warmup + b->o->duration : b->o->duration;
    if (!max) {
        m0 = report_sample(b);
        mstart = start;
    }
    for (;;) {
        uint64_t tn = now_ns();
        double el = (double)(tn - start) / 1e9;
        if (el >= total)
            break;
        if (max && !mstart && el >= b->o->warmup) {
            m0 = report_sample(b);
            mstart = tn;
            report_sum(b, &t);
            dstart = t.delivered;
        }
        int n;
        if (!max) {
            double due = el * b->o->rate - (double)b->pub->total;
            n = due > 1000 ? 1000 : (int)due;
        } else {
            report_sum(b, &t);
            long fl = (long)(b->pub->expect_u - t.delivered);
            n = fl < b->o->window ? (int)(b->o->window - fl) : 0;
            if (n > 512)
                n = 512;
        }
        if (n > 0) {
            if (max ? publisher_unicast(b->pub, n) : publisher_send(b->pub, n))
                break;
        } else {
            usleep(!max ? 200 : 50);
        }
    }
    m1 = report_sample(b);
    report_sum(b, &t);
    uint64_t dwin = t.delivered - dstart;
    double secs = (double)(m1.t - mstart) / 1e9;
    publisher_settle(b->pub);
    drain(b);
    report_sum(b, &t);
    printf("published=%llu\noffered_rate=%.0f\n", (unsigned long long)b->pub->total,
           (double)b->pub->total / ((double)(m1.t - start) / 1e9));
    uint64_t uniq = t.delivered - t.dup;
    printf("expected=%llu\ndelivered=%llu\nduplicated=%llu\nlost=%lld\n",
           (unsigned long long)b->pub->expect_u, (unsigned long long)t.delivered,
           (unsigned long long)t.dup, (long long)b->pub->expect_u - (long long)uniq);
    printf("delivery_rate=%.0f\n", (double)dwin / secs);
    printf("server_cpu_s=%.3f\nserver_cpu_pct=%.1f\n", m1.cpu_s - m0.cpu_s,
           (m1.cpu_s - m0.cpu_s) / secs * 100);
    if (dwin)
        printf("server_cpu_per_msg_us=%.2f\n", (m1.cpu_s - m0.cpu_s) * 1e6 / (double)dwin);
    report_runq(&m0, &m1);
    printf("server_rss_end_kb=%ld\n", m1.rss_kb);
    if (b->o->cluster)
        report_redis(b, &m0, &m1);
    report_lat(b, "lat");
    *conn = t;
}

/* broadcast: --count rounds of --burst broadcasts, --interval apart. */
static void scenario_broadcast(const struct bench_run *b, struct worker_stats *conn)
{
    struct worker_stats t = *conn;
    report_reset_lat(b);
    struct srvsample b0 = report_sample(b);
    uint64_t d0 = t.delivered_b;
    report_sum(b, &t);
    uint64_t est = t.established - t.dropped;
    for (int r = 0; r < b->o->count; r++) {
        for (int k = 0; k < b->o->burst; k++)
            publisher_append(b->pub, 0, 1);
        b->pub->expect_b += est * (uint64_t)b->o->burst;
        if (publisher_flush(b->pub, b->o->burst))
            break;
        if (r + 1 < b->o->count)
            sleep_s(b->o->interval);
    }
    drain(b);
    struct srvsample b1 = report_sample(b);
    report_sum(b, &t);
    uint64_t uniq = t.delivered_b - t.dup_b;
    printf("broadcasts=%d\nburst=%d\nexpected=%llu\ndelivered=%llu\nduplicated=%llu\n"
           "lost=%lld\n",
           b->o->count * b->o->burst, b->o->burst, (unsigned long long)b->pub->expect_b,
           (unsigned long long)t.delivered_b, (unsigned long long)t.dup_b,
           (long long)b->pub->expect_b - (long long)uniq);
    double cpu = b1.cpu_s - b0.cpu_s;
    printf("server_cpu_s=%.3f\n", cpu);
    if (t.delivered_b > d0)
        printf("server_cpu_per_msg_us=%.2f\n", cpu * 1e6 / (double)(t.delivered_b - d0));
    if (b->o->cluster)
        report_redis(b, &b0, &b1);
    report_lat(b, "lat");
    *conn = t;
}

/* reconnect-storm: --cycles times every connection dropped at once and
 * reconnected; then one message per account checks they all receive. */
static void scenario_reconnect_storm(const struct bench_run *b, struct worker_stats *conn)
{
    struct worker_stats t = *conn;
    for (int c = 1; c <= b->o->cycles; c++) {
        struct srvsample r0 = report_sample(b);
        uint64_t tc = now_ns();
        __atomic_store_n(&b->shm->cycle, c, __ATOMIC_RELEASE);
        set_phase(b, PH_RECONNECT);
        for (;;) {
            int done = 0;
            for (int i = 0; i < b->o->procs; i++)
                done += ld64(&b->shm->w[i].cycle_done) == (uint64_t)c;
            if (done == b->o->procs || (double)(now_ns() - tc) / 1e9 > b->o->connect_timeout + 5)
                break;
            usleep(1000);
        }
        struct srvsample r1 = report_sample(b);
        report_sum(b, &t);
        double secs = t.ready_last_ns > tc ? (double)(t.ready_last_ns - tc) / 1e9 : 0;
        printf("cycle%d_established=%llu\ncycle%d_failed=%llu\ncycle%d_s=%.3f\n"
               "cycle%d_rate=%.0f\ncycle%d_server_cpu_s=%.3f\n",
               c, (unsigned long long)t.established, c, (unsigned long long)t.failed, c, secs, c,
               secs > 0 ? (double)t.established / secs : 0, c, r1.cpu_s - r0.cpu_s);
        set_phase(b, PH_HOLD);
        sleep_s(b->o->settle);
        struct srvsample r2 = report_sample(b);
        printf("cycle%d_server_rss_kb=%ld\n", c, r2.rss_kb);
    }
    /* Every account must still receive: one message each. */
    report_reset_lat(b);
    for (long a = 0; a < b->o->accounts; a += 256) {
        int n = (int)(b->o->accounts - a < 256 ? b->o->accounts - a : 256);
        if (publisher_unicast(b->pub, n))
            break;
    }
    drain(b);
    report_sum(b, &t);
    printf("check_expected=%llu\ncheck_delivered=%llu\ncheck_lost=%lld\ncheck_dup=%llu\n",
           (unsigned long long)b->pub->expect_u, (unsigned long long)t.delivered,
           (long long)b->pub->expect_u - (long long)(t.delivered - t.dup),
           (unsigned long long)t.dup);
    report_lat(b, "lat");
    *conn = t;
}

/* rolling: for --rolling seconds (while bench/million.sh restarts the servers one
 * at a time), every connection a server closes comes back; then how many
 * were closed, the fewest ready at any moment, and how long each took. */
static void scenario_rolling(const struct bench_run *b, struct worker_stats *conn)
{
    struct worker_stats t = *conn;
    for (int i = 0; i < b->o->procs; i++)
        memset(&b->shm->w[i].reconn_lat, 0, sizeof b->shm->w[i].reconn_lat);
    uint64_t ready0 = t.established - t.dropped, min_ready = ready0, drop0 = t.dropped;
    uint64_t rec0 = t.reconnected, retry0 = t.retries, ready = ready0;
    __atomic_store_n(&b->shm->reconnect, 1, __ATOMIC_RELEASE);
    uint64_t start = now_ns();
    double len = b->o->rolling > 0 ? b->o->rolling : b->o->duration;
    double limit = len + b->o->connect_timeout;
    for (;;) {
        usleep(100000);
        report_sum(b, &t);
        ready = t.established - t.dropped;
        if (ready < min_ready)
            min_ready = ready;
        double el = (double)(now_ns() - start) / 1e9;
        if ((el >= len && ready >= ready0) || el >= limit)
            break;
    }
    __atomic_store_n(&b->shm->reconnect, 0, __ATOMIC_RELEASE);
    printf("rolling_s=%.1f\nrolling_ready_start=%llu\nrolling_ready_min=%llu\n"
           "rolling_ready_end=%llu\nrolling_closed_by_server=%llu\nrolling_reconnected=%llu\n"
           "rolling_retries=%llu\nrolling_all_back=%d\n",
           (double)(now_ns() - start) / 1e9, (unsigned long long)ready0,
           (unsigned long long)min_ready, (unsigned long long)ready,
           (unsigned long long)(t.dropped - drop0), (unsigned long long)(t.reconnected - rec0),
           (unsigned long long)(t.retries - retry0), ready >= ready0);
    report_lat(b, "reconnect");
    *conn = t;
}

static void run_phase(const struct bench_run *b, enum scenario sc, struct worker_stats *t,
                      double ct)
{
    switch (sc) {
    case SC_IDLE:
        scenario_idle(b, t);
        break;
    case SC_UNICAST:
    case SC_UNICAST_MAX:
        scenario_unicast(b, t, sc == SC_UNICAST_MAX);
        break;
    case SC_BROADCAST:
        scenario_broadcast(b, t);
        break;
    case SC_CONNECT_STORM: /* the connect phase is the measurement */
        printf("storm_rate=%.0f\n", ct > 0 ? (double)t->established / ct : 0);
        break;
    case SC_RECONNECT_STORM:
        scenario_reconnect_storm(b, t);
        break;
    case SC_ROLLING:
        scenario_rolling(b, t);
        break;
    }
}

int main(int argc, char **argv)
{
    static struct bench_opts opts;
    opts_parse(&opts, argc, argv);
    const struct bench_opts *o = &opts;
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if ((rlim_t)(o->conns / o->procs + 64) > rl.rlim_cur) {
        fprintf(stderr,
                "bench: %ld connections per process exceed the open-files limit %llu: "
                "raise --procs\n",
                o->conns / o->procs + 1, (unsigned long long)rl.rlim_cur);
        return 2;
    }
    static struct publisher pub;
    if (publisher_open(&pub, o))
        return 1;
    struct bench_shm *shm =
        mmap(NULL, sizeof *shm, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shm == MAP_FAILED)
        return 1;
    memset(shm, 0, sizeof *shm);
    const struct bench_run run = {.o = o, .shm = shm, .pub = &pub}, *b = &run;
    struct srvsample base = report_sample(b);
    pid_t kids[MAXPROCS + 1];
    int nkids = b->o->procs;
    for (int i = 0; i < b->o->procs; i++) {
        fflush(stdout);
        kids[i] = fork();
        if (kids[i] == 0)
            worker_run(o, shm, i);
    }
    if (o->n_noise) {
        fflush(stdout);
        kids[nkids] = fork();
        if (kids[nkids] == 0)
            noise_run(o, shm);
        nkids++;
    }
    printf("scenario=%s\ntarget=%s\nprocs=%d\naccounts=%ld\nheartbeat_s=%g\nauth=%s\n"
           "transport=%s\n",
           b->o->scenario_name, b->o->label, b->o->procs, b->o->accounts,
           b->o->sse ? 0.0 : b->o->hb, b->o->jwt ? "jwt" : "none", b->o->sse ? "sse" : "ws");
    sleep_s(b->o->jwt ? 0.5 + (double)b->o->accounts / b->o->procs * 2e-5 : 0.2); /* minting */
    struct srvsample s0 = report_sample(b);
    uint64_t t0 = now_ns();
    b->shm->t0 = t0;
    set_phase(b, PH_CONNECT);
    double ct = wait_connected(b, t0);
    struct srvsample s1 = report_sample(b);
    struct worker_stats t;
    report_sum(b, &t);
    printf("connect_s=%.3f\nconnect_rate=%.0f\nserver_cpu_connect_s=%.3f\n", ct,
           ct > 0 ? (double)t.established / ct : 0, s1.cpu_s - s0.cpu_s);
    if (t.established)
        printf("server_cpu_per_connect_us=%.1f\n",
               (s1.cpu_s - s0.cpu_s) * 1e6 / (double)t.established);
    report_lat(b, "connect");
    set_phase(b, PH_HOLD);
    sleep_s(b->o->settle);
    struct srvsample sc0 = report_sample(b);
    report_common(b, &t, &base, &sc0);

    static const char *names[] = {"idle",          "unicast",         "unicast-max", "broadcast",
                                  "connect-storm", "reconnect-storm", "rolling"};
    for (int i = 0; i < o->n_phases; i++) {
        if (o->n_phases > 1) {
            printf("phase=%s\n", names[o->phases[i]]);
            fflush(stdout); /* bench/million.sh waits for it */
        }
        run_phase(b, o->phases[i], &t, ct);
    }
    set_phase(b, PH_STOP);
    for (int i = 0; i < nkids; i++)
        waitpid(kids[i], NULL, 0);
    report_sum(b, &t);
    report_end(&t);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("bench_worker_cpu_s=%.3f\nbench_parent_cpu_s=%.3f\n", (double)t.cpu_us / 1e6,
           (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
               (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
    publisher_close(&pub);
    return 0;
}
