#include "webhook_sender.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server.h"
#include "wallclock.h"

#define TICK_MS 100
#define RENEW_MS 1000
/* Read again this long after a read found nothing new. */
#define IDLE_READ_MS 200
/* Entries per read, and per XAUTOCLAIM. */
#define READ_COUNT "100"
#define BACKOFF_FIRST_MS 500
#define BACKOFF_MAX_MS 30000

struct webhook_event {
    char id[48]; /* stream id: the event id */
    char *body;  /* the JSON POSTed (malloc'd); NULL when trimmed before it was sent */
};

/* The value of entry field name (a string), NULL when absent. */
static const redisReply *entry_field(const redisReply *f, const char *name)
{
    for (size_t k = 0; k + 1 < f->elements; k += 2)
        if (f->element[k]->type == REDIS_REPLY_STRING && !strcmp(f->element[k]->str, name) &&
            f->element[k + 1]->type == REDIS_REPLY_STRING)
            return f->element[k + 1];
    return NULL;
}

static json_t *field_string(const redisReply *f, const char *name)
{
    const redisReply *v = entry_field(f, name);
    return v ? json_stringn(v->str, v->len) : json_string("");
}

static json_t *field_integer(const redisReply *f, const char *name)
{
    const redisReply *v = entry_field(f, name);
    return json_integer(v ? (json_int_t)strtoll(v->str, NULL, 10) : 0);
}

/* The body of a presence event (README.md "Webhooks"). */
static json_t *presence_body(const char *id, const redisReply *f)
{
    return json_pack("{s:s, s:s, s:o, s:o, s:o, s:o}", "id", id, "type", "presence", "account",
                     field_string(f, "account"), "state", field_string(f, "state"), "at",
                     field_integer(f, "at"), "seq", field_integer(f, "seq"));
}

/* The body of an undelivered-outbox entry: its payload, the envelope as
 * clients get it, as a JSON object (null when the entry has none). */
static json_t *undelivered_body(const char *id, const redisReply *f)
{
    const redisReply *p = entry_field(f, "payload");
    json_t *payload = p && p->len ? json_loadb(p->str, p->len, 0, NULL) : NULL;
    return json_pack("{s:s, s:s, s:o, s:o, s:o, s:o, s:o}", "id", id, "type", "undelivered",
                     "account", field_string(f, "account"), "message_id", field_string(f, "id"),
                     "reason", field_string(f, "reason"), "at", field_integer(f, "at"), "payload",
                     payload ? payload : json_null());
}

static void tick(uv_timer_t *t);

static void kick(struct webhook_sender *w)
{
    if (!w->stopped)
        uv_timer_start(&w->tick, tick, 0, TICK_MS);
}

static int command(struct webhook_sender *w, redisCallbackFn *cb, int argc, const char **argv)
{
    size_t lens[16];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    return redis_link_command(&w->srv->redis, w->stream, w->stream_len, cb, w, argc, argv, lens);
}

static void drop_queue(struct webhook_sender *w)
{
    if (w->post) {
        webhook_cancel(w->post);
        w->post = NULL;
    }
    for (size_t i = 0; i < w->n_queue; i++)
        free(w->queue[i].body);
    w->n_queue = w->head = 0;
    w->attempts = 0;
}

/* ---- the lease ---------------------------------------------------------- */

struct lease_ask {
    struct webhook_sender *w;
    uint64_t sent_at; /* loop ms the call left: the lease runs from no earlier */
};

