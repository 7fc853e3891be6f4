/* notifyctl: the command-line client of producers and operators (contract
 * section 2). It asks Redis directly, with synchronous hiredis, who is online
 * (presence), which gateway nodes are alive (nodes), and publishes one
 * envelope with a plain PUBLISH, or with history through the gateway's
 * notify_publish function (publish --history). Every Redis name comes from
 * rnames.h, so notifyctl reads and writes exactly what the gateway does.
 *
 * Exit status: 0 ok, 1 Redis unreachable or answering an error, 2 bad usage.
 * Every failure prints one line on stderr naming what failed. */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "clustercmd.h"
#include "envelope.h"
#include "redisurl.h"
#include "rnames.h"
#include "validate.h"

#define PROG "notifyctl"

/* Redis unreachable or answering an error, or output that cannot be
 * written: anything that is not the caller's mistake. */
#define EXIT_REDIS 1
#define EXIT_USAGE 2

#define DEFAULT_REDIS "redis://127.0.0.1:6379/0"
#define DEFAULT_PREFIX "notify:"
#define PREFIX_MAX 256

/* A CLI must not hang forever on a dead host or a stuck server. */
#define REDIS_TIMEOUT_SEC 5

/* Cluster redirections followed for one command before giving up: a slot
 * moves at most once or twice during a resharding, more means a loop. */
#define MAX_REDIRECTS 5
#define MAX_CONNS 32
#define MAX_SEEDS 16

/* ---------------------------------------------------------------- usage */

enum command { CMD_NONE, CMD_PRESENCE, CMD_NODES, CMD_PUBLISH };

#define FOR_ALL 0u
#define FOR_PUBLISH (1u << CMD_PUBLISH)

enum flag_id {
    FLAG_REDIS,
    FLAG_REDIS_CLUSTER,
    FLAG_REDIS_PREFIX,
    FLAG_JSON,
    FLAG_TYPE,
    FLAG_BODY,
    FLAG_META,
    FLAG_BROADCAST,
    FLAG_HISTORY,
    FLAG_HELP,
    FLAG_VERSION,
};

/* One row per flag, so the parser and --help cannot drift apart. */
struct flag_def {
    const char *name;  /* without the leading dashes */
    enum flag_id id;   /* what it sets */
    const char *value; /* name of its value in --help; NULL = takes none */
    unsigned commands; /* commands it applies to; FOR_ALL = any */
    const char *help;  /* one line for --help */
    const char *env;   /* its environment variable, or NULL */
    const char *def;   /* its default for --help, or NULL */
};

static const struct flag_def flags[] = {
    {"redis", FLAG_REDIS, "URL", FOR_ALL, "redis://[user:password@]host:port[/db]", "NOTIFY_REDIS",
     DEFAULT_REDIS},
    {"redis-cluster", FLAG_REDIS_CLUSTER, "SEEDS", FOR_ALL,
     "SEED[,SEED...], each HOST:PORT or redis://[user:password@]host:port (not with --redis)",
     "NOTIFY_REDIS_CLUSTER", "(unset)"},
    {"redis-prefix", FLAG_REDIS_PREFIX, "P", FOR_ALL, "prefix of every Redis key and channel",
     "NOTIFY_REDIS_PREFIX", DEFAULT_PREFIX},
    {"json", FLAG_JSON, NULL, FOR_ALL, "print one JSON document instead of text", NULL, NULL},
    {"type", FLAG_TYPE, "T", FOR_PUBLISH, "publish: the envelope's type (required)", NULL, NULL},
    {"body", FLAG_BODY, "B", FOR_PUBLISH, "publish: content.body [empty]", NULL, NULL},
    {"meta", FLAG_META, "M", FOR_PUBLISH, "publish: content.meta_data [empty]", NULL, NULL},
    {"broadcast", FLAG_BROADCAST, NULL, FOR_PUBLISH,
     "publish: to every connection (the broadcast channel) instead of ACCOUNT", NULL, NULL},
    {"history", FLAG_HISTORY, NULL, FOR_PUBLISH,
     "publish: keep it in ACCOUNT's history (FCALL notify_publish) and print its id", NULL, NULL},
    {"help", FLAG_HELP, NULL, FOR_ALL, "this text", NULL, NULL},
    {"version", FLAG_VERSION, NULL, FOR_ALL, "print the version", NULL, NULL},
};

