#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cluster_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clustercmd.h"
#include "keyslot.h"
#include "slotmap.h"

#ifndef REDIS_SERVER_BIN
#define REDIS_SERVER_BIN "redis-server"
#endif
#ifndef REDIS_CLI_BIN
#define REDIS_CLI_BIN "redis-cli"
#endif

/* ---- connections -------------------------------------------------------- */

redisContext *c_connect(int port)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err) {
        redisFree(c);
        return NULL;
    }
    struct timeval rtv = {5, 0};
    redisSetTimeout(c, rtv);
    return c;
}

redisReply *c_cmd_port(int port, const char *fmt, ...)
{
    redisContext *c = c_connect(port);
    if (!c)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return r;
}

redisReply *c_cmd_argv(int port, int argc, const char **argv)
{
    redisContext *c = c_connect(port);
    if (!c)
        return NULL;
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    redisFree(c);
    return r;
}

/* ---- nodes -------------------------------------------------------------- */

static struct c_node *node_by_port(struct c_cluster *cl, int port)
{
    for (int i = 0; i < cl->n; i++)
        if (cl->node[i].port == port)
            return &cl->node[i];
    return NULL;
}

int c_alive(struct c_cluster *cl, int port)
{
    struct c_node *n = node_by_port(cl, port);
    return n && h_proc_running(&n->proc);
}

const char *c_node_id(struct c_cluster *cl, int port)
{
    struct c_node *n = node_by_port(cl, port);
    return n && n->id[0] ? n->id : NULL;
}

/* 1 if 127.0.0.1:port can be bound right now. */
static int port_is_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    int ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/* A port p with p and p + 10000 (the cluster bus) free, not used by
 * another node of cl. */
static int free_cluster_port(struct c_cluster *cl)
{
    for (int tries = 0; tries < 1000; tries++) {
        int port = h_free_port();
        if (port <= 0 || port > 55535 || !port_is_free(port + 10000) || node_by_port(cl, port))
            continue;
        int clash = 0;
        for (int i = 0; i < cl->n; i++)
            if (cl->node[i].port &&
                (cl->node[i].port + 10000 == port || cl->node[i].port == port + 10000))
                clash = 1;
        if (!clash)
            return port;
    }
    return -1;
}

static int ping_ok(int port)
{
    redisReply *r = c_cmd_port(port, "PING");
    int ok = r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "PONG");
    freeReplyObject(r);
    return ok;
}

/* Starts node i on a free port; 0 once it answers PING. */
static int spawn_node(struct c_cluster *cl, int i)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        struct c_node *n = &cl->node[i];
        n->port = 0;
        int port = free_cluster_port(cl);
        if (port < 0)
            return -1;
        char ports[16];
        snprintf(ports, sizeof(ports), "%d", port);
        const char *argv[] = {REDIS_SERVER_BIN,
                              "--port",
                              ports,
                              "--bind",
                              "127.0.0.1",
                              "--save",
                              "",
                              "--appendonly",
                              "no",
                              "--dir",
                              ".",
                              "--daemonize",
                              "no",
                              "--cluster-enabled",
                              "yes",
                              "--cluster-config-file",
                              "nodes.conf",
                              "--cluster-node-timeout",
                              "2000",
                              "--repl-diskless-sync-delay",
                              "0",
                              NULL};
        if (h_proc_spawn(&n->proc, argv, NULL) != 0)
            return -1;
        n->port = port;
        long long deadline = h_mono_ms() + 5000;
        while (h_mono_ms() < deadline && h_proc_running(&n->proc)) {
            if (ping_ok(port))
                return 0;
            h_sleep_ms(20);
        }
        h_proc_cleanup(&n->proc);
        n->port = 0;
    }
    return -1;
}

/* ---- slot maps ---------------------------------------------------------- */

/* Fills owner[0..C_SLOTS) with the port of each slot's primary (0 when
 * none) from CLUSTER SLOTS on port, read by common/slotmap. 0, or -1. */
