#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jwt.h>
#include <openssl/evp.h>

#include "wsclient.h"
#include "wsframe.h"

#ifndef GATEWAY_BIN
#define GATEWAY_BIN "notify-gateway"
#endif
#ifndef REDIS_SERVER_BIN
#define REDIS_SERVER_BIN "redis-server"
#endif

extern char **environ;

/* ---- misc --------------------------------------------------------------- */

long long h_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long h_unix_s(void)
{
    return (long long)time(NULL);
}

long long h_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void h_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

int h_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof(a);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &alen) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

char *h_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    size_t got;
    while (s && (got = fread(s + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            char *t = realloc(s, cap * 2);
            if (!t) {
                free(s);
                s = NULL;
                break;
            }
            s = t;
            cap *= 2;
        }
    }
    fclose(f);
    if (s)
        s[n] = '\0';
    return s;
}

int h_count(const char *hay, const char *needle)
{
    int n = 0;
    size_t nl = strlen(needle);
    for (const char *p = strstr(hay, needle); p; p = strstr(p + nl, needle))
        n++;
    return n;
}

/* ---- temp dirs and the registry of started processes --------------------
 *
 * Check (fork mode) ends a failed test with _exit() in the forked child: no
 * atexit handler and no teardown runs there, and Check kills the child's
 * process group. So every temp dir lives under one root made by the process
 * that loads this library (before Check forks), and that process removes
 * the root at exit. A dir still present then belongs to a test that did
 * not clean up (a failed one): its process's stderr tail is printed first
 * when the dir holds a "label" file. */

#define REG_MAX 64

struct reg_entry {
    int used;
    pid_t owner;          /* process that started it (Check forks) */
    pid_t pid;            /* child, 0 once reaped */
    char dir[H_PATH_MAX]; /* its temp dir */
};

