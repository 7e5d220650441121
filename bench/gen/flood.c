/*
 * Flood mode's pure pieces: which refusal code an error reply names, and how
 * much a publisher queues per loop turn (flood.h).
 */
#include <string.h>

#include "flood.h"

static const struct {
    const char *name;      /* the code on the wire */
    const char *key;       /* its result key */
} g_codes[FLOOD_NCODES] = {
    [FLOOD_OVERLOADED] = { "E_OVERLOADED", "refused_overloaded" },
    [FLOOD_RATE_LIMITED] = { "E_RATE_LIMITED", "refused_rate_limited" },
    [FLOOD_NOT_MEMBER] = { "E_NOT_MEMBER", "refused_not_member" },
    [FLOOD_LIMIT] = { "E_LIMIT", "refused_limit" },
    [FLOOD_SHUTTING_DOWN] = { "E_SHUTTING_DOWN", "refused_shutting_down" },
    [FLOOD_INTERNAL] = { "E_INTERNAL", "refused_internal" },
    [FLOOD_REFUSED_OTHER] = { "other", "refused_other" },
};

const char *flood_code_name(flood_code c)
{
    return c < FLOOD_NCODES ? g_codes[c].name : g_codes[FLOOD_REFUSED_OTHER].name;
}

const char *flood_code_key(flood_code c)
{
    return c < FLOOD_NCODES ? g_codes[c].key : g_codes[FLOOD_REFUSED_OTHER].key;
}

flood_code flood_code_of(const char *text, size_t len)
{
    if (!text)
        return FLOOD_REFUSED_OTHER;
    for (int c = 0; c < FLOOD_REFUSED_OTHER; c++)
        if (len == strlen(g_codes[c].name) && memcmp(text, g_codes[c].name, len) == 0)
            return (flood_code)c;
    return FLOOD_REFUSED_OTHER;
}

size_t flood_room(size_t unsent, size_t low, size_t high)
{
    if (unsent >= low || unsent >= high)
        return 0;
    return high - unsent;
}
