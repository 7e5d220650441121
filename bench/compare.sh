#!/usr/bin/env bash
# Side-by-side benchmark: ringcastd, nats-server, redis-server and the
# speed-of-light server ringcast-sol on loopback, the same ringcast-bench
# workloads against each, interleaved (A B C D A B C D ...) so that drift of
# the machine hits every system alike. Prints a Markdown report (median and
# spread per system, ratio to the best peer and fraction of ringcast-sol);
# see bench/README.md for the method. --durable compares ringcast's default
# durability with the durable peers instead: NATS JetStream (file store) and
# Redis Streams (AOF, fsync every second).
#
#   bench/compare.sh [--workloads "fanout rooms many-groups"] [--systems "ringcast nats redis sol"]
#                    [--durable] [--reps N] [--duration S] [--warmup S] [--rate R | --flood]
#                    [--sweep] [--sweep-steps LIST] [--sweep-duration S] [--sweep-peak R]
#                    [--out FILE] [--json FILE] [--charts DIR]
#                    [-- extra ringcast-bench flags, e.g. --threads 2 --window 8000]
#
#   --workloads LIST   ringcast-bench presets, run one after the other; every
#                      server is restarted for each workload (default fanout)
#   --systems LIST     ringcast, nats, redis, sol (default all four), and
#                      ringcast-off / ringcast-batch: ringcastd with
#                      --durability off / batch after RINGCASTD_ARGS;
#                      ringcast-fixed: ringcast-off with the autoscaler
#                      off (--scale-interval-ms 0: the shard count stays
#                      at its start value), to compare the two in one run;
#                      jetstream: nats-server -js with a file-store stream;
#                      redis-streams: redis-server with appendonly yes,
#                      appendfsync everysec; a system whose server is missing
#                      or does not start is skipped with a note
#   --durable          the durable side by side: default systems
#                      "ringcast-batch jetstream redis-streams", ratios to
#                      the best of jetstream and redis-streams (and, with
#                      --flood, to jetstream); works with the closed loop,
#                      --flood, --rate and --sweep
#   --reps N           interleaved repetitions per workload, 1..20 (default 3)
#   --duration S       measured seconds per run (default 10)
#   --warmup S         warm-up seconds per run (default 2)
#   --rate R           open loop at R msgs/s instead of the closed loop (--max):
#                      compares latency at one offered load
#   --flood            ringcast-bench --flood (no window: publishers write as
#                      fast as their sockets take it) instead of the closed
#                      loop; one table per workload with deliveries/s, the
#                      ratios to NATS and to the best peer, refused sends by
#                      code and disconnected readers. Default systems
#                      "ringcast-off ringcast-batch nats redis sol"; Redis
#                      keeps its default pub/sub output buffer limit
#   --sweep            after the reps, one ringcast-bench --sweep per system and
#                      workload (throughput and latency against offered load)
#   --sweep-steps L    the sweep's percentages (default 10,20,...,120)
#   --sweep-duration S measured seconds per sweep step (default 3, warm-up 1)
#   --sweep-peak R     one 100 % rate for every system (default: each system's
#                      own peak, measured by the sweep's first step)
#   --out FILE         also append the report to FILE
#   --json FILE        write every run and the summary as JSON (needs jq)
#   --charts DIR       SVG charts via bench/plot.sh: latency CDF per workload
#                      (each system's median run) and, with --sweep, throughput
#                      and latency against offered load
#
# Environment: RINGCASTD (default build/ringcastd), RINGCAST_BENCH (default
# build/ringcast-bench), RINGCAST_SOL (default ringcast-sol next to
# RINGCAST_BENCH), RINGCASTD_ARGS (extra ringcastd flags).
set -u -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
RINGCASTD=${RINGCASTD:-$top/build/ringcastd}
BENCH=${RINGCAST_BENCH:-$top/build/ringcast-bench}
SOL=${RINGCAST_SOL:-$(dirname "$BENCH")/ringcast-sol}
RINGCASTD_ARGS=${RINGCASTD_ARGS:-}

REPS=3
DURATION=10
WARMUP=2
RATE=""
WORKLOADS="fanout"
SYSTEMS="ringcast nats redis sol"
OUT=""
JSON=""
CHARTS=""
SWEEP=0
SWEEP_STEPS="10,20,30,40,50,60,70,80,90,100,110,120"
SWEEP_DURATION=3
SWEEP_WARMUP=1
SWEEP_PEAK=""
FLOOD=0
DURABLE=0
SYSTEMS_GIVEN=0
EXTRA=()

