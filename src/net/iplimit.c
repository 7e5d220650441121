/*
 * Connections per client IP (iplimit.h): linear probing, backward-shift
 * deletion, so an address whose last connection closed leaves no trace.
 */
#include "net/iplimit.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "core/chash.h"

#define RC_IP_MIN_CAP 64u /* first table, slots */

typedef struct rc_ip_slot {
    rc_ip ip;
    uint32_t count; /* 0: empty slot */
} rc_ip_slot;

int rc_iplimit_init(rc_iplimit *t, uint32_t max_per_ip)
{
    memset(t, 0, sizeof(*t));
    t->max_per_ip = max_per_ip;
    return pthread_mutex_init(&t->mu, NULL) == 0 ? 0 : -1;
}

void rc_iplimit_set_max(rc_iplimit *t, uint32_t max_per_ip)
{
    pthread_mutex_lock(&t->mu);
    t->max_per_ip = max_per_ip; /* addresses already over it keep their connections */
    pthread_mutex_unlock(&t->mu);
}

void rc_iplimit_free(rc_iplimit *t)
{
    free(t->slots);
    t->slots = NULL;
    pthread_mutex_destroy(&t->mu);
}

bool rc_ip_of_peer(int fd, rc_ip *out)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
        return false;
    memset(out, 0, sizeof(*out));
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        out->b[10] = out->b[11] = 0xff; /* ::ffff:a.b.c.d */
        memcpy(out->b + 12, &a->sin_addr, 4);
        return true;
    }
    if (ss.ss_family == AF_INET6) {
        memcpy(out->b, &((const struct sockaddr_in6 *)&ss)->sin6_addr, RC_IP_LEN);
        return true;
    }
    return false;
}

static uint32_t home(const rc_iplimit *t, const rc_ip *ip)
{
    return (uint32_t)rc_hash64(ip->b, RC_IP_LEN) & (t->cap - 1);
}

/* The slot of ip, or of the empty slot where it would go. */
static rc_ip_slot *find(const rc_iplimit *t, const rc_ip *ip)
{
    for (uint32_t i = home(t, ip);; i = (i + 1) & (t->cap - 1)) {
        rc_ip_slot *s = &t->slots[i];
        if (!s->count || memcmp(&s->ip, ip, sizeof(*ip)) == 0)
            return s;
    }
}

/* Keeps the table at most half full. */
static int grow(rc_iplimit *t)
{
    if (t->cap && (t->n + 1) * 2 <= t->cap)
        return 0;
    uint32_t cap = t->cap ? t->cap * 2 : RC_IP_MIN_CAP;
    rc_ip_slot *old = t->slots, *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -1;
    uint32_t old_cap = t->cap;
    t->slots = slots;
    t->cap = cap;
    for (uint32_t i = 0; i < old_cap; i++)
        if (old[i].count)
            *find(t, &old[i].ip) = old[i];
    free(old);
    return 0;
}

bool rc_iplimit_take(rc_iplimit *t, const rc_ip *ip)
{
    pthread_mutex_lock(&t->mu);
    bool ok = grow(t) == 0;
    if (ok) {
        rc_ip_slot *s = find(t, ip);
        if (s->count >= t->max_per_ip) {
            ok = false;
        } else {
            if (!s->count) {
                s->ip = *ip;
                t->n++;
            }
            s->count++;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return ok;
}

void rc_iplimit_release(rc_iplimit *t, const rc_ip *ip)
{
    pthread_mutex_lock(&t->mu);
    rc_ip_slot *s = t->cap ? find(t, ip) : NULL;
    if (s && s->count && --s->count == 0) {
        /* Backward shift: pull later entries of the probe run into the hole. */
        uint32_t hole = (uint32_t)(s - t->slots);
        for (uint32_t i = (hole + 1) & (t->cap - 1); t->slots[i].count; i = (i + 1) & (t->cap - 1)) {
            uint32_t h = home(t, &t->slots[i].ip);
            /* entry i may move to the hole if its home is not in (hole, i] */
            if (((i - h) & (t->cap - 1)) >= ((i - hole) & (t->cap - 1))) {
                t->slots[hole] = t->slots[i];
                t->slots[i].count = 0;
                hole = i;
            }
        }
        t->n--;
    }
    pthread_mutex_unlock(&t->mu);
}

uint32_t rc_iplimit_count(rc_iplimit *t, const rc_ip *ip)
{
    pthread_mutex_lock(&t->mu);
    uint32_t n = t->cap ? find(t, ip)->count : 0;
    pthread_mutex_unlock(&t->mu);
    return n;
}
