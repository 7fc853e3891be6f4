#include "outbox.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyslot.h"
#include "log.h"
#include "server.h"

/* Deadlines one sweep takes per slot (more wait for the next period), and
 * relay entries it hands back per slot. */
#define SWEEP_LIMIT 1000
/* The lease lasts this many periods: a node that stops sweeping (killed)
 * is replaced within it. */
#define LEASE_PERIODS 3

static void sweep_node(struct server *srv, int node);

/* One sweep's round trip. */
struct sweep_req {
    struct server *srv;
    int node; /* primary index */
};

/* One relay entry's copy, then its delete. */
struct relay_req {
    struct server *srv;
    char *key; /* the relay stream */
    char *id;  /* the entry's id in it */
};

static void relay_free(struct relay_req *rr)
{
    free(rr->key);
    free(rr->id);
    free(rr);
}

static void on_relay_deleted(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    (void)r;
    relay_free(privdata);
}

/* Copied (or found copied before): the relay entry can go. If the delete is
 * lost, the next sweep hands the entry back and notify_relay skips it. */
static void on_relayed(redisAsyncContext *ac, void *r, void *privdata)
{
    struct relay_req *rr = privdata;
    redisReply *reply = r;
    (void)ac;
    if (!reply || reply->type != REDIS_REPLY_INTEGER || rr->srv->stopping) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            log_warn("relay_failed", "key=%s error=\"%s\"", rr->key, reply->str);
        relay_free(rr);
        return;
    }
    if (reply->integer == 1)
        rr->srv->metrics.relayed++;
    const char *argv[] = {"XDEL", rr->key, rr->id};
    size_t lens[] = {4, strlen(rr->key), strlen(rr->id)};
    if (redis_link_command(&rr->srv->redis, rr->key, strlen(rr->key), on_relay_deleted, rr, 3, argv,
                           lens) < 0)
        relay_free(rr);
}

/* entry: {relay key, entry id, {field, value, ...}} with fields "to",
 * "account", "id" among them. */
static void relay_one(struct server *srv, const redisReply *entry)
{
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 3 ||
        entry->element[0]->type != REDIS_REPLY_STRING ||
        entry->element[1]->type != REDIS_REPLY_STRING ||
        entry->element[2]->type != REDIS_REPLY_ARRAY)
        return;
    const redisReply *fields = entry->element[2];
    const char *to = NULL, *account = NULL, *id = NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *f = fields->element[i], *v = fields->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            return;
        if (!strcmp(f->str, "to"))
            to = v->str;
        else if (!strcmp(f->str, "account"))
            account = v->str;
        else if (!strcmp(f->str, "id"))
            id = v->str;
    }
    if (!to || !account || !id || (strcmp(to, "receipts") && strcmp(to, "undelivered")))
        return;
    char target[RNAME_MAX];
    snprintf(target, sizeof(target), "%s%s", srv->cfg->redis_prefix, to);
    size_t argc = 6 + fields->elements - 2;
    const char **argv = malloc(argc * sizeof(*argv));
    size_t *lens = malloc(argc * sizeof(*lens));
    struct relay_req *rr = calloc(1, sizeof(*rr));
    if (!argv || !lens || !rr || !(rr->key = strdup(entry->element[0]->str)) ||
        !(rr->id = strdup(entry->element[1]->str))) {
        free(argv);
        free(lens);
        if (rr)
            relay_free(rr);
        return;
    }
    rr->srv = srv;
    size_t n = 0;
    argv[n] = "FCALL", lens[n++] = 5;
    argv[n] = "notify_relay", lens[n++] = 12;
    argv[n] = "1", lens[n++] = 1;
    argv[n] = target, lens[n++] = strlen(target);
    argv[n] = account, lens[n++] = strlen(account);
    argv[n] = id, lens[n++] = strlen(id);
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        if (!strcmp(fields->element[i]->str, "to"))
            continue;
        argv[n] = fields->element[i]->str, lens[n++] = fields->element[i]->len;
        argv[n] = fields->element[i + 1]->str, lens[n++] = fields->element[i + 1]->len;
    }
    if (redis_link_command(&srv->redis, target, strlen(target), on_relayed, rr, (int)n, argv,
                           lens) < 0)
        relay_free(rr);
    free(argv);
    free(lens);
}

