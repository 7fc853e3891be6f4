#include "slotmap.h"

#include <stdio.h>
#include <string.h>

static int add_node(struct slotmap *m, const char *host, int port)
{
    int i = slotmap_find(m, host, port);
    if (i >= 0)
        return i;
    if (m->n_nodes == SLOTMAP_MAX_NODES)
        return -1;
    struct slotmap_node *n = &m->nodes[m->n_nodes];
    snprintf(n->host, sizeof(n->host), "%s", host);
    n->port = port;
    n->slots = 0;
    return m->n_nodes++;
}

static void clear(struct slotmap *m)
{
    m->n_nodes = 0;
    for (int s = 0; s < KEYSLOT_COUNT; s++)
        m->owner[s] = -1;
}

/* One entry of the reply: [start, end, [host, port, id...], replicas...]. */
static int entry_ok(const redisReply *e)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
        e->element[0]->type != REDIS_REPLY_INTEGER || e->element[1]->type != REDIS_REPLY_INTEGER ||
        e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2)
        return 0;
    const redisReply *primary = e->element[2];
    return primary->element[0]->type == REDIS_REPLY_STRING &&
           primary->element[1]->type == REDIS_REPLY_INTEGER;
}

int slotmap_read(struct slotmap *m, const redisReply *reply, const char *asked_host)
{
    clear(m);
    if (!reply || reply->type != REDIS_REPLY_ARRAY)
        return -1;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        if (!entry_ok(e))
            continue;
        const redisReply *primary = e->element[2];
        const char *host = primary->element[0]->str[0] ? primary->element[0]->str : asked_host;
        int idx = add_node(m, host, (int)primary->element[1]->integer);
        if (idx < 0)
            return -1;
        long long lo = e->element[0]->integer, hi = e->element[1]->integer;
        if (lo < 0)
            lo = 0;
        for (long long s = lo; s <= hi && s < KEYSLOT_COUNT; s++) {
            if (m->owner[s] >= 0)
                m->nodes[m->owner[s]].slots--;
            m->owner[s] = (int16_t)idx;
            m->nodes[idx].slots++;
        }
    }
    int missing = 0;
    for (int s = 0; s < KEYSLOT_COUNT; s++)
        if (m->owner[s] < 0)
            missing++;
    return missing;
}

void slotmap_single(struct slotmap *m, const char *host, int port)
{
    clear(m);
    add_node(m, host, port);
    memset(m->owner, 0, sizeof(m->owner));
    m->nodes[0].slots = KEYSLOT_COUNT;
}

const struct slotmap_node *slotmap_owner_of(const struct slotmap *m, const char *key, size_t len)
{
    int idx = m->owner[keyslot(key, len)];
    return idx < 0 ? NULL : &m->nodes[idx];
}

int slotmap_find(const struct slotmap *m, const char *host, int port)
{
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].port == port && strcmp(m->nodes[i].host, host) == 0)
            return i;
    return -1;
}
