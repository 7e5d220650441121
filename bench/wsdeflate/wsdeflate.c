/*
 * ringcast-wsdeflate: what permessage-deflate (RFC 7692) would cost and
 * save on this server's WebSocket messages (src/ARCHITECTURE.md §3.6).
 *
 * The messages are `msg` frames as the server sends them: the MessagePack
 * map a binary client gets (rc_encode) and the JSON a text client gets
 * (rc_msgpack_to_json), with 100 B, 1 KB and 16 KB bodies of chat-like
 * text, each message different (seq, ts, sender, body). Each case
 * compresses a stream of them as RFC 7692 §7.2.1 says (raw deflate, window
 * 2^15, Z_SYNC_FLUSH, the trailing 00 00 ff ff dropped):
 *
 *   takeover     one deflate stream per connection, kept from message to
 *                message (the default of the extension): the dictionary
 *                helps, but the output depends on what that connection got
 *                before, so a server must compress every delivery anew;
 *   no takeover  the stream reset before each message
 *                (server_no_context_takeover): the output depends on the
 *                message alone, so one compressed frame could be shared by
 *                every reader, as the uncompressed one is today.
 *
 * The peer's side is measured too (inflate, with 00 00 ff ff put back),
 * and every message must come back byte for byte, else the run fails
 * (exit 2). Reported per case: bytes before and after, CPU ns per message
 * each way (the thread's CPU clock, best of --reps), and the zlib memory
 * one connection holds.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "ringcast/json.h"
#include "ringcast/proto.h"

#define WD_MESSAGES 512u       /* distinct messages per case, sent in turn */
#define WD_MIN_SECONDS 0.25    /* each timed pass runs at least this much CPU time */
#define WD_DEFAULT_REPS 3u
#define WD_MAX_REPS 50u
#define WD_WINDOW_BITS 15      /* RFC 7692's default (and largest) window */
#define WD_MEM_LEVEL 8         /* zlib's default */
#define WD_TAIL 4u             /* 00 00 ff ff, dropped from each message (RFC 7692 §7.2.1) */
#define WD_USERS 8u

static const size_t body_sizes[] = { 100, 1024, 16384 };
static const int levels[] = { 1, 6 };

/* The thread's CPU clock, not the wall's: what a message costs the
 * server's CPU, whatever else the box runs meanwhile. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- the messages ---- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static const char *const words[] = {
    "the", "a", "and", "to", "of", "I", "you", "it", "is", "that", "in", "we", "for", "on", "this", "with",
    "meeting", "deploy", "tomorrow", "lunch", "thanks", "ok", "sure", "build", "broken", "again", "can",
    "someone", "look", "at", "PR", "merged", "review", "please", "ship", "it", "lgtm", "coffee", "later",
    "what", "about", "the", "release", "notes", "customer", "ticket", "fixed", "haha", "nice", "👍",
    "server", "latency", "dashboard", "alert", "on-call", "weekend", "friday", "standup", "in", "5", "min",
};

/* Chat-like text of exactly n bytes: words, spaces, now and then a sentence end. */
static void chat_text(char *out, size_t n)
{
    size_t len = 0;
    while (len < n) {
        const char *w = words[next_rand() % (sizeof(words) / sizeof(words[0]))];
        size_t wl = strlen(w);
        if (len + wl + 1 > n)
            break;
        memcpy(out + len, w, wl);
        len += wl;
        out[len++] = next_rand() % 9 == 0 ? '.' : ' ';
    }
    while (len < n)
        out[len++] = '!';
}

/* One message's frame payloads, MessagePack and JSON. */
typedef struct wd_msg {
    rc_buf pack, json;
} wd_msg;

static int make_messages(wd_msg *msgs, size_t body_len)
{
    char *body = malloc(body_len);
    rc_buf frame;
    rc_buf_init(&frame);
    if (!body)
        return -1;
    for (uint32_t i = 0; i < WD_MESSAGES; i++) {
        char from[16], mid[24];
        snprintf(from, sizeof(from), "user-%u", (unsigned)(next_rand() % WD_USERS));
        snprintf(mid, sizeof(mid), "c-%u-%u", (unsigned)(next_rand() % 1000), i);
        chat_text(body, body_len);
        rc_msg m = { .type = RC_T_MSG, .g = rc_str_c("room-42"), .seq = 100000 + i,
                     .ts = 1796135400000ull + i * 37u, .from = rc_str_c(from),
                     .body = { body, (uint32_t)body_len }, .body_is_str = true,
                     .has = RC_HAS_MID, .mid = rc_str_c(mid) };
        frame.len = 0;
        rc_buf_init(&msgs[i].pack);
        rc_buf_init(&msgs[i].json);
        if (rc_encode(&frame, &m) != 0 ||
            rc_buf_append(&msgs[i].pack, frame.data + RC_FRAME_HEADER, frame.len - RC_FRAME_HEADER) != 0 ||
            rc_msgpack_to_json(msgs[i].pack.data, msgs[i].pack.len, &msgs[i].json) != 0) {
            free(body);
            rc_buf_free(&frame);
            return -1;
        }
    }
    free(body);
    rc_buf_free(&frame);
    return 0;
}