MAX_REPS=20
START_TIMEOUT_S=15     # a server must accept connections within this
RUN_SLACK_S=100        # setup (60 s at most) + drain (5..30 s) + margin, per run
STEP_SLACK_S=32        # per sweep step: drain (5..30 s) + margin
PORT_TRIES=50
PEERS="nats redis"     # the systems ringcast is compared against
REF=nats               # the flood table's first ratio column

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

die() { echo "compare.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS=${2:?}; shift 2 ;;
    --duration) DURATION=${2:?}; shift 2 ;;
    --warmup) WARMUP=${2:?}; shift 2 ;;
    --rate) RATE=${2:?}; shift 2 ;;
    --workloads) WORKLOADS=${2:?}; shift 2 ;;
    --systems) SYSTEMS=${2:?}; SYSTEMS_GIVEN=1; shift 2 ;;
    --flood) FLOOD=1; shift ;;
    --durable) DURABLE=1; shift ;;
    --sweep) SWEEP=1; shift ;;
    --sweep-steps) SWEEP_STEPS=${2:?}; shift 2 ;;
    --sweep-duration) SWEEP_DURATION=${2:?}; shift 2 ;;
    --sweep-peak) SWEEP_PEAK=${2:?}; shift 2 ;;
    --out) OUT=${2:?}; shift 2 ;;
    --json) JSON=${2:?}; shift 2 ;;
    --charts) CHARTS=${2:?}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) usage >&2; exit 1 ;;
  esac
