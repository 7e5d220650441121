/*
 * Open-addressing string map. The load factor stays at or below 1/2 so
 * probes are short; deletion shifts later entries of the same run back into
 * the hole, which keeps lookups correct without tombstones.
 */
#include "core/strmap.h"

#include <stdlib.h>
#include <string.h>

#include "core/chash.h"

static uint64_t key_hash(const void *key, uint32_t len)
{
    uint64_t h = rc_hash64(key, len);
    return h ? h : 1; /* 0 marks empty slots */
}

void rc_strmap_init(rc_strmap *m)
{
    m->slots = NULL;
    m->cap = m->n = 0;
}

void rc_strmap_free(rc_strmap *m)
{
    for (uint32_t i = 0; i < m->cap; i++)
        free(m->slots[i].key);
    free(m->slots);
    rc_strmap_init(m);
}

static uint32_t find_slot(const rc_strmap *m, uint64_t h, const void *key, uint32_t len)
{
    uint32_t mask = m->cap - 1;
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
        const rc_strmap_slot *s = &m->slots[i];
        if (s->hash == 0 || (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0))
            return i;
    }
}

uint64_t *rc_strmap_get(const rc_strmap *m, const void *key, uint32_t len)
{
    if (m->n == 0)
        return NULL;
    uint32_t i = find_slot(m, key_hash(key, len), key, len);
    return m->slots[i].hash ? &m->slots[i].val : NULL;
}

void rc_strmap_prefetch(const rc_strmap *m, const void *key, uint32_t len)
{
    if (m->n > 0)
        __builtin_prefetch(&m->slots[(uint32_t)key_hash(key, len) & (m->cap - 1)]);
}

static int grow(rc_strmap *m)
{
    uint32_t cap = m->cap ? m->cap * 2 : RC_STRMAP_MIN_CAP;
    rc_strmap_slot *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -1;
    rc_strmap old = *m;
    m->slots = slots;
    m->cap = cap;
    for (uint32_t i = 0; i < old.cap; i++) {
        if (old.slots[i].hash)
            m->slots[find_slot(m, old.slots[i].hash, old.slots[i].key, old.slots[i].len)] = old.slots[i];
    }
    free(old.slots);
    return 0;
}

int rc_strmap_put_key(rc_strmap *m, const void *key, uint32_t len, uint64_t val, const char **stored, uint64_t *old)
{
    if ((m->n + 1) * 2 > m->cap && grow(m) != 0)
        return -1;
    uint64_t h = key_hash(key, len);
    rc_strmap_slot *s = &m->slots[find_slot(m, h, key, len)];
    if (s->hash) {
        if (old)
            *old = s->val;
        s->val = val;
        *stored = s->key;
        return 0;
    }
    char *copy = malloc(len + 1u);
    if (!copy)
        return -1;
    memcpy(copy, key, len);
    copy[len] = '\0';
    *s = (rc_strmap_slot){ h, copy, len, val };
    m->n++;
    *stored = copy;
    if (old)
        *old = 0;
    return 0;
}

int rc_strmap_put(rc_strmap *m, const void *key, uint32_t len, uint64_t val)
{
    const char *stored;
    return rc_strmap_put_key(m, key, len, val, &stored, NULL);
}

bool rc_strmap_del(rc_strmap *m, const void *key, uint32_t len)
{
    if (m->n == 0)
        return false;
    uint32_t mask = m->cap - 1;
    uint32_t i = find_slot(m, key_hash(key, len), key, len);
    if (!m->slots[i].hash)
        return false;
    free(m->slots[i].key);
    m->slots[i].key = NULL;
    m->slots[i].hash = 0;
    m->n--;
    /* Backward shift: move each later entry of the run into the hole if its
     * home slot does not lie cyclically between the hole and itself. */
    for (uint32_t j = (i + 1) & mask; m->slots[j].hash; j = (j + 1) & mask) {
        uint32_t home = (uint32_t)m->slots[j].hash & mask;
        bool stays = (j > i) ? (home > i && home <= j) : (home > i || home <= j);
        if (stays)
            continue;
        m->slots[i] = m->slots[j];
        m->slots[j].hash = 0;
        m->slots[j].key = NULL;
        i = j;
    }
    return true;
}
