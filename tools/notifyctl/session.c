/* notifyctl's way to Redis: the target (one Redis or a cluster's seeds)
 * and a session of synchronous connections, one per node met (notifyctl.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "clustercmd.h"
#include "notifyctl.h"
#include "rnames.h"

/* ------------------------------------------------------------ endpoints */

static int parse_cluster_seeds(struct target *t, const char *list, const char *from)
{
    char err[128];
    const char *p = list;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char seed[600];
        if (len == 0 || t->nseeds == MAX_SEEDS)
            return args_usage_error("%s: expected 1 to 16 comma-separated seeds (got '%s')", from,
                                    list);
        /* A bare HOST:PORT is the common form; give it the scheme the URL
         * parser wants. */
        int has_scheme = len >= 8 && strncmp(p, "redis://", 8) == 0;
        int n = snprintf(seed, sizeof(seed), "%s%.*s", has_scheme ? "" : "redis://", (int)len, p);
        if (n < 0 || (size_t)n >= sizeof(seed))
            return args_usage_error("%s: seed too long (got '%s')", from, list);
        struct redis_url *u = &t->seeds[t->nseeds];
        if (redis_url_parse(seed, u, err, sizeof(err)) < 0) {
            fprintf(stderr, "%s: %s: seed '%.*s': %s\n", PROG, from, (int)len, p, err);
            return EXIT_USAGE;
        }
        if (u->db != 0) {
            fprintf(stderr, "%s: %s: seed '%.*s': a cluster has only database 0\n", PROG, from,
                    (int)len, p);
            return EXIT_USAGE;
        }
        if (*u->password && !*t->password) {
            t->user = u->user;
            t->password = u->password;
        }
        t->nseeds++;
        p = comma ? comma + 1 : p + len;
        if (comma && !*p)
            return args_usage_error("%s: empty seed at the end (got '%s')", from, list);
    }
    if (t->nseeds == 0)
        return args_usage_error("%s: no seed given", from);
    t->cluster = 1;
    return -1;
}

int target_resolve(struct target *t, const struct args *a)
{
    memset(t, 0, sizeof(*t));
    t->user = "";
    t->password = "";
    if (a->cluster)
        return parse_cluster_seeds(t, a->cluster, a->cluster_from);
    char err[128];
    if (redis_url_parse(a->redis, &t->seeds[0], err, sizeof(err)) < 0) {
        fprintf(stderr, "%s: %s: %s (got '%s')\n", PROG, a->redis_from, err, a->redis);
        return EXIT_USAGE;
    }
    t->nseeds = 1;
    t->user = t->seeds[0].user;
    t->password = t->seeds[0].password;
    return -1;
}

/* ---------------------------------------------------------------- redis */

static void report_conn_error(const struct conn *c, const char *what, const char *err)
{
    fprintf(stderr, "%s: redis %s:%d: %s: %s\n", PROG, c->host, c->port, what, err);
}

/* Renders a command for messages: the verb and its first argument (the key
 * or channel) are enough to say what failed without dumping payloads; an
 * FCALL also names its first key. */
static const char *describe_command(char *buf, size_t size, int argc, const char **argv)
{
    if (argc > 3 && strcmp(argv[0], "FCALL") == 0 && strcmp(argv[2], "0") != 0)
        snprintf(buf, size, "%s %s %s", argv[0], argv[1], argv[3]);
    else
        snprintf(buf, size, "%s%s%s", argv[0], argc > 1 ? " " : "", argc > 1 ? argv[1] : "");
    return buf;
}

/* Connection failures are kept rather than printed: with several cluster
 * seeds, one that is down is no error as long as another answers. */
static void set_conn_error(struct session *s, const struct conn *c, const char *what,
                           const char *err)
{
    snprintf(s->conn_err, sizeof(s->conn_err), "redis %s:%d: %s: %s", c->host, c->port, what, err);
}

/* Sends AUTH and SELECT as the URL asks; the connection is useless without
 * them, so any error closes it. */
static int conn_prepare(struct session *s, struct conn *c, int db)
{
    const struct target *t = s->target;
    const char *argv[3];
    int argc = 0;
    if (*t->password) {
        argv[argc++] = "AUTH";
        if (*t->user) /* Redis 6 ACL user; otherwise the default user */
            argv[argc++] = t->user;
        argv[argc++] = t->password;
        redisReply *r = redisCommandArgv(c->ctx, argc, argv, NULL);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            set_conn_error(s, c, "AUTH", r ? r->str : c->ctx->errstr);
            freeReplyObject(r);
            return -1;
        }
        freeReplyObject(r);
    }
    if (db != 0) {
        char dbtext[16];
        snprintf(dbtext, sizeof(dbtext), "%d", db);
        const char *sel[2] = {"SELECT", dbtext};
        redisReply *r = redisCommandArgv(c->ctx, 2, sel, NULL);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            set_conn_error(s, c, "SELECT", r ? r->str : c->ctx->errstr);
            freeReplyObject(r);
            return -1;
        }
        freeReplyObject(r);
    }
    return 0;
}

