/* bench: load generator and measuring instrument for notify-gateway (and for
 * the reference forwarder, run the same way).
 *
 * One parent process publishes through Redis (its own hiredis connection) and
 * measures the server (/proc/<pid>/stat, /proc/<pid>/status, Redis INFO
 * commandstats); --procs worker processes hold the WebSocket connections,
 * each a single epoll loop with its own minimal client framing. Workers and
 * parent share one anonymous mapping: live counters and latency histograms.
 *
 *   bench SCENARIO [flags]       scenarios: idle unicast unicast-max broadcast
 *                                connect-storm reconnect-storm
 *
 * Every published body is "<kind> <CLOCK_MONOTONIC ns> <seq>": kind u is a
 * per-account sequence (each connection of the account expects 0,1,2...),
 * kind b a global broadcast sequence. A number lower than expected counts as
 * a duplicate; lost = expected - (delivered - duplicates).
 *
 * With --redis-cluster the parent reads the slot map once (CLUSTER SLOTS),
 * keeps one publisher connection per primary and SPUBLISHes each message to
 * the owner of its channel's slot; it also reports each primary's CPU (INFO
 * cpu) over the measured interval. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <jwt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "keyslot.h"

#define MAXPROCS 64
#define MAXNODES 64
#define MAXPIDS 16
#define HBUCKETS 4608

/* ---------------------------------------------------------------- options */

static struct {
    const char *scenario;
    char host[64];
    int port;
    char rhost[128];
    int rport;
    const char *cluster; /* --redis-cluster seeds, NULL = one Redis */
    const char *prefix;
    int jwt;
    const char *secret;
    long conns, accounts;
    int procs;
    double hb;       /* heartbeat interval, s (0 = none) */
    double rate;     /* publishes per second */
    double duration; /* measured seconds */
    double warmup;   /* seconds before measuring (unicast-max) */
    long window;     /* unicast-max: deliveries in flight */
    int count;       /* broadcast rounds */
    int burst;       /* broadcasts per round */
    double interval; /* s between broadcast rounds */
    int cycles;      /* reconnect-storm cycles */
    int inflight;    /* connects in flight per process */
    int msg_size;    /* approximate envelope bytes */
    int ready_on_upgrade;
    int src_ips;
    const char *label;
    pid_t spid[MAXPIDS];
    int nspid;
    double settle;
    double connect_timeout;
} O = {
    .host = "127.0.0.1",
    .port = 8080,
    .rhost = "127.0.0.1",
    .rport = 6379,
    .prefix = "notify:",
    .jwt = 1,
    .conns = 1000,
    .accounts = 0,
    .procs = 1,
    .hb = 10,
    .rate = 20000,
    .duration = 10,
    .warmup = 2,
    .window = 4096,
    .count = 10,
    .burst = 1,
    .interval = 1,
    .cycles = 3,
    .inflight = 512,
    .msg_size = 160,
    .src_ips = 200,
    .label = "server",
    .settle = 2,
    .connect_timeout = 60,
};

/* ------------------------------------------------------------- histogram */

struct hist {
    uint64_t n, sum_us, max_us;
    uint64_t b[HBUCKETS];
};

static unsigned hidx(uint64_t us)
{
    if (us < 256)
        return (unsigned)us;
    unsigned e = 63u - (unsigned)__builtin_clzll(us); /* >= 8 */
    unsigned m = (unsigned)(us >> (e - 7)) & 127u;
    unsigned i = 256u + (e - 8u) * 128u + m;
    return i < HBUCKETS ? i : HBUCKETS - 1;
}

static uint64_t hval(unsigned i)
{
    if (i < 256)
        return i;
    unsigned e = (i - 256u) / 128u + 8u, m = (i - 256u) % 128u;
    return (uint64_t)(128u + m) << (e - 7u);
}

static void hadd(struct hist *h, uint64_t ns)
{
    uint64_t us = ns / 1000;
    h->b[hidx(us)]++;
    h->n++;
    h->sum_us += us;
    if (us > h->max_us)
        h->max_us = us;
}

static void hmerge(struct hist *d, const struct hist *s)
{
    d->n += s->n;
    d->sum_us += s->sum_us;
    if (s->max_us > d->max_us)
        d->max_us = s->max_us;
    for (unsigned i = 0; i < HBUCKETS; i++)
        d->b[i] += s->b[i];
}

static double hpct(const struct hist *h, double p)
{
    if (!h->n)
        return 0;
    uint64_t want = (uint64_t)ceil(p / 100.0 * (double)h->n), acc = 0;
    if (want == 0)
        want = 1;
    for (unsigned i = 0; i < HBUCKETS; i++) {
        acc += h->b[i];
        if (acc >= want) {
            uint64_t v = hval(i);
            return (double)(v > h->max_us ? h->max_us : v) / 1000.0;
        }
    }
    return (double)h->max_us / 1000.0;
}

/* ---------------------------------------------------------- shared memory */

enum { PH_INIT, PH_CONNECT, PH_HOLD, PH_RECONNECT, PH_STOP };

struct wshm {
    uint64_t established, failed, dropped, ready_last_ns, connect_done;
    uint64_t delivered, dup, delivered_b, dup_b, hb_replies, pings, errors, other;
    uint64_t last_rx_ns, cycle_done, cpu_us, http_fail, close_codes[8];
    struct hist lat, conn_lat;
};

struct shm {
    int phase, cycle;
    uint64_t t0;
    struct wshm w[MAXPROCS];
};

