/*
 * Slow consumers: sessions that join the busiest groups (0..slow_groups-1)
 * and then fall behind on purpose, the way a phone on a bad network does.
 *
 * A slow consumer goes round a cycle:
 *
 *   CONNECT  open a session (a small SO_RCVBUF, so the kernel holds little
 *            and the server's own queue grows), join every group, with
 *            `since` = the last seq up to which it has everything when it
 *            has been here before;
 *   CATCHUP  read as fast as it can until every `join since` is `synced`,
 *            then FAST_S more seconds;
 *   LAG      one of three, in turn: stop reading for slow_stall_s / 2;
 *            read slow_read_bps for slow_stall_s; stop reading for
 *            slow_stall_s. The server finds it slow (over the pause mark
 *            for outbound_stall_ms), letters its deliveries past
 *            outbound_high_bytes and closes it past outbound_kill_bytes
 *            (proto/PROTOCOL.md §6.6);
 *   DRAIN    read as fast as it can until the last publisher message it got
 *            was sent less than CAUGHT_UP_S ago, or the server's close
 *            shows (EOF). Closed: back to CONNECT. Open: groups with a hole
 *            (lettered deliveries) are joined again with `since` in the same
 *            session, except that every KEEP_CYCLES-th lag survived ends in
 *            a close and a reconnect instead, so both ways back are used.
 *
 * The three lags take turns whether or not the server closes the session.
 *
 * What is checked: a live stream may have holes (that is what lettering
 * does) but never goes back; what a `join since` returns, between `joined`
 * and `synced`, starts at since + 1 (or later only when synced says
 * `lost`: history no longer reaches back, history_max = 1000 per group),
 * rises by exactly 1 and ends at synced's seq. After that the stream is
 * whole again from its resume point.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "soak.h"

#define SLOW_RCVBUF (32 << 10)      /* SO_RCVBUF of a slow consumer's socket */
#define FAST_S 10.0                 /* fast reading after a catch-up */
#define SYNC_MAX_S 60.0             /* catch-up bound: every join answered by then */
#define DRAIN_MAX_S 60.0            /* drain bound */
#define CAUGHT_UP_S 1.0             /* drained: the newest message is this fresh */
#define TRICKLE_TICK_MS 100u        /* a trickling consumer reads this often */
#define RECONNECT_MS 200u           /* pause before reopening a closed session */
#define KEEP_CYCLES 2u              /* every KEEP_CYCLES-th lag survived ends in a reconnect on purpose */
#define LOOP_TICK_MS 10
#define FAST_BUDGET (1u << 20)      /* bytes read per turn when reading fast */
#define SLOW_MAX 64u

typedef enum stream_state {
    SS_NONE,        /* never joined */
    SS_LIVE,        /* joined; live messages */
    SS_WAIT_JOINED, /* `join since` sent; messages before `joined` are old live ones */
    SS_REPLAY       /* between `joined` and `synced`: history */
} stream_state;

typedef struct slow_stream {
    stream_state st;
    uint64_t next;         /* live: seq expected next */
    uint64_t whole;        /* every seq up to this was received: the resume point */
    bool holed;            /* a live gap: seqs after `whole` are missing */
    uint64_t since;        /* the since of the pending `join since` */
    uint64_t replay_first; /* first replayed seq; 0: none yet */
    uint64_t replay_next;
} slow_stream;

typedef enum slow_state { SL_CONNECT, SL_CATCHUP, SL_LAG, SL_DRAIN } slow_state;
typedef enum lag_kind { LAG_STALL_SHORT, LAG_TRICKLE, LAG_STALL_LONG, LAG_KINDS } lag_kind;

