/*
 * The Server API (api.h, src/ARCHITECTURE.md §3.10): JSON over the admin
 * port, answered from the server's own threads.
 *
 * Requests are read by the protocol's own JSON reader (rc_json_to_msgpack,
 * over cJSON) and checked by the codec, so a name is valid here exactly when
 * it is valid on the wire (proto/PROTOCOL.md §2.1); answers are MessagePack
 * maps written as JSON by rc_msgpack_to_json, which keeps integers exact
 * and never writes a byte that is not UTF-8.
 */
#define _GNU_SOURCE
#include "app/api.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app/server.h"
#include "core/call.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/stats.h"
#include "ringcast/json.h"
#include "store/store.h"

static const char *const endpoint_names[RC_API_ENDPOINTS] = { "publish", "disconnect", "groups", "users", "other" };
/* The statuses counted apart; anything else counts as the last one. */
static const int api_codes[RC_API_CODES] = { 200, 400, 401, 403, 404, 405, 413, 429, 500, 503, 0 };

/* ---- answers ---- */

/* An answer being written: a MessagePack map, JSON at the end. */
typedef struct answer {
    rc_buf map;
    rc_buf_sink sink;
    msgpack_packer pk;
} answer;

static void answer_init(answer *a)
{
    rc_buf_init(&a->map);
    rc_buf_packer_init(&a->pk, &a->sink, &a->map);
}

static void pack_str(answer *a, const char *p, size_t n)
{
    msgpack_pack_str(&a->pk, n);
    msgpack_pack_str_body(&a->pk, p, n);
}

static void pack_key(answer *a, const char *k)
{
    pack_str(a, k, strlen(k));
}

/* The names the answers of n calls (core/call.h) list, as one array of at
 * most RC_CALL_MAX_NAMES. */
static void pack_names(answer *a, rc_call *const *calls, uint32_t n)
{
    uint32_t listed = 0, put = 0;
    for (uint32_t i = 0; i < n; i++)
        listed += calls[i]->n_names;
    uint32_t cap = listed < RC_CALL_MAX_NAMES ? listed : RC_CALL_MAX_NAMES;
    msgpack_pack_array(&a->pk, cap);
    for (uint32_t i = 0; i < n; i++)
        for (size_t off = 0; off < calls[i]->names.len && put < cap; put++) {
            uint8_t k = calls[i]->names.data[off];
            pack_str(a, (const char *)calls[i]->names.data + off + 1, k);
            off += 1u + k;
        }
}

/* Writes the answer as JSON into body and returns status (500 when memory
 * ran out on the way). */
static int answer_send(answer *a, int status, struct rc_admin_body *body)
{
    rc_buf json;
    rc_buf_init(&json);
    bool ok = !a->sink.failed && rc_msgpack_to_json(a->map.data, a->map.len, &json) == 0 &&
              rc_admin_body_printf(body, "%.*s\n", (int)json.len, (const char *)json.data) == 0;
    rc_buf_free(&json);
    rc_buf_free(&a->map);
    if (!ok) {
        rc_admin_body_printf(body, "{\"error\":\"internal\",\"msg\":\"out of memory\"}\n");
        return 500;
    }
    return status;
}

