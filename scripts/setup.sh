#!/usr/bin/env bash
# Installs every Debian package telehub needs to build, test and run the demo, and the
# benchmark (scripts/bench.sh: libmosquitto-dev for its publisher and raw subscriber, python3
# for node-gyp, which builds the Node.js peer's better-sqlite3 from source).
# Idempotent: runs `apt-get update` and `apt-get install` only when a package is missing.
# Usage: scripts/setup.sh            (as root, or with sudo available)
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libssl-dev libsqlite3-dev sqlite3 zlib1g-dev
  libpaho-mqtt-dev libpaho-mqttpp-dev
  mosquitto mosquitto-clients
  libmosquitto-dev python3
  libboost-dev libboost-system-dev
  rapidjson-dev libexpected-dev catch2
  nodejs curl ca-certificates openssl
  clang-14 libclang-rt-14-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  # The Debian mosquitto package enables a system broker on port 1883; telehub
  # never uses it (it starts its own on a free loopback port), so keep it off.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
    $SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true
  fi
else
  echo "setup: all packages present"
fi