typedef struct slow_consumer {
    uint32_t index;
    soak_conn c;
    bool open;
    slow_state st;
    lag_kind lag;            /* the current (or last) lag */
    lag_kind lag_next;       /* the next one: the kinds take turns whether or not the server closes */
    uint64_t until_ns;       /* the current state's deadline */
    uint64_t next_read_ns;   /* trickle: next read */
    uint64_t fast_until_ns;  /* catch-up: read fast until then once synced */
    uint64_t newest_ts_ns;   /* send time of the newest publisher message received */
    uint32_t survived;       /* lags the server let pass (all sessions) */
    uint32_t waiting;        /* catch-up: welcome + joins not yet synced/joined */
    slow_stream *streams;    /* [slow_groups] */
    soak_slow *owner;
} slow_consumer;

struct soak_slow {
    const soak_options *o;
    pthread_t tid;
    uint32_t n;
    slow_consumer *cs;
    uint64_t now_ns;
    soak_slow_stats st;
};

static uint64_t s_to_ns(double s)
{
    return (uint64_t)(s * 1e9);
}

/* ---- the protocol side ---- */

static void queue_join(slow_consumer *sc, uint32_t g, bool with_since)
{
    char name[SOAK_NAME_MAX];
    slow_stream *s = &sc->streams[g];
    rc_msg m = { .type = RC_T_JOIN, .g = rc_str_c(soak_name(name, SOAK_STEADY_PREFIX, g)) };
    if (with_since) {
        m.has |= RC_HAS_SINCE;
        m.since = s->whole;
        s->since = s->whole;
        s->st = SS_WAIT_JOINED;
    } else {
        s->st = SS_WAIT_JOINED;
        s->since = UINT64_MAX; /* a plain join: `joined` starts the stream */
    }
    s->replay_first = s->replay_next = 0;
    soak_conn_queue(&sc->c, &m);
    sc->waiting++;
}

static void on_joined(soak_slow *sl, slow_stream *s, uint64_t seq)
{
    if (s->st != SS_WAIT_JOINED)
        return;
    if (s->since == UINT64_MAX) { /* plain join: no history follows */
        s->st = SS_LIVE;
        s->next = seq + 1;
        s->whole = seq;
        s->holed = false;
        return;
    }
    s->st = SS_REPLAY;
    (void)sl;
}

/* `synced` ends a `join since`; with `more: true` only a page of it
 * (max_reply_bytes, PROTOCOL §6.3): true when the next page must be asked
 * for, with since = the last seq of this one. */
static bool on_synced(soak_slow *sl, slow_stream *s, const rc_msg *m)
{
    if (s->st != SS_REPLAY) {
        BUMP(sl->st.resync_bad, 1);
        return false;
    }
    uint64_t first = s->replay_first ? s->replay_first : m->seq + 1;
    if (m->more && s->replay_first && s->replay_next - 1 <= m->seq) {
        BUMP(sl->st.pages, 1);
        if (m->lost && first > s->since + 1)
            BUMP(sl->st.lost_seqs, first - s->since - 1);
        if (!m->lost && first > s->since + 1)
            BUMP(sl->st.resync_bad, 1);
        s->whole = s->replay_next - 1; /* whole up to the page's end */
        s->st = SS_LIVE;
        return true;
    }
    BUMP(sl->st.resyncs, 1);
    bool ends_right = s->replay_first ? s->replay_next - 1 == m->seq : m->seq <= s->since;
    if (!ends_right)
        BUMP(sl->st.resync_bad, 1);
    if (m->lost) {
        BUMP(sl->st.resync_lost, 1);
        if (first > s->since + 1)
            BUMP(sl->st.lost_seqs, first - s->since - 1);
    } else if (first > s->since + 1 && s->since < m->seq) {
        BUMP(sl->st.resync_bad, 1); /* history skipped seqs without saying lost */
    }
    s->st = SS_LIVE;
    s->next = m->seq + 1;
    s->whole = m->seq > s->whole ? m->seq : s->whole;
    s->holed = false;
    return false;
}

static void on_replayed(soak_slow *sl, slow_stream *s, uint64_t seq)
{
    BUMP(sl->st.replayed, 1);
    if (!s->replay_first) {
        if (seq <= s->since)
            BUMP(sl->st.resync_bad, 1);
        s->replay_first = seq;
    } else if (seq != s->replay_next) {
        BUMP(sl->st.resync_bad, 1);
    }
    s->replay_next = seq + 1;
}

