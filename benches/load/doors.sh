#!/usr/bin/env bash
# The three front doors side by side on one gateway: streamed requests through Chat Completions,
# Responses and Messages (streamload ttft, 5 chunks 2 ms apart, as in run.sh), the doors
# alternated ROUNDS times. Per door and round: TTFT p50/p99 as the client saw it, and the
# gateway's CPU per stream (utime + stime from /proc over the round, divided by its streams;
# the analytics writer's share included, since it runs on the same two cores).
#
#   benches/load/doors.sh                       # N=2000 streams per round, ROUNDS=2
#   HERMES_BINARY=/tmp/other benches/load/doors.sh    # another build (HERMES_POLICIES=its policies/)
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${N:-2000}"
ROUNDS="${ROUNDS:-2}"
. benches/load/common.sh
SSE=$(port)
"$LOADGEN" upstream "$SSE" 2 5 & pids+=($!)
gateway doors "$SSE"; PID=$GATEWAY_PID
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
hz=$(getconf CLK_TCK)
echo "| round | door | TTFT p50 | TTFT p99 | gateway CPU µs per stream | failed |"
echo "|---|---|---|---|---|---|"
for round in $(seq 1 "$ROUNDS"); do
  for door in chat responses messages; do
    [ "$door" = chat ] && d="" || d=$door
    before=$(ticks)
    out=$(LOADGEN_PATH=/v1/chat/completions LOADGEN_MODEL=bench-model LOADGEN_DOOR=$d "$LOADGEN" ttft "127.0.0.1:$GATEWAY_PORT" "$N")
    # The writer's batch for this round lands within its one-second flush.
    sleep 1.2
    after=$(ticks)
    field() { tr ' ' '\n' <<<"$out" | sed -n "s/^$1=//p"; }
    echo "| $round | $door | $(field ttft_p50) µs | $(field ttft_p99) µs | $(( (after - before) * 1000000 / hz / N )) | $(field failed) |"
  done
done
