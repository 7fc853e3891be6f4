#include "shardsub.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_BUF 65536

struct shardsub {
    uv_tcp_t tcp;                /* the connection; its data is this struct */
    uv_connect_t connect_req;    /* pending connect */
    uv_timer_t flush_timer;      /* writes what was queued this iteration */
    redisReader *reader;         /* RESP parser */
    shardsub_reply_fn *on_reply; /* replies and pushes */
    shardsub_state_fn *on_state; /* up / lost */
    void *data;                  /* owner's, passed to callbacks */
    char *out;                   /* commands not yet written */
    size_t out_len;              /* bytes in out */
    size_t out_cap;              /* capacity of out */
    int connected;               /* TCP connected */
    int auth_pending;            /* the first reply answers AUTH */
    int closing;                 /* no more callbacks */
    int handles_open;            /* tcp + timer still to close */
    char rbuf[READ_BUF];         /* read buffer (one read at a time) */
};

struct write_req {
    uv_write_t req; /* libuv's */
    char data[];    /* the bytes being written */
};

static void on_handle_closed(uv_handle_t *h)
{
    struct shardsub *s = h->data;
    if (--s->handles_open == 0) {
        if (s->reader)
            redisReaderFree(s->reader);
        free(s->out);
        free(s);
    }
}

static void shut(struct shardsub *s)
{
    if (s->closing)
        return;
    s->closing = 1;
    uv_timer_stop(&s->flush_timer);
    uv_close((uv_handle_t *)&s->flush_timer, on_handle_closed);
    uv_close((uv_handle_t *)&s->tcp, on_handle_closed);
}

static void fail(struct shardsub *s, const char *why)
{
    if (s->closing)
        return;
    shardsub_state_fn *cb = s->on_state;
    void *data = s->data;
    shut(s);
    cb(data, 0, why);
}

void shardsub_close(struct shardsub *s)
{
    if (s)
        shut(s);
}

static void on_written(uv_write_t *req, int status)
{
    struct shardsub *s = req->handle->data;
    free(req);
    if (status < 0 && !s->closing)
        fail(s, uv_strerror(status));
}

static void flush(struct shardsub *s)
{
    if (!s->connected || s->closing || !s->out_len)
        return;
    struct write_req *w = malloc(sizeof(*w) + s->out_len);
    if (!w) {
        fail(s, "out of memory");
        return;
    }
    memcpy(w->data, s->out, s->out_len);
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)s->out_len);
    s->out_len = 0;
    int rc = uv_write(&w->req, (uv_stream_t *)&s->tcp, &buf, 1, on_written);
    if (rc < 0) {
        free(w);
        fail(s, uv_strerror(rc));
    }
}

static void on_flush_timer(uv_timer_t *t)
{
    flush(t->data);
}

int shardsub_send(struct shardsub *s, int argc, const char **argv, const size_t *argvlen)
{
    if (s->closing)
        return -1;
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0 || !cmd)
        return -1;
    if (s->out_len + (size_t)len > s->out_cap) {
        size_t cap = s->out_cap ? s->out_cap * 2 : 4096;
        while (cap < s->out_len + (size_t)len)
            cap *= 2;
        char *bigger = realloc(s->out, cap);
        if (!bigger) {
            free(cmd);
            return -1;
        }
        s->out = bigger;
        s->out_cap = cap;
    }
    memcpy(s->out + s->out_len, cmd, (size_t)len);
    s->out_len += (size_t)len;
    free(cmd);
    if (s->connected && !uv_is_active((uv_handle_t *)&s->flush_timer))
        uv_timer_start(&s->flush_timer, on_flush_timer, 0, 0);
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct shardsub *s = h->data;
    (void)suggested;
    *buf = uv_buf_init(s->rbuf, sizeof(s->rbuf));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct shardsub *s = stream->data;
    if (nread < 0) {
        fail(s, nread == UV_EOF ? "connection closed" : uv_strerror((int)nread));
        return;
    }
    if (nread == 0 || s->closing)
        return;
    if (redisReaderFeed(s->reader, buf->base, (size_t)nread) != REDIS_OK) {
        fail(s, "reader error");
        return;
    }
    void *r;
    while (!s->closing) {
        if (redisReaderGetReply(s->reader, &r) != REDIS_OK) {
            fail(s, s->reader->errstr[0] ? s->reader->errstr : "protocol error");
            return;
        }
        if (!r)
            break;
        redisReply *reply = r;
        if (s->auth_pending) {
            s->auth_pending = 0;
            if (reply->type == REDIS_REPLY_ERROR) {
                char why[300];
                snprintf(why, sizeof(why), "AUTH refused: %s", reply->str);
                freeReplyObject(reply);
                fail(s, why);
                return;
            }
            freeReplyObject(reply);
            s->on_state(s->data, 1, NULL);
            continue;
        }
        s->on_reply(s->data, reply);
        freeReplyObject(reply);
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    struct shardsub *s = req->handle->data;
    if (s->closing)
        return;
    if (status < 0) {
        fail(s, uv_strerror(status));
        return;
    }
    s->connected = 1;
    int rc = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
    if (rc < 0) {
        fail(s, uv_strerror(rc));
        return;
    }
    flush(s); /* AUTH first, then whatever was queued meanwhile */
    if (!s->auth_pending)
        s->on_state(s->data, 1, NULL);
}

static int resolve(const char *host, int port, struct sockaddr_storage *out)
{
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)out) == 0 ||
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)out) == 0)
        return 0;
    /* A name rather than an address (seeds may be names): resolve once,
     * blocking, which only happens when the cluster map names hosts. */
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
        return -1;
    memcpy(out, res->ai_addr, res->ai_addrlen);
    if (res->ai_family == AF_INET)
        ((struct sockaddr_in *)out)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)out)->sin6_port = htons((uint16_t)port);
    freeaddrinfo(res);
    return 0;
}

struct shardsub *shardsub_open(uv_loop_t *loop, const char *host, int port, const char *user,
                               const char *password, shardsub_reply_fn *on_reply,
                               shardsub_state_fn *on_state, void *data)
{
    struct sockaddr_storage addr;
    if (resolve(host, port, &addr) < 0)
        return NULL;
    struct shardsub *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->reader = redisReaderCreate();
    if (!s->reader || uv_tcp_init(loop, &s->tcp) < 0) {
        if (s->reader)
            redisReaderFree(s->reader);
        free(s);
        return NULL;
    }
    uv_timer_init(loop, &s->flush_timer);
    s->handles_open = 2;
    s->tcp.data = s->flush_timer.data = s;
    s->on_reply = on_reply;
    s->on_state = on_state;
    s->data = data;
    uv_tcp_nodelay(&s->tcp, 1);
    if (password && *password) {
        const char *argv[3] = {"AUTH", user, password};
        size_t lens[3] = {4, strlen(user), strlen(password)};
        if (*user)
            shardsub_send(s, 3, argv, lens);
        else
            shardsub_send(s, 2, (const char *[]){"AUTH", password},
                          (size_t[]){4, strlen(password)});
        s->auth_pending = 1;
    }
    if (uv_tcp_connect(&s->connect_req, &s->tcp, (struct sockaddr *)&addr, on_connect) < 0) {
        shut(s);
        return NULL;
    }
    return s;
}
