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

static void on_loaded(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply *reply = r;
    (void)ac;
    (void)privdata;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        log_error("function_load_failed", "library=notify error=\"%s\"", reply->str);
    else if (reply)
        log_debug("function_loaded", "library=notify");
}

void history_load(struct server *srv)
{
    const char *argv[] = {"FUNCTION", "LOAD", "REPLACE", srv->notify_lib};
    size_t lens[] = {8, 4, 7, strlen(srv->notify_lib)};
    redis_link_command_all(&srv->redis, on_loaded, NULL, 4, argv, lens);
}

/* Identifies the connection across the round trip: it may be gone (and its
 * memory reused by lws) when the answer comes, so it is looked up again by
 * its id, never kept as a pointer. */
struct replay_req {
    struct server *srv;            /* owner */
    char conn_id[CONN_ID_LEN + 1]; /* whose replay */
};

static void send_gap(struct conn *c, const char *oldest)
{
    size_t len;
    char *json = envelope_build("gap", oldest, "", &len);
    struct frame *f = json ? frame_new(json, len) : NULL;
    free(json);
    if (f) {
        conn_send(c, f);
        frame_unref(f);
    }
}

static void apply_replay(struct server *srv, struct conn *c, const redisReply *reply)
{
    if (reply->elements < 2 || reply->element[0]->type != REDIS_REPLY_INTEGER)
        return;
    /* A gap only means something to a connection that had a position in
     * the stream; a catch-up from "a little before the outage" has none. */
    if (reply->element[0]->integer == 1 && c->replay_exact) {
        const redisReply *oldest = reply->element[1];
        send_gap(c, oldest->type == REDIS_REPLY_STRING ? oldest->str : "");
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

static void on_replay(redisAsyncContext *ac, void *r, void *privdata)
{
    struct replay_req *req = privdata;
    struct server *srv = req->srv;
    redisReply *reply = r;
    (void)ac;
    struct conn *c = srv ? registry_find_conn(&srv->registry, req->conn_id) : NULL;
    free(req);
    if (!c)
        return;
    if (!reply) {
        /* The link failed: the replay stays pending for the reconnect. */
        c->replay_pending = 1;
    } else if (reply->type == REDIS_REPLY_ERROR) {
        log_error("replay_failed", "conn=%s error=\"%s\"", c->id, reply->str);
    } else if (reply->type == REDIS_REPLY_ARRAY) {
        apply_replay(srv, c, reply);
    }
    conn_release_held(c);
}

void history_replay(struct server *srv, struct conn *c)
{
    if (!c->acct || c->replaying)
        return;
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
    if (redis_link_command(&srv->redis, key, strlen(key), on_replay, req, 5, argv, lens) < 0) {
        free(req);
        return; /* still pending: retried once Redis is back */
    }
    c->replay_pending = 0;
    c->replaying = 1;
}