static struct reg_entry reg[REG_MAX];
static int reg_atexit_done;
static char root_dir[H_PATH_MAX]; /* "" when it could not be made */
static pid_t root_owner;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_tree(const char *dir)
{
    if (dir[0] && !getenv("H_KEEP_TMP"))
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void print_tail(const char *what, const char *path)
{
    char *s = h_read_file(path);
    if (!s)
        return;
    size_t n = strlen(s);
    const char *start = s;
    int lines = 0;
    for (size_t i = n; i > 0; i--)
        if (s[i - 1] == '\n' && ++lines > 40) {
            start = s + i;
            break;
        }
    fprintf(stderr, "---- %s\n---- stderr (%s), last lines:\n%s---- end ----\n", what, path, start);
    free(s);
}

static void root_cleanup_at_exit(void)
{
    if (getpid() != root_owner || !root_dir[0])
        return;
    DIR *d = opendir(root_dir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char label[2 * H_PATH_MAX], err[2 * H_PATH_MAX];
        snprintf(label, sizeof(label), "%.200s/%.200s/label", root_dir, de->d_name);
        snprintf(err, sizeof(err), "%.200s/%.200s/stderr", root_dir, de->d_name);
        char *what = h_read_file(label);
        if (what) {
            print_tail(what, err);
            free(what);
        }
    }
    if (d)
        closedir(d);
    rm_tree(root_dir);
}

__attribute__((constructor)) static void h_init(void)
{
    snprintf(root_dir, sizeof(root_dir), "/tmp/notifytest.XXXXXX");
    if (!mkdtemp(root_dir)) {
        root_dir[0] = '\0';
        return;
    }
    root_owner = getpid();
    atexit(root_cleanup_at_exit);
}

/* Kills what this process started and still runs (a normal exit, or a
 * failure outside fork mode). */
static void reg_cleanup_at_exit(void)
{
    for (int i = 0; i < REG_MAX; i++) {
        struct reg_entry *e = &reg[i];
        if (!e->used || e->owner != getpid())
            continue;
        if (e->pid > 0) {
            kill(e->pid, SIGKILL);
            waitpid(e->pid, NULL, 0);
        }
        e->used = 0;
    }
}

static struct reg_entry *reg_add(pid_t pid, const char *dir)
{
    if (!reg_atexit_done) {
        atexit(reg_cleanup_at_exit);
        reg_atexit_done = 1;
    }
    for (int i = 0; i < REG_MAX; i++) {
        struct reg_entry *e = &reg[i];
        /* slots of a parent process (before a fork) are not ours to reuse */
        if (e->used)
            continue;
        memset(e, 0, sizeof(*e));
        e->used = 1;
        e->owner = getpid();
        e->pid = pid;
        snprintf(e->dir, sizeof(e->dir), "%s", dir);
        return e;
    }
    return NULL;
}

static struct reg_entry *reg_find_dir(const char *dir)
{
    for (int i = 0; i < REG_MAX; i++)
        if (reg[i].used && reg[i].owner == getpid() && !strcmp(reg[i].dir, dir))
            return &reg[i];
    return NULL;
}

static int make_dir(char *out)
{
    if (root_dir[0])
        snprintf(out, H_PATH_MAX, "%.200s/d.XXXXXX", root_dir);
    else
        snprintf(out, H_PATH_MAX, "/tmp/notifytest.XXXXXX");
    return mkdtemp(out) ? 0 : -1;
}

int h_tmpdir(char *out)
{
    return make_dir(out);
}

/* ---- child processes ---------------------------------------------------- */

int h_proc_spawn(struct h_proc *p, const char *const *argv, const char *const *env)
{
    memset(p, 0, sizeof(*p));
    if (make_dir(p->dir) != 0)
        return -1;
    snprintf(p->out_path, sizeof(p->out_path), "%.200s/stdout", p->dir);
    snprintf(p->err_path, sizeof(p->err_path), "%.200s/stderr", p->dir);
    int out = open(p->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int err = open(p->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0 || err < 0) {
        if (out >= 0)
            close(out);
        if (err >= 0)
            close(err);
        rm_tree(p->dir);
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        /* child: clean environment, std streams, default signals */
        for (;;) {
            char *found = NULL;
            for (char **e = environ; *e; e++)
                if (!strncmp(*e, "NOTIFY_", 7)) {
                    found = *e;
                    break;
                }
            if (!found)
                break;
            char name[256];
            size_t n = strcspn(found, "=");
            snprintf(name, sizeof(name), "%.*s", (int)n, found);
            unsetenv(name);
        }
        for (const char *const *e = env; e && *e; e++)
            putenv((char *)*e);
        int in = open("/dev/null", O_RDONLY);
        dup2(in, 0);
        dup2(out, 1);
        dup2(err, 2);
        if (chdir(p->dir) != 0)
            _exit(126);
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(out);
    close(err);
    if (pid < 0) {
        rm_tree(p->dir);
        return -1;
    }
    p->pid = pid;
    reg_add(pid, p->dir);
    return 0;
}

static void proc_reaped(struct h_proc *p, int st)
{
    p->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    struct reg_entry *e = reg_find_dir(p->dir);
    if (e)
        e->pid = 0;
    p->pid = 0;
}

int h_proc_running(struct h_proc *p)
{
    if (p->pid <= 0)
        return 0;
    int st;
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == p->pid) {
        proc_reaped(p, st);
        return 0;
    }
    return 1;
}

int h_proc_wait(struct h_proc *p, int timeout_ms)
{
    long long deadline = h_mono_ms() + timeout_ms;
    for (;;) {
        if (!h_proc_running(p))
            return p->status;
        if (h_mono_ms() >= deadline)
            return -1;
        h_sleep_ms(10);
    }
}

int h_proc_signal(struct h_proc *p, int sig)
{
    if (!h_proc_running(p))
        return -1;
    return kill(p->pid, sig);
}

void h_proc_kill(struct h_proc *p)
{
    if (!h_proc_running(p))
        return;
    kill(p->pid, SIGKILL);
    int st;
    if (waitpid(p->pid, &st, 0) == p->pid)
        proc_reaped(p, st);
}

void h_proc_cleanup(struct h_proc *p)
{
    h_proc_kill(p);
    if (!p->dir[0])
        return;
    struct reg_entry *e = reg_find_dir(p->dir);
    if (e)
        e->used = 0;
    rm_tree(p->dir);
    p->dir[0] = '\0';
}

static char *read_or_empty(const char *path)
{
    char *s = h_read_file(path);
    return s ? s : strdup("");
}

char *h_proc_stdout(const struct h_proc *p)
{
    return read_or_empty(p->out_path);
}

char *h_proc_stderr(const struct h_proc *p)
{
    return read_or_empty(p->err_path);
}

int h_run(const char *const *argv, const char *const *env, int timeout_ms, char **out, char **err)
{
    struct h_proc p;
    if (h_proc_spawn(&p, argv, env) != 0)
        return -1;
    int st = h_proc_wait(&p, timeout_ms);
    if (st < 0)
        h_proc_kill(&p);
    if (out)
        *out = h_proc_stdout(&p);
    if (err)
        *err = h_proc_stderr(&p);
    h_proc_cleanup(&p);
    return st;
}

long h_proc_rss_kb(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    char *s = h_read_file(path);
    if (!s)
        return -1;
    long kb = -1;
    const char *l = strstr(s, "\nVmRSS:");
    if (l)
        kb = strtol(l + 7, NULL, 10);
    free(s);
    return kb;
}

int h_proc_has_asan(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    char *s = h_read_file(path);
    int yes = s && strstr(s, "libasan") != NULL;
    free(s);
    return yes;
}

/* ---- redis-server ------------------------------------------------------- */

static redisContext *redis_connect(int port)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    struct timeval rtv = {5, 0};
    redisSetTimeout(c, rtv);
    return c;
}

/* Starts redis-server on port; 0 once it answers PING, -1 if it died or
 * did not answer within 5 s (then cleaned up). */
static int redis_spawn(struct h_redis *r, int port)
{
    char ports[16];
    snprintf(ports, sizeof(ports), "%d", port);
    const char *argv[] = {
        REDIS_SERVER_BIN, "--port", ports,   "--bind", "127.0.0.1",   "--save", "",
        "--appendonly",   "no",     "--dir", ".",      "--daemonize", "no",     NULL};
    if (h_proc_spawn(&r->proc, argv, NULL) != 0)
        return -1;
    r->port = port;
    long long deadline = h_mono_ms() + 5000;
    while (h_mono_ms() < deadline && h_proc_running(&r->proc)) {
        redisContext *c = redis_connect(port);
        if (c) {
            redisReply *rep = redisCommand(c, "PING");
            int ok = rep && rep->type == REDIS_REPLY_STATUS && !strcmp(rep->str, "PONG");
            if (rep)
                freeReplyObject(rep);
            redisFree(c);
            if (ok)
                return 0;
        }
        h_sleep_ms(20);
    }
    h_proc_cleanup(&r->proc);
    return -1;
}

int h_redis_start(struct h_redis *r)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        int port = h_free_port();
        if (port < 0)
            return -1;
        if (redis_spawn(r, port) == 0)
            return 0;
        /* port taken meanwhile, or too slow: retry with another */
    }
    return -1;
}

