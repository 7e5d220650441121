# shellcheck shell=bash disable=SC2034 # `stop` is read by the scripts that source this
# Shell functions for the bench scripts that start their own ringcastd
# (soak.sh, scale.sh, features.sh, builds.sh): source it, do not run it.

# Waits up to $2 seconds for a line matching $3 in file $1; prints it.
wait_line() {
  local _
  for _ in $(seq 1 $(($2 * 10))); do
    grep -m1 -E "$3" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# Stops the server $1 (a child of this shell): SIGTERM, then up to 30 s
# (shutdown_timeout_ms, 5 s by default, plus slack). Sets `stop` to what
# happened: "exited with status N after SIGTERM", "did not exit within 30 s
# of SIGTERM" or "gone before the end".
stop_server() {
  local _
  stop="gone before the end"
  kill -0 "$1" 2>/dev/null || return 0
  kill -TERM "$1"
  stop="did not exit within 30 s of SIGTERM"
  for _ in $(seq 1 300); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  if ! kill -0 "$1" 2>/dev/null; then
    wait "$1"
    stop="exited with status $? after SIGTERM"
  fi
}

# Three distinct free loopback ports (held open together, so none repeats).
free_ports() { /usr/bin/python3 -c 'import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])'; }

# The value of key $2 in a ringcast-bench result line $1.
field() { grep -o "\b$2=[^ ]*" <<<"$1" | head -n 1 | cut -d= -f2; }

# Numbers on stdin, one a line: "median min max" (rounded), "- - -" for none.
stats() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "- - -"; exit }
  m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.0f %.0f %.0f\n", m, v[1], v[NR] }'; }

# The run-shape flags of the interleaved scripts (features.sh, builds.sh):
# when $1 is --reps, --duration, --warmup or --workload, sets reps,
# duration, warmup or workload to $2 and returns 0 (the caller shifts 2);
# returns 1 for any other word.
run_flag() {
  case "$1" in
    --reps) reps=$2 ;;
    --duration) duration=$2 ;;
    --warmup) warmup=$2 ;;
    --workload) workload=$2 ;;
    *) return 1 ;;
  esac
}
