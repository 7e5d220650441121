/*
 * ringcast: command-line client.
 *   ringcast chat  --user U --group G      interactive: lines typed are sent, messages printed and marked read
 *   ringcast inbox --user U [--count N] [--json]   the user's groups, newest activity first, with unread counts
 *   ringcast read  --user U --group G --seq N      move the user's read cursor of G to N
 *   ringcast send  --user U --group G TEXT send one message, print its ack
 *   ringcast tail  --user U --group G [--since N] [--json] [--count N]
 *   ringcast stats [--admin-port P]        print the server's /metrics
 *   ringcast token --secret S --user U [--ttl SECONDS] [--groups G,P*]   mint a development token
 * Common: --host H (127.0.0.1) --port P (7400) --token T, env RINGCAST_HOST /
 * RINGCAST_PORT / RINGCAST_TOKEN (proto/PROTOCOL.md §6.8); --host ws://H:P/ws
 * speaks the protocol over WebSocket instead of TCP.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ringcast/client.h"
#include "ringcast/token.h"
#include "core/clock.h"

#define CLI_TIMEOUT_MS 5000
#define CLI_LINE_MAX 65536
#define CLI_TOKEN_TTL_S 3600 /* ringcast token: lifetime without --ttl */

typedef struct cli_opts {
    const char *host, *user, *group, *mid;
    const char *token;              /* --token / RINGCAST_TOKEN: sent in hello */
    const char *secret, *groups;    /* ringcast token: --secret (or RINGCAST_AUTH_SECRET), --groups */
    uint64_t ttl;                   /* ringcast token: --ttl seconds */
    uint16_t port, admin_port;
    uint64_t since, count, seq;
    bool has_since, has_seq, json;
    const char *text;
} cli_opts;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ringcast COMMAND [options]\n"
            "commands:\n"
            "  chat  --user U --group G             interactive chat: typed lines are sent,\n"
            "                                       incoming messages printed as [group #seq] sender: body\n"
            "                                       and marked read; who comes online, goes offline, types\n"
            "  presence --user U --group G [--json] who is online in G (the user joins it first)\n"
            "  inbox --user U [--count N] [--json]  the user's groups, newest activity first: last seq,\n"
            "                                       read cursor, unread count, last message (N: 1..1000, 100)\n"
            "  read  --user U --group G --seq N     move the user's read cursor of G to N (never back)\n"
            "  send  --user U --group G [--mid M] TEXT   send one message and print its ack\n"
            "  tail  --user U --group G [--since N] [--count N] [--json]\n"
            "                                       print messages as they arrive (and missed ones with --since)\n"
            "  stats [--admin-port P]               print the server's Prometheus metrics\n"
            "  token --secret S --user U [--ttl SECONDS] [--groups G1,PREFIX*]\n"
            "                                       print an HS256 token for U (default ttl 3600 s;\n"
            "                                       --secret defaults to RINGCAST_AUTH_SECRET's first secret)\n"
            "options:\n"
            "  --token T       token for hello (env RINGCAST_TOKEN); with it --user may be left out\n"
            "  --host H        server address (default 127.0.0.1, env RINGCAST_HOST), or a WebSocket\n"
            "                  URL ws://H[:P][/path] (e.g. ws://127.0.0.1:7480/ws) for chat, send and tail\n"
            "  --port P        TCP protocol port (default 7400, env RINGCAST_PORT)\n"
            "  --admin-port P  admin HTTP port (default 7481, env RINGCAST_ADMIN_PORT)\n");
}

