/*
 * One real shard thread, driven without sockets: jobs go in through
 * rc_shard_submit, outbatches come back on an io outbound ring that this
 * test drains as an io thread would (src/net/io.c deliver_batch: void frames
 * skipped). Storage is a fake rc_persist_ops kept in memory, so the test
 * sees every batch the shard commits and can make a commit fail.
 *
 * Covers: group commit of a join and a send, retries of a failed commit
 * (a store that recovers within RC_POISON_ATTEMPTS tries loses nothing),
 * undo of a commit that failed every try (seqs given back, frames voided,
 * E_INTERNAL per send, one `poison` letter per send, caught by a fake
 * rc_letter_sink), a dup of a send undone in the same tick, rising snapshot
 * versions, recovery (adopt, lazy history load, join since, dedup against
 * stored mids), and redelivery of replayed slow_consumer letters.
 */
#define _GNU_SOURCE /* memmem */
#include "core/shard.h"

#include <CUnit/CUnit.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/dispatch.h"
#include "core/persist.h"
#include "core/ring.h"
#include "testutil.h"

#define OUT_RING_CAP 4096u     /* the io thread's outbound ring */
#define SHARD_RING_CAP 1024u   /* the shard's inbound ring */
#define WAIT_MS 3000u          /* longest wait for one reply */
#define POLL_SLEEP_NS 100000L  /* between empty polls of the outbound ring */
#define OUT_BURST 64u          /* outbatches taken at once */
#define TEXT_MAX 256u          /* copied strings of a decoded frame */
#define SNAP_ZONE 4096u
#define SNAP_MEMBERS_MAX 8u
#define TS_AGE_MS 60000u      /* recovered messages were sent this long ago */
#define RECOVERED_LAST_SNAP 5u /* the recovered snapshot's last_seq */
#define RECOVERED_NEWEST 7u    /* newest stored seq of the recovered group */
#define RECOVERED_VERSION 3u

static const rc_shard_limits LIMITS = {
    .history_max = 100,
    .dedup_window = 100,
    .max_members_per_group = 1000,
    .snapshot_every = 1000,          /* no message-driven snapshots in these tests */
    .snapshot_interval_ms = 600000,
    .history_ttl_ms = UINT64_C(7) * 24 * 3600 * 1000, /* the config default, 7 days */
};

/* Asserts cond; when it fails the test leaves through its `out` label, so
 * the shard thread is still stopped and everything freed. */
#define CHECK_OR_OUT(cond)                                                        \
    do {                                                                          \
        bool ok_ = (cond);                                                        \
        CU_assertImplementation(ok_, __LINE__, #cond, __FILE__, "", CU_FALSE);    \
        if (!ok_)                                                                 \
            goto out;                                                             \
    } while (0)

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "test_shard: out of memory\n");
        abort();
    }
    return p;
}

static void *xgrow(void *p, uint32_t *cap, uint32_t n, size_t elem)
{
    if (n < *cap)
        return p;
    uint32_t c = *cap ? *cap * 2 : 16;
    void *q = realloc(p, c * elem);
    if (!q) {
        fprintf(stderr, "test_shard: out of memory\n");
        abort();
    }
    *cap = c;
    return q;
}

static uint8_t *xdup(const void *p, uint32_t len)
{
    uint8_t *q = xcalloc(1, len);
    memcpy(q, p, len);
    return q;
}

/* ------------------------------------------------------------------ */
/* The fake store                                                       */
/* ------------------------------------------------------------------ */

enum { OP_MSG, OP_GROUP, OP_TRIM, OP_MEMBER, OP_READ };

/* One write: a history entry, a group snapshot or a retention delete. */
typedef struct fake_op {
    int kind;
    char g[RC_MAX_GROUP + 1];
    uint32_t g_len;
    uint64_t seq;        /* OP_MSG: seq; OP_TRIM: before */
    uint8_t *bytes;      /* OP_MSG: the msg map; OP_GROUP: the snapshot */
    uint32_t len;
} fake_op;

struct rc_persist_batch {
    fake_op *ops;
    uint32_t n, cap;
    rc_durability d;
};

/* Everything the fake stores. Shard thread and test thread both touch it,
 * so every access goes through mu. */
struct rc_persist {
    pthread_mutex_t mu;
    atomic_bool fail;                    /* the next commits fail while set */
    atomic_uint fail_next;               /* ... and this many more after that */
    struct rc_persist_batch **commits;   /* committed batches, in order */
    uint32_t n_commits, cap_commits;
    uint32_t n_failed, n_aborted, n_begun;
    fake_op *msgs;                       /* stored history (OP_MSG) */
    uint32_t n_msgs, cap_msgs;
    fake_op *snaps;                      /* every snapshot written, in order (OP_GROUP) */
    uint32_t n_snaps, cap_snaps;
};

static bool op_is(const fake_op *o, const char *g, uint32_t g_len)
{
    return o->g_len == g_len && memcmp(o->g, g, g_len) == 0;
}

static fake_op op_make(int kind, const char *g, uint32_t g_len, uint64_t seq, const uint8_t *p, uint32_t len)
{
    fake_op o = { .kind = kind, .g_len = g_len, .seq = seq, .len = len };
    memcpy(o.g, g, g_len < RC_MAX_GROUP ? g_len : RC_MAX_GROUP);
    o.bytes = p ? xdup(p, len) : NULL;
    return o;
}

static void batch_push(struct rc_persist_batch *b, fake_op o)
{
    b->ops = xgrow(b->ops, &b->cap, b->n, sizeof(*b->ops));
    b->ops[b->n++] = o;
}

static void batch_free(struct rc_persist_batch *b)
{
    if (!b)
        return;
    for (uint32_t i = 0; i < b->n; i++)
        free(b->ops[i].bytes);
    free(b->ops);
    free(b);
}

static rc_persist_batch *fake_begin(rc_persist *p)
{
    pthread_mutex_lock(&p->mu);
    p->n_begun++;
    pthread_mutex_unlock(&p->mu);
    return xcalloc(1, sizeof(struct rc_persist_batch));
}

/* The fake's tag: the id's bytes folded into RC_PERSIST_TAG_BYTES. A put
 * with a tag that is not its group's stops the test: the shard must hand
 * every message the tag of its own group. */
static void fake_group_tag(const char *g, uint32_t g_len, uint8_t *tag)
{
    memset(tag, 0x5a, RC_PERSIST_TAG_BYTES);
    for (uint32_t i = 0; i < g_len; i++)
        tag[i % RC_PERSIST_TAG_BYTES] = (uint8_t)(tag[i % RC_PERSIST_TAG_BYTES] * 31u + (uint8_t)g[i]);
}

static void fake_check_tag(const char *g, uint32_t g_len, const uint8_t *tag)
{
    uint8_t want[RC_PERSIST_TAG_BYTES];
    fake_group_tag(g, g_len, want);
    if (tag && memcmp(tag, want, sizeof(want)) != 0) {
        fprintf(stderr, "history put of group %.*s with another group's tag\n", (int)g_len, g);
        abort();
    }
}

static void fake_put_msg(rc_persist_batch *b, const char *g, uint32_t g_len, const uint8_t *tag, uint64_t seq,
                         const uint8_t *map, uint32_t len)
{
    fake_check_tag(g, g_len, tag);
    batch_push(b, op_make(OP_MSG, g, g_len, seq, map, len));
}

static void fake_put_group(rc_persist_batch *b, const char *g, uint32_t g_len, const uint8_t *snap, uint32_t len)
{
    batch_push(b, op_make(OP_GROUP, g, g_len, 0, snap, len));
}

static void fake_trim(rc_persist_batch *b, const char *g, uint32_t g_len, const uint8_t *tag, uint64_t before)
{
    fake_check_tag(g, g_len, tag);
    batch_push(b, op_make(OP_TRIM, g, g_len, before, NULL, 0));
}

/* The per-user index and read cursors are recorded in the batch (the
 * shard's own tests look at messages and snapshots; the store's at these). */
static void fake_put_member(rc_persist_batch *b, const char *g, uint32_t g_len, const char *user, uint32_t user_len,
                            bool member)
{
    batch_push(b, op_make(OP_MEMBER, g, g_len, member, (const uint8_t *)user, user_len));
}

static void fake_put_read(rc_persist_batch *b, const char *g, uint32_t g_len, const char *user, uint32_t user_len,
                          uint64_t seq)
{
    batch_push(b, op_make(OP_READ, g, g_len, seq, (const uint8_t *)user, user_len));
}

