#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

/* Accepts at most this many sockets per readable event, so a connect storm
 * cannot starve the rest of the loop. */
#define ACCEPT_BATCH 64
/* How long accepting pauses when it cannot go on (out of descriptors
 * with no spare, or out of kernel memory). */
#define ACCEPT_PAUSE_MS 100

static void on_readable(uv_poll_t *h, int status, int events);

static void on_pause_over(uv_timer_t *t)
{
    struct listener *l = t->data;
    if (l->polling)
        uv_poll_start(&l->poll, UV_READABLE, on_readable);
}

static void pause_accepting(struct listener *l)
{
    uv_poll_stop(&l->poll);
    uv_timer_start(&l->pause_timer, on_pause_over, ACCEPT_PAUSE_MS, 0);
}

/* Out of descriptors: the waiting clients are accepted on the spare one
 * and closed (they see the connection closed and try again, elsewhere on
 * a shared port); without a spare, accepting pauses, as polling on a
 * backlog that cannot be taken would spin the loop. */
static void refuse_backlog(struct listener *l)
{
    if (l->spare_fd < 0) {
        pause_accepting(l);
        return;
    }
    close(l->spare_fd);
    int n = 0;
    for (int fd; n < ACCEPT_BATCH && (fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC)) >= 0; n++)
        close(fd);
    l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    uint64_t before = l->refused;
    l->refused += (uint64_t)n;
    if (n && (!before || before / 1000 != l->refused / 1000)) /* about once per 1,000 */
        log_warn("accept_refused", "reason=\"out of descriptors\" count=%llu",
                 (unsigned long long)l->refused);
    if (l->spare_fd < 0 || !n)
        pause_accepting(l);
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    struct listener *l = h->data;
    (void)events;
    if (status < 0) {
        log_warn("listener_poll_error", "error=%s", uv_strerror(status));
        return;
    }
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return;
            if (errno == EMFILE || errno == ENFILE) {
                refuse_backlog(l);
                return;
            }
            if (l->accept_errors++ % 1000 == 0)
                log_warn("accept_failed", "error=\"%s\" count=%llu", strerror(errno),
                         (unsigned long long)l->accept_errors);
            /* the pending connection stays in the backlog and the socket
             * readable: polling on would spin the loop */
            if (errno == ENOBUFS || errno == ENOMEM)
                pause_accepting(l);
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        l->accept(l->ctx, fd);
    }
}

int listener_open(struct listener *l, uv_loop_t *loop, listener_accept_fn *accept, void *ctx,
                  const char *host, int port, int reuse_port, char *err, size_t errlen)
{
    memset(l, 0, sizeof(*l));
    l->fd = -1;
    l->spare_fd = -1;
    l->accept = accept;
    l->ctx = ctx;
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    int rc = getaddrinfo(*host ? host : NULL, portstr, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        freeaddrinfo(res);
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
        snprintf(err, errlen, "SO_REUSEPORT: %s", strerror(errno));
        goto fail;
    }
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0) {
        snprintf(err, errlen, "bind %s:%d: %s", host, port, strerror(errno));
        goto fail;
    }
    if (listen(fd, 4096) < 0) {
        snprintf(err, errlen, "listen: %s", strerror(errno));
        goto fail;
    }
    freeaddrinfo(res);
    if ((rc = uv_poll_init(loop, &l->poll, fd)) < 0) {
        snprintf(err, errlen, "uv_poll_init: %s", uv_strerror(rc));
        close(fd);
        return -1;
    }
    l->fd = fd;
    l->polling = 1;
    l->poll.data = l;
    uv_timer_init(loop, &l->pause_timer);
    l->pause_timer.data = l;
    l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    uv_poll_start(&l->poll, UV_READABLE, on_readable);
    return 0;
fail:
    freeaddrinfo(res);
    close(fd);
    return -1;
}

static void on_poll_closed(uv_handle_t *h)
{
    struct listener *l = h->data;
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
}

void listener_close(struct listener *l)
{
    if (!l->polling)
        return;
    l->polling = 0;
    if (l->spare_fd >= 0)
        close(l->spare_fd);
    l->spare_fd = -1;
    uv_timer_stop(&l->pause_timer);
    uv_close((uv_handle_t *)&l->pause_timer, NULL);
    uv_poll_stop(&l->poll);
    uv_close((uv_handle_t *)&l->poll, on_poll_closed);
}
