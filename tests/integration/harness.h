/* harness: helpers for black-box tests against real processes.
 *
 *   h_redis_*  a private redis-server on a random loopback port
 *   h_proc_*   any child process, its stdout/stderr captured to temp files
 *   h_gw_*     the notify-gateway daemon (GATEWAY_BIN) wired to a h_redis
 *   h_http*    a plain HTTP/1.1 client
 *   ws_*       a minimal blocking WebSocket client (RFC 6455, client side)
 *   sse_*      a Server-Sent Events client (GET /sse), read as EventSource does
 *   h_jwt_*    tokens for --auth jwt
 *   h_tcp_*    raw TCP connections (hostile clients, half requests)
 *   h_ck_*     for Check tests: fixtures and helpers that fail the test
 *              (ck_assert) instead of returning an error, and what several
 *              test files do alike (h_msg_*, h_publish, h_presence_*)
 *
 * Each part is a file: harness_proc.c (misc, temp dirs, processes),
 * harness_redis.c, harness_gw.c, harness_net.c (TCP, HTTP), harness_ws.c
 * (on tools/lib/wsclient.h), harness_sse.c, harness_ck.c (JWT, Check
 * helpers); they share
 * harness_int.h.
 *
 * Every process started here is remembered: if the test process exits with
 * some still running they are killed (SIGKILL); in Check's fork mode a
 * failed test's processes die with its process group. All temp files live
 * under one root dir per test run, removed when the runner exits; a
 * gateway's dir still present then (its test failed before cleaning up) has
 * the tail of its stderr printed first, so a failure shows what the daemon
 * logged. Only pids started here are ever signalled. Set H_KEEP_TMP=1 to
 * keep the temp files.
 *
 * Paths come from compile definitions set by tests/integration/CMakeLists.txt
 * on the notifytest library: GATEWAY_BIN, REDIS_SERVER_BIN and NOTIFYCTL_BIN
 * (the latter for tests to use directly with h_run).
 *
 * Timeouts are in milliseconds. Functions returning int return -1 on
 * failure unless documented otherwise. */
#ifndef NOTIFY_TEST_HARNESS_H
#define NOTIFY_TEST_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

#include <check.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#define H_PATH_MAX 256

/* ---- misc --------------------------------------------------------------- */

/* Milliseconds of CLOCK_MONOTONIC, for measuring durations. */
long long h_mono_ms(void);

/* Seconds since the Unix epoch (wall clock), for JWT exp claims. */
long long h_unix_s(void);

/* Milliseconds since the Unix epoch (wall clock): presence scores, JWT exp
 * compared at ms precision. */
long long h_wall_ms(void);

/* Sleeps for ms milliseconds (restarting after signals). */
void h_sleep_ms(int ms);

/* Returns a TCP port on 127.0.0.1 that was free a moment ago (bound to port
 * 0 and released), or -1. Another process may still grab it: callers that
 * start a server retry with a new port if the server cannot bind. */
int h_free_port(void);

/* Creates a fresh temp directory into out (size H_PATH_MAX), inside this
 * run's root /tmp/notifytest.XXXXXX; the root is removed when the process
 * that loaded the harness exits, unless H_KEEP_TMP=1. */
int h_tmpdir(char *out);

/* Reads a whole file into a malloc'd NUL-terminated string (NULL if it
 * cannot be read). */
char *h_read_file(const char *path);

/* Occurrences of needle (not overlapping) in hay, e.g. log lines. */
int h_count(const char *hay, const char *needle);

/* ---- child processes ---------------------------------------------------- */

struct h_proc {
    pid_t pid;                 /* 0 when not running (or already reaped) */
    int status;                /* after exit: exit code, or 128 + signal */
    char dir[H_PATH_MAX];      /* its private temp directory */
    char out_path[H_PATH_MAX]; /* captured stdout */
    char err_path[H_PATH_MAX]; /* captured stderr */
};

/* Starts argv[0] (a path) with argv (NULL-terminated), stdin from
 * /dev/null, stdout and stderr into files in a new temp dir. The child gets
 * this environment minus every NOTIFY_* variable, plus env (NULL-terminated
 * "NAME=value" strings, may be NULL), so tests do not depend on the caller's
 * shell. */
int h_proc_spawn(struct h_proc *p, const char *const *argv, const char *const *env);

