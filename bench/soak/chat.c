/*
 * Steady chat traffic: P publishers and R readers in one epoll loop.
 *
 * Membership: member slot s (0 <= s < G*M) is a member of group s / M and
 * lives on reader connection s % R, so every group has M distinct readers
 * (R >= M) and each reader holds G*M/R groups. Group g is published to only
 * by publisher g % P, which joins its groups (sending needs membership).
 *
 * Load: open loop. Group g gets a share of the rate (the first `hot` groups
 * share hot_share of it, the others the rest); each publisher sends its
 * groups' sum, paced on the loop clock, each message to one of its groups
 * drawn by weight. A body carries its scheduled send time, so time spent
 * waiting behind a held socket counts in the latency. A publisher keeps at
 * most --window sends unacknowledged; a schedule more than BEHIND_MAX_S
 * behind drops the excess (counted as `behind`: load the server could not
 * take).
 *
 * Checks, on every reader and on every publisher's echoes (both read as fast
 * as they can): each (connection, group) stream is gapless from `joined`
 * (stream.c); a publisher's body is well formed, names the group it came
 * in, comes from the group's publisher, and its publisher seq rises within
 * the group (a skip is a refused send, a repeat a message sequenced twice).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "conn.h"
#include "soak.h"

#define MAX_EVENTS 256
#define LOOP_TICK_MS 2              /* longest epoll wait: the pacing resolution */
#define READ_BUDGET (256u << 10)    /* bytes read from one connection per event */
#define UNSENT_MAX (256u << 10)     /* a publisher queues no more above this */
#define BEHIND_MAX_S 2.0            /* schedule kept at most this far behind */

typedef struct chat_conn {
    soak_conn c;
    bool is_pub;
    uint32_t index;          /* reader i or publisher j */
    uint32_t pending;        /* setup replies awaited; 0 = ready */
    bool dead;
    bool epollout;
    uint32_t n_groups;
    uint32_t *groups;        /* [n_groups] steady group numbers */
    soak_stream *streams;    /* [n_groups] */
    int32_t *slot;           /* [G] index into groups/streams, -1 if not joined */
    /* publisher only */
    double rate;             /* its messages/s */
    double *cum;             /* [n_groups] cumulative weights, last = 1 */
    uint64_t *pseq;          /* [n_groups] its messages to each group so far */
    uint64_t scheduled;      /* messages due so far (sent or dropped) */
    uint64_t sent, acked, refused; /* read by main: LOAD */
    rc_rng rng;
} chat_conn;

struct soak_chat {
    const soak_options *o;
    pthread_t tid;
    int ep;
    uint32_t n_conns;        /* readers, then publishers */
    chat_conn *conns;
    double *weight;          /* [G] share of the rate of group g */
    uint8_t *body;           /* scratch body */
    uint64_t t0_ns;          /* load start (first turn in SOAK_RUN) */
    uint64_t now_ns;         /* loop clock */
    rc_hist lat_all, lat_period;
    uint64_t next_period_ns;
    soak_chat_stats st;
};

/* ---- setup ---- */

static void add_group(chat_conn *cc, uint32_t g)
{
    if (cc->slot[g] >= 0)
        return;
    cc->slot[g] = (int32_t)cc->n_groups;
    cc->groups[cc->n_groups++] = g;
}

static int conn_alloc(soak_chat *ch, chat_conn *cc, uint32_t max_groups)
{
    uint32_t G = ch->o->groups;
    cc->groups = calloc(max_groups ? max_groups : 1, sizeof *cc->groups);
    cc->streams = calloc(max_groups ? max_groups : 1, sizeof *cc->streams);
    cc->slot = malloc(sizeof *cc->slot * G);
    if (!cc->groups || !cc->streams || !cc->slot)
        return -1;
    for (uint32_t g = 0; g < G; g++)
        cc->slot[g] = -1;
    return 0;
}

static void plan_weights(soak_chat *ch)
{
    const soak_options *o = ch->o;
    uint32_t cold = o->groups - o->hot;
    for (uint32_t g = 0; g < o->groups; g++)
        ch->weight[g] = g < o->hot ? o->hot_share / o->hot
                                   : (cold ? (1.0 - o->hot_share) / cold : 0);
}

