/* wallclock: the wall clock in Unix milliseconds (token exp, presence
 * scores, connection ids, replay floors). The loop's uv_now() is the clock
 * for timeouts; this one is for values compared with other machines'. */
#ifndef NOTIFY_WALLCLOCK_H
#define NOTIFY_WALLCLOCK_H

#include <stdint.h>
#include <sys/time.h>

static inline int64_t wallclock_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

#endif