/* 1 while the process runs, 0 once it has exited (then p->status is set
 * and p->pid is 0). */
int h_proc_running(struct h_proc *p);

/* Waits up to timeout_ms for the process to exit. Returns its status (exit
 * code, or 128 + signal number), or -1 on timeout (still running). */
int h_proc_wait(struct h_proc *p, int timeout_ms);

/* Sends sig to the process (only if it is still ours and running). */
int h_proc_signal(struct h_proc *p, int sig);

/* SIGKILL and reap. No-op if not running. */
void h_proc_kill(struct h_proc *p);

/* Kills the process if still running and removes its temp dir. */
void h_proc_cleanup(struct h_proc *p);

/* What the process wrote so far to stdout / stderr (malloc'd, never NULL). */
char *h_proc_stdout(const struct h_proc *p);
char *h_proc_stderr(const struct h_proc *p);

/* Runs argv to completion: returns its status as h_proc_wait, or -1 if it
 * did not finish within timeout_ms (it is then killed). If out / err are
 * not NULL they receive its stdout / stderr (malloc'd). */
int h_run(const char *const *argv, const char *const *env, int timeout_ms, char **out, char **err);

/* VmRSS of pid in kB, -1 if unknown. */
long h_proc_rss_kb(pid_t pid);

/* 1 when pid runs with AddressSanitizer's runtime mapped (its quarantine
 * holds freed memory, so RSS is no measure of leaks there). */
int h_proc_has_asan(pid_t pid);

/* ---- redis-server ------------------------------------------------------- */

struct h_redis {
    struct h_proc proc;
    int port;                 /* 127.0.0.1:port */
    char aof_dir[H_PATH_MAX]; /* h_redis_start_aof: its data dir; "" = no persistence */
};

/* Starts redis-server (REDIS_SERVER_BIN, or redis-server from PATH) bound to
 * 127.0.0.1 on a free random port, without persistence, in its own temp
 * dir; waits until it answers PING. */
int h_redis_start(struct h_redis *r);

/* As h_redis_start, with --appendonly yes --appendfsync always in a data
 * dir of its own that h_redis_restart keeps: what was written survives a
 * kill -9. */
int h_redis_start_aof(struct h_redis *r);

/* Kills it (SIGKILL) and starts a new, empty redis-server on the same port
 * (to simulate an outage and recovery; with h_redis_start_aof, one that
 * reloads the append-only file); waits until it answers PING. */
int h_redis_restart(struct h_redis *r);

/* Stops it (SIGKILL, it holds nothing worth saving) and removes its dir. */
void h_redis_stop(struct h_redis *r);

/* "redis://127.0.0.1:<port>/0" into buf. */
void h_redis_url(const struct h_redis *r, char *buf, size_t size);

/* Runs one command on a new synchronous connection (hiredis format: %s for
 * a C string, %b for bytes + size_t length). Returns the reply (free with
 * freeReplyObject) or NULL on a connection error. */
redisReply *h_redis_cmd(const struct h_redis *r, const char *fmt, ...);

/* Runs a command whose reply is an integer; returns it, or -1 on error or
 * another reply type. */
long long h_redis_int(const struct h_redis *r, const char *fmt, ...);

/* As h_redis_cmd, on 127.0.0.1:port after AUTH pass (AUTH user pass when
 * user is not NULL; no AUTH when pass is NULL). NULL on a connection error
 * or a refused AUTH. */
redisReply *h_redis_cmd_auth(int port, const char *user, const char *pass, const char *fmt, ...);

/* PUBLISH channel payload[0..len); returns the number of receivers (-1 on
 * error). */
long long h_redis_publish(const struct h_redis *r, const char *channel, const char *payload,
                          size_t len);

/* PUBSUB NUMSUB channel: subscribers of channel, -1 on error. */
long long h_redis_numsub(const struct h_redis *r, const char *channel);

/* Polls NUMSUB every 50 ms until it equals want or timeout_ms passes;
 * returns the last value seen. */
long long h_redis_wait_numsub(const struct h_redis *r, const char *channel, long long want,
                              int timeout_ms);

/* ---- the gateway -------------------------------------------------------- */

