/* publish_api: POST /publish, for producers that cannot speak Redis
 * (README.md "HTTP endpoints").
 *
 *   Authorization: Bearer <--api-key>
 *   {"accounts":["u1","u2"],"message":<envelope>,"history":true|false}
 *     with history also "ack":<seconds> and "ttl":<seconds> (notify_publish's options)
 *   {"broadcast":true,"message":<envelope>}
 *
 * Each account becomes one FCALL notify_publish (history) or PUBLISH; the
 * answer is written once every reply is in. Statuses: 200 with the ids (or
 * receiver counts), 400 bad body, 401 bad key, 404 when no key is set (the
 * API is off), 405 not POST, 408 body not
 * in within PUBLISH_BODY_TIMEOUT_MS, 411 no Content-Length (http.c), 413 over
 * 64 KiB, 503 Redis unavailable. */
#ifndef NOTIFY_PUBLISH_API_H
#define NOTIFY_PUBLISH_API_H

#include <libwebsockets.h>
#include <stddef.h>

#define PUBLISH_MAX_BODY (64 * 1024)
/* The whole body must arrive within this of the head (408, and the
 * connection closes, beyond): lws's own timeout restarts with every read,
 * so a body sent a byte at a time would hold its socket forever. */
#define PUBLISH_BODY_TIMEOUT_MS 10000

struct server;
struct publish_req;

/* 1 when the request carries Authorization: Bearer <--api-key> (compared
 * in constant time), as every API endpoint requires. */
int publish_api_authorized(struct server *srv, struct lws *wsi);

/* LWS_CALLBACK_HTTP for POST /publish: checks the key and the announced
 * length. Returns what the callback must return. The request then waits
 * on the connection as an http_deferred (http_reply.h), answered and
 * freed through it. */
int publish_api_begin(struct server *srv, struct lws *wsi);

/* LWS_CALLBACK_HTTP_BODY / _COMPLETION for such a request. */
int publish_api_body(struct server *srv, struct lws *wsi, struct publish_req *req, const void *in,
                     size_t len);
int publish_api_complete(struct server *srv, struct lws *wsi, struct publish_req *req);

/* LWS_CALLBACK_TIMER: PUBLISH_BODY_TIMEOUT_MS passed since the head. If the
 * body is still arriving, answers 408 (counted in
 * notify_connections_rejected_total{reason="timeout"}). Returns what the
 * callback must return (-1 then: lws closes the connection). */
int publish_api_timeout(struct server *srv, struct lws *wsi, struct publish_req *req);

#endif
