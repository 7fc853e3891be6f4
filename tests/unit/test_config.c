/* Unit tests of common/config: daemon flags, NOTIFY_* variables, defaults
 * and the exit-2 errors of README.md "Flags". */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

extern char **environ;

#define PROG "notify-gateway"
#define MAX_ARGS 64

/* What one config_parse call printed. */
static char out_buf[16384];
static char err_buf[16384];

static void read_back(FILE *f, char *buf, size_t size)
{
    fflush(f);
    rewind(f);
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Runs config_parse on PROG followed by the given arguments (NULL-ended),
 * capturing stdout into out_buf and stderr into err_buf. */
static int parse_argv(struct config *cfg, int argc, char **argv)
{
    FILE *out = tmpfile(), *err = tmpfile();
    ck_assert_ptr_nonnull(out);
    ck_assert_ptr_nonnull(err);
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(1), saved_err = dup(2);
    ck_assert_int_ge(saved_out, 0);
    ck_assert_int_ge(saved_err, 0);
    dup2(fileno(out), 1);
    dup2(fileno(err), 2);
    int rc = config_parse(cfg, argc, argv, PROG);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    read_back(out, out_buf, sizeof(out_buf));
    read_back(err, err_buf, sizeof(err_buf));
    return rc;
}

static int parse(struct config *cfg, ...)
{
    char *argv[MAX_ARGS + 1];
    int argc = 0;
    argv[argc++] = PROG;
    va_list ap;
    va_start(ap, cfg);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        ck_assert_int_lt(argc, MAX_ARGS);
        argv[argc++] = (char *)a;
    }
    va_end(ap);
    argv[argc] = NULL;
    return parse_argv(cfg, argc, argv);
}

/* stderr holds exactly one line that names --flag. */
static void assert_error_names(const char *flag)
{
    char want[128];
    snprintf(want, sizeof(want), "--%s", flag);
    ck_assert_msg(strstr(err_buf, want) != NULL, "stderr does not name %s: %s", want, err_buf);
    size_t n = strlen(err_buf);
    ck_assert_msg(n > 0 && err_buf[n - 1] == '\n', "stderr is not one line: %s", err_buf);
    ck_assert_msg(strchr(err_buf, '\n') == err_buf + n - 1, "stderr has several lines: %s",
                  err_buf);
    ck_assert_msg(strncmp(err_buf, PROG ": ", strlen(PROG) + 2) == 0,
                  "stderr does not start with the program name: %s", err_buf);
}

/* Each test starts from an environment without NOTIFY_* variables (Check
 * runs every test in its own process, so changes do not leak). */
static void clear_env(void)
{
    for (;;) {
        char **e = environ;
        while (*e && strncmp(*e, "NOTIFY_", 7) != 0)
            e++;
        if (!*e)
            break;
        char name[256];
        size_t n = strcspn(*e, "=");
        ck_assert_int_lt(n, sizeof(name));
        memcpy(name, *e, n);
        name[n] = '\0';
        unsetenv(name);
    }
}

