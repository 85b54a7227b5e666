# Sourced by the load scripts (run.sh, hold.sh): the build under test and the harness's own
# client (benches/load/streamload.rs), a scratch folder whose processes end with the script,
# and free loopback ports.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hermes-target}"
# HERMES_BINARY=path runs another build of hermes (say, the previous commit's) through the same harness,
# as it is: this checkout is not rebuilt in the middle of a comparison (ab.sh builds it once);
# HERMES_POLICIES=dir gives it that build's policies/ (an older build refuses newer fields).
[ -n "${HERMES_BINARY:-}" ] || cargo build --release --bin hermes -q
HERMES="${HERMES_BINARY:-$CARGO_TARGET_DIR/release/hermes}"
LOADGEN=$(cargo bench --bench streamload --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys; print([j["executable"] for j in map(json.loads, sys.stdin) if j.get("executable") and j["target"]["name"] == "streamload"][-1])')
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; sleep 0.2; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