#define N_FLAGS (sizeof(flags) / sizeof(flags[0]))

static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: %s [flags] COMMAND [ARGS]\n"
            "\n"
            "commands:\n"
            "  presence ACCOUNT...\n"
            "      per account: online or not, live connection count, and each live\n"
            "      connection <node id>/<connection id> with its expiry\n"
            "  nodes\n"
            "      live gateway nodes with addr, started_at, connections, version\n"
            "  publish ACCOUNT --type T [--body B] [--meta M]\n"
            "  publish --broadcast --type T [--body B] [--meta M]\n"
            "      PUBLISH {\"type\":T,\"content\":{\"body\":B,\"meta_data\":M}} to the\n"
            "      account's (or the broadcast) channel (SPUBLISH with --redis-cluster)\n"
            "      and print how many subscribers (gateway nodes) Redis reported; no\n"
            "      history is kept\n"
            "  publish ACCOUNT --history --type T [--body B] [--meta M]\n"
            "      FCALL notify_publish 1 <prefix>stream:{ACCOUNT} <envelope>: append it\n"
            "      to the account's history and publish it with its id (the library a\n"
            "      gateway loads), and print the id; not with --broadcast\n"
            "\n"
            "flags (anywhere on the line; --flag VALUE or --flag=VALUE; -- ends flags):\n",
            PROG);
    for (size_t i = 0; i < N_FLAGS; i++) {
        char left[40];
        snprintf(left, sizeof(left), "--%s%s%s", flags[i].name, flags[i].value ? " " : "",
                 flags[i].value ? flags[i].value : "");
        fprintf(out, "  %s\n      %s\n", left, flags[i].help);
        if (flags[i].env)
            fprintf(out, "      env %s, default %s\n", flags[i].env, flags[i].def);
    }
    fprintf(out, "\nexit status: 0 ok, 1 Redis unreachable or answered an error, 2 bad usage\n");
}

/* Prints the one-line usage error and returns the exit status for it. */
__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s (see --help)\n", PROG, msg);
    return EXIT_USAGE;
}

/* Everything the command line and environment asked for. */
struct args {
    const char *redis;        /* redis:// URL */
    const char *redis_from;   /* where it came from, for error messages */
    const char *cluster;      /* seed list; NULL = single Redis */
    const char *cluster_from; /* where it came from */
    const char *prefix;       /* key and channel prefix */
    const char *prefix_from;  /* where it came from */
    int redis_given;          /* --redis or NOTIFY_REDIS was set */
    int json;                 /* --json */
    const char *type;         /* publish --type */
    const char *body;         /* publish --body */
    const char *meta;         /* publish --meta */
    int broadcast;            /* publish --broadcast */
    int history;              /* publish --history */
    enum command cmd;         /* the first positional argument */
    const char *cmd_name;     /* as typed */
    char **pos;               /* the positional arguments after the command */
    int npos;                 /* how many */
    unsigned flags_seen;      /* bit per enum flag_id, to check against cmd */
};

static const struct flag_def *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < N_FLAGS; i++)
        if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0)
            return &flags[i];
    return NULL;
}

static enum command command_by_name(const char *s)
{
    if (strcmp(s, "presence") == 0)
        return CMD_PRESENCE;
    if (strcmp(s, "nodes") == 0)
        return CMD_NODES;
    if (strcmp(s, "publish") == 0)
        return CMD_PUBLISH;
    return CMD_NONE;
}

static void apply_flag(struct args *a, const struct flag_def *f, const char *value)
{
    a->flags_seen |= 1u << f->id;
    switch (f->id) {
    case FLAG_REDIS:
        a->redis = value;
        a->redis_from = "--redis";
        a->redis_given = 1;
        break;
    case FLAG_REDIS_CLUSTER:
        a->cluster = value;
        a->cluster_from = "--redis-cluster";
        break;
    case FLAG_REDIS_PREFIX:
        a->prefix = value;
        a->prefix_from = "--redis-prefix";
        break;
    case FLAG_JSON:
        a->json = 1;
        break;
    case FLAG_TYPE:
        a->type = value;
        break;
    case FLAG_BODY:
        a->body = value;
        break;
    case FLAG_META:
        a->meta = value;
        break;
    case FLAG_BROADCAST:
        a->broadcast = 1;
        break;
    case FLAG_HISTORY:
        a->history = 1;
        break;
    case FLAG_HELP:
    case FLAG_VERSION:
        break;
    }
}