START_TEST(defaults)
{
    struct config c;
    ck_assert_int_eq(parse(&c, "--auth", "none", NULL), 0);
    ck_assert_str_eq(err_buf, "");
    ck_assert_str_eq(out_buf, "");
    ck_assert_str_eq(c.listen, "0.0.0.0:8080");
    ck_assert_str_eq(c.listen_host, "0.0.0.0");
    ck_assert_int_eq(c.listen_port, 8080);
    ck_assert_str_eq(c.redis, "redis://127.0.0.1:6379/0");
    ck_assert_str_eq(c.redis_url.host, "127.0.0.1");
    ck_assert_int_eq(c.redis_url.port, 6379);
    ck_assert_int_eq(c.redis_url.db, 0);
    ck_assert_str_eq(c.redis_url.user, "");
    ck_assert_str_eq(c.redis_url.password, "");
    ck_assert_str_eq(c.redis_prefix, "notify:");
    ck_assert_str_eq(c.auth, "none");
    ck_assert_int_eq(c.auth_mode, AUTH_NONE);
    ck_assert_ptr_null(c.jwt_secret);
    ck_assert_ptr_null(c.jwt_public_key);
    ck_assert_ptr_null(c.api_key);
    ck_assert_int_eq(c.heartbeat_timeout, 20);
    ck_assert_int_eq(c.heartbeat_check, 9);
    ck_assert_int_eq(c.input_batch_ms, 100);
    ck_assert_int_eq(c.presence_ttl, 30);
    ck_assert_int_eq(c.max_connections, 0);
    ck_assert_int_eq(c.max_connections_per_account, 64);
    ck_assert_int_eq(c.max_message_bytes, 4096);
    ck_assert_str_eq(c.allowed_origins, "");
    ck_assert_int_eq(c.reuse_port, 0);
    ck_assert_int_eq(c.drain_seconds, 10);
    ck_assert_str_eq(c.log_level, "info");
    ck_assert_int_eq(c.log_level_value, LOG_INFO);
    ck_assert_int_eq(c.max_queue_messages, 1024);
    ck_assert_int_eq(c.max_queue_bytes, 1048576);
    /* node id defaults to hostname-port */
    char host[256] = "";
    ck_assert_int_eq(gethostname(host, sizeof(host)), 0);
    char want[300];
    snprintf(want, sizeof(want), "%s-8080", host);
    ck_assert_str_eq(c.node_id, want);
    config_free(&c);
}
END_TEST

START_TEST(default_node_id_follows_listen_port)
{
    struct config c;
    ck_assert_int_eq(parse(&c, "--auth=none", "--listen", "127.0.0.1:9001", NULL), 0);
    size_t n = strlen(c.node_id);
    ck_assert_uint_gt(n, 5);
    ck_assert_str_eq(c.node_id + n - 5, "-9001");
    config_free(&c);
}
END_TEST

START_TEST(jwt_is_default_and_needs_a_key)
{
    struct config c;
    ck_assert_int_eq(parse(&c, NULL), 2);
    assert_error_names("auth");
    config_free(&c);
    ck_assert_int_eq(parse(&c, "--auth", "jwt", NULL), 2);
    assert_error_names("auth");
    config_free(&c);
    setenv("NOTIFY_AUTH", "jwt", 1);
    ck_assert_int_eq(parse(&c, NULL), 2);
    assert_error_names("auth");
    config_free(&c);
}
END_TEST

START_TEST(jwt_with_secret)
{
    struct config c;
    ck_assert_int_eq(parse(&c, "--jwt-secret", "s3cret", NULL), 0);
    ck_assert_int_eq(c.auth_mode, AUTH_JWT);
    ck_assert_str_eq(c.jwt_secret, "s3cret");
    config_free(&c);
    setenv("NOTIFY_JWT_SECRET", "fromenv", 1);
    ck_assert_int_eq(parse(&c, NULL), 0);
    ck_assert_int_eq(c.auth_mode, AUTH_JWT);
    ck_assert_str_eq(c.jwt_secret, "fromenv");
    config_free(&c);
}
END_TEST

START_TEST(jwt_with_public_key)
{
    char path[] = "/tmp/notify-test-key-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "x\n", 2), 2);
    close(fd);
    struct config c;
    ck_assert_int_eq(parse(&c, "--jwt-public-key", path, NULL), 0);
    ck_assert_int_eq(c.auth_mode, AUTH_JWT);
    ck_assert_str_eq(c.jwt_public_key, path);
    ck_assert_ptr_null(c.jwt_secret);
    config_free(&c);
    /* secret and key together */
    ck_assert_int_eq(parse(&c, "--jwt-public-key", path, "--jwt-secret", "s", NULL), 2);
    assert_error_names("jwt-public-key");
    config_free(&c);
    unlink(path);
    /* unreadable key file */
    ck_assert_int_eq(parse(&c, "--jwt-public-key", path, NULL), 2);
    assert_error_names("jwt-public-key");
    config_free(&c);
}
END_TEST

START_TEST(empty_jwt_secret_rejected)
{
    struct config c;
    ck_assert_int_eq(parse(&c, "--jwt-secret", "", NULL), 2);
    assert_error_names("jwt-secret");
    config_free(&c);
    ck_assert_int_eq(parse(&c, "--auth", "none", "--jwt-secret=", NULL), 2);
    assert_error_names("jwt-secret");
    config_free(&c);
}
END_TEST