struct h_gw {
    struct h_proc proc;
    int port;         /* 127.0.0.1:port serves /ws and HTTP */
    int must_survive; /* set by h_ck_gw_startl: h_ck_teardown asserts the
                         gateway still runs; clear it to stop it on purpose */
};

/* Starts GATEWAY_BIN with
 *   --listen 127.0.0.1:<free port> --redis redis://127.0.0.1:<r->port>/0
 *   --node-id it-<port> --log-level debug
 * followed by args (NULL-terminated, may be NULL; a later flag wins), and
 * (with NOTIFY_TEST_WRAPPER set, e.g. to "valgrind --leak-check=full", the
 * command line is prefixed with its words), and
 * waits up to 10 s until GET /healthz answers 200. With r NULL there is no
 * --redis (args give --redis-cluster, cluster_util.h). Retries with another port
 * if the process dies during startup (port taken meanwhile). On failure the
 * process is killed and its stderr printed. */
int h_gw_start(struct h_gw *g, const struct h_redis *r, const char *const *args);

/* Same with the extra args as a NULL-terminated variadic list. */
int h_gw_startl(struct h_gw *g, const struct h_redis *r, ...);

/* Thin wrappers over h_proc_* for the gateway. */
int h_gw_signal(struct h_gw *g, int sig);
int h_gw_wait(struct h_gw *g, int timeout_ms);
void h_gw_kill(struct h_gw *g);
char *h_gw_stderr(const struct h_gw *g);

/* SIGTERM, waits up to timeout_ms for exit, then SIGKILL; removes its temp
 * dir. Returns the status as h_proc_wait, or -1 if it had to be killed. */
int h_gw_stop(struct h_gw *g, int timeout_ms);

/* Runs GATEWAY_BIN with exactly args (NULL-terminated) and env (see
 * h_proc_spawn) and waits up to timeout_ms for it to exit; returns its
 * status or -1 (killed after the timeout). *err receives its stderr if err
 * is not NULL. For tests of bad flags. */
int h_gw_run(const char *const *args, const char *const *env, int timeout_ms, char **err);

/* "notify:acct:{<account>}", the account's channel (default prefix), in a
 * static buffer overwritten by the next call. */
const char *h_chan(const char *account);

/* {"type":<type>,"content":{"body":<body>,"meta_data":""}} as compact JSON
 * (malloc'd, strings escaped). */
char *h_envelope(const char *type, const char *body);

/* ---- HTTP --------------------------------------------------------------- */

struct h_http_resp {
    int status;    /* e.g. 200; -1 when no answer */
    char *headers; /* raw header block (malloc'd) */
    char *body;    /* body (malloc'd, NUL-terminated, chunked decoded) */
    size_t body_len;
};

/* Reads from fd until a whole HTTP head ("...\r\n\r\n") has arrived.
 * Returns the head's length, with *out (malloc'd, NUL-terminated) holding
 * every byte read, the head and whatever came after it (*len in all); -1 on
 * EOF, error or timeout (*out NULL). For answers h_http cannot take: a 101,
 * a reply to a hand-written request. */
long h_read_http_head(int fd, int timeout_ms, char **out, size_t *len);

/* Copies the value of the first header called name (case-insensitive,
 * whitespace trimmed) in a raw head into out; 1 if found, 0 if not. */
int h_http_header(const char *head, const char *name, char *out, size_t size);

/* Sends one HTTP/1.1 request to 127.0.0.1:port (Connection: close).
 * headers: extra "Name: value\r\n" lines or NULL; body may be NULL. Returns
 * the status and fills resp (free with h_http_resp_free), -1 on I/O error or
 * timeout. */
int h_http(int port, const char *method, const char *path, const char *headers, const char *body,
           size_t body_len, struct h_http_resp *resp, int timeout_ms);
void h_http_resp_free(struct h_http_resp *resp);

/* GET path with a 3 s timeout; returns the status (-1 on error) and, if
 * body is not NULL, the malloc'd body (NULL on error). */
int h_http_get(int port, const char *path, char **body);

/* Polls GET path every 50 ms until it answers want; returns 1 if it did
 * within timeout_ms, 0 otherwise. */
int h_http_wait_status(int port, const char *path, int want, int timeout_ms);

/* Sum of the values of every sample named exactly name (any labels) in a
 * Prometheus text exposition; -1 if no sample has that name. */
double h_metric_sum(const char *text, const char *name);