static int fake_get_read(rc_persist *p, const char *g, uint32_t g_len, const char *user, uint32_t user_len,
                         uint64_t *seq, char *err, size_t errlen)
{
    (void)p, (void)g, (void)g_len, (void)user, (void)user_len, (void)err, (void)errlen;
    *seq = 0;
    return 0;
}

/* Stored entry of (g, seq) or NULL; caller holds mu. */
static fake_op *store_find(rc_persist *p, const char *g, uint32_t g_len, uint64_t seq)
{
    for (uint32_t i = 0; i < p->n_msgs; i++)
        if (p->msgs[i].seq == seq && op_is(&p->msgs[i], g, g_len))
            return &p->msgs[i];
    return NULL;
}

/* Applies one op to the stored state; caller holds mu. */
static void store_apply(rc_persist *p, const fake_op *o)
{
    if (o->kind == OP_MSG) {
        fake_op *e = store_find(p, o->g, o->g_len, o->seq);
        if (e) {
            free(e->bytes);
        } else {
            p->msgs = xgrow(p->msgs, &p->cap_msgs, p->n_msgs, sizeof(*p->msgs));
            e = &p->msgs[p->n_msgs++];
        }
        *e = op_make(OP_MSG, o->g, o->g_len, o->seq, o->bytes, o->len);
    } else if (o->kind == OP_GROUP) {
        p->snaps = xgrow(p->snaps, &p->cap_snaps, p->n_snaps, sizeof(*p->snaps));
        p->snaps[p->n_snaps++] = op_make(OP_GROUP, o->g, o->g_len, 0, o->bytes, o->len);
    } else if (o->kind == OP_TRIM) {
        for (uint32_t i = 0; i < p->n_msgs;) {
            if (op_is(&p->msgs[i], o->g, o->g_len) && p->msgs[i].seq < o->seq) {
                free(p->msgs[i].bytes);
                p->msgs[i] = p->msgs[--p->n_msgs];
            } else {
                i++;
            }
        }
    }
}

/* Takes one of the failures the test asked for with fail_next. */
static bool fail_one_more(rc_persist *p)
{
    unsigned n = atomic_load(&p->fail_next);
    while (n > 0 && !atomic_compare_exchange_weak(&p->fail_next, &n, n - 1))
        ;
    return n > 0;
}

static int fake_commit(rc_persist *p, rc_persist_batch *b, rc_durability d, char *err, size_t errlen)
{
    pthread_mutex_lock(&p->mu);
    if (atomic_load(&p->fail) || fail_one_more(p)) {
        p->n_failed++;
        pthread_mutex_unlock(&p->mu);
        batch_free(b);
        snprintf(err, errlen, "fake store: commit refused by the test");
        return -1;
    }
    b->d = d;
    for (uint32_t i = 0; i < b->n; i++)
        store_apply(p, &b->ops[i]);
    p->commits = xgrow(p->commits, &p->cap_commits, p->n_commits, sizeof(*p->commits));
    p->commits[p->n_commits++] = b; /* kept for inspection */
    pthread_mutex_unlock(&p->mu);
    return 0;
}

static void fake_abort(rc_persist_batch *b)
{
    batch_free(b);
}

/* The newest snapshot of each group, with its history's newest and oldest seq. */
static int fake_load_groups(rc_persist *p, rc_persist_group_fn fn, void *ud, char *err, size_t errlen)
{
    pthread_mutex_lock(&p->mu);
    int r = 0;
    for (uint32_t i = 0; i < p->n_snaps && r == 0; i++) {
        const fake_op *sn = &p->snaps[i];
        bool newest = true;
        for (uint32_t k = i + 1; k < p->n_snaps; k++)
            if (op_is(&p->snaps[k], sn->g, sn->g_len))
                newest = false;
        if (!newest)
            continue;
        rc_persist_group pg = { sn->g, sn->g_len, sn->bytes, sn->len, 0, 0 };
        for (uint32_t k = 0; k < p->n_msgs; k++) {
            const fake_op *m = &p->msgs[k];
            if (!op_is(m, sn->g, sn->g_len))
                continue;
            if (m->seq > pg.newest_seq)
                pg.newest_seq = m->seq;
            if (pg.oldest_seq == 0 || m->seq < pg.oldest_seq)
                pg.oldest_seq = m->seq;
        }
        r = fn(ud, &pg);
    }
    pthread_mutex_unlock(&p->mu);
    if (r != 0)
        snprintf(err, errlen, "fake store: load_groups callback stopped");
    return r ? -1 : 0;
}

static int fake_scan(rc_persist *p, const char *g, uint32_t g_len, uint64_t from, uint64_t to, uint32_t limit,
                     rc_persist_msg_fn fn, void *ud, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    pthread_mutex_lock(&p->mu);
    uint32_t n = 0;
    for (uint64_t seq = from; seq <= to && n < limit; seq++) {
        const fake_op *e = store_find(p, g, g_len, seq);
        if (!e)
            continue;
        n++;
        if (fn(ud, seq, e->bytes, e->len) != 0)
            break;
    }
    pthread_mutex_unlock(&p->mu);
    return 0;
}

static const rc_persist_ops FAKE_OPS = {
    .batch_begin = fake_begin,
    .group_tag = fake_group_tag,
    .put_msg = fake_put_msg,
    .put_group = fake_put_group,
    .trim_before = fake_trim,
    .batch_commit = fake_commit,
    .batch_abort = fake_abort,
    .load_groups = fake_load_groups,
    .scan = fake_scan,
    .put_member = fake_put_member,
    .put_read = fake_put_read,
    .get_read = fake_get_read,
};

static void fake_init(rc_persist *p)
{
    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->mu, NULL);
    atomic_init(&p->fail, false);
    atomic_init(&p->fail_next, 0);
}

static void fake_free(rc_persist *p)
{
    for (uint32_t i = 0; i < p->n_commits; i++)
        batch_free(p->commits[i]);
    for (uint32_t i = 0; i < p->n_msgs; i++)
        free(p->msgs[i].bytes);
    for (uint32_t i = 0; i < p->n_snaps; i++)
        free(p->snaps[i].bytes);
    free(p->commits);
    free(p->msgs);
    free(p->snaps);
    pthread_mutex_destroy(&p->mu);
}

/* Seqs stored for g, ascending, into out (at most max); returns how many. */
static uint32_t stored_seqs(rc_persist *p, const char *g, uint64_t *out, uint32_t max)
{
    uint32_t n = 0;
    pthread_mutex_lock(&p->mu);
    for (uint64_t seq = 1; n < max; seq++) {
        bool any_higher = false;
        for (uint32_t i = 0; i < p->n_msgs; i++)
            if (op_is(&p->msgs[i], g, (uint32_t)strlen(g)) && p->msgs[i].seq >= seq)
                any_higher = true;
        if (!any_higher)
            break;
        if (store_find(p, g, (uint32_t)strlen(g), seq))
            out[n++] = seq;
    }
    pthread_mutex_unlock(&p->mu);
    return n;
}

/* ------------------------------------------------------------------ */
/* The fake dead-letter sink                                            */
/* ------------------------------------------------------------------ */

/* One letter as the shard submitted it, strings copied. */
typedef struct fake_letter {
    rc_letter_reason reason;
    bool has_seq, body_is_str;
    uint64_t seq, ts;
    uint32_t attempts;
    char g[TEXT_MAX], from[TEXT_MAX], to[TEXT_MAX], mid[TEXT_MAX], body[TEXT_MAX], err[TEXT_MAX];
} fake_letter;

/* Shard thread submits, test thread reads: every access under mu. */
typedef struct fake_sink {
    pthread_mutex_t mu;
    atomic_bool refuse;  /* submit returns -1 while set (a full producer queue) */
    fake_letter *l;
    uint32_t n, cap;
} fake_sink;

static void copy_str(char *dst, rc_str s)
{
    uint32_t n = s.len < TEXT_MAX - 1 ? s.len : TEXT_MAX - 1;
    if (n)
        memcpy(dst, s.ptr, n);
    dst[n] = '\0';
}

static int fake_submit(void *self, const rc_letter *l)
{
    fake_sink *k = self;
    if (atomic_load(&k->refuse))
        return -1;
    pthread_mutex_lock(&k->mu);
    k->l = xgrow(k->l, &k->cap, k->n, sizeof(*k->l));
    fake_letter *x = &k->l[k->n++];
    *x = (fake_letter){ .reason = l->reason, .has_seq = l->has_seq, .body_is_str = l->body_is_str, .seq = l->seq,
                        .ts = l->ts, .attempts = l->attempts };
    copy_str(x->g, l->g);
    copy_str(x->from, l->from);
    copy_str(x->to, l->to);
    copy_str(x->mid, l->mid);
    copy_str(x->body, l->body);
    copy_str(x->err, l->err);
    pthread_mutex_unlock(&k->mu);
    return 0;
}

