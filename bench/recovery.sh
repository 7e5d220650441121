#!/usr/bin/env bash
# Recovery time and memory: fills a fresh data directory with G groups (M
# members and K messages each), starts ringcastd on it, and reports the
# recovery ringcastd logged (event=recovered, ringcast_recovery_seconds), the
# time until /readyz answered 200, the CPU time the server had used by then
# (all threads) with the 1-minute load, and the server's RSS when ready and
# after --idle seconds of idling.
#
#   bench/recovery.sh [--groups 100000] [--history 10] [--members 5]
#       [--via-server] [--kill] [--idle 0] [--verify 0] [--data-dir DIR]
#
# The data directory is filled by ringcast-populate (the store code, offline)
# or, with --via-server, by ringcast-mkgroups through a first ringcastd on
# it: sessions that join the groups and send K messages each, every reply
# checked; that server is then stopped with SIGTERM (--kill: SIGKILL) and a
# second one started on the same directory. --verify N then joins the
# groups of N spread chunks and checks that each reports seq = K (nothing
# lost, no seq reused). --data-dir DIR reuses a directory filled before
# (nothing is created, DIR is kept; --groups/--history must describe it).
# Extra ringcastd flags: RINGCASTD_ARGS. Environment: RINGCASTD (default
# build/ringcastd), RINGCAST_POPULATE, RINGCAST_MKGROUPS (default next to it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
RINGCASTD=${RINGCASTD:-$top/build/ringcastd}
POPULATE=${RINGCAST_POPULATE:-$top/build/ringcast-populate}
MKGROUPS=${RINGCAST_MKGROUPS:-$(dirname "$RINGCASTD")/ringcast-mkgroups}
NGROUPS=100000 HISTORY=10 MEMBERS=5 VIA=0 KILL=0 IDLE=0 VERIFY=0 REUSE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --groups) NGROUPS=$2; shift 2 ;;
    --history) HISTORY=$2; shift 2 ;;
    --members) MEMBERS=$2; shift 2 ;;
    --via-server) VIA=1; shift ;;
    --kill) KILL=1; shift ;;
    --idle) IDLE=$2; shift 2 ;;
    --verify) VERIFY=$2; shift 2 ;;
    --data-dir) REUSE=$2; shift 2 ;;
    *) echo "usage: $0 [--groups G] [--history K] [--members M] [--via-server] [--kill] [--idle S] [--verify N] [--data-dir DIR]" >&2
       exit 2 ;;
  esac
done
[ "$IDLE" -le 3600 ] || { echo "--idle is at most 3600 s" >&2; exit 2; }
# shellcheck source=bench/server.sh
. "$here/server.sh"
# shellcheck disable=SC2206
extra=(${RINGCASTD_ARGS:-})
work=$(mktemp -d /tmp/ringcast-recovery.XXXXXX)
dir=${REUSE:-$work/data}
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
admin=$(free_port)
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/{print $2}' "/proc/$1/status"; }
mb() { echo "scale=1; $1/1024" | bc -l; }

start() { # $1 log file
  "$RINGCASTD" --port "$port" --admin-port "$admin" --http-port 0 --data-dir "$dir" "${extra[@]}" 2>"$1" &
  pid=$!
}
wait_ready() { # up to 600 s
  local _
  for _ in $(seq 1 12000); do
    curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

if [ -n "$REUSE" ]; then
  [ -d "$dir" ] || { echo "no data directory $dir" >&2; exit 2; }
  echo "reusing $dir ($(du -sh "$dir" | cut -f1))" >&2
elif [ "$VIA" = 1 ]; then
  start "$work/fill.log"
  wait_ready || { echo "the filling ringcastd did not start" >&2; cat "$work/fill.log" >&2; exit 1; }
  "$MKGROUPS" --port "$port" --groups "$NGROUPS" --members "$MEMBERS" --history "$HISTORY" >&2
  fill_rss=$(rss_kb "$pid")
  if [ "$KILL" = 1 ]; then
    kill -KILL "$pid"; wait "$pid" 2>/dev/null || true
    stop="killed with SIGKILL"
  else
    stop_server "$pid"
  fi
  pid=""
  echo "filled $dir through ringcastd (RSS $(mb "$fill_rss") MB at the end), $stop; $(du -sh "$dir" | cut -f1) on disk" >&2
else
  "$POPULATE" --data-dir "$dir" --groups "$NGROUPS" --history "$HISTORY" --members "$MEMBERS" >&2
fi

t0=$(date +%s.%N)
start "$work/run.log"
wait_ready || { echo "ringcastd did not become ready" >&2; cat "$work/run.log" >&2; exit 1; }
t1=$(date +%s.%N)
grep -o 'event=recovered.*' "$work/run.log" >&2 || { echo "ringcastd did not report recovery" >&2; cat "$work/run.log" >&2; exit 1; }
metric=$(curl -s "http://127.0.0.1:$admin/metrics" | awk '/^ringcast_recovery_seconds /{print $2}')
ready_rss=$(rss_kb "$pid")
ready_cpu=$(awk '{printf "%.1f", ($14 + $15) / 100}' "/proc/$pid/stat") # utime + stime, all threads, at ready
ready_load=$(cut -d' ' -f1 /proc/loadavg)
sleep "$IDLE"
idle_rss=$(rss_kb "$pid")
verified=""
if [ "$VERIFY" -gt 0 ]; then
  "$MKGROUPS" --port "$port" --groups "$NGROUPS" --history "$HISTORY" --verify "$VERIFY" >&2
  verified=" verified_chunks=$VERIFY verify_rss_mb=$(mb "$(rss_kb "$pid")")"
fi
printf 'groups=%s history=%s members=%s via_server=%s recovery_seconds=%s start_to_ready_seconds=%.3f cpu_s_at_ready=%s load_at_ready=%s rss_ready_mb=%s rss_idle_mb=%s idle_s=%s hwm_mb=%s%s\n' \
  "$NGROUPS" "$HISTORY" "$MEMBERS" "$VIA" "$metric" "$(echo "$t1 - $t0" | bc -l)" "$ready_cpu" "$ready_load" "$(mb "$ready_rss")" \
  "$(mb "$idle_rss")" "$IDLE" "$(mb "$(hwm_kb "$pid")")" "$verified"
stop_server "$pid"
pid=""