static int slot_map_of(int port, int *owner)
{
    redisReply *r = c_cmd_port(port, "CLUSTER SLOTS");
    struct slotmap *m = malloc(sizeof(*m));
    int rc = r && m && slotmap_read(m, r, "127.0.0.1") >= 0 ? 0 : -1;
    for (int s = 0; rc == 0 && s < C_SLOTS; s++)
        owner[s] = m->owner[s] < 0 ? 0 : m->nodes[m->owner[s]].port;
    free(m);
    freeReplyObject(r);
    return rc;
}

/* The slot map of the first live node that answers. */
static int slot_map(struct c_cluster *cl, int *owner)
{
    for (int i = 0; i < cl->n; i++)
        if (cl->node[i].port && h_proc_running(&cl->node[i].proc) &&
            slot_map_of(cl->node[i].port, owner) == 0)
            return 0;
    return -1;
}

int c_slot_owner(struct c_cluster *cl, int slot)
{
    if (slot < 0 || slot >= C_SLOTS)
        return -1;
    int *owner = malloc(sizeof(int) * C_SLOTS);
    int p = -1;
    if (owner && slot_map(cl, owner) == 0 && owner[slot] > 0)
        p = owner[slot];
    free(owner);
    return p;
}

static int first_live_port(struct c_cluster *cl)
{
    for (int i = 0; i < cl->n; i++)
        if (cl->node[i].port && h_proc_running(&cl->node[i].proc))
            return cl->node[i].port;
    return -1;
}

int c_keyslot(struct c_cluster *cl, const char *key)
{
    for (int i = 0; i < cl->n; i++) {
        if (!cl->node[i].port || !h_proc_running(&cl->node[i].proc))
            continue;
        redisReply *r = c_cmd_port(cl->node[i].port, "CLUSTER KEYSLOT %s", key);
        int s = (r && r->type == REDIS_REPLY_INTEGER) ? (int)r->integer : -1;
        freeReplyObject(r);
        if (s >= 0)
            return s;
    }
    return -1;
}

int c_keyslot_local(const char *key)
{
    return (int)keyslot(key, strlen(key));
}

int c_key_owner(struct c_cluster *cl, const char *key)
{
    int slot = c_keyslot(cl, key);
    return slot < 0 ? -1 : c_slot_owner(cl, slot);
}

int c_primaries(struct c_cluster *cl, int *ports, int max)
{
    int *owner = malloc(sizeof(int) * C_SLOTS);
    if (!owner || slot_map(cl, owner) != 0) {
        free(owner);
        return -1;
    }
    int n = 0;
    for (int s = 0; s < C_SLOTS; s++) {
        if (owner[s] <= 0)
            continue;
        int seen = 0;
        for (int i = 0; i < n; i++)
            if (ports[i] == owner[s])
                seen = 1;
        if (!seen && n < max)
            ports[n++] = owner[s];
    }
    free(owner);
    return n;
}

int c_lowest_slot(struct c_cluster *cl, int primary_port)
{
    int *owner = malloc(sizeof(int) * C_SLOTS);
    int found = -1;
    if (owner && slot_map(cl, owner) == 0)
        for (int s = 0; s < C_SLOTS && found < 0; s++)
            if (owner[s] == primary_port)
                found = s;
    free(owner);
    return found;
}

int c_seeds(struct c_cluster *cl, int n, char *buf, size_t size)
{
    int ports[C_NODES];
    int np = c_primaries(cl, ports, C_NODES);
    if (np < 1)
        return -1;
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < np && i < n; i++) {
        int w = snprintf(buf + used, size - used, "%s127.0.0.1:%d", i ? "," : "", ports[i]);
        if (w < 0 || (size_t)w >= size - used)
            return -1;
        used += (size_t)w;
    }
    return 0;
}