int h_redis_restart(struct h_redis *r)
{
    int port = r->port;
    h_proc_cleanup(&r->proc);
    /* the old socket may linger for a moment: retry for a while */
    for (int attempt = 0; attempt < 10; attempt++) {
        if (redis_spawn(r, port) == 0)
            return 0;
        h_sleep_ms(200);
    }
    return -1;
}

void h_redis_stop(struct h_redis *r)
{
    h_proc_cleanup(&r->proc);
}

void h_redis_url(const struct h_redis *r, char *buf, size_t size)
{
    snprintf(buf, size, "redis://127.0.0.1:%d/0", r->port);
}

static redisReply *redis_vcmd(const struct h_redis *r, const char *fmt, va_list ap)
{
    redisContext *c = redis_connect(r->port);
    if (!c)
        return NULL;
    redisReply *rep = redisvCommand(c, fmt, ap);
    redisFree(c);
    return rep;
}

redisReply *h_redis_cmd(const struct h_redis *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redis_vcmd(r, fmt, ap);
    va_end(ap);
    return rep;
}

redisReply *h_redis_cmd_auth(int port, const char *user, const char *pass, const char *fmt, ...)
{
    redisContext *c = redis_connect(port);
    if (!c)
        return NULL;
    if (pass) {
        redisReply *a =
            user ? redisCommand(c, "AUTH %s %s", user, pass) : redisCommand(c, "AUTH %s", pass);
        int ok = a && a->type == REDIS_REPLY_STATUS;
        if (a)
            freeReplyObject(a);
        if (!ok) {
            redisFree(c);
            return NULL;
        }
    }
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return rep;
}

long long h_redis_int(const struct h_redis *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redis_vcmd(r, fmt, ap);
    va_end(ap);
    long long v = (rep && rep->type == REDIS_REPLY_INTEGER) ? rep->integer : -1;
    if (rep)
        freeReplyObject(rep);
    return v;
}

long long h_redis_publish(const struct h_redis *r, const char *channel, const char *payload,
                          size_t len)
{
    return h_redis_int(r, "PUBLISH %s %b", channel, payload, len);
}

long long h_redis_numsub(const struct h_redis *r, const char *channel)
{
    redisReply *rep = h_redis_cmd(r, "PUBSUB NUMSUB %s", channel);
    long long v = -1;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[1]->type == REDIS_REPLY_INTEGER)
        v = rep->element[1]->integer;
    if (rep)
        freeReplyObject(rep);
    return v;
}

long long h_redis_wait_numsub(const struct h_redis *r, const char *channel, long long want,
                              int timeout_ms)
{
    long long deadline = h_mono_ms() + timeout_ms, v;
    for (;;) {
        v = h_redis_numsub(r, channel);
        if (v == want || h_mono_ms() >= deadline)
            return v;
        h_sleep_ms(50);
    }
}

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
        print_tail(died ? "gateway died during startup" : "gateway not healthy in 10 s",
                   g->proc.err_path);
        h_proc_cleanup(&g->proc);
        if (!died)
            return -1;
    }
    return -1;
}

