/*
 * What the libFuzzer targets in tests/fuzz share (tests/fuzz/README.md):
 * the entry point libFuzzer calls, a check that fails as a crash, the
 * comparison of a stream read whole with the same stream read in pieces,
 * and a deterministic stream of numbers drawn from the input itself, which
 * the targets use to cut a byte stream into reads the way a socket would.
 *
 * A failed check prints what broke and calls abort(): libFuzzer reports it
 * as a crash and saves the input, exactly as it does a sanitizer error.
 */
#ifndef RC_TESTS_FUZZ_H
#define RC_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fails the input (abort) unless cond holds; what says which rule broke. */
#define FUZZ_CHECK(cond, what)                                                                     \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(__FILE__, __LINE__, #cond, (what));                                          \
    } while (0)

static inline _Noreturn void fuzz_fail(const char *file, int line, const char *cond, const char *what)
{
    fprintf(stderr, "%s:%d: fuzz check failed: %s (%s)\n", file, line, what, cond);
    abort();
}

/* Prints n bytes for a failure report, printable ASCII as it is and every
 * other byte as \xNN, at most FUZZ_DUMP_MAX bytes. */
#define FUZZ_DUMP_MAX 4096u

static inline void fuzz_dump(const char *label, const void *p, size_t n)
{
    const unsigned char *b = p;
    fprintf(stderr, "%s (%zu bytes): ", label, n);
    for (size_t i = 0; i < n && i < FUZZ_DUMP_MAX; i++) {
        if (b[i] >= 0x20 && b[i] < 0x7f && b[i] != '\\')
            fputc(b[i], stderr);
        else
            fprintf(stderr, "\\x%02x", b[i]);
    }
    fputs(n > FUZZ_DUMP_MAX ? "...\n" : "\n", stderr);
}

/* Fails the input unless the two runs a target compares wrote down the
 * same bytes; prints both first. */
static inline void fuzz_check_same(const char *what, const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen == blen && (alen == 0 || memcmp(a, b, alen) == 0))
        return;
    fuzz_dump("read whole", a, alen);
    fuzz_dump("read in pieces", b, blen);
    fuzz_fail(__FILE__, __LINE__, "the two runs differ", what);
}

/* A splitmix64 stream seeded by an FNV-1a hash of the input: the same
 * input always gives the same numbers, so every crash replays. */
typedef struct fuzz_rng {
    uint64_t state;
} fuzz_rng;

static inline fuzz_rng fuzz_rng_from(const uint8_t *data, size_t size)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 0x100000001b3ull;
    return (fuzz_rng){ h };
}

static inline uint64_t fuzz_rng_next(fuzz_rng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A read of 1..max bytes (max > 0). */
static inline size_t fuzz_rng_chunk(fuzz_rng *r, size_t max)
{
    return 1 + (size_t)(fuzz_rng_next(r) % max);
}

#endif
