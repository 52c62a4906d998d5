#!/usr/bin/env bash
# The fused CPU kernels of the training step (model::causal_attention, train::token_cross_entropy's
# row loops) against the op-by-op step they replaced, in the same run, at the quickstart's
# pretraining shape (2 layers, d 128, d_ff 256, 4 heads, rope, 320 tokens, vocab 2048, 16 sequences
# per rank, 2 ranks x 1 thread): float32, and bf16 autocast as train.bf16 runs it where it pays.
# JSON lines of bench_train_step, then one "summary" line per precision with the speed-up.
# Usage: BUILD_DIR=build tools/bench/kernels.sh [--steps N]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${BUILD_DIR:-build}"
[[ "$build" = /* ]] || build="$root/$build"
bin="$build/bench/bench_train_step"
[ -x "$bin" ] || { echo "kernels.sh: $bin not built (tools/build.sh)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
shape=(--layers 2 --d 128 --d-ff 256 --heads 4 --positions rope --seq 320 --vocab 2048 --batch 16 --threads 1 --steps 10)
for precision in "" --bf16; do
  lines="$(
    mpirun -np 2 --bind-to core "$bin" "${shape[@]}" $precision --attention ops --loss torch "$@"
    mpirun -np 2 --bind-to core "$bin" "${shape[@]}" $precision --attention fused --loss engram "$@"
  )"
  echo "$lines"
  echo "$lines" | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.startswith("{")]
ops = next(r for r in rows if r["attention"] == "ops")
fused = next(r for r in rows if r["attention"] == "fused")
print(json.dumps({"bench": "summary", "bf16": fused["bf16"], "ops_tokens_per_s": ops["tokens_per_s"],
                  "fused_tokens_per_s": fused["tokens_per_s"], "speedup": round(fused["tokens_per_s"] / ops["tokens_per_s"], 3)}))'
done
