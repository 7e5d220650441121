/*
 * NATS JetStream driver: the NATS client text protocol (nats_wire.h) and the
 * JetStream API over request/reply subjects.
 *
 * One stream, RCB_<P> (P: the workload's group prefix), file storage,
 * captures every group subject P.<k>; like ringcast's history_max (1000 by
 * default) it keeps the last JS_HISTORY_PER_GROUP messages of each group
 * (max_msgs_per_subject, discard old).
 *
 * Publishers: CONNECT (headers on, so a publish nobody stores is answered
 * with a 503 status instead of silence), SUB _R.p<j>.> for replies, then
 * $JS.API.STREAM.CREATE (the same config from every publisher: creating an
 * existing stream with an identical config succeeds), and once it is
 * answered one push consumer per group the publisher owns, at most
 * JS_SETUP_INFLIGHT requests in flight: filter P.<k>, deliver subject
 * _D.<run>.<k>, deliver_policy new, ack_policy none, state in memory (like
 * ringcast, which keeps no reader position on disk: a reader resumes with
 * `join since`). <run> is the generator's pid, so a run never receives what
 * an earlier run's consumers still held; the server deletes a consumer
 * JS_INACTIVE_S after its readers are gone. Setup is confirmed by the
 * stream's reply and one reply per consumer. A publish is PUB P.<k>
 * _R.p<j>.a <n>, and the stream's ack {"stream":..,"seq":..} comes after the
 * message is in the file store (bench/README.md, Durable peers).
 *
 * Subscribers: SUB _D.<run>.<k> for each of their groups, then PING. The
 * group's consumer pushes every stored message to its deliver subject and
 * core NATS fans it out to the members, so JetStream stores and dispatches
 * a message once per group, as ringcast does. A delivery arrives as MSG
 * with the message's own subject P.<k>.
 */
#define _GNU_SOURCE /* memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "driver.h"
#include "nats_wire.h"

#define JS_HISTORY_PER_GROUP 1000  /* messages kept per group (ringcast's history_max default) */
#define JS_SETUP_INFLIGHT 32u      /* consumer creations in flight per connection */
#define JS_CREATE_TRIES 5u         /* stream creates a publisher sends while another's is still being made */
#define JS_SUFFIX_MAX 48u
#define JS_REQUEST_MAX 1024u       /* one API request, control line and JSON */
#define JS_INACTIVE_S 15           /* a consumer without readers is deleted after this */

static bench_params g_params;
static bench_table g_pub_hdr;      /* "PUB P.<k> " per group */
static char g_prefix[BENCH_PREFIX_MAX + 1];     /* "P." */
static size_t g_prefix_len;
static char g_dprefix[32];         /* "_D.<run>." */

/* A publisher's own state. */
typedef struct js_conn {
    uint32_t *groups;      /* the groups it owns */
    uint32_t n;
    uint32_t next;         /* consumers requested so far */
    bool stream_ok;
    uint32_t create_tries; /* stream creates answered "subjects overlap" so far */
    char suffix[JS_SUFFIX_MAX]; /* "_R.p<j>.a <n>\r\n" after each "PUB P.<k> " */
    size_t suffix_len;
} js_conn;

static int emit_pub_hdr(rc_buf *out, uint32_t g, const void *arg)
{
    (void)arg;
    return bench_printf(out, "PUB %s%u ", g_prefix, g);
}

static int js_init(const bench_params *p)
{
    g_params = *p;
    snprintf(g_prefix, sizeof g_prefix, "%s.", p->prefix);
    g_prefix_len = strlen(g_prefix);
    snprintf(g_dprefix, sizeof g_dprefix, "_D.%ld.", (long)getpid());
    return bench_table_build(&g_pub_hdr, p->groups, emit_pub_hdr, NULL);
}

static void js_fini(void)
{
    bench_table_free(&g_pub_hdr);
}

/* Queues a request: PUB subject _R.p<j>.<tag> <len>\r\n<json>\r\n. */
static int request(bench_conn *c, const char *subject, char tag, const char *json)
{
    char line[JS_REQUEST_MAX];
    int n = snprintf(line, sizeof line, "PUB %s _R.p%u.%c %zu\r\n%s\r\n", subject, c->index, tag,
                     strlen(json), json);
    if (n < 0 || (size_t)n >= sizeof line)
        return -1;
    return bench_reply(c, line, (size_t)n);
}

