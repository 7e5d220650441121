/*
 * Group state: creation, subscriptions, the history ring (growth up to
 * history_max, eviction, seq lookups), the dedup window (inside it, at its
 * edge, window == history_max, window 0 = off, messages without mid) and
 * frame reference counts across eviction and rc_group_free; a cold group's
 * tail taking back its older history (rc_group_take_history).
 */
#include "core/group.h"

#include <CUnit/CUnit.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define HIST_MAX 10u
#define DEDUP_SMALL 4u        /* a window shorter than HIST_MAX */
#define N_MSGS (3u * HIST_MAX + 5u)
#define TS_BASE UINT64_C(1700000000000)
#define DKEY_BUF 64u
#define MANY_SUBS 100u

static rc_frame *frame_for(uint64_t i)
{
    char body[32];
    int n = snprintf(body, sizeof body, "msg-%llu", (unsigned long long)i);
    return rc_frame_new((const uint8_t *)body, (uint32_t)n);
}

/* "user" NUL "mid" as the shard builds it. */
static uint32_t dkey_of(char *buf, const char *user, uint64_t mid)
{
    size_t ul = strlen(user);
    memcpy(buf, user, ul);
    buf[ul] = '\0';
    int n = snprintf(buf + ul + 1, DKEY_BUF - ul - 1, "m%llu", (unsigned long long)mid);
    return (uint32_t)(ul + 1 + (size_t)n);
}

static uint32_t frame_refs(rc_frame *f)
{
    return atomic_load(&f->refs);
}

/* ---- creation ---- */

