/*
 * ringcast-sol: a deliberately minimal "speed-of-light" fan-out server that
 * speaks just enough of the ringcast TCP protocol (proto/PROTOCOL.md) for
 * ringcast-bench. It bounds what a ringcast server could reach on this
 * machine with one thread and no storage, metrics, auth or validation.
 *
 * One thread, one level-triggered epoll loop, non-blocking sockets. Each
 * iteration: read once from every readable connection, handle its complete
 * frames (a tiny unchecked MessagePack scanner that only looks for t, g,
 * user, body, mid, rid and never reads outside the frame), append replies to
 * output buffers, then write each dirty connection once (batched writes). A
 * `msg` is encoded once and its bytes appended to every member's buffer.
 *
 * Handles hello -> welcome, join -> joined{g, seq}, send -> ack{g, seq, ts}
 * plus msg{g, seq, from, ts, body, mid?} to every member connection (the
 * sender too when it is a member, like ringcastd), leave -> left, ping ->
 * pong; anything else -> err E_UNKNOWN_TYPE. Not checked: membership of the
 * sender, `since` (no history), field types beyond what the scanner needs.
 *
 * Bounds: frames 1..65536 bytes (else the connection is closed), g <= 128
 * bytes, user <= 64, input buffer 256 KiB, output 64 MiB pending (the
 * connection is closed past that).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_FRAME 65536u
#define IN_CAP (256u * 1024u)
#define OUT_MAX ((size_t)64 << 20)
#define MAX_G 128u
#define MAX_USER 64u
#define MAX_DEPTH 8
#define MAX_EVENTS 1024

/* ---- connections and groups ---- */

struct group;

typedef struct conn {
    int fd;
    bool dead, dirty, wout;
    bool no_echo;               /* hello echo: false: its own messages are not sent back */
    uint8_t user_len;           /* 0 = no hello yet */
    char user[MAX_USER];
    uint64_t sid;
    uint8_t *in;                /* in[0..in_len): received, not yet handled */
    size_t in_len;
    uint8_t *out;               /* out[out_off..out_len): not yet written */
    size_t out_off, out_len, out_cap;
    struct group **groups;      /* groups joined, for leave/close */
    uint32_t ngroups, gcap;
    struct conn *next_dirty, *next_dead;    /* links of the two lists */
} conn;

typedef struct group {
    uint64_t seq;
    uint32_t hash, len;
    conn **mem;
    uint32_t n, cap;
    char name[];
} group;

static group **g_slots;         /* open addressing, linear probing */
static uint32_t g_mask, g_count;
static conn *dirty_list, *dead_list;
static uint64_t next_sid = 1, now_ms;
static int ep;
static uint8_t msgbuf[4 + MAX_FRAME + 1024];  /* one msg frame, encoded once */

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p) {
        fprintf(stderr, "ringcast-sol: out of memory\n");
        exit(1);
    }
    return p;
}

