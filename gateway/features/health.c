#include "health.h"

#include "server.h"

int health_ready(const struct server *srv)
{
    return !srv->draining && redis_link_ready(&srv->redis);
}

void health_gauges(const struct server *srv, struct metrics_gauges *g)
{
    g->connections = srv->registry.n_conns;
    g->accounts = srv->registry.n_accounts;
    g->subscribed_accounts = redis_link_subscribed(&srv->redis);
    g->redis_up = redis_link_connected(&srv->redis);
    g->ready = health_ready(srv);
    g->draining = srv->draining;
    g->io_uring = net_batched(&srv->net);
    double p = webhook_sender_oldest_pending(&srv->wh),
           u = webhook_sender_oldest_pending(&srv->whu);
    g->webhook_oldest_pending_s = p > u ? p : u;
}
