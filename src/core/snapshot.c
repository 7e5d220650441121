/* Group snapshot encoding (see snapshot.h). */
#include "core/snapshot.h"

#include <string.h>

#define SNAPSHOT_ZONE 4096u

static int buf_write(void *data, const char *p, size_t n)
{
    return rc_buf_append(data, p, n);
}

static void pack_key(msgpack_packer *pk, const char *k)
{
    size_t n = strlen(k);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, k, n);
}

int rc_snapshot_encode(const rc_group *g, rc_buf *out)
{
    size_t start = out->len;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write);
    int r = msgpack_pack_map(&pk, 6);
    pack_key(&pk, "v");
    r |= msgpack_pack_uint32(&pk, RC_SNAPSHOT_V);
    pack_key(&pk, "version");
    r |= msgpack_pack_uint64(&pk, g->version);
    pack_key(&pk, "last_seq");
    r |= msgpack_pack_uint64(&pk, g->last_seq);
    pack_key(&pk, "members");
    r |= msgpack_pack_array(&pk, g->members.n);
    for (uint32_t i = 0; i < g->members.cap; i++) {
        const rc_strmap_slot *m = &g->members.slots[i];
        if (!m->hash)
            continue;
        r |= msgpack_pack_str(&pk, m->len);
        r |= msgpack_pack_str_body(&pk, m->key, m->len);
    }
    pack_key(&pk, "created");
    r |= msgpack_pack_uint64(&pk, g->created_ms);
    pack_key(&pk, "updated");
    r |= msgpack_pack_uint64(&pk, g->updated_ms);
    if (r != 0) {
        out->len = start;
        return -1;
    }
    return 0;
}

static bool key_is(const msgpack_object *k, const char *s)
{
    size_t n = strlen(s);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n && memcmp(k->via.str.ptr, s, n) == 0;
}

static int apply_members(rc_group *g, const msgpack_object *v, const char **why)
{
    if (v->type != MSGPACK_OBJECT_ARRAY) {
        *why = "members is not an array";
        return -1;
    }
    for (uint32_t i = 0; i < v->via.array.size; i++) {
        const msgpack_object *u = &v->via.array.ptr[i];
        if (u->type != MSGPACK_OBJECT_STR || u->via.str.size == 0 || u->via.str.size > RC_MAX_USER) {
            *why = "a member is not a user name";
            return -1;
        }
        if (rc_strmap_put(&g->members, u->via.str.ptr, u->via.str.size, 1) != 0) {
            *why = "out of memory";
            return -1;
        }
    }
    return 0;
}

static int apply_map(rc_group *g, const msgpack_object *o, const char **why)
{
    if (o->type != MSGPACK_OBJECT_MAP) {
        *why = "snapshot is not a map";
        return -1;
    }
    bool have_v = false;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        if (key_is(k, "members")) {
            if (apply_members(g, v, why) != 0)
                return -1;
            continue;
        }
        if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            continue; /* unknown or future keys */
        if (key_is(k, "v")) {
            have_v = true;
            if (v->via.u64 != RC_SNAPSHOT_V) {
                *why = "snapshot record version is not 1";
                return -1;
            }
        } else if (key_is(k, "version")) {
            g->version = v->via.u64;
        } else if (key_is(k, "last_seq")) {
            g->last_seq = v->via.u64;
        } else if (key_is(k, "created")) {
            g->created_ms = v->via.u64;
        } else if (key_is(k, "updated")) {
            g->updated_ms = v->via.u64;
        }
    }
    if (!have_v) {
        *why = "snapshot has no record version `v`";
        return -1;
    }
    return 0;
}

int rc_snapshot_apply(rc_group *g, const uint8_t *p, uint32_t len, const char **why)
{
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, SNAPSHOT_ZONE)) {
        *why = "out of memory";
        return -1;
    }
    msgpack_object obj;
    size_t off = 0;
    int r = -1;
    msgpack_unpack_return u = msgpack_unpack((const char *)p, len, &off, &zone, &obj);
    if (u == MSGPACK_UNPACK_SUCCESS && off == len)
        r = apply_map(g, &obj, why);
    else
        *why = "snapshot is not valid MessagePack";
    msgpack_zone_destroy(&zone);
    return r;
}
