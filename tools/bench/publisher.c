/* The parent's Redis side (publisher.h). */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyslot.h"
#include "publisher.h"

/* Reads the slot map from the first seed that answers and connects to every
 * primary in it. 0, or -1 (message printed). */
static int cluster_connect(struct publisher *p)
{
    char *seeds = strdup(p->o->cluster), *save = NULL, shost[128] = "";
    redisReply *r = NULL;
    for (char *tok = strtok_r(seeds, ",", &save); tok && !r; tok = strtok_r(NULL, ",", &save)) {
        int sport;
        if (!strncmp(tok, "redis://", 8))
            tok += 8;
        if (opts_hostport(tok, shost, sizeof shost, &sport))
            continue;
        redisContext *c = redisConnect(shost, sport);
        if (c && !c->err)
            r = redisCommand(c, "CLUSTER SLOTS");
        redisFree(c);
        if (r && (r->type != REDIS_REPLY_ARRAY || !r->elements)) {
            fprintf(stderr, "bench: CLUSTER SLOTS on %s: %s\n", tok,
                    r->type == REDIS_REPLY_ERROR ? r->str : "no slots");
            freeReplyObject(r);
            r = NULL;
        }
    }
    free(seeds);
    if (!r) {
        fprintf(stderr, "bench: no seed of --redis-cluster answered CLUSTER SLOTS\n");
        return -1;
    }
    p->map = malloc(sizeof *p->map);
    int missing = p->map ? slotmap_read(p->map, r, shost) : -1;
    freeReplyObject(r);
    if (missing < 0) {
        fprintf(stderr, "bench: more than %d primaries\n", SLOTMAP_MAX_NODES);
        return -1;
    }
    for (int i = 0; i < p->map->n_nodes; i++) {
        const struct slotmap_node *n = &p->map->nodes[i];
        redisContext *c = p->nodes[i].c = redisConnect(n->host, n->port);
        if (!c || c->err) {
            fprintf(stderr, "bench: redis %s:%d: %s\n", n->host, n->port, c ? c->errstr : "oom");
            return -1;
        }
    }
    for (int s = 0; s < KEYSLOT_COUNT; s++)
        if (p->map->owner[s] < 0) {
            fprintf(stderr, "bench: slot %d has no primary\n", s);
            return -1;
        }
    p->r = p->nodes[0].c;
    return 0;
}

int publisher_open(struct publisher *p, const struct bench_opts *o)
{
    memset(p, 0, sizeof *p);
    p->o = o;
    if (o->cluster) {
        if (cluster_connect(p))
            return -1;
    } else {
        p->r = redisConnect(o->rhost, o->rport);
        if (!p->r || p->r->err) {
            fprintf(stderr, "bench: redis %s:%d: %s\n", o->rhost, o->rport,
                    p->r ? p->r->errstr : "oom");
            return -1;
        }
    }
    p->pubcnt = calloc((size_t)o->accounts, sizeof *p->pubcnt);
    int pad = o->msg_size - 80;
    p->pad = calloc(1, (size_t)(pad > 0 ? pad : 0) + 1);
    memset(p->pad, 'x', (size_t)(pad > 0 ? pad : 0));
    return 0;
}

void publisher_close(struct publisher *p)
{
    if (p->map)
        for (int i = 0; i < p->map->n_nodes; i++)
            redisFree(p->nodes[i].c);
    else
        redisFree(p->r);
    free(p->map);
    free(p->pubcnt);
    free(p->pad);
}

int publisher_n_nodes(const struct publisher *p)
{
    return p->map ? p->map->n_nodes : 1;
}

redisContext *publisher_node(const struct publisher *p, int i)
{
    return p->map ? p->nodes[i].c : p->r;
}

double publisher_redis_cpu(redisContext *c)
{
    redisReply *r = redisCommand(c, "INFO cpu");
    double v = -1;
    if (r && r->type == REDIS_REPLY_STRING) {
        const char *sys = strstr(r->str, "used_cpu_sys:"), *user = strstr(r->str, "used_cpu_user:");
        if (sys && user)
            v = atof(sys + 13) + atof(user + 14);
    }
    freeReplyObject(r);
    return v;
}

void publisher_cmdstats(const struct publisher *p, struct cmdstats *cs)
{
    cs->n = 0;
    for (int i = 0; i < publisher_n_nodes(p); i++) {
        redisReply *r = redisCommand(publisher_node(p, i), "INFO commandstats");
        if (!r)
            continue;
        if (r->type == REDIS_REPLY_STRING) {
            char *save, *line = strtok_r(r->str, "\r\n", &save);
            for (; line; line = strtok_r(NULL, "\r\n", &save)) {
                char nm[32];
                unsigned long long calls;
                if (sscanf(line, "cmdstat_%31[^:]:calls=%llu", nm, &calls) != 2)
                    continue;
                int k = 0;
                while (k < cs->n && strcmp(cs->name[k], nm))
                    k++;
                if (k == cs->n) {
                    if (cs->n == MAXCMD)
                        continue;
                    snprintf(cs->name[cs->n], sizeof cs->name[0], "%s", nm);
                    cs->calls[cs->n++] = 0;
                }
                cs->calls[k] += calls;
            }
        }
        freeReplyObject(r);
    }
}

