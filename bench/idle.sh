#!/usr/bin/env bash
# Idle connections: a fresh ringcastd (default configuration, fresh data
# directory), bench/idle.py against it (N sessions, hello + join each, held
# idle while a live client keeps sending), then a clean stop. The open-file
# soft limit is raised to the hard one for both processes.
#
#   bench/idle.sh [--conns 18000] [--sources 5] [--hold 60] [--groups 100]
# Extra ringcastd flags: RINGCASTD_ARGS. RINGCASTD defaults to build/ringcastd.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
RINGCASTD=${RINGCASTD:-$top/build/ringcastd}
CONNS=18000 SOURCES=5 HOLD=60 NGROUPS=100
while [ $# -gt 0 ]; do
  case "$1" in
    --conns) CONNS=$2; shift 2 ;;
    --sources) SOURCES=$2; shift 2 ;;
    --hold) HOLD=$2; shift 2 ;;
    --groups) NGROUPS=$2; shift 2 ;;
    *) echo "usage: $0 [--conns N] [--sources S] [--hold SECONDS] [--groups G]" >&2; exit 2 ;;
  esac
done
# shellcheck source=bench/server.sh
. "$here/server.sh"
ulimit -n "$(ulimit -Hn)"
# shellcheck disable=SC2206
extra=(${RINGCASTD_ARGS:-})
work=$(mktemp -d /tmp/ringcast-idle.XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
"$RINGCASTD" --port 0 --http-port 0 --admin-port 0 --data-dir "$work/data" "${extra[@]}" 2>"$work/log" &
pid=$!
line=$(wait_line "$work/log" 60 'event=listening') || { echo "ringcastd did not start" >&2; cat "$work/log" >&2; exit 1; }
port=$(echo "$line" | sed -E 's/.* tcp=[^ ]*:([0-9]+) .*/\1/')
admin=$(echo "$line" | sed -E 's/.* admin=[^ ]*:([0-9]+) .*/\1/')
echo "ringcastd pid $pid port $port, open files $(ulimit -n); load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
rc=0
/usr/bin/python3 "$here/idle.py" --pid "$pid" --port "$port" --conns "$CONNS" --sources "$SOURCES" \
  --hold "$HOLD" --groups "$NGROUPS" --admin-port "$admin" || rc=$?
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
grep -E 'level=(warn|error)' "$work/log" | grep -v 'event=auth\|event=memory_only' | head -5 >&2 || true
stop_server "$pid"
pid=""
echo "ringcastd $stop" >&2
exit $rc
