/* Smoke test: the real ringcastd accepts a session, sequences a message,
 * delivers it to another member, and says bye and exits 0 on SIGTERM. */
#include <CUnit/CUnit.h>
#include <string.h>

#include "ringcast/client.h"
#include "testutil.h"

#define T_MS 5000

static void test_send_and_receive(void)
{
    rc_test_server srv;
    CU_ASSERT_FATAL(rc_test_server_start(&srv, NULL) == 0);
    rc_client a, b;
    CU_ASSERT_FATAL(rc_client_connect(&a, "127.0.0.1", srv.port, T_MS) == 0);
    CU_ASSERT_FATAL(rc_client_connect(&b, "127.0.0.1", srv.port, T_MS) == 0);
    CU_ASSERT_EQUAL(rc_client_hello(&a, "alice", T_MS), 0);
    CU_ASSERT_EQUAL(rc_client_hello(&b, "bob", T_MS), 0);
    CU_ASSERT_EQUAL(rc_client_join(&a, "lobby", T_MS, NULL), 0);
    CU_ASSERT_EQUAL(rc_client_join(&b, "lobby", T_MS, NULL), 0);

    rc_msg ack;
    CU_ASSERT_EQUAL(rc_client_publish(&a, "lobby", "hi", 2, "m1", T_MS, &ack), 0);
    CU_ASSERT_EQUAL(ack.seq, 1);

    rc_msg m;
    CU_ASSERT_EQUAL_FATAL(rc_client_recv(&b, &m, T_MS), 1);
    CU_ASSERT_EQUAL(m.type, RC_T_MSG);
    CU_ASSERT_EQUAL(m.seq, 1);
    CU_ASSERT(m.body.len == 2 && memcmp(m.body.ptr, "hi", 2) == 0);
    CU_ASSERT(m.from.len == 5 && memcmp(m.from.ptr, "alice", 5) == 0);

    CU_ASSERT_EQUAL(rc_test_server_stop(&srv), 0);
    CU_ASSERT_EQUAL_FATAL(rc_client_recv(&b, &m, T_MS), 1);
    CU_ASSERT_EQUAL(m.type, RC_T_BYE);
    rc_client_close(&a);
    rc_client_close(&b);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("smoke", NULL, NULL);
    CU_add_test(s, "send and receive", test_send_and_receive);
    return rc_test_run();
}
