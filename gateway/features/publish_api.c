#include "publish_api.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "jsoncheck.h"
#include "log.h"
#include "opaque.h"
#include "rnames.h"
#include "server.h"
#include "validate.h"

/* Accounts named in one request. */
#define PUBLISH_MAX_ACCOUNTS 1000

/* One POST /publish in flight. It lives on the wsi's opaque pointer while
 * the body arrives, then until the last Redis reply; wsi is NULL once the
 * client has gone (the replies are then just counted down). */
struct publish_req {
    struct http_deferred d; /* first: kind OPAQUE_PUBLISH */
    struct server *srv;     /* owner */
    char *body;             /* request body, up to PUBLISH_MAX_BODY */
    size_t body_len;        /* bytes in body */
    int too_large;          /* the body went over the limit */
    int reading;            /* the body is still arriving (its deadline runs) */
    int history;            /* the results are ids */
    int ack;                /* "ack" seconds (notify_publish ... ack N); 0 = none */
    int ttl;                /* "ttl" seconds; 0 = none */
    json_t *results;        /* account -> id or receivers; or receivers */
};

static int constant_time_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    unsigned char diff = (unsigned char)(alen != blen);
    for (size_t i = 0; i < alen; i++)
        diff |= (unsigned char)(a[i] ^ b[i % (blen ? blen : 1)]);
    return diff == 0;
}

static void req_free(struct http_deferred *d)
{
    struct publish_req *req = (struct publish_req *)d;
    free(req->body);
    json_decref(req->results);
    free(req);
}

/* Refuses the request before its body is read; returns what
 * publish_api_begin returns for it (-1: lws closes the connection). */
static int refuse(struct lws *wsi, int status, const char *body)
{
    http_write_status(wsi, status, body);
    return -1;
}

int publish_api_authorized(struct server *srv, struct lws *wsi)
{
    char auth[512];
    int n = lws_hdr_copy(wsi, auth, sizeof(auth), WSI_TOKEN_HTTP_AUTHORIZATION);
    const char *key = srv->cfg->api_key;
    return key && n > 7 && strncasecmp(auth, "Bearer ", 7) == 0 &&
           constant_time_equal(auth + 7, strlen(auth + 7), key, strlen(key));
}

int publish_api_begin(struct server *srv, struct lws *wsi)
{
    if (!srv->cfg->api_key)
        return refuse(wsi, 404, "publish API off: start with --api-key\n");
    if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) <= 0)
        return refuse(wsi, 405, "use POST\n");
    if (!publish_api_authorized(srv, wsi))
        return refuse(wsi, 401, "missing or bad API key\n");
    char clen[32];
    if (lws_hdr_copy(wsi, clen, sizeof(clen), WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0 &&
        strtoull(clen, NULL, 10) > PUBLISH_MAX_BODY)
        return refuse(wsi, 413, "body over 64 KiB\n");
    struct publish_req *req = calloc(1, sizeof(*req));
    if (!req)
        return refuse(wsi, 503, "out of memory\n");
    req->d.kind = OPAQUE_PUBLISH;
    req->d.wsi = wsi;
    req->d.free_req = req_free;
    req->srv = srv;
    req->reading = 1;
    lws_set_opaque_user_data(wsi, req);
    lws_set_timer_usecs(wsi, (lws_usec_t)PUBLISH_BODY_TIMEOUT_MS * 1000);
    return 0; /* lws now reads the body */
}

int publish_api_body(struct server *srv, struct lws *wsi, struct publish_req *req, const void *in,
                     size_t len)
{
    (void)srv;
    (void)wsi;
    if (len == 0)
        return 0;
    if (req->too_large || req->body_len + len > PUBLISH_MAX_BODY) {
        req->too_large = 1;
        return 0; /* keep reading, answer 413 at the end */
    }
    if (!req->body && !(req->body = malloc(PUBLISH_MAX_BODY)))
        return -1;
    memcpy(req->body + req->body_len, in, len);
    req->body_len += len;
    return 0;
}

static void answer_error(struct publish_req *req, int status, const char *why)
{
    http_deferred_answer(&req->d, status, json_pack("{s:s}", "error", why));
}

