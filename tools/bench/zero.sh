#!/usr/bin/env bash
# train.zero 0 / 1 / 2 on 2 ranks (train/distributed_adamw.h): each rank's peak RSS (VmHWM, from
# /usr/bin/time) and the time per step, for `engram pretrain` of a decoder at distilgpt2's sizes
# (6 layers, d 768, 12 heads, d_ff 3072, vocab 50257: 81.9M parameters, random initialisation) on
# a tiny synthetic world: sequences of up to 256 tokens, micro-batch 2 per rank, 6 steps, a checkpoint at
# the end. AdamW's state is 2 x 4 bytes per parameter: 625 MiB whole, 313 MiB per rank at 1 and 2.
# JSON lines on stdout: {"zero":Z,"rank_peak_mib":[r0,r1],"step_s":S,"loss_last":L} (the same
# loss at every stage: the stages change where the state lives, not the arithmetic).
# Usage: BUILD_DIR=build tools/bench/zero.sh [--steps N]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${BUILD_DIR:-build}"
[[ "$build" = /* ]] || build="$root/$build"
bin="$build/engram"
[ -x "$bin" ] || { echo "zero.sh: $bin not built (tools/build.sh)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "zero.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
steps=6
if [ "${1:-}" = "--steps" ]; then steps=$2; fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
world="--set synth.entities=400 --set synth.out_dir=$work/data --set tokenizer.input=$work/data/corpus.txt
       --set tokenizer.model=$work/tok.model --set tokenizer.vocab_size=1000 --set log.level=warn"
"$bin" synth $world >/dev/null
"$bin" tokenizer $world >/dev/null
model="--set model.d_model=768 --set model.n_layers=6 --set model.n_heads=12 --set model.d_ff=3072
       --set model.vocab_size=50257 --set model.max_positions=1024 --set model.positions=learned
       --set pretrain.seq_len=256 --set pretrain.data=[$work/data/pretrain.jsonl] --set pretrain.eval_data=
       --set train.micro_batch=2 --set train.log_every=1 --set train.steps=$steps --set train.bf16=false
       --set train.keep_checkpoints=1 --set dist.threads=1"
for zero in 0 1 2; do
  out="$work/zero$zero"
  mpirun -np 2 --bind-to none bash -c '/usr/bin/time -f "peak_kib %M" -o "$0.time.$OMPI_COMM_WORLD_RANK" "$@"' \
    "$out" "$bin" pretrain $world $model --set pretrain.out_dir="$out" --set train.zero=$zero >"$out.log" 2>&1 ||
    { cat "$out.log" >&2; exit 1; }
  python3 - "$out" "$zero" "$steps" <<'PY'
import glob, json, sys
out, zero, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
peaks = []
for path in sorted(glob.glob(out + ".time.*")):
    peaks += [int(line.split()[1]) / 1024 for line in open(path) if line.startswith("peak_kib")]
lines = [json.loads(l) for l in open(out + "/metrics.jsonl")]
step_s = (lines[-1]["elapsed_s"] - lines[1]["elapsed_s"]) / (len(lines) - 2)  # after the first step
print(json.dumps({"zero": zero, "rank_peak_mib": [round(p) for p in peaks], "step_s": round(step_s, 3),
                  "loss_last": round(lines[-1]["loss"], 5)}))
PY
done
