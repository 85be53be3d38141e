#!/usr/bin/env bash
# Installs Corvid's build and test dependencies from Debian 12 packages.
# Needs root (or sudo). Safe to run repeatedly.
set -euo pipefail
PKGS=(
  build-essential cmake ninja-build pkg-config
  libboost-dev libboost-filesystem-dev libboost-program-options-dev
  libdnnl-dev libtinyxml2-dev nlohmann-json3-dev
  libpcre2-dev libutf8proc-dev libedit-dev zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "all dependencies present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
