#include "history.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "log.h"
#include "notify_lua.h"
#include "rnames.h"
#include "server.h"

/* Delay before a failed replay is tried again. */
#define RETRY_MS 500

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
    char maxlen[16], ttl[16];
    snprintf(maxlen, sizeof(maxlen), "%d", srv->cfg->history_max_len);
    snprintf(ttl, sizeof(ttl), "%d", srv->cfg->history_ttl);
    srv->notify_lib = strdup(notify_lua);
    if (!srv->notify_lib || substitute(&srv->notify_lib, "__HISTORY_MAX_LEN__", maxlen) < 0 ||
        substitute(&srv->notify_lib, "__HISTORY_TTL__", ttl) < 0 ||
        substitute(&srv->notify_lib, "__PUBLISH__", redis_link_publish_command(&srv->redis)) < 0)
        return -1;
    return 0;
}

void history_free(struct server *srv)
{
    free(srv->notify_lib);
    srv->notify_lib = NULL;
}

/* Identifies the connection across the round trip: it may be gone (and its
 * memory reused) when the answer comes, so it is looked up again by
 * its id, never kept as a pointer. */
struct replay_req {
    struct server *srv;            /* owner */
    char conn_id[CONN_ID_LEN + 1]; /* whose replay */
};

static void apply_replay(struct server *srv, struct conn *c, const redisReply *reply)
{
    if (reply->elements < 2 || reply->element[0]->type != REDIS_REPLY_INTEGER)
        return;
    /* A gap only means something to a connection that had a position in
     * the stream; a catch-up from "a little before the outage" has none. */
    if (reply->element[0]->integer == 1 && c->replay_exact) {
        const redisReply *oldest = reply->element[1];
        conn_send_envelope(c, "gap", oldest->type == REDIS_REPLY_STRING ? oldest->str : "", "");
    }
    for (size_t i = 2; i + 1 < reply->elements; i += 2) {
        const redisReply *id = reply->element[i], *msg = reply->element[i + 1];
        if (id->type != REDIS_REPLY_STRING || msg->type != REDIS_REPLY_STRING)
            continue;
        struct stream_id sid;
        if (stream_id_parse(id->str, id->len, &sid) < 0)
            continue;
        if (c->has_last_id && stream_id_cmp(&sid, &c->last_id) <= 0)
            continue;
        struct frame *f = frame_new(msg->str, msg->len);
        if (!f) {
            srv->metrics.dropped[DROP_NO_MEMORY]++;
            continue;
        }
        f->id = sid;
        f->has_id = 1;
        c->last_id = sid;
        c->has_last_id = 1;
        conn_send(c, f);
        frame_unref(f);
        srv->metrics.replayed++;
    }
}

/* A replay that could not run (Redis away, a cluster slot moving): the
 * connection keeps holding live frames, so order is kept, and the replay
 * is tried again shortly. */
static void retry_later(struct server *srv, struct conn *c)
{
    struct history *h = &srv->history;
    if (h->n_retry == h->cap_retry) {
        size_t cap = h->cap_retry ? h->cap_retry * 2 : 16;
        char(*bigger)[CONN_ID_LEN + 1] = realloc(h->retry, cap * sizeof(*bigger));
        if (!bigger) {
            conn_close(c, 1011);
            return;
        }
        h->retry = bigger;
        h->cap_retry = cap;
    }
    memcpy(h->retry[h->n_retry++], c->id, CONN_ID_LEN + 1);
    if (!uv_is_active((uv_handle_t *)&h->retry_timer))
        uv_timer_start(&h->retry_timer, on_retry_timer, RETRY_MS, 0);
}

static void on_replay(redisAsyncContext *ac, void *r, void *privdata)
{
    struct replay_req *req = privdata;
    struct server *srv = req->srv;
    redisReply *reply = r;
    (void)ac;
    struct conn *c = registry_find_conn(&srv->registry, req->conn_id);
    free(req);
    if (!c || srv->stopping)
        return;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        if (reply)
            log_warn("replay_retry", "conn=%s error=\"%s\"", c->id,
                     reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
        retry_later(srv, c);
        return;
    }
    apply_replay(srv, c, reply);
    conn_release_held(c);
}

static void start_replay(struct server *srv, struct conn *c)
{
    char key[RNAME_MAX], since[STREAM_ID_MAX];
    rnames_stream(key, sizeof(key), srv->cfg->redis_prefix, c->acct->id);
    stream_id_format(&c->replay_since, since, sizeof(since));
    struct replay_req *req = malloc(sizeof(*req));
    if (!req)
        return;
    req->srv = srv;
    memcpy(req->conn_id, c->id, sizeof(req->conn_id));
    const char *argv[] = {"FCALL_RO", "notify_replay", "1", key, since};
    size_t lens[] = {8, 13, 1, strlen(key), strlen(since)};
    c->replay_pending = 0;
    c->replaying = 1; /* live frames are held from now on */
    if (redis_link_command(&srv->redis, key, strlen(key), on_replay, req, 5, argv, lens) < 0) {
        free(req);
        retry_later(srv, c);
    }
}

void history_replay(struct server *srv, struct conn *c)
{
    if (c->acct && !c->replaying)
        start_replay(srv, c);
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
        struct conn *c = registry_find_conn(&srv->registry, ids[i]);
        if (c && c->replaying && !c->close_code)
            start_replay(srv, c);
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