static int plan_publisher(soak_chat *ch, chat_conn *cc)
{
    const soak_options *o = ch->o;
    for (uint32_t g = cc->index; g < o->groups; g += o->publishers)
        add_group(cc, g);
    cc->cum = malloc(sizeof *cc->cum * (cc->n_groups ? cc->n_groups : 1));
    cc->pseq = calloc(cc->n_groups ? cc->n_groups : 1, sizeof *cc->pseq);
    if (!cc->cum || !cc->pseq)
        return -1;
    double sum = 0;
    for (uint32_t i = 0; i < cc->n_groups; i++)
        sum += ch->weight[cc->groups[i]];
    double run = 0;
    for (uint32_t i = 0; i < cc->n_groups; i++) {
        run += ch->weight[cc->groups[i]];
        cc->cum[i] = sum > 0 ? run / sum : (double)(i + 1) / cc->n_groups;
    }
    cc->rate = o->rate * sum;
    rc_rng_seed(&cc->rng, o->seed * 1000003u + cc->index);
    return 0;
}

static void queue_setup(chat_conn *cc, const char *user_prefix)
{
    char user[SOAK_NAME_MAX], g[SOAK_NAME_MAX];
    rc_msg hello = { .type = RC_T_HELLO, .user = rc_str_c(soak_name(user, user_prefix, cc->index)) };
    soak_conn_queue(&cc->c, &hello);
    for (uint32_t i = 0; i < cc->n_groups; i++) {
        rc_msg join = { .type = RC_T_JOIN, .g = rc_str_c(soak_name(g, SOAK_STEADY_PREFIX, cc->groups[i])) };
        soak_conn_queue(&cc->c, &join);
    }
    cc->pending = 1 + cc->n_groups;
}

static int epoll_set(soak_chat *ch, chat_conn *cc, bool out)
{
    struct epoll_event ev = { .events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = cc };
    cc->epollout = out;
    return epoll_ctl(ch->ep, EPOLL_CTL_MOD, cc->c.fd, &ev);
}

static int open_all(soak_chat *ch)
{
    const soak_options *o = ch->o;
    uint32_t per_reader = (o->groups * o->members + o->readers - 1) / o->readers;
    for (uint32_t i = 0; i < ch->n_conns; i++) {
        chat_conn *cc = &ch->conns[i];
        cc->is_pub = i >= o->readers;
        cc->index = cc->is_pub ? i - o->readers : i;
        if (conn_alloc(ch, cc, cc->is_pub ? o->groups / o->publishers + 1 : per_reader) < 0)
            return -1;
    }
    for (uint32_t s = 0; s < o->groups * o->members; s++)
        add_group(&ch->conns[s % o->readers], s / o->members);
    for (uint32_t j = 0; j < o->publishers; j++)
        if (plan_publisher(ch, &ch->conns[o->readers + j]) < 0)
            return -1;
    for (uint32_t i = 0; i < ch->n_conns; i++) {
        chat_conn *cc = &ch->conns[i];
        if (soak_conn_open(&cc->c, o->port, 0) < 0) {
            fprintf(stderr, "ringcast-soak: chat: cannot connect to %s:%u\n", SOAK_HOST, o->port);
            return -1;
        }
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = cc };
        if (epoll_ctl(ch->ep, EPOLL_CTL_ADD, cc->c.fd, &ev) < 0)
            return -1;
        queue_setup(cc, cc->is_pub ? SOAK_PUB_USER : SOAK_READER_USER);
    }
    return 0;
}

/* ---- receiving ---- */

static void conn_dead(soak_chat *ch, chat_conn *cc, const char *why)
{
    if (cc->dead)
        return;
    STORE(cc->dead, true);
    BUMP(ch->st.lost_conns, 1);
    fprintf(stderr, "ringcast-soak: chat: %s%u lost: %s\n", cc->is_pub ? SOAK_PUB_USER : SOAK_READER_USER,
            cc->index, why);
    epoll_ctl(ch->ep, EPOLL_CTL_DEL, cc->c.fd, NULL);
    soak_conn_close(&cc->c);
}