/* ---- zlib, with its memory counted ---- */

typedef struct counted {
    size_t bytes;
} counted;

static voidpf count_alloc(voidpf opaque, uInt items, uInt size)
{
    counted *c = opaque;
    size_t n = (size_t)items * size;
    size_t *p = malloc(n + sizeof(size_t));
    if (!p)
        return Z_NULL;
    *p = n;
    c->bytes += n;
    return p + 1;
}

static void count_free(voidpf opaque, voidpf ptr)
{
    counted *c = opaque;
    size_t *p = (size_t *)ptr - 1;
    c->bytes -= *p;
    free(p);
}

/* Result of one case. */
typedef struct wd_case {
    size_t body;
    bool json, takeover;
    int level;
    double in_bytes, out_bytes;  /* per message, averaged over the messages */
    double deflate_ns, inflate_ns; /* per message, best pass */
    size_t deflate_mem, inflate_mem; /* zlib's allocations for one connection's stream */
    bool ok;
} wd_case;

/* Compresses message p as one RFC 7692 message into out (tail dropped). */
static size_t deflate_one(z_stream *z, const rc_buf *p, uint8_t *out, size_t cap, bool takeover)
{
    if (!takeover)
        deflateReset(z);
    z->next_in = p->data;
    z->avail_in = (uInt)p->len;
    z->next_out = out;
    z->avail_out = (uInt)cap;
    if (deflate(z, Z_SYNC_FLUSH) != Z_OK || z->avail_in != 0)
        return 0;
    size_t n = cap - z->avail_out;
    return n >= WD_TAIL ? n - WD_TAIL : 0;
}

/* Inflates one compressed message (tail put back); its length, or 0. */
static size_t inflate_one(z_stream *z, uint8_t *in, size_t n, uint8_t *out, size_t cap, bool takeover)
{
    if (!takeover)
        inflateReset(z);
    memcpy(in + n, "\x00\x00\xff\xff", WD_TAIL);
    z->next_in = in;
    z->avail_in = (uInt)(n + WD_TAIL);
    z->next_out = out;
    z->avail_out = (uInt)cap;
    int r = inflate(z, Z_SYNC_FLUSH);
    if ((r != Z_OK && r != Z_BUF_ERROR) || z->avail_in != 0)
        return 0;
    return cap - z->avail_out;
}

static void run_case(wd_case *c, wd_msg *msgs, unsigned reps)
{
    size_t cap = 0;
    for (uint32_t i = 0; i < WD_MESSAGES; i++) {
        const rc_buf *p = c->json ? &msgs[i].json : &msgs[i].pack;
        if (p->len > cap)
            cap = p->len;
    }
    cap = cap + cap / 8 + 256 + WD_TAIL; /* deflate's worst case growth is far below this */
    uint8_t **comp = calloc(WD_MESSAGES, sizeof(*comp));
    size_t *clen = calloc(WD_MESSAGES, sizeof(*clen));
    uint8_t *plain = malloc(cap);
    c->ok = comp && clen && plain;
    for (uint32_t i = 0; c->ok && i < WD_MESSAGES; i++)
        c->ok = (comp[i] = malloc(cap)) != NULL;
    c->deflate_ns = c->inflate_ns = 1e300;
    for (unsigned rep = 0; c->ok && rep < reps; rep++) {
        counted dm = { 0 }, im = { 0 };
        z_stream d = { .zalloc = count_alloc, .zfree = count_free, .opaque = &dm };
        z_stream f = { .zalloc = count_alloc, .zfree = count_free, .opaque = &im };
        if (deflateInit2(&d, c->level, Z_DEFLATED, -WD_WINDOW_BITS, WD_MEM_LEVEL, Z_DEFAULT_STRATEGY) != Z_OK ||
            inflateInit2(&f, -WD_WINDOW_BITS) != Z_OK) {
            c->ok = false;
            break;
        }
        /* one pass compresses every message once (kept for the check) ... */
        double in = 0, out = 0, t0 = now_s();
        for (uint32_t i = 0; i < WD_MESSAGES; i++) {
            const rc_buf *p = c->json ? &msgs[i].json : &msgs[i].pack;
            clen[i] = deflate_one(&d, p, comp[i], cap, c->takeover);
            c->ok &= clen[i] > 0;
            in += (double)p->len;
            out += (double)clen[i];
        }
        double first = now_s() - t0;
        /* ... then the same stream goes on over the messages again until
         * WD_MIN_SECONDS, for the timing */
        uint64_t n = WD_MESSAGES;
        double spent = first;
        uint8_t *scratch = malloc(cap);
        while (c->ok && scratch && spent < WD_MIN_SECONDS) {
            t0 = now_s();
            for (uint32_t i = 0; i < WD_MESSAGES; i++)
                deflate_one(&d, c->json ? &msgs[i].json : &msgs[i].pack, scratch, cap, c->takeover);
            spent += now_s() - t0;
            n += WD_MESSAGES;
        }
        free(scratch);
        if (spent / (double)n * 1e9 < c->deflate_ns)
            c->deflate_ns = spent / (double)n * 1e9;
        c->in_bytes = in / WD_MESSAGES;
        c->out_bytes = out / WD_MESSAGES;
        c->deflate_mem = dm.bytes;
        /* the peer: inflates the first pass in order (the stream needs it),
         * checking each message; the timing repeats that pass */
        n = 0;
        spent = 0;
        do {
            if (n)
                inflateReset(&f);
            t0 = now_s();
            for (uint32_t i = 0; c->ok && i < WD_MESSAGES; i++) {
                const rc_buf *p = c->json ? &msgs[i].json : &msgs[i].pack;
                size_t got = inflate_one(&f, comp[i], clen[i], plain, cap, c->takeover);
                if (n == 0)
                    c->ok &= got == p->len && memcmp(plain, p->data, p->len) == 0;
            }
            spent += now_s() - t0;
            n += WD_MESSAGES;
        } while (c->ok && spent < WD_MIN_SECONDS);
        if (spent / (double)n * 1e9 < c->inflate_ns)
            c->inflate_ns = spent / (double)n * 1e9;
        c->inflate_mem = im.bytes;
        deflateEnd(&d);
        inflateEnd(&f);
    }
    for (uint32_t i = 0; comp && i < WD_MESSAGES; i++)
        free(comp[i]);
    free(comp);
    free(clen);
    free(plain);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ringcast-wsdeflate [--reps N] [--quick]\n"
            "permessage-deflate (RFC 7692) on ringcast's msg frames: bytes saved and ns per message\n"
            "of CPU to deflate (server) and inflate (client), with and without context takeover, zlib\n"
            "levels 1 and 6, window 2^15; Markdown on stdout. Exit 2 when a message does not\n"
            "come back intact. --reps N: timed passes per case, best kept (default %u); --quick: 1.\n",
            WD_DEFAULT_REPS);
}

