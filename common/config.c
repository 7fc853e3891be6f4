#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

enum opt_kind { OPT_STR, OPT_INT, OPT_BOOL };

/* One row per flag: the whole command line is described by this table, so
 * --help, the environment names and the parser cannot drift apart. */
struct option_def {
    const char *name;   /* flag without the leading dashes */
    enum opt_kind kind; /* how the value is parsed */
    size_t offset;      /* field in struct config */
    const char *def;    /* default as text; NULL = unset */
    long min, max;      /* bounds of OPT_INT */
    const char *help;   /* one line for --help */
};

#define F(field) offsetof(struct config, field)

static const struct option_def options[] = {
    {"listen", OPT_STR, F(listen), "0.0.0.0:8080", 0, 0, "WebSocket and HTTP address HOST:PORT"},
    {"redis", OPT_STR, F(redis), "redis://127.0.0.1:6379/0", 0, 0,
     "redis://[user:password@]host:port[/db]"},
    {"redis-cluster", OPT_STR, F(redis_cluster), NULL, 0, 0,
     "Redis Cluster seeds SEED[,SEED...], each HOST:PORT or redis://[user:password@]host:port"},
    {"redis-prefix", OPT_STR, F(redis_prefix), "notify:", 0, 0,
     "prefix of every Redis key and channel"},
    {"node-id", OPT_STR, F(node_id), NULL, 0, 0, "node id in presence [hostname-port]"},
    {"auth", OPT_STR, F(auth), "jwt", 0, 0, "jwt | none (none: ?user_id=, development only)"},
    {"jwt-secret", OPT_STR, F(jwt_secret), NULL, 0, 0, "HS256 secret"},
    {"jwt-public-key", OPT_STR, F(jwt_public_key), NULL, 0, 0, "RS256/ES256 public key PEM file"},
    {"api-key", OPT_STR, F(api_key), NULL, 0, 0, "bearer key of POST /publish (unset = API off)"},
    {"heartbeat-timeout", OPT_INT, F(heartbeat_timeout), "20", 1, 86400,
     "seconds of silence before a connection is closed (4408)"},
    {"heartbeat-check", OPT_INT, F(heartbeat_check), "9", 1, 86400,
     "seconds between silence checks"},
    {"input-batch-ms", OPT_INT, F(input_batch_ms), "100", 0, 1000,
     "ms client input may wait to be read with others' (fewer wakeups; 0 = at once)"},
    {"io-uring", OPT_BOOL, F(io_uring), "true", 0, 0,
     "write a loop turn's output, and read a pass's input, with one io_uring submit "
     "(false: a sendmsg and a read per socket)"},
    {"presence-ttl", OPT_INT, F(presence_ttl), "30", 3, 86400,
     "seconds a presence entry lives without refresh"},
    {"max-connections", OPT_INT, F(max_connections), "0", 0, INT_MAX,
     "connections per node (0 = no limit)"},
    {"max-connections-per-account", OPT_INT, F(max_connections_per_account), "64", 0, INT_MAX,
     "connections per account on this node (0 = no limit)"},
    {"max-message-bytes", OPT_INT, F(max_message_bytes), "4096", 16, 16 * 1024 * 1024,
     "largest client message accepted (larger: close 1009)"},
    {"allowed-origins", OPT_STR, F(allowed_origins), "", 0, 0,
     "comma-separated exact Origins (empty = any)"},
    {"reuse-port", OPT_BOOL, F(reuse_port), "false", 0, 0,
     "SO_REUSEPORT, for several processes on one port"},
    {"drain-seconds", OPT_INT, F(drain_seconds), "10", 0, 3600,
     "graceful shutdown window on SIGTERM"},
    {"drain-delay", OPT_INT, F(drain_delay), "2", 0, 600,
     "seconds of /readyz 503 (load balancer notice) before draining closes sockets"},
    {"log-level", OPT_STR, F(log_level), "info", 0, 0, "error | warn | info | debug"},
    {"max-queue-messages", OPT_INT, F(max_queue_messages), "1024", 1, 1 << 24,
     "frames queued for one slow client before it is closed (1013)"},
    {"max-queue-bytes", OPT_INT, F(max_queue_bytes), "1048576", 1024, INT_MAX,
     "bytes queued for one slow client before it is closed (1013)"},
    {"history-max-len", OPT_INT, F(history_max_len), "1000", 1, 1000000,
     "notify_publish messages kept per account (loaded into Redis; same on every node)"},
    {"history-ttl", OPT_INT, F(history_ttl), "86400", 1, 365 * 86400,
     "seconds an account's history lives after its last message"},
    {"receipts-max-len", OPT_INT, F(receipts_max_len), "100000", 1, 100000000,
     "acknowledgement receipts kept in <prefix>receipts, about (loaded into Redis)"},
    {"undelivered-max-len", OPT_INT, F(undelivered_max_len), "100000", 1, 100000000,
     "entries kept in the outbox <prefix>undelivered, about (loaded into Redis)"},
    {"ack-sweep-ms", OPT_INT, F(ack_sweep_ms), "1000", 50, 60000,
     "ms between sweeps of acknowledgement deadlines into the outbox"},
    {"trust-proxy", OPT_BOOL, F(trust_proxy), "false", 0, 0,
     "take the client address from X-Forwarded-For (behind a load balancer)"},
    {"presence-events", OPT_BOOL, F(presence_events), "false", 0, 0,
     "write online/offline transitions to <prefix>presence:events (README.md \"Presence events\")"},
    {"presence-debounce-ms", OPT_INT, F(presence_debounce_ms), "2000", 0, 3600000,
     "an account offline and back within this many ms writes no event"},
    {"presence-events-max-len", OPT_INT, F(presence_events_max_len), "100000", 1, 100000000,
     "entries the events stream is trimmed to, approximately (XADD MAXLEN ~)"},
    {"webhook-url", OPT_STR, F(webhook_url), NULL, 0, 0,
     "POST every presence event to this http:// URL, signed (README.md \"Webhooks\")"},
    {"webhook-secret", OPT_STR, F(webhook_secret), NULL, 0, 0,
     "HMAC-SHA256 key of the Notify-Signature header (needed with --webhook-url)"},
    {"demo", OPT_BOOL, F(demo), "false", 0, 0,
     "serve the browser demo at GET / (and its API key with --auth none)"},
};

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

