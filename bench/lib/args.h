/*
 * Numeric command-line arguments of the bench tools: one parser and one
 * message for all of them; a bad value ends the program with status 2.
 * Header-only, so a tool that links nothing else of bench/lib can use it.
 */
#ifndef RC_BENCH_ARGS_H
#define RC_BENCH_ARGS_H

#include <stdio.h>
#include <stdlib.h>

/* The decimal number s, which must lie in lo..hi; prog and name say whose
 * option was wrong. */
static inline unsigned long rc_bench_arg(const char *prog, const char *s, unsigned long lo, unsigned long hi,
                                         const char *name)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) {
        fprintf(stderr, "%s: %s takes %lu..%lu\n", prog, name, lo, hi);
        exit(2);
    }
    return v;
}

#endif
