#!/usr/bin/env bash
# Two configurations of the one-connection tail (tail.sh) in strictly alternated runs (a, b, a,
# b, ...), so that the machine's drift touches both alike; prints each run's p50/p99 straight to
# the upstream and through Hermes, and per side the medians of Hermes's p99, of the added p99
# (Hermes's minus the direct run's just before it) and of Hermes's own timer's p99 and p99.9
# (jobs.response_time_ms: the time inside the gateway, upstream included, without the waits of
# wrk's side of the loopback).
#
#   PAIRS=5 D=15 benches/load/tail-ab.sh "shipped|$CARGO_TARGET_DIR/release/hermes|" \
#       "no purge|$CARGO_TARGET_DIR/release/hermes|MIMALLOC_PURGE_DELAY=-1"
#
# Each side is "label|hermes binary|VAR=VALUE ..." (the variables go to the gateway, as EXTRA).
set -euo pipefail
cd "$(dirname "$0")/../.."
A="${1:?usage: benches/load/tail-ab.sh 'label|binary|vars' 'label|binary|vars'}"
B="${2:?two sides}"
out="${AB_OUT:-$(mktemp -d)}"
for i in $(seq 1 "${PAIRS:-5}"); do
  for side in A B; do
    spec=${!side}
    IFS='|' read -r label bin vars <<< "$spec"
    HERMES_BINARY="$bin" EXTRA="$vars" benches/load/tail.sh > "$out/$side.$i.txt" 2>&1 || echo "run $i $side failed" >&2
    echo "$side $i $label: $(grep -E '^(direct|hermes) ' "$out/$side.$i.txt" | awk '{printf "%s p50 %s p99 %s  ", $1, $3, $4}')" >&2
  done
done
python3 - "$out" "${PAIRS:-5}" "$A" "$B" <<'PY'
import re, statistics, sys
out, pairs = sys.argv[1], int(sys.argv[2])
for side, spec in (("A", sys.argv[3]), ("B", sys.argv[4])):
    p99s, added, own99, own999 = [], [], [], []
    for i in range(1, pairs + 1):
        try:
            text = open(f"{out}/{side}.{i}.txt").read()
            d = re.search(r"^direct \S+ \S+ (\S+)", text, re.M).group(1)
            h = re.search(r"^hermes \S+ \S+ (\S+)", text, re.M).group(1)
        except (OSError, AttributeError):
            continue
        p99s.append(float(h)); added.append(float(h) - float(d))
        own = re.search(r"response_time_ms p50/p99/p99.9 \S+ / (\S+) / (\S+),", text)
        if own:
            own99.append(float(own.group(1)) * 1000); own999.append(float(own.group(2)) * 1000)
    if p99s:
        own = (f"own timer p99 median {statistics.median(own99):.0f} µs, p99.9 {statistics.median(own999):.0f} µs"
               if own99 else "own timer not read")
        print(f"{spec.split('|')[0]}: hermes p99 median {statistics.median(p99s):.0f} µs (runs {', '.join(f'{x:.0f}' for x in p99s)}); "
              f"added p99 median {statistics.median(added):.0f} µs; {own} (raw output in {out})")
PY
