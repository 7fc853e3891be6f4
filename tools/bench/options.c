/* bench's command line: the flags, their defaults and --help. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static const struct bench_opts defaults = {
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

__attribute__((noreturn)) static void usage(int code)
{
    fprintf(code ? stderr : stdout,
            "usage: bench SCENARIO[,SCENARIO...] [flags]\n"
            "scenarios: idle | unicast | unicast-max | broadcast | connect-storm | "
            "reconnect-storm | rolling\n"
            "  several, comma-joined, run one after the other on the same connections\n"
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
            "  --hold S                idle within a sequence: held time [= --duration]\n"
            "  --warmup S              unicast-max: unmeasured start [2]\n"
            "  --window N              unicast-max: deliveries in flight [4096]\n"
            "  --count N --burst B --interval S   broadcast rounds [10 x 1, 1 s apart]\n"
            "  --cycles N              reconnect-storm rounds [3]\n"
            "  --rolling S             rolling: its length [= --duration]\n"
            "  rolling: for its length, every connection the server closes reconnects\n"
            "           (retried with backoff); reports how long each took to come back\n"
            "  --inflight N            connects in flight per process [512]\n"
            "  --msg-size N            approximate envelope bytes [160]\n"
            "  --history               unicast with FCALL notify_publish (one Redis only)\n"
            "  --ack N                 notify_publish ... ack N, and every client acknowledges\n"
            "                          each notification (implies --history)\n"
            "  --transport ws|sse      WebSockets (GET /ws) or event streams (GET /sse) [ws]\n"
            "  --ready-on-upgrade      count a connection ready at 101 (servers without a "
            "register reply)\n"
            "  --src-ips N             source addresses 127.0.0.2.. [200]\n"
            "  --server-pid PID        measured server process (repeatable)\n"
            "  --noise-pid PID         the host's threads to watch (repeatable, e.g. an agent):\n"
            "                          lat_quiet_* leaves out the messages their runs touched\n"
            "  --label NAME            printed as target=NAME\n"
            "  --settle S              quiet time before measuring / draining [2]\n"
            "  --connect-timeout S     [60]\n"
            "Output: key=value lines.\n");
    exit(code);
}

int opts_hostport(const char *s, char *host, size_t hl, int *port)
{
    const char *c = strrchr(s, ':');
    if (!c || (size_t)(c - s) >= hl)
        return -1;
    memcpy(host, s, (size_t)(c - s));
    host[c - s] = 0;
    *port = atoi(c + 1);
    return *port > 0 ? 0 : -1;
}

long opts_acct_conns(const struct bench_opts *o, long a)
{
    return o->conns / o->accounts + (a < o->conns % o->accounts ? 1 : 0);
}

void opts_parse(struct bench_opts *o, int argc, char **argv)
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
                                 {"hold", 1, 0, 'o'},
                                 {"rolling", 1, 0, 'g'},
                                 {"warmup", 1, 0, 'w'},
                                 {"window", 1, 0, 'W'},
                                 {"count", 1, 0, 'c'},
                                 {"burst", 1, 0, 'b'},
                                 {"interval", 1, 0, 'i'},
                                 {"cycles", 1, 0, 'C'},
                                 {"inflight", 1, 0, 'I'},
                                 {"msg-size", 1, 0, 'm'},
                                 {"history", 0, 0, 'Y'},
                                 {"ack", 1, 0, 'Q'},
                                 {"ready-on-upgrade", 0, 0, 'U'},
                                 {"transport", 1, 0, 't'},
                                 {"src-ips", 1, 0, 'S'},
                                 {"server-pid", 1, 0, 'p'},
                                 {"noise-pid", 1, 0, 'N'},
                                 {"label", 1, 0, 'l'},
                                 {"settle", 1, 0, 'e'},
                                 {"connect-timeout", 1, 0, 'T'},
                                 {"help", 0, 0, 'h'},
                                 {0, 0, 0, 0}};
    if (argc < 2)
        usage(2);
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
        usage(0);
    *o = defaults;
    o->scenario_name = argv[1];
    optind = 2;
    int opt, redis_given = 0;
    while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (opt) {
        case 'u':
            if (opts_hostport(optarg, o->host, sizeof o->host, &o->port))
                goto bad;
            break;
        case 'r':
            if (!strncmp(optarg, "redis://", 8))
                optarg += 8;
            if (opts_hostport(optarg, o->rhost, sizeof o->rhost, &o->rport))
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
            if (opts_hostport(one, h, sizeof h, &pt))
                goto bad;
            o->cluster = optarg;
            break;
        }
        case 'x':
            o->prefix = optarg;
            break;
        case 'a':
            if (strcmp(optarg, "jwt") && strcmp(optarg, "none"))
                goto bad;
            o->jwt = !strcmp(optarg, "jwt");
            break;
        case 's':
            o->secret = optarg;
            break;
        case 'n':
            o->conns = atol(optarg);
            break;
        case 'A':
            o->accounts = atol(optarg);
            break;
        case 'P':
            o->procs = atoi(optarg);
            break;
        case 'H':
            o->hb = atof(optarg);
            break;
        case 'R':
            o->rate = atof(optarg);
            break;
        case 'd':
            o->duration = atof(optarg);
            break;
        case 'o':
            o->hold = atof(optarg);
            break;
        case 'g':
            o->rolling = atof(optarg);
            break;
        case 'w':
            o->warmup = atof(optarg);
            break;
        case 'W':
            o->window = atol(optarg);
            break;
        case 'c':
            o->count = atoi(optarg);
            break;
        case 'b':
            o->burst = atoi(optarg);
            break;
        case 'i':
            o->interval = atof(optarg);
            break;
        case 'C':
            o->cycles = atoi(optarg);
            break;
        case 'I':
            o->inflight = atoi(optarg);
            break;
        case 'm':
            o->msg_size = atoi(optarg);
            break;
        case 'Y':
            o->history = 1;
            break;
        case 'Q':
            o->ack = atoi(optarg);
            o->history = 1;
            break;
        case 'U':
            o->ready_on_upgrade = 1;
            break;
        case 't':
            if (strcmp(optarg, "ws") && strcmp(optarg, "sse"))
                goto bad;
            o->sse = !strcmp(optarg, "sse");
            break;
        case 'S':
            o->src_ips = atoi(optarg);
            break;
        case 'p':
            if (o->nspid == MAXPIDS) {
                fprintf(stderr, "bench: more than %d --server-pid\n", MAXPIDS);
                exit(2);
            }
            o->spid[o->nspid++] = (pid_t)atoi(optarg);
            break;
        case 'N':
            if (o->n_noise == MAXNOISE) {
                fprintf(stderr, "bench: more than %d --noise-pid\n", MAXNOISE);
                exit(2);
            }
            if (atoi(optarg) <= 0)
                goto bad;
            o->noise_pid[o->n_noise++] = (pid_t)atoi(optarg);
            break;
        case 'l':
            o->label = optarg;
            break;
        case 'e':
            o->settle = atof(optarg);
            break;
        case 'T':
            o->connect_timeout = atof(optarg);
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
    if (redis_given && o->cluster) {
        fprintf(stderr, "bench: give --redis or --redis-cluster, not both\n");
        exit(2);
    }
    if (o->accounts <= 0)
        o->accounts = o->conns;
    if (o->conns <= 0 || o->procs < 1 || o->procs > MAXPROCS || o->src_ips < 1 ||
        o->src_ips > 250 || o->inflight < 1 || o->accounts > o->conns) {
        fprintf(stderr, "bench: bad --conns/--accounts/--procs/--src-ips/--inflight\n");
        exit(2);
    }
    if (o->jwt && !o->secret) {
        fprintf(stderr, "bench: --auth jwt needs --jwt-secret\n");
        exit(2);
    }
    static const char *known[] = {"idle",          "unicast",         "unicast-max", "broadcast",
                                  "connect-storm", "reconnect-storm", "rolling"};
    const char *s = o->scenario_name;
    for (;;) {
        size_t len = strcspn(s, ",");
        int sc = -1;
        for (int i = 0; i < (int)(sizeof known / sizeof *known); i++)
            if (strlen(known[i]) == len && !strncmp(s, known[i], len))
                sc = i;
        if (sc < 0 || o->n_phases == MAXPHASES) {
            fprintf(stderr, "bench: bad scenario: %.*s\n", (int)len, s);
            exit(2);
        }
        o->phases[o->n_phases++] = (enum scenario)sc;
        if (!s[len])
            break;
        s += len + 1;
    }
}
