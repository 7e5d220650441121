/*
 * Floods: backpressure instead of refusals (ARCHITECTURE §3.4).
 *
 * 1. Flood and a light sender. Two publishers pipeline thousands of sends to
 *    four groups as fast as their sockets take them, into shard rings far
 *    too small to hold them (--ring-capacity 256), while a light client
 *    sends to a group of its own, one send at a time. Every send of all
 *    three is acked (none refused with E_OVERLOADED, none lettered), the
 *    light client is answered while the flood is still going, and every
 *    reader of the flooded groups receives every message, gapless.
 * 2. Readers that keep up. One sender floods one group of 30 readers that
 *    read as fast as they can: every reader receives every message in seq
 *    order, nobody is closed or lettered or found slow; the sender is the
 *    one slowed (its requests wait, or deliveries wait for readers).
 *
 * Counts, not times: every loop is bounded in rounds and by FLOOD_LIMIT_MS,
 * and nothing asserts a speed.
 */
#define _GNU_SOURCE
#include "itest.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <sys/socket.h>

#define FLOOD_LIMIT_MS 120000   /* one scene, at most */
#define FLOOD_ROUNDS 10000000   /* pump rounds, at most */
#define RID0 1000u              /* rid of a publisher's k-th send: RID0 + k */
#define MAX_CLIENTS 40
#define MAX_GROUPS 4
#define FAIL_TEXT 512

typedef struct scene {
    rc_client cs[MAX_CLIENTS];
    int n_clients;
    int n_pubs;                          /* clients 0..n_pubs-1 flood */
    int light;                           /* index of the light sender, or -1 */
    int n_groups;
    bool member[MAX_CLIENTS][MAX_GROUPS];
    rc_buf wire[MAX_CLIENTS];            /* a publisher's encoded sends */
    size_t woff[MAX_CLIENTS];            /* bytes of wire written so far */
    int per_pub;                         /* sends each publisher makes */
    long acked[MAX_CLIENTS];             /* acks received per sender */
    uint64_t pub_group_acks[MAX_CLIENTS][MAX_GROUPS]; /* acks received per publisher and group */
    uint64_t last_seq[MAX_CLIENTS][MAX_GROUPS]; /* last msg seq seen, per member and group */
    uint64_t group_acks[MAX_GROUPS];     /* acks received per group */
    long msgs, errs;
    int light_sent, light_total;
    long light_during_flood;             /* light acks that arrived while publishers still waited for acks */
    char failure[FAIL_TEXT];
} scene;

static void group_name(int g, char *out, size_t len)
{
    snprintf(out, len, "fl-%d", g);
}

static int group_index(const scene *sc, rc_str g)
{
    for (int i = 0; i < sc->n_groups; i++) {
        char name[16];
        group_name(i, name, sizeof(name));
        if (it_str_is(g, name))
            return i;
    }
    return -1;
}

static bool flood_done(const scene *sc)
{
    for (int p = 0; p < sc->n_pubs; p++)
        if (sc->acked[p] < sc->per_pub)
            return false;
    return true;
}

static int light_send(scene *sc)
{
    char body[32];
    snprintf(body, sizeof(body), "light %d", sc->light_sent);
    rc_msg m = { .type = RC_T_SEND, .g = rc_str_c("light"), .body = rc_str_c(body), .body_is_str = true };
    return it_request(&sc->cs[sc->light], &m, RID0 + (uint64_t)sc->light_sent++);
}

