/* commands: the command half of redis.h, routing each command to the
 * primary that owns its key's slot (nodeset.c keeps the map) and noticing
 * answers that say the map moved. */
#include <stdlib.h>
#include <string.h>

#include "nodeset.h"

/* Wraps a caller's callback to notice that the map moved. */
struct routed {
    struct redis_link *l; /* owner */
    redisCallbackFn *cb;  /* caller's */
    void *privdata;       /* caller's */
};

static void on_routed(redisAsyncContext *ac, void *r, void *privdata)
{
    struct routed *rt = privdata;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR &&
        (!strncmp(reply->str, "MOVED", 5) || !strncmp(reply->str, "ASK", 3) ||
         !strncmp(reply->str, "CLUSTERDOWN", 11)))
        nodeset_refresh_soon(rt->l, 0);
    if (rt->cb)
        rt->cb(ac, r, rt->privdata);
    free(rt);
}

/* The primary owning key's slot, if its command connection is up. */
static struct redis_node *owner_of(const struct redis_link *l, const char *key, size_t keylen)
{
    int owner = l->cluster ? l->slot_node[keyslot(key, keylen)] : 0;
    struct redis_node *n = owner >= 0 ? l->nodes[owner] : NULL;
    return n && n->cmd_ok ? n : NULL;
}

int redis_link_command(struct redis_link *l, const char *key, size_t keylen, redisCallbackFn *cb,
                       void *privdata, int argc, const char **argv, const size_t *argvlen)
{
    struct redis_node *n = owner_of(l, key, keylen);
    if (!n)
        return -1;
    if (!l->cluster)
        return redisAsyncCommandArgv(n->cmd, cb, privdata, argc, argv, argvlen) == REDIS_OK ? 0
                                                                                            : -1;
    struct routed *rt = malloc(sizeof(*rt));
    if (!rt)
        return -1;
    rt->l = l;
    rt->cb = cb;
    rt->privdata = privdata;
    if (redisAsyncCommandArgv(n->cmd, on_routed, rt, argc, argv, argvlen) != REDIS_OK) {
        free(rt);
        return -1;
    }
    return 0;
}

int redis_link_formatted(struct redis_link *l, const char *key, size_t keylen, redisCallbackFn *cb,
                         void *privdata, const char *cmd, size_t len)
{
    struct redis_node *n = owner_of(l, key, keylen);
    if (!n)
        return -1;
    return redisAsyncFormattedCommand(n->cmd, cb, privdata, cmd, len) == REDIS_OK ? 0 : -1;
}

int redis_link_command_all(struct redis_link *l, redisCallbackFn *cb, void *privdata, int argc,
                           const char **argv, const size_t *argvlen)
{
    int sent = 0;
    for (int i = 0; i < REDIS_MAX_NODES; i++) {
        struct redis_node *n = l->nodes[i];
        if (n && n->cmd_ok &&
            redisAsyncCommandArgv(n->cmd, cb, privdata, argc, argv, argvlen) == REDIS_OK)
            sent++;
    }
    return sent;
}

int redis_link_command_node(struct redis_link *l, int node, redisCallbackFn *cb, void *privdata,
                            int argc, const char **argv, const size_t *argvlen)
{
    struct redis_node *n = node >= 0 && node < REDIS_MAX_NODES ? l->nodes[node] : NULL;
    if (!n || !n->cmd_ok)
        return -1;
    return redisAsyncCommandArgv(n->cmd, cb, privdata, argc, argv, argvlen) == REDIS_OK ? 0 : -1;
}

int redis_link_slot_owner(const struct redis_link *l, unsigned slot)
{
    if (!l->cluster)
        return l->nodes[0] ? 0 : -1;
    return slot < KEYSLOT_COUNT ? l->slot_node[slot] : -1;
}

int redis_link_shard_of(const struct redis_link *l, const char *key, size_t keylen)
{
    return l->cluster ? (int)keyslot(key, keylen) : 0;
}

int redis_link_is_cluster(const struct redis_link *l)
{
    return l->cluster;
}

const char *redis_link_publish_command(const struct redis_link *l)
{
    return l->cluster ? "SPUBLISH" : "PUBLISH";
}
