/* http: the plain HTTP routes served on the WebSocket port (README.md
 * "HTTP endpoints"): GET /healthz, GET /readyz, GET /metrics, POST /publish (with
 * publish_api.c) and the demo. Served by lws: gateway/net hands it every
 * request that is not GET /ws. */
#ifndef NOTIFY_HTTP_H
#define NOTIFY_HTTP_H

#include <libwebsockets.h>

#include "http_reply.h"
#include "httpstatus.h"

struct server;

/* Longest plain HTTP request head taken (431 beyond), as long as
 * HTTPHEAD_MAX_HEADERS header lines (431 beyond too). lws is given more
 * room than this (server.c): it stores a head in a few more bytes than
 * it has per header line, and drops one it has no room for unanswered. */
#define HTTP_HEAD_MAX (8192 + 1024)
#define HTTP_LWS_HEADER_ROOM (HTTP_HEAD_MAX + 1024)

/* What http_screen says besides a status to refuse with. */
enum {
    HTTP_SCREEN_WAIT = -1, /* the head is not whole yet: look again when more comes */
    HTTP_SCREEN_GONE = -2, /* the socket closed or failed */
};

/* Screens the first request of fd, a socket conn.c hands to lws, by
 * peeking at it (lws then reads it all): lws would drop a head over its
 * room with no answer, wait on a body it cannot delimit, and read a body by
 * Content-Length where a proxy in front may read it by Transfer-Encoding
 * (httphead_screen says which). scratch holds HTTP_HEAD_MAX bytes. Returns
 * 0 when lws may take it, HTTP_SCREEN_WAIT or HTTP_SCREEN_GONE, else the
 * status to refuse it with (400, 411, 431) and in *why the body. */
int http_screen(int fd, char *scratch, const char **why);

/* The lws protocol list of the vhost: one HTTP-only protocol. */
extern const struct lws_protocols http_protocols[];

/* Answers the request for uri on wsi (LWS_CALLBACK_HTTP). Returns what the
 * lws callback must return. */
int http_handle(struct server *srv, struct lws *wsi, const char *uri);

#endif
