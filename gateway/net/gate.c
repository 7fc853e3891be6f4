/* gate: the epoll sets of client sockets and when they are read.
 *
 * Every client socket is in one epoll set of ours (net->epfd), which
 * libuv watches as a single descriptor. Through a uv_poll_t per socket,
 * libuv spends four epoll_ctl calls on each connection (a probe ADD and
 * DEL in uv_poll_init, the ADD, the DEL at close) plus an ioctl; here it
 * is one ADD, and close() removes the socket. A socket whose kernel buffer
 * is full also sits in a second set (net->wepfd) until it drains.
 *
 * Client input is sparse when a node is idle (a heartbeat every few ms at
 * host scale) and each wakeup of the process costs more than the read and
 * the reply it serves (README.md, "Why client input is gathered when
 * idle"). So after a wakeup for client input that came within
 * input_batch_ms of the previous one, the set is not watched for
 * input_batch_ms: what arrives meanwhile is read in one pass, until a pass
 * finds nothing and the watch resumes. Deliveries never wait: they start
 * from the Redis socket, watched directly, and are written in the same
 * loop turn. Nor do they wait behind gathered input: while frames go out
 * other than in answer to input (pushes, within the last window), the set
 * stays watched, since the loop wakes for the pushes anyway and a pass
 * over a window's gathered input would hold up the pushes after it. A
 * full batch means the loop is busy anyway, so the set stays watched. So
 * does it while a connection is opening (net->opening): a handshake never
 * waits, and a connect storm runs as without gathering.
 * Nor does a full socket's POLLOUT, which is watched in its own set. Nor
 * does the input of a socket whose frame or fragmented message is not
 * whole yet, or that came in a burst: such a socket moves to a set of its
 * own (net->repfd, input.c decides), watched directly, until its input is
 * done, so a 4 MiB message is read as fast as it comes rather than one
 * read per window.
 *
 * Not watching is done through a gate: libuv watches an epoll set holding
 * only epfd, and a MOD shuts it (no events) or opens it (EPOLLIN).
 * (uv_poll_stop/start would DEL and ADD epfd in libuv's set, and adding an
 * epoll set to another makes the kernel walk every socket in it.) */
#include "conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "log.h"

/* Events per epoll_wait: a connect storm or a broadcast's replies are
 * taken in batches, and libuv calls again while the set stays readable. */
#define EVENT_BATCH 256

/* ---- one pass over a set ---- */

static void read_done(void *ctx, uint64_t user, int result)
{
    struct conn_batch *b = ctx;
    struct conn *c = b->conn[user];
    b->reported[user] = 1;
    if (c->state == CONN_DEAD || result == -EAGAIN || result == -EINTR)
        return;
    if (result <= 0) {
        conn_destroy(c); /* the client went away (or reset) */
        return;
    }
    input_take(c, b->in[user], (size_t)result);
    /* A full slot: there may be more, read at once rather than a pass
     * later; unless the frames led to a close (say 1009 on an oversize
     * frame's header), whose frame must go out before the rest of the
     * stream, unparseable now, ends the connection. */
    if (result == READ_SLOT && c->state == CONN_OPEN)
        input_on_io(c, EPOLLIN);
}

/* Handles what is ready in a client set (epfd or wepfd); returns how many
 * events. The frames of a pass are read with one submit (a heartbeat from
 * each of a gathered pass's clients); anything else in the pass is handled
 * in turn, after the reads queued before it. */
