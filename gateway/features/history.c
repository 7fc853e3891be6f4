#include "history.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "keyslot.h"
#include "log.h"
#include "notify_lua.h"
#include "rnames.h"
#include "server.h"
#include "wallclock.h"

/* Delay before a failed replay is tried again. */
#define RETRY_MS 500
/* How far our clock may be ahead of the Redis server's, whose clock makes
 * the stream ids: a catch-up without an id of the client's starts this
 * much before the time it is owed from. */
#define HISTORY_CLOCK_SKEW_MS 2000

static void on_retry_timer(uv_timer_t *t);

/* Replaces every occurrence of name in *text by value (reallocating). */
static int substitute(char **text, const char *name, const char *value)
{
    char *at;
    while ((at = strstr(*text, name))) {
        size_t before = (size_t)(at - *text), nlen = strlen(name), vlen = strlen(value);
        size_t rest = strlen(at + nlen);
        char *out = malloc(before + vlen + rest + 1);
        if (!out)
            return -1;
        memcpy(out, *text, before);
        memcpy(out + before, value, vlen);
        memcpy(out + before + vlen, at + nlen, rest + 1);
        free(*text);
        *text = out;
    }
    return 0;
}

int history_init(struct server *srv)
{
    if (uv_timer_init(&srv->loop, &srv->history.retry_timer) < 0)
        return -1;
    srv->history.retry_timer.data = srv;
    char maxlen[16], ttl[16], receipts[16], undelivered[16];
    snprintf(maxlen, sizeof(maxlen), "%d", srv->cfg->history_max_len);
    snprintf(ttl, sizeof(ttl), "%d", srv->cfg->history_ttl);
    snprintf(receipts, sizeof(receipts), "%d", srv->cfg->receipts_max_len);
    snprintf(undelivered, sizeof(undelivered), "%d", srv->cfg->undelivered_max_len);
    /* A cluster's per-slot keys are named by tags the library looks up
     * (lua/notify.lua, TAGS); a single Redis has one key of each. */
    char *tags = calloc(1, srv->cfg->redis_cluster ? KEYSLOT_COUNT * KEYSLOT_TAG_LEN + 1 : 1);
    if (!tags)
        return -1;
    if (srv->cfg->redis_cluster)
        keyslot_tags(tags);
    srv->notify_lib = strdup(notify_lua);
    int rc = !srv->notify_lib || substitute(&srv->notify_lib, "__HISTORY_MAX_LEN__", maxlen) < 0 ||
                     substitute(&srv->notify_lib, "__HISTORY_TTL__", ttl) < 0 ||
                     substitute(&srv->notify_lib, "__RECEIPTS_MAX_LEN__", receipts) < 0 ||
                     substitute(&srv->notify_lib, "__UNDELIVERED_MAX_LEN__", undelivered) < 0 ||
                     substitute(&srv->notify_lib, "__PUBLISH__",
                                redis_link_publish_command(&srv->redis)) < 0 ||
                     substitute(&srv->notify_lib, "__SLOT_TAGS__", tags) < 0
                 ? -1
                 : 0;
    free(tags);
    return rc;
}

void history_free(struct server *srv)
{
    free(srv->notify_lib);
    srv->notify_lib = NULL;
}

/* What one session is owed: allocated when a replay becomes owed, freed
 * once no replay is owed or running. */
struct replay {
    struct stream_id since; /* replay from here when pending */
    struct frame **held;    /* live notifications held while running */
    uint32_t n_held;        /* frames in held */
    uint32_t cap_held;      /* capacity of held */
    uint8_t pending;        /* owed, not started (waits for history_ready) */
    uint8_t running;        /* in flight: live frames are held */
    uint8_t exact;          /* since is an id the client saw (gaps matter) */
};

/* Identifies the connection across the round trip: it may be gone (and its
 * memory reused) when the answer comes, so it is looked up again by
 * its id, never kept as a pointer. */
struct replay_req {
    struct server *srv;            /* owner */
    char conn_id[CONN_ID_LEN + 1]; /* whose replay */
};

static struct replay *replay_of(struct server *srv, struct session *s)
{
    if (!s->replay && !(s->replay = calloc(1, sizeof(*s->replay)))) {
        srv->metrics.dropped[DROP_NO_MEMORY]++;
        session_end(s, 1011);
    }
    return s->replay;
}

