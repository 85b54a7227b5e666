#!/usr/bin/env bash
# The first requests after start: a fresh gateway in front of the instant upstream, 3 s to
# settle (start-up's code pages are handed back a second after the first health round), then
# 300 non-streamed chat requests one after another on one keep-alive connection. Prints the
# first request's time, the median of the last 200, the RSS before and after, and the major
# page faults (code read back from the file).
#
#   benches/load/first.sh                          # this build
#   HERMES_BINARY=/tmp/other benches/load/first.sh # another build
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/load/common.sh
UP=$(port); instant_upstream "$UP"
gateway first "$UP"; P=$GATEWAY_PID; sleep 3
before=$(rss_mb "$P")
python3 - "$GATEWAY_PORT" <<'PY'
import http.client, json, statistics, sys, time
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
body = json.dumps({"model": "bench-model", "messages": [{"role": "user", "content": "Say hello in one word."}]})
t = []
for _ in range(300):
    s = time.perf_counter()
    c.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
    r = c.getresponse(); r.read()
    t.append((time.perf_counter() - s) * 1e6)
    assert r.status == 200, r.status
print(f"first {t[0]:.0f} µs, median of the last 200 {statistics.median(t[100:]):.0f} µs", end="; ")
PY
echo "RSS ${before} MB before, $(rss_mb "$P") MB after; major page faults $(awk '{print $12}' "/proc/$P/stat")"
