/*
 * ringcast-micro: flags, the machine description, and the report (Markdown
 * on stdout, optionally JSON to a file). The benchmarks live in
 * ring_bench.c and chash_bench.c; progress goes to stderr.
 *
 * Exit status: 0 all checks passed, 1 bad usage or set-up failure, 2 a
 * correctness check failed (the tables say which).
 */
#include "micro.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CPU_MODEL_MAX 128u
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#ifdef __clang__
#define COMPILER \
    "clang " STRINGIFY(__clang_major__) "." STRINGIFY(__clang_minor__) "." STRINGIFY(__clang_patchlevel__)
#else
#define COMPILER "gcc " __VERSION__
#endif

double micro_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

unsigned micro_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1u;
}

static void usage(FILE *out)
{
    fprintf(out,
        "usage: ringcast-micro [options]\n"
        "\n"
        "Microbenchmarks of src/core, each against a reference measured in the same run,\n"
        "printed as Markdown tables on stdout (progress on stderr):\n"
        "  rings   rc_ring vs Concurrency Kit ck_ring: SPSC (1 producer) and MPSC (2, 4\n"
        "          producers), single-item and batches of 32; items and their sum checked\n"
        "  chash   rc_chash with 160/500/1000 vnodes vs Jump consistent hash, 8 shards:\n"
        "          lookup ns/op (table, successor search), balance of keyspace and keys,\n"
        "          keys moved by adding a 9th shard and back; balance and movement for\n"
        "          2..16 shards at 160 vnodes\n"
        "\n"
        "options:\n"
        "  --quick           short run: --reps %u --items %llu --keys %u --time-limit %.0f\n"
        "                    (flags given explicitly still win)\n"
        "  --reps N          repetitions per case (default %u, max %u): rings report the\n"
        "                    best, chash the median and the range\n"
        "  --items N         items per ring run, all producers together (default %llu)\n"
        "  --keys N          group ids per consistent-hash case (default %u)\n"
        "  --capacity N      ring slots, a power of two (default %u)\n"
        "  --time-limit S    seconds one ring run may take before its producers are\n"
        "                    stopped and the partial run flagged (default %.0f)\n"
        "  --only WHAT       rings or chash (default both)\n"
        "  --json FILE       also write all results as one JSON object to FILE\n"
        "  --help            this text\n"
        "\n"
        "N accepts a k, M or G suffix (x1000). Worst case time is about\n"
        "reps x 12 ring runs x time-limit, plus the hashing (seconds).\n"
        "Exit status: 0 ok, 1 bad usage or set-up failure, 2 a correctness check failed.\n",
        MICRO_QUICK_REPS, (unsigned long long)MICRO_QUICK_ITEMS, MICRO_QUICK_KEYS,
        MICRO_QUICK_TIME_LIMIT_S, MICRO_DEFAULT_REPS, MICRO_MAX_REPS,
        (unsigned long long)MICRO_DEFAULT_ITEMS, MICRO_DEFAULT_KEYS, MICRO_DEFAULT_CAPACITY,
        MICRO_DEFAULT_TIME_LIMIT_S);
}

/* Unsigned decimal with an optional k/M/G (x1000) suffix, in [min, max]. */
static int parse_count(const char *flag, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    uint64_t mult = 1;
    if (*end == 'k' || *end == 'K')
        mult = 1000;
    else if (*end == 'M')
        mult = 1000000;
    else if (*end == 'G')
        mult = 1000000000;
    if (mult != 1)
        end++;
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v > max / mult ||
        v * mult < min || v * mult > max) {
        fprintf(stderr, "ringcast-micro: %s: want a number in [%llu, %llu], got '%s'\n", flag,
                (unsigned long long)min, (unsigned long long)max, s);
        return -1;
    }
    *out = v * mult;
    return 0;
}

static int parse_seconds(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v > 0 && v <= 3600)) {
        fprintf(stderr, "ringcast-micro: --time-limit: want seconds in (0, 3600], got '%s'\n", s);
        return -1;
    }
    *out = v;
    return 0;
}

enum { O_QUICK = 256, O_REPS, O_ITEMS, O_KEYS, O_CAPACITY, O_TIME_LIMIT, O_ONLY, O_JSON, O_HELP };