static int pass(struct net *n, int epfd)
{
    struct epoll_event ev[EVENT_BATCH];
    struct conn_batch *b = n->batch;
    unsigned queued = 0;
    int outer = n->in_pass;
    n->in_pass = 1;
    int got = epoll_wait(epfd, ev, EVENT_BATCH, 0);
    for (int i = 0; i < got; i++) {
        struct conn *c = ev[i].data.ptr;
        int batched = b && ev[i].events == EPOLLIN && input_reads_frames(c);
        if (queued && (!batched || queued == BATCH_SOCKETS)) {
            output_batch_run(b, queued, read_done);
            queued = 0;
        }
        if (c->state == CONN_DEAD) /* closed earlier in this batch */
            continue;
        if (batched && batchio_add_recv(&b->io, c->fd, b->in[queued], READ_SLOT, queued) == 0) {
            b->conn[queued] = c;
            b->reported[queued++] = 0;
            continue;
        }
        input_on_io(c, ev[i].events);
    }
    if (queued)
        output_batch_run(b, queued, read_done);
    n->in_pass = outer;
    conn_reap(n);
    return got < 0 ? 0 : got;
}

/* ---- gathering ---- */

/* Opens (EPOLLIN) or shuts (no events) the gate. */
static void gate_set(struct net *n, int open)
{
    struct epoll_event ev = {.events = open ? EPOLLIN : 0};
    n->gathering = !open;
    if (epoll_ctl(n->gate, EPOLL_CTL_MOD, n->epfd, &ev) < 0)
        log_error("conn_gate_failed", "error=\"epoll_ctl: %s\"", strerror(errno));
}

void gate_opening(struct net *n)
{
    if (!n->gathering)
        return;
    uv_timer_stop(&n->gather);
    gate_set(n, 1);
}

/* Pushes went out within the window: the loop wakes for them anyway, and
 * input gathered meanwhile would be read in one pass that the next pushes
 * wait behind (the p99 of a delivery, BENCHMARKS.md). */
static int pushing(const struct net *n)
{
    return n->pushed_at && uv_now(n->loop) - n->pushed_at < (uint64_t)n->opt.input_batch_ms;
}

void gate_turn_end(struct net *n)
{
    if (n->gathering && pushing(n))
        gate_opening(n);
}

static void on_gather(uv_timer_t *t);

/* After a pass over the client set: gather for a while, unless the loop
 * is busy (a full batch), a connection is opening or pushes are going out. */
static void gather_or_watch(struct net *n, int got)
{
    if (got < EVENT_BATCH && !n->opening && !pushing(n)) {
        if (!n->gathering)
            gate_set(n, 0);
        uv_timer_start(&n->gather, on_gather, (uint64_t)n->opt.input_batch_ms, 0);
    } else if (n->gathering) {
        gate_set(n, 1);
    }
}

static void on_gather(uv_timer_t *t)
{
    struct net *n = t->data;
    int got = pass(n, n->epfd);
    if (got == 0 && n->gathering)
        gate_set(n, 1); /* quiet: sleep until the next arrival */
    else
        gather_or_watch(n, got);
}

/* The transport behind a poll of a client set, or NULL after logging the
 * poll's error. */
static struct net *polled(uv_poll_t *h, int status)
{
    if (status < 0) {
        log_error("conn_poll_failed", "error=\"%s\"", uv_strerror(status));
        return NULL;
    }
    return h->data;
}

static void on_write_events(uv_poll_t *h, int status, int events)
{
    struct net *n = polled(h, status);
    (void)events;
    if (n)
        pass(n, n->wepfd);
}

static void on_read_on_events(uv_poll_t *h, int status, int events)
{
    struct net *n = polled(h, status);
    (void)events;
    if (n)
        pass(n, n->repfd);
}

static void on_conn_events(uv_poll_t *h, int status, int events)
{
    struct net *n = polled(h, status);
    (void)events;
    if (!n)
        return;
    int got = pass(n, n->epfd);
    if (n->gate < 0)
        return;
    /* Input sparser than one wakeup per window is read as it comes:
     * gathering it would only add a timer's wakeup to each arrival. */
    uint64_t now = uv_now(n->loop);
    int frequent = now - n->woken < (uint64_t)n->opt.input_batch_ms;
    n->woken = now;
    if (frequent)
        gather_or_watch(n, got);
}

/* ---- start and stop ---- */

