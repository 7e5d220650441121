/*
 * Read cursors, receipts and the inbox against the real server
 * (proto/PROTOCOL.md §6.11, src/ARCHITECTURE.md §3.11), as a chat client
 * sees them:
 *  - `read` moves the user's cursor forward only (a lower seq answers the
 *    stored one), a seq past the group's last is E_BAD_FIELD, a non-member
 *    gets E_NOT_MEMBER; `joined` carries the cursor, in every later session;
 *  - the cursor survives kill -9 (durability batch), and a change of the
 *    shard count (durability off: the moved groups carry their cursors);
 *  - receipts reach only the sessions that joined with receipts: true, at
 *    most one per user and group per tick, the last one with the newest
 *    cursor;
 *  - `inbox` lists the user's groups newest activity first with seq, read,
 *    unread, ts and the last message; `limit` and its bounds; a left group
 *    is gone; inbox_scan_max and max_reply_bytes cut it with `more: true`.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "itest.h"

#define READS_BURST 50 /* reads pipelined in one write: the shard takes them in one or a few ticks */
#define BIG_BODY 900   /* bytes of a message that fills a fifth of a 4096-byte reply budget */
#define MOVE_GROUPS 8  /* groups whose cursors live in memory only while the shard count changes */
#define ADMIN_TOKEN "reads-admin-token"
#define RESP_MAX 4096

static it_server srv;

static int cleanup(void)
{
    return it_cleanup(&srv);
}

static int join_opts(rc_client *c, const char *g, bool receipts, uint64_t rid, rc_msg *out)
{
    rc_msg j = { .type = RC_T_JOIN, .g = rc_str_c(g) };
    if (receipts) {
        j.has |= RC_HAS_RECEIPTS;
        j.receipts = true;
    }
    if (it_request(c, &j, rid) != 0)
        return -1;
    return it_wait(c, RC_T_JOINED, rid, out, NULL) == 1 && out->type == RC_T_JOINED ? 0 : -1;
}

/* read {g, seq}: the reply (marked or err) in *out. 0 or -1. */
static int mark(rc_client *c, const char *g, uint64_t seq, uint64_t rid, rc_msg *out)
{
    rc_msg r = { .type = RC_T_READ, .g = rc_str_c(g), .seq = seq, .has = RC_HAS_SEQ };
    if (it_request(c, &r, rid) != 0)
        return -1;
    return it_wait(c, RC_T_MARKED, rid, out, NULL) == 1 ? 0 : -1;
}

static void send_n(rc_client *c, const char *g, int n)
{
    for (int i = 0; i < n; i++) {
        rc_msg ack;
        CU_ASSERT_EQUAL_FATAL(rc_client_publish(c, g, "hello", 5, NULL, IT_TIMEOUT_MS, &ack), 0);
    }
}