/* Returns 0 to run, 1 after --help, -1 on bad usage. */
static int parse_args(int argc, char **argv, micro_opts *o)
{
    static const struct option longopts[] = {
        { "quick", no_argument, 0, O_QUICK },
        { "reps", required_argument, 0, O_REPS },
        { "items", required_argument, 0, O_ITEMS },
        { "keys", required_argument, 0, O_KEYS },
        { "capacity", required_argument, 0, O_CAPACITY },
        { "time-limit", required_argument, 0, O_TIME_LIMIT },
        { "only", required_argument, 0, O_ONLY },
        { "json", required_argument, 0, O_JSON },
        { "help", no_argument, 0, O_HELP },
        { 0, 0, 0, 0 },
    };
    bool quick = false;
    const char *reps = NULL, *items = NULL, *keys = NULL, *capacity = NULL, *limit = NULL;
    *o = (micro_opts){ .rings = true, .chash = true };
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case O_QUICK: quick = true; break;
        case O_REPS: reps = optarg; break;
        case O_ITEMS: items = optarg; break;
        case O_KEYS: keys = optarg; break;
        case O_CAPACITY: capacity = optarg; break;
        case O_TIME_LIMIT: limit = optarg; break;
        case O_ONLY:
            if (strcmp(optarg, "rings") != 0 && strcmp(optarg, "chash") != 0) {
                fprintf(stderr, "ringcast-micro: --only: rings or chash, got '%s'\n", optarg);
                return -1;
            }
            o->rings = strcmp(optarg, "rings") == 0;
            o->chash = !o->rings;
            break;
        case O_JSON: o->json = optarg; break;
        case O_HELP: case 'h': usage(stdout); return 1;
        default: usage(stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ringcast-micro: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return -1;
    }
    /* --quick sets the defaults; explicit flags override them in any order. */
    uint64_t v_reps = quick ? MICRO_QUICK_REPS : MICRO_DEFAULT_REPS;
    uint64_t v_items = quick ? MICRO_QUICK_ITEMS : MICRO_DEFAULT_ITEMS;
    uint64_t v_keys = quick ? MICRO_QUICK_KEYS : MICRO_DEFAULT_KEYS;
    uint64_t v_cap = MICRO_DEFAULT_CAPACITY;
    o->time_limit_s = quick ? MICRO_QUICK_TIME_LIMIT_S : MICRO_DEFAULT_TIME_LIMIT_S;
    if ((reps && parse_count("--reps", reps, 1, MICRO_MAX_REPS, &v_reps) != 0) ||
        (items && parse_count("--items", items, 1, MICRO_MAX_ITEMS, &v_items) != 0) ||
        (keys && parse_count("--keys", keys, 1, MICRO_MAX_KEYS, &v_keys) != 0) ||
        (capacity && parse_count("--capacity", capacity, 2, 1u << 24, &v_cap) != 0) ||
        (limit && parse_seconds(limit, &o->time_limit_s) != 0))
        return -1;
    if ((v_cap & (v_cap - 1)) != 0) {
        fprintf(stderr, "ringcast-micro: --capacity: want a power of two, got %llu\n",
                (unsigned long long)v_cap);
        return -1;
    }
    o->reps = (unsigned)v_reps;
    o->items = v_items;
    o->keys = (uint32_t)v_keys;
    o->capacity = (uint32_t)v_cap;
    return 0;
}

static void cpu_model(char *out, size_t n)
{
    snprintf(out, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f == NULL)
        return;
    char line[256];
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "model name", 10) != 0)
            continue;
        const char *colon = strchr(line, ':');
        if (colon != NULL) {
            snprintf(out, n, "%s", colon + 1 + (colon[1] == ' '));
            out[strcspn(out, "\n")] = '\0';
        }
        break;
    }
    fclose(f);
}

#ifdef NDEBUG
#define BUILD_ASSERTS "off"
#else
#define BUILD_ASSERTS "on (not a release build: numbers are pessimistic)"
#endif

static void print_header(FILE *out, const micro_opts *o, const char *cpu)
{
    fprintf(out, "# ringcast-micro\n\n");
    fprintf(out, "CPU: %s, %u online CPUs. Compiler: %s. Asserts: %s. Ring time limit %.1f s "
                 "per run.\n\n",
            cpu, micro_cpus(), COMPILER, BUILD_ASSERTS, o->time_limit_s);
}

/* JSON strings we write are program-controlled except the CPU model. */
static void json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', out);
        if ((unsigned char)*s >= 0x20)
            fputc(*s, out);
    }
    fputc('"', out);
}

static int write_json(const micro_opts *o, const char *cpu, const ring_results *rings,
                      const chash_results *ch, bool ok)
{
    FILE *f = fopen(o->json, "w");
    if (f == NULL) {
        fprintf(stderr, "ringcast-micro: %s: %s\n", o->json, strerror(errno));
        return -1;
    }
    fprintf(f, "{\"program\":\"ringcast-micro\",\"cpu\":");
    json_string(f, cpu);
    fprintf(f, ",\"cpus\":%u,\"compiler\":", micro_cpus());
    json_string(f, COMPILER);
    fprintf(f, ",\"asserts\":%s,\"reps\":%u,\"time_limit_s\":%.3f,\"ok\":%s",
#ifdef NDEBUG
            "false",
#else
            "true",
#endif
            o->reps, o->time_limit_s, ok ? "true" : "false");
    if (rings != NULL) {
        fputs(",\"rings\":", f);
        ring_bench_print_json(f, rings);
    }
    if (ch != NULL) {
        fputs(",\"chash\":", f);
        chash_bench_print_json(f, ch);
    }
    fputs("}\n", f);
    if (fclose(f) != 0) {
        fprintf(stderr, "ringcast-micro: %s: %s\n", o->json, strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    micro_opts o;
    int pa = parse_args(argc, argv, &o);
    if (pa != 0)
        return pa > 0 ? 0 : 1;
    char cpu[CPU_MODEL_MAX];
    cpu_model(cpu, sizeof cpu);

    ring_results *rings = NULL;
    chash_results *ch = NULL;
    int status = 0;
    if (o.rings && (rings = ring_bench_run(&o)) == NULL)
        status = 1;
    if (status == 0 && o.chash && (ch = chash_bench_run(&o)) == NULL)
        status = 1;
    if (status == 0) {
        bool ok = (rings == NULL || ring_bench_ok(rings)) && (ch == NULL || chash_bench_ok(ch));
        print_header(stdout, &o, cpu);
        if (rings != NULL)
            ring_bench_print_md(stdout, rings);
        if (ch != NULL)
            chash_bench_print_md(stdout, ch);
        fflush(stdout);
        if (o.json != NULL && write_json(&o, cpu, rings, ch, ok) != 0)
            status = 1;
        if (!ok) {
            fprintf(stderr, "ringcast-micro: a correctness check FAILED (see the tables)\n");
            status = 2;
        }
    }
    ring_bench_free(rings);
    chash_bench_free(ch);
    return status;
}
