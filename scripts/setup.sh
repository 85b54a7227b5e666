#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine lacks to build and test Hermes:
# cmake (pingora's zlib-ng), a C++ compiler (DuckDB), curl and python3-venv (the tests).
# Safe to run again: it only installs what is missing.
set -euo pipefail
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v g++ >/dev/null || need+=(g++)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
# The dashboard test runs every panel's query through a real Prometheus.
command -v prometheus >/dev/null || need+=(prometheus)
# Replicas share keys, spend and limits through a real Redis; the replica tests start their own.
command -v redis-server >/dev/null || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${need[*]}"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo is missing: install Rust from https://rustup.rs" >&2; exit 1; }
