/* batchsend: the writes of many sockets in one system call (io_uring).
 *
 * On these machines a system call costs about 2 us of CPU on its own (a
 * paravirtualised guest: getppid() takes 1.97 us), and a 100-byte send()
 * on loopback 3.2 us; the same sends queued on an io_uring and submitted
 * 256 at a time cost 1.45 us each (BENCHMARKS.md). A loop turn's writes
 * (deliveries, heartbeat replies, the 15,000 frames of a broadcast) go out
 * that way. Each is a sendmsg with MSG_DONTWAIT, which the kernel runs
 * inline during the submit: its result is in when batchsend_run returns
 * and means what sendmsg's would (bytes written, or -EAGAIN when the
 * socket is full, never a wait).
 *
 * Where io_uring is not available (an old kernel, a seccomp profile that
 * forbids it, as Docker's default does) batchsend_init fails and the
 * caller writes with sendmsg, one call per socket. */
#ifndef NOTIFY_BATCHSEND_H
#define NOTIFY_BATCHSEND_H

#include <liburing.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct batchsend {
    struct io_uring ring; /* valid when ready */
    unsigned cap;         /* sends per run */
    unsigned queued;      /* sends added since the last run */
    int ready;            /* the ring is set up */
};

/* Sets up a ring for cap sends per run. Returns 0, or -1 with the reason
 * in err (then batchsend_add refuses everything). */
int batchsend_init(struct batchsend *b, unsigned cap, char *err, size_t errlen);

void batchsend_free(struct batchsend *b);

/* Queues sendmsg(fd, m, MSG_NOSIGNAL | MSG_DONTWAIT); m and the bytes it
 * points to must stay as they are until batchsend_run returns. Returns 0,
 * or -1 when the ring is full or not ready. */
int batchsend_add(struct batchsend *b, int fd, const struct msghdr *m, uint64_t user);

/* Called once per queued send with its user value and its result (bytes
 * written or -errno). */
typedef void batchsend_done_fn(void *ctx, uint64_t user, int result);

/* Submits every queued send, waits until all have completed (at once:
 * none can block) and reports each to done. Returns how many could not be
 * reported (0 unless the ring itself failed, which a ring used by one
 * thread does not): whether those were written is unknown. */
unsigned batchsend_run(struct batchsend *b, batchsend_done_fn *done, void *ctx);

#endif