static void test_cursor(void)
{
    rc_client a, b;
    rc_msg m;
    CU_ASSERT_FATAL(it_login(&a, &srv, "alice") == 0 && it_login(&b, &srv, "bob") == 0);
    CU_ASSERT_FATAL(join_opts(&a, "c1", false, 2, &m) == 0);
    CU_ASSERT_EQUAL(m.read, 0); /* no cursor yet */
    CU_ASSERT(m.has & RC_HAS_READ);
    send_n(&a, "c1", 3);
    CU_ASSERT_FATAL(mark(&a, "c1", 2, 3, &m) == 0);
    CU_ASSERT_EQUAL(m.type, RC_T_MARKED);
    CU_ASSERT(it_str_is(m.g, "c1"));
    CU_ASSERT_EQUAL(m.seq, 2);
    CU_ASSERT_FATAL(mark(&a, "c1", 1, 4, &m) == 0); /* lower: the cursor stays */
    CU_ASSERT_EQUAL(m.type, RC_T_MARKED);
    CU_ASSERT_EQUAL(m.seq, 2);
    CU_ASSERT_FATAL(mark(&a, "c1", 4, 5, &m) == 0); /* past the last seq (3) */
    CU_ASSERT(it_is_err(&m, RC_E_BAD_FIELD, true, 5));
    CU_ASSERT_FATAL(mark(&a, "c1", 3, 6, &m) == 0);
    CU_ASSERT_EQUAL(m.seq, 3);
    CU_ASSERT_FATAL(mark(&b, "c1", 1, 7, &m) == 0); /* bob is no member */
    CU_ASSERT(it_is_err(&m, RC_E_NOT_MEMBER, true, 7));
    CU_ASSERT_FATAL(mark(&b, "nowhere", 0, 8, &m) == 0);
    CU_ASSERT(it_is_err(&m, RC_E_NOT_MEMBER, true, 8));
    rc_client_close(&a);
    /* another session of alice: joined carries the stored cursor */
    CU_ASSERT_FATAL(it_login(&a, &srv, "alice") == 0);
    CU_ASSERT_FATAL(join_opts(&a, "c1", false, 9, &m) == 0);
    CU_ASSERT_EQUAL(m.seq, 3);
    CU_ASSERT_EQUAL(m.read, 3);
    CU_ASSERT_FATAL(join_opts(&b, "c1", false, 10, &m) == 0);
    CU_ASSERT_EQUAL(m.read, 0); /* bob's own cursor */
    rc_client_close(&a);
    rc_client_close(&b);
}

/* Receipts seen by c up to a barrier (a `read` of g by c's own user at 0,
 * answered by the group's shard after everything it did before). */
typedef struct receipts_seen {
    int n;
    uint64_t last_seq;
    char last_user[RC_MAX_USER + 1];
} receipts_seen;

static int receipts_in(rc_client *c, const char *g, uint64_t rid, receipts_seen *out)
{
    memset(out, 0, sizeof(*out));
    rc_msg r = { .type = RC_T_READ, .g = rc_str_c(g), .seq = 0, .has = RC_HAS_SEQ };
    if (it_request(c, &r, rid) != 0)
        return -1;
    int64_t end = it_now_ms() + IT_TIMEOUT_MS;
    while (it_now_ms() < end) {
        rc_msg m;
        if (it_next(c, &m) != 1)
            return -1;
        if ((m.type == RC_T_MARKED || m.type == RC_T_ERR) && m.rid == rid)
            return 0;
        if (m.type == RC_T_RECEIPT) {
            out->n++;
            out->last_seq = m.seq;
            snprintf(out->last_user, sizeof(out->last_user), "%.*s", (int)m.user.len, m.user.ptr);
        }
    }
    return -1;
}

