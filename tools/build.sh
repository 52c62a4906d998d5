#!/usr/bin/env bash
# Configures (Release) and builds engram into $BUILD_DIR (default: build). Extra arguments go to
# CMake's configure step, e.g. tools/build.sh -DENGRAM_WITH_NCCL=OFF.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build "$BUILD_DIR" -j"$JOBS"
