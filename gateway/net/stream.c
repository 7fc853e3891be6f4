/* stream: a connection upgraded to an event stream (GET /sse; README.md,
 * "Server-Sent Events") rather than to WebSocket.
 *
 * Past its request head, such a connection is a response that never ends
 * by itself: net writes raw bytes to it (eventstream.h gives every frame
 * queued for it its event-stream form, output.c), reads and drops
 * whatever the client sends (input.c), and learns of its end from a read
 * of 0 or a failed write, as for any socket. A close (conn_close) is an
 * "event: close" naming the reason, then our FIN. */
#include "conn.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

#include "eventstream.h"
#include "log.h"

int conn_stream_open(struct conn *c, const char *origin, size_t olen, unsigned dead_after_ms)
{
    char buf[512 + EVENTSTREAM_ORIGIN_MAX];
    size_t n = eventstream_head(buf, sizeof(buf), origin, olen);
    struct frame *f = n ? frame_new_op(FRAME_RAW, buf, n) : NULL;
    if (!f)
        return -1;
    /* The client never speaks: a peer that vanished is found by our
     * keep-alives going unacknowledged, within dead_after_ms. */
    unsigned ms = dead_after_ms;
    if (ms && setsockopt(c->fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms)) < 0)
        log_debug("stream_user_timeout_failed", "fd=%d", c->fd);
    c->state = CONN_OPEN;
    c->stream = 1;
    c->hold = 1;                      /* the head leaves with the register event */
    wheel_cancel(&c->net->timers, c); /* the head timeout */
    int rc = output_enqueue(c, f);
    frame_unref(f);
    return rc;
}
