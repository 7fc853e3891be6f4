#include "ack.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rnames.h"
#include "server.h"
#include "session.h"

/* The round trip's memory: the connection is looked up again by id when
 * the answer comes (it may have closed), never kept as a pointer. */
struct ack_req {
    struct server *srv;
    char conn_id[CONN_ID_LEN + 1];
    size_t n;
    char ids[SESSION_ACK_MAX][STREAM_ID_MAX];
};

/* Appends ids[i] to the comma-separated list in buf. */
static void list_add(char *buf, size_t size, size_t *len, const char *id)
{
    size_t idlen = strlen(id);
    if (*len + idlen + 2 > size)
        return;
    if (*len)
        buf[(*len)++] = ',';
    memcpy(buf + *len, id, idlen + 1);
    *len += idlen;
}

static void on_acked(redisAsyncContext *ac, void *r, void *privdata)
{
    struct ack_req *req = privdata;
    struct server *srv = req->srv;
    redisReply *reply = r;
    (void)ac;
    struct session *s = srv->stopping ? NULL : registry_find_session(&srv->registry, req->conn_id);
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != req->n) {
        if (reply)
            log_warn("ack_failed", "conn=%s error=\"%s\"", req->conn_id,
                     reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
        if (s && session_is_open(s))
            session_send_envelope(s, "error", "ack not recorded (Redis unavailable): send it again",
                                  "");
        free(req);
        return;
    }
    char known[SESSION_ACK_MAX * STREAM_ID_MAX], unknown[SESSION_ACK_MAX * STREAM_ID_MAX + 16];
    size_t klen = 0, ulen = 0;
    known[0] = unknown[0] = '\0';
    for (size_t i = 0; i < req->n; i++) {
        const redisReply *e = reply->element[i];
        long long v = e->type == REDIS_REPLY_INTEGER ? e->integer : -1;
        if (v == 1)
            srv->metrics.acks++;
        else if (v == 0)
            srv->metrics.acks_repeated++;
        else
            srv->metrics.acks_unknown++;
        if (v >= 0)
            list_add(known, sizeof(known), &klen, req->ids[i]);
        else
            list_add(unknown, sizeof(unknown), &ulen, req->ids[i]);
    }
    if (s && session_is_open(s)) {
        if (klen)
            session_send_envelope(s, "ack", known, "");
        if (ulen) {
            char why[sizeof(unknown) + 32];
            snprintf(why, sizeof(why), "unknown notification id: %s", unknown);
            session_send_envelope(s, "error", why, "");
        }
    }
    free(req);
}

void ack_ids(struct server *srv, struct session *s, const struct stream_id *ids, size_t n)
{
    struct ack_req *req = malloc(sizeof(*req));
    if (!req) {
        srv->metrics.dropped[DROP_NO_MEMORY]++;
        session_send_envelope(s, "error", "ack not recorded (out of memory): send it again", "");
        return;
    }
    req->srv = srv;
    memcpy(req->conn_id, s->id, sizeof(req->conn_id));
    req->n = n;
    char key[RNAME_MAX];
    rnames_stream(key, sizeof(key), srv->cfg->redis_prefix, s->acct->id);
    const char *argv[6 + SESSION_ACK_MAX];
    size_t lens[6 + SESSION_ACK_MAX];
    int argc = 0;
#define ARG(str) (argv[argc] = (str), lens[argc] = strlen(argv[argc]), argc++)
    ARG("FCALL");
    ARG("notify_ack");
    ARG("1");
    ARG(key);
    ARG(s->id);
    ARG(srv->cfg->node_id);
    for (size_t i = 0; i < n; i++) {
        stream_id_format(&ids[i], req->ids[i], sizeof(req->ids[i]));
        ARG(req->ids[i]);
    }
#undef ARG
    if (redis_link_command(&srv->redis, key, strlen(key), on_acked, req, argc, argv, lens) < 0) {
        free(req);
        session_send_envelope(s, "error", "ack not recorded (Redis unavailable): send it again",
                              "");
    }
}