static void on_live(soak_slow *sl, slow_stream *s, uint64_t seq)
{
    BUMP(sl->st.deliveries, 1);
    if (seq == s->next) {
        if (!s->holed)
            s->whole = seq;
    } else if (seq > s->next) {
        BUMP(sl->st.holes, 1);
        BUMP(sl->st.hole_seqs, seq - s->next);
        s->holed = true;
    } else {
        BUMP(sl->st.disorder, 1);
        return;
    }
    s->next = seq + 1;
}

static void on_msg(slow_consumer *sc, const rc_msg *m)
{
    soak_slow *sl = sc->owner;
    uint32_t g = soak_parse_name(m->g.ptr, m->g.len, SOAK_STEADY_PREFIX);
    if (g >= sl->o->slow_groups)
        return;
    slow_stream *s = &sc->streams[g];
    if (m->from.len >= strlen(SOAK_PUB_USER) && memcmp(m->from.ptr, SOAK_PUB_USER, strlen(SOAK_PUB_USER)) == 0) {
        uint32_t bg;
        uint64_t pseq, ts;
        if (soak_body_check((const uint8_t *)m->body.ptr, m->body.len, sl->o->body, &bg, &pseq, &ts) < 0 || bg != g)
            BUMP(sl->st.corrupt, 1);
        else if (ts > sc->newest_ts_ns)
            sc->newest_ts_ns = ts;
    }
    switch (s->st) {
    case SS_LIVE: on_live(sl, s, m->seq); break;
    case SS_REPLAY: on_replayed(sl, s, m->seq); break;
    case SS_WAIT_JOINED: BUMP(sl->st.deliveries, 1); break; /* queued before the join */
    case SS_NONE: break;
    }
}

static void on_frame(void *ud, const rc_msg *m)
{
    slow_consumer *sc = ud;
    soak_slow *sl = sc->owner;
    uint32_t g = m->g.len ? soak_parse_name(m->g.ptr, m->g.len, SOAK_STEADY_PREFIX) : UINT32_MAX;
    bool mine = g < sl->o->slow_groups;
    switch (m->type) {
    case RC_T_MSG:
        on_msg(sc, m);
        break;
    case RC_T_WELCOME:
        if (sc->waiting)
            sc->waiting--;
        break;
    case RC_T_JOINED:
        if (mine) {
            on_joined(sl, &sc->streams[g], m->seq);
            if (sc->streams[g].st == SS_LIVE && sc->waiting)
                sc->waiting--;
        }
        break;
    case RC_T_SYNCED:
        if (mine) {
            bool next_page = on_synced(sl, &sc->streams[g], m);
            if (sc->waiting)
                sc->waiting--;
            if (next_page)
                queue_join(sc, g, true); /* flushed with the next read */
        }
        break;
    case RC_T_PING: { /* the server's: we sent nothing for a while (PROTOCOL §6.6) */
        rc_msg pong = { .type = RC_T_PONG };
        BUMP(sl->st.pings, 1);
        soak_conn_queue(&sc->c, &pong);
        break;
    }
    case RC_T_ERR:
        soak_codes_bump(&sl->st.errs, m->code);
        break;
    case RC_T_BYE:
        BUMP(sl->st.byes, 1);
        break;
    default:
        break;
    }
}

/* ---- the cycle ---- */

static void session_close(slow_consumer *sc)
{
    soak_conn_close(&sc->c);
    sc->open = false;
    /* joins in flight are void; their streams resume from `whole`, or
     * start afresh if they were never joined */
    for (uint32_t g = 0; g < sc->owner->o->slow_groups; g++) {
        slow_stream *s = &sc->streams[g];
        if (s->st == SS_WAIT_JOINED && s->since == UINT64_MAX)
            s->st = SS_NONE;
        else if (s->st != SS_NONE)
            s->st = SS_LIVE;
    }
}

