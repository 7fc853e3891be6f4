/* harness_sse: a Server-Sent Events client (GET /sse) as a browser's
 * EventSource reads the stream: fields, comments, retry, events dispatched
 * at blank lines; and notify_publish for tests of ids. */
#include "harness.h"
#include "harness_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int sse_connect(struct sse *c, int port, const char *path, const char *headers, int timeout_ms)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->status = -1;
    c->retry = -1;
    long long deadline = h_mono_ms() + timeout_ms;
    int fd = hi_tcp_connect(port, deadline);
    if (fd < 0)
        return -1;
    char req[8192];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: text/event-stream\r\n"
                     "Cache-Control: no-cache\r\n%s\r\n",
                     path, port, headers ? headers : "");
    struct hi_bytes b = {0};
    if (n <= 0 || (size_t)n >= sizeof(req) || hi_write_all(fd, req, (size_t)n, deadline) != 0)
        goto fail;
    long hlen = hi_read_headers(fd, &b, deadline);
    if (hlen < 0)
        goto fail;
    c->status = hi_parse_status(b.p);
    c->head = strndup(b.p, (size_t)hlen);
    if (c->status != 200) {
        struct hi_bytes body = {0};
        if (hi_read_body(fd, &b, hlen, &body, h_mono_ms() + 500) == 0)
            c->http_body = body.p;
        else
            free(body.p);
        close(fd);
        free(b.p);
        return c->status;
    }
    c->fd = fd;
    c->len = b.len - (size_t)hlen;
    memmove(b.p, b.p + hlen, c->len);
    c->buf = b.p;
    c->cap = b.cap;
    return c->status;
fail:
    free(b.p);
    close(fd);
    return -1;
}

/* One line of the stream (without its end): a field, a comment or, when
 * empty, the end of an event (returns 1 when one is complete in e). */
static int take_line(struct sse *c, char *line, size_t len, struct sse_event *e)
{
    if (!len) {
        if (!e->data) { /* nothing to dispatch (a comment, retry) */
            free(e->event);
            free(e->id);
            e->event = e->id = NULL;
            return 0;
        }
        if (!e->event)
            e->event = strdup("message");
        return 1;
    }
    if (line[0] == ':') {
        c->comments++;
        return 0;
    }
    char *colon = memchr(line, ':', len);
    size_t nlen = colon ? (size_t)(colon - line) : len;
    char *v = colon ? colon + 1 : line + len;
    size_t vlen = len - nlen - (colon ? 1 : 0);
    if (vlen && *v == ' ')
        v++, vlen--;
    if (nlen == 4 && !memcmp(line, "data", 4)) {
        size_t old = e->data ? strlen(e->data) : 0;
        char *d = realloc(e->data, old + vlen + 2);
        if (!d)
            return 0;
        if (old)
            d[old++] = '\n';
        memcpy(d + old, v, vlen);
        d[old + vlen] = '\0';
        e->data = d;
    } else if (nlen == 5 && !memcmp(line, "event", 5)) {
        free(e->event);
        e->event = strndup(v, vlen);
    } else if (nlen == 2 && !memcmp(line, "id", 2)) {
        free(e->id);
        e->id = strndup(v, vlen);
        snprintf(c->last_id, sizeof(c->last_id), "%.*s", (int)vlen, v);
    } else if (nlen == 5 && !memcmp(line, "retry", 5)) {
        c->retry = atol(v);
    }
    return 0;
}

int sse_recv(struct sse *c, struct sse_event *e, int timeout_ms)
{
    memset(e, 0, sizeof(*e));
    if (c->fd < 0)
        return -1;
    long long deadline = h_mono_ms() + timeout_ms;
    size_t pos = 0;
    for (;;) {
        /* Whole lines first: an event may be in what was read already. */
        while (pos < c->len) {
            char *nl = memchr(c->buf + pos, '\n', c->len - pos);
            if (!nl)
                break;
            size_t len = (size_t)(nl - (c->buf + pos));
            char *line = c->buf + pos;
            if (len && line[len - 1] == '\r')
                len--;
            pos = (size_t)(nl - c->buf) + 1;
            if (take_line(c, line, len, e)) {
                memmove(c->buf, c->buf + pos, c->len - pos);
                c->len -= pos;
                return 1;
            }
        }
        /* Partial fields of this event are kept in e; the bytes of a
         * partial line stay in buf. */
        memmove(c->buf, c->buf + pos, c->len - pos);
        c->len -= pos;
        pos = 0;
        if (c->cap - c->len < 4096) {
            size_t cap = c->cap ? c->cap * 2 : 8192;
            char *nb = realloc(c->buf, cap);
            if (!nb)
                break;
            c->buf = nb;
            c->cap = cap;
        }
        ssize_t n = hi_read_some(c->fd, c->buf + c->len, c->cap - c->len - 1, deadline);
        if (n == -2) {
            sse_event_free(e);
            return 0;
        }
        if (n <= 0) {
            c->eof = 1;
            break;
        }
        c->len += (size_t)n;
    }
    sse_event_free(e);
    return -1;
}

void sse_event_free(struct sse_event *e)
{
    free(e->event);
    free(e->data);
    free(e->id);
    memset(e, 0, sizeof(*e));
}

void sse_close(struct sse *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    free(c->head);
    free(c->http_body);
    c->buf = c->head = c->http_body = NULL;
    c->len = c->cap = 0;
}

char *h_ck_sse_open(struct sse *c, int port, const char *path, const char *headers, int timeout_ms)
{
    int st = sse_connect(c, port, path, headers, timeout_ms);
    ck_assert_msg(st == 200, "GET %s answered %d (%s)", path, st, c->http_body ? c->http_body : "");
    struct sse_event e;
    int got = sse_recv(c, &e, timeout_ms);
    ck_assert_msg(got == 1, "GET %s: no first event (%d)", path, got);
    ck_assert_msg(!strcmp(e.event, "register"), "GET %s: first event '%s', want register", path,
                  e.event);
    ck_assert_msg(!e.id, "GET %s: the register event has an id", path);
    json_t *j = h_ck_envelope(e.data, "register");
    const char *body = h_jstr(json_object_get(j, "content"), "body");
    char *id = body ? strdup(body) : NULL;
    json_decref(j);
    sse_event_free(&e);
    return id;
}

char *h_ck_publish_history(const struct h_redis *r, const char *account, const char *body)
{
    char key[300];
    snprintf(key, sizeof(key), "notify:stream:{%s}", account);
    char *env = h_envelope("t", body);
    long long deadline = h_mono_ms() + 10000;
    for (;;) {
        redisReply *rep = h_redis_cmd(r, "FCALL notify_publish 1 %s %s", key, env);
        if (rep && rep->type == REDIS_REPLY_STRING) {
            char *id = strdup(rep->str);
            freeReplyObject(rep);
            free(env);
            return id;
        }
        /* The gateway loads the library once Redis answers it: wait. */
        ck_assert_msg(h_mono_ms() < deadline, "FCALL notify_publish %s: %s", account,
                      rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "no answer");
        if (rep)
            freeReplyObject(rep);
        h_sleep_ms(50);
    }
}
