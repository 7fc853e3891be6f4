/* sse: GET /sse, the Server-Sent Events transport (README.md,
 * "Server-Sent Events").
 *
 * The same session as /ws (session.h), carried by an event stream
 * (net.h, conn_stream_open) instead of a WebSocket: the same checks and
 * refusals as real HTTP statuses before the stream (the resume position
 * also from Last-Event-ID, which wins over ?since=), then the same
 * binding, so the registry, presence, delivery, history, the limits,
 * token expiry and the drain count and treat it like any connection.
 * What differs is said by its transport: the client never speaks, so the
 * session sends keep-alives rather than expecting heartbeats. */
#ifndef NOTIFY_SSE_H
#define NOTIFY_SSE_H

#include "net.h"
#include "session.h"

/* The path's handler table: the session's, but for the request head. */
struct sse {
    struct net_handlers handlers;
};

/* Claims GET /sse on net for the sessions of sx. Returns 0, or -1 when
 * net has no room for another path. */
int sse_init(struct sse *x, struct sessions *sx, struct net *net);

#endif
