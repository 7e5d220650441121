#!/usr/bin/env bash
# Builds and durability modes of ringcastd against each other: interleaved
# runs of one ringcast-bench workload, a fresh ringcastd and data directory
# each, reporting server CPU per delivery next to deliveries/s (the figure
# a change to the server's own work moves, whatever the generator gets of
# the two cores; bench/README.md, "Builds against each other").
#
#   bench/builds.sh [--reps 3] [--duration 5] [--warmup 1] [--workload fanout] [--window]
#                   NAME=BINARY[:DURABILITY] ... [-- EXTRA ringcast-bench flags]
#
#   NAME=BINARY[:DURABILITY]  a variant: a ringcastd binary and its
#                      --durability (default batch); at most 8 variants
#   --window           the closed loop (--max) instead of --flood
#
# e.g. bench/builds.sh --reps 3 --duration 10 old=/tmp/old/ringcastd new=build-rel/ringcastd \
#        new-off=build-rel/ringcastd:off
#
# The variants run A B C A B C ... so that drift on a shared machine hits
# them alike. Prints one line per run and a Markdown table: median, min and
# max of deliveries/s and of server CPU per delivery (server CPU % × 10⁷ /
# deliveries/s, in ns), each median's ratio to the first variant's, refused
# sends and missing deliveries summed. Every run is bounded by `timeout`
# (warm-up + duration + 100 s).
#
# Environment: RINGCAST_BENCH (default build-rel/ringcast-bench), RINGCASTD_ARGS
# (extra flags for every ringcastd).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/server.sh
. "$top/bench/server.sh"
RINGCAST_BENCH=${RINGCAST_BENCH:-$top/build-rel/ringcast-bench}
RINGCASTD_ARGS=${RINGCASTD_ARGS:-}
MAX_REPS=20
MAX_VARIANTS=8
RUN_SLACK_S=100

reps=3 duration=5 warmup=1 workload=fanout mode=(--flood) extra=() names=() bins=() durs=()
while [ $# -gt 0 ]; do
  if run_flag "$1" "${2:-}"; then shift 2; continue; fi
  case "$1" in
    --window) mode=(--max); shift ;;
    --) shift; extra=("$@"); break ;;
    -*) echo "builds.sh: unknown flag $1" >&2; exit 2 ;;
    *=*)
      spec=${1#*=}
      names+=("${1%%=*}")
      bins+=("${spec%%:*}")
      if [[ "$spec" == *:* ]]; then durs+=("${spec#*:}"); else durs+=(batch); fi
      shift ;;
    *) echo "builds.sh: a variant is NAME=BINARY[:DURABILITY], not $1" >&2; exit 2 ;;
  esac
done
[ ${#names[@]} -ge 1 ] && [ ${#names[@]} -le $MAX_VARIANTS ] ||
  { echo "usage: bench/builds.sh [--reps N] [--duration S] [--warmup S] [--workload W] [--window] NAME=BINARY[:DURABILITY] ... (1..$MAX_VARIANTS)" >&2; exit 2; }
[[ "$reps" =~ ^[0-9]+$ ]] && [ "$reps" -ge 1 ] && [ "$reps" -le $MAX_REPS ] || { echo "builds.sh: --reps 1..$MAX_REPS" >&2; exit 2; }
[ -x "$RINGCAST_BENCH" ] || { echo "builds.sh: no ringcast-bench at $RINGCAST_BENCH (build it, or set RINGCAST_BENCH)" >&2; exit 1; }
for i in "${!names[@]}"; do
  [ -x "${bins[$i]}" ] || { echo "builds.sh: ${names[$i]}: no ringcastd at ${bins[$i]}" >&2; exit 1; }
  case "${durs[$i]}" in off|none|batch|sync) ;; *) echo "builds.sh: ${names[$i]}: durability off|none|batch|sync" >&2; exit 2 ;; esac
done

tmp=$(mktemp -d /tmp/rc-builds.XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && stop_server "$pid"; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "# builds.sh: workload $workload ${mode[*]}, $reps interleaved reps of ${duration} s (+${warmup} s warm-up); $(uptime | sed 's/.*load/load/')" >&2
: >"$tmp/results"
for r in $(seq 1 "$reps"); do
  for i in "${!names[@]}"; do
    read -r port http admin <<<"$(free_ports)"
    rm -rf "$tmp/data" "$tmp/server.log" # a fresh log: the last run's must not answer wait_line
    # shellcheck disable=SC2086 # RINGCASTD_ARGS is a list of flags
    "${bins[$i]}" --port "$port" --http-port "$http" --admin-port "$admin" --data-dir "$tmp/data" \
      $RINGCASTD_ARGS --durability "${durs[$i]}" >"$tmp/server.log" 2>&1 &
    pid=$!
    if ! wait_line "$tmp/server.log" 30 "event=listening" >/dev/null; then
      echo "builds.sh: ${names[$i]} did not start; its log ends:" >&2; tail -n 5 "$tmp/server.log" >&2; exit 1
    fi
    line=$(timeout $((warmup + duration + RUN_SLACK_S)) "$RINGCAST_BENCH" "$workload" --port "$port" "${mode[@]}" \
      --duration "$duration" --warmup "$warmup" --server-pid "$pid" --no-progress "${extra[@]}" 2>"$tmp/bench.err" |
      grep '^ringcast-bench ') || {
      echo "builds.sh: run $r ${names[$i]} failed:" >&2; tail -n 5 "$tmp/bench.err" >&2; line=""; }
    stop_server "$pid" || true; pid=""
    ns=-
    if [ -n "$line" ]; then
      ns=$(awk -v c="$(field "$line" server_cpu_pct)" -v d="$(field "$line" deliveries_per_s)" \
        'BEGIN { if (d > 0) printf "%.0f", c * 1e7 / d; else print "-" }')
    fi
    echo "rep=$r variant=${names[$i]} ns_per_delivery=$ns $line" | tee -a "$tmp/results"
  done
done

echo
echo "| variant ($workload ${mode[*]}) | durability | deliveries/s median | min | max | × ${names[0]} | server CPU per delivery, ns: median | min | max | × ${names[0]} | server CPU % | refused | missing | runs |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
base_d="" base_ns=""
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "-") printf "%.3f", a / b; else print "-" }'; }
for i in "${!names[@]}"; do
  grep "^rep=[0-9]* variant=${names[$i]} ns_per_delivery=[0-9]" "$tmp/results" >"$tmp/ok" || true
  col() { while read -r l; do field "$l" "$1"; done <"$tmp/ok" | stats; }
  sum() { while read -r l; do field "$l" "$1"; done <"$tmp/ok" | awk '{ s += $1 } END { print s + 0 }'; }
  read -r d dmin dmax <<<"$(col deliveries_per_s)"
  read -r ns nsmin nsmax <<<"$(col ns_per_delivery)"
  [ -z "$base_d" ] && base_d=$d && base_ns=$ns
  echo "| ${names[$i]} | ${durs[$i]} | $d | $dmin | $dmax | $(ratio "$d" "$base_d") | $ns | $nsmin | $nsmax | $(ratio "$ns" "$base_ns") | $(col server_cpu_pct | cut -d' ' -f1) | $(sum refused) | $(sum missing) | $(wc -l <"$tmp/ok")/$reps |"
done