static void drop_held(struct replay *r)
{
    for (uint32_t i = 0; i < r->n_held; i++)
        frame_unref(r->held[i]);
    free(r->held);
    r->held = NULL;
    r->n_held = r->cap_held = 0;
}

void history_forget(struct session *s)
{
    if (!s->replay)
        return;
    drop_held(s->replay);
    free(s->replay);
    s->replay = NULL;
}

void history_resume(struct server *srv, struct session *s, const struct stream_id *since)
{
    struct replay *r = replay_of(srv, s);
    if (!r)
        return;
    r->since = *since;
    r->pending = r->exact = 1;
}

void history_lost(struct server *srv, struct session *s)
{
    if (s->replay && s->replay->pending)
        return;
    struct replay *r = replay_of(srv, s);
    if (!r)
        return;
    /* Whatever is published from now until the subscription is back must
     * be replayed: from the connection's last id, or for a connection that
     * never got one, from a little before the loss (stream ids are the
     * Redis server's clock, ours may differ slightly). */
    r->pending = 1;
    r->exact = s->has_last_id;
    if (s->has_last_id) {
        r->since = s->last_id;
    } else {
        uint64_t floor_ms = (uint64_t)wallclock_ms() - HISTORY_CLOCK_SKEW_MS;
        uint64_t from = (uint64_t)s->connected_at - HISTORY_CLOCK_SKEW_MS;
        r->since.ms = from > floor_ms ? from : floor_ms;
        r->since.seq = 0;
    }
}

int history_hold(struct server *srv, struct session *s, struct frame *f)
{
    struct replay *r = s->replay;
    if (!session_is_open(s))
        return 0;
    /* A session whose register reply is not out yet holds like one whose
     * replay runs: the client learns who it is before anything else (a
     * broadcast can reach it while its account's channel is being
     * subscribed). */
    if (s->registered && (!r || !r->running))
        return 0;
    if (!r && !(r = replay_of(srv, s)))
        return 1;
    if (r->n_held >= (uint32_t)srv->cfg->max_queue_messages) {
        srv->metrics.dropped[DROP_SLOW_CONSUMER] += r->n_held + 1;
        drop_held(r);
        session_end(s, 1013);
        return 1;
    }
    if (r->n_held == r->cap_held) {
        uint32_t cap = r->cap_held ? r->cap_held * 2 : 8;
        struct frame **held = realloc(r->held, sizeof(*held) * cap);
        if (!held) {
            srv->metrics.dropped[DROP_NO_MEMORY]++;
            return 1;
        }
        r->held = held;
        r->cap_held = cap;
    }
    frame_ref(f);
    r->held[r->n_held++] = f;
    return 1;
}

/* The replay is over: the held frames are delivered in order, those the
 * replay sent skipped. */
static void release_held(struct session *s)
{
    struct replay *r = s->replay;
    r->running = 0;
    struct frame **held = r->held;
    uint32_t n = r->n_held;
    r->held = NULL;
    r->n_held = r->cap_held = 0;
    if (!r->pending)
        history_forget(s);
    for (uint32_t i = 0; i < n; i++) {
        session_deliver(s, held[i]);
        frame_unref(held[i]);
    }
    free(held);
}

static void apply_replay(struct server *srv, struct session *s, const redisReply *reply)
{
    if (reply->elements < 2 || reply->element[0]->type != REDIS_REPLY_INTEGER)
        return;
    /* A gap only means something to a connection that had a position in
     * the stream; a catch-up from "a little before the outage" has none. */
    if (reply->element[0]->integer == 1 && s->replay->exact) {
        const redisReply *oldest = reply->element[1];
        session_send_envelope(s, "gap", oldest->type == REDIS_REPLY_STRING ? oldest->str : "", "");
    }
    for (size_t i = 2; i + 1 < reply->elements; i += 2) {
        const redisReply *id = reply->element[i], *msg = reply->element[i + 1];
        if (id->type != REDIS_REPLY_STRING || msg->type != REDIS_REPLY_STRING)
            continue;
        struct stream_id sid;
        if (stream_id_parse(id->str, id->len, &sid) < 0)
            continue;
        if (s->has_last_id && stream_id_cmp(&sid, &s->last_id) <= 0)
            continue;
        struct frame *f = frame_new(msg->str, msg->len);
        if (!f) {
            srv->metrics.dropped[DROP_NO_MEMORY]++;
            continue;
        }
        f->id = sid;
        f->has_id = 1;
        s->last_id = sid;
        s->has_last_id = 1;
        session_send(s, f);
        frame_unref(f);
        srv->metrics.replayed++;
    }
}