int main(int argc, char **argv)
{
    unsigned reps = WD_DEFAULT_REPS;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            reps = 1;
        } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            reps = (unsigned)strtoul(argv[++i], NULL, 10);
            if (reps < 1 || reps > WD_MAX_REPS) {
                fprintf(stderr, "ringcast-wsdeflate: --reps is 1..%u\n", WD_MAX_REPS);
                return 1;
            }
        } else {
            usage(strcmp(argv[i], "--help") == 0 ? stdout : stderr);
            return strcmp(argv[i], "--help") == 0 ? 0 : 1;
        }
    }
    printf("zlib %s, window 2^%d, memLevel %d, %u distinct messages per case, best of %u\n\n", zlibVersion(),
           WD_WINDOW_BITS, WD_MEM_LEVEL, WD_MESSAGES, reps);
    printf("| body | form | context | level | frame B | deflated B | saved | deflate CPU ns/msg | inflate CPU ns/msg | "
           "deflate KiB/conn | inflate KiB/conn | check |\n");
    printf("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    bool all_ok = true;
    wd_msg *msgs = calloc(WD_MESSAGES, sizeof(*msgs));
    if (!msgs)
        return 1;
    for (size_t s = 0; s < sizeof(body_sizes) / sizeof(body_sizes[0]); s++) {
        if (make_messages(msgs, body_sizes[s]) != 0) {
            fprintf(stderr, "ringcast-wsdeflate: cannot build the messages\n");
            return 1;
        }
        for (int form = 0; form < 2; form++)
            for (int take = 1; take >= 0; take--)
                for (size_t l = 0; l < sizeof(levels) / sizeof(levels[0]); l++) {
                    wd_case c = { .body = body_sizes[s], .json = form == 1, .takeover = take == 1,
                                  .level = levels[l] };
                    fprintf(stderr, "body %zu %s %s level %d\n", c.body, c.json ? "json" : "msgpack",
                            c.takeover ? "takeover" : "no-takeover", c.level);
                    run_case(&c, msgs, reps);
                    all_ok &= c.ok;
                    printf("| %zu | %s | %s | %d | %.0f | %.0f | %.0f %% | %.0f | %.0f | %.1f | %.1f | %s |\n",
                           c.body, c.json ? "JSON" : "MessagePack", c.takeover ? "takeover" : "no takeover",
                           c.level, c.in_bytes, c.out_bytes, 100.0 * (1.0 - c.out_bytes / c.in_bytes),
                           c.deflate_ns, c.inflate_ns, (double)c.deflate_mem / 1024.0,
                           (double)c.inflate_mem / 1024.0, c.ok ? "ok" : "FAIL");
                }
        for (uint32_t i = 0; i < WD_MESSAGES; i++) {
            rc_buf_free(&msgs[i].pack);
            rc_buf_free(&msgs[i].json);
        }
    }
    free(msgs);
    return all_ok ? 0 : 2;
}
