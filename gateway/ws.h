/* ws: the lws protocol callback, where sockets meet the gateway.
 *
 * Handshake (auth, Origin, limits, answered with a real HTTP status before
 * any upgrade), registration, client frames, writes and teardown all start
 * here and go on to the registry, the Redis link and presence. Plain HTTP
 * requests on the same port are handed to http.c. */
#ifndef NOTIFY_WS_H
#define NOTIFY_WS_H

#include <libwebsockets.h>
#include <stdint.h>

struct server;
struct account;
struct conn;

/* The one protocol: WebSocket connections and HTTP requests. */
extern const struct lws_protocols ws_protocols[];

/* The heartbeat wheel's verdict on a due connection (hb_due_fn). */
void ws_heartbeat_due(void *srv, struct conn *c, uint64_t now);

/* The expiry wheel: the token's exp has come (4401), or is further off. */
void ws_expiry_due(void *srv, struct conn *c, uint64_t now);

/* Redis acknowledged account's channel: connections waiting for it get
 * their register reply. */
void ws_account_subscribed(struct server *srv, struct account *a);

/* The account's subscription is gone (its Redis failed, or in a cluster
 * its slot moved): its connections will need a replay of what is published
 * until ws_account_subscribed runs again. */
void ws_account_lost(struct server *srv, struct account *a);

/* The Redis link failed: ws_account_lost for every account. */
void ws_on_redis_down(struct server *srv);

#endif
