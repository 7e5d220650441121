#!/usr/bin/env bash
# Autoscaler step load (bench/README.md, Autoscaler): calm, then FACTOR times
# the calm rate for a while, then calm again, against a fresh ringcastd with
# its default settings, with the shard count, the shards' queues and QPS and
# the delivery rate sampled every second and the latency of every second's
# messages taken from ringcast-bench (--schedule, --timeline).
#
#   bench/scale.sh [--rate 10000] [--factor 4] [--calm 60] [--burst 40] [--after 90]
#                  [--workload fanout] [--out DIR] [--build DIR] [--chart FILE] [-- ringcast-bench flags]
#
# Starts ringcastd on free loopback ports with a fresh data directory under
# DIR (plus $RINGCASTD_ARGS), runs one ringcast-bench open-loop step with
# the schedule CALM:1,BURST:FACTOR,AFTER:1 at --rate, samples GET
# /admin/shards and /metrics every second, stops the server with SIGTERM and
# checks that it exits cleanly, draws the chart (bench/plot.sh scale) and
# judges:
#   steady  no shard-count change during the calm phase (give it >= 60 s)
#   up      the first grow within 2 x scale_interval_ms of the step up
#   down    the first shrink within scale_cooldown_ms of the step down
# Choose --rate so that the server keeps up with it and FACTOR x rate so
# that the shards' queues rise above the high mark (src/core/scaler.h); see
# bench/RESULTS.md for how the figures there were chosen.
#
# DIR (default /tmp/ringcast-scale.TIMESTAMP) then holds:
#   summary.txt    the figures, the events with what was measured around
#                  them, and the verdict (also printed)
#   scale.csv      one row per sample (t_s = seconds since the load began)
#   events.txt     the server's shard-count changes (unix time, log line)
#   timeline.csv   ringcast-bench --timeline; bench.txt, bench.json, bench.err
#   ringcastd.log  the server's log, every line prefixed with its unix time
#   scale.svg      the chart (also written to --chart FILE when given)
#
# Exit status: 0 every criterion met; 2 a criterion not met; 3 ringcast-bench
# saw loss or disorder (or failed); 4 the server died or did not stop
# cleanly; 1 something could not start.
set -u -o pipefail

die() { echo "scale.sh: $*" >&2; exit 1; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

here=$(cd "$(dirname "$0")" && pwd)
rate=10000 factor=4 calm=60 burst=40 after=90 workload=fanout out="" chart=""
build=${BUILD:-build-rel}
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) rate=$2; shift 2 ;;
    --factor) factor=$2; shift 2 ;;
    --calm) calm=$2; shift 2 ;;
    --burst) burst=$2; shift 2 ;;
    --after) after=$2; shift 2 ;;
    --workload) workload=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --chart) chart=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) usage >&2; exit 1 ;;
  esac