static void on_lease(redisAsyncContext *ac, void *r, void *privdata)
{
    struct lease_ask *ask = privdata;
    struct webhook_sender *w = ask->w;
    redisReply *reply = r;
    (void)ac;
    w->lease_asked = 0;
    uint64_t sent_at = ask->sent_at;
    free(ask);
    if (w->stopped)
        return;
    if (!reply || reply->type != REDIS_REPLY_INTEGER) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            log_warn("webhook_lease_failed", "error=\"%s\"", reply->str);
        return; /* what is left of the lease still counts */
    }
    if (reply->integer == 1) {
        if (!w->lease_until) {
            log_info("webhook_sender", "state=holder");
            w->phase = 0;
            snprintf(w->claim_cursor, sizeof(w->claim_cursor), "0-0");
        }
        w->lease_until = sent_at + WEBHOOK_LEASE_MS;
    } else if (w->lease_until) {
        log_info("webhook_sender", "state=standby");
        w->lease_until = 0;
        drop_queue(w);
    }
}

static void renew(struct webhook_sender *w, uint64_t now)
{
    if (w->lease_asked || now < w->next_lease_at)
        return;
    struct lease_ask *ask = malloc(sizeof(*ask));
    if (!ask)
        return;
    ask->w = w;
    ask->sent_at = now;
    char ms[16];
    snprintf(ms, sizeof(ms), "%d", WEBHOOK_LEASE_MS);
    const char *argv[] = {"FCALL", "notify_webhook_lease", "2", w->stream, w->lease, w->consumer,
                          ms};
    size_t lens[7];
    for (int i = 0; i < 7; i++)
        lens[i] = strlen(argv[i]);
    w->next_lease_at = now + RENEW_MS;
    if (redis_link_command(&w->srv->redis, w->stream, w->stream_len, on_lease, ask, 7, argv, lens) <
        0) {
        free(ask);
        return;
    }
    w->lease_asked = 1;
}

/* ---- reading the group -------------------------------------------------- */

static void on_group_created(redisAsyncContext *ac, void *r, void *privdata)
{
    struct webhook_sender *w = privdata;
    redisReply *reply = r;
    (void)ac;
    w->reading = 0;
    if (!reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSYGROUP", 9) != 0) {
        log_warn("webhook_group_failed", "error=\"%s\"", reply->str);
        return;
    }
    w->group_ready = 1;
    log_debug("webhook_group", "group=%s", WEBHOOK_GROUP);
    kick(w);
}

/* Consumers of the group are holders' incarnations: each restart adds one.
 * Once a new holder has claimed everything, the others that hold nothing
 * and have been idle a minute are gone for good. */
#define CONSUMER_IDLE_MS 60000

static void on_consumers(redisAsyncContext *ac, void *r, void *privdata)
{
    struct webhook_sender *w = privdata;
    redisReply *reply = r;
    (void)ac;
    if (w->stopped || !reply || reply->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *c = reply->element[i];
        const char *name = NULL;
        long long pending = -1, idle = 0;
        for (size_t k = 0; c->type == REDIS_REPLY_ARRAY && k + 1 < c->elements; k += 2) {
            const redisReply *key = c->element[k], *v = c->element[k + 1];
            if (key->type != REDIS_REPLY_STRING)
                continue;
            if (!strcmp(key->str, "name") && v->type == REDIS_REPLY_STRING)
                name = v->str;
            else if (!strcmp(key->str, "pending") && v->type == REDIS_REPLY_INTEGER)
                pending = v->integer;
            else if (!strcmp(key->str, "idle") && v->type == REDIS_REPLY_INTEGER)
                idle = v->integer;
        }
        if (name && pending == 0 && idle > CONSUMER_IDLE_MS && strcmp(name, w->consumer)) {
            const char *argv[] = {"XGROUP", "DELCONSUMER", w->stream, WEBHOOK_GROUP, name};
            command(w, NULL, 5, argv);
        }
    }
}

