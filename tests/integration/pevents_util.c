/* pevents_util: see pevents_util.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "pevents_util.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Where the events live: one Redis, or a cluster. */
struct h_redis R;
struct c_cluster CL;
int cluster_mode, cluster_up;
char seeds[256];
struct h_gw G[MAX_GW];

/* ---- fixtures ----------------------------------------------------------- */

void single_setup(void)
{
    cluster_mode = 0;
    memset(G, 0, sizeof(G));
    ck_assert_msg(h_redis_start(&R) == 0, "cannot start redis-server");
}

/* Stops the gateways, asserting no sanitizer report in their stderr. */
void gws_down(void)
{
    for (int i = 0; i < MAX_GW; i++) {
        if (!G[i].proc.dir[0])
            continue;
        char *log = h_gw_stderr(&G[i]);
        h_proc_cleanup(&G[i].proc);
        int clean = !strstr(log, "AddressSanitizer") && !strstr(log, "runtime error:");
        free(log);
        ck_assert_msg(clean, "sanitizer report in gateway %d's stderr", i);
    }
}

void single_teardown(void)
{
    gws_down();
    h_redis_stop(&R);
}

/* Unchecked (in the runner): one cluster for every test of the case. */
void cluster_create(void)
{
    cluster_up =
        c_cluster_start_shape(&CL, 3, 0, 120000) == 0 && c_seeds(&CL, 3, seeds, sizeof(seeds)) == 0;
}

void cluster_destroy(void)
{
    if (cluster_up)
        c_cluster_stop(&CL);
    cluster_up = 0;
}

void cluster_setup(void)
{
    cluster_mode = 1;
    memset(G, 0, sizeof(G));
    ck_assert_msg(cluster_up, "the shared cluster could not be created (see stderr)");
}

void cluster_teardown(void)
{
    gws_down();
}

/* ---- Redis, either way -------------------------------------------------- */

/* One command whose key (argv[1]) picks the node. */
redisReply *cmd(int argc, const char **argv)
{
    if (cluster_mode)
        return c_cmd_key(&CL, argv[1], NULL, argc, argv);
    return c_cmd_argv(R.port, argc, argv);
}

/* Starts gateway i with --auth none --presence-events, the backend's
 * Redis flags and the extra flags (NULL-terminated). */
void gw(int i, ...)
{
    const char *args[40];
    int n = 0;
    if (cluster_mode) {
        args[n++] = "--redis-cluster";
        args[n++] = seeds;
    }
    const char *fixed[] = {"--auth", "none", "--presence-events", "--heartbeat-timeout", "120"};
    for (size_t k = 0; k < sizeof(fixed) / sizeof(fixed[0]); k++)
        args[n++] = fixed[k];
    va_list ap;
    va_start(ap, i);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < 39)
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    ck_assert_msg(h_gw_start(&G[i], cluster_mode ? NULL : &R, args) == 0,
                  "gateway %d did not start", i);
}

/* ---- the events stream -------------------------------------------------- */

/* Every entry of the stream for account (all if NULL), in order; *n set.
 * malloc'd. */
struct ev *events(const char *account, int *n)
{
    const char *argv[] = {"XRANGE", STREAM, "-", "+"};
    redisReply *r = cmd(4, argv);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->type, REDIS_REPLY_ARRAY);
    struct ev *out = calloc(r->elements + 1, sizeof(*out));
    *n = 0;
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *e = r->element[i], *f = e->element[1];
        struct ev v;
        memset(&v, 0, sizeof(v));
        snprintf(v.id, sizeof(v.id), "%s", e->element[0]->str);
        int fields = 0;
        for (size_t k = 0; k + 1 < f->elements; k += 2) {
            const char *name = f->element[k]->str, *val = f->element[k + 1]->str;
            if (!strcmp(name, "account"))
                snprintf(v.account, sizeof(v.account), "%s", val), fields++;
            else if (!strcmp(name, "state")) {
                ck_assert_msg(!strcmp(val, "online") || !strcmp(val, "offline"), "state %s", val);
                v.online = !strcmp(val, "online"), fields++;
            } else if (!strcmp(name, "at"))
                v.at = atoll(val), fields++;
            else if (!strcmp(name, "seq"))
                v.seq = atoll(val), fields++;
        }
        ck_assert_msg(fields == 4, "entry %s lacks a field", v.id);
        if (!account || !strcmp(account, v.account))
            out[(*n)++] = v;
    }
    freeReplyObject(r);
    return out;
}

/* Asserts that account's events alternate, starting online, with seq
 * growing; returns how many there are and the last state in *last (-1
 * none). */
int check_alternating(const char *account, int *last)
{
    int n;
    struct ev *e = events(account, &n);
    for (int i = 0; i < n; i++) {
        ck_assert_msg(e[i].online == (i % 2 == 0), "%s: event %d (%s) is %s twice in a row",
                      account, i, e[i].id, e[i].online ? "online" : "offline");
        if (i)
            ck_assert_msg(e[i].seq > e[i - 1].seq, "%s: seq %lld after %lld", account, e[i].seq,
                          e[i - 1].seq);
    }
    *last = n ? e[n - 1].online : -1;
    free(e);
    return n;
}

/* Waits until account has want events; returns ms waited, -1 on timeout. */
long long wait_events(const char *account, int want, int timeout_ms)
{
    long long t0 = h_mono_ms();
    for (;;) {
        int n;
        free(events(account, &n));
        if (n >= want)
            return h_mono_ms() - t0;
        if (h_mono_ms() - t0 > timeout_ms)
            return -1;
        h_sleep_ms(20);
    }
}

int count_events(const char *account)
{
    int n;
    free(events(account, &n));
    return n;
}

void open_as(struct ws *c, int port, const char *account)
{
    h_ck_open_as(c, port, account);
}
