/*
 * Workload presets and the membership / rate tables of plan.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "workload.h" /* bench/lib: rc_rng, rc_zipf */

#define ACTIVITY_LEVELS 100u   /* chat-day send-rate levels 1..100 (Zipf) */

plan g_plan;

typedef struct preset {
    const char *name;
    plan_cfg cfg;
} preset;

/* Publishers own G/P groups each and ringcastd lets one session join at most
 * max_groups_per_session (1024 by default) groups: P is chosen to stay below.
 * The closed-loop window bounds messages in flight per publisher; rooms has
 * 500 deliveries per message, so its window is 400 (400k deliveries in
 * flight; fanout: 80k, many-groups: 200k) rather than 4000 (4 M). */
static const preset PRESETS[] = {
    { "fanout", { .prefix = "g", .groups = 1000, .members = 10, .subs = 200, .pubs = 2,
                  .window = 4000, .body = 100, .peak_to_trough = 1 } },
    { "rooms", { .prefix = "r", .groups = 20, .members = 500, .subs = 1000, .pubs = 2,
                 .window = 400, .body = 64, .peak_to_trough = 1 } },
    { "many-groups", { .prefix = "m", .groups = 10000, .members = 5, .subs = 500, .pubs = 10,
                       .window = 4000, .body = 64, .peak_to_trough = 1 } },
    { "chat-day", { .prefix = "c", .zipf = true, .groups = 2000, .subs = 2000, .pubs = 4,
                    .window = 4000, .body = 64, .size_min = 2, .size_max = 2000, .size_s = 1.8,
                    .activity_s = 1.0, .rate = 500, .peak_to_trough = 3 } },
};
#define N_PRESETS (sizeof PRESETS / sizeof PRESETS[0])

int plan_preset(const char *name, plan_cfg *cfg)
{
    for (size_t i = 0; i < N_PRESETS; i++) {
        if (strcmp(PRESETS[i].name, name) == 0) {
            *cfg = PRESETS[i].cfg;
            cfg->name = PRESETS[i].name;
            cfg->seed = 1;
            return 0;
        }
    }
    return -1;
}

const char *plan_preset_names(void)
{
    return "fanout, rooms, many-groups, chat-day";
}

void plan_free(void)
{
    plan *p = &g_plan;
    free(p->gsize);
    free(p->gbase);
    free(p->slot_sub);
    free(p->sbase);
    free(p->sgroup);
    free(p->sslot);
    free(p->pbase);
    free(p->pgroup);
    free(p->pcdf);
    free(p->pshare);
    memset(p, 0, sizeof *p);
}

static int fail(const char *why)
{
    fprintf(stderr, "ringcast-bench: %s\n", why);
    return -1;
}

/* Chooses k distinct users of C into out (Floyd's algorithm); mark[] holds
 * stamp for the chosen ones. */
static void choose_members(rc_rng *rng, uint32_t C, uint32_t k, uint32_t *mark, uint32_t stamp,
                           uint32_t *out)
{
    uint32_t n = 0;
    for (uint32_t j = C - k; j < C; j++) {
        uint32_t t = (uint32_t)rc_rng_below(rng, (uint64_t)j + 1);
        uint32_t pick = mark[t] == stamp ? j : t;
        mark[pick] = stamp;
        out[n++] = pick;
    }
}