/* h_gw_start with the args of a NULL-terminated variadic list. */
static int gw_vstart(struct h_gw *g, const struct h_redis *r, va_list ap)
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
    int rc = gw_vstart(g, r, ap);
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

/* ---- sockets ------------------------------------------------------------ */

static int remaining(long long deadline)
{
    long long r = deadline - h_mono_ms();
    return r < 0 ? 0 : (int)r;
}

/* Non-blocking TCP connection to 127.0.0.1:port, or -1. */
static int tcp_connect(int port, long long deadline)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        if (errno != EINPROGRESS)
            goto fail;
        struct pollfd pfd = {fd, POLLOUT, 0};
        if (poll(&pfd, 1, remaining(deadline)) != 1)
            goto fail;
        int soerr = 0;
        socklen_t l = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l) != 0 || soerr != 0)
            goto fail;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
fail:
    close(fd);
    return -1;
}

static int write_all(int fd, const void *buf, size_t len, long long deadline)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        struct pollfd pfd = {fd, POLLOUT, 0};
        if (poll(&pfd, 1, remaining(deadline)) != 1)
            return -1;
    }
    return 0;
}

/* Reads what is available (waiting until deadline): bytes read, 0 on EOF,
 * -1 on error, -2 on timeout. */
static ssize_t read_some(int fd, void *buf, size_t cap, long long deadline)
{
    for (;;) {
        ssize_t n = recv(fd, buf, cap, 0);
        if (n >= 0)
            return n;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        struct pollfd pfd = {fd, POLLIN, 0};
        int pr = poll(&pfd, 1, remaining(deadline));
        if (pr == 0)
            return -2;
        if (pr < 0 && errno != EINTR)
            return -1;
    }
}

int h_tcp_connect(int port, int timeout_ms)
{
    return tcp_connect(port, h_mono_ms() + timeout_ms);
}

int h_send_all(int fd, const void *buf, size_t len, int timeout_ms)
{
    return write_all(fd, buf, len, h_mono_ms() + timeout_ms);
}

int h_read_until_closed(int fd, int timeout_ms, char *keep, size_t cap, size_t *got)
{
    long long deadline = h_mono_ms() + timeout_ms;
    size_t kept = 0;
    char buf[16384];
    int closed = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            closed = 1;
            break;
        }
        if (n > 0) {
            if (keep && kept < cap) {
                size_t k = (size_t)n < cap - kept ? (size_t)n : cap - kept;
                memcpy(keep + kept, buf, k);
                kept += k;
            }
            continue;
        }
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, remaining(deadline)) == 0)
            break;
    }
    if (got)
        *got = kept;
    return closed;
}

/* A growable byte buffer. */
struct bytes {
    char *p;
    size_t len, cap;
};

