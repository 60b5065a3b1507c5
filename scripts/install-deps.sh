#!/usr/bin/env bash
# Installs exactly the Debian packages Baton builds and tests with. Idempotent:
# packages already present are skipped, and `apt-get update` runs only when
# something is missing. Run as root or with sudo available.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config git clang-format clang-tidy
  # the fuzz preset (make fuzz): clang with libFuzzer
  clang
  # libraries
  libboost-dev libspdlog-dev libfmt-dev nlohmann-json3-dev libyaml-cpp-dev libcli11-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # scripts (fixture generators, checks)
  python3
  # controller membership tests run a real etcd
  etcd-server
  # baton bench plot (PNG figures from benchmark JSON)
  gnuplot-nox
)

# Node.js and npm for the integration tests through the openai npm client;
# a Node.js already on the machine (from any source) is kept.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