int c_replica_of(struct c_cluster *cl, int primary_port)
{
    const char *pid = c_node_id(cl, primary_port);
    int port = first_live_port(cl);
    if (!pid || port < 0)
        return -1;
    redisReply *r = c_cmd_port(port, "CLUSTER NODES");
    if (!r || r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return -1;
    }
    int found = -1;
    char *save = NULL;
    for (char *line = strtok_r(r->str, "\n", &save); line && found < 0;
         line = strtok_r(NULL, "\n", &save)) {
        char id[64], addr[128], flags[128], master[64];
        if (sscanf(line, "%63s %127s %127s %63s", id, addr, flags, master) != 4)
            continue;
        if (!strstr(flags, "slave") || strstr(flags, "fail") || strcmp(master, pid))
            continue;
        char *colon = strrchr(addr, ':');
        int p = colon ? atoi(colon + 1) : -1;
        if (p > 0 && c_alive(cl, p))
            found = p;
    }
    freeReplyObject(r);
    return found;
}

/* ---- keyed commands ----------------------------------------------------- */

/* clustercmd's way to a node: a new connection per command (every node
 * is on 127.0.0.1). */
static redisContext *node_connect(void *arg, const char *host, int port)
{
    (void)arg;
    (void)host;
    return c_connect(port);
}

static void node_release(void *arg, redisContext *c)
{
    (void)arg;
    redisFree(c);
}

/* Runs the formatted command cmd on the owner of key's slot, following up
 * to 5 redirections; the last reply even when it is one. */
static redisReply *cmd_key_formatted(struct c_cluster *cl, const char *key, int *port_out,
                                     const char *cmd, size_t len)
{
    int port = c_key_owner(cl, key);
    if (port < 0)
        port = first_live_port(cl);
    if (port <= 0)
        return NULL;
    struct clustercmd cc = {.connect = node_connect,
                            .release = node_release,
                            .max_redirects = 5,
                            .host = "127.0.0.1",
                            .port = port};
    redisReply *r = clustercmd_run(&cc, cmd, len);
    if (port_out && cc.error != CLUSTERCMD_CONNECT)
        *port_out = cc.port;
    return r;
}