static uint32_t hash(const uint8_t *s, uint32_t n)
{
    uint32_t h = 2166136261u;
    for (uint32_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 16777619u;
    return h;
}

static group *group_get(const uint8_t *name, uint32_t len)
{
    uint32_t h = hash(name, len), i = h & g_mask;
    for (group *g; (g = g_slots[i]); i = (i + 1) & g_mask)
        if (g->hash == h && g->len == len && memcmp(g->name, name, len) == 0)
            return g;
    group *g = xrealloc(NULL, sizeof *g + len);
    memset(g, 0, sizeof *g);
    g->hash = h;
    g->len = len;
    memcpy(g->name, name, len);
    g_slots[i] = g;
    if (++g_count * 2 > g_mask) {           /* grow past 50 % load */
        uint32_t mask = g_mask * 2 + 1;
        group **s = xrealloc(NULL, (size_t)(mask + 1) * sizeof *s);
        memset(s, 0, (size_t)(mask + 1) * sizeof *s);
        for (uint32_t j = 0; j <= g_mask; j++) {
            if (!g_slots[j])
                continue;
            uint32_t k = g_slots[j]->hash & mask;
            while (s[k])
                k = (k + 1) & mask;
            s[k] = g_slots[j];
        }
        free(g_slots);
        g_slots = s;
        g_mask = mask;
    }
    return g;
}

static bool is_member(const conn *c, const group *g)
{
    if (g->n < c->ngroups) {
        for (uint32_t i = 0; i < g->n; i++)
            if (g->mem[i] == c)
                return true;
    } else {
        for (uint32_t i = 0; i < c->ngroups; i++)
            if (c->groups[i] == g)
                return true;
    }
    return false;
}

static void member_add(conn *c, group *g)
{
    if (g->n == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 4;
        g->mem = xrealloc(g->mem, g->cap * sizeof *g->mem);
    }
    g->mem[g->n++] = c;
    if (c->ngroups == c->gcap) {
        c->gcap = c->gcap ? c->gcap * 2 : 8;
        c->groups = xrealloc(c->groups, c->gcap * sizeof *c->groups);
    }
    c->groups[c->ngroups++] = g;
}

static void member_del(conn *c, group *g)
{
    for (uint32_t i = 0; i < g->n; i++)
        if (g->mem[i] == c) {
            g->mem[i] = g->mem[--g->n];
            break;
        }
}

/* ---- output ---- */

static void kill_conn(conn *c)
{
    if (c->dead)
        return;
    c->dead = true;
    c->next_dead = dead_list;        /* freed at the end of the loop iteration */
    dead_list = c;
}

static void out_put(conn *c, const uint8_t *p, size_t n)
{
    if (c->dead)
        return;
    size_t pending = c->out_len - c->out_off;
    if (pending + n > OUT_MAX) {
        kill_conn(c);           /* slow consumer */
        return;
    }
    if (c->out_len + n > c->out_cap) {
        if (c->out_off) {       /* compact first */
            memmove(c->out, c->out + c->out_off, pending);
            c->out_off = 0;
            c->out_len = pending;
        }
        if (c->out_len + n > c->out_cap) {
            size_t cap = c->out_cap ? c->out_cap : 64 * 1024;
            while (cap < c->out_len + n)
                cap *= 2;
            if (cap > OUT_MAX)      /* out_len + n <= OUT_MAX here */
                cap = OUT_MAX;
            c->out = xrealloc(c->out, cap);
            c->out_cap = cap;
        }
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    if (!c->dirty) {
        c->dirty = true;
        c->next_dirty = dirty_list;
        dirty_list = c;
    }
}

static void set_wout(conn *c, bool on)
{
    if (c->wout == on)
        return;
    c->wout = on;
    struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c };
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* One write per dirty connection. */
static void flush_all(void)
{
    while (dirty_list) {
        conn *c = dirty_list;
        dirty_list = c->next_dirty;
        c->dirty = false;
        if (c->dead)
            continue;
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                set_wout(c, true);
            else
                kill_conn(c);
            continue;
        }
        c->out_off += (size_t)w;
        if (c->out_off == c->out_len) {
            c->out_off = c->out_len = 0;
            set_wout(c, false);
        } else {
            set_wout(c, true);
        }
    }
}

static void free_dead(void)
{
    while (dead_list) {
        conn *c = dead_list;
        dead_list = c->next_dead;
        if (c->out_len > c->out_off)    /* best effort: a final err */
            (void)!send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                        MSG_NOSIGNAL | MSG_DONTWAIT);
        for (uint32_t i = 0; i < c->ngroups; i++)
            member_del(c, c->groups[i]);
        close(c->fd);           /* also removes it from the epoll set */
        free(c->groups);
        free(c->in);
        free(c->out);
        free(c);
    }
}

/* ---- MessagePack: encoding ---- */

static uint8_t *put_be(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = n; i-- > 0; v >>= 8)
        p[i] = (uint8_t)v;
    return p + n;
}

