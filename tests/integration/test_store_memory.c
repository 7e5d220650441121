/*
 * What the store keeps in memory is bounded and shown (src/ARCHITECTURE.md
 * §8): block_cache_mb sets RocksDB's block cache, default 8 MiB, and
 * /metrics shows its capacity, its usage and the memtables
 * (ringcast_store_*_bytes). Messages written go to the tick log's segment
 * files (ringcast_store_tick_log_disk_bytes), not to the memtables, and its
 * table in memory keeps 8 bytes a message (ringcast_store_tick_log_bytes).
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
    double table = metric("ringcast_store_tick_log_bytes ");
    CU_ASSERT(table > 0 && table < 64 * 1024); /* the table's empty hash */
    CU_ASSERT(metric("ringcast_store_tick_log_disk_bytes ") == 0);
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
    CU_ASSERT(after >= before && after - before < MESSAGES * BODY_BYTES / 4); /* the snapshot, not the messages */
    double disk = metric("ringcast_store_tick_log_disk_bytes ");
    CU_ASSERT(disk >= MESSAGES * BODY_BYTES && disk < 2 * MESSAGES * BODY_BYTES); /* not folded: far from 512 MiB */
    double tick_log = metric("ringcast_store_tick_log_bytes ");
    CU_ASSERT(tick_log >= table && tick_log < table + MESSAGES * 64); /* pointers to the messages, not their bytes */
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