/* {error: code, msg: text} with status. */
static int fail(struct rc_admin_body *body, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(struct rc_admin_body *body, int status, const char *code, const char *fmt, ...)
{
    char text[RC_MAX_TEXT];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    answer a;
    answer_init(&a);
    msgpack_pack_map(&a.pk, 2);
    pack_key(&a, "error");
    pack_key(&a, code);
    pack_key(&a, "msg");
    pack_key(&a, text);
    return answer_send(&a, status, body);
}

/* ---- waiting for the server's threads ---- */

static uint64_t deadline_after(unsigned ms)
{
    return rc_clock_mono_ns() + (uint64_t)ms * RC_NS_PER_MS;
}

static bool serving(rc_server *s)
{
    return atomic_load_explicit(&s->ready, memory_order_acquire); /* pairs with rc_server_start's release */
}

/* Waits until every call of n is answered, the deadline passes or the
 * server stops. */
static bool calls_answered(rc_server *s, rc_call **calls, uint32_t n, uint64_t deadline)
{
    for (;;) {
        uint32_t done = 0;
        for (uint32_t i = 0; i < n; i++)
            done += rc_call_answered(calls[i]);
        if (done == n)
            return true;
        if (rc_clock_mono_ns() > deadline || !serving(s))
            return false;
        usleep(RC_API_POLL_US);
    }
}

/* Asks every io thread about user: the sessions counted (or closed) in all,
 * or -1 when one did not answer in time. */
static int64_t ask_io_threads(rc_server *s, rc_call_kind kind, const char *user, uint32_t len)
{
    rc_call *calls[RC_MAX_IO_THREADS];
    uint32_t n = 0;
    int64_t total = 0;
    bool ok = true;
    for (uint32_t i = 0; i < s->n_io && ok; i++) {
        calls[n] = rc_call_new(kind, user, len);
        if (!calls[n])
            ok = false;
        else if (!rc_call_post(&s->ios[i].call, calls[n++]))
            ok = false; /* an earlier call that timed out is still waiting there */
        else
            rc_waker_kick(&s->ios[i].waker);
    }
    ok = ok && calls_answered(s, calls, n, deadline_after(RC_API_TIMEOUT_MS));
    for (uint32_t i = 0; i < n; i++) {
        total += (int64_t)calls[i]->n;
        rc_call_put(calls[i]);
    }
    return ok ? total : -1;
}

/* Takes scale_lock for a question to shards: no group moves while it is
 * asked, so the owner the route names holds each group (ARCHITECTURE §4.1).
 * False on a timeout or when the server stops. */
static bool lock_route(rc_server *s, uint64_t deadline)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    uint64_t left = deadline > rc_clock_mono_ns() ? deadline - rc_clock_mono_ns() : 0;
    until.tv_sec += (time_t)(left / 1000000000u);
    until.tv_nsec += (long)(left % 1000000000u);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    if (pthread_mutex_timedlock(&s->scale_lock, &until) != 0)
        return false;
    if (s->stopping) {
        pthread_mutex_unlock(&s->scale_lock);
        return false;
    }
    return true;
}

/* Posts c to shard i and wakes it. */
static bool ask_shard(rc_server *s, uint32_t i, rc_call *c)
{
    if (!rc_call_post(&s->shards[i].call, c))
        return false;
    rc_waker_kick(&s->shards[i].waker);
    return true;
}

/* ---- the API's session: publish ---- */

static void session_drop(rc_api *a)
{
    if (a->connected)
        rc_client_close(&a->client);
    a->connected = false;
}

/* The address of the server's own TCP port: its listen address, or
 * loopback when it listens on every interface. */
static const char *loopback_host(const rc_server *s)
{
    const char *h = s->cfg.host;
    if (!h[0] || strcmp(h, "0.0.0.0") == 0)
        return "127.0.0.1";
    if (strcmp(h, "::") == 0)
        return "::1";
    return h;
}

/* True when the session is open: what it received meanwhile (the server's
 * idle ping, a bye) is read first, so a publish is never written to a
 * connection the server has already closed. Connects when it is not. */
