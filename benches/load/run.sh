#!/usr/bin/env bash
# Whole-path load test, everything measured in one run on this machine:
#   upstreams: nginx `return 200` with an OpenAI answer (instant), and streamload's OpenAI SSE
#              server (benches/load/streamload.rs: a few chunks a few ms apart, or one a second);
#   proxies:   nginx proxy_pass (the classic proxy baseline), Hermes with its default
#              configuration (classification, routing, learner, metrics, DuckDB analytics, access
#              log), and the LiteLLM proxy when `pip install litellm[proxy]` works here;
#   load:      wrk closed loop at 1 and 64 connections; streamload's open loop at a constant rate
#              (a request held back by a slow one counts from when it was due, wrk2-style); time to first token over
#              streams; 5,000 streams held open at once against the slow upstream; the same
#              gateway exporting OTLP traces (to an nginx sink) at 1% and 100% sampling against off.
# Prints markdown tables: rps, p50/p99, what each proxy adds over the direct upstream, TTFT,
# chunk gaps, RSS.
#
#   benches/load/run.sh                    # 8 s per run; DURATION=20 for longer, RATE=3000 for the
#                                          # open-loop rate, STREAMS=5000, LITELLM=0 to skip LiteLLM
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION="${DURATION:-8}"
RATE="${RATE:-2000}"
STREAMS="${STREAMS:-5000}"
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

LITELLM_PORT=""
if [ "${LITELLM:-1}" = 1 ]; then
  venv="$HOME/.cache/hermes-bench-litellm"
  if [ -x "$venv/bin/litellm" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q 'litellm[proxy]' >"$work/pip.log" 2>&1; }; then
    LITELLM_PORT=$(port)
    # It refuses to start without a master key; every load generator sends it (the others ignore it).
    LITELLM_KEY="sk-$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
    export LOADGEN_AUTH=$LITELLM_KEY
    cat > "$work/litellm.yaml" <<YAML
model_list:
  - model_name: bench-model
    litellm_params: {model: openai/bench-model, api_base: "http://127.0.0.1:$UP/v1", api_key: bench}
litellm_settings: {telemetry: false}
YAML
    LITELLM_MASTER_KEY=$LITELLM_KEY "$venv/bin/litellm" --config "$work/litellm.yaml" --host 127.0.0.1 --port "$LITELLM_PORT" > "$work/litellm.log" 2>&1 & pids+=($!)
    for _ in $(seq 1 600); do curl -fsS -o /dev/null "http://127.0.0.1:$LITELLM_PORT/health/liveliness" 2>/dev/null && break; sleep 0.2; done
    curl -fsS -o /dev/null "http://127.0.0.1:$LITELLM_PORT/health/liveliness" || { echo "LiteLLM did not start; its row is left out. Its log ends:" >&2; tail -5 "$work/litellm.log" >&2; LITELLM_PORT=""; }
  else
    echo "litellm[proxy] did not install here; its row is left out" >&2
  fi
fi

cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"bench-model","messages":[{"role":"user","content":"Say hello in one word."}]}'
LUA
[ -n "${LOADGEN_AUTH:-}" ] && echo "wrk.headers[\"Authorization\"] = \"Bearer $LOADGEN_AUTH\"" >> "$work/post.lua"
# rps p50 p99 (microseconds) non-2xx, from wrk --latency
measure() {
  local conns=$1 threads=$2 url=$3
  wrk -t"$threads" -c"$conns" -d"${DURATION}s" --latency -s "$work/post.lua" "$url" > "$work/wrk.out" 2>&1
  python3 benches/load/wrk_summary.py "$work/wrk.out"
}
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }
targets=("nginx proxy_pass:$PX" "hermes:$HM")
[ -n "$LITELLM_PORT" ] && targets+=("litellm:$LITELLM_PORT")

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r); load generators share the cores; ${DURATION}s per run"
echo
echo "Closed loop (wrk), non-streamed chat completion:"
printf "| target | connections | req/s | p50 | p99 | added p50 | added p99 | non-2xx |\n|---|---|---|---|---|---|---|---|\n"
for conns in 1 64; do
  threads=$([ "$conns" = 1 ] && echo 1 || echo 2)
  read -r d_rps d50 d99 d_bad <<<"$(measure $conns $threads "http://127.0.0.1:$UP/v1/chat/completions")"
  printf "| direct upstream | %s | %s | %s µs | %s µs | | | %s |\n" "$conns" "$d_rps" "$d50" "$d99" "$d_bad"
  for target in "${targets[@]}"; do
    name=${target%%:*}; p=${target##*:}
    read -r rps p50 p99 bad <<<"$(measure $conns $threads "http://127.0.0.1:$p/v1/chat/completions")"
    printf "| %s | %s | %s | %s µs | %s µs | %s µs | %s µs | %s |\n" "$name" "$conns" "$rps" "$p50" "$p99" "$((p50 - d50))" "$((p99 - d99))" "$bad"
  done
done

echo
echo "Traces: the same gateway exporting OTLP/HTTP spans (a request span, classify, route, one per attempt) to an nginx sink, against traces off:"
printf "| target | connections | req/s | p50 | p99 | added p50 | added p99 | non-2xx |\n|---|---|---|---|---|---|---|---|\n"
otel=(OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$OTLP OTEL_BSP_SCHEDULE_DELAY=1000)
gateway traced1 "$UP" "${otel[@]}" OTEL_TRACES_SAMPLER=traceidratio OTEL_TRACES_SAMPLER_ARG=0.01; HT1=$GATEWAY_PORT; T1PID=$GATEWAY_PID
gateway traced100 "$UP" "${otel[@]}" OTEL_TRACES_SAMPLER=always_on; HT100=$GATEWAY_PORT; T100PID=$GATEWAY_PID
# Fresh gateways warm up (the classifier, the pools) for a second or two: measure none of that.
quiet "$HPID" "$T1PID" "$T100PID"
for conns in 1 64; do
  threads=$([ "$conns" = 1 ] && echo 1 || echo 2)
  read -r d_rps d50 d99 d_bad <<<"$(measure $conns $threads "http://127.0.0.1:$UP/v1/chat/completions")"
  for target in "hermes traces off:$HM" "hermes traces 1%:$HT1" "hermes traces 100%:$HT100"; do
    name=${target%%:*}; p=${target##*:}
    read -r rps p50 p99 bad <<<"$(measure $conns $threads "http://127.0.0.1:$p/v1/chat/completions")"
    printf "| %s | %s | %s | %s µs | %s µs | %s µs | %s µs | %s |\n" "$name" "$conns" "$rps" "$p50" "$p99" "$((p50 - d50))" "$((p99 - d99))" "$bad"
  done
done
sleep 1.5
spans() { curl -fsS "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 ~ "^"m {s += $2} END {printf "%d", s}'; }
echo
echo "Spans at 100%: $(spans "$HT100" hermes_trace_spans_exported_total) exported, $(spans "$HT100" hermes_trace_spans_dropped_total) dropped; at 1%: $(spans "$HT1" hermes_trace_spans_exported_total) exported, $(spans "$HT1" hermes_trace_spans_dropped_total) dropped"
kill "$T1PID" "$T100PID" 2>/dev/null || true
# The open loop measures a steady 16 connections, not the stopped gateways' last flush or the
# main one's analytics catching up on the closed loops.
quiet "$HPID" "$T1PID" "$T100PID"

echo
echo "Open loop at $RATE req/s over 16 connections (streamload rate; a request held back counts from when it was due):"
printf "| target | achieved req/s | p50 | p99 | p99.9 | added p50 | added p99 | failed |\n|---|---|---|---|---|---|---|---|\n"
direct=$("$LOADGEN" rate "127.0.0.1:$UP" "$RATE" "$DURATION" 16)
d50=$(field "$direct" p50); d99=$(field "$direct" p99)
printf "| direct upstream | %s | %s µs | %s µs | %s µs | | | %s |\n" "$(field "$direct" achieved_rps)" "$d50" "$d99" "$(field "$direct" p999)" "$(field "$direct" failed)"
# LiteLLM is left out here: far below this rate, its backlog would stretch the run to minutes.
for target in "nginx proxy_pass:$PX" "hermes:$HM"; do
  name=${target%%:*}; p=${target##*:}
  r=$("$LOADGEN" rate "127.0.0.1:$p" "$RATE" "$DURATION" 16)
  printf "| %s | %s | %s µs | %s µs | %s µs | %s µs | %s µs | %s |\n" "$name" "$(field "$r" achieved_rps)" "$(field "$r" p50)" "$(field "$r" p99)" \
    "$(field "$r" p999)" "$(( $(field "$r" p50) - d50 ))" "$(( $(field "$r" p99) - d99 ))" "$(field "$r" failed)"
done

quiet "$HPID"
echo
echo "Streaming (streamload ttft: 1,000 streams one after another, 5 chunks 2 ms apart, TCP_NODELAY on the client):"
printf "| target | TTFT p50 | TTFT p99 | added TTFT p50 | added TTFT p99 | whole stream p50 | longest gap | reads per stream | failed |\n|---|---|---|---|---|---|---|---|---|\n"
direct=$("$LOADGEN" ttft "127.0.0.1:$SSE" 1000)
t50=$(field "$direct" ttft_p50); t99=$(field "$direct" ttft_p99)
printf "| direct upstream | %s µs | %s µs | | | %s µs | %s µs | %s | %s |\n" "$t50" "$t99" "$(field "$direct" total_p50)" "$(field "$direct" gap_max)" "$(field "$direct" reads_per_stream)" "$(field "$direct" failed)"
for target in "nginx proxy_pass:$PXS" "hermes:$HMS"; do
  name=${target%%:*}; p=${target##*:}
  r=$("$LOADGEN" ttft "127.0.0.1:$p" 1000)
  printf "| %s | %s µs | %s µs | %s µs | %s µs | %s µs | %s µs | %s | %s |\n" "$name" "$(field "$r" ttft_p50)" "$(field "$r" ttft_p99)" \
    "$(( $(field "$r" ttft_p50) - t50 ))" "$(( $(field "$r" ttft_p99) - t99 ))" "$(field "$r" total_p50)" "$(field "$r" gap_max)" "$(field "$r" reads_per_stream)" "$(field "$r" failed)"
done
# The same stream through Hermes's other doors (each re-encodes the chat stream event by event).
for door in responses messages; do
  # An older build (HERMES_BINARY) without these doors answers 404: its rows are left out.
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' --data-binary '{}' "http://127.0.0.1:$HMS/v1/$door")
  [ "$code" = 404 ] && continue
  r=$(LOADGEN_DOOR=$door "$LOADGEN" ttft "127.0.0.1:$HMS" 1000)
  printf "| hermes /v1/%s | %s µs | %s µs | %s µs | %s µs | %s µs | %s µs | %s | %s |\n" "$door" "$(field "$r" ttft_p50)" "$(field "$r" ttft_p99)" \
    "$(( $(field "$r" ttft_p50) - t50 ))" "$(( $(field "$r" ttft_p99) - t99 ))" "$(field "$r" total_p50)" "$(field "$r" gap_max)" "$(field "$r" reads_per_stream)" "$(field "$r" failed)"
done
AFTER_RSS=$(rss "$HPID")

# A fresh gateway in front of the slow upstream (one chunk a second) holds STREAMS streams.
gateway slow "$SLOW"; HSLOW=$GATEWAY_PORT; SPID=$GATEWAY_PID
SLOW_IDLE=$(rss "$SPID")
"$LOADGEN" hold "127.0.0.1:$HSLOW" "$STREAMS" 20 > "$work/hold.out" &
HOLD=$!
peak=0
for _ in $(seq 1 40); do
  sleep 0.5
  kb=$(awk '/VmRSS/ {print $2}' "/proc/$SPID/status"); [ "$kb" -gt "$peak" ] && peak=$kb
done
wait $HOLD
echo
echo "Memory: hermes idle $IDLE_RSS, after the runs above $AFTER_RSS; a fresh gateway idle $SLOW_IDLE, holding $STREAMS streams $((peak / 1024)) MB at the peak ($(tail -1 "$work/hold.out"))"