/* Environment first, so that flags parsed afterwards override it. */
static void apply_environment(struct args *a)
{
    a->redis = DEFAULT_REDIS;
    a->redis_from = "default";
    a->prefix = DEFAULT_PREFIX;
    a->prefix_from = "default";
    const char *v;
    if ((v = getenv("NOTIFY_REDIS")) != NULL) {
        a->redis = v;
        a->redis_from = "NOTIFY_REDIS";
        a->redis_given = 1;
    }
    /* Empty counts as unset: deployment templates often export it empty. */
    if ((v = getenv("NOTIFY_REDIS_CLUSTER")) != NULL && *v) {
        a->cluster = v;
        a->cluster_from = "NOTIFY_REDIS_CLUSTER";
    }
    if ((v = getenv("NOTIFY_REDIS_PREFIX")) != NULL) {
        a->prefix = v;
        a->prefix_from = "NOTIFY_REDIS_PREFIX";
    }
}

/* Returns -1 to go on, else the exit status (0 after --help / --version). */
static int parse_argv(struct args *a, int argc, char **argv)
{
    a->pos = calloc((size_t)argc, sizeof(*a->pos));
    if (!a->pos) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        return EXIT_REDIS;
    }
    int flags_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!flags_done && strcmp(arg, "--") == 0) {
            flags_done = 1;
            continue;
        }
        if (!flags_done && strcmp(arg, "-h") == 0) /* the one short form everybody types */
            arg = "--help";
        if (flags_done || strncmp(arg, "--", 2) != 0) {
            if (a->cmd == CMD_NONE) {
                a->cmd_name = arg;
                if ((a->cmd = command_by_name(arg)) == CMD_NONE)
                    return usage_error("unknown command '%s'; expected presence, nodes or publish",
                                       arg);
            } else {
                a->pos[a->npos++] = argv[i];
            }
            continue;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const struct flag_def *f = find_flag(name, nlen);
        if (!f)
            return usage_error("unknown flag '%s'", arg);
        if (f->id == FLAG_HELP) {
            print_usage(stdout);
            return 0;
        }
        if (f->id == FLAG_VERSION) {
            printf("%s %s\n", PROG, NOTIFY_VERSION);
            return 0;
        }
        const char *value = NULL;
        if (f->value) {
            if (eq)
                value = eq + 1;
            else if (i + 1 < argc)
                value = argv[++i];
            else
                return usage_error("--%s: missing value", f->name);
        } else if (eq) {
            return usage_error("--%s takes no value (got '%s')", f->name, eq + 1);
        }
        apply_flag(a, f, value);
    }
    return -1;
}

/* Checks that belong to no single flag: flags against the command, the
 * positional arguments, and values that need the whole picture. */
static int check_args(struct args *a)
{
    if (a->cmd == CMD_NONE)
        return usage_error("missing command: presence, nodes or publish");
    for (size_t i = 0; i < N_FLAGS; i++) {
        const struct flag_def *f = &flags[i];
        if ((a->flags_seen & (1u << f->id)) && f->commands != FOR_ALL &&
            !(f->commands & (1u << a->cmd)))
            return usage_error("--%s does not apply to '%s'", f->name, a->cmd_name);
    }
    if (a->cluster && a->redis_given)
        return usage_error("%s and %s are exclusive: give one Redis or one cluster", a->redis_from,
                           a->cluster_from);
    if (!*a->prefix || strlen(a->prefix) > PREFIX_MAX || strchr(a->prefix, '{') ||
        strchr(a->prefix, '}'))
        return usage_error("%s: must be 1 to 256 bytes without { or } (got '%s')", a->prefix_from,
                           a->prefix);

    switch (a->cmd) {
    case CMD_PRESENCE:
        if (a->npos == 0)
            return usage_error("presence: missing ACCOUNT");
        break;
    case CMD_NODES:
        if (a->npos > 0)
            return usage_error("nodes: unexpected argument '%s'", a->pos[0]);
        break;
    case CMD_PUBLISH:
        if (a->broadcast && a->history)
            return usage_error("publish: --history does not apply to --broadcast (a broadcast "
                               "has no history)");
        if (a->broadcast && a->npos > 0)
            return usage_error("publish: --broadcast takes no ACCOUNT (got '%s')", a->pos[0]);
        if (!a->broadcast && a->npos == 0)
            return usage_error("publish: missing ACCOUNT (or --broadcast)");
        if (a->npos > 1)
            return usage_error("publish: unexpected argument '%s' (one ACCOUNT per call)",
                               a->pos[1]);
        if (!a->type)
            return usage_error("publish: missing --type");
        if (!*a->type)
            return usage_error("--type: must not be empty");
        /* jansson refuses strings that are not UTF-8, and the contract's
         * frames are UTF-8 JSON: catch it here, naming the flag. */
        if (!validate_utf8(a->type, strlen(a->type)))
            return usage_error("--type: not valid UTF-8");
        if (a->body && !validate_utf8(a->body, strlen(a->body)))
            return usage_error("--body: not valid UTF-8");
        if (a->meta && !validate_utf8(a->meta, strlen(a->meta)))
            return usage_error("--meta: not valid UTF-8");
        break;
    case CMD_NONE:
        break;
    }
    for (int i = 0; i < a->npos; i++)
        if (!validate_account_id(a->pos[i], strlen(a->pos[i])))
            return usage_error("invalid account id '%s': expected 1 to 128 bytes of "
                               "[A-Za-z0-9_.@:-]",
                               a->pos[i]);
    return -1;
}

