/* harness: the notify-gateway daemon (harness.h). */
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
#include <unistd.h>

#ifndef GATEWAY_BIN
#define GATEWAY_BIN "notify-gateway"
#endif

/* ---- the gateway -------------------------------------------------------- */

/* Names the process in its dir, for the report of left-over dirs. */
static void write_label(const struct h_proc *p, const char *const *argv)
{
    char path[H_PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/label", p->dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return;
    fprintf(f, "left over (its test failed?):");
    for (const char *const *a = argv; *a; a++)
        fprintf(f, " %s", *a);
    fclose(f);
}

int h_gw_start(struct h_gw *g, const struct h_redis *r, const char *const *args)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        int port = h_free_port();
        if (port < 0)
            return -1;
        char listen[64], url[64], node[32];
        snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
        if (r)
            h_redis_url(r, url, sizeof(url));
        snprintf(node, sizeof(node), "it-%d", port);
        /* NOTIFY_TEST_WRAPPER (e.g. "valgrind --leak-check=full") runs the
         * gateway under another program: its words come first. */
        const char *argv[96];
        char wrapper[512];
        int n = 0;
        const char *w = getenv("NOTIFY_TEST_WRAPPER");
        snprintf(wrapper, sizeof(wrapper), "%s", w ? w : "");
        char *save = NULL;
        for (char *tok = strtok_r(wrapper, " ", &save); tok && n < 24;
             tok = strtok_r(NULL, " ", &save))
            argv[n++] = tok;
        const char *fixed[] = {GATEWAY_BIN, "--listen", listen,        "--redis", url,
                               "--node-id", node,       "--log-level", "debug"};
        for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
            if (r || (strcmp(fixed[i], "--redis") && fixed[i] != url))
                argv[n++] = fixed[i];
        /* NOTIFY_TEST_GATEWAY_FLAGS: more flags for every gateway of the
         * run (ctest runs test_core again with --io-uring=false). */
        char extra[256];
        const char *x = getenv("NOTIFY_TEST_GATEWAY_FLAGS");
        snprintf(extra, sizeof(extra), "%s", x ? x : "");
        save = NULL;
        for (char *tok = strtok_r(extra, " ", &save); tok && n < 60;
             tok = strtok_r(NULL, " ", &save))
            argv[n++] = tok;
        for (const char *const *a = args; a && *a && n < 95; a++)
            argv[n++] = *a;
        argv[n] = NULL;
        if (h_proc_spawn(&g->proc, argv, NULL) != 0)
            return -1;
        write_label(&g->proc, argv);
        g->port = port;
        long long deadline = h_mono_ms() + 10000;
        while (h_mono_ms() < deadline && h_proc_running(&g->proc)) {
            if (h_http_get(port, "/healthz", NULL) == 200)
                return 0;
            h_sleep_ms(30);
        }
        int died = !h_proc_running(&g->proc);
        h_proc_kill(&g->proc);
        hi_print_tail(died ? "gateway died during startup" : "gateway not healthy in 10 s",
                      g->proc.err_path);
        h_proc_cleanup(&g->proc);
        if (!died)
            return -1;
    }
    return -1;
}

/* h_gw_start with the args of a NULL-terminated variadic list. */
int hi_gw_vstart(struct h_gw *g, const struct h_redis *r, va_list ap)
{
    const char *args[64];
    int n = 0;
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < 63)
        args[n++] = a;
    args[n] = NULL;
    return h_gw_start(g, r, args);
}

int h_gw_startl(struct h_gw *g, const struct h_redis *r, ...)
{
    va_list ap;
    va_start(ap, r);
    int rc = hi_gw_vstart(g, r, ap);
    va_end(ap);
    return rc;
}

int h_gw_signal(struct h_gw *g, int sig)
{
    return h_proc_signal(&g->proc, sig);
}

int h_gw_wait(struct h_gw *g, int timeout_ms)
{
    return h_proc_wait(&g->proc, timeout_ms);
}

void h_gw_kill(struct h_gw *g)
{
    h_proc_kill(&g->proc);
}

char *h_gw_stderr(const struct h_gw *g)
{
    return h_proc_stderr(&g->proc);
}

int h_gw_stop(struct h_gw *g, int timeout_ms)
{
    int st = -1;
    if (h_proc_running(&g->proc)) {
        h_proc_signal(&g->proc, SIGTERM);
        st = h_proc_wait(&g->proc, timeout_ms);
    } else if (g->proc.dir[0]) {
        st = g->proc.status;
    }
    h_proc_cleanup(&g->proc);
    return st;
}

int h_gw_run(const char *const *args, const char *const *env, int timeout_ms, char **err)
{
    const char *argv[64] = {GATEWAY_BIN};
    int n = 1;
    for (const char *const *a = args; a && *a && n < 63; a++)
        argv[n++] = *a;
    argv[n] = NULL;
    return h_run(argv, env, timeout_ms, NULL, err);
}

const char *h_chan(const char *account)
{
    static char buf[300];
    snprintf(buf, sizeof(buf), "notify:acct:{%s}", account);
    return buf;
}

char *h_envelope(const char *type, const char *body)
{
    json_t *j =
        json_pack("{s:s,s:{s:s,s:s}}", "type", type, "content", "body", body, "meta_data", "");
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}
