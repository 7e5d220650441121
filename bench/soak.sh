#!/usr/bin/env bash
# Soak: a long mixed load against a fresh ringcastd (bench/README.md, Soak).
#
#   bench/soak.sh [--duration S] [--out DIR] [--build DIR] [--embedded-broker] [-- ringcast-soak flags]
#
# Starts the dead-letter broker (ringcast-kafka-dev, in a process of its own,
# so that the letters it keeps are not counted in ringcastd's memory; with
# --embedded-broker ringcastd runs its in-process one instead), then
# ringcastd on free loopback ports with a fresh data directory under DIR and
# $RINGCASTD_ARGS, runs ringcast-soak against it for --duration seconds
# (default 1800), stops the server with SIGTERM and checks that it exits
# cleanly, and draws the charts (bench/plot.sh soak, soak-load).
#
# DIR (default /tmp/ringcast-soak.TIMESTAMP) then holds:
#   summary.txt    ringcast-soak's figures (key=value) and verdict
#   soak.csv       one row per sample (RSS, fds, CPU, rates, latency, ...)
#   soak.err       its progress lines and the bad-client deviations it saw
#   ringcastd.log  the server's log; server.txt: how it stopped, log lines by level
#   soak-memory.svg, soak-load.svg
#
# Exit status: ringcast-soak's (0 clean, 3 a fault), or 4 when the server
# did not stop cleanly, 1 when something could not start.
set -u -o pipefail

die() { echo "soak.sh: $*" >&2; exit 1; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

here=$(cd "$(dirname "$0")" && pwd)
duration=1800
out=""
build=${BUILD:-build-rel}
embedded=0
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --embedded-broker) embedded=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) usage >&2; exit 1 ;;
  esac
done
if ! [[ $duration =~ ^[0-9]+$ ]] || [ "$duration" -lt 1 ] || [ "$duration" -gt 86400 ]; then
  die "--duration must be 1..86400"
fi
ringcastd=${RINGCASTD:-$build/ringcastd}
soak=${RINGCAST_SOAK:-$build/ringcast-soak}
broker_bin=${RINGCAST_KAFKA_DEV:-$build/ringcast-kafka-dev}
[ -x "$ringcastd" ] || die "$ringcastd not found (build first, or set RINGCASTD)"
[ -x "$soak" ] || die "$soak not found (set RINGCAST_SOAK)"
out=${out:-/tmp/ringcast-soak.$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out" || die "cannot make $out"
rm -rf "$out/data"

server_pid="" broker_pid=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null && kill -KILL "$server_pid" 2>/dev/null
  [ -n "$broker_pid" ] && kill -0 "$broker_pid" 2>/dev/null && kill -TERM "$broker_pid" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=bench/server.sh
. "$here/server.sh"

broker_args=()
if [ "$embedded" = 0 ]; then
  [ -x "$broker_bin" ] || die "$broker_bin not found (or use --embedded-broker)"
  "$broker_bin" >"$out/broker.out" 2>"$out/broker.err" &
  broker_pid=$!
  boot=$(wait_line "$out/broker.out" 10 '^bootstrap=') || die "the broker did not start (see $out/broker.err)"
  broker_args=(--kafka-brokers "${boot#bootstrap=}")
fi

# shellcheck disable=SC2086 # RINGCASTD_ARGS is a list of flags
"$ringcastd" --data-dir "$out/data" --port 0 --http-port 0 --admin-port 0 "${broker_args[@]}" \
  ${RINGCASTD_ARGS:-} >"$out/ringcastd.log" 2>&1 &
server_pid=$!
listen=$(wait_line "$out/ringcastd.log" 30 'event=listening') || die "ringcastd did not start (see $out/ringcastd.log)"
port=$(sed -E 's/.* tcp=[^ ]*:([0-9]+) .*/\1/' <<<"$listen")
admin=$(sed -E 's/.* admin=[^ ]*:([0-9]+) .*/\1/' <<<"$listen")
echo "soak.sh: ringcastd pid $server_pid on 127.0.0.1:$port (admin $admin), ${duration} s, results in $out" >&2

timeout --signal=INT $((duration + 600)) "$soak" --server-pid "$server_pid" ${broker_pid:+--broker-pid "$broker_pid"} \
  --port "$port" --admin-port "$admin" --duration "$duration" --csv "$out/soak.csv" "$@" \
  >"$out/summary.txt" 2> >(tee "$out/soak.err" >&2)
rc=$?

stop_server "$server_pid"
server_pid_done=$server_pid
server_pid=""
{
  echo "server_pid=$server_pid_done stop: $stop"
  echo "log lines by level:"
  sed -nE 's/^level=([a-z]+) .*/\1/p' "$out/ringcastd.log" | sort | uniq -c
  echo "warn and error lines by component and event:"
  sed -nE 's/^level=(warn|error) component=([^ ]+) event=([^ ]+).*/\1 \2 \3/p' "$out/ringcastd.log" | sort | uniq -c
} >"$out/server.txt"
cat "$out/server.txt" >&2
case "$stop" in "exited with status 0"*) ;; *) [ "$rc" = 0 ] && rc=4 ;; esac

if command -v gnuplot >/dev/null && [ -s "$out/soak.csv" ]; then
  "$here/plot.sh" soak "$out/soak-memory.svg" "ringcastd under a ${duration} s soak: memory and descriptors" "$out/soak.csv"
  "$here/plot.sh" soak-load "$out/soak-load.svg" "ringcastd under a ${duration} s soak: load and latency" "$out/soak.csv"
fi
cat "$out/summary.txt"
exit "$rc"
