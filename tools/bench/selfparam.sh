#!/usr/bin/env bash
# SELF-PARAM injection (src/methods/selfparam/) through the real binary: seconds per injected
# document at 1 and 2 ranks (the same documents, targets split across ranks), and the extra
# parameters after the merge (must be 0). One JSON line per run on stdout, then the scaling:
#   {"bench":"selfparam_inject","ranks":R,"documents":N,"seconds":S,"seconds_per_document":S/N,
#    "optimizer_steps":K,"extra_parameters":0}
#   {"bench":"selfparam_scaling","speedup":S1/S2,"efficiency":S1/(2 S2)}
# Needs a trained base LM and a document file (the quickstart's, or the e2e test's scratch):
#   tools/bench/selfparam.sh BASE_MODEL DOCUMENTS.jsonl UNRELATED.jsonl [N=20] [extra --set ...]
# Seconds include target sampling (the teacher reads each document) and the three-term
# distillation; they exclude loading. Say which CPU a figure is from (lscpu).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="${BUILD_DIR:-$root/build}/engram"
[ $# -ge 3 ] || { sed -n 2,13p "$0" >&2; exit 2; }
base=$1 docs=$2 unrelated=$3 n=${4:-20}
shift $(( $# >= 4 ? 4 : 3 ))
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
head -n "$n" "$docs" > "$work/docs.jsonl"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
declare -A seconds
for ranks in 1 2; do
  mpirun -np "$ranks" --oversubscribe "$bin" inject --config "$root/configs/quickstart.yaml" \
    --set base.model="$base" --set selfparam.unrelated_file="$unrelated" "$@" \
    --documents "$work/docs.jsonl" --out "$work/out$ranks" > "$work/log$ranks" 2>&1 ||
    { cat "$work/log$ranks" >&2; exit 1; }
  seconds[$ranks]=$(python3 -c "import json; print(json.load(open('$work/out$ranks/inject.json'))['seconds'])")
  python3 - "$work/out$ranks/inject.json" "$ranks" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(json.dumps({"bench": "selfparam_inject", "ranks": int(sys.argv[2]), "documents": r["documents"],
                  "seconds": round(r["seconds"], 2), "seconds_per_document": round(r["seconds"] / r["documents"], 3),
                  "optimizer_steps": r["optimizer_steps"], "extra_parameters": r["extra_parameters"]}))
PY
done
python3 -c "s1, s2 = ${seconds[1]}, ${seconds[2]}; import json; print(json.dumps({'bench': 'selfparam_scaling', 'speedup': round(s1 / s2, 3), 'efficiency': round(s1 / (2 * s2), 3)}))"
