#!/usr/bin/env bash
# Where the request threads stall: a one-connection wrk run through Hermes (3 s warm-up, then
# 5 s) while perf records the request threads' CPU samples (with call stacks) and context
# switches for 4 s. Prints wrk's figures, then the busy periods (from waking to going to sleep
# again) longer than STALL_MS (0.4 ms), per 10,000 requests, and the call stacks sampled in them.
# Needs perf; HERMES_BINARY and EXTRA as in tail.sh. The recording is in $work, gone at exit
# (KEEP=dir keeps the perf script output there).
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/load/common.sh
one_connection_setup
wrk -t1 -c1 -d3s -s $work/post.lua http://127.0.0.1:$HP/v1/chat/completions > /dev/null
wrk -t1 -c1 -d5s --latency -s $work/post.lua http://127.0.0.1:$HP/v1/chat/completions > $work/w.out &
WPID=$!
sleep 0.5
TIDS=$(for t in /proc/$HPID/task/*; do [ "$(cat $t/comm)" = "Hermes requests" ] && basename $t; done | paste -sd,) || true
timeout -s INT 4 perf record -q -F 4000 -e cpu-clock --switch-events --call-graph dwarf,32768 -t "$TIDS" -o $work/perf.data 2>/dev/null || true
wait $WPID
summary=$(python3 benches/load/wrk_summary.py $work/w.out)
echo "wrk: $summary (req/s, p50 µs, p99 µs, non-2xx)"
perf script -i $work/perf.data -F tid,time,event,ip,sym --no-inline --max-stack 48 --show-switch-events 2>/dev/null > $work/perf.txt
[ -n "${KEEP:-}" ] && cp $work/perf.txt "$KEEP/"
kill -TERM $HPID; wait $HPID || true
python3 - $work/perf.txt "${STALL_MS:-0.4}" "${summary%% *}" <<'PY'
import collections, re, sys
path, limit, rps = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
events, sample = [], None
for line in open(path):
    if line.startswith("\t"):
        if sample is not None and len(line.split(None, 1)) > 1:
            sample[2].append(line.split(None, 1)[1].strip())
        continue
    m = re.match(r"\s*(\d+)\s+([\d.]+):\s+(.*)", line)
    if not m:
        continue
    tid, t, rest = m.group(1), float(m.group(2)) * 1000, m.group(3)
    if rest.startswith("PERF_RECORD_SWITCH"):
        sample = None
        # A preempted thread is still busy: only a switch out to sleep ends a busy period.
        events.append((tid, t, "preempted" if "OUT preempt" in rest else "out" if "OUT" in rest else "in", None))
    elif "cpu-clock" in rest:
        sample = (tid, t, [])
        events.append((tid, t, "sample", sample[2]))
def frames(stack):
    return " < ".join([f for f in stack if f and not f.startswith("[unknown]")][:5])
periods, stalled, seconds = [], collections.Counter(), 0.0
by_thread = collections.defaultdict(list)
for e in events:
    by_thread[e[0]].append(e)
for evs in by_thread.values():
    seconds = max(seconds, (evs[-1][1] - evs[0][1]) / 1000)
    start, samples = None, []
    for tid, t, kind, stack in evs:
        if kind == "in" and start is None:
            start, samples = t, []
        elif kind == "sample" and start is not None:
            samples.append(stack)
        elif kind == "out" and start is not None:
            periods.append(t - start)
            if t - start > limit:
                stalled.update(frames(s) for s in samples)
            start = None
long = sum(p > limit for p in periods)
requests = rps * seconds
print(f"busy periods over {limit} ms: {long} in {seconds:.1f} s, {long * 10000 / max(requests, 1):.1f} per 10,000 requests "
      f"(longest {max(periods, default=0):.2f} ms); samples in them by call stack:")
for stack, n in stalled.most_common(8):
    print(f"  {n:4d}  {stack[:300]}")
PY