/* ------------------------------------------------------------ endpoints */

/* Where to connect: one Redis, or the seeds of a cluster. */
struct target {
    struct redis_url seeds[MAX_SEEDS]; /* one entry for a single Redis */
    int nseeds;
    int cluster;
    const char *user;     /* credentials for every node ("" = none) */
    const char *password; /* "" = no AUTH */
};

static int parse_cluster_seeds(struct target *t, const char *list, const char *from)
{
    char err[128];
    const char *p = list;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char seed[600];
        if (len == 0 || t->nseeds == MAX_SEEDS)
            return usage_error("%s: expected 1 to 16 comma-separated seeds (got '%s')", from, list);
        /* A bare HOST:PORT is the common form; give it the scheme the URL
         * parser wants. */
        int has_scheme = len >= 8 && strncmp(p, "redis://", 8) == 0;
        int n = snprintf(seed, sizeof(seed), "%s%.*s", has_scheme ? "" : "redis://", (int)len, p);
        if (n < 0 || (size_t)n >= sizeof(seed))
            return usage_error("%s: seed too long (got '%s')", from, list);
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
            return usage_error("%s: empty seed at the end (got '%s')", from, list);
    }
    if (t->nseeds == 0)
        return usage_error("%s: no seed given", from);
    t->cluster = 1;
    return -1;
}

static int resolve_target(struct target *t, const struct args *a)
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

struct conn {
    redisContext *ctx;
    char host[256];
    int port;
};

struct session {
    const struct target *target;
    struct conn conns[MAX_CONNS]; /* cluster nodes met so far; [0] only otherwise */
    int nconns;
    struct conn *current; /* where the next command goes first */
    char conn_err[600];   /* why the last connection attempt failed */
};

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
static int session_open(struct session *s, const struct target *t)
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

static void session_close(struct session *s)
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
static redisReply *session_expect(struct session *s, int type, int argc, const char **argv)
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

/* ----------------------------------------------------------- rendering */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Scores arrive as text; expiries are whole milliseconds but a score may in
 * principle be fractional or inf, hence a double. Returns 0 on success. */
