#!/usr/bin/env bash
# Runs the Dockerfile's build stage without a Docker engine: its COPY lines into a scratch
# WORKDIR and its RUN lines there, in order, so CI proves the image's build commands still work.
# The runtime stage's expectations (user, ports, paths) are checked by tests/image.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The stage runs as root in its image; here apt-get only runs when something is missing.
in_build=0
while IFS= read -r line; do
  case "$line" in
    "FROM "*" AS build"*) in_build=1; continue ;;
    "FROM "*) [ $in_build = 1 ] && break; continue ;;
  esac
  [ $in_build = 1 ] || continue
  case "$line" in
    "COPY "*)
      read -r -a parts <<<"${line#COPY }"
      dest=${parts[-1]}
      mkdir -p "$work/$dest"
      for src in "${parts[@]:0:${#parts[@]}-1}"; do
        # As Docker does: a folder's contents go into the destination folder.
        if [ -d "$root/$src" ]; then cp -r "$root/$src/." "$work/$dest/"; else cp "$root/$src" "$work/$dest/"; fi
      done ;;
    "RUN apt-get"*)
      command -v cmake >/dev/null || (cd "$work" && sh -c "${line#RUN }") ;;
    "RUN "*)
      echo "build stage: ${line#RUN }"
      (cd "$work" && sh -c "${line#RUN }") ;;
  esac
done < Dockerfile
for bin in hermes talos; do
  test -x "${CARGO_TARGET_DIR:-$work/target}/release/$bin" || { echo "build stage: $bin was not built" >&2; exit 1; }
done
echo "build stage: hermes and talos built"
