/*
 * The public HTTP port without sockets (src/net/ws.h): a client's bytes go
 * into rc_ws_input, and a fake rc_ws_out records what the connection does
 * (the bytes written, the maps handed to the session, the errors, the
 * close). Covers the extension rules (permessage-deflate offered and not
 * taken, a compressed frame refused) and messages past max_frame, the
 * cases tests/fuzz/fuzz_ws found (tests/fuzz/regress/ws/).
 */
#define _GNU_SOURCE /* memmem */
#include "net/ws.h"

#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define MAX_FRAME 1024u
#define MAX_MSGS 8
#define OUT_CAP 65536u
#define SAMPLE_KEY "dGhlIHNhbXBsZSBub25jZQ=="          /* RFC 6455 §1.3 */
#define SAMPLE_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="   /* its accept value */

/* What the fake writer saw. */
typedef struct fake {
    uint8_t out[OUT_CAP];
    size_t out_len;
    size_t msg_len[MAX_MSGS];
    uint8_t msg[MAX_MSGS][MAX_FRAME];
    int n_msgs;
    rc_err errors[MAX_MSGS];
    int n_errors;
    bool closed;
} fake;

static void f_write(void *self, const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
    fake *f = self;
    CU_ASSERT_FATAL(f->out_len + na + nb <= OUT_CAP);
    memcpy(f->out + f->out_len, a, na);
    if (nb)
        memcpy(f->out + f->out_len + na, b, nb);
    f->out_len += na + nb;
}

static void f_message(void *self, const uint8_t *map, size_t len)
{
    fake *f = self;
    CU_ASSERT_FATAL(f->n_msgs < MAX_MSGS && len <= MAX_FRAME);
    memcpy(f->msg[f->n_msgs], map, len);
    f->msg_len[f->n_msgs++] = len;
}

static void f_error(void *self, rc_err code, const char *text)
{
    (void)text;
    fake *f = self;
    CU_ASSERT_FATAL(f->n_errors < MAX_MSGS);
    f->errors[f->n_errors++] = code;
}

static bool f_reading(void *self)
{
    return !((fake *)self)->closed;
}

static void f_close(void *self)
{
    ((fake *)self)->closed = true;
}

static bool f_dead(void *self)
{
    (void)self;
    return false;
}

/* A connection with its fake, fed in one call. */
typedef struct conn {
    fake f;
    rc_ws_out out;
    rc_ws_stats stats;
    rc_ws_env env;
    rc_ws *w;
} conn;

static conn *conn_new(void)
{
    conn *c = calloc(1, sizeof(*c));
    CU_ASSERT_FATAL(c != NULL);
    c->out = (rc_ws_out){ &c->f, f_write, f_message, f_error, f_reading, f_close, f_dead };
    c->env = (rc_ws_env){ MAX_FRAME, "", &c->out, &c->stats };
    c->w = rc_ws_new();
    CU_ASSERT_FATAL(c->w != NULL);
    return c;
}

static void conn_free(conn *c)
{
    rc_ws_free(c->w);
    free(c);
}

static void feed(conn *c, const void *p, size_t n)
{
    size_t used = rc_ws_input(c->w, &c->env, p, n);
    CU_ASSERT(used <= n);
}

