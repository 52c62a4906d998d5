#!/usr/bin/env bash
# From a fresh clone: installs what is missing, builds (Release), then runs the whole pipeline on
# the embedded default config (configs/quickstart.yaml) with 2 MPI ranks on CPU:
#   synth -> tokenizer -> pretrain (base LM) -> mac-train -> longmem-train -> eval (every
#   contender, one table: the baselines, MAC, SELF-PARAM and FT(S), which inject the stream during
#   eval, and LongMem, which writes it into its memory)
# and ends by printing the comparison table. Every step is resumable: run it again after an
# interruption and finished steps are skipped (delete runs/quickstart to start over).
#   NP=2 tools/quickstart.sh [--set key=value ...]   extra options go to every step
#   WORLD=heldout_domain tools/quickstart.sh        the same on the held-out-domain world
#     (configs/heldout_domain.yaml read after configs/quickstart.yaml; its runs in runs/heldout_domain)
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/build.sh
NP=${NP:-2}
WORLD=${WORLD:-quickstart}
if [ "$WORLD" = quickstart ]; then
  CONFIG=(--config configs/quickstart.yaml)
else
  [ -f "configs/$WORLD.yaml" ] || { echo "WORLD=$WORLD: no configs/$WORLD.yaml" >&2; exit 2; }
  CONFIG=(--config configs/quickstart.yaml --config "configs/$WORLD.yaml")
fi
RUN=runs/$WORLD
start=$(date +%s)
step() { echo; echo "== $* ($(( $(date +%s) - start )) s)"; }

# The machine in brief: ranks, threads, matmul rates, and whether bf16 autocast pays (train.bf16: auto).
launch/local.sh -np "$NP" build/engram doctor "${CONFIG[@]}" "$@" | grep -E "^(matmul|BLAS)"
if [ ! -f "$RUN/data/world.json" ]; then
  step "synthetic world"
  build/engram synth "${CONFIG[@]}" "$@"
fi
if [ ! -f "$RUN/tokenizer.model" ]; then
  step "tokenizer"
  build/engram tokenizer "${CONFIG[@]}" "$@"
fi
if [ ! -f "$RUN/base/model.h5" ]; then
  step "pretraining the base LM"
  launch/local.sh -np "$NP" build/engram pretrain "${CONFIG[@]}" "$@"
fi
if [ ! -f "$RUN/mac/mac.h5" ]; then
  step "MAC meta-training"
  launch/local.sh -np "$NP" build/engram mac-train "${CONFIG[@]}" "$@"
fi
if [ ! -f "$RUN/longmem/sidenet.h5" ]; then
  step "LongMem: the SideNet over the frozen base LM"
  launch/local.sh -np "$NP" build/engram longmem-train "${CONFIG[@]}" "$@"
fi
step "evaluation: every contender on the test stream"
launch/local.sh -np "$NP" build/engram eval "${CONFIG[@]}" "$@"
PY=python3
if /usr/bin/python3 -c "import matplotlib" 2>/dev/null; then PY=/usr/bin/python3; fi
"$PY" tools/plot_eval.py "$RUN/eval/results.json" || echo "(plots skipped: matplotlib missing)"
echo
echo "quickstart finished in $(( $(date +%s) - start )) s"