static int bytes_reserve(struct bytes *b, size_t more)
{
    if (b->len + more + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int bytes_append(struct bytes *b, const void *data, size_t n)
{
    if (bytes_reserve(b, n) != 0)
        return -1;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

/* Reads from fd into b until it holds "\r\n\r\n"; returns the offset just
 * past it, or -1. */
static long read_headers(int fd, struct bytes *b, long long deadline)
{
    for (;;) {
        if (b->p) {
            char *end = memmem(b->p, b->len, "\r\n\r\n", 4);
            if (end)
                return end - b->p + 4;
        }
        if (bytes_reserve(b, 4096) != 0)
            return -1;
        ssize_t n = read_some(fd, b->p + b->len, 4096, deadline);
        if (n <= 0)
            return -1;
        b->len += (size_t)n;
        b->p[b->len] = '\0';
    }
}

/* Status code of "HTTP/1.x NNN ...", or -1. */
static int parse_status(const char *head)
{
    int code;
    if (strncmp(head, "HTTP/1.", 7) != 0 || sscanf(head + 8, " %d", &code) != 1)
        return -1;
    return code;
}

/* Copies the value of header name (case-insensitive) into out; 1 if found. */
static int header_value(const char *head, const char *name, char *out, size_t size)
{
    size_t nl = strlen(name);
    for (const char *line = strstr(head, "\r\n"); line; line = strstr(line, "\r\n")) {
        line += 2;
        if (!strncasecmp(line, name, nl) && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t vl = strcspn(v, "\r\n");
            while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                vl--;
            snprintf(out, size, "%.*s", (int)vl, v);
            return 1;
        }
    }
    return 0;
}

/* Decodes a chunked body: 1 when complete (out filled), 0 when more input
 * is needed, -1 when malformed. */
static int dechunk(const char *in, size_t n, struct bytes *out)
{
    size_t i = 0;
    out->len = 0;
    for (;;) {
        const char *eol = memmem(in + i, n - i, "\r\n", 2);
        if (!eol)
            return 0;
        char *end;
        unsigned long size = strtoul(in + i, &end, 16);
        if (end == in + i)
            return -1;
        i = (size_t)(eol - in) + 2;
        if (size == 0)
            return 1; /* trailers ignored */
        if (n - i < size + 2)
            return 0;
        if (bytes_append(out, in + i, size) != 0)
            return -1;
        i += size + 2;
    }
}

/* Reads the body after the headers at b->p[0..hlen): by Content-Length,
 * chunked, or until EOF. Fills *body. Returns 0, or -1. */
static int read_body(int fd, struct bytes *b, long hlen, struct bytes *body, long long deadline)
{
    char v[64];
    long clen = -1;
    int chunked = 0;
    if (header_value(b->p, "Content-Length", v, sizeof(v)))
        clen = strtol(v, NULL, 10);
    if (header_value(b->p, "Transfer-Encoding", v, sizeof(v)) && strcasestr(v, "chunked"))
        chunked = 1;
    for (;;) {
        size_t have = b->len - (size_t)hlen;
        if (chunked) {
            int d = dechunk(b->p + hlen, have, body);
            if (d < 0)
                return -1;
            if (d == 1)
                return 0;
        } else if (clen >= 0 && have >= (size_t)clen) {
            body->len = 0;
            return bytes_append(body, b->p + hlen, (size_t)clen);
        }
        if (bytes_reserve(b, 4096) != 0)
            return -1;
        ssize_t n = read_some(fd, b->p + b->len, 4096, deadline);
        if (n == 0 && !chunked && clen < 0) { /* body ends with the connection */
            body->len = 0;
            return bytes_append(body, b->p + hlen, have);
        }
        if (n <= 0)
            return -1;
        b->len += (size_t)n;
        b->p[b->len] = '\0';
    }
}

/* ---- HTTP --------------------------------------------------------------- */

int h_http(int port, const char *method, const char *path, const char *headers, const char *body,
           size_t body_len, struct h_http_resp *resp, int timeout_ms)
{
    memset(resp, 0, sizeof(*resp));
    resp->status = -1;
    long long deadline = h_mono_ms() + timeout_ms;
    int fd = tcp_connect(port, deadline);
    if (fd < 0)
        return -1;
    char req[8192];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n%s", method,
                     path, port, headers ? headers : "");
    if (body)
        n += snprintf(req + n, sizeof(req) - (size_t)n, "Content-Length: %zu\r\n", body_len);
    n += snprintf(req + n, sizeof(req) - (size_t)n, "\r\n");
    struct bytes b = {0}, out = {0};
    int rc = -1;
    if (n >= (int)sizeof(req) || write_all(fd, req, (size_t)n, deadline) != 0 ||
        (body && write_all(fd, body, body_len, deadline) != 0))
        goto done;
    long hlen = read_headers(fd, &b, deadline);
    if (hlen < 0)
        goto done;
    int status = parse_status(b.p);
    if (status < 0)
        goto done;
    if (strcmp(method, "HEAD") != 0 && status != 204 && status != 304 &&
        read_body(fd, &b, hlen, &out, deadline) != 0)
        goto done;
    if (!out.p && bytes_append(&out, "", 0) != 0)
        goto done;
    resp->status = status;
    resp->headers = strndup(b.p, (size_t)hlen);
    resp->body = out.p;
    resp->body_len = out.len;
    out.p = NULL;
    rc = status;
done:
    close(fd);
    free(b.p);
    free(out.p);
    return rc;
}

void h_http_resp_free(struct h_http_resp *resp)
{
    free(resp->headers);
    free(resp->body);
    resp->headers = resp->body = NULL;
}

long h_read_http_head(int fd, int timeout_ms, char **out, size_t *len)
{
    struct bytes b = {0};
    long hlen = read_headers(fd, &b, h_mono_ms() + timeout_ms);
    if (hlen < 0) {
        free(b.p);
        *out = NULL;
        *len = 0;
        return -1;
    }
    *out = b.p;
    *len = b.len;
    return hlen;
}

int h_http_header(const char *head, const char *name, char *out, size_t size)
{
    return header_value(head, name, out, size);
}

int h_http_get(int port, const char *path, char **body)
{
    struct h_http_resp r;
    int st = h_http(port, "GET", path, NULL, NULL, 0, &r, 3000);
    if (body) {
        *body = r.body;
        r.body = NULL;
    }
    h_http_resp_free(&r);
    return st;
}

int h_http_wait_status(int port, const char *path, int want, int timeout_ms)
{
    long long deadline = h_mono_ms() + timeout_ms;
    for (;;) {
        if (h_http_get(port, path, NULL) == want)
            return 1;
        if (h_mono_ms() >= deadline)
            return 0;
        h_sleep_ms(50);
    }
}

double h_metric_sum(const char *text, const char *name)
{
    size_t nl = strlen(name);
    double sum = 0;
    int found = 0;
    for (const char *line = text; line && *line;
         line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        if (strncmp(line, name, nl) != 0 || (line[nl] != ' ' && line[nl] != '{'))
            continue;
        const char *v = line + nl;
        if (*v == '{') {
            /* skip labels; values may contain '}' only inside quotes */
            int quoted = 0;
            for (v++; *v && *v != '\n'; v++) {
                if (*v == '\\' && quoted && v[1])
                    v++;
                else if (*v == '"')
                    quoted = !quoted;
                else if (*v == '}' && !quoted)
                    break;
            }
            if (*v != '}')
                continue;
            v++;
        }
        char *end;
        double d = strtod(v, &end);
        if (end == v)
            continue;
        sum += d;
        found = 1;
    }
    return found ? sum : -1;
}

/* ---- WebSocket client --------------------------------------------------- */

static void random_bytes(void *buf, size_t n)
{
    if (getrandom(buf, n, 0) != (ssize_t)n) {
        unsigned char *p = buf;
        for (size_t i = 0; i < n; i++)
            p[i] = (unsigned char)rand();
    }
}

int ws_connect(struct ws *c, int port, const char *path, const char *headers, int timeout_ms)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->status = -1;
    c->auto_pong = 1;
    long long deadline = h_mono_ms() + timeout_ms;
    int fd = tcp_connect(port, deadline);
    if (fd < 0)
        return -1;
    unsigned char raw[16];
    char key[32], expect[32], got[128];
    random_bytes(raw, sizeof(raw));
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
    wsframe_accept_key(key, strlen(key), expect);
    char req[8192];
    int n = wsclient_request(req, sizeof(req), "127.0.0.1", port, path, key, headers);
    struct bytes b = {0};
    if (n < 0 || write_all(fd, req, (size_t)n, deadline) != 0)
        goto fail;
    long hlen = read_headers(fd, &b, deadline);
    if (hlen < 0)
        goto fail;
    int status = parse_status(b.p);
    if (status < 0)
        goto fail;
    c->status = status;
    if (status != 101) {
        struct bytes body = {0};
        /* best effort: the body only helps diagnose a refusal */
        if (read_body(fd, &b, hlen, &body, h_mono_ms() + 500) == 0)
            c->http_body = body.p;
        else
            free(body.p);
        close(fd);
        free(b.p);
        return status;
    }
    if (!header_value(b.p, "Sec-WebSocket-Accept", got, sizeof(got)) || strcmp(got, expect)) {
        fprintf(stderr, "ws_connect: bad Sec-WebSocket-Accept '%s' (want '%s')\n", got, expect);
        goto fail;
    }
    /* keep bytes that followed the headers (the first frames, maybe) */
    c->fd = fd;
    c->len = b.len - (size_t)hlen;
    c->cap = b.cap;
    memmove(b.p, b.p + hlen, c->len);
    c->buf = (unsigned char *)b.p;
    return 101;
fail:
    close(fd);
    free(b.p);
    c->status = -1;
    return -1;
}

int ws_adopt(struct ws *c, int fd, const void *pending, size_t len)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->auto_pong = 1;
    size_t cap = len + 8192;
    c->buf = malloc(cap);
    if (!c->buf)
        return -1;
    if (len)
        memcpy(c->buf, pending, len);
    c->len = len;
    c->cap = cap;
    c->fd = fd;
    c->status = 101;
    return 0;
}