static size_t upgrade(char *buf, size_t cap, const char *extra)
{
    int n = snprintf(buf, cap,
                     "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: " SAMPLE_KEY "\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                     extra);
    return (size_t)n;
}

/* A masked client frame (RFC 6455 §5.2) with rsv bits (RSV1 = 4) into buf; its length. */
static size_t client_frame(uint8_t *buf, uint8_t opcode, bool fin, uint8_t rsv, const void *payload, size_t n)
{
    static const uint8_t key[4] = { 0x37, 0xfa, 0x21, 0x3d };
    size_t h = 0;
    buf[h++] = (uint8_t)((fin ? 0x80 : 0) | rsv << 4 | opcode);
    if (n < 126) {
        buf[h++] = (uint8_t)(0x80 | n);
    } else {
        buf[h++] = 0x80 | 126;
        buf[h++] = (uint8_t)(n >> 8);
        buf[h++] = (uint8_t)n;
    }
    memcpy(buf + h, key, 4);
    h += 4;
    for (size_t i = 0; i < n; i++)
        buf[h + i] = ((const uint8_t *)payload)[i] ^ key[i % 4];
    return h + n;
}

/* The bytes after the 101's head: the server's frames. */
static const uint8_t *frames_after_head(const fake *f, size_t *len)
{
    const uint8_t *end = memmem(f->out, f->out_len, "\r\n\r\n", 4);
    CU_ASSERT_FATAL(end != NULL);
    *len = f->out_len - (size_t)(end + 4 - f->out);
    return end + 4;
}

/* The code of the close frame among the server's frames, or 0. */
static unsigned close_code(const fake *f)
{
    size_t n;
    const uint8_t *p = frames_after_head(f, &n);
    while (n >= 2) {
        size_t len = p[1] & 0x7f, off = 2;
        if (len == 126) {
            len = (size_t)p[2] << 8 | p[3];
            off = 4;
        }
        if (n < off + len)
            break;
        if ((p[0] & 0x0f) == 0x8)
            return len >= 2 ? (unsigned)(p[off] << 8 | p[off + 1]) : 0;
        p += off + len;
        n -= off + len;
    }
    return 0;
}

static void test_deflate_offered_not_taken(void)
{
    conn *c = conn_new();
    char req[1024];
    size_t n = upgrade(req, sizeof(req),
                       "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                       "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n");
    feed(c, req, n);
    c->f.out[c->f.out_len < OUT_CAP ? c->f.out_len : OUT_CAP - 1] = '\0';
    CU_ASSERT(strncmp((char *)c->f.out, "HTTP/1.1 101 ", 13) == 0);
    CU_ASSERT(strstr((char *)c->f.out, "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n") != NULL);
    CU_ASSERT(strcasestr((char *)c->f.out, "Sec-WebSocket-Extensions") == NULL);
    CU_ASSERT(strstr((char *)c->f.out, "deflate") == NULL);
    CU_ASSERT(!c->f.closed);
    /* and the session works uncompressed */
    uint8_t fr[64];
    const uint8_t hello[] = { 0x82, 0xa1, 't', 0xa5, 'h', 'e', 'l', 'l', 'o', 0xa4, 'u', 's', 'e', 'r', 0xa1, 'a' };
    feed(c, fr, client_frame(fr, 0x2, true, 0, hello, sizeof(hello)));
    CU_ASSERT(c->f.n_msgs == 1 && c->f.msg_len[0] == sizeof(hello));
    conn_free(c);
}

static void test_compressed_frame_refused(void)
{
    conn *c = conn_new();
    char req[1024];
    uint8_t buf[1024];
    size_t n = upgrade(req, sizeof(req), "Sec-WebSocket-Extensions: permessage-deflate\r\n");
    memcpy(buf, req, n);
    /* "Hello" deflated as RFC 7692 §7.2.3.1 shows, RSV1 set */
    const uint8_t deflated[] = { 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00 };
    n += client_frame(buf + n, 0x2, true, 4, deflated, sizeof(deflated));
    feed(c, buf, n);
    CU_ASSERT(c->f.n_msgs == 0);
    CU_ASSERT(close_code(&c->f) == 1002);
    CU_ASSERT(c->f.closed);
    conn_free(c);
}

/* tests/fuzz/regress/ws/message-past-max-frame-reached-the-session: the
 * message was refused (E_FRAME_TOO_LARGE, 1009) as its header came, but
 * wslay read it to the end and it was handed to the session all the same. */
static void test_message_past_max_frame(void)
{
    conn *c = conn_new();
    static uint8_t buf[8192], big[MAX_FRAME + 1];
    char req[1024];
    size_t n = upgrade(req, sizeof(req), "");
    memcpy(buf, req, n);
    memset(big, 0x80, sizeof(big));
    n += client_frame(buf + n, 0x2, true, 0, big, sizeof(big));
    feed(c, buf, n);
    CU_ASSERT(c->f.n_msgs == 0);
    CU_ASSERT(c->f.n_errors == 1 && c->f.errors[0] == RC_E_FRAME_TOO_LARGE);
    CU_ASSERT(close_code(&c->f) == 1009);
    CU_ASSERT(c->f.closed);
    conn_free(c);
}

/* tests/fuzz/regress/ws/fragments-past-max-frame-reached-the-session: the
 * same for a message whose fragments add up past max_frame. */
static void test_fragments_past_max_frame(void)
{
    conn *c = conn_new();
    static uint8_t buf[8192], part[MAX_FRAME / 2 + 100];
    char req[1024];
    size_t n = upgrade(req, sizeof(req), "");
    memcpy(buf, req, n);
    memset(part, 'x', sizeof(part));
    n += client_frame(buf + n, 0x2, false, 0, part, sizeof(part));
    n += client_frame(buf + n, 0x0, true, 0, part, sizeof(part));
    feed(c, buf, n);
    CU_ASSERT(c->f.n_msgs == 0);
    CU_ASSERT(c->f.n_errors == 1 && c->f.errors[0] == RC_E_FRAME_TOO_LARGE);
    CU_ASSERT(close_code(&c->f) == 1009);
    conn_free(c);
}

/* A text message of max_frame bytes whose MessagePack is longer (`1e0` is
 * 3 bytes of JSON and 9 of float64) is refused with E_FRAME_TOO_LARGE, as
 * the session never takes more than max_frame; the connection stays. */
static void test_text_growing_past_max_frame(void)
{
    conn *c = conn_new();
    static uint8_t buf[8192];
    static char json[MAX_FRAME + 1];
    char req[1024];
    size_t n = upgrade(req, sizeof(req), "");
    memcpy(buf, req, n);
    size_t len = (size_t)snprintf(json, sizeof(json), "{\"t\":\"send\",\"g\":\"r\",\"x\":[1e0");
    while (len + 4 + 2 <= MAX_FRAME)
        len += (size_t)snprintf(json + len, sizeof(json) - len, ",1e0");
    json[len++] = ']';
    while (len < MAX_FRAME - 1)
        json[len++] = ' ';
    json[len++] = '}';
    CU_ASSERT_FATAL(len == MAX_FRAME);
    n += client_frame(buf + n, 0x1, true, 0, json, MAX_FRAME);
    feed(c, buf, n);
    CU_ASSERT(c->f.n_msgs == 0);
    CU_ASSERT(c->f.n_errors == 1 && c->f.errors[0] == RC_E_FRAME_TOO_LARGE);
    CU_ASSERT(!c->f.closed);
    conn_free(c);
}

/* Messages are put together from what wslay reads (no buffering in wslay):
 * three fragments with a ping between them, and a one-frame message fed
 * one byte at a time, each reach the session whole and unmasked. */
static void test_messages_put_together(void)
{
    conn *c = conn_new();
    static uint8_t buf[8192];
    char req[1024];
    size_t n = upgrade(req, sizeof(req), "");
    memcpy(buf, req, n);
    const char *a = "first part, ", *b = "second part, ", *z = "and the end";
    n += client_frame(buf + n, 0x2, false, 0, a, strlen(a));
    n += client_frame(buf + n, 0x9, true, 0, "ping", 4);
    n += client_frame(buf + n, 0x0, false, 0, b, strlen(b));
    n += client_frame(buf + n, 0x0, true, 0, z, strlen(z));
    size_t second = n;
    static uint8_t big[600];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7);
    n += client_frame(buf + n, 0x2, true, 0, big, sizeof(big));
    feed(c, buf, second);
    for (size_t i = second; i < n; i++) /* one byte per read, as a slow socket gives them */
        feed(c, buf + i, 1);
    CU_ASSERT_FATAL(c->f.n_msgs == 2);
    CU_ASSERT(c->f.msg_len[0] == strlen(a) + strlen(b) + strlen(z));
    CU_ASSERT(memcmp(c->f.msg[0], "first part, second part, and the end", c->f.msg_len[0]) == 0);
    CU_ASSERT(c->f.msg_len[1] == sizeof(big) && memcmp(c->f.msg[1], big, sizeof(big)) == 0);
    CU_ASSERT(!c->f.closed);
    conn_free(c);
}

static int add_tests(void)
{
    CU_pSuite s = CU_add_suite("ws", NULL, NULL);
    if (!s || !CU_add_test(s, "permessage-deflate offered: 101 without it, messages uncompressed",
                           test_deflate_offered_not_taken) ||
        !CU_add_test(s, "a frame with RSV1 (compressed) is closed with 1002", test_compressed_frame_refused) ||
        !CU_add_test(s, "a message past max_frame never reaches the session", test_message_past_max_frame) ||
        !CU_add_test(s, "fragments past max_frame never reach the session", test_fragments_past_max_frame) ||
        !CU_add_test(s, "a text message longer than max_frame as MessagePack", test_text_growing_past_max_frame) ||
        !CU_add_test(s, "fragments, and a message read byte by byte, come whole", test_messages_put_together))
        return -1;
    return 0;
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    if (add_tests() != 0) {
        CU_cleanup_registry();
        return 1;
    }
    return rc_test_run();
}