/* Letters received so far. */
static uint32_t letters_n(fake_sink *k)
{
    pthread_mutex_lock(&k->mu);
    uint32_t n = k->n;
    pthread_mutex_unlock(&k->mu);
    return n;
}

/* ------------------------------------------------------------------ */
/* Harness: one shard, one io outbound ring                             */
/* ------------------------------------------------------------------ */

/* One delivered frame, decoded and copied out. */
typedef struct got {
    rc_conn_id conn;
    rc_type type;
    uint32_t has;
    uint64_t rid, seq, ts;
    rc_err code;
    bool dup, lost;
    char g[TEXT_MAX], from[TEXT_MAX], mid[TEXT_MAX], body[TEXT_MAX];
    bool redeliver;      /* came in an RC_FRAME_REDELIVER frame ... */
    char to[TEXT_MAX];   /* ... naming this recipient */
    uint8_t *raw;        /* msg frames: the map bytes as delivered */
    uint32_t raw_len;
} got;

typedef struct harness {
    rc_ring *out;
    rc_waker waker;
    rc_ring *rings[1];
    rc_waker *wakers[1];
    rc_room room, *rooms[1];
    rc_outlets outlets;
    rc_persist store;
    fake_sink letters;
    rc_letter_sink sink;
    rc_shard s;
    bool started;
    rc_decoder dec;
    got *got;
    uint32_t n_got, cap_got;
    uint32_t n_void, n_refused, n_answered, n_bad;
} harness;

/* Records one encoded frame (p, len: length prefix included); a
 * redelivery also records its recipient. */
static void record_frame(harness *h, rc_conn_id conn, const uint8_t *p, uint32_t len, const rc_str *to)
{
    rc_msg m;
    const char *why = NULL;
    if (len < RC_FRAME_HEADER || rc_decode(&h->dec, p + RC_FRAME_HEADER, len - RC_FRAME_HEADER, &m, &why) != RC_OK) {
        h->n_bad++;
        return;
    }
    h->got = xgrow(h->got, &h->cap_got, h->n_got, sizeof(*h->got));
    got *x = &h->got[h->n_got++];
    memset(x, 0, sizeof(*x));
    x->conn = conn;
    x->type = m.type;
    x->has = m.has;
    x->rid = m.rid;
    x->seq = m.seq;
    x->ts = m.ts;
    x->code = m.code;
    x->dup = m.dup;
    x->lost = m.lost;
    copy_str(x->g, m.g);
    copy_str(x->from, m.from);
    copy_str(x->mid, m.mid);
    copy_str(x->body, m.body);
    if (to) {
        x->redeliver = true;
        copy_str(x->to, *to);
    }
    if (m.type == RC_T_MSG) {
        x->raw_len = len - RC_FRAME_HEADER;
        x->raw = xdup(p + RC_FRAME_HEADER, x->raw_len);
    }
}

/* A redelivery frame, recorded with its recipient. */
static void record_redelivery(harness *h, rc_conn_id conn, const rc_frame *f)
{
    rc_str to = rc_frame_redeliver_to(f);
    uint32_t len;
    const uint8_t *wire = rc_frame_redeliver_wire(f, &len);
    record_frame(h, conn, wire, len, &to);
}

/* As io.c deliver_batch: runs of one frame released with one unref_n, void
 * frames skipped, join-refused and answered instructions counted, redeliveries recorded
 * for every subscriber (the io thread's filter is not modelled here). */
static void consume_batch(harness *h, rc_outbatch *b)
{
    uint32_t i = 0;
    while (i < b->n) {
        rc_frame *f = b->d[i].frame;
        uint32_t k = i;
        for (; k < b->n && b->d[k].frame == f; k++) {
            if (f->kind == RC_FRAME_VOID)
                h->n_void++;
            else if (f->kind == RC_FRAME_JOIN_REFUSED)
                h->n_refused++;
            else if (f->kind == RC_FRAME_ANSWERED)
                h->n_answered++;
            else if (f->kind == RC_FRAME_REDELIVER)
                record_redelivery(h, b->d[k].conn, f);
            else
                record_frame(h, b->d[k].conn, f->data, f->len, NULL);
        }
        rc_frame_unref_n(f, k - i);
        i = k;
    }
    rc_outbatch_recycle(b);
}

