/* Latency histograms: exact microseconds below 256, then 128 buckets per
 * power of two (under 1% error), so percentiles of millions of samples
 * cost a fixed 36 KiB per histogram. */
#include <math.h>
#include <time.h>

#include "bench.h"

static unsigned hidx(uint64_t us)
{
    if (us < 256)
        return (unsigned)us;
    unsigned e = 63u - (unsigned)__builtin_clzll(us); /* >= 8 */
    unsigned m = (unsigned)(us >> (e - 7)) & 127u;
    unsigned i = 256u + (e - 8u) * 128u + m;
    return i < HBUCKETS ? i : HBUCKETS - 1;
}

static uint64_t hval(unsigned i)
{
    if (i < 256)
        return i;
    unsigned e = (i - 256u) / 128u + 8u, m = (i - 256u) % 128u;
    return (uint64_t)(128u + m) << (e - 7u);
}

void hist_add(struct hist *h, uint64_t ns)
{
    uint64_t us = ns / 1000;
    h->b[hidx(us)]++;
    h->n++;
    h->sum_us += us;
    if (us > h->max_us)
        h->max_us = us;
}

void hist_merge(struct hist *d, const struct hist *s)
{
    d->n += s->n;
    d->sum_us += s->sum_us;
    if (s->max_us > d->max_us)
        d->max_us = s->max_us;
    for (unsigned i = 0; i < HBUCKETS; i++)
        d->b[i] += s->b[i];
}

double hist_pct(const struct hist *h, double p)
{
    if (!h->n)
        return 0;
    uint64_t want = (uint64_t)ceil(p / 100.0 * (double)h->n), acc = 0;
    if (want == 0)
        want = 1;
    for (unsigned i = 0; i < HBUCKETS; i++) {
        acc += h->b[i];
        if (acc >= want) {
            uint64_t v = hval(i);
            return (double)(v > h->max_us ? h->max_us : v) / 1000.0;
        }
    }
    return (double)h->max_us / 1000.0;
}

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
