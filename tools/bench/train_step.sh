#!/usr/bin/env bash
# Training-step throughput of the decoder at the two reference sizes of DESIGN.md ("CPU
# performance facts"), batch 16 per step in all:
#   small: 2 layers, d 128, seq 128, vocab 4096
#   large: 4 layers, d 256, seq 256, vocab 2048
# engram (bench_train_step) as 1 rank x 2 threads and 2 ranks x 1 thread (batch 8 per rank), and
# in the same run the reference: PyTorch-Python eager on the same LibTorch (train_step_eager.py,
# Debian's python3-torch) at 2 threads and 1 thread. Goal: engram's best >= 1.3x eager's best.
# JSON lines on stdout, then one "summary" line per size with the ratio.
# Usage: BUILD_DIR=build tools/bench/train_step.sh [--steps N]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${BUILD_DIR:-build}"
[[ "$build" = /* ]] || build="$root/$build"
bin="$build/bench/bench_train_step"
[ -x "$bin" ] || { echo "train_step.sh: $bin not built (tools/build.sh)" >&2; exit 2; }
eager=(/usr/bin/python3 "$root/tools/bench/train_step_eager.py")
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  echo "train_step.sh: the eager reference needs Debian's python3-torch (apt-get install python3-torch);" \
       "running engram only" >&2
  eager=()
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
run_size() {  # one size: engram at 1 x 2 and 2 x 1, eager at 2 and 1 threads; extra options last
  local size=("$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8" "$9" "${10}")
  shift 10
  local lines
  lines="$(
    mpirun -np 1 --bind-to none "$bin" "${size[@]}" --batch 16 --threads 2 "$@"
    mpirun -np 2 --bind-to core "$bin" "${size[@]}" --batch 8 --threads 1 "$@"
    if [ ${#eager[@]} -gt 0 ]; then
      "${eager[@]}" "${size[@]}" --batch 16 --threads 2 "$@"
      "${eager[@]}" "${size[@]}" --batch 16 --threads 1 "$@"
    fi
  )"
  echo "$lines"
  echo "$lines" | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.startswith("{")]
best = lambda kind: max((r["tokens_per_s"] for r in rows if r["bench"] == kind), default=0)
ours, ref = best("train_step"), best("train_step_eager")
print(json.dumps({"bench": "summary", "layers": rows[0]["layers"], "d": rows[0]["d"], "engram_tokens_per_s": ours,
                  "eager_tokens_per_s": ref, "ratio": round(ours / ref, 3) if ref else None, "goal": 1.3}))'
}
run_size --layers 2 --d 128 --heads 4 --seq 128 --vocab 4096 "$@"
run_size --layers 4 --d 256 --heads 4 --seq 256 --vocab 2048 "$@"