done
in_range() { [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }
in_range "$REPS" 1 $MAX_REPS || die "--reps wants 1..$MAX_REPS"
if [ $FLOOD -eq 1 ]; then
  { [ -z "$RATE" ] && [ $SWEEP -eq 0 ]; } || die "--flood goes with neither --rate nor --sweep"
  [ $SYSTEMS_GIVEN -eq 1 ] || SYSTEMS="ringcast-off ringcast-batch nats redis sol"
fi
if [ $DURABLE -eq 1 ]; then
  [ $SYSTEMS_GIVEN -eq 1 ] || SYSTEMS="ringcast-batch jetstream redis-streams"
  PEERS="jetstream redis-streams"
  REF=jetstream
fi
in_range "$DURATION" 1 600 || die "--duration wants 1..600 seconds"
in_range "$WARMUP" 0 60 || die "--warmup wants 0..60 seconds"
in_range "$SWEEP_DURATION" 1 600 || die "--sweep-duration wants 1..600 seconds"
[ -z "$RATE" ] || [[ $RATE =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--rate wants a number of msgs/s"
[ -z "$SWEEP_PEAK" ] || [[ $SWEEP_PEAK =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--sweep-peak wants a number of msgs/s"
[[ $SWEEP_STEPS =~ ^[0-9.]+(,[0-9.]+)*$ ]] || die "--sweep-steps wants comma-separated percentages"
for w in $WORKLOADS; do
  case "$w" in fanout|rooms|many-groups|chat-day) ;; *) die "unknown workload '$w' (fanout rooms many-groups chat-day)" ;; esac
done
for s in $SYSTEMS; do
  case "$s" in ringcast|ringcast-off|ringcast-fixed|ringcast-batch|nats|redis|sol|jetstream|redis-streams) ;;
    *) die "unknown system '$s' (ringcast ringcast-off ringcast-fixed ringcast-batch nats redis sol jetstream redis-streams)" ;; esac
done
[ -x "$BENCH" ] || die "no ringcast-bench at $BENCH (build it, or set RINGCAST_BENCH)"
[ -z "$JSON" ] || command -v jq >/dev/null || die "--json needs jq (apt-get install jq)"
if [ -n "$CHARTS" ]; then
  command -v gnuplot >/dev/null || die "--charts needs gnuplot (apt-get install gnuplot-nox)"
  mkdir -p "$CHARTS" || die "cannot create $CHARTS"
fi
n_steps=$(tr ',' '\n' <<<"$SWEEP_STEPS" | grep -c .)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ringcast-compare.XXXXXX") || die "mktemp failed"
mkdir -p "$tmp/runs"
declare -A PID PORT
stop_servers() {
  local s
  for s in "${!PID[@]}"; do
    kill "${PID[$s]}" 2>/dev/null
  done
  for s in "${!PID[@]}"; do
    # bounded wait, then insist
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "${PID[$s]}" 2>/dev/null || break; sleep 0.5; done
    kill -9 "${PID[$s]}" 2>/dev/null
    wait "${PID[$s]}" 2>/dev/null
  done
  PID=()
  PORT=()
}
cleanup() {
  stop_servers
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
      command -v nats-server >/dev/null || { echo "compare.sh: nats-server not installed, skipping nats" >&2; return 2; }
      nats-server -a 127.0.0.1 -p "$p" >"$log" 2>&1 &
      ;;
    redis)
      command -v redis-server >/dev/null || { echo "compare.sh: redis-server not installed, skipping redis" >&2; return 2; }
      # A flood measures Redis's own slow-subscriber policy (and keeps its
      # memory bounded); the closed loop never reaches the limit, so it is lifted.
      local obuf=(--client-output-buffer-limit 'pubsub 0 0 0')
      [ $FLOOD -eq 1 ] && obuf=()
      redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no \
        "${obuf[@]}" >"$log" 2>&1 &
      ;;
    jetstream)
      command -v nats-server >/dev/null || { echo "compare.sh: nats-server not installed, skipping jetstream" >&2; return 2; }
      # JetStream's store in a fresh directory; the stream and its consumers
      # are made by ringcast-bench (gen/drv_jetstream.c)
      rm -rf "$tmp/$s-data"
      mkdir -p "$tmp/$s-data"
      nats-server -a 127.0.0.1 -p "$p" -js -sd "$tmp/$s-data" >"$log" 2>&1 &
      ;;
    redis-streams)
      command -v redis-server >/dev/null || { echo "compare.sh: redis-server not installed, skipping redis-streams" >&2; return 2; }
      # Every write goes to the append-only file before its reply, which is
      # fsynced once a second; no RDB snapshots. The rest is Redis's default
      # (AOF rewrites included).
      rm -rf "$tmp/$s-data"
      mkdir -p "$tmp/$s-data"
      redis-server --port "$p" --bind 127.0.0.1 --dir "$tmp/$s-data" --save '' \
        --appendonly yes --appendfsync everysec >"$log" 2>&1 &
      ;;
    ringcast|ringcast-off|ringcast-fixed|ringcast-batch)
      [ -x "$RINGCASTD" ] || { echo "compare.sh: no ringcastd at $RINGCASTD, skipping ringcast" >&2; return 2; }
      local http admin dur=()
      free_port; http=$FREE_PORT
      free_port; admin=$FREE_PORT
      rm -rf "$tmp/$s-data"
      mkdir -p "$tmp/$s-data"
      case "$s" in
        ringcast-off) dur=(--durability off) ;;
        ringcast-fixed) dur=(--durability off --scale-interval-ms 0) ;;
        ringcast-batch) dur=(--durability batch) ;;
      esac
      # shellcheck disable=SC2086 # RINGCASTD_ARGS is a list of flags
      "$RINGCASTD" --port "$p" --http-port "$http" --admin-port "$admin" \
        --data-dir "$tmp/$s-data" $RINGCASTD_ARGS "${dur[@]}" >"$log" 2>&1 &
      ;;
    sol)
      [ -x "$SOL" ] || { echo "compare.sh: no ringcast-sol at $SOL (build it, or set RINGCAST_SOL), skipping sol" >&2; return 2; }
      "$SOL" --port "$p" >"$log" 2>&1 &
      ;;
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
    jetstream) echo "$(nats-server --version 2>&1 | head -n 1) -js" ;;
    redis|redis-streams) redis-server --version 2>&1 | head -n 1 | cut -d' ' -f1-3 ;;
    ringcast|ringcast-off|ringcast-fixed|ringcast-batch) "$RINGCASTD" --version 2>&1 | head -n 1 ;;
    sol) echo "ringcast-sol" ;;
  esac
}

# The ringcast-bench driver of a system (ringcast-sol speaks ringcast).
driver_of() { case "$1" in sol|ringcast*) echo ringcast ;; *) echo "$1" ;; esac; }

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
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0 || a == "") print "-"; else printf "%.2f", a / b }'; }

START_ATTEMPTS=3 # a port can still be taken between the check and the bind
start_all() {
  active=()
  local s attempt
  for s in $SYSTEMS; do
    for ((attempt = 1; attempt <= START_ATTEMPTS; attempt++)); do
      start_server "$s"
      case $? in
        0) active+=("$s"); break ;;
        2) break ;; # not installed: no point in trying again
      esac
    done
  done
}

mode_args=(--max)
[ -n "$RATE" ] && mode_args=(--rate "$RATE")
[ $FLOOD -eq 1 ] && mode_args=(--flood)
results="$tmp/results"   # lines: WORKLOAD SYSTEM ok|loss|failed REP [result line]
: >"$results"