static bool on_frame(void *ud, int i, const rc_msg *m)
{
    scene *sc = ud;
    if (m->type == RC_T_ERR) {
        sc->errs++;
        return it_failf(sc->failure, sizeof(sc->failure), "client %d: err %s: %.*s", i, rc_err_name(m->code), (int)m->text.len, m->text.ptr);
    }
    if (m->type == RC_T_BYE)
        return it_failf(sc->failure, sizeof(sc->failure), "client %d: bye %.*s", i, (int)m->reason.len, m->reason.ptr);
    if (m->type == RC_T_ACK) {
        if (i == sc->light) {
            if (!it_str_is(m->g, "light") || m->seq != (uint64_t)sc->acked[i] + 1)
                return it_failf(sc->failure, sizeof(sc->failure), "light client: ack seq %" PRIu64 " after %ld", m->seq, sc->acked[i]);
            sc->acked[i]++;
            if (!flood_done(sc))
                sc->light_during_flood++;
            if (sc->light_sent < sc->light_total && light_send(sc) != 0)
                return it_failf(sc->failure, sizeof(sc->failure), "light client: %s", sc->cs[i].err);
            return true;
        }
        /* Groups on different shards ack independently; within a group,
         * sends are acked in the order they were sent. */
        int g = group_index(sc, m->g);
        if (g < 0 || i >= sc->n_pubs ||
            m->rid != RID0 + (uint64_t)g + (uint64_t)sc->n_groups * sc->pub_group_acks[i][g])
            return it_failf(sc->failure, sizeof(sc->failure), "client %d: ack rid %" PRIu64 " out of order", i, m->rid);
        sc->pub_group_acks[i][g]++;
        sc->acked[i]++;
        sc->group_acks[g]++;
        return true;
    }
    if (m->type == RC_T_MSG) {
        if (it_str_is(m->g, "light"))
            return true; /* the light client's own messages */
        int g = group_index(sc, m->g);
        if (g < 0 || !sc->member[i][g])
            return it_failf(sc->failure, sizeof(sc->failure), "client %d: msg of a group it did not join", i);
        if (m->seq != sc->last_seq[i][g] + 1)
            return it_failf(sc->failure, sizeof(sc->failure), "client %d group %d: seq %" PRIu64 " after %" PRIu64 " (a gap)", i, g, m->seq,
                        sc->last_seq[i][g]);
        sc->last_seq[i][g] = m->seq;
        sc->msgs++;
        return true;
    }
    return it_failf(sc->failure, sizeof(sc->failure), "client %d: unexpected %s", i, rc_type_name(m->type));
}

/* Encodes every send of publisher p: round-robin over the flooded groups. */
static void encode_flood(scene *sc, int p, size_t body_len)
{
    char body[1024];
    memset(body, 'a' + p, body_len);
    rc_buf_init(&sc->wire[p]);
    for (int k = 0; k < sc->per_pub; k++) {
        char g[16];
        group_name(k % sc->n_groups, g, sizeof(g));
        rc_msg m = { .type = RC_T_SEND, .g = rc_str_c(g), .body = { body, body_len }, .has = RC_HAS_RID,
                     .rid = RID0 + (uint64_t)k };
        CU_ASSERT_FATAL(rc_encode(&sc->wire[p], &m) == 0);
    }
}

