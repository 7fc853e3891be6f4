/* One worker process: its share of the connections, each a small state
 * machine (TCP connect, upgrade, register reply, ready) driven by one epoll
 * loop with its own minimal client framing (wsclient.h), or with
 * --transport sse an event stream read line by line. What it sees goes to
 * its slot of the shared mapping. */
#include <arpa/inet.h>
#include <errno.h>
#include <jwt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "wsclient.h"

#define WORKER_HELD 65536 /* latencies awaiting the noise log: seconds of them */

enum { C_FREE, C_CONNECTING, C_HTTP, C_WAITREG, C_READY, C_DEAD, C_RETRY };

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
    uint32_t tries;  /* rolling: failed attempts to come back since t_drop */
    uint64_t t_drop; /* rolling: when the server closed it (0 = it did not) */
    uint64_t due;    /* C_RETRY: when to try again */
};

/* A worker process's state. */
struct worker {
    const struct bench_opts *o;
    struct bench_shm *shm;
    struct worker_stats *stats; /* this worker's slot of shm */
    struct conn *conns;
    long n; /* connections of this worker */
    int index;
    int ep;        /* the epoll fd */
    char **tokens; /* per account, this worker's only */
    long pending, opened, nready;
    long *retry; /* C_RETRY connections' indices, unordered */
    long n_retry;
    char rbuf[1 << 17]; /* where reads land first */
    /* --noise-pid: latencies waiting until the noise log covers them */
    struct {
        uint64_t sent, got;
    } held[WORKER_HELD];
    uint32_t held_head, held_tail;
};

/* Moves the latencies the noise log now covers into lat_quiet, or counts
 * them out. */
static void classify_held(struct worker *wk)
{
    uint64_t seen = __atomic_load_n(&wk->shm->noise.seen_ns, __ATOMIC_ACQUIRE);
    while (wk->held_tail != wk->held_head) {
        uint32_t i = wk->held_tail % WORKER_HELD;
        if (wk->held[i].got + NOISE_SLACK_NS > seen)
            break;
        if (noise_overlaps(&wk->shm->noise, wk->held[i].sent, wk->held[i].got))
            inc64(&wk->stats->lat_noisy, 1);
        else
            hist_add(&wk->stats->lat_quiet, wk->held[i].got - wk->held[i].sent);
        wk->held_tail++;
    }
}

static void hold_latency(struct worker *wk, uint64_t sent, uint64_t got)
{
    if (wk->held_head - wk->held_tail == WORKER_HELD)
        classify_held(wk);
    if (wk->held_head - wk->held_tail == WORKER_HELD) { /* the monitor is behind: count it out */
        inc64(&wk->stats->lat_noisy, 1);
        return;
    }
    wk->held[wk->held_head % WORKER_HELD].sent = sent;
    wk->held[wk->held_head % WORKER_HELD].got = got;
    wk->held_head++;
}

static char *mint(const struct bench_opts *o, long a)
{
    char sub[32];
    snprintf(sub, sizeof sub, "u%ld", a);
    jwt_t *j = NULL;
    if (jwt_new(&j))
        return NULL;
    jwt_add_grant(j, "sub", sub);
    jwt_add_grant_int(j, "exp", (long)time(NULL) + 24 * 3600);
    jwt_set_alg(j, JWT_ALG_HS256, (const unsigned char *)o->secret, (int)strlen(o->secret));
    char *s = jwt_encode_str(j);
    jwt_free(j);
    return s;
}

/* Rolling: the first attempt to come back is at once, then 100 ms doubling
 * to 2 s, as a client library would. */
static uint64_t retry_delay_ns(uint32_t tries)
{
    if (!tries)
        return 0;
    uint64_t ms = tries > 5 ? 2000 : 100u << (tries - 1);
    return (ms > 2000 ? 2000 : ms) * 1000000u;
}