static int parse_score(const redisReply *r, double *out)
{
    if (r->type != REDIS_REPLY_STRING)
        return -1;
    char *end;
    errno = 0;
    double v = strtod(r->str, &end);
    if (end == r->str || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

/* "2025-06-01T10:00:30.123Z (in 24.9s)", or "never" for an infinite score. */
static const char *describe_expiry(char *buf, size_t size, double expires_ms, int64_t now)
{
    if (!isfinite(expires_ms)) {
        snprintf(buf, size, "never");
        return buf;
    }
    time_t secs = (time_t)(expires_ms / 1000.0);
    int ms = (int)(expires_ms - (double)secs * 1000.0);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ (in %.1fs)", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms,
             (expires_ms - (double)now) / 1000.0);
    return buf;
}

/* An expiry for JSON: an integer number of ms, or null when infinite. */
static json_t *json_expiry(double expires_ms)
{
    return isfinite(expires_ms) ? json_integer((json_int_t)expires_ms) : json_null();
}

/* Prints doc as one compact line; json_dumpf fails only on I/O. */
static int print_json(json_t *doc)
{
    if (!doc) {
        fprintf(stderr, "%s: out of memory building JSON output\n", PROG);
        return EXIT_REDIS;
    }
    int rc = json_dumpf(doc, stdout, JSON_COMPACT) == 0 && putchar('\n') != EOF ? 0 : EXIT_REDIS;
    json_decref(doc);
    if (rc)
        fprintf(stderr, "%s: cannot write output: %s\n", PROG, strerror(errno));
    return rc;
}

/* Adds a value to an object; jansson steals the reference. Out of memory
 * only, so the caller checks once at the end through a NULL doc. */
static void json_put(json_t *obj, const char *key, json_t *value)
{
    if (json_object_set_new(obj, key, value) < 0)
        fprintf(stderr, "%s: out of memory building JSON output\n", PROG);
}

/* ------------------------------------------------------------- presence */

/* What Redis says about one account at one instant. */
struct presence {
    int online;          /* EXISTS presence key */
    long long live;      /* ZCOUNT key now +inf */
    redisReply *members; /* ZRANGEBYSCORE key now +inf WITHSCORES: member, score... */
};

static int presence_fetch(struct session *s, const char *prefix, const char *account, int64_t now,
                          struct presence *p)
{
    char key[RNAME_MAX], min[32];
    memset(p, 0, sizeof(*p));
    if (rnames_presence(key, sizeof(key), prefix, account) < 0) {
        fprintf(stderr, "%s: presence key of '%s' too long\n", PROG, account);
        return EXIT_USAGE;
    }
    snprintf(min, sizeof(min), "%lld", (long long)now);

    const char *exists[] = {"EXISTS", key};
    redisReply *r = session_expect(s, REDIS_REPLY_INTEGER, 2, exists);
    if (!r)
        return EXIT_REDIS;
    p->online = r->integer > 0;
    freeReplyObject(r);

    const char *zcount[] = {"ZCOUNT", key, min, "+inf"};
    if (!(r = session_expect(s, REDIS_REPLY_INTEGER, 4, zcount)))
        return EXIT_REDIS;
    p->live = r->integer;
    freeReplyObject(r);

    const char *zrange[] = {"ZRANGEBYSCORE", key, min, "+inf", "WITHSCORES"};
    if (!(p->members = session_expect(s, REDIS_REPLY_ARRAY, 5, zrange)))
        return EXIT_REDIS;
    if (p->members->elements % 2 != 0) {
        report_conn_error(s->current, "ZRANGEBYSCORE", "odd WITHSCORES reply");
        freeReplyObject(p->members);
        return EXIT_REDIS;
    }
    return 0;
}

/* Splits "<node id>/<connection id>" (rnames.h): the node id into node,
 * *conn_id pointing into member. */
static void split_member(const char *member, char *node, size_t nsize, const char **conn_id)
{
    const char *n;
    size_t nlen, clen;
    rnames_parse_presence_member(member, strlen(member), &n, &nlen, conn_id, &clen);
    snprintf(node, nsize, "%.*s", (int)nlen, n);
}

static void presence_print_text(const char *account, const struct presence *p, int64_t now,
                                int first)
{
    if (!first)
        putchar('\n');
    printf("account: %s\nonline: %s\nlive: %lld\n", account, p->online ? "yes" : "no", p->live);
    for (size_t i = 0; i + 1 < p->members->elements; i += 2) {
        double score;
        char when[96];
        const redisReply *m = p->members->element[i];
        if (parse_score(p->members->element[i + 1], &score) < 0)
            score = NAN; /* shown as "never"; cannot happen with a real zset */
        printf("connection: %s expires %s\n", m->type == REDIS_REPLY_STRING ? m->str : "?",
               describe_expiry(when, sizeof(when), score, now));
    }
}

static json_t *presence_json(const char *account, const struct presence *p)
{
    json_t *obj = json_object(), *members = json_array();
    if (!obj || !members) {
        json_decref(obj);
        json_decref(members);
        return NULL;
    }
    for (size_t i = 0; i + 1 < p->members->elements; i += 2) {
        const redisReply *m = p->members->element[i];
        const char *text = m->type == REDIS_REPLY_STRING ? m->str : "";
        char node[256];
        const char *conn_id;
        double score;
        if (parse_score(p->members->element[i + 1], &score) < 0)
            score = NAN;
        split_member(text, node, sizeof(node), &conn_id);
        json_t *e = json_object();
        if (!e)
            continue;
        json_put(e, "member", json_string(text));
        json_put(e, "node", json_string(node));
        json_put(e, "connection", json_string(conn_id));
        json_put(e, "expires_ms", json_expiry(score));
        json_array_append_new(members, e);
    }
    json_put(obj, "account", json_string(account));
    json_put(obj, "online", json_boolean(p->online));
    json_put(obj, "live", json_integer(p->live));
    json_put(obj, "connections", members);
    return obj;
}

static int cmd_presence(struct session *s, const struct args *a)
{
    int64_t now = now_ms(); /* one instant for every account */
    json_t *doc = a->json ? json_array() : NULL;
    if (a->json && !doc)
        return print_json(NULL);
    for (int i = 0; i < a->npos; i++) {
        struct presence p;
        int rc = presence_fetch(s, a->prefix, a->pos[i], now, &p);
        if (rc) {
            json_decref(doc);
            return rc;
        }
        if (a->json)
            json_array_append_new(doc, presence_json(a->pos[i], &p));
        else
            presence_print_text(a->pos[i], &p, now, i == 0);
        freeReplyObject(p.members);
    }
    return a->json ? print_json(doc) : 0;
}

/* ---------------------------------------------------------------- nodes */

/* The hash fields shown, then refreshed_at, read to judge liveness only. */
static const char *const node_fields[] = {"addr", "started_at", "connections", "version",
                                          "refreshed_at"};
#define N_NODE_FIELDS 4
#define N_NODE_FETCHED 5
#define FIELD_REFRESHED 4

/* One live node: its id and expiry from notify:nodes, its hash fields. */
struct node_row {
    const char *id;
    double expires_ms;
    const char *field[N_NODE_FETCHED]; /* NULL when the hash lacks it */
    redisReply *hash;                  /* owns field[] */
};

static int node_fetch_hash(struct session *s, const char *prefix, struct node_row *row)
{
    char key[RNAME_MAX];
    if (rnames_node(key, sizeof(key), prefix, row->id) < 0) {
        fprintf(stderr, "%s: node id '%s' too long for a key name\n", PROG, row->id);
        return EXIT_REDIS;
    }
    const char *argv[2 + N_NODE_FETCHED] = {"HMGET", key};
    for (int i = 0; i < N_NODE_FETCHED; i++)
        argv[2 + i] = node_fields[i];
    if (!(row->hash = session_expect(s, REDIS_REPLY_ARRAY, 2 + N_NODE_FETCHED, argv)))
        return EXIT_REDIS;
    for (size_t i = 0; i < N_NODE_FETCHED && i < row->hash->elements; i++) {
        const redisReply *v = row->hash->element[i];
        row->field[i] = v->type == REDIS_REPLY_STRING ? v->str : NULL;
    }
    return 0;
}

/* A node refreshes its entry every ttl/3 to expire at refreshed_at + ttl
 * (README.md, the node registry). One more than half a period late has
 * stopped (kill -9, a crash, no way to Redis) although its entry lives on
 * until it expires or a live node prunes it: it is not listed. Without
 * refreshed_at (a gateway that does not write it) the expiry alone
 * decides. */
static int node_lapsed(const struct node_row *row, int64_t now)
{
    const char *text = row->field[FIELD_REFRESHED];
    char *end;
    if (!text || !isfinite(row->expires_ms))
        return 0;
    errno = 0;
    double refreshed = strtod(text, &end);
    if (errno || end == text || *end != '\0' || refreshed > row->expires_ms)
        return 0;
    double period = (row->expires_ms - refreshed) / 3;
    return (double)now > refreshed + 1.5 * period;
}

/* connections as a JSON integer when it is one, so jq can compare it;
 * null when missing or not a number. */
static json_t *json_count(const char *text)
{
    if (!text)
        return json_null();
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end != '\0')
        return json_null();
    return json_integer((json_int_t)v);
}