int ws_send(struct ws *c, int opcode, const void *data, size_t len)
{
    return ws_send_frame(c, 1, opcode, data, len);
}

unsigned char *ws_frame_encode(int b0, int masked, const void *data, size_t len, size_t *out_len)
{
    uint8_t mask[4];
    if (masked)
        random_bytes(mask, 4);
    size_t n = wsclient_frame_len(len, masked);
    unsigned char *frame = malloc(n);
    if (!frame)
        return NULL;
    *out_len = wsclient_frame(frame, n, b0, masked ? mask : NULL, data, len);
    return frame;
}

int ws_send_raw_frame(struct ws *c, int b0, int masked, const void *data, size_t len)
{
    if (c->fd < 0)
        return -1;
    size_t n;
    unsigned char *frame = ws_frame_encode(b0, masked, data, len, &n);
    if (!frame)
        return -1;
    int rc = write_all(c->fd, frame, n, h_mono_ms() + 5000);
    free(frame);
    if ((b0 & 0x0f) == WS_CLOSE && rc == 0)
        c->sent_close = 1;
    return rc;
}

int ws_send_frame(struct ws *c, int fin, int opcode, const void *data, size_t len)
{
    return ws_send_raw_frame(c, (fin ? 0x80 : 0) | (opcode & 0x0f), 1, data, len);
}