static void cfail(struct worker *wk, struct conn *c, int http)
{
    int again = ld(&wk->shm->reconnect) && (c->st == C_READY || c->t_drop);
    if (c->fd >= 0) {
        epoll_ctl(wk->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    free(c->buf);
    free(c->frag);
    c->buf = c->frag = NULL;
    c->blen = c->fraglen = 0;
    if (c->st == C_READY) {
        inc64(&wk->stats->dropped, 1);
        wk->nready--;
        if (again) {
            c->t_drop = now_ns();
            c->tries = 0;
        }
    } else if (c->st != C_DEAD && c->st != C_FREE && c->st != C_RETRY) {
        wk->pending--;
        if (again) {
            inc64(&wk->stats->retries, 1);
        } else {
            inc64(&wk->stats->failed, 1);
            if (http)
                inc64(&wk->stats->http_fail, 1);
        }
    }
    if (again) {
        c->st = C_RETRY;
        c->due = now_ns() + retry_delay_ns(c->tries++);
        wk->retry[wk->n_retry++] = c - wk->conns;
        return;
    }
    c->st = C_DEAD;
}

static void copen(struct worker *wk, struct conn *c)
{
    c->t_start = now_ns();
    c->st = C_CONNECTING;
    wk->pending++;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        c->fd = -1;
        cfail(wk, c, 0);
        return;
    }
    c->fd = fd;
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)(2 + c->g % (uint32_t)wk->o->src_ips));
    if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
        cfail(wk, c, 0);
        return;
    }
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)wk->o->port)};
    inet_pton(AF_INET, wk->o->host, &dst.sin_addr);
    if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) {
        cfail(wk, c, 0);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    epoll_ctl(wk->ep, EPOLL_CTL_ADD, fd, &ev);
}

static void csend_frame(struct worker *wk, struct conn *c, int op, const char *p, size_t n)
{
    uint8_t f[256];
    if (n > 125)
        n = 125;
    uint32_t mk = (uint32_t)rand();
    uint8_t mask[4];
    memcpy(mask, &mk, 4);
    size_t len = wsclient_frame(f, sizeof f, 0x80 | op, mask, p, n);
    ssize_t r = send(c->fd, f, len, MSG_NOSIGNAL);
    if (r != (ssize_t)len)
        inc64(&wk->stats->errors, 1);
}

static void set_ready(struct worker *wk, struct conn *c)
{
    uint64_t t = now_ns();
    c->st = C_READY;
    wk->pending--;
    wk->nready++;
    inc64(&wk->stats->established, 1);
    if (c->t_drop) {
        hist_add(&wk->stats->reconn_lat, t - c->t_drop);
        inc64(&wk->stats->reconnected, 1);
        c->t_drop = 0;
    } else {
        hist_add(&wk->stats->conn_lat, t - c->t_start);
    }
    st64(&wk->stats->ready_last_ns, t);
}

static void on_text(struct worker *wk, struct conn *c, const char *m, size_t n)
{
    const char *b = memmem(m, n, "\"body\":\"", 8);
    if (b && b + 10 < m + n && (b[8] == 'u' || b[8] == 'b') && b[9] == ' ') {
        char *e;
        uint64_t ts = strtoull(b + 10, &e, 10);
        uint64_t k = strtoull(e, NULL, 10);
        uint64_t t = now_ns();
        hist_add(&wk->stats->lat, t > ts ? t - ts : 0);
        if (wk->o->n_noise)
            hold_latency(wk, ts, t > ts ? t : ts);
        st64(&wk->stats->last_rx_ns, t);
        uint64_t *next = b[8] == 'u' ? &c->next_u : &c->next_b;
        if (b[8] == 'u')
            inc64(&wk->stats->delivered, 1);
        else
            inc64(&wk->stats->delivered_b, 1);
        if (k < *next)
            inc64(b[8] == 'u' ? &wk->stats->dup : &wk->stats->dup_b, 1);
        else
            *next = k + 1;
        /* --ack: acknowledge it as the JS client does ({"id":"<ms>-<seq>",...}) */
        if (wk->o->ack && n > 8 && !memcmp(m, "{\"id\":\"", 7)) {
            const char *q = memchr(m + 7, '"', n - 7 < 48 ? n - 7 : 48);
            if (q) {
                char ack[96];
                int len =
                    snprintf(ack, sizeof ack, "{\"type\":\"ack\",\"content\":{\"body\":\"%.*s\"}}",
                             (int)(q - m - 7), m + 7);
                csend_frame(wk, c, 1, ack, (size_t)len);
            }
        }
        return;
    }
    const char *ty = memmem(m, n, "\"type\":\"", 8);
    if (ty && (size_t)(m + n - ty) > 16 && !memcmp(ty + 8, "register", 8)) {
        if (c->st == C_WAITREG)
            set_ready(wk, c);
        return;
    }
    if (ty && (size_t)(m + n - ty) > 11 && !memcmp(ty + 8, "ack\"", 4))
        return; /* the answer to an acknowledgement */
    if (ty && (size_t)(m + n - ty) > 17 && !memcmp(ty + 8, "heartbeat", 9)) {
        inc64(&wk->stats->hb_replies, 1);
        return;
    }
    inc64(&wk->stats->other, 1);
}

