/*
 * The logging facility (log.h): format into a stack buffer, write once.
 */
#include "core/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"

static const char *const level_names[] = { "debug", "info", "warn", "error" };

/* relaxed: independent settings, read on every call; a reload that races a
 * log line may use either value, which is fine for a log line. */
static _Atomic int min_level = RC_LEVEL_INFO;
static _Atomic int out_format = RC_LOG_FORMAT_TEXT;

int rc_log_level_parse(const char *name, rc_log_level *out)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, level_names[i]) == 0) {
            *out = (rc_log_level)i;
            return 0;
        }
    return -1;
}

int rc_log_format_parse(const char *name, rc_log_format *out)
{
    if (strcmp(name, "text") == 0)
        *out = RC_LOG_FORMAT_TEXT;
    else if (strcmp(name, "json") == 0)
        *out = RC_LOG_FORMAT_JSON;
    else
        return -1;
    return 0;
}

const char *rc_log_level_name(rc_log_level level)
{
    return (unsigned)level < 4 ? level_names[level] : "unknown";
}

void rc_log_configure(rc_log_level min, rc_log_format format)
{
    atomic_store_explicit(&min_level, (int)min, memory_order_relaxed);
    atomic_store_explicit(&out_format, (int)format, memory_order_relaxed);
}

bool rc_log_enabled(rc_log_level level)
{
    return (int)level >= atomic_load_explicit(&min_level, memory_order_relaxed);
}

/* ---- JSON form ---- */

/* Room kept at the end of the JSON form for `,"cut":true}` and the NUL, so
 * a line too long for its buffer still closes as a valid object. */
#define JSON_TAIL_RESERVE 16u

typedef struct out_buf {
    char *p;
    unsigned len, cap; /* cap keeps room for the terminating NUL */
    bool full;         /* something did not fit */
} out_buf;

/* All or nothing, so an escape sequence is never written in half. */
static void put_n(out_buf *o, const char *s, unsigned n)
{
    if (o->full || o->len + n + 1 > o->cap) {
        o->full = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void put_s(out_buf *o, const char *s)
{
    put_n(o, s, (unsigned)strlen(s));
}

/* Appends s[0..n) as a JSON string body (without quotes). */
static void put_escaped(out_buf *o, const char *s, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char esc[8];
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            put_n(o, esc, 2);
        } else if (ch < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", ch);
            put_s(o, esc);
        } else {
            put_n(o, (const char *)&ch, 1);
        }
    }
}

static bool is_number(const char *s, unsigned n)
{
    unsigned i = (n > 0 && s[0] == '-') ? 1 : 0;
    if (i == n || n > 19)
        return false;
    if (s[i] == '0' && n > i + 1)
        return false; /* leading zeros are not JSON numbers */
    for (; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* Reads a value at *s: a "quoted string" (with \" escapes) or a run up to a
 * space. The value's bytes, unescaped into tmp, are returned by pointer. */
static const char *read_value(const char **s, char *tmp, unsigned cap, unsigned *n, bool *quoted)
{
    const char *p = *s;
    *n = 0;
    *quoted = *p == '"';
    if (!*quoted) {
        while (p[*n] && p[*n] != ' ')
            (*n)++;
        *s = p + *n;
        return p;
    }
    p++;
    while (*p && *p != '"') {
        if (*p == '\\' && p[1])
            p++;
        if (*n + 1 < cap)
            tmp[(*n)++] = *p;
        p++;
    }
    *s = *p ? p + 1 : p;
    return tmp;
}

unsigned rc_log_format_json(char *out, unsigned cap, unsigned long long ts_ms, rc_log_level level,
                            const char *component, const char *pairs)
{
    if (cap <= JSON_TAIL_RESERVE) {
        if (cap)
            out[0] = '\0';
        return 0;
    }
    out_buf o = { out, 0, cap - JSON_TAIL_RESERVE, false };
    char head[160];
    snprintf(head, sizeof(head), "{\"ts\":%llu,\"level\":\"%s\",\"component\":\"", ts_ms, rc_log_level_name(level));
    put_s(&o, head);
    put_escaped(&o, component, (unsigned)strlen(component));
    put_s(&o, "\"");
    char msg[RC_LOG_LINE_MAX];
    unsigned msg_len = 0;
    const char *s = pairs;
    while (*s) {
        while (*s == ' ')
            s++;
        const char *start = s;
        while (*s && *s != ' ' && *s != '=')
            s++;
        if (*s != '=' || s == start) { /* a bare word: part of the message text */
            while (*s && *s != ' ')
                s++;
            unsigned n = (unsigned)(s - start);
            if (n && msg_len + n + 1 < sizeof(msg)) {
                if (msg_len)
                    msg[msg_len++] = ' ';
                memcpy(msg + msg_len, start, n);
                msg_len += n;
            }
            continue;
        }
        unsigned key_len = (unsigned)(s - start);
        s++; /* '=' */
        char tmp[RC_LOG_LINE_MAX];
        unsigned n;
        bool quoted;
        const char *v = read_value(&s, tmp, sizeof(tmp), &n, &quoted);
        unsigned mark = o.len;
        put_s(&o, ",\"");
        put_escaped(&o, start, key_len);
        put_s(&o, "\":");
        if (!quoted && is_number(v, n)) {
            put_n(&o, v, n);
        } else {
            put_s(&o, "\"");
            put_escaped(&o, v, n);
            put_s(&o, "\"");
        }
        if (o.full) { /* a field is written whole or not at all */
            o.len = mark;
            break;
        }
    }
    if (msg_len && !o.full) {
        unsigned mark = o.len;
        put_s(&o, ",\"msg\":\"");
        put_escaped(&o, msg, msg_len);
        put_s(&o, "\"");
        if (o.full)
            o.len = mark;
    }
    bool cut = o.full;
    o.cap = cap; /* the reserved tail */
    o.full = false;
    if (cut)
        put_s(&o, ",\"cut\":true");
    put_s(&o, "}");
    o.p[o.len] = '\0';
    return o.len;
}

/* ---- writing ---- */

static void write_line(char *line, unsigned len, unsigned cap)
{
    if (len + 1 >= cap) { /* cut: say so */
        len = cap - 5;
        memcpy(line + len, "...", 3);
        len += 3;
    }
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w; /* nowhere to report a failed log write */
}

void rc_log_write(rc_log_level level, const char *component, const char *fmt, ...)
{
    char pairs[RC_LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(pairs, sizeof(pairs), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((unsigned)n >= sizeof(pairs)) /* cut: say so, in either form */
        memcpy(pairs + sizeof(pairs) - 4, "...", 3);
    char line[RC_LOG_LINE_MAX + 256];
    unsigned len;
    if (atomic_load_explicit(&out_format, memory_order_relaxed) == RC_LOG_FORMAT_JSON) {
        len = rc_log_format_json(line, sizeof(line) - 1, (unsigned long long)rc_clock_wall_ms(), level, component,
                                 pairs);
    } else {
        int k = snprintf(line, sizeof(line) - 1, "level=%s component=%s %s", rc_log_level_name(level), component,
                         pairs);
        len = k < 0 ? 0 : (unsigned)k;
        if (len > sizeof(line) - 1)
            len = sizeof(line) - 1;
        for (unsigned i = 0; i < len; i++) /* a value's newline must not start a line */
            if ((unsigned char)line[i] < 0x20)
                line[i] = ' ';
    }
    write_line(line, len, sizeof(line));
}