# Runs ringcast-bench for workload $1 against system $2, rep $3.
run_one() {
  local w=$1 s=$2 rep=$3 line rc base="$tmp/runs/$1.$2.$3"
  if ! kill -0 "${PID[$s]}" 2>/dev/null; then
    echo "compare.sh: $s is no longer running; its log ends:" >&2
    tail -n 3 "$tmp/$s.log" >&2
    echo "$w $s failed $rep" >>"$results"
    return
  fi
  line=$(timeout --signal=INT --kill-after=10 "$((WARMUP + DURATION + RUN_SLACK_S))" "$BENCH" "$w" \
    --system "$(driver_of "$s")" --port "${PORT[$s]}" --duration "$DURATION" --warmup "$WARMUP" \
    "${mode_args[@]}" --server-pid "${PID[$s]}" --no-progress --json "$base.json" \
    --hist-out "$base.hist.csv" "${EXTRA[@]}" 2>"$base.err" | grep '^ringcast-bench ')
  rc=$? # ringcast-bench's status (pipefail), or grep's when there is no line
  if [ -z "$line" ] || { [ $rc -ne 0 ] && [ $rc -ne 3 ]; } || [ "$(field "$line" interrupted)" != 0 ]; then
    echo "compare.sh: $w run $rep of $s failed (status $rc); stderr ends:" >&2
    tail -n 3 "$base.err" >&2
    echo "$w $s failed $rep" >>"$results"
    return
  fi
  if [ $rc -eq 3 ]; then
    echo "compare.sh: $w run $rep of $s lost or reordered messages:" >&2
    grep 'FAILED' "$base.err" >&2
    [ $FLOOD -eq 1 ] && grep 'flood:' "$base.err" >&2
    echo "$w $s loss $rep $line" >>"$results"
    return
  fi
  if [ $FLOOD -eq 1 ]; then
    echo "compare.sh: $w rep $rep $s $(field "$line" deliveries_per_s) deliveries/s, refused $(field "$line" refused)," \
         "disconnected readers $(field "$line" disconnected_readers)" >&2
  else
    echo "compare.sh: $w rep $rep $s $(field "$line" deliveries_per_s) deliveries/s, p99 $(field "$line" lat_p99_us) us" >&2
  fi
  echo "$w $s ok $rep $line" >>"$results"
}

# One sweep of workload $1 against system $2.
sweep_one() {
  local w=$1 s=$2 base="$tmp/runs/$1.$2.sweep" peak=()
  [ -n "$SWEEP_PEAK" ] && peak=(--peak "$SWEEP_PEAK")
  kill -0 "${PID[$s]}" 2>/dev/null || { echo "compare.sh: $s is not running, no sweep" >&2; return; }
  echo "compare.sh: $w sweep of $s ($n_steps steps of ${SWEEP_DURATION} s)" >&2
  timeout --signal=INT --kill-after=10 "$(( (n_steps + 1) * (SWEEP_WARMUP + SWEEP_DURATION + STEP_SLACK_S) + RUN_SLACK_S ))" \
    "$BENCH" "$w" --system "$(driver_of "$s")" --port "${PORT[$s]}" --sweep --steps "$SWEEP_STEPS" \
    "${peak[@]}" --duration "$SWEEP_DURATION" --warmup "$SWEEP_WARMUP" --server-pid "${PID[$s]}" \
    --no-progress --csv "$base.csv" --json "$base.json" "${EXTRA[@]}" >"$base.out" 2>"$base.err"
  local rc=$?
  [ $rc -eq 0 ] || { echo "compare.sh: $w sweep of $s exited $rc; stderr ends:" >&2; tail -n 3 "$base.err" >&2; }
  grep -h 'knee' "$base.err" | sed "s/^ringcast-bench:/compare.sh: $w $s:/" >&2
}

