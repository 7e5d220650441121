/*
 * The one logging facility: lines an operator can grep.
 *
 * A line is a level, a component and key=value pairs, written to stderr in
 * one write(2) so lines of different threads never interleave:
 *
 *   text:  level=warn component=io event=slow_consumer_closed sid=7 queued=1048576
 *   json:  {"ts":1764580000123,"level":"warn","component":"io","event":"slow_consumer_closed","sid":7,...}
 *
 * Callers format the pairs themselves (`event=name k=v k2="quoted text"`);
 * the JSON form parses them back into fields (unquoted numbers stay numbers,
 * a bare word without `=` goes to "msg"). The level and format are set from
 * `log_level` / `log_format` at start and on a config reload, and read with
 * relaxed atomics on every call, so a disabled level costs one load and one
 * compare (the macros test it before formatting anything).
 */
#ifndef RC_CORE_LOG_H
#define RC_CORE_LOG_H

#include <stdbool.h>

typedef enum rc_log_level {
    RC_LEVEL_DEBUG = 0,
    RC_LEVEL_INFO = 1,
    RC_LEVEL_WARN = 2,
    RC_LEVEL_ERROR = 3,
} rc_log_level;

typedef enum rc_log_format {
    RC_LOG_FORMAT_TEXT = 0, /* key=value pairs */
    RC_LOG_FORMAT_JSON = 1, /* one JSON object per line */
} rc_log_format;

#define RC_LOG_LINE_MAX 2048u /* bytes of one line; longer ones are cut and end in "..." */

/* Names as in the config file: debug|info|warn|error, text|json. 0 or -1. */
int rc_log_level_parse(const char *name, rc_log_level *out);
int rc_log_format_parse(const char *name, rc_log_format *out);
const char *rc_log_level_name(rc_log_level level);

/* Sets the lowest level written and the format (any thread, any time). */
void rc_log_configure(rc_log_level min, rc_log_format format);
bool rc_log_enabled(rc_log_level level);

/* Writes one line; `fmt` formats the key=value pairs. */
void rc_log_write(rc_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define RC_LOG(level, component, ...)                                                                  \
    do {                                                                                               \
        if (rc_log_enabled(level))                                                                     \
            rc_log_write(level, component, __VA_ARGS__);                                               \
    } while (0)

#define RC_LOG_DEBUG(component, ...) RC_LOG(RC_LEVEL_DEBUG, component, __VA_ARGS__)
#define RC_LOG_INFO(component, ...) RC_LOG(RC_LEVEL_INFO, component, __VA_ARGS__)
#define RC_LOG_WARN(component, ...) RC_LOG(RC_LEVEL_WARN, component, __VA_ARGS__)
#define RC_LOG_ERROR(component, ...) RC_LOG(RC_LEVEL_ERROR, component, __VA_ARGS__)

/* Formats the JSON form of one line into out (for tests); returns its length. */
unsigned rc_log_format_json(char *out, unsigned cap, unsigned long long ts_ms, rc_log_level level,
                            const char *component, const char *pairs);

#endif
