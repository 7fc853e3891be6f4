/* notifyctl's command line: one table of flags for the parser and --help,
 * the environment, and the checks of the whole line (notifyctl.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notifyctl.h"
#include "validate.h"

/* ---------------------------------------------------------------- usage */

#define FOR_ALL 0u
#define FOR_PUBLISH (1u << CMD_PUBLISH)
#define FOR_READS ((1u << CMD_RECEIPTS) | (1u << CMD_UNDELIVERED))
#define FOR_UNDELIVERED (1u << CMD_UNDELIVERED)

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
    FLAG_ACK,
    FLAG_TTL,
    FLAG_COUNT,
    FLAG_GROUP,
    FLAG_CONSUMER,
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
    {"ack", FLAG_ACK, "SECONDS", FOR_PUBLISH,
     "publish: owed an acknowledgement within SECONDS, else to the outbox (implies --history)",
     NULL, NULL},
    {"ttl", FLAG_TTL, "SECONDS", FOR_PUBLISH,
     "publish: expires SECONDS from now: not delivered, replayed or put in the outbox after "
     "(implies --history)",
     NULL, NULL},
    {"count", FLAG_COUNT, "N", FOR_READS, "receipts, undelivered: at most N entries [100]", NULL,
     NULL},
    {"group", FLAG_GROUP, "G", FOR_UNDELIVERED,
     "undelivered: read as consumer group G (XREADGROUP; created if missing)", NULL, NULL},
    {"consumer", FLAG_CONSUMER, "C", FOR_UNDELIVERED,
     "undelivered --group: the consumer's name [notifyctl]", NULL, NULL},
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
            "  publish ACCOUNT [--ack SECONDS] [--ttl SECONDS] --type T [...]\n"
            "      the same with notify_publish's options ack and ttl\n"
            "  receipts [ACCOUNT] [--count N]\n"
            "      the oldest N entries of <prefix>receipts (of ACCOUNT only, if given)\n"
            "  undelivered [--count N] [--group G [--consumer C]]\n"
            "      the oldest N entries of the outbox <prefix>undelivered; with --group,\n"
            "      the next N new to consumer group G (XREADGROUP ... >)\n"
            "  undelivered ack --group G ENTRY-ID...\n"
            "      XACK: those outbox entries are done for group G\n"
            "  unacked ACCOUNT\n"
            "      ids published to ACCOUNT with ack and not acknowledged yet\n"
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
int args_usage_error(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s (see --help)\n", PROG, msg);
    return EXIT_USAGE;
}

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
    if (strcmp(s, "receipts") == 0)
        return CMD_RECEIPTS;
    if (strcmp(s, "undelivered") == 0)
        return CMD_UNDELIVERED;
    if (strcmp(s, "unacked") == 0)
        return CMD_UNACKED;
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
    case FLAG_ACK:
        a->ack = value;
        a->history = 1;
        break;
    case FLAG_TTL:
        a->ttl = value;
        a->history = 1;
        break;
    case FLAG_COUNT:
        a->count = value;
        break;
    case FLAG_GROUP:
        a->group = value;
        break;
    case FLAG_CONSUMER:
        a->consumer = value;
        break;
    case FLAG_HELP:
    case FLAG_VERSION:
        break;
    }
}

/* Environment first, so that flags parsed afterwards override it. */
void args_environment(struct args *a)
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
int args_parse(struct args *a, int argc, char **argv)
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
                    return args_usage_error(
                        "unknown command '%s'; expected presence, nodes, publish, receipts, "
                        "undelivered or unacked",
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
            return args_usage_error("unknown flag '%s'", arg);
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
                return args_usage_error("--%s: missing value", f->name);
        } else if (eq) {
            return args_usage_error("--%s takes no value (got '%s')", f->name, eq + 1);
        }
        apply_flag(a, f, value);
    }
    return -1;
}