redisReply *c_cmd_key(struct c_cluster *cl, const char *key, int *port_out, int argc,
                      const char **argv)
{
    char *cmd = NULL;
    long long len = redisFormatCommandArgv(&cmd, argc, argv, NULL);
    if (len < 0)
        return NULL;
    redisReply *r = cmd_key_formatted(cl, key, port_out, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return r;
}

redisReply *c_cmd_keyf(struct c_cluster *cl, const char *key, int *port_out, const char *fmt, ...)
{
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0)
        return NULL;
    redisReply *r = cmd_key_formatted(cl, key, port_out, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return r;
}

long long c_spublish(struct c_cluster *cl, const char *channel, const char *payload)
{
    redisReply *r = c_cmd_keyf(cl, channel, NULL, "SPUBLISH %s %s", channel, payload);
    long long v = (r && r->type == REDIS_REPLY_INTEGER) ? r->integer : -1;
    freeReplyObject(r);
    return v;
}

long long c_spublish_port(int port, const char *channel, const char *payload)
{
    redisReply *r = c_cmd_port(port, "SPUBLISH %s %s", channel, payload);
    long long v = (r && r->type == REDIS_REPLY_INTEGER) ? r->integer : -1;
    freeReplyObject(r);
    return v;
}

int c_wait_replicated(int primary_port, int timeout_ms)
{
    redisReply *r = c_cmd_port(primary_port, "WAIT 1 %d", timeout_ms);
    int v = (r && r->type == REDIS_REPLY_INTEGER) ? (r->integer >= 1) : -1;
    freeReplyObject(r);
    return v;
}

/* ---- cluster state ------------------------------------------------------ */

static int state_ok(int port)
{
    redisReply *r = c_cmd_port(port, "CLUSTER INFO");
    int ok = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok");
    freeReplyObject(r);
    return ok;
}

/* 1 if every live node says ok and all live nodes' slot maps are complete
 * and equal; *why describes the first problem otherwise. */
static int stable_now(struct c_cluster *cl, char *why, size_t size)
{
    int *first = malloc(sizeof(int) * C_SLOTS), *other = malloc(sizeof(int) * C_SLOTS);
    int ok = first && other;
    int have_first = 0;
    for (int i = 0; ok && i < cl->n; i++) {
        int port = cl->node[i].port;
        if (!port || !h_proc_running(&cl->node[i].proc))
            continue;
        if (!state_ok(port)) {
            snprintf(why, size, "127.0.0.1:%d: cluster_state not ok", port);
            ok = 0;
            break;
        }
        int *map = have_first ? other : first;
        if (slot_map_of(port, map) != 0) {
            snprintf(why, size, "127.0.0.1:%d: CLUSTER SLOTS failed", port);
            ok = 0;
            break;
        }
        for (int s = 0; s < C_SLOTS; s++) {
            if (map[s] <= 0 || !c_alive(cl, map[s])) {
                snprintf(why, size, "127.0.0.1:%d: slot %d owner %d (not a live node)", port, s,
                         map[s]);
                ok = 0;
                break;
            }
            if (have_first && map[s] != first[s]) {
                snprintf(why, size, "127.0.0.1:%d: slot %d owner %d, another node says %d", port, s,
                         map[s], first[s]);
                ok = 0;
                break;
            }
        }
        have_first = 1;
    }
    free(first);
    free(other);
    return ok;
}

int c_wait_stable(struct c_cluster *cl, int timeout_ms)
{
    long long deadline = h_mono_ms() + timeout_ms;
    char why[256] = "";
    for (;;) {
        if (stable_now(cl, why, sizeof(why)))
            return 0;
        if (h_mono_ms() >= deadline) {
            fprintf(stderr, "cluster not stable after %d ms: %s\n", timeout_ms, why);
            return -1;
        }
        h_sleep_ms(50);
    }
}

/* Value of key in a flat [k, v, k, v...] array reply, or NULL. */
static const redisReply *map_get(const redisReply *m, const char *key)
{
    if (!m || m->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < m->elements; i += 2)
        if (m->element[i]->type == REDIS_REPLY_STRING && !strcmp(m->element[i]->str, key))
            return m->element[i + 1];
    return NULL;
}

/* Number of nodes CLUSTER SHARDS on port lists with health online, and of
 * those that are replicas; -1 on error. */
static int shards_online(int port, int *replicas)
{
    redisReply *r = c_cmd_port(port, "CLUSTER SHARDS");
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return -1;
    }
    int online = 0;
    *replicas = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *nodes = map_get(r->element[i], "nodes");
        if (!nodes || nodes->type != REDIS_REPLY_ARRAY)
            continue;
        for (size_t j = 0; j < nodes->elements; j++) {
            const redisReply *health = map_get(nodes->element[j], "health");
            const redisReply *role = map_get(nodes->element[j], "role");
            if (health && health->type == REDIS_REPLY_STRING && !strcmp(health->str, "online")) {
                online++;
                if (role && role->type == REDIS_REPLY_STRING && !strcmp(role->str, "replica"))
                    (*replicas)++;
            }
        }
    }
    freeReplyObject(r);
    return online;
}

/* CLUSTER SLOTS on port lists a replica for every slot range. */
static int slots_show_replicas(int port)
{
    redisReply *r = c_cmd_port(port, "CLUSTER SLOTS");
    int ok = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0;
    for (size_t i = 0; ok && i < r->elements; i++)
        if (r->element[i]->type != REDIS_REPLY_ARRAY || r->element[i]->elements < 4)
            ok = 0;
    freeReplyObject(r);
    return ok;
}

void c_cluster_stop(struct c_cluster *cl)
{
    for (int i = 0; i < cl->n; i++)
        if (cl->node[i].port || cl->node[i].proc.dir[0])
            h_proc_cleanup(&cl->node[i].proc);
}

