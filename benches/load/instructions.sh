#!/usr/bin/env bash
# Instructions the gateway executes per request, counted by valgrind's callgrind: a figure this
# VM's neighbours do not move (the same build's CPU per request swings by a third between runs
# of cpu.sh, and this VM has no hardware counters for perf). Each build serves the nginx
# `return 200` upstream under callgrind; after 200 warm-up requests the counters are zeroed,
# REQUESTS non-streamed chat completions go over one keep-alive connection, and the counts are
# dumped. Two figures per build:
#   - request path: only what runs inside pingora's per-connection task (reading the request,
#     Hermes's whole pipeline, writing the answer), collected with --toggle-collect;
#   - whole process: every thread, the analytics writer included. The writer's share depends on
#     how many jobs each of its one-second batches holds, so it is only comparable between
#     builds at the same request rate (under callgrind, a few hundred a second).
# User-space instructions only: the kernel's socket work (about half the request path's CPU,
# benches/load/threads.sh) is not in them, and instructions are not time (cache misses are
# free here). Prints Ir per request for each build, new/old, and the request path's heaviest
# functions (inclusive) for the last build.
#
#   benches/load/instructions.sh                        # this checkout alone
#   REQUESTS=2000 benches/load/instructions.sh /tmp/hermes-before
set -euo pipefail
cd "$(dirname "$0")/../.."
OLD="${1:-}"
REQUESTS="${REQUESTS:-2000}"
TOP="${TOP:-25}"
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hermes-target}"
cargo build --release --bin hermes -q
NEW="$(mktemp -d)/hermes-new"
cp "$CARGO_TARGET_DIR/release/hermes" "$NEW"
HERMES_BINARY="$NEW" . benches/load/common.sh
UP=$(port)
instant_upstream "$UP"

# send PORT COUNT: COUNT chat completions over one keep-alive connection, one after another.
send() {
  python3 - "$1" "$2" <<'PY'
import http.client, sys
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=60)
body = b'{"model":"bench-model","messages":[{"role":"user","content":"Say hello in one word."}]}'
for _ in range(int(sys.argv[2])):
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    r = conn.getresponse(); r.read()
    assert r.status == 200, r.status
PY
}

# count NAME BINARY: prints "NAME request_path_ir whole_ir" and leaves the request path's
# profile in $work/NAME.path.
count() {
  local name=$1 binary=$2 out="$work/$1"
  for what in path whole; do
    local toggle=""
    [ "$what" = path ] && toggle="'--toggle-collect=<T as pingora_core::apps::ServerApp>::process_new*'"
    cat > "$out.sh" <<SH
#!/bin/sh
exec valgrind --tool=callgrind --callgrind-out-file=$out.$what.%p $toggle "$binary" "\$@"
SH
    chmod +x "$out.sh"
    rm -rf "$work/$name.duckdb"*
    HERMES="$out.sh" gateway "$name" "$UP"
    # Under callgrind start-up takes seconds, longer than `gateway` waits; a gateway that
    # exited instead (a wrapper or valgrind refusing its options) ends the script at once.
    for _ in $(seq 1 600); do
      curl -fsS -o /dev/null "http://127.0.0.1:$GATEWAY_PORT/health" 2>/dev/null && break
      kill -0 "$GATEWAY_PID" 2>/dev/null || { echo "the $name gateway exited:" >&2; cat "$work/$name.log" >&2; exit 1; }
      sleep 0.5
    done
    local vpid; vpid=$(pgrep -f "callgrind-out-file=$out.$what" | head -1)
    send "$GATEWAY_PORT" 200
    sleep 2 # the warm-up's analytics batch is written
    callgrind_control -z "$vpid" > /dev/null 2>&1
    send "$GATEWAY_PORT" "$REQUESTS"
    sleep 1.5 # and this run's
    callgrind_control -d "$vpid" > /dev/null 2>&1
    sleep 1
    kill -TERM "$GATEWAY_PID"; wait "$GATEWAY_PID" 2>/dev/null || true
    # The dump after the zeroing is the largest file with a ".N" part number.
    local dump; dump=$(ls -S "$out.$what".*.[0-9]* | head -1)
    callgrind_annotate --threshold=100 --inclusive=yes "$dump" > "$out.$what" 2>/dev/null
  done
  local path whole
  path=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}' "$out.path")
  whole=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}' "$out.whole")
  echo "$name $((path / REQUESTS)) $((whole / REQUESTS))"
}

{
  [ -n "$OLD" ] && count old "$OLD"
  count new "$NEW"
} > "$work/results"
python3 - "$work/results" "$REQUESTS" <<'PY'
import sys
rows = {r.split()[0]: [int(x) for x in r.split()[1:]] for r in open(sys.argv[1])}
print(f"Instructions per request (valgrind callgrind, {sys.argv[2]} non-streamed chat completions at one connection):\n")
if "old" in rows:
    print("| figure | old | new | new/old |\n|---|---|---|---|")
    for i, name in enumerate(("request path", "whole process")):
        o, n = rows["old"][i], rows["new"][i]
        print(f"| {name} | {o:,} | {n:,} | {n / o:.3f} |")
else:
    print("| figure | this build |\n|---|---|")
    for i, name in enumerate(("request path", "whole process")):
        print(f"| {name} | {rows['new'][i]:,} |")
PY
echo
echo "The request path's heaviest functions in the last build (inclusive, instructions per request):"
python3 - "$work/new.path" "$REQUESTS" "$TOP" <<'PY'
import re, sys
n, top = int(sys.argv[2]), int(sys.argv[3])
seen, rows, total = set(), [], 0
for line in open(sys.argv[1]):
    if "PROGRAM TOTALS" in line:
        total = int(line.split()[0].replace(",", ""))
    m = re.match(r"\s*([0-9,]+) \([ 0-9.]+%\)\s+(\S.*?):(.+?)( \[.*\])?$", line)
    if not m or "PROGRAM TOTALS" in line:
        continue
    fn = m.group(3)
    if fn in seen:
        continue
    seen.add(fn)
    # The frames above pingora's task (the runtime, the thread) hold all of it: left out.
    if int(m.group(1).replace(",", "")) < 0.995 * total:
        rows.append((int(m.group(1).replace(",", "")), fn))
for ir, fn in rows[:top]:
    print(f"{ir / n:10,.0f}  {fn[:150]}")
PY
