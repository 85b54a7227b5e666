#!/usr/bin/env bash
# Two builds of Hermes through the same load harness, runs interleaved (old, new, old, new, ...)
# so that the machine's drift touches both alike; prints the median of each Hermes figure per
# build. The old build is any commit's `hermes` binary, for example:
#
#   git worktree add /tmp/before <commit> && (cd /tmp/before && cargo build --release --bin hermes) \
#     && cp $CARGO_TARGET_DIR/release/hermes /tmp/hermes-before   # then rebuild this checkout
#   RUNS=3 benches/load/ab.sh /tmp/hermes-before /tmp/before/policies   # DURATION=3 LITELLM=0 STREAMS=1000 by default
set -euo pipefail
cd "$(dirname "$0")/../.."
OLD="${1:?usage: benches/load/ab.sh OLD_HERMES_BINARY [OLD_POLICIES_DIR]}"
OLD_POLICIES="${2:-}"
RUNS="${RUNS:-3}"
export DURATION="${DURATION:-3}" LITELLM="${LITELLM:-0}" STREAMS="${STREAMS:-1000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hermes-target}"
cargo build --release --bin hermes -q
NEW="$(mktemp -d)/hermes-new"
cp "$CARGO_TARGET_DIR/release/hermes" "$NEW"
out="${AB_OUT:-$(mktemp -d)}"
for i in $(seq 1 "$RUNS"); do
  for side in old new; do
    bin=$OLD; policies=$OLD_POLICIES
    [ "$side" = new ] && bin=$NEW && policies=""
    HERMES_BINARY="$bin" HERMES_POLICIES="$policies" benches/load/run.sh > "$out/$side.$i.md" 2>"$out/$side.$i.err"
    echo "run $i $side done" >&2
  done
done
python3 - "$out" "$RUNS" <<'PY'
import re, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
def figures(text):
    """Every number of every `| hermes...` row, keyed by table and column, and the memory line's."""
    got, table = {}, None
    for line in text.splitlines():
        if line and not line.startswith("|"):
            table = line.split("(")[0].split(":")[0].strip() or table
        if line.startswith("| hermes"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            head = headers.get(table, [])
            row = cells[0] + (" @" + cells[1] if "connections" in head else "")
            for name, cell in zip(head, cells):
                m = re.match(r"^(-?[\d.]+)", cell)
                if m and name not in ("target", "connections", "non-2xx", "failed"):
                    got[(table, row, name)] = float(m.group(1))
        elif line.startswith("| target"):
            headers[table] = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("Memory:"):
            for name, pat in [("idle RSS MB", r"hermes idle (\d+) MB"), ("RSS after the runs MB", r"after the runs above (\d+) MB"),
                              ("RSS holding the streams MB", r"streams (\d+) MB at the peak")]:
                m = re.search(pat, line)
                if m:
                    got[("Memory", "hermes", name)] = float(m.group(1))
    return got
headers = {}
sides = {s: [figures(open(f"{out}/{s}.{i}.md").read()) for i in range(1, runs + 1)] for s in ("old", "new")}
keys = [k for k in sides["old"][0] if all(k in r for r in sides["old"] + sides["new"])]
print(f"Medians of {runs} interleaved runs per build (raw tables in {out}):\n")
print("| table | row | figure | old | new | new/old |\n|---|---|---|---|---|---|")
for k in keys:
    o = statistics.median(r[k] for r in sides["old"]); n = statistics.median(r[k] for r in sides["new"])
    ratio = f"{n / o:.2f}" if o else ""
    print(f"| {k[0]} | {k[1]} | {k[2]} | {o:g} | {n:g} | {ratio} |")
PY
