/*
 * ringcast-mkgroups: creates G groups through a running ringcastd, the way
 * clients would: sessions that `join` groups (pipelined) and `send` K
 * messages to each, so that every group is stored with its members and its
 * history by the server itself (bench/recovery.sh --via-server).
 *
 * Groups are created in chunks of --per-session groups (at most 1,024, the
 * server's max_groups_per_session): chunk c is joined by M sessions, users
 * `<prefix>u<c>.<m>`, and member 0 then sends K messages to each of its
 * groups. Every reply is checked (a `joined` per join, an `ack` per send,
 * each once, in any order); anything else fails the run. Sessions run on --conns threads,
 * one connection each at a time.
 *
 * --verify N instead joins the groups of N chunks spread over the range (as
 * each chunk's member 0, which is harmless: it is a member already) and
 * checks that every `joined` reports seq = K: after a restart, nothing lost
 * and nothing sequenced twice.
 *
 *   ringcast-mkgroups --port P [--host 127.0.0.1] [--groups 1000000] [--members 1]
 *       [--history 1] [--per-session 1000] [--conns 4] [--window 256] [--prefix r]
 *       [--body 64] [--verify N]
 * Exit status: 0 ok, 1 setup or connection failure, 2 usage, 3 a wrong reply.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ringcast/client.h"

#include "../lib/args.h"

#define MK_MAX_GROUPS 20000000u
#define MK_MAX_MEMBERS 64u
#define MK_MAX_HISTORY 1000u
#define MK_MAX_PER_SESSION 1024u   /* the server's default max_groups_per_session */
#define MK_MAX_CONNS 64u
#define MK_MAX_WINDOW 4096u        /* requests in flight per connection */
#define MK_MAX_BODY 4096u
#define MK_TIMEOUT_MS 30000        /* one reply, at most */
#define MK_NAME 64u

typedef struct mk_opts {
    const char *host, *prefix;
    uint16_t port;
    uint32_t groups, members, history, per, conns, window, body, verify;
} mk_opts;

typedef struct mk_state {
    const mk_opts *o;
    uint32_t chunks;           /* chunks of groups */
    uint32_t units;            /* sessions to run: chunks × members, or the verified chunks */
    _Atomic uint32_t next;     /* next unit to take */
    _Atomic uint64_t joins, sends, verified;
    _Atomic int failed;        /* 1 connection/setup, 3 a wrong reply */
    pthread_mutex_t err_lock;
    char err[512];
} mk_state;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fail(mk_state *st, int code, const char *fmt, const char *a, const char *b)
{
    int none = 0;
    if (atomic_compare_exchange_strong(&st->failed, &none, code)) {
        pthread_mutex_lock(&st->err_lock);
        snprintf(st->err, sizeof(st->err), fmt, a, b);
        pthread_mutex_unlock(&st->err_lock);
    }
}

static int group_name(char *out, const mk_opts *o, uint32_t gi)
{
    return snprintf(out, MK_NAME, "%sg%u", o->prefix, gi);
}

/* Sends requests [0, n) of kind `type` to the groups of chunk c (first
 * group first_g), window by window, and checks that each reply is `want`
 * with one of its rids (each once); with check_seq, that its seq is `seq`. 0 or -1. */