int ws_send_text(struct ws *c, const char *text)
{
    return ws_send(c, WS_TEXT, text, strlen(text));
}

/* Parses one frame from c->buf. Returns 1 (fields set, bytes consumed), 0
 * when incomplete, -1 when malformed. */
static int parse_frame(struct ws *c, int *fin, int *opcode, char **data, size_t *len)
{
    struct wsclient_frame f;
    if (!wsclient_frame_parse(c->buf, c->len, &f))
        return 0;
    if (f.payload_len > (64u << 20))
        return -1;
    size_t h = f.header_len, plen = (size_t)f.payload_len;
    if (c->len < h + plen)
        return 0;
    char *p = malloc(plen + 1);
    if (!p)
        return -1;
    /* A server must not mask; this client reads it anyway, the tests of
     * what the gateway sends check the bytes themselves. */
    for (size_t i = 0; i < plen; i++)
        p[i] = (char)(c->buf[h + i] ^ (f.masked ? f.mask[i & 3] : 0));
    p[plen] = '\0';
    *fin = f.fin;
    *opcode = f.opcode;
    *data = p;
    *len = plen;
    c->len -= h + plen;
    memmove(c->buf, c->buf + h + plen, c->len);
    return 1;
}

int ws_recv(struct ws *c, struct ws_msg *m, int timeout_ms)
{
    memset(m, 0, sizeof(*m));
    long long deadline = h_mono_ms() + timeout_ms;
    for (;;) {
        int fin, op;
        char *data;
        size_t len;
        int pr = parse_frame(c, &fin, &op, &data, &len);
        if (pr < 0)
            return WS_ERROR;
        if (pr == 1) {
            if (op == WS_PING) {
                c->pings++;
                if (c->auto_pong) {
                    ws_send(c, WS_PONG, data, len);
                    free(data);
                    continue;
                }
            }
            if (op >= 8) {
                m->opcode = op;
                m->data = data;
                m->len = len;
                if (op == WS_CLOSE) {
                    m->close_code = wsclient_close_code(data, len);
                    if (len >= 2) {
                        memmove(data, data + 2, len - 2);
                        m->len = len - 2;
                        data[m->len] = '\0';
                    }
                    c->close_code = m->close_code;
                    if (!c->sent_close) {
                        unsigned char echo[2] = {(unsigned char)(m->close_code >> 8),
                                                 (unsigned char)m->close_code};
                        ws_send(c, WS_CLOSE, echo, m->close_code == 1005 ? 0 : 2);
                    }
                }
                return op;
            }
            /* data frame, maybe a fragment */
            if (op != 0) {
                free(c->frag);
                c->frag = NULL;
                c->frag_len = 0;
                c->frag_op = op;
            }
            char *nf = realloc(c->frag, c->frag_len + len + 1);
            if (!nf) {
                free(data);
                return WS_ERROR;
            }
            memcpy(nf + c->frag_len, data, len);
            c->frag = nf;
            c->frag_len += len;
            c->frag[c->frag_len] = '\0';
            free(data);
            if (!fin)
                continue;
            m->opcode = c->frag_op;
            m->data = c->frag;
            m->len = c->frag_len;
            c->frag = NULL;
            c->frag_len = 0;
            return m->opcode;
        }
        if (c->fd < 0)
            return WS_ERROR;
        if (c->cap - c->len < 4096) {
            size_t cap = c->cap ? c->cap * 2 : 8192;
            unsigned char *nb = realloc(c->buf, cap);
            if (!nb)
                return WS_ERROR;
            c->buf = nb;
            c->cap = cap;
        }
        ssize_t n = read_some(c->fd, c->buf + c->len, c->cap - c->len, deadline);
        if (n == -2)
            return WS_TIMEOUT;
        if (n <= 0) {
            c->eof = 1;
            return WS_ERROR;
        }
        c->len += (size_t)n;
    }
}

void ws_msg_free(struct ws_msg *m)
{
    free(m->data);
    m->data = NULL;
}

char *ws_recv_text(struct ws *c, int timeout_ms)
{
    long long deadline = h_mono_ms() + timeout_ms;
    for (;;) {
        struct ws_msg m;
        int op = ws_recv(c, &m, remaining(deadline));
        if (op == WS_TEXT)
            return m.data;
        ws_msg_free(&m);
        if (op != WS_PING && op != WS_PONG && op != WS_BINARY)
            return NULL;
    }
}

int ws_wait_close(struct ws *c, int timeout_ms)
{
    long long deadline = h_mono_ms() + timeout_ms;
    for (;;) {
        struct ws_msg m;
        int op = ws_recv(c, &m, remaining(deadline));
        ws_msg_free(&m);
        if (op == WS_CLOSE)
            return c->close_code;
        if (op == WS_TIMEOUT)
            return 0;
        if (op == WS_ERROR)
            return -1;
    }
}