static int create_stream(bench_conn *c)
{
    char subject[64], json[512];
    snprintf(subject, sizeof subject, "$JS.API.STREAM.CREATE.RCB_%s", g_params.prefix);
    snprintf(json, sizeof json,
             "{\"name\":\"RCB_%s\",\"subjects\":[\"%s>\"],\"retention\":\"limits\","
             "\"storage\":\"file\",\"discard\":\"old\",\"max_msgs_per_subject\":%d,"
             "\"num_replicas\":1}",
             g_params.prefix, g_prefix, JS_HISTORY_PER_GROUP);
    return request(c, subject, 's', json);
}

static int create_consumer(bench_conn *c, uint32_t g)
{
    char subject[96], json[512];
    snprintf(subject, sizeof subject, "$JS.API.CONSUMER.CREATE.RCB_%s", g_params.prefix);
    snprintf(json, sizeof json,
             "{\"stream_name\":\"RCB_%s\",\"config\":{\"deliver_subject\":\"%s%u\","
             "\"filter_subject\":\"%s%u\",\"deliver_policy\":\"new\",\"ack_policy\":\"none\","
             "\"replay_policy\":\"instant\",\"mem_storage\":true,\"inactive_threshold\":%lld}}",
             g_params.prefix, g_dprefix, g, g_prefix, g, JS_INACTIVE_S * 1000000000LL);
    return request(c, subject, 'c', json);
}

/* Queues consumer creations up to JS_SETUP_INFLIGHT unanswered. */
static int more_consumers(bench_conn *c, js_conn *s)
{
    uint32_t answered = s->n + 1 - c->pending; /* the stream's reply is one of them */
    while (s->next < s->n && s->next - (answered - 1) < JS_SETUP_INFLIGHT)
        if (create_consumer(c, s->groups[s->next++]) < 0)
            return -1;
    return 0;
}

static int js_setup(bench_conn *c, const uint32_t *groups, uint32_t n)
{
    if (c->role == BENCH_SUB) {
        if (bench_printf(&c->out, "CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"s%u\"}\r\n",
                         c->index) < 0)
            return -1;
        for (uint32_t i = 0; i < n; i++)
            if (bench_printf(&c->out, "SUB %s%u %u\r\n", g_dprefix, groups[i], i + 1) < 0)
                return -1;
        if (rc_buf_append(&c->out, "PING\r\n", 6) < 0)
            return -1;
        c->pending = 1; /* the PONG */
        return 0;
    }
    js_conn *s = calloc(1, sizeof *s);
    if (!s)
        return -1;
    c->drv_data = s;
    s->groups = malloc(sizeof *s->groups * (n ? n : 1));
    if (!s->groups)
        return -1;
    memcpy(s->groups, groups, sizeof *groups * n);
    s->n = n;
    int len = snprintf(s->suffix, sizeof s->suffix, "_R.p%u.a %u\r\n", c->index, g_params.body_len);
    if (len < 0 || (size_t)len >= sizeof s->suffix)
        return -1;
    s->suffix_len = (size_t)len;
    if (bench_printf(&c->out, "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,"
                              "\"no_responders\":true,\"name\":\"p%u\"}\r\nSUB _R.p%u.> 1\r\n",
                     c->index, c->index) < 0 || create_stream(c) < 0)
        return -1;
    c->pending = 1 + n; /* the stream, then each consumer */
    return 0;
}

static void js_conn_free(bench_conn *c)
{
    js_conn *s = c->drv_data;
    if (s)
        free(s->groups);
    free(s);
    c->drv_data = NULL;
}

static int js_publish(bench_conn *c, uint32_t g, uint64_t seq, uint64_t ts_ns)
{
    const js_conn *s = c->drv_data;
    size_t hdr = g_pub_hdr.off[g + 1] - g_pub_hdr.off[g], body = g_params.body_len;
    if (rc_buf_reserve(&c->out, hdr + s->suffix_len + body + 2) < 0)
        return -1;
    uint8_t *p = c->out.data + c->out.len;
    memcpy(p, g_pub_hdr.bytes.data + g_pub_hdr.off[g], hdr);
    memcpy(p + hdr, s->suffix, s->suffix_len);
    p += hdr + s->suffix_len;
    memcpy(p, g_params.body, body);
    bench_body_stamp(p, seq, ts_ns);
    memcpy(p + body, "\r\n", 2);
    c->out.len += hdr + s->suffix_len + body + 2;
    return 0;
}

/* The tag of a reply subject _R.p<j>.<tag>, or 0. */
static char reply_tag(const bench_conn *c, const nw_item *it)
{
    char want[32];
    int n = snprintf(want, sizeof want, "_R.p%u.", c->index);
    if (n < 0 || it->subject_len != (size_t)n + 1 || memcmp(it->subject, want, (size_t)n) != 0)
        return 0;
    return (char)it->subject[n];
}

