#include "presence_events.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "presence_events_lua.h"
#include "server.h"
#include "wallclock.h"

/* Changes kept while Redis is unreachable; beyond this the resync after
 * reconnecting repairs arrivals, and departures wait for the sweep of
 * this incarnation (never: it is alive) or a later connection. */
#define MAX_QUEUED_OPS 200000
#define FLUSH_DELAY_MS 20
/* A batch Redis refused or lost is sent again after this. */
#define RETRY_MS 500
/* Work one sweep call may do: accounts of lapsed holders plus due offlines
 * (a call of Redis's stays short; more is asked for at once). */
#define SWEEP_BUDGET 1000

struct pevents_op {
    uint8_t add;                      /* 1 = first connection here, 0 = last one gone */
    char account[ACCOUNT_ID_MAX + 1]; /* whose */
};

int presence_events_library(char **lib)
{
    size_t a = strlen(*lib), b = strlen(presence_events_lua);
    char *joined = realloc(*lib, a + b + 2);
    if (!joined)
        return -1;
    joined[a] = '\n';
    memcpy(joined + a + 1, presence_events_lua, b + 1);
    *lib = joined;
    return 0;
}

static void flush(struct presence_events *pe);

static void on_flush_timer(uv_timer_t *t)
{
    flush(t->data);
}

static void schedule_flush(struct presence_events *pe, uint64_t ms)
{
    if (!pe->stopped && !uv_is_active((uv_handle_t *)&pe->flush_timer))
        uv_timer_start(&pe->flush_timer, on_flush_timer, ms, 0);
}

static void on_leave_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct server *srv = privdata;
    redisReply *reply = r;
    (void)ac;
    if (reply && reply->type == REDIS_REPLY_INTEGER)
        srv->metrics.presence_events += (uint64_t)reply->integer;
}

/* Everything incarnation holds goes: offline (after the debounce) where
 * nobody else holds the account. */
static void leave(struct presence_events *pe, const char *incarnation)
{
    struct server *srv = pe->srv;
    char debounce[24], maxlen[24];
    snprintf(debounce, sizeof(debounce), "%d", srv->cfg->presence_debounce_ms);
    snprintf(maxlen, sizeof(maxlen), "%d", srv->cfg->presence_events_max_len);
    const char *argv[] = {"FCALL", "notify_presence_leave", "1", pe->stream, incarnation, debounce,
                          maxlen};
    size_t lens[7];
    for (int i = 0; i < 7; i++)
        lens[i] = strlen(argv[i]);
    redis_link_command(&srv->redis, pe->stream, pe->stream_len, on_leave_reply, srv, 7, argv, lens);
}

static void on_apply_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct presence_events *pe = privdata;
    redisReply *reply = r;
    (void)ac;
    size_t n = pe->n_flying;
    pe->n_flying = 0;
    if (pe->stopped)
        return;
    if (!reply || reply->type != REDIS_REPLY_INTEGER) {
        /* Sent again, in the same order before anything newer: '+' and '-'
         * of one holder are idempotent, so a batch Redis did run is harmless
         * to run twice. */
        if (reply)
            log_warn("presence_events_failed", "error=\"%s\"",
                     reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
        schedule_flush(pe, RETRY_MS);
        return;
    }
    pe->srv->metrics.presence_events += (uint64_t)reply->integer;
    memmove(pe->ops, pe->ops + n, (pe->n_ops - n) * sizeof(*pe->ops));
    pe->n_ops -= n;
    if (pe->n_ops)
        schedule_flush(pe, 0);
    else if (pe->retire[0]) {
        /* every account held now is recorded under the new incarnation */
        leave(pe, pe->retire);
        pe->retire[0] = '\0';
    }
}

/* notify_presence_apply's arguments before the changes: FCALL, the
 * function, numkeys, stream, incarnation, ttl, debounce, max len. */
#define APPLY_HEAD 8

