"""wrk --latency output -> "rps p50 p99 non2xx" (µs), for the load scripts; with --p999, a fifth
field from the "p999_us N" line a wrk script's done() prints (wrk's table stops at 99%)."""
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
line = f"{rps:.0f} {p50:.0f} {p99:.0f} {non2xx.group(1) if non2xx else 0}"
if "--p999" in sys.argv[2:]:
    line += " " + re.search(r"^p999_us (\d+)", text, re.M).group(1)
print(line)