static uint8_t *put_str(uint8_t *p, const void *s, uint32_t n)
{
    if (n < 32)
        *p++ = (uint8_t)(0xa0 | n);
    else if (n < 256)
        *p++ = 0xd9, *p++ = (uint8_t)n;
    else if (n < 65536)
        *p++ = 0xda, p = put_be(p, n, 2);
    else
        *p++ = 0xdb, p = put_be(p, n, 4);
    memcpy(p, s, n);
    return p + n;
}

#define PUT_KEY(p, k) put_str(p, k, sizeof k - 1)

static uint8_t *put_uint(uint8_t *p, uint64_t v)
{
    if (v < 128)
        *p++ = (uint8_t)v;
    else if (v < 256)
        *p++ = 0xcc, *p++ = (uint8_t)v;
    else if (v < 65536)
        *p++ = 0xcd, p = put_be(p, v, 2);
    else if (v <= UINT32_MAX)
        *p++ = 0xce, p = put_be(p, v, 4);
    else
        *p++ = 0xcf, p = put_be(p, v, 8);
    return p;
}

/* Frames buf[4..end) and queues it on c. */
static void reply(conn *c, uint8_t *buf, uint8_t *end)
{
    put_be(buf, (uint64_t)(end - buf - 4), 4);
    out_put(c, buf, (size_t)(end - buf));
}

/* ---- MessagePack: the scanner ---- */

typedef struct span {
    const uint8_t *p;
    uint32_t n;
} span;

typedef struct req {
    span t, g, user, body, mid; /* body: the whole raw value (header included) */
    uint64_t rid;
    bool has_rid;
    bool echo_false;            /* echo: false (hello) */
} req;

/* Reads n big-endian bytes; false if the frame ends first. */
static bool rd_be(const uint8_t **p, const uint8_t *end, unsigned n, uint64_t *v)
{
    if ((size_t)(end - *p) < n)
        return false;
    *v = 0;
    for (unsigned i = 0; i < n; i++)
        *v = (*v << 8) | (*p)[i];
    *p += n;
    return true;
}

/*
 * Reads the header of one value: afterwards *n payload bytes follow, then
 * *items nested values.
 */
static bool rd_head(const uint8_t **p, const uint8_t *end, uint64_t *n, uint64_t *items)
{
    if (*p >= end)
        return false;
    uint8_t b = *(*p)++;
    unsigned lb = 0, per = 0;
    uint64_t extra = 0;
    *n = *items = 0;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return true;
    if ((b & 0xe0) == 0xa0) {
        *n = b & 0x1f;
        return true;
    }
    if ((b & 0xe0) == 0x80) {   /* fixmap 0x80-0x8f, fixarray 0x90-0x9f */
        *items = (uint64_t)(b & 0x0f) * (b < 0x90 ? 2 : 1);
        return true;
    }
    switch (b) {
    case 0xcc: case 0xd0: *n = 1; return true;
    case 0xcd: case 0xd1: case 0xd4: *n = 2; return true;
    case 0xd5: *n = 3; return true;
    case 0xca: case 0xce: case 0xd2: *n = 4; return true;
    case 0xd6: *n = 5; return true;
    case 0xcb: case 0xcf: case 0xd3: *n = 8; return true;
    case 0xd7: *n = 9; return true;
    case 0xd8: *n = 17; return true;
    case 0xc4: case 0xd9: lb = 1; break;
    case 0xc5: case 0xda: lb = 2; break;
    case 0xc6: case 0xdb: lb = 4; break;
    case 0xc7: lb = 1; extra = 1; break;
    case 0xc8: lb = 2; extra = 1; break;
    case 0xc9: lb = 4; extra = 1; break;
    case 0xdc: lb = 2; per = 1; break;
    case 0xdd: lb = 4; per = 1; break;
    case 0xde: lb = 2; per = 2; break;
    case 0xdf: lb = 4; per = 2; break;
    default: return false;
    }
    uint64_t len;
    if (!rd_be(p, end, lb, &len))
        return false;
    if (per)
        *items = len * per;
    else
        *n = len + extra;
    return true;
}

