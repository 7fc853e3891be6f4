/* harness: JWT tokens and the Check helpers (harness.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"
#include "harness_int.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jwt.h>

#include "rnames.h"

/* ---- JWT ---------------------------------------------------------------- */

char *h_jwt_hs256(const char *secret, const char *sub, long long exp)
{
    jwt_t *jwt = NULL;
    if (jwt_new(&jwt) != 0)
        return NULL;
    char *out = NULL;
    if (sub && jwt_add_grant(jwt, "sub", sub) != 0)
        goto done;
    if (exp != 0 && jwt_add_grant_int(jwt, "exp", (long)exp) != 0)
        goto done;
    if (jwt_add_grant_int(jwt, "iat", (long)h_unix_s()) != 0)
        goto done;
    int rc =
        secret ? jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret))
               : jwt_set_alg(jwt, JWT_ALG_NONE, NULL, 0);
    if (rc != 0)
        goto done;
    out = jwt_encode_str(jwt);
done:
    jwt_free(jwt);
    return out;
}

/* ---- Check tests -------------------------------------------------------- */

void h_ck_setup(struct h_redis *r, struct h_gw *g)
{
    memset(g, 0, sizeof(*g));
    ck_assert_msg(h_redis_start(r) == 0, "cannot start redis-server");
}

void h_ck_teardown(struct h_redis *r, struct h_gw *g)
{
    int alive = h_proc_running(&g->proc);
    /* Under a wrapper (valgrind) the gateway is stopped cleanly, so that
     * the wrapper gets to write its report; otherwise SIGKILL is enough. */
    if (alive && getenv("NOTIFY_TEST_WRAPPER") && g->proc.pid) {
        h_proc_signal(&g->proc, SIGTERM);
        h_proc_wait(&g->proc, 60000);
    }
    char *log = g->proc.dir[0] ? h_gw_stderr(g) : NULL;
    h_proc_cleanup(&g->proc);
    h_redis_stop(r);
    if (log) {
        ck_assert_msg(!strstr(log, "AddressSanitizer") && !strstr(log, "runtime error:"),
                      "sanitizer report in the gateway's stderr");
        free(log);
    }
    if (g->must_survive)
        ck_assert_msg(alive, "the gateway died during the test");
}

void h_ck_gw_startl(struct h_gw *g, const struct h_redis *r, ...)
{
    va_list ap;
    va_start(ap, r);
    int rc = hi_gw_vstart(g, r, ap);
    va_end(ap);
    ck_assert_msg(rc == 0, "gateway did not start");
    g->must_survive = 1;
}

json_t *h_ck_json_obj(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    ck_assert_msg(j && json_is_object(j), "not a JSON object: %s", text);
    return j;
}

const char *h_jstr(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

double h_ck_metric(int port, const char *name)
{
    char *body = NULL;
    int st = h_http_get(port, "/metrics", &body);
    ck_assert_int_eq(st, 200);
    double v = h_metric_sum(body, name);
    free(body);
    return v;
}

char *h_ck_ws_open(struct ws *c, int port, const char *path, int timeout_ms)
{
    int st = ws_connect(c, port, path, NULL, 5000);
    ck_assert_msg(st == 101, "upgrade %s on port %d answered %d", path, port, st);
    char *text = ws_recv_text(c, timeout_ms);
    ck_assert_msg(text != NULL, "%s: no register reply", path);
    json_t *j = h_ck_json_obj(text);
    const char *type = h_jstr(j, "type");
    ck_assert_msg(type && !strcmp(type, "register"), "%s: first message %s", path, text);
    const char *id = h_jstr(json_object_get(j, "content"), "body");
    char *out = id ? strdup(id) : NULL;
    json_decref(j);
    free(text);
    return out;
}

TCase *h_tcase(Suite *s, const char *name, double timeout_s, void (*setup)(void),
               void (*teardown)(void))
{
    TCase *tc = tcase_create(name);
    if (setup || teardown)
        tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, timeout_s);
    suite_add_tcase(s, tc);
    return tc;
}

int h_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* ---- messages ----------------------------------------------------------- */

json_t *h_ck_envelope(const char *text, const char *type)
{
    ck_assert_msg(text != NULL, "expected a '%s' message, got none", type);
    json_t *j = h_ck_json_obj(text);
    ck_assert_msg(h_jstr(j, "type") && !strcmp(h_jstr(j, "type"), type), "expected type '%s' in %s",
                  type, text);
    json_t *content = json_object_get(j, "content");
    ck_assert_msg(json_is_object(content), "no content object in %s", text);
    ck_assert_msg(h_jstr(content, "body") != NULL, "content.body is not a string in %s", text);
    ck_assert_msg(h_jstr(content, "meta_data") != NULL, "content.meta_data is not a string in %s",
                  text);
    return j;
}