static void test_receipts(void)
{
    rc_client a, carol, dave;
    rc_msg m;
    CU_ASSERT_FATAL(it_login(&a, &srv, "ann") == 0 && it_login(&carol, &srv, "carol") == 0 &&
                    it_login(&dave, &srv, "dave") == 0);
    CU_ASSERT_FATAL(join_opts(&a, "r1", false, 2, &m) == 0);
    CU_ASSERT_FATAL(join_opts(&carol, "r1", true, 2, &m) == 0);
    CU_ASSERT_FATAL(join_opts(&dave, "r1", false, 2, &m) == 0);
    send_n(&a, "r1", READS_BURST);
    /* READS_BURST reads in one write: the shard takes them in a few ticks
     * at most, each tick one receipt */
    rc_buf b;
    rc_buf_init(&b);
    for (uint64_t seq = 1; seq <= READS_BURST; seq++) {
        rc_msg r = { .type = RC_T_READ, .g = rc_str_c("r1"), .seq = seq, .has = RC_HAS_SEQ | RC_HAS_RID, .rid = 100 + seq };
        CU_ASSERT_FATAL(rc_encode(&b, &r) == 0);
    }
    CU_ASSERT_FATAL(rc_client_send_raw(&a, b.data, b.len) == 0);
    rc_buf_free(&b);
    CU_ASSERT_FATAL(it_wait(&a, RC_T_MARKED, 100 + READS_BURST, &m, NULL) == 1);
    CU_ASSERT_EQUAL(m.seq, READS_BURST);
    receipts_seen rc, rd, ra;
    CU_ASSERT_FATAL(receipts_in(&carol, "r1", 900, &rc) == 0);
    CU_ASSERT_FATAL(receipts_in(&dave, "r1", 900, &rd) == 0);
    CU_ASSERT_FATAL(receipts_in(&a, "r1", 900, &ra) == 0);
    CU_ASSERT(rc.n >= 1);
    CU_ASSERT(rc.n < READS_BURST); /* coalesced */
    CU_ASSERT_EQUAL(rc.last_seq, READS_BURST);
    CU_ASSERT_STRING_EQUAL(rc.last_user, "ann");
    CU_ASSERT_EQUAL(rd.n, 0); /* joined without receipts */
    CU_ASSERT_EQUAL(ra.n, 0);
    printf("\n    %d reads, %d receipts\n   ", READS_BURST, rc.n);
    CU_ASSERT(rc_test_metric(srv.s.admin_port, "ringcast_receipts_coalesced_total", 1) >= READS_BURST - rc.n);
    /* a read that does not move the cursor sends none */
    CU_ASSERT_FATAL(mark(&a, "r1", 3, 901, &m) == 0);
    CU_ASSERT_EQUAL(m.seq, READS_BURST);
    CU_ASSERT_FATAL(receipts_in(&carol, "r1", 902, &rc) == 0);
    CU_ASSERT_EQUAL(rc.n, 0);
    rc_client_close(&a);
    rc_client_close(&carol);
    rc_client_close(&dave);
}

static int inbox(rc_client *c, bool has_limit, uint64_t limit, uint64_t rid, rc_msg *out)
{
    rc_msg q = { .type = RC_T_INBOX, .limit = limit, .has = has_limit ? RC_HAS_LIMIT : 0 };
    if (it_request(c, &q, rid) != 0)
        return -1;
    return it_wait(c, RC_T_INBOX, rid, out, NULL) == 1 ? 0 : -1;
}

