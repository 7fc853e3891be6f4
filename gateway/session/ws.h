/* ws: what happens on a WebSocket connection, above the socket.
 *
 * conn.c reads and writes; this decides. The handshake (auth, Origin,
 * limits, answered with a real HTTP status before any upgrade),
 * registration, client messages, heartbeats and teardown all start here
 * and go on to the registry, the Redis link and presence. */
#ifndef NOTIFY_WS_H
#define NOTIFY_WS_H

#include <stddef.h>
#include <stdint.h>

struct server;
struct account;
struct conn;
struct httphead;

/* A complete request head for /ws: refuse it with a status (conn_refuse)
 * or upgrade and register the connection. */
void ws_on_head(struct conn *c, const struct httphead *h);

/* A complete client message (text, or binary, which is refused). */
void ws_on_message(struct conn *c, int binary, const char *buf, size_t len);

/* The socket of a registered connection closes: it leaves the registry,
 * presence and the wheels. */
void ws_on_gone(struct conn *c);

/* The heartbeat wheel's verdict on a due connection (hb_due_fn). */
void ws_heartbeat_due(void *srv, struct conn *c, uint64_t now);

/* The expiry wheel: the token's exp has come (4401), or is further off;
 * or the socket's own timeouts (conn_timeout). */
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