/* ---- raw TCP ------------------------------------------------------------ */

/* A non-blocking TCP connection (TCP_NODELAY) to 127.0.0.1:port, connected
 * within timeout_ms, or -1. */
int h_tcp_connect(int port, int timeout_ms);

/* Writes all of buf (within timeout_ms); 0, or -1 (the peer may have closed
 * already: that is -1 too). */
int h_send_all(int fd, const void *buf, size_t len, int timeout_ms);

/* Reads and discards (or keeps the first cap bytes in keep, if not NULL)
 * until the peer closes the connection (EOF or reset). Returns 1 when it
 * closed, 0 when timeout_ms passed first. *got (if not NULL) receives the
 * number of bytes kept. */
int h_read_until_closed(int fd, int timeout_ms, char *keep, size_t cap, size_t *got);

/* ---- WebSocket client --------------------------------------------------- */

enum {
    WS_ERROR = -1,  /* I/O error or the peer closed the TCP connection */
    WS_TIMEOUT = 0, /* nothing complete arrived in time */
    WS_TEXT = 1,
    WS_BINARY = 2,
    WS_CLOSE = 8,
    WS_PING = 9,
    WS_PONG = 10,
};

struct ws {
    int fd;          /* -1 when not connected */
    int status;      /* HTTP status of the upgrade answer (101 = upgraded) */
    int auto_pong;   /* answer pings inside ws_recv (default 1) */
    int pings;       /* pings received so far */
    int close_code;  /* code of the close frame received; 1005 if it had
                        none; 0 if none received yet */
    int eof;         /* the TCP connection was closed by the peer */
    char *http_body; /* body of a refused (non-101) answer, malloc'd */
    /* internal state */
    int sent_close;     /* a close frame was sent */
    unsigned char *buf; /* bytes received and not yet parsed */
    size_t len, cap;
    char *frag; /* data of a fragmented message so far */
    size_t frag_len;
    int frag_op;
};

/* A message (fragments already joined) or control frame. */
struct ws_msg {
    int opcode;     /* WS_TEXT, WS_BINARY, WS_CLOSE, WS_PING, WS_PONG */
    char *data;     /* payload, malloc'd and NUL-terminated */
    size_t len;     /* payload length (for close: after the 2-byte code) */
    int close_code; /* WS_CLOSE only: code, or 1005 if none */
};

/* Connects to 127.0.0.1:port and sends an upgrade request for path (e.g.
 * "/ws?user_id=u1"); headers: extra "Name: value\r\n" lines or NULL.
 * Returns the HTTP status of the answer (101 when upgraded, the
 * Sec-WebSocket-Accept checked) or -1 on I/O error or timeout. Unless the
 * status is 101 the socket is closed again. c->auto_pong starts at 1. */
int ws_connect(struct ws *c, int port, const char *path, const char *headers, int timeout_ms);

/* Makes c a client on fd, a connection whose upgrade the caller did by
 * hand (e.g. with h_read_http_head); pending: the len bytes read after the
 * 101 head (the first frames, maybe). c owns fd from here. Returns 0, or -1
 * (fd untouched). */
int ws_adopt(struct ws *c, int fd, const void *pending, size_t len);

/* Sends one masked frame with FIN set. Returns 0, or -1 on error. */
int ws_send(struct ws *c, int opcode, const void *data, size_t len);

/* Sends one masked frame with the given FIN bit (for fragments: opcode 0 is
 * a continuation). Returns 0, or -1 on error. */
int ws_send_frame(struct ws *c, int fin, int opcode, const void *data, size_t len);

/* Encodes one client frame whose first byte is b0 as given (FIN, RSV1-3,
 * opcode: anything, valid or not), masked with a random key, or unmasked
 * (mask bit clear) when masked is 0. Returns the malloc'd bytes (*out_len
 * of them) or NULL. For frames a well-behaved client never sends, or for
 * several frames written at once. */
unsigned char *ws_frame_encode(int b0, int masked, const void *data, size_t len, size_t *out_len);

/* ws_frame_encode, written to c's socket. Returns 0, or -1 on error. */
int ws_send_raw_frame(struct ws *c, int b0, int masked, const void *data, size_t len);

/* ws_send of a NUL-terminated text. */
int ws_send_text(struct ws *c, const char *text);