static int parse_port(const char *s, uint16_t *out)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*s == '\0' || *end || v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s < '0' || *s > '9' || *end)
        return -1;
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, cli_opts *o)
{
    o->host = getenv("RINGCAST_HOST") ? getenv("RINGCAST_HOST") : "127.0.0.1";
    o->token = getenv("RINGCAST_TOKEN");
    o->secret = getenv("RINGCAST_AUTH_SECRET");
    o->ttl = CLI_TOKEN_TTL_S;
    o->port = 7400;
    o->admin_port = 7481;
    if (getenv("RINGCAST_PORT") && parse_port(getenv("RINGCAST_PORT"), &o->port) != 0)
        return -1;
    if (getenv("RINGCAST_ADMIN_PORT") && parse_port(getenv("RINGCAST_ADMIN_PORT"), &o->admin_port) != 0)
        return -1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            o->json = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            o->text = a;
            continue;
        }
        if (!v) {
            fprintf(stderr, "ringcast: %s needs a value\n", a);
            return -1;
        }
        i++;
        if (strcmp(a, "--host") == 0) o->host = v;
        else if (strcmp(a, "--user") == 0) o->user = v;
        else if (strcmp(a, "--group") == 0) o->group = v;
        else if (strcmp(a, "--mid") == 0) o->mid = v;
        else if (strcmp(a, "--token") == 0) o->token = v;
        else if (strcmp(a, "--secret") == 0) o->secret = v;
        else if (strcmp(a, "--groups") == 0) o->groups = v;
        else if (strcmp(a, "--ttl") == 0 && parse_u64(v, &o->ttl) == 0 && o->ttl > 0) {}
        else if (strcmp(a, "--port") == 0 && parse_port(v, &o->port) == 0) {}
        else if (strcmp(a, "--admin-port") == 0 && parse_port(v, &o->admin_port) == 0) {}
        else if (strcmp(a, "--since") == 0) { o->since = strtoull(v, NULL, 10); o->has_since = true; }
        else if (strcmp(a, "--count") == 0) o->count = strtoull(v, NULL, 10);
        else if (strcmp(a, "--seq") == 0 && parse_u64(v, &o->seq) == 0) o->has_seq = true;
        else {
            fprintf(stderr, "ringcast: bad option %s %s\n", a, v);
            return -1;
        }
    }
    return 0;
}

/* Connects and says hello. */
static int connect_hello(rc_client *c, const cli_opts *o)
{
    if (!o->user && !o->token) {
        fprintf(stderr, "ringcast: --user (or --token) is required\n");
        return -1;
    }
    if (rc_client_open(c, o->host, o->port, CLI_TIMEOUT_MS) != 0 ||
        rc_client_hello_token(c, o->user, o->token, CLI_TIMEOUT_MS) != 0) {
        fprintf(stderr, "ringcast: %s\n", c->err);
        rc_client_close(c);
        return -1;
    }
    return 0;
}

/* Connects, says hello and joins the group (with --since if given; with
 * presence, asking for online/offline events, and printing who is online). */
static int session_as(rc_client *c, const cli_opts *o, bool join, bool presence)
{
    if ((!o->user && !o->token) || !o->group) {
        fprintf(stderr, "ringcast: --group and --user (or --token) are required\n");
        return -1;
    }
    if (rc_client_open(c, o->host, o->port, CLI_TIMEOUT_MS) != 0 ||
        rc_client_hello_token(c, o->user, o->token, CLI_TIMEOUT_MS) != 0) {
        fprintf(stderr, "ringcast: %s\n", c->err);
        rc_client_close(c);
        return -1;
    }
    if (!join)
        return 0;
    rc_msg m = { .type = RC_T_JOIN, .g = rc_str_c(o->group), .has = RC_HAS_RID, .rid = 999999 }, r;
    if (o->has_since) {
        m.has |= RC_HAS_SINCE;
        m.since = o->since;
    }
    if (presence) {
        m.has |= RC_HAS_PRESENCE;
        m.presence = true;
    }
    if (rc_client_send(c, &m) != 0 || rc_client_wait(c, RC_T_JOINED, m.rid, &r, CLI_TIMEOUT_MS) != 1 ||
        r.type == RC_T_ERR) {
        fprintf(stderr, "ringcast: join failed: %s%.*s\n", c->err, r.type == RC_T_ERR ? (int)r.text.len : 0,
                r.type == RC_T_ERR ? r.text.ptr : "");
        rc_client_close(c);
        return -1;
    }
    if (presence && (r.has & RC_HAS_ONLINE))
        fprintf(stderr, "%llu online in %s\n", (unsigned long long)r.online, o->group);
    return 0;
}

static int session(rc_client *c, const cli_opts *o, bool join)
{
    return session_as(c, o, join, false);
}