int publisher_append(struct publisher *p, long a, int broadcast)
{
    char ch[256], msg[8192];
    uint64_t k = broadcast ? p->bseq++ : p->pubcnt[a]++;
    if (broadcast)
        snprintf(ch, sizeof ch, "%sbroadcast", p->o->prefix);
    else
        snprintf(ch, sizeof ch, "%sacct:{u%ld}", p->o->prefix, a);
    int n = snprintf(
        msg, sizeof msg,
        "{\"type\":\"bench\",\"content\":{\"body\":\"%c %llu %llu\",\"meta_data\":\"%s\"}}",
        broadcast ? 'b' : 'u', (unsigned long long)now_ns(), (unsigned long long)k, p->pad);
    if (broadcast)
        p->expect_b += 0; /* counted per round by the caller */
    else
        p->expect_u += (uint64_t)opts_acct_conns(p->o, a);
    p->total++;
    if (p->map) {
        struct pub_node *nd = &p->nodes[p->map->owner[keyslot(ch, strlen(ch))]];
        nd->queued++;
        nd->published++;
        return redisAppendCommand(nd->c, "SPUBLISH %s %b", ch, msg, (size_t)n);
    }
    if (p->o->history && !broadcast) {
        char key[256], ack[16];
        snprintf(key, sizeof key, "%sstream:{u%ld}", p->o->prefix, a);
        snprintf(ack, sizeof ack, "%d", p->o->ack);
        if (p->o->ack)
            return redisAppendCommand(p->r, "FCALL notify_publish 1 %s %b ack %s", key, msg,
                                      (size_t)n, ack);
        return redisAppendCommand(p->r, "FCALL notify_publish 1 %s %b", key, msg, (size_t)n);
    }
    return redisAppendCommand(p->r, "PUBLISH %s %b", ch, msg, (size_t)n);
}

/* --redis-cluster: sends every primary its pipeline first (so they work in
 * parallel), then reads all replies. */
static int flush_cluster(struct publisher *p)
{
    for (int i = 0; i < p->map->n_nodes; i++) {
        int done = 0;
        while (p->nodes[i].queued && !done)
            if (redisBufferWrite(p->nodes[i].c, &done) != REDIS_OK) {
                fprintf(stderr, "bench: redis %s:%d: %s\n", p->map->nodes[i].host,
                        p->map->nodes[i].port, p->nodes[i].c->errstr);
                return -1;
            }
    }
    for (int i = 0; i < p->map->n_nodes; i++)
        for (; p->nodes[i].queued; p->nodes[i].queued--) {
            redisReply *rep;
            if (redisGetReply(p->nodes[i].c, (void **)&rep) != REDIS_OK) {
                fprintf(stderr, "bench: redis %s:%d: %s\n", p->map->nodes[i].host,
                        p->map->nodes[i].port, p->nodes[i].c->errstr);
                return -1;
            }
            if (rep->type == REDIS_REPLY_ERROR && !p->nodes[i].errors++)
                fprintf(stderr, "bench: SPUBLISH on %s:%d: %s\n", p->map->nodes[i].host,
                        p->map->nodes[i].port, rep->str);
            freeReplyObject(rep);
        }
    return 0;
}

int publisher_flush(struct publisher *p, int n)
{
    if (p->map)
        return flush_cluster(p);
    for (int i = 0; i < n; i++) {
        void *rep;
        if (redisGetReply(p->r, &rep) != REDIS_OK) {
            fprintf(stderr, "bench: redis: %s\n", p->r->errstr);
            return -1;
        }
        freeReplyObject(rep);
    }
    return 0;
}

/* Appends n messages to the next accounts in turn. */
static void append_next(struct publisher *p, int n)
{
    for (int i = 0; i < n; i++) {
        publisher_append(p, p->next_acct, 0);
        p->next_acct = (p->next_acct + 1) % p->o->accounts;
    }
}

int publisher_unicast(struct publisher *p, int n)
{
    append_next(p, n);
    return publisher_flush(p, n);
}

/* Reads the replies that have come, or with wait all of them. */
static int collect(struct publisher *p, int wait)
{
    while (p->unread) {
        void *rep = NULL;
        if (redisGetReplyFromReader(p->r, &rep) != REDIS_OK)
            goto fail;
        if (rep) {
            freeReplyObject(rep);
            p->unread--;
            continue;
        }
        struct pollfd pf = {.fd = p->r->fd, .events = POLLIN};
        if (!wait && poll(&pf, 1, 0) != 1)
            return 0;
        if (redisBufferRead(p->r) != REDIS_OK)
            goto fail;
    }
    return 0;
fail:
    fprintf(stderr, "bench: redis: %s\n", p->r->errstr);
    return -1;
}

int publisher_send(struct publisher *p, int n)
{
    if (p->map)
        return publisher_unicast(p, n);
    append_next(p, n);
    p->unread += n;
    int done = 0;
    while (!done)
        if (redisBufferWrite(p->r, &done) != REDIS_OK) {
            fprintf(stderr, "bench: redis: %s\n", p->r->errstr);
            return -1;
        }
    return collect(p, 0);
}

int publisher_settle(struct publisher *p)
{
    return p->map ? 0 : collect(p, 1);
}
