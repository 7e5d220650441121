#!/usr/bin/env bash
# Side-by-side fan-out benchmark: ringcastd, nats-server and redis-server on
# loopback, the same ringcast-bench workload against each, interleaved
# (A B C A B C ...) so that drift of the machine hits every system alike.
# Prints a Markdown report; see bench/README.md for the method.
#
#   bench/compare.sh [--reps N] [--duration S] [--warmup S] [--systems "ringcast nats redis"]
#                    [--out FILE] [-- extra ringcast-bench flags, e.g. --window 8000]
#
# Environment: RINGCASTD (default build/ringcastd), RINGCAST_BENCH (default
# build/ringcast-bench), RINGCASTD_ARGS (extra ringcastd flags).
set -u -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
RINGCASTD=${RINGCASTD:-$top/build/ringcastd}
BENCH=${RINGCAST_BENCH:-$top/build/ringcast-bench}
RINGCASTD_ARGS=${RINGCASTD_ARGS:-}

REPS=3
DURATION=10
WARMUP=2
SYSTEMS="ringcast nats redis"
OUT=""
EXTRA=()

MAX_REPS=20
START_TIMEOUT_S=15     # a server must accept connections within this
RUN_SLACK_S=90         # setup (60 s at most) + drain (5 s) + margin, per run
PORT_TRIES=50

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

die() { echo "compare.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS=${2:?}; shift 2 ;;
    --duration) DURATION=${2:?}; shift 2 ;;
    --warmup) WARMUP=${2:?}; shift 2 ;;
    --systems) SYSTEMS=${2:?}; shift 2 ;;
    --out) OUT=${2:?}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) usage >&2; exit 1 ;;
  esac
done
in_range() { [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }
in_range "$REPS" 1 $MAX_REPS || die "--reps wants 1..$MAX_REPS"
in_range "$DURATION" 1 600 || die "--duration wants 1..600 seconds"
in_range "$WARMUP" 0 60 || die "--warmup wants 0..60 seconds"
[ -x "$BENCH" ] || die "no ringcast-bench at $BENCH (build it, or set RINGCAST_BENCH)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ringcast-compare.XXXXXX") || die "mktemp failed"
declare -A PID PORT
cleanup() {
  local s
  for s in "${!PID[@]}"; do
    kill "${PID[$s]}" 2>/dev/null
  done
  for s in "${!PID[@]}"; do
    # bounded wait, then insist
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "${PID[$s]}" 2>/dev/null || break; sleep 0.5; done
    kill -9 "${PID[$s]}" 2>/dev/null
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Sets FREE_PORT to a loopback port no socket uses and we have not chosen,
# below the ephemeral range so that no client connection can take it meanwhile.
TAKEN=" "
EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
PORT_LOW=10000
free_port() {
  local p i
  for ((i = 0; i < PORT_TRIES; i++)); do
    p=$((PORT_LOW + RANDOM % (EPHEMERAL_LOW - PORT_LOW)))
    [[ "$TAKEN" == *" $p "* ]] && continue
    ss -Htan "sport = :$p" 2>/dev/null | grep -q . && continue
    TAKEN+="$p "
    FREE_PORT=$p
    return 0
  done
  die "no free port found in $PORT_TRIES tries"
}

# Waits until 127.0.0.1:$2 accepts a connection while process $1 lives.
wait_port() {
  local pid=$1 port=$2 i
  for ((i = 0; i < START_TIMEOUT_S * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# Starts server $1 on free ports: 0 ok, 1 it did not come up, 2 not installed.
start_server() {
  local s=$1 p log="$tmp/$1.log"
  free_port; p=$FREE_PORT
  case "$s" in
    nats)
      command -v nats-server >/dev/null || { echo "compare.sh: nats-server not installed, skipping" >&2; return 2; }
      nats-server -a 127.0.0.1 -p "$p" >"$log" 2>&1 &
      ;;
    redis)
      command -v redis-server >/dev/null || { echo "compare.sh: redis-server not installed, skipping" >&2; return 2; }
      redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no \
        --client-output-buffer-limit 'pubsub 0 0 0' >"$log" 2>&1 &
      ;;
    ringcast)
      [ -x "$RINGCASTD" ] || { echo "compare.sh: no ringcastd at $RINGCASTD, skipping ringcast" >&2; return 2; }
      local http admin
      free_port; http=$FREE_PORT
      free_port; admin=$FREE_PORT
      mkdir -p "$tmp/ringcast-data"
      # shellcheck disable=SC2086 # RINGCASTD_ARGS is a list of flags
      "$RINGCASTD" --port "$p" --http-port "$http" --admin-port "$admin" \
        --data-dir "$tmp/ringcast-data" $RINGCASTD_ARGS >"$log" 2>&1 &
      ;;
    *) die "unknown system '$s' (ringcast, nats, redis)" ;;
  esac
  PID[$s]=$!
  PORT[$s]=$p
  if ! wait_port "${PID[$s]}" "$p"; then
    echo "compare.sh: $s did not start; its log ends:" >&2
    tail -n 5 "$log" >&2
    kill "${PID[$s]}" 2>/dev/null
    unset "PID[$s]" "PORT[$s]"
    return 1
  fi
}

version_of() {
  case "$1" in
    nats) nats-server --version 2>&1 | head -n 1 ;;
    redis) redis-server --version 2>&1 | head -n 1 | cut -d' ' -f1-3 ;;
    ringcast) "$RINGCASTD" --version 2>&1 | head -n 1 ;;
  esac
}

# Value of key=... in a ringcast-bench result line.
field() { grep -o "\b$2=[^ ]*" <<<"$1" | head -n 1 | cut -d= -f2; }

