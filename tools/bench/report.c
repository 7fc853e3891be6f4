/* What the parent measures and prints (report.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "report.h"

void report_sum(const struct bench_run *b, struct worker_stats *t)
{
    memset(t, 0, sizeof *t);
    for (int i = 0; i < b->o->procs; i++) {
        struct worker_stats *w = &b->shm->w[i];
        t->established += ld64(&w->established);
        t->failed += ld64(&w->failed);
        t->dropped += ld64(&w->dropped);
        t->http_fail += ld64(&w->http_fail);
        t->delivered += ld64(&w->delivered);
        t->dup += ld64(&w->dup);
        t->delivered_b += ld64(&w->delivered_b);
        t->dup_b += ld64(&w->dup_b);
        t->hb_replies += ld64(&w->hb_replies);
        t->pings += ld64(&w->pings);
        t->errors += ld64(&w->errors);
        t->other += ld64(&w->other);
        t->connect_done += ld64(&w->connect_done);
        t->cpu_us += ld64(&w->cpu_us);
        t->reconnected += ld64(&w->reconnected);
        t->retries += ld64(&w->retries);
        uint64_t r = ld64(&w->ready_last_ns), l = ld64(&w->last_rx_ns);
        if (r > t->ready_last_ns)
            t->ready_last_ns = r;
        if (l > t->last_rx_ns)
            t->last_rx_ns = l;
        for (int k = 0; k < 8; k++)
            t->close_codes[k] += ld64(&w->close_codes[k]);
    }
}

void report_redis(const struct bench_run *run, const struct srvsample *a, const struct srvsample *b)
{
    double secs = (double)(b->t - a->t) / 1e9, tot = 0, top = 0;
    uint64_t pubs = 0;
    printf("redis_primaries=%d\n", run->pub->map->n_nodes);
    for (int i = 0; i < run->pub->map->n_nodes; i++) {
        double cpu = b->rcpu[i] - a->rcpu[i];
        uint64_t pub = b->rpub[i] - a->rpub[i];
        printf("redis_primary%d=%s:%d\nredis_primary%d_slots=%ld\nredis_primary%d_published=%llu\n"
               "redis_primary%d_cpu_s=%.3f\nredis_primary%d_cpu_pct=%.1f\n",
               i + 1, run->pub->map->nodes[i].host, run->pub->map->nodes[i].port, i + 1,
               (long)run->pub->map->nodes[i].slots, i + 1, (unsigned long long)pub, i + 1, cpu,
               i + 1, secs > 0 ? cpu / secs * 100 : 0);
        if (pub)
            printf("redis_primary%d_cpu_per_msg_us=%.2f\n", i + 1, cpu * 1e6 / (double)pub);
        tot += cpu;
        pubs += pub;
        if (cpu > top)
            top = cpu;
    }
    printf("redis_cpu_s=%.3f\nredis_cpu_pct=%.1f\nredis_cpu_busiest_primary_pct=%.1f\n", tot,
           secs > 0 ? tot / secs * 100 : 0, secs > 0 ? top / secs * 100 : 0);
    if (pubs)
        printf("redis_cpu_per_msg_us=%.2f\n", tot * 1e6 / (double)pubs);
    uint64_t errs = 0;
    for (int i = 0; i < run->pub->map->n_nodes; i++)
        errs += run->pub->nodes[i].errors;
    printf("publish_errors=%llu\n", (unsigned long long)errs);
}

struct srvsample report_sample(const struct bench_run *b)
{
    struct srvsample s = {.t = now_ns()};
    long hz = sysconf(_SC_CLK_TCK);
    for (int i = 0; i < b->o->nspid; i++) {
        char path[64], buf[4096];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)b->o->spid[i]);
        FILE *f = fopen(path, "r");
        if (f) {
            size_t n = fread(buf, 1, sizeof buf - 1, f);
            buf[n] = 0;
            fclose(f);
            char *p = strrchr(buf, ')');
            unsigned long ut = 0, st = 0;
            if (p &&
                sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
                s.cpu_s += (double)(ut + st) / (double)hz;
        }
        snprintf(path, sizeof path, "/proc/%d/schedstat", (int)b->o->spid[i]);
        f = fopen(path, "r");
        if (f) {
            unsigned long long run_ns, wait_ns, slices;
            if (fscanf(f, "%llu %llu %llu", &run_ns, &wait_ns, &slices) == 3) {
                s.runq_s += (double)wait_ns / 1e9;
                s.slices += slices;
            }
            fclose(f);
        }
        snprintf(path, sizeof path, "/proc/%d/status", (int)b->o->spid[i]);
        f = fopen(path, "r");
        if (f) {
            while (fgets(buf, sizeof buf, f))
                if (!strncmp(buf, "VmRSS:", 6))
                    s.rss_kb += atol(buf + 6);
            fclose(f);
        }
    }
    for (int i = 0; b->pub->map && i < b->pub->map->n_nodes; i++) {
        s.rcpu[i] = publisher_redis_cpu(b->pub->nodes[i].c);
        s.rpub[i] = b->pub->nodes[i].published;
    }
    return s;
}

void report_runq(const struct srvsample *a, const struct srvsample *b)
{
    double secs = (double)(b->t - a->t) / 1e9, wait = b->runq_s - a->runq_s;
    uint64_t slices = b->slices - a->slices;
    if (secs <= 0)
        return;
    printf("server_runq_wait_pct=%.1f\n", wait / secs * 100);
    if (slices)
        printf("server_runq_wait_per_slice_us=%.1f\nserver_slices_per_s=%.0f\n",
               wait * 1e6 / (double)slices, (double)slices / secs);
}

void report_cmdrates(const struct cmdstats *a, const struct cmdstats *b, double secs)
{
    for (int i = 0; i < b->n; i++) {
        uint64_t before = 0;
        for (int j = 0; j < a->n; j++)
            if (!strcmp(a->name[j], b->name[i]))
                before = a->calls[j];
        if (b->calls[i] > before && strcmp(b->name[i], "info"))
            printf("redis_%s_per_s=%.2f\n", b->name[i], (double)(b->calls[i] - before) / secs);
    }
}

void report_common(const struct bench_run *b, const struct worker_stats *t,
                   const struct srvsample *base, const struct srvsample *conn)
{
    printf("connections=%ld\nestablished=%llu\nfailed=%llu\nhttp_failed=%llu\n", b->o->conns,
           (unsigned long long)t->established, (unsigned long long)t->failed,
           (unsigned long long)t->http_fail);
    printf("server_rss_empty_kb=%ld\nserver_rss_connected_kb=%ld\n", base->rss_kb, conn->rss_kb);
    if (t->established)
        printf("server_rss_per_conn_kb=%.3f\n",
               (double)(conn->rss_kb - base->rss_kb) / (double)t->established);
}

void report_end(const struct worker_stats *t)
{
    static const char *names[8] = {"1000", "1001", "1008", "1011", "1013", "4408", "4401", "other"};
    printf("dropped_by_server=%llu\nheartbeat_replies=%llu\npings_answered=%llu\nsend_errors=%llu"
           "\nother_frames=%llu\n",
           (unsigned long long)t->dropped, (unsigned long long)t->hb_replies,
           (unsigned long long)t->pings, (unsigned long long)t->errors,
           (unsigned long long)t->other);
    for (int k = 0; k < 8; k++)
        if (t->close_codes[k])
            printf("close_%s=%llu\n", names[k], (unsigned long long)t->close_codes[k]);
}

/* With --noise-pid: lat without the messages the host's bursts touched,
 * and those bursts since lat was reset. The workers classify a latency
 * once the monitor has looked NOISE_SLACK_NS past it: wait for that. */
