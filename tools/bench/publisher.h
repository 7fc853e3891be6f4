/* The parent's side of Redis: publishing the measured messages (PUBLISH to
 * one Redis, or SPUBLISH to the primary owning each channel's slot with
 * --redis-cluster) and reading what Redis itself reports (INFO). */
#ifndef NOTIFY_BENCH_PUBLISHER_H
#define NOTIFY_BENCH_PUBLISHER_H

#include <hiredis/hiredis.h>
#include <stdint.h>

#include "bench.h"
#include "slotmap.h"

/* A primary of --redis-cluster: nodes[i] is the slot map's nodes[i]. */
struct pub_node {
    redisContext *c;
    int queued; /* appended commands whose replies are not read yet */
    uint64_t published, errors;
};

struct publisher {
    const struct bench_opts *o;
    redisContext *r;     /* one Redis; in a cluster the first primary's */
    struct slotmap *map; /* --redis-cluster: read once; NULL otherwise */
    struct pub_node nodes[SLOTMAP_MAX_NODES];
    uint64_t *pubcnt;            /* per account: the next sequence number */
    uint64_t total;              /* messages published */
    uint64_t expect_u, expect_b; /* deliveries expected: unicast, broadcast */
    uint64_t bseq;               /* the next broadcast sequence number */
    long next_acct;              /* publisher_unicast's next account */
    long unread;                 /* publisher_send: replies not read yet */
    char *pad;                   /* meta_data making the envelope --msg-size */
};

/* Connects (the single Redis, or every primary of the cluster's slot map);
 * 0, or -1 with a message printed. */
int publisher_open(struct publisher *p, const struct bench_opts *o);
void publisher_close(struct publisher *p);

/* Primaries in use: 1 for a single Redis. */
int publisher_n_nodes(const struct publisher *p);
redisContext *publisher_node(const struct publisher *p, int i);

/* Appends one message to account a (or a broadcast) to the pipeline;
 * publisher_flush sends them and reads the n replies. 0, or -1. */
int publisher_append(struct publisher *p, long a, int broadcast);
int publisher_flush(struct publisher *p, int n);

/* n messages to the next accounts in turn, flushed. 0, or -1. */
int publisher_unicast(struct publisher *p, int n);

/* The same, written without waiting for their replies (an open loop must
 * not wait for Redis's round trip: it would publish less than offered
 * when Redis is slow to answer), which are read as they come;
 * publisher_settle reads the rest, and no other command may use the
 * connection before it. One Redis; with --redis-cluster as
 * publisher_unicast. 0, or -1. */
int publisher_send(struct publisher *p, int n);
int publisher_settle(struct publisher *p);

/* used_cpu_sys + used_cpu_user of a Redis (INFO cpu), s; -1 if unknown. */
double publisher_redis_cpu(redisContext *c);

/* INFO commandstats: calls per command, summed over every primary. */
#define MAXCMD 64
struct cmdstats {
    int n;
    char name[MAXCMD][32];
    uint64_t calls[MAXCMD];
};
void publisher_cmdstats(const struct publisher *p, struct cmdstats *cs);

#endif