static bool session_ready(rc_server *s, char *err, size_t errlen)
{
    rc_api *a = &s->api;
    while (a->connected) {
        struct pollfd p = { .fd = a->client.fd, .events = POLLIN };
        if (poll(&p, 1, 0) <= 0)
            return true;
        rc_msg m;
        int r = rc_client_recv(&a->client, &m, 0); /* answers a ping itself */
        if (r < 0 || (r == 1 && m.type == RC_T_BYE))
            session_drop(a);
        else if (r == 0)
            return true;
    }
    if (rc_client_connect(&a->client, loopback_host(s), s->port, (int)RC_API_CONNECT_TIMEOUT_MS) != 0) {
        snprintf(err, errlen, "cannot connect to the server's own port: %s", a->client.err);
        rc_client_close(&a->client); /* what connect set up */
        return false;
    }
    a->connected = true;
    int e = rc_client_hello_token(&a->client, RC_API_USER, s->cfg.admin_token, (int)RC_API_CONNECT_TIMEOUT_MS);
    if (e != 0) {
        snprintf(err, errlen, "the server refused the API's hello: %s", a->client.err);
        session_drop(a);
        return false;
    }
    RC_LOG_INFO("api", "event=session sid=%llu", (unsigned long long)a->client.sid);
    return true;
}

/* The frame of a publish: "t" and "rid" first, then the members of the
 * request's object (map, a MessagePack map as rc_json_to_msgpack wrote
 * it). A "t" or "rid" in the request is then a key twice: E_BAD_FIELD. */
static int publish_frame(const rc_buf *map, uint64_t rid, rc_buf *out)
{
    const uint8_t *p = map->data;
    size_t hdr, n;
    if (p[0] >= 0x80 && p[0] <= 0x8f)
        hdr = 1, n = p[0] & 0x0f;
    else if (p[0] == 0xde)
        hdr = 3, n = (size_t)p[1] << 8 | p[2];
    else
        hdr = 5, n = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4];
    rc_buf_sink sink;
    msgpack_packer pk;
    uint8_t len[RC_FRAME_HEADER] = { 0 };
    if (rc_buf_append(out, len, sizeof(len)) != 0)
        return -1;
    rc_buf_packer_init(&pk, &sink, out);
    msgpack_pack_map(&pk, n + 2);
    msgpack_pack_str(&pk, 1);
    msgpack_pack_str_body(&pk, "t", 1);
    msgpack_pack_str(&pk, 7);
    msgpack_pack_str_body(&pk, "publish", 7);
    msgpack_pack_str(&pk, 3);
    msgpack_pack_str_body(&pk, "rid", 3);
    msgpack_pack_uint64(&pk, rid);
    if (sink.failed || rc_buf_append(out, p + hdr, map->len - hdr) != 0)
        return -1;
    rc_frame_put_len(out->data, (uint32_t)(out->len - RC_FRAME_HEADER));
    return 0;
}

/* The HTTP status of the server's `err` to a publish. */
static int publish_refusal(rc_err code, const char **name)
{
    switch (code) {
    case RC_E_NOT_MEMBER: *name = "not_found"; return 404;
    case RC_E_RATE_LIMITED: *name = "rate_limited"; return 429;
    case RC_E_BAD_FIELD: case RC_E_MISSING_FIELD: case RC_E_BAD_FRAME: case RC_E_FRAME_TOO_LARGE:
        *name = "bad_request";
        return 400;
    default: *name = "unavailable"; return 503; /* E_OVERLOADED, E_SHUTTING_DOWN, E_INTERNAL, ... */
    }
}

/* Sends the publish and waits for its ack (given once the message is
 * sequenced and, with durability batch or sync, stored). */
