/* history: the Redis function library `notify` (lua/notify.lua) and the
 * replays that make notify_publish messages survive reconnects (contract
 * section 6).
 *
 * A replay runs once the account's channel is subscribed, so every message
 * is either in the stream snapshot the replay reads or arrives live after
 * it: live frames are held meanwhile and then delivered, skipping ids the
 * replay already sent (conn_deliver). Nothing missed, nothing twice. */
#ifndef NOTIFY_HISTORY_H
#define NOTIFY_HISTORY_H

#include <stddef.h>

#include <uv.h>

#include "ids.h"

struct server;
struct conn;

/* Replays that failed and wait for another try. */
struct history {
    uv_timer_t retry_timer;         /* fires the next try */
    char (*retry)[CONN_ID_LEN + 1]; /* connection ids (looked up again) */
    size_t n_retry;                 /* ids in retry */
    size_t cap_retry;               /* capacity of retry */
};

/* Builds the library text from the flags (srv->notify_lib, which the
 * Redis link loads on every primary it connects to) and the retry timer.
 * Returns 0 or -1. */
int history_init(struct server *srv);
/* Closes the retry timer (teardown); history_free releases the rest. */
void history_close(struct server *srv);
void history_free(struct server *srv);

/* Replays c's history after c->replay_since; live frames are held until
 * it succeeds (retried every 500 ms while Redis cannot answer). */
void history_replay(struct server *srv, struct conn *c);

#endif
