/* Start-up without io_uring: ringcastd runs under a seccomp filter that
 * makes io_uring_setup fail with EPERM (as kernel.io_uring_disabled=2 or a
 * container profile would); it must exit non-zero and name the cause. */
#define _GNU_SOURCE
#include <CUnit/CUnit.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#define OUT_MAX 8192

/* Allows every system call but io_uring_setup, which fails with EPERM. */
static int deny_io_uring(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 1 /* EPERM */),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

static void test_clear_error_without_io_uring(void)
{
    const char *bin = getenv("RINGCASTD");
    CU_ASSERT_FATAL(bin != NULL);
    char port[8], admin[8];
    snprintf(port, sizeof(port), "%u", rc_test_free_port());
    snprintf(admin, sizeof(admin), "%u", rc_test_free_port());
    int pipefd[2];
    CU_ASSERT_FATAL(pipe(pipefd) == 0);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        if (deny_io_uring() != 0)
            _exit(120);
        execl(bin, bin, "--port", port, "--admin-port", admin, (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    char out[OUT_MAX];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(out) - 1 && (n = read(pipefd[0], out + len, sizeof(out) - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(pipefd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    CU_ASSERT_FATAL(!(WIFEXITED(st) && WEXITSTATUS(st) == 120)); /* the filter was installed */
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) != 0);
    CU_ASSERT(strstr(out, "io_uring") != NULL);
    CU_ASSERT(strstr(out, "kernel.io_uring_disabled") != NULL);
    printf("\n    ringcastd said: %s", out);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("start without io_uring", NULL, NULL);
    CU_add_test(s, "clear error and non-zero exit", test_clear_error_without_io_uring);
    return rc_test_run();
}
