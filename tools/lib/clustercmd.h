/* clustercmd: one Redis command, synchronously (hiredis), sent to the node
 * that owns its key in a Redis Cluster: MOVED and ASK answers are followed
 * to the node they name (ASKING first after an ASK), up to a limit.
 *
 * The one redirection loop of notifyctl, the bench tool and the tests.
 * Which connection serves a node is the caller's business (a pool with
 * AUTH, or a new connection per command): it is asked through a callback. */
#ifndef NOTIFY_CLUSTERCMD_H
#define NOTIFY_CLUSTERCMD_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#define CLUSTERCMD_HOST_MAX 256

/* Why clustercmd_run gave no usable reply. */
enum clustercmd_error {
    CLUSTERCMD_OK = 0,    /* the reply is the node's answer (maybe an error reply) */
    CLUSTERCMD_CONNECT,   /* the callback gave no connection to host:port */
    CLUSTERCMD_IO,        /* the connection failed: errstr says how */
    CLUSTERCMD_ASKING,    /* ASKING was refused or failed: errstr says how */
    CLUSTERCMD_REDIRECTS, /* still redirected after max_redirects: the reply is the last one */
};

struct clustercmd {
    /* Set by the caller. */
    redisContext *(*connect)(void *arg, const char *host, int port); /* NULL: cannot */
    void (*release)(void *arg, redisContext *c); /* after each use; NULL: the caller keeps it */
    void *arg;
    int max_redirects; /* 0: an error reply is returned as it is, never followed */
    /* Set by the caller to the first node to ask; after clustercmd_run the
     * node that answered last (or failed). */
    char host[CLUSTERCMD_HOST_MAX];
    int port;
    /* Set by clustercmd_run. */
    int moved; /* the last redirection followed was MOVED: host:port owns the key's slot */
    enum clustercmd_error error;
    char errstr[128];
};

/* Parses "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>" into
 * host (hsize bytes) and port, and *ask. An empty host is from_host: Redis
 * announces no address when it does not know its own. 0, or -1 when err is
 * no redirection. */
int clustercmd_parse_redirect(const char *err, const char *from_host, char *host, size_t hsize,
                              int *port, int *ask);

/* Runs the RESP-formatted command cmd[0..len) (redisFormatCommand...) on
 * cc->host:cc->port, following redirections. Returns the reply (free with
 * freeReplyObject) with cc->error CLUSTERCMD_OK or CLUSTERCMD_REDIRECTS, or
 * NULL with cc->error saying why. */
redisReply *clustercmd_run(struct clustercmd *cc, const char *cmd, size_t len);

/* clustercmd_run of an argument vector (argvlen may be NULL: strlen). */
redisReply *clustercmd_argv(struct clustercmd *cc, int argc, const char **argv,
                            const size_t *argvlen);

#endif