static int pipeline(mk_state *st, rc_client *cl, rc_buf *buf, rc_type type, rc_type want, uint32_t first_g,
                    uint32_t n, const char *body, bool check_seq, uint64_t seq)
{
    const mk_opts *o = st->o;
    char name[MK_NAME];
    for (uint32_t done = 0; done < n;) {
        uint32_t k = n - done < o->window ? n - done : o->window;
        buf->len = 0;
        uint64_t rid0 = cl->next_rid;
        bool seen[MK_MAX_WINDOW] = { false };
        for (uint32_t i = 0; i < k; i++) {
            int len = group_name(name, o, first_g + done + i);
            rc_msg m = { .type = type, .has = RC_HAS_RID, .rid = cl->next_rid++, .g = { name, (uint32_t)len } };
            if (type == RC_T_SEND)
                m.body = (rc_str){ body, o->body };
            if (rc_encode(buf, &m) != 0) {
                fail(st, 1, "cannot encode a %s%s", rc_type_name(type), "");
                return -1;
            }
        }
        if (rc_client_send_raw(cl, buf->data, buf->len) != 0) {
            fail(st, 1, "send: %s%s", cl->err, "");
            return -1;
        }
        for (uint32_t i = 0; i < k; i++) {
            rc_msg r;
            int got = rc_client_recv(cl, &r, MK_TIMEOUT_MS);
            if (got <= 0) {
                fail(st, 1, "no reply: %s%s", got == 0 ? "timeout" : cl->err, "");
                return -1;
            }
            if (r.type == RC_T_MSG) { /* a live message to a group of this session (another's send) */
                i--;
                continue;
            }
            if (r.type == RC_T_ERR) {
                char text[300];
                snprintf(text, sizeof(text), "%.*s", (int)r.text.len, r.text.ptr);
                fail(st, 3, "err %s: %s", rc_err_name(r.code), text);
                return -1;
            }
            /* replies of requests to groups on different shards may come in any order */
            if (r.type != want || !(r.has & RC_HAS_RID) || r.rid < rid0 || r.rid - rid0 >= k || seen[r.rid - rid0]) {
                fail(st, 3, "unexpected reply %s (wanted one %s per request)", rc_type_name(r.type),
                     rc_type_name(want));
                return -1;
            }
            seen[r.rid - rid0] = true;
            if (check_seq && r.seq != seq) {
                char what[160];
                snprintf(what, sizeof(what), "%.*s reports seq %llu, expected %llu", (int)r.g.len, r.g.ptr,
                         (unsigned long long)r.seq, (unsigned long long)seq);
                fail(st, 3, "group %s%s", what, "");
                return -1;
            }
        }
        done += k;
    }
    return 0;
}

/* One session: chunk c as member m (or a verification of chunk c). */
static int run_unit(mk_state *st, uint32_t c, uint32_t m, bool verify, rc_buf *buf, const char *body)
{
    const mk_opts *o = st->o;
    uint32_t first = c * o->per, n = first + o->per <= o->groups ? o->per : o->groups - first;
    char user[MK_NAME];
    snprintf(user, sizeof(user), "%su%u.%u", o->prefix, c, m);
    rc_client cl;
    if (rc_client_connect(&cl, o->host, o->port, MK_TIMEOUT_MS) != 0) {
        fail(st, 1, "connect: %s%s", cl.err, "");
        rc_client_close(&cl);
        return -1;
    }
    /* echo off: member 0's own sends do not come back to it */
    rc_msg h = { .type = RC_T_HELLO, .has = RC_HAS_RID | RC_HAS_ECHO, .rid = cl.next_rid++, .user = rc_str_c(user),
                 .echo = false };
    rc_msg r;
    if (rc_client_send(&cl, &h) != 0 || rc_client_wait(&cl, RC_T_WELCOME, h.rid, &r, MK_TIMEOUT_MS) != 1 ||
        r.type != RC_T_WELCOME) {
        fail(st, 1, "hello as %s failed: %s", user, cl.err);
        rc_client_close(&cl);
        return -1;
    }
    int rc = pipeline(st, &cl, buf, RC_T_JOIN, RC_T_JOINED, first, n, NULL, verify, o->history);
    if (rc == 0)
        atomic_fetch_add(&st->joins, n);
    if (rc == 0 && verify)
        atomic_fetch_add(&st->verified, n);
    for (uint32_t k = 0; rc == 0 && !verify && m == 0 && k < o->history; k++) {
        rc = pipeline(st, &cl, buf, RC_T_SEND, RC_T_ACK, first, n, body, false, 0);
        if (rc == 0)
            atomic_fetch_add(&st->sends, n);
    }
    rc_client_close(&cl);
    return rc;
}

static void *worker(void *arg)
{
    mk_state *st = arg;
    const mk_opts *o = st->o;
    rc_buf buf;
    rc_buf_init(&buf);
    char *body = malloc(o->body ? o->body : 1);
    if (!body) {
        fail(st, 1, "out of memory%s%s", "", "");
        return NULL;
    }
    memset(body, 'x', o->body);
    for (;;) {
        if (atomic_load(&st->failed))
            break;
        uint32_t u = atomic_fetch_add(&st->next, 1);
        if (u >= st->units)
            break;
        if (o->verify) {
            /* spread the verified chunks over the range, first and last included */
            uint32_t c = st->units > 1 ? (uint32_t)((uint64_t)u * (st->chunks - 1) / (st->units - 1)) : 0;
            run_unit(st, c, 0, true, &buf, body);
        } else {
            /* member-major: every chunk's member 0 first, so groups exist early */
            run_unit(st, u % st->chunks, u / st->chunks, false, &buf, body);
        }
    }
    free(body);
    rc_buf_free(&buf);
    return NULL;
}

