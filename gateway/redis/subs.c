/* subs: the node set's subscription table, and what its subscriber
 * connections read (redis.h, nodeset.h).
 *
 * One entry per channel this node wants: each account present here, and
 * the broadcast channel (account ""). An entry records the primary its
 * SUBSCRIBE went to and whether that primary acknowledged it. It costs
 * every idle connection of its own account, so it is kept small: open
 * addressing over entry pointers (uthash's 56-byte handle per entry would
 * be a tenth of what an idle connection costs), and entries (their
 * account and 7 bytes) cut from blocks in 16-byte steps (malloc gives no
 * chunk under 32 bytes). */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "nodeset.h"
#include "rnames.h"

/* Channels named in one SUBSCRIBE or UNSUBSCRIBE. A cluster's SSUBSCRIBE
 * names one: the channels of one command must share a slot. */
#define SUB_BATCH 1000
/* The flush of (un)subscribe requests waits this long to batch them. */
#define FLUSH_DELAY_MS 1

enum {
    SUB_ACKED = 1,   /* the primary confirmed it */
    SUB_QUEUED = 2,  /* in the flush queue */
    SUB_LEAVING = 4, /* to unsubscribe at the flush */
    SUB_WAITED = 8,  /* readiness waits for its acknowledgement */
    SUB_STALE = 16,  /* sent and unacknowledged at the last health check */
    SUB_DEAD = 32,   /* out of the table; freed by the flush that holds it */
    SUB_OLD = 64,    /* ... and at the one before */
    SUB_AGED = SUB_STALE | SUB_OLD,
};

struct redis_sub {
    uint32_t hash;  /* of account */
    int8_t node;    /* index its SUBSCRIBE went to; -1 = not sent */
    uint8_t flags;  /* SUB_* */
    uint8_t len;    /* account's length (ids are at most 128 bytes) */
    char account[]; /* NUL-terminated; "" = the broadcast channel */
};

/* ---- entries' memory ---- */

#define CELL_STEP 16
#define CELL_CLASSES 9 /* up to 144 bytes: 7 + 128 + 1 for the longest account */
#define BLOCK_BYTES 4096

struct cell {
    struct cell *next; /* a free cell of its class */
};

#if defined(__SANITIZE_ADDRESS__)
/* Under AddressSanitizer each entry is an allocation of its own, so that
 * a use after free is caught. */
static struct redis_sub *cell_alloc(struct redis_subs *s, size_t len)
{
    (void)s;
    return malloc(offsetof(struct redis_sub, account) + len + 1);
}

static void cell_free(struct redis_subs *s, struct redis_sub *e)
{
    (void)s;
    free(e);
}

static void cells_free_all(struct redis_subs *s)
{
    for (size_t i = 0; i < s->n_queue; i++)
        if (s->queue[i]->flags & SUB_DEAD) /* in no table slot */
            free(s->queue[i]);
    for (uint32_t i = 0; i < s->cap; i++)
        free(s->slots[i]);
}
#else
static size_t cell_class(size_t len)
{
    size_t size = offsetof(struct redis_sub, account) + len + 1;
    return (size + CELL_STEP - 1) / CELL_STEP - 1;
}

static struct redis_sub *cell_alloc(struct redis_subs *s, size_t len)
{
    size_t c = cell_class(len), size = (c + 1) * CELL_STEP;
    if (c >= CELL_CLASSES)
        return NULL;
    if (!s->free_cells[c]) {
        if (s->n_blocks == s->cap_blocks) {
            size_t cap = s->cap_blocks ? s->cap_blocks * 2 : 16;
            void **bigger = realloc(s->blocks, cap * sizeof(*bigger));
            if (!bigger)
                return NULL;
            s->blocks = bigger;
            s->cap_blocks = cap;
        }
        char *b = malloc(BLOCK_BYTES);
        if (!b)
            return NULL;
        s->blocks[s->n_blocks++] = b;
        for (size_t off = 0; off + size <= BLOCK_BYTES; off += size) {
            struct cell *cell = (struct cell *)(void *)(b + off);
            cell->next = s->free_cells[c];
            s->free_cells[c] = cell;
        }
    }
    struct cell *cell = s->free_cells[c];
    s->free_cells[c] = cell->next;
    return (struct redis_sub *)(void *)cell;
}

