#!/usr/bin/env bash
# Installs the system packages and data caches attndiff reads. Idempotent: each
# part checks first and does nothing when already present. Never fails the
# build for an optional part; it says what was skipped and how to get it.
set -uo pipefail

cache="${ATTNDIFF_CACHE:-$HOME/.cache/attndiff}"
mkdir -p "$cache"

# --- Debian packages: Fashion-MNIST (IDX files), espeak-ng (speech synthesis) and the
# Sonic Pi samples (real instrument and drum recordings)
missing=()
for pkg in dataset-fashion-mnist espeak-ng sonic-pi-samples; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: apt-get install ${missing[*]}"
    apt-get update -qq >/dev/null && \
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
      || echo "setup: apt-get failed; datasets that need ${missing[*]} will be unavailable"
  else
    echo "setup: skipping ${missing[*]} (needs root): run 'sudo apt-get install ${missing[*]}' for Fashion-MNIST / speech / Sonic Pi data"
  fi
fi

# --- Noto emoji (npm package emoji-datasource-google): 64x64 RGBA PNGs + emoji.json
emoji="$cache/emoji"
if [ ! -f "$emoji/package/emoji.json" ]; then
  if command -v npm >/dev/null; then
    tmp=$(mktemp -d "$cache/.emoji-XXXXXX")
    echo "setup: fetching emoji-datasource-google@16.0.0 from the npm registry into $emoji"
    if (cd "$tmp" && npm pack --silent emoji-datasource-google@16.0.0 >/dev/null && \
        tar xzf emoji-datasource-google-16.0.0.tgz package/emoji.json package/LICENSE package/img/google/64 && \
        rm emoji-datasource-google-16.0.0.tgz); then
      rm -rf "$emoji" && mv "$tmp" "$emoji"
    else
      rm -rf "$tmp"; echo "setup: npm pack failed; the emoji dataset will be unavailable"
    fi
  else
    echo "setup: skipping emoji images (npm not found): install Node.js/npm and rerun 'make setup'"
  fi
fi
exit 0