/* Skips one value; its payload must fit in the frame. */
static bool skip(const uint8_t **p, const uint8_t *end, int depth)
{
    uint64_t n, items;
    if (depth > MAX_DEPTH || !rd_head(p, end, &n, &items) || (uint64_t)(end - *p) < n)
        return false;
    *p += n;
    for (uint64_t i = 0; i < items; i++)
        if (!skip(p, end, depth + 1))
            return false;
    return true;
}

/* Reads a str or bin value (the type is not checked) into s. */
static bool rd_str(const uint8_t **p, const uint8_t *end, span *s)
{
    uint64_t n, items;
    if (!rd_head(p, end, &n, &items) || items || (uint64_t)(end - *p) < n)
        return false;
    s->p = *p;
    s->n = (uint32_t)n;
    *p += n;
    return true;
}

static bool key_is(span k, const char *name, uint32_t n)
{
    return k.n == n && memcmp(k.p, name, n) == 0;
}

#define KEY(k, lit) key_is(k, lit, sizeof lit - 1)

static bool scan(const uint8_t *p, const uint8_t *end, req *r)
{
    uint64_t n, items;
    memset(r, 0, sizeof *r);
    if (!rd_head(&p, end, &n, &items) || n)     /* a map (or array): n = 0 */
        return false;
    for (uint64_t i = 0; i + 1 < items; i += 2) {
        span k;
        if (!rd_str(&p, end, &k))
            return false;
        const uint8_t *v = p;
        bool ok;
        if (KEY(k, "t"))
            ok = rd_str(&p, end, &r->t);
        else if (KEY(k, "g"))
            ok = rd_str(&p, end, &r->g);
        else if (KEY(k, "user"))
            ok = rd_str(&p, end, &r->user);
        else if (KEY(k, "rid") && p < end && (*p <= 0x7f || (*p >= 0xcc && *p <= 0xcf))) {
            r->has_rid = true;
            r->rid = *p++;
            ok = r->rid <= 0x7f || rd_be(&p, end, 1u << (r->rid - 0xcc), &r->rid);
        } else if (KEY(k, "echo") && p < end && (*p == 0xc2 || *p == 0xc3)) {
            r->echo_false = *p++ == 0xc2;
            ok = true;
        } else if (KEY(k, "body") || KEY(k, "mid")) {
            ok = skip(&p, end, 0);  /* kept raw: copied into msg as it came */
            *(KEY(k, "body") ? &r->body : &r->mid) = (span){ v, (uint32_t)(p - v) };
        } else {
            ok = skip(&p, end, 0);
        }
        if (!ok)
            return false;
    }
    return r->t.p != NULL;
}

/* ---- requests ---- */

/* Starts a reply map of n entries (+ rid) with t = type. */
static uint8_t *begin(uint8_t *buf, const req *r, unsigned n, const char *type)
{
    uint8_t *p = buf + 4;
    *p++ = (uint8_t)(0x80 | (n + r->has_rid));
    p = PUT_KEY(p, "t");
    p = put_str(p, type, (uint32_t)strlen(type));
    if (r->has_rid) {
        p = PUT_KEY(p, "rid");
        p = put_uint(p, r->rid);
    }
    return p;
}

static void send_err(conn *c, const req *r, const char *code, const char *text)
{
    uint8_t buf[512], *p = begin(buf, r, 3, "err");
    p = PUT_KEY(p, "code");
    p = put_str(p, code, (uint32_t)strlen(code));
    p = PUT_KEY(p, "msg");
    p = put_str(p, text, (uint32_t)strlen(text));
    reply(c, buf, p);
}