static void cell_free(struct redis_subs *s, struct redis_sub *e)
{
    size_t c = cell_class(e->len);
    struct cell *cell = (struct cell *)(void *)e;
    cell->next = s->free_cells[c];
    s->free_cells[c] = cell;
}

static void cells_free_all(struct redis_subs *s)
{
    for (size_t i = 0; i < s->n_blocks; i++)
        free(s->blocks[i]);
    free(s->blocks);
}
#endif

/* ---- the table ---- */

static uint32_t hash_of(const char *s, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static struct redis_sub *find(const struct redis_subs *s, const char *account, size_t len)
{
    if (!s->cap)
        return NULL;
    uint32_t h = hash_of(account, len), mask = s->cap - 1;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        struct redis_sub *e = s->slots[i];
        if (!e)
            return NULL;
        if (e->hash == h && e->len == len && !memcmp(e->account, account, len))
            return e;
    }
}

static void put(struct redis_subs *s, struct redis_sub *e)
{
    uint32_t mask = s->cap - 1, i = e->hash & mask;
    while (s->slots[i])
        i = (i + 1) & mask;
    s->slots[i] = e;
}

static int insert(struct redis_subs *s, struct redis_sub *e)
{
    if ((s->n + 1) * 4 > s->cap * 3) { /* over three quarters full: double */
        uint32_t cap = s->cap ? s->cap * 2 : 64;
        struct redis_sub **old = s->slots;
        uint32_t old_cap = s->cap;
        s->slots = calloc(cap, sizeof(*s->slots));
        if (!s->slots) {
            s->slots = old;
            return -1;
        }
        s->cap = cap;
        for (uint32_t i = 0; i < old_cap; i++)
            if (old[i])
                put(s, old[i]);
        free(old);
    }
    put(s, e);
    s->n++;
    return 0;
}

/* Takes e out of the table, moving back the entries that probed past it
 * so that no search stops early (no tombstones). */
static void take_out(struct redis_subs *s, struct redis_sub *e)
{
    uint32_t mask = s->cap - 1, i = e->hash & mask;
    while (s->slots[i] != e)
        i = (i + 1) & mask;
    s->slots[i] = NULL;
    for (uint32_t j = (i + 1) & mask; s->slots[j]; j = (j + 1) & mask) {
        uint32_t home = s->slots[j]->hash & mask;
        /* slots[j] may stay unless its home lies cyclically in (i, j] */
        int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            s->slots[i] = s->slots[j];
            s->slots[j] = NULL;
            i = j;
        }
    }
    s->n--;
}

/* ---- an entry's state ---- */

static int channel_of(const struct redis_link *l, const struct redis_sub *e, char *buf, size_t size)
{
    if (!e->len) {
        memcpy(buf, l->bcast, l->bcast_len + 1);
        return (int)l->bcast_len;
    }
    return rnames_account_channel(buf, size, l->cfg->redis_prefix, e->account);
}

static int owner_of(const struct redis_link *l, const struct redis_sub *e)
{
    if (!l->cluster)
        return 0;
    char name[RNAME_MAX];
    int len = channel_of(l, e, name, sizeof(name));
    return len < 0 ? -1 : l->slot_node[keyslot(name, (size_t)len)];
}

static struct redis_node *owner_up(const struct redis_link *l, const struct redis_sub *e)
{
    int owner = owner_of(l, e);
    struct redis_node *n = owner >= 0 ? l->nodes[owner] : NULL;
    return n && n->sub_ok ? n : NULL;
}

static void set_acked(struct redis_link *l, struct redis_sub *e)
{
    struct redis_subs *s = &l->subs;
    e->flags = (uint8_t)((e->flags | SUB_ACKED) & ~SUB_AGED);
    s->n_unacked--;
    if (e->len)
        s->n_acked++;
    if (e->flags & SUB_WAITED) {
        e->flags &= (uint8_t)~SUB_WAITED;
        s->n_waited--;
    }
}