static struct shm *S;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int ld(const int *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static uint64_t ld64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}
static void st64(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}
static void inc64(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

static long acct_conns(long a)
{
    return O.conns / O.accounts + (a < O.conns % O.accounts ? 1 : 0);
}

/* ----------------------------------------------------------------- worker */

enum { C_FREE, C_CONNECTING, C_HTTP, C_WAITREG, C_READY, C_DEAD };

struct conn {
    int fd;
    uint8_t st;
    uint32_t g; /* global index */
    uint64_t t_start;
    uint64_t next_u, next_b;
    char *buf; /* unparsed bytes carried between reads */
    uint32_t blen;
    char *frag; /* text message being reassembled */
    uint32_t fraglen;
};

static struct conn *C;
static long NC; /* connections of this worker */
static int W;   /* worker index */
static int EP;
static char **TOK; /* per account, this worker's only */
static long pending, opened, nready;
static struct wshm *ME;
static char RBUF[1 << 17];

static char *mint(long a)
{
    char sub[32];
    snprintf(sub, sizeof sub, "u%ld", a);
    jwt_t *j = NULL;
    if (jwt_new(&j))
        return NULL;
    jwt_add_grant(j, "sub", sub);
    jwt_add_grant_int(j, "exp", (long)time(NULL) + 24 * 3600);
    jwt_set_alg(j, JWT_ALG_HS256, (const unsigned char *)O.secret, (int)strlen(O.secret));
    char *s = jwt_encode_str(j);
    jwt_free(j);
    return s;
}

static void cfail(struct conn *c, int http)
{
    if (c->fd >= 0) {
        epoll_ctl(EP, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    free(c->buf);
    free(c->frag);
    c->buf = c->frag = NULL;
    c->blen = c->fraglen = 0;
    if (c->st == C_READY) {
        inc64(&ME->dropped, 1);
        nready--;
    } else if (c->st != C_DEAD && c->st != C_FREE) {
        inc64(&ME->failed, 1);
        if (http)
            inc64(&ME->http_fail, 1);
        pending--;
    }
    c->st = C_DEAD;
}

static void copen(struct conn *c)
{
    c->t_start = now_ns();
    c->st = C_CONNECTING;
    pending++;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        c->fd = -1;
        cfail(c, 0);
        return;
    }
    c->fd = fd;
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)(2 + c->g % (uint32_t)O.src_ips));
    if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
        cfail(c, 0);
        return;
    }
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)O.port)};
    inet_pton(AF_INET, O.host, &dst.sin_addr);
    if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) {
        cfail(c, 0);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    epoll_ctl(EP, EPOLL_CTL_ADD, fd, &ev);
}

static void csend_frame(struct conn *c, int op, const char *p, size_t n)
{
    unsigned char f[256];
    if (n > 125)
        n = 125;
    uint32_t mk = (uint32_t)rand();
    f[0] = (unsigned char)(0x80 | op);
    f[1] = (unsigned char)(0x80 | n);
    memcpy(f + 2, &mk, 4);
    for (size_t i = 0; i < n; i++)
        f[6 + i] = (unsigned char)p[i] ^ f[2 + (i & 3)];
    ssize_t r = send(c->fd, f, 6 + n, MSG_NOSIGNAL);
    if (r != (ssize_t)(6 + n))
        inc64(&ME->errors, 1);
}

static void set_ready(struct conn *c)
{
    uint64_t t = now_ns();
    c->st = C_READY;
    pending--;
    nready++;
    inc64(&ME->established, 1);
    hadd(&ME->conn_lat, t - c->t_start);
    st64(&ME->ready_last_ns, t);
}

static void on_text(struct conn *c, const char *m, size_t n)
{
    const char *b = memmem(m, n, "\"body\":\"", 8);
    if (b && b + 10 < m + n && (b[8] == 'u' || b[8] == 'b') && b[9] == ' ') {
        char *e;
        uint64_t ts = strtoull(b + 10, &e, 10);
        uint64_t k = strtoull(e, NULL, 10);
        uint64_t t = now_ns();
        hadd(&ME->lat, t > ts ? t - ts : 0);
        st64(&ME->last_rx_ns, t);
        uint64_t *next = b[8] == 'u' ? &c->next_u : &c->next_b;
        if (b[8] == 'u')
            inc64(&ME->delivered, 1);
        else
            inc64(&ME->delivered_b, 1);
        if (k < *next)
            inc64(b[8] == 'u' ? &ME->dup : &ME->dup_b, 1);
        else
            *next = k + 1;
        return;
    }
    const char *ty = memmem(m, n, "\"type\":\"", 8);
    if (ty && (size_t)(m + n - ty) > 16 && !memcmp(ty + 8, "register", 8)) {
        if (c->st == C_WAITREG)
            set_ready(c);
        return;
    }
    if (ty && (size_t)(m + n - ty) > 17 && !memcmp(ty + 8, "heartbeat", 9)) {
        inc64(&ME->hb_replies, 1);
        return;
    }
    inc64(&ME->other, 1);
}

/* Parses frames in p[0..n); returns bytes consumed or -1 to close. */
static long parse_frames(struct conn *c, char *p, size_t n)
{
    size_t off = 0;
    while (n - off >= 2) {
        unsigned char *h = (unsigned char *)p + off;
        size_t len = h[1] & 127, hl = 2;
        if (len == 126) {
            if (n - off < 4)
                break;
            len = (size_t)h[2] << 8 | h[3], hl = 4;
        } else if (len == 127) {
            if (n - off < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | h[2 + i];
            hl = 10;
        }
        if (h[1] & 0x80)
            return -1; /* servers never mask */
        if (n - off < hl + len)
            break;
        int op = h[0] & 15, fin = h[0] & 0x80;
        char *d = p + off + hl;
        off += hl + len;
        if (op == 9) {
            inc64(&ME->pings, 1);
            csend_frame(c, 10, d, len);
        } else if (op == 8) {
            int code = len >= 2 ? ((unsigned char)d[0] << 8 | (unsigned char)d[1]) : 0;
            int slot = code == 1000   ? 0
                       : code == 1001 ? 1
                       : code == 1008 ? 2
                       : code == 1011 ? 3
                       : code == 1013 ? 4
                       : code == 4408 ? 5
                       : code == 4401 ? 6
                                      : 7;
            inc64(&ME->close_codes[slot], 1);
            return -1;
        } else if (op == 1 || op == 0) {
            if (op == 1 && fin && !c->frag) {
                on_text(c, d, len);
            } else {
                c->frag = realloc(c->frag, c->fraglen + len + 1);
                memcpy(c->frag + c->fraglen, d, len);
                c->fraglen += (uint32_t)len;
                if (fin) {
                    on_text(c, c->frag, c->fraglen);
                    free(c->frag);
                    c->frag = NULL;
                    c->fraglen = 0;
                }
            }
        }
    }
    return (long)off;
}

static void on_readable(struct conn *c)
{
    for (int rounds = 0; rounds < 4; rounds++) {
        size_t have = c->blen;
        char *p = RBUF;
        if (have > sizeof RBUF / 2) { /* a large carried frame: grow privately */
            c->buf = realloc(c->buf, have + 65536);
            ssize_t r = recv(c->fd, c->buf + have, 65536, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN)) {
                cfail(c, 0);
                return;
            }
            if (r < 0)
                return;
            have += (size_t)r;
            p = c->buf;
        } else {
            if (have)
                memcpy(RBUF, c->buf, have);
            ssize_t r = recv(c->fd, RBUF + have, sizeof RBUF - have - 1, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN)) {
                cfail(c, 0);
                return;
            }
            if (r < 0)
                return;
            have += (size_t)r;
        }
        size_t off = 0;
        if (c->st == C_HTTP) {
            p[have] = 0;
            char *e = memmem(p, have, "\r\n\r\n", 4);
            if (!e) {
                if (have > 8192) {
                    cfail(c, 1);
                    return;
                }
                goto keep;
            }
            if (strncmp(p, "HTTP/1.1 101", 12) != 0) {
                cfail(c, 1);
                return;
            }
            off = (size_t)(e + 4 - p);
            if (O.ready_on_upgrade)
                set_ready(c);
            else
                c->st = C_WAITREG;
        }
        {
            long k = parse_frames(c, p + off, have - off);
            if (k < 0) {
                cfail(c, 0);
                return;
            }
            off += (size_t)k;
        }
    keep:
        if (off == have) {
            free(c->buf);
            c->buf = NULL;
            c->blen = 0;
        } else {
            size_t rest = have - off;
            if (p == c->buf) {
                memmove(c->buf, c->buf + off, rest);
            } else {
                char *nb = realloc(c->buf, rest + 1);
                memcpy(nb, p + off, rest);
                c->buf = nb;
            }
            c->blen = (uint32_t)rest;
        }
        if (have < sizeof RBUF / 4)
            return; /* drained */
    }
}