static void test_inbox(void)
{
    rc_client u, o;
    rc_msg m;
    CU_ASSERT_FATAL(it_login(&u, &srv, "uma") == 0 && it_login(&o, &srv, "otto") == 0);
    const char *gs[] = { "ib-a", "ib-b", "ib-c" };
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_FATAL(join_opts(&u, gs[i], false, 2, &m) == 0);
        CU_ASSERT_FATAL(join_opts(&o, gs[i], false, 2, &m) == 0);
    }
    send_n(&o, "ib-b", 2);
    it_sleep_ms(2); /* ts is in ms: the next message is newer */
    rc_msg ack;
    CU_ASSERT_FATAL(rc_client_publish(&o, "ib-a", "newest", 6, "m-a", IT_TIMEOUT_MS, &ack) == 0);
    CU_ASSERT_FATAL(mark(&u, "ib-b", 2, 3, &m) == 0 && m.seq == 2);
    CU_ASSERT_FATAL(inbox(&u, false, 0, 4, &m) == 0);
    CU_ASSERT_EQUAL_FATAL(m.type, RC_T_INBOX);
    CU_ASSERT_FALSE(m.more);
    CU_ASSERT_EQUAL_FATAL(m.n_groups, 3);
    const rc_inbox_entry *e = m.groups;
    CU_ASSERT(it_str_is(e[0].g, "ib-a")); /* newest activity first */
    CU_ASSERT_EQUAL(e[0].seq, 1);
    CU_ASSERT_EQUAL(e[0].read, 0);
    CU_ASSERT_EQUAL(e[0].unread, 1);
    CU_ASSERT_EQUAL(e[0].ts, ack.ts);
    CU_ASSERT_FATAL(e[0].has_last);
    CU_ASSERT(it_str_is(e[0].last->body, "newest"));
    CU_ASSERT(it_str_is(e[0].last->from, "otto"));
    CU_ASSERT(it_str_is(e[0].last->mid, "m-a"));
    CU_ASSERT_EQUAL(e[0].last->seq, 1);
    CU_ASSERT(it_str_is(e[1].g, "ib-b"));
    CU_ASSERT_EQUAL(e[1].seq, 2);
    CU_ASSERT_EQUAL(e[1].read, 2);
    CU_ASSERT_EQUAL(e[1].unread, 0);
    CU_ASSERT(e[1].has_last && e[1].ts <= e[0].ts);
    CU_ASSERT(it_str_is(e[2].g, "ib-c")); /* no message: last, without ts or last */
    CU_ASSERT_EQUAL(e[2].seq, 0);
    CU_ASSERT_FALSE(e[2].has_last);
    /* otto writes to ib-c: it moves to the top */
    it_sleep_ms(2);
    CU_ASSERT_FATAL(rc_client_publish(&o, "ib-c", "now", 3, NULL, IT_TIMEOUT_MS, &ack) == 0);
    CU_ASSERT_FATAL(inbox(&u, true, 2, 5, &m) == 0);
    CU_ASSERT_EQUAL_FATAL(m.n_groups, 2);
    CU_ASSERT(it_str_is(m.groups[0].g, "ib-c"));
    CU_ASSERT(it_str_is(m.groups[1].g, "ib-a"));
    CU_ASSERT_FALSE(m.more); /* the limit is not a cut */
    /* limit bounds */
    CU_ASSERT_FATAL(inbox(&u, true, 0, 6, &m) == 0);
    CU_ASSERT(it_is_err(&m, RC_E_BAD_FIELD, true, 6));
    CU_ASSERT_FATAL(inbox(&u, true, RC_MAX_INBOX_LIMIT + 1, 7, &m) == 0);
    CU_ASSERT(it_is_err(&m, RC_E_BAD_FIELD, true, 7));
    CU_ASSERT_FATAL(inbox(&u, true, RC_MAX_INBOX_LIMIT, 8, &m) == 0);
    CU_ASSERT_EQUAL(m.n_groups, 3);
    /* a left group is gone; a user in no group has an empty inbox */
    CU_ASSERT_FATAL(rc_client_leave(&u, "ib-b", IT_TIMEOUT_MS) == 0);
    CU_ASSERT_FATAL(inbox(&u, false, 0, 9, &m) == 0);
    CU_ASSERT_EQUAL(m.n_groups, 2);
    for (uint32_t i = 0; i < m.n_groups; i++)
        CU_ASSERT_FALSE(it_str_is(m.groups[i].g, "ib-b"));
    rc_client n;
    CU_ASSERT_FATAL(it_login(&n, &srv, "nobody-here") == 0);
    CU_ASSERT_FATAL(inbox(&n, false, 0, 10, &m) == 0);
    CU_ASSERT_EQUAL(m.type, RC_T_INBOX);
    CU_ASSERT_EQUAL(m.n_groups, 0);
    rc_client_close(&n);
    rc_client_close(&u);
    rc_client_close(&o);
}

