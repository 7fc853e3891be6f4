/* heap: hands the free pages a burst left inside the heap back to the
 * kernel (heap.h). */
#include "heap.h"

#include <stdio.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "log.h"

/* Resident bytes of this process (/proc/self/statm), 0 if unreadable. */
static size_t resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (!f)
        return 0;
    int n = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    return n == 2 ? (size_t)resident * (size_t)sysconf(_SC_PAGESIZE) : 0;
}

size_t heap_trim_if_grown(struct heap *h)
{
#ifdef __GLIBC__
    struct mallinfo2 mi = mallinfo2();
    size_t free_bytes = mi.fordblks;
    if (free_bytes < h->free_floor)
        h->free_floor = free_bytes; /* reused since: a new burst counts from here */
    if (free_bytes < h->free_floor + HEAP_TRIM_MIN)
        return 0;
    size_t before = resident_bytes();
    malloc_trim(0);
    size_t after = resident_bytes();
    /* The trimmed pages stay free chunks to malloc: the next check
     * compares with what is free now. */
    h->free_floor = mallinfo2().fordblks;
    size_t released = before > after ? before - after : 0;
    h->metrics->heap_trims++;
    h->metrics->heap_released_bytes += released;
    log_debug("heap_trimmed", "free_bytes=%zu released_bytes=%zu", free_bytes, released);
    return released;
#else
    (void)h;
    return 0;
#endif
}

static void on_check(uv_timer_t *t)
{
    heap_trim_if_grown(t->data);
}

int heap_init(struct heap *h, uv_loop_t *loop, struct metrics *metrics)
{
    h->metrics = metrics;
    h->free_floor = 0;
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