# The machine's load around the run (the box may be shared): 1, 5, 15 min.
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for w in $WORKLOADS; do
  stop_servers
  start_all
  [ ${#active[@]} -gt 0 ] || die "no system could be started"
  echo "$w ${active[*]}" >>"$tmp/active"
  for ((rep = 1; rep <= REPS; rep++)); do
    for s in "${active[@]}"; do
      run_one "$w" "$s" "$rep"
    done
  done
  if [ $SWEEP -eq 1 ]; then
    for s in "${active[@]}"; do
      sweep_one "$w" "$s"
    done
  fi
  # peak RSS covers this workload only: the servers restart for the next
done
stop_servers
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
DURABLE_FLAG=$([ $DURABLE -eq 1 ] && echo " --durable")

# ---- the report ----
col() { # col WORKLOAD SYSTEM KEY [STATUS]: the KEY values of those runs, one per line
  grep "^$1 $2 ${4:-ok} " "$results" | while read -r l; do field "$l" "$3"; done
}
sum_col() { # over ok and loss runs
  { col "$1" "$2" "$3" ok; col "$1" "$2" "$3" loss; } | awk '{ s += $1 } END { printf "%d", s }'
}

declare -A MED
summary_json="$tmp/summary.jsonl"
: >"$summary_json"
report() {
  local w s med lo hi spread any best bestpeer ratio sol_frac rss ok fail st act
  echo "### ringcast-bench, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Machine: $(nproc) cores, $(grep -m 1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), Linux $(uname -r)."
  echo "Load average (1, 5, 15 min): $LOAD_START at the start, $LOAD_END at the end."
  echo "Command: \`${RINGCASTD_ARGS:+RINGCASTD_ARGS=\"$RINGCASTD_ARGS\" }bench/compare.sh$DURABLE_FLAG --workloads \"$WORKLOADS\" --systems \"$SYSTEMS\" --reps $REPS --duration $DURATION --warmup $WARMUP${RATE:+ --rate $RATE}$([ $SWEEP -eq 1 ] && echo " --sweep")${EXTRA[*]:+ -- ${EXTRA[*]}}\`"
  echo "Mode: $([ -n "$RATE" ] && echo "open loop at $RATE msgs/s" || echo "closed loop (--max)"); ${DURATION} s measured after ${WARMUP} s warm-up, $REPS interleaved reps; servers restarted per workload." \
       "$([ $DURABLE -eq 1 ] && echo "Durable peers: jetstream is nats-server -js with one file-store stream (publishes acked once stored), redis-streams is redis-server with appendonly yes and appendfsync everysec (bench/README.md, Durable peers).")"
  for w in $WORKLOADS; do
    act=$(grep "^$w " "$tmp/active" | cut -d' ' -f2-)
    any=$(grep -m 1 "^$w [a-z-]* ok " "$results")
    echo
    echo "#### $w"
    echo
    if [ -n "$any" ]; then
      echo "Shape: groups=$(field "$any" groups) members=$(field "$any" members) (mean fan-out $(field "$any" mean_fanout), largest group $(field "$any" max_group))" \
           "subs=$(field "$any" subs) pubs=$(field "$any" pubs) body=$(field "$any" body) window=$(field "$any" window) threads=$(field "$any" threads)."
      echo
    fi
    best=0; bestpeer=""
    for s in $act; do
      MED[$s]=$(col "$w" "$s" deliveries_per_s | median)
      [[ " $PEERS " == *" $s "* ]] && [ "${MED[$s]}" != "-" ] && [ "${MED[$s]}" -gt "$best" ] && { best=${MED[$s]}; bestpeer=$s; }
    done
    local solmed=${MED[sol]:--}
    [[ " $act " == *" sol "* ]] || solmed="-"
    echo "| system | version | deliveries/s median | min | max | spread | msgs/s median | × best peer | of sol | p50 µs | p99 µs | p99.9 µs | server CPU % | gen CPU % | server peak RSS MB | gaps/dups/reorders/missing | errors | runs ok |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"
    for s in $act; do
      read -r med lo hi <<<"$(col "$w" "$s" deliveries_per_s | stats)"
      spread=$(awk -v m="$med" -v a="$lo" -v b="$hi" 'BEGIN { if (m == "-" || m == 0) print "-"; else printf "%.0f %%", 100 * (b - a) / m }')
      ratio=$([ -n "$bestpeer" ] && ratio "$med" "$best" || echo "-")
      sol_frac=$(ratio "$med" "$solmed")
      rss=$(col "$w" "$s" server_peak_rss_kb | sort -g | tail -n 1 | awk '{ if ($1 > 0) printf "%.0f", $1 / 1024; else print "-" }')
      ok=$(grep -c "^$w $s ok " "$results")
      fail=$(grep -c "^$w $s \(failed\|loss\) " "$results")
      st="$(sum_col "$w" "$s" gaps)/$(sum_col "$w" "$s" dups)/$(sum_col "$w" "$s" reorders)/$(sum_col "$w" "$s" missing)"
      echo "| $s | $(version_of "$s") | $med | $lo | $hi | $spread | $(col "$w" "$s" msgs_per_s | median) | $ratio | $sol_frac |" \
           "$(col "$w" "$s" lat_p50_us | median) | $(col "$w" "$s" lat_p99_us | median) | $(col "$w" "$s" lat_p999_us | median) |" \
           "$(col "$w" "$s" server_cpu_pct | median) | $(col "$w" "$s" gen_cpu_pct | median) | ${rss:--} | $st |" \
           "$(sum_col "$w" "$s" errors) | $ok/$((ok + fail)) |"
      printf '{"workload":"%s","system":"%s","version":"%s","deliveries_per_s":{"median":%s,"min":%s,"max":%s},"msgs_per_s_median":%s,"lat_p50_us_median":%s,"lat_p99_us_median":%s,"ratio_best_peer":%s,"fraction_of_sol":%s,"best_peer":"%s","runs_ok":%d,"runs_failed":%d}\n' \
        "$w" "$s" "$(version_of "$s")" "$(jnum "$med")" "$(jnum "$lo")" "$(jnum "$hi")" \
        "$(jnum "$(col "$w" "$s" msgs_per_s | median)")" "$(jnum "$(col "$w" "$s" lat_p50_us | median)")" \
        "$(jnum "$(col "$w" "$s" lat_p99_us | median)")" "$(jnum "$ratio")" "$(jnum "$sol_frac")" "$bestpeer" "$ok" "$fail" >>"$summary_json"
    done
    echo
    local rc_seen=0
    for s in $act; do
      case "$s" in ringcast*) ;; *) continue ;; esac
      rc_seen=1
      if [ "${MED[$s]}" = "-" ]; then
        echo "$s was not measured (every run failed)."
        continue
      fi
      [ -n "$bestpeer" ] && echo "$s / best peer ($bestpeer): $(ratio "${MED[$s]}" "$best")× deliveries/s (medians)."
      [ "$solmed" != "-" ] && echo "$s / ringcast-sol: $(ratio "${MED[$s]}" "$solmed") (the fraction of the speed of light)."
    done
    [ $rc_seen -eq 1 ] || echo "ringcast was not measured (not started)."
    if [ $SWEEP -eq 1 ]; then
      echo
      echo "Sweeps (knee = the highest offered rate still sent at ≥ 95 % with p99 within 5× the lightest step's):"
      for s in $act; do
        local knee
        knee=$(grep -ho 'knee at about [0-9]*' "$tmp/runs/$w.$s.sweep.err" 2>/dev/null | grep -o '[0-9]*$')
        echo "- $s: knee ${knee:-not found} msgs/s"
      done
    fi
  done
  echo
  echo "Deliveries count subscriber connections only (ringcast's echo of each message to its sender is excluded)." \
       "Latency is send (closed loop) or scheduled (open loop) time to delivery, over the measured window." \
       "CPU % is of one core over the measured window; the machine has $(nproc) cores shared by server and generator." \
       "Runs with loss or disorder count as failed and are left out of the medians."
}
jnum() { [[ $1 =~ ^-?[0-9]+(\.[0-9]+)?$ ]] && echo "$1" || echo null; }

