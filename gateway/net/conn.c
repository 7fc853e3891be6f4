#include "conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "log.h"

/* A request head must be complete within this. */
#define HEAD_TIMEOUT_MS 10000

/* Every close code the server sends: its reason text and its metric. */
static const struct {
    uint16_t code;
    const char *text;
    enum close_reason reason;
} close_kinds[] = {
    {1001, "node draining", CLOSE_DRAINING},
    {1002, "protocol error", CLOSE_PROTOCOL},
    {1007, "invalid UTF-8", CLOSE_PROTOCOL},
    {1008, "policy violation", CLOSE_POLICY},
    {1009, "message too big", CLOSE_TOO_BIG},
    {1011, "internal error", CLOSE_CLIENT},
    {1013, "slow consumer", CLOSE_SLOW_CONSUMER},
    {4401, "token expired", CLOSE_TOKEN_EXPIRED},
    {4408, "heartbeat timeout", CLOSE_HEARTBEAT_TIMEOUT},
};

const char *conn_close_text(uint16_t code)
{
    for (size_t i = 0; i < sizeof(close_kinds) / sizeof(close_kinds[0]); i++)
        if (close_kinds[i].code == code)
            return close_kinds[i].text;
    return "";
}

enum close_reason conn_close_reason(uint16_t code)
{
    for (size_t i = 0; i < sizeof(close_kinds) / sizeof(close_kinds[0]); i++)
        if (close_kinds[i].code == code)
            return close_kinds[i].reason;
    return CLOSE_CLIENT; /* 0: the client closed or vanished */
}

/* ---- lists: sockets opening, sockets open ---- */

static void list_link(struct conn **head, struct conn *c)
{
    c->prev = NULL;
    c->next = *head;
    if (*head)
        (*head)->prev = c;
    *head = c;
}

static void list_unlink(struct conn *c)
{
    struct net *n = c->net;
    if (c->prev)
        c->prev->next = c->next;
    else if (n->opening == c)
        n->opening = c->next;
    else if (n->open == c)
        n->open = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

/* ---- the flush list ---- */

void conn_flush_unlink(struct conn *c)
{
    if (!c->flushing)
        return;
    struct net *n = c->net;
    if (c->flush_prev)
        c->flush_prev->flush_next = c->flush_next;
    else
        n->flush = c->flush_next;
    if (c->flush_next)
        c->flush_next->flush_prev = c->flush_prev;
    else
        n->flush_tail = c->flush_prev;
    c->flush_prev = c->flush_next = NULL;
    c->flushing = 0;
}

void conn_flush_later(struct conn *c)
{
    if (c->flushing || c->want_write || c->hold || c->state == CONN_DEAD)
        return;
    struct net *n = c->net;
    /* At the back: the socket whose output was queued first is written
     * first, so a long turn (a backlog from Redis after the node waited
     * for the CPU) does not hold its oldest deliveries to the end. */
    c->flushing = 1;
    c->flush_next = NULL;
    c->flush_prev = n->flush_tail;
    if (n->flush_tail)
        n->flush_tail->flush_next = c;
    else
        n->flush = c;
    n->flush_tail = c;
}

/* ---- the client set ---- */

int conn_watch(struct conn *c, int op, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    return epoll_ctl(c->net->epfd, op, c->fd, &ev);
}

void conn_read_on(struct conn *c, int on)
{
    struct net *n = c->net;
    if (c->read_on == on || n->repfd < 0 || c->state == CONN_DEAD)
        return;
    /* In one set at a time: events 0 in the client set (where a hang-up
     * would still be reported, and read as one). */
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(n->repfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, c->fd, &ev) < 0) {
        log_warn("read_on_failed", "fd=%d error=\"epoll_ctl: %s\"", c->fd, strerror(errno));
        return; /* it stays where it was, still read */
    }
    c->read_on = (uint8_t)on;
    conn_watch(c, EPOLL_CTL_MOD, on ? 0 : EPOLLIN);
}

