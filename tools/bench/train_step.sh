#!/usr/bin/env bash
# Training-step throughput of the decoder at the two reference sizes of DESIGN.md ("CPU
# performance facts"), batch 16 per step in all:
#   small: 2 layers, d 128, seq 128, vocab 4096    PyTorch eager: 21.5k tok/s (2 threads), 13.9k (1)
#   large: 4 layers, d 256, seq 256, vocab 2048    PyTorch eager:  5.5k tok/s (2 threads),  3.0k (1)
# each as 1 rank x 2 threads and 2 ranks x 1 thread (batch 8 per rank). Goal: >= 1.3x PyTorch eager.
# JSON lines on stdout. Usage: BUILD_DIR=build tools/bench/train_step.sh [--steps N]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${BUILD_DIR:-build}"
[[ "$build" = /* ]] || build="$root/$build"
bin="$build/bench/bench_train_step"
[ -x "$bin" ] || { echo "train_step.sh: $bin not built (tools/build.sh)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
run_config() {  # one size at 1 rank x 2 threads, then 2 ranks x 1 thread; extra options last
  local size=("$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8" "$9" "${10}")
  shift 10
  mpirun -np 1 --bind-to none "$bin" "${size[@]}" --batch 16 --threads 2 "$@"
  mpirun -np 2 --bind-to core "$bin" "${size[@]}" --batch 8 --threads 1 "$@"
}
run_config --layers 2 --d 128 --heads 4 --seq 128 --vocab 4096 "$@"
run_config --layers 4 --d 256 --heads 4 --seq 256 --vocab 2048 "$@"