static void on_send(conn *c, const req *r, group *g)
{
    uint64_t seq = ++g->seq;
    uint8_t buf[512], *p = begin(buf, r, 4, "ack");
    p = PUT_KEY(p, "g");
    p = put_str(p, g->name, g->len);
    p = PUT_KEY(p, "seq");
    p = put_uint(p, seq);
    p = PUT_KEY(p, "ts");
    p = put_uint(p, now_ms);
    reply(c, buf, p);

    p = msgbuf + 4;             /* the body and mid values are copied raw */
    *p++ = (uint8_t)(0x80 | (r->mid.p ? 7 : 6));
    p = PUT_KEY(p, "t");
    p = PUT_KEY(p, "msg");
    p = PUT_KEY(p, "g");
    p = put_str(p, g->name, g->len);
    p = PUT_KEY(p, "seq");
    p = put_uint(p, seq);
    p = PUT_KEY(p, "from");
    p = put_str(p, c->user, c->user_len);
    p = PUT_KEY(p, "ts");
    p = put_uint(p, now_ms);
    p = PUT_KEY(p, "body");
    memcpy(p, r->body.p, r->body.n);
    p += r->body.n;
    if (r->mid.p) {
        p = PUT_KEY(p, "mid");
        memcpy(p, r->mid.p, r->mid.n);
        p += r->mid.n;
    }
    size_t n = (size_t)(p - msgbuf);
    put_be(msgbuf, n - 4, 4);
    for (uint32_t i = 0; i < g->n; i++)
        if (g->mem[i] != c || !c->no_echo)
            out_put(g->mem[i], msgbuf, n);
}

static void handle(conn *c, const uint8_t *p, uint32_t n)
{
    req r;
    if (!scan(p, p + n, &r)) {
        send_err(c, &r, "E_BAD_FRAME", "not a MessagePack map with a t");
        kill_conn(c);
        return;
    }
    bool has_g = r.g.p && r.g.n >= 1 && r.g.n <= MAX_G;
    if (KEY(r.t, "send") && c->user_len && has_g && r.body.p) {
        on_send(c, &r, group_get(r.g.p, r.g.n));
    } else if (KEY(r.t, "hello")) {
        if (!r.user.p || r.user.n < 1 || r.user.n > MAX_USER) {
            send_err(c, &r, "E_BAD_FIELD", "user must be a string of 1..64 bytes");
            return;
        }
        memcpy(c->user, r.user.p, r.user.n);
        c->user_len = (uint8_t)r.user.n;
        c->no_echo = r.echo_false;
        c->sid = next_sid++;
        uint8_t buf[256], *q = begin(buf, &r, 4, "welcome");
        q = PUT_KEY(q, "sid");
        q = put_uint(q, c->sid);
        q = PUT_KEY(q, "srv");
        q = PUT_KEY(q, "ringcast-sol");
        q = PUT_KEY(q, "max_frame");
        q = put_uint(q, MAX_FRAME);
        reply(c, buf, q);
    } else if (KEY(r.t, "ping")) {
        uint8_t buf[64];
        reply(c, buf, begin(buf, &r, 1, "pong"));
    } else if (!KEY(r.t, "join") && !KEY(r.t, "leave") && !KEY(r.t, "send")) {
        send_err(c, &r, "E_UNKNOWN_TYPE", "ringcast-sol knows hello, join, leave, send, ping");
    } else if (!c->user_len) {
        send_err(c, &r, "E_NOT_AUTHENTICATED", "send hello first");
    } else if (!has_g || (KEY(r.t, "send") && !r.body.p)) {
        send_err(c, &r, "E_MISSING_FIELD", "g (1..128 bytes) and, for send, body are required");
    } else {                    /* join or leave */
        group *g = group_get(r.g.p, r.g.n);
        bool join = KEY(r.t, "join");
        if (join && !is_member(c, g)) {
            member_add(c, g);
        } else if (!join) {
            member_del(c, g);
            for (uint32_t i = 0; i < c->ngroups; i++)
                if (c->groups[i] == g) {
                    c->groups[i] = c->groups[--c->ngroups];
                    break;
                }
        }
        uint8_t buf[512], *q = begin(buf, &r, join ? 3 : 2, join ? "joined" : "left");
        q = PUT_KEY(q, "g");
        q = put_str(q, g->name, g->len);
        if (join) {
            q = PUT_KEY(q, "seq");
            q = put_uint(q, g->seq);
        }
        reply(c, buf, q);
    }
}