static void env_name(const struct option_def *o, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "NOTIFY_");
    for (const char *p = o->name; *p && n + 1 < size; p++)
        buf[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    buf[n] = '\0';
}

void config_usage(FILE *out, const char *prog)
{
    fprintf(out,
            "usage: %s [flags]\n\nEvery flag also reads NOTIFY_<FLAG> from the "
            "environment; the flag wins.\n\n",
            prog);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct option_def *o = &options[i];
        char env[64], arg[32];
        env_name(o, env, sizeof(env));
        snprintf(arg, sizeof(arg), "%s",
                 o->kind == OPT_BOOL  ? ""
                 : o->kind == OPT_INT ? " N"
                                      : " VALUE");
        fprintf(out, "  --%s%s\n      %s\n      env %s, default %s\n", o->name, arg, o->help, env,
                o->def ? (*o->def ? o->def : "(empty)") : "(unset)");
    }
    fprintf(out, "  --help     this text\n  --version  print the version\n");
}

int config_bad_flag(const char *prog, const char *flag, const char *why, const char *value)
{
    fprintf(stderr, "%s: --%s: %s (got '%s')\n", prog, flag, why, value ? value : "");
    return 2;
}

static int bad(const char *prog, const char *flag, const char *why, const char *value)
{
    return config_bad_flag(prog, flag, why, value);
}

static int set_value(struct config *cfg, const struct option_def *o, const char *value,
                     const char *prog)
{
    char *field = (char *)cfg + o->offset;
    switch (o->kind) {
    case OPT_STR: {
        char **slot = (char **)field;
        free(*slot);
        *slot = value ? strdup(value) : NULL;
        if (value && !*slot)
            return bad(prog, o->name, "out of memory", "");
        return 0;
    }
    case OPT_INT: {
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        /* strtol alone would take leading blanks and a '+' */
        int lead_ok = isdigit((unsigned char)value[0]) || value[0] == '-';
        if (!lead_ok || errno || end == value || *end != '\0' || v < o->min || v > o->max) {
            char why[96];
            snprintf(why, sizeof(why), "expected an integer from %ld to %ld", o->min, o->max);
            return bad(prog, o->name, why, value);
        }
        *(int *)field = (int)v;
        return 0;
    }
    case OPT_BOOL:
        if (!strcmp(value, "1") || !strcmp(value, "true") || !strcmp(value, "yes"))
            *(int *)field = 1;
        else if (!strcmp(value, "0") || !strcmp(value, "false") || !strcmp(value, "no"))
            *(int *)field = 0;
        else
            return bad(prog, o->name, "expected true or false", value);
        return 0;
    }
    return 2;
}