static void on_writable(struct conn *c)
{
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
        cfail(c, 0);
        return;
    }
    long a = (long)(c->g % (uint32_t)O.accounts);
    char req[2048];
    int n;
    if (O.jwt)
        n = snprintf(req, sizeof req,
                     "GET /ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nAuthorization: Bearer %s\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     O.host, O.port, TOK[a]);
    else
        n = snprintf(req, sizeof req,
                     "GET /ws?user_id=u%ld HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     a, O.host, O.port);
    if (send(c->fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        cfail(c, 0);
        return;
    }
    c->st = C_HTTP;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(EP, EPOLL_CTL_MOD, c->fd, &ev);
}

static void open_more(void)
{
    while (opened < NC && pending < O.inflight)
        copen(&C[opened++]);
}

static void worker(int w)
{
    W = w;
    ME = &S->w[w];
    srand((unsigned)(getpid() ^ (unsigned)now_ns()));
    NC = O.conns / O.procs + (w < O.conns % O.procs ? 1 : 0);
    C = calloc((size_t)NC, sizeof *C);
    for (long i = 0; i < NC; i++) {
        C[i].g = (uint32_t)(w + i * O.procs);
        C[i].fd = -1;
    }
    if (O.jwt) {
        TOK = calloc((size_t)O.accounts, sizeof *TOK);
        for (long i = 0; i < NC; i++) {
            long a = (long)(C[i].g % (uint32_t)O.accounts);
            if (!TOK[a] && !(TOK[a] = mint(a))) {
                fprintf(stderr, "bench: jwt minting failed\n");
                _exit(1);
            }
        }
    }
    EP = epoll_create1(EPOLL_CLOEXEC);
    while (ld(&S->phase) == PH_INIT)
        usleep(200);
    struct epoll_event evs[1024];
    int cycle = 0;
    uint64_t hb_t0 = now_ns(), hb_sent = 0;
    for (;;) {
        int ph = ld(&S->phase);
        if (ph == PH_STOP)
            break;
        if (ph == PH_RECONNECT && ld(&S->cycle) != cycle) {
            cycle = ld(&S->cycle);
            /* Drop every connection at once, then reconnect them all. */
            for (long i = 0; i < NC; i++) {
                struct conn *c = &C[i];
                if (c->fd >= 0) {
                    epoll_ctl(EP, EPOLL_CTL_DEL, c->fd, NULL);
                    close(c->fd);
                }
                free(c->buf);
                free(c->frag);
                memset(c, 0, sizeof *c);
                c->g = (uint32_t)(w + i * O.procs);
                c->fd = -1;
            }
            st64(&ME->established, 0);
            st64(&ME->connect_done, 0);
            opened = pending = nready = 0;
        }
        open_more();
        if (opened == NC && pending == 0 && !ld64(&ME->connect_done)) {
            if (ph == PH_RECONNECT)
                st64(&ME->cycle_done, (uint64_t)cycle);
            st64(&ME->connect_done, 1);
        }
        /* Timed-out handshakes count as failures. */
        if (pending && (rand() & 63) == 0) {
            uint64_t t = now_ns();
            for (long i = 0; i < opened; i++)
                if (C[i].st >= C_CONNECTING && C[i].st <= C_WAITREG &&
                    t - C[i].t_start > (uint64_t)(O.connect_timeout * 1e9))
                    cfail(&C[i], 0);
        }
        /* Heartbeats, staggered evenly over the interval. */
        if (O.hb > 0 && NC > 0) {
            uint64_t t = now_ns();
            uint64_t due = (uint64_t)((double)(t - hb_t0) / (O.hb * 1e9) * (double)NC);
            while (hb_sent < due) {
                struct conn *c = &C[hb_sent % (uint64_t)NC];
                if (c->st == C_READY)
                    csend_frame(c, 1, "{\"type\":\"heartbeat\"}", 20);
                hb_sent++;
            }
        }
        int n = epoll_wait(EP, evs, 1024, 2);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->st == C_CONNECTING) {
                if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                    on_writable(c);
                continue;
            }
            if (c->fd >= 0)
                on_readable(c);
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    st64(&ME->cpu_us, (uint64_t)ru.ru_utime.tv_sec * 1000000u + (uint64_t)ru.ru_utime.tv_usec +
                          (uint64_t)ru.ru_stime.tv_sec * 1000000u + (uint64_t)ru.ru_stime.tv_usec);
    _exit(0);
}

/* ----------------------------------------------------------------- parent */

static redisContext *R;  /* one Redis; in a cluster the first primary's */
static uint64_t *PUBCNT; /* per account */
static uint64_t pub_total, expect_u, expect_b, bseq;
static char *PAD;

static void sum(struct wshm *t)
{
    memset(t, 0, sizeof *t);
    for (int i = 0; i < O.procs; i++) {
        struct wshm *w = &S->w[i];
        t->established += ld64(&w->established);
        t->failed += ld64(&w->failed);
        t->dropped += ld64(&w->dropped);
        t->http_fail += ld64(&w->http_fail);
        t->delivered += ld64(&w->delivered);
        t->dup += ld64(&w->dup);
        t->delivered_b += ld64(&w->delivered_b);
        t->dup_b += ld64(&w->dup_b);
        t->hb_replies += ld64(&w->hb_replies);
        t->pings += ld64(&w->pings);
        t->errors += ld64(&w->errors);
        t->other += ld64(&w->other);
        t->connect_done += ld64(&w->connect_done);
        t->cpu_us += ld64(&w->cpu_us);
        uint64_t r = ld64(&w->ready_last_ns), l = ld64(&w->last_rx_ns);
        if (r > t->ready_last_ns)
            t->ready_last_ns = r;
        if (l > t->last_rx_ns)
            t->last_rx_ns = l;
        for (int k = 0; k < 8; k++)
            t->close_codes[k] += ld64(&w->close_codes[k]);
    }
}

struct srvsample {
    double cpu_s; /* utime+stime of all server pids */
    long rss_kb;
    uint64_t t;
    double rcpu[MAXNODES];   /* --redis-cluster: used_cpu_sys+user of each primary */
    uint64_t rpub[MAXNODES]; /* messages published to each primary so far */
};

/* --redis-cluster: one publisher connection per primary and the owner of
 * every slot, read once from CLUSTER SLOTS. */
struct pnode {
    char host[64];
    int port;
    redisContext *c;
    long slots;
    int queued; /* appended commands whose replies are not read yet */
    uint64_t published, errors;
};
static struct pnode NODE[MAXNODES];
static int NNODE;
static int16_t SLOT[KEYSLOT_COUNT];

static int hostport(const char *s, char *host, size_t hl, int *port);

/* used_cpu_sys + used_cpu_user of a Redis (INFO cpu), s; -1 if unknown. */
static double redis_cpu(redisContext *c)
{
    redisReply *r = redisCommand(c, "INFO cpu");
    double v = -1;
    if (r && r->type == REDIS_REPLY_STRING) {
        const char *sys = strstr(r->str, "used_cpu_sys:"), *user = strstr(r->str, "used_cpu_user:");
        if (sys && user)
            v = atof(sys + 13) + atof(user + 14);
    }
    freeReplyObject(r);
    return v;
}

static int node_add(const char *host, int port)
{
    for (int i = 0; i < NNODE; i++)
        if (NODE[i].port == port && !strcmp(NODE[i].host, host))
            return i;
    if (NNODE == MAXNODES) {
        fprintf(stderr, "bench: more than %d primaries\n", MAXNODES);
        return -1;
    }
    struct pnode *n = &NODE[NNODE];
    if (snprintf(n->host, sizeof n->host, "%s", host) >= (int)sizeof n->host) {
        fprintf(stderr, "bench: host name too long: %s\n", host);
        return -1;
    }
    n->port = port;
    n->c = redisConnect(host, port);
    if (!n->c || n->c->err) {
        fprintf(stderr, "bench: redis %s:%d: %s\n", host, port, n->c ? n->c->errstr : "oom");
        return -1;
    }
    return NNODE++;
}

/* Reads the slot map from the first seed that answers and connects to every
 * primary in it. 0, or -1 (message printed). */
static int cluster_connect(void)
{
    char *seeds = strdup(O.cluster), *save = NULL, shost[128] = "";
    redisReply *r = NULL;
    for (char *tok = strtok_r(seeds, ",", &save); tok && !r; tok = strtok_r(NULL, ",", &save)) {
        int sport;
        if (!strncmp(tok, "redis://", 8))
            tok += 8;
        if (hostport(tok, shost, sizeof shost, &sport))
            continue;
        redisContext *c = redisConnect(shost, sport);
        if (c && !c->err)
            r = redisCommand(c, "CLUSTER SLOTS");
        redisFree(c);
        if (r && (r->type != REDIS_REPLY_ARRAY || !r->elements)) {
            fprintf(stderr, "bench: CLUSTER SLOTS on %s: %s\n", tok,
                    r->type == REDIS_REPLY_ERROR ? r->str : "no slots");
            freeReplyObject(r);
            r = NULL;
        }
    }
    free(seeds);
    if (!r) {
        fprintf(stderr, "bench: no seed of --redis-cluster answered CLUSTER SLOTS\n");
        return -1;
    }
    for (int s = 0; s < KEYSLOT_COUNT; s++)
        SLOT[s] = -1;
    int rc = 0;
    for (size_t i = 0; i < r->elements && !rc; i++) {
        redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2 ||
            e->element[2]->element[0]->type != REDIS_REPLY_STRING ||
            e->element[2]->element[1]->type != REDIS_REPLY_INTEGER)
            continue;
        long long lo = e->element[0]->integer, hi = e->element[1]->integer;
        const char *host = e->element[2]->element[0]->str;
        int idx = node_add(*host ? host : shost, (int)e->element[2]->element[1]->integer);
        if (idx < 0) {
            rc = -1;
            break;
        }
        for (long long s = lo < 0 ? 0 : lo; s <= hi && s < KEYSLOT_COUNT; s++) {
            SLOT[s] = (int16_t)idx;
            NODE[idx].slots++;
        }
    }
    freeReplyObject(r);
    for (int s = 0; s < KEYSLOT_COUNT && !rc; s++)
        if (SLOT[s] < 0) {
            fprintf(stderr, "bench: slot %d has no primary\n", s);
            rc = -1;
        }
    if (!rc)
        R = NODE[0].c;
    return rc;
}

/* Per primary over [a, b]: address, slots, what it carried and its CPU. */
static void report_redis(const struct srvsample *a, const struct srvsample *b)
{
    double secs = (double)(b->t - a->t) / 1e9, tot = 0, top = 0;
    uint64_t pubs = 0;
    printf("redis_primaries=%d\n", NNODE);
    for (int i = 0; i < NNODE; i++) {
        double cpu = b->rcpu[i] - a->rcpu[i];
        uint64_t pub = b->rpub[i] - a->rpub[i];
        printf("redis_primary%d=%s:%d\nredis_primary%d_slots=%ld\nredis_primary%d_published=%llu\n"
               "redis_primary%d_cpu_s=%.3f\nredis_primary%d_cpu_pct=%.1f\n",
               i + 1, NODE[i].host, NODE[i].port, i + 1, NODE[i].slots, i + 1,
               (unsigned long long)pub, i + 1, cpu, i + 1, secs > 0 ? cpu / secs * 100 : 0);
        if (pub)
            printf("redis_primary%d_cpu_per_msg_us=%.2f\n", i + 1, cpu * 1e6 / (double)pub);
        tot += cpu;
        pubs += pub;
        if (cpu > top)
            top = cpu;
    }
    printf("redis_cpu_s=%.3f\nredis_cpu_pct=%.1f\nredis_cpu_busiest_primary_pct=%.1f\n", tot,
           secs > 0 ? tot / secs * 100 : 0, secs > 0 ? top / secs * 100 : 0);
    if (pubs)
        printf("redis_cpu_per_msg_us=%.2f\n", tot * 1e6 / (double)pubs);
    uint64_t errs = 0;
    for (int i = 0; i < NNODE; i++)
        errs += NODE[i].errors;
    printf("publish_errors=%llu\n", (unsigned long long)errs);
}

static struct srvsample sample(void)
{
    struct srvsample s = {.t = now_ns()};
    long hz = sysconf(_SC_CLK_TCK);
    for (int i = 0; i < O.nspid; i++) {
        char path[64], buf[4096];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)O.spid[i]);
        FILE *f = fopen(path, "r");
        if (f) {
            size_t n = fread(buf, 1, sizeof buf - 1, f);
            buf[n] = 0;
            fclose(f);
            char *p = strrchr(buf, ')');
            unsigned long ut = 0, st = 0;
            if (p &&
                sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
                s.cpu_s += (double)(ut + st) / (double)hz;
        }
        snprintf(path, sizeof path, "/proc/%d/status", (int)O.spid[i]);
        f = fopen(path, "r");
        if (f) {
            while (fgets(buf, sizeof buf, f))
                if (!strncmp(buf, "VmRSS:", 6))
                    s.rss_kb += atol(buf + 6);
            fclose(f);
        }
    }
    for (int i = 0; O.cluster && i < NNODE; i++) {
        s.rcpu[i] = redis_cpu(NODE[i].c);
        s.rpub[i] = NODE[i].published;
    }
    return s;
}

