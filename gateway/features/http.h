/* http: the plain HTTP routes served on the WebSocket port (contract
 * section 7): GET /healthz, GET /readyz, GET /metrics, POST /publish (with
 * publish_api.c) and the demo. Served by lws: gateway/net hands it every
 * request that is not GET /ws. */
#ifndef NOTIFY_HTTP_H
#define NOTIFY_HTTP_H

#include <libwebsockets.h>

#include "httpstatus.h"

struct server;

/* The lws protocol list of the vhost: one HTTP-only protocol. */
extern const struct lws_protocols http_protocols[];

/* Answers the request for uri on wsi (LWS_CALLBACK_HTTP). Returns what the
 * lws callback must return. */
int http_handle(struct server *srv, struct lws *wsi, const char *uri);

/* Answers a plain HTTP request (status, headers, the whole body; small
 * bodies only: lws buffers what the socket does not take at once) and ends
 * the transaction. Returns what the lws callback must return. */
int http_respond(struct lws *wsi, int status, const char *type, const char *body, size_t len);

/* Writes a complete "HTTP/1.1 <status>" response with a short text body and
 * Connection: close (used to refuse WebSocket upgrades: lws's own helper
 * answers HTTP/1.0, which strict clients reject). Returns 0 or -1. */
int http_write_status(struct lws *wsi, int status, const char *body);

#endif
