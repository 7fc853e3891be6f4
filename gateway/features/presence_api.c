#include "presence_api.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "opaque.h"
#include "publish_api.h"
#include "rnames.h"
#include "server.h"
#include "validate.h"
#include "wallclock.h"

/* The longest accounts= value taken: PRESENCE_API_MAX ids of 128 bytes. */
#define ACCOUNTS_ARG_MAX (PRESENCE_API_MAX * (ACCOUNT_ID_MAX + 1) + 16)

/* One GET /presence in flight, on the wsi's opaque pointer until answered;
 * wsi is NULL once the client has gone. */
struct presence_req {
    struct http_deferred d; /* first: kind OPAQUE_PRESENCE */
    json_t *accounts;       /* account -> {"online", "connections"} */
};

/* One command's context: the request and the account it asks about. */
struct presence_ask {
    struct presence_req *req;
    char account[ACCOUNT_ID_MAX + 1];
};

static void req_free(struct http_deferred *d)
{
    struct presence_req *req = (struct presence_req *)d;
    json_decref(req->accounts);
    free(req);
}

static void finish_if_done(struct presence_req *req)
{
    if (!http_deferred_due(&req->d))
        return;
    if (req->d.failed) {
        http_deferred_answer(&req->d, 503,
                             json_pack("{s:s}", "error", "redis unavailable for some accounts"));
        return;
    }
    http_deferred_answer(&req->d, 200, json_pack("{s:O}", "accounts", req->accounts));
}

static void on_count(redisAsyncContext *ac, void *r, void *privdata)
{
    struct presence_ask *ask = privdata;
    struct presence_req *req = ask->req;
    redisReply *reply = r;
    (void)ac;
    req->d.pending--;
    if (!reply || reply->type != REDIS_REPLY_INTEGER)
        req->d.failed = 1;
    else
        json_object_set_new(req->accounts, ask->account,
                            json_pack("{s:b, s:I}", "online", reply->integer > 0, "connections",
                                      (json_int_t)reply->integer));
    free(ask);
    finish_if_done(req);
}

static int ask(struct server *srv, struct presence_req *req, const char *account, const char *min)
{
    char key[RNAME_MAX];
    int klen = rnames_presence(key, sizeof(key), srv->cfg->redis_prefix, account);
    struct presence_ask *a = malloc(sizeof(*a));
    if (klen < 0 || !a) {
        free(a);
        return -1;
    }
    a->req = req;
    snprintf(a->account, sizeof(a->account), "%s", account);
    const char *argv[] = {"ZCOUNT", key, min, "+inf"};
    size_t lens[] = {6, (size_t)klen, strlen(min), 4};
    if (redis_link_command(&srv->redis, key, (size_t)klen, on_count, a, 4, argv, lens) < 0) {
        free(a);
        return -1;
    }
    req->d.pending++;
    return 0;
}

static int refuse(struct lws *wsi, int status, const char *body)
{
    http_write_status(wsi, status, body);
    return -1;
}

/* Splits list at commas into req->accounts (each validated, repeats
 * folded); NULL, or why it is refused. */
static const char *parse_accounts(char *list, json_t *accounts)
{
    char *save = NULL;
    for (char *a = strtok_r(list, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
        if (!validate_account_id(a, strlen(a)))
            return "every account must be 1-128 bytes of [A-Za-z0-9_.@:-]\n";
        if (json_object_size(accounts) == PRESENCE_API_MAX && !json_object_get(accounts, a))
            return "at most 1000 accounts\n";
        json_object_set_new(accounts, a, json_null());
    }
    return json_object_size(accounts) ? NULL : "give ?accounts=a,b,c\n";
}

int presence_api_begin(struct server *srv, struct lws *wsi)
{
    if (!srv->cfg->api_key)
        return refuse(wsi, 404, "presence API off: start with --api-key\n");
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
        return refuse(wsi, 405, "use GET\n");
    if (!publish_api_authorized(srv, wsi))
        return refuse(wsi, 401, "missing or bad API key\n");
    char *buf = malloc(ACCOUNTS_ARG_MAX);
    struct presence_req *req = calloc(1, sizeof(*req));
    json_t *accounts = json_object();
    const char *list = buf ? lws_get_urlarg_by_name(wsi, "accounts=", buf, ACCOUNTS_ARG_MAX) : NULL;
    const char *why = !buf || !req || !accounts ? "out of memory\n"
                      : list                    ? parse_accounts((char *)list, accounts)
                                                : "give ?accounts=a,b,c\n";
    free(buf);
    if (why) {
        free(req);
        json_decref(accounts);
        return refuse(wsi, strcmp(why, "out of memory\n") ? 400 : 503, why);
    }
    req->d.kind = OPAQUE_PRESENCE;
    req->d.wsi = wsi;
    req->d.free_req = req_free;
    req->accounts = json_object();
    lws_set_opaque_user_data(wsi, req);
    if (!redis_link_connected(&srv->redis)) {
        json_decref(accounts);
        http_deferred_answer(&req->d, 503, json_pack("{s:s}", "error", "redis unavailable"));
        return 0;
    }
    char min[24];
    snprintf(min, sizeof(min), "%lld", (long long)wallclock_ms());
    req->d.pending = 1; /* held until every command is queued */
    const char *a;
    json_t *v;
    json_object_foreach(accounts, a, v)
    {
        if (ask(srv, req, a, min) < 0)
            req->d.failed = 1;
    }
    json_decref(accounts);
    req->d.pending--;
    finish_if_done(req);
    return 0;
}