static void sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* INFO commandstats: calls per command. */
#define MAXCMD 64
struct cmdstats {
    int n;
    char name[MAXCMD][32];
    uint64_t calls[MAXCMD];
};

/* Summed over every primary with --redis-cluster. */
static void cmdstats(struct cmdstats *cs)
{
    cs->n = 0;
    for (int i = 0; i < (O.cluster ? NNODE : 1); i++) {
        redisReply *r = redisCommand(O.cluster ? NODE[i].c : R, "INFO commandstats");
        if (!r)
            continue;
        if (r->type == REDIS_REPLY_STRING) {
            char *save, *line = strtok_r(r->str, "\r\n", &save);
            for (; line; line = strtok_r(NULL, "\r\n", &save)) {
                char nm[32];
                unsigned long long calls;
                if (sscanf(line, "cmdstat_%31[^:]:calls=%llu", nm, &calls) != 2)
                    continue;
                int k = 0;
                while (k < cs->n && strcmp(cs->name[k], nm))
                    k++;
                if (k == cs->n) {
                    if (cs->n == MAXCMD)
                        continue;
                    snprintf(cs->name[cs->n], sizeof cs->name[0], "%s", nm);
                    cs->calls[cs->n++] = 0;
                }
                cs->calls[k] += calls;
            }
        }
        freeReplyObject(r);
    }
}

