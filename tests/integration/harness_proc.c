/* harness: temp dirs, the registry of started processes, child processes (harness.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"
#include "harness_int.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

void hi_print_tail(const char *what, const char *path)
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
            hi_print_tail(what, err);
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
