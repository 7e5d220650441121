/*
 * Single-threaded tests of the SPSC and MPSC rings: capacity validation,
 * single/bulk/burst semantics, full and empty rings, the cached copies of
 * the other side's index, index wraparound and count. The concurrent behaviour is in tests/tsan/test_ring_stress.c.
 */
#include "core/ring.h"

#include <CUnit/Basic.h>
#include <stdint.h>

#define SMALL_CAPACITY 8u
#define WRAP_CYCLES 100000u
#define BATCH_MAX 16u

static const rc_ring_kind KINDS[] = { RC_RING_SPSC, RC_RING_MPSC };
#define NKINDS (sizeof KINDS / sizeof KINDS[0])

/* Distinct non-NULL pointer values. */
static void *item(uintptr_t i)
{
    return (void *)(i + 1);
}

static void test_create_validation(void)
{
    static const uint32_t bad[] = { 0, 1, 3, 6, 100, RC_RING_MAX_CAPACITY + 1u,
                                    RC_RING_MAX_CAPACITY * 2u, UINT32_MAX };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CU_ASSERT_PTR_NULL(rc_ring_create(bad[i], RC_RING_SPSC));
    CU_ASSERT_PTR_NULL(rc_ring_create(SMALL_CAPACITY, (rc_ring_kind)7));

    static const uint32_t good[] = { 2, 4, 1024 };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        for (size_t k = 0; k < NKINDS; k++) {
            rc_ring *r = rc_ring_create(good[i], KINDS[k]);
            CU_ASSERT_PTR_NOT_NULL_FATAL(r);
            CU_ASSERT_EQUAL(rc_ring_capacity(r), good[i]);
            CU_ASSERT_EQUAL(rc_ring_count(r), 0);
            rc_ring_destroy(r);
        }
    }
    rc_ring_destroy(NULL);
}

static void check_single(rc_ring_kind kind)
{
    rc_ring *r = rc_ring_create(SMALL_CAPACITY, kind);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    void *out = NULL;
    CU_ASSERT_EQUAL(rc_ring_dequeue_burst(r, &out, 1), 0);
    CU_ASSERT_EQUAL(rc_ring_dequeue_bulk(r, &out, 1), 0);
    for (uint32_t i = 0; i < SMALL_CAPACITY; i++) {
        CU_ASSERT_TRUE(rc_ring_enqueue(r, item(i)));
        CU_ASSERT_EQUAL(rc_ring_count(r), i + 1);
    }
    CU_ASSERT_FALSE(rc_ring_enqueue(r, item(99))); /* full */
    CU_ASSERT_EQUAL(rc_ring_count(r), SMALL_CAPACITY);
    for (uint32_t i = 0; i < SMALL_CAPACITY; i++) {
        CU_ASSERT_EQUAL(rc_ring_dequeue_bulk(r, &out, 1), 1);
        CU_ASSERT_PTR_EQUAL(out, item(i)); /* FIFO */
    }
    CU_ASSERT_EQUAL(rc_ring_count(r), 0);
    CU_ASSERT_EQUAL(rc_ring_dequeue_burst(r, &out, 1), 0); /* empty */
    rc_ring_destroy(r);
}

static void test_single(void)
{
    for (size_t k = 0; k < NKINDS; k++)
        check_single(KINDS[k]);
}

/* rc_ring_dequeue: FIFO with rc_ring_enqueue and with the bulk forms, false
 * (and *obj untouched) on an empty ring. */
static void check_single_dequeue(rc_ring_kind kind)
{
    rc_ring *r = rc_ring_create(SMALL_CAPACITY, kind);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    void *out = item(99);
    CU_ASSERT_FALSE(rc_ring_dequeue(r, &out));
    CU_ASSERT_PTR_EQUAL(out, item(99));
    void *in[3] = { item(1), item(2), item(3) };
    CU_ASSERT_TRUE(rc_ring_enqueue(r, item(0)));
    CU_ASSERT_EQUAL(rc_ring_enqueue_bulk(r, in, 3), 3);
    for (uintptr_t i = 0; i < 4; i++) {
        CU_ASSERT_TRUE(rc_ring_dequeue(r, &out));
        CU_ASSERT_PTR_EQUAL(out, item(i));
        CU_ASSERT_EQUAL(rc_ring_count(r), 3 - i);
    }
    CU_ASSERT_FALSE(rc_ring_dequeue(r, &out));
    CU_ASSERT_PTR_EQUAL(out, item(3));
    rc_ring_destroy(r);
}

static void test_single_dequeue(void)
{
    for (size_t k = 0; k < NKINDS; k++)
        check_single_dequeue(KINDS[k]);
}

/* Each side caches the other's index; a stale copy must never make a full
 * ring look fuller, or an empty one emptier, than it is once the other side
 * has moved: the copy is reloaded before an operation is refused or cut. */