static void print_cmdrates(const struct cmdstats *a, const struct cmdstats *b, double secs)
{
    for (int i = 0; i < b->n; i++) {
        uint64_t before = 0;
        for (int j = 0; j < a->n; j++)
            if (!strcmp(a->name[j], b->name[i]))
                before = a->calls[j];
        if (b->calls[i] > before && strcmp(b->name[i], "info"))
            printf("redis_%s_per_s=%.2f\n", b->name[i], (double)(b->calls[i] - before) / secs);
    }
}

static int pub_append(long a, int broadcast)
{
    char ch[256], msg[8192];
    uint64_t k = broadcast ? bseq++ : PUBCNT[a]++;
    if (broadcast)
        snprintf(ch, sizeof ch, "%sbroadcast", O.prefix);
    else
        snprintf(ch, sizeof ch, "%sacct:{u%ld}", O.prefix, a);
    int n = snprintf(
        msg, sizeof msg,
        "{\"type\":\"bench\",\"content\":{\"body\":\"%c %llu %llu\",\"meta_data\":\"%s\"}}",
        broadcast ? 'b' : 'u', (unsigned long long)now_ns(), (unsigned long long)k, PAD);
    if (broadcast)
        expect_b += 0; /* counted per round by the caller */
    else
        expect_u += (uint64_t)acct_conns(a);
    pub_total++;
    if (O.cluster) {
        struct pnode *nd = &NODE[SLOT[keyslot(ch, strlen(ch))]];
        nd->queued++;
        nd->published++;
        return redisAppendCommand(nd->c, "SPUBLISH %s %b", ch, msg, (size_t)n);
    }
    return redisAppendCommand(R, "PUBLISH %s %b", ch, msg, (size_t)n);
}

/* --redis-cluster: sends every primary its pipeline first (so they work in
 * parallel), then reads all replies. */
static int pub_flush_cluster(void)
{
    for (int i = 0; i < NNODE; i++) {
        int done = 0;
        while (NODE[i].queued && !done)
            if (redisBufferWrite(NODE[i].c, &done) != REDIS_OK) {
                fprintf(stderr, "bench: redis %s:%d: %s\n", NODE[i].host, NODE[i].port,
                        NODE[i].c->errstr);
                return -1;
            }
    }
    for (int i = 0; i < NNODE; i++)
        for (; NODE[i].queued; NODE[i].queued--) {
            redisReply *rep;
            if (redisGetReply(NODE[i].c, (void **)&rep) != REDIS_OK) {
                fprintf(stderr, "bench: redis %s:%d: %s\n", NODE[i].host, NODE[i].port,
                        NODE[i].c->errstr);
                return -1;
            }
            if (rep->type == REDIS_REPLY_ERROR && !NODE[i].errors++)
                fprintf(stderr, "bench: SPUBLISH on %s:%d: %s\n", NODE[i].host, NODE[i].port,
                        rep->str);
            freeReplyObject(rep);
        }
    return 0;
}

static int pub_flush(int n)
{
    if (O.cluster)
        return pub_flush_cluster();
    for (int i = 0; i < n; i++) {
        void *rep;
        if (redisGetReply(R, &rep) != REDIS_OK) {
            fprintf(stderr, "bench: redis: %s\n", R->errstr);
            return -1;
        }
        freeReplyObject(rep);
    }
    return 0;
}

static long pub_next_acct;

static int publish_unicast(int n)
{
    for (int i = 0; i < n; i++) {
        pub_append(pub_next_acct, 0);
        pub_next_acct = (pub_next_acct + 1) % O.accounts;
    }
    return pub_flush(n);
}

static void set_phase(int p)
{
    __atomic_store_n(&S->phase, p, __ATOMIC_RELEASE);
}

/* Waits until every worker finished connecting (or the timeout). */
static double wait_connected(uint64_t t0)
{
    struct wshm t;
    for (;;) {
        sum(&t);
        if ((int)t.connect_done >= O.procs)
            break;
        if ((double)(now_ns() - t0) / 1e9 > O.connect_timeout + 5) {
            fprintf(stderr, "bench: connect phase timed out\n");
            break;
        }
        usleep(1000);
    }
    sum(&t);
    return t.ready_last_ns > t0 ? (double)(t.ready_last_ns - t0) / 1e9 : 0;
}

/* Waits for deliveries to reach the expectation, or for no progress. */
static void drain(void)
{
    struct wshm t;
    uint64_t last = 0, tlast = now_ns();
    for (;;) {
        sum(&t);
        uint64_t got = t.delivered + t.delivered_b;
        if (t.delivered - t.dup >= expect_u && t.delivered_b - t.dup_b >= expect_b)
            break;
        if (got != last) {
            last = got;
            tlast = now_ns();
        } else if ((double)(now_ns() - tlast) / 1e9 > O.settle + 1) {
            break;
        }
        usleep(1000);
    }
}

