#!/usr/bin/env bash
# Where one request's CPU goes, by thread: this checkout's gateway serves the nginx `return 200`
# upstream (non-streamed chat) to wrk at each connection count; around the run the CPU of every
# thread (utime + stime from /proc/PID/task/*/stat) and its context switches are read, and printed
# per completed request, grouped by thread name ("Hermes requests" is the request path,
# "analytics" the DuckDB writer). PERF=1 also records a profile of the run (perf.data in $OUT).
#
#   CONNS="1 64" DURATION=8 benches/load/threads.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/load/common.sh
CONNS="${CONNS:-1 64}" DURATION="${DURATION:-8}" OUT="${OUT:-$work}"
tick=$(getconf CLK_TCK)

# name<TAB>cpu ticks<TAB>context switches, one line per thread
snapshot() {
  for t in /proc/"$1"/task/*; do
    local comm stat cs
    comm=$(cat "$t/comm" 2>/dev/null) || continue
    stat=$(sed 's/.*) //' "$t/stat" 2>/dev/null) || continue
    cs=$(awk '/ctxt_switches/ {s += $2} END {print s}' "$t/status" 2>/dev/null) || continue
    printf '%s\t%s\t%s\n' "$comm" "$(echo "$stat" | awk '{print $12 + $13}')" "$cs"
  done
}

UP=$(port); instant_upstream "$UP"; sleep 0.5
for c in $CONNS; do
  gateway "threads$c" "$UP"
  pid=$GATEWAY_PID; url="http://127.0.0.1:$GATEWAY_PORT/v1/chat/completions"
  wrk -t1 -c"$c" -d2s -s "$work/post.lua" "$url" > /dev/null
  quiet "$pid"
  snapshot "$pid" > "$work/before"
  if [ -n "${PERF:-}" ]; then
    perf record -F 1000 --call-graph dwarf,32768 -p "$pid" -o "$OUT/perf.$c.data" -- \
      wrk -t1 -c"$c" -d"${DURATION}s" --latency -s "$work/post.lua" "$url" > "$work/wrk.out" 2>/dev/null
  else
    wrk -t1 -c"$c" -d"${DURATION}s" --latency -s "$work/post.lua" "$url" > "$work/wrk.out"
  fi
  snapshot "$pid" > "$work/after"
  requests=$(awk '/requests in/ {print $1}' "$work/wrk.out")
  echo "## $c connection(s): $requests requests in ${DURATION} s"
  grep -E "^ +(50|99)%" "$work/wrk.out" | sed 's/^ */latency p/'
  python3 - "$work/before" "$work/after" "$requests" "$tick" <<'PY'
import collections, sys
def load(path):
    rows = collections.defaultdict(lambda: [0, 0, 0])
    for line in open(path):
        name, ticks, switches = line.rstrip("\n").split("\t")
        rows[name][0] += int(ticks); rows[name][1] += int(switches or 0); rows[name][2] += 1
    return rows
before, after, requests, tick = load(sys.argv[1]), load(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
print("| thread | threads | CPU µs per request | context switches per request |")
print("|---|---|---|---|")
total = [0.0, 0.0]
for name in sorted(after, key=lambda n: -(after[n][0] - before[n][0])):
    cpu = (after[name][0] - before[name][0]) / tick * 1e6 / requests
    cs = (after[name][1] - before[name][1]) / requests
    total[0] += cpu; total[1] += cs
    if cpu >= 0.05 or cs >= 0.005:
        print(f"| {name} | {after[name][2]} | {cpu:.1f} | {cs:.2f} |")
print(f"| all | | {total[0]:.1f} | {total[1]:.2f} |")
PY
  kill "$pid" 2>/dev/null || true
  quiet "$pid" 2>/dev/null
done
