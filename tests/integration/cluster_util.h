/* cluster_util: a real Redis Cluster for black-box tests, next to the
 * harness (harness.h).
 *
 * c_cluster_start() starts six redis-server processes on free loopback
 * ports (each port p with p + 10000, its cluster bus, free too), each in its
 * own temp dir with cluster-enabled yes, cluster-node-timeout 2000,
 * repl-diskless-sync-delay 0 and no persistence, then runs
 *   redis-cli --cluster create <six addrs> --cluster-replicas 1 --cluster-yes
 * and waits until every node reports cluster_state:ok and CLUSTER SHARDS
 * shows all six nodes online (replicas synced, so a failover can happen).
 *
 * Helpers find the primary that owns a key's slot (CLUSTER KEYSLOT +
 * CLUSTER SLOTS, asked of a live node), run commands there (following
 * MOVED / ASK), SPUBLISH to the owner, kill -9 a primary and wait for its
 * replica's promotion, and move one slot to another primary (the SETSLOT
 * IMPORTING / MIGRATING + MIGRATE + SETSLOT NODE protocol, or redis-cli
 * --cluster reshard).
 *
 * Every process goes through h_proc_spawn, so the harness kills what is
 * left at exit. Nodes are addressed by port. Functions returning int return
 * -1 on failure and print why to stderr. */
#ifndef NOTIFY_TEST_CLUSTER_UTIL_H
#define NOTIFY_TEST_CLUSTER_UTIL_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "harness.h"
#include "keyslot.h"

#define C_NODES 6
#define C_SLOTS KEYSLOT_COUNT

struct c_node {
    struct h_proc proc;
    int port;    /* 127.0.0.1:port; bus on port + 10000 */
    char id[48]; /* cluster node id (40 hex digits) */
};

struct c_cluster {
    struct c_node node[C_NODES];
    int n;        /* nodes in use */
    int replicas; /* per primary */
};

/* Starts and creates the cluster (three primaries, one replica each) and
 * waits until it is ready (see above), up to timeout_ms in all. 0 or -1
 * (whatever was started is then stopped). */
int c_cluster_start(struct c_cluster *cl, int timeout_ms);

/* The same with primaries (3 or more) and replicas per primary, at most
 * C_NODES nodes in all: c_cluster_start is 3 and 1. */
int c_cluster_start_shape(struct c_cluster *cl, int primaries, int replicas, int timeout_ms);

/* Kills every node (SIGKILL) and removes their dirs. */
void c_cluster_stop(struct c_cluster *cl);

/* 1 if the node on port is still running (not killed). */
int c_alive(struct c_cluster *cl, int port);

/* "127.0.0.1:<p1>,127.0.0.1:<p2>" of the first n live primaries into buf. */
int c_seeds(struct c_cluster *cl, int n, char *buf, size_t size);

/* A new connection to 127.0.0.1:port (2 s connect, 5 s reply timeout), or
 * NULL. */
redisContext *c_connect(int port);

/* One command on a new connection to 127.0.0.1:port (2 s connect, 5 s
 * reply timeout); NULL on a connection error. */
redisReply *c_cmd_port(int port, const char *fmt, ...);

/* Same with an argv vector. */
redisReply *c_cmd_argv(int port, int argc, const char **argv);

/* The slot of key, by CLUSTER KEYSLOT asked of a live node; -1 on error. */
int c_keyslot(struct c_cluster *cl, const char *key);

/* The slot of key computed locally (common/keyslot.h), for searching many
 * names quickly; check with c_keyslot. */
int c_keyslot_local(const char *key);

/* Port of the primary that owns slot according to CLUSTER SLOTS asked of a
 * live node (the first that answers); -1 if none owns it. */
int c_slot_owner(struct c_cluster *cl, int slot);

/* c_slot_owner(c_keyslot(key)). */
int c_key_owner(struct c_cluster *cl, const char *key);

/* The ports of the primaries that own slots, ordered by their lowest slot;
 * returns how many (at most max), -1 on error. */
int c_primaries(struct c_cluster *cl, int *ports, int max);

/* Port of a live replica of the primary on port (CLUSTER NODES asked of a
 * live node), -1 if none. */