static void flush(struct presence_events *pe)
{
    struct server *srv = pe->srv;
    if (pe->stopped || pe->n_flying || !pe->n_ops || !redis_link_connected(&srv->redis))
        return; /* kept until the batch in flight is answered or Redis is back */
    size_t n = pe->n_ops < PEVENTS_BATCH ? pe->n_ops : PEVENTS_BATCH;
    int argc = APPLY_HEAD + 2 * (int)n;
    const char **argv = malloc(sizeof(*argv) * (size_t)argc);
    size_t *lens = malloc(sizeof(*lens) * (size_t)argc);
    if (!argv || !lens) {
        free(argv);
        free(lens);
        schedule_flush(pe, RETRY_MS);
        return;
    }
    char ttl[24], debounce[24], maxlen[24];
    snprintf(ttl, sizeof(ttl), "%d", srv->cfg->presence_ttl * 1000);
    snprintf(debounce, sizeof(debounce), "%d", srv->cfg->presence_debounce_ms);
    snprintf(maxlen, sizeof(maxlen), "%d", srv->cfg->presence_events_max_len);
    const char *head[] = {
        "FCALL", "notify_presence_apply", "1", pe->stream, pe->incarnation, ttl, debounce, maxlen};
    int k = 0;
    for (; k < APPLY_HEAD; k++) {
        argv[k] = head[k];
        lens[k] = strlen(head[k]);
    }
    for (size_t i = 0; i < n; i++) {
        argv[k] = pe->ops[i].add ? "+" : "-";
        lens[k++] = 1;
        argv[k] = pe->ops[i].account;
        lens[k++] = strlen(pe->ops[i].account);
    }
    pe->n_flying = n;
    if (redis_link_command(&srv->redis, pe->stream, pe->stream_len, on_apply_reply, pe, argc, argv,
                           lens) < 0) {
        pe->n_flying = 0;
        schedule_flush(pe, RETRY_MS);
    }
    free(argv);
    free(lens);
}

static void queue(struct presence_events *pe, int add, const char *account)
{
    if (!pe->on || pe->stopped)
        return;
    if (pe->n_ops == pe->cap_ops) {
        size_t cap = pe->cap_ops ? pe->cap_ops * 2 : 256;
        struct pevents_op *bigger =
            pe->n_ops < MAX_QUEUED_OPS ? realloc(pe->ops, cap * sizeof(*bigger)) : NULL;
        if (!bigger) {
            if (pe->dropped++ % 10000 == 0)
                log_warn("presence_events_dropped", "count=%llu", (unsigned long long)pe->dropped);
            return;
        }
        pe->ops = bigger;
        pe->cap_ops = cap;
    }
    struct pevents_op *op = &pe->ops[pe->n_ops++];
    op->add = (uint8_t)add;
    size_t len = strnlen(account, ACCOUNT_ID_MAX);
    memcpy(op->account, account, len);
    op->account[len] = '\0';
    schedule_flush(pe, FLUSH_DELAY_MS);
}

void presence_events_up(struct presence_events *pe, const char *account)
{
    queue(pe, 1, account);
}

void presence_events_down(struct presence_events *pe, const char *account)
{
    queue(pe, 0, account);
}

/* A new incarnation: "<node id>/<ms>", never the one before. */
static void new_incarnation(struct presence_events *pe)
{
    long long ms = (long long)wallclock_ms();
    if (ms <= pe->incarnation_ms)
        ms = pe->incarnation_ms + 1;
    pe->incarnation_ms = ms;
    snprintf(pe->incarnation, sizeof(pe->incarnation), "%s/%lld", pe->srv->cfg->node_id, ms);
}

void presence_events_resync(struct presence_events *pe)
{
    if (!pe->on || pe->stopped)
        return;
    if (pe->registered && !pe->n_flying) {
        /* Redis may have lost writes meanwhile (a restart, a failover
         * before replication): rather than trust what it holds for this
         * incarnation, every account held now is recorded under a new one,
         * and then the old one leaves; changes queued meanwhile are covered
         * by both. If the old one's leave is itself lost, the sweep removes
         * it once it lapses. */
        snprintf(pe->retire, sizeof(pe->retire), "%s", pe->incarnation);
        new_incarnation(pe);
        pe->n_ops = 0;
    }
    pe->registered = 1;
    struct account *a, *tmp;
    HASH_ITER(hh, pe->srv->registry.accounts, a, tmp)
    {
        queue(pe, 1, a->id);
    }
    if (!pe->n_ops && pe->retire[0]) {
        leave(pe, pe->retire);
        pe->retire[0] = '\0';
    }
    flush(pe);
}