static json_t *nodes_json(const struct node_row *rows, size_t n)
{
    json_t *doc = json_array();
    for (size_t i = 0; doc && i < n; i++) {
        json_t *o = json_object();
        if (!o)
            continue;
        json_put(o, "node", json_string(rows[i].id));
        json_put(o, "expires_ms", json_expiry(rows[i].expires_ms));
        for (int f = 0; f < N_NODE_FIELDS; f++) {
            const char *v = rows[i].field[f];
            if (strcmp(node_fields[f], "connections") == 0)
                json_put(o, node_fields[f], json_count(v));
            else
                json_put(o, node_fields[f], v ? json_string(v) : json_null());
        }
        json_array_append_new(doc, o);
    }
    return doc;
}

/* A table with a header, columns as wide as their widest cell. */
static void nodes_print_text(const struct node_row *rows, size_t n, int64_t now)
{
    if (n == 0) {
        printf("no live nodes\n");
        return;
    }
    static const char *const head[] = {"NODE",        "ADDR",    "STARTED_AT",
                                       "CONNECTIONS", "VERSION", "EXPIRES_IN"};
    int w[5];
    for (int c = 0; c < 5; c++)
        w[c] = (int)strlen(head[c]);
    for (size_t i = 0; i < n; i++) {
        if ((int)strlen(rows[i].id) > w[0])
            w[0] = (int)strlen(rows[i].id);
        for (int f = 0; f < N_NODE_FIELDS; f++) {
            const char *v = rows[i].field[f] ? rows[i].field[f] : "-";
            if ((int)strlen(v) > w[f + 1])
                w[f + 1] = (int)strlen(v);
        }
    }
    printf("%-*s  %-*s  %-*s  %-*s  %-*s  %s\n", w[0], head[0], w[1], head[1], w[2], head[2], w[3],
           head[3], w[4], head[4], head[5]);
    for (size_t i = 0; i < n; i++) {
        const struct node_row *r = &rows[i];
        char in[32];
        if (isfinite(r->expires_ms))
            snprintf(in, sizeof(in), "%.1fs", (r->expires_ms - (double)now) / 1000.0);
        else
            snprintf(in, sizeof(in), "never");
        printf("%-*s  %-*s  %-*s  %-*s  %-*s  %s\n", w[0], r->id, w[1],
               r->field[0] ? r->field[0] : "-", w[2], r->field[1] ? r->field[1] : "-", w[3],
               r->field[2] ? r->field[2] : "-", w[4], r->field[3] ? r->field[3] : "-", in);
    }
}