/* inbox_scan_max and the reply budget each cut an inbox, with more: true. */
static void test_inbox_bounds(void)
{
    const char *flags[] = { "--inbox-scan-max", "5", "--max-frame", "1024", "--max-reply-bytes", "4096", NULL };
    it_server small;
    CU_ASSERT_FATAL(it_start(&small, flags) == 0);
    rc_client a, b;
    rc_msg m;
    CU_ASSERT_FATAL(it_login(&a, &small, "many") == 0 && it_login(&b, &small, "big") == 0);
    char g[16];
    for (int i = 0; i < 6; i++) {
        snprintf(g, sizeof(g), "s%d", i);
        CU_ASSERT_FATAL(join_opts(&a, g, false, 2, &m) == 0);
    }
    CU_ASSERT_FATAL(inbox(&a, false, 0, 3, &m) == 0);
    CU_ASSERT_EQUAL(m.n_groups, 5); /* inbox_scan_max */
    CU_ASSERT_TRUE(m.more);
    char body[BIG_BODY];
    memset(body, 'x', sizeof(body));
    for (int i = 0; i < 5; i++) {
        snprintf(g, sizeof(g), "b%d", i);
        CU_ASSERT_FATAL(join_opts(&b, g, false, 2, &m) == 0);
        rc_msg ack;
        CU_ASSERT_FATAL(rc_client_publish(&b, g, body, sizeof(body), NULL, IT_TIMEOUT_MS, &ack) == 0);
        it_sleep_ms(2); /* ts is in ms: each group's message is newer than the last */
    }
    CU_ASSERT_FATAL(inbox(&b, false, 0, 4, &m) == 0);
    CU_ASSERT(m.n_groups >= 1 && m.n_groups < 5); /* five 900-byte messages do not fit 4096 bytes */
    CU_ASSERT_TRUE(m.more);
    CU_ASSERT(it_str_is(m.groups[0].g, "b4")); /* what fits is the newest */
    CU_ASSERT_EQUAL(rc_test_metric(small.s.admin_port, "ringcast_inbox_truncated_total", 1), 2);
    rc_client_close(&a);
    rc_client_close(&b);
    CU_ASSERT_EQUAL(it_stop(&small), 0);
}

/* A cursor acked by `marked` survives kill -9 (durability batch). */
static void test_cursor_survives_kill(void)
{
    rc_test_server k;
    CU_ASSERT_FATAL(rc_test_server_start(&k, NULL) == 0);
    rc_client a;
    rc_msg m;
    CU_ASSERT_FATAL(rc_client_connect(&a, IT_HOST, k.port, IT_TIMEOUT_MS) == 0);
    CU_ASSERT_FATAL(rc_client_hello(&a, "kim", IT_TIMEOUT_MS) == 0);
    CU_ASSERT_FATAL(join_opts(&a, "k1", false, 2, &m) == 0);
    send_n(&a, "k1", 5);
    CU_ASSERT_FATAL(mark(&a, "k1", 4, 3, &m) == 0);
    CU_ASSERT_EQUAL(m.seq, 4);
    rc_client_close(&a);
    kill(k.pid, SIGKILL);
    int st = 0;
    CU_ASSERT_EQUAL(waitpid(k.pid, &st, 0), k.pid);
    CU_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    CU_ASSERT_FATAL(rc_test_server_restart(&k, NULL) == 0);
    CU_ASSERT_FATAL(rc_client_connect(&a, IT_HOST, k.port, IT_TIMEOUT_MS) == 0);
    CU_ASSERT_FATAL(rc_client_hello(&a, "kim", IT_TIMEOUT_MS) == 0);
    CU_ASSERT_FATAL(inbox(&a, false, 0, 4, &m) == 0);
    CU_ASSERT_EQUAL_FATAL(m.n_groups, 1);
    CU_ASSERT_EQUAL(m.groups[0].seq, 5);
    CU_ASSERT_EQUAL(m.groups[0].read, 4);
    CU_ASSERT_EQUAL(m.groups[0].unread, 1);
    CU_ASSERT_FATAL(join_opts(&a, "k1", false, 5, &m) == 0);
    CU_ASSERT_EQUAL(m.read, 4);
    CU_ASSERT_FATAL(mark(&a, "k1", 2, 6, &m) == 0); /* still monotonic after the restart */
    CU_ASSERT_EQUAL(m.seq, 4);
    rc_client_close(&a);
    CU_ASSERT_EQUAL(rc_test_server_stop_keep(&k), 0);
    /* ringcast-inspect (next to ringcastd) shows the index and the cursor */
    char cmd[512], out[1024] = "";
    const char *bin = getenv("RINGCASTD");
    const char *slash = bin ? strrchr(bin, '/') : NULL;
    CU_ASSERT_FATAL(slash != NULL);
    snprintf(cmd, sizeof(cmd), "%.*s/ringcast-inspect --data-dir %s --user kim", (int)(slash - bin), bin, k.dir);
    FILE *f = popen(cmd, "r");
    CU_ASSERT_FATAL(f != NULL);
    size_t n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = '\0';
    CU_ASSERT_EQUAL(pclose(f), 0);
    printf("\n    %s", out);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "seq=5"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "read=4"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "unread=1"));
    rc_test_remove_dir(k.dir);
}