static void report_common(const struct wshm *t, const struct srvsample *base,
                          const struct srvsample *conn)
{
    printf("connections=%ld\nestablished=%llu\nfailed=%llu\nhttp_failed=%llu\n", O.conns,
           (unsigned long long)t->established, (unsigned long long)t->failed,
           (unsigned long long)t->http_fail);
    printf("server_rss_empty_kb=%ld\nserver_rss_connected_kb=%ld\n", base->rss_kb, conn->rss_kb);
    if (t->established)
        printf("server_rss_per_conn_kb=%.3f\n",
               (double)(conn->rss_kb - base->rss_kb) / (double)t->established);
}

static void report_end(const struct wshm *t)
{
    static const char *names[8] = {"1000", "1001", "1008", "1011", "1013", "4408", "4401", "other"};
    printf("dropped_by_server=%llu\nheartbeat_replies=%llu\npings_answered=%llu\nsend_errors=%llu"
           "\nother_frames=%llu\n",
           (unsigned long long)t->dropped, (unsigned long long)t->hb_replies,
           (unsigned long long)t->pings, (unsigned long long)t->errors,
           (unsigned long long)t->other);
    for (int k = 0; k < 8; k++)
        if (t->close_codes[k])
            printf("close_%s=%llu\n", names[k], (unsigned long long)t->close_codes[k]);
}

static void report_lat(const char *pfx)
{
    struct hist *h = calloc(1, sizeof *h);
    for (int i = 0; i < O.procs; i++)
        hmerge(h, pfx[0] == 'c' ? &S->w[i].conn_lat : &S->w[i].lat);
    printf("%s_samples=%llu\n%s_p50_ms=%.3f\n%s_p99_ms=%.3f\n%s_p999_ms=%.3f\n%s_max_ms=%.3f\n"
           "%s_mean_ms=%.3f\n",
           pfx, (unsigned long long)h->n, pfx, hpct(h, 50), pfx, hpct(h, 99), pfx, hpct(h, 99.9),
           pfx, (double)h->max_us / 1000.0, pfx,
           h->n ? (double)h->sum_us / (double)h->n / 1000.0 : 0.0);
    free(h);
}

static void reset_lat(void)
{
    for (int i = 0; i < O.procs; i++)
        memset(&S->w[i].lat, 0, sizeof S->w[i].lat);
}

static void usage(int code)
{
    fprintf(code ? stderr : stdout,
            "usage: bench SCENARIO [flags]\n"
            "scenarios: idle | unicast | unicast-max | broadcast | connect-storm | "
            "reconnect-storm\n"
            "  --url HOST:PORT         server [127.0.0.1:8080]\n"
            "  --redis HOST:PORT       Redis for PUBLISH [127.0.0.1:6379]\n"
            "  --redis-cluster HOST:PORT[,...]  Redis Cluster seeds instead: SPUBLISH to the\n"
            "                          primary owning each channel's slot; per-primary CPU\n"
            "  --redis-prefix P        [notify:]\n"
            "  --auth jwt|none         [jwt]; jwt needs --jwt-secret\n"
            "  --jwt-secret S\n"
            "  --conns N               [1000]\n"
            "  --accounts A            [= conns]\n"
            "  --procs P               worker processes holding connections [1]\n"
            "  --heartbeat S           client heartbeat interval, 0 = off [10]\n"
            "  --rate R                unicast publishes/s [20000]\n"
            "  --duration S            measured time [10]\n"
            "  --warmup S              unicast-max: unmeasured start [2]\n"
            "  --window N              unicast-max: deliveries in flight [4096]\n"
            "  --count N --burst B --interval S   broadcast rounds [10 x 1, 1 s apart]\n"
            "  --cycles N              reconnect-storm rounds [3]\n"
            "  --inflight N            connects in flight per process [512]\n"
            "  --msg-size N            approximate envelope bytes [160]\n"
            "  --ready-on-upgrade      count a connection ready at 101 (servers without a "
            "register reply)\n"
            "  --src-ips N             source addresses 127.0.0.2.. [200]\n"
            "  --server-pid PID        measured server process (repeatable)\n"
            "  --label NAME            printed as target=NAME\n"
            "  --settle S              quiet time before measuring / draining [2]\n"
            "  --connect-timeout S     [60]\n"
            "Output: key=value lines.\n");
    exit(code);
}

static int hostport(const char *s, char *host, size_t hl, int *port)
{
    const char *c = strrchr(s, ':');
    if (!c || (size_t)(c - s) >= hl)
        return -1;
    memcpy(host, s, (size_t)(c - s));
    host[c - s] = 0;
    *port = atoi(c + 1);
    return *port > 0 ? 0 : -1;
}