static void check_cached_indices(rc_ring_kind kind)
{
    rc_ring *r = rc_ring_create(SMALL_CAPACITY, kind);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    void *in[SMALL_CAPACITY * 2];
    void *out[SMALL_CAPACITY * 2];
    for (uint32_t i = 0; i < SMALL_CAPACITY * 2; i++)
        in[i] = item(i);

    /* The producer saw the ring full; the consumer then frees 3 slots. */
    CU_ASSERT_EQUAL(rc_ring_enqueue_burst(r, in, SMALL_CAPACITY), SMALL_CAPACITY);
    CU_ASSERT_FALSE(rc_ring_enqueue(r, in[SMALL_CAPACITY]));
    CU_ASSERT_EQUAL(rc_ring_dequeue_burst(r, out, 3), 3);
    CU_ASSERT_EQUAL(rc_ring_enqueue_burst(r, in + SMALL_CAPACITY, 10), 3); /* all 3, not 0 */
    CU_ASSERT_EQUAL(rc_ring_count(r), SMALL_CAPACITY);
    CU_ASSERT_EQUAL(rc_ring_dequeue_bulk(r, out, 1), 1);
    CU_ASSERT_TRUE(rc_ring_enqueue(r, in[SMALL_CAPACITY + 3])); /* the one freed slot */
    CU_ASSERT_FALSE(rc_ring_enqueue(r, in[SMALL_CAPACITY + 4]));

    /* The consumer saw the ring empty; the producer then adds 2. */
    CU_ASSERT_EQUAL(rc_ring_dequeue_burst(r, out, SMALL_CAPACITY * 2), SMALL_CAPACITY);
    for (uint32_t i = 0; i < SMALL_CAPACITY; i++)
        CU_ASSERT_PTR_EQUAL(out[i], in[i + 4]); /* FIFO across the refills */
    void *one = NULL;
    CU_ASSERT_FALSE(rc_ring_dequeue(r, &one));
    CU_ASSERT_EQUAL(rc_ring_enqueue_bulk(r, in, 2), 2);
    CU_ASSERT_EQUAL(rc_ring_dequeue_burst(r, out, SMALL_CAPACITY), 2); /* both, not 0 */
    CU_ASSERT_TRUE(rc_ring_enqueue(r, in[2]));
    CU_ASSERT_TRUE(rc_ring_dequeue(r, &one));
    CU_ASSERT_PTR_EQUAL(one, in[2]);
    CU_ASSERT_EQUAL(rc_ring_count(r), 0);
    rc_ring_destroy(r);
}

static void test_cached_indices(void)
{
    for (size_t k = 0; k < NKINDS; k++)
        check_cached_indices(KINDS[k]);
}

static void check_bulk_all_or_nothing(rc_ring_kind kind)
{
    rc_ring *r = rc_ring_create(SMALL_CAPACITY, kind);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    void *in[SMALL_CAPACITY * 2];
    void *out[SMALL_CAPACITY * 2] = { 0 };
    for (uint32_t i = 0; i < SMALL_CAPACITY * 2; i++)
        in[i] = item(i);

    CU_ASSERT_EQUAL(rc_ring_enqueue_bulk(r, in, SMALL_CAPACITY + 1), 0); /* too many */
    CU_ASSERT_EQUAL(rc_ring_count(r), 0);
    CU_ASSERT_EQUAL(rc_ring_enqueue_bulk(r, in, 5), 5);
    CU_ASSERT_EQUAL(rc_ring_enqueue_bulk(r, in + 5, 4), 0); /* only 3 free */
    CU_ASSERT_EQUAL(rc_ring_count(r), 5);
    CU_ASSERT_EQUAL(rc_ring_enqueue_bulk(r, in + 5, 3), 3); /* exactly full */
    CU_ASSERT_EQUAL(rc_ring_count(r), SMALL_CAPACITY);

    CU_ASSERT_EQUAL(rc_ring_dequeue_bulk(r, out, SMALL_CAPACITY + 1), 0);
    CU_ASSERT_EQUAL(rc_ring_count(r), SMALL_CAPACITY);
    CU_ASSERT_EQUAL(rc_ring_dequeue_bulk(r, out, 6), 6);
    CU_ASSERT_EQUAL(rc_ring_dequeue_bulk(r, out + 6, 3), 0); /* only 2 left */
    CU_ASSERT_EQUAL(rc_ring_dequeue_bulk(r, out + 6, 2), 2);
    for (uint32_t i = 0; i < SMALL_CAPACITY; i++)
        CU_ASSERT_PTR_EQUAL(out[i], in[i]);
    CU_ASSERT_EQUAL(rc_ring_enqueue_bulk(r, in, 0), 0);
    CU_ASSERT_EQUAL(rc_ring_dequeue_bulk(r, out, 0), 0);
    rc_ring_destroy(r);
}

static void test_bulk_all_or_nothing(void)
{
    for (size_t k = 0; k < NKINDS; k++)
        check_bulk_all_or_nothing(KINDS[k]);
}

