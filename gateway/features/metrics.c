#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>

static const char *transport_names[TRANSPORT__COUNT] = {"websocket", "sse"};
static const char *drop_names[DROP__COUNT] = {"invalid_payload", "slow_consumer", "no_memory"};
static const char *close_names[CLOSE__COUNT] = {"client",        "heartbeat_timeout", "too_big",
                                                "policy",        "slow_consumer",     "draining",
                                                "token_expired", "protocol_error"};

struct out {
    char *buf;
    size_t size;
    size_t len;
};

static void emit(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void emit(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = o->len < o->size ? o->size - o->len : 0;
    int n = vsnprintf(room ? o->buf + o->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n;
}

static void header(struct out *o, const char *name, const char *type, const char *help)
{
    emit(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A metric of one unlabelled value: its header, then its line. */
static void single(struct out *o, const char *name, const char *type, const char *help,
                   unsigned long long value)
{
    header(o, name, type, help);
    emit(o, "%s %llu\n", name, value);
}

size_t metrics_render(const struct metrics *m, const struct metrics_gauges *g, char *buf,
                      size_t size)
{
    struct out o = {buf, size, 0};
    single(&o, "notify_connections", "gauge",
           "Client connections open on this node (WebSocket and SSE).", g->connections);
    single(&o, "notify_accounts", "gauge", "Accounts with at least one connection here.",
           g->accounts);
    single(&o, "notify_subscribed_accounts", "gauge",
           "Accounts whose Redis channel this node is subscribed to.", g->subscribed_accounts);
    single(&o, "notify_connections_accepted_total", "counter", "Upgrades completed.", m->accepted);
    header(&o, "notify_connections_rejected_total", "counter", "Handshakes refused, by reason.");
    for (int i = 0; i < REJECT__COUNT; i++)
        emit(&o, "notify_connections_rejected_total{reason=\"%s\"} %llu\n",
             counters_reject_name((enum reject_reason)i), (unsigned long long)m->rejected[i]);
    header(&o, "notify_connections_closed_total", "counter", "Connections ended, by reason.");
    for (int i = 0; i < CLOSE__COUNT; i++)
        emit(&o, "notify_connections_closed_total{reason=\"%s\"} %llu\n", close_names[i],
             (unsigned long long)m->closed[i]);
    header(&o, "notify_transport_connections", "gauge", "Client connections open, by transport.");
    for (int t = 0; t < TRANSPORT__COUNT; t++)
        emit(&o, "notify_transport_connections{transport=\"%s\"} %lld\n", transport_names[t],
             (long long)m->transport[t].open);
    header(&o, "notify_transport_connections_accepted_total", "counter",
           "Connections opened, by transport.");
    for (int t = 0; t < TRANSPORT__COUNT; t++)
        emit(&o, "notify_transport_connections_accepted_total{transport=\"%s\"} %llu\n",
             transport_names[t], (unsigned long long)m->transport[t].accepted);
    header(&o, "notify_transport_connections_closed_total", "counter",
           "Connections ended, by transport and reason.");
    for (int t = 0; t < TRANSPORT__COUNT; t++)
        for (int i = 0; i < CLOSE__COUNT; i++)
            emit(&o,
                 "notify_transport_connections_closed_total{transport=\"%s\",reason=\"%s\"} "
                 "%llu\n",
                 transport_names[t], close_names[i], (unsigned long long)m->transport[t].closed[i]);
    single(&o, "notify_messages_received_total", "counter", "Messages received from Redis.",
           m->received);
    single(&o, "notify_messages_delivered_total", "counter",
           "Notifications from Redis written to clients (replays counted apart).", m->delivered);
    single(&o, "notify_messages_replayed_total", "counter",
           "History messages sent to clients by replays (since, reconnects).", m->replayed);
    header(&o, "notify_messages_dropped_total", "counter", "Messages not delivered, by reason.");
    for (int i = 0; i < DROP__COUNT; i++)
        emit(&o, "notify_messages_dropped_total{reason=\"%s\"} %llu\n", drop_names[i],
             (unsigned long long)m->dropped[i]);
    single(&o, "notify_client_messages_total", "counter", "Frames received from clients.",
           m->client_messages);
    single(&o, "notify_client_errors_total", "counter", "Client frames answered with an error.",
           m->client_errors);
    single(&o, "notify_redis_reconnects_total", "counter", "Redis links re-established.",
           m->redis_reconnects);
    header(&o, "notify_acks_total", "counter",
           "Acknowledgements answered, by result (first = a receipt written).");
    emit(&o, "notify_acks_total{result=\"first\"} %llu\n", (unsigned long long)m->acks);
    emit(&o, "notify_acks_total{result=\"repeated\"} %llu\n", (unsigned long long)m->acks_repeated);
    emit(&o, "notify_acks_total{result=\"unknown\"} %llu\n", (unsigned long long)m->acks_unknown);
    header(&o, "notify_outbox_entries_total", "counter",
           "Outbox entries written by this node's sweeps (reason timeout).");
    emit(&o, "notify_outbox_entries_total{reason=\"timeout\"} %llu\n",
         (unsigned long long)m->outbox_timeouts);
    single(&o, "notify_expired_total", "counter",
           "Messages past their ttl: not delivered, or not put in the outbox.", m->expired);
    single(&o, "notify_relayed_total", "counter",
           "Cluster: receipts and outbox entries copied from their slot to their stream.",
           m->relayed);
    header(&o, "notify_queued_bytes", "gauge",
           "Payload bytes waiting in connection queues for slow sockets.");
    emit(&o, "notify_queued_bytes %lld\n", (long long)m->queued_bytes);
    header(&o, "notify_delivery_latency_seconds", "histogram",
           "Time from a message's arrival from Redis to its write on the socket.");
    uint64_t cumulative = 0;
    for (int b = 0; b < METRICS_LATENCY_BUCKETS; b++) {
        cumulative += m->latency_buckets[b];
        if (b < METRICS_LATENCY_BUCKETS - 1)
            emit(&o, "notify_delivery_latency_seconds_bucket{le=\"%g\"} %llu\n",
                 (double)counters_latency_bounds_ns[b] / 1e9, (unsigned long long)cumulative);
        else
            emit(&o, "notify_delivery_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
                 (unsigned long long)cumulative);
    }
    emit(&o, "notify_delivery_latency_seconds_sum %.6f\n", (double)m->latency_sum_ns / 1e9);
    emit(&o, "notify_delivery_latency_seconds_count %llu\n", (unsigned long long)m->latency_count);
    single(&o, "notify_redis_up", "gauge",
           "1 while Redis accepts commands (every primary, in a cluster).", (unsigned)g->redis_up);
    single(&o, "notify_ready", "gauge", "1 while /readyz answers 200.", (unsigned)g->ready);
    single(&o, "notify_draining", "gauge", "1 once shutdown has started.", (unsigned)g->draining);
    single(&o, "notify_io_uring", "gauge",
           "1 when client reads and writes go batched through io_uring, 0 with a call each.",
           (unsigned)g->io_uring);
    single(&o, "notify_presence_events_total", "counter",
           "Presence transitions written to the events stream by this node.", m->presence_events);
    single(&o, "notify_webhooks_sent_total", "counter", "Webhook POSTs answered with a 2xx.",
           m->webhooks_sent);
    single(&o, "notify_webhooks_retried_total", "counter",
           "Webhook POSTs of an event tried before.", m->webhooks_retried);
    single(&o, "notify_webhooks_failed_total", "counter",
           "Webhook POSTs that failed (not 2xx, timeout, refused); each is retried.",
           m->webhooks_failed);
    single(&o, "notify_heap_trims_total", "counter",
           "Times the free pages a burst left in the heap were handed back to the kernel.",
           m->heap_trims);
    single(&o, "notify_heap_released_bytes_total", "counter",
           "Bytes those hand-backs took off the process's resident memory.",
           m->heap_released_bytes);
    header(&o, "notify_webhook_oldest_pending_seconds", "gauge",
           "Age of the oldest event the webhook sender (this node, if it holds the lease) has not "
           "delivered yet.");
    emit(&o, "notify_webhook_oldest_pending_seconds %.3f\n", g->webhook_oldest_pending_s);
    return o.len;
}