FLOOD_CODES="overloaded rate_limited not_member limit shutting_down internal other"
# fcol WORKLOAD SYSTEM KEY: KEY of every run that finished (ok or loss), one per line
fcol() { col "$1" "$2" "$3" ok; col "$1" "$2" "$3" loss; }
# "E_OVERLOADED 12, other 3": the refused sends of those runs by code, summed
refused_codes() {
  local c n out=""
  for c in $FLOOD_CODES; do
    n=$(fcol "$1" "$2" "refused_$c" | awk '{ s += $1 } END { printf "%d", s }')
    [ "$n" -gt 0 ] || continue
    [ "$c" = other ] && out+="${out:+, }other $n" || out+="${out:+, }E_${c^^} $n"
  done
  echo "${out:--}"
}

# The flood report: a run that lost or reordered counts too (loss under a
# flood is part of the result; its counters show it), a failed run does not.
report_flood() {
  local w s med lo hi act any best bestpeer refmed ok fin all st rss refused
  echo "### ringcast-bench --flood, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Machine: $(nproc) cores, $(grep -m 1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), Linux $(uname -r)."
  echo "Load average (1, 5, 15 min): $LOAD_START at the start, $LOAD_END at the end."
  echo "Command: \`${RINGCASTD_ARGS:+RINGCASTD_ARGS=\"$RINGCASTD_ARGS\" }bench/compare.sh$DURABLE_FLAG --flood --workloads \"$WORKLOADS\" --systems \"$SYSTEMS\" --reps $REPS --duration $DURATION --warmup $WARMUP${EXTRA[*]:+ -- ${EXTRA[*]}}\`"
  echo "Mode: flood (no window: every publisher writes sends as fast as its socket takes them, then drains); ${DURATION} s measured after ${WARMUP} s warm-up, $REPS interleaved reps; servers restarted per workload." \
       "ringcast-off is ringcastd --durability off (memory only, like the peers), ringcast-fixed the same with the autoscaler off, ringcast-batch --durability batch; Redis keeps its default pub/sub output buffer limit." \
       "$([ $DURABLE -eq 1 ] && echo "Durable peers: jetstream is nats-server -js with one file-store stream (publishes acked once stored), redis-streams is redis-server with appendonly yes and appendfsync everysec (bench/README.md, Durable peers).")"
  for w in $WORKLOADS; do
    act=$(grep "^$w " "$tmp/active" | cut -d' ' -f2-)
    any=$(grep -m 1 "^$w [a-z-]* \(ok\|loss\) " "$results")
    echo
    echo "#### $w (flood)"
    echo
    if [ -n "$any" ]; then
      echo "Shape: groups=$(field "$any" groups) members=$(field "$any" members) (mean fan-out $(field "$any" mean_fanout))" \
           "subs=$(field "$any" subs) pubs=$(field "$any" pubs) body=$(field "$any" body) threads=$(field "$any" threads)."
      echo
    fi
    best=0; bestpeer=""; refmed="-"
    for s in $act; do
      MED[$s]=$(fcol "$w" "$s" deliveries_per_s | median)
      [[ " $PEERS " == *" $s "* ]] && [ "${MED[$s]}" != "-" ] && [ "${MED[$s]}" -gt "$best" ] && { best=${MED[$s]}; bestpeer=$s; }
    done
    [[ " $act " == *" $REF "* ]] && refmed=${MED[$REF]}
    echo "| system | deliveries/s median | min | max | × $REF | × best peer | msgs/s offered | acked/s | refused | refused % | refused by code | disconnected readers | lossy groups | gaps/dups/reorders/missing | server CPU % | gen CPU % | server peak RSS MB | runs clean/done/all |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---:|---:|---:|---:|"
    for s in $act; do
      read -r med lo hi <<<"$(fcol "$w" "$s" deliveries_per_s | stats)"
      local r_ref r_best
      r_ref=$(ratio "$med" "$refmed")
      r_best=$([ -n "$bestpeer" ] && ratio "$med" "$best" || echo "-")
      rss=$(fcol "$w" "$s" server_peak_rss_kb | sort -g | tail -n 1 | awk '{ if ($1 > 0) printf "%.0f", $1 / 1024; else print "-" }')
      ok=$(grep -c "^$w $s ok " "$results")
      fin=$(grep -c "^$w $s \(ok\|loss\) " "$results")
      all=$(grep -c "^$w $s " "$results")
      st="$(sum_col "$w" "$s" gaps)/$(sum_col "$w" "$s" dups)/$(sum_col "$w" "$s" reorders)/$(sum_col "$w" "$s" missing)"
      refused=$(fcol "$w" "$s" refused | median)
      echo "| $s | $med | $lo | $hi | $r_ref | $r_best | $(fcol "$w" "$s" msgs_per_s | median) | $(fcol "$w" "$s" acked_per_s | median) |" \
           "$refused | $(fcol "$w" "$s" refused_pct | sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "-" }') |" \
           "$(refused_codes "$w" "$s") | $(fcol "$w" "$s" disconnected_readers | median) | $(fcol "$w" "$s" groups_lossy | median) | $st |" \
           "$(fcol "$w" "$s" server_cpu_pct | median) | $(fcol "$w" "$s" gen_cpu_pct | median) | ${rss:--} | $ok/$fin/$all |"
      printf '{"workload":"%s","system":"%s","version":"%s","mode":"flood","deliveries_per_s":{"median":%s,"min":%s,"max":%s},"msgs_per_s_median":%s,"acked_per_s_median":%s,"ratio_ref":%s,"ref":"%s","ratio_best_peer":%s,"best_peer":"%s","refused_median":%s,"refused_by_code":"%s","disconnected_readers_median":%s,"groups_lossy_median":%s,"runs_clean":%d,"runs_done":%d,"runs":%d}\n' \
        "$w" "$s" "$(version_of "$s")" "$(jnum "$med")" "$(jnum "$lo")" "$(jnum "$hi")" \
        "$(jnum "$(fcol "$w" "$s" msgs_per_s | median)")" "$(jnum "$(fcol "$w" "$s" acked_per_s | median)")" \
        "$(jnum "$r_ref")" "$REF" "$(jnum "$r_best")" "$bestpeer" "$(jnum "$refused")" "$(refused_codes "$w" "$s")" \
        "$(jnum "$(fcol "$w" "$s" disconnected_readers | median)")" "$(jnum "$(fcol "$w" "$s" groups_lossy | median)")" \
        "$ok" "$fin" "$all" >>"$summary_json"
    done
    echo
    for s in $act; do
      case "$s" in ringcast*) ;; *) continue ;; esac
      [ "${MED[$s]}" = "-" ] && { echo "$s was not measured (every run failed)."; continue; }
      echo "$s: $(ratio "${MED[$s]}" "$refmed")× $REF, $(ratio "${MED[$s]}" "$best")× the best peer${bestpeer:+ ($bestpeer)} (deliveries/s, medians)."
    done
  done
  echo
  echo "Deliveries/s: received by subscriber connections in the measured window (ringcast's echo to the sender excluded), counted and order-checked as in the closed loop." \
       "msgs/s offered: sends written in the window; acked/s: acks received in it (core NATS has none)." \
       "Refused (median per run), refused % and by code (summed over runs): error replies to sends over the whole run, since a server that falls behind refuses a send long after it was written." \
       "Disconnected readers and lossy groups (groups with a gap or a missing delivery on a live stream): median per run; gaps/dups/reorders/missing: summed over runs." \
       "Runs: clean (no loss), done (finished, with or without loss; the medians are over these), all."
}

