# Sourced by the scripts that start their own processes (e2e_recorder.sh, speech_load.sh):
# stopping them by PID, waiting for callmask's HTTP probes, and reading a process's CPU time
# and peak memory from /proc. Bash only; defines functions and nothing else.

# kill_list PID... : TERM each, wait up to 5 s for all to exit, then KILL whatever is left.
kill_list() {
  local p n
  for p in "$@"; do kill "$p" 2>/dev/null || true; done
  for n in $(seq 50); do
    for p in "$@"; do kill -0 "$p" 2>/dev/null && break; done
    kill -0 "$p" 2>/dev/null || return 0
    sleep 0.1
  done
  for p in "$@"; do kill -9 "$p" 2>/dev/null || true; done
}

# wait_http URL PID SECONDS : until URL answers 2xx. Fails early if PID (the server) exits,
# or after SECONDS.
wait_http() {
  local url=$1 pid=$2 i
  for ((i = 0; i < $3 * 10; i++)); do
    curl -sf -o /dev/null "$url" && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# proc_cpu_s PID : user + system CPU seconds of the process so far (all its threads), from
# /proc/PID/stat fields 14 and 15 (counted after the ")" that ends the command name, which
# may itself hold spaces).
proc_cpu_s() {
  local rest
  rest=$(sed 's/^.*) //' "/proc/$1/stat") || return 1
  # shellcheck disable=SC2086
  set -- $rest
  echo "${12} ${13} $(getconf CLK_TCK)" | awk '{ printf "%.2f\n", ($1 + $2) / $3 }'
}

# proc_peak_rss_kib PID : the process's peak resident set size so far (VmHWM), in KiB.
proc_peak_rss_kib() {
  awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}
