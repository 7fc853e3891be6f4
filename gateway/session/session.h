/* session: binding a client connection (WebSocket or event stream) to an
 * account, and keeping it.
 *
 * net (net.h) reads and writes; this decides. It claims GET /ws on the
 * transport and fills its handler table. A connect reads top to bottom in
 * session.c: the request head -> the handshake checks (Origin, auth,
 * since, limits; each refusal a real HTTP status before any upgrade) -> the
 * registry -> the account's Redis subscription -> (subscribed) -> the 101
 * and the register reply, in one write. Then: client messages
 * (heartbeats, token refreshes, errors; the frame rate is net's),
 * liveness (a timing wheel of silence checks and pings), token expiry
 * (4401) and teardown.
 *
 * The checks every transport's handshake shares are admit.c's
 * (session_admit); GET /sse is sse.c's (sse.h), which binds its streams
 * through session_bind like /ws: a session knows of its transport only
 * struct session_transport.
 *
 * The session calls nothing above it: what the node does around a
 * connection (Redis subscriptions, presence, history replays, the drain)
 * it asks for through the hooks server.c fills in. */
#ifndef NOTIFY_SESSION_H
#define NOTIFY_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include <uthash.h>
#include <uv.h>

#include "auth.h"
#include "config.h"
#include "counters.h"
#include "frame.h"
#include "ids.h"
#include "streamid.h"
#include "validate.h"
#include "wheel.h"

struct account;
struct conn;
struct httphead;
struct net_handlers;
struct net;
struct registry;
struct replay;
struct sessions;

/* Largest token read from a header or the query (an RS256 token fits). */
#define SESSION_TOKEN_MAX 8192

/* What a session knows of the transport that carries it (chosen by the
 * path's handshake: /ws here, /sse in sse.c). Sending and closing are the
 * same calls on either (net.h); only liveness differs. */
struct session_transport {
    enum transport_kind kind; /* whose counters (counters.h) */
    int client_speaks;        /* heartbeats and pongs come back; 0: keep-alives only */
};

/* One connection bound to an account: from its upgrade to its close. */
struct session {
    struct conn *conn;                  /* the socket (net.h) */
    const struct session_transport *tx; /* what carries it */
    struct sessions *owner;             /* the session layer */
    struct account *acct;               /* its registry entry */
    struct session *acct_prev;          /* the account's connections */
    struct session *acct_next;
    UT_hash_handle hh;        /* registry: connection id -> session */
    struct wheel_link hb;     /* heartbeat wheel: next silence check */
    uint64_t last_seen;       /* loop ms of the last sign of life */
    uint64_t last_sent;       /* loop ms of the last notification or keep-alive sent */
    uint64_t errors_since;    /* loop ms the error window started */
    int64_t token_exp;        /* JWT exp in Unix seconds; 0 = none */
    int64_t connected_at;     /* Unix ms of the upgrade */
    struct stream_id last_id; /* newest history id delivered, when has_last_id */
    struct replay *replay;    /* history's, while a replay is owed or running */
    uint32_t errors;          /* error replies in the current window */
    uint8_t registered;       /* the register reply was queued */
    uint8_t has_last_id;      /* last_id is set */
    char id[CONN_ID_LEN + 1]; /* unique across nodes and restarts */
};

/* What the node does around a session; ctx is passed to each. */
struct session_hooks {
    void *ctx;
    /* Subscribes the account's channel (its first connection here):
     * returns 1 when subscribed already, 0 when asked (then
     * session_account_subscribed follows), -1 when it cannot be now. */
    int (*subscribe)(void *ctx, const char *account);
    /* The account's last connection here left. */
    void (*unsubscribe)(void *ctx, const char *account);
    /* 1 while Redis is connected. */
    int (*redis_up)(void *ctx);
    /* s is registered (presence); since: the client's ?since=, or NULL. */
    void (*on_bound)(void *ctx, struct session *s, const struct stream_id *since);
    /* What is published to s's account from now until its subscription
     * is back must reach s later (a replay). */
    void (*on_lost)(void *ctx, struct session *s);
    /* s's channel is subscribed and its register reply queued: what it
     * was owed can be replayed. */
    void (*on_ready)(void *ctx, struct session *s);
    /* s is closing, still registered (presence, history let go of it). */
    void (*on_unbound)(void *ctx, struct session *s);
    /* s left the registry (the drain counts the connections left). */
    void (*on_left)(void *ctx);
    /* s acknowledged ids[0..n) (README.md "Acknowledgements"): each a
     * valid stream id, at most SESSION_ACK_MAX. */
    void (*on_ack)(void *ctx, struct session *s, const struct stream_id *ids, size_t n);
};

/* Most ids one ack message may carry. */
#define SESSION_ACK_MAX 100

