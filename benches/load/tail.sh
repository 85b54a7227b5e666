#!/usr/bin/env bash
# One-connection tail: wrk -c1 straight to an instant nginx upstream, then through Hermes to it;
# then the quantiles Hermes itself recorded (jobs.response_time_ms, overhead_ms) from its DuckDB file,
# so that the wait outside Hermes's own timer shows. Needs nginx, wrk and the test venv (cargo test builds it).
# EXTRA="RUST_LOG=warn" passes variables to the gateway; D=30 for longer runs; HERMES_BINARY and
# HERMES_POLICIES run another build (with its own policies/), as in run.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/load/common.sh
one_connection_setup
# CPU ticks and minor page faults of every thread of these processes, "pid/tid name ticks faults"
# per line (spaces in a name become underscores).
ticks() { for p in "$@"; do for t in /proc/$p/task/*; do
  python3 -c 'import sys; s=open(sys.argv[1]+"/stat").read(); f=s[s.rindex(")")+2:].split(); print(sys.argv[1].split("/")[2]+"/"+sys.argv[1].split("/")[4], s[s.index("(")+1:s.rindex(")")].replace(" ","_"), int(f[11])+int(f[12]), f[7])' "$t" 2>/dev/null || true  # a thread may end meanwhile
done; done; }
NGX=$(pgrep -P "$(cat $work/instant.pid)" | tr '\n' ' ')
for target in "direct $UP" "hermes $HP"; do set -- $target
  [ "$1" = hermes ] && ticks $HPID $NGX > $work/before.ticks
  wrk -t1 -c1 -d${D:-10}s --latency -s $work/post.lua http://127.0.0.1:$2/v1/chat/completions > $work/w.out
  [ "$1" = hermes ] && ticks $HPID $NGX > $work/after.ticks
  echo "$1 $(python3 benches/load/wrk_summary.py $work/w.out)"
done
# Where the CPU of the run through Hermes went, per request, by thread (10 ms ticks; threads
# that used none are left out). wrk's own share is the run's wall time it was not waiting.
python3 - $work/before.ticks $work/after.ticks $work/w.out $HPID <<'PY'
import re, sys
def read(f): return {l.split()[0]: (l.split()[1], int(l.split()[2]), int(l.split()[3])) for l in open(f)}
b, a = read(sys.argv[1]), read(sys.argv[2])
reqs = int(re.search(r"(\d+) requests in", open(sys.argv[3]).read()).group(1))
cpu, faults = {}, {}
for k, (name, t, f) in a.items():
    _, t0, f0 = b.get(k, (name, 0, 0))
    who = ("hermes " if k.startswith(sys.argv[4] + "/") else "nginx ") + name
    if t > t0:
        cpu[who] = cpu.get(who, 0) + t - t0
    if f > f0:
        faults[who] = faults.get(who, 0) + f - f0
print(f"CPU per request through hermes over {reqs} requests: " + ", ".join(f"{w} {t * 10000 / reqs:.1f} µs" for w, t in sorted(cpu.items(), key=lambda x: -x[1])))
print("page faults per 1,000 requests: " + ", ".join(f"{w} {n * 1000 / reqs:.1f}" for w, n in sorted(faults.items(), key=lambda x: -x[1])))
PY
# The jobs are read once the gateway has written them all: wait for its exit, not a fixed sleep.
kill -TERM $HPID; wait $HPID || true
PY=${CARGO_TARGET_DIR:-$HOME/.cache/hermes-target}/tmp/venv-openai/bin/python
$PY - $work/h.duckdb <<'PY'
import duckdb, sys
c = duckdb.connect(sys.argv[1], read_only=True)
n, rt, oh = c.execute("select count(*), quantile_cont(response_time_ms,[0.5,0.99,0.999]), quantile_cont(overhead_ms,[0.5,0.99,0.999]) from jobs").fetchone()
print(f"hermes's own timer over {n} jobs: response_time_ms p50/p99/p99.9 " + " / ".join(f"{x:.3f}" for x in rt)
      + ", overhead_ms " + " / ".join(f"{x:.3f}" for x in oh))
PY
