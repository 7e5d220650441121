#!/usr/bin/env bash
# Recovery time: fills a fresh data directory with G groups (M members and K
# messages each) using ringcast-populate, starts ringcastd on it, and reports
# the recovery ringcastd logged and the time until /readyz answered 200.
#
#   bench/recovery.sh [--groups 100000] [--history 10] [--members 5]
# Environment: RINGCASTD (default build/ringcastd), RINGCAST_POPULATE (default build/ringcast-populate).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
RINGCASTD=${RINGCASTD:-$top/build/ringcastd}
POPULATE=${RINGCAST_POPULATE:-$top/build/ringcast-populate}
NGROUPS=100000 HISTORY=10 MEMBERS=5
while [ $# -gt 0 ]; do
  case "$1" in
    --groups) NGROUPS=$2; shift 2 ;;
    --history) HISTORY=$2; shift 2 ;;
    --members) MEMBERS=$2; shift 2 ;;
    *) echo "usage: $0 [--groups G] [--history K] [--members M]" >&2; exit 2 ;;
  esac
done
dir=$(mktemp -d /tmp/ringcast-recovery.XXXXXX)
log=$dir.log
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir" "$log"; }
trap cleanup EXIT
"$POPULATE" --data-dir "$dir" --groups "$NGROUPS" --history "$HISTORY" --members "$MEMBERS"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
admin=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
t0=$(date +%s.%N)
"$RINGCASTD" --port "$port" --admin-port "$admin" --http-port 0 --data-dir "$dir" 2>"$log" &
pid=$!
for _ in $(seq 1 600); do
  if curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1; then break; fi
  sleep 0.05
done
t1=$(date +%s.%N)
grep -o 'event=recovered.*' "$log" || { echo "ringcastd did not report recovery" >&2; cat "$log" >&2; exit 1; }
metric=$(curl -s "http://127.0.0.1:$admin/metrics" | awk '/^ringcast_recovery_seconds /{print $2}')
rss=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
printf 'groups=%s history=%s members=%s recovery_seconds=%s start_to_ready_seconds=%.3f rss_mb=%.1f\n' \
  "$NGROUPS" "$HISTORY" "$MEMBERS" "$metric" "$(echo "$t1 - $t0" | bc -l)" "$(echo "$rss/1024" | bc -l)"
