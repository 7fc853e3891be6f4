#include "deliver.h"

#include <stdio.h>

#include "history.h"
#include "jsoncheck.h"
#include "log.h"
#include "server.h"
#include "wallclock.h"

/* Returns 1 when the payload may be forwarded; counts and (rate-limited)
 * logs it otherwise. */
static int payload_ok(struct server *srv, const char *account, size_t account_len,
                      const char *payload, size_t len)
{
    const char *reason;
    srv->metrics.received++;
    if (jsoncheck_object(payload, len, &reason))
        return 1;
    srv->metrics.dropped[DROP_INVALID_PAYLOAD]++;
    uint64_t now = uv_now(&srv->loop);
    if (srv->invalid_logged_at && now - srv->invalid_logged_at < 1000) {
        srv->invalid_unlogged++;
        return 0;
    }
    char where[ACCOUNT_ID_MAX + 1], q[ACCOUNT_ID_MAX + 8], r[96];
    snprintf(where, sizeof(where), "%.*s", (int)account_len, account ? account : "");
    log_warn("invalid_payload_dropped", "account=%s reason=%s bytes=%zu suppressed=%llu",
             account ? log_quote(q, sizeof(q), where) : "(broadcast)",
             log_quote(r, sizeof(r), reason), len, (unsigned long long)srv->invalid_unlogged);
    srv->invalid_logged_at = now;
    srv->invalid_unlogged = 0;
    return 0;
}

/* One recipient: held while a replay of it is in flight, else queued
 * (skipped when a replay sent it already). */
static void deliver_to(struct server *srv, struct session *s, struct frame *f)
{
    if (!history_hold(srv, s, f))
        session_deliver(s, f);
}

void deliver_account(struct server *srv, const char *account, size_t account_len,
                     const char *payload, size_t len)
{
    if (!payload_ok(srv, account, account_len, payload, len))
        return;
    struct account *a = registry_find_account(&srv->registry, account, account_len);
    if (!a)
        return; /* unsubscribed a moment ago */
    struct frame *f = frame_new(payload, len);
    if (!f) {
        srv->metrics.dropped[DROP_NO_MEMORY]++;
        return;
    }
    f->arrived_ns = uv_hrtime();
    if (stream_id_from_payload(payload, len, &f->id) == 0)
        f->has_id = 1;
    if (stream_expiry_from_payload(payload, len, &f->expires_ms) < 0)
        f->expires_ms = 0;
    if (f->expires_ms && wallclock_ms() >= f->expires_ms) {
        srv->metrics.expired++; /* past its ttl on arrival (README.md "Expiry") */
        frame_unref(f);
        return;
    }
    struct session *s, *next;
    /* Delivering may close s (slow consumer) but never unlinks it here:
     * closing only queues a close frame; the socket goes later. */
    for (s = a->conns; s; s = next) {
        next = s->acct_next;
        deliver_to(srv, s, f);
    }
    frame_unref(f);
}

void deliver_broadcast(struct server *srv, const char *payload, size_t len)
{
    if (!payload_ok(srv, NULL, 0, payload, len))
        return;
    struct frame *f = frame_new(payload, len);
    if (!f) {
        srv->metrics.dropped[DROP_NO_MEMORY]++;
        return;
    }
    f->arrived_ns = uv_hrtime();
    struct session *s, *tmp;
    HASH_ITER(hh, srv->registry.by_id, s, tmp)
    {
        deliver_to(srv, s, f);
    }
    frame_unref(f);
}