static void finish_if_done(struct publish_req *req)
{
    if (!http_deferred_due(&req->d))
        return;
    json_t *body = json_object();
    json_object_set(body, req->history ? "ids" : "receivers", req->results);
    if (req->d.failed)
        json_object_set_new(body, "error", json_string("redis unavailable for some accounts"));
    http_deferred_answer(&req->d, req->d.failed ? 503 : 200, body);
}

/* privdata: the account name (malloc'd), with the request reachable
 * through a small header so one callback serves every command. */
struct cmd_ctx {
    struct publish_req *req; /* the request */
    char account[];          /* whose command; "" for broadcast */
};

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct cmd_ctx *ctx = privdata;
    struct publish_req *req = ctx->req;
    redisReply *reply = r;
    (void)ac;
    req->d.pending--;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        req->d.failed = 1;
        if (reply)
            log_warn("publish_api_failed", "account=%s error=\"%s\"", ctx->account, reply->str);
    } else if (!*ctx->account && reply->type == REDIS_REPLY_INTEGER) {
        json_decref(req->results);
        req->results = json_integer(reply->integer);
    } else if (reply->type == REDIS_REPLY_STRING) {
        json_object_set_new(req->results, ctx->account, json_stringn(reply->str, reply->len));
    } else if (reply->type == REDIS_REPLY_INTEGER) {
        json_object_set_new(req->results, ctx->account, json_integer(reply->integer));
    }
    free(ctx);
    finish_if_done(req);
}

static int send_one(struct publish_req *req, const char *account, const char *msg, size_t len)
{
    struct server *srv = req->srv;
    const char *prefix = srv->cfg->redis_prefix;
    char name[RNAME_MAX];
    const char *argv[9];
    size_t lens[9];
    char ack[16], ttl[16];
    int argc;
    const char *publish = redis_link_publish_command(&srv->redis);
    if (!account) {
        rnames_broadcast_channel(name, sizeof(name), prefix);
        argv[0] = publish, argv[1] = name, argv[2] = msg, argc = 3;
    } else if (req->history) {
        rnames_stream(name, sizeof(name), prefix, account);
        argv[0] = "FCALL", argv[1] = "notify_publish", argv[2] = "1", argv[3] = name;
        argv[4] = msg, argc = 5;
        if (req->ack) {
            snprintf(ack, sizeof(ack), "%d", req->ack);
            argv[argc++] = "ack", argv[argc++] = ack;
        }
        if (req->ttl) {
            snprintf(ttl, sizeof(ttl), "%d", req->ttl);
            argv[argc++] = "ttl", argv[argc++] = ttl;
        }
    } else {
        rnames_account_channel(name, sizeof(name), prefix, account);
        argv[0] = publish, argv[1] = name, argv[2] = msg, argc = 3;
    }
    for (int i = 0; i < argc; i++)
        lens[i] = argv[i] == msg ? len : strlen(argv[i]);
    size_t alen = account ? strlen(account) : 0;
    struct cmd_ctx *ctx = malloc(sizeof(*ctx) + alen + 1);
    if (!ctx)
        return -1;
    ctx->req = req;
    memcpy(ctx->account, account ? account : "", alen + 1);
    if (redis_link_command(&srv->redis, name, strlen(name), on_reply, ctx, argc, argv, lens) < 0) {
        free(ctx);
        return -1;
    }
    req->d.pending++;
    return 0;
}

/* Validates the body; on success returns the message text (malloc'd) and
 * fills accounts/broadcast/history, else sets *why. */