/* Parses frames in p[0..n); returns bytes consumed or -1 to close. */
static long parse_frames(struct worker *wk, struct conn *c, char *p, size_t n)
{
    size_t off = 0;
    struct wsclient_frame fr;
    while (wsclient_frame_parse((const uint8_t *)p + off, n - off, &fr)) {
        if (fr.masked)
            return -1; /* servers never mask */
        size_t hl = fr.header_len, len = (size_t)fr.payload_len;
        if (n - off < hl + len)
            break;
        int op = fr.opcode, fin = fr.fin;
        char *d = p + off + hl;
        off += hl + len;
        if (op == 9) {
            inc64(&wk->stats->pings, 1);
            csend_frame(wk, c, 10, d, len);
        } else if (op == 8) {
            int code = wsclient_close_code(d, len);
            int slot = code == 1000   ? 0
                       : code == 1001 ? 1
                       : code == 1008 ? 2
                       : code == 1011 ? 3
                       : code == 1013 ? 4
                       : code == 4408 ? 5
                       : code == 4401 ? 6
                                      : 7;
            inc64(&wk->stats->close_codes[slot], 1);
            return -1;
        } else if (op == 1 || op == 0) {
            if (op == 1 && fin && !c->frag) {
                on_text(wk, c, d, len);
            } else {
                c->frag = realloc(c->frag, c->fraglen + len + 1);
                memcpy(c->frag + c->fraglen, d, len);
                c->fraglen += (uint32_t)len;
                if (fin) {
                    on_text(wk, c, c->frag, c->fraglen);
                    free(c->frag);
                    c->frag = NULL;
                    c->fraglen = 0;
                }
            }
        }
    }
    return (long)off;
}

/* Events of an event stream in p[0..n): each data: line is a message
 * (the event ends at the blank line after it; one data: line each, as the
 * gateway writes them); "event: close" ends the stream with the code in its
 * data. Returns bytes consumed (whole lines) or -1 to close. */
static long parse_events(struct worker *wk, struct conn *c, char *p, size_t n)
{
    size_t off = 0;
    char *nl;
    while ((nl = memchr(p + off, '\n', n - off))) {
        char *line = p + off;
        size_t len = (size_t)(nl - line);
        off += len + 1;
        if (len > 6 && !memcmp(line, "data: ", 6)) {
            if (c->fraglen) { /* the data of "event: close" */
                const char *k = memmem(line, len, "\"code\":", 7);
                int code = k ? atoi(k + 7) : 0;
                int slot = code == 1001 ? 1 : code == 1013 ? 4 : code == 4401 ? 6 : 7;
                inc64(&wk->stats->close_codes[slot], 1);
                return -1;
            }
            on_text(wk, c, line + 6, len - 6);
        } else if (len == 12 && !memcmp(line, "event: close", 12)) {
            c->fraglen = 1; /* no message is fragmented on a stream: a flag */
        } else if (len == 0 || line[0] == ':') {
            continue;
        }
    }
    return (long)off;
}