/* Waits up to timeout_ms for the next message or control frame. Pings are
 * answered with a pong of the same payload and skipped when c->auto_pong,
 * else returned. A close frame is answered with a close of the same code
 * and returned (c->close_code is set). Returns the opcode (m filled, free
 * with ws_msg_free), WS_TIMEOUT or WS_ERROR. */
int ws_recv(struct ws *c, struct ws_msg *m, int timeout_ms);
void ws_msg_free(struct ws_msg *m);

/* Waits for the next text message, skipping pings and pongs. Returns it
 * malloc'd, or NULL on timeout, close or error (see c->close_code, c->eof). */
char *ws_recv_text(struct ws *c, int timeout_ms);

/* Reads (and discards data frames) until a close frame arrives; returns its
 * code (1005 if none), 0 on timeout, -1 if the TCP connection ended without
 * a close frame. */
int ws_wait_close(struct ws *c, int timeout_ms);

/* Sends a close frame with code (if the connection is open and none was
 * received) and closes the socket. Safe to call twice. */
void ws_close(struct ws *c, int code);

/* Drops the TCP connection abruptly, without a close frame. */
void ws_drop(struct ws *c);

/* ---- Server-Sent Events client ------------------------------------------ */

struct sse {
    int fd;           /* -1 when not connected */
    int status;       /* HTTP status of the answer (200 = a stream) */
    char *head;       /* the answer's raw head (malloc'd) */
    char *http_body;  /* body of a refused (non-200) answer, malloc'd */
    int eof;          /* the server ended the stream (or the connection) */
    int comments;     /* comment lines (": ...", keep-alives) read so far */
    long retry;       /* the last retry: field, -1 if none */
    char last_id[64]; /* the last id: field, as EventSource keeps it */
    char *buf;        /* bytes read, not yet parsed */
    size_t len, cap;
};

/* One dispatched event. */
struct sse_event {
    char *event; /* its name: "message" when it had no event: field */
    char *data;  /* its data: lines joined with "\n" */
    char *id;    /* its id: field, NULL if it had none */
};

/* Sends GET path (e.g. "/sse?user_id=u1") to 127.0.0.1:port with extra
 * header lines (or NULL). Returns the status (200 when the stream opened;
 * any other closes the socket, its body in c->http_body), or -1. */
int sse_connect(struct sse *c, int port, const char *path, const char *headers, int timeout_ms);

/* The next event within timeout_ms (comments and retry: counted in c):
 * 1 (e filled, free with sse_event_free), 0 on timeout, -1 when the stream
 * ended (c->eof) or failed. */
int sse_recv(struct sse *c, struct sse_event *e, int timeout_ms);
void sse_event_free(struct sse_event *e);

/* Closes the socket and frees c's buffers. Safe to call twice. */
void sse_close(struct sse *c);

/* sse_connect asserting 200 and a first event "register" carrying the
 * register envelope, without an id. Returns its content.body, the
 * connection id (malloc'd). */
char *h_ck_sse_open(struct sse *c, int port, const char *path, const char *headers, int timeout_ms);

/* FCALL notify_publish of the envelope {"t", body} to account's history
 * (retried while the gateway has not loaded the library yet), asserting
 * success; returns the id (malloc'd). */
char *h_ck_publish_history(const struct h_redis *r, const char *account, const char *body);

/* ---- JWT ---------------------------------------------------------------- */

/* Mints a token with claim sub (omitted if NULL) and exp (Unix seconds;
 * omitted if exp == 0), signed HS256 with secret, or with alg "none" and no
 * signature if secret is NULL. Returns a malloc'd string or NULL. */
char *h_jwt_hs256(const char *secret, const char *sub, long long exp);

/* ---- Check tests -----------------------------------------------------------
 *
 * For test programs built on Check. The h_ck_* functions fail the running
 * test (ck_assert) instead of returning an error, so call them only inside
 * a test or a checked fixture. */

/* Checked-fixture setup of the usual test: clears g (not started yet) and
 * starts r. */
void h_ck_setup(struct h_redis *r, struct h_gw *g);

/* Its teardown: kills g (if it was started) and stops r; then asserts that
 * g's stderr holds no sanitizer report (AddressSanitizer, UBSan "runtime
 * error:") and, if g->must_survive, that g was still running. */
