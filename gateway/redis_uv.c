#include "redis_uv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads per readable event: 16 x 64 KiB = 1 MiB of replies at most. */
#define READ_ROUNDS 16
#define READ_CHUNK (64 * 1024)

/* Exported by hiredis 0.14 (async.c) but not declared in async.h: runs the
 * callbacks of every complete reply in the context's reader. */
void redisProcessCallbacks(redisAsyncContext *ac);

/* The glue between one context and its uv_poll. hiredis calls cleanup when
 * it frees the context; the poll handle is then closed and this struct
 * freed in the close callback, never earlier, because libuv may still
 * reference the handle. */
struct redis_uv {
    redisAsyncContext *ac; /* NULL once hiredis has freed the context */
    uv_poll_t poll;        /* watches the context's socket */
    int events;            /* UV_READABLE | UV_WRITABLE wanted by hiredis */
    int armed;             /* what the poll handle watches now */
};

static void on_poll(uv_poll_t *handle, int status, int events)
{
    struct redis_uv *p = handle->data;
    if (status < 0) {
        /* Let hiredis discover the error itself: while connecting it checks
         * SO_ERROR on a write event, once connected a read returns it. */
        events = (p->events & UV_WRITABLE) ? UV_WRITABLE : UV_READABLE;
    }
    if (p->ac && (events & UV_READABLE)) {
        if (!(p->ac->c.flags & REDIS_CONNECTED)) {
            redisAsyncHandleRead(p->ac); /* hiredis finishes connecting */
        } else {
            /* We read and hiredis parses: it reads 16 KiB per call, and
             * under a burst of pub/sub messages one read per loop turn
             * leaves them waiting behind every socket serviced in between;
             * asking the kernel how much is left (FIONREAD) cost a syscall
             * per event. 64 KiB reads, until one comes back short (bounded,
             * so one connection cannot starve the loop). */
            char buf[READ_CHUNK];
            for (int i = 0; i < READ_ROUNDS && p->ac; i++) {
                ssize_t n = read(p->ac->c.fd, buf, sizeof(buf));
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                    break;
                if (n <= 0) {
                    redisAsyncHandleRead(p->ac); /* hiredis meets the EOF or error itself */
                    break;
                }
                /* A reader in error refuses the bytes; processing then
                 * meets the error and disconnects, as hiredis's own read. */
                redisReaderFeed(p->ac->c.reader, buf, (size_t)n);
                redisProcessCallbacks(p->ac); /* may free the context (p->ac = NULL) */
                if ((size_t)n < sizeof(buf))
                    break;
            }
        }
    }
    if (p->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
}

/* hiredis asks for writes once per queued command; libuv 1.44's
 * uv_poll_start() removes the descriptor from epoll at once (and adds it
 * back on the next poll) even when nothing changes, which cost a failing
 * epoll_ctl per command (4,500 a second with presence refreshes at 15,000
 * connections, seen with strace). Only real changes reach libuv. */
static void update(struct redis_uv *p)
{
    if (uv_is_closing((uv_handle_t *)&p->poll) || p->events == p->armed)
        return;
    p->armed = p->events;
    if (p->events)
        uv_poll_start(&p->poll, p->events, on_poll);
    else
        uv_poll_stop(&p->poll);
}

static void add_read(void *data)
{
    struct redis_uv *p = data;
    p->events |= UV_READABLE;
    update(p);
}

static void del_read(void *data)
{
    struct redis_uv *p = data;
    p->events &= ~UV_READABLE;
    update(p);
}

static void add_write(void *data)
{
    struct redis_uv *p = data;
    p->events |= UV_WRITABLE;
    update(p);
}

static void del_write(void *data)
{
    struct redis_uv *p = data;
    p->events &= ~UV_WRITABLE;
    update(p);
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

static void cleanup(void *data)
{
    struct redis_uv *p = data;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->poll, on_closed);
}

redisAsyncContext *redis_uv_connect(uv_loop_t *loop, const char *host, int port, const char *user,
                                    const char *password, redisCallbackFn *auth_cb, void *data)
{
    redisAsyncContext *ac = redisAsyncConnect(host, port);
    if (!ac)
        return NULL;
    if (ac->err || redis_uv_attach(ac, loop) < 0) {
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = data;
    if (password[0]) {
        if (user[0])
            redisAsyncCommand(ac, auth_cb, NULL, "AUTH %s %s", user, password);
        else
            redisAsyncCommand(ac, auth_cb, NULL, "AUTH %s", password);
    }
    return ac;
}

int redis_reply_is(const redisReply *reply, const char *s)
{
    return reply->type == REDIS_REPLY_STRING && reply->len == strlen(s) &&
           !memcmp(reply->str, s, reply->len);
}

int redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    if (ac->ev.data)
        return -1;
    struct redis_uv *p = calloc(1, sizeof(*p));
    if (!p)
        return -1;
    if (uv_poll_init(loop, &p->poll, ac->c.fd) != 0) {
        free(p);
        return -1;
    }
    p->poll.data = p;
    p->ac = ac;
    ac->ev.data = p;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    return 0;
}
