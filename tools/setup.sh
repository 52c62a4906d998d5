#!/usr/bin/env bash
# Installs every Debian package engram needs to build, test and run (DESIGN.md, "Build").
# Idempotent: when everything is present it only checks and returns in seconds.
# Works as root, or as a user with sudo.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config ccache
  libtorch-dev libopenblas0-openmp libblas-dev   # cblas.h: attention's batched products (model/batched_matmul.h)
  libopenmpi-dev openmpi-bin
  libhdf5-openmpi-dev hdf5-tools
  zlib1g-dev                                      # crc32 of memory bank rows (methods/mac/bank.cpp)
  libyaml-cpp-dev libboost-program-options-dev
  googletest libgtest-dev libgmock-dev
  libspdlog-dev libfmt-dev nlohmann-json3-dev
  libsentencepiece-dev sentencepiece libpcre2-dev
  libfaiss-dev
  slurm-wlm
  clang libclang-rt-14-dev                        # libFuzzer + sanitizers: tools/fuzz.sh (label fuzz)
  python3-matplotlib python3-h5py
  bible-kjv                                       # LongMem's long real text (configs/longmem/kjv.yaml)
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi

echo "setup: installing ${#missing[@]} package(s): ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when they are missing or older than a day.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -n1)" ]; then
  $SUDO apt-get update -q
fi
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "setup: installed: ${missing[*]}"