/* Takes whatever the shard has sent; returns how many outbatches. */
static uint32_t poll_out(harness *h)
{
    rc_outbatch *bs[OUT_BURST];
    uint32_t n = rc_ring_dequeue_burst(h->out, (void **)bs, OUT_BURST);
    if (n)
        rc_room_taken(&h->room);
    for (uint32_t i = 0; i < n; i++)
        consume_batch(h, bs[i]);
    return n;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int find_got(const harness *h, uint32_t from, rc_type t, uint64_t rid)
{
    for (uint32_t i = from; i < h->n_got; i++)
        if (h->got[i].type == t && (h->got[i].has & RC_HAS_RID) && h->got[i].rid == rid)
            return (int)i;
    return -1;
}

/* Drains output until a frame of type t with rid arrives (index into
 * h->got), or -1 after WAIT_MS. */
static int wait_for(harness *h, rc_type t, uint64_t rid)
{
    uint64_t deadline = now_ms() + WAIT_MS;
    for (;;) {
        int i = find_got(h, 0, t, rid);
        if (i >= 0)
            return i;
        if (now_ms() > deadline)
            return -1;
        if (poll_out(h) == 0) {
            struct timespec ts = { 0, POLL_SLEEP_NS };
            nanosleep(&ts, NULL);
        }
    }
}

/* Frames of type t received since index `from`. */
static uint32_t count_type(const harness *h, uint32_t from, rc_type t)
{
    uint32_t n = 0;
    for (uint32_t i = from; i < h->n_got; i++)
        n += h->got[i].type == t;
    return n;
}

static int harness_init(harness *h)
{
    memset(h, 0, sizeof(*h));
    fake_init(&h->store);
    rc_decoder_init(&h->dec);
    h->out = rc_ring_create(OUT_RING_CAP, RC_RING_MPSC);
    if (!h->out || rc_waker_init(&h->waker) != 0)
        return -1;
    h->rings[0] = h->out;
    h->wakers[0] = &h->waker;
    h->rooms[0] = &h->room;
    h->outlets = (rc_outlets){ 1, h->rings, h->wakers, h->rooms };
    rc_shard_store st = { &h->store, &FAKE_OPS, RC_DURABILITY_BATCH };
    pthread_mutex_init(&h->letters.mu, NULL);
    atomic_init(&h->letters.refuse, false);
    h->sink = (rc_letter_sink){ fake_submit, &h->letters };
    if (rc_shard_init(&h->s, 0, SHARD_RING_CAP, &LIMITS, &h->outlets, &st) != 0)
        return -1;
    rc_shard_set_letters(&h->s, &h->sink, 0); /* 0: sends never expire here */
    return 0;
}

static int harness_start(harness *h)
{
    if (rc_shard_start(&h->s) != 0)
        return -1;
    h->started = true;
    return 0;
}

/* Queues n jobs (none may be NULL); false, with the jobs freed, when they
 * could not be built or queued. */
static bool submit(harness *h, rc_job **jobs, uint32_t n)
{
    bool built = true;
    for (uint32_t i = 0; i < n; i++)
        built &= jobs[i] != NULL;
    CU_ASSERT(built);
    uint32_t done = 0;
    uint64_t deadline = now_ms() + WAIT_MS;
    while (built && done < n && now_ms() <= deadline)
        done += rc_shard_submit(&h->s, jobs + done, n - done);
    CU_ASSERT_EQUAL(done, n);
    for (uint32_t i = done; i < n; i++)
        free(jobs[i]);
    return done == n;
}

static void harness_stop(harness *h)
{
    if (h->started) {
        rc_job *stop = rc_job_new(RC_JOB_STOP, 0, (rc_str){ NULL, 0 }, NULL);
        if (!submit(h, &stop, 1))
            abort(); /* the shard thread could not be stopped */
        rc_shard_join(&h->s);
        h->started = false;
    }
    while (poll_out(h) > 0)
        ; /* every outbatch goes home before the shard frees its spare ring */
    rc_shard_destroy(&h->s);
    rc_ring_destroy(h->out);
    rc_waker_close(&h->waker);
    rc_decoder_free(&h->dec);
    for (uint32_t i = 0; i < h->n_got; i++)
        free(h->got[i].raw);
    free(h->got);
    fake_free(&h->store);
    free(h->letters.l);
    pthread_mutex_destroy(&h->letters.mu);
}

/* ---- jobs ---- */

static rc_conn_id conn_of(uint32_t slot)
{
    return rc_conn_id_make(0, slot, 1);
}

static rc_job *job_join(rc_conn_id c, const char *user, const char *g, uint64_t rid, bool has_since, uint64_t since)
{
    rc_msg m = { .type = RC_T_JOIN, .has = RC_HAS_RID, .rid = rid, .g = rc_str_c(g) };
    if (has_since) {
        m.has |= RC_HAS_SINCE;
        m.since = since;
    }
    return rc_job_new(RC_JOB_JOIN, c, rc_str_c(user), &m);
}

static rc_job *job_leave(rc_conn_id c, const char *user, const char *g, uint64_t rid)
{
    rc_msg m = { .type = RC_T_LEAVE, .has = RC_HAS_RID, .rid = rid, .g = rc_str_c(g) };
    return rc_job_new(RC_JOB_LEAVE, c, rc_str_c(user), &m);
}

static rc_job *job_send(rc_conn_id c, const char *user, const char *g, uint64_t rid, const char *body, const char *mid)
{
    rc_msg m = { .type = RC_T_SEND, .has = RC_HAS_RID, .rid = rid, .g = rc_str_c(g), .body = rc_str_c(body),
                 .body_is_str = true };
    if (mid) {
        m.has |= RC_HAS_MID;
        m.mid = rc_str_c(mid);
    }
    return rc_job_new(RC_JOB_SEND, c, rc_str_c(user), &m);
}

/* Submits one job and waits for the reply of type t with its rid. */
static int request(harness *h, rc_job *j, rc_type t, uint64_t rid)
{
    return submit(h, &j, 1) ? wait_for(h, t, rid) : -1;
}

/* ---- snapshots ---- */

typedef struct snap {
    bool ok;
    uint64_t v, version, last_seq, created, updated;
    uint32_t has;        /* bit per key seen: v, version, last_seq, members, created, updated */
    uint32_t n_members;
    char members[SNAP_MEMBERS_MAX][RC_MAX_USER + 1];
} snap;

static bool key_eq(const msgpack_object *k, const char *s)
{
    size_t n = strlen(s);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n && memcmp(k->via.str.ptr, s, n) == 0;
}

static void snap_members(snap *out, const msgpack_object *v)
{
    if (v->type != MSGPACK_OBJECT_ARRAY) {
        out->ok = false;
        return;
    }
    for (uint32_t i = 0; i < v->via.array.size; i++) {
        const msgpack_object *u = &v->via.array.ptr[i];
        if (u->type != MSGPACK_OBJECT_STR || u->via.str.size > RC_MAX_USER || out->n_members == SNAP_MEMBERS_MAX) {
            out->ok = false;
            return;
        }
        memcpy(out->members[out->n_members], u->via.str.ptr, u->via.str.size);
        out->members[out->n_members++][u->via.str.size] = '\0';
    }
}

static snap snap_decode(const uint8_t *p, uint32_t len)
{
    static const char *const keys[] = { "v", "version", "last_seq", "members", "created", "updated" };
    snap out = { .ok = true };
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, SNAP_ZONE))
        return (snap){ .ok = false };
    msgpack_object o;
    size_t off = 0;
    if (msgpack_unpack((const char *)p, len, &off, &zone, &o) != MSGPACK_UNPACK_SUCCESS || off != len ||
        o.type != MSGPACK_OBJECT_MAP) {
        msgpack_zone_destroy(&zone);
        return (snap){ .ok = false };
    }
    for (uint32_t i = 0; i < o.via.map.size; i++) {
        const msgpack_object *k = &o.via.map.ptr[i].key, *v = &o.via.map.ptr[i].val;
        for (uint32_t b = 0; b < 6; b++)
            if (key_eq(k, keys[b]))
                out.has |= 1u << b;
        if (key_eq(k, "members")) {
            snap_members(&out, v);
            continue;
        }
        if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            continue;
        if (key_eq(k, "v"))
            out.v = v->via.u64;
        else if (key_eq(k, "version"))
            out.version = v->via.u64;
        else if (key_eq(k, "last_seq"))
            out.last_seq = v->via.u64;
        else if (key_eq(k, "created"))
            out.created = v->via.u64;
        else if (key_eq(k, "updated"))
            out.updated = v->via.u64;
    }
    msgpack_zone_destroy(&zone);
    return out;
}

static bool snap_has_member(const snap *s, const char *u)
{
    for (uint32_t i = 0; i < s->n_members; i++)
        if (strcmp(s->members[i], u) == 0)
            return true;
    return false;
}

/* Decodes every snapshot the fake stored for g, in write order. */
static uint32_t snaps_of(rc_persist *p, const char *g, snap *out, uint32_t max)
{
    uint32_t n = 0;
    pthread_mutex_lock(&p->mu);
    for (uint32_t i = 0; i < p->n_snaps && n < max; i++)
        if (op_is(&p->snaps[i], g, (uint32_t)strlen(g)))
            out[n++] = snap_decode(p->snaps[i].bytes, p->snaps[i].len);
    pthread_mutex_unlock(&p->mu);
    return n;
}

/* ------------------------------------------------------------------ */
/* Tests                                                                */
/* ------------------------------------------------------------------ */

/* 1. A join and a send in one tick: one committed batch holds the
 * snapshot and the history entry; the client sees joined, then msg and ack. */
static void test_join_send_commit(void)
{
    harness h;
    CU_ASSERT_EQUAL_FATAL(harness_init(&h), 0);
    CU_ASSERT_EQUAL_FATAL(harness_start(&h), 0);
    rc_conn_id c = conn_of(1);
    rc_job *jobs[2] = { job_join(c, "u", "room", 1, false, 0), job_send(c, "u", "room", 2, "hello", "m1") };
    CHECK_OR_OUT(submit(&h, jobs, 2));
    int ia = wait_for(&h, RC_T_ACK, 2);
    CHECK_OR_OUT(ia >= 0);
    int ij = find_got(&h, 0, RC_T_JOINED, 1);
    CHECK_OR_OUT(ij >= 0);
    int im = -1;
    for (uint32_t i = 0; i < h.n_got; i++)
        if (h.got[i].type == RC_T_MSG)
            im = (int)i;
    CHECK_OR_OUT(im >= 0);
    CU_ASSERT_EQUAL(count_type(&h, 0, RC_T_MSG), 1);
    CU_ASSERT(ij < im && ij < ia);
    CU_ASSERT_EQUAL(h.got[ij].seq, 0);
    CU_ASSERT_STRING_EQUAL(h.got[ij].g, "room");
    const got *m = &h.got[im], *a = &h.got[ia];
    CU_ASSERT_EQUAL(m->conn, c);
    CU_ASSERT_EQUAL(m->seq, 1);
    CU_ASSERT_STRING_EQUAL(m->from, "u");
    CU_ASSERT_STRING_EQUAL(m->body, "hello");
    CU_ASSERT_STRING_EQUAL(m->mid, "m1");
    CU_ASSERT_EQUAL(a->seq, 1);
    CU_ASSERT_FALSE(a->dup);
    CU_ASSERT_EQUAL(a->ts, m->ts);
    CU_ASSERT_EQUAL(h.n_void, 0);
    CU_ASSERT_EQUAL(h.n_bad, 0);

    /* The batch with the history entry also holds the join's snapshot. */
    rc_persist *p = &h.store;
    pthread_mutex_lock(&p->mu);
    CU_ASSERT_EQUAL(p->n_failed, 0);
    int with_msg = -1, with_group = -1;
    uint32_t n_msg_ops = 0;
    for (uint32_t i = 0; i < p->n_commits; i++) {
        const struct rc_persist_batch *b = p->commits[i];
        CU_ASSERT_EQUAL(b->d, RC_DURABILITY_BATCH);
        for (uint32_t k = 0; k < b->n; k++) {
            const fake_op *o = &b->ops[k];
            if (o->kind == OP_MSG && op_is(o, "room", 4)) {
                n_msg_ops++;
                CU_ASSERT_EQUAL(o->seq, 1);
                CU_ASSERT_EQUAL(o->len, m->raw_len);
                CU_ASSERT(o->len == m->raw_len && memcmp(o->bytes, m->raw, o->len) == 0);
                with_msg = (int)i;
            }
            if (o->kind == OP_GROUP && op_is(o, "room", 4))
                with_group = (int)i;
        }
    }
    CU_ASSERT_EQUAL(n_msg_ops, 1);
    CU_ASSERT(with_msg >= 0);
    CU_ASSERT_EQUAL(with_group, with_msg); /* one tick, one batch */
    pthread_mutex_unlock(&p->mu);

    snap sn[4];
    uint32_t ns = snaps_of(p, "room", sn, 4);
    CHECK_OR_OUT(ns == 1);
    CU_ASSERT(sn[0].ok);
    CU_ASSERT_EQUAL(sn[0].v, 1);
    CU_ASSERT_EQUAL(sn[0].n_members, 1);
    CU_ASSERT(snap_has_member(&sn[0], "u"));
out:
    harness_stop(&h);
}