/* e's subscription is gone from its primary; on_lost if it was live. */
static void set_unsent(struct redis_link *l, struct redis_sub *e)
{
    e->node = -1;
    e->flags &= (uint8_t)~SUB_AGED;
    if (!(e->flags & SUB_ACKED))
        return;
    e->flags &= (uint8_t)~SUB_ACKED;
    l->subs.n_unacked++;
    if (!e->len)
        return;
    l->subs.n_acked--;
    if (l->ev.on_lost)
        l->ev.on_lost(l->ev.data, e->account, e->len);
}

static void set_waited(struct redis_link *l, struct redis_sub *e)
{
    if (!(e->flags & (SUB_WAITED | SUB_ACKED))) {
        e->flags |= SUB_WAITED;
        l->subs.n_waited++;
    }
}

/* Out of the table and the counts; freed unless a queue still holds it. */
static void forget(struct redis_link *l, struct redis_sub *e)
{
    struct redis_subs *s = &l->subs;
    take_out(s, e);
    if (e->flags & SUB_ACKED) {
        if (e->len)
            s->n_acked--;
    } else {
        s->n_unacked--;
    }
    if (e->flags & SUB_WAITED)
        s->n_waited--;
    if (e->flags & SUB_QUEUED)
        e->flags = SUB_QUEUED | SUB_DEAD;
    else
        cell_free(s, e);
}

/* ---- writing (UN)SUBSCRIBEs ---- */

static void batch_close(struct redis_link *l, struct redis_node *n)
{
    if (!n->batch_n)
        return;
    static const char *const verbs[2][2] = {{"UNSUBSCRIBE", "SUBSCRIBE"},
                                            {"SUNSUBSCRIBE", "SSUBSCRIBE"}};
    const char *verb = verbs[l->cluster ? 1 : 0][n->batch_subscribe];
    respbuf_header(&n->out, '*', n->batch_n + 1);
    respbuf_arg(&n->out, verb, strlen(verb));
    respbuf_put(&n->out, n->batch.p, n->batch.len);
    if (n->batch.failed)
        n->out.failed = 1;
    respbuf_reset(&n->batch);
    n->batch_n = 0;
}

/* Adds e's channel to the command being built for n; consecutive
 * channels of the same verb share one command. */
static int emit(struct redis_link *l, struct redis_node *n, int subscribe,
                const struct redis_sub *e)
{
    char name[RNAME_MAX];
    int len = channel_of(l, e, name, sizeof(name));
    if (len < 0)
        return -1;
    if (n->batch_n && (n->batch_subscribe != subscribe || n->batch_n == SUB_BATCH || l->cluster))
        batch_close(l, n);
    n->batch_subscribe = subscribe;
    respbuf_arg(&n->batch, name, (size_t)len);
    n->batch_n++;
    return 0;
}

/* Writes what emit built, one buffer per primary, past hiredis: through
 * hiredis, formatting the command, an sds and a table entry per channel
 * and a reply tree per confirmation were a large share of a connect and of
 * an idle connection's memory (BENCHMARKS.md). */
static void send_all(struct redis_link *l)
{
    for (int i = 0; i < REDIS_MAX_NODES; i++) {
        struct redis_node *n = l->nodes[i];
        if (!n)
            continue;
        batch_close(l, n);
        if (!n->out.len)
            continue;
        if (!n->sub || n->out.failed || redis_uv_send_raw(n->sub, n->out.p, n->out.len) < 0)
            log_error("redis_subscribe_failed", "node=%s:%d bytes=%zu", n->host, n->port,
                      n->out.len);
        respbuf_reset(&n->out);
    }
}

/* Sends e where the map says it belongs, unsubscribing it from where it
 * was when that changed. waited: readiness waits for it. */