/* Returns the open connection to host:port, opening it if needed; NULL
 * with s->conn_err set when it cannot be opened. */
static struct conn *session_conn(struct session *s, const char *host, int port, int db)
{
    for (int i = 0; i < s->nconns; i++)
        if (s->conns[i].port == port && strcmp(s->conns[i].host, host) == 0)
            return &s->conns[i];
    struct conn tmp = {.port = port};
    snprintf(tmp.host, sizeof(tmp.host), "%s", host);
    if (s->nconns == MAX_CONNS) {
        set_conn_error(s, &tmp, "cannot connect", "too many cluster nodes");
        return NULL;
    }
    struct timeval tv = {REDIS_TIMEOUT_SEC, 0};
    tmp.ctx = redisConnectWithTimeout(host, port, tv);
    if (!tmp.ctx || tmp.ctx->err) {
        set_conn_error(s, &tmp, "cannot connect", tmp.ctx ? tmp.ctx->errstr : "out of memory");
        redisFree(tmp.ctx);
        return NULL;
    }
    if (redisSetTimeout(tmp.ctx, tv) != REDIS_OK) {
        set_conn_error(s, &tmp, "cannot set timeout", tmp.ctx->errstr);
        redisFree(tmp.ctx);
        return NULL;
    }
    if (conn_prepare(s, &tmp, db) < 0) {
        redisFree(tmp.ctx);
        return NULL;
    }
    s->conns[s->nconns] = tmp;
    return &s->conns[s->nconns++];
}

/* Connects to the single Redis, or to the first cluster seed that answers.
 * When none does, one line names every seed and why it failed. */
int session_open(struct session *s, const struct target *t)
{
    char all[MAX_SEEDS * 160] = "";
    size_t used = 0;
    memset(s, 0, sizeof(*s));
    s->target = t;
    for (int i = 0; i < t->nseeds && !s->current; i++) {
        s->current =
            session_conn(s, t->seeds[i].host, t->seeds[i].port, t->cluster ? 0 : t->seeds[i].db);
        if (!s->current && used < sizeof(all)) {
            int n = snprintf(all + used, sizeof(all) - used, "%s%s", used ? "; " : "", s->conn_err);
            used = n > 0 ? used + (size_t)n : used;
        }
    }
    if (s->current)
        return 0;
    fprintf(stderr, "%s: %s%s\n", PROG, t->nseeds > 1 ? "no cluster seed answered: " : "", all);
    return -1;
}

void session_close(struct session *s)
{
    for (int i = 0; i < s->nconns; i++)
        redisFree(s->conns[i].ctx);
    s->nconns = 0;
    s->current = NULL;
}

/* clustercmd's way to a node: the session's connection to it. */
static redisContext *session_node(void *arg, const char *host, int port)
{
    struct session *s = arg;
    struct conn *c = session_conn(s, host, port, s->target->cluster ? 0 : s->target->seeds[0].db);
    return c ? c->ctx : NULL;
}

/* Runs one command and returns its reply, or NULL after reporting the
 * failure (I/O error or an error reply) with the node and the command. In
 * cluster mode, MOVED and ASK are followed to the node that owns the key. */