char *h_ck_expect_register(struct ws *c, const char *account)
{
    char *text = ws_recv_text(c, 5000);
    json_t *j = h_ck_envelope(text, "register");
    json_t *content = json_object_get(j, "content");
    const char *id = h_jstr(content, "body");
    ck_assert_msg(id[0] != '\0', "empty connection id in %s", text);
    json_t *meta = h_ck_json_obj(h_jstr(content, "meta_data"));
    ck_assert_msg(h_jstr(meta, "account") && !strcmp(h_jstr(meta, "account"), account),
                  "meta_data.account is not '%s' in %s", account, text);
    char *out = strdup(id);
    json_decref(meta);
    json_decref(j);
    free(text);
    return out;
}

void h_ck_open_as(struct ws *c, int port, const char *account)
{
    char path[512];
    snprintf(path, sizeof(path), "/ws?user_id=%s", account);
    int st = ws_connect(c, port, path, NULL, 5000);
    ck_assert_msg(st == 101, "upgrade as %s answered %d", account, st);
    free(h_ck_expect_register(c, account));
}

void h_ck_open_client(struct ws *c, int port, const char *account, const char *since,
                      int timeout_ms)
{
    char path[512];
    if (since)
        snprintf(path, sizeof(path), "/ws?user_id=%s&since=%s", account, since);
    else
        snprintf(path, sizeof(path), "/ws?user_id=%s", account);
    free(h_ck_ws_open(c, port, path, timeout_ms));
}

int h_msg_recv(struct ws *c, struct h_msg *m, int timeout_ms)
{
    m->text = ws_recv_text(c, timeout_ms);
    m->j = NULL;
    if (!m->text)
        return 0;
    m->j = h_ck_json_obj(m->text);
    return 1;
}

void h_msg_free(struct h_msg *m)
{
    free(m->text);
    json_decref(m->j);
    m->text = NULL;
    m->j = NULL;
}

const char *h_msg_type(const struct h_msg *m)
{
    return h_jstr(m->j, "type");
}

const char *h_msg_body(const struct h_msg *m)
{
    return h_jstr(json_object_get(m->j, "content"), "body");
}

void h_ck_quiet(struct ws *c, const char *who, int ms, int stays_open)
{
    char *text = ws_recv_text(c, ms);
    if (text) {
        char copy[512];
        snprintf(copy, sizeof(copy), "%s", text);
        free(text);
        ck_abort_msg("%s: unexpected message %s", who, copy);
    }
    if (stays_open)
        ck_assert_msg(c->fd >= 0 && !c->close_code && !c->eof,
                      "%s: connection closed (close %d, eof %d)", who, c->close_code, c->eof);
}

long long h_publish(const struct h_redis *r, const char *account, const char *type,
                    const char *body)
{
    char *e = h_envelope(type, body);
    long long n = h_redis_publish(r, h_chan(account), e, strlen(e));
    free(e);
    return n;
}

void h_ck_publish(const struct h_redis *r, const char *account, const char *body)
{
    long long n = h_publish(r, account, "notification", body);
    ck_assert_msg(n == 1, "PUBLISH to %s reached %lld subscribers, want 1", account, n);
}

void h_ck_publish_raw(const struct h_redis *r, const char *channel, const char *payload, size_t len)
{
    long long n = h_redis_publish(r, channel, payload, len);
    ck_assert_msg(n == 1, "PUBLISH %s reached %lld subscribers, want 1", channel, n);
}

long long h_presence_live(const struct h_redis *r, const char *account)
{
    char key[RNAME_MAX];
    ck_assert_int_gt(rnames_presence(key, sizeof(key), "notify:", account), 0);
    return h_redis_int(r, "ZCOUNT %s %lld +inf", key, h_wall_ms());
}

long long h_presence_members_of(const struct h_redis *r, const char *account, const char *node)
{
    char key[RNAME_MAX];
    ck_assert_int_gt(rnames_presence(key, sizeof(key), "notify:", account), 0);
    redisReply *rep = h_redis_cmd(r, "ZRANGE %s 0 -1", key);
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->type, REDIS_REPLY_ARRAY);
    long long n = 0;
    size_t nlen = strlen(node);
    for (size_t i = 0; i < rep->elements; i++) {
        const char *mnode, *conn;
        size_t mlen, clen;
        if (rnames_parse_presence_member(rep->element[i]->str, rep->element[i]->len, &mnode, &mlen,
                                         &conn, &clen) &&
            mlen == nlen && !memcmp(mnode, node, nlen))
            n++;
    }
    freeReplyObject(rep);
    return n;
}
