#include "redis_uv.h"

#include <errno.h>
#include <hiredis/sds.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "resp.h"

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
    redisAsyncContext *ac;              /* NULL once hiredis has freed the context */
    uv_poll_t poll;                     /* watches the context's socket */
    int events;                         /* UV_READABLE | UV_WRITABLE wanted by hiredis */
    int armed;                          /* what the poll handle watches now */
    const struct redis_uv_pushes *take; /* every reply read in place, when set */
    char *in;                           /* with take: bytes read, from the start of the */
    size_t in_len;                      /* first reply not yet complete */
    size_t in_cap;
    /* Liveness (redis_uv_stalled), in clock_ms(): */
    uint64_t heard_at;     /* the last read that got bytes */
    uint64_t wrote_at;     /* the last write the kernel took bytes of */
    uint64_t written;      /* bytes the kernel took, ever */
    int marked;            /* a request waits for its answer: */
    uint64_t mark;         /* written reaches this once it has left */
    uint64_t mark_at;      /* when it was marked */
    uint64_t mark_sent_at; /* when it left, 0 = not yet */
};

/* Real time, not the loop's: a turn that runs long (a starved process
 * delivering a broadcast) writes and reads seconds after its uv_now(),
 * and a deadline measured in it would blame Redis for our own delay. */
static uint64_t clock_ms(void)
{
    return uv_hrtime() / 1000000;
}

/* The bytes are not RESP: the connection fails as hiredis's own reader
 * would fail it, with its disconnect callback. */
static void protocol_error(struct redis_uv *p)
{
    p->ac->c.err = REDIS_ERR_PROTOCOL;
    snprintf(p->ac->c.errstr, sizeof(p->ac->c.errstr), "Protocol error");
    redisAsyncDisconnect(p->ac); /* no callback is pending: frees it now (p->ac = NULL) */
}

/* Hands what has arrived on, reply by reply in order: message pushes,
 * subscription confirmations and every other reply to the handlers
 * (which may free the context: p->ac is then NULL). Keeps an incomplete
 * tail. */
static void dispatch(struct redis_uv *p)
{
    const struct redis_uv_pushes *h = p->take;
    size_t off = 0;
    while (off < p->in_len && p->ac) {
        struct resp_message m;
        struct resp_confirmation c;
        int is_message;
        const char *r = p->in + off;
        long n = resp_scan(r, p->in_len - off, &m, &is_message);
        if (n == 0)
            break;
        if (n < 0) {
            protocol_error(p);
            break;
        }
        if (is_message)
            h->message(h->data, m.channel, m.channel_len, m.payload, m.payload_len);
        else if (resp_confirmation(r, (size_t)n, &c))
            h->confirm(h->data, &c);
        else
            h->reply(h->data, r, (size_t)n);
        off += (size_t)n;
    }
    if (!p->ac) {
        p->in_len = 0;
        return;
    }
    if (off) {
        memmove(p->in, p->in + off, p->in_len - off);
        p->in_len -= off;
    }
}

/* Room for one more READ_CHUNK after what is kept; -1 if memory is out. */
static int reserve_chunk(struct redis_uv *p)
{
    if (p->in_cap - p->in_len >= READ_CHUNK)
        return 0;
    size_t cap = p->in_cap ? p->in_cap : READ_CHUNK;
    while (cap - p->in_len < READ_CHUNK)
        cap *= 2;
    char *bigger = realloc(p->in, cap);
    if (!bigger)
        return -1;
    p->in = bigger;
    p->in_cap = cap;
    return 0;
}

/* We read and hiredis parses: it reads 16 KiB per call, and under a burst
 * of pub/sub messages one read per loop turn leaves them waiting behind
 * every socket serviced in between; asking the kernel how much is left
 * (FIONREAD) cost a syscall per event. 64 KiB reads, until one comes back
 * short (bounded, so one connection cannot starve the loop). */
static void read_replies(struct redis_uv *p)
{
    char stack_buf[READ_CHUNK];
    for (int i = 0; i < READ_ROUNDS && p->ac; i++) {
        char *buf = stack_buf;
        if (p->take) {
            if (reserve_chunk(p) < 0) {
                redisAsyncDisconnect(p->ac); /* out of memory: drop it, reconnect later */
                break;
            }
            buf = p->in + p->in_len;
        }
        ssize_t n = read(p->ac->c.fd, buf, READ_CHUNK);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            break;
        if (n <= 0) {
            redisAsyncHandleRead(p->ac); /* hiredis meets the EOF or error itself */
            break;
        }
        p->heard_at = clock_ms();
        if (p->take) {
            p->in_len += (size_t)n;
            dispatch(p);
        } else {
            /* A reader in error refuses the bytes; processing then meets
             * the error and disconnects, as hiredis's own read. */
            redisReaderFeed(p->ac->c.reader, buf, (size_t)n);
            redisProcessCallbacks(p->ac); /* may free the context (p->ac = NULL) */
        }
        if (n < READ_CHUNK)
            break;
    }
}