static void report_quiet(const struct bench_run *b, const struct hist *all)
{
    usleep((useconds_t)(NOISE_SLACK_NS / 1000 * 4));
    struct hist *q = calloc(2, sizeof *q), *noisy = q + 1;
    uint64_t out = 0;
    for (int i = 0; i < b->o->procs; i++) {
        hist_merge(q, &b->shm->w[i].lat_quiet);
        out += ld64(&b->shm->w[i].lat_noisy);
    }
    /* The touched ones: all but the quiet (a sample is in both or in all only). */
    for (unsigned i = 0; i < HBUCKETS; i++) {
        noisy->b[i] = all->b[i] > q->b[i] ? all->b[i] - q->b[i] : 0;
        noisy->n += noisy->b[i];
    }
    noisy->max_us = all->max_us;
    const struct noise_log *log = &b->shm->noise;
    uint64_t n = __atomic_load_n(&log->n, __ATOMIC_ACQUIRE), bursts = 0, ran = 0, longest = 0;
    for (uint64_t k = n; k > 0 && n - k < NOISE_MAX; k--) {
        const struct noise_burst *x = &log->b[(k - 1) % NOISE_MAX];
        if (x->end < b->shm->lat_t0)
            break;
        bursts++;
        ran += x->ran_ns;
        if (x->ran_ns > longest)
            longest = x->ran_ns;
    }
    printf("lat_quiet_samples=%llu\nlat_noisy_samples=%llu\nlat_quiet_p50_ms=%.3f\n"
           "lat_quiet_p99_ms=%.3f\nlat_quiet_p999_ms=%.3f\nlat_noisy_p50_ms=%.3f\n"
           "lat_noisy_p99_ms=%.3f\nnoise_bursts=%llu\nnoise_ran_ms=%.1f\nnoise_longest_ms=%.1f\n",
           (unsigned long long)q->n, (unsigned long long)out, hist_pct(q, 50), hist_pct(q, 99),
           hist_pct(q, 99.9), hist_pct(noisy, 50), hist_pct(noisy, 99), (unsigned long long)bursts,
           (double)ran / 1e6, (double)longest / 1e6);
    free(q);
}

void report_lat(const struct bench_run *b, const char *pfx)
{
    struct hist *h = calloc(1, sizeof *h);
    for (int i = 0; i < b->o->procs; i++)
        hist_merge(h, !strcmp(pfx, "connect")     ? &b->shm->w[i].conn_lat
                      : !strcmp(pfx, "reconnect") ? &b->shm->w[i].reconn_lat
                                                  : &b->shm->w[i].lat);
    printf("%s_samples=%llu\n%s_p50_ms=%.3f\n%s_p99_ms=%.3f\n%s_p999_ms=%.3f\n%s_max_ms=%.3f\n"
           "%s_mean_ms=%.3f\n",
           pfx, (unsigned long long)h->n, pfx, hist_pct(h, 50), pfx, hist_pct(h, 99), pfx,
           hist_pct(h, 99.9), pfx, (double)h->max_us / 1000.0, pfx,
           h->n ? (double)h->sum_us / (double)h->n / 1000.0 : 0.0);
    if (!strcmp(pfx, "lat") && b->o->n_noise)
        report_quiet(b, h);
    free(h);
}

void report_reset_lat(const struct bench_run *b)
{
    b->shm->lat_t0 = now_ns();
    for (int i = 0; i < b->o->procs; i++) {
        memset(&b->shm->w[i].lat, 0, sizeof b->shm->w[i].lat);
        memset(&b->shm->w[i].lat_quiet, 0, sizeof b->shm->w[i].lat_quiet);
        st64(&b->shm->w[i].lat_noisy, 0);
    }
}