static void check_publisher_body(soak_chat *ch, chat_conn *cc, soak_stream *s, uint32_t g, const rc_msg *m)
{
    uint32_t bg;
    uint64_t pseq, ts;
    char owner[SOAK_NAME_MAX];
    soak_name(owner, SOAK_PUB_USER, g % ch->o->publishers);
    if (!rc_str_eq(m->from, rc_str_c(owner)) ||
        soak_body_check((const uint8_t *)m->body.ptr, m->body.len, ch->o->body, &bg, &pseq, &ts) < 0 ||
        bg != g) {
        BUMP(ch->st.corrupt, 1);
        return;
    }
    if (s->pub_last && pseq > s->pub_last + 1)
        BUMP(ch->st.pub_jumps, pseq - s->pub_last - 1);
    else if (s->pub_last && pseq <= s->pub_last)
        BUMP(ch->st.pub_repeats, 1);
    if (pseq > s->pub_last)
        s->pub_last = pseq;
    if (!cc->is_pub && ch->now_ns > ts) {
        rc_hist_record(&ch->lat_all, ch->now_ns - ts);
        rc_hist_record(&ch->lat_period, ch->now_ns - ts);
    }
}

static void on_delivery(soak_chat *ch, chat_conn *cc, const rc_msg *m)
{
    BUMP(*(cc->is_pub ? &ch->st.echoes : &ch->st.deliveries), 1);
    uint32_t g = soak_parse_name(m->g.ptr, m->g.len, SOAK_STEADY_PREFIX);
    if (g >= ch->o->groups || cc->slot[g] < 0) {
        BUMP(ch->st.stray, 1);
        return;
    }
    soak_stream *s = &cc->streams[cc->slot[g]];
    uint64_t skipped;
    switch (soak_stream_take(s, m->seq, &skipped)) {
    case SOAK_SEQ_NEXT: break;
    case SOAK_SEQ_GAP: BUMP(ch->st.gaps, skipped); break;
    case SOAK_SEQ_DUP: BUMP(ch->st.dups, 1); return;
    case SOAK_SEQ_BEHIND: BUMP(ch->st.reorders, 1); return;
    case SOAK_SEQ_EARLY: BUMP(ch->st.early, 1); return;
    }
    if (m->from.len >= strlen(SOAK_PUB_USER) && memcmp(m->from.ptr, SOAK_PUB_USER, strlen(SOAK_PUB_USER)) == 0)
        check_publisher_body(ch, cc, s, g, m);
    else
        BUMP(ch->st.foreign, 1);
}

static void on_setup_reply(soak_chat *ch, chat_conn *cc, const rc_msg *m)
{
    if (m->type == RC_T_JOINED) {
        uint32_t g = soak_parse_name(m->g.ptr, m->g.len, SOAK_STEADY_PREFIX);
        if (g >= ch->o->groups || cc->slot[g] < 0) {
            BUMP(ch->st.stray, 1);
            return;
        }
        soak_stream_join(&cc->streams[cc->slot[g]], m->seq);
    }
    if (cc->pending > 0 && --cc->pending == 0)
        BUMP(ch->st.ready, 1);
}

static void conn_output(soak_chat *ch, chat_conn *cc);

typedef struct frame_ctx {
    soak_chat *ch;
    chat_conn *cc;
} frame_ctx;

static void on_chat_frame(void *ud, const rc_msg *m)
{
    frame_ctx *x = ud;
    soak_chat *ch = x->ch;
    chat_conn *cc = x->cc;
    switch (m->type) {
    case RC_T_MSG:
        on_delivery(ch, cc, m);
        break;
    case RC_T_WELCOME:
    case RC_T_JOINED:
        on_setup_reply(ch, cc, m);
        break;
    case RC_T_ACK:
        BUMP(ch->st.acked, 1);
        BUMP(cc->acked, 1);
        if (m->dup)
            BUMP(ch->st.dup_acks, 1);
        break;
    case RC_T_ERR:
        if (cc->is_pub && cc->pending == 0) {
            soak_codes_bump(&ch->st.refused, m->code);
            BUMP(cc->refused, 1);
        } else {
            soak_codes_bump(&ch->st.other_errs, m->code);
            fprintf(stderr, "ringcast-soak: chat: %s%u got %s during setup: %.*s\n",
                    cc->is_pub ? SOAK_PUB_USER : SOAK_READER_USER, cc->index, rc_err_name(m->code),
                    (int)m->text.len, m->text.ptr);
        }
        break;
    case RC_T_BYE:
        BUMP(ch->st.byes, 1);
        break;
    case RC_T_PING: { /* the server's: this connection sent nothing for a while (PROTOCOL §6.6) */
        rc_msg pong = { .type = RC_T_PONG };
        BUMP(ch->st.pings, 1);
        if (soak_conn_queue(&cc->c, &pong) == 0)
            conn_output(ch, cc);
        break;
    }
    default:
        soak_codes_bump(&ch->st.other_errs, RC_OK);
        break;
    }
}