START_TEST(every_flag_by_value)
{
    struct config c;
    ck_assert_int_eq(parse(&c, "--listen", "127.0.0.1:9000", "--redis",
                           "redis://user:pw@redis.local:6380/3", "--redis-prefix",
                           "app:", "--node-id", "node-a.1", "--auth", "none", "--api-key", "k3y",
                           "--heartbeat-timeout", "30", "--heartbeat-check", "5", "--presence-ttl",
                           "60", "--max-connections", "1000", "--max-connections-per-account", "8",
                           "--max-message-bytes", "65536", "--allowed-origins",
                           "https://a.example,https://b.example", "--reuse-port", "--drain-seconds",
                           "0", "--log-level", "debug", "--max-queue-messages", "7",
                           "--max-queue-bytes", "2048", NULL),
                     0);
    ck_assert_str_eq(err_buf, "");
    ck_assert_str_eq(c.listen_host, "127.0.0.1");
    ck_assert_int_eq(c.listen_port, 9000);
    ck_assert_str_eq(c.redis_url.host, "redis.local");
    ck_assert_int_eq(c.redis_url.port, 6380);
    ck_assert_int_eq(c.redis_url.db, 3);
    ck_assert_str_eq(c.redis_url.user, "user");
    ck_assert_str_eq(c.redis_url.password, "pw");
    ck_assert_str_eq(c.redis_prefix, "app:");
    ck_assert_str_eq(c.node_id, "node-a.1");
    ck_assert_int_eq(c.auth_mode, AUTH_NONE);
    ck_assert_str_eq(c.api_key, "k3y");
    ck_assert_int_eq(c.heartbeat_timeout, 30);
    ck_assert_int_eq(c.heartbeat_check, 5);
    ck_assert_int_eq(c.presence_ttl, 60);
    ck_assert_int_eq(c.max_connections, 1000);
    ck_assert_int_eq(c.max_connections_per_account, 8);
    ck_assert_int_eq(c.max_message_bytes, 65536);
    ck_assert_str_eq(c.allowed_origins, "https://a.example,https://b.example");
    ck_assert_int_eq(c.reuse_port, 1);
    ck_assert_int_eq(c.drain_seconds, 0);
    ck_assert_str_eq(c.log_level, "debug");
    ck_assert_int_eq(c.log_level_value, LOG_DEBUG);
    ck_assert_int_eq(c.max_queue_messages, 7);
    ck_assert_int_eq(c.max_queue_bytes, 2048);
    config_free(&c);
}
END_TEST

START_TEST(equals_form)
{
    struct config c;
    ck_assert_int_eq(parse(&c, "--auth=none", "--listen=localhost:1", "--heartbeat-timeout=45",
                           "--redis=redis://h:2/5", "--allowed-origins=", "--log-level=warn",
                           "--api-key=a=b=c", NULL),
                     0);
    ck_assert_str_eq(c.listen_host, "localhost");
    ck_assert_int_eq(c.listen_port, 1);
    ck_assert_int_eq(c.heartbeat_timeout, 45);
    ck_assert_str_eq(c.redis_url.host, "h");
    ck_assert_int_eq(c.redis_url.port, 2);
    ck_assert_int_eq(c.redis_url.db, 5);
    ck_assert_str_eq(c.allowed_origins, "");
    ck_assert_int_eq(c.log_level_value, LOG_WARN);
    ck_assert_str_eq(c.api_key, "a=b=c"); /* only the first '=' splits */
    config_free(&c);
}
END_TEST

START_TEST(value_may_start_with_dashes)
{
    /* The separate-argument form takes the next argument as it is. */
    struct config c;
    ck_assert_int_eq(parse(&c, "--auth", "none", "--api-key", "--not-a-flag", NULL), 0);
    ck_assert_str_eq(c.api_key, "--not-a-flag");
    config_free(&c);
}
END_TEST

