#!/usr/bin/env bash
# Failure suite: `kill -9` of one rank of a 2-rank job at random moments, then a check that the
# newest committed state loads and resumes. Three kinds of moment:
#   train       pretrain running, a checkpoint every 5 steps (the kill mostly lands in a step);
#   checkpoint  pretrain saving a checkpoint every step (the kill mostly lands in a save);
#   bank        mac-memorize --append of a new chunk of documents to a MAC bank.
# For each moment: the job must end non-zero within dist.timeout_s (here 20 s); then
#   train/checkpoint: the same command resumes from the newest committed step (`.done` marker
#     seen before the kill) and runs 2 more steps: a lower step, or a failed resume, is a loss;
#   bank: the bank opens, holds the rows committed before the kill or the whole append, and every
#     row passes its CRC (h5py + zlib); anything else is a loss.
# Usage: BUILD_DIR=build tools/failure_suite.sh [MOMENTS per kind, default 20] [KINDS...]
# Prints one line per moment and a table (kind, moments, non-zero exits, max seconds to exit,
# state that loaded, losses); exits 1 if any moment lost committed state.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-build}"
[[ "$build" = /* ]] || build="$root/$build"
engram="$build/engram"
[ -x "$engram" ] || { echo "failure_suite: $engram not built" >&2; exit 2; }
moments="${1:-20}"
shift || true
kinds=("$@")
[ ${#kinds[@]} -gt 0 ] || kinds=(train checkpoint bank)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun=(mpirun --oversubscribe -np 2)
work="$(mktemp -d /tmp/engram_failures.XXXXXX)"
trap 'rm -rf "$work"' EXIT
timeout_s=20

# shellcheck source=tools/tiny_world.sh
source "$(dirname "$0")/tiny_world.sh"
tiny_world_sets "$work" 2000
tiny_mac_sets "$work"
sets=("${TINY_SETS[@]}" --set pretrain.eval_data= --set "dist.timeout_s=$timeout_s" --set mac.train.steps=4)
quiet() { "$@" >"$work/last.log" 2>&1 || { echo "failure_suite: setup failed: $*" >&2; tail -20 "$work/last.log" >&2; exit 1; }; }
quiet "$engram" synth "${sets[@]}"
quiet "$engram" tokenizer "${sets[@]}"
quiet "${mpirun[@]}" "$engram" pretrain "${sets[@]}" --set "pretrain.out_dir=$work/base" --set train.steps=4

newest_done() {  # the newest committed step in a checkpoint folder (0 when none)
  local f n=0
  for f in "$1"/step_*.done; do [ -e "$f" ] && n=$((10#$(basename "$f" .done | cut -d_ -f2))); done
  echo "$n"
}

# Starts a job in the background, kills one of its ranks after $2 seconds; sets rc and exit_s.
kill_one_rank_of() {  # LOG DELAY COMMAND...
  local log="$1" delay="$2"
  shift 2
  "$@" >"$log" 2>&1 &
  local job=$!
  sleep "$delay"
  local ranks victim
  mapfile -t ranks < <(pgrep -P "$job" -f "$engram")
  if [ ${#ranks[@]} -eq 0 ]; then wait "$job"; rc=$?; exit_s=0; return; fi
  victim="${ranks[RANDOM % ${#ranks[@]}]}"
  kill -9 "$victim" 2>/dev/null
  local t0=$EPOCHREALTIME
  wait "$job"
  rc=$?
  exit_s=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
}

declare -A total nonzero worst loaded losses
record() {  # KIND OK(0|1) LINE
  total[$1]=$((${total[$1]:-0} + 1))
  [ "$rc" -ne 0 ] && nonzero[$1]=$((${nonzero[$1]:-0} + 1))
  worst[$1]=$(awk -v a="$exit_s" -v b="${worst[$1]:-0}" 'BEGIN { print (a > b ? a : b) }')
  if [ "$2" = 1 ]; then loaded[$1]=$((${loaded[$1]:-0} + 1)); else losses[$1]=$((${losses[$1]:-0} + 1)); fi
  echo "$3"
}

run_training_kind() {  # KIND SAVE_EVERY
  local kind="$1" save_every="$2" i out before resumed delay
  for i in $(seq "$moments"); do
    out="$work/$kind-$i"
    delay="$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 1 + 4 * r / 32768 }')"  # 1 to 5 s: start-up, training, saves
    kill_one_rank_of "$out.log" "$delay" "${mpirun[@]}" "$engram" pretrain "${sets[@]}" --set "pretrain.out_dir=$out" \
      --set train.steps=100000 --set "train.save_every=$save_every"
    before="$(newest_done "$out/checkpoints")"
    # Resume: 2 steps past the newest committed one (from 0 when nothing was committed yet).
    "${mpirun[@]}" "$engram" pretrain "${sets[@]}" --set "pretrain.out_dir=$out" --set "train.steps=$((before + 2))" \
      --set "train.save_every=$save_every" >"$out.resume.log" 2>&1
    local resume_rc=$?
    resumed="$(grep -o 'resumed from .* at step [0-9]*' "$out.resume.log" | grep -o '[0-9]*$')"
    local ok=0
    if [ "$resume_rc" -eq 0 ] && [ "${resumed:-0}" -eq "$before" ] && [ "$rc" -ne 0 ]; then ok=1; fi
    record "$kind" "$ok" "$kind $i: kill at ${delay}s, exit $rc after ${exit_s}s, committed step $before, resumed from ${resumed:-0} (rc $resume_rc)"
    rm -rf "$out"
  done
}

bank_rows_ok() {  # BANK MIN MAX -> prints rows, true when rows in {MIN, MAX} and every CRC holds
  /usr/bin/python3 - "$@" <<'EOF'
import sys, zlib, h5py
path, low, high = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with h5py.File(path, "r") as f:
    rows = int(f.attrs["rows"])
    s, c = f["summaries"], f["summary_crc32"]
    bad = sum(zlib.crc32(s[i].tobytes()) != int(c[i]) for i in range(rows))
print(rows)
sys.exit(0 if rows in (low, high) and bad == 0 else 1)
EOF
}

run_bank_kind() {
  quiet "${mpirun[@]}" "$engram" mac-train "${sets[@]}"
  local bank="$work/bank.h5" chunks="$work/chunks" i delay before after
  mkdir -p "$chunks"
  # Appends of ~75 documents each (pretrain.jsonl: documents the bank does not hold yet).
  split -n "l/$((moments + 1))" -d -a 3 --additional-suffix=.jsonl "$work/data/pretrain.jsonl" "$chunks/c"
  local t0=$EPOCHREALTIME
  quiet "${mpirun[@]}" "$engram" mac-memorize "${sets[@]}" --bank "$bank" --documents "$chunks/c000.jsonl"
  local whole; whole=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
  for i in $(seq "$moments"); do
    local chunk="$chunks/c$(printf '%03d' "$i").jsonl"
    before="$(/usr/bin/python3 -c "import h5py,sys; print(int(h5py.File(sys.argv[1],'r').attrs['rows']))" "$bank")"
    local docs; docs="$(wc -l <"$chunk")"
    # Uniform over an uncut memorize's time: start-up, encoding, the write, the commit.
    delay="$(awk -v r=$RANDOM -v w="$whole" 'BEGIN { printf "%.2f", 0.2 + w * r / 32768 }')"
    kill_one_rank_of "$work/bank-$i.log" "$delay" "${mpirun[@]}" "$engram" mac-memorize "${sets[@]}" --bank "$bank" \
      --append --documents "$chunk"
    after="$(bank_rows_ok "$bank" "$before" "$((before + docs))")"
    local ok=$?
    [ "$ok" -eq 0 ] && ok=1 || ok=0
    record bank "$ok" "bank $i: kill at ${delay}s, exit $rc after ${exit_s}s, rows $before -> ${after:-unreadable} (append of $docs)"
  done
}

for kind in "${kinds[@]}"; do
  case "$kind" in
    train) run_training_kind train 5 ;;
    checkpoint) run_training_kind checkpoint 1 ;;
    bank) run_bank_kind ;;
    *) echo "failure_suite: unknown kind '$kind' (train, checkpoint, bank)" >&2; exit 2 ;;
  esac
done

echo
echo "| kind | moments | non-zero exits | max s to exit | committed state loaded | losses |"
echo "|---|---|---|---|---|---|"
lost=0
for kind in "${kinds[@]}"; do
  echo "| $kind | ${total[$kind]:-0} | ${nonzero[$kind]:-0} | ${worst[$kind]:-0} | ${loaded[$kind]:-0} | ${losses[$kind]:-0} |"
  lost=$((lost + ${losses[$kind]:-0}))
done
[ "$lost" -eq 0 ]
