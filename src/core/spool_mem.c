/*
 * The in-memory spool (core/spool.h): a sorted array of records. Letters
 * arrive with rising keys and drain from the oldest, so a put is almost
 * always an append and a delete almost always takes the head; both are then
 * O(1). A put with an older key (a letter Kafka gave back) is inserted in
 * place.
 */
#include "core/spool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SPOOL_MEM_MIN 64u /* first allocation, records */

typedef struct mem_rec {
    uint64_t key;
    uint32_t len;
    uint8_t *data;
} mem_rec;

struct rc_spool_mem {
    mem_rec *r;         /* live records are r[head..n), ascending by key */
    size_t head, n, cap;
};

rc_spool_mem *rc_spool_mem_new(void)
{
    return calloc(1, sizeof(rc_spool_mem));
}

void rc_spool_mem_free(rc_spool_mem *m)
{
    if (!m)
        return;
    for (size_t i = m->head; i < m->n; i++)
        free(m->r[i].data);
    free(m->r);
    free(m);
}

/* First index in [head, n) whose key is >= key. */
static size_t lower_bound(const rc_spool_mem *m, uint64_t key)
{
    size_t lo = m->head, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->r[mid].key < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Room for one more record at the end: slides the live range to the front
 * when the head has moved, else grows. */
static int make_room(rc_spool_mem *m)
{
    if (m->n < m->cap)
        return 0;
    if (m->head > 0) {
        memmove(m->r, m->r + m->head, (m->n - m->head) * sizeof(mem_rec));
        m->n -= m->head;
        m->head = 0;
        return 0;
    }
    size_t cap = m->cap ? m->cap * 2 : SPOOL_MEM_MIN;
    mem_rec *r = realloc(m->r, cap * sizeof(mem_rec));
    if (!r)
        return -1;
    m->r = r;
    m->cap = cap;
    return 0;
}

static int mem_put(void *self, uint64_t key, const uint8_t *rec, uint32_t len, char *err, size_t errlen)
{
    rc_spool_mem *m = self;
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy || make_room(m) != 0) {
        free(copy);
        snprintf(err, errlen, "out of memory spooling a dead letter");
        return -1;
    }
    memcpy(copy, rec, len);
    size_t at = lower_bound(m, key);
    if (at < m->n && m->r[at].key == key) { /* same key: replace */
        free(m->r[at].data);
        m->r[at] = (mem_rec){ key, len, copy };
        return 0;
    }
    memmove(m->r + at + 1, m->r + at, (m->n - at) * sizeof(mem_rec));
    m->r[at] = (mem_rec){ key, len, copy };
    m->n++;
    return 0;
}

static void mem_del_one(rc_spool_mem *m, uint64_t key)
{
    size_t at = lower_bound(m, key);
    if (at == m->n || m->r[at].key != key)
        return; /* deleting what is not there is not an error, as in RocksDB */
    free(m->r[at].data);
    if (at == m->head) {
        m->head++;
    } else {
        memmove(m->r + at, m->r + at + 1, (m->n - at - 1) * sizeof(mem_rec));
        m->n--;
    }
    if (m->head == m->n)
        m->head = m->n = 0;
}

static int mem_del(void *self, const uint64_t *keys, uint32_t n, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    for (uint32_t i = 0; i < n; i++)
        mem_del_one(self, keys[i]);
    return 0;
}

static int mem_scan(void *self, uint64_t from, uint32_t limit, rc_spool_fn fn, void *ud, char *err, size_t errlen)
{
    rc_spool_mem *m = self;
    (void)err;
    (void)errlen;
    for (size_t i = lower_bound(m, from); i < m->n && limit > 0; i++, limit--)
        if (fn(ud, m->r[i].key, m->r[i].data, m->r[i].len) != 0)
            break;
    return 0;
}

static const rc_spool_ops mem_ops = { .put = mem_put, .del = mem_del, .scan = mem_scan };

rc_spool rc_spool_mem_spool(rc_spool_mem *m)
{
    return (rc_spool){ .ops = &mem_ops, .self = m };
}