static redisReply *session_run(struct session *s, int argc, const char **argv)
{
    char what[RNAME_MAX + 32];
    describe_command(what, sizeof(what), argc, argv);
    struct clustercmd cc = {.connect = session_node,
                            .arg = s,
                            .max_redirects = s->target->cluster ? MAX_REDIRECTS : 0,
                            .port = s->current->port};
    snprintf(cc.host, sizeof(cc.host), "%s", s->current->host);
    redisReply *r = clustercmd_argv(&cc, argc, argv, NULL);
    struct conn at = {.port = cc.port};
    snprintf(at.host, sizeof(at.host), "%s", cc.host);
    switch (cc.error) {
    case CLUSTERCMD_OK:
        break;
    case CLUSTERCMD_CONNECT:
        fprintf(stderr, "%s: %s (redirected by %s)\n", PROG, s->conn_err, what);
        return NULL;
    case CLUSTERCMD_IO:
        report_conn_error(&at, what, cc.errstr);
        return NULL;
    case CLUSTERCMD_ASKING:
        report_conn_error(&at, "ASKING", cc.errstr);
        return NULL;
    case CLUSTERCMD_REDIRECTS:
        report_conn_error(&at, what, cc.errstr);
        freeReplyObject(r);
        return NULL;
    }
    if (cc.moved) /* the slot map changed or we guessed: follow the owner */
        s->current = session_conn(s, cc.host, cc.port, 0);
    if (r->type == REDIS_REPLY_ERROR) {
        report_conn_error(&at, what, r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* Like session_run, but also insists on the reply type the caller needs, so
 * no caller reads a field that is not there. */
redisReply *session_expect(struct session *s, int type, int argc, const char **argv)
{
    redisReply *r = session_run(s, argc, argv);
    if (r && r->type != type) {
        char what[RNAME_MAX + 32], why[64];
        snprintf(why, sizeof(why), "unexpected reply type %d (wanted %d)", r->type, type);
        report_conn_error(s->current, describe_command(what, sizeof(what), argc, argv), why);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

redisReply *session_command(struct session *s, int argc, const char **argv)
{
    return session_run(s, argc, argv);
}

void session_report(const struct session *s, const char *what, const char *err)
{
    report_conn_error(s->current, what, err);
}

/* session_pipeline's commands still to answer on one node. */
struct pipe_group {
    struct conn *at;
    int *idx;
    int n;
};

/* Sends the commands idx[0..n) on c in one write and reads their replies
 * into replies; -1 on an I/O error (reported). */
static int pipe_round(struct session *s, struct conn *c, const int *idx, int n, const int *argc,
                      const char *const *const *argv, redisReply **replies)
{
    (void)s;
    for (int k = 0; k < n; k++)
        if (redisAppendCommandArgv(c->ctx, argc[idx[k]], (const char **)argv[idx[k]], NULL) !=
            REDIS_OK) {
            report_conn_error(c, "pipeline", c->ctx->errstr);
            return -1;
        }
    for (int k = 0; k < n; k++) {
        void *r = NULL;
        if (redisGetReply(c->ctx, &r) != REDIS_OK) {
            report_conn_error(c, "pipeline", c->ctx->errstr);
            return -1;
        }
        replies[idx[k]] = r;
    }
    return 0;
}

int session_pipeline(struct session *s, int n, const int *argc, const char *const *const *argv,
                     redisReply **replies)
{
    int *todo = malloc(sizeof(int) * (size_t)(n ? n : 1));
    struct conn **where = malloc(sizeof(*where) * (size_t)(n ? n : 1));
    int rc = 0, left = n;
    if (!todo || !where) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        free(todo);
        free(where);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        replies[i] = NULL;
        where[i] = s->current;
    }
    /* Round after round, every command still unanswered goes to where the
     * last answer sent it, grouped by node; a cluster needs at most a
     * round more than one Redis (each MOVED names the owner). */
    for (int round = 0; left > 0 && rc == 0; round++) {
        if (round > MAX_REDIRECTS) {
            fprintf(stderr, "%s: still redirected after %d rounds\n", PROG, MAX_REDIRECTS);
            rc = -1;
            break;
        }
        for (int first = 0; first < n && rc == 0; first++) {
            if (replies[first] || !where[first])
                continue;
            struct conn *at = where[first];
            int m = 0;
            for (int i = first; i < n; i++)
                if (!replies[i] && where[i] == at)
                    todo[m++] = i;
            for (int k = 0; k < m; k++)
                where[todo[k]] = NULL; /* sent this round */
            if (pipe_round(s, at, todo, m, argc, argv, replies) < 0) {
                rc = -1;
                break;
            }
            for (int k = 0; k < m; k++) {
                redisReply *r = replies[todo[k]];
                char host[256];
                int port, ask;
                if (r->type == REDIS_REPLY_ERROR && s->target->cluster &&
                    clustercmd_parse_redirect(r->str, at->host, host, sizeof(host), &port, &ask) ==
                        0 &&
                    !ask) {
                    struct conn *owner = session_conn(s, host, port, 0);
                    if (!owner) {
                        fprintf(stderr, "%s: %s\n", PROG, s->conn_err);
                        rc = -1;
                        break;
                    }
                    freeReplyObject(r);
                    replies[todo[k]] = NULL;
                    where[todo[k]] = owner;
                    continue;
                }
                left--;
                if (r->type == REDIS_REPLY_ERROR && rc == 0) { /* the first error only; ASK
                                                                 too: a slot moving, try again */
                    char what[RNAME_MAX + 32];
                    describe_command(what, sizeof(what), argc[todo[k]],
                                     (const char **)argv[todo[k]]);
                    report_conn_error(at, what, r->str);
                    rc = -1;
                }
            }
        }
    }
    if (rc < 0)
        for (int i = 0; i < n; i++) {
            freeReplyObject(replies[i]);
            replies[i] = NULL;
        }
    free(todo);
    free(where);
    return rc;
}