void ws_close(struct ws *c, int code)
{
    if (c->fd >= 0) {
        if (!c->sent_close && !c->close_code && !c->eof) {
            unsigned char p[2] = {(unsigned char)(code >> 8), (unsigned char)code};
            ws_send(c, WS_CLOSE, p, 2);
        }
        close(c->fd);
        c->fd = -1;
    }
    free(c->buf);
    free(c->frag);
    free(c->http_body);
    c->buf = NULL;
    c->frag = NULL;
    c->http_body = NULL;
    c->len = c->cap = c->frag_len = 0;
}

void ws_drop(struct ws *c)
{
    if (c->fd >= 0) {
        struct linger l = {1, 0}; /* RST instead of FIN */
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
        close(c->fd);
        c->fd = -1;
    }
    c->sent_close = 1;
    ws_close(c, 1000);
}

/* ---- JWT ---------------------------------------------------------------- */

char *h_jwt_hs256(const char *secret, const char *sub, long long exp)
{
    jwt_t *jwt = NULL;
    if (jwt_new(&jwt) != 0)
        return NULL;
    char *out = NULL;
    if (sub && jwt_add_grant(jwt, "sub", sub) != 0)
        goto done;
    if (exp != 0 && jwt_add_grant_int(jwt, "exp", (long)exp) != 0)
        goto done;
    if (jwt_add_grant_int(jwt, "iat", (long)h_unix_s()) != 0)
        goto done;
    int rc =
        secret ? jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret))
               : jwt_set_alg(jwt, JWT_ALG_NONE, NULL, 0);
    if (rc != 0)
        goto done;
    out = jwt_encode_str(jwt);
done:
    jwt_free(jwt);
    return out;
}

/* ---- Check tests -------------------------------------------------------- */

void h_ck_setup(struct h_redis *r, struct h_gw *g)
{
    memset(g, 0, sizeof(*g));
    ck_assert_msg(h_redis_start(r) == 0, "cannot start redis-server");
}

void h_ck_teardown(struct h_redis *r, struct h_gw *g)
{
    int alive = h_proc_running(&g->proc);
    /* Under a wrapper (valgrind) the gateway is stopped cleanly, so that
     * the wrapper gets to write its report; otherwise SIGKILL is enough. */
    if (alive && getenv("NOTIFY_TEST_WRAPPER") && g->proc.pid) {
        h_proc_signal(&g->proc, SIGTERM);
        h_proc_wait(&g->proc, 60000);
    }
    char *log = g->proc.dir[0] ? h_gw_stderr(g) : NULL;
    h_proc_cleanup(&g->proc);
    h_redis_stop(r);
    if (log) {
        ck_assert_msg(!strstr(log, "AddressSanitizer") && !strstr(log, "runtime error:"),
                      "sanitizer report in the gateway's stderr");
        free(log);
    }
    if (g->must_survive)
        ck_assert_msg(alive, "the gateway died during the test");
}

void h_ck_gw_startl(struct h_gw *g, const struct h_redis *r, ...)
{
    va_list ap;
    va_start(ap, r);
    int rc = gw_vstart(g, r, ap);
    va_end(ap);
    ck_assert_msg(rc == 0, "gateway did not start");
    g->must_survive = 1;
}

json_t *h_ck_json_obj(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    ck_assert_msg(j && json_is_object(j), "not a JSON object: %s", text);
    return j;
}

const char *h_jstr(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

double h_ck_metric(int port, const char *name)
{
    char *body = NULL;
    int st = h_http_get(port, "/metrics", &body);
    ck_assert_int_eq(st, 200);
    double v = h_metric_sum(body, name);
    free(body);
    return v;
}

char *h_ck_ws_open(struct ws *c, int port, const char *path, int timeout_ms)
{
    int st = ws_connect(c, port, path, NULL, 5000);
    ck_assert_msg(st == 101, "upgrade %s on port %d answered %d", path, port, st);
    char *text = ws_recv_text(c, timeout_ms);
    ck_assert_msg(text != NULL, "%s: no register reply", path);
    json_t *j = h_ck_json_obj(text);
    const char *type = h_jstr(j, "type");
    ck_assert_msg(type && !strcmp(type, "register"), "%s: first message %s", path, text);
    const char *id = h_jstr(json_object_get(j, "content"), "body");
    char *out = id ? strdup(id) : NULL;
    json_decref(j);
    free(text);
    return out;
}

TCase *h_tcase(Suite *s, const char *name, double timeout_s, void (*setup)(void),
               void (*teardown)(void))
{
    TCase *tc = tcase_create(name);
    if (setup || teardown)
        tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, timeout_s);
    suite_add_tcase(s, tc);
    return tc;
}

int h_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
