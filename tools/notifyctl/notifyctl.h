/* notifyctl: the command-line client of producers and operators (README.md,
 * Operations). It asks Redis directly, with synchronous hiredis, who is online
 * (presence), which gateway nodes are alive (nodes), and publishes one
 * envelope with a plain PUBLISH, or with history through the gateway's
 * notify_publish function (publish --history). Every Redis name comes from
 * rnames.h, so notifyctl reads and writes exactly what the gateway does.
 *
 * Exit status: 0 ok, 1 Redis unreachable or answering an error, 2 bad usage.
 * Every failure prints one line on stderr naming what failed.
 *
 * The parts: args.c (flags, environment, --help), session.c (where to
 * connect and the connections, MOVED / ASK followed through clustercmd.h),
 * commands.c (presence, nodes, publish and their output), delivery.c
 * (receipts, undelivered, unacked), main.c. */
#ifndef NOTIFY_NOTIFYCTL_H
#define NOTIFY_NOTIFYCTL_H

#include <hiredis/hiredis.h>

#include "redisurl.h"

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

enum command {
    CMD_NONE,
    CMD_PRESENCE,
    CMD_NODES,
    CMD_PUBLISH,
    CMD_RECEIPTS,    /* delivery.c */
    CMD_UNDELIVERED, /* delivery.c */
    CMD_UNACKED,     /* delivery.c */
};

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
    const char *ack;          /* publish --ack seconds (implies --history) */
    const char *ttl;          /* publish --ttl seconds (implies --history) */
    const char *count;        /* receipts / undelivered --count */
    const char *group;        /* undelivered --group (a consumer group) */
    const char *consumer;     /* undelivered --consumer */
    enum command cmd;         /* the first positional argument */
    const char *cmd_name;     /* as typed */
    char **pos;               /* the positional arguments after the command */
    int npos;                 /* how many */
    unsigned flags_seen;      /* bit per enum flag_id, to check against cmd */
};

/* Defaults, then the environment (flags parsed afterwards override it). */
void args_environment(struct args *a);

/* The command line into a. Returns -1 to go on, else the exit status (0
 * after --help / --version). */
int args_parse(struct args *a, int argc, char **argv);

/* Checks that belong to no single flag; -1 to go on, else the status. */
int args_check(struct args *a);

/* 1 when v is whole seconds from 1 to 31536000 (publish --ack, --ttl). */
int whole_seconds(const char *v);

/* The positional arguments and flags of receipts, undelivered, unacked
 * (delivery.c): -1 when fine, else the exit status after the message. */
int delivery_check(const struct args *a);

/* Prints the one-line usage error and returns the exit status for it. */
__attribute__((format(printf, 1, 2))) int args_usage_error(const char *fmt, ...);

/* Where to connect: one Redis, or the seeds of a cluster. */
struct target {
    struct redis_url seeds[MAX_SEEDS]; /* one entry for a single Redis */
    int nseeds;
    int cluster;
    const char *user;     /* credentials for every node ("" = none) */
    const char *password; /* "" = no AUTH */
};

/* Fills t from a's --redis or --redis-cluster; -1 to go on, else the exit
 * status. */
int target_resolve(struct target *t, const struct args *a);

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

/* Connects to the single Redis, or to the first cluster seed that answers.
 * When none does, one line names every seed and why it failed; -1. */
int session_open(struct session *s, const struct target *t);
void session_close(struct session *s);

/* Runs one command (following MOVED / ASK in a cluster) and returns its
 * reply if it has the type the caller needs; NULL after reporting why not
 * (I/O error, error reply, another type) with the node and the command. */
redisReply *session_expect(struct session *s, int type, int argc, const char **argv);

/* session_expect taking a reply of any type but an error (XREADGROUP
 * answers an array or nil). */
redisReply *session_command(struct session *s, int argc, const char **argv);

/* Runs n commands (argc[i], argv[i]; argv[i][1] is the key) with one
 * write and one read per node: everything goes to the current node first,
 * and in a cluster what it answers MOVED goes again, grouped, to the owner
 * named. Fills replies[0..n) (free each with freeReplyObject); -1 after
 * reporting an I/O error or an error reply (then none is kept). */
int session_pipeline(struct session *s, int n, const int *argc, const char *const *const *argv,
                     redisReply **replies);

/* Reports a failure about what on the session's current node. */
void session_report(const struct session *s, const char *what, const char *err);

/* The commands: each returns the exit status. */
int cmd_presence(struct session *s, const struct args *a);
int cmd_nodes(struct session *s, const struct args *a);
int cmd_publish(struct session *s, const struct args *a);
int cmd_receipts(struct session *s, const struct args *a);    /* delivery.c */
int cmd_undelivered(struct session *s, const struct args *a); /* delivery.c */
int cmd_unacked(struct session *s, const struct args *a);     /* delivery.c */

#endif