static void session_open(slow_consumer *sc)
{
    soak_slow *sl = sc->owner;
    char user[SOAK_NAME_MAX];
    sc->waiting = 0;
    if (soak_conn_open(&sc->c, sl->o->port, SLOW_RCVBUF) < 0) {
        sc->until_ns = sl->now_ns + RECONNECT_MS * 1000000ull;
        return;
    }
    sc->open = true;
    BUMP(sl->st.connects, 1);
    rc_msg hello = { .type = RC_T_HELLO, .user = rc_str_c(soak_name(user, SOAK_SLOW_USER, sc->index)) };
    soak_conn_queue(&sc->c, &hello);
    sc->waiting++;
    for (uint32_t g = 0; g < sl->o->slow_groups; g++)
        queue_join(sc, g, sc->streams[g].st != SS_NONE);
    soak_conn_flush(&sc->c); /* the rest goes with the next read */
    sc->st = SL_CATCHUP;
    sc->fast_until_ns = 0;
    sc->until_ns = sl->now_ns + s_to_ns(SYNC_MAX_S);
}

/* Rejoins, in the open session, the groups with holes. */
static void rejoin_holed(slow_consumer *sc)
{
    for (uint32_t g = 0; g < sc->owner->o->slow_groups; g++)
        if (sc->streams[g].st == SS_LIVE && sc->streams[g].holed)
            queue_join(sc, g, true);
    soak_conn_flush(&sc->c);
}

/* Reads up to max bytes; false when the session ended (closed by the server). */
static bool session_read(slow_consumer *sc, size_t max)
{
    soak_slow *sl = sc->owner;
    size_t got;
    soak_conn_rc rc = soak_conn_read(&sc->c, max, on_frame, sc, &got);
    if (rc == SOAK_CONN_OK)
        rc = soak_conn_flush(&sc->c);
    if (rc == SOAK_CONN_OK)
        return true;
    if (rc == SOAK_CONN_BAD_FRAME)
        BUMP(sl->st.bad_frames, 1);
    else
        BUMP(sl->st.closed_by_server, 1);
    session_close(sc);
    sc->st = SL_CONNECT;
    sc->until_ns = sl->now_ns + RECONNECT_MS * 1000000ull;
    return false;
}

static void start_lag(slow_consumer *sc)
{
    soak_slow *sl = sc->owner;
    double stall = sl->o->slow_stall_s;
    BUMP(sl->st.cycles, 1);
    sc->lag = sc->lag_next;
    sc->st = SL_LAG;
    sc->until_ns = sl->now_ns + s_to_ns(sc->lag == LAG_STALL_SHORT ? stall / 2 : stall);
    sc->next_read_ns = sl->now_ns;
    BUMP(*(sc->lag == LAG_TRICKLE ? &sl->st.trickles : &sl->st.stalls), 1);
    sc->lag_next = (lag_kind)((sc->lag + 1) % LAG_KINDS);
}

static void after_drain(slow_consumer *sc)
{
    soak_slow *sl = sc->owner;
    if (++sc->survived % KEEP_CYCLES == 0) {
        BUMP(sl->st.left_open, 1);
        session_close(sc);
        sc->st = SL_CONNECT;
        sc->until_ns = sl->now_ns + RECONNECT_MS * 1000000ull;
        return;
    }
    rejoin_holed(sc);
    sc->st = SL_CATCHUP;
    sc->fast_until_ns = 0;
    sc->until_ns = sl->now_ns + s_to_ns(SYNC_MAX_S);
}