static void place(struct redis_link *l, struct redis_sub *e, int waited)
{
    int owner = owner_of(l, e);
    if (e->node >= 0 && e->node != owner) {
        struct redis_node *old = l->nodes[e->node];
        if (old && old->sub_ok)
            emit(l, old, 0, e);
        set_unsent(l, e);
    }
    if (e->node >= 0)
        return;
    if (waited)
        set_waited(l, e);
    struct redis_node *n = owner >= 0 ? l->nodes[owner] : NULL;
    if (n && n->sub_ok && emit(l, n, 1, e) == 0)
        e->node = (int8_t)owner;
}

static void on_flush(uv_timer_t *t)
{
    struct redis_link *l = t->data;
    struct redis_subs *s = &l->subs;
    /* In request order; a subscribe and an unsubscribe of one account
     * meanwhile cancelled out (the entry's flags say what is left). */
    for (size_t i = 0; i < s->n_queue; i++) {
        struct redis_sub *e = s->queue[i];
        e->flags &= (uint8_t)~SUB_QUEUED;
        if (e->flags & SUB_DEAD) {
            cell_free(s, e);
        } else if (e->flags & SUB_LEAVING) {
            struct redis_node *n = e->node >= 0 ? l->nodes[e->node] : NULL;
            if (n && n->sub_ok)
                emit(l, n, 0, e);
            forget(l, e);
        } else {
            place(l, e, 0);
        }
    }
    s->n_queue = 0;
    send_all(l);
}

static int enqueue(struct redis_link *l, struct redis_sub *e)
{
    struct redis_subs *s = &l->subs;
    if (e->flags & SUB_QUEUED)
        return 0;
    if (s->n_queue == s->cap_queue) {
        size_t cap = s->cap_queue ? s->cap_queue * 2 : 256;
        struct redis_sub **bigger = realloc(s->queue, cap * sizeof(*bigger));
        if (!bigger)
            return -1;
        s->queue = bigger;
        s->cap_queue = cap;
    }
    s->queue[s->n_queue++] = e;
    e->flags |= SUB_QUEUED;
    if (!uv_is_active((uv_handle_t *)&l->flush_timer))
        uv_timer_start(&l->flush_timer, on_flush, FLUSH_DELAY_MS, 0);
    return 0;
}

/* ---- the redis.h interface ---- */

static struct redis_sub *add(struct redis_link *l, const char *account, size_t len)
{
    struct redis_sub *e = cell_alloc(&l->subs, len);
    if (!e)
        return NULL;
    e->hash = hash_of(account, len);
    e->node = -1;
    e->flags = 0;
    e->len = (uint8_t)len;
    memcpy(e->account, account, len + 1);
    if (insert(&l->subs, e) < 0) {
        cell_free(&l->subs, e);
        return NULL;
    }
    l->subs.n_unacked++;
    return e;
}

int redis_link_subscribe(struct redis_link *l, const char *account)
{
    size_t len = strlen(account);
    if (!len || len > UINT8_MAX || l->stopped)
        return -1;
    struct redis_sub *e = find(&l->subs, account, len);
    if (e) {
        e->flags &= (uint8_t)~SUB_LEAVING; /* an unsubscribe not sent yet is cancelled */
        if (e->flags & SUB_ACKED)
            return 1;
        return e->node >= 0 || owner_up(l, e) ? 0 : -1;
    }
    e = add(l, account, len);
    if (!e || enqueue(l, e) < 0) {
        if (e)
            forget(l, e);
        log_error("out_of_memory", "where=subscribe account=%s", account);
        return -1;
    }
    return owner_up(l, e) ? 0 : -1;
}

void redis_link_unsubscribe(struct redis_link *l, const char *account)
{
    size_t len = strlen(account);
    struct redis_sub *e = len ? find(&l->subs, account, len) : NULL;
    if (!e)
        return;
    if (e->node < 0 && !(e->flags & SUB_QUEUED)) {
        forget(l, e); /* never sent */
        return;
    }
    e->flags |= SUB_LEAVING;
    if (enqueue(l, e) < 0) {
        struct redis_node *n = e->node >= 0 ? l->nodes[e->node] : NULL;
        if (n && n->sub_ok)
            emit(l, n, 0, e);
        forget(l, e);
        send_all(l);
    }
}