static void on_readable(struct worker *wk, struct conn *c)
{
    for (int rounds = 0; rounds < 4; rounds++) {
        size_t have = c->blen;
        char *p = wk->rbuf;
        size_t room = sizeof wk->rbuf - have - 1;
        if (have > sizeof wk->rbuf / 2) { /* a large carried frame: grow privately */
            c->buf = realloc(c->buf, have + 65536);
            p = c->buf;
            room = 65536;
        } else if (have) {
            memcpy(wk->rbuf, c->buf, have);
        }
        ssize_t r = recv(c->fd, p + have, room, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN)) {
            cfail(wk, c, 0);
            return;
        }
        if (r < 0)
            return;
        have += (size_t)r;
        size_t off = 0;
        if (c->st == C_HTTP) {
            p[have] = 0;
            char *e = memmem(p, have, "\r\n\r\n", 4);
            if (!e) {
                if (have > 8192) {
                    cfail(wk, c, 1);
                    return;
                }
                goto keep;
            }
            if (strncmp(p, wk->o->sse ? "HTTP/1.1 200" : "HTTP/1.1 101", 12) != 0) {
                cfail(wk, c, 1);
                return;
            }
            off = (size_t)(e + 4 - p);
            if (wk->o->ready_on_upgrade)
                set_ready(wk, c);
            else
                c->st = C_WAITREG;
        }
        {
            long k = wk->o->sse ? parse_events(wk, c, p + off, have - off)
                                : parse_frames(wk, c, p + off, have - off);
            if (k < 0) {
                cfail(wk, c, 0);
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
        if (have < sizeof wk->rbuf / 4)
            return; /* drained */
    }
}

static void on_writable(struct worker *wk, struct conn *c)
{
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
        cfail(wk, c, 0);
        return;
    }
    long a = (long)(c->g % (uint32_t)wk->o->accounts);
    char req[2048], path[64], auth[1600] = "";
    const char *ep = wk->o->sse ? "/sse" : "/ws";
    if (wk->o->jwt) {
        snprintf(path, sizeof path, "%s", ep);
        snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", wk->tokens[a]);
    } else {
        snprintf(path, sizeof path, "%s?user_id=u%ld", ep, a);
    }
    int n = wk->o->sse ? snprintf(req, sizeof req,
                                  "GET %s HTTP/1.1\r\nHost: %s:%d\r\n"
                                  "Accept: text/event-stream\r\n%s\r\n",
                                  path, wk->o->host, wk->o->port, auth)
                       : wsclient_request(req, sizeof req, wk->o->host, wk->o->port, path,
                                          "dGhlIHNhbXBsZSBub25jZQ==", auth);
    if (n >= (int)sizeof req)
        n = -1;
    if (n < 0) {
        cfail(wk, c, 0);
        return;
    }
    if (send(c->fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        cfail(wk, c, 0);
        return;
    }
    c->st = C_HTTP;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(wk->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void open_more(struct worker *wk)
{
    while (wk->opened < wk->n && wk->pending < wk->o->inflight)
        copen(wk, &wk->conns[wk->opened++]);
}

/* Rolling: opens again the closed connections whose time has come (a
 * failed attempt puts its connection back in the list, further on). */
static void retry_due(struct worker *wk)
{
    uint64_t t = now_ns();
    for (long i = 0; i < wk->n_retry;) {
        struct conn *c = &wk->conns[wk->retry[i]];
        if (c->due > t) {
            i++;
            continue;
        }
        wk->retry[i] = wk->retry[--wk->n_retry];
        copen(wk, c);
    }
}

void worker_run(const struct bench_opts *o, struct bench_shm *shm, int w)
{
    /* Static: the read buffer is large, and a worker process has one. */
    static struct worker worker;
    struct worker *wk = &worker;
    wk->o = o;
    wk->shm = shm;
    wk->index = w;
    wk->stats = &shm->w[w];
    srand((unsigned)(getpid() ^ (unsigned)now_ns()));
    wk->n = wk->o->conns / wk->o->procs + (w < wk->o->conns % wk->o->procs ? 1 : 0);
    wk->conns = calloc((size_t)wk->n, sizeof *wk->conns);
    wk->retry = calloc((size_t)wk->n + 1, sizeof *wk->retry);
    for (long i = 0; i < wk->n; i++) {
        wk->conns[i].g = (uint32_t)(w + i * wk->o->procs);
        wk->conns[i].fd = -1;
    }
    if (wk->o->jwt) {
        wk->tokens = calloc((size_t)wk->o->accounts, sizeof *wk->tokens);
        for (long i = 0; i < wk->n; i++) {
            long a = (long)(wk->conns[i].g % (uint32_t)wk->o->accounts);
            if (!wk->tokens[a] && !(wk->tokens[a] = mint(wk->o, a))) {
                fprintf(stderr, "bench: jwt minting failed\n");
                _exit(1);
            }
        }
    }
    wk->ep = epoll_create1(EPOLL_CLOEXEC);
    while (ld(&wk->shm->phase) == PH_INIT)
        usleep(200);
    struct epoll_event evs[1024];
    int cycle = 0;
    uint64_t hb_t0 = now_ns(), hb_sent = 0;
    for (;;) {
        int ph = ld(&wk->shm->phase);
        if (ph == PH_STOP)
            break;
        if (ph == PH_RECONNECT && ld(&wk->shm->cycle) != cycle) {
            cycle = ld(&wk->shm->cycle);
            /* Drop every connection at once, then reconnect them all. */
            for (long i = 0; i < wk->n; i++) {
                struct conn *c = &wk->conns[i];
                if (c->fd >= 0) {
                    epoll_ctl(wk->ep, EPOLL_CTL_DEL, c->fd, NULL);
                    close(c->fd);
                }
                free(c->buf);
                free(c->frag);
                memset(c, 0, sizeof *c);
                c->g = (uint32_t)(w + i * wk->o->procs);
                c->fd = -1;
            }
            st64(&wk->stats->established, 0);
            st64(&wk->stats->connect_done, 0);
            wk->opened = wk->pending = wk->nready = 0;
        }
        open_more(wk);
        if (wk->n_retry)
            retry_due(wk);
        if (wk->opened == wk->n && wk->pending == 0 && !ld64(&wk->stats->connect_done)) {
            if (ph == PH_RECONNECT)
                st64(&wk->stats->cycle_done, (uint64_t)cycle);
            st64(&wk->stats->connect_done, 1);
        }
        /* Timed-out handshakes count as failures. */
        if (wk->pending && (rand() & 63) == 0) {
            uint64_t t = now_ns();
            for (long i = 0; i < wk->opened; i++)
                if (wk->conns[i].st >= C_CONNECTING && wk->conns[i].st <= C_WAITREG &&
                    t - wk->conns[i].t_start > (uint64_t)(wk->o->connect_timeout * 1e9))
                    cfail(wk, &wk->conns[i], 0);
        }
        /* Heartbeats, staggered evenly over the interval. */
        if (wk->o->hb > 0 && wk->n > 0 && !wk->o->sse) {
            uint64_t t = now_ns();
            uint64_t due = (uint64_t)((double)(t - hb_t0) / (wk->o->hb * 1e9) * (double)wk->n);
            while (hb_sent < due) {
                struct conn *c = &wk->conns[hb_sent % (uint64_t)wk->n];
                if (c->st == C_READY)
                    csend_frame(wk, c, 1, "{\"type\":\"heartbeat\"}", 20);
                hb_sent++;
            }
        }
        if (wk->o->n_noise)
            classify_held(wk);
        int n = epoll_wait(wk->ep, evs, 1024, 2);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->st == C_CONNECTING) {
                if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                    on_writable(wk, c);
                continue;
            }
            if (c->fd >= 0)
                on_readable(wk, c);
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    st64(&wk->stats->cpu_us,
         (uint64_t)ru.ru_utime.tv_sec * 1000000u + (uint64_t)ru.ru_utime.tv_usec +
             (uint64_t)ru.ru_stime.tv_sec * 1000000u + (uint64_t)ru.ru_stime.tv_usec);
    _exit(0);
}