static void on_swept(redisAsyncContext *ac, void *r, void *privdata)
{
    struct sweep_req *req = privdata;
    struct server *srv = req->srv;
    redisReply *reply = r;
    (void)ac;
    if (srv->stopping) {
        free(req);
        return;
    }
    int node = req->node;
    srv->outbox.inflight[node] = 0;
    free(req);
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER ||
        reply->element[1]->type != REDIS_REPLY_INTEGER ||
        reply->element[2]->type != REDIS_REPLY_INTEGER) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            log_warn("sweep_failed", "error=\"%s\"", reply->str);
        return;
    }
    long long written = reply->element[0]->integer, expired = reply->element[1]->integer;
    if (written > 0)
        srv->metrics.outbox_timeouts += (uint64_t)written;
    if (expired > 0)
        srv->metrics.expired += (uint64_t)expired;
    if (written > 0 || expired > 0)
        log_debug("swept", "timeouts=%lld expired=%lld", written, expired);
    for (size_t i = 3; i < reply->elements; i++)
        relay_one(srv, reply->element[i]);
    /* a backlog (more due than one sweep takes): again, back to back */
    if (reply->element[2]->integer == 1)
        sweep_node(srv, node);
}

/* The slot ranges node owns, as "lo" "hi" argument pairs appended to argv
 * (their text in buf). Returns the number of arguments added. */
static int node_ranges(struct server *srv, int node, const char **argv, size_t *lens, char *buf,
                       size_t size)
{
    int argc = 0;
    size_t used = 0;
    for (unsigned slot = 0; slot < KEYSLOT_COUNT && used + 14 <= size;) {
        if (redis_link_slot_owner(&srv->redis, slot) != node) {
            slot++;
            continue;
        }
        unsigned hi = slot;
        while (hi + 1 < KEYSLOT_COUNT && redis_link_slot_owner(&srv->redis, hi + 1) == node)
            hi++;
        int n = snprintf(buf + used, size - used, "%u", slot);
        argv[argc] = buf + used, lens[argc++] = (size_t)n;
        used += (size_t)n + 1;
        n = snprintf(buf + used, size - used, "%u", hi);
        argv[argc] = buf + used, lens[argc++] = (size_t)n;
        used += (size_t)n + 1;
        slot = hi + 1;
    }
    return argc;
}

static void sweep_node(struct server *srv, int node)
{
    /* At most a range per two slots (owners alternate): 2 arguments each,
     * up to 6 bytes with the NUL. */
    enum { MAX_RANGE_ARGS = KEYSLOT_COUNT };
    static const char *argv[7 + MAX_RANGE_ARGS];
    static size_t lens[7 + MAX_RANGE_ARGS];
    static char buf[MAX_RANGE_ARGS * 6];
    char lease[24], limit[24];
    snprintf(lease, sizeof(lease), "%d", srv->cfg->ack_sweep_ms * LEASE_PERIODS);
    snprintf(limit, sizeof(limit), "%d", SWEEP_LIMIT);
    int argc = 0;
#define ARG(str) (argv[argc] = (str), lens[argc] = strlen(argv[argc]), argc++)
    ARG("FCALL");
    ARG("notify_sweep");
    ARG("0");
    ARG(srv->cfg->redis_prefix);
    ARG(srv->cfg->node_id);
    ARG(lease);
    ARG(limit);
#undef ARG
    if (redis_link_is_cluster(&srv->redis)) {
        int added = node_ranges(srv, node, argv + argc, lens + argc, buf, sizeof(buf));
        if (!added)
            return;
        argc += added;
    }
    struct sweep_req *req = malloc(sizeof(*req));
    if (!req)
        return;
    req->srv = srv;
    req->node = node;
    if (redis_link_command_node(&srv->redis, node, on_swept, req, argc, argv, lens) < 0) {
        free(req);
        return;
    }
    srv->outbox.inflight[node] = 1;
}

static void on_sweep_timer(uv_timer_t *t)
{
    struct server *srv = t->data;
    if (!redis_link_connected(&srv->redis))
        return;
    uint8_t seen[REDIS_MAX_NODES] = {0};
    for (unsigned slot = 0; slot < KEYSLOT_COUNT; slot++) {
        int node = redis_link_slot_owner(&srv->redis, slot);
        if (node < 0 || node >= REDIS_MAX_NODES || seen[node])
            continue;
        seen[node] = 1;
        if (!srv->outbox.inflight[node])
            sweep_node(srv, node);
        if (!redis_link_is_cluster(&srv->redis))
            break;
    }
}

int outbox_init(struct server *srv)
{
    struct outbox *o = &srv->outbox;
    memset(o->inflight, 0, sizeof(o->inflight));
    if (uv_timer_init(&srv->loop, &o->timer) < 0)
        return -1;
    o->timer.data = srv;
    uint64_t period = (uint64_t)srv->cfg->ack_sweep_ms;
    return uv_timer_start(&o->timer, on_sweep_timer, period, period) < 0 ? -1 : 0;
}

void outbox_close(struct server *srv)
{
    struct outbox *o = &srv->outbox;
    uv_timer_stop(&o->timer);
    if (!uv_is_closing((uv_handle_t *)&o->timer))
        uv_close((uv_handle_t *)&o->timer, NULL);
}