int c_cluster_start_shape(struct c_cluster *cl, int primaries, int replicas, int timeout_ms)
{
    long long t0 = h_mono_ms(), deadline = t0 + timeout_ms;
    memset(cl, 0, sizeof(*cl));
    cl->n = primaries * (1 + replicas);
    cl->replicas = replicas;
    if (primaries < 3 || cl->n > C_NODES) {
        fprintf(stderr, "cluster: %d primaries with %d replicas each: not 3 to %d nodes\n",
                primaries, replicas, C_NODES);
        return -1;
    }
    for (int i = 0; i < cl->n; i++)
        if (spawn_node(cl, i) != 0) {
            fprintf(stderr, "cluster: cannot start redis-server %d\n", i);
            goto fail;
        }
    char addr[C_NODES][32];
    const char *argv[16] = {REDIS_CLI_BIN, "--cluster", "create"};
    int n = 3;
    for (int i = 0; i < cl->n; i++) {
        snprintf(addr[i], sizeof(addr[i]), "127.0.0.1:%d", cl->node[i].port);
        argv[n++] = addr[i];
    }
    char nrep[16];
    snprintf(nrep, sizeof(nrep), "%d", replicas);
    argv[n++] = "--cluster-replicas";
    argv[n++] = nrep;
    argv[n++] = "--cluster-yes";
    argv[n] = NULL;
    char *out = NULL, *err = NULL;
    int st = h_run(argv, NULL, 60000, &out, &err);
    if (st != 0) {
        fprintf(stderr, "cluster: redis-cli --cluster create exited %d\n%s\n%s\n", st, out, err);
        free(out);
        free(err);
        goto fail;
    }
    free(out);
    free(err);
    for (int i = 0; i < cl->n; i++) {
        redisReply *r = c_cmd_port(cl->node[i].port, "CLUSTER MYID");
        if (r && r->type == REDIS_REPLY_STRING)
            snprintf(cl->node[i].id, sizeof(cl->node[i].id), "%s", r->str);
        freeReplyObject(r);
        if (!cl->node[i].id[0]) {
            fprintf(stderr, "cluster: no CLUSTER MYID from 127.0.0.1:%d\n", cl->node[i].port);
            goto fail;
        }
    }
    /* every node: ok, all online in CLUSTER SHARDS, replicas listed */
    for (int i = 0; i < cl->n; i++) {
        int port = cl->node[i].port, online = -1, nrepl = 0;
        for (;;) {
            if (state_ok(port) && (online = shards_online(port, &nrepl)) == cl->n &&
                nrepl == primaries * cl->replicas && (!cl->replicas || slots_show_replicas(port)))
                break;
            if (h_mono_ms() >= deadline) {
                fprintf(stderr,
                        "cluster: 127.0.0.1:%d not ready (state ok %d, online %d, replicas %d)\n",
                        port, state_ok(port), online, nrepl);
                goto fail;
            }
            h_sleep_ms(100);
        }
    }
    long long left = deadline - h_mono_ms();
    if (c_wait_stable(cl, left > 1000 ? (int)left : 1000) != 0)
        goto fail;
    int prim[C_NODES];
    if (c_primaries(cl, prim, C_NODES) != primaries) {
        fprintf(stderr, "cluster: not %d primaries\n", primaries);
        goto fail;
    }
    for (int i = 0; replicas && i < primaries; i++)
        if (c_replica_of(cl, prim[i]) < 0) {
            fprintf(stderr, "cluster: primary 127.0.0.1:%d has no replica\n", prim[i]);
            goto fail;
        }
    fprintf(stderr, "cluster: ready in %lld ms (ports", h_mono_ms() - t0);
    for (int i = 0; i < cl->n; i++)
        fprintf(stderr, " %d", cl->node[i].port);
    fprintf(stderr, ")\n");
    return 0;
fail:
    c_cluster_stop(cl);
    return -1;
}

int c_cluster_start(struct c_cluster *cl, int timeout_ms)
{
    return c_cluster_start_shape(cl, C_NODES / 2, 1, timeout_ms);
}

/* ---- failures and resharding -------------------------------------------- */

int c_kill(struct c_cluster *cl, int port)
{
    struct c_node *n = node_by_port(cl, port);
    if (!n || !h_proc_running(&n->proc))
        return -1;
    h_proc_kill(&n->proc);
    return 0;
}