static void on_claimed(redisAsyncContext *ac, void *r, void *privdata)
{
    struct webhook_sender *w = privdata;
    redisReply *reply = r;
    (void)ac;
    w->reading = 0;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING) {
        if (reply && reply->type == REDIS_REPLY_ERROR) {
            log_warn("webhook_claim_failed", "error=\"%s\"", reply->str);
            if (strstr(reply->str, "NOGROUP"))
                w->group_ready = 0;
        }
        return;
    }
    if (reply->element[1]->type == REDIS_REPLY_ARRAY && reply->element[1]->elements)
        log_info("webhook_claimed", "events=%zu", reply->element[1]->elements);
    snprintf(w->claim_cursor, sizeof(w->claim_cursor), "%s", reply->element[0]->str);
    if (!strcmp(w->claim_cursor, "0-0")) {
        w->phase = 1; /* every consumer's pending entries are ours now */
        const char *argv[] = {"XINFO", "CONSUMERS", w->stream, WEBHOOK_GROUP};
        command(w, on_consumers, 4, argv);
    }
    kick(w);
}

static void on_read(redisAsyncContext *ac, void *r, void *privdata)
{
    struct webhook_sender *w = privdata;
    redisReply *reply = r;
    (void)ac;
    w->reading = 0;
    if (w->stopped || !reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        log_warn("webhook_read_failed", "error=\"%s\"", reply->str);
        if (strstr(reply->str, "NOGROUP"))
            w->group_ready = 0;
        return;
    }
    const redisReply *entries = NULL;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
        reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 2)
        entries = reply->element[0]->element[1];
    size_t n = entries && entries->type == REDIS_REPLY_ARRAY ? entries->elements : 0;
    if (n)
        log_debug("webhook_read", "phase=%d events=%zu", w->phase, n);
    if (n == 0) {
        if (w->phase == 1)
            w->phase = 2; /* nothing of ours left pending: new entries from now on */
        else
            w->idle_until = uv_now(&w->srv->loop) + IDLE_READ_MS;
        return;
    }
    if (!w->lease_until)
        return;    /* lost meanwhile: the next holder claims them */
    drop_queue(w); /* empty already: reads wait until everything read was sent */
    struct webhook_event *q = realloc(w->queue, n * sizeof(*q));
    if (!q)
        return;
    w->queue = q;
    for (size_t i = 0; i < n; i++) {
        const redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING)
            continue;
        struct webhook_event *ev = &q[w->n_queue++];
        snprintf(ev->id, sizeof(ev->id), "%s", e->element[0]->str);
        ev->body = NULL;
        const redisReply *f = e->element[1];
        if (f->type != REDIS_REPLY_ARRAY)
            continue; /* trimmed before it was sent */
        json_t *o = w->undelivered ? undelivered_body(ev->id, f) : presence_body(ev->id, f);
        ev->body = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(o);
        if (!ev->body) {
            w->n_queue--; /* out of memory: read again from the pending entries */
            w->phase = 1;
            break;
        }
    }
    kick(w);
}

static void create_group(struct webhook_sender *w)
{
    const char *argv[] = {"XGROUP", "CREATE", w->stream, WEBHOOK_GROUP, "$", "MKSTREAM"};
    if (command(w, on_group_created, 6, argv) == 0)
        w->reading = 1;
}

void webhook_sender_resync(struct webhook_sender *w)
{
    if (w->stopped)
        return;
    /* A Redis that came back empty lost the group: made again (BUSYGROUP
     * otherwise) before this node's first events. */
    w->group_ready = 0;
    /* It may have lost the lease too (a restart, a failover before the
     * lease replicated), so nobody trusts one from before, and nobody asks
     * for one until a POST started before the outage is surely over. */
    if (w->lease_until) {
        log_info("webhook_sender", "state=standby reason=\"redis reconnected\"");
        w->lease_until = 0;
        drop_queue(w);
    }
    w->next_lease_at = uv_now(&w->srv->loop) + WEBHOOK_TIMEOUT_MS + 1000;
    if (!w->reading)
        create_group(w);
}

/* The next group command: create the group, claim what others left,
 * read our own pending entries, or new ones. */
