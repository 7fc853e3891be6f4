#include "webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The answer's head is read this far, no further: the status line is all
 * that is used. */
#define ANSWER_MAX 2048

/* One request. Freed when every handle it opened has closed and a pending
 * resolution has come back (uv_getaddrinfo cannot be taken back). */
struct webhook_req {
    uv_getaddrinfo_t gai; /* the host's resolution */
    uv_tcp_t tcp;         /* the connection, once resolved */
    uv_connect_t connect; /* its connect */
    uv_write_t write;     /* the request's one write */
    uv_timer_t timer;     /* the whole request's deadline */
    webhook_done_cb cb;   /* runs once, unless cancelled */
    void *data;           /* for cb */
    char *out;            /* head and body */
    size_t out_len;       /* bytes in out */
    char in[ANSWER_MAX];  /* the answer so far */
    size_t in_len;        /* bytes in in */
    int done;             /* cb ran or the request was cancelled */
    int released;         /* its handles are closing */
    int resolving;        /* uv_getaddrinfo still owes its callback */
    int tcp_open;         /* tcp was initialised */
    int closing;          /* close callbacks still due */
};

int webhook_url_parse(const char *url, struct webhook_url *out)
{
    memset(out, 0, sizeof(*out));
    if (strncmp(url, "http://", 7) != 0)
        return -1;
    const char *h = url + 7, *end = h + strcspn(h, "/?");
    const char *colon = NULL;
    if (*h == '[') { /* [v6]:port */
        const char *close = memchr(h, ']', (size_t)(end - h));
        if (!close)
            return -1;
        if ((size_t)(close - h - 1) >= sizeof(out->host))
            return -1;
        memcpy(out->host, h + 1, (size_t)(close - h - 1));
        colon = close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        const char *hend = colon ? colon : end;
        if (hend == h || (size_t)(hend - h) >= sizeof(out->host))
            return -1;
        memcpy(out->host, h, (size_t)(hend - h));
    }
    if (colon) {
        size_t plen = (size_t)(end - colon - 1);
        if (plen == 0 || plen >= sizeof(out->port) || strspn(colon + 1, "0123456789") < plen)
            return -1;
        memcpy(out->port, colon + 1, plen);
        long p = strtol(out->port, NULL, 10);
        if (p < 1 || p > 65535)
            return -1;
    } else {
        snprintf(out->port, sizeof(out->port), "80");
    }
    if (*end == '?')
        snprintf(out->path, sizeof(out->path), "/%s", end);
    else
        snprintf(out->path, sizeof(out->path), "%s", *end ? end : "/");
    return strlen(end) + 1 < sizeof(out->path) ? 0 : -1;
}

static void maybe_free(struct webhook_req *r)
{
    if (r->released && !r->closing && !r->resolving) {
        free(r->out);
        free(r);
    }
}

static void on_closed(uv_handle_t *h)
{
    struct webhook_req *r = h->data;
    r->closing--;
    maybe_free(r);
}

/* Closes what the request opened; memory goes with the last close. */
static void release(struct webhook_req *r)
{
    if (r->released)
        return;
    r->released = 1;
    uv_timer_stop(&r->timer);
    r->closing++;
    uv_close((uv_handle_t *)&r->timer, on_closed);
    if (r->tcp_open) {
        r->closing++;
        uv_close((uv_handle_t *)&r->tcp, on_closed);
    }
}

static void finish(struct webhook_req *r, int status)
{
    if (r->done)
        return;
    r->done = 1;
    r->cb(r->data, status);
    release(r);
}

static void on_timeout(uv_timer_t *t)
{
    finish(t->data, UV_ETIMEDOUT);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct webhook_req *r = h->data;
    (void)suggested;
    size_t room = sizeof(r->in) - 1 - r->in_len;
    *buf = uv_buf_init(r->in + r->in_len, (unsigned)room);
}

/* "HTTP/1.x NNN ..." once the status line is in: NNN, 0 while it is not,
 * -1 when it is no status line. */
static int status_of(const struct webhook_req *r)
{
    const char *eol = memchr(r->in, '\n', r->in_len);
    if (!eol)
        return r->in_len >= sizeof(r->in) - 1 ? -1 : 0;
    int code;
    if (sscanf(r->in, "HTTP/1.%*1[01] %3d", &code) != 1 || code < 100 || code > 599)
        return -1;
    return code;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct webhook_req *r = s->data;
    (void)buf;
    if (r->done)
        return;
    if (nread < 0) {
        int code = status_of(r);
        finish(r, code > 0 ? code : (int)(nread == UV_EOF ? UV_ECONNRESET : nread));
        return;
    }
    r->in_len += (size_t)nread;
    r->in[r->in_len] = '\0';
    int code = status_of(r);
    if (code != 0)
        finish(r, code > 0 ? code : UV_EPROTO);
}

static void on_written(uv_write_t *w, int status)
{
    struct webhook_req *r = w->data;
    if (status < 0 && !r->done)
        finish(r, status);
}

static void on_connected(uv_connect_t *c, int status)
{
    struct webhook_req *r = c->data;
    if (r->done)
        return;
    if (status < 0) {
        finish(r, status);
        return;
    }
    uv_buf_t b = uv_buf_init(r->out, (unsigned)r->out_len);
    int rc = uv_write(&r->write, (uv_stream_t *)&r->tcp, &b, 1, on_written);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&r->tcp, on_alloc, on_read);
    if (rc < 0)
        finish(r, rc);
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    struct webhook_req *r = g->data;
    r->resolving = 0;
    if (r->done) {
        uv_freeaddrinfo(res);
        maybe_free(r);
        return;
    }
    int rc = status;
    if (rc == 0 && (rc = uv_tcp_init(g->loop, &r->tcp)) == 0) {
        r->tcp_open = 1;
        r->tcp.data = r;
        uv_tcp_nodelay(&r->tcp, 1);
        rc = uv_tcp_connect(&r->connect, &r->tcp, res->ai_addr, on_connected);
    }
    uv_freeaddrinfo(res);
    if (rc < 0)
        finish(r, rc);
}

struct webhook_req *webhook_post(uv_loop_t *loop, const struct webhook_url *u, const char *headers,
                                 const char *body, size_t len, int timeout_ms, webhook_done_cb cb,
                                 void *data)
{
    struct webhook_req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->cb = cb;
    r->data = data;
    int strip = strchr(u->host, ':') != NULL; /* an IPv6 literal goes in brackets */
    char head[2048];
    int n = snprintf(head, sizeof(head),
                     "POST %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n%s\r\n",
                     u->path, strip ? "[" : "", u->host, strip ? "]" : "", u->port, len, headers);
    if (n < 0 || (size_t)n >= sizeof(head) || !(r->out = malloc((size_t)n + len))) {
        free(r);
        return NULL;
    }
    memcpy(r->out, head, (size_t)n);
    memcpy(r->out + n, body, len);
    r->out_len = (size_t)n + len;
    r->gai.data = r->timer.data = r->connect.data = r->write.data = r;
    uv_timer_init(loop, &r->timer);
    uv_timer_start(&r->timer, on_timeout, (uint64_t)timeout_ms, 0);
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    r->resolving = 1;
    if (uv_getaddrinfo(loop, &r->gai, on_resolved, u->host, u->port, &hints) < 0) {
        r->resolving = 0;
        r->done = 1;
        release(r);
        return NULL;
    }
    return r;
}

void webhook_cancel(struct webhook_req *r)
{
    if (!r->done) {
        r->done = 1;
        release(r);
    }
}