static int publish_send(rc_server *s, const rc_buf *frame, uint64_t rid, struct rc_admin_body *body)
{
    rc_api *a = &s->api;
    if (frame->len - RC_FRAME_HEADER > a->client.max_frame)
        return fail(body, 413, "too_large", "the message does not fit in the server's max_frame (%u bytes)",
                    a->client.max_frame);
    if (rc_client_send_raw(&a->client, frame->data, frame->len) != 0) {
        session_drop(a);
        return fail(body, 503, "unavailable", "the API's session closed; retry");
    }
    uint64_t deadline = deadline_after(RC_API_TIMEOUT_MS);
    rc_msg r;
    int got = 0;
    while (got == 0 && rc_clock_mono_ns() < deadline && serving(s))
        got = rc_client_wait(&a->client, RC_T_ACK, rid, &r, 100);
    if (got <= 0) {
        /* A late ack carries this rid and is skipped by the next wait. */
        if (got < 0)
            session_drop(a);
        return fail(body, 503, "unavailable", "no answer from the server within %u ms; retry with the same mid",
                    RC_API_TIMEOUT_MS);
    }
    if (r.type == RC_T_ERR) {
        const char *name;
        int status = publish_refusal(r.code, &name);
        return fail(body, status, name, "%s: %.*s", rc_err_name(r.code), (int)r.text.len, r.text.ptr);
    }
    answer out;
    answer_init(&out);
    msgpack_pack_map(&out.pk, 4);
    pack_key(&out, "g");
    pack_str(&out, r.g.ptr, r.g.len);
    pack_key(&out, "seq");
    msgpack_pack_uint64(&out.pk, r.seq);
    pack_key(&out, "ts");
    msgpack_pack_uint64(&out.pk, r.ts);
    pack_key(&out, "dup");
    if ((r.has & RC_HAS_DUP) && r.dup)
        msgpack_pack_true(&out.pk);
    else
        msgpack_pack_false(&out.pk);
    return answer_send(&out, 200, body);
}

/* The request's JSON object as a MessagePack map; 0, or an answered 400. */
static int read_object(const rc_admin_request *req, rc_buf *map, struct rc_admin_body *body)
{
    const char *why = "no body";
    if (!req->body || rc_json_to_msgpack(req->body, req->body_len, map, &why) != RC_OK)
        return fail(body, 400, "bad_request", "the body must be one JSON object: %s", why);
    return 0;
}

/* POST /api/publish {g, from, body (string), mid?}. */
static int api_publish(rc_server *s, const rc_admin_request *req, struct rc_admin_body *body)
{
    rc_api *a = &s->api;
    rc_buf map, frame;
    rc_buf_init(&map);
    rc_buf_init(&frame);
    char err[sizeof(a->client.err) + 64];
    int status = read_object(req, &map, body);
    if (status)
        goto out;
    if (!session_ready(s, err, sizeof(err))) { /* first: a new session starts its rids again */
        status = fail(body, 503, "unavailable", "%s", err);
        goto out;
    }
    uint64_t rid = a->client.next_rid++;
    if (publish_frame(&map, rid, &frame) != 0) {
        status = fail(body, 500, "internal", "out of memory");
        goto out;
    }
    rc_msg m;
    const char *why = NULL;
    rc_err e = rc_decode(&a->dec, frame.data + RC_FRAME_HEADER, frame.len - RC_FRAME_HEADER, &m, &why);
    if (e == RC_OK && !m.body_is_str)
        e = RC_E_BAD_FIELD, why = "body must be a string";
    if (e != RC_OK) {
        status = fail(body, 400, "bad_request", "%s: %s (g 1..%u bytes, from 1..%u, body a string, mid 1..%u; "
                      "names hold no NUL)", rc_err_name(e), why ? why : "", RC_MAX_GROUP, RC_MAX_USER, RC_MAX_MID);
        goto out;
    }
    status = publish_send(s, &frame, rid, body);
out:
    rc_buf_free(&map);
    rc_buf_free(&frame);
    return status;
}

/* ---- disconnect, groups, users ---- */

/* The `user` member of the request's object, checked as a name. 0, or an
 * answered 400. */
