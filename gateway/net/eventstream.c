#include "eventstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char keepalive[] = ": keep-alive\n\n";

/* The envelope on one line: JSON may carry raw CR and LF only as
 * whitespace between tokens (inside strings they are escaped), so turning
 * them into spaces keeps the same JSON and one data: line. */
static void one_line(unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] == '\n' || p[i] == '\r')
            p[i] = ' ';
}

static struct frame *build_event(const struct frame *f)
{
    static const char *names[] = {[FRAME_EVENT_REGISTER] = "register", [FRAME_EVENT_GAP] = "gap"};
    char id[STREAM_ID_MAX];
    size_t idlen = 0;
    if (f->has_id) {
        stream_id_format(&f->id, id, sizeof(id));
        idlen = strlen(id);
    }
    const char *name = f->event < sizeof(names) / sizeof(names[0]) ? names[f->event] : NULL;
    size_t nlen = name ? strlen(name) : 0;
    size_t len = (idlen ? 4 + idlen + 1 : 0) + (nlen ? 7 + nlen + 1 : 0) + 6 + f->len + 2;
    struct frame *e = frame_new_op(FRAME_RAW, NULL, 0);
    struct frame *big = e ? realloc(e, sizeof(*e) + len) : NULL;
    if (!big) {
        free(e);
        return NULL;
    }
    e = big;
    unsigned char *p = e->data;
    if (idlen) {
        memcpy(p, "id: ", 4);
        memcpy(p + 4, id, idlen);
        p[4 + idlen] = '\n';
        p += 4 + idlen + 1;
    }
    if (nlen) {
        memcpy(p, "event: ", 7);
        memcpy(p + 7, name, nlen);
        p[7 + nlen] = '\n';
        p += 7 + nlen + 1;
    }
    memcpy(p, "data: ", 6);
    memcpy(p + 6, f->data, f->len);
    one_line(p + 6, f->len);
    p += 6 + f->len;
    memcpy(p, "\n\n", 2);
    e->len = (uint32_t)len;
    e->arrived_ns = f->arrived_ns; /* delivery is counted, and timed, on the form written */
    return e;
}

struct frame *eventstream_form(struct frame *f, int *no_memory)
{
    *no_memory = 0;
    if (f->sse)
        return f->sse;
    if (f->opcode == WS_OP_TEXT)
        f->sse = build_event(f);
    else if (f->opcode == WS_OP_PING)
        f->sse = frame_new_op(FRAME_RAW, keepalive, sizeof(keepalive) - 1);
    else
        return NULL;
    *no_memory = f->sse == NULL;
    return f->sse;
}

struct frame *eventstream_close(uint16_t code, const char *reason)
{
    char buf[160];
    /* The reasons are our own close texts: nothing in them needs escaping. */
    int n = snprintf(buf, sizeof(buf), "event: close\ndata: {\"code\":%u,\"reason\":\"%s\"}\n\n",
                     (unsigned)code, reason);
    if (n <= 0 || (size_t)n >= sizeof(buf))
        return NULL;
    return frame_new_op(FRAME_RAW, buf, (size_t)n);
}

size_t eventstream_head(char *buf, size_t size, const char *origin, size_t olen)
{
    /* No Content-Length: the response is the stream, and it ends when the
     * connection does. X-Accel-Buffering tells nginx not to buffer it. */
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                               "Cache-Control: no-cache\r\nConnection: close\r\n"
                               "X-Accel-Buffering: no\r\n";
    static const char cors[] = "Access-Control-Allow-Origin: ";
    static const char vary[] = "\r\nAccess-Control-Allow-Credentials: true\r\nVary: Origin\r\n";
    char retry[40];
    int rlen = snprintf(retry, sizeof(retry), "\r\nretry: %u\n\n", (unsigned)EVENTSTREAM_RETRY_MS);
    if (olen > EVENTSTREAM_ORIGIN_MAX)
        origin = NULL;
    size_t need =
        sizeof(head) - 1 + (origin ? sizeof(cors) - 1 + olen + sizeof(vary) - 1 : 0) + (size_t)rlen;
    if (need > size)
        return 0;
    size_t n = 0;
    memcpy(buf, head, sizeof(head) - 1);
    n += sizeof(head) - 1;
    if (origin) {
        memcpy(buf + n, cors, sizeof(cors) - 1);
        n += sizeof(cors) - 1;
        memcpy(buf + n, origin, olen);
        n += olen;
        memcpy(buf + n, vary, sizeof(vary) - 1);
        n += sizeof(vary) - 1;
    }
    memcpy(buf + n, retry, (size_t)rlen); /* its CRLF ends the head */
    n += (size_t)rlen;
    return n;
}
