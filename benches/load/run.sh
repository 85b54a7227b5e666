#!/usr/bin/env bash
# Whole-path load test: an instant upstream (nginx `return 200` with an OpenAI answer), nginx
# proxy_pass in front of it (the classic proxy baseline), and Hermes in front of it, all on this
# machine, driven by wrk. Prints rps and latency percentiles and what each proxy adds over the
# direct upstream, measured in the same run.
#
#   benches/load/run.sh            # 8 s per run; DURATION=20 benches/load/run.sh for longer runs
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION="${DURATION:-8}"
need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hermes-target}"
cargo build --release --bin hermes -q
HERMES="$CARGO_TARGET_DIR/release/hermes"

work="$(mktemp -d)"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(port); PX=$(port); HM=$(port)
answer='{"id":"chatcmpl-bench","object":"chat.completion","created":1732000000,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":1,"total_tokens":13}}'
cat > "$work/nginx.conf" <<NGINX
worker_processes auto;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/body;
  proxy_temp_path $work/proxy;
  upstream llm { server 127.0.0.1:$UP; keepalive 256; }
  server {
    listen 127.0.0.1:$UP;
    location /v1/models { default_type application/json; return 200 '{"object":"list","data":[{"id":"bench-model","object":"model"}]}'; }
    location / { default_type application/json; return 200 '$answer'; }
  }
  server {
    listen 127.0.0.1:$PX;
    location / { proxy_pass http://llm; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGINX
nginx -c "$work/nginx.conf" -p "$work" &
NGINX_PID=$!
HERMES_LISTEN=127.0.0.1:$HM HERMES_DB_PATH="$work/hermes.duckdb" HERMES_BACKENDS_ENABLED=bench \
  BACKEND_BENCH_TYPE=custom BACKEND_BENCH_BASE_URL=http://127.0.0.1:$UP/v1 BACKEND_BENCH_MODELS=bench-model \
  "$HERMES" serve > "$work/hermes.log" 2>&1 &
HERMES_PID=$!
trap 'kill $NGINX_PID $HERMES_PID 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:$HM/health" 2>/dev/null && curl -fsS -o /dev/null "http://127.0.0.1:$PX/v1/models" 2>/dev/null && break
  sleep 0.1
done
rss() { awk '/VmRSS/ {printf "%.1f MB", $2/1024}' "/proc/$HERMES_PID/status"; }
IDLE_RSS=$(rss)

cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"bench-model","messages":[{"role":"user","content":"Say hello in one word."}]}'
LUA
# rps p50 p99 (microseconds) from wrk --latency
measure() {
  local conns=$1 threads=$2 url=$3
  wrk -t"$threads" -c"$conns" -d"${DURATION}s" --latency -s "$work/post.lua" "$url" > "$work/wrk.out" 2>&1
  python3 - "$work/wrk.out" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def us(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    if not m:
        sys.exit(f"unreadable wrk output:\n{text}")
    n, unit = m.groups()
    return float(n) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 6e7}[unit]
# Percentile lines only: "98.99%" in the stats table above them must not match.
p50 = us(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = us(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
print(f"{rps:.0f} {p50:.0f} {p99:.0f} {non2xx.group(1) if non2xx else 0}")
PY
}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r); wrk shares the cores; ${DURATION}s per run"
printf "| target | connections | req/s | p50 | p99 | added p50 | added p99 | non-2xx |\n|---|---|---|---|---|---|---|---|\n"
for conns in 1 64; do
  threads=$([ "$conns" = 1 ] && echo 1 || echo 2)
  read -r d_rps d50 d99 d_bad <<<"$(measure $conns $threads "http://127.0.0.1:$UP/v1/chat/completions")"
  printf "| direct upstream | %s | %s | %s µs | %s µs | | | %s |\n" "$conns" "$d_rps" "$d50" "$d99" "$d_bad"
  for target in "nginx proxy_pass:$PX" "hermes:$HM"; do
    name=${target%%:*}; p=${target##*:}
    read -r rps p50 p99 bad <<<"$(measure $conns $threads "http://127.0.0.1:$p/v1/chat/completions")"
    printf "| %s | %s | %s | %s µs | %s µs | %s µs | %s µs | %s |\n" "$name" "$conns" "$rps" "$p50" "$p99" "$((p50 - d50))" "$((p99 - d99))" "$bad"
  done
done
echo
echo "hermes RSS: idle $IDLE_RSS, after the runs $(rss)"