static char *parse_body(struct publish_req *req, json_t **accounts, int *broadcast,
                        const char **why)
{
    json_error_t jerr;
    json_t *root =
        json_loadb(req->body ? req->body : "", req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    char *msg = NULL;
    *accounts = NULL;
    if (!json_is_object(root)) {
        *why = "body must be a JSON object";
        goto out;
    }
    json_t *message = json_object_get(root, "message");
    json_t *acc = json_object_get(root, "accounts");
    json_t *history = json_object_get(root, "history");
    json_t *bcast = json_object_get(root, "broadcast");
    if (!json_is_object(message)) {
        *why = "\"message\" must be a JSON object (the envelope)";
        goto out;
    }
    if ((history && !json_is_boolean(history)) || (bcast && !json_is_boolean(bcast))) {
        *why = "\"history\" and \"broadcast\" must be booleans";
        goto out;
    }
    *broadcast = json_is_true(bcast);
    req->history = json_is_true(history);
    const char *names[2] = {"ack", "ttl"};
    int *values[2] = {&req->ack, &req->ttl};
    for (int k = 0; k < 2; k++) {
        json_t *v = json_object_get(root, names[k]);
        if (!v)
            continue;
        /* the bounds of notify_publish's options (lua/notify.lua) */
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 31536000) {
            *why = "\"ack\" and \"ttl\" must be whole seconds from 1 to 31536000";
            goto out;
        }
        if (!req->history) {
            *why = "\"ack\" and \"ttl\" need \"history\": true";
            goto out;
        }
        *values[k] = (int)json_integer_value(v);
    }
    if (req->ttl && json_object_get(message, "expires_at")) {
        *why = "a message with \"ttl\" must not carry \"expires_at\" (the gateway sets it)";
        goto out;
    }
    if (*broadcast) {
        if (acc || req->history) {
            *why = "broadcast takes no \"accounts\" and no history";
            goto out;
        }
    } else {
        if (!json_is_array(acc) || json_array_size(acc) == 0 ||
            json_array_size(acc) > PUBLISH_MAX_ACCOUNTS) {
            *why = "\"accounts\" must be an array of 1 to 1000 account ids";
            goto out;
        }
        size_t i;
        json_t *v;
        json_array_foreach(acc, i, v)
        {
            if (!json_is_string(v) ||
                !validate_account_id(json_string_value(v), json_string_length(v))) {
                *why = "every account must be 1-128 bytes of [A-Za-z0-9_.@:-]";
                goto out;
            }
        }
        if (req->history && json_object_get(message, "id")) {
            *why = "a history message must not carry \"id\" (the gateway assigns it)";
            goto out;
        }
        *accounts = json_incref(acc);
    }
    msg = json_dumps(message, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!msg)
        *why = "message cannot be serialized";
out:
    json_decref(root);
    return msg;
}

int publish_api_complete(struct server *srv, struct lws *wsi, struct publish_req *req)
{
    req->reading = 0;
    lws_set_timer_usecs(wsi, LWS_SET_TIMER_USEC_CANCEL);
    if (req->too_large) {
        answer_error(req, 413, "body over 64 KiB");
        return 0;
    }
    json_t *accounts;
    int broadcast = 0;
    const char *why = NULL;
    char *msg = parse_body(req, &accounts, &broadcast, &why);
    if (!msg) {
        answer_error(req, 400, why);
        return 0;
    }
    if (!redis_link_connected(&srv->redis)) {
        free(msg);
        json_decref(accounts);
        answer_error(req, 503, "redis unavailable");
        return 0;
    }
    size_t len = strlen(msg);
    req->results = broadcast ? json_integer(0) : json_object();
    req->d.pending = 1; /* held until every command is queued */
    if (broadcast) {
        if (send_one(req, NULL, msg, len) < 0)
            req->d.failed = 1;
    } else {
        size_t i;
        json_t *v;
        json_array_foreach(accounts, i, v)
        {
            if (send_one(req, json_string_value(v), msg, len) < 0)
                req->d.failed = 1;
        }
    }
    free(msg);
    json_decref(accounts);
    req->d.pending--;
    finish_if_done(req);
    return 0;
}

int publish_api_timeout(struct server *srv, struct lws *wsi, struct publish_req *req)
{
    if (!req->reading)
        return 0; /* the body is in: the answer waits for Redis, not the client */
    srv->metrics.rejected[REJECT_TIMEOUT]++;
    char why[64];
    snprintf(why, sizeof(why), "request body not complete within %d s\n",
             PUBLISH_BODY_TIMEOUT_MS / 1000);
    http_write_status(wsi, 408, why);
    return -1;
}