static const struct option_def *find_option(const char *name, size_t len)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strlen(options[i].name) == len && !strncmp(options[i].name, name, len))
            return &options[i];
    return NULL;
}

static int valid_node_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128)
        return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("_.:-", *p))
            return 0;
    return 1;
}

/* --redis-cluster: seeds HOST:PORT or redis:// URLs; credentials in any URL
 * apply to every node (they replace redis_url's). */
static int parse_seeds(struct config *cfg, char *err, size_t errlen)
{
    char *copy = strdup(cfg->redis_cluster), *save = NULL;
    if (!copy) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = 0;
    memset(&cfg->redis_url, 0, sizeof(cfg->redis_url));
    for (char *tok = strtok_r(copy, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        if (cfg->n_seeds == CLUSTER_SEEDS_MAX) {
            snprintf(err, errlen, "at most %d seeds", CLUSTER_SEEDS_MAX);
            rc = -1;
            break;
        }
        struct redis_url u;
        char url[600], why[128];
        if (strncmp(tok, "redis://", 8) == 0)
            snprintf(url, sizeof(url), "%s", tok);
        else
            snprintf(url, sizeof(url), "redis://%s", tok);
        if (redis_url_parse(url, &u, why, sizeof(why)) < 0 || u.db != 0) {
            snprintf(err, errlen, "seed '%.60s': %.60s", tok,
                     u.db != 0 ? "cluster mode has no databases" : why);
            rc = -1;
            break;
        }
        if (u.password[0]) {
            snprintf(cfg->redis_url.user, sizeof(cfg->redis_url.user), "%s", u.user);
            snprintf(cfg->redis_url.password, sizeof(cfg->redis_url.password), "%s", u.password);
        }
        struct cluster_seed *seed = &cfg->seeds[cfg->n_seeds++];
        snprintf(seed->host, sizeof(seed->host), "%s", u.host);
        seed->port = u.port;
        if (cfg->n_seeds == 1) {
            snprintf(cfg->redis_url.host, sizeof(cfg->redis_url.host), "%s", u.host);
            cfg->redis_url.port = u.port;
        }
    }
    free(copy);
    if (rc == 0 && cfg->n_seeds == 0) {
        snprintf(err, errlen, "no seed given");
        rc = -1;
    }
    return rc;
}

/* Cross-field checks and derived values, once every source is applied. */
static int finish(struct config *cfg, const char *prog)
{
    char err[256];
    const char *colon = strrchr(cfg->listen, ':');
    char *end;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (!colon || colon == cfg->listen ||
        (size_t)(colon - cfg->listen) >= sizeof(cfg->listen_host) ||
        !isdigit((unsigned char)colon[1]) || *end != '\0' || port < 1 || port > 65535)
        return bad(prog, "listen", "expected HOST:PORT with a port from 1 to 65535", cfg->listen);
    memcpy(cfg->listen_host, cfg->listen, (size_t)(colon - cfg->listen));
    cfg->listen_host[colon - cfg->listen] = '\0';
    cfg->listen_port = (int)port;

    if (redis_url_parse(cfg->redis, &cfg->redis_url, err, sizeof(err)) < 0)
        return bad(prog, "redis", err, cfg->redis);
    if (cfg->redis_cluster && !*cfg->redis_cluster) {
        free(cfg->redis_cluster); /* NOTIFY_REDIS_CLUSTER= means unset */
        cfg->redis_cluster = NULL;
    }
    if (cfg->redis_cluster) {
        if (cfg->redis_explicit)
            return bad(prog, "redis-cluster", "give --redis or --redis-cluster, not both",
                       cfg->redis_cluster);
        if (parse_seeds(cfg, err, sizeof(err)) < 0)
            return bad(prog, "redis-cluster", err, cfg->redis_cluster);
    }

    if (!strcmp(cfg->auth, "jwt"))
        cfg->auth_mode = AUTH_JWT;
    else if (!strcmp(cfg->auth, "none"))
        cfg->auth_mode = AUTH_NONE;
    else
        return bad(prog, "auth", "expected jwt or none", cfg->auth);
    if (cfg->jwt_secret && !*cfg->jwt_secret)
        return bad(prog, "jwt-secret", "must not be empty", "");
    if (cfg->jwt_secret && cfg->jwt_public_key)
        return bad(prog, "jwt-public-key", "give --jwt-secret or --jwt-public-key, not both",
                   cfg->jwt_public_key);
    if (cfg->auth_mode == AUTH_JWT && !cfg->jwt_secret && !cfg->jwt_public_key)
        return bad(prog, "auth", "jwt needs --jwt-secret or --jwt-public-key", cfg->auth);
    if (cfg->jwt_public_key && access(cfg->jwt_public_key, R_OK) != 0)
        return bad(prog, "jwt-public-key", "cannot read the file", cfg->jwt_public_key);
    if (cfg->api_key && !*cfg->api_key)
        return bad(prog, "api-key", "must not be empty when set", "");

    if (cfg->webhook_url && !*cfg->webhook_url) {
        free(cfg->webhook_url); /* NOTIFY_WEBHOOK_URL= means unset */
        cfg->webhook_url = NULL;
    }
    if (cfg->webhook_url) {
        int http = strncmp(cfg->webhook_url, "http://", 7) == 0;
        const char *h = http ? cfg->webhook_url + 7 : "";
        if (!http || !*h || *h == '/' || *h == ':' || strlen(cfg->webhook_url) > 1000 ||
            strpbrk(cfg->webhook_url, " \r\n"))
            return bad(prog, "webhook-url", "expected http://HOST[:PORT][/PATH] (plain HTTP only)",
                       cfg->webhook_url);
        if (!cfg->webhook_secret || !*cfg->webhook_secret)
            return bad(prog, "webhook-secret", "required with --webhook-url", "");
    }

    if ((cfg->log_level_value = log_level_parse(cfg->log_level)) < 0)
        return bad(prog, "log-level", "expected error, warn, info or debug", cfg->log_level);
    if (!*cfg->redis_prefix || strchr(cfg->redis_prefix, '{') || strchr(cfg->redis_prefix, '}'))
        return bad(prog, "redis-prefix", "must be non-empty, without { or }", cfg->redis_prefix);

    if (!cfg->node_id) {
        char host[200] = "node";
        if (gethostname(host, sizeof(host)) != 0)
            snprintf(host, sizeof(host), "node");
        host[sizeof(host) - 1] = '\0';
        char id[256];
        snprintf(id, sizeof(id), "%s-%d", host, cfg->listen_port);
        cfg->node_id = strdup(id);
        if (!cfg->node_id)
            return bad(prog, "node-id", "out of memory", "");
    }
    if (!valid_node_id(cfg->node_id))
        return bad(prog, "node-id", "1 to 128 bytes of [A-Za-z0-9_.:-]", cfg->node_id);
    return 0;
}

int config_parse(struct config *cfg, int argc, char **argv, const char *prog)
{
    memset(cfg, 0, sizeof(*cfg));
    int rc;
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct option_def *o = &options[i];
        char env[64];
        env_name(o, env, sizeof(env));
        const char *v = getenv(env);
        if ((rc = set_value(cfg, o, o->def ? o->def : NULL, prog)) != 0 && o->def)
            return rc;
        if (v && (rc = set_value(cfg, o, v, prog)) != 0)
            return rc;
        if (v && o->offset == F(redis))
            cfg->redis_explicit = 1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            config_usage(stdout, prog);
            return 1;
        }
        if (!strcmp(a, "--version")) {
            printf("%s %s\n", prog, NOTIFY_VERSION);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "%s: unexpected argument '%s' (flags start with --)\n", prog, a);
            return 2;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const struct option_def *o = find_option(name, nlen);
        if (!o) {
            fprintf(stderr, "%s: unknown flag --%.*s (see --help)\n", prog, (int)nlen, name);
            return 2;
        }
        const char *value;
        if (eq)
            value = eq + 1;
        else if (o->kind == OPT_BOOL)
            value = "true";
        else if (i + 1 < argc)
            value = argv[++i];
        else {
            fprintf(stderr, "%s: --%s: missing value\n", prog, o->name);
            return 2;
        }
        if ((rc = set_value(cfg, o, value, prog)) != 0)
            return rc;
        if (o->offset == F(redis))
            cfg->redis_explicit = 1;
    }
    return finish(cfg, prog);
}

void config_free(struct config *cfg)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (options[i].kind == OPT_STR) {
            char **slot = (char **)((char *)cfg + options[i].offset);
            free(*slot);
            *slot = NULL;
        }
}