static void read_more(struct webhook_sender *w, uint64_t now)
{
    if (w->reading || w->head < w->n_queue)
        return;
    int rc;
    if (!w->group_ready) {
        create_group(w);
        return;
    } else if (w->phase == 0) {
        const char *argv[] = {"XAUTOCLAIM",    w->stream, WEBHOOK_GROUP, w->consumer, "0",
                              w->claim_cursor, "COUNT",   READ_COUNT,    "JUSTID"};
        rc = command(w, on_claimed, 9, argv);
    } else {
        if (w->phase == 2 && now < w->idle_until)
            return;
        const char *argv[] = {"XREADGROUP", "GROUP",   WEBHOOK_GROUP,
                              w->consumer,  "COUNT",   READ_COUNT,
                              "STREAMS",    w->stream, w->phase == 1 ? "0" : ">"};
        rc = command(w, on_read, 9, argv);
    }
    if (rc == 0)
        w->reading = 1;
}

/* ---- sending ------------------------------------------------------------ */

static void on_acked(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    (void)privdata;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        log_warn("webhook_ack_failed", "error=\"%s\"", reply->str);
}

/* Done with the head event: acknowledged, and the next one may go. */
static void advance(struct webhook_sender *w)
{
    const char *argv[] = {"XACK", w->stream, WEBHOOK_GROUP, w->queue[w->head].id};
    command(w, on_acked, 4, argv);
    free(w->queue[w->head].body);
    w->queue[w->head].body = NULL;
    w->head++;
    w->attempts = 0;
    w->next_try_at = 0;
    kick(w);
}

static void on_posted(void *data, int status)
{
    struct webhook_sender *w = data;
    w->post = NULL;
    struct webhook_event *ev = &w->queue[w->head];
    if (status >= 200 && status < 300) {
        w->srv->metrics.webhooks_sent++;
        advance(w);
        return;
    }
    w->srv->metrics.webhooks_failed++;
    unsigned shift = w->attempts < 16 ? w->attempts : 16;
    uint64_t delay = (uint64_t)BACKOFF_FIRST_MS << shift;
    if (delay > BACKOFF_MAX_MS)
        delay = BACKOFF_MAX_MS;
    w->attempts++;
    w->next_try_at = uv_now(&w->srv->loop) + delay;
    if (status > 0)
        log_warn("webhook_failed", "event=%s status=%d attempts=%u retry_ms=%llu", ev->id, status,
                 w->attempts, (unsigned long long)delay);
    else
        log_warn("webhook_failed", "event=%s error=\"%s\" attempts=%u retry_ms=%llu", ev->id,
                 uv_strerror(status), w->attempts, (unsigned long long)delay);
}

/* Notify-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>.
 * hex holds 2 * EVP_MAX_MD_SIZE + 1 bytes. -1 when out of memory. */
static int sign(const char *secret, long long t, const char *body, size_t len, char *hex)
{
    char prefix[32];
    int plen = snprintf(prefix, sizeof(prefix), "%lld.", t);
    unsigned char *signed_text = malloc((size_t)plen + len), mac[EVP_MAX_MD_SIZE];
    unsigned mlen = 0;
    if (!signed_text)
        return -1;
    memcpy(signed_text, prefix, (size_t)plen);
    memcpy(signed_text + plen, body, len);
    unsigned char *ok = HMAC(EVP_sha256(), secret, (int)strlen(secret), signed_text,
                             (size_t)plen + len, mac, &mlen);
    free(signed_text);
    if (!ok)
        return -1;
    static const char digits[] = "0123456789abcdef";
    for (unsigned i = 0; i < mlen; i++) {
        hex[2 * i] = digits[mac[i] >> 4];
        hex[2 * i + 1] = digits[mac[i] & 15];
    }
    hex[2 * mlen] = '\0';
    return 0;
}

