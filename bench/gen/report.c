/*
 * The report: every step becomes one list of (key, value) pairs, printed as
 * a key=value line, a JSON object and a CSV row, so the three never drift.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

#define KV_MAX 100
#define KV_VALUE 64

typedef struct kv {
    const char *key;
    char val[KV_VALUE];
    bool str;              /* a JSON string (else a number or a literal) */
} kv;

typedef struct kvlist {
    kv item[KV_MAX];
    int n;
} kvlist;

static void add(kvlist *l, const char *key, bool str, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void add(kvlist *l, const char *key, bool str, const char *fmt, ...)
{
    if (l->n >= KV_MAX)
        return;
    kv *e = &l->item[l->n++];
    e->key = key;
    e->str = str;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->val, sizeof e->val, fmt, ap);
    va_end(ap);
}

#define ADD_U64(l, k, v) add(l, k, false, "%" PRIu64, (uint64_t)(v))
#define ADD_I64(l, k, v) add(l, k, false, "%" PRId64, (int64_t)(v))
#define ADD_F(l, k, prec, v) add(l, k, false, "%.*f", prec, (double)(v))
#define ADD_S(l, k, v) add(l, k, true, "%s", v)

static const char *mode_name(run_mode m)
{
    return m == MODE_MAX ? "max" : m == MODE_RATE ? "rate" : m == MODE_FLOOD ? "flood" : "sweep";
}

double result_secs(const step_result *r)
{
    double s = r->b.t - r->a.t;
    return s > 1e-9 ? s : 1e-9;
}

double result_msgs_per_s(const step_result *r)
{
    return (double)(r->b.n.published - r->a.n.published) / result_secs(r);
}

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

/* Flood keys, over the whole run (warm-up, window and drain): a server that
 * falls behind refuses a send long after it was written, so refusals are
 * set against every send of the run (published_total), not the window's. */
static void add_flood(kvlist *l, const step_result *r)
{
    const counters *n = &r->end;
    uint64_t refused = 0;
    for (int i = 0; i < FLOOD_NCODES; i++)
        refused += n->refused[i];
    ADD_U64(l, "published_total", n->published);
    ADD_U64(l, "acked_total", n->acked);
    ADD_U64(l, "deliveries_total", n->deliveries);
    ADD_U64(l, "refused", refused);
    ADD_F(l, "refused_pct", 2, n->published ? 100.0 * (double)refused / (double)n->published : 0);
    for (int i = 0; i < FLOOD_NCODES; i++)
        ADD_U64(l, flood_code_key((flood_code)i), n->refused[i]);
    ADD_U64(l, "disconnected_readers", n->readers_lost);
    ADD_U64(l, "disconnected_writers", n->writers_lost);
    ADD_U64(l, "byes", n->byes);
    ADD_I64(l, "groups_lossy", r->groups_lossy);
}

