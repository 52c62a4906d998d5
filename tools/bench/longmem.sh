#!/usr/bin/env bash
# LongMem's benchmarks (issue: LongMem end to end):
#  1. retrieval over a 65,536-token memory (chunk 4, K 64): queries/s of engram's ChunkMemory against
#     faiss IndexFlatIP called directly and a dense matmul + topk, at 4 heads x 32 (the quickstart)
#     and 16 x 64 (the reference); faiss IVF's recall@k against speed (bench_longmem_retrieval);
#  2. training tokens/s with the memory and without it (longmem.memory false), 2 ranks, the
#     quickstart config, on an existing base LM and long_train.jsonl (run tools/quickstart.sh first,
#     or pass --set base.model=... --set longmem.train_data=[...]).
# Usage: BUILD_DIR=build tools/bench/longmem.sh [--set key=value ...]   (sets go to the training runs)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${BUILD_DIR:-build}"
[[ "$build" = /* ]] || build="$root/$build"
bin="$build/bench/bench_longmem_retrieval"
[ -x "$bin" ] || { echo "longmem.sh: $bin not built (cmake --build $build --target bench_longmem_retrieval)" >&2; exit 2; }
"$bin"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(mktemp -d)
for memory in true false; do
  mpirun -np 2 "$build/engram" longmem-train --config "$root/configs/quickstart.yaml" --set longmem.out_dir="$out/$memory" \
    --set longmem.memory=$memory --set longmem.train.steps=60 --set longmem.recall_documents=1 "$@" > "$out/log" 2>&1 ||
    { cat "$out/log"; exit 1; }
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(json.dumps({"bench":"train","memory":sys.argv[2]=="true","tokens_per_s":round(r["tokens_per_s"])}))' \
    "$out/$memory/eval.json" "$memory"
done
rm -rf "$out"