static void post_head(struct webhook_sender *w)
{
    struct webhook_event *ev = &w->queue[w->head];
    if (!ev->body) {
        log_warn("webhook_event_lost", "event=%s reason=trimmed", ev->id);
        w->srv->metrics.webhooks_failed++;
        advance(w);
        return;
    }
    long long t = wallclock_ms() / 1000;
    char hex[2 * EVP_MAX_MD_SIZE + 1], headers[512];
    size_t len = strlen(ev->body);
    if (sign(w->srv->cfg->webhook_secret, t, ev->body, len, hex) < 0)
        return; /* out of memory: tried again on the next tick */
    snprintf(headers, sizeof(headers),
             "User-Agent: notify-gateway/%s\r\nNotify-Event-Id: %s\r\nNotify-Node: %s\r\n"
             "Notify-Signature: t=%lld,v1=%s\r\n",
             NOTIFY_VERSION, ev->id, w->srv->cfg->node_id, t, hex);
    if (w->attempts)
        w->srv->metrics.webhooks_retried++;
    w->post = webhook_post(&w->srv->loop, &w->url, headers, ev->body, len, WEBHOOK_TIMEOUT_MS,
                           on_posted, w);
    if (!w->post)
        on_posted(w, UV_ENOMEM);
}

static void tick(uv_timer_t *t)
{
    struct webhook_sender *w = t->data;
    struct server *srv = w->srv;
    if (w->stopped || !redis_link_connected(&srv->redis))
        return;
    uint64_t now = uv_now(&srv->loop);
    renew(w, now);
    if (w->lease_until && now >= w->lease_until) {
        log_warn("webhook_sender", "state=standby reason=\"lease not renewed\"");
        w->lease_until = 0;
        drop_queue(w);
    }
    if (!w->lease_until)
        return;
    read_more(w, now);
    /* A POST starts only if it ends, timeout included, before the lease
     * could have passed to another node. */
    if (!w->post && w->head < w->n_queue && now >= w->next_try_at &&
        w->lease_until > now + WEBHOOK_TIMEOUT_MS + 1000)
        post_head(w);
}

int webhook_sender_init(struct webhook_sender *w, struct server *srv, const char *consumer,
                        int undelivered)
{
    memset(w, 0, sizeof(*w));
    w->srv = srv;
    w->consumer = consumer;
    w->undelivered = undelivered;
    w->stopped = 1;
    if (!srv->cfg->webhook_url)
        return 0;
    if (webhook_url_parse(srv->cfg->webhook_url, &w->url) < 0)
        return -1; /* config.c checked the shape already */
    const char *prefix = srv->cfg->redis_prefix;
    int n = undelivered ? snprintf(w->stream, sizeof(w->stream), "%sundelivered", prefix)
                        : rnames_presence_events(w->stream, sizeof(w->stream), prefix);
    if (n < 0 || (size_t)n >= sizeof(w->stream) ||
        (size_t)snprintf(w->lease, sizeof(w->lease), "%swebhook:{%s}:lease", prefix, w->stream) >=
            sizeof(w->lease))
        return -1;
    w->stream_len = (size_t)n;
    w->on = 1;
    w->stopped = 0;
    if (uv_timer_init(&srv->loop, &w->tick) < 0)
        return -1;
    w->tick.data = w;
    return uv_timer_start(&w->tick, tick, TICK_MS, TICK_MS) < 0 ? -1 : 0;
}

double webhook_sender_oldest_pending(const struct webhook_sender *w)
{
    if (!w->lease_until || w->head >= w->n_queue)
        return 0;
    double ms = (double)strtoll(w->queue[w->head].id, NULL, 10);
    double age = ((double)wallclock_ms() - ms) / 1000.0;
    return age > 0 ? age : 0;
}

void webhook_sender_stop(struct webhook_sender *w)
{
    if (w->stopped)
        return;
    w->stopped = 1;
    drop_queue(w);
    uv_timer_stop(&w->tick);
    uv_close((uv_handle_t *)&w->tick, NULL);
    free(w->queue);
    w->queue = NULL;
    if (w->lease_until) {
        const char *argv[] = {"FCALL",    "notify_webhook_release", "2", w->stream, w->lease,
                              w->consumer};
        command(w, NULL, 6, argv);
    }
}