/* The session layer: policy and the state every session shares. */
struct sessions {
    const struct config *cfg;
    uv_loop_t *loop;
    struct registry *registry; /* connections and accounts (owned by the server) */
    struct metrics *metrics;   /* counters (owned by the server) */
    struct session_hooks hooks;
    struct wheel heartbeat;         /* silence checks and pings */
    struct auth auth;               /* JWT verification key */
    struct idgen ids;               /* connection ids */
    struct frame *heartbeat_reply;  /* the constant heartbeat answer, shared */
    struct frame *ping;             /* the server's ping, shared */
    char *token_buf;                /* SESSION_TOKEN_MAX: a handshake's token */
    char **origins;                 /* --allowed-origins split; NULL = any */
    size_t n_origins;               /* length of origins */
    uint64_t heartbeat_interval_ms; /* advertised client heartbeat period */
    uint64_t heartbeat_timeout_ms;  /* silence before close 4408 */
    uint64_t ping_after_ms;         /* silence after which the server pings */
    int draining;                   /* upgrades are refused (503) */
    uint64_t reject_logged_at;      /* loop ms of the last rejection log line */
    uint64_t reject_unlogged;       /* rejections since that line */
};

/* What the common handshake checks found out about a request. */
struct session_admitted {
    char account[ACCOUNT_ID_MAX + 1];
    int64_t exp;            /* the token's exp; 0 = none */
    struct stream_id since; /* where it resumes, when has_since */
    int has_since;
};

/* The handler table of GET /ws; another path's handshake (sse.c) shares
 * all of it but on_head. */
extern const struct net_handlers session_ws_handlers;

/* The checks every transport's handshake runs, in order (draining 503,
 * Origin 403, identity 400/401, resume position 400, limits 503/429); a
 * failed one refuses c with its HTTP status (returns -1). since_header,
 * when not NULL, names a header that gives the resume position and wins
 * over ?since=. */
int session_admit(struct sessions *sx, struct conn *c, const struct httphead *h,
                  const char *since_header, struct session_admitted *a);

/* Refuses c with status and body (conn_refuse), counted under why and
 * logged (detail, the client's address) at most once a second. */
void session_reject(struct sessions *sx, struct conn *c, const struct httphead *h,
                    enum reject_reason why, int status, const char *body, const char *detail);

/* The client's address for logs: the peer, or behind --trust-proxy the
 * address the proxy appended last to X-Forwarded-For. */
const char *session_client_addr(const struct sessions *sx, const struct conn *c,
                                const struct httphead *h, char *buf, size_t size);

/* c passed the checks and its transport answered (held, conn_upgrade or
 * conn_stream_open): binds it to a's account, carried by tx. The first
 * message goes out once the account's channel is subscribed. */
void session_bind(struct sessions *sx, struct conn *c, const struct httphead *h,
                  const struct session_admitted *a, const struct session_transport *tx);

/* Sets up the layer and claims GET /ws on net. Returns 0, or -1 after
 * logging why. */
int session_init(struct sessions *sx, uv_loop_t *loop, struct net *net, const struct config *cfg,
                 struct registry *registry, struct metrics *metrics,
                 const struct session_hooks *hooks);

/* Stops the heartbeat wheel (teardown); session_free releases the rest
 * once the loop is done. */
void session_close(struct sessions *sx);
void session_free(struct sessions *sx);

/* The node drains: upgrades are refused with 503 from now on. */
void session_drain(struct sessions *sx);

/* Redis acknowledged account's channel: connections waiting for it get
 * their 101 and register reply; the others may get what they were owed. */
void session_account_subscribed(struct sessions *sx, struct account *a);

/* The account's subscription is gone (its Redis failed, or in a cluster
 * its slot moved): its connections are owed what is published until
 * session_account_subscribed runs again. */
void session_account_lost(struct sessions *sx, struct account *a);

/* The Redis link failed: session_account_lost for every account. */
void session_redis_down(struct sessions *sx);

/* Queues f for s (conn_send). Returns 0, or -1 if not queued. */
int session_send(struct session *s, struct frame *f);

/* Builds a server message (envelope.h) and queues it for s alone (replies,
 * errors, gaps). Returns 0, or -1 if not queued. */
int session_send_envelope(struct session *s, const char *type, const char *body, const char *meta);

/* Queues a notification unless its history id is not newer than the last
 * one s got (a replay sent it already). Returns 0 when queued or skipped,
 * -1 when not queued. */
int session_deliver(struct session *s, struct frame *f);

/* 1 while s can still be sent to (not closing). */
int session_is_open(const struct session *s);

/* Ends s with a WebSocket close code (conn_close). */
void session_end(struct session *s, uint16_t code);

#endif
