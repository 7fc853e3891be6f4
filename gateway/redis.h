/* redis: the node's two Redis connections, on the server's loop.
 *
 *  - the subscriber connection holds SUBSCRIBE notify:broadcast and one
 *    notify:acct:{<account>} per account present on this node, and hands
 *    each message to deliver.c;
 *  - the command connection carries everything else (presence, node
 *    registry), queued through redis_link_command().
 *
 * Subscribe and unsubscribe requests are collected and flushed together a
 * millisecond later, so a connect storm becomes a few SUBSCRIBE commands
 * with many channels rather than one per account. When either connection
 * drops, both are torn down and re-established with capped exponential
 * backoff and jitter; once both are up again every local account is
 * resubscribed in batches and the on_up hook runs (presence re-registers).
 * State changes are logged once, not per attempt. */
#ifndef NOTIFY_REDIS_H
#define NOTIFY_REDIS_H

#include <hiredis/async.h>
#include <stdint.h>
#include <uv.h>

struct server;
struct pending_sub;

enum link_state {
    LINK_DOWN,       /* waiting to (re)connect */
    LINK_CONNECTING, /* contexts created, handshake (AUTH, SELECT) running */
    LINK_SYNCING,    /* connected; resubscribing the node's accounts */
    LINK_UP,         /* connected and every subscription current */
    LINK_STOPPED,    /* shut down for good */
};

struct redis_link {
    struct server *srv;          /* owner */
    redisAsyncContext *sub;      /* subscriber connection, NULL when down */
    redisAsyncContext *cmd;      /* command connection, NULL when down */
    enum link_state state;       /* see above */
    int sub_handshake_ok;        /* AUTH accepted and broadcast subscribed */
    int cmd_handshake_ok;        /* AUTH and SELECT accepted */
    uint32_t sync_acks_left;     /* subscribe acks still due before LINK_UP */
    uint32_t backoff_ms;         /* next reconnect delay before jitter */
    int was_up;                  /* has been up once: next up is a reconnect */
    int logged_down;             /* a "down" line was logged for this outage */
    uv_timer_t reconnect_timer;  /* fires the next connection attempt */
    uv_timer_t flush_timer;      /* fires the batched (un)subscribe flush */
    uv_timer_t health_timer;     /* PINGs the command connection */
    uint64_t ping_sent_at;       /* loop ms of the unanswered health PING, 0 = none */
    uint64_t connecting_since;   /* loop ms the current attempt began */
    struct pending_sub *pending; /* (un)subscribes waiting for the flush */
    uint32_t subscribed;         /* account channels acknowledged by Redis */
};

/* Prepares the link and starts connecting; failures to connect are retried,
 * never fatal. Returns 0, or -1 if the timers could not be set up. */
int redis_link_start(struct redis_link *l, struct server *srv);

/* 1 while connected and subscriptions are current (for /readyz). */
int redis_link_ready(const struct redis_link *l);

/* 1 once both connections are up (subscriptions may still be syncing):
 * subscribe requests and commands are then accepted. */
int redis_link_connected(const struct redis_link *l);

/* Ask for account's channel to be (un)subscribed at the next flush. Safe
 * while down: the resubscription after connect covers it. Subscribe
 * returns 0 when a SUBSCRIBE is queued (ws_account_subscribed runs on its
 * acknowledgement), 1 when the channel is still subscribed (a pending
 * unsubscribe was cancelled), -1 when Redis is down (no acknowledgement
 * will come before the reconnect). */
int redis_link_subscribe(struct redis_link *l, const char *account);
void redis_link_unsubscribe(struct redis_link *l, const char *account);

/* Queues a command on the command connection (hiredis argv form). The
 * callback runs exactly once, with a NULL reply if the link fails first.
 * Returns 0, or -1 when the link is down (the callback then never runs). */
int redis_link_command(struct redis_link *l, redisCallbackFn *cb, void *privdata, int argc,
                       const char **argv, const size_t *argvlen);

/* Disconnects both connections and closes the timers. */
void redis_link_stop(struct redis_link *l);

#endif