done
for v in calm burst after; do
  if ! [[ ${!v} =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ]; then die "--$v must be a whole number of seconds >= 1"; fi
done
total=$((calm + burst + after))
[ "$total" -le 600 ] || die "calm + burst + after must be <= 600 s (ringcast-bench's longest window)"
ringcastd=${RINGCASTD:-$build/ringcastd}
bench=${RINGCAST_BENCH:-$build/ringcast-bench}
[ -x "$ringcastd" ] || die "$ringcastd not found (build first, or set RINGCASTD)"
[ -x "$bench" ] || die "$bench not found (set RINGCAST_BENCH)"
command -v jq >/dev/null || die "jq is not installed (apt-get install jq)"
command -v curl >/dev/null || die "curl is not installed"
out=${out:-/tmp/ringcast-scale.$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out" || die "cannot make $out"
rm -rf "$out/data"
rm -f "$out"/{scale.csv,raw.csv,events.txt,timeline.csv,bench.txt,bench.json,bench.err,summary.txt,scale.svg}

SAMPLE_TIMEOUT_S=2 # one admin request (the sample is skipped when it takes longer)
server_pid="" sampler_pid=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null
  [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null && kill -KILL "$server_pid" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=bench/server.sh
. "$here/server.sh"

# Every line of the server's log gets the unix time it was written at, so
# that its scale events can be put on the load's time axis.
stamp() { local l; while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done; }

# CPU seconds: the whole box (busy time of every core, /proc/stat) and one
# process (utime + stime, /proc/PID/stat), to tell our load from others'.
box_cpu_s() { awk -v hz="$(getconf CLK_TCK)" '/^cpu / { print ($2 + $3 + $4 + $7 + $8 + $9) / hz; exit }' /proc/stat; }
pid_cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0; }
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
busy_before=$(ps -eo pcpu=,comm= --sort=-pcpu | head -n 5 | awk '{ printf "%s%s %s%%", (NR > 1 ? ", " : ""), $2, $1 }')

# shellcheck disable=SC2086 # RINGCASTD_ARGS is a list of flags
"$ringcastd" --data-dir "$out/data" --port 0 --http-port 0 --admin-port 0 ${RINGCASTD_ARGS:-} \
  > >(stamp >"$out/ringcastd.log") 2>&1 &
server_pid=$!
listen=$(wait_line "$out/ringcastd.log" 30 'event=listening') || die "ringcastd did not start (see $out/ringcastd.log)"
port=$(sed -E 's/.* tcp=[^ ]*:([0-9]+) .*/\1/' <<<"$listen")
admin=$(sed -E 's/.* admin=[^ ]*:([0-9]+) .*/\1/' <<<"$listen")
conf=$(curl -sf --max-time 2 "http://127.0.0.1:$admin/admin/shards") || die "GET /admin/shards failed"
read -r shards0 max_shards interval_ms cooldown_ms < <(jq -r '"\(.shards) \(.max_shards) \(.scale_interval_ms) \(.scale_cooldown_ms)"' <<<"$conf")
# max_queue_ms sets the queue's time bound (max_queue_ms / RC_IO_ADMIT_DIVISOR);
# the server's default unless RINGCASTD_ARGS says otherwise.
max_queue_ms=$(sed -nE 's/.*--max-queue-ms[ =]([0-9]+).*/\1/p' <<<"${RINGCASTD_ARGS:-}")
max_queue_ms=${max_queue_ms:-$("$ringcastd" --help | awk '/--max-queue-ms/ { gsub(/"/, "", $NF); print $NF; exit }')}
max_queue_ms=${max_queue_ms:-2000}
echo "scale.sh: ringcastd pid $server_pid on 127.0.0.1:$port (admin $admin), $shards0 shards (max $max_shards)," \
  "autoscaler every $interval_ms ms, cooldown $cooldown_ms ms; ${calm} s at $rate msgs/s, ${burst} s at ${factor}x," \
  "${after} s at $rate; results in $out" >&2

# One row per second: unix time, the shard count and events, the queue
# fill the autoscaler sees (re-computed from /metrics as src/app/scale.c
# fill_pct does: the fullest shard's depth against RC_IO_ADMIT_MAX_JOBS jobs
# or its depth x job cost against max_queue_ms / RC_IO_ADMIT_DIVISOR; 100
# while requests wait outside the rings), each shard's queue and QPS, and the
# server's cumulative deliveries.
sample_once() {
  local js m
  js=$(curl -sf --max-time "$SAMPLE_TIMEOUT_S" "http://127.0.0.1:$admin/admin/shards") || return 0
  m=$(curl -sf --max-time "$SAMPLE_TIMEOUT_S" "http://127.0.0.1:$admin/metrics") || return 0
  local shard_cols
  shard_cols=$(jq -r --argjson max "$max_shards" '[range(0; $max) as $i | (.list[$i].queue // "")] + [range(0; $max) as $i | (.list[$i].qps // "")] | join(",")' <<<"$js")
  awk -v now="$1" -v took="$EPOCHREALTIME" -v js_head="$(jq -r '"\(.shards),\(.grow_events),\(.shrink_events),\(.groups_moved),\(.last_move_ms)"' <<<"$js")" \
      -v shard_cols="$shard_cols" -v mq="$max_queue_ms" '
    /^ringcast_deliveries_total/ { deliv += $2 }
    /^ringcast_io_jobs_waiting/ { waiting += $2 }
    /^ringcast_shard_ring_depth/ { match($1, /shard="[0-9]+"/); i = substr($1, RSTART + 7, RLENGTH - 8) + 0; depth[i] = $2 }
    /^ringcast_shard_ring_capacity/ { match($1, /shard="[0-9]+"/); i = substr($1, RSTART + 7, RLENGTH - 8) + 0; cap[i] = $2 }
    /^ringcast_store_commits_total/ { commits += $2 }
    /^ringcast_store_commit_ns_total/ { commit_ns += $2 }
    /^ringcast_shard_job_nanoseconds/ { match($1, /shard="[0-9]+"/); i = substr($1, RSTART + 7, RLENGTH - 8) + 0; jobns[i] = $2 }
    END {
      split(js_head, h, ","); n = h[1]; worst = 0
      admit_ns = mq * 1e6 / 8            # RC_IO_ADMIT_DIVISOR (src/net/io.h)
      for (i = 0; i < n; i++) {
        c = cap[i] > 16384 || cap[i] == 0 ? 16384 : cap[i]   # RC_IO_ADMIT_MAX_JOBS
        bj = depth[i] * 100 / c; bt = admit_ns ? depth[i] * jobns[i] * 100 / admit_ns : 0
        f = bj > bt ? bj : bt; if (f > 100) f = 100; if (f > worst) worst = f
      }
      if (waiting > 0) worst = 100
      printf "%s,%s,%d,%d,%.0f,%.0f,%.0f,%.1f,%s\n", now, js_head, worst, waiting, deliv, commits, commit_ns,
             (took - now) * 1000, shard_cols
    }' <<<"$m"
}
sampler() {
  local q=""
  for ((i = 0; i < max_shards; i++)); do q+=",queue$i"; done
  for ((i = 0; i < max_shards; i++)); do q+=",qps$i"; done
  echo "unix_s,shards,grow_events,shrink_events,groups_moved,last_move_ms,fill_pct,jobs_waiting,deliveries_total,commits_total,commit_ns_total,sample_ms$q"
  while :; do
    sample_once "$EPOCHREALTIME"
    # sleep to the next whole second (sub-second sleeps, GNU sleep)
    sleep "$(awk -v n="$EPOCHREALTIME" 'BEGIN { printf "%.3f", 1 - (n - int(n)) + 0.0005 }')"
  done
}
sampler >"$out/raw.csv" &
sampler_pid=$!

sched="$calm:1,$burst:$factor,$after:1"
cmd=("$bench" "$workload" --port "$port" --rate "$rate" --schedule "$sched" --timeline "$out/timeline.csv"
     --json "$out/bench.json" --server-pid "$server_pid" --progress "$@")
echo "scale.sh: ${cmd[*]}" >&2
cpu_t0=$EPOCHREALTIME cpu_box0=$(box_cpu_s) cpu_srv0=$(pid_cpu_s "$server_pid")
timeout --signal=INT $((total + 240)) "${cmd[@]}" >"$out/bench.txt" 2> >(tee "$out/bench.err" >&2)
bench_rc=$?
cpu_t1=$EPOCHREALTIME cpu_box1=$(box_cpu_s) cpu_srv1=$(pid_cpu_s "$server_pid")
sleep 2 # two more samples after the drain
kill "$sampler_pid" 2>/dev/null
wait "$sampler_pid" 2>/dev/null
sampler_pid=""
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

stop_server "$server_pid"
server_pid=""
sleep 0.2 # the log's last lines

grep -E 'component=scale event=(grow|shrink) ' "$out/ringcastd.log" >"$out/events.txt"
[ -s "$out/timeline.csv" ] || die "ringcast-bench wrote no timeline (exit $bench_rc; see $out/bench.err)"
t0=$(awk -F, 'NR == 2 { print $2; exit }' "$out/timeline.csv")

# scale.csv: the samples on the load's time axis, rates per second between
# samples, and the bench's figures for the second of scheduled sends that
# overlaps the second before each sample most.
awk -F, -v t0="$t0" -v calm="$calm" -v burst="$burst" -v total="$total" -v maxs="$max_shards" '
  FILENAME == ARGV[1] { file = 1 }
  FILENAME == ARGV[2] { file = 2 }
  file == 1 { if (FNR > 1) { tl_sent[$1] = $4; tl_n[$1] = $5; tl_p50[$1] = $6; tl_p99[$1] = $8; tl_max[$1] = $9 }; next }
  file == 2 && FNR == 1 {
    printf "t_s,unix_s,phase,shards,grow_events,shrink_events,groups_moved,last_move_ms,fill_pct,jobs_waiting,sample_ms,commit_ms_mean,queue_total,queue_max"
    for (i = 0; i < maxs; i++) printf ",queue%d", i
    for (i = 0; i < maxs; i++) printf ",qps%d", i
    print ",jobs_per_s,deliveries_per_s,sent_per_s,lat_count,lat_p50_ms,lat_p99_ms,lat_max_ms"
    next
  }
  file == 2 {
    t = $1 - t0
    phase = t < 0 ? "before" : t < calm ? "calm" : t < calm + burst ? "burst" : t < total ? "after" : "drain"
    qt = 0; qm = 0; jobs = 0
    for (i = 0; i < maxs; i++) { q = $(13 + i); if (q != "") { qt += q; if (q > qm) qm = q } ; jobs += $(13 + maxs + i) }
    dps = prev_t != "" && $1 > prev_t ? ($9 - prev_d) / ($1 - prev_t) : 0
    cms = prev_t != "" && $10 > prev_c ? ($11 - prev_cns) / ($10 - prev_c) / 1e6 : 0
    prev_t = $1; prev_d = $9; prev_c = $10; prev_cns = $11
    s = int(t + 0.5) - 1   # the bench second [s, s + 1) that overlaps the sample period (t - 1, t] most
    printf "%.3f,%.3f,%s,%s,%s,%s,%s,%s,%s,%s,%s,%.2f,%d,%d", t, $1, phase, $2, $3, $4, $5, $6, $7, $8, $12, cms, qt, qm
    for (i = 0; i < 2 * maxs; i++) printf ",%s", $(13 + i)
    if (s >= 0 && (s in tl_sent))
      printf ",%d,%.0f,%s,%s,%.3f,%.3f,%.3f\n", jobs, dps, tl_sent[s], tl_n[s], tl_p50[s] / 1000, tl_p99[s] / 1000, tl_max[s] / 1000
    else
      printf ",%d,%.0f,,,,,\n", jobs, dps
  }' "$out/timeline.csv" "$out/raw.csv" >"$out/scale.csv"

kv() { grep -o " $1=[^ ]*" "$out/bench.txt" | tail -n 1 | cut -d= -f2; }

# The verdict, from the events (log time) and the samples.
summary=$(awk -F, -v t0="$t0" -v calm="$calm" -v burst="$burst" -v total="$total" -v iv="$interval_ms" \
              -v cd="$cooldown_ms" -v shards0="$shards0" '
  FILENAME == ARGV[1] {   # events.txt: UNIX level=info component=scale event=grow shards=2->3 why=... ms=...
    split($0, w, " "); ev_done[++ne] = w[1] - t0
    match($0, /event=[a-z]+/); ev_dir[ne] = substr($0, RSTART + 6, RLENGTH - 6)
    match($0, /shards=[0-9]+->[0-9]+/); ev_sh[ne] = substr($0, RSTART + 7, RLENGTH - 7)
    match($0, /why=[^ ]+/); ev_why[ne] = substr($0, RSTART + 4, RLENGTH - 4)
    match($0, / ms=[0-9.]+/); ev_ms[ne] = substr($0, RSTART + 4, RLENGTH - 4)
    # the line is written once the move is done; the new route was published ms before
    ev_t[ne] = ev_done[ne] - ev_ms[ne] / 1000
    next
  }
  FNR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }   # scale.csv
  {
    ns++; st[ns] = $col["t_s"]; sh[ns] = $col["shards"]; fill[ns] = $col["fill_pct"]
    dps[ns] = $col["deliveries_per_s"]; p99[ns] = $col["lat_p99_ms"]; sent[ns] = $col["sent_per_s"]
    if (st[ns] >= calm && high == "" && fill[ns] > 80) high = st[ns]
    if (st[ns] >= calm + burst && fill[ns] < 20) { if (++lowrun == 3 && low == "") low = st[ns - 2] } else lowrun = 0
    if (st[ns] >= 0 && st[ns] < total) { last_sh = sh[ns] }
  }
  function around(t, lo, hi,   i, n, sd, sp, mp) {
    n = 0; sd = 0; mp = 0
    for (i = 1; i <= ns; i++) if (st[i] >= t + lo && st[i] < t + hi) { n++; sd += dps[i]; if (p99[i] + 0 > mp) mp = p99[i] + 0 }
    return n ? sprintf("%8.0f deliveries/s, p99 up to %8.1f ms", sd / n, mp) : "(no samples)"
  }
  END {
    up = calm; down = calm + burst; ok = 1
    steady = 0; for (i = 1; i <= ne; i++) if (ev_t[i] < up) steady++
    g = ""; for (i = 1; i <= ne; i++) if (ev_t[i] >= up && ev_dir[i] == "grow") { g = ev_t[i]; break }
    s = ""; for (i = 1; i <= ne; i++) if (ev_t[i] >= down && ev_dir[i] == "shrink") { s = ev_t[i]; break }
    ngrow = 0; nshrink = 0; for (i = 1; i <= ne; i++) if (ev_dir[i] == "grow") ngrow++; else nshrink++
    printf "events (t = seconds since the load began, when the new route was published; the step up at %d s, down at %d s):\n", up, down
    for (i = 1; i <= ne; i++)
      printf "  t=%7.2f %-6s %-6s move %s ms (done at t=%.2f)  why=%s\n", ev_t[i], ev_dir[i], ev_sh[i], ev_ms[i], ev_done[i], ev_why[i]
    if (ne == 0) print "  none"
    print "around each event (5 s before | 5 s after, from the samples):"
    for (i = 1; i <= ne; i++)
      printf "  t=%7.2f %-6s before: %s | after: %s\n", ev_t[i], ev_dir[i], around(ev_t[i], -5, 0), around(ev_t[i], 0, 5)
    printf "phases: calm %s | burst %s | after %s\n", around(0, 0, calm), around(calm, 0, burst), around(down, 0, total - down)
    v = calm >= 60 && steady == 0 ? "PASS" : "FAIL"; if (v == "FAIL") ok = 0
    printf "steady: %d shard-count changes during the %d s calm phase%s -> %s\n", steady, calm,
           calm < 60 ? " (shorter than the 60 s asked for)" : "", v
    lim = 2 * iv / 1000
    if (g == "") { v = "FAIL"; gtxt = "no grow after the step up" }
    else { v = g - up <= lim ? "PASS" : "FAIL"; gtxt = sprintf("first grow at t=%.2f, %.2f s after the step", g, g - up) }
    if (v == "FAIL") ok = 0
    printf "up: %s (limit 2 x %.1f s = %.1f s; queue above 80%% first sampled at %s) -> %s\n", gtxt, iv / 1000, lim,
           high == "" ? "never" : sprintf("t=%.2f", high), v
    lim = cd / 1000
    if (s == "") { v = "FAIL"; stxt = "no shrink after the step down" }
    else { v = s - down <= lim ? "PASS" : "FAIL"; stxt = sprintf("first shrink at t=%.2f, %.2f s after the step", s, s - down) }
    if (v == "FAIL") ok = 0
    printf "down: %s (limit scale_cooldown_ms = %.1f s; queue below 20%% for 3 samples from %s) -> %s\n", stxt, lim,
           low == "" ? "never" : sprintf("t=%.2f", low), v
    printf "shards: %d at start, %s at the end of the load; %d grows, %d shrinks\n", shards0, last_sh, ngrow, nshrink
    printf "criteria=%s\n", ok ? "met" : "not_met"
  }' "$out/events.txt" "$out/scale.csv")

rc=0
case "$summary" in *criteria=met*) ;; *) rc=2 ;; esac
[ "$bench_rc" = 0 ] || rc=3
case "$stop" in "exited with status 0"*) ;; *) rc=4 ;; esac
{
  echo "# bench/scale.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) $(git -C "$here" rev-parse --short HEAD 2>/dev/null)"
  echo "command: ${cmd[*]}"
  echo "server: $ringcastd ${RINGCASTD_ARGS:-} (defaults otherwise): $shards0 shards at start, max $max_shards," \
    "scale_interval_ms=$interval_ms scale_cooldown_ms=$cooldown_ms max_queue_ms=$max_queue_ms; stop: $stop"
  echo "box: $(nproc) cores; load average before $load_before, after $load_after; busiest before: $busy_before"
  awk -v t="$cpu_t1 - $cpu_t0" -v b0="$cpu_box0" -v b1="$cpu_box1" -v s0="$cpu_srv0" -v s1="$cpu_srv1" \
      -v gen="$(kv gen_cpu_pct)" -v win="$total" 'BEGIN {
    split(t, w, " - "); dt = w[1] - w[2]; if (dt <= 0) exit
    box = (b1 - b0) / dt; srv = (s1 - s0) / dt; g = gen / 100 * win / dt
    printf "cpu during the run (cores busy, of %d): box %.2f, ringcastd %.2f, ringcast-bench about %.2f, everything else %.2f\n",
           '"$(nproc)"', box, srv, g, box - srv - g }'

  echo "bench: exit $bench_rc, offered_msgs_per_s=$(kv offered_msgs_per_s) published=$(kv published)" \
    "deliveries=$(kv deliveries) lat_p50_us=$(kv lat_p50_us) lat_p99_us=$(kv lat_p99_us) lat_max_us=$(kv lat_max_us)" \
    "unsent=$(kv unsent) rejected=$(kv rejected) errors=$(kv errors) gaps=$(kv gaps) missing=$(kv missing)" \
    "gen_cpu_pct=$(kv gen_cpu_pct) server_cpu_pct=$(kv server_cpu_pct)"
  echo "$summary" | grep -v '^criteria='
  echo "server log lines by level: $(sed -nE 's/^[0-9.]+ level=([a-z]+) .*/\1/p' "$out/ringcastd.log" | sort | uniq -c | tr -s ' \n' ' ')"
  echo "warn and error lines: $(sed -nE 's/^[0-9.]+ level=(warn|error) component=([^ ]+) event=([^ ]+).*/\1 \2 \3/p' "$out/ringcastd.log" | sort | uniq -c | tr -s ' \n' ' ')"
  case $rc in
    0) echo "verdict: PASS (the shard count followed the step load as asked)" ;;
    2) echo "verdict: FAIL (the shard count did not follow as asked; see above)" ;;
    3) echo "verdict: FAIL (ringcast-bench exit $bench_rc: loss, disorder or a failed run; see bench.err)" ;;
    4) echo "verdict: FAIL (the server $stop)" ;;
  esac
} >"$out/summary.txt"

if command -v gnuplot >/dev/null && [ -s "$out/scale.csv" ]; then
  "$here/plot.sh" scale "$out/scale.svg" \
    "ringcastd autoscaler: $workload at $rate msgs/s, ${factor}x for ${burst} s" "$out/scale.csv" "$calm" "$((calm + burst))" &&
    [ -n "$chart" ] && cp "$out/scale.svg" "$chart"
fi
cat "$out/summary.txt"
exit "$rc"
