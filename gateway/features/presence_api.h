/* presence_api: GET /presence?accounts=a,b,c, who is online, for many
 * accounts in one request (README.md "HTTP endpoints").
 *
 *   Authorization: Bearer <--api-key>
 *   200 {"accounts":{"a":{"online":true,"connections":2},...}}
 *
 * One ZCOUNT <prefix>presence:{<account>} <now ms> +inf per account, all
 * queued at once: they leave in one write per Redis primary and come back
 * together (one round trip per primary holding some of them). Statuses:
 * 400 no or bad accounts (1 to PRESENCE_API_MAX of them), 401 bad key,
 * 404 when no key is set (the API is off), 405 not GET, 503 Redis
 * unavailable. */
#ifndef NOTIFY_PRESENCE_API_H
#define NOTIFY_PRESENCE_API_H

#include <libwebsockets.h>

#define PRESENCE_API_MAX 1000

struct server;

/* LWS_CALLBACK_HTTP for /presence. Returns what the callback must return.
 * The request then waits on the connection as an http_deferred
 * (http_reply.h), answered and freed through it. */
int presence_api_begin(struct server *srv, struct lws *wsi);

#endif
