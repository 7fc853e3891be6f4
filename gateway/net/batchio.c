#include "batchio.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int batchio_init(struct batchio *b, unsigned cap, char *err, size_t errlen)
{
    memset(b, 0, sizeof(*b));
    int rc = io_uring_queue_init(cap, &b->ring, 0);
    if (rc < 0) {
        snprintf(err, errlen, "io_uring_queue_init: %s", strerror(-rc));
        return -1;
    }
    b->cap = cap;
    b->ready = 1;
    return 0;
}

void batchio_free(struct batchio *b)
{
    if (b->ready)
        io_uring_queue_exit(&b->ring);
    b->ready = 0;
}

/* The next free entry, or NULL when the ring is full or not ready. */
static struct io_uring_sqe *next_sqe(struct batchio *b)
{
    if (!b->ready || b->queued == b->cap)
        return NULL;
    return io_uring_get_sqe(&b->ring);
}

/* MSG_DONTWAIT is what keeps a run from waiting: with it io_uring
 * completes an operation that would block with -EAGAIN, instead of
 * arming a poll and finishing it later. */
int batchio_add_sendmsg(struct batchio *b, int fd, const struct msghdr *m, uint64_t user)
{
    struct io_uring_sqe *sqe = next_sqe(b);
    if (!sqe)
        return -1;
    io_uring_prep_sendmsg(sqe, fd, m, MSG_NOSIGNAL | MSG_DONTWAIT);
    io_uring_sqe_set_data64(sqe, user);
    b->queued++;
    return 0;
}

int batchio_add_recv(struct batchio *b, int fd, void *buf, size_t len, uint64_t user)
{
    struct io_uring_sqe *sqe = next_sqe(b);
    if (!sqe)
        return -1;
    io_uring_prep_recv(sqe, fd, buf, len, MSG_DONTWAIT);
    io_uring_sqe_set_data64(sqe, user);
    b->queued++;
    return 0;
}

unsigned batchio_run(struct batchio *b, batchio_done_fn *done, void *ctx)
{
    unsigned left = b->queued;
    b->queued = 0;
    if (!left)
        return 0;
    int rc;
    do
        rc = io_uring_submit_and_wait(&b->ring, left);
    while (rc == -EINTR);
    while (left) {
        struct io_uring_cqe *cqe;
        rc = io_uring_wait_cqe(&b->ring, &cqe);
        if (rc == -EINTR)
            continue;
        if (rc < 0)
            return left; /* cannot happen with a ring of our own */
        uint64_t user = io_uring_cqe_get_data64(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&b->ring, cqe);
        left--;
        done(ctx, user, res);
    }
    return 0;
}
