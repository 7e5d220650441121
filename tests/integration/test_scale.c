/*
 * Shard-count changes under load (src/ARCHITECTURE.md §4.1): while two
 * publishers keep sending to N_GROUPS groups (pipelined, each send acked),
 * a third thread changes the shard count with POST /admin/shards at least
 * EVENTS times, between 1 and 8 shards. Every group's owner changes many
 * times during the run. What a user would notice, and what is checked:
 *  - every send is acked (no err of any kind), and a group's acked seqs are
 *    1..n, each once;
 *  - every member (N_READERS readers and both publishers, all joined to
 *    every group) receives every acked message exactly once, in seq order,
 *    gapless, and the same message (sender and body) under each seq;
 *  - the server counts the events and the moved groups, /admin/shards ends
 *    at the last count asked for, and POST is refused without the admin
 *    token.
 * RC_SCALE_EVENTS in the environment makes a smaller run (the
 * ThreadSanitizer build uses it).
 */
#define _GNU_SOURCE
#include "itest.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#define N_GROUPS 48
#define N_READERS 6
#define N_PUBS 2
#define N_CLIENTS (N_READERS + N_PUBS)
#define EVENTS_DEFAULT 100
#define MAX_SHARDS 8
#define WINDOW 32               /* sends in flight per publisher */
#define MAX_SEQ 200000          /* per group, more than the run sends */
#define RUN_LIMIT_MS 120000     /* the whole load phase, at most */
#define DRAIN_LIMIT_MS 30000    /* after the last send: every delivery in */
#define TOKEN "scale-test-token"
#define BODY_MAX 48

static it_server srv;
static int events_wanted = EVENTS_DEFAULT;

static int cleanup(void)
{
    return it_cleanup(&srv);
}

/* ---- POST /admin/shards ---- */

