#!/usr/bin/env bash
# Installs the Debian 12 packages idlookup needs, and only those missing.
#   scripts/setup.sh          build and run dependencies
#   scripts/setup.sh --test   plus what the test suite needs (the public
#                             conformance run: Debian's python3 with msgpack
#                             and xxhash, and libnng1 for ctypes; clang
#                             and its libFuzzer runtime for scripts/fuzz.sh)
set -euo pipefail

build_pkgs=(
  gcc g++ pkg-config meson ninja-build cmake      # cmake: meson finds nng through its CMake config
  libnng-dev libmsgpack-dev librocksdb-dev libxxhash-dev
  libphonenumber-dev libicu-dev libjansson-dev libsodium-dev libidn2-dev
  libnats-dev                                     # cluster mode: the NATS JetStream C client
)
# rocksdb-tools: sst_dump, to read SST files in the erasure test;
# clang + libclang-rt-14-dev: libFuzzer for the bounded fuzz runs;
# nats-server: the cluster tests start a 3-server JetStream cluster.
test_pkgs=(python3 python3-msgpack python3-xxhash libnng1 procps rocksdb-tools clang libclang-rt-14-dev
           nats-server)

want=("${build_pkgs[@]}")
if [[ "${1:-}" == "--test" ]]; then
  want+=("${test_pkgs[@]}")
fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#want[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