static int cmd_nodes(struct session *s, const struct args *a)
{
    char key[RNAME_MAX], min[32];
    int64_t now = now_ms();
    if (rnames_nodes(key, sizeof(key), a->prefix) < 0) {
        fprintf(stderr, "%s: --redis-prefix too long\n", PROG);
        return EXIT_USAGE;
    }
    snprintf(min, sizeof(min), "%lld", (long long)now);
    const char *argv[] = {"ZRANGEBYSCORE", key, min, "+inf", "WITHSCORES"};
    redisReply *live = session_expect(s, REDIS_REPLY_ARRAY, 5, argv);
    if (!live)
        return EXIT_REDIS;
    size_t n = live->elements / 2;
    struct node_row *rows = calloc(n ? n : 1, sizeof(*rows));
    int rc = 0;
    if (!rows) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        rc = EXIT_REDIS;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const redisReply *id = live->element[2 * i];
        if (id->type != REDIS_REPLY_STRING ||
            parse_score(live->element[2 * i + 1], &rows[i].expires_ms) < 0) {
            report_conn_error(s->current, "ZRANGEBYSCORE", "malformed WITHSCORES reply");
            rc = EXIT_REDIS;
            break;
        }
        rows[i].id = id->str;
        /* The hash may be gone if the node expired since the ZRANGEBYSCORE;
         * HMGET then gives nils, shown as "-" / null. */
        rc = node_fetch_hash(s, a->prefix, &rows[i]);
    }
    size_t kept = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!node_lapsed(&rows[i], now)) {
            rows[kept++] = rows[i];
            continue;
        }
        freeReplyObject(rows[i].hash);
    }
    if (rc == 0)
        n = kept;
    if (rc == 0) {
        if (a->json)
            rc = print_json(nodes_json(rows, n));
        else
            nodes_print_text(rows, n, now);
    }
    for (size_t i = 0; rows && i < n; i++)
        freeReplyObject(rows[i].hash);
    free(rows);
    freeReplyObject(live);
    return rc;
}

/* -------------------------------------------------------------- publish */

/* Prints publish's answer: {k1: v1, k2: v2} with --json (the values'
 * references are taken), else text and a newline. */