static void print_json_str(rc_str s)
{
    putchar('"');
    for (uint32_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20 || ch >= 0x7f)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static void print_msg(const rc_msg *m, bool json)
{
    if (json) {
        printf("{\"g\":");
        print_json_str(m->g);
        printf(",\"seq\":%llu,\"from\":", (unsigned long long)m->seq);
        print_json_str(m->from);
        printf(",\"ts\":%llu,\"body\":", (unsigned long long)m->ts);
        print_json_str(m->body);
        if (m->has & RC_HAS_MID) {
            printf(",\"mid\":");
            print_json_str(m->mid);
        }
        printf("}\n");
    } else {
        printf("[%.*s #%llu] %.*s: %.*s\n", (int)m->g.len, m->g.ptr, (unsigned long long)m->seq, (int)m->from.len,
               m->from.ptr, (int)m->body.len, m->body.ptr);
    }
    fflush(stdout);
}

static int cmd_send(const cli_opts *o)
{
    rc_client c;
    if (!o->text) {
        fprintf(stderr, "ringcast send: give the message text\n");
        return 2;
    }
    if (session(&c, o, true) != 0) /* send needs membership: join first */
        return 1;
    rc_msg ack;
    int e = rc_client_publish(&c, o->group, o->text, strlen(o->text), o->mid, CLI_TIMEOUT_MS, &ack);
    if (e != 0) {
        fprintf(stderr, "ringcast send: %s\n", c.err);
        rc_client_close(&c);
        return 1;
    }
    printf("ack g=%.*s seq=%llu ts=%llu%s\n", (int)ack.g.len, ack.g.ptr, (unsigned long long)ack.seq,
           (unsigned long long)ack.ts, ack.dup ? " dup=true" : "");
    rc_client_close(&c);
    return 0;
}

static int cmd_tail(const cli_opts *o)
{
    rc_client c;
    if (session(&c, o, true) != 0)
        return 1;
    /* With --since, the backlog may come in pages (synced with more: the
     * server's max_reply_bytes): messages print in seq order from want on;
     * live ones that overtake a page come again in the next page. */
    uint64_t seen = 0, want = o->has_since ? o->since + 1 : 0;
    bool paging = false;
    for (;;) {
        rc_msg m;
        int r = rc_client_recv(&c, &m, -1);
        if (r < 0) {
            fprintf(stderr, "ringcast tail: %s\n", c.err);
            rc_client_close(&c);
            return 1;
        }
        if (m.type == RC_T_MSG) {
            if (o->has_since && (m.seq < want || (paging && m.seq > want)))
                continue;
            want = m.seq + 1;
            print_msg(&m, o->json);
            if (o->count && ++seen >= o->count)
                break;
        } else if (m.type == RC_T_SYNCED) {
            if (m.lost)
                fprintf(stderr, "ringcast tail: history no longer reaches back to seq %llu\n",
                        (unsigned long long)o->since);
            paging = m.more;
            rc_msg j = { .type = RC_T_JOIN, .g = rc_str_c(o->group), .has = RC_HAS_SINCE, .since = want - 1 };
            if (m.more && rc_client_send(&c, &j) != 0) { /* next page of the backlog */
                fprintf(stderr, "ringcast tail: %s\n", c.err);
                rc_client_close(&c);
                return 1;
            }
        } else if (m.type == RC_T_BYE) {
            fprintf(stderr, "ringcast tail: server said bye: %.*s\n", (int)m.reason.len, m.reason.ptr);
            break;
        }
    }
    rc_client_close(&c);
    return 0;
}

static int cmd_chat(const cli_opts *o)
{
    rc_client c;
    if (session_as(&c, o, true, true) != 0)
        return 1;
    fprintf(stderr, "joined %s as %s; type a line and press Enter to send, Ctrl-D to quit\n", o->group,
            o->user ? o->user : "the token's user");
    char *line = malloc(CLI_LINE_MAX);
    int rc = 0;
    uint64_t read = 0; /* the newest seq marked read */
    for (;;) {
        struct pollfd p[2] = { { 0, POLLIN, 0 }, { c.fd, POLLIN, 0 } };
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents) {
            rc_msg m;
            uint64_t newest = 0;
            while (rc_client_recv(&c, &m, 0) == 1) {
                if (m.type == RC_T_MSG) {
                    print_msg(&m, false);
                    newest = m.seq > newest ? m.seq : newest;
                }
                else if (m.type == RC_T_ONLINE || m.type == RC_T_OFFLINE)
                    printf("* %.*s %s\n", (int)m.user.len, m.user.ptr,
                           m.type == RC_T_ONLINE ? "is online" : "went offline");
                else if (m.type == RC_T_TYPING)
                    printf("* %.*s is typing\n", (int)m.from.len, m.from.ptr);
                else if (m.type == RC_T_ERR)
                    fprintf(stderr, "error %s: %.*s\n", rc_err_name(m.code), (int)m.text.len, m.text.ptr);
                else if (m.type == RC_T_BYE) {
                    fprintf(stderr, "server said bye: %.*s\n", (int)m.reason.len, m.reason.ptr);
                    goto out;
                }
            }
            if (c.err[0]) {
                fprintf(stderr, "%s\n", c.err);
                rc = 1;
                break;
            }
            /* what was printed is read: one cursor move per batch shown */
            rc_msg r = { .type = RC_T_READ, .g = rc_str_c(o->group), .seq = newest, .has = RC_HAS_SEQ };
            if (newest > read && rc_client_send(&c, &r) == 0)
                read = newest;
        }
        if (p[0].revents) {
            if (!fgets(line, CLI_LINE_MAX, stdin))
                break;
            size_t n = strcspn(line, "\n");
            if (n == 0)
                continue;
            rc_msg m = { .type = RC_T_SEND, .g = rc_str_c(o->group), .body = { line, (uint32_t)n }, .body_is_str = true };
            if (rc_client_send(&c, &m) != 0) {
                fprintf(stderr, "%s\n", c.err);
                rc = 1;
                break;
            }
        }
    }
out:
    free(line);
    rc_client_close(&c);
    return rc;
}