void h_ck_teardown(struct h_redis *r, struct h_gw *g);

/* h_gw_startl asserting that the gateway started; sets g->must_survive.
 * The extra flags are NULL-terminated: H_GW adds the NULL. */
void h_ck_gw_startl(struct h_gw *g, const struct h_redis *r, ...);
#define H_GW(g, r, ...) h_ck_gw_startl((g), (r), __VA_ARGS__, (const char *)NULL)

/* Parses text as JSON, asserting it is an object (json_decref it). */
json_t *h_ck_json_obj(const char *text);

/* The string member key of obj, NULL if absent or not a string (or obj is
 * NULL). */
const char *h_jstr(json_t *obj, const char *key);

/* h_metric_sum of name in GET /metrics of the gateway on port, asserting
 * the answer is 200. */
double h_ck_metric(int port, const char *name);

/* Connects c to port at path (e.g. "/ws?user_id=u1"), asserts 101 and that
 * the first text message, within timeout_ms, is a register reply (a JSON
 * object with "type":"register"). Returns its content.body, the connection
 * id (malloc'd; NULL if it is not a string). */
char *h_ck_ws_open(struct ws *c, int port, const char *path, int timeout_ms);

/* Checks that text is an envelope of the given type, content.body and
 * content.meta_data strings; returns the parsed object (json_decref it). */
json_t *h_ck_envelope(const char *text, const char *type);

/* Reads the register reply of a fresh connection (within 5 s) and checks
 * that its meta_data names account; returns the connection id (malloc'd). */
char *h_ck_expect_register(struct ws *c, const char *account);

/* Connects c to port as account ("/ws?user_id=<account>", --auth none),
 * asserts 101 and reads the register reply (h_ck_expect_register). */
void h_ck_open_as(struct ws *c, int port, const char *account);

/* h_ck_ws_open of "/ws?user_id=<account>", with "&since=<since>" unless
 * since is NULL; the register reply within timeout_ms. */
void h_ck_open_client(struct ws *c, int port, const char *account, const char *since,
                      int timeout_ms);

/* A text message as a test reads it: the text and its JSON object. */
struct h_msg {
    char *text; /* malloc'd */
    json_t *j;  /* the parsed object */
};

/* The next text message within timeout_ms, asserted to be a JSON object:
 * 1, or 0 if none came (timeout, close). */
int h_msg_recv(struct ws *c, struct h_msg *m, int timeout_ms);
void h_msg_free(struct h_msg *m);

/* Its "type" and "content"."body" (NULL when absent or not strings). */
const char *h_msg_type(const struct h_msg *m);
const char *h_msg_body(const struct h_msg *m);

/* Asserts that no text message arrives on c within ms (who names the
 * client in the failure); with stays_open, also that the connection is
 * still open then (no close frame, no EOF). */
void h_ck_quiet(struct ws *c, const char *who, int ms, int stays_open);

/* PUBLISH of the envelope {type, body} to account's channel (h_chan);
 * returns the number of receivers (-1 on error). */
long long h_publish(const struct h_redis *r, const char *account, const char *type,
                    const char *body);

/* h_publish of a "notification", asserting that exactly one gateway
 * received it (it was subscribed). */
void h_ck_publish(const struct h_redis *r, const char *account, const char *body);

/* PUBLISH of payload[0..len) to channel, asserting exactly one receiver. */
void h_ck_publish_raw(const struct h_redis *r, const char *channel, const char *payload,
                      size_t len);

/* ZCOUNT of account's presence set from now (ms) to +inf: its live
 * connections; -1 on error. */
long long h_presence_live(const struct h_redis *r, const char *account);

/* Members of account's presence set that belong to node (rnames.h's
 * "<node id>/<conn id>"). */
long long h_presence_members_of(const struct h_redis *r, const char *account, const char *node);

/* Adds a test case name to s with timeout_s seconds per test and the
 * checked fixture setup / teardown (none if both are NULL). */
TCase *h_tcase(Suite *s, const char *name, double timeout_s, void (*setup)(void),
               void (*teardown)(void));

/* Runs every test of s (CK_NORMAL output), frees the runner; for main():
 * EXIT_SUCCESS if none failed, else EXIT_FAILURE. */
int h_run_suite(Suite *s);

#endif
