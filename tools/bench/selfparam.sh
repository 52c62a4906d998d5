#!/usr/bin/env bash
# SELF-PARAM injection (src/methods/selfparam/) through the real binary: seconds per injected
# document at 1 and 2 ranks (the same documents, targets split across ranks), without and with
# the teacher cache (selfparam.teacher_cache: terms (A) and (B)'s teacher rows computed once, in
# batches), and the extra parameters after the merge (must be 0). One JSON line per run, then the
# scaling of each:
#   {"bench":"selfparam_inject","ranks":R,"teacher_cache":C,"documents":N,"seconds":S,
#    "seconds_per_document":S/N,"injection_seconds_per_document":I/N,"teacher_cache_bytes":B,
#    "optimizer_steps":K,"extra_parameters":0}
#   {"bench":"selfparam_scaling","teacher_cache":C,"speedup":S1/S2,"efficiency":S1/(2 S2)}
# Needs a trained base LM and a document file (the quickstart's, or the e2e test's scratch):
#   tools/bench/selfparam.sh BASE_MODEL DOCUMENTS.jsonl UNRELATED.jsonl [N=20] [extra --set ...]
# `seconds` include target sampling (the teacher reads each document) and the three-term
# distillation, `injection_seconds` the distillation alone (where the cache acts); both exclude
# loading. Say which CPU a figure is from (lscpu).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="${BUILD_DIR:-$root/build}/engram"
[ $# -ge 3 ] || { sed -n 2,16p "$0" >&2; exit 2; }
base=$1 docs=$2 unrelated=$3 n=${4:-20}
shift $(( $# >= 4 ? 4 : 3 ))
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
head -n "$n" "$docs" > "$work/docs.jsonl"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
declare -A seconds
for cache in false true; do
  for ranks in 1 2; do
    out="$work/out_${cache}_$ranks"
    mpirun -np "$ranks" --oversubscribe "$bin" inject --config "$root/configs/quickstart.yaml" \
      --set base.model="$base" --set selfparam.unrelated_file="$unrelated" --set selfparam.teacher_cache=$cache "$@" \
      --documents "$work/docs.jsonl" --out "$out" > "$out.log" 2>&1 || { cat "$out.log" >&2; exit 1; }
    seconds[$ranks]=$(python3 -c "import json; print(json.load(open('$out/inject.json'))['seconds'])")
    python3 - "$out/inject.json" "$ranks" "$cache" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
n = r["documents"]
print(json.dumps({"bench": "selfparam_inject", "ranks": int(sys.argv[2]), "teacher_cache": sys.argv[3] == "true",
                  "documents": n, "seconds": round(r["seconds"], 2), "seconds_per_document": round(r["seconds"] / n, 3),
                  "injection_seconds_per_document": round(r["injection_seconds"] / n, 3),
                  "teacher_cache_bytes": r["teacher_cache_bytes"], "optimizer_steps": r["optimizer_steps"],
                  "extra_parameters": r["extra_parameters"]}))
PY
  done
  python3 -c "s1, s2 = ${seconds[1]}, ${seconds[2]}; import json; print(json.dumps({'bench': 'selfparam_scaling', 'teacher_cache': '$cache' == 'true', 'speedup': round(s1 / s2, 3), 'efficiency': round(s1 / (2 * s2), 3)}))"
done