int c_replica_of(struct c_cluster *cl, int primary_port);

/* Node id of the node on port (cached from creation), NULL if unknown. */
const char *c_node_id(struct c_cluster *cl, int port);

/* Lowest slot owned by the primary on port, -1 if none. */
int c_lowest_slot(struct c_cluster *cl, int primary_port);

/* Runs a command whose slot is key's on the primary that owns key: sends
 * it to that node and follows up to 5 MOVED / ASK redirections (ASKING
 * before an ASK retry). Returns the final reply (maybe an error such as
 * CLUSTERDOWN), or NULL on a connection error. *port_out (if not NULL)
 * receives the port that answered last. */
redisReply *c_cmd_key(struct c_cluster *cl, const char *key, int *port_out, int argc,
                      const char **argv);

/* The same with a format ("%s" and "%b" as hiredis); key is the key whose
 * slot picks the node. */
redisReply *c_cmd_keyf(struct c_cluster *cl, const char *key, int *port_out, const char *fmt, ...);

/* SPUBLISH channel payload on the primary that owns the channel's slot
 * (following MOVED). Returns the number of receivers, -1 on error. */
long long c_spublish(struct c_cluster *cl, const char *channel, const char *payload);

/* SPUBLISH on exactly this node (no redirection); receivers, or -1 (MOVED,
 * error). */
long long c_spublish_port(int port, const char *channel, const char *payload);

/* Waits until every live node reports cluster_state:ok and, asked of each
 * live node, CLUSTER SLOTS covers all 16384 slots with the same owners.
 * 0, or -1 after timeout_ms. */
int c_wait_stable(struct c_cluster *cl, int timeout_ms);

/* kill -9 of the node on port (reaped). 0, or -1 if it is not ours / not
 * running. */
int c_kill(struct c_cluster *cl, int port);

/* After c_kill of a primary that owned slot: waits until a live node
 * different from dead_port owns slot in every live node's CLUSTER SLOTS and
 * the cluster is stable (c_wait_stable). Returns the new owner's port, -1
 * after timeout_ms. *elapsed_ms (if not NULL) receives the time taken. */
int c_wait_promoted(struct c_cluster *cl, int dead_port, int slot, int timeout_ms,
                    long long *elapsed_ms);

/* Moves slot from its owner to the primary on dst_port with CLUSTER
 * SETSLOT IMPORTING (dst) / MIGRATING (src), MIGRATE of every key in the
 * slot, then SETSLOT NODE on dst, src and the other primaries. Waits until
 * every live node agrees. If between is not NULL it is called with arg
 * after dst took the slot (SETSLOT NODE on dst) and before src let it go
 * (so before src pushes sunsubscribe to the slot's subscribers). 0 or -1. */
int c_move_slot(struct c_cluster *cl, int slot, int dst_port, int timeout_ms,
                void (*between)(void *arg), void *arg);

/* redis-cli --cluster reshard 127.0.0.1:<src> --cluster-from <src id>
 * --cluster-to <dst id> --cluster-slots 1 --cluster-yes: moves the lowest
 * slot of src to dst. Waits until every live node agrees. Returns the slot
 * moved, -1 on failure. */
int c_reshard_cli(struct c_cluster *cl, int src_port, int dst_port, int timeout_ms);

/* WAIT 1 timeout on the primary on port: 1 once a replica acknowledged
 * everything written there so far, 0 if not in time, -1 on error. */
int c_wait_replicated(int primary_port, int timeout_ms);

/* Finds an account name "<prefix><n>" (n = 0, 1, ...) whose keys
 * ("{<name>}" hash tag) live in a slot owned by the primary on port, its
 * slot checked with CLUSTER KEYSLOT. Writes it to out; returns its slot, or
 * -1 if none among the first 100000 names. */
int c_find_account(struct c_cluster *cl, const char *prefix, int primary_port, char *out,
                   size_t size);

/* Same, but the account's slot must be exactly slot (searched locally by
 * CRC16, then checked with CLUSTER KEYSLOT). */
int c_find_account_in_slot(struct c_cluster *cl, const char *prefix, int slot, char *out,
                           size_t size);

#endif