/* A replay that could not run (Redis away, a cluster slot moving): the
 * connection keeps holding live frames, so order is kept, and the replay
 * is tried again shortly. */
static void retry_later(struct server *srv, struct session *s)
{
    struct history *h = &srv->history;
    if (h->n_retry == h->cap_retry) {
        size_t cap = h->cap_retry ? h->cap_retry * 2 : 16;
        char(*bigger)[CONN_ID_LEN + 1] = realloc(h->retry, cap * sizeof(*bigger));
        if (!bigger) {
            session_end(s, 1011);
            return;
        }
        h->retry = bigger;
        h->cap_retry = cap;
    }
    memcpy(h->retry[h->n_retry++], s->id, CONN_ID_LEN + 1);
    if (!uv_is_active((uv_handle_t *)&h->retry_timer))
        uv_timer_start(&h->retry_timer, on_retry_timer, RETRY_MS, 0);
}

static void on_replay(redisAsyncContext *ac, void *r, void *privdata)
{
    struct replay_req *req = privdata;
    struct server *srv = req->srv;
    redisReply *reply = r;
    (void)ac;
    struct session *s = registry_find_session(&srv->registry, req->conn_id);
    free(req);
    if (!s || srv->stopping || !s->replay)
        return;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        if (reply)
            log_warn("replay_retry", "conn=%s error=\"%s\"", s->id,
                     reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
        retry_later(srv, s);
        return;
    }
    apply_replay(srv, s, reply);
    release_held(s);
}

static void start_replay(struct server *srv, struct session *s)
{
    struct replay *r = s->replay;
    char key[RNAME_MAX], since[STREAM_ID_MAX];
    rnames_stream(key, sizeof(key), srv->cfg->redis_prefix, s->acct->id);
    stream_id_format(&r->since, since, sizeof(since));
    struct replay_req *req = malloc(sizeof(*req));
    if (!req)
        return;
    req->srv = srv;
    memcpy(req->conn_id, s->id, sizeof(req->conn_id));
    const char *argv[] = {"FCALL_RO", "notify_replay", "1", key, since};
    size_t lens[] = {8, 13, 1, strlen(key), strlen(since)};
    r->pending = 0;
    r->running = 1; /* live frames are held from now on */
    if (redis_link_command(&srv->redis, key, strlen(key), on_replay, req, 5, argv, lens) < 0) {
        free(req);
        retry_later(srv, s);
    }
}

void history_ready(struct server *srv, struct session *s)
{
    if (!s->acct || !s->replay || s->replay->running)
        return;
    if (s->replay->pending)
        start_replay(srv, s); /* what was held waits for the replay */
    else if (s->replay->n_held)
        release_held(s); /* held until the register reply went out */
}

static void on_retry_timer(uv_timer_t *t)
{
    struct server *srv = t->data;
    struct history *h = &srv->history;
    char(*ids)[CONN_ID_LEN + 1] = h->retry;
    size_t n = h->n_retry;
    h->retry = NULL;
    h->n_retry = h->cap_retry = 0;
    for (size_t i = 0; i < n; i++) {
        struct session *s = registry_find_session(&srv->registry, ids[i]);
        if (s && s->replay && s->replay->running && session_is_open(s))
            start_replay(srv, s);
    }
    free(ids);
}

void history_close(struct server *srv)
{
    struct history *h = &srv->history;
    uv_timer_stop(&h->retry_timer);
    if (!uv_is_closing((uv_handle_t *)&h->retry_timer))
        uv_close((uv_handle_t *)&h->retry_timer, NULL);
    free(h->retry);
    h->retry = NULL;
    h->n_retry = h->cap_retry = 0;
}