/* 1 when v is a whole number of seconds notify_publish takes (1 s to a year). */
int whole_seconds(const char *v)
{
    char *end;
    long n = strtol(v, &end, 10);
    return *v >= '0' && *v <= '9' && *end == '\0' && n >= 1 && n <= 31536000;
}

/* Checks that belong to no single flag: flags against the command, the
 * positional arguments, and values that need the whole picture. */
int args_check(struct args *a)
{
    if (a->cmd == CMD_NONE)
        return args_usage_error(
            "missing command: presence, nodes, publish, receipts, undelivered or unacked");
    for (size_t i = 0; i < N_FLAGS; i++) {
        const struct flag_def *f = &flags[i];
        if ((a->flags_seen & (1u << f->id)) && f->commands != FOR_ALL &&
            !(f->commands & (1u << a->cmd)))
            return args_usage_error("--%s does not apply to '%s'", f->name, a->cmd_name);
    }
    if (a->cluster && a->redis_given)
        return args_usage_error("%s and %s are exclusive: give one Redis or one cluster",
                                a->redis_from, a->cluster_from);
    if (!*a->prefix || strlen(a->prefix) > PREFIX_MAX || strchr(a->prefix, '{') ||
        strchr(a->prefix, '}'))
        return args_usage_error("%s: must be 1 to 256 bytes without { or } (got '%s')",
                                a->prefix_from, a->prefix);

    switch (a->cmd) {
    case CMD_PRESENCE:
        if (a->npos == 0)
            return args_usage_error("presence: missing ACCOUNT");
        break;
    case CMD_NODES:
        if (a->npos > 0)
            return args_usage_error("nodes: unexpected argument '%s'", a->pos[0]);
        break;
    case CMD_PUBLISH:
        if ((a->ack && !whole_seconds(a->ack)) || (a->ttl && !whole_seconds(a->ttl)))
            return args_usage_error("--%s: expected whole seconds from 1 to 31536000 (got '%s')",
                                    a->ack && !whole_seconds(a->ack) ? "ack" : "ttl",
                                    a->ack && !whole_seconds(a->ack) ? a->ack : a->ttl);
        if (a->broadcast && a->history)
            return args_usage_error("publish: --history does not apply to --broadcast (a broadcast "
                                    "has no history)");
        if (a->broadcast && a->npos > 0)
            return args_usage_error("publish: --broadcast takes no ACCOUNT (got '%s')", a->pos[0]);
        if (!a->broadcast && a->npos == 0)
            return args_usage_error("publish: missing ACCOUNT (or --broadcast)");
        if (a->npos > 1)
            return args_usage_error("publish: unexpected argument '%s' (one ACCOUNT per call)",
                                    a->pos[1]);
        if (!a->type)
            return args_usage_error("publish: missing --type");
        if (!*a->type)
            return args_usage_error("--type: must not be empty");
        /* jansson refuses strings that are not UTF-8, and the protocol's
         * frames are UTF-8 JSON: catch it here, naming the flag. */
        if (!validate_utf8(a->type, strlen(a->type)))
            return args_usage_error("--type: not valid UTF-8");
        if (a->body && !validate_utf8(a->body, strlen(a->body)))
            return args_usage_error("--body: not valid UTF-8");
        if (a->meta && !validate_utf8(a->meta, strlen(a->meta)))
            return args_usage_error("--meta: not valid UTF-8");
        break;
    case CMD_RECEIPTS:
    case CMD_UNDELIVERED:
    case CMD_UNACKED:
        if (delivery_check(a) >= 0)
            return EXIT_USAGE;
        if (a->cmd == CMD_UNDELIVERED)
            return -1; /* its arguments are entry ids */
        break;
    case CMD_NONE:
        break;
    }
    for (int i = 0; i < a->npos; i++)
        if (!validate_account_id(a->pos[i], strlen(a->pos[i])))
            return args_usage_error("invalid account id '%s': expected 1 to 128 bytes of "
                                    "[A-Za-z0-9_.@:-]",
                                    a->pos[i]);
    return -1;
}