static unsigned long arg(const char *s, unsigned long lo, unsigned long hi, const char *name)
{
    return rc_bench_arg("ringcast-mkgroups", s, lo, hi, name);
}

static void usage(void)
{
    fprintf(stderr, "usage: ringcast-mkgroups --port P [--host H] [--groups G] [--members M] [--history K]\n"
                    "       [--per-session N] [--conns C] [--window W] [--prefix S] [--body B] [--verify N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    mk_opts o = { .host = "127.0.0.1", .prefix = "r", .groups = 1000000, .members = 1, .history = 1,
                  .per = 1000, .conns = 4, .window = 256, .body = 64 };
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        const char *f = argv[i], *v = argv[++i];
        if (strcmp(f, "--host") == 0) o.host = v;
        else if (strcmp(f, "--prefix") == 0) o.prefix = strlen(v) <= 16 ? v : (usage(), v);
        else if (strcmp(f, "--port") == 0) o.port = (uint16_t)arg(v, 1, 65535, f);
        else if (strcmp(f, "--groups") == 0) o.groups = (uint32_t)arg(v, 1, MK_MAX_GROUPS, f);
        else if (strcmp(f, "--members") == 0) o.members = (uint32_t)arg(v, 1, MK_MAX_MEMBERS, f);
        else if (strcmp(f, "--history") == 0) o.history = (uint32_t)arg(v, 0, MK_MAX_HISTORY, f);
        else if (strcmp(f, "--per-session") == 0) o.per = (uint32_t)arg(v, 1, MK_MAX_PER_SESSION, f);
        else if (strcmp(f, "--conns") == 0) o.conns = (uint32_t)arg(v, 1, MK_MAX_CONNS, f);
        else if (strcmp(f, "--window") == 0) o.window = (uint32_t)arg(v, 1, MK_MAX_WINDOW, f);
        else if (strcmp(f, "--body") == 0) o.body = (uint32_t)arg(v, 1, MK_MAX_BODY, f);
        else if (strcmp(f, "--verify") == 0) o.verify = (uint32_t)arg(v, 1, MK_MAX_GROUPS, f);
        else usage();
    }
    if (!o.port)
        usage();
    mk_state st = { .o = &o };
    pthread_mutex_init(&st.err_lock, NULL);
    st.chunks = (o.groups + o.per - 1) / o.per;
    st.units = o.verify ? (o.verify < st.chunks ? o.verify : st.chunks) : st.chunks * o.members;
    pthread_t th[MK_MAX_CONNS];
    uint32_t nth = o.conns < st.units ? o.conns : st.units;
    double t0 = now_s();
    for (uint32_t i = 0; i < nth; i++) {
        if (pthread_create(&th[i], NULL, worker, &st) != 0) {
            fail(&st, 1, "cannot start a thread%s%s", "", "");
            nth = i;
            break;
        }
    }
    for (uint32_t i = 0; i < nth; i++)
        pthread_join(th[i], NULL);
    double dt = now_s() - t0;
    int failed = atomic_load(&st.failed);
    uint64_t joins = atomic_load(&st.joins), sends = atomic_load(&st.sends);
    printf("mkgroups mode=%s groups=%u members=%u history=%u sessions=%u joins=%llu sends=%llu verified=%llu "
           "seconds=%.2f joins_per_s=%.0f sends_per_s=%.0f ok=%d\n",
           o.verify ? "verify" : "create", o.groups, o.members, o.history, st.units, (unsigned long long)joins,
           (unsigned long long)sends, (unsigned long long)atomic_load(&st.verified), dt, joins / dt, sends / dt,
           failed == 0);
    if (failed)
        fprintf(stderr, "ringcast-mkgroups: FAILED: %s\n", st.err);
    return failed;
}