static void parse(int argc, char **argv)
{
    static struct option lo[] = {{"url", 1, 0, 'u'},
                                 {"redis", 1, 0, 'r'},
                                 {"redis-cluster", 1, 0, 'K'},
                                 {"redis-prefix", 1, 0, 'x'},
                                 {"auth", 1, 0, 'a'},
                                 {"jwt-secret", 1, 0, 's'},
                                 {"conns", 1, 0, 'n'},
                                 {"accounts", 1, 0, 'A'},
                                 {"procs", 1, 0, 'P'},
                                 {"heartbeat", 1, 0, 'H'},
                                 {"rate", 1, 0, 'R'},
                                 {"duration", 1, 0, 'd'},
                                 {"warmup", 1, 0, 'w'},
                                 {"window", 1, 0, 'W'},
                                 {"count", 1, 0, 'c'},
                                 {"burst", 1, 0, 'b'},
                                 {"interval", 1, 0, 'i'},
                                 {"cycles", 1, 0, 'C'},
                                 {"inflight", 1, 0, 'I'},
                                 {"msg-size", 1, 0, 'm'},
                                 {"ready-on-upgrade", 0, 0, 'U'},
                                 {"src-ips", 1, 0, 'S'},
                                 {"server-pid", 1, 0, 'p'},
                                 {"label", 1, 0, 'l'},
                                 {"settle", 1, 0, 'e'},
                                 {"connect-timeout", 1, 0, 'T'},
                                 {"help", 0, 0, 'h'},
                                 {0, 0, 0, 0}};
    if (argc < 2)
        usage(2);
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
        usage(0);
    O.scenario = argv[1];
    optind = 2;
    int o, redis_given = 0;
    while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (o) {
        case 'u':
            if (hostport(optarg, O.host, sizeof O.host, &O.port))
                goto bad;
            break;
        case 'r':
            if (!strncmp(optarg, "redis://", 8))
                optarg += 8;
            if (hostport(optarg, O.rhost, sizeof O.rhost, &O.rport))
                goto bad;
            redis_given = 1;
            break;
        case 'K': {
            char h[128];
            int pt;
            const char *first = strncmp(optarg, "redis://", 8) ? optarg : optarg + 8;
            size_t fl = strcspn(first, ",");
            char one[256];
            snprintf(one, sizeof one, "%.*s", (int)(fl < sizeof one ? fl : sizeof one - 1), first);
            if (hostport(one, h, sizeof h, &pt))
                goto bad;
            O.cluster = optarg;
            break;
        }
        case 'x':
            O.prefix = optarg;
            break;
        case 'a':
            if (strcmp(optarg, "jwt") && strcmp(optarg, "none"))
                goto bad;
            O.jwt = !strcmp(optarg, "jwt");
            break;
        case 's':
            O.secret = optarg;
            break;
        case 'n':
            O.conns = atol(optarg);
            break;
        case 'A':
            O.accounts = atol(optarg);
            break;
        case 'P':
            O.procs = atoi(optarg);
            break;
        case 'H':
            O.hb = atof(optarg);
            break;
        case 'R':
            O.rate = atof(optarg);
            break;
        case 'd':
            O.duration = atof(optarg);
            break;
        case 'w':
            O.warmup = atof(optarg);
            break;
        case 'W':
            O.window = atol(optarg);
            break;
        case 'c':
            O.count = atoi(optarg);
            break;
        case 'b':
            O.burst = atoi(optarg);
            break;
        case 'i':
            O.interval = atof(optarg);
            break;
        case 'C':
            O.cycles = atoi(optarg);
            break;
        case 'I':
            O.inflight = atoi(optarg);
            break;
        case 'm':
            O.msg_size = atoi(optarg);
            break;
        case 'U':
            O.ready_on_upgrade = 1;
            break;
        case 'S':
            O.src_ips = atoi(optarg);
            break;
        case 'p':
            if (O.nspid < MAXPIDS)
                O.spid[O.nspid++] = (pid_t)atoi(optarg);
            break;
        case 'l':
            O.label = optarg;
            break;
        case 'e':
            O.settle = atof(optarg);
            break;
        case 'T':
            O.connect_timeout = atof(optarg);
            break;
        case 'h':
            usage(0);
            break;
        default:
            usage(2);
        }
        continue;
    bad:
        fprintf(stderr, "bench: bad value: %s\n", optarg);
        exit(2);
    }
    if (redis_given && O.cluster) {
        fprintf(stderr, "bench: give --redis or --redis-cluster, not both\n");
        exit(2);
    }
    if (O.accounts <= 0)
        O.accounts = O.conns;
    if (O.conns <= 0 || O.procs < 1 || O.procs > MAXPROCS || O.src_ips < 1 || O.src_ips > 250 ||
        O.inflight < 1 || O.accounts > O.conns) {
        fprintf(stderr, "bench: bad --conns/--accounts/--procs/--src-ips/--inflight\n");
        exit(2);
    }
    if (O.jwt && !O.secret) {
        fprintf(stderr, "bench: --auth jwt needs --jwt-secret\n");
        exit(2);
    }
}

