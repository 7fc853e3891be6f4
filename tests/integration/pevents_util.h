/* pevents_util: what test_presence_events.c and test_webhooks.c share: one
 * Redis or a Redis Cluster behind the same helpers, gateways started with
 * --presence-events, and the events stream read back (README.md "Presence
 * events"). */
#ifndef NOTIFY_TEST_PEVENTS_UTIL_H
#define NOTIFY_TEST_PEVENTS_UTIL_H

#include <check.h>
#include <hiredis/hiredis.h>

#include "cluster_util.h"
#include "harness.h"

#define STREAM "notify:presence:events"
#define MAX_GW 4

/* Where the events live: one Redis, or a cluster (cluster_mode). */
extern struct h_redis R;
extern struct c_cluster CL;
extern int cluster_mode, cluster_up;
extern char seeds[256];
extern struct h_gw G[MAX_GW];

/* Checked fixtures: a Redis of the test's own, or the shared cluster
 * (made by cluster_create, an unchecked fixture); the teardowns stop the
 * gateways, asserting no sanitizer report in their stderr (gws_down). */
void single_setup(void);
void single_teardown(void);
void cluster_create(void);
void cluster_destroy(void);
void cluster_setup(void);
void cluster_teardown(void);
void gws_down(void);

/* One command whose key (argv[1]) picks the node. */
redisReply *cmd(int argc, const char **argv);

/* Starts gateway i with --auth none --presence-events, the backend's
 * Redis flags and the extra flags (NULL-terminated). */
void gw(int i, ...);

struct ev {
    char id[32];
    char account[130];
    int online; /* 1 online, 0 offline */
    long long at, seq;
};

/* Every entry of the stream for account (all if NULL), in order; *n set.
 * malloc'd. */
struct ev *events(const char *account, int *n);

/* Asserts that account's events alternate, starting online, with seq
 * growing; returns how many there are and the last state in *last (-1
 * none). */
int check_alternating(const char *account, int *last);

/* Waits until account has want events; returns ms waited, -1 on timeout. */
long long wait_events(const char *account, int want, int timeout_ms);
int count_events(const char *account);

void open_as(struct ws *c, int port, const char *account);

#endif
