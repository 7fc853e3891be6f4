/* batchio: the reads and writes of many sockets in one system call
 * (io_uring).
 *
 * On these machines (paravirtualised guests) a system call is expensive in
 * itself, and sends queued on an io_uring and submitted together cost
 * much less each than one send() per call (README.md, "Why writes go
 * through io_uring"; the figures are in BENCHMARKS.md). A loop turn's
 * writes (deliveries, heartbeat replies, the frames of a broadcast) and a
 * gathered pass's reads (the heartbeats of many clients) go out that way.
 * Each is a sendmsg or a recv with MSG_DONTWAIT, which the kernel runs
 * inline during the submit: its result is in when batchio_run returns and
 * means what the plain call's would (bytes, 0 at a recv's end of stream,
 * or -EAGAIN when the socket is full or empty, never a wait).
 *
 * Where io_uring is not available (an old kernel, a seccomp profile that
 * forbids it, as Docker's default does) batchio_init fails and the caller
 * uses sendmsg and read, one call per socket. */
#ifndef NOTIFY_BATCHIO_H
#define NOTIFY_BATCHIO_H

#include <liburing.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct batchio {
    struct io_uring ring; /* valid when ready */
    unsigned cap;         /* operations per run */
    unsigned queued;      /* operations added since the last run */
    int ready;            /* the ring is set up */
};

/* Sets up a ring for cap operations per run. Returns 0, or -1 with the
 * reason in err (then batchio_add_* refuse everything). */
int batchio_init(struct batchio *b, unsigned cap, char *err, size_t errlen);

void batchio_free(struct batchio *b);

/* Queues sendmsg(fd, m, MSG_NOSIGNAL | MSG_DONTWAIT); m and the bytes it
 * points to must stay as they are until batchio_run returns. Returns 0,
 * or -1 when the ring is full or not ready. */
int batchio_add_sendmsg(struct batchio *b, int fd, const struct msghdr *m, uint64_t user);

/* Queues recv(fd, buf, len, MSG_DONTWAIT); buf must stay until
 * batchio_run returns. Returns 0, or -1 when the ring is full or not
 * ready. */
int batchio_add_recv(struct batchio *b, int fd, void *buf, size_t len, uint64_t user);

/* Called once per queued operation with its user value and its result
 * (bytes or -errno). */
typedef void batchio_done_fn(void *ctx, uint64_t user, int result);

/* Submits everything queued, waits until all have completed (at once:
 * none can block) and reports each to done, which must not queue on b.
 * Returns how many could not be reported (0 unless the ring itself
 * failed, which a ring used by one thread does not): whether those
 * happened is unknown. */
unsigned batchio_run(struct batchio *b, batchio_done_fn *done, void *ctx);

#endif