static void on_readable(conn *c)
{
    ssize_t got = recv(c->fd, c->in + c->in_len, IN_CAP - c->in_len, 0);
    if (got <= 0) {
        if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            kill_conn(c);
        return;
    }
    c->in_len += (size_t)got;
    size_t off = 0;
    while (!c->dead && c->in_len - off >= 4) {
        uint32_t n = (uint32_t)c->in[off] << 24 | (uint32_t)c->in[off + 1] << 16 |
                     (uint32_t)c->in[off + 2] << 8 | c->in[off + 3];
        if (n == 0 || n > MAX_FRAME) {
            req none = { 0 };
            send_err(c, &none, n ? "E_FRAME_TOO_LARGE" : "E_BAD_FRAME", "bad frame length");
            kill_conn(c);
            break;
        }
        if (c->in_len - off - 4 < n)
            break;
        handle(c, c->in + off + 4, n);
        off += 4 + n;
    }
    if (off && !c->dead) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
}

static void on_accept(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;             /* EAGAIN, or EMFILE & co: retried on the next event */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn *c = xrealloc(NULL, sizeof *c);
        memset(c, 0, sizeof *c);
        c->fd = fd;
        c->in = xrealloc(NULL, IN_CAP);
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            free(c->in);
            free(c);
        }
    }
}

static int listen_on(const char *host, const char *port)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV }, *ai;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "ringcast-sol: %s:%s: %s\n", host, port, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
                        bind(fd, a->ai_addr, a->ai_addrlen) < 0 || listen(fd, 4096) < 0)) {
            perror("ringcast-sol: bind/listen");
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    return fd;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: ringcast-sol [--host ADDR (127.0.0.1)] [--port N (7400, 0 = any)]\n"
               "Minimal single-threaded ringcast fan-out server for ringcast-bench.\n");
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *port = "7400";
    static const struct option opts[] = {
        { "host", required_argument, NULL, 'h' },
        { "port", required_argument, NULL, 'p' },
        { "help", no_argument, NULL, 'H' },
        { 0, 0, 0, 0 },
    };
    for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        if (o == 'h')
            host = optarg;
        else if (o == 'p')
            port = optarg;
        else {
            usage(o == 'H' ? stdout : stderr);
            return o == 'H' ? 0 : 1;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 1;
    }

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    int lfd = listen_on(host, port);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (sfd < 0 || lfd < 0 || ep < 0)
        return 1;
    static int lfd_tag, sfd_tag;  /* epoll data for the two special fds */
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &lfd_tag };
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.ptr = &sfd_tag;
    epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);

    g_mask = 1023;
    g_slots = xrealloc(NULL, (g_mask + 1) * sizeof *g_slots);
    memset(g_slots, 0, (g_mask + 1) * sizeof *g_slots);

    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char hbuf[NI_MAXHOST] = "?", pbuf[NI_MAXSERV] = "?";
    if (getsockname(lfd, (struct sockaddr *)&ss, &sl) == 0)
        getnameinfo((struct sockaddr *)&ss, sl, hbuf, sizeof hbuf, pbuf, sizeof pbuf,
                    NI_NUMERICHOST | NI_NUMERICSERV);
    fprintf(stderr, "ringcast-sol: listening on %s port %s\n", hbuf, pbuf);

    static struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
        if (n < 0 && errno != EINTR) {
            perror("ringcast-sol: epoll_wait");
            return 1;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        now_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
        for (int i = 0; i < n; i++) {
            void *tag = evs[i].data.ptr;
            if (tag == &sfd_tag) {
                fprintf(stderr, "ringcast-sol: signal, exiting\n");
                return 0;
            }
            if (tag == &lfd_tag) {
                on_accept(lfd);
                continue;
            }
            conn *c = tag;
            if (c->dead)
                continue;
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                on_readable(c);
            if ((evs[i].events & EPOLLOUT) && !c->dead && !c->dirty) {
                c->dirty = true;
                c->next_dirty = dirty_list;
                dirty_list = c;
            }
        }
        flush_all();
        free_dead();
    }
}