/* Starts the harness and has user "u" on connection c join "room" (rid 1).
 * False when the join was not answered with joined. */
static bool start_room_member(harness *h, rc_conn_id c)
{
    CU_ASSERT_EQUAL_FATAL(harness_init(h), 0);
    CU_ASSERT_EQUAL_FATAL(harness_start(h), 0);
    return request(h, job_join(c, "u", "room", 1, false, 0), RC_T_JOINED, 1) >= 0;
}

/* 2. A failed commit undoes its sends: E_INTERNAL per send (its rid), their
 * msg and ack frames void, the seqs given back; the next send after the
 * store recovers takes the next free seq and history stays gapless. */
static void test_failed_commit_undo(void)
{
    harness h;
    rc_conn_id c = conn_of(2);
    CHECK_OR_OUT(start_room_member(&h, c));
    int i1 = request(&h, job_send(c, "u", "room", 2, "first", "m1"), RC_T_ACK, 2);
    CHECK_OR_OUT(i1 >= 0);
    CU_ASSERT_EQUAL(h.got[i1].seq, 1);
    uint64_t last_stored = h.got[i1].seq;

    atomic_store(&h.store.fail, true);
    uint32_t mark = h.n_got;
    uint32_t void_before = h.n_void;
    rc_job *two[2] = { job_send(c, "u", "room", 10, "lost-a", "ma"), job_send(c, "u", "room", 11, "lost-b", "mb") };
    CHECK_OR_OUT(submit(&h, two, 2));
    int e10 = wait_for(&h, RC_T_ERR, 10);
    int e11 = wait_for(&h, RC_T_ERR, 11);
    CHECK_OR_OUT(e10 >= 0 && e11 >= 0);
    CU_ASSERT_EQUAL(h.got[e10].code, RC_E_INTERNAL);
    CU_ASSERT_EQUAL(h.got[e11].code, RC_E_INTERNAL);
    atomic_store(&h.store.fail, false);

    /* A barrier: once this join's reply is here, everything before it is. */
    CHECK_OR_OUT(request(&h, job_join(c, "u", "room", 12, false, 0), RC_T_JOINED, 12) >= 0);
    CU_ASSERT_EQUAL(count_type(&h, mark, RC_T_MSG), 0);
    CU_ASSERT_EQUAL(find_got(&h, mark, RC_T_ACK, 10), -1);
    CU_ASSERT_EQUAL(find_got(&h, mark, RC_T_ACK, 11), -1);
    CU_ASSERT_EQUAL(h.n_void - void_before, 4u); /* two msg deliveries, two acks */
    CU_ASSERT_EQUAL(h.n_bad, 0);
    pthread_mutex_lock(&h.store.mu);
    CU_ASSERT(h.store.n_failed >= 1);
    pthread_mutex_unlock(&h.store.mu);
    CU_ASSERT(atomic_load(&h.s.stats.store_errors) >= 1);

    mark = h.n_got;
    int i3 = request(&h, job_send(c, "u", "room", 13, "third", "m3"), RC_T_ACK, 13);
    CHECK_OR_OUT(i3 >= 0);
    CU_ASSERT_EQUAL(h.got[i3].seq, last_stored + 1);
    CU_ASSERT_FALSE(h.got[i3].dup);
    CU_ASSERT_EQUAL(count_type(&h, mark, RC_T_MSG), 1);
    for (uint32_t i = mark; i < h.n_got; i++)
        if (h.got[i].type == RC_T_MSG) {
            CU_ASSERT_EQUAL(h.got[i].seq, last_stored + 1);
            CU_ASSERT_STRING_EQUAL(h.got[i].body, "third");
        }

    /* A mid of an undone send is not a duplicate: it was never stored. */
    int i4 = request(&h, job_send(c, "u", "room", 14, "retry-a", "ma"), RC_T_ACK, 14);
    CHECK_OR_OUT(i4 >= 0);
    CU_ASSERT_EQUAL(h.got[i4].seq, last_stored + 2);
    CU_ASSERT_FALSE(h.got[i4].dup);

    uint64_t seqs[8];
    uint32_t n = stored_seqs(&h.store, "room", seqs, 8);
    CU_ASSERT_EQUAL(n, last_stored + 2);
    for (uint32_t i = 0; i < n; i++)
        CU_ASSERT_EQUAL(seqs[i], i + 1); /* gapless */
    pthread_mutex_lock(&h.store.mu);
    fake_op *e = store_find(&h.store, "room", 4, last_stored + 1);
    CU_ASSERT(e && memmem(e->bytes, e->len, "third", 5) != NULL);
    pthread_mutex_unlock(&h.store.mu);
out:
    harness_stop(&h);
}

/* 2c. Sequencing that runs out of memory is tried RC_POISON_ATTEMPTS
 * times with backoff: a send whose every try failed is answered E_INTERNAL
 * and becomes one `poison` letter with attempts = RC_POISON_ATTEMPTS; a
 * send that succeeds on a retry is acked with the next free seq. (The
 * failures come from fail_sequencing, set before the thread starts.) */
static void test_sequencing_retried(void)
{
    harness h;
    rc_conn_id c = conn_of(3);
    CU_ASSERT_EQUAL_FATAL(harness_init(&h), 0);
    h.s.fail_sequencing = RC_POISON_ATTEMPTS + 2;
    CU_ASSERT_EQUAL_FATAL(harness_start(&h), 0);
    CHECK_OR_OUT(request(&h, job_join(c, "u", "room", 1, false, 0), RC_T_JOINED, 1) >= 0);
    int e = request(&h, job_send(c, "u", "room", 2, "given-up", "m1"), RC_T_ERR, 2);
    CHECK_OR_OUT(e >= 0);
    CU_ASSERT_EQUAL(h.got[e].code, RC_E_INTERNAL);
    CHECK_OR_OUT(letters_n(&h.letters) == 1);
    pthread_mutex_lock(&h.letters.mu);
    CU_ASSERT_EQUAL(h.letters.l[0].reason, RC_LETTER_POISON);
    CU_ASSERT_EQUAL(h.letters.l[0].attempts, RC_POISON_ATTEMPTS);
    CU_ASSERT_STRING_EQUAL(h.letters.l[0].body, "given-up");
    CU_ASSERT_STRING_EQUAL(h.letters.l[0].mid, "m1");
    pthread_mutex_unlock(&h.letters.mu);
    int a = request(&h, job_send(c, "u", "room", 3, "second", "m2"), RC_T_ACK, 3);
    CHECK_OR_OUT(a >= 0);
    CU_ASSERT_EQUAL(h.got[a].seq, 1); /* the first took no seq */
    CU_ASSERT_EQUAL(atomic_load(&h.s.stats.sequence_retries), (RC_POISON_ATTEMPTS - 1) + 2);
    CU_ASSERT_EQUAL(letters_n(&h.letters), 1);
out:
    harness_stop(&h);
}

/* 2b. A send that repeats the mid of a send sequenced earlier in the same
 * tick is a dup of it; when the tick's write fails that message does not
 * exist, so the repeat must not be acked with its seq. */
