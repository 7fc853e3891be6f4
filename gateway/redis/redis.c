#include "redis.h"

#include "server.h"

void redis_link_select(struct redis_link *l, struct server *srv)
{
    l->srv = srv;
    l->ops = srv->cfg->redis_cluster ? &redis_cluster_ops : &redis_single_ops;
}

int redis_link_start(struct redis_link *l)
{
    return l->ops->start(l);
}
