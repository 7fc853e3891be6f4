/* slotmap: which primary owns each Redis Cluster hash slot, read from a
 * CLUSTER SLOTS reply.
 *
 * The one reader of that reply for the gateway's node set, notifyctl, the
 * bench tool and the tests. A single Redis is not read from here: the node
 * set treats it as a cluster of one node that owns every slot
 * (slotmap_single). Replicas in the reply are ignored; a primary is named
 * by host and port, and a primary that reports its host as "" (a node that
 * never met another) is given the host we asked. */
#ifndef NOTIFY_SLOTMAP_H
#define NOTIFY_SLOTMAP_H

#include <hiredis/hiredis.h>
#include <stdint.h>

#include "keyslot.h"

/* Most primaries one map holds; more are refused (slotmap_read). */
#define SLOTMAP_MAX_NODES 64
#define SLOTMAP_HOST_MAX 256

struct slotmap_node {
    char host[SLOTMAP_HOST_MAX]; /* as CLUSTER SLOTS names it */
    int port;
    uint32_t slots; /* how many slots it owns */
};

struct slotmap {
    struct slotmap_node nodes[SLOTMAP_MAX_NODES]; /* primaries, in reply order */
    int n_nodes;                                  /* entries of nodes in use */
    int16_t owner[KEYSLOT_COUNT];                 /* index into nodes; -1 = no owner */
};

/* Fills m from a CLUSTER SLOTS reply; entries that are not of the
 * documented shape are skipped. asked_host stands in for an empty host.
 * Returns the number of slots left without an owner (0: the map is
 * complete), or -1 when the reply is not an array or names more than
 * SLOTMAP_MAX_NODES primaries (m is then unusable). */
int slotmap_read(struct slotmap *m, const redisReply *reply, const char *asked_host);

/* Makes m the map of one node owning every slot. */
void slotmap_single(struct slotmap *m, const char *host, int port);

/* The node owning the slot of key (keyslot.h), or NULL when none does. */
const struct slotmap_node *slotmap_owner_of(const struct slotmap *m, const char *key, size_t len);

/* Index in m->nodes of host:port, or -1. */
int slotmap_find(const struct slotmap *m, const char *host, int port);

#endif