static void print_entry(const rc_inbox_entry *e, bool json)
{
    if (json) {
        printf("{\"g\":");
        print_json_str(e->g);
        printf(",\"seq\":%llu,\"read\":%llu,\"unread\":%llu", (unsigned long long)e->seq,
               (unsigned long long)e->read, (unsigned long long)e->unread);
        if (e->has_last) {
            printf(",\"ts\":%llu,\"from\":", (unsigned long long)e->ts);
            print_json_str(e->last->from);
            printf(",\"body\":");
            print_json_str(e->last->body);
        }
        printf("}\n");
        return;
    }
    printf("%.*s seq=%llu read=%llu unread=%llu", (int)e->g.len, e->g.ptr, (unsigned long long)e->seq,
           (unsigned long long)e->read, (unsigned long long)e->unread);
    if (e->has_last)
        printf(" last: %.*s: %.*s", (int)e->last->from.len, e->last->from.ptr, (int)e->last->body.len,
               e->last->body.ptr);
    printf("\n");
}

/* One request, its reply (or err) into *r; 0, or 1 with the cause printed. */
static int ask(rc_client *c, const char *cmd, rc_msg *m, rc_type want, rc_msg *r)
{
    m->has |= RC_HAS_RID;
    m->rid = 1;
    if (rc_client_send(c, m) != 0 || rc_client_wait(c, want, 1, r, CLI_TIMEOUT_MS) != 1) {
        fprintf(stderr, "ringcast %s: %s\n", cmd, c->err[0] ? c->err : "no answer");
        return 1;
    }
    if (r->type == RC_T_ERR) {
        fprintf(stderr, "ringcast %s: %s: %.*s\n", cmd, rc_err_name(r->code), (int)r->text.len, r->text.ptr);
        return 1;
    }
    return 0;
}

static int cmd_inbox(const cli_opts *o)
{
    rc_client c;
    if (o->count > 1000) {
        fprintf(stderr, "ringcast inbox: --count takes 1..1000\n");
        return 2;
    }
    if (connect_hello(&c, o) != 0)
        return 1;
    rc_msg q = { .type = RC_T_INBOX, .limit = o->count, .has = o->count ? RC_HAS_LIMIT : 0 }, r;
    int rc = ask(&c, "inbox", &q, RC_T_INBOX, &r);
    for (uint32_t i = 0; rc == 0 && i < r.n_groups; i++)
        print_entry(&r.groups[i], o->json);
    if (rc == 0 && r.more)
        fprintf(stderr, "ringcast inbox: more groups than the reply holds\n");
    rc_client_close(&c);
    return rc;
}

/* Who is online in the group (joining it first: presence is for members). */
static int cmd_presence(const cli_opts *o)
{
    rc_client c;
    if (session(&c, o, true) != 0)
        return 1;
    rc_msg q = { .type = RC_T_PRESENCE, .g = rc_str_c(o->group) }, r;
    int rc = ask(&c, "presence", &q, RC_T_PRESENCE, &r);
    if (rc == 0 && o->json) {
        printf("{\"g\":");
        print_json_str(r.g);
        printf(",\"n\":%llu,\"users\":[", (unsigned long long)r.n);
        for (uint32_t i = 0; i < r.n_users; i++) {
            if (i)
                putchar(',');
            print_json_str(r.users[i]);
        }
        printf("]}\n");
    } else if (rc == 0) {
        printf("%llu online in %.*s\n", (unsigned long long)r.n, (int)r.g.len, r.g.ptr);
        for (uint32_t i = 0; i < r.n_users; i++)
            printf("%.*s\n", (int)r.users[i].len, r.users[i].ptr);
    }
    rc_client_close(&c);
    return rc;
}