/* Group sizes and member lists of chat-day: fills gsize, gbase, slot_sub. */
static int build_zipf_members(plan *p, rc_rng *rng)
{
    const plan_cfg *c = &p->cfg;
    rc_zipf z;
    uint32_t hi = c->size_max < p->C ? c->size_max : p->C;
    uint32_t lo = c->size_min < hi ? c->size_min : hi;
    if (rc_zipf_init(&z, lo, hi, c->size_s) < 0)
        return fail("cannot set up the group size distribution");
    p->nslots = 0;
    for (uint32_t g = 0; g < p->G; g++) {
        p->gsize[g] = rc_zipf_sample(&z, rng);
        p->nslots += p->gsize[g];
    }
    rc_zipf_free(&z);
    p->slot_sub = malloc(sizeof *p->slot_sub * p->nslots);
    uint32_t *mark = calloc(p->C, sizeof *mark);
    if (!p->slot_sub || !mark) {
        free(mark);
        return fail("out of memory");
    }
    uint64_t at = 0;
    for (uint32_t g = 0; g < p->G; g++) {
        p->gbase[g] = at;
        choose_members(rng, p->C, p->gsize[g], mark, g + 1, p->slot_sub + at);
        at += p->gsize[g];
    }
    p->gbase[p->G] = at;
    free(mark);
    return 0;
}

static int build_uniform_members(plan *p)
{
    uint32_t M = p->cfg.members;
    p->nslots = (uint64_t)p->G * M;
    p->slot_sub = malloc(sizeof *p->slot_sub * p->nslots);
    if (!p->slot_sub)
        return fail("out of memory");
    for (uint32_t g = 0; g <= p->G; g++)
        p->gbase[g] = (uint64_t)g * M;
    for (uint32_t g = 0; g < p->G; g++)
        p->gsize[g] = M;
    for (uint64_t s = 0; s < p->nslots; s++)
        p->slot_sub[s] = (uint32_t)(s % p->C);
    return 0;
}

/* Per-subscriber lists (groups ascending, since slots are visited in group
 * order). */
static int build_sub_lists(plan *p)
{
    p->sbase = calloc((size_t)p->C + 1, sizeof *p->sbase);
    p->sgroup = malloc(sizeof *p->sgroup * (p->nslots ? p->nslots : 1));
    p->sslot = malloc(sizeof *p->sslot * (p->nslots ? p->nslots : 1));
    uint64_t *fill = calloc(p->C, sizeof *fill);
    if (!p->sbase || !p->sgroup || !p->sslot || !fill) {
        free(fill);
        return fail("out of memory");
    }
    for (uint64_t s = 0; s < p->nslots; s++)
        p->sbase[p->slot_sub[s] + 1]++;
    for (uint32_t c = 0; c < p->C; c++) {
        p->sbase[c + 1] += p->sbase[c];
        uint64_t n = p->sbase[c + 1] - p->sbase[c];
        if (n > p->max_sub_groups)
            p->max_sub_groups = (uint32_t)n;
    }
    for (uint32_t g = 0; g < p->G; g++) {
        for (uint64_t s = p->gbase[g]; s < p->gbase[g + 1]; s++) {
            uint32_t c = p->slot_sub[s];
            uint64_t at = p->sbase[c] + fill[c]++;
            p->sgroup[at] = g;
            p->sslot[at] = s;
        }
    }
    free(fill);
    return 0;
}

/* Group rate weights (chat-day: from the users' send-rate levels), the
 * publishers' group lists, cumulative weights and shares, the mean fan-out. */