int c_wait_promoted(struct c_cluster *cl, int dead_port, int slot, int timeout_ms,
                    long long *elapsed_ms)
{
    long long t0 = h_mono_ms(), deadline = t0 + timeout_ms;
    int *map = malloc(sizeof(int) * C_SLOTS);
    int owner = -1;
    while (map) {
        int agreed = -1, all = 1;
        for (int i = 0; i < cl->n && all; i++) {
            int port = cl->node[i].port;
            if (!port || !h_proc_running(&cl->node[i].proc))
                continue;
            if (slot_map_of(port, map) != 0 || map[slot] <= 0 || map[slot] == dead_port ||
                (agreed > 0 && map[slot] != agreed))
                all = 0;
            else
                agreed = map[slot];
        }
        if (all && agreed > 0) {
            owner = agreed;
            break;
        }
        if (h_mono_ms() >= deadline) {
            fprintf(stderr, "cluster: slot %d not taken over from 127.0.0.1:%d in %d ms\n", slot,
                    dead_port, timeout_ms);
            break;
        }
        h_sleep_ms(50);
    }
    free(map);
    if (owner > 0) {
        long long left = deadline - h_mono_ms();
        if (c_wait_stable(cl, left > 1000 ? (int)left : 1000) != 0)
            owner = -1;
    }
    if (elapsed_ms)
        *elapsed_ms = h_mono_ms() - t0;
    return owner;
}

/* Waits until every live node's map says slot belongs to port. */
static int wait_owner_everywhere(struct c_cluster *cl, int slot, int port, int timeout_ms)
{
    long long deadline = h_mono_ms() + timeout_ms;
    int *map = malloc(sizeof(int) * C_SLOTS);
    int done = 0;
    while (map && !done) {
        done = 1;
        for (int i = 0; i < cl->n && done; i++) {
            int p = cl->node[i].port;
            if (p && h_proc_running(&cl->node[i].proc) &&
                (slot_map_of(p, map) != 0 || map[slot] != port))
                done = 0;
        }
        if (done || h_mono_ms() >= deadline)
            break;
        h_sleep_ms(50);
    }
    free(map);
    if (!done)
        fprintf(stderr, "cluster: slot %d not owned by 127.0.0.1:%d everywhere in %d ms\n", slot,
                port, timeout_ms);
    return done ? 0 : -1;
}