uint32_t redis_link_subscribed(const struct redis_link *l)
{
    return l->subs.n_acked;
}

int redis_link_ready(const struct redis_link *l)
{
    return l->up && l->subs.n_waited == 0;
}

/* ---- for nodeset.c ---- */

int subs_init(struct redis_link *l)
{
    if (uv_timer_init(l->loop, &l->flush_timer) < 0)
        return -1;
    l->flush_timer.data = l;
    return add(l, "", 0) ? 0 : -1;
}

void subs_free(struct redis_link *l)
{
    struct redis_subs *s = &l->subs;
    cells_free_all(s);
    free(s->slots);
    free(s->queue);
    memset(s, 0, sizeof(*s));
    uv_close((uv_handle_t *)&l->flush_timer, NULL);
}

void subs_node_lost(struct redis_link *l, int index)
{
    struct redis_subs *s = &l->subs;
    for (uint32_t i = 0; i < s->cap; i++)
        if (s->slots[i] && s->slots[i]->node == index)
            set_unsent(l, s->slots[i]);
}

void subs_place_all(struct redis_link *l)
{
    struct redis_subs *s = &l->subs;
    for (uint32_t i = 0; i < s->cap; i++)
        if (s->slots[i] && !(s->slots[i]->flags & SUB_LEAVING))
            place(l, s->slots[i], 1);
    send_all(l);
}

int subs_health(struct redis_link *l)
{
    struct redis_subs *s = &l->subs;
    if (!s->n_unacked)
        return 0;
    int missing = 0;
    for (uint32_t i = 0; i < s->cap; i++) {
        struct redis_sub *e = s->slots[i];
        if (!e || (e->flags & (SUB_ACKED | SUB_LEAVING)))
            continue;
        if (e->node >= 0) {
            /* One Redis answers every SUBSCRIBE in order, or fails the
             * connection: nothing to resend, even when a resync of many
             * channels takes long. */
            if (!l->cluster)
                continue;
            if ((e->flags & SUB_AGED) != SUB_AGED) {
                e->flags |= (e->flags & SUB_STALE) ? SUB_OLD : SUB_STALE;
                continue;
            }
            e->node = -1; /* unacknowledged for 2 to 3 s: sent again */
        }
        place(l, e, 1);
        if (e->node < 0)
            missing = 1;
        else
            e->flags &= (uint8_t)~SUB_AGED;
    }
    send_all(l);
    return missing;
}

/* ---- what a subscriber connection reads ---- */

static struct redis_sub *by_channel(const struct redis_link *l, const char *chan, size_t len)
{
    const char *account;
    size_t alen;
    if (len == l->bcast_len && !memcmp(chan, l->bcast, len))
        return find(&l->subs, "", 0);
    if (rnames_parse_account_channel(chan, len, l->cfg->redis_prefix, &account, &alen))
        return find(&l->subs, account, alen);
    return NULL;
}

int subs_on_confirm(struct redis_link *l, int index, const struct resp_confirmation *c)
{
    struct redis_sub *e = by_channel(l, c->channel, c->channel_len);
    if (!e || e->node != index)
        return 0; /* unsubscribed meanwhile, or sent elsewhere since */
    if (c->subscribe) {
        if (e->flags & SUB_ACKED)
            return 0;
        set_acked(l, e);
        if (e->len && l->ev.on_subscribed)
            l->ev.on_subscribed(l->ev.data, e->account, e->len);
        return 1;
    }
    if (!(e->flags & SUB_ACKED) || (e->flags & SUB_LEAVING))
        return 0;
    /* Not asked for (ours confirm an entry that is leaving or gone, or come
     * before its new subscribe's confirmation): the primary gave the slot
     * away (resharding, failover). */
    const struct redis_node *n = l->nodes[index];
    log_info("cluster_slot_moved", "node=%s:%d slot=%u", n->host, n->port,
             keyslot(c->channel, c->channel_len));
    set_unsent(l, e);
    return -1;
}