int main(int argc, char **argv)
{
    parse(argc, argv);
    static const char *known[] = {"idle",      "unicast",       "unicast-max",
                                  "broadcast", "connect-storm", "reconnect-storm"};
    int sc = -1;
    for (int i = 0; i < 6; i++)
        if (!strcmp(O.scenario, known[i]))
            sc = i;
    if (sc < 0)
        usage(2);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if ((rlim_t)(O.conns / O.procs + 64) > rl.rlim_cur) {
        fprintf(stderr,
                "bench: %ld connections per process exceed the open-files limit %llu: "
                "raise --procs\n",
                O.conns / O.procs + 1, (unsigned long long)rl.rlim_cur);
        return 2;
    }
    if (O.cluster) {
        if (cluster_connect())
            return 1;
    } else {
        R = redisConnect(O.rhost, O.rport);
        if (!R || R->err) {
            fprintf(stderr, "bench: redis %s:%d: %s\n", O.rhost, O.rport, R ? R->errstr : "oom");
            return 1;
        }
    }
    PUBCNT = calloc((size_t)O.accounts, sizeof *PUBCNT);
    int pad = O.msg_size - 80;
    PAD = calloc(1, (size_t)(pad > 0 ? pad : 0) + 1);
    memset(PAD, 'x', (size_t)(pad > 0 ? pad : 0));
    S = mmap(NULL, sizeof *S, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (S == MAP_FAILED)
        return 1;
    memset(S, 0, sizeof *S);
    struct srvsample base = sample();
    pid_t kids[MAXPROCS];
    for (int i = 0; i < O.procs; i++) {
        fflush(stdout);
        kids[i] = fork();
        if (kids[i] == 0)
            worker(i);
    }
    printf("scenario=%s\ntarget=%s\nprocs=%d\naccounts=%ld\nheartbeat_s=%g\nauth=%s\n", O.scenario,
           O.label, O.procs, O.accounts, O.hb, O.jwt ? "jwt" : "none");
    sleep_s(O.jwt ? 0.5 + (double)O.accounts / O.procs * 2e-5 : 0.2); /* minting */
    struct srvsample s0 = sample();
    uint64_t t0 = now_ns();
    S->t0 = t0;
    set_phase(PH_CONNECT);
    double ct = wait_connected(t0);
    struct srvsample s1 = sample();
    struct wshm t;
    sum(&t);
    printf("connect_s=%.3f\nconnect_rate=%.0f\nserver_cpu_connect_s=%.3f\n", ct,
           ct > 0 ? (double)t.established / ct : 0, s1.cpu_s - s0.cpu_s);
    if (t.established)
        printf("server_cpu_per_connect_us=%.1f\n",
               (s1.cpu_s - s0.cpu_s) * 1e6 / (double)t.established);
    report_lat("connect");
    set_phase(PH_HOLD);
    sleep_s(O.settle);
    struct srvsample sc0 = sample();
    report_common(&t, &base, &sc0);

    if (sc == 0) { /* idle */
        struct cmdstats a, b;
        cmdstats(&a);
        struct srvsample i0 = sample();
        sleep_s(O.duration);
        struct srvsample i1 = sample();
        cmdstats(&b);
        double secs = (double)(i1.t - i0.t) / 1e9, cpu = i1.cpu_s - i0.cpu_s;
        printf("idle_s=%.2f\nserver_cpu_idle_s=%.3f\nserver_cpu_idle_pct=%.3f\n", secs, cpu,
               cpu / secs * 100);
        if (t.established)
            printf("server_cpu_idle_us_per_conn_s=%.3f\n",
                   cpu * 1e6 / secs / (double)t.established);
        printf("server_rss_end_kb=%ld\n", i1.rss_kb);
        print_cmdrates(&a, &b, secs);
        if (O.cluster)
            report_redis(&i0, &i1);
    } else if (sc == 1 || sc == 2) { /* unicast, unicast-max */
        reset_lat();
        uint64_t start = now_ns(), mstart = 0, dstart = 0;
        struct srvsample m0 = {0}, m1;
        double total = sc == 2 ? O.warmup + O.duration : O.duration;
        if (sc == 1) {
            m0 = sample();
            mstart = start;
        }
        for (;;) {
            uint64_t tn = now_ns();
            double el = (double)(tn - start) / 1e9;
            if (el >= total)
                break;
            if (sc == 2 && !mstart && el >= O.warmup) {
                m0 = sample();
                mstart = tn;
                sum(&t);
                dstart = t.delivered;
            }
            int n;
            if (sc == 1) {
                double due = el * O.rate - (double)pub_total;
                n = due > 1000 ? 1000 : (int)due;
            } else {
                sum(&t);
                long fl = (long)(expect_u - t.delivered);
                n = fl < O.window ? (int)(O.window - fl) : 0;
                if (n > 512)
                    n = 512;
            }
            if (n > 0) {
                if (publish_unicast(n))
                    break;
            } else {
                usleep(sc == 1 ? 200 : 50);
            }
        }
        m1 = sample();
        sum(&t);
        uint64_t dwin = t.delivered - dstart;
        double secs = (double)(m1.t - mstart) / 1e9;
        drain();
        sum(&t);
        printf("published=%llu\noffered_rate=%.0f\n", (unsigned long long)pub_total,
               (double)pub_total / ((double)(m1.t - start) / 1e9));
        uint64_t uniq = t.delivered - t.dup;
        printf("expected=%llu\ndelivered=%llu\nduplicated=%llu\nlost=%lld\n",
               (unsigned long long)expect_u, (unsigned long long)t.delivered,
               (unsigned long long)t.dup, (long long)expect_u - (long long)uniq);
        printf("delivery_rate=%.0f\n", (double)dwin / secs);
        printf("server_cpu_s=%.3f\nserver_cpu_pct=%.1f\n", m1.cpu_s - m0.cpu_s,
               (m1.cpu_s - m0.cpu_s) / secs * 100);
        if (dwin)
            printf("server_cpu_per_msg_us=%.2f\n", (m1.cpu_s - m0.cpu_s) * 1e6 / (double)dwin);
        printf("server_rss_end_kb=%ld\n", m1.rss_kb);
        if (O.cluster)
            report_redis(&m0, &m1);
        report_lat("lat");
    } else if (sc == 3) { /* broadcast */
        reset_lat();
        struct srvsample b0 = sample();
        uint64_t d0 = t.delivered_b;
        sum(&t);
        uint64_t est = t.established - t.dropped;
        for (int r = 0; r < O.count; r++) {
            for (int k = 0; k < O.burst; k++)
                pub_append(0, 1);
            expect_b += est * (uint64_t)O.burst;
            if (pub_flush(O.burst))
                break;
            if (r + 1 < O.count)
                sleep_s(O.interval);
        }
        drain();
        struct srvsample b1 = sample();
        sum(&t);
        uint64_t uniq = t.delivered_b - t.dup_b;
        printf("broadcasts=%d\nburst=%d\nexpected=%llu\ndelivered=%llu\nduplicated=%llu\n"
               "lost=%lld\n",
               O.count * O.burst, O.burst, (unsigned long long)expect_b,
               (unsigned long long)t.delivered_b, (unsigned long long)t.dup_b,
               (long long)expect_b - (long long)uniq);
        double cpu = b1.cpu_s - b0.cpu_s;
        printf("server_cpu_s=%.3f\n", cpu);
        if (t.delivered_b > d0)
            printf("server_cpu_per_msg_us=%.2f\n", cpu * 1e6 / (double)(t.delivered_b - d0));
        if (O.cluster)
            report_redis(&b0, &b1);
        report_lat("lat");
    } else if (sc == 4) { /* connect-storm: the connect phase above is the measurement */
        printf("storm_rate=%.0f\n", ct > 0 ? (double)t.established / ct : 0);
    } else if (sc == 5) { /* reconnect-storm */
        for (int c = 1; c <= O.cycles; c++) {
            struct srvsample r0 = sample();
            uint64_t tc = now_ns();
            __atomic_store_n(&S->cycle, c, __ATOMIC_RELEASE);
            set_phase(PH_RECONNECT);
            for (;;) {
                int done = 0;
                for (int i = 0; i < O.procs; i++)
                    done += ld64(&S->w[i].cycle_done) == (uint64_t)c;
                if (done == O.procs || (double)(now_ns() - tc) / 1e9 > O.connect_timeout + 5)
                    break;
                usleep(1000);
            }
            struct srvsample r1 = sample();
            sum(&t);
            double secs = t.ready_last_ns > tc ? (double)(t.ready_last_ns - tc) / 1e9 : 0;
            printf("cycle%d_established=%llu\ncycle%d_failed=%llu\ncycle%d_s=%.3f\n"
                   "cycle%d_rate=%.0f\ncycle%d_server_cpu_s=%.3f\n",
                   c, (unsigned long long)t.established, c, (unsigned long long)t.failed, c, secs,
                   c, secs > 0 ? (double)t.established / secs : 0, c, r1.cpu_s - r0.cpu_s);
            set_phase(PH_HOLD);
            sleep_s(O.settle);
            struct srvsample r2 = sample();
            printf("cycle%d_server_rss_kb=%ld\n", c, r2.rss_kb);
        }
        /* Every account must still receive: one message each. */
        reset_lat();
        for (long a = 0; a < O.accounts; a += 256) {
            int n = (int)(O.accounts - a < 256 ? O.accounts - a : 256);
            if (publish_unicast(n))
                break;
        }
        drain();
        sum(&t);
        printf("check_expected=%llu\ncheck_delivered=%llu\ncheck_lost=%lld\ncheck_dup=%llu\n",
               (unsigned long long)expect_u, (unsigned long long)t.delivered,
               (long long)expect_u - (long long)(t.delivered - t.dup), (unsigned long long)t.dup);
        report_lat("lat");
    }
    set_phase(PH_STOP);
    for (int i = 0; i < O.procs; i++)
        waitpid(kids[i], NULL, 0);
    sum(&t);
    report_end(&t);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("bench_worker_cpu_s=%.3f\nbench_parent_cpu_s=%.3f\n", (double)t.cpu_us / 1e6,
           (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
               (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
    if (O.cluster)
        for (int i = 0; i < NNODE; i++)
            redisFree(NODE[i].c);
    else
        redisFree(R);
    return 0;
}
