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
struct presence_req;

/* LWS_CALLBACK_HTTP for /presence. Returns what the callback must return. */
int presence_api_begin(struct server *srv, struct lws *wsi);

/* LWS_CALLBACK_HTTP_WRITEABLE for such a request: writes the answer once
 * it is decided. */
int presence_api_writeable(struct lws *wsi, struct presence_req *req);

/* The connection is going away: the request is freed now or by the last
 * Redis reply. */
void presence_api_detach(struct presence_req *req);

#endif