/* A JetStream API reply (or a status) to a publisher. */
static int on_reply(bench_conn *c, const nw_item *it)
{
    js_conn *s = c->drv_data;
    char tag = reply_tag(c, it);
    const uint8_t *desc = NULL;
    size_t desc_len = 0;
    bool failed;
    if (it->kind == NW_HMSG) {
        int st = nw_status(it->hdr, it->hdr_len);
        if (st < 0)
            return -1;
        failed = true; /* a status in place of a reply: 503 no responders, 408, ... */
        desc = it->hdr;
        desc_len = it->hdr_len >= 2 ? it->hdr_len - 2 : 0;
        while (desc_len && (desc[desc_len - 1] == '\r' || desc[desc_len - 1] == '\n'))
            desc_len--;
    } else {
        failed = nw_js_error(it->payload, it->payload_len, &desc, &desc_len);
    }
    /* Publishers create the stream at once; nats-server 2.9 answers one
     * whose identical twin is still being made "subjects overlap with an
     * existing stream", and the same create succeeds once it is made. */
    static const char overlap[] = "subjects overlap";
    if (failed && tag == 's' && s->create_tries < JS_CREATE_TRIES && desc &&
        memmem(desc, desc_len, overlap, sizeof(overlap) - 1)) {
        s->create_tries++;
        return create_stream(c);
    }
    if (failed) {
        char text[256];
        int n = snprintf(text, sizeof text, "JetStream %s: %.*s",
                         tag == 'a' ? "publish" : tag == 's' ? "stream create" : "consumer create",
                         (int)(desc_len < 200 ? desc_len : 200), desc ? (const char *)desc : "?");
        bench_on_server_error(c, text, n > 0 ? (size_t)n : 0);
        return 0;
    }
    switch (tag) {
    case 'a':
        if (!nw_js_puback(it->payload, it->payload_len))
            return -1;
        bench_on_ack(c, BENCH_NO_GROUP, 0, -1);
        return 0;
    case 's':
        if (s->stream_ok)
            return -1;
        s->stream_ok = true;
        bench_on_confirm(c, BENCH_NO_GROUP, 0);
        return more_consumers(c, s);
    case 'c':
        if (!s->stream_ok || c->pending == 0)
            return -1;
        bench_on_confirm(c, BENCH_NO_GROUP, 0);
        return more_consumers(c, s);
    default:
        return -1;
    }
}

static int on_delivery(bench_conn *c, const nw_item *it)
{
    if (it->kind == NW_HMSG) {
        /* 100: an idle heartbeat or flow control, which these consumers do
         * not ask for; anything else is not ours */
        return nw_status(it->hdr, it->hdr_len) == 100 && it->payload_len == 0 ? 0 : -1;
    }
    uint64_t seq;
    uint32_t g = bench_parse_group(it->subject, it->subject_len, g_prefix, g_prefix_len);
    if (g == BENCH_NO_GROUP || it->payload_len < BENCH_SEQ_HEX || !bench_get_hex16(it->payload, &seq))
        return -1;
    bench_on_delivery(c, g, seq, it->payload, it->payload_len);
    return 0;
}

static ssize_t js_parse(bench_conn *c, const uint8_t *in, size_t len)
{
    size_t off = 0;
    while (off < len) {
        nw_item it;
        ssize_t used = nw_next(in + off, len - off, &it);
        if (used < 0)
            return -1;
        if (used == 0)
            break;
        int rc = 0;
        switch (it.kind) {
        case NW_MSG:
        case NW_HMSG:
            rc = c->role == BENCH_PUB ? on_reply(c, &it) : on_delivery(c, &it);
            break;
        case NW_PING:
            rc = bench_reply(c, "PONG\r\n", 6);
            break;
        case NW_PONG:
            bench_on_confirm(c, BENCH_NO_GROUP, 0);
            break;
        case NW_ERR:
            bench_on_server_error(c, (const char *)it.line, it.line_len);
            break;
        case NW_OK:
        case NW_INFO:
            break;
        }
        if (rc < 0)
            return -1;
        off += (size_t)used;
    }
    return (ssize_t)off;
}

const bench_driver bench_drv_jetstream = {
    .name = "jetstream",
    .default_port = 4222,
    .acks_carry_seq = false,
    .has_acks = true,
    .init = js_init,
    .fini = js_fini,
    .setup = js_setup,
    .publish = js_publish,
    .parse = js_parse,
    .conn_free = js_conn_free,
};