static void sweep(struct presence_events *pe);

static void on_sweep_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct presence_events *pe = privdata;
    redisReply *reply = r;
    (void)ac;
    pe->sweeping = 0;
    if (pe->stopped)
        return;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            log_warn("presence_sweep_failed", "error=\"%s\"", reply->str);
        return;
    }
    pe->srv->metrics.presence_events += (uint64_t)reply->element[0]->integer;
    if (reply->element[1]->type == REDIS_REPLY_INTEGER && reply->element[1]->integer)
        sweep(pe); /* the budget ran out: more is due now */
}

static void sweep(struct presence_events *pe)
{
    struct server *srv = pe->srv;
    if (pe->sweeping || pe->stopped || !redis_link_connected(&srv->redis))
        return;
    char ttl[24], debounce[24], maxlen[24], budget[24];
    snprintf(ttl, sizeof(ttl), "%d", srv->cfg->presence_ttl * 1000);
    snprintf(debounce, sizeof(debounce), "%d", srv->cfg->presence_debounce_ms);
    snprintf(maxlen, sizeof(maxlen), "%d", srv->cfg->presence_events_max_len);
    snprintf(budget, sizeof(budget), "%d", SWEEP_BUDGET);
    const char *argv[] = {
        "FCALL", "notify_presence_sweep", "1", pe->stream, pe->incarnation, ttl, debounce, maxlen,
        budget};
    size_t lens[9];
    for (int i = 0; i < 9; i++)
        lens[i] = strlen(argv[i]);
    pe->sweeping = 1;
    if (redis_link_command(&srv->redis, pe->stream, pe->stream_len, on_sweep_reply, pe, 9, argv,
                           lens) < 0)
        pe->sweeping = 0;
}

static void on_sweep_timer(uv_timer_t *t)
{
    sweep(t->data);
}

int presence_events_init(struct presence_events *pe, struct server *srv)
{
    memset(pe, 0, sizeof(*pe));
    pe->srv = srv;
    pe->on = srv->cfg->presence_events;
    int n = rnames_presence_events(pe->stream, sizeof(pe->stream), srv->cfg->redis_prefix);
    if (n < 0)
        return -1;
    pe->stream_len = (size_t)n;
    new_incarnation(pe);
    if (!pe->on) {
        pe->stopped = 1; /* nothing to stop: no timers were made */
        return 0;
    }
    if (uv_timer_init(&srv->loop, &pe->flush_timer) < 0 ||
        uv_timer_init(&srv->loop, &pe->sweep_timer) < 0)
        return -1;
    pe->flush_timer.data = pe->sweep_timer.data = pe;
    return uv_timer_start(&pe->sweep_timer, on_sweep_timer, PEVENTS_SWEEP_MS, PEVENTS_SWEEP_MS) < 0
               ? -1
               : 0;
}

void presence_events_stop(struct presence_events *pe)
{
    if (pe->stopped)
        return;
    pe->stopped = 1;
    uv_timer_stop(&pe->flush_timer);
    uv_timer_stop(&pe->sweep_timer);
    uv_close((uv_handle_t *)&pe->flush_timer, NULL);
    uv_close((uv_handle_t *)&pe->sweep_timer, NULL);
    free(pe->ops);
    pe->ops = NULL;
    pe->n_ops = pe->cap_ops = 0;
    /* What is still queued needs no sending: leaving removes everything
     * this incarnation holds, and arrivals not sent were never recorded. */
    leave(pe, pe->incarnation);
    if (pe->retire[0])
        leave(pe, pe->retire);
}
