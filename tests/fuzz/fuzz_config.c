/* libFuzzer target: config_parse. The input is split on NUL bytes into
 * arguments after argv[0]; a piece of the form NOTIFY_<NAME>=<value> is put
 * in the environment instead (and removed afterwards), so variables and
 * their interplay with flags are fuzzed too. Run with -close_fd_mask=3:
 * --help and every error print. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define MAX_ARGS 64
#define MAX_ENV 16

extern char **environ;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* start from an environment without NOTIFY_* variables */
    for (char **e = environ; *e;) {
        if (strncmp(*e, "NOTIFY_", 7) == 0) {
            char name[256];
            size_t n = strcspn(*e, "=");
            if (n >= sizeof(name))
                n = sizeof(name) - 1;
            memcpy(name, *e, n);
            name[n] = '\0';
            unsetenv(name);
            e = environ;
        } else {
            e++;
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';

    char *argv[MAX_ARGS + 1];
    char *envs[MAX_ENV];
    int argc = 0, nenv = 0;
    argv[argc++] = "notify-gateway";
    for (char *p = buf; p <= buf + size && argc < MAX_ARGS;) {
        size_t n = strlen(p);
        char *eq = strchr(p, '=');
        if (strncmp(p, "NOTIFY_", 7) == 0 && eq && nenv < MAX_ENV) {
            *eq = '\0';
            if (setenv(p, eq + 1, 1) == 0)
                envs[nenv++] = p;
        } else if (p < buf + size || n > 0) {
            argv[argc++] = p;
        }
        p += n + 1;
    }
    argv[argc] = NULL;

    struct config cfg;
    int rc = config_parse(&cfg, argc, argv, "notify-gateway");
    if (rc != 0 && rc != 1 && rc != 2)
        abort();
    if (rc == 0) {
        if (!cfg.listen || !cfg.redis || !cfg.redis_prefix || !cfg.node_id || !cfg.auth ||
            !cfg.allowed_origins || !cfg.log_level)
            abort();
        if (cfg.listen_port < 1 || cfg.listen_port > 65535 || !cfg.listen_host[0])
            abort();
        if (cfg.auth_mode == AUTH_JWT && !cfg.jwt_secret && !cfg.jwt_public_key)
            abort();
        if (cfg.heartbeat_timeout < 1 || cfg.heartbeat_check < 1 || cfg.presence_ttl < 3 ||
            cfg.max_connections < 0 || cfg.max_connections_per_account < 0 ||
            cfg.max_message_bytes < 16 || cfg.drain_seconds < 0 || cfg.max_queue_messages < 1 ||
            cfg.max_queue_bytes < 1024 || cfg.log_level_value < 0 || cfg.log_level_value > 3)
            abort();
        if (!cfg.redis_prefix[0] || strpbrk(cfg.redis_prefix, "{}"))
            abort();
    }
    config_free(&cfg);
    for (int i = 0; i < nenv; i++)
        unsetenv(envs[i]);
    free(buf);
    return 0;
}
