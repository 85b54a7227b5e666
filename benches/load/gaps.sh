#!/usr/bin/env bash
# What the slow requests of a one-connection run waited for: a 4 s wrk run through Hermes (after
# a 3 s warm-up) recorded whole by `perf sched record -a`; every wait of wrk's over GAP_MS (0.5 ms)
# is put in one class by what the trace shows during it:
#   "hermes ran long"      a request thread ran one slice over 0.3 ms (its own work);
#   "waited behind X"      a task of the chain (Hermes, nginx, wrk) waited over 0.2 ms to run
#                          while X ran on the CPUs;
#   "slow wake-up"         it waited over 0.2 ms to run with nothing else running (an idle
#                          virtual CPU being woken);
#   "other"                none of these.
# Needs perf; HERMES_BINARY and EXTRA as in tail.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/load/common.sh
one_connection_setup
wrk -t1 -c1 -d3s -s $work/post.lua http://127.0.0.1:$HP/v1/chat/completions > /dev/null
perf sched record -q -a -o $work/sched.data -- wrk -t1 -c1 -d4s --latency -s $work/post.lua http://127.0.0.1:$HP/v1/chat/completions > $work/w.out 2>/dev/null || true
echo "wrk: $(python3 benches/load/wrk_summary.py $work/w.out) (req/s, p50 µs, p99 µs, non-2xx)"
kill -TERM $HPID; wait $HPID || true
perf sched timehist -i $work/sched.data 2>/dev/null > $work/timehist.txt
python3 - $work/timehist.txt "${GAP_MS:-0.5}" <<'PY'
import bisect, collections, re, sys
rows = []
for line in open(sys.argv[1]):
    p = line.split()
    if len(p) < 6 or not re.match(r"^\d+\.\d+$", p[0]):
        continue
    try:
        wait, sch, run = float(p[-3]), float(p[-2]), float(p[-1])
    except ValueError:
        continue
    end = float(p[0]) * 1000
    task = re.sub(r"\[\d+(/\d+)?\]", "", " ".join(p[2:-3])).strip()
    rows.append((end - run, end, task, sch, run))
rows.sort()
starts = [r[0] for r in rows]
wrk = [r for r in rows if r[2] == "wrk"]
limit = float(sys.argv[2])
chain = ("Hermes requests", "nginx")
kinds, gaps = collections.Counter(), collections.defaultdict(list)
for before, after in zip(wrk, wrk[1:]):
    s, e = before[1], after[0]
    if e - s <= limit:
        continue
    i = bisect.bisect_left(starts, s - 10)
    seen = []
    while i < len(rows) and rows[i][0] < e + 0.001:
        if min(rows[i][1], e) - max(rows[i][0], s) > 0 or (rows[i][2] in chain and s <= rows[i][0] <= e + 0.001):
            seen.append(rows[i])
        i += 1
    longest_slice = max([r[4] for r in seen if r[2] == "Hermes requests"], default=0)
    waited = max([r[3] for r in seen if r[2] in chain] + [after[3]])
    others = collections.Counter()
    for r in seen:
        if r[2] not in chain + ("wrk", "<idle>"):
            others[r[2]] += min(r[1], e) - max(r[0], s)
    busiest = others.most_common(1)[0] if others else ("", 0)
    if longest_slice > 0.3:
        kind = "hermes ran long"
    elif waited > 0.2 and busiest[1] > 0.2:
        kind = f"waited behind {busiest[0]}"
    elif waited > 0.2:
        kind = "slow wake-up"
    else:
        kind = "other"
    kinds[kind] += 1
    gaps[kind].append(e - s)
print(f"{sum(kinds.values())} of {len(wrk)} waits of wrk's over {limit} ms:")
for kind, n in kinds.most_common():
    print(f"  {n:4d}  {kind} (longest {max(gaps[kind]):.2f} ms)")
PY