static int expect_ok(redisReply *r, const char *what, int port)
{
    int ok = r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "OK");
    if (!ok)
        fprintf(stderr, "cluster: %s on 127.0.0.1:%d: %s\n", what, port,
                r ? (r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply") : "I/O error");
    freeReplyObject(r);
    return ok ? 0 : -1;
}

int c_move_slot(struct c_cluster *cl, int slot, int dst_port, int timeout_ms,
                void (*between)(void *arg), void *arg)
{
    int src_port = c_slot_owner(cl, slot);
    const char *src_id = c_node_id(cl, src_port), *dst_id = c_node_id(cl, dst_port);
    if (src_port < 0 || !src_id || !dst_id) {
        fprintf(stderr, "cluster: move slot %d: unknown source or destination\n", slot);
        return -1;
    }
    if (src_port == dst_port)
        return 0;
    if (expect_ok(c_cmd_port(dst_port, "CLUSTER SETSLOT %d IMPORTING %s", slot, src_id),
                  "SETSLOT IMPORTING", dst_port) ||
        expect_ok(c_cmd_port(src_port, "CLUSTER SETSLOT %d MIGRATING %s", slot, dst_id),
                  "SETSLOT MIGRATING", src_port))
        return -1;
    for (;;) {
        redisReply *keys = c_cmd_port(src_port, "CLUSTER GETKEYSINSLOT %d 100", slot);
        if (!keys || keys->type != REDIS_REPLY_ARRAY) {
            fprintf(stderr, "cluster: GETKEYSINSLOT %d failed\n", slot);
            freeReplyObject(keys);
            return -1;
        }
        if (keys->elements == 0) {
            freeReplyObject(keys);
            break;
        }
        const char *argv[108];
        char dport[16];
        snprintf(dport, sizeof(dport), "%d", dst_port);
        int argc = 0;
        argv[argc++] = "MIGRATE";
        argv[argc++] = "127.0.0.1";
        argv[argc++] = dport;
        argv[argc++] = "";
        argv[argc++] = "0";
        argv[argc++] = "5000";
        argv[argc++] = "KEYS";
        for (size_t i = 0; i < keys->elements && argc < 108; i++)
            argv[argc++] = keys->element[i]->str;
        redisReply *r = c_cmd_argv(src_port, argc, argv);
        freeReplyObject(keys);
        int ok = r && ((r->type == REDIS_REPLY_STATUS &&
                        (!strcmp(r->str, "OK") || !strcmp(r->str, "NOKEY"))));
        if (!ok) {
            fprintf(stderr, "cluster: MIGRATE slot %d: %s\n", slot,
                    r && r->type == REDIS_REPLY_ERROR ? r->str : "failed");
            freeReplyObject(r);
            return -1;
        }
        freeReplyObject(r);
    }
    if (expect_ok(c_cmd_port(dst_port, "CLUSTER SETSLOT %d NODE %s", slot, dst_id), "SETSLOT NODE",
                  dst_port))
        return -1;
    if (between)
        between(arg);
    if (expect_ok(c_cmd_port(src_port, "CLUSTER SETSLOT %d NODE %s", slot, dst_id), "SETSLOT NODE",
                  src_port))
        return -1;
    int prim[C_NODES];
    int np = c_primaries(cl, prim, C_NODES);
    for (int i = 0; i < np; i++)
        if (prim[i] != src_port && prim[i] != dst_port)
            freeReplyObject(c_cmd_port(prim[i], "CLUSTER SETSLOT %d NODE %s", slot, dst_id));
    return wait_owner_everywhere(cl, slot, dst_port, timeout_ms);
}

int c_reshard_cli(struct c_cluster *cl, int src_port, int dst_port, int timeout_ms)
{
    const char *src_id = c_node_id(cl, src_port), *dst_id = c_node_id(cl, dst_port);
    int slot = c_lowest_slot(cl, src_port);
    if (!src_id || !dst_id || slot < 0) {
        fprintf(stderr, "cluster: reshard: unknown source or destination\n");
        return -1;
    }
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", src_port);
    const char *argv[] = {REDIS_CLI_BIN,     "--cluster", "reshard",       addr,
                          "--cluster-from",  src_id,      "--cluster-to",  dst_id,
                          "--cluster-slots", "1",         "--cluster-yes", NULL};
    char *out = NULL, *err = NULL;
    int st = h_run(argv, NULL, timeout_ms, &out, &err);
    if (st != 0) {
        fprintf(stderr, "cluster: redis-cli --cluster reshard exited %d\n%s\n%s\n", st, out, err);
        slot = -1;
    }
    free(out);
    free(err);
    if (slot >= 0 && wait_owner_everywhere(cl, slot, dst_port, timeout_ms) != 0)
        slot = -1;
    return slot;
}

/* ---- accounts ----------------------------------------------------------- */

int c_find_account(struct c_cluster *cl, const char *prefix, int primary_port, char *out,
                   size_t size)
{
    int *owner = malloc(sizeof(int) * C_SLOTS);
    int found = -1;
    if (!owner || slot_map(cl, owner) != 0) {
        free(owner);
        return -1;
    }
    for (int n = 0; n < 100000 && found < 0; n++) {
        char key[256];
        snprintf(out, size, "%s%d", prefix, n);
        snprintf(key, sizeof(key), "notify:acct:{%s}", out);
        int slot = c_keyslot_local(key);
        if (owner[slot] != primary_port)
            continue;
        found = c_keyslot(cl, key);
        if (found != slot) {
            fprintf(stderr, "cluster: CLUSTER KEYSLOT %s = %d, computed %d\n", key, found, slot);
            found = -1;
            break;
        }
    }
    free(owner);
    return found;
}

int c_find_account_in_slot(struct c_cluster *cl, const char *prefix, int slot, char *out,
                           size_t size)
{
    for (int n = 0; n < 1000000; n++) {
        char key[256];
        snprintf(out, size, "%s%d", prefix, n);
        snprintf(key, sizeof(key), "notify:acct:{%s}", out);
        if (c_keyslot_local(key) != slot)
            continue;
        int s = c_keyslot(cl, key);
        if (s != slot) {
            fprintf(stderr, "cluster: CLUSTER KEYSLOT %s = %d, computed %d\n", key, s, slot);
            return -1;
        }
        return s;
    }
    return -1;
}
