#!/usr/bin/env bash
# Memory bank write speed (MAC, src/methods/mac/bank.h): 2 ranks write a float32 bank of 20000
# documents x T 8 x d 128 (~82 MB) collectively with parallel HDF5, fsynced and renamed, and dd
# writes as many bytes with conv=fdatasync in the same run, alternating. The bank is then read
# back and checked bit for bit. JSON lines on stdout; bank_vs_dd.ratio = bank MB/s / dd MB/s.
# Usage: BUILD_DIR=build tools/bench/bank_write.sh [--docs N] [--T T] [--d D] [--reps R] [--dir DIR]
# (DIR defaults to /tmp/engram_bench_bank: point it at the file system the banks will live on.)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${BUILD_DIR:-build}"
[[ "$build" = /* ]] || build="$root/$build"
bin="$build/bench/bench_bank_write"
[ -x "$bin" ] || { echo "bank_write.sh: $bin not built (cmake --build $build --target bench_bank_write)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# I/O bound: no core binding, so that another job on the machine does not pin both ranks' cores.
exec mpirun -np 2 --bind-to none "$bin" "$@"
