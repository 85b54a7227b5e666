#!/usr/bin/env bash
# CPU time Hermes spends per request, two builds side by side: a steadier figure than latency on
# a machine whose other tenants move the clock. Each build serves the same nginx `return 200`
# upstream (an OpenAI chat answer, non-streamed) to wrk at 1 and at 64 connections; `perf stat`
# counts the gateway's task-clock over the run, divided by the requests wrk completed. Then the
# same for streams: 1,000 streamed chat completions one after another (streamload ttft, 5 chunks
# 2 ms apart, as in run.sh), the gateway's task-clock divided by 1,000, beside their TTFT p99. Runs are
# interleaved (old, new, old, new, ...); prints each figure's median per build and new/old.
#
#   RUNS=5 DURATION=8 benches/load/cpu.sh /tmp/hermes-before /tmp/before/policies
set -euo pipefail
cd "$(dirname "$0")/../.."
OLD="${1:?usage: benches/load/cpu.sh OLD_HERMES_BINARY [OLD_POLICIES_DIR]}"
OLD_POLICIES="${2:-}"
RUNS="${RUNS:-5}"
DURATION="${DURATION:-8}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hermes-target}"
cargo build --release --bin hermes -q
NEW="$(mktemp -d)/hermes-new"
cp "$CARGO_TARGET_DIR/release/hermes" "$NEW"
HERMES_BINARY="$NEW" . benches/load/common.sh
command -v perf >/dev/null || { echo "perf is needed (apt-get install linux-perf)" >&2; exit 1; }
UP=$(port); SSE=$(port)
instant_upstream "$UP"
"$LOADGEN" upstream "$SSE" 2 5 & pids+=($!)

# one BINARY POLICIES: prints "conns cpu_us_per_request p50_us" lines for one fresh gateway, then
# "stream cpu_us_per_stream ttft_p99_us" for another one in front of the streaming upstream
one() {
  local p pid
  rm -f "$work/h.duckdb"*
  HERMES=$1 HERMES_POLICIES=$2 gateway h "$UP"; p=$GATEWAY_PORT; pid=$GATEWAY_PID
  wrk -t1 -c1 -d2s -s "$work/post.lua" "http://127.0.0.1:$p/v1/chat/completions" > /dev/null # warm: pools, caches, fitted models
  quiet "$pid"
  for conns in 1 64; do
    local threads; threads=$([ "$conns" = 1 ] && echo 1 || echo 2)
    perf stat -x, -e task-clock -p "$pid" -o "$work/perf.out" -- \
      wrk -t"$threads" -c"$conns" -d"${DURATION}s" --latency -s "$work/post.lua" "http://127.0.0.1:$p/v1/chat/completions" > "$work/wrk.out" 2>&1
    local ms requests p50
    ms=$(awk -F, '/task-clock/ {print $1}' "$work/perf.out")
    requests=$(awk '/requests in/ {print $1}' "$work/wrk.out")
    p50=$(python3 benches/load/wrk_summary.py "$work/wrk.out" | awk '{print $2}')
    echo "$conns $(python3 -c "print(f'{$ms * 1000 / $requests:.1f}')") $p50"
  done
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  rm -f "$work/hs.duckdb"*
  HERMES=$1 HERMES_POLICIES=$2 gateway hs "$SSE"; p=$GATEWAY_PORT; pid=$GATEWAY_PID
  "$LOADGEN" ttft "127.0.0.1:$p" 200 > /dev/null; quiet "$pid" # warm, then let its start-up work finish
  perf stat -x, -e task-clock -p "$pid" -o "$work/perf.out" -- "$LOADGEN" ttft "127.0.0.1:$p" 1000 > "$work/ttft.out"
  local ttft99; ttft99=$(tr ' ' '\n' < "$work/ttft.out" | sed -n 's/^ttft_p99=//p')
  echo "stream $(python3 -c "print(f'{$(awk -F, '/task-clock/ {print $1}' "$work/perf.out") * 1000 / 1000:.1f}')") $ttft99"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}

for i in $(seq 1 "$RUNS"); do
  one "$OLD" "$OLD_POLICIES" | sed 's/^/old /' >> "$work/results"
  one "$NEW" "" | sed 's/^/new /' >> "$work/results"
  echo "run $i done" >&2
done
python3 - "$work/results" "$RUNS" "$DURATION" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print(f"Medians of {sys.argv[2]} interleaved runs per build, {sys.argv[3]} s each (benches/load/cpu.sh):\n")
print("| connections | figure | old | new | new/old |\n|---|---|---|---|---|")
for conns in ("1", "64", "stream"):
    names = ("gateway CPU µs per stream", "TTFT p99 µs") if conns == "stream" else ("gateway CPU µs per request", "p50 µs")
    for col, name in zip((2, 3), names):
        o = statistics.median(float(r[col]) for r in rows if r[0] == "old" and r[1] == conns)
        n = statistics.median(float(r[col]) for r in rows if r[0] == "new" and r[1] == conns)
        print(f"| {conns} | {name} | {o:g} | {n:g} | {n / o:.2f} |")
PY