static int http_post(uint16_t port, const char *target, const char *auth, char *resp, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct timeval tv = { .tv_sec = 30 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char req[512];
    int n = snprintf(req, sizeof(req), "POST %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s%s%sContent-Length: 0\r\n\r\n",
                     target, auth ? "Authorization: Bearer " : "", auth ? auth : "", auth ? "\r\n" : "");
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    size_t len = 0;
    for (ssize_t r; len + 1 < cap && (r = read(fd, resp + len, cap - 1 - len)) > 0;)
        len += (size_t)r;
    resp[len] = '\0';
    close(fd);
    int status = -1;
    return sscanf(resp, "HTTP/1.1 %d", &status) == 1 ? status : -1;
}

typedef struct resizer {
    pthread_t t;
    int events, failures, last_count;
    _Atomic int done;
    char failure[256];
} resizer;

/* Counts 1..MAX_SHARDS in an order that grows and shrinks by 1..7 shards. */
static void *resize_main(void *arg)
{
    resizer *rz = arg;
    uint32_t x = 12345u;
    int cur = 2;
    char resp[4096], target[64];
    int64_t end = it_now_ms() + RUN_LIMIT_MS;
    while (rz->events < events_wanted && it_now_ms() < end) {
        x = x * 1103515245u + 12345u;
        int n = 1 + (int)((x >> 16) % MAX_SHARDS);
        if (n == cur)
            continue;
        snprintf(target, sizeof(target), "/admin/shards?count=%d", n);
        int st = http_post(srv.s.admin_port, target, TOKEN, resp, sizeof(resp));
        char want[32];
        snprintf(want, sizeof(want), "{\"shards\":%d,", n);
        if (st != 200 || !strstr(resp, want)) {
            rz->failures++;
            if (!rz->failure[0])
                snprintf(rz->failure, sizeof(rz->failure), "POST %s: %d %.150s", target, st, resp);
            break;
        }
        cur = n;
        rz->events++;
        it_sleep_ms(5);
    }
    rz->last_count = cur;
    atomic_store(&rz->done, 1);
    return NULL;
}

/* ---- what every member must see ---- */

typedef struct group_log {
    uint64_t acked_max;          /* highest acked seq */
    uint32_t n_acked;
    uint8_t *acked;              /* [seq]: acked once */
    uint64_t *digest;            /* [seq]: hash of from + body as the first member saw it */
    uint64_t last[N_CLIENTS];    /* per member: last seq received */
} group_log;

typedef struct state {
    group_log g[N_GROUPS];
    rc_client c[N_CLIENTS];
    int in_flight[N_PUBS];
    uint64_t sent[N_PUBS];
    char failure[512];
} state;

static uint64_t digest_of(rc_str from, rc_str body)
{
    uint64_t h = 1469598103934665603u;
    for (uint32_t i = 0; i < from.len; i++)
        h = (h ^ (uint8_t)from.ptr[i]) * 1099511628211u;
    h = (h ^ 0xff) * 1099511628211u;
    for (uint32_t i = 0; i < body.len; i++)
        h = (h ^ (uint8_t)body.ptr[i]) * 1099511628211u;
    return h;
}

static int group_index(rc_str g)
{
    int i = -1;
    if (g.len > 1 && g.ptr[0] == 'g' && sscanf(g.ptr + 1, "%d", &i) == 1 && i >= 0 && i < N_GROUPS)
        return i;
    return -1;
}

static bool on_frame(void *ud, int idx, const rc_msg *m)
{
    state *st = ud;
    if (m->type == RC_T_MSG) {
        int gi = group_index(m->g);
        if (gi < 0 || m->seq == 0 || m->seq >= MAX_SEQ)
            return it_failf(st->failure, sizeof(st->failure), "member %d: msg for %.*s seq %llu", idx, (int)m->g.len,
                            m->g.ptr, (unsigned long long)m->seq);
        group_log *g = &st->g[gi];
        if (m->seq != g->last[idx] + 1)
            return it_failf(st->failure, sizeof(st->failure), "member %d group g%d: seq %llu after %llu", idx, gi,
                            (unsigned long long)m->seq, (unsigned long long)g->last[idx]);
        g->last[idx] = m->seq;
        uint64_t d = digest_of(m->from, m->body);
        if (!g->digest[m->seq])
            g->digest[m->seq] = d;
        else if (g->digest[m->seq] != d)
            return it_failf(st->failure, sizeof(st->failure), "member %d group g%d seq %llu: another message", idx, gi,
                            (unsigned long long)m->seq);
        return true;
    }
    if (m->type == RC_T_ACK && idx >= N_READERS) {
        int gi = group_index(m->g), p = idx - N_READERS;
        if (gi < 0 || m->seq == 0 || m->seq >= MAX_SEQ || st->g[gi].acked[m->seq])
            return it_failf(st->failure, sizeof(st->failure), "publisher %d: ack %.*s seq %llu twice or bad", p,
                            (int)m->g.len, m->g.ptr, (unsigned long long)m->seq);
        st->g[gi].acked[m->seq] = 1;
        st->g[gi].n_acked++;
        if (m->seq > st->g[gi].acked_max)
            st->g[gi].acked_max = m->seq;
        st->in_flight[p]--;
        return true;
    }
    if (m->type == RC_T_PONG)
        return true;
    if (m->type == RC_T_ERR)
        return it_failf(st->failure, sizeof(st->failure), "member %d: err %s: %.*s", idx, rc_err_name(m->code),
                        (int)m->text.len, m->text.ptr);
    return it_failf(st->failure, sizeof(st->failure), "member %d: unexpected %s", idx, rc_type_name(m->type));
}

static int send_one(state *st, int p)
{
    uint64_t k = st->sent[p]++;
    char body[BODY_MAX], mid[32];
    int bl = snprintf(body, sizeof(body), "p%d-%llu", p, (unsigned long long)k);
    snprintf(mid, sizeof(mid), "m%llu", (unsigned long long)k);
    char g[16];
    snprintf(g, sizeof(g), "g%d", (int)((k * 7 + (uint64_t)p) % N_GROUPS));
    rc_msg m = { .type = RC_T_SEND, .g = rc_str_c(g), .body = { body, (uint32_t)bl }, .body_is_str = true,
                 .mid = rc_str_c(mid) };
    m.has |= RC_HAS_MID;
    if (it_request(&st->c[N_READERS + p], &m, k + 1) != 0)
        return -1;
    st->in_flight[p]++;
    return 0;
}

static bool all_delivered(const state *st)
{
    for (int gi = 0; gi < N_GROUPS; gi++)
        for (int i = 0; i < N_CLIENTS; i++)
            if (st->g[gi].last[i] != st->g[gi].acked_max)
                return false;
    return true;
}

static void test_moves_under_load(void)
{
    const char *flags[] = { "--admin-token", TOKEN, "--shards", "2", "--min-shards", "1", "--max-shards", "8",
                            "--scale-interval-ms", "0", NULL };
    CU_ASSERT_FATAL(it_start(&srv, flags) == 0);
    static state st;
    memset(&st, 0, sizeof(st));
    for (int gi = 0; gi < N_GROUPS; gi++) {
        st.g[gi].acked = calloc(MAX_SEQ, 1);
        st.g[gi].digest = calloc(MAX_SEQ, sizeof(uint64_t));
        CU_ASSERT_FATAL(st.g[gi].acked && st.g[gi].digest);
    }
    for (int i = 0; i < N_CLIENTS; i++) {
        char user[32];
        snprintf(user, sizeof(user), i < N_READERS ? "reader%d" : "pub%d", i < N_READERS ? i : i - N_READERS);
        CU_ASSERT_FATAL(it_login(&st.c[i], &srv, user) == 0);
        for (int gi = 0; gi < N_GROUPS; gi++) {
            char g[16];
            snprintf(g, sizeof(g), "g%d", gi);
            uint64_t seq;
            CU_ASSERT_FATAL(rc_client_join(&st.c[i], g, IT_TIMEOUT_MS, &seq) == 0);
        }
    }
    /* No admin token, a wrong one, a bad count: refused, nothing changes. */
    char resp[4096];
    CU_ASSERT_EQUAL(http_post(srv.s.admin_port, "/admin/shards?count=3", NULL, resp, sizeof(resp)), 401);
    CU_ASSERT_EQUAL(http_post(srv.s.admin_port, "/admin/shards?count=3", "wrong", resp, sizeof(resp)), 401);
    char longer[sizeof(TOKEN) + 1], shorter[sizeof(TOKEN)];
    snprintf(longer, sizeof(longer), "%sx", TOKEN);
    memcpy(shorter, TOKEN, sizeof(TOKEN) - 2);
    shorter[sizeof(TOKEN) - 2] = '\0';
    CU_ASSERT_EQUAL(http_post(srv.s.admin_port, "/admin/shards?count=3", longer, resp, sizeof(resp)), 401);
    CU_ASSERT_EQUAL(http_post(srv.s.admin_port, "/admin/shards?count=3", shorter, resp, sizeof(resp)), 401);
    CU_ASSERT_EQUAL(http_post(srv.s.admin_port, "/admin/shards?count=9", TOKEN, resp, sizeof(resp)), 400);
    CU_ASSERT_EQUAL(http_post(srv.s.admin_port, "/admin/shards?count=x", TOKEN, resp, sizeof(resp)), 400);
    CU_ASSERT_EQUAL(rc_test_metric(srv.s.admin_port, "ringcast_shards", 1), 2);

    resizer rz = { 0 };
    CU_ASSERT_FATAL(pthread_create(&rz.t, NULL, resize_main, &rz) == 0);
    int64_t end = it_now_ms() + RUN_LIMIT_MS;
    bool ok = true;
    while (!atomic_load(&rz.done) && it_now_ms() < end && ok) {
        for (int p = 0; p < N_PUBS; p++)
            while (st.in_flight[p] < WINDOW && ok)
                ok = send_one(&st, p) == 0;
        ok = ok && it_pump(st.c, N_CLIENTS, 10, on_frame, &st) >= 0;
    }
    pthread_join(rz.t, NULL);
    /* Every send in flight acked, every acked message at every member. */
    int64_t drain_end = it_now_ms() + DRAIN_LIMIT_MS;
    while (ok && it_now_ms() < drain_end && (st.in_flight[0] || st.in_flight[1] || !all_delivered(&st)))
        ok = it_pump(st.c, N_CLIENTS, 50, on_frame, &st) >= 0;
    if (!ok || st.failure[0])
        printf("\n    %s\n", st.failure);
    CU_ASSERT(ok);
    CU_ASSERT_STRING_EQUAL(st.failure, "");
    if (rz.failure[0])
        printf("\n    %s\n", rz.failure);
    CU_ASSERT_EQUAL(rz.failures, 0);
    CU_ASSERT(rz.events >= events_wanted);
    CU_ASSERT_EQUAL(st.in_flight[0] + st.in_flight[1], 0);
    uint64_t acked = 0;
    for (int gi = 0; gi < N_GROUPS; gi++) {
        group_log *g = &st.g[gi];
        CU_ASSERT_EQUAL(g->n_acked, g->acked_max); /* 1..n, each once */
        for (int i = 0; i < N_CLIENTS; i++)
            CU_ASSERT_EQUAL(g->last[i], g->acked_max);
        acked += g->n_acked;
    }
    CU_ASSERT_EQUAL(acked, st.sent[0] + st.sent[1]);
    printf("\n    %d shard-count changes, %llu messages acked and delivered to %d members each\n", rz.events,
           (unsigned long long)acked, N_CLIENTS);
    double events = rc_test_metric(srv.s.admin_port, "ringcast_scale_events_total", 1);
    CU_ASSERT(events >= rz.events);
    CU_ASSERT(rc_test_metric(srv.s.admin_port, "ringcast_groups_moved_total", 1) > 0);
    CU_ASSERT_EQUAL(rc_test_metric(srv.s.admin_port, "ringcast_shards", 1), rz.last_count);
    int status;
    char *body = rc_test_http_get(srv.s.admin_port, "/admin/shards", &status);
    CU_ASSERT_EQUAL(status, 200);
    char want[32];
    snprintf(want, sizeof(want), "{\"shards\":%d,", rz.last_count);
    CU_ASSERT(body && strstr(body, want));
    free(body);
    for (int i = 0; i < N_CLIENTS; i++)
        rc_client_close(&st.c[i]);
    for (int gi = 0; gi < N_GROUPS; gi++) {
        free(st.g[gi].acked);
        free(st.g[gi].digest);
    }
    CU_ASSERT_EQUAL(it_stop(&srv), 0);
}

/* ---- only the groups that must move ---- */

#define PLACE_GROUPS 400        /* groups joined before the placement checks */
#define PLACE_FROM 2            /* shards at start */
#define PLACE_TO 4              /* then grown to, then shrunk back */
#define PLACE_VNODES 160        /* the default vnodes: tokens per shard */

/* Groups on each shard and groups moved so far, from GET /admin/shards;
 * the number of shards, or -1. */
static int shard_groups(long long *groups, int cap, long long *moved)
{
    int status, n = -1;
    char *body = rc_test_http_get(srv.s.admin_port, "/admin/shards", &status);
    const char *m = body && status == 200 ? strstr(body, "\"groups_moved\":") : NULL;
    if (m && sscanf(m, "\"groups_moved\":%lld", moved) == 1 && sscanf(body, "{\"shards\":%d", &n) == 1) {
        for (int i = 0; i < n && i < cap; i++) {
            char key[32];
            snprintf(key, sizeof(key), "{\"id\":%d,\"groups\":", i);
            const char *at = strstr(body, key);
            if (!at || sscanf(at + strlen(key), "%lld", &groups[i]) != 1)
                n = -1;
        }
    }
    free(body);
    return n;
}

/* Growing moves groups only from the shards that stay to the new ones
 * (each stayer only loses groups, the new shards hold exactly the moved
 * ones, about (to - from) / to of them); shrinking back puts every group
 * on its first shard again. */
static void test_only_what_must_move(void)
{
    const char *flags[] = { "--admin-token", TOKEN, "--shards", "2", "--min-shards", "1", "--max-shards", "8",
                            "--scale-interval-ms", "0", NULL };
    CU_ASSERT_FATAL(it_start(&srv, flags) == 0);
    rc_client c;
    CU_ASSERT_FATAL(it_login(&c, &srv, "placer") == 0);
    for (int gi = 0; gi < PLACE_GROUPS; gi++) {
        char g[16];
        uint64_t seq;
        snprintf(g, sizeof(g), "place%d", gi);
        CU_ASSERT_FATAL(rc_client_join(&c, g, IT_TIMEOUT_MS, &seq) == 0);
    }
    long long first[PLACE_TO], grown[PLACE_TO], back[PLACE_TO], moved0, moved1, moved2;
    CU_ASSERT_FATAL(shard_groups(first, PLACE_TO, &moved0) == PLACE_FROM);
    CU_ASSERT_EQUAL(first[0] + first[1], PLACE_GROUPS);
    CU_ASSERT_EQUAL(rc_test_metric(srv.s.admin_port, "ringcast_route_tokens", 1), PLACE_FROM * PLACE_VNODES);
    char resp[4096], target[64];
    snprintf(target, sizeof(target), "/admin/shards?count=%d", PLACE_TO);
    CU_ASSERT_EQUAL_FATAL(http_post(srv.s.admin_port, target, TOKEN, resp, sizeof(resp)), 200);
    CU_ASSERT_FATAL(shard_groups(grown, PLACE_TO, &moved1) == PLACE_TO);
    CU_ASSERT_EQUAL(rc_test_metric(srv.s.admin_port, "ringcast_route_tokens", 1), PLACE_TO * PLACE_VNODES);
    double split = rc_test_metric(srv.s.admin_port, "ringcast_route_table_split_ratio", 1);
    CU_ASSERT(split > 0 && split < 0.1); /* most lookups are one table read */
    long long on_new = 0;
    for (int i = PLACE_FROM; i < PLACE_TO; i++)
        on_new += grown[i];
    for (int i = 0; i < PLACE_FROM; i++)
        CU_ASSERT(grown[i] <= first[i]);
    CU_ASSERT_EQUAL(moved1 - moved0, on_new);
    CU_ASSERT_EQUAL(on_new + grown[0] + grown[1], PLACE_GROUPS);
    double ideal = (double)PLACE_GROUPS * (PLACE_TO - PLACE_FROM) / PLACE_TO;
    CU_ASSERT(on_new > 0.75 * ideal && on_new < 1.25 * ideal);
    snprintf(target, sizeof(target), "/admin/shards?count=%d", PLACE_FROM);
    CU_ASSERT_EQUAL_FATAL(http_post(srv.s.admin_port, target, TOKEN, resp, sizeof(resp)), 200);
    CU_ASSERT_FATAL(shard_groups(back, PLACE_TO, &moved2) == PLACE_FROM);
    CU_ASSERT_EQUAL(back[0], first[0]);
    CU_ASSERT_EQUAL(back[1], first[1]);
    CU_ASSERT_EQUAL(moved2 - moved1, on_new);
    printf("\n    %d -> %d shards: %lld of %d groups moved (ideal %.0f), all back on shrinking\n", PLACE_FROM,
           PLACE_TO, on_new, PLACE_GROUPS, ideal);
    rc_client_close(&c);
    CU_ASSERT_EQUAL(it_stop(&srv), 0);
}

int main(void)
{
    const char *ev = getenv("RC_SCALE_EVENTS");
    if (ev && atoi(ev) > 0)
        events_wanted = atoi(ev);
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("shard-count changes", NULL, cleanup);
    CU_add_test(s, "groups move in order under load", test_moves_under_load);
    CU_add_test(s, "a grow moves only what must move", test_only_what_must_move);
    return rc_test_run();
}