# median, min, max of the numbers on stdin (one per line)
stats() {
  sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "- - -"; exit }
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%.0f %.0f %.0f\n", m, v[1], v[NR] }'
}

median() { stats | cut -d' ' -f1; }

START_ATTEMPTS=3 # a port can still be taken between the check and the bind
active=()
for s in $SYSTEMS; do
  for ((attempt = 1; attempt <= START_ATTEMPTS; attempt++)); do
    start_server "$s"
    case $? in
      0) active+=("$s"); break ;;
      2) break ;; # not installed: no point in trying again
    esac
  done
done
[ ${#active[@]} -gt 0 ] || die "no system could be started"

run_timeout=$((WARMUP + DURATION + RUN_SLACK_S))
for ((rep = 1; rep <= REPS; rep++)); do
  for s in "${active[@]}"; do
    if ! kill -0 "${PID[$s]}" 2>/dev/null; then
      echo "compare.sh: $s is no longer running; its log ends:" >&2
      tail -n 3 "$tmp/$s.log" >&2
      echo "$s failed" >>"$tmp/results"
      continue
    fi
    line=$(timeout --signal=INT --kill-after=10 "$run_timeout" "$BENCH" fanout --system "$s" \
      --port "${PORT[$s]}" --duration "$DURATION" --warmup "$WARMUP" --server-pid "${PID[$s]}" \
      "${EXTRA[@]}" 2>"$tmp/$s.bench.err" | grep '^ringcast-bench ')
    rc=$?
    if [ $rc -ne 0 ] || [ -z "$line" ] || [ "$(field "$line" interrupted)" != 0 ]; then
      echo "compare.sh: run $rep of $s failed; stderr ends:" >&2
      tail -n 3 "$tmp/$s.bench.err" >&2
      echo "$s failed" >>"$tmp/results"
      continue
    fi
    echo "compare.sh: rep $rep $s $(field "$line" deliveries_per_s) deliveries/s" >&2
    echo "$s ok $line" >>"$tmp/results"
  done
done

# ---- the report ----
results=$(cat "$tmp/results" 2>/dev/null)
col() { # col SYSTEM KEY: the KEY values of SYSTEM's successful runs, one per line
  grep "^$1 ok " <<<"$results" | while read -r l; do field "$l" "$2"; done
}
sum_col() { col "$1" "$2" | awk '{ s += $1 } END { printf "%d", s }'; }

declare -A MED
best=0
for s in "${active[@]}"; do
  MED[$s]=$(col "$s" deliveries_per_s | median)
  [ "${MED[$s]}" != "-" ] && [ "${MED[$s]}" -gt "$best" ] && best=${MED[$s]}
done

any=$(grep -m 1 ' ok ' <<<"$results")
report() {
  echo "### ringcast-bench fanout, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Workload: groups=$(field "$any" groups) members=$(field "$any" members) subs=$(field "$any" subs)" \
       "pubs=$(field "$any" pubs) body=$(field "$any" body) window=$(field "$any" window);" \
       "${DURATION} s measured after ${WARMUP} s warm-up, $REPS interleaved reps."
  echo "Machine: $(nproc) cores, $(grep -m 1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), Linux $(uname -r)."
  echo "Command: \`bench/compare.sh --reps $REPS --duration $DURATION --warmup $WARMUP --systems \"$SYSTEMS\"${EXTRA[*]:+ -- ${EXTRA[*]}}\`"
  echo
  echo "| system | version | deliveries/s median | min | max | msgs/s median | × best | server CPU % | generator CPU % | server peak RSS MB | gaps/dups/reorders/missing | errors | runs ok |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"
  local s st ratio rss ok fail
  for s in "${active[@]}"; do
    read -r med lo hi <<<"$(col "$s" deliveries_per_s | stats)"
    ratio=$(awk -v a="$med" -v b="$best" 'BEGIN { if (a == "-" || b == 0) print "-"; else printf "%.2f", a / b }')
    rss=$(col "$s" server_peak_rss_kb | sort -g | tail -n 1 | awk '{ if ($1 > 0) printf "%.0f", $1 / 1024; else print "-" }')
    ok=$(grep -c "^$s ok " <<<"$results")
    fail=$(grep -c "^$s failed" <<<"$results")
    st="$(sum_col "$s" gaps)/$(sum_col "$s" dups)/$(sum_col "$s" reorders)/$(sum_col "$s" missing)"
    echo "| $s | $(version_of "$s") | $med | $lo | $hi | $(col "$s" msgs_per_s | median) | $ratio |" \
         "$(col "$s" server_cpu_pct | median) | $(col "$s" gen_cpu_pct | median) | ${rss:--} | $st |" \
         "$(sum_col "$s" errors) | $ok/$((ok + fail)) |"
  done
  echo
  if [[ " ${active[*]} " == *" ringcast "* ]] && [ "${MED[ringcast]}" != "-" ]; then
    local peer="" pbest=0
    for s in "${active[@]}"; do
      [ "$s" = ringcast ] && continue
      [ "${MED[$s]}" != "-" ] && [ "${MED[$s]}" -gt "$pbest" ] && { pbest=${MED[$s]}; peer=$s; }
    done
    [ -n "$peer" ] && echo "ringcast / best peer ($peer): $(awk -v a="${MED[ringcast]}" -v b="$pbest" 'BEGIN { printf "%.2f", a / b }')× deliveries/s (medians)."
  else
    echo "ringcast was not measured (not started or every run failed)."
  fi
  echo
  echo "Deliveries count subscriber connections only (ringcast's echo of each message to its sender is excluded)." \
       "CPU % is of one core over the measured window; the machine has $(nproc) cores shared by server and generator."
}

if [ -n "$OUT" ]; then
  report | tee -a "$OUT"
else
  report
fi
