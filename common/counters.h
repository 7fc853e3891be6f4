/* counters: the node's counters for /metrics, as plain data.
 *
 * Every layer bumps them on its hot path (the transport counts deliveries,
 * latencies, queued bytes and refusals of unreadable heads; the session
 * counts handshakes and closes; delivery counts drops), and
 * features/metrics.c renders them. They live below all of those layers so
 * that counting never means calling up: one struct owned by the server,
 * handed to each layer as a pointer. */
#ifndef NOTIFY_COUNTERS_H
#define NOTIFY_COUNTERS_H

#include <stdint.h>

enum reject_reason {
    REJECT_BAD_REQUEST,  /* 400: missing or malformed account, since, path */
    REJECT_UNAUTHORIZED, /* 401: missing or bad token */
    REJECT_FORBIDDEN,    /* 403: Origin not allowed */
    REJECT_NOT_FOUND,    /* 404: upgrade on a path other than /ws */
    REJECT_ACCOUNT_FULL, /* 429: per-account limit */
    REJECT_NODE_FULL,    /* 503: per-node limit */
    REJECT_DRAINING,     /* 503: shutting down */
    REJECT_UPGRADE,      /* 426: GET /ws without a WebSocket upgrade (version 13) */
    REJECT_MALFORMED,    /* 400/411/431: a head we cannot read, or whose body we cannot frame */
    REJECT_TIMEOUT,      /* no complete request head (or POST /publish body) within 10 s */
    REJECT__COUNT
};

enum drop_reason {
    DROP_INVALID_PAYLOAD, /* producer payload not a UTF-8 JSON object */
    DROP_SLOW_CONSUMER,   /* queued for a client closed with 1013 */
    DROP_NO_MEMORY,       /* allocation failed */
    DROP__COUNT
};

enum close_reason {
    CLOSE_CLIENT,            /* the client closed or vanished */
    CLOSE_HEARTBEAT_TIMEOUT, /* 4408 */
    CLOSE_TOO_BIG,           /* 1009 */
    CLOSE_POLICY,            /* 1008 */
    CLOSE_SLOW_CONSUMER,     /* 1013 */
    CLOSE_DRAINING,          /* 1001 */
    CLOSE_TOKEN_EXPIRED,     /* 4401 */
    CLOSE_PROTOCOL,          /* 1002: a frame RFC 6455 forbids */
    CLOSE__COUNT
};

/* The transports a client connects over (README.md, "Server-Sent Events"). */
enum transport_kind {
    TRANSPORT_WEBSOCKET, /* GET /ws */
    TRANSPORT_SSE,       /* GET /sse */
    TRANSPORT__COUNT
};

/* One transport's share of the connection counters. */
struct transport_counters {
    uint64_t accepted;             /* connections opened */
    int64_t open;                  /* open now */
    uint64_t closed[CLOSE__COUNT]; /* ended, by reason */
};

/* Upper bounds (seconds) of the delivery latency histogram, +Inf last. */
#define METRICS_LATENCY_BUCKETS 14

struct metrics {
    uint64_t accepted;                /* upgrades completed */
    uint64_t rejected[REJECT__COUNT]; /* handshakes refused, by reason */
    uint64_t closed[CLOSE__COUNT];    /* connections ended, by reason */
    uint64_t received;                /* messages received from Redis */
    uint64_t delivered;               /* frames written to clients */
    uint64_t replayed;                /* history messages queued by replays */
    uint64_t dropped[DROP__COUNT];    /* messages not delivered, by reason */
    uint64_t client_messages;         /* frames received from clients */
    uint64_t client_errors;           /* client frames answered with an error */
    uint64_t redis_reconnects;        /* Redis links re-established */
    uint64_t acks;                    /* first acknowledgements (receipts written) */
    uint64_t acks_repeated;           /* acknowledgements of ids acknowledged before */
    uint64_t acks_unknown;            /* acknowledged ids the account does not have */
    uint64_t outbox_timeouts;         /* outbox entries (reason timeout) this node's sweeps wrote */
    uint64_t expired;     /* messages past their ttl, not delivered or not put in the outbox */
    uint64_t relayed;     /* cluster: receipts and outbox entries copied to their stream */
    int64_t queued_bytes; /* payload bytes waiting in connection queues */
    uint64_t latency_buckets[METRICS_LATENCY_BUCKETS]; /* Redis arrival -> socket write */
    uint64_t latency_count;                            /* observations */
    uint64_t latency_sum_ns;                           /* their sum */
    uint64_t presence_events;                          /* presence transitions this node wrote */
    uint64_t webhooks_sent;                            /* webhook POSTs answered 2xx */
    uint64_t webhooks_retried;                         /* POSTs of an event already tried */
    uint64_t webhooks_failed;                          /* POSTs failed (status, timeout, refused) */
    uint64_t heap_trims;          /* times the heap's free pages were handed back (heap.h) */
    uint64_t heap_released_bytes; /* what those trims took off the RSS */

    /* The connection counters again, by transport. */
    struct transport_counters transport[TRANSPORT__COUNT];
};

/* Upper bounds of the latency buckets in nanoseconds, +Inf (the last
 * bucket) not included. */
extern const uint64_t counters_latency_bounds_ns[METRICS_LATENCY_BUCKETS - 1];

/* The label of a rejection reason ("bad_request", ...). */
const char *counters_reject_name(enum reject_reason r);

/* Counts one delivery that took ns from its arrival from Redis to its
 * write on the socket. */
void counters_observe_latency(struct metrics *m, uint64_t ns);

#endif