/* Writes what each publisher's socket takes now, without blocking. */
static bool push_floods(scene *sc)
{
    for (int p = 0; p < sc->n_pubs; p++) {
        rc_buf *w = &sc->wire[p];
        while (sc->woff[p] < w->len) {
            ssize_t n = send(sc->cs[p].fd, w->data + sc->woff[p], w->len - sc->woff[p], MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break; /* the server stopped reading us: the backpressure */
            if (n <= 0)
                return it_failf(sc->failure, sizeof(sc->failure), "publisher %d: send: %s", p, strerror(errno));
            sc->woff[p] += (size_t)n;
        }
    }
    return true;
}

static bool all_delivered(const scene *sc)
{
    if (!flood_done(sc) || (sc->light >= 0 && sc->acked[sc->light] < sc->light_total))
        return false;
    for (int i = 0; i < sc->n_clients; i++)
        for (int g = 0; g < sc->n_groups; g++)
            if (sc->member[i][g] && sc->last_seq[i][g] < sc->group_acks[g])
                return false;
    return true;
}

/* Runs the scene until everything is acked and delivered, or it fails. */
static bool run_scene(scene *sc)
{
    int64_t end = it_now_ms() + FLOOD_LIMIT_MS;
    if (sc->light >= 0 && light_send(sc) != 0)
        return it_failf(sc->failure, sizeof(sc->failure), "light client: %s", sc->cs[sc->light].err);
    for (long round = 0; round < FLOOD_ROUNDS && it_now_ms() < end; round++) {
        if (!push_floods(sc))
            return false;
        if (all_delivered(sc))
            return true;
        if (it_pump(sc->cs, sc->n_clients, 5, on_frame, sc) < 0)
            return sc->failure[0] ? false : it_failf(sc->failure, sizeof(sc->failure), "a client failed: closed by the server?");
    }
    return it_failf(sc->failure, sizeof(sc->failure), "not everything arrived within the bounds");
}

static void join_all(scene *sc, const char *prefix)
{
    for (int i = 0; i < sc->n_clients; i++) {
        char user[32];
        snprintf(user, sizeof(user), "%s%d", prefix, i);
        it_suite_login(&sc->cs[i], user);
        for (int g = 0; g < sc->n_groups; g++) {
            char name[16];
            group_name(g, name, sizeof(name));
            if (sc->member[i][g])
                CU_ASSERT_FATAL(rc_client_join(&sc->cs[i], name, IT_TIMEOUT_MS, NULL) == 0);
        }
    }
    if (sc->light >= 0)
        CU_ASSERT_FATAL(rc_client_join(&sc->cs[sc->light], "light", IT_TIMEOUT_MS, NULL) == 0);
}

static void close_all(scene *sc)
{
    for (int i = 0; i < sc->n_clients; i++) {
        rc_client_close(&sc->cs[i]);
        if (i < sc->n_pubs)
            rc_buf_free(&sc->wire[i]);
    }
}

/* Nobody was refused, lettered, found slow or closed. */
static void assert_nobody_refused(void)
{
    CU_ASSERT_EQUAL(rc_test_metric(it_srv.s.admin_port, "ringcast_errors_total{code=\"E_OVERLOADED\"}", 1), 0);
    CU_ASSERT_EQUAL(rc_test_metric(it_srv.s.admin_port, "ringcast_overloaded_letters_total{", 1), 0);
    CU_ASSERT_EQUAL(rc_test_metric(it_srv.s.admin_port, "ringcast_slow_consumer_letters_total{", 1), 0);
    CU_ASSERT_EQUAL(rc_test_metric(it_srv.s.admin_port, "ringcast_slow_consumer_closed_total{", 1), 0);
    CU_ASSERT_EQUAL(rc_test_metric(it_srv.s.admin_port, "ringcast_slow_consumers_total{", 1), 0);
}

static void print_pressure(const scene *sc)
{
    printf("\n    %ld msgs delivered, %ld errs; holds %.0f, of them for a reader over the pause mark %.0f", sc->msgs,
           sc->errs, rc_test_metric(it_srv.s.admin_port, "ringcast_io_holds_total{", 1),
           rc_test_metric(it_srv.s.admin_port, "ringcast_io_pressure_holds_total{", 1));
    if (sc->failure[0])
        printf("\n    %s", sc->failure);
}

#define A_PUBS 2
#define A_READERS 6
#define A_PER_PUB 5000
#define A_LIGHT 200

/* Scene 1's shape: A_PUBS publishers and A_READERS readers in every
 * flooded group, per_pub sends each, and with light_total > 0 a light
 * sender on a group of its own; everyone logged in and joined, the
 * publishers' sends encoded. */
static void flood_scene(scene *sc, int per_pub, int light_total, const char *prefix)
{
    memset(sc, 0, sizeof(*sc));
    sc->n_pubs = A_PUBS;
    sc->n_clients = A_PUBS + A_READERS + (light_total ? 1 : 0);
    sc->light = light_total ? sc->n_clients - 1 : -1;
    sc->light_total = light_total;
    sc->n_groups = MAX_GROUPS;
    sc->per_pub = per_pub;
    for (int i = 0; i < A_PUBS + A_READERS; i++)
        for (int g = 0; g < sc->n_groups; g++)
            sc->member[i][g] = true;
    join_all(sc, prefix);
    for (int p = 0; p < sc->n_pubs; p++)
        encode_flood(sc, p, 100);
}

/* Every member of a flooded group saw all of its messages, and nothing was
 * refused, lettered or closed. */
static void assert_flood_delivered(const scene *sc)
{
    CU_ASSERT_EQUAL(sc->errs, 0);
    long want = 0;
    for (int i = 0; i < sc->n_clients; i++)
        for (int g = 0; g < sc->n_groups; g++)
            if (sc->member[i][g])
                want += (long)sc->group_acks[g];
    CU_ASSERT_EQUAL(sc->msgs, want);
    CU_ASSERT_EQUAL(want, (long)A_PUBS * sc->per_pub * (A_PUBS + A_READERS));
    assert_nobody_refused();
}

static void test_flood_and_light_sender(void)
{
    /* The shard count stays put: the flood tests backpressure; moves under load are test_scale's. */
    const char *flags[] = { "--shards", "2", "--ring-capacity", "256", "--durability", "sync", "--scale-interval-ms", "0",
                            NULL };
    it_suite_start(flags);
    static scene sc;
    flood_scene(&sc, A_PER_PUB, A_LIGHT, "fa");

    bool ok = run_scene(&sc);
    print_pressure(&sc);
    printf(", light acks during the flood %ld\n", sc.light_during_flood);
    CU_ASSERT(ok);
    for (int p = 0; p < sc.n_pubs; p++)
        CU_ASSERT_EQUAL(sc.acked[p], A_PER_PUB);
    CU_ASSERT_EQUAL(sc.acked[sc.light], A_LIGHT);
    CU_ASSERT(sc.light_during_flood >= 1); /* served while the flood ran, not after it */
    assert_flood_delivered(&sc);
    close_all(&sc);
    it_suite_stop();
}

/* Enough sends for several of the autoscaler's 200 ms samples on a fast
 * box: 20,000 each flooded for well under a second there, and in about
 * half of the runs no sample reached the high watermark. */
#define C_PER_PUB 60000

/* The autoscaler sees the flood of scene 1 as a full queue: requests wait
 * outside the rings for most of every sample (ringcast_io_unadmitted_
 * nanoseconds_total, src/app/scale.c fill_pct), and it grows while the
 * flood runs; the groups that move keep every message, in order. */
static void test_flood_grows_shards(void)
{
    const char *flags[] = { "--shards", "1", "--min-shards", "1", "--max-shards", "2", "--ring-capacity", "256",
                            "--durability", "sync", "--scale-interval-ms", "200", "--scale-cooldown-ms", "0",
                            "--max-queue-ms", "10000", NULL };
    it_suite_start(flags);
    static scene sc;
    flood_scene(&sc, C_PER_PUB, 0, "fc");

    bool ok = run_scene(&sc);
    print_pressure(&sc);
    double grows = rc_test_metric(it_srv.s.admin_port, "ringcast_scale_events_total{direction=\"grow\"}", 1);
    double waited_ns = rc_test_metric(it_srv.s.admin_port, "ringcast_io_unadmitted_nanoseconds_total{", 1);
    printf(", grows %.0f, requests waited outside the rings %.0f ms\n", grows, waited_ns / 1e6);
    CU_ASSERT(ok);
    CU_ASSERT(grows >= 1);
    CU_ASSERT(waited_ns > 0);
    assert_flood_delivered(&sc);
    close_all(&sc);
    it_suite_stop();
}

#define B_READERS 30
#define B_PER_PUB 10000

static void test_readers_keep_up(void)
{
    /* A reader here is one test thread decoding 30 sockets (slow under the
     * sanitizers): 5 s over the pause mark, not 0.5, is what makes it slow. */
    const char *flags[] = { "--shards", "1", "--durability", "off", "--outbound-high-bytes", "1048576",
                            "--outbound-stall-ms", "5000", "--scale-interval-ms", "0", NULL };
    it_suite_start(flags);
    static scene sc;
    memset(&sc, 0, sizeof(sc));
    sc.n_pubs = 1;
    sc.n_clients = 1 + B_READERS;
    sc.light = -1;
    sc.n_groups = 1;
    sc.per_pub = B_PER_PUB;
    for (int i = 0; i < sc.n_clients; i++)
        sc.member[i][0] = true;
    join_all(&sc, "fb");
    encode_flood(&sc, 0, 1000);

    bool ok = run_scene(&sc);
    print_pressure(&sc);
    printf("\n");
    CU_ASSERT(ok);
    CU_ASSERT_EQUAL(sc.acked[0], B_PER_PUB);
    for (int i = 0; i < sc.n_clients; i++)
        CU_ASSERT_EQUAL(sc.last_seq[i][0], (uint64_t)B_PER_PUB);
    CU_ASSERT_EQUAL(sc.msgs, (long)B_PER_PUB * sc.n_clients);
    assert_nobody_refused();
    close_all(&sc);
    it_suite_stop();
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("flood", NULL, it_suite_cleanup);
    CU_add_test(s, "a flood and a light sender: every send acked, none refused", test_flood_and_light_sender);
    CU_add_test(s, "readers that keep up get every message; the sender is slowed", test_readers_keep_up);
    CU_add_test(s, "a flood grows the shard count; moved groups keep every message", test_flood_grows_shards);
    return rc_test_run();
}
