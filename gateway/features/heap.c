/* heap: hands the free pages a burst left inside the heap back to the
 * kernel (heap.h). */
#include "heap.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "log.h"

/* Resident bytes of this process (/proc/self/statm), 0 if unreadable. */
static size_t resident_bytes(void)
{
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    unsigned long size = 0, resident = 0;
    if (n <= 0)
        return 0;
    buf[n] = 0;
    if (sscanf(buf, "%lu %lu", &size, &resident) != 2)
        return 0;
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

int heap_should_trim(struct heap *h, size_t rss)
{
    int grown = rss >= h->rss_mark + HEAP_TRIM_MIN;
    int growing = rss >= h->rss_last + HEAP_GROWING;
    if (rss < h->rss_mark)
        h->rss_mark = rss;
    h->rss_last = rss;
    return grown && !growing;
}

size_t heap_trim_if_grown(struct heap *h)
{
#ifndef __GLIBC__
    (void)h;
    return 0;
#else
    size_t before = resident_bytes();
    if (!heap_should_trim(h, before))
        return 0;
    malloc_trim(0);
    size_t after = resident_bytes();
    /* A burst after this one counts from here. */
    h->rss_mark = h->rss_last = after;
    size_t released = before > after ? before - after : 0;
    h->metrics->heap_trims++;
    h->metrics->heap_released_bytes += released;
    log_debug("heap_trimmed", "rss_bytes=%zu released_bytes=%zu", before, released);
    return released;
#endif
}

static void on_check(uv_timer_t *t)
{
    heap_trim_if_grown(t->data);
}

int heap_init(struct heap *h, uv_loop_t *loop, struct metrics *metrics)
{
    h->metrics = metrics;
    h->rss_mark = h->rss_last = resident_bytes();
    int rc = uv_timer_init(loop, &h->timer);
    if (rc < 0)
        return rc;
    h->timer.data = h;
    uv_unref((uv_handle_t *)&h->timer); /* never what keeps the loop running */
    return uv_timer_start(&h->timer, on_check, HEAP_CHECK_MS, HEAP_CHECK_MS);
}

void heap_stop(struct heap *h)
{
    uv_timer_stop(&h->timer);
    if (!uv_is_closing((uv_handle_t *)&h->timer))
        uv_close((uv_handle_t *)&h->timer, NULL);
}
