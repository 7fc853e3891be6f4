/* http_reply: writing an answer to a plain HTTP request on an lws
 * connection, for the routes of http.c and the publish API alike. */
#ifndef NOTIFY_HTTP_REPLY_H
#define NOTIFY_HTTP_REPLY_H

#include <libwebsockets.h>
#include <stddef.h>

/* Answers a plain HTTP request (status, headers, the whole body; small
 * bodies only: lws buffers what the socket does not take at once) and ends
 * the transaction. Returns what the lws callback must return. */
int http_respond(struct lws *wsi, int status, const char *type, const char *body, size_t len);

/* Writes a complete "HTTP/1.1 <status>" response with a short text body and
 * Connection: close (used to refuse WebSocket upgrades: lws's own helper
 * answers HTTP/1.0, which strict clients reject). Returns 0 or -1. */
int http_write_status(struct lws *wsi, int status, const char *body);

#endif