static void test_new(void)
{
    rc_group *g = rc_group_new("room\0x", 6, HIST_MAX, DEDUP_SMALL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CU_ASSERT_EQUAL(g->name_len, 6);
    CU_ASSERT_EQUAL(memcmp(g->name, "room\0x", 6), 0);
    CU_ASSERT_EQUAL(g->name[6], '\0');
    CU_ASSERT_EQUAL(g->last_seq, 0);
    CU_ASSERT_EQUAL(g->hist_max, HIST_MAX);
    CU_ASSERT_EQUAL(g->dedup_window, DEDUP_SMALL);
    CU_ASSERT_EQUAL(g->n_subs, 0);
    CU_ASSERT_EQUAL(g->hist_n, 0);
    CU_ASSERT_EQUAL(rc_group_first_seq(g), 1);
    CU_ASSERT_PTR_NULL(rc_group_hist_at(g, 0));
    CU_ASSERT_PTR_NULL(rc_group_hist_at(g, 1));
    CU_ASSERT_EQUAL(rc_group_find_dup(g, "u\0m", 3), 0);
    rc_group_free(g);

    /* the window never exceeds history */
    g = rc_group_new("g", 1, HIST_MAX, HIST_MAX * 5);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CU_ASSERT_EQUAL(g->dedup_window, HIST_MAX);
    rc_group_free(g);

    rc_group_free(NULL);
}

/* ---- subscriptions ---- */

static void test_subscribe(void)
{
    rc_group *g = rc_group_new("g", 1, HIST_MAX, DEDUP_SMALL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    rc_conn_id a = rc_conn_id_make(0, 1, 1), b = rc_conn_id_make(1, 1, 1);
    rc_conn_id a_reused = rc_conn_id_make(0, 1, 2); /* same slot, new generation */

    CU_ASSERT_EQUAL(rc_group_subscribe(g, a), 0);
    CU_ASSERT_EQUAL(rc_group_subscribe(g, a), 0);
    CU_ASSERT_EQUAL(g->n_subs, 1);
    CU_ASSERT_EQUAL(rc_group_subscribe(g, b), 0);
    CU_ASSERT_EQUAL(rc_group_subscribe(g, a_reused), 0);
    CU_ASSERT_EQUAL(g->n_subs, 3);

    CU_ASSERT_TRUE(rc_group_unsubscribe(g, a));
    CU_ASSERT_FALSE(rc_group_unsubscribe(g, a));
    CU_ASSERT_EQUAL(g->n_subs, 2);
    int saw_b = 0, saw_reused = 0;
    for (uint32_t i = 0; i < g->n_subs; i++) {
        saw_b += g->subs[i] == b;
        saw_reused += g->subs[i] == a_reused;
    }
    CU_ASSERT_EQUAL(saw_b, 1);
    CU_ASSERT_EQUAL(saw_reused, 1);

    /* subscribe again after unsubscribe */
    CU_ASSERT_EQUAL(rc_group_subscribe(g, a), 0);
    CU_ASSERT_EQUAL(g->n_subs, 3);
    CU_ASSERT_TRUE(rc_group_unsubscribe(g, b));
    CU_ASSERT_TRUE(rc_group_unsubscribe(g, a));
    CU_ASSERT_TRUE(rc_group_unsubscribe(g, a_reused));
    CU_ASSERT_EQUAL(g->n_subs, 0);
    CU_ASSERT_FALSE(rc_group_unsubscribe(g, b));

    /* many: growth, each once, then removal in a different order */
    for (uint32_t round = 0; round < 2; round++)
        for (uint32_t i = 0; i < MANY_SUBS; i++)
            CU_ASSERT_EQUAL(rc_group_subscribe(g, rc_conn_id_make(i % 4, i, 7)), 0);
    CU_ASSERT_EQUAL(g->n_subs, MANY_SUBS);
    for (uint32_t i = 0; i < MANY_SUBS; i += 2)
        CU_ASSERT_TRUE(rc_group_unsubscribe(g, rc_conn_id_make(i % 4, i, 7)));
    CU_ASSERT_EQUAL(g->n_subs, MANY_SUBS / 2);
    for (uint32_t i = 0; i < MANY_SUBS; i++)
        CU_ASSERT_EQUAL(rc_group_unsubscribe(g, rc_conn_id_make(i % 4, i, 7)), i % 2 == 1);
    CU_ASSERT_EQUAL(g->n_subs, 0);
    rc_group_free(g);
}

/* ---- history ---- */

/* Remembers n messages (no mid) in a group of history_max hmax and checks
 * last_seq, first_seq and every hist_at after each one, plus the extra
 * reference the test holds on each frame. */
static void check_history(uint32_t hmax, uint32_t n)
{
    rc_group *g = rc_group_new("h", 1, hmax, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    rc_frame **frames = calloc(n + 1, sizeof(*frames));
    CU_ASSERT_PTR_NOT_NULL_FATAL(frames);
    uint32_t bad = 0;
    for (uint64_t s = 1; s <= n; s++) {
        rc_frame *f = frame_for(s);
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        rc_frame_ref(f, 1); /* ours; the group takes the other */
        frames[s] = f;
        if (rc_group_remember(g, TS_BASE + s, f, NULL, 0) != 0)
            bad++;
        uint64_t first = s >= hmax ? s - hmax + 1 : 1;
        if (g->last_seq != s || rc_group_first_seq(g) != first)
            bad++;
        if (g->hist_n != s - first + 1 || g->hist_cap > hmax)
            bad++;
        for (uint64_t q = 0; q <= s + 1; q++) {
            const rc_hist_entry *e = rc_group_hist_at(g, q);
            if (q >= first && q <= s) {
                if (!e || e->seq != q || e->ts != TS_BASE + q || e->frame != frames[q] ||
                    e->dkey != NULL || frame_refs(frames[q]) != 2)
                    bad++;
            } else if (e) {
                bad++;
            }
            /* evicted frames were released by the group */
            if (q >= 1 && q < first && frame_refs(frames[q]) != 1)
                bad++;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    if (bad)
        fprintf(stderr, "history_max=%u n=%u: %u mismatches\n", hmax, n, bad);
    rc_group_free(g);
    for (uint32_t s = 1; s <= n; s++) {
        CU_ASSERT_EQUAL(frame_refs(frames[s]), 1);
        rc_frame_unref(frames[s]);
    }
    free(frames);
}

static void test_history_ring(void)
{
    check_history(HIST_MAX, N_MSGS);  /* 8 -> 10 slots, then wraps several times */
    check_history(HIST_MAX, HIST_MAX); /* exactly full, nothing evicted */
    check_history(HIST_MAX, 3);       /* partly full */
    check_history(1, 5);              /* one slot */
    check_history(3, 11);             /* below the first allocation */
    check_history(20, 67);            /* 8 -> 16 -> 20 */
    check_history(16, 50);            /* power of two */
}

static void test_history_empty_after_new(void)
{
    rc_group *g = rc_group_new("g", 1, HIST_MAX, DEDUP_SMALL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CU_ASSERT_PTR_NULL(rc_group_hist_at(g, UINT64_MAX));
    rc_frame *f = frame_for(1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(rc_group_remember(g, TS_BASE, f, NULL, 0), 0);
    const rc_hist_entry *e = rc_group_hist_at(g, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    CU_ASSERT_EQUAL(e->frame->len, 5);
    CU_ASSERT_EQUAL(memcmp(e->frame->data, "msg-1", 5), 0);
    CU_ASSERT_PTR_NULL(rc_group_hist_at(g, 2));
    CU_ASSERT_PTR_NULL(rc_group_hist_at(g, UINT64_MAX));
    rc_group_free(g); /* frees f; ASan reports a leak otherwise */
}

/* ---- dedup ---- */

/* n messages into a group (hmax, window); message s carries a mid unless
 * s % no_mid_every == 0 (no_mid_every 0: every message has one). After each
 * message, every earlier mid must be found exactly while it is among the
 * last `effective window` messages. */
static void check_dedup(uint32_t hmax, uint32_t window, uint32_t n, uint32_t no_mid_every)
{
    rc_group *g = rc_group_new("d", 1, hmax, window);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    uint32_t w = window < hmax ? window : hmax;
    CU_ASSERT_EQUAL(g->dedup_window, w);
    char k[DKEY_BUF];
    uint32_t bad = 0;
    for (uint64_t s = 1; s <= n; s++) {
        int has_mid = no_mid_every == 0 || s % no_mid_every != 0;
        const char *user = (s % 2) ? "alice" : "bob";
        uint32_t kl = dkey_of(k, user, s);
        if (has_mid && rc_group_find_dup(g, k, kl) != 0)
            bad++; /* a new mid is not a dup */
        rc_frame *f = frame_for(s);
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        if (rc_group_remember(g, TS_BASE + s, f, has_mid ? k : NULL, has_mid ? kl : 0) != 0)
            bad++;
        uint32_t in_window = 0;
        for (uint64_t q = 1; q <= s; q++) {
            int q_mid = no_mid_every == 0 || q % no_mid_every != 0;
            uint32_t ql = dkey_of(k, (q % 2) ? "alice" : "bob", q);
            uint64_t want = (q_mid && s - q < w) ? q : 0;
            if (rc_group_find_dup(g, k, ql) != want)
                bad++;
            in_window += want != 0;
            /* the same mid from the other user is a different key */
            ql = dkey_of(k, (q % 2) ? "bob" : "alice", q);
            if (rc_group_find_dup(g, k, ql) != 0)
                bad++;
        }
        if (g->dedup.n != in_window)
            bad++;
        /* a remembered mid always names a retained message */
        for (uint32_t i = 0; i < g->dedup.cap; i++)
            if (g->dedup.slots[i].hash && !rc_group_hist_at(g, g->dedup.slots[i].val))
                bad++;
    }
    CU_ASSERT_EQUAL(bad, 0);
    if (bad)
        fprintf(stderr, "history_max=%u dedup_window=%u no_mid_every=%u: %u mismatches\n",
                hmax, window, no_mid_every, bad);
    rc_group_free(g);
}

static void test_dedup_window_edges(void)
{
    /* Explicitly, with window 4: a mid is found while it is one of the last
     * 4 messages and forgotten when the 4th message after it arrives. */
    rc_group *g = rc_group_new("g", 1, HIST_MAX, DEDUP_SMALL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    char k[DKEY_BUF];
    uint32_t kl = dkey_of(k, "alice", 1);
    CU_ASSERT_EQUAL(rc_group_remember(g, TS_BASE, frame_for(1), k, kl), 0);
    CU_ASSERT_EQUAL(rc_group_find_dup(g, k, kl), 1);
    CU_ASSERT_EQUAL(rc_group_hist_at(g, 1)->dkey_len, kl);
    for (uint64_t s = 2; s <= DEDUP_SMALL; s++) {
        CU_ASSERT_EQUAL(rc_group_remember(g, TS_BASE + s, frame_for(s), NULL, 0), 0);
        CU_ASSERT_EQUAL(rc_group_find_dup(g, k, kl), 1); /* still one of the last 4 */
    }
    CU_ASSERT_EQUAL(rc_group_remember(g, TS_BASE, frame_for(DEDUP_SMALL + 1), NULL, 0), 0);
    CU_ASSERT_EQUAL(rc_group_find_dup(g, k, kl), 0);
    CU_ASSERT_EQUAL(g->dedup.n, 0);
    /* the message itself is still in history, its key released */
    const rc_hist_entry *e = rc_group_hist_at(g, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    CU_ASSERT_PTR_NULL(e->dkey);
    /* the same mid may now be sequenced again */
    CU_ASSERT_EQUAL(rc_group_remember(g, TS_BASE, frame_for(99), k, kl), 0);
    CU_ASSERT_EQUAL(rc_group_find_dup(g, k, kl), DEDUP_SMALL + 2);
    rc_group_free(g);
}

/* The same key remembered twice while the first is still in the window
 * (a mid sequenced again after a restart reloaded history): the newer entry
 * takes the key, the older lets go of it, and expiring both later frees it
 * once (ASan would see a double free or a use after free). */
static void test_dedup_key_moves(void)
{
    rc_group *g = rc_group_new("g", 1, HIST_MAX, DEDUP_SMALL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    char k[DKEY_BUF];
    uint32_t kl = dkey_of(k, "alice", 7);
    CU_ASSERT_EQUAL(rc_group_remember(g, TS_BASE, frame_for(1), k, kl), 0);
    CU_ASSERT_EQUAL(rc_group_remember(g, TS_BASE, frame_for(2), k, kl), 0);
    CU_ASSERT_EQUAL(rc_group_find_dup(g, k, kl), 2);
    CU_ASSERT_PTR_NULL(rc_group_hist_at(g, 1)->dkey);
    CU_ASSERT_PTR_NOT_NULL(rc_group_hist_at(g, 2)->dkey);
    CU_ASSERT_EQUAL(g->dedup.n, 1);
    for (uint64_t s = 3; s <= 3 * DEDUP_SMALL; s++)
        CU_ASSERT_EQUAL(rc_group_remember(g, TS_BASE + s, frame_for(s), NULL, 0), 0);
    CU_ASSERT_EQUAL(rc_group_find_dup(g, k, kl), 0);
    CU_ASSERT_EQUAL(g->dedup.n, 0);
    /* And undoing the newest, which holds a key, releases it too. */
    CU_ASSERT_EQUAL(rc_group_remember(g, TS_BASE, frame_for(99), k, kl), 0);
    rc_group_forget_last(g);
    CU_ASSERT_EQUAL(rc_group_find_dup(g, k, kl), 0);
    CU_ASSERT_EQUAL(g->dedup.n, 0);
    rc_group_free(g);
}

static void test_dedup_windows(void)
{
    check_dedup(HIST_MAX, DEDUP_SMALL, N_MSGS, 0);    /* window < history */
    check_dedup(HIST_MAX, DEDUP_SMALL, N_MSGS, 3);    /* with some mid-less messages */
    check_dedup(HIST_MAX, HIST_MAX, N_MSGS, 0);       /* window == history */
    check_dedup(HIST_MAX, HIST_MAX, N_MSGS, 4);
    check_dedup(HIST_MAX, HIST_MAX + 7, N_MSGS, 0);   /* clamped to history */
    check_dedup(HIST_MAX, 1, N_MSGS, 0);              /* only the newest */
    check_dedup(HIST_MAX, HIST_MAX - 1, N_MSGS, 2);
    check_dedup(3, 3, 20, 0);                         /* small ring, before first growth */
    check_dedup(20, 13, 70, 5);                       /* grows 8 -> 16 -> 20 */
    check_dedup(1, 1, 6, 0);
}

static void test_dedup_disabled(void)
{
    rc_group *g = rc_group_new("g", 1, HIST_MAX, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CU_ASSERT_EQUAL(g->dedup_window, 0);
    char k[DKEY_BUF];
    uint32_t kl = dkey_of(k, "alice", 1);
    for (uint64_t s = 1; s <= N_MSGS; s++) {
        CU_ASSERT_EQUAL(rc_group_remember(g, TS_BASE + s, frame_for(s), k, kl), 0);
        CU_ASSERT_EQUAL(rc_group_find_dup(g, k, kl), 0);
        CU_ASSERT_PTR_NULL(rc_group_hist_at(g, s)->dkey);
    }
    CU_ASSERT_EQUAL(g->dedup.n, 0);
    CU_ASSERT_EQUAL(g->last_seq, N_MSGS);
    rc_group_free(g);

    check_dedup(HIST_MAX, 0, N_MSGS, 0);
    check_dedup(HIST_MAX, 0, N_MSGS, 2);
}

static void test_no_mid(void)
{
    rc_group *g = rc_group_new("g", 1, HIST_MAX, DEDUP_SMALL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    for (uint64_t s = 1; s <= N_MSGS; s++) {
        CU_ASSERT_EQUAL(rc_group_remember(g, TS_BASE + s, frame_for(s), NULL, 0), 0);
        CU_ASSERT_EQUAL(g->dedup.n, 0);
    }
    CU_ASSERT_EQUAL(g->last_seq, N_MSGS);
    CU_ASSERT_EQUAL(rc_group_first_seq(g), N_MSGS - HIST_MAX + 1);
    for (uint64_t s = rc_group_first_seq(g); s <= N_MSGS; s++) {
        const rc_hist_entry *e = rc_group_hist_at(g, s);
        CU_ASSERT_PTR_NOT_NULL_FATAL(e);
        CU_ASSERT_PTR_NULL(e->dkey);
    }
    rc_group_free(g);
}

/* ---- frame references ---- */

static void test_frames_released_on_free(void)
{
    /* With mids and a window, some frames evicted, some retained at free. */
    rc_group *g = rc_group_new("g", 1, HIST_MAX, DEDUP_SMALL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    rc_frame *frames[N_MSGS + 1];
    char k[DKEY_BUF];
    for (uint64_t s = 1; s <= N_MSGS; s++) {
        frames[s] = frame_for(s);
        CU_ASSERT_PTR_NOT_NULL_FATAL(frames[s]);
        CU_ASSERT_EQUAL(frame_refs(frames[s]), 1);
        rc_frame_ref(frames[s], 1);
        uint32_t kl = dkey_of(k, "carol", s);
        CU_ASSERT_EQUAL(rc_group_remember(g, TS_BASE + s, frames[s], k, kl), 0);
    }
    for (uint64_t s = 1; s <= N_MSGS; s++)
        CU_ASSERT_EQUAL(frame_refs(frames[s]), s > N_MSGS - HIST_MAX ? 2u : 1u);
    rc_group_free(g);
    for (uint64_t s = 1; s <= N_MSGS; s++) {
        CU_ASSERT_EQUAL(frame_refs(frames[s]), 1);
        rc_frame_unref(frames[s]);
    }

    /* A group freed before its history ever filled. */
    g = rc_group_new("g", 1, HIST_MAX, HIST_MAX);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    for (uint64_t s = 1; s <= 3; s++) {
        frames[s] = frame_for(s);
        CU_ASSERT_PTR_NOT_NULL_FATAL(frames[s]);
        rc_frame_ref(frames[s], 1);
        uint32_t kl = dkey_of(k, "dave", s);
        CU_ASSERT_EQUAL(rc_group_remember(g, TS_BASE + s, frames[s], k, kl), 0);
    }
    rc_group_free(g);
    for (uint64_t s = 1; s <= 3; s++) {
        CU_ASSERT_EQUAL(frame_refs(frames[s]), 1);
        rc_frame_unref(frames[s]);
    }
}

/* A cold group's tail and the older messages read back into a scratch
 * group, which takes the tail after them: the group takes the whole, the
 * account follows, the scratch group's old ring goes with it. */
static void test_take_history(void)
{
    uint64_t acct = 0;
    rc_group *g = rc_group_new("cold", 4, HIST_MAX, DEDUP_SMALL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    g->acct = &acct;
    g->last_seq = 6; /* 1..6 stored, out of memory */
    char dk[DKEY_BUF];
    uint32_t dl = dkey_of(dk, "u", 7);
    CU_ASSERT_EQUAL(rc_group_remember(g, TS_BASE + 7, frame_for(7), dk, dl), 0); /* the tail: seq 7 */
    CU_ASSERT_EQUAL(rc_group_first_seq(g), 7);
    uint64_t tail_bytes = g->hist_bytes;
    CU_ASSERT_EQUAL(acct, tail_bytes);
    rc_group *t = rc_group_new("cold", 4, HIST_MAX, DEDUP_SMALL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    t->last_seq = 3; /* read back: 4..6 */
    for (uint64_t q = 4; q <= 6; q++) {
        dl = dkey_of(dk, "u", q);
        CU_ASSERT_EQUAL(rc_group_remember(t, TS_BASE + q, frame_for(q), dk, dl), 0);
    }
    const rc_hist_entry *e = rc_group_hist_at(g, 7);
    rc_frame_ref(e->frame, 1);
    CU_ASSERT_EQUAL(rc_group_remember(t, e->ts, e->frame, e->dkey, e->dkey_len), 0);
    rc_frame *f7 = e->frame;
    rc_group_take_history(g, t);
    rc_group_free(t); /* the old tail's ring and reference */
    CU_ASSERT_EQUAL(frame_refs(f7), 1);
    CU_ASSERT_EQUAL(g->last_seq, 7);
    CU_ASSERT_EQUAL(rc_group_first_seq(g), 4);
    CU_ASSERT_EQUAL(g->hist_n, 4);
    CU_ASSERT_EQUAL(acct, g->hist_bytes);
    CU_ASSERT(g->hist_bytes > tail_bytes);
    for (uint64_t q = 4; q <= 7; q++) {
        dl = dkey_of(dk, "u", q);
        CU_ASSERT_EQUAL(rc_group_find_dup(g, dk, dl), q); /* the window: 4..7 */
        CU_ASSERT_EQUAL(rc_group_hist_at(g, q)->ts, TS_BASE + q);
    }
    dl = dkey_of(dk, "u", 3);
    CU_ASSERT_EQUAL(rc_group_find_dup(g, dk, dl), 0);
    CU_ASSERT_EQUAL(rc_group_remember(g, TS_BASE + 8, frame_for(8), NULL, 0), 0); /* goes on from there */
    CU_ASSERT_EQUAL(rc_group_hist_at(g, 8)->seq, 8);
    dl = dkey_of(dk, "u", 4);
    CU_ASSERT_EQUAL(rc_group_find_dup(g, dk, dl), 0); /* left the window of DEDUP_SMALL */
    rc_group_evict_history(g);
    CU_ASSERT_EQUAL(acct, 0);
    rc_group_free(g);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return CU_get_error();
    CU_pSuite s = CU_add_suite("group", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "new", test_new) ||
        !CU_add_test(s, "subscribe/unsubscribe", test_subscribe) ||
        !CU_add_test(s, "history ring and eviction", test_history_ring) ||
        !CU_add_test(s, "history lookups at the edges", test_history_empty_after_new) ||
        !CU_add_test(s, "dedup window edge", test_dedup_window_edges) ||
        !CU_add_test(s, "dedup windows", test_dedup_windows) ||
        !CU_add_test(s, "dedup key remembered twice moves to the newer entry", test_dedup_key_moves) ||
        !CU_add_test(s, "dedup disabled", test_dedup_disabled) ||
        !CU_add_test(s, "messages without mid", test_no_mid) ||
        !CU_add_test(s, "frames released on free", test_frames_released_on_free) ||
        !CU_add_test(s, "a tail takes back its older history", test_take_history)) {
        CU_cleanup_registry();
        return CU_get_error();
    }
    return rc_test_run();
}
