/* net: the transport as a whole (net.h): its set-up, its routes, accepting
 * and teardown. */
#include "conn.h"

#include <stdlib.h>
#include <string.h>

/* The farthest a timer reaches (conn_set_timer): one further off comes up
 * here, and its handler sets it again. */
#define TIMER_REACH_MS (10 * 60 * 1000)

/* The listener's: an accepted socket starts with its request head. */
static void on_accept(void *ctx, int fd)
{
    struct net *n = ctx;
    if (conn_new(n, fd))
        gate_opening(n); /* its request is read as soon as it comes */
}

/* Before the loop waits: the gate (pushes open it) and this turn's output. */
static void on_turn_end(uv_prepare_t *h)
{
    gate_turn_end(h->data);
    output_flush_all(h);
}

int net_init(struct net *n, uv_loop_t *loop, const struct net_options *opt, struct metrics *metrics,
             net_adopt_fn *adopt, void *adopt_ctx)
{
    memset(n, 0, sizeof(*n));
    n->epfd = n->gate = n->wepfd = n->repfd = -1;
    n->listener.fd = -1;
    n->opt = *opt;
    n->loop = loop;
    n->metrics = metrics;
    n->adopt = adopt;
    n->adopt_ctx = adopt_ctx;
    /* A short partial frame is carried over to the next read through it; a
     * long one is read into its own buffer (input.c). */
    n->rbuf = malloc(READ_BUF);
    n->wbuf = malloc(CONN_GATHER_MAX);
    if (!n->rbuf || !n->wbuf)
        return UV_ENOMEM;
    int rc = wheel_init(&n->timers, loop, 1000, TIMER_REACH_MS, offsetof(struct conn, timer),
                        conn_on_timer, n);
    if (rc < 0)
        return rc;
    if ((rc = gate_start(n)) < 0)
        return rc;
    uv_prepare_init(loop, &n->flush_prep);
    n->flush_prep.data = n;
    uv_prepare_start(&n->flush_prep, on_turn_end);
    uv_unref((uv_handle_t *)&n->flush_prep);
    uv_timer_init(loop, &n->route_timer);
    n->route_timer.data = n;
    n->started = 1;
    return 0;
}

void net_set_screen(struct net *n, net_screen_fn *screen)
{
    n->screen = screen;
}

int net_route(struct net *n, const char *path, const struct net_handlers *h, void *ctx)
{
    size_t len = strlen(path);
    if (n->n_routes == NET_ROUTES_MAX || len >= NET_PATH_MAX || len == 0)
        return -1;
    struct net_route *r = &n->routes[n->n_routes++];
    memcpy(r->path, path, len + 1);
    r->len = len;
    r->h = h;
    r->ctx = ctx;
    size_t peek = 4 + len + 1; /* "GET " path, then ' ' or '?' */
    if (peek > n->peek_len)
        n->peek_len = peek;
    return 0;
}

int net_listen(struct net *n, const char *host, int port, int reuse_port, char *err, size_t errlen)
{
    return listener_open(&n->listener, n->loop, on_accept, n, host, port, reuse_port, err, errlen);
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void net_unlisten(struct net *n)
{
    listener_close(&n->listener);
}

void net_close(struct net *n)
{
    listener_close(&n->listener);
    if (!n->started)
        return;
    n->started = 0;
    while (n->open)
        conn_destroy(n->open);
    while (n->opening)
        conn_destroy(n->opening);
    conn_reap(n);
    gate_stop(n);
    uv_prepare_stop(&n->flush_prep);
    close_handle((uv_handle_t *)&n->flush_prep);
    uv_timer_stop(&n->route_timer);
    close_handle((uv_handle_t *)&n->route_timer);
    wheel_close(&n->timers);
}

void net_free(struct net *n)
{
    free(n->rbuf);
    free(n->wbuf);
    n->rbuf = n->wbuf = NULL;
}

int net_batched(const struct net *n)
{
    return n->batch != NULL;
}
