#!/usr/bin/env bash
# Whole-path load test, everything measured in one run on this machine:
#   upstreams: nginx `return 200` with an OpenAI answer (instant), and streamload's OpenAI SSE
#              server (benches/load/streamload.rs: a few chunks a few ms apart, or one a second);
#   proxies:   nginx proxy_pass (the classic proxy baseline), Hermes with its default
#              configuration (classification, routing, learner, metrics, DuckDB analytics, access
#              log), and the peers, each installed into a folder under ~/.cache when its registry
#              has it and left out with a note when not: TensorZero (PyPI wheel, its embedded HTTP
#              gateway, observability off), Portkey's gateway (npm), the LiteLLM proxy (PyPI);
#   load:      wrk closed loop at 1 and 64 connections; the one-connection tail over longer runs
#              (p99 and p99.9); streamload's open loop at a constant rate (a request held back by
#              a slow one counts from when it was due, wrk2-style); time to first token over
#              streams; a held open loop (60 s at 3,000 req/s) with the gateway's RSS sampled and
#              its analytics counted; 5,000 streams held open at once against the slow upstream;
#              the same gateway exporting OTLP traces (to an nginx sink) at 1% and 100% against off.
# Prints markdown tables: rps, p50/p99/p99.9, what each proxy adds over the direct upstream,
# TTFT, chunk gaps, RSS.
#
#   benches/load/run.sh     # 8 s per run; DURATION=20 for longer, RATE=3000 for the open loop,
#                           # TAIL=30 (s per one-connection tail run), HELD=60 and HELD_RATE=3000,
#                           # STREAMS=5000, PEERS=0 to leave the peers out (LITELLM=0 only LiteLLM)
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION="${DURATION:-8}"
RATE="${RATE:-2000}"
STREAMS="${STREAMS:-5000}"
TAIL="${TAIL:-30}"
HELD="${HELD:-60}"
HELD_RATE="${HELD_RATE:-3000}"
PEERS="${PEERS:-1}"
need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
. benches/load/common.sh
UP=$(port); PX=$(port); SSE=$(port); SLOW=$(port); PXS=$(port); OTLP=$(port)
answer='{"id":"chatcmpl-bench","object":"chat.completion","created":1732000000,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":1,"total_tokens":13}}'
cat > "$work/nginx.conf" <<NGINX
worker_processes auto;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx.err warn;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
http {
  access_log off;
  # nginx closes a keep-alive connection after 1,000 requests by default; the held run sends
  # about 11,000 over each of its 16, and a reconnect is not what it measures.
  keepalive_requests 1000000;
  client_body_temp_path $work/body;
  proxy_temp_path $work/proxy;
  upstream llm { server 127.0.0.1:$UP; keepalive 256; }
  upstream sse { server 127.0.0.1:$SSE; keepalive 256; }
  server {
    listen 127.0.0.1:$UP;
    location /v1/models { default_type application/json; return 200 '{"object":"list","data":[{"id":"bench-model","object":"model"}]}'; }
    location / { default_type application/json; return 200 '$answer'; }
  }
  server {
    listen 127.0.0.1:$PX;
    location / { proxy_pass http://llm; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  server {
    listen 127.0.0.1:$OTLP;
    location /v1/traces { client_body_buffer_size 1m; return 200; }
  }
  server {
    listen 127.0.0.1:$PXS;
    location / { proxy_pass http://sse; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
}
NGINX
nginx -c "$work/nginx.conf" -p "$work" & pids+=($!)
"$LOADGEN" upstream "$SSE" 2 5 & pids+=($!)
"$LOADGEN" upstream "$SLOW" 1000 120 & pids+=($!)

rss() { awk '/VmRSS/ {printf "%.0f MB", $2/1024}' "/proc/$1/status"; }
gateway main "$UP"; HM=$GATEWAY_PORT; HPID=$GATEWAY_PID
gateway sse "$SSE"; HMS=$GATEWAY_PORT
for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$PX/v1/models" 2>/dev/null && break; sleep 0.1; done
sleep 1
IDLE_RSS=$(rss "$HPID")

# A target: a key (what the tables call it, after any "group:" prefix), a port, and how its chat
# request differs from Hermes's: the path, what the model is called, extra header lines
# (separated by |). Each gets its own wrk script, which also prints wrk's p99.9.
declare -A T_PORT T_PATH T_MODEL T_HEADERS T_LUA
targets_made=0
target() {
  local key=$1
  T_PORT[$key]=$2; T_PATH[$key]=${3:-/v1/chat/completions}; T_MODEL[$key]=${4:-bench-model}; T_HEADERS[$key]=${5:-}
  targets_made=$((targets_made + 1)); T_LUA[$key]="$work/target$targets_made.lua"
  {
    echo 'wrk.method = "POST"'
    echo 'wrk.headers["Content-Type"] = "application/json"'
    echo "wrk.body = '{\"model\":\"${T_MODEL[$key]}\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello in one word.\"}]}'"
    local h; IFS='|' read -ra hs <<<"${T_HEADERS[$key]}"
    for h in "${hs[@]}"; do [ -n "$h" ] && echo "wrk.headers[\"${h%%:*}\"] = \"$(sed 's/^ *//' <<<"${h#*:}")\""; done
    echo 'done = function(summary, latency, requests) io.write(string.format("p999_us %d\n", latency:percentile(99.9))) end'
  } > "${T_LUA[$key]}"
}
name() { echo "${1#*:}"; }
# loadgen KEY MODE ARGS...: streamload at that target, asking in its terms.
loadgen() {
  local key=$1 mode=$2; shift 2
  LOADGEN_PATH=${T_PATH[$key]} LOADGEN_MODEL=${T_MODEL[$key]} LOADGEN_HEADERS=${T_HEADERS[$key]} "$LOADGEN" "$mode" "127.0.0.1:${T_PORT[$key]}" "$@"
}
# wait_http URL [TRIES]: until URL answers (0.2 s apart); fails if it never does.
wait_http() { for _ in $(seq 1 "${2:-600}"); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.2; done; curl -fsS -o /dev/null "$1"; }

target "direct upstream" "$UP"; target "nginx proxy_pass" "$PX"; target hermes "$HM"
target "sse:direct upstream" "$SSE"; target "sse:nginx proxy_pass" "$PXS"; target "sse:hermes" "$HMS"
closed=("nginx proxy_pass" hermes); streaming=("sse:nginx proxy_pass" "sse:hermes"); open_loop=("nginx proxy_pass" hermes)
declare -A PEER_PID
versions=""

# The peers. Each is optional: installed once into ~/.cache, left out with a note when its
# registry or its start fails here.
if [ "$PEERS" = 1 ]; then
  venv="$HOME/.cache/hermes-bench-tensorzero"
  if "$venv/bin/python" -c 'import tensorzero' 2>/dev/null || { python3 -m venv "$venv" && "$venv/bin/pip" install -q tensorzero >"$work/pip-tensorzero.log" 2>&1; }; then
    # The wheel carries the gateway itself; `_start_http_gateway` (what `patch_openai_client`
    # uses) serves it over HTTP on a free port and prints where.
    cat > "$work/tensorzero.toml" <<TOML
[gateway.observability]
enabled = false

[models.bench-model]
routing = ["up"]
[models.bench-model.providers.up]
type = "openai"
model_name = "bench-model"
api_base = "http://127.0.0.1:$UP/v1/"
api_key_location = "none"

[models.bench-sse]
routing = ["up"]
[models.bench-sse.providers.up]
type = "openai"
model_name = "bench-model"
api_base = "http://127.0.0.1:$SSE/v1/"
api_key_location = "none"
TOML
    # (not named tensorzero.py: the script's folder comes first on the import path)
    cat > "$work/tz_gateway.py" <<'PY'
import sys, time, tensorzero
gateway = tensorzero._start_http_gateway(config_file=sys.argv[1], clickhouse_url=None, postgres_url=None, valkey_url=None, async_setup=False)
print("base_url", gateway.base_url, flush=True)
while True:
    time.sleep(3600)
PY
    "$venv/bin/python" "$work/tz_gateway.py" "$work/tensorzero.toml" > "$work/tensorzero.log" 2>&1 & pids+=($!); PEER_PID[tensorzero]=$!
    for _ in $(seq 1 300); do grep -q '^base_url' "$work/tensorzero.log" && break; sleep 0.2; done
    tz=$(sed -n 's#^base_url http://127.0.0.1:\([0-9]*\)\(/.*\)$#\1 \2#p' "$work/tensorzero.log")
    if [ -n "$tz" ]; then
      read -r tz_port tz_path <<<"$tz"
      target tensorzero "$tz_port" "$tz_path/chat/completions" "tensorzero::model_name::bench-model"
      target "sse:tensorzero" "$tz_port" "$tz_path/chat/completions" "tensorzero::model_name::bench-sse"
      closed+=(tensorzero); streaming+=("sse:tensorzero"); open_loop+=(tensorzero)
      versions+=" TensorZero $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("tensorzero"))');"
    else
      echo "TensorZero did not start; its rows are left out. Its log ends:" >&2; tail -5 "$work/tensorzero.log" >&2
    fi
  else
    echo "tensorzero did not install here; its rows are left out" >&2
  fi

  pk="$HOME/.cache/hermes-bench-portkey"
  if [ -f "$pk/node_modules/@portkey-ai/gateway/build/start-server.js" ] || npm install --prefix "$pk" --silent --no-audit --no-fund @portkey-ai/gateway >"$work/npm-portkey.log" 2>&1; then
    PK=$(port)
    NODE_ENV=production node "$pk/node_modules/@portkey-ai/gateway/build/start-server.js" --port="$PK" --headless > "$work/portkey.log" 2>&1 & pids+=($!); PEER_PID[portkey]=$!
    if wait_http "http://127.0.0.1:$PK/" 150; then
      # Portkey takes the provider and where it lives from headers on every request.
      target portkey "$PK" /v1/chat/completions bench-model "x-portkey-provider: openai|x-portkey-custom-host: http://127.0.0.1:$UP/v1|Authorization: Bearer bench"
      target "sse:portkey" "$PK" /v1/chat/completions bench-model "x-portkey-provider: openai|x-portkey-custom-host: http://127.0.0.1:$SSE/v1|Authorization: Bearer bench"
      closed+=(portkey); streaming+=("sse:portkey")
      versions+=" Portkey $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$pk/node_modules/@portkey-ai/gateway/package.json");"
    else
      echo "Portkey did not start; its rows are left out. Its log ends:" >&2; tail -c 300 "$work/portkey.log" >&2
    fi
  else
    echo "@portkey-ai/gateway did not install here; its rows are left out" >&2
  fi
fi

if [ "$PEERS" = 1 ] && [ "${LITELLM:-1}" = 1 ]; then
  venv="$HOME/.cache/hermes-bench-litellm"
  if [ -x "$venv/bin/litellm" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q 'litellm[proxy]' >"$work/pip.log" 2>&1; }; then
    LITELLM_PORT=$(port)
    # It refuses to start without a master key; its requests carry it.
    LITELLM_KEY="sk-$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
    cat > "$work/litellm.yaml" <<YAML
model_list:
  - model_name: bench-model
    litellm_params: {model: openai/bench-model, api_base: "http://127.0.0.1:$UP/v1", api_key: bench}
litellm_settings: {telemetry: false}
YAML
    LITELLM_MASTER_KEY=$LITELLM_KEY "$venv/bin/litellm" --config "$work/litellm.yaml" --host 127.0.0.1 --port "$LITELLM_PORT" > "$work/litellm.log" 2>&1 & pids+=($!); PEER_PID[litellm]=$!
    if wait_http "http://127.0.0.1:$LITELLM_PORT/health/liveliness"; then
      # LiteLLM is left out of the open loop and the streams: at about 40 req/s its backlog
      # would stretch those runs to minutes.
      target litellm "$LITELLM_PORT" /v1/chat/completions bench-model "Authorization: Bearer $LITELLM_KEY"
      closed+=(litellm)
      versions+=" LiteLLM $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))');"
    else
      echo "LiteLLM did not start; its row is left out. Its log ends:" >&2; tail -5 "$work/litellm.log" >&2
    fi
  else
    echo "litellm[proxy] did not install here; its row is left out" >&2
  fi
fi
declare -A PEER_IDLE
for p in "${!PEER_PID[@]}"; do PEER_IDLE[$p]=$(rss "${PEER_PID[$p]}" 2>/dev/null || echo "?"); done

# rps p50 p99 non-2xx p99.9 (microseconds), from wrk --latency and the target's done() hook
measure() {
  local conns=$1 threads=$2 key=$3 seconds=${4:-$DURATION}
  wrk -t"$threads" -c"$conns" -d"${seconds}s" --latency -s "${T_LUA[$key]}" "http://127.0.0.1:${T_PORT[$key]}${T_PATH[$key]}" > "$work/wrk.out" 2>&1
  python3 benches/load/wrk_summary.py "$work/wrk.out" --p999
}
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }
metric_sum() { curl -fsS "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 ~ "^"m {s += $2} END {printf "%d", s}'; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r); load generators share the cores; ${DURATION}s per run;${versions:- no peers}"
echo
echo "Closed loop (wrk), non-streamed chat completion:"
printf "| target | connections | req/s | p50 | p99 | added p50 | added p99 | non-2xx |\n|---|---|---|---|---|---|---|---|\n"
for conns in 1 64; do
  threads=$([ "$conns" = 1 ] && echo 1 || echo 2)
  read -r d_rps d50 d99 d_bad _ <<<"$(measure $conns $threads "direct upstream")"
  printf "| direct upstream | %s | %s | %s µs | %s µs | | | %s |\n" "$conns" "$d_rps" "$d50" "$d99" "$d_bad"
  for key in "${closed[@]}"; do
    read -r rps p50 p99 bad _ <<<"$(measure $conns $threads "$key")"
    printf "| %s | %s | %s | %s µs | %s µs | %s µs | %s µs | %s |\n" "$(name "$key")" "$conns" "$rps" "$p50" "$p99" "$((p50 - d50))" "$((p99 - d99))" "$bad"
  done
done

echo
echo "One connection, ${TAIL} s per target (wrk -c1; p99.9 from wrk's own histogram):"
printf "| target | req/s | p50 | p99 | p99.9 | added p50 | added p99 | added p99.9 | non-2xx |\n|---|---|---|---|---|---|---|---|---|\n"
read -r d_rps d50 d99 d_bad d999 <<<"$(measure 1 1 "direct upstream" "$TAIL")"
printf "| direct upstream | %s | %s µs | %s µs | %s µs | | | | %s |\n" "$d_rps" "$d50" "$d99" "$d999" "$d_bad"
for key in "${closed[@]}"; do
  read -r rps p50 p99 bad p999 <<<"$(measure 1 1 "$key" "$TAIL")"
  printf "| %s | %s | %s µs | %s µs | %s µs | %s µs | %s µs | %s µs | %s |\n" "$(name "$key")" "$rps" "$p50" "$p99" "$p999" "$((p50 - d50))" "$((p99 - d99))" "$((p999 - d999))" "$bad"
done

echo
echo "Traces: the same gateway exporting OTLP/HTTP spans (a request span, classify, route, one per attempt) to an nginx sink, against traces off:"
printf "| target | connections | req/s | p50 | p99 | added p50 | added p99 | non-2xx |\n|---|---|---|---|---|---|---|---|\n"
otel=(OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$OTLP OTEL_BSP_SCHEDULE_DELAY=1000)
gateway traced1 "$UP" "${otel[@]}" OTEL_TRACES_SAMPLER=traceidratio OTEL_TRACES_SAMPLER_ARG=0.01; target "hermes traces 1%" "$GATEWAY_PORT"; T1PID=$GATEWAY_PID; HT1=$GATEWAY_PORT
gateway traced100 "$UP" "${otel[@]}" OTEL_TRACES_SAMPLER=always_on; target "hermes traces 100%" "$GATEWAY_PORT"; T100PID=$GATEWAY_PID; HT100=$GATEWAY_PORT
# Fresh gateways warm up (the classifier, the pools) for a second or two: measure none of that.
quiet "$HPID" "$T1PID" "$T100PID"
for conns in 1 64; do
  threads=$([ "$conns" = 1 ] && echo 1 || echo 2)
  read -r d_rps d50 d99 d_bad _ <<<"$(measure $conns $threads "direct upstream")"
  for key in hermes "hermes traces 1%" "hermes traces 100%"; do
    read -r rps p50 p99 bad _ <<<"$(measure $conns $threads "$key")"
    label=$key; [ "$key" = hermes ] && label="hermes traces off"
    printf "| %s | %s | %s | %s µs | %s µs | %s µs | %s µs | %s |\n" "$label" "$conns" "$rps" "$p50" "$p99" "$((p50 - d50))" "$((p99 - d99))" "$bad"
  done
done
sleep 1.5
echo
echo "Spans at 100%: $(metric_sum "$HT100" hermes_trace_spans_exported_total) exported, $(metric_sum "$HT100" hermes_trace_spans_dropped_total) dropped; at 1%: $(metric_sum "$HT1" hermes_trace_spans_exported_total) exported, $(metric_sum "$HT1" hermes_trace_spans_dropped_total) dropped"
kill "$T1PID" "$T100PID" 2>/dev/null || true
# The open loop measures a steady 16 connections, not the stopped gateways' last flush or the
# main one's analytics catching up on the closed loops.
quiet "$HPID" "$T1PID" "$T100PID"

# open_row KEY RPS SECONDS [D50 D99 D999]: one open-loop run as a table row, with what it adds
# over the direct run's quantiles when given; the direct run's own are left in OPEN_QUANTILES.
open_row() {
  local key=$1 r; r=$(loadgen "$key" rate "$2" "$3" 16)
  local p50 p99 p999; p50=$(field "$r" p50); p99=$(field "$r" p99); p999=$(field "$r" p999)
  OPEN_REQUESTS=$(field "$r" requests)
  if [ $# -gt 3 ]; then
    printf "| %s | %s | %s µs | %s µs | %s µs | %s µs | %s µs | %s µs | %s |\n" "$(name "$key")" "$(field "$r" achieved_rps)" "$p50" "$p99" "$p999" \
      "$((p50 - $4))" "$((p99 - $5))" "$((p999 - $6))" "$(field "$r" failed)"
  else
    printf "| %s | %s | %s µs | %s µs | %s µs | | | | %s |\n" "$(name "$key")" "$(field "$r" achieved_rps)" "$p50" "$p99" "$p999" "$(field "$r" failed)"
    OPEN_QUANTILES="$p50 $p99 $p999"
  fi
}

echo
echo "Open loop at $RATE req/s over 16 connections (streamload rate; a request held back counts from when it was due; Portkey and LiteLLM answer fewer than that closed-loop, so their backlog would only measure the queue):"
printf "| target | achieved req/s | p50 | p99 | p99.9 | added p50 | added p99 | added p99.9 | failed |\n|---|---|---|---|---|---|---|---|---|\n"
open_row "direct upstream" "$RATE" "$DURATION"
for key in "${open_loop[@]}"; do open_row "$key" "$RATE" "$DURATION" $OPEN_QUANTILES; done

quiet "$HPID"
echo
echo "Streaming (streamload ttft: 1,000 streams one after another, 5 chunks 2 ms apart, TCP_NODELAY on the client):"
printf "| target | TTFT p50 | TTFT p99 | added TTFT p50 | added TTFT p99 | whole stream p50 | longest gap | reads per stream | failed |\n|---|---|---|---|---|---|---|---|---|\n"
direct=$(loadgen "sse:direct upstream" ttft 1000)
t50=$(field "$direct" ttft_p50); t99=$(field "$direct" ttft_p99)
printf "| direct upstream | %s µs | %s µs | | | %s µs | %s µs | %s | %s |\n" "$t50" "$t99" "$(field "$direct" total_p50)" "$(field "$direct" gap_max)" "$(field "$direct" reads_per_stream)" "$(field "$direct" failed)"
stream_row() {
  local label=$1 r=$2
  printf "| %s | %s µs | %s µs | %s µs | %s µs | %s µs | %s µs | %s | %s |\n" "$label" "$(field "$r" ttft_p50)" "$(field "$r" ttft_p99)" \
    "$(( $(field "$r" ttft_p50) - t50 ))" "$(( $(field "$r" ttft_p99) - t99 ))" "$(field "$r" total_p50)" "$(field "$r" gap_max)" "$(field "$r" reads_per_stream)" "$(field "$r" failed)"
}
for key in "${streaming[@]}"; do stream_row "$(name "$key")" "$(loadgen "$key" ttft 1000)"; done
# The same stream through Hermes's other doors (each re-encodes the chat stream event by event).
for door in responses messages; do
  # An older build (HERMES_BINARY) without these doors answers 404: its rows are left out.
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' --data-binary '{}' "http://127.0.0.1:$HMS/v1/$door")
  [ "$code" = 404 ] && continue
  stream_row "hermes /v1/$door" "$(LOADGEN_DOOR=$door loadgen "sse:hermes" ttft 1000)"
done
AFTER_RSS=$(rss "$HPID")

quiet "$HPID"
echo
echo "Held: ${HELD} s at ${HELD_RATE} req/s open loop over 16 connections, Hermes's RSS sampled every 5 s:"
printf "| target | achieved req/s | p50 | p99 | p99.9 | added p50 | added p99 | added p99.9 | failed |\n|---|---|---|---|---|---|---|---|---|\n"
open_row "direct upstream" "$HELD_RATE" "$HELD"
open_row "nginx proxy_pass" "$HELD_RATE" "$HELD" $OPEN_QUANTILES
dropped=$(metric_sum "$HM" hermes_analytics_dropped_total)
( while kill -0 "$HPID" 2>/dev/null; do awk '/VmRSS/ {printf "%d ", $2/1024}' "/proc/$HPID/status"; sleep 5; done ) > "$work/held.rss" & sampler=$!
open_row hermes "$HELD_RATE" "$HELD" $OPEN_QUANTILES
kill "$sampler" 2>/dev/null || true
quiet "$HPID"
echo
echo "Hermes over the held run: RSS every 5 s (MB): $(cat "$work/held.rss"); $OPEN_REQUESTS requests answered, analytics records dropped $(( $(metric_sum "$HM" hermes_analytics_dropped_total) - dropped ))"

# A fresh gateway in front of the slow upstream (one chunk a second) holds STREAMS streams. It
# runs a copy of the binary: pages of it that the other gateways of this run map too are
# shared, so they stay resident in each (and Hermes hands back only the pages it alone maps,
# src/ops/memory.rs); a gateway alone on its machine has no such neighbours. The copy is synced
# to disk first: an installed binary's pages are clean, and the kernel keeps a just-written
# file's dirty pages resident however the process advises (idle 30 MB unsynced, 27 MB synced,
# on the first start of a copy). Idle is read once it has settled, as in hold.sh.
cp "$HERMES" "$work/hermes-fresh"
sync "$work/hermes-fresh"
HERMES="$work/hermes-fresh" gateway slow "$SLOW"; HSLOW=$GATEWAY_PORT; SPID=$GATEWAY_PID
sleep 2
SLOW_IDLE=$(rss "$SPID")
"$LOADGEN" hold "127.0.0.1:$HSLOW" "$STREAMS" 20 > "$work/hold.out" &
HOLD=$!
peak=0
for _ in $(seq 1 40); do
  sleep 0.5
  kb=$(awk '/VmRSS/ {print $2}' "/proc/$SPID/status"); [ "$kb" -gt "$peak" ] && peak=$kb
done
wait $HOLD
peers_idle=""
for p in "${!PEER_IDLE[@]}"; do peers_idle+="; $p idle ${PEER_IDLE[$p]}"; done
echo
echo "Memory: hermes idle $IDLE_RSS, after the runs above $AFTER_RSS; a fresh gateway idle $SLOW_IDLE, holding $STREAMS streams $((peak / 1024)) MB at the peak ($(tail -1 "$work/hold.out"))$peers_idle"

# Nothing accepted is lost: every request the main gateway answered (its own counter) against
# the jobs in its file once it has stopped and flushed (read with DuckDB's Python package, in a
# venv under ~/.cache).
answered=$(metric_sum "$HM" hermes_requests_total)
kill -TERM "$HPID"; wait "$HPID" 2>/dev/null || true
dvenv="$HOME/.cache/hermes-bench-duckdb"
if "$dvenv/bin/python" -c 'import duckdb' 2>/dev/null || { python3 -m venv "$dvenv" && "$dvenv/bin/pip" install -q duckdb >"$work/pip-duckdb.log" 2>&1; }; then
  jobs=$("$dvenv/bin/python" -c 'import duckdb, sys; print(duckdb.connect(sys.argv[1], read_only=True).execute("select count(*) from jobs").fetchone()[0])' "$work/main.duckdb")
  echo "Analytics: the main gateway answered $answered requests over the whole run; its file holds $jobs jobs after it stopped"
else
  echo "Analytics: duckdb (PyPI) did not install here; the main gateway answered $answered requests"
fi
