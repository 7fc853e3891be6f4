/* noise: when the host's own threads ran (bench.h, "noise").
 *
 * A forked monitor reads the run time (/proc/PID/task/TID/schedstat) of
 * every thread of each --noise-pid: the ones that ran lately every
 * NOISE_POLL_US, the others every NOISE_IDLE_POLL_MS (cheaper, and a burst
 * of theirs is then recorded from the previous look, which only widens
 * it). Runs closer than NOISE_JOIN_NS form one burst. The log is a ring in
 * shared memory, written by the monitor alone; seen_ns says how far it is
 * complete. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define NOISE_POLL_US 500
#define NOISE_IDLE_POLL_MS 10
#define NOISE_JOIN_NS 1000000ull
#define NOISE_ACTIVE_NS 5000000000ull /* a thread that ran within this is polled fast */
#define NOISE_MAXTASKS 512

struct task {
    int tid, fd;
    uint64_t run_ns, ran_at;
};

static uint64_t task_run_ns(int fd)
{
    char b[128];
    ssize_t n = pread(fd, b, sizeof b - 1, 0);
    if (n <= 0)
        return 0;
    b[n] = 0;
    return strtoull(b, NULL, 10);
}

/* Opens the threads of pid not yet in tasks; returns the new count. */
static int scan(pid_t pid, struct task *tasks, int n)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return n;
    struct dirent *e;
    while ((e = readdir(d)) && n < NOISE_MAXTASKS) {
        int tid = atoi(e->d_name), known = 0;
        if (tid <= 0)
            continue;
        for (int i = 0; i < n && !known; i++)
            known = tasks[i].tid == tid;
        if (known)
            continue;
        snprintf(path, sizeof path, "/proc/%d/task/%d/schedstat", (int)pid, tid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        tasks[n] = (struct task){.tid = tid, .fd = fd, .run_ns = task_run_ns(fd)};
        n++;
    }
    closedir(d);
    return n;
}

static void note(struct noise_log *log, uint64_t from, uint64_t to, uint64_t ran)
{
    uint64_t n = log->n;
    struct noise_burst *last = n ? &log->b[(n - 1) % NOISE_MAX] : NULL;
    if (last && from <= last->end + NOISE_JOIN_NS) {
        st64(&last->ran_ns, last->ran_ns + ran);
        st64(&last->end, to);
    } else {
        log->b[n % NOISE_MAX] = (struct noise_burst){.start = from, .end = to, .ran_ns = ran};
        __atomic_store_n(&log->n, n + 1, __ATOMIC_RELEASE);
    }
}

void noise_run(const struct bench_opts *o, struct bench_shm *shm)
{
    static struct task tasks[NOISE_MAXTASKS];
    struct noise_log *log = &shm->noise;
    int n = 0;
    for (int i = 0; i < o->n_noise; i++)
        n = scan(o->noise_pid[i], tasks, n);
    uint64_t prev = now_ns(), last_idle = prev, last_scan = prev;
    while (ld(&shm->phase) != PH_STOP) {
        struct timespec ts = {0, NOISE_POLL_US * 1000L};
        nanosleep(&ts, NULL);
        uint64_t t = now_ns(), ran = 0, from = prev;
        int idle_pass = t - last_idle >= NOISE_IDLE_POLL_MS * 1000000ull;
        for (int i = 0; i < n; i++) {
            int active = tasks[i].ran_at && t - tasks[i].ran_at < NOISE_ACTIVE_NS;
            if (!active && !idle_pass)
                continue;
            uint64_t r = task_run_ns(tasks[i].fd);
            if (r > tasks[i].run_ns) {
                ran += r - tasks[i].run_ns;
                if (!active && last_idle < from)
                    from = last_idle; /* it may have run any time since it was last read */
                tasks[i].ran_at = t;
            }
            tasks[i].run_ns = r;
        }
        if (idle_pass)
            last_idle = t;
        if (ran)
            note(log, from, t, ran);
        __atomic_store_n(&log->seen_ns, t, __ATOMIC_RELEASE);
        prev = t;
        if (t - last_scan >= 1000000000ull) { /* threads come and go */
            for (int i = 0; i < o->n_noise; i++)
                n = scan(o->noise_pid[i], tasks, n);
            last_scan = t;
        }
    }
    _exit(0);
}

int noise_overlaps(const struct noise_log *log, uint64_t a, uint64_t b)
{
    uint64_t n = __atomic_load_n(&log->n, __ATOMIC_ACQUIRE);
    for (uint64_t k = n; k > 0 && n - k < NOISE_MAX; k--) {
        const struct noise_burst *x = &log->b[(k - 1) % NOISE_MAX];
        if (ld64(&x->end) + NOISE_SLACK_NS < a)
            return 0; /* the older ones ended earlier still */
        if (x->start <= b)
            return 1;
    }
    return 0;
}
