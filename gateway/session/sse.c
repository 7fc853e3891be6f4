#include "sse.h"

#include "httphead.h"

/* A client that never speaks: kept alive by our keep-alive comments. */
static const struct session_transport sse_transport = {TRANSPORT_SSE, 0};

/* net's on_head for GET /sse: the common checks (the resume position from
 * Last-Event-ID first), then a 200 held until the register event. */
static void on_head(void *ctx, struct conn *c, const struct httphead *h)
{
    struct sessions *sx = ctx;
    struct session_admitted a;
    if (session_admit(sx, c, h, "Last-Event-ID", &a) < 0)
        return;
    size_t olen = 0;
    const char *origin = httphead_get(h, "Origin", &olen);
    /* A peer that stops acknowledging our keep-alives for as long as a
     * WebSocket may stay silent is gone. */
    if (conn_stream_open(c, origin, origin ? olen : 0, (unsigned)sx->heartbeat_timeout_ms) < 0) {
        conn_destroy(c);
        return;
    }
    session_bind(sx, c, h, &a, &sse_transport);
}

int sse_init(struct sse *x, struct sessions *sx, struct net *net)
{
    x->handlers = session_ws_handlers;
    x->handlers.on_head = on_head;
    return net_route(net, "/sse", &x->handlers, sx);
}
