#!/usr/bin/env bash
# All-reduce benchmark of engram's CPU data plane (2 MPI ranks, one core each).
#
# Measures, with the nccl-tests method (barrier before each timed call, max over ranks, median over
# repeats after warm-ups; algbw = S/t, busbw = algbw x 2(n-1)/n):
#   1. in-place float32 sum all-reduce from 1 KB to 256 MB (x4 steps): raw MPI_Allreduce vs
#      engram's Communicator::all_reduce on the same buffer, interleaved;
#   2. averaging 200 gradients of 8 KB: GradReducer (bucketed) vs one all_reduce(Avg) per tensor.
# Goals: Communicator within 5% of raw MPI at >= 1 MB (allreduce_overhead.communicator_vs_raw
# <= 1.05); bucketed reduction >= 5x faster than per-tensor (grad_reduce_speedup.ratio >= 5).
#
# Usage: BUILD_DIR=build tools/bench/allreduce.sh [--max-bytes N] [--quick] [--help]
# Build first: cmake --build $BUILD_DIR --target bench_allreduce. JSON lines go to stdout.
# Timings are meaningful only with one core per rank: do not oversubscribe.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${BUILD_DIR:-build}"
[[ "$build" = /* ]] || build="$root/$build"
bin="$build/bench/bench_allreduce"
if [[ ! -x "$bin" ]]; then
  echo "allreduce.sh: $bin not found; build it: cmake --build $build --target bench_allreduce" >&2
  exit 2
fi

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
exec mpirun -np 2 --bind-to core "$bin" "$@"
