/*
 * The WAL's checksum: RocksDB's CRC32C, computed with the CPU's crc32
 * instruction.
 *
 * Every WAL record RocksDB writes carries a CRC32C of its payload
 * (`log::Writer::AddRecord` calls `rocksdb::crc32c::Extend`), and with
 * `durability=batch` every acknowledged tick is one such record, written
 * under the commit lock both shards queue on. Debian's librocksdb is built
 * for baseline x86-64, without SSE4.2, so its Extend runs the byte-table
 * loop: 4.1 % of the server's CPU in a flood fan-out, all of it on that
 * serialized path (src/store/README.md, The WAL's checksum;
 * bench/RESULTS.md, The WAL's checksum).
 *
 * The library calls Extend through its PLT, so a definition in the
 * executable takes its place for every caller, the library's own included.
 * This file is that definition: the `crc32` instruction when the CPU has
 * SSE4.2, otherwise the library's own function (found past this one with
 * dlsym(RTLD_NEXT)), otherwise a bitwise loop. All three give the same
 * value for the same input (tests/unit/test_store.c, test_crc32c), so files
 * written either way read back either way. Nothing else of RocksDB is
 * replaced.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "store/rocks.h"

#define RC_CRC32C_POLY 0x82f63b78u /* Castagnoli, bit-reversed */

uint32_t rc_store_crc32c_bitwise(uint32_t crc, const char *buf, size_t n)
{
    uint32_t l = ~crc;
    const unsigned char *p = (const unsigned char *)buf;
    for (size_t i = 0; i < n; i++) {
        l ^= p[i];
        for (int b = 0; b < 8; b++)
            l = (l >> 1) ^ (RC_CRC32C_POLY & (0u - (l & 1u)));
    }
    return ~l;
}

#if defined(__x86_64__)
#include <nmmintrin.h>

/* One stream of 8-byte steps: a WAL record of a tick is a few KB to a few
 * hundred KB, where this runs near a byte a cycle, against the table
 * loop's several cycles a byte. */
__attribute__((target("sse4.2"))) static uint32_t crc_sse42(uint32_t crc, const char *p, size_t n)
{
    uint64_t l = ~crc;
    while (n && ((uintptr_t)p & 7u)) {
        l = _mm_crc32_u8((uint32_t)l, (unsigned char)*p++);
        n--;
    }
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, sizeof(w));
        l = _mm_crc32_u64(l, w);
    }
    while (n--)
        l = _mm_crc32_u8((uint32_t)l, (unsigned char)*p++);
    return ~(uint32_t)l;
}
#endif

typedef struct crc_choice {
    rc_store_crc32c_fn fn;
    const char *name;
} crc_choice;

static crc_choice choose(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2"))
        return (crc_choice){ crc_sse42, "sse4.2" };
#endif
    rc_store_crc32c_fn lib = rc_store_crc32c_library();
    if (lib)
        return (crc_choice){ lib, "library" };
    return (crc_choice){ rc_store_crc32c_bitwise, "bitwise" };
}

/* Chosen once, on first use: RocksDB may call before any constructor of
 * ours ran. pthread_once's fast path is one acquire load, next to a WAL
 * record's kilobytes. */
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;
static crc_choice chosen_choice;

static void choose_once(void)
{
    chosen_choice = choose();
}

static const crc_choice *chosen(void)
{
    pthread_once(&chosen_once, choose_once);
    return &chosen_choice;
}

uint32_t rc_store_crc32c(uint32_t crc, const void *buf, size_t n)
{
    return chosen()->fn(crc, buf, n);
}

const char *rc_store_crc32c_impl(void)
{
    return chosen()->name;
}

rc_store_crc32c_fn rc_store_crc32c_library(void)
{
    /* RTLD_NEXT from this object: the definition after the executable's,
     * which is librocksdb's own. */
    void *sym = dlsym(RTLD_NEXT, RC_STORE_CRC32C_SYMBOL);
    rc_store_crc32c_fn fn;
    memcpy(&fn, &sym, sizeof(fn)); /* object to function pointer, as POSIX allows */
    return fn;
}

/* The definition RocksDB binds to. */
uint32_t rc_store_crc32c_rocksdb(uint32_t crc, const char *buf, size_t n) __asm__(RC_STORE_CRC32C_SYMBOL);
uint32_t rc_store_crc32c_rocksdb(uint32_t crc, const char *buf, size_t n)
{
    return rc_store_crc32c(crc, buf, n);
}