/* hiredis's write handler took n bytes of its output buffer. */
static void note_written(struct redis_uv *p, size_t n)
{
    p->written += n;
    p->wrote_at = clock_ms();
    if (p->marked && !p->mark_sent_at && p->written >= p->mark)
        p->mark_sent_at = p->wrote_at;
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    struct redis_uv *p = handle->data;
    if (status < 0) {
        /* Let hiredis discover the error itself: while connecting it checks
         * SO_ERROR on a write event, once connected a read returns it. */
        events = (p->events & UV_WRITABLE) ? UV_WRITABLE : UV_READABLE;
    }
    if (p->ac && (events & UV_READABLE)) {
        if (!(p->ac->c.flags & REDIS_CONNECTED))
            redisAsyncHandleRead(p->ac); /* hiredis finishes connecting */
        else
            read_replies(p);
    }
    if (p->ac && (events & UV_WRITABLE)) {
        size_t before = sdslen(p->ac->c.obuf);
        redisAsyncHandleWrite(p->ac); /* may free the context (p->ac = NULL) */
        if (p->ac && sdslen(p->ac->c.obuf) < before)
            note_written(p, before - sdslen(p->ac->c.obuf));
    }
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
    struct redis_uv *p = h->data;
    free(p->in);
    free(p);
}

static void cleanup(void *data)
{
    struct redis_uv *p = data;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->poll, on_closed);
}

redisAsyncContext *redis_uv_connect(uv_loop_t *loop, const char *host, int port, void *data)
{
    redisAsyncContext *ac = redisAsyncConnect(host, port);
    if (!ac)
        return NULL;
    if (ac->err || redis_uv_attach(ac, loop) < 0) {
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = data;
    return ac;
}

void redis_uv_take_replies(redisAsyncContext *ac, const struct redis_uv_pushes *h)
{
    struct redis_uv *p = ac->ev.data;
    p->take = h;
}

int redis_uv_send_raw(redisAsyncContext *ac, const char *cmd, size_t len)
{
    if (ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING))
        return -1;
    if (redisAppendFormattedCommand(&ac->c, cmd, len) != REDIS_OK)
        return -1;
    ac->ev.addWrite(ac->ev.data); /* hiredis writes its output buffer when writable */
    return 0;
}

void redis_uv_mark(redisAsyncContext *ac)
{
    struct redis_uv *p = ac->ev.data;
    p->marked = 1;
    p->mark = p->written + sdslen(ac->c.obuf);
    p->mark_at = clock_ms();
    p->mark_sent_at = sdslen(ac->c.obuf) ? 0 : p->mark_at;
}

/* Whether the kernel would take bytes now (a connect in progress: no). */
static int writable_now(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    return poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLOUT | POLLERR | POLLHUP)) == POLLOUT;
}

/* Bytes the peer has sent that this loop has not read yet. */
static int unread(const redisAsyncContext *ac)
{
    int waiting = 0;
    return ioctl(ac->c.fd, FIONREAD, &waiting) == 0 ? waiting : 0;
}

/* Whether anything was read from ac's peer in the last ms of real time,
 * or waits to be read. */
static int heard_within(const redisAsyncContext *ac, uint64_t ms)
{
    const struct redis_uv *p = ac->ev.data;
    /* bytes waiting unread: heard, only this loop is late */
    return p->heard_at + ms >= clock_ms() || unread(ac) > 0;
}

int redis_uv_stalled(redisAsyncContext *ac, uint64_t ms)
{
    struct redis_uv *p = ac->ev.data;
    uint64_t now = clock_ms();
    if (!p->marked || heard_within(ac, ms))
        return 0;
    if (!p->mark_sent_at && sdslen(ac->c.obuf) == 0)
        p->mark_sent_at = p->wrote_at > p->mark_at ? p->wrote_at : p->mark_at;
    if (p->mark_sent_at)
        return now - p->mark_sent_at > ms;
    if (writable_now(ac->c.fd))
        return 0; /* not written only because this loop is late */
    /* The socket is full: Redis is dead when it has taken nothing for ms. */
    uint64_t last = p->wrote_at > p->mark_at ? p->wrote_at : p->mark_at;
    return now - last > ms;
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

void redis_uv_describe(const redisAsyncContext *ac, char *buf, size_t size)
{
    const struct redis_uv *p = ac->ev.data;
    uint64_t now = clock_ms();
    int outq = 0;
    if (ioctl(ac->c.fd, SIOCOUTQ, &outq) != 0)
        outq = -1;
    snprintf(buf, size,
             "marked %llu ms ago, %s, heard %llu ms ago, wrote %llu ms ago, %zu bytes to write, "
             "%d in the socket, %d unread",
             (unsigned long long)(now - p->mark_at), p->mark_sent_at ? "written" : "not written",
             (unsigned long long)(p->heard_at ? now - p->heard_at : now),
             (unsigned long long)(p->wrote_at ? now - p->wrote_at : now), sdslen(ac->c.obuf), outq,
             unread(ac));
}
