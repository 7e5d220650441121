/* Routes: a version and a consistent-hash ring over shards 0..n-1 (route.h). */
#include "core/route.h"

#include <stdlib.h>

rc_route *rc_route_new(uint64_t version, uint32_t n, uint32_t vnodes)
{
    rc_route *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->version = version;
    r->n = n;
    r->chash = rc_chash_build(n, vnodes);
    if (!r->chash) {
        free(r);
        return NULL;
    }
    return r;
}

void rc_route_free(rc_route *r)
{
    if (!r)
        return;
    rc_chash_destroy(r->chash);
    free(r);
}