static void build(const options *o, const step_result *r, kvlist *l)
{
    const plan *pl = &g_plan;
    const plan_cfg *pc = &pl->cfg;
    double secs = result_secs(r);
    uint64_t published = r->b.n.published - r->a.n.published;
    uint64_t acked = r->b.n.acked - r->a.n.acked;
    uint64_t deliveries = r->b.n.deliveries - r->a.n.deliveries;
    double gen_cpu = 100.0 * (r->b.cpu - r->a.cpu) / secs, thread_max = 0;
    for (uint32_t t = 0; t < G.T; t++) {
        double c = 100.0 * (r->b.thread_cpu[t] - r->a.thread_cpu[t]) / secs;
        thread_max = c > thread_max ? c : thread_max;
    }
    double srv_cpu = r->a.server_cpu >= 0 && r->b.server_cpu >= 0
                         ? 100.0 * (r->b.server_cpu - r->a.server_cpu) / secs : -1;
    const counters *n = &r->end;
    const rc_hist *h = &r->hist;

    l->n = 0;
    ADD_S(l, "system", G.drv->name);
    ADD_S(l, "workload", pc->name);
    ADD_S(l, "mode", mode_name(o->mode));
    ADD_U64(l, "step", r->k);
    ADD_S(l, "loop", r->s.flood ? "flood" : r->s.open ? "open" : "closed");
    ADD_F(l, "offered_pct", 1, r->s.pct);
    ADD_F(l, "offered_msgs_per_s", 1, r->s.open ? r->s.rate * (r->s.offer_mult > 0 ? r->s.offer_mult : 1) : 0);
    ADD_U64(l, "groups", pl->G);
    ADD_U64(l, "members", pc->zipf ? 0 : pc->members);
    ADD_F(l, "mean_fanout", 2, pl->mean_fanout);
    ADD_U64(l, "max_group", pl->max_size);
    ADD_F(l, "groups_per_sub", 2, (double)pl->nslots / pl->C);
    ADD_U64(l, "subs", pl->C);
    ADD_U64(l, "pubs", pl->P);
    ADD_U64(l, "body", pc->body);
    ADD_U64(l, "window", pc->window);
    ADD_U64(l, "threads", G.T);
    ADD_F(l, "seconds", 3, secs);
    ADD_S(l, "measured", r->measured ? "window" : "warmup");
    ADD_U64(l, "published", published);
    ADD_U64(l, "acked", acked);
    ADD_U64(l, "deliveries", deliveries);
    ADD_F(l, "msgs_per_s", 1, (double)published / secs);
    ADD_F(l, "acked_per_s", 1, (double)acked / secs);
    ADD_F(l, "deliveries_per_s", 1, (double)deliveries / secs);
    ADD_F(l, "msgs_per_day", 0, (double)published / secs * 86400.0);
    ADD_F(l, "deliveries_per_day", 0, (double)deliveries / secs * 86400.0);
    if (pc->peak_to_trough > 1 && r->s.open) {
        /* the window is one compressed day */
        ADD_F(l, "day_seconds", 3, secs);
        ADD_U64(l, "day_msgs", published);
        ADD_U64(l, "day_deliveries", deliveries);
        ADD_F(l, "day_peak_msgs_per_s", 1, r->day_peak);
        ADD_F(l, "day_trough_msgs_per_s", 1, r->day_trough);
    }
    ADD_U64(l, "lat_count", h->total);
    ADD_F(l, "lat_p50_us", 1, us(rc_hist_percentile(h, 50)));
    ADD_F(l, "lat_p90_us", 1, us(rc_hist_percentile(h, 90)));
    ADD_F(l, "lat_p99_us", 1, us(rc_hist_percentile(h, 99)));
    ADD_F(l, "lat_p999_us", 1, us(rc_hist_percentile(h, 99.9)));
    ADD_F(l, "lat_max_us", 1, us(h->max));
    ADD_F(l, "lat_mean_us", 1, rc_hist_mean(h) / 1000.0);
    ADD_U64(l, "gaps", n->gaps);
    ADD_U64(l, "dups", n->dups);
    ADD_U64(l, "reorders", n->reorders);
    ADD_U64(l, "stray", n->stray);
    ADD_U64(l, "corrupt", n->corrupt);
    ADD_I64(l, "missing", r->missing);
    ADD_U64(l, "unsent", n->unsent);
    ADD_U64(l, "rejected", n->rejected);
    ADD_U64(l, "short_fanout", n->short_fanout);
    ADD_U64(l, "errors", n->errors);
    ADD_U64(l, "lost_conns", n->lost_conns);
    ADD_U64(l, "echoes", n->echoes);
    /* chat events (ringcast --presence, --receipts, --read-every), over the window */
    uint64_t receipts = r->b.n.ev_receipt - r->a.n.ev_receipt;
    uint64_t reads = r->b.n.reads_sent - r->a.n.reads_sent;
    ADD_U64(l, "presence_events", r->b.n.ev_presence - r->a.n.ev_presence);
    ADD_U64(l, "receipt_events", receipts);
    ADD_F(l, "receipt_events_per_s", 1, (double)receipts / secs);
    ADD_U64(l, "typing_events", r->b.n.ev_typing - r->a.n.ev_typing);
    ADD_U64(l, "reads_sent", reads);
    ADD_F(l, "reads_per_s", 1, (double)reads / secs);
    ADD_U64(l, "marked", r->b.n.marked - r->a.n.marked);
    if (r->s.flood)
        add_flood(l, r);
    ADD_F(l, "gen_cpu_pct", 1, gen_cpu);
    ADD_F(l, "gen_thread_max_pct", 1, thread_max);
    ADD_F(l, "server_cpu_pct", 1, srv_cpu);
    ADD_I64(l, "server_peak_rss_kb", r->rss_kb);
    ADD_U64(l, "drained", r->drained);
    ADD_U64(l, "drain_cut", r->drain_cut);
    ADD_U64(l, "interrupted", r->interrupted);
}