static void check_burst(rc_ring_kind kind)
{
    rc_ring *r = rc_ring_create(SMALL_CAPACITY, kind);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    void *in[SMALL_CAPACITY * 2];
    void *out[SMALL_CAPACITY * 2] = { 0 };
    for (uint32_t i = 0; i < SMALL_CAPACITY * 2; i++)
        in[i] = item(i);

    CU_ASSERT_EQUAL(rc_ring_enqueue_burst(r, in, 5), 5);
    CU_ASSERT_EQUAL(rc_ring_enqueue_burst(r, in + 5, 10), 3); /* as many as fit */
    CU_ASSERT_EQUAL(rc_ring_enqueue_burst(r, in + 8, 1), 0);  /* full */
    CU_ASSERT_EQUAL(rc_ring_count(r), SMALL_CAPACITY);

    CU_ASSERT_EQUAL(rc_ring_dequeue_burst(r, out, 3), 3);
    CU_ASSERT_EQUAL(rc_ring_dequeue_burst(r, out + 3, 100), 5); /* as many as there are */
    CU_ASSERT_EQUAL(rc_ring_dequeue_burst(r, out, 4), 0);
    for (uint32_t i = 0; i < SMALL_CAPACITY; i++)
        CU_ASSERT_PTR_EQUAL(out[i], in[i]);
    rc_ring_destroy(r);
}

static void test_burst(void)
{
    for (size_t k = 0; k < NKINDS; k++)
        check_burst(KINDS[k]);
}

/* Varying batch sizes over many cycles: every slot offset and the split
 * copy at the array's end are exercised many times over. */
static void check_wraparound(rc_ring_kind kind)
{
    rc_ring *r = rc_ring_create(SMALL_CAPACITY, kind);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    void *in[SMALL_CAPACITY];
    void *out[SMALL_CAPACITY];
    uintptr_t next_in = 0, next_out = 0;
    unsigned failures = 0;
    for (uint32_t cycle = 0; cycle < WRAP_CYCLES; cycle++) {
        uint32_t n = 1 + cycle % (SMALL_CAPACITY - 1);
        for (uint32_t i = 0; i < n; i++)
            in[i] = item(next_in + i);
        uint32_t put;
        switch (cycle % 3) {
        case 0:
            put = rc_ring_enqueue_bulk(r, in, n);
            break;
        case 1:
            put = rc_ring_enqueue_burst(r, in, n);
            break;
        default:
            put = rc_ring_enqueue(r, in[0]) ? 1 : 0;
        }
        next_in += put;
        uint32_t got = cycle % 5 == 0 ? (uint32_t)rc_ring_dequeue(r, out)
                                      : rc_ring_dequeue_burst(r, out, 1 + cycle % SMALL_CAPACITY);
        for (uint32_t i = 0; i < got; i++)
            failures += out[i] != item(next_out++);
        failures += rc_ring_count(r) != (uint32_t)(next_in - next_out);
    }
    CU_ASSERT_EQUAL(failures, 0);
    CU_ASSERT_TRUE(next_in > WRAP_CYCLES); /* indices went round the ring many times */
    rc_ring_destroy(r);
}

static void test_wraparound(void)
{
    for (size_t k = 0; k < NKINDS; k++)
        check_wraparound(KINDS[k]);
}

static void test_count(void)
{
    rc_ring *r = rc_ring_create(BATCH_MAX, RC_RING_MPSC);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    void *buf[BATCH_MAX];
    for (uint32_t i = 0; i < BATCH_MAX; i++)
        buf[i] = item(i);
    CU_ASSERT_EQUAL(rc_ring_enqueue_bulk(r, buf, 7), 7);
    CU_ASSERT_EQUAL(rc_ring_count(r), 7);
    CU_ASSERT_EQUAL(rc_ring_dequeue_bulk(r, buf, 2), 2);
    CU_ASSERT_EQUAL(rc_ring_count(r), 5);
    CU_ASSERT_EQUAL(rc_ring_enqueue_burst(r, buf, BATCH_MAX), BATCH_MAX - 5);
    CU_ASSERT_EQUAL(rc_ring_count(r), BATCH_MAX);
    CU_ASSERT_EQUAL(rc_ring_dequeue_burst(r, buf, BATCH_MAX), BATCH_MAX);
    CU_ASSERT_EQUAL(rc_ring_count(r), 0);
    rc_ring_destroy(r);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return CU_get_error();
    CU_pSuite s = CU_add_suite("ring", NULL, NULL);
    if (s == NULL || !CU_add_test(s, "create validation", test_create_validation) ||
        !CU_add_test(s, "single enqueue/dequeue", test_single) ||
        !CU_add_test(s, "single dequeue", test_single_dequeue) ||
        !CU_add_test(s, "cached indices are reloaded", test_cached_indices) ||
        !CU_add_test(s, "bulk all or nothing", test_bulk_all_or_nothing) ||
        !CU_add_test(s, "burst as many as fit", test_burst) ||
        !CU_add_test(s, "wraparound", test_wraparound) || !CU_add_test(s, "count", test_count)) {
        CU_cleanup_registry();
        return CU_get_error();
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failures = CU_get_number_of_failures();
    CU_cleanup_registry();
    return failures ? 1 : 0;
}