/* One turn of consumer sc; returns the poll events it wants now (0: none). */
static short step(slow_consumer *sc)
{
    soak_slow *sl = sc->owner;
    uint64_t now = sl->now_ns;
    switch (sc->st) {
    case SL_CONNECT:
        if (now >= sc->until_ns)
            session_open(sc);
        return sc->open ? POLLIN : 0;
    case SL_CATCHUP:
        if (sc->waiting == 0 && !sc->fast_until_ns)
            sc->fast_until_ns = now + s_to_ns(FAST_S);
        if ((sc->fast_until_ns && now >= sc->fast_until_ns) || now >= sc->until_ns)
            start_lag(sc); /* a catch-up past its bound lags anyway; resync_bad shows it */
        return POLLIN;
    case SL_LAG:
        if (now >= sc->until_ns) {
            sc->st = SL_DRAIN;
            sc->until_ns = now + s_to_ns(DRAIN_MAX_S);
            return POLLIN;
        }
        if (sc->lag == LAG_TRICKLE && now >= sc->next_read_ns) {
            sc->next_read_ns = now + TRICKLE_TICK_MS * 1000000ull;
            session_read(sc, sl->o->slow_read_bps * TRICKLE_TICK_MS / 1000u);
        }
        return 0;
    case SL_DRAIN: {
        uint64_t fresh = now > s_to_ns(CAUGHT_UP_S) ? now - s_to_ns(CAUGHT_UP_S) : 0;
        if (sc->newest_ts_ns >= fresh || now >= sc->until_ns) {
            after_drain(sc);
            return sc->open ? POLLIN : 0;
        }
        return POLLIN;
    }
    }
    return 0;
}

static void *slow_main(void *arg)
{
    soak_slow *sl = arg;
    struct pollfd pfd[SLOW_MAX];
    slow_consumer *who[SLOW_MAX];
    while (soak_phase_now() == SOAK_RUN) {
        sl->now_ns = soak_now_ns();
        uint32_t n = 0;
        for (uint32_t i = 0; i < sl->n; i++) {
            short ev = step(&sl->cs[i]);
            if (ev && sl->cs[i].open) {
                pfd[n] = (struct pollfd){ sl->cs[i].c.fd, ev, 0 };
                who[n++] = &sl->cs[i];
            }
        }
        int r = poll(pfd, n, LOOP_TICK_MS);
        if (r <= 0) {
            if (n == 0)
                soak_sleep_ms(LOOP_TICK_MS);
            continue;
        }
        sl->now_ns = soak_now_ns();
        for (uint32_t k = 0; k < n; k++)
            if (pfd[k].revents && who[k]->open)
                session_read(who[k], FAST_BUDGET);
    }
    for (uint32_t i = 0; i < sl->n; i++)
        if (sl->cs[i].open)
            session_close(&sl->cs[i]);
    return NULL;
}

int soak_slow_start(const soak_options *o, soak_slow **out)
{
    soak_slow *sl = calloc(1, sizeof *sl);
    if (!sl)
        return -1;
    *out = sl;
    sl->o = o;
    sl->n = o->slow < SLOW_MAX ? o->slow : SLOW_MAX;
    sl->cs = calloc(sl->n ? sl->n : 1, sizeof *sl->cs);
    if (!sl->cs)
        return -1;
    uint64_t now = soak_now_ns();
    for (uint32_t i = 0; i < sl->n; i++) {
        slow_consumer *sc = &sl->cs[i];
        sc->index = i;
        sc->owner = sl;
        sc->c.fd = -1;
        sc->lag_next = (lag_kind)(i % LAG_KINDS);
        sc->st = SL_CONNECT;
        /* spread the first lags over one stall, so the consumers do not
         * fall behind all at once */
        sc->until_ns = now + s_to_ns(o->slow_stall_s * i / (sl->n ? sl->n : 1));
        sc->streams = calloc(o->slow_groups ? o->slow_groups : 1, sizeof *sc->streams);
        if (!sc->streams)
            return -1;
    }
    return pthread_create(&sl->tid, NULL, slow_main, sl) == 0 ? 0 : -1;
}

const soak_slow_stats *soak_slow_stats_of(const soak_slow *s)
{
    return &s->st;
}

void soak_slow_join(soak_slow *s)
{
    pthread_join(s->tid, NULL);
}
