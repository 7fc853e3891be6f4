/* listener: the listening socket, opened by us rather than by lws.
 *
 * lws 4.1 ignores its listen-share option, and with a foreign loop a busy
 * port leaves a half-made context. Opening the socket ourselves gives
 * SO_REUSEPORT (several processes on one port, the kernel spreading
 * connections), a clean error when the port is taken, and a single place
 * to stop accepting when draining. Each accepted socket (nonblocking, with
 * TCP_NODELAY) goes to the accept function given to listener_open.
 *
 * A process out of descriptors cannot accept, and a client left in its
 * backlog would wait for its own timeout while the other processes of
 * the port have room: one descriptor is kept spare, and given up to
 * accept such clients and close them at once, so they try again. */
#ifndef NOTIFY_LISTENER_H
#define NOTIFY_LISTENER_H

#include <uv.h>

/* Takes an accepted socket. */
typedef void listener_accept_fn(void *ctx, int fd);

struct listener {
    int fd;                     /* listening socket, -1 when closed */
    uv_poll_t poll;             /* readable = connections waiting */
    uv_timer_t pause_timer;     /* resumes accepting after running out of descriptors */
    int polling;                /* poll handle initialised and not closed */
    listener_accept_fn *accept; /* where accepted sockets go */
    void *ctx;                  /* passed to accept */
    uint64_t accept_errors;     /* accept() failures other than EAGAIN */
    int spare_fd;               /* /dev/null, given up when out of descriptors */
    uint64_t refused;           /* clients closed at once for want of descriptors */
};

/* Binds host:port (numeric or resolvable), listens and starts accepting
 * into accept(ctx, fd). Returns 0, or -1 with a reason in err. */
int listener_open(struct listener *l, uv_loop_t *loop, listener_accept_fn *accept, void *ctx,
                  const char *host, int port, int reuse_port, char *err, size_t errlen);

/* Stops accepting and closes the socket; safe to call twice. */
void listener_close(struct listener *l);

#endif
