#!/usr/bin/env bash
# Installs every Debian package ringcast's build, tests and benchmarks need.
# Idempotent; runs apt-get update first. Uses sudo when not root.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git
  liburing-dev libmsgpack-dev librdkafka-dev librocksdb-dev libinih-dev libxxhash-dev libjemalloc-dev
  libcunit1-dev libhttp-parser-dev libwslay-dev libcjson-dev libssl-dev zlib1g-dev libsystemd-dev
  chromium chromium-driver python3-selenium
  clang libclang-rt-14-dev libfuzzer-14-dev
  nats-server redis-server kcat libck-dev gnuplot-nox jq curl bc prometheus
  python3 python3-websockets python3-msgpack python3-jwt
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "setup: done"
