# shellcheck shell=bash disable=SC2034 # `stop` is read by the scripts that source this
# Shell functions for the bench scripts that start their own ringcastd
# (soak.sh, scale.sh): source it, do not run it.

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