static int print_answer(const struct args *a, const char *k1, json_t *v1, const char *k2,
                        json_t *v2, const char *text)
{
    if (!a->json) {
        json_decref(v1);
        json_decref(v2);
        printf("%s\n", text);
        return 0;
    }
    json_t *doc = json_object();
    if (doc) {
        json_put(doc, k1, v1);
        json_put(doc, k2, v2);
    } else {
        json_decref(v1);
        json_decref(v2);
    }
    return print_json(doc);
}

/* The envelope publish's flags describe (malloc'd), or NULL after saying
 * why. */
static char *publish_envelope(const struct args *a)
{
    size_t len;
    char *envelope = envelope_build(a->type, a->body, a->meta, &len);
    if (!envelope)
        fprintf(stderr, "%s: cannot build the envelope (out of memory)\n", PROG);
    return envelope;
}

/* publish --history: the gateway's notify_publish function validates,
 * appends to the account's stream and publishes with the id, atomically.
 * In cluster mode the FCALL names its key, so a node that does not own the
 * slot answers MOVED and session_run follows it to the owner. */
static int cmd_publish_history(struct session *s, const struct args *a)
{
    char key[RNAME_MAX];
    if (rnames_stream(key, sizeof(key), a->prefix, a->pos[0]) < 0) {
        fprintf(stderr, "%s: stream key name too long\n", PROG);
        return EXIT_USAGE;
    }
    char *envelope = publish_envelope(a);
    if (!envelope)
        return EXIT_REDIS;
    const char *argv[] = {"FCALL", "notify_publish", "1", key, envelope};
    redisReply *r = session_expect(s, REDIS_REPLY_STRING, 5, argv);
    free(envelope);
    if (!r)
        return EXIT_REDIS;
    int rc = print_answer(a, "account", json_string(a->pos[0]), "id", json_stringn(r->str, r->len),
                          r->str);
    freeReplyObject(r);
    return rc;
}

static int cmd_publish(struct session *s, const struct args *a)
{
    if (a->history)
        return cmd_publish_history(s, a);
    char channel[RNAME_MAX];
    int n = a->broadcast ? rnames_broadcast_channel(channel, sizeof(channel), a->prefix)
                         : rnames_account_channel(channel, sizeof(channel), a->prefix, a->pos[0]);
    if (n < 0) {
        fprintf(stderr, "%s: channel name too long\n", PROG);
        return EXIT_USAGE;
    }
    char *envelope = publish_envelope(a);
    if (!envelope)
        return EXIT_REDIS;
    /* Cluster nodes deliver only sharded pub/sub to the gateway's
     * subscriptions (contract section 9); a single Redis takes plain
     * PUBLISH. */
    const char *argv[] = {s->target->cluster ? "SPUBLISH" : "PUBLISH", channel, envelope};
    redisReply *r = session_expect(s, REDIS_REPLY_INTEGER, 3, argv);
    free(envelope);
    if (!r)
        return EXIT_REDIS;
    char text[32];
    snprintf(text, sizeof(text), "%lld", r->integer);
    int rc = print_answer(a, "channel", json_string(channel), "receivers", json_integer(r->integer),
                          text);
    freeReplyObject(r);
    return rc;
}

/* ----------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    struct args a = {0};
    apply_environment(&a);
    int rc = parse_argv(&a, argc, argv);
    if (rc < 0)
        rc = check_args(&a);
    struct target t;
    if (rc < 0)
        rc = resolve_target(&t, &a);
    if (rc >= 0) {
        free(a.pos);
        return rc;
    }
    struct session s;
    if (session_open(&s, &t) < 0) {
        free(a.pos);
        return EXIT_REDIS;
    }
    switch (a.cmd) {
    case CMD_PRESENCE:
        rc = cmd_presence(&s, &a);
        break;
    case CMD_NODES:
        rc = cmd_nodes(&s, &a);
        break;
    case CMD_PUBLISH:
        rc = cmd_publish(&s, &a);
        break;
    case CMD_NONE:
        rc = EXIT_USAGE;
        break;
    }
    session_close(&s);
    free(a.pos);
    /* stdout may be a closed pipe or a full disk: a lost answer is an error. */
    if (fflush(stdout) != 0) {
        fprintf(stderr, "%s: cannot write output: %s\n", PROG, strerror(errno));
        return rc ? rc : EXIT_REDIS;
    }
    return rc;
}