/* ---- lifetime ---- */

/* Frees a conn. Called only between batches of events (conn_reap), so no
 * event still in hand can point at it. */
static void conn_free(struct conn *c)
{
    if (c->data && c->route && conn_route(c)->h->on_free)
        conn_route(c)->h->on_free(conn_route(c)->ctx, c->data);
    while (c->q_len) {
        frame_unref(c->q[c->q_head]);
        c->q_head = (c->q_head + 1) & (c->q_cap - 1);
        c->q_len--;
    }
    free(c->q);
    free(c->rx);
    free(c->in);
    free(c);
}

void conn_reap(struct net *n)
{
    while (n->dead) {
        struct conn *c = n->dead;
        n->dead = c->next;
        conn_free(c);
    }
}

/* Marks c dead; it is freed by the next conn_reap. */
static void bury(struct conn *c)
{
    c->state = CONN_DEAD;
    c->prev = NULL;
    c->next = c->net->dead;
    c->net->dead = c;
}

struct conn *conn_new(struct net *n, int fd)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) {
        log_warn("accept_dropped", "error=\"out of memory\"");
        close(fd);
        return NULL;
    }
    c->net = n;
    c->fd = fd;
    if (conn_watch(c, EPOLL_CTL_ADD, EPOLLIN) < 0) {
        log_warn("accept_dropped", "error=\"epoll_ctl: %s\"", strerror(errno));
        free(c);
        close(fd);
        return NULL;
    }
    wheel_link_init(&c->timer);
    c->state = CONN_HEAD;
    list_link(&n->opening, c);
    wheel_schedule(&n->timers, c, uv_now(n->loop) + HEAD_TIMEOUT_MS);
    return c;
}

void conn_destroy(struct conn *c)
{
    if (c->state == CONN_DEAD)
        return;
    struct net *n = c->net;
    if (c->data)
        conn_route(c)->h->on_gone(conn_route(c)->ctx, c);
    list_unlink(c);
    wheel_cancel(&n->timers, c);
    conn_flush_unlink(c);
    n->metrics->queued_bytes -= c->q_bytes;
    c->q_bytes = 0;
    close(c->fd); /* also takes it out of the epoll sets */
    c->fd = -1;
    bury(c);
}

void conn_hand_off(struct conn *c)
{
    struct net *n = c->net;
    int fd = c->fd;
    list_unlink(c);
    wheel_cancel(&n->timers, c);
    conn_watch(c, EPOLL_CTL_DEL, 0); /* ours no more */
    bury(c);
    n->adopt(n->adopt_ctx, fd);
}

void conn_headed(struct conn *c)
{
    if (c->state != CONN_OPEN)
        return; /* refused (lingering on net->opening) or closed */
    list_unlink(c);
    list_link(&c->net->open, c);
}

/* The timer wheel: a head or a close that never came ends the socket; an
 * open connection's own timer is its route's business. */
void conn_on_timer(void *data, void *item, uint64_t now)
{
    struct conn *c = item;
    (void)data;
    (void)now;
    if (c->state == CONN_OPEN) {
        conn_route(c)->h->on_timeout(conn_route(c)->ctx, c);
        return;
    }
    if (c->state == CONN_HEAD)
        c->net->metrics->rejected[REJECT_TIMEOUT]++;
    conn_destroy(c);
}

void conn_set_timer(struct conn *c, uint64_t at_ms)
{
    if (c->state == CONN_OPEN)
        wheel_schedule(&c->net->timers, c, at_ms);
}

/* ---- accessors ---- */

void *conn_data(const struct conn *c)
{
    return c->data;
}

void conn_set_data(struct conn *c, void *data)
{
    c->data = data;
}

int conn_fd(const struct conn *c)
{
    return c->fd;
}

int conn_is_open(const struct conn *c)
{
    return c->state == CONN_OPEN;
}

uint16_t conn_close_code(const struct conn *c)
{
    return c->close_code;
}