static int suite_init(void)
{
    return it_start(&srv, NULL);
}

/* POST target on the admin port with the admin token; the HTTP status or -1. */
static int admin_post(uint16_t port, const char *target)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct timeval tv = { .tv_sec = IT_TIMEOUT_MS / 1000 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char req[512], resp[RESP_MAX];
    int n = snprintf(req, sizeof(req),
                     "POST %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: Bearer %s\r\n"
                     "Content-Length: 0\r\n\r\n", target, ADMIN_TOKEN);
    size_t len = 0;
    if (write(fd, req, (size_t)n) == n)
        for (ssize_t r; len + 1 < sizeof(resp) && (r = read(fd, resp + len, sizeof(resp) - 1 - len)) > 0;)
            len += (size_t)r;
    resp[len] = '\0';
    close(fd);
    int status = -1;
    return sscanf(resp, "HTTP/1.1 %d", &status) == 1 ? status : -1;
}

/* Cursors held in memory alone (durability off) move with their groups
 * when the shard count changes (src/ARCHITECTURE.md §4.1). */
static void test_cursor_moves_with_group(void)
{
    const char *flags[] = { "--durability", "off", "--admin-token", ADMIN_TOKEN, "--shards", "1", "--min-shards", "1",
                            "--max-shards", "4", "--scale-interval-ms", "0", NULL };
    it_server mv;
    CU_ASSERT_FATAL(it_start(&mv, flags) == 0);
    rc_client a;
    rc_msg m;
    CU_ASSERT_FATAL(it_login(&a, &mv, "mover") == 0);
    char g[16];
    for (int i = 0; i < MOVE_GROUPS; i++) {
        snprintf(g, sizeof(g), "mv%d", i);
        CU_ASSERT_FATAL(join_opts(&a, g, false, 2, &m) == 0);
        send_n(&a, g, 3);
        CU_ASSERT_FATAL(mark(&a, g, 2, 3, &m) == 0 && m.seq == 2);
    }
    CU_ASSERT_EQUAL_FATAL(admin_post(mv.s.admin_port, "/admin/shards?count=4"), 200);
    CU_ASSERT(it_wait_metric(&mv, "ringcast_shards", 4) == 4);
    CU_ASSERT(rc_test_metric(mv.s.admin_port, "ringcast_groups_moved_total", 1) > 0);
    for (int i = 0; i < MOVE_GROUPS; i++) {
        snprintf(g, sizeof(g), "mv%d", i);
        CU_ASSERT_FATAL(join_opts(&a, g, false, 4, &m) == 0);
        CU_ASSERT_EQUAL(m.read, 2);
        CU_ASSERT_FATAL(mark(&a, g, 1, 5, &m) == 0);
        CU_ASSERT_EQUAL(m.seq, 2); /* still monotonic at the new owner */
    }
    rc_client_close(&a);
    CU_ASSERT_EQUAL(it_stop(&mv), 0);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("reads", suite_init, cleanup);
    CU_add_test(s, "read cursor: monotonic, bounds, membership, joined.read", test_cursor);
    CU_add_test(s, "receipts: only to receipts sessions, coalesced", test_receipts);
    CU_add_test(s, "inbox: order, counts, last, limit", test_inbox);
    CU_add_test(s, "inbox: inbox_scan_max and max_reply_bytes", test_inbox_bounds);
    CU_add_test(s, "cursor survives kill -9", test_cursor_survives_kill);
    CU_add_test(s, "cursors move with their groups", test_cursor_moves_with_group);
    return rc_test_run();
}