static int read_user(const rc_admin_request *req, char *user, uint32_t *len, struct rc_admin_body *body)
{
    rc_buf map;
    rc_buf_init(&map);
    int status = read_object(req, &map, body);
    if (status) {
        rc_buf_free(&map);
        return status;
    }
    msgpack_zone zone;
    msgpack_object o;
    int found = 0;
    msgpack_zone_init(&zone, 1024);
    if (msgpack_unpack((const char *)map.data, map.len, NULL, &zone, &o) == MSGPACK_UNPACK_SUCCESS &&
        o.type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < o.via.map.size; i++) {
            const msgpack_object *k = &o.via.map.ptr[i].key, *v = &o.via.map.ptr[i].val;
            if (k->type != MSGPACK_OBJECT_STR || k->via.str.size != 4 || memcmp(k->via.str.ptr, "user", 4) != 0)
                continue;
            found++;
            if (v->type != MSGPACK_OBJECT_STR || !rc_name_valid(v->via.str.ptr, v->via.str.size, RC_MAX_USER))
                found = -1;
            else if (found == 1) {
                memcpy(user, v->via.str.ptr, v->via.str.size);
                *len = v->via.str.size;
            }
        }
    }
    msgpack_zone_destroy(&zone);
    rc_buf_free(&map);
    if (found != 1)
        return fail(body, 400, "bad_request", "the body must be {\"user\": a name of 1..%u bytes without NUL}, once",
                    RC_MAX_USER);
    return 0;
}

/* POST /api/disconnect {user}: every session of user, on every io thread,
 * gets bye {reason: "disconnected"} and is closed. */
static int api_disconnect(rc_server *s, const rc_admin_request *req, struct rc_admin_body *body)
{
    char user[RC_MAX_USER];
    uint32_t len = 0;
    int status = read_user(req, user, &len, body);
    if (status)
        return status;
    int64_t closed = ask_io_threads(s, RC_CALL_DISCONNECT, user, len);
    if (closed < 0)
        return fail(body, 503, "unavailable", "an io thread did not answer within %u ms", RC_API_TIMEOUT_MS);
    RC_LOG_INFO("api", "event=disconnect user=%.*s closed=%lld", (int)len, user, (long long)closed);
    answer a;
    answer_init(&a);
    msgpack_pack_map(&a.pk, 1);
    pack_key(&a, "closed");
    msgpack_pack_uint64(&a.pk, (uint64_t)closed);
    return answer_send(&a, 200, body);
}

