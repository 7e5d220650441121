/*
 * What the store keeps in memory is bounded and shown (src/ARCHITECTURE.md
 * §8): block_cache_mb sets RocksDB's block cache, default 8 MiB, and
 * /metrics shows its capacity, its usage and the memtables
 * (ringcast_store_*_bytes). Messages written go to the memtables, whose
 * size the gauge follows, and stay in the tick log's table until it holds
 * tick_log_fold_mb (ringcast_store_tick_log_bytes).
 */
#define _GNU_SOURCE
#include "itest.h"

#define MIB (1024.0 * 1024.0)
#define MESSAGES 200
#define BODY_BYTES 1000

static it_server srv;

static int cleanup(void)
{
    return it_cleanup(&srv);
}

static double metric(const char *name)
{
    return rc_test_metric(srv.s.admin_port, name, 0);
}

static void test_default_bound(void)
{
    CU_ASSERT_FATAL(it_start(&srv, NULL) == 0);
    CU_ASSERT(metric("ringcast_store_block_cache_capacity_bytes ") == 8 * MIB);
    CU_ASSERT(metric("ringcast_store_history_l0_files ") == 0); /* nothing flushed yet */
    double used = metric("ringcast_store_block_cache_bytes ");
    CU_ASSERT(used >= 0 && used <= 8 * MIB);
    CU_ASSERT(it_stop(&srv) == 0);
}

static void test_configured_bound_and_memtable(void)
{
    const char *const flags[] = { "--block-cache-mb", "2", NULL };
    CU_ASSERT_FATAL(it_start(&srv, flags) == 0);
    CU_ASSERT(metric("ringcast_store_block_cache_capacity_bytes ") == 2 * MIB);
    double before = metric("ringcast_store_memtable_bytes ");
    CU_ASSERT_FATAL(before >= 0);
    CU_ASSERT(metric("ringcast_store_tick_log_bytes ") == 0);
    rc_client c;
    CU_ASSERT_FATAL(it_login(&c, &srv, "writer") == 0);
    CU_ASSERT_FATAL(rc_client_join(&c, "mem", IT_TIMEOUT_MS, NULL) == 0);
    static char body[BODY_BYTES];
    memset(body, 'm', sizeof(body));
    int acked = 0;
    for (int i = 0; i < MESSAGES; i++)
        acked += rc_client_publish(&c, "mem", body, sizeof(body), NULL, IT_TIMEOUT_MS, NULL) == 0;
    CU_ASSERT(acked == MESSAGES);
    double after = metric("ringcast_store_memtable_bytes ");
    CU_ASSERT(after - before >= MESSAGES * BODY_BYTES); /* no flush: 200 kB is far from the 64 MiB write buffer */
    double tick_log = metric("ringcast_store_tick_log_bytes ");
    CU_ASSERT(tick_log >= MESSAGES * BODY_BYTES && tick_log < 8 * MIB); /* not folded: far from 8 MiB */
    rc_client_close(&c);
    CU_ASSERT(it_stop(&srv) == 0);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite su = CU_add_suite("store memory", NULL, cleanup);
    CU_add_test(su, "block_cache_mb defaults to 8 MiB, shown in /metrics", test_default_bound);
    CU_add_test(su, "block_cache_mb 2 and the memtable gauge", test_configured_bound_and_memtable);
    return rc_test_run();
}
