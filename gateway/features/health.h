/* health: what /readyz and the gauges of /metrics say about this node,
 * read from the layers' own state. */
#ifndef NOTIFY_HEALTH_H
#define NOTIFY_HEALTH_H

#include "metrics.h"

struct server;

/* 1 when /readyz should answer 200: not draining, and Redis connected with
 * every subscription current. */
int health_ready(const struct server *srv);

/* The gauges of /metrics. */
void health_gauges(const struct server *srv, struct metrics_gauges *g);

#endif