/* Batched reads and writes when asked for and io_uring works here; else a
 * call per socket. */
static void batch_open(struct net *n)
{
    if (!n->opt.io_uring)
        return;
    struct conn_batch *b = malloc(sizeof(*b));
    char err[160];
    if (b && batchio_init(&b->io, BATCH_SOCKETS, err, sizeof(err)) == 0) {
        n->batch = b;
        log_info("io_uring", "reads=batched writes=batched sockets_per_submit=%d", BATCH_SOCKETS);
        return;
    }
    log_warn("io_uring_unavailable", "reason=\"%s\" reads=read writes=sendmsg",
             b ? err : "out of memory");
    free(b);
}

/* The set of sockets read on at once, when there is gathering to bypass. */
static int read_on_start(struct net *n)
{
    int rc;
    if ((n->repfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
        return -errno;
    if ((rc = uv_poll_init(n->loop, &n->rpoll, n->repfd)) < 0)
        return rc;
    n->rpoll.data = n;
    return uv_poll_start(&n->rpoll, UV_READABLE, on_read_on_events);
}

int gate_start(struct net *n)
{
    n->gate = n->repfd = -1;
    n->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (n->epfd < 0)
        return -errno;
    int watched = n->epfd, rc;
    if ((n->wepfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        rc = -errno;
        goto fail;
    }
    if ((rc = uv_poll_init(n->loop, &n->wpoll, n->wepfd)) < 0)
        goto fail;
    n->wpoll.data = n;
    if ((rc = uv_poll_start(&n->wpoll, UV_READABLE, on_write_events)) < 0)
        goto fail;
    if (n->opt.input_batch_ms > 0) {
        struct epoll_event ev = {.events = EPOLLIN};
        if ((n->gate = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
            epoll_ctl(n->gate, EPOLL_CTL_ADD, n->epfd, &ev) < 0) {
            rc = -errno;
            goto fail;
        }
        if ((rc = read_on_start(n)) < 0)
            goto fail;
        watched = n->gate;
    }
    if ((rc = uv_poll_init(n->loop, &n->poll, watched)) < 0)
        goto fail;
    batch_open(n);
    n->poll.data = n;
    uv_timer_init(n->loop, &n->gather);
    n->gather.data = n;
    return uv_poll_start(&n->poll, UV_READABLE, on_conn_events);
fail: /* start-up fails and the process exits (main): the polls need no close */
    if (n->repfd >= 0)
        close(n->repfd);
    if (n->gate >= 0)
        close(n->gate);
    if (n->wepfd >= 0)
        close(n->wepfd);
    close(n->epfd);
    n->gate = n->wepfd = n->epfd = n->repfd = -1;
    return rc;
}

static void on_poll_closed(uv_handle_t *h)
{
    struct net *n = h->data;
    close(n->epfd);
    if (n->gate >= 0)
        close(n->gate);
    n->epfd = n->gate = -1;
}

static void on_rpoll_closed(uv_handle_t *h)
{
    struct net *n = h->data;
    close(n->repfd);
    n->repfd = -1;
}

static void on_wpoll_closed(uv_handle_t *h)
{
    struct net *n = h->data;
    close(n->wepfd);
    n->wepfd = -1;
}

void gate_stop(struct net *n)
{
    if (n->batch) {
        batchio_free(&n->batch->io);
        free(n->batch);
        n->batch = NULL;
    }
    if (n->epfd >= 0 && !uv_is_closing((uv_handle_t *)&n->poll)) {
        uv_timer_stop(&n->gather);
        uv_close((uv_handle_t *)&n->gather, NULL);
        uv_close((uv_handle_t *)&n->poll, on_poll_closed);
        uv_close((uv_handle_t *)&n->wpoll, on_wpoll_closed);
        if (n->repfd >= 0)
            uv_close((uv_handle_t *)&n->rpoll, on_rpoll_closed);
    }
}
