#!/usr/bin/env bash
# The learning simulation's tables (policies against their baselines, regret over time, drift,
# a first bad rating), from the same test CI runs: tests/learning.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hermes-target}"
cargo test --release --test learning -- --nocapture 2>&1 | sed -n '/^Phase 1/,/^test /p'
