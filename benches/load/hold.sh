#!/usr/bin/env bash
# Memory held with streams open: a gateway in front of streamload's slow upstream (one chunk a
# second), idle RSS, then STREAMS streams opened and held; RSS sampled every half second until
# the run ends, so the plateau shows rather than one reading.
#
#   benches/load/hold.sh                      # STREAMS=5000 HOLD=15 (seconds each stream stays open)
#   HERMES_BINARY=/tmp/other benches/load/hold.sh MIMALLOC_ALLOW_THP=0   # another build (HERMES_POLICIES=its policies/), extra variables
set -euo pipefail
cd "$(dirname "$0")/../.."
STREAMS="${STREAMS:-5000}"
HOLD="${HOLD:-15}"
. benches/load/common.sh
SLOW=$(port)
# One chunk a second, more of them than the hold lasts.
"$LOADGEN" upstream "$SLOW" 1000 $((HOLD + 30)) & pids+=($!)
gateway h "$SLOW" "$@"; HP=$GATEWAY_PORT; HPID=$GATEWAY_PID
sleep 2
idle=$(rss_mb "$HPID")
"$LOADGEN" hold "127.0.0.1:$HP" "$STREAMS" "$HOLD" > "$work/hold.out" &
HOLDER=$!
samples=()
while kill -0 "$HOLDER" 2>/dev/null; do sleep 0.5; samples+=("$(rss_mb "$HPID")"); done
peak=$(printf '%s\n' "${samples[@]}" | sort -n | tail -1)
echo "idle ${idle} MB; holding $STREAMS streams: peak ${peak} MB, $(( (peak - idle) * 1024 / STREAMS )) KB per stream ($(tail -1 "$work/hold.out"))"
echo "RSS every 0.5 s (MB): ${samples[*]}"
