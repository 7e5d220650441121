/*
 * The load generator's flood mode, its pure pieces (bench/gen/flood.c): an
 * error reply is counted under the protocol code it names exactly and
 * anything else under "other", every code has its own result key, and a
 * publisher refills only below the low-water mark, up to the high one.
 */
#include "testutil.h"

#include <CUnit/Basic.h>
#include <stdbool.h>
#include <string.h>

/* The generator is a program, not a library: its pure file is built in. */
#include "../../bench/gen/flood.c"

static flood_code code_of(const char *s)
{
    return flood_code_of(s, strlen(s));
}

static void test_known_codes(void)
{
    CU_ASSERT_EQUAL(code_of("E_OVERLOADED"), FLOOD_OVERLOADED);
    CU_ASSERT_EQUAL(code_of("E_RATE_LIMITED"), FLOOD_RATE_LIMITED);
    CU_ASSERT_EQUAL(code_of("E_NOT_MEMBER"), FLOOD_NOT_MEMBER);
    CU_ASSERT_EQUAL(code_of("E_LIMIT"), FLOOD_LIMIT);
    CU_ASSERT_EQUAL(code_of("E_SHUTTING_DOWN"), FLOOD_SHUTTING_DOWN);
    CU_ASSERT_EQUAL(code_of("E_INTERNAL"), FLOOD_INTERNAL);
    for (int c = 0; c < FLOOD_REFUSED_OTHER; c++)
        CU_ASSERT_EQUAL(code_of(flood_code_name((flood_code)c)), (flood_code)c);
}

static void test_other_codes(void)
{
    /* exact names only: no prefixes, extensions, case folding */
    CU_ASSERT_EQUAL(code_of("E_OVERLOADEDX"), FLOOD_REFUSED_OTHER);
    CU_ASSERT_EQUAL(code_of("E_OVERLOAD"), FLOOD_REFUSED_OTHER);
    CU_ASSERT_EQUAL(code_of("e_overloaded"), FLOOD_REFUSED_OTHER);
    CU_ASSERT_EQUAL(code_of("E_LIMITS"), FLOOD_REFUSED_OTHER);
    CU_ASSERT_EQUAL(code_of("E_BAD_FIELD"), FLOOD_REFUSED_OTHER);
    CU_ASSERT_EQUAL(code_of("E_SOMETHING_NEW"), FLOOD_REFUSED_OTHER);
    CU_ASSERT_EQUAL(code_of("other"), FLOOD_REFUSED_OTHER);
    /* what the peers send */
    CU_ASSERT_EQUAL(code_of("-ERR 'Slow Consumer'"), FLOOD_REFUSED_OTHER);
    CU_ASSERT_EQUAL(code_of("ERR unknown command"), FLOOD_REFUSED_OTHER);
    CU_ASSERT_EQUAL(code_of(""), FLOOD_REFUSED_OTHER);
    CU_ASSERT_EQUAL(flood_code_of(NULL, 0), FLOOD_REFUSED_OTHER);
    /* the text is not NUL-terminated: only len bytes count */
    CU_ASSERT_EQUAL(flood_code_of("E_LIMITED", 7), FLOOD_LIMIT);
    CU_ASSERT_EQUAL(flood_code_of("E_OVERLOADED", 5), FLOOD_REFUSED_OTHER);
}

static void test_keys(void)
{
    for (int a = 0; a < FLOOD_NCODES; a++) {
        const char *k = flood_code_key((flood_code)a);
        CU_ASSERT_PTR_NOT_NULL_FATAL(k);
        CU_ASSERT_EQUAL(strncmp(k, "refused_", 8), 0);
        for (const char *p = k; *p; p++) /* a key=value, JSON and CSV name */
            CU_ASSERT((*p >= 'a' && *p <= 'z') || *p == '_');
        for (int b = a + 1; b < FLOOD_NCODES; b++)
            CU_ASSERT_NOT_EQUAL(strcmp(k, flood_code_key((flood_code)b)), 0);
    }
    CU_ASSERT_STRING_EQUAL(flood_code_key(FLOOD_OVERLOADED), "refused_overloaded");
    CU_ASSERT_STRING_EQUAL(flood_code_key(FLOOD_REFUSED_OTHER), "refused_other");
    CU_ASSERT_STRING_EQUAL(flood_code_key(FLOOD_NCODES), "refused_other");
    CU_ASSERT_STRING_EQUAL(flood_code_name(FLOOD_NCODES), "other");
}

static void test_room(void)
{
    CU_ASSERT_EQUAL(flood_room(0, FLOOD_LOW_WATER, FLOOD_HIGH_WATER), FLOOD_HIGH_WATER);
    CU_ASSERT_EQUAL(flood_room(FLOOD_LOW_WATER - 1, FLOOD_LOW_WATER, FLOOD_HIGH_WATER),
                    FLOOD_HIGH_WATER - FLOOD_LOW_WATER + 1);
    /* at or above the low-water mark nothing is added: writes stay large */
    CU_ASSERT_EQUAL(flood_room(FLOOD_LOW_WATER, FLOOD_LOW_WATER, FLOOD_HIGH_WATER), 0);
    CU_ASSERT_EQUAL(flood_room(FLOOD_HIGH_WATER, FLOOD_LOW_WATER, FLOOD_HIGH_WATER), 0);
    CU_ASSERT_EQUAL(flood_room(FLOOD_HIGH_WATER * 4, FLOOD_LOW_WATER, FLOOD_HIGH_WATER), 0);
    /* a low mark above the high one never overfills */
    CU_ASSERT_EQUAL(flood_room(10, 100, 5), 0);
    CU_ASSERT_EQUAL(flood_room(3, 100, 5), 2);
    CU_ASSERT(FLOOD_LOW_WATER < FLOOD_HIGH_WATER);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return CU_get_error();
    CU_pSuite s = CU_add_suite("bench_flood", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "protocol codes by exact name", test_known_codes) ||
        !CU_add_test(s, "everything else is other", test_other_codes) ||
        !CU_add_test(s, "one distinct result key per code", test_keys) ||
        !CU_add_test(s, "refill below low water, up to high", test_room)) {
        CU_cleanup_registry();
        return CU_get_error();
    }
    return rc_test_run();
}