static void test_failed_commit_dup_in_tick(void)
{
    harness h;
    rc_conn_id c = conn_of(3);
    CHECK_OR_OUT(start_room_member(&h, c));
    atomic_store(&h.store.fail, true);
    uint32_t mark = h.n_got;
    rc_job *two[2] = { job_send(c, "u", "room", 20, "once", "same"), job_send(c, "u", "room", 21, "once", "same") };
    CHECK_OR_OUT(submit(&h, two, 2));
    CHECK_OR_OUT(wait_for(&h, RC_T_ERR, 20) >= 0);
    atomic_store(&h.store.fail, false);
    CHECK_OR_OUT(request(&h, job_join(c, "u", "room", 22, false, 0), RC_T_JOINED, 22) >= 0);

    int a21 = find_got(&h, mark, RC_T_ACK, 21);
    CU_ASSERT_EQUAL(a21, -1);
    int e21 = find_got(&h, mark, RC_T_ERR, 21);
    CU_ASSERT(e21 >= 0 && h.got[e21].code == RC_E_INTERNAL);
    /* One message, one poison letter: the repeat names the same message. */
    CU_ASSERT_EQUAL(letters_n(&h.letters), 1);
    uint64_t seqs[4];
    CU_ASSERT_EQUAL(stored_seqs(&h.store, "room", seqs, 4), 0);

    /* The retry is sequenced anew, as seq 1. */
    int r = request(&h, job_send(c, "u", "room", 23, "once", "same"), RC_T_ACK, 23);
    CHECK_OR_OUT(r >= 0);
    CU_ASSERT_EQUAL(h.got[r].seq, 1);
    CU_ASSERT_FALSE(h.got[r].dup);
out:
    harness_stop(&h);
}

/* 3. Every membership change writes a snapshot, each with a higher version. */
static void test_snapshot_versions(void)
{
    harness h;
    CU_ASSERT_EQUAL_FATAL(harness_init(&h), 0);
    CU_ASSERT_EQUAL_FATAL(harness_start(&h), 0);
    const char *users[3] = { "u1", "u2", "u3" };
    for (uint32_t i = 0; i < 3; i++)
        CHECK_OR_OUT(request(&h, job_join(conn_of(10 + i), users[i], "club", 100 + i, false, 0), RC_T_JOINED,
                                100 + i) >= 0);
    CHECK_OR_OUT(request(&h, job_leave(conn_of(11), "u2", "club", 200), RC_T_LEFT, 200) >= 0);

    snap sn[8];
    uint32_t n = snaps_of(&h.store, "club", sn, 8);
    CU_ASSERT_EQUAL(n, 4); /* one tick per change */
    CHECK_OR_OUT(n >= 2);
    for (uint32_t i = 0; i < n; i++) {
        CU_ASSERT(sn[i].ok);
        CU_ASSERT_EQUAL(sn[i].has, 0x3fu); /* v, version, last_seq, members, created, updated */
        CU_ASSERT_EQUAL(sn[i].v, 1);
        CU_ASSERT_EQUAL(sn[i].last_seq, 0);
        CU_ASSERT(sn[i].created > 0 && sn[i].updated >= sn[i].created);
        if (i > 0) {
            CU_ASSERT(sn[i].version > sn[i - 1].version);
            CU_ASSERT_EQUAL(sn[i].created, sn[0].created);
            CU_ASSERT(sn[i].updated >= sn[i - 1].updated);
        }
    }
    if (n == 4) {
        CU_ASSERT_EQUAL(sn[0].n_members, 1);
        CU_ASSERT_EQUAL(sn[1].n_members, 2);
        CU_ASSERT_EQUAL(sn[2].n_members, 3);
    }
    const snap *last = &sn[n - 1];
    CU_ASSERT_EQUAL(last->n_members, 2);
    CU_ASSERT(snap_has_member(last, "u1"));
    CU_ASSERT(snap_has_member(last, "u3"));
    CU_ASSERT_FALSE(snap_has_member(last, "u2"));
out:
    harness_stop(&h);
}

/* 4. Recovery: a stored group whose history runs past its snapshot. */

static uint64_t ts_base; /* unix ms of the recovered history, inside history_ttl */

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void stored_msg(rc_persist *p, const char *g, uint64_t seq)
{
    char body[32], mid[16];
    snprintf(body, sizeof body, "body-%llu", (unsigned long long)seq);
    snprintf(mid, sizeof mid, "m%llu", (unsigned long long)seq);
    rc_msg m = { .type = RC_T_MSG, .has = RC_HAS_MID, .g = rc_str_c(g), .seq = seq, .ts = ts_base + seq,
                 .from = rc_str_c("a"), .body = rc_str_c(body), .body_is_str = true, .mid = rc_str_c(mid) };
    rc_buf b;
    rc_buf_init(&b);
    CU_ASSERT_EQUAL_FATAL(rc_encode(&b, &m), 0);
    fake_op o = op_make(OP_MSG, g, (uint32_t)strlen(g), seq, b.data + RC_FRAME_HEADER,
                        (uint32_t)(b.len - RC_FRAME_HEADER));
    store_apply(p, &o);
    free(o.bytes);
    rc_buf_free(&b);
}

static int sbuf_write(void *data, const char *p, size_t n)
{
    return rc_buf_append(data, p, n);
}

static void pack_key(msgpack_packer *pk, const char *k)
{
    msgpack_pack_str(pk, strlen(k));
    msgpack_pack_str_body(pk, k, strlen(k));
}

static void stored_snapshot(rc_persist *p, const char *g)
{
    rc_buf b;
    rc_buf_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, sbuf_write);
    msgpack_pack_map(&pk, 6);
    pack_key(&pk, "v");
    msgpack_pack_uint64(&pk, 1);
    pack_key(&pk, "version");
    msgpack_pack_uint64(&pk, RECOVERED_VERSION);
    pack_key(&pk, "last_seq");
    msgpack_pack_uint64(&pk, RECOVERED_LAST_SNAP);
    pack_key(&pk, "members");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_str(&pk, 1);
    msgpack_pack_str_body(&pk, "a", 1);
    pack_key(&pk, "created");
    msgpack_pack_uint64(&pk, ts_base);
    pack_key(&pk, "updated");
    msgpack_pack_uint64(&pk, ts_base + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b.data);
    fake_op o = op_make(OP_GROUP, g, (uint32_t)strlen(g), 0, b.data, (uint32_t)b.len);
    store_apply(p, &o);
    free(o.bytes);
    rc_buf_free(&b);
}

typedef struct adopt_ctx {
    rc_shard *s;
    uint32_t n;
    uint64_t newest, oldest;
    int rc;
    char err[256];
} adopt_ctx;

static int adopt_one(void *ud, const rc_persist_group *pg)
{
    adopt_ctx *a = ud;
    a->n++;
    a->newest = pg->newest_seq;
    a->oldest = pg->oldest_seq;
    a->rc = rc_shard_adopt(a->s, pg, a->err, sizeof(a->err));
    return a->rc;
}