static int build_rates(plan *p, rc_rng *rng)
{
    double *w = malloc(sizeof *w * p->G);
    p->pbase = calloc((size_t)p->P + 1, sizeof *p->pbase);
    p->pgroup = malloc(sizeof *p->pgroup * p->G);
    p->pcdf = malloc(sizeof *p->pcdf * p->G);
    p->pshare = calloc(p->P, sizeof *p->pshare);
    if (!w || !p->pbase || !p->pgroup || !p->pcdf || !p->pshare) {
        free(w);
        return fail("out of memory");
    }
    for (uint32_t g = 0; g < p->G; g++)
        w[g] = 1.0;
    if (p->cfg.zipf) {
        rc_zipf z;
        if (rc_zipf_init(&z, 1, ACTIVITY_LEVELS, p->cfg.activity_s) < 0) {
            free(w);
            return fail("cannot set up the send-rate distribution");
        }
        for (uint32_t g = 0; g < p->G; g++)
            w[g] = 0;
        for (uint32_t c = 0; c < p->C; c++) {
            uint64_t deg = p->sbase[c + 1] - p->sbase[c];
            if (deg == 0)
                continue; /* a user in no group sends nothing */
            double share = (double)rc_zipf_sample(&z, rng) / (double)deg;
            for (uint64_t i = p->sbase[c]; i < p->sbase[c + 1]; i++)
                w[p->sgroup[i]] += share;
        }
        rc_zipf_free(&z);
    }
    double total = 0, fan = 0;
    for (uint32_t g = 0; g < p->G; g++) {
        total += w[g];
        fan += w[g] * p->gsize[g];
        p->pbase[plan_pub_of(g) + 1]++;
    }
    for (uint32_t j = 0; j < p->P; j++)
        p->pbase[j + 1] += p->pbase[j];
    uint32_t *fill = calloc(p->P, sizeof *fill);
    if (!fill) {
        free(w);
        return fail("out of memory");
    }
    for (uint32_t g = 0; g < p->G; g++) {
        uint32_t j = plan_pub_of(g);
        uint32_t at = p->pbase[j] + fill[j]++;
        p->pgroup[at] = g;
        p->pshare[j] += w[g];
        p->pcdf[at] = p->pshare[j];
    }
    for (uint32_t j = 0; j < p->P; j++) {
        for (uint32_t i = p->pbase[j]; i < p->pbase[j + 1]; i++)
            p->pcdf[i] = p->pshare[j] > 0 ? p->pcdf[i] / p->pshare[j] : 1.0;
        if (p->pbase[j + 1] > p->pbase[j])
            p->pcdf[p->pbase[j + 1] - 1] = 1.0;
        p->pshare[j] = total > 0 ? p->pshare[j] / total : 0;
    }
    p->mean_fanout = total > 0 ? fan / total : 0;
    free(fill);
    free(w);
    return 0;
}

int plan_build(const plan_cfg *cfg)
{
    const char *why = NULL;
    if (cfg->groups == 0 || cfg->subs == 0 || cfg->pubs == 0)
        why = "groups, subs and pubs must be at least 1";
    else if (cfg->pubs > cfg->groups)
        why = "pubs must not exceed groups (every publisher needs a group)";
    else if (!cfg->zipf && cfg->members == 0)
        why = "members must be at least 1";
    else if (!cfg->zipf && cfg->members > cfg->subs)
        why = "members must not exceed subs (a group's members are distinct connections)";
    else if (!cfg->zipf && (uint64_t)cfg->groups * cfg->members < cfg->subs)
        why = "groups * members must be at least subs (every subscriber needs a group)";
    else if (cfg->zipf && (cfg->size_min < 1 || cfg->size_min > cfg->size_max))
        why = "group sizes want 1 <= min <= max";
    if (why)
        return fail(why);
    plan *p = &g_plan;
    memset(p, 0, sizeof *p);
    p->cfg = *cfg;
    p->G = cfg->groups;
    p->C = cfg->subs;
    p->P = cfg->pubs;
    p->gsize = calloc(p->G, sizeof *p->gsize);
    p->gbase = calloc((size_t)p->G + 1, sizeof *p->gbase);
    if (!p->gsize || !p->gbase) {
        plan_free();
        return fail("out of memory");
    }
    rc_rng rng;
    rc_rng_seed(&rng, cfg->seed);
    int rc = cfg->zipf ? build_zipf_members(p, &rng) : build_uniform_members(p);
    if (rc == 0)
        rc = build_sub_lists(p);
    if (rc == 0)
        rc = build_rates(p, &rng);
    if (rc < 0) {
        plan_free();
        return -1;
    }
    for (uint32_t g = 0; g < p->G; g++)
        if (p->gsize[g] > p->max_size)
            p->max_size = p->gsize[g];
    return 0;
}
