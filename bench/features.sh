#!/usr/bin/env bash
# The cost of a chat feature on the fan-out path: interleaved A/B runs of
# ringcast-bench against a fresh ringcastd per run (proto/PROTOCOL.md §6.9,
# §6.11; bench/README.md, "Chat features").
#
#   bench/features.sh presence [--reps 3] [--duration 5] [--warmup 2] [--workload rooms]
#       off: plain joins; on: subscribers join with presence: true
#   bench/features.sh receipts [same flags]
#       none: no reads; read: a read {g, seq} per 10 messages received;
#       receipts: the same reads, and every subscriber joined with receipts: true
#   bench/features.sh ... --rate R: open loop at R msgs/s instead of --max
#   bench/features.sh ... --from FILE: only the table, from the saved output of a run
#   bench/features.sh ... -- EXTRA ringcast-bench flags
#
# The variants run A B [C] A B [C] ... so that drift on a shared machine hits
# them alike; each run gets its own server and data directory, so no run
# inherits another's members, cursors or history. Prints one result line per
# run and a Markdown table: median / min / max deliveries/s, the median's
# ratio to the first variant, receipt events/s, reads/s, server CPU and peak
# RSS, and the runs' summed gaps and missing deliveries (a run that ends with
# deliveries missing is kept in the medians and counted there: with receipts
# the server may hold sends back longer than the generator's drain waits). Every run is bounded by `timeout` (warm-up + duration + 100 s).
#
# Environment: RINGCASTD (default build-rel/ringcastd), RINGCAST_BENCH
# (default build-rel/ringcast-bench), RINGCASTD_ARGS (extra ringcastd flags).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/server.sh
. "$top/bench/server.sh"
RINGCASTD=${RINGCASTD:-$top/build-rel/ringcastd}
RINGCAST_BENCH=${RINGCAST_BENCH:-$top/build-rel/ringcast-bench}
RINGCASTD_ARGS=${RINGCASTD_ARGS:-}
MAX_REPS=20

feature=${1:-}
[ $# -gt 0 ] && shift
from="" reps=3 duration=5 warmup=2 workload=rooms mode=(--max) extra=()
while [ $# -gt 0 ]; do
  if run_flag "$1" "${2:-}"; then shift 2; continue; fi
  case "$1" in
    --rate) mode=(--rate "$2"); shift 2 ;;
    --from) from=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "features.sh: unknown flag $1" >&2; exit 2 ;;
  esac
done
case "$feature" in
  presence) names=(off on); flags=("" "--presence") ;;
  receipts) names=(none read receipts); flags=("" "--read-every 10" "--read-every 10 --receipts") ;;
  *) echo "usage: bench/features.sh presence|receipts [--reps N] [--duration S] [--warmup S] [--workload W] [-- flags]" >&2; exit 2 ;;
esac
[[ "$reps" =~ ^[0-9]+$ ]] && [ "$reps" -ge 1 ] && [ "$reps" -le $MAX_REPS ] || { echo "features.sh: --reps 1..$MAX_REPS" >&2; exit 2; }
[ -x "$RINGCASTD" ] && [ -x "$RINGCAST_BENCH" ] || { echo "features.sh: build ringcastd and ringcast-bench (Release) first" >&2; exit 1; }

tmp=$(mktemp -d /tmp/rc-features.XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && stop_server "$pid"; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM


if [ -n "$from" ]; then
  grep "^rep=" "$from" >"$tmp/results"
  reps=$(awk -v n="${names[0]}" '$2 == "variant=" n' "$tmp/results" | wc -l)
fi
[ -n "$from" ] || echo "# features.sh $feature: workload $workload, $reps interleaved reps of ${duration} s (+${warmup} s warm-up); $(uptime | sed 's/.*load/load/')" >&2
for r in $( [ -n "$from" ] || seq 1 "$reps"); do
  for i in "${!names[@]}"; do
    read -r port http admin <<<"$(free_ports)"
    rm -rf "$tmp/data" "$tmp/server.log" # a fresh log: the last run's must not answer wait_line
    # shellcheck disable=SC2086 # RINGCASTD_ARGS is a list of flags
    "$RINGCASTD" --port "$port" --http-port "$http" --admin-port "$admin" --data-dir "$tmp/data" \
      $RINGCASTD_ARGS >"$tmp/server.log" 2>&1 &
    pid=$!
    if ! wait_line "$tmp/server.log" 30 "event=listening" >/dev/null; then
      echo "features.sh: ringcastd did not start; its log ends:" >&2; tail -n 5 "$tmp/server.log" >&2; exit 1
    fi
    # shellcheck disable=SC2086 # the variant's flags are a list
    line=$(timeout $((warmup + duration + 100)) "$RINGCAST_BENCH" "$workload" --port "$port" "${mode[@]}" \
      --duration "$duration" --warmup "$warmup" --server-pid "$pid" --no-progress ${flags[$i]} "${extra[@]}" 2>"$tmp/bench.err") || {
      echo "features.sh: run $r ${names[$i]} failed ($?):" >&2; tail -n 5 "$tmp/bench.err" >&2
      if kill -0 "$pid" 2>/dev/null; then echo "features.sh: ringcastd still runs; its log ends:" >&2
      else echo "features.sh: ringcastd exited; its log ends:" >&2; fi
      tail -n 8 "$tmp/server.log" >&2 || true; }
    stop_server "$pid" || true; pid=""
    echo "rep=$r variant=${names[$i]} $line" | tee -a "$tmp/results"
  done
done

echo
echo "| $feature ($workload ${mode[*]}) | deliveries/s median | min | max | × ${names[0]} | msgs/s | receipt events/s | reads/s | p50 µs | p99 µs | server CPU % | server peak RSS MiB | gaps | missing | runs |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
base=""
for n in "${names[@]}"; do
  grep "^rep=[0-9]* variant=$n .*deliveries_per_s=" "$tmp/results" >"$tmp/ok" || true
  sum() { while read -r _ _ l; do field "$l" "$1"; done <"$tmp/ok" | awk '{ s += $1 } END { print s + 0 }'; }
  col() { while read -r _ _ l; do field "$l" "$1"; done <"$tmp/ok" | stats; }
  read -r med mn mx <<<"$(col deliveries_per_s)"
  [ -z "$base" ] && base=$med
  ratio=$(awk -v a="$med" -v b="$base" 'BEGIN { if (b > 0 && a != "-") printf "%.3f", a / b; else print "-" }')
  echo "| $n | $med | $mn | $mx | $ratio | $(col msgs_per_s | cut -d' ' -f1) | $(col receipt_events_per_s | cut -d' ' -f1) | $(col reads_per_s | cut -d' ' -f1) | $(col lat_p50_us | cut -d' ' -f1) | $(col lat_p99_us | cut -d' ' -f1) | $(col server_cpu_pct | cut -d' ' -f1) | $(col server_peak_rss_kb | awk '{ printf "%.0f", $1 / 1024 }') | $(sum gaps) | $(sum missing) | $(wc -l <"$tmp/ok")/$reps |"

done
