#!/usr/bin/env bash
# One-command Talos install (the spec's install_talos.sh): checks that Ollama answers, installs
# the talos binary (a release binary you give it, or built with cargo from this checkout),
# writes /etc/talos/talos.env, and starts it under systemd (or in the background without it).
#
#   deploy/install_talos.sh                      # build with cargo, install, start
#   TALOS_BINARY=./talos deploy/install_talos.sh # install a release binary
#
# Settings (environment): OLLAMA_HOST (http://localhost:11434), TALOS_PORT (8001), TALOS_BIND
# (0.0.0.0), DEFAULT_MODEL (llama3.1:8b), CODE_MODEL (qwen2.5-coder:7b), TALOS_TOKEN (generated
# when unset), TALOS_PREFIX (/usr/local), TALOS_CONF_DIR (/etc/talos), TALOS_SYSTEMD (auto|yes|no).
set -euo pipefail

OLLAMA_HOST="${OLLAMA_HOST:-http://localhost:11434}"
TALOS_PORT="${TALOS_PORT:-8001}"
TALOS_BIND="${TALOS_BIND:-0.0.0.0}"
DEFAULT_MODEL="${DEFAULT_MODEL:-llama3.1:8b}"
CODE_MODEL="${CODE_MODEL:-qwen2.5-coder:7b}"
PREFIX="${TALOS_PREFIX:-/usr/local}"
CONF_DIR="${TALOS_CONF_DIR:-/etc/talos}"
SYSTEMD="${TALOS_SYSTEMD:-auto}"
here="$(cd "$(dirname "$0")" && pwd)"

say() { printf 'talos-install: %s\n' "$*"; }
die() { printf 'talos-install: %s\n' "$*" >&2; exit 1; }

command -v curl >/dev/null || die "curl is needed (apt-get install curl)"

say "checking Ollama at $OLLAMA_HOST"
tags="$(curl -fsS --max-time 5 "$OLLAMA_HOST/api/tags")" || die "Ollama does not answer at $OLLAMA_HOST/api/tags: start it (ollama serve) or set OLLAMA_HOST"
say "Ollama answers; models: $(printf '%s' "$tags" | grep -o '"name":"[^"]*"' | cut -d'"' -f4 | paste -sd, - || true)"

if [ -n "${TALOS_BINARY:-}" ]; then
  [ -x "$TALOS_BINARY" ] || die "TALOS_BINARY=$TALOS_BINARY is not an executable file"
  binary="$TALOS_BINARY"
elif command -v cargo >/dev/null; then
  say "building talos with cargo (the first build compiles DuckDB and takes a while)"
  (cd "$here/.." && cargo build --release --bin talos)
  binary="${CARGO_TARGET_DIR:-$here/../target}/release/talos"
else
  die "neither TALOS_BINARY nor cargo: download a release binary and run TALOS_BINARY=./talos $0"
fi

mkdir -p "$PREFIX/bin" "$CONF_DIR"
install -m 0755 "$binary" "$PREFIX/bin/talos"
say "installed $PREFIX/bin/talos"

env_file="$CONF_DIR/talos.env"
if [ ! -f "$env_file" ]; then
  token="${TALOS_TOKEN:-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
  umask 077
  cat > "$env_file" <<ENV
OLLAMA_HOST=$OLLAMA_HOST
TALOS_PORT=$TALOS_PORT
TALOS_BIND=$TALOS_BIND
DEFAULT_MODEL=$DEFAULT_MODEL
CODE_MODEL=$CODE_MODEL
TALOS_TOKEN=$token
ENV
  say "wrote $env_file (give Hermes the same token as BACKEND_<NAME>_API_KEY)"
else
  say "keeping the existing $env_file"
fi

use_systemd=no
if [ "$SYSTEMD" = yes ] || { [ "$SYSTEMD" = auto ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; }; then
  use_systemd=yes
fi
if [ "$use_systemd" = yes ]; then
  sed -e "s#/usr/local/bin/talos#$PREFIX/bin/talos#" -e "s#/etc/talos/talos.env#$env_file#" "$here/talos.service" > /etc/systemd/system/talos.service
  systemctl daemon-reload
  systemctl enable --now talos
  say "talos runs under systemd (journalctl -u talos)"
else
  set -a
  # shellcheck disable=SC1090
  . "$env_file"
  set +a
  nohup "$PREFIX/bin/talos" > "$CONF_DIR/talos.log" 2>&1 &
  echo $! > "$CONF_DIR/talos.pid"
  say "no systemd here: started in the background (pid $(cat "$CONF_DIR/talos.pid"), log $CONF_DIR/talos.log)"
fi

port="$(grep '^TALOS_PORT=' "$env_file" | cut -d= -f2)"
for _ in $(seq 1 50); do
  if health="$(curl -fsS --max-time 2 "http://127.0.0.1:$port/health" 2>/dev/null)"; then
    say "healthy: $health"
    exit 0
  fi
  sleep 0.2
done
die "talos did not answer on port $port (see its log)"
