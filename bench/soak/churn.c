/*
 * Churn: short sessions, one after another at --churn-rate, with the
 * blocking client library (include/ringcast/client.h). Each: connect,
 * hello, join two steady groups and one churn group, send one message to a
 * steady group (and sometimes one to the churn group), sometimes a small
 * `hist`, sometimes `leave` the churn group, close (half of them without
 * reading what is still coming).
 *
 * User names come from a pool of --churn-users, and each user only ever
 * joins CHURN_CHOICES fixed steady groups and one churn group, so the
 * stored membership these sessions leave behind (PROTOCOL §6.3: it outlives
 * the session) stops growing once the pool has been round: the memory the
 * server keeps for them is bounded, and what grows after that is not theirs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ringcast/client.h>

#include "soak.h"

#define CHURN_GROUPS 4u       /* sx0..sx3: few, so their history is full early in a run */
#define CHURN_CHOICES 4u      /* steady groups a churn user may join */
#define CHURN_HIST_LIMIT 20u
#define CHURN_BEHIND_MAX_S 1.0

struct soak_churn {
    const soak_options *o;
    pthread_t tid;
    rc_rng rng;
    soak_churn_stats st;
};

/* Steady group number `choice` (0..CHURN_CHOICES-1) of churn user k. */
static uint32_t churn_group(const soak_options *o, uint32_t k, uint32_t choice)
{
    return (k * 7u + choice * 53u) % o->groups;
}

/* Counts a request's outcome: 0 ok; else an err code or a failure. */
static bool outcome(soak_churn *ch, int e)
{
    if (e == 0)
        return true;
    if (e > 0)
        soak_codes_bump(&ch->st.errs, (rc_err)e);
    else
        BUMP(ch->st.failures, 1);
    return false;
}

/* hist on g, checked: at most the limit, ascending by exactly 1. */
static int churn_hist(soak_churn *ch, rc_client *c, const char *g)
{
    rc_msg m = { .type = RC_T_HIST, .has = RC_HAS_RID | RC_HAS_LIMIT, .rid = c->next_rid++,
                 .g = rc_str_c(g), .limit = CHURN_HIST_LIMIT }, r;
    if (rc_client_send(c, &m) != 0 || rc_client_wait(c, RC_T_HIST, m.rid, &r, SOAK_IO_TIMEOUT_MS) != 1)
        return -1;
    if (r.type == RC_T_ERR)
        return (int)r.code;
    if (r.n_msgs > CHURN_HIST_LIMIT)
        return -1;
    for (uint32_t i = 1; i < r.n_msgs; i++)
        if (r.msgs[i].seq != r.msgs[i - 1].seq + 1)
            return -1;
    BUMP(ch->st.hists, 1);
    return 0;
}

static void churn_session(soak_churn *ch, uint64_t n)
{
    const soak_options *o = ch->o;
    uint32_t k = (uint32_t)(n % o->churn_users);
    char user[SOAK_NAME_MAX], g1[SOAK_NAME_MAX], g2[SOAK_NAME_MAX], gx[SOAK_NAME_MAX], body[48], mid[SOAK_NAME_MAX];
    uint32_t pick = (uint32_t)rc_rng_below(&ch->rng, CHURN_CHOICES);
    soak_name(user, SOAK_CHURN_USER, k);
    soak_name(g1, SOAK_STEADY_PREFIX, churn_group(o, k, pick));
    soak_name(g2, SOAK_STEADY_PREFIX, churn_group(o, k, (pick + 1) % CHURN_CHOICES));
    soak_name(gx, SOAK_CHURN_PREFIX, k % CHURN_GROUPS);
    rc_client c;
    if (rc_client_connect(&c, SOAK_HOST, o->port, SOAK_CONNECT_TIMEOUT_MS) != 0) {
        BUMP(ch->st.failures, 1);
        rc_client_close(&c);
        return;
    }
    BUMP(ch->st.sessions, 1);
    bool ok = outcome(ch, rc_client_hello(&c, user, SOAK_IO_TIMEOUT_MS)) &&
              outcome(ch, rc_client_join(&c, g1, SOAK_IO_TIMEOUT_MS, NULL)) &&
              outcome(ch, rc_client_join(&c, g2, SOAK_IO_TIMEOUT_MS, NULL)) &&
              outcome(ch, rc_client_join(&c, gx, SOAK_IO_TIMEOUT_MS, NULL));
    int len = snprintf(body, sizeof body, "churn %llu from %s", (unsigned long long)n, user);
    snprintf(mid, sizeof mid, "c%llu", (unsigned long long)n);
    if (ok && (ok = outcome(ch, rc_client_publish(&c, g1, body, (size_t)len, mid, SOAK_IO_TIMEOUT_MS, NULL))))
        BUMP(ch->st.sends_acked, 1);
    if (ok && rc_rng_below(&ch->rng, 4) == 0 &&
        (ok = outcome(ch, rc_client_publish(&c, gx, body, (size_t)len, NULL, SOAK_IO_TIMEOUT_MS, NULL))))
        BUMP(ch->st.sends_acked, 1);
    if (ok && rc_rng_below(&ch->rng, 4) == 0)
        ok = outcome(ch, churn_hist(ch, &c, g2));
    if (ok && rc_rng_below(&ch->rng, 3) == 0 && (ok = outcome(ch, rc_client_leave(&c, gx, SOAK_IO_TIMEOUT_MS))))
        BUMP(ch->st.leaves, 1);
    if (ok && rc_rng_below(&ch->rng, 2) == 0) {
        rc_msg m; /* read what is already there, then close */
        while (rc_client_recv(&c, &m, 0) == 1)
            ;
    }
    if (ok)
        BUMP(ch->st.completed, 1);
    rc_client_close(&c);
}

static void *churn_main(void *arg)
{
    soak_churn *ch = arg;
    uint64_t t0 = soak_now_ns(), n = 0;
    double rate = ch->o->churn_rate;
    while (soak_phase_now() == SOAK_RUN && rate > 0) {
        uint64_t due = t0 + (uint64_t)((double)n / rate * 1e9), now = soak_now_ns();
        if (now < due) {
            uint64_t ms = (due - now) / 1000000u;
            soak_sleep_ms(ms > 100 ? 100 : (uint32_t)ms + 1);
            continue;
        }
        if ((double)(now - due) / 1e9 > CHURN_BEHIND_MAX_S) /* fell behind: no burst */
            n = (uint64_t)((double)(now - t0) / 1e9 * rate);
        churn_session(ch, n++);
    }
    return NULL;
}

int soak_churn_start(const soak_options *o, soak_churn **out)
{
    soak_churn *ch = calloc(1, sizeof *ch);
    if (!ch)
        return -1;
    *out = ch;
    ch->o = o;
    rc_rng_seed(&ch->rng, o->seed ^ 0xc4c4c4c4u);
    return pthread_create(&ch->tid, NULL, churn_main, ch) == 0 ? 0 : -1;
}

const soak_churn_stats *soak_churn_stats_of(const soak_churn *c)
{
    return &c->st;
}

void soak_churn_join(soak_churn *c)
{
    pthread_join(c->tid, NULL);
}