static void test_recovery(void)
{
    harness h;
    CU_ASSERT_EQUAL_FATAL(harness_init(&h), 0);
    ts_base = wall_ms() - TS_AGE_MS;
    stored_snapshot(&h.store, "hall");
    for (uint64_t seq = 1; seq <= RECOVERED_NEWEST; seq++)
        stored_msg(&h.store, "hall", seq);
    adopt_ctx ac = { .s = &h.s };
    char err[256] = "";
    CU_ASSERT_EQUAL(FAKE_OPS.load_groups(&h.store, adopt_one, &ac, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(ac.n, 1);
    CU_ASSERT_EQUAL(ac.rc, 0);
    CU_ASSERT_EQUAL(ac.newest, RECOVERED_NEWEST);
    CU_ASSERT_EQUAL(ac.oldest, 1);
    CU_ASSERT_EQUAL_FATAL(harness_start(&h), 0);

    rc_conn_id c = conn_of(4);
    CHECK_OR_OUT(submit(&h, (rc_job *[]){ job_join(c, "a", "hall", 1, true, RECOVERED_LAST_SNAP) }, 1));
    int is = wait_for(&h, RC_T_SYNCED, 1);
    CHECK_OR_OUT(is >= 0);
    CHECK_OR_OUT(h.n_got == 4); /* joined, msg 6, msg 7, synced */
    CU_ASSERT_EQUAL(h.got[0].type, RC_T_JOINED);
    CU_ASSERT_EQUAL(h.got[0].rid, 1);
    CU_ASSERT_EQUAL(h.got[0].seq, RECOVERED_NEWEST);
    for (uint32_t k = 1; k <= 2; k++) {
        const got *m = &h.got[k];
        uint64_t seq = RECOVERED_LAST_SNAP + k;
        CU_ASSERT_EQUAL(m->type, RC_T_MSG);
        CU_ASSERT_EQUAL(m->seq, seq);
        CU_ASSERT_EQUAL(m->ts, ts_base + seq);
        pthread_mutex_lock(&h.store.mu);
        const fake_op *e = store_find(&h.store, "hall", 4, seq);
        CU_ASSERT(e && m->raw && e->len == m->raw_len && memcmp(e->bytes, m->raw, e->len) == 0);
        pthread_mutex_unlock(&h.store.mu);
    }
    CU_ASSERT_EQUAL(h.got[3].type, RC_T_SYNCED);
    CU_ASSERT_EQUAL(h.got[3].seq, RECOVERED_NEWEST);
    CU_ASSERT_FALSE(h.got[3].lost);
    CU_ASSERT_EQUAL(atomic_load(&h.s.stats.warmups), 1);

    int ia = request(&h, job_send(c, "a", "hall", 2, "fresh", "n1"), RC_T_ACK, 2);
    CHECK_OR_OUT(ia >= 0);
    CU_ASSERT_EQUAL(h.got[ia].seq, RECOVERED_NEWEST + 1);
    CU_ASSERT_FALSE(h.got[ia].dup);

    uint32_t mark = h.n_got;
    int id = request(&h, job_send(c, "a", "hall", 3, "again", "m6"), RC_T_ACK, 3);
    CHECK_OR_OUT(id >= 0);
    CU_ASSERT(h.got[id].dup);
    CU_ASSERT_EQUAL(h.got[id].seq, 6);
    CU_ASSERT_EQUAL(h.got[id].ts, ts_base + 6);
    CU_ASSERT_EQUAL(count_type(&h, mark, RC_T_MSG), 0);

    uint64_t seqs[16];
    uint32_t n = stored_seqs(&h.store, "hall", seqs, 16);
    CU_ASSERT_EQUAL(n, RECOVERED_NEWEST + 1);
    for (uint32_t i = 0; i < n; i++)
        CU_ASSERT_EQUAL(seqs[i], i + 1);
    CU_ASSERT_EQUAL(h.n_bad, 0);
    CU_ASSERT_EQUAL(h.n_void, 0);
out:
    harness_stop(&h);
}

/* 5. A store that fails fewer than RC_POISON_ATTEMPTS times in a row loses
 * nothing: the tick's batch is rebuilt and written again, the sends are
 * acked with the seqs they were given, and no letter is made. */
static void test_commit_retried(void)
{
    harness h;
    rc_conn_id c = conn_of(5);
    CHECK_OR_OUT(start_room_member(&h, c));
    uint32_t mark = h.n_got;
    atomic_store(&h.store.fail_next, RC_POISON_ATTEMPTS - 1);
    rc_job *two[2] = { job_send(c, "u", "room", 2, "kept-a", "ka"), job_send(c, "u", "room", 3, "kept-b", NULL) };
    CHECK_OR_OUT(submit(&h, two, 2));
    int a2 = wait_for(&h, RC_T_ACK, 2), a3 = wait_for(&h, RC_T_ACK, 3);
    CHECK_OR_OUT(a2 >= 0 && a3 >= 0);
    CU_ASSERT_EQUAL(h.got[a2].seq, 1);
    CU_ASSERT_EQUAL(h.got[a3].seq, 2);
    CU_ASSERT_FALSE(h.got[a2].dup);
    CU_ASSERT_EQUAL(count_type(&h, mark, RC_T_MSG), 2);
    CU_ASSERT_EQUAL(count_type(&h, mark, RC_T_ERR), 0);
    CU_ASSERT_EQUAL(h.n_void, 0);
    CU_ASSERT_EQUAL(atomic_load(&h.store.fail_next), 0);

    pthread_mutex_lock(&h.store.mu);
    CU_ASSERT_EQUAL(h.store.n_failed, RC_POISON_ATTEMPTS - 1);
    pthread_mutex_unlock(&h.store.mu);
    uint64_t seqs[4];
    CU_ASSERT_EQUAL(stored_seqs(&h.store, "room", seqs, 4), 2); /* the rebuilt batch held both */
    for (uint32_t i = mark; i < h.n_got; i++) {
        if (h.got[i].type != RC_T_MSG)
            continue;
        pthread_mutex_lock(&h.store.mu);
        const fake_op *e = store_find(&h.store, "room", 4, h.got[i].seq);
        CU_ASSERT(e && e->len == h.got[i].raw_len && memcmp(e->bytes, h.got[i].raw, e->len) == 0);
        pthread_mutex_unlock(&h.store.mu);
    }
    CU_ASSERT_EQUAL(atomic_load(&h.s.stats.store_retries), RC_POISON_ATTEMPTS - 1);
    CU_ASSERT_EQUAL(atomic_load(&h.s.stats.store_errors), 0);
    CU_ASSERT_EQUAL(atomic_load(&h.s.stats.poison_letters), 0);
    CU_ASSERT_EQUAL(letters_n(&h.letters), 0);
out:
    harness_stop(&h);
}

/* Checks one poison letter against the send it came from. */
static void check_poison(const fake_letter *l, const char *body, const char *mid, uint64_t t0, uint64_t t1)
{
    CU_ASSERT_EQUAL(l->reason, RC_LETTER_POISON);
    CU_ASSERT_STRING_EQUAL(l->g, "room");
    CU_ASSERT_STRING_EQUAL(l->from, "u");
    CU_ASSERT_STRING_EQUAL(l->to, "");
    CU_ASSERT_FALSE(l->has_seq); /* the seq was given back */
    CU_ASSERT(l->ts >= t0 && l->ts <= t1);
    CU_ASSERT_STRING_EQUAL(l->mid, mid);
    CU_ASSERT_STRING_EQUAL(l->body, body);
    CU_ASSERT(l->body_is_str);
    CU_ASSERT_EQUAL(l->attempts, RC_POISON_ATTEMPTS);
    CU_ASSERT_STRING_EQUAL(l->err, "fake store: commit refused by the test");
}

static uint64_t wall_ms(void);

/* 6. A store that keeps failing: after RC_POISON_ATTEMPTS tries each send
 * gets E_INTERNAL and becomes exactly one `poison` letter with the
 * message's fields; a letter the sink refuses is counted. */
static void test_poison_letters(void)
{
    harness h;
    rc_conn_id c = conn_of(6);
    CHECK_OR_OUT(start_room_member(&h, c));
    uint32_t mark = h.n_got;
    atomic_store(&h.store.fail, true);
    uint64_t t0 = wall_ms();
    rc_job *two[2] = { job_send(c, "u", "room", 10, "lost-a", "ma"), job_send(c, "u", "room", 11, "lost-b", NULL) };
    CHECK_OR_OUT(submit(&h, two, 2));
    int e10 = wait_for(&h, RC_T_ERR, 10), e11 = wait_for(&h, RC_T_ERR, 11);
    uint64_t t1 = wall_ms();
    CHECK_OR_OUT(e10 >= 0 && e11 >= 0);
    CU_ASSERT_EQUAL(h.got[e10].code, RC_E_INTERNAL);
    CU_ASSERT_EQUAL(h.got[e11].code, RC_E_INTERNAL);
    atomic_store(&h.store.fail, false);
    CHECK_OR_OUT(request(&h, job_join(c, "u", "room", 12, false, 0), RC_T_JOINED, 12) >= 0);
    CU_ASSERT_EQUAL(count_type(&h, mark, RC_T_MSG), 0);
    CU_ASSERT_EQUAL(find_got(&h, mark, RC_T_ACK, 10), -1);
    CU_ASSERT_EQUAL(find_got(&h, mark, RC_T_ACK, 11), -1);

    CHECK_OR_OUT(letters_n(&h.letters) == 2);
    check_poison(&h.letters.l[0], "lost-a", "ma", t0, t1); /* oldest first */
    check_poison(&h.letters.l[1], "lost-b", "", t0, t1);
    uint64_t errors = atomic_load(&h.s.stats.store_errors); /* 1, or 2 when the sends took two ticks */
    CU_ASSERT(errors >= 1 && errors <= 2);
    pthread_mutex_lock(&h.store.mu);
    CU_ASSERT_EQUAL(h.store.n_failed, RC_POISON_ATTEMPTS * errors);
    pthread_mutex_unlock(&h.store.mu);
    CU_ASSERT_EQUAL(atomic_load(&h.s.stats.store_retries), (RC_POISON_ATTEMPTS - 1) * errors);
    CU_ASSERT_EQUAL(atomic_load(&h.s.stats.poison_letters), 2);
    CU_ASSERT_EQUAL(atomic_load(&h.s.stats.letters_refused), 0);

    /* A sink that cannot queue: the letter is counted as refused. */
    atomic_store(&h.letters.refuse, true);
    atomic_store(&h.store.fail, true);
    int e20 = request(&h, job_send(c, "u", "room", 20, "refused", NULL), RC_T_ERR, 20);
    atomic_store(&h.store.fail, false);
    CHECK_OR_OUT(e20 >= 0);
    CU_ASSERT_EQUAL(h.got[e20].code, RC_E_INTERNAL);
    CU_ASSERT_EQUAL(atomic_load(&h.s.stats.poison_letters), 3);
    CU_ASSERT_EQUAL(atomic_load(&h.s.stats.letters_refused), 1);
    CU_ASSERT_EQUAL(letters_n(&h.letters), 2);
    uint64_t seqs[4];
    CU_ASSERT_EQUAL(stored_seqs(&h.store, "room", seqs, 4), 0);
out:
    harness_stop(&h);
}

/* ---- redelivery ---- */

static rc_job *job_redeliver(rc_conn_id admin, const char *g, uint64_t rid, uint64_t seq, uint64_t ts,
                             const char *from, const char *to, const char *body)
{
    rc_msg m = { .type = RC_T_REPLAY, .has = RC_HAS_RID | RC_HAS_SEQ | RC_HAS_TO, .rid = rid, .g = rc_str_c(g),
                 .seq = seq, .ts = ts, .to = rc_str_c(to), .body = rc_str_c(body), .body_is_str = true,
                 .reason = rc_str_c("slow_consumer") };
    return rc_job_new(RC_JOB_REDELIVER, admin, rc_str_c(from), &m);
}

/* Redelivery frames received since mark, each checked to name `to`, carry
 * seq and come from alice; returns how many. */
static uint32_t redeliveries_since(const harness *h, uint32_t mark, const char *to, uint64_t seq)
{
    uint32_t n = 0;
    for (uint32_t i = mark; i < h->n_got; i++) {
        const got *x = &h->got[i];
        if (!x->redeliver)
            continue;
        n++;
        CU_ASSERT_EQUAL(x->type, RC_T_MSG);
        CU_ASSERT_STRING_EQUAL(x->to, to);
        CU_ASSERT_EQUAL(x->seq, seq);
        CU_ASSERT_STRING_EQUAL(x->from, "alice");
    }
    return n;
}

#define LETTER_TS 1700000000123ull /* the ts a test letter carries */

/* 7. A replayed slow_consumer letter goes to every subscriber of the group
 * as a redelivery naming its recipient (io threads filter): history's own
 * frame while the seq is retained, else one encoded from the letter. The
 * admin's ack has the letter's seq and ts, dup: true with nobody online. */
static void test_redeliver(void)
{
    harness h;
    CU_ASSERT_EQUAL_FATAL(harness_init(&h), 0);
    CU_ASSERT_EQUAL_FATAL(harness_start(&h), 0);
    rc_conn_id alice = conn_of(20), bob = conn_of(21), carol = conn_of(22), admin = conn_of(23);
    const char *users[3] = { "alice", "bob", "carol" };
    rc_conn_id conns[3] = { alice, bob, carol };
    for (uint32_t i = 0; i < 3; i++)
        CHECK_OR_OUT(request(&h, job_join(conns[i], users[i], "room", 1 + i, false, 0), RC_T_JOINED, 1 + i) >= 0);
    int a = request(&h, job_send(alice, "alice", "room", 4, "original", "o1"), RC_T_ACK, 4);
    CHECK_OR_OUT(a >= 0 && h.got[a].seq == 1);
    uint64_t ts1 = h.got[a].ts;
    const uint8_t *orig = NULL;
    uint32_t orig_len = 0;
    for (uint32_t i = 0; i < h.n_got; i++)
        if (h.got[i].type == RC_T_MSG && h.got[i].conn == bob) {
            orig = h.got[i].raw;
            orig_len = h.got[i].raw_len;
        }
    CHECK_OR_OUT(orig != NULL);

    /* Retained: history's frame, whatever the letter's body says. */
    uint32_t mark = h.n_got;
    int k = request(&h, job_redeliver(admin, "room", 5, 1, ts1, "alice", "bob", "from-letter"), RC_T_ACK, 5);
    CHECK_OR_OUT(k >= 0);
    CU_ASSERT_EQUAL(h.got[k].conn, admin);
    CU_ASSERT_EQUAL(h.got[k].seq, 1);
    CU_ASSERT_EQUAL(h.got[k].ts, ts1);
    CU_ASSERT_FALSE(h.got[k].dup);
    CU_ASSERT_EQUAL(redeliveries_since(&h, mark, "bob", 1), 3); /* one per subscriber */
    for (uint32_t i = mark; i < h.n_got; i++)
        if (h.got[i].redeliver)
            CU_ASSERT(h.got[i].raw_len == orig_len && memcmp(h.got[i].raw, orig, orig_len) == 0);
    CU_ASSERT_EQUAL(atomic_load(&h.s.stats.redeliveries), 1);

    /* history_max more messages push seq 1 out of history. */
    for (uint32_t i = 0; i < LIMITS.history_max; i++) {
        rc_job *j = job_send(alice, "alice", "room", 100 + i, "filler", NULL);
        CHECK_OR_OUT(submit(&h, &j, 1));
    }
    CHECK_OR_OUT(wait_for(&h, RC_T_ACK, 100 + LIMITS.history_max - 1) >= 0);
    mark = h.n_got;
    k = request(&h, job_redeliver(admin, "room", 6, 1, LETTER_TS, "alice", "bob", "from-letter"), RC_T_ACK, 6);
    CHECK_OR_OUT(k >= 0);
    CU_ASSERT_EQUAL(h.got[k].ts, LETTER_TS);
    CU_ASSERT_EQUAL(redeliveries_since(&h, mark, "bob", 1), 3);
    for (uint32_t i = mark; i < h.n_got; i++) {
        if (!h.got[i].redeliver)
            continue;
        CU_ASSERT_STRING_EQUAL(h.got[i].body, "from-letter");
        CU_ASSERT_EQUAL(h.got[i].ts, LETTER_TS);
        CU_ASSERT_FALSE(h.got[i].has & RC_HAS_MID);
    }

    /* Nobody online: an unknown group, then the room after everyone left. */
    mark = h.n_got;
    k = request(&h, job_redeliver(admin, "nowhere", 7, 3, LETTER_TS, "alice", "bob", "x"), RC_T_ACK, 7);
    CHECK_OR_OUT(k >= 0);
    CU_ASSERT(h.got[k].dup);
    CU_ASSERT_STRING_EQUAL(h.got[k].g, "nowhere");
    for (uint32_t i = 0; i < 3; i++) {
        rc_msg m = { .g = rc_str_c("room") };
        rc_job *d = rc_job_new(RC_JOB_DETACH, conns[i], (rc_str){ NULL, 0 }, &m);
        CHECK_OR_OUT(submit(&h, &d, 1));
    }
    k = request(&h, job_redeliver(admin, "room", 8, 2, LETTER_TS, "alice", "bob", "x"), RC_T_ACK, 8);
    CHECK_OR_OUT(k >= 0);
    CU_ASSERT(h.got[k].dup);
    CU_ASSERT_EQUAL(h.got[k].seq, 2);
    CU_ASSERT_EQUAL(redeliveries_since(&h, mark, "bob", 0), 0);
    CU_ASSERT_EQUAL(atomic_load(&h.s.stats.redeliveries), 2);
    CU_ASSERT_EQUAL(h.n_bad, 0);
out:
    harness_stop(&h);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return CU_get_error();
    CU_pSuite s = CU_add_suite("shard", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "join + send: one group commit", test_join_send_commit) ||
        !CU_add_test(s, "failed commit: sends undone", test_failed_commit_undo) ||
        !CU_add_test(s, "failed commit: dup of an undone send", test_failed_commit_dup_in_tick) ||
        !CU_add_test(s, "sequencing out of memory: retried, then a poison letter", test_sequencing_retried) ||
        !CU_add_test(s, "snapshot versions rise", test_snapshot_versions) ||
        !CU_add_test(s, "recovery: adopt, join since, dedup", test_recovery) ||
        !CU_add_test(s, "failed commit: retried, nothing lost", test_commit_retried) ||
        !CU_add_test(s, "failed commit: poison letters", test_poison_letters) ||
        !CU_add_test(s, "replayed slow_consumer letter: redelivered", test_redeliver)) {
        CU_cleanup_registry();
        return CU_get_error();
    }
    return rc_test_run();
}