static int cmd_read(const cli_opts *o)
{
    rc_client c;
    if (!o->has_seq || !o->group) {
        fprintf(stderr, "ringcast read: --group and --seq are required\n");
        return 2;
    }
    if (connect_hello(&c, o) != 0)
        return 1;
    rc_msg q = { .type = RC_T_READ, .g = rc_str_c(o->group), .seq = o->seq, .has = RC_HAS_SEQ }, r;
    int rc = ask(&c, "read", &q, RC_T_MARKED, &r);
    if (rc == 0)
        printf("marked g=%.*s seq=%llu\n", (int)r.g.len, r.g.ptr, (unsigned long long)r.seq);
    rc_client_close(&c);
    return rc;
}

static int cmd_stats(const cli_opts *o)
{
    if (strstr(o->host, "://")) {
        fprintf(stderr, "ringcast stats: --host must be a host name or address here (the admin port), not %s\n",
                o->host);
        return 2;
    }
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
    char ps[8];
    snprintf(ps, sizeof(ps), "%u", o->admin_port);
    if (getaddrinfo(o->host, ps, &hints, &ai) != 0) {
        fprintf(stderr, "ringcast stats: cannot resolve %s\n", o->host);
        return 1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        fprintf(stderr, "ringcast stats: cannot connect to %s:%u: %s\n", o->host, o->admin_port, strerror(errno));
        freeaddrinfo(ai);
        return 1;
    }
    freeaddrinfo(ai);
    const char req[] = "GET /metrics HTTP/1.1\r\nHost: ringcast\r\nConnection: close\r\n\r\n";
    if (write(fd, req, sizeof(req) - 1) < 0) {
        close(fd);
        return 1;
    }
    char buf[65536];
    bool body = false;
    size_t carry = 0;
    ssize_t n;
    while ((n = read(fd, buf + carry, sizeof(buf) - carry - 1)) > 0) {
        size_t len = carry + (size_t)n;
        buf[len] = '\0';
        if (!body) {
            char *end = strstr(buf, "\r\n\r\n");
            if (!end) {
                carry = len;
                continue;
            }
            body = true;
            fwrite(end + 4, 1, len - (size_t)(end + 4 - buf), stdout);
        } else {
            fwrite(buf, 1, len, stdout);
        }
        carry = 0;
    }
    close(fd);
    return body ? 0 : 1;
}

/* Mints a development token (include/ringcast/token.h) with the first
 * secret of --secret, which may be a whole auth_secret list. */
static int cmd_token(const cli_opts *o)
{
    if (!o->secret || !*o->secret || !o->user) {
        fprintf(stderr, "ringcast token: --secret (or RINGCAST_AUTH_SECRET) and --user are required\n");
        return 2;
    }
    size_t key_len = strcspn(o->secret, ",");
    uint64_t now = rc_clock_wall_ms() / 1000u;
    char tok[RC_MAX_TOKEN + 1], err[256];
    if (rc_token_mint((const uint8_t *)o->secret, key_len, o->user, now, now + o->ttl, o->groups, tok, sizeof(tok),
                      err, sizeof(err)) < 0) {
        fprintf(stderr, "ringcast token: %s\n", err);
        return 2;
    }
    printf("%s\n", tok);
    return 0;
}

int main(int argc, char **argv)
{
    cli_opts o = { 0 };
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (parse_args(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "send") == 0) return cmd_send(&o);
    if (strcmp(argv[1], "tail") == 0) return cmd_tail(&o);
    if (strcmp(argv[1], "chat") == 0) return cmd_chat(&o);
    if (strcmp(argv[1], "stats") == 0) return cmd_stats(&o);
    if (strcmp(argv[1], "token") == 0) return cmd_token(&o);
    if (strcmp(argv[1], "inbox") == 0) return cmd_inbox(&o);
    if (strcmp(argv[1], "read") == 0) return cmd_read(&o);
    if (strcmp(argv[1], "presence") == 0) return cmd_presence(&o);
    fprintf(stderr, "ringcast: unknown command %s\n", argv[1]);
    usage(stderr);
    return 2;
}
