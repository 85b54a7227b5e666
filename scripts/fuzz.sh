#!/usr/bin/env bash
# Fuzz the parsers a client or an upstream can feed: the request checks (with the classifier and
# the translations to Ollama and Anthropic), the SSE scanner and event splitter, and the Ollama
# and Anthropic stream translators. Each target runs for SECONDS (default 180) from the seeds in
# fuzz/seeds/; a crash stops the run and leaves its input in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh                 # every target, 3 minutes each
#   SECONDS_EACH=30 scripts/fuzz.sh sse
#   scripts/fuzz.sh --build         # build the targets only (what CI checks)
#
# cargo fuzz needs the nightly toolchain (for -Zsanitizer=address); the fuzz crate builds Hermes
# without its `analytics` feature so DuckDB's C++ is not compiled a second time.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/hermes-fuzz-target}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
toolchain=(+nightly)
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  # No nightly here: the stable compiler accepts the sanitizer flags when told it may.
  toolchain=(); export RUSTC_BOOTSTRAP=1
fi
cargo "${toolchain[@]}" fuzz build -O
[ "${1:-}" = "--build" ] && exit 0
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list)
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  echo "== $t: ${SECONDS_EACH:-180} s"
  cargo "${toolchain[@]}" fuzz run -O "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="${SECONDS_EACH:-180}" -timeout=10 -max_len=65536 -print_final_stats=1 2>&1 | grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|==|SUMMARY|thread)" || true
  ls "fuzz/artifacts/$t" 2>/dev/null | grep -q . && { echo "$t: crash inputs in fuzz/artifacts/$t"; exit 1; }
done
echo "no crashes"