static int hex(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The name after prefix in the path, percent-decoded (RFC 3986), checked
 * as a name of at most max bytes. 0, or an answered 400. */
static int path_name(const char *path, size_t prefix, size_t max, char *out, uint32_t *len, struct rc_admin_body *body)
{
    const char *p = path + prefix;
    size_t n = 0;
    while (*p) {
        int c = (unsigned char)*p++;
        if (c == '%') {
            int h = hex(p[0]), l = h < 0 ? -1 : hex(p[1]);
            if (l < 0)
                return fail(body, 400, "bad_request", "a %% in the path must be followed by two hex digits");
            c = h << 4 | l;
            p += 2;
        }
        if (n == max + 1)
            break;
        out[n++] = (char)c;
    }
    if (!rc_name_valid(out, n, max))
        return fail(body, 400, "bad_request", "the name in the path must be 1..%zu bytes (percent-encoded), without NUL",
                    max);
    *len = (uint32_t)n;
    return 0;
}

/* GET /api/groups/<g>: from the group's owner shard. */
static int api_group(rc_server *s, const rc_admin_request *req, struct rc_admin_body *body)
{
    char g[RC_MAX_GROUP + 1];
    uint32_t len = 0;
    int status = path_name(req->path, strlen("/api/groups/"), RC_MAX_GROUP, g, &len, body);
    if (status)
        return status;
    rc_call *c = rc_call_new(RC_CALL_GROUP, g, len);
    if (!c)
        return fail(body, 500, "internal", "out of memory");
    uint64_t deadline = deadline_after(RC_API_TIMEOUT_MS);
    bool ok = lock_route(s, deadline);
    if (ok) {
        ok = ask_shard(s, rc_route_shard(s->route, g, len), c) && calls_answered(s, &c, 1, deadline);
        pthread_mutex_unlock(&s->scale_lock);
    }
    if (!ok)
        status = fail(body, 503, "unavailable", "the group's shard did not answer within %u ms", RC_API_TIMEOUT_MS);
    else if (!c->found)
        status = fail(body, 404, "not_found", "no such group: nobody has joined it");
    else {
        answer a;
        answer_init(&a);
        msgpack_pack_map(&a.pk, 5);
        pack_key(&a, "g");
        pack_str(&a, g, len);
        pack_key(&a, "seq");
        msgpack_pack_uint64(&a.pk, c->seq);
        pack_key(&a, "members");
        msgpack_pack_uint64(&a.pk, c->members);
        pack_key(&a, "online");
        pack_names(&a, &c, 1);
        pack_key(&a, "n_online");
        msgpack_pack_uint64(&a.pk, c->n);
        status = answer_send(&a, 200, body);
    }
    rc_call_put(c);
    return status;
}

/* The groups that hold user as a stored member, from every shard; *calls
 * gets one answered call per shard (put them). False on a timeout. */
static bool ask_user_groups(rc_server *s, const char *user, uint32_t len, rc_call **calls, uint32_t *n)
{
    uint64_t deadline = deadline_after(RC_API_TIMEOUT_MS);
    *n = 0;
    if (!lock_route(s, deadline))
        return false;
    bool ok = true;
    for (uint32_t i = 0; i < s->route->n && ok; i++) {
        calls[*n] = rc_call_new(RC_CALL_USER_GROUPS, user, len);
        ok = calls[*n] && ask_shard(s, i, calls[*n]);
        if (calls[*n])
            (*n)++;
    }
    ok = ok && calls_answered(s, calls, *n, deadline);
    pthread_mutex_unlock(&s->scale_lock);
    return ok;
}

static int index_group(void *ud, const rc_persist_member_group *mg)
{
    rc_call *c = ud;
    c->n++;
    rc_call_add_name(c, mg->g, mg->g_len);
    return 0;
}

/* The groups that hold user as a stored member, from the store's index by
 * user (written in the same batch as each membership change, so it holds
 * what the shards do): one prefix scan of the user's own entries. *calls
 * gets one call, used for its answer only. */
static bool index_user_groups(rc_server *s, const char *user, uint32_t len, rc_call **calls, uint32_t *n)
{
    char err[256];
    bool more = false;
    *n = 0;
    calls[0] = rc_call_new(RC_CALL_USER_GROUPS, user, len);
    if (!calls[0])
        return false;
    *n = 1;
    if (rc_store_ops()->user_groups(s->persist, user, len, UINT32_MAX, index_group, calls[0], &more, err,
                                    sizeof(err)) != 0) {
        RC_LOG_ERROR("api", "event=user_groups_failed err=\"%s\"", err);
        return false;
    }
    return true;
}

/* GET /api/users/<u>: its sessions from the io threads; its stored
 * memberships from the store's index by user, or, when nothing is stored
 * (durability=off), from the shards (a look at every group: ARCHITECTURE
 * §3.10). */
static int api_user(rc_server *s, const rc_admin_request *req, struct rc_admin_body *body)
{
    char user[RC_MAX_USER + 1];
    uint32_t len = 0;
    int status = path_name(req->path, strlen("/api/users/"), RC_MAX_USER, user, &len, body);
    if (status)
        return status;
    int64_t sessions = ask_io_threads(s, RC_CALL_USER_SESSIONS, user, len);
    rc_call *calls[RC_MAX_SHARDS];
    uint32_t n = 0;
    bool ok = sessions >= 0 && (s->persist ? index_user_groups(s, user, len, calls, &n)
                                           : ask_user_groups(s, user, len, calls, &n));
    uint64_t n_groups = 0;
    for (uint32_t i = 0; ok && i < n; i++)
        n_groups += calls[i]->n;
    if (!ok)
        status = fail(body, 503, "unavailable", "the server's threads did not answer within %u ms", RC_API_TIMEOUT_MS);
    else if (sessions == 0 && n_groups == 0)
        status = fail(body, 404, "not_found", "no such user: no session open and no stored membership");
    else {
        answer a;
        answer_init(&a);
        msgpack_pack_map(&a.pk, 4);
        pack_key(&a, "user");
        pack_str(&a, user, len);
        pack_key(&a, "sessions");
        msgpack_pack_uint64(&a.pk, (uint64_t)sessions);
        pack_key(&a, "groups");
        pack_names(&a, calls, n);
        pack_key(&a, "n_groups");
        msgpack_pack_uint64(&a.pk, n_groups);
        status = answer_send(&a, 200, body);
    }
    for (uint32_t i = 0; i < n; i++)
        rc_call_put(calls[i]);
    return status;
}

/* ---- routing, auth, counting ---- */

static int endpoint_of(const char *path)
{
    if (strcmp(path, "/api/publish") == 0)
        return RC_API_PUBLISH;
    if (strcmp(path, "/api/disconnect") == 0)
        return RC_API_DISCONNECT;
    if (strncmp(path, "/api/groups/", 12) == 0)
        return RC_API_GROUPS;
    if (strncmp(path, "/api/users/", 11) == 0)
        return RC_API_USERS;
    return RC_API_OTHER;
}

static int serve(rc_server *s, int ep, const rc_admin_request *req, struct rc_admin_body *body)
{
    if (!s->cfg.admin_token[0])
        return fail(body, 403, "forbidden", "the Server API is off: set admin_token");
    if (!rc_server_admin_authorized(s, req->authorization))
        return fail(body, 401, "unauthorized", "send Authorization: Bearer <admin_token>");
    if (ep == RC_API_OTHER)
        return fail(body, 404, "not_found", "try /api/publish, /api/disconnect, /api/groups/<g>, /api/users/<u>");
    bool post = strcmp(req->method, "POST") == 0;
    if (post != (ep == RC_API_PUBLISH || ep == RC_API_DISCONNECT))
        return fail(body, 405, "method_not_allowed", "%s takes %s", endpoint_names[ep], post ? "GET" : "POST");
    if (req->body_len > RC_API_MAX_BODY)
        return fail(body, 413, "too_large", "the request body is over %u bytes", RC_API_MAX_BODY);
    if (!serving(s))
        return fail(body, 503, "unavailable", "the server is recovering or stopping");
    if (!s->api.dec_ready) {
        rc_decoder_init_requests(&s->api.dec);
        s->api.dec_ready = true;
    }
    switch (ep) {
    case RC_API_PUBLISH: return api_publish(s, req, body);
    case RC_API_DISCONNECT: return api_disconnect(s, req, body);
    case RC_API_GROUPS: return api_group(s, req, body);
    default: return api_user(s, req, body);
    }
}

int rc_api_handle(rc_server *s, const rc_admin_request *req, struct rc_admin_body *body, const char **ctype)
{
    *ctype = "application/json";
    int ep = endpoint_of(req->path);
    int status = serve(s, ep, req, body);
    uint32_t k = 0;
    while (k < RC_API_CODES - 1 && api_codes[k] != status)
        k++;
    RC_STAT_ADD(s->api.requests[ep][k], 1);
    return status;
}

void rc_api_metrics(rc_server *s, struct rc_admin_body *out)
{
    rc_admin_body_printf(out, "# HELP ringcast_api_requests_total Server API requests answered, by endpoint and HTTP status.\n"
                              "# TYPE ringcast_api_requests_total counter\n");
    for (int ep = 0; ep < RC_API_ENDPOINTS; ep++)
        for (uint32_t k = 0; k < RC_API_CODES; k++) {
            uint64_t v = rc_stat_get(&s->api.requests[ep][k]);
            if (!v && api_codes[k] != 200)
                continue;
            char code[8];
            snprintf(code, sizeof(code), "%d", api_codes[k]);
            rc_admin_body_printf(out, "ringcast_api_requests_total{endpoint=\"%s\",code=\"%s\"} %llu\n",
                                 endpoint_names[ep], api_codes[k] ? code : "other", (unsigned long long)v);
        }
}

void rc_api_close(rc_api *a)
{
    session_drop(a);
    if (a->dec_ready)
        rc_decoder_free(&a->dec);
    a->dec_ready = false;
}
