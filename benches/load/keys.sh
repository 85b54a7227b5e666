#!/usr/bin/env bash
# What a virtual key costs, and what sharing it through Redis adds: wrk at 1 and 64 connections
# through Hermes to nginx answering at once (a paid backend, so every keyed request reserves and
# settles its budget), in one run, with
#   static:  a key from HERMES_API_KEYS (no limits, the baseline),
#   keyed:   a virtual key with a budget, --rpm and --tpm, counted in this process,
#   redis:   the same key on a gateway with HERMES_REDIS_URL (a local redis-server): its requests
#            and tokens per minute and its budget are checked in Redis on every request.
# Prints a markdown table with each row's ratio to `static`.
#
#   benches/load/keys.sh            # DURATION=8 seconds per run
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION="${DURATION:-8}"
. benches/load/common.sh
UP=$(port); REDIS=$(port)
instant_upstream "$UP"
redis-server --port "$REDIS" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" > "$work/redis.log" 2>&1 & pids+=($!)

# A paid backend (so every keyed request reserves and settles), an admin key to create keys, a static key.
keyed_gateway() { gateway "$1" "$UP" HERMES_ADMIN_KEY=bench-admin HERMES_API_KEYS=bench-static \
  BACKEND_BENCH_PRICE_INPUT_PER_MTOK=1 BACKEND_BENCH_PRICE_OUTPUT_PER_MTOK=1 "${@:2}"; }
keyed_gateway local; LOCAL=$GATEWAY_PORT
keyed_gateway shared HERMES_REDIS_URL=redis://127.0.0.1:$REDIS/0; SHARED=$GATEWAY_PORT
# A key no run can exhaust: its limits are checked on every request, never reached.
key() { HERMES_ADMIN_KEY=bench-admin "$HERMES" keys create --name bench --budget-usd 100000 --budget-window day \
  --rpm 100000000 --tpm 1000000000 --url "http://127.0.0.1:$1" | head -1; }
KEY_LOCAL=$(key "$LOCAL"); KEY_SHARED=$(key "$SHARED")

script() {
  cat > "$work/$1.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $2"
wrk.body = '{"model":"bench-model","max_tokens":16,"messages":[{"role":"user","content":"Say hello in one word."}]}'
LUA
}
script static bench-static; script keyed "$KEY_LOCAL"; script redis "$KEY_SHARED"
# rps p50 p99 (µs) non-2xx
measure() {
  wrk -t"$(( $1 > 1 ? 2 : 1 ))" -c"$1" -d"${DURATION}s" --latency -s "$work/$2.lua" "http://127.0.0.1:$3/v1/chat/completions" > "$work/wrk.out" 2>&1
  python3 benches/load/wrk_summary.py "$work/wrk.out"
}
echo "| requests | connections | rps | p50 µs | p99 µs | non-2xx | rps vs static | p50 vs static |"
echo "|---|---|---|---|---|---|---|---|"
for conns in 1 64; do
  base=""
  for row in "static $LOCAL" "keyed $LOCAL" "redis $SHARED"; do
    set -- $row
    read -r rps p50 p99 bad < <(measure "$conns" "$1" "$2")
    [ -z "$base" ] && base="$rps $p50"
    read -r brps bp50 <<<"$base"
    printf "| %s | %s | %s | %s | %s | %s | %.2fx | %.2fx |\n" "$1" "$conns" "$rps" "$p50" "$p99" "$bad" \
      "$(python3 -c "print($rps/$brps)")" "$(python3 -c "print($p50/$bp50)")"
  done
done
echo
echo "redis: $(redis-cli -p "$REDIS" info commandstats | grep -E 'cmdstat_(evalsha|eval|xadd|set):' | cut -d, -f1 | tr '\n' ' ')"