START_TEST(bool_flags)
{
    static const struct {
        const char *arg;
        int want;
    } cases[] = {
        {"--reuse-port", 1},     {"--reuse-port=true", 1},  {"--reuse-port=1", 1},
        {"--reuse-port=yes", 1}, {"--reuse-port=false", 0}, {"--reuse-port=0", 0},
        {"--reuse-port=no", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct config c;
        ck_assert_int_eq(parse(&c, "--auth", "none", cases[i].arg, NULL), 0);
        ck_assert_msg(c.reuse_port == cases[i].want, "%s gave %d", cases[i].arg, c.reuse_port);
        config_free(&c);
    }
    struct config c;
    /* the flag wins over the variable in both directions */
    setenv("NOTIFY_REUSE_PORT", "true", 1);
    ck_assert_int_eq(parse(&c, "--auth", "none", NULL), 0);
    ck_assert_int_eq(c.reuse_port, 1);
    config_free(&c);
    ck_assert_int_eq(parse(&c, "--auth", "none", "--reuse-port=false", NULL), 0);
    ck_assert_int_eq(c.reuse_port, 0);
    config_free(&c);
    setenv("NOTIFY_REUSE_PORT", "no", 1);
    ck_assert_int_eq(parse(&c, "--auth", "none", "--reuse-port", NULL), 0);
    ck_assert_int_eq(c.reuse_port, 1);
    config_free(&c);
}
END_TEST

START_TEST(bool_flags_bad)
{
    struct config c;
    static const char *bad[] = {"--reuse-port=maybe", "--reuse-port=", "--reuse-port=TRUE",
                                "--reuse-port=2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(parse(&c, "--auth", "none", bad[i], NULL) == 2, "%s accepted", bad[i]);
        assert_error_names("reuse-port");
        config_free(&c);
    }
    /* a bool flag does not consume the next argument */
    ck_assert_int_eq(parse(&c, "--auth", "none", "--reuse-port", "false", NULL), 2);
    ck_assert_ptr_nonnull(strstr(err_buf, "false"));
    config_free(&c);
    setenv("NOTIFY_REUSE_PORT", "perhaps", 1);
    ck_assert_int_eq(parse(&c, "--auth", "none", NULL), 2);
    assert_error_names("reuse-port");
    config_free(&c);
}
END_TEST

START_TEST(env_applies)
{
    setenv("NOTIFY_LISTEN", "10.0.0.1:7000", 1);
    setenv("NOTIFY_REDIS", "redis://:pw@r:6390/2", 1);
    setenv("NOTIFY_REDIS_PREFIX", "p:", 1);
    setenv("NOTIFY_NODE_ID", "env-node", 1);
    setenv("NOTIFY_AUTH", "none", 1);
    setenv("NOTIFY_API_KEY", "envkey", 1);
    setenv("NOTIFY_HEARTBEAT_TIMEOUT", "40", 1);
    setenv("NOTIFY_HEARTBEAT_CHECK", "4", 1);
    setenv("NOTIFY_PRESENCE_TTL", "90", 1);
    setenv("NOTIFY_MAX_CONNECTIONS", "5", 1);
    setenv("NOTIFY_MAX_CONNECTIONS_PER_ACCOUNT", "6", 1);
    setenv("NOTIFY_MAX_MESSAGE_BYTES", "1000", 1);
    setenv("NOTIFY_ALLOWED_ORIGINS", "https://x.example", 1);
    setenv("NOTIFY_REUSE_PORT", "1", 1);
    setenv("NOTIFY_DRAIN_SECONDS", "3", 1);
    setenv("NOTIFY_LOG_LEVEL", "error", 1);
    setenv("NOTIFY_MAX_QUEUE_MESSAGES", "99", 1);
    setenv("NOTIFY_MAX_QUEUE_BYTES", "4096", 1);
    struct config c;
    ck_assert_int_eq(parse(&c, NULL), 0);
    ck_assert_str_eq(c.listen_host, "10.0.0.1");
    ck_assert_int_eq(c.listen_port, 7000);
    ck_assert_str_eq(c.redis_url.host, "r");
    ck_assert_int_eq(c.redis_url.port, 6390);
    ck_assert_int_eq(c.redis_url.db, 2);
    ck_assert_str_eq(c.redis_url.user, "");
    ck_assert_str_eq(c.redis_url.password, "pw");
    ck_assert_str_eq(c.redis_prefix, "p:");
    ck_assert_str_eq(c.node_id, "env-node");
    ck_assert_int_eq(c.auth_mode, AUTH_NONE);
    ck_assert_str_eq(c.api_key, "envkey");
    ck_assert_int_eq(c.heartbeat_timeout, 40);
    ck_assert_int_eq(c.heartbeat_check, 4);
    ck_assert_int_eq(c.presence_ttl, 90);
    ck_assert_int_eq(c.max_connections, 5);
    ck_assert_int_eq(c.max_connections_per_account, 6);
    ck_assert_int_eq(c.max_message_bytes, 1000);
    ck_assert_str_eq(c.allowed_origins, "https://x.example");
    ck_assert_int_eq(c.reuse_port, 1);
    ck_assert_int_eq(c.drain_seconds, 3);
    ck_assert_int_eq(c.log_level_value, LOG_ERROR);
    ck_assert_int_eq(c.max_queue_messages, 99);
    ck_assert_int_eq(c.max_queue_bytes, 4096);
    config_free(&c);
}
END_TEST

START_TEST(flag_beats_env)
{
    setenv("NOTIFY_LISTEN", "10.0.0.1:7000", 1);
    setenv("NOTIFY_AUTH", "jwt", 1);
    setenv("NOTIFY_HEARTBEAT_TIMEOUT", "40", 1);
    setenv("NOTIFY_REDIS_PREFIX", "env:", 1);
    setenv("NOTIFY_LOG_LEVEL", "error", 1);
    setenv("NOTIFY_NODE_ID", "env-node", 1);
    struct config c;
    ck_assert_int_eq(parse(&c, "--listen", "127.0.0.1:7001", "--auth=none", "--heartbeat-timeout",
                           "50", "--redis-prefix=flag:", "--log-level", "debug", "--node-id",
                           "flag-node", NULL),
                     0);
    ck_assert_str_eq(c.listen_host, "127.0.0.1");
    ck_assert_int_eq(c.listen_port, 7001);
    ck_assert_int_eq(c.auth_mode, AUTH_NONE);
    ck_assert_int_eq(c.heartbeat_timeout, 50);
    ck_assert_str_eq(c.redis_prefix, "flag:");
    ck_assert_int_eq(c.log_level_value, LOG_DEBUG);
    ck_assert_str_eq(c.node_id, "flag-node");
    config_free(&c);
}
END_TEST

START_TEST(later_flag_wins)
{
    struct config c;
    ck_assert_int_eq(parse(&c, "--auth", "none", "--heartbeat-timeout", "5",
                           "--heartbeat-timeout=7", "--api-key", "a", "--api-key", "b", NULL),
                     0);
    ck_assert_int_eq(c.heartbeat_timeout, 7);
    ck_assert_str_eq(c.api_key, "b");
    config_free(&c);
}
END_TEST

START_TEST(bounds_accepted)
{
    static const char *good[][2] = {
        {"heartbeat-timeout", "1"},
        {"heartbeat-timeout", "86400"},
        {"heartbeat-check", "1"},
        {"heartbeat-check", "86400"},
        {"input-batch-ms", "0"},
        {"input-batch-ms", "1000"},
        {"presence-ttl", "3"},
        {"presence-ttl", "86400"},
        {"max-connections", "0"},
        {"max-connections", "2147483647"},
        {"max-connections-per-account", "0"},
        {"max-message-bytes", "16"},
        {"max-message-bytes", "16777216"},
        {"drain-seconds", "0"},
        {"drain-seconds", "3600"},
        {"max-queue-messages", "1"},
        {"max-queue-messages", "16777216"},
        {"max-queue-bytes", "1024"},
        {"max-queue-bytes", "2147483647"},
        {"listen", "h:1"},
        {"listen", "h:65535"},
        {"listen", "localhost:8080"},
        {"redis", "redis://h:1"},
        {"redis", "redis://h:65535/"},
        {"node-id", "a"},
        {"node-id", "A-z_0.9:x"},
        {"redis-prefix", "x"},
        {"log-level", "error"},
        {"log-level", "warn"},
        {"log-level", "info"},
        {"log-level", "debug"},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char flag[64];
        snprintf(flag, sizeof(flag), "--%s", good[i][0]);
        struct config c;
        int rc = parse(&c, "--auth", "none", flag, good[i][1], NULL);
        ck_assert_msg(rc == 0, "%s %s gave %d: %s", flag, good[i][1], rc, err_buf);
        config_free(&c);
    }
}
END_TEST

static const char *bad_values[][2] = {
    {"heartbeat-timeout", "0"},
    {"heartbeat-timeout", "86401"},
    {"heartbeat-timeout", "-1"},
    {"heartbeat-timeout", "abc"},
    {"heartbeat-timeout", ""},
    {"heartbeat-timeout", "5x"},
    {"heartbeat-timeout", "1.5"},
    {"heartbeat-timeout", "0x10"},
    {"heartbeat-timeout", " 5"},
    {"heartbeat-timeout", "+5"},
    {"heartbeat-timeout", "5 "},
    {"heartbeat-timeout", "\t5"},
    {"heartbeat-timeout", "99999999999999999999999"},
    {"heartbeat-check", "0"},
    {"heartbeat-check", "86401"},
    {"input-batch-ms", "-1"},
    {"input-batch-ms", "1001"},
    {"input-batch-ms", "10ms"},
    {"presence-ttl", "2"},
    {"presence-ttl", "86401"},
    {"max-connections", "-1"},
    {"max-connections", "2147483648"},
    {"max-connections-per-account", "-1"},
    {"max-connections-per-account", "many"},
    {"max-message-bytes", "15"},
    {"max-message-bytes", "16777217"},
    {"drain-seconds", "-1"},
    {"drain-seconds", "3601"},
    {"max-queue-messages", "0"},
    {"max-queue-messages", "16777217"},
    {"max-queue-bytes", "1023"},
    {"max-queue-bytes", "2147483648"},
    {"listen", ""},
    {"listen", "8080"},
    {"listen", ":8080"},
    {"listen", "host:"},
    {"listen", "host:0"},
    {"listen", "host:65536"},
    {"listen", "host:-1"},
    {"listen", "host:http"},
    {"listen", "host:80x"},
    {"listen", "host: 80"},
    {"listen", "host:+80"},
    {"listen", "host:80 "},
    {"redis", ""},
    {"redis", "127.0.0.1:6379"},
    {"redis", "http://h:1"},
    {"redis", "rediss://h:1"},
    {"redis", "redis://h"},
    {"redis", "redis://:6379"},
    {"redis", "redis://h:0"},
    {"redis", "redis://h:65536"},
    {"redis", "redis://h:abc"},
    {"redis", "redis://h:1/x"},
    {"redis", "redis://h:1/-1"},
    {"redis", "redis://userpw@h:1"},
    {"redis-prefix", ""},
    {"redis-prefix", "a{b"},
    {"redis-prefix", "a}"},
    {"node-id", ""},
    {"node-id", "has space"},
    {"node-id", "a/b"},
    {"node-id", "a{b}"},
    {"auth", ""},
    {"auth", "basic"},
    {"auth", "JWT"},
    {"auth", "None"},
    {"api-key", ""},
    {"log-level", ""},
    {"log-level", "verbose"},
    {"log-level", "INFO"},
    {"log-level", "warning"},
};

#define N_BAD (sizeof(bad_values) / sizeof(bad_values[0]))

START_TEST(bad_flag_value)
{
    const char *name = bad_values[_i][0], *value = bad_values[_i][1];
    char flag[64];
    snprintf(flag, sizeof(flag), "--%s", name);
    struct config c;
    /* the separate-argument form */
    int rc = parse(&c, "--auth", "none", flag, value, NULL);
    ck_assert_msg(rc == 2, "%s '%s' gave %d", flag, value, rc);
    assert_error_names(name);
    config_free(&c);
    /* the --flag=value form (--auth=... comes last so it wins over "none") */
    char eq[256];
    snprintf(eq, sizeof(eq), "--%s=%s", name, value);
    rc = parse(&c, "--auth", "none", eq, NULL);
    ck_assert_msg(rc == 2, "%s gave %d", eq, rc);
    assert_error_names(name);
    config_free(&c);
}
END_TEST

START_TEST(bad_env_value)
{
    const char *name = bad_values[_i][0], *value = bad_values[_i][1];
    char env[64] = "NOTIFY_";
    size_t n = strlen(env);
    for (const char *p = name; *p; p++)
        env[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    env[n] = '\0';
    setenv(env, value, 1);
    if (strcmp(name, "auth") != 0)
        setenv("NOTIFY_AUTH", "none", 1);
    struct config c;
    int rc = parse(&c, NULL);
    ck_assert_msg(rc == 2, "%s='%s' gave %d", env, value, rc);
    assert_error_names(name);
    config_free(&c);
}
END_TEST

START_TEST(node_id_too_long)
{
    char id[130];
    memset(id, 'n', sizeof(id) - 1);
    id[129] = '\0';
    struct config c;
    ck_assert_int_eq(parse(&c, "--auth", "none", "--node-id", id, NULL), 2);
    assert_error_names("node-id");
    config_free(&c);
    id[128] = '\0';
    ck_assert_int_eq(parse(&c, "--auth", "none", "--node-id", id, NULL), 0);
    ck_assert_uint_eq(strlen(c.node_id), 128);
    config_free(&c);
}
END_TEST

START_TEST(listen_host_too_long)
{
    char listen[320];
    memset(listen, 'h', 256);
    snprintf(listen + 256, sizeof(listen) - 256, ":80");
    struct config c;
    ck_assert_int_eq(parse(&c, "--auth", "none", "--listen", listen, NULL), 2);
    assert_error_names("listen");
    config_free(&c);
    snprintf(listen + 255, sizeof(listen) - 255, ":80"); /* 255 bytes fit */
    ck_assert_int_eq(parse(&c, "--auth", "none", "--listen", listen, NULL), 0);
    ck_assert_uint_eq(strlen(c.listen_host), 255);
    config_free(&c);
}
END_TEST

START_TEST(unknown_and_malformed_arguments)
{
    struct config c;
    ck_assert_int_eq(parse(&c, "--auth", "none", "--no-such-flag", NULL), 2);
    assert_error_names("no-such-flag");
    config_free(&c);
    ck_assert_int_eq(parse(&c, "--auth", "none", "--no-such-flag=1", NULL), 2);
    assert_error_names("no-such-flag");
    config_free(&c);
    ck_assert_int_eq(parse(&c, "--auth", "none", "--listen-", "x", NULL), 2);
    config_free(&c);
    ck_assert_int_eq(parse(&c, "--auth", "none", "--LISTEN", "h:1", NULL), 2);
    config_free(&c);
    ck_assert_int_eq(parse(&c, "--auth", "none", "positional", NULL), 2);
    ck_assert_ptr_nonnull(strstr(err_buf, "positional"));
    config_free(&c);
    ck_assert_int_eq(parse(&c, "--auth", "none", "-listen", "h:1", NULL), 2);
    config_free(&c);
    ck_assert_int_eq(parse(&c, "--auth", "none", "--", NULL), 2);
    config_free(&c);
    ck_assert_int_eq(parse(&c, "--auth", "none", "", NULL), 2);
    config_free(&c);
    /* a flag that needs a value, last on the line */
    ck_assert_int_eq(parse(&c, "--auth", "none", "--listen", NULL), 2);
    assert_error_names("listen");
    config_free(&c);
    ck_assert_int_eq(parse(&c, "--auth", "none", "--heartbeat-timeout", NULL), 2);
    assert_error_names("heartbeat-timeout");
    config_free(&c);
}
END_TEST

START_TEST(help_and_version)
{
    struct config c;
    ck_assert_int_eq(parse(&c, "--help", NULL), 1);
    static const char *flags[] = {"--listen",
                                  "--redis",
                                  "--redis-prefix",
                                  "--node-id",
                                  "--auth",
                                  "--jwt-secret",
                                  "--jwt-public-key",
                                  "--api-key",
                                  "--heartbeat-timeout",
                                  "--heartbeat-check",
                                  "--input-batch-ms",
                                  "--presence-ttl",
                                  "--max-connections",
                                  "--max-connections-per-account",
                                  "--max-message-bytes",
                                  "--allowed-origins",
                                  "--reuse-port",
                                  "--drain-seconds",
                                  "--log-level",
                                  "NOTIFY_LISTEN",
                                  "NOTIFY_MAX_CONNECTIONS_PER_ACCOUNT",
                                  "NOTIFY_REDIS_PREFIX",
                                  "0.0.0.0:8080",
                                  "redis://127.0.0.1:6379/0",
                                  "notify:",
                                  "4096"};
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        ck_assert_msg(strstr(out_buf, flags[i]) != NULL, "--help does not list %s", flags[i]);
    ck_assert_str_eq(err_buf, "");
    config_free(&c);
    /* --help wins even when the rest would be an error */
    ck_assert_int_eq(parse(&c, "-h", NULL), 1);
    ck_assert_ptr_nonnull(strstr(out_buf, "--listen"));
    config_free(&c);
    ck_assert_int_eq(parse(&c, "--version", NULL), 1);
    ck_assert_ptr_nonnull(strstr(out_buf, PROG));
    ck_assert_ptr_nonnull(strstr(out_buf, NOTIFY_VERSION));
    config_free(&c);
}
END_TEST

START_TEST(usage_to_any_stream)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    ck_assert_ptr_nonnull(f);
    config_usage(f, "prog");
    fclose(f);
    ck_assert_ptr_nonnull(strstr(buf, "usage: prog"));
    ck_assert_ptr_nonnull(strstr(buf, "NOTIFY_HEARTBEAT_TIMEOUT"));
    free(buf);
}
END_TEST

START_TEST(free_is_idempotent)
{
    struct config c;
    ck_assert_int_eq(parse(&c, "--auth", "none", "--api-key", "k", NULL), 0);
    config_free(&c);
    ck_assert_ptr_null(c.listen);
    ck_assert_ptr_null(c.api_key);
    ck_assert_ptr_null(c.node_id);
    config_free(&c);
}
END_TEST

/* What the daemon checks after config_parse (the key file) is reported in
 * the same one line. */
START_TEST(bad_flag_after_parse)
{
    FILE *err = tmpfile();
    ck_assert_ptr_nonnull(err);
    fflush(stderr);
    int saved = dup(2);
    ck_assert_int_ge(saved, 0);
    dup2(fileno(err), 2);
    int rc = config_bad_flag(PROG, "jwt-public-key", "not a PEM public key", "/etc/k.pem");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    read_back(err, err_buf, sizeof(err_buf));
    ck_assert_int_eq(rc, 2);
    assert_error_names("jwt-public-key");
    ck_assert_str_eq(err_buf, PROG ": --jwt-public-key: not a PEM public key (got '/etc/k.pem')\n");
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, clear_env, NULL);
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, default_node_id_follows_listen_port);
    tcase_add_test(tc, jwt_is_default_and_needs_a_key);
    tcase_add_test(tc, jwt_with_secret);
    tcase_add_test(tc, jwt_with_public_key);
    tcase_add_test(tc, empty_jwt_secret_rejected);
    tcase_add_test(tc, every_flag_by_value);
    tcase_add_test(tc, equals_form);
    tcase_add_test(tc, value_may_start_with_dashes);
    tcase_add_test(tc, bool_flags);
    tcase_add_test(tc, bool_flags_bad);
    tcase_add_test(tc, env_applies);
    tcase_add_test(tc, flag_beats_env);
    tcase_add_test(tc, later_flag_wins);
    tcase_add_test(tc, bounds_accepted);
    tcase_add_loop_test(tc, bad_flag_value, 0, (int)N_BAD);
    tcase_add_loop_test(tc, bad_env_value, 0, (int)N_BAD);
    tcase_add_test(tc, node_id_too_long);
    tcase_add_test(tc, listen_host_too_long);
    tcase_add_test(tc, unknown_and_malformed_arguments);
    tcase_add_test(tc, help_and_version);
    tcase_add_test(tc, usage_to_any_stream);
    tcase_add_test(tc, free_is_idempotent);
    tcase_add_test(tc, bad_flag_after_parse);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