void report_line(const options *o, const step_result *r)
{
    kvlist l;
    build(o, r, &l);
    fputs("ringcast-bench", stdout);
    for (int i = 0; i < l.n; i++)
        printf(" %s=%s", l.item[i].key, l.item[i].val);
    putchar('\n');
    fflush(stdout);
}

static void json_object(FILE *f, const kvlist *l)
{
    fputc('{', f);
    for (int i = 0; i < l->n; i++)
        fprintf(f, "%s\"%s\":%s%s%s", i ? "," : "", l->item[i].key, l->item[i].str ? "\"" : "",
                l->item[i].val, l->item[i].str ? "\"" : "");
    fputc('}', f);
}

static int close_checked(FILE *f, const char *path)
{
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        fprintf(stderr, "ringcast-bench: writing %s failed\n", path);
        return -1;
    }
    return 0;
}

static FILE *open_out(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        fprintf(stderr, "ringcast-bench: %s: %s\n", path, strerror(errno));
    return f;
}

static int write_json(const options *o, const step_result *rs, uint32_t n, double knee)
{
    FILE *f = open_out(o->json);
    if (!f)
        return -1;
    kvlist l;
    /* the last step's keys at the top level (the result of a single run),
     * then every step, then the sweep's knee */
    build(o, &rs[n - 1], &l);
    fputc('{', f);
    for (int i = 0; i < l.n; i++)
        fprintf(f, "\"%s\":%s%s%s,", l.item[i].key, l.item[i].str ? "\"" : "", l.item[i].val,
                l.item[i].str ? "\"" : "");
    if (knee >= 0)
        fprintf(f, "\"knee_msgs_per_s\":%.1f,", knee);
    fputs("\"steps\":[", f);
    for (uint32_t k = 0; k < n; k++) {
        build(o, &rs[k], &l);
        if (k)
            fputc(',', f);
        json_object(f, &l);
    }
    fputs("]}\n", f);
    return close_checked(f, o->json);
}

static int write_csv(const options *o, const step_result *rs, uint32_t n)
{
    FILE *f = open_out(o->csv);
    if (!f)
        return -1;
    kvlist l;
    for (uint32_t k = 0; k < n; k++) {
        build(o, &rs[k], &l);
        if (k == 0)
            for (int i = 0; i < l.n; i++)
                fprintf(f, "%s%s", i ? "," : "", l.item[i].key);
        if (k == 0)
            fputc('\n', f);
        for (int i = 0; i < l.n; i++)
            fprintf(f, "%s%s", i ? "," : "", l.item[i].val);
        fputc('\n', f);
    }
    return close_checked(f, o->csv);
}

static void hist_line(void *ud, uint64_t value, uint64_t count, uint64_t cumulative)
{
    fprintf(ud, "%" PRIu64 ",%" PRIu64 ",%" PRIu64 "\n", value, count, cumulative);
}

static int write_hist(const char *path, const step_result *r)
{
    FILE *f = open_out(path);
    if (!f)
        return -1;
    fprintf(f, "# ringcast-bench latency histogram: system=%s workload=%s step=%u loop=%s"
               " offered_msgs_per_s=%.1f count=%" PRIu64 " rel_error=%.4f\n"
               "# value_ns,count,cumulative\n",
            G.drv->name, g_plan.cfg.name, r->k, r->s.open ? "open" : "closed",
            r->s.open ? r->s.rate : 0, r->hist.total, rc_hist_rel_error());
    rc_hist_each(&r->hist, hist_line, f);
    return close_checked(f, path);
}

int report_files(const options *o, const step_result *rs, uint32_t n, double knee_rate)
{
    int rc = 0;
    if (n == 0)
        return 0;
    if (o->json && write_json(o, rs, n, knee_rate) < 0)
        rc = -1;
    if (o->csv && write_csv(o, rs, n) < 0)
        rc = -1;
    if (o->hist_out) {
        if (n == 1) {
            rc |= write_hist(o->hist_out, &rs[0]);
        } else {
            for (uint32_t k = 0; k < n; k++) {
                char path[4096];
                snprintf(path, sizeof path, "%s.step%u", o->hist_out, k);
                rc |= write_hist(path, &rs[k]);
            }
        }
    }
    return rc;
}
