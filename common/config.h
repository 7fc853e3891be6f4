/* config: the daemon's flags (README.md "Flags") and their NOTIFY_*
 * environment variables. A flag wins over its variable; every value is
 * checked here so the rest of the daemon can trust struct config. */
#ifndef NOTIFY_CONFIG_H
#define NOTIFY_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "redisurl.h"

enum auth_mode { AUTH_JWT = 0, AUTH_NONE = 1 };

#define CLUSTER_SEEDS_MAX 16

/* One --redis-cluster seed. */
struct cluster_seed {
    char host[256];
    int port;
};

struct config {
    char *listen;               /* HOST:PORT as given */
    char listen_host[256];      /* parsed from listen */
    int listen_port;            /* parsed from listen */
    char *redis;                /* redis:// URL as given */
    struct redis_url redis_url; /* parsed from redis */
    char *redis_cluster;        /* --redis-cluster seeds as given; NULL = single Redis */
    struct cluster_seed seeds[CLUSTER_SEEDS_MAX]; /* parsed from redis_cluster */
    int n_seeds;                                  /* length of seeds */
    int redis_explicit;                           /* --redis or NOTIFY_REDIS was given */
    char *redis_prefix;                           /* prefix of every key and channel */
    char *node_id;                                /* id in presence and the node registry */
    char *auth;                                   /* "jwt" or "none" */
    enum auth_mode auth_mode;                     /* parsed from auth */
    char *jwt_secret;                             /* HS256 secret */
    char *jwt_public_key;                         /* path of an RS256/ES256 PEM public key */
    char *api_key;                                /* bearer key of POST /publish; NULL = API off */
    int heartbeat_timeout;                        /* s of silence before close 4408 */
    int heartbeat_check;                          /* s between silence checks */
    int input_batch_ms;                           /* ms client input may wait for more */
    int io_uring;                                 /* batched writes through io_uring */
    int presence_ttl;                             /* s a presence entry lives without refresh */
    int max_connections;                          /* per node, 0 = no limit */
    int max_connections_per_account;              /* per account and node, 0 = no limit */
    int max_message_bytes;                        /* largest client message accepted */
    char *allowed_origins;                        /* comma-separated exact Origins; "" = any */
    int reuse_port;                               /* SO_REUSEPORT on the listening socket */
    int drain_seconds;                            /* window over which SIGTERM closes sockets */
    int drain_delay;                              /* s of /readyz 503 before closing sockets */
    char *log_level;                              /* error|warn|info|debug */
    int log_level_value;                          /* parsed from log_level */
    int max_queue_messages;                       /* frames queued per connection before 1013 */
    int max_queue_bytes;                          /* bytes queued per connection before 1013 */
    int history_max_len;                          /* messages kept per account stream */
    int history_ttl;                              /* s a stream lives after its last message */
    int demo;                                     /* serve the demo page at GET / */
    int trust_proxy;                              /* client address from X-Forwarded-For */
    int receipts_max_len;                         /* <prefix>receipts trimmed to about this */
    int undelivered_max_len;                      /* <prefix>undelivered trimmed to about this */
    int ack_sweep_ms;                             /* ms between sweeps of ack deadlines */
    int presence_events;                          /* write <prefix>presence:events */
    int presence_debounce_ms;                     /* an offline-online flap within it is no event */
    int presence_events_max_len;                  /* the events stream's approximate length */
    char *webhook_url;                            /* http:// URL events are POSTed to; NULL = off */
    char *webhook_secret;                         /* HMAC-SHA256 key of the signature header */
};

/* Parses argv and the environment (envp-style lookup through getenv).
 * Returns 0 to run, 1 when --help or --version printed what was asked
 * (exit 0), 2 on a bad flag or value after printing a one-line error that
 * names it to stderr (exit 2). prog names the program in messages. */
int config_parse(struct config *cfg, int argc, char **argv, const char *prog);

/* Prints the one line of a bad flag value to stderr, as config_parse does
 * ("prog: --flag: why (got 'value')"), and returns 2, the exit status. For
 * what is checked after config_parse, by code config cannot call (the
 * --jwt-public-key file, which only auth reads). */
int config_bad_flag(const char *prog, const char *flag, const char *why, const char *value);

/* Prints every flag with its variable and default. */
void config_usage(FILE *out, const char *prog);

void config_free(struct config *cfg);

#endif