if [ $FLOOD -eq 1 ]; then
  if [ -n "$OUT" ]; then report_flood | tee -a "$OUT"; else report_flood; fi
elif [ -n "$OUT" ]; then
  report | tee -a "$OUT"
else
  report
fi

# ---- JSON ----
if [ -n "$JSON" ]; then
  runs_json="$tmp/runs.jsonl"
  : >"$runs_json"
  while read -r w s status rep _; do
    f="$tmp/runs/$w.$s.$rep.json"
    if [ "$status" != failed ] && [ -s "$f" ]; then
      jq -c --arg w "$w" --arg s "$s" --arg st "$status" --argjson rep "$rep" \
        '{workload: $w, system: $s, status: $st, rep: $rep, result: .}' "$f" >>"$runs_json"
    else
      jq -cn --arg w "$w" --arg s "$s" --argjson rep "$rep" '{workload: $w, system: $s, status: "failed", rep: $rep}' >>"$runs_json"
    fi
  done <"$results"
  sweeps_json="$tmp/sweeps.jsonl"
  : >"$sweeps_json"
  for f in "$tmp"/runs/*.sweep.json; do
    [ -s "$f" ] || continue
    b=$(basename "$f" .sweep.json)
    jq -c --arg w "${b%%.*}" --arg s "${b#*.}" '{workload: $w, system: $s, knee_msgs_per_s: .knee_msgs_per_s, steps: .steps}' "$f" >>"$sweeps_json"
  done
  jq -n --slurpfile summary "$summary_json" --slurpfile runs "$runs_json" --slurpfile sweeps "$sweeps_json" \
    --arg date "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" --arg machine "$(nproc) cores, $(grep -m 1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), Linux $(uname -r)" \
    --arg workloads "$WORKLOADS" --arg systems "$SYSTEMS" --argjson reps "$REPS" --argjson duration "$DURATION" \
    --argjson warmup "$WARMUP" --arg rate "$RATE" --arg extra "${EXTRA[*]}" --arg flood "$FLOOD" \
    --arg durable "$DURABLE" --arg load_start "$LOAD_START" --arg load_end "$LOAD_END" \
    '{date: $date, machine: $machine, workloads: ($workloads | split(" ")), systems: ($systems | split(" ")),
      reps: $reps, duration: $duration, warmup: $warmup, durable: ($durable == "1"),
      load_average: {start: $load_start, end: $load_end},
      mode: (if $flood == "1" then "flood" elif $rate == "" then "max" else "rate" end),
      rate: (if $rate == "" then null else ($rate | tonumber) end), extra_flags: $extra,
      summary: $summary, runs: $runs, sweeps: $sweeps}' >"$JSON" \
    && echo "compare.sh: wrote $JSON" >&2 || echo "compare.sh: writing $JSON failed" >&2
fi

# ---- charts ----
if [ -n "$CHARTS" ]; then
  for w in $WORKLOADS; do
    act=$(grep "^$w " "$tmp/active" | cut -d' ' -f2-)
    for s in $act; do
      # the histogram of the run whose deliveries/s is closest to the median
      med=$(col "$w" "$s" deliveries_per_s | median)
      [ "$med" = "-" ] && continue
      rep=$(grep "^$w $s ok " "$results" | while read -r _ _ _ r l; do
        echo "$r $(field "$l" deliveries_per_s)"; done |
        awk -v m="$med" '{ d = $2 - m; if (d < 0) d = -d; if (best == "" || d < bd) { best = $1; bd = d } } END { print best }')
      [ -n "$rep" ] && cp "$tmp/runs/$w.$s.$rep.hist.csv" "$CHARTS/$w.$s.hist.csv"
      [ -s "$tmp/runs/$w.$s.sweep.csv" ] && cp "$tmp/runs/$w.$s.sweep.csv" "$CHARTS/$w.$s.sweep.csv"
    done
  done
  "$here/plot.sh" dir "$CHARTS" && echo "compare.sh: charts in $CHARTS" >&2
fi