static void conn_input(soak_chat *ch, chat_conn *cc)
{
    frame_ctx x = { ch, cc };
    size_t got;
    soak_conn_rc rc = soak_conn_read(&cc->c, READ_BUDGET, on_chat_frame, &x, &got);
    if (rc == SOAK_CONN_BAD_FRAME) {
        BUMP(ch->st.bad_frames, 1);
        conn_dead(ch, cc, "a server frame that does not decode");
    } else if (rc == SOAK_CONN_CLOSED) {
        conn_dead(ch, cc, "closed by the server");
    }
}

static void conn_output(soak_chat *ch, chat_conn *cc)
{
    if (cc->dead)
        return;
    if (soak_conn_flush(&cc->c) != SOAK_CONN_OK) {
        conn_dead(ch, cc, "write failed");
        return;
    }
    bool want = soak_conn_unsent(&cc->c) > 0;
    if (want != cc->epollout)
        epoll_set(ch, cc, want);
}

/* ---- publishing ---- */

static uint32_t pick_group(chat_conn *cc)
{
    double u = rc_rng_uniform(&cc->rng);
    uint32_t lo = 0, hi = cc->n_groups - 1;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (cc->cum[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static void publish_one(soak_chat *ch, chat_conn *cc, uint64_t ts_ns)
{
    char g[SOAK_NAME_MAX], mid[SOAK_NAME_MAX];
    uint32_t i = pick_group(cc);
    uint64_t pseq = ++cc->pseq[i];
    soak_body_make(ch->body, ch->o->body, cc->groups[i], pseq, ts_ns);
    rc_msg m = { .type = RC_T_SEND, .has = RC_HAS_RID | RC_HAS_MID, .rid = cc->sent + 1,
                 .g = rc_str_c(soak_name(g, SOAK_STEADY_PREFIX, cc->groups[i])),
                 .mid = rc_str_c(soak_name(mid, "m", (uint32_t)pseq)),
                 .body = { (const char *)ch->body, ch->o->body } };
    /* mid: the group's publisher seq is unique per (user, group) for 2^32
     * messages, far beyond the dedup window */
    if (soak_conn_queue(&cc->c, &m) == 0) {
        BUMP(cc->sent, 1);
        BUMP(ch->st.sent, 1);
    }
}

static void publish_tick(soak_chat *ch, chat_conn *cc)
{
    if (cc->dead || cc->pending || cc->rate <= 0)
        return;
    double elapsed = (double)(ch->now_ns - ch->t0_ns) / 1e9;
    uint64_t due = (uint64_t)(cc->rate * elapsed);
    uint64_t keep = (uint64_t)(cc->rate * BEHIND_MAX_S);
    if (due > cc->scheduled + keep) {
        BUMP(ch->st.behind, due - keep - cc->scheduled);
        cc->scheduled = due - keep;
    }
    while (cc->scheduled < due && cc->sent - cc->acked - cc->refused < ch->o->window &&
           soak_conn_unsent(&cc->c) < UNSENT_MAX) {
        uint64_t ts = ch->t0_ns + (uint64_t)((double)cc->scheduled / cc->rate * 1e9);
        cc->scheduled++;
        publish_one(ch, cc, ts);
    }
}

/* ---- the loop ---- */

static void publish_latency(soak_chat *ch)
{
    STORE(ch->st.lat_count, ch->lat_period.total);
    STORE(ch->st.lat_p50_ns, rc_hist_percentile(&ch->lat_period, 50));
    STORE(ch->st.lat_p99_ns, rc_hist_percentile(&ch->lat_period, 99));
    STORE(ch->st.lat_max_ns, ch->lat_period.max);
    rc_hist_reset(&ch->lat_period);
}

static void *chat_main(void *arg)
{
    soak_chat *ch = arg;
    struct epoll_event evs[MAX_EVENTS];
    for (uint32_t i = 0; i < ch->n_conns; i++)
        conn_output(ch, &ch->conns[i]);
    uint64_t period_ns = (uint64_t)(ch->o->sample_s * 1e9);
    ch->next_period_ns = soak_now_ns() + period_ns;
    for (;;) {
        soak_phase ph = soak_phase_now();
        if (ph == SOAK_DONE)
            break;
        int n = epoll_wait(ch->ep, evs, MAX_EVENTS, LOOP_TICK_MS);
        ch->now_ns = soak_now_ns();
        for (int k = 0; k < n; k++) {
            chat_conn *cc = evs[k].data.ptr;
            if (!cc->dead && (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                conn_input(ch, cc);
            if (!cc->dead && (evs[k].events & EPOLLOUT))
                conn_output(ch, cc);
        }
        if (ph == SOAK_RUN) {
            if (!ch->t0_ns)
                ch->t0_ns = ch->now_ns;
            for (uint32_t j = 0; j < ch->o->publishers; j++) {
                chat_conn *cc = &ch->conns[ch->o->readers + j];
                publish_tick(ch, cc);
                if (soak_conn_unsent(&cc->c) > 0 && !cc->epollout)
                    conn_output(ch, cc);
            }
        }
        if (ch->now_ns >= ch->next_period_ns) {
            publish_latency(ch);
            ch->next_period_ns += period_ns;
        }
    }
    return NULL;
}

int soak_chat_start(const soak_options *o, soak_chat **out)
{
    soak_chat *ch = calloc(1, sizeof *ch);
    if (!ch)
        return -1;
    ch->o = o;
    ch->n_conns = o->readers + o->publishers;
    ch->conns = calloc(ch->n_conns, sizeof *ch->conns);
    ch->weight = calloc(o->groups, sizeof *ch->weight);
    ch->body = malloc(o->body);
    ch->ep = epoll_create1(EPOLL_CLOEXEC);
    if (!ch->conns || !ch->weight || !ch->body || ch->ep < 0 ||
        rc_hist_init(&ch->lat_all, SOAK_LAT_MAX_NS) < 0 || rc_hist_init(&ch->lat_period, SOAK_LAT_MAX_NS) < 0)
        return -1;
    for (uint32_t i = 0; i < ch->n_conns; i++)
        ch->conns[i].c.fd = -1;
    plan_weights(ch);
    *out = ch;
    if (open_all(ch) < 0)
        return -1;
    if (pthread_create(&ch->tid, NULL, chat_main, ch) != 0)
        return -1;
    return 0;
}

const soak_chat_stats *soak_chat_stats_of(const soak_chat *c)
{
    return &c->st;
}

uint64_t soak_chat_behind(const soak_chat *c, const uint64_t *audit, uint64_t *missing)
{
    uint64_t behind = 0;
    *missing = 0;
    for (uint32_t i = 0; i < c->n_conns; i++) {
        const chat_conn *cc = &c->conns[i];
        for (uint32_t k = 0; k < cc->n_groups; k++) {
            uint64_t last = LOAD(cc->streams[k].last);
            uint64_t want = audit[cc->groups[k]];
            if (last < want) {
                behind++;
                *missing += want - last;
            }
        }
    }
    return behind;
}

uint64_t soak_chat_unacked(const soak_chat *c)
{
    uint64_t n = 0;
    for (uint32_t j = 0; j < c->o->publishers; j++) {
        const chat_conn *cc = &c->conns[c->o->readers + j];
        if (!LOAD(cc->dead))
            n += LOAD(cc->sent) - LOAD(cc->acked) - LOAD(cc->refused);
    }
    return n;
}

const rc_hist *soak_chat_latency(const soak_chat *c)
{
    return &c->lat_all;
}

void soak_chat_join(soak_chat *c)
{
    pthread_join(c->tid, NULL);
}
