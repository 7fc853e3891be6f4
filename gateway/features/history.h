/* history: the Redis function library `notify` (lua/notify.lua) and the
 * replays that make notify_publish messages survive reconnects (README.md,
 * "Resuming").
 *
 * A replay runs once the account's channel is subscribed, so every message
 * is either in the stream snapshot the replay reads or arrives live after
 * it: live frames are held meanwhile (history_hold) and then delivered,
 * skipping ids the replay already sent (session_deliver compares with the
 * session's last_id). Nothing missed, nothing twice.
 *
 * What a session is owed is a struct replay of history's, allocated when
 * a replay becomes owed and freed when it is done: an idle connection
 * carries only the pointer. */
#ifndef NOTIFY_HISTORY_H
#define NOTIFY_HISTORY_H

#include <stddef.h>

#include <uv.h>

#include "ids.h"
#include "streamid.h"

struct frame;
struct server;
struct session;

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

/* s asked for what followed since (?since=): it is owed a replay from
 * there, gaps reported. */
void history_resume(struct server *srv, struct session *s, const struct stream_id *since);

/* s's subscription is gone or never came: it is owed what is published
 * from now on (from its last id, or from a little before now). */
void history_lost(struct server *srv, struct session *s);

/* s is subscribed and registered: the replay it is owed starts, live
 * frames held until it succeeds (retried every 500 ms while Redis cannot
 * answer); with no replay owed, frames held before registering go out. */
void history_ready(struct server *srv, struct session *s);

/* Holds f for s while a replay of s is in flight or s's register reply is
 * not out yet; returns 1 when held (or dropped because s closed for
 * holding too many), 0 when f goes on. */
int history_hold(struct server *srv, struct session *s, struct frame *f);

/* s closes: what history kept for it goes. */
void history_forget(struct session *s);

#endif
