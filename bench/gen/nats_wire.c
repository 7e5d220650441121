/*
 * The NATS client protocol's pure pieces (nats_wire.h): items, header
 * status lines, JetStream API replies.
 */
#define _GNU_SOURCE /* memmem */
#include <string.h>

#include "nats_wire.h"

static bool starts(const uint8_t *line, size_t n, const char *word)
{
    size_t w = strlen(word);
    return n >= w && memcmp(line, word, w) == 0;
}

/* Splits line[0..n) at spaces into at most NW_MAX_TOKENS tokens; -1 if more. */
static int tokenize(const uint8_t *line, size_t n, const uint8_t **tok, size_t *tok_len)
{
    int count = 0;
    size_t i = 0;
    while (i < n) {
        while (i < n && line[i] == ' ')
            i++;
        if (i == n)
            break;
        if (count == NW_MAX_TOKENS)
            return -1;
        size_t start = i;
        while (i < n && line[i] != ' ')
            i++;
        tok[count] = line + start;
        tok_len[count++] = i - start;
    }
    return count;
}

static bool parse_size(const uint8_t *s, size_t n, size_t *v)
{
    if (n == 0 || n > 9)
        return false;
    *v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        *v = *v * 10 + (size_t)(s[i] - '0');
    }
    return *v <= NW_MAX_SIZE;
}

/* MSG <subject> <sid> [reply-to] <#bytes> / HMSG ... <#header> <#total>:
 * fills it from the arguments args[0..n); payload points after the control
 * line, avail bytes there. Returns the payload bytes taken (with its CRLF),
 * 0 if incomplete, -1 on error. */
static ssize_t msg_args(nw_item *it, const uint8_t *args, size_t n, const uint8_t *payload,
                        size_t avail)
{
    const uint8_t *tok[NW_MAX_TOKENS];
    size_t tok_len[NW_MAX_TOKENS], hdr = 0, total;
    int sizes = it->kind == NW_HMSG ? 2 : 1;
    int nt = tokenize(args, n, tok, tok_len);
    if (nt < 2 + sizes || nt > 3 + sizes || !parse_size(tok[nt - 1], tok_len[nt - 1], &total))
        return -1;
    if (sizes == 2 && (!parse_size(tok[nt - 2], tok_len[nt - 2], &hdr) || hdr > total))
        return -1;
    it->subject = tok[0];
    it->subject_len = tok_len[0];
    it->reply = nt == 3 + sizes ? tok[2] : NULL;
    it->reply_len = nt == 3 + sizes ? tok_len[2] : 0;
    if (avail < total + 2)
        return 0;
    if (payload[total] != '\r' || payload[total + 1] != '\n')
        return -1;
    it->hdr = sizes == 2 ? payload : NULL;
    it->hdr_len = hdr;
    it->payload = payload + hdr;
    it->payload_len = total - hdr;
    return (ssize_t)(total + 2);
}

ssize_t nw_next(const uint8_t *in, size_t len, nw_item *it)
{
    memset(it, 0, sizeof *it);
    const uint8_t *nl = memchr(in, '\n', len);
    if (!nl)
        return len > NW_MAX_LINE ? -1 : 0;
    size_t n = (size_t)(nl - in); /* the line without its '\n' */
    if (n == 0 || in[n - 1] != '\r' || n > NW_MAX_LINE)
        return -1;
    n--;                          /* and without its '\r' */
    size_t used = n + 2;
    it->line = in;
    it->line_len = n;
    if (starts(in, n, "MSG ") || starts(in, n, "HMSG ")) {
        size_t skip = in[0] == 'H' ? 5 : 4;
        it->kind = in[0] == 'H' ? NW_HMSG : NW_MSG;
        ssize_t body = msg_args(it, in + skip, n - skip, nl + 1, len - used);
        if (body <= 0)
            return body;
        return (ssize_t)(used + (size_t)body);
    }
    if (n == 4 && starts(in, n, "PING"))
        it->kind = NW_PING;
    else if (n == 4 && starts(in, n, "PONG"))
        it->kind = NW_PONG;
    else if (n == 3 && starts(in, n, "+OK"))
        it->kind = NW_OK;
    else if (starts(in, n, "-ERR"))
        it->kind = NW_ERR;
    else if (starts(in, n, "INFO "))
        it->kind = NW_INFO;
    else
        return -1;
    return (ssize_t)used;
}

int nw_status(const uint8_t *hdr, size_t len)
{
    static const char ver[] = "NATS/1.0";
    const size_t vl = sizeof ver - 1;
    if (len < vl + 2 || memcmp(hdr, ver, vl) != 0)
        return -1;
    const uint8_t *eol = memmem(hdr, len, "\r\n", 2);
    if (!eol)
        return -1;
    size_t n = (size_t)(eol - hdr), i = vl;
    if (i == n)
        return 0;
    if (hdr[i] != ' ')
        return -1;
    while (i < n && hdr[i] == ' ')
        i++;
    int code = 0, digits = 0;
    for (; i < n && hdr[i] >= '0' && hdr[i] <= '9' && digits < 3; i++, digits++)
        code = code * 10 + (hdr[i] - '0');
    if (digits != 3 || (i < n && hdr[i] != ' '))
        return -1;
    return code;
}

bool nw_js_error(const uint8_t *json, size_t len, const uint8_t **desc, size_t *desc_len)
{
    static const char err[] = "\"error\":{", key[] = "\"description\":\"";
    *desc = NULL;
    *desc_len = 0;
    const uint8_t *e = memmem(json, len, err, sizeof err - 1);
    if (!e)
        return false;
    size_t rest = len - (size_t)(e - json);
    const uint8_t *d = memmem(e, rest, key, sizeof key - 1);
    if (d) {
        const uint8_t *s = d + sizeof key - 1, *end = json + len, *p = s;
        while (p < end && *p != '"')
            p += *p == '\\' && p + 1 < end ? 2 : 1;
        if (p < end) {
            *desc = s;
            *desc_len = (size_t)(p - s);
        }
    }
    return true;
}

bool nw_js_puback(const uint8_t *json, size_t len)
{
    const uint8_t *desc;
    size_t desc_len;
    if (len < 2 || json[0] != '{' || json[len - 1] != '}' || nw_js_error(json, len, &desc, &desc_len))
        return false;
    return memmem(json, len, "\"stream\":\"", 10) && memmem(json, len, "\"seq\":", 6);
}
