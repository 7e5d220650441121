/*
 * What /proc says about another process, for the benchmarks that sample the
 * server they drive (ringcast-bench --server-pid, ringcast-soak).
 */
#ifndef RC_BENCH_PROC_H
#define RC_BENCH_PROC_H

/* utime + stime of pid (fields 14 and 15 of /proc/PID/stat), seconds; -1
 * when pid <= 0 or the process is gone. */
double bench_proc_cpu_s(long pid);

#endif
