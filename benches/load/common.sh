# Sourced by the load scripts: the build under test and the harness's own client
# (benches/load/streamload.rs), a scratch folder whose processes end with the script, free
# loopback ports, a process's RSS, an instant upstream, and gateways in front of it.
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
# rss_mb PID: the process's resident set, in whole MB.
rss_mb() { awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$1/status"; }

# instant_upstream PORT: nginx `return 200` with one OpenAI chat answer (and /v1/models) on PORT,
# ended with the script; and $work/post.lua, the non-streamed chat request wrk sends.
instant_upstream() {
  local answer='{"id":"chatcmpl-bench","object":"chat.completion","created":1732000000,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hello","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":1,"total_tokens":13}}'
  cat > "$work/instant.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/instant.pid;
error_log $work/instant.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/body;
  server {
    listen 127.0.0.1:$1;
    location /v1/models { default_type application/json; return 200 '{"object":"list","data":[{"id":"bench-model","object":"model"}]}'; }
    location / { default_type application/json; return 200 '$answer'; }
  }
}
NGINX
  nginx -c "$work/instant.conf" -p "$work" & pids+=($!)
  cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"bench-model","messages":[{"role":"user","content":"Say hello in one word."}]}'
LUA
}

# gateway NAME UPSTREAM_PORT [VAR=VALUE...]: $HERMES (with $HERMES_POLICIES when set) serving one
# backend, `bench`, at that upstream, its analytics in $work/NAME.duckdb, its log in
# $work/NAME.log; the variables given win over these. Returns once it answers /health, with its
# port in GATEWAY_PORT and its pid in GATEWAY_PID (ended with the script).
gateway() {
  local name=$1 upstream=$2; shift 2
  GATEWAY_PORT=$(port)
  env HERMES_LISTEN=127.0.0.1:$GATEWAY_PORT HERMES_DB_PATH="$work/$name.duckdb" HERMES_BACKENDS_ENABLED=bench \
    BACKEND_BENCH_TYPE=custom BACKEND_BENCH_BASE_URL=http://127.0.0.1:$upstream/v1 BACKEND_BENCH_MODELS=bench-model \
    HERMES_SHUTDOWN_GRACE_SECONDS=1 "$@" "$HERMES" serve ${HERMES_POLICIES:+--policies "$HERMES_POLICIES"} > "$work/$name.log" 2>&1 &
  GATEWAY_PID=$!; pids+=("$GATEWAY_PID")
  for _ in $(seq 1 300); do curl -fsS -o /dev/null "http://127.0.0.1:$GATEWAY_PORT/health" 2>/dev/null && break; sleep 0.1; done
}

# quiet PID...: waits (at most 30 s per process) until each has exited or used at most one
# clock tick of CPU (2% of a core) over the last half second, so that a phase does not measure
# the previous one's leftovers (an analytics writer catching up, a stopped gateway flushing its
# queue). Says on stderr how long it waited.
quiet() {
  local started=$SECONDS
  for pid in "$@"; do
    for _ in $(seq 1 60); do
      [ -r "/proc/$pid/stat" ] || break
      local a b; a=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null) || break
      sleep 0.5
      b=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null) || break
      [ $((b - a)) -le 1 ] && break
    done
  done
  echo "quiet: waited $((SECONDS - started)) s for $*" >&2
}

# one_connection_setup: the instant upstream on port $UP and gateway `h` in front of it (with
# $EXTRA's variables), its port in $HP and pid in $HPID: the start of the one-connection scripts.
one_connection_setup() {
  UP=$(port)
  instant_upstream "$UP"
  gateway h "$UP" ${EXTRA:-}; HP=$GATEWAY_PORT; HPID=$GATEWAY_PID
}
