#!/usr/bin/env bash
# The `slurm` label: engram's sbatch templates on a real scheduler. A slurmctld and two slurmd
# nodes run on this machine, each node in its own network namespace (tools/slurm_local.sh).
#   1. cluster/cpu.sbatch runs a short pipeline (pretrain) with 2 tasks on each of the 2 nodes:
#      one MPI world of 4 ranks over 2 nodes, and the job ends COMPLETED with model.h5.
#   2. `scancel --signal=USR1` in the middle of training: the step saves and exits 0, the job
#      requeues itself, and the requeued run resumes from the saved step and finishes.
# Usage: test_slurm.sh ENGRAM_ROOT BUILD_DIR   (CTest passes both)
set -uo pipefail
root="$1"
build="$2"
work="$(mktemp -d /tmp/engram_slurm.XXXXXX)"
cluster="$work/cluster"
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}
cleanup() {
  "$root/tools/slurm_local.sh" stop "$cluster" >/dev/null 2>&1
  if [ "$failures" -eq 0 ] && [ -z "${ENGRAM_KEEP:-}" ]; then rm -rf "$work"; else echo "kept $work for a look" >&2; fi
}
trap cleanup EXIT

"$root/tools/slurm_local.sh" start "$cluster"
started=$?
if [ "$started" -eq 2 ]; then
  # This machine cannot host the cluster (not root, or no network namespaces): reported by CTest
  # as skipped (SKIP_RETURN_CODE), never as passed; slurm_local.sh printed the reason.
  echo "SKIPPED: tools/slurm_local.sh cannot start a cluster here (reason above)" >&2
  exit 77
fi
[ "$started" -eq 0 ] || { echo "FAIL: the local SLURM cluster did not start" >&2; exit 1; }
export SLURM_CONF="$cluster/slurm.conf"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
engram="$build/engram"

# A tiny world, tokenizer and model (as test_cli's): seconds per command.
# shellcheck source=tools/tiny_world.sh
source "$root/tools/tiny_world.sh"
tiny_world_sets "$work" 200
sets=("${TINY_SETS[@]}" --set "pretrain.eval_data=$work/data/valid.jsonl" --set pretrain.eval_questions=8
      --set train.warmup_steps=2)
"$engram" synth "${sets[@]}" >"$work/synth.log" 2>&1 || { cat "$work/synth.log"; exit 1; }
"$engram" tokenizer "${sets[@]}" >"$work/tokenizer.log" 2>&1 || { cat "$work/tokenizer.log"; exit 1; }

# Waits until job $1 has left the queue (requeues included); prints its final state.
wait_for_job() {
  local job="$1" deadline=$((SECONDS + 300)) state=""
  while [ $SECONDS -lt $deadline ]; do
    state="$(scontrol show job "$job" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2)"
    case "$state" in
      COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY) echo "$state"; return 0 ;;
    esac
    sleep 1
  done
  echo "TIMEOUT_WAITING($state)"
}

submit() {  # submit OUT ARGS... -> job id
  local out="$1"
  shift
  (cd "$work" && OUT="$out" ENGRAM_ROOT="$root" ENGRAM_BIN="$engram" \
     sbatch --parsable --nodes=2 --ntasks-per-node=2 "$root/cluster/cpu.sbatch" pretrain "${sets[@]}" "$@")
}

# 1. Four ranks on two nodes, to the end.
job="$(submit "$work/run1" --set train.steps=6)"
state="$(wait_for_job "$job")"
log="$work/engram-cpu-$job.out"
[ "$state" = COMPLETED ] || fail "job $job ended $state"
grep -q "world=4 nodes=2" "$log" || fail "job $job: no 'world=4 nodes=2' in $log"
grep -q "pretrained 6 steps" "$log" || fail "job $job: no 'pretrained 6 steps' in $log"
[ -e "$work/run1/model.h5" ] || fail "job $job wrote no model.h5"
grep -q "2 node(s), 4 task(s)" "$log" || fail "job $job: the template did not see 2 nodes and 4 tasks"

# 2. USR1 in the middle of training: save, exit 0, requeue, resume from that step, finish.
steps=300
job="$(submit "$work/run2" --set train.steps=$steps --set train.save_every=0)"
log="$work/engram-cpu-$job.out"
deadline=$((SECONDS + 120))
until [ -s "$work/run2/metrics.jsonl" ] && [ "$(wc -l <"$work/run2/metrics.jsonl")" -ge 20 ]; do
  [ $SECONDS -lt $deadline ] || { fail "job $job: training did not start within 120 s"; break; }
  sleep 0.5
done
scancel --signal=USR1 "$job"
state="$(wait_for_job "$job")"
[ "$state" = COMPLETED ] || fail "job $job ended $state after USR1"
restarts="$(scontrol show job "$job" | grep -o 'Restarts=[0-9]*' | cut -d= -f2)"
[ "${restarts:-0}" -ge 1 ] || fail "job $job was not requeued (Restarts=${restarts:-none})"
grep -q "requeueing job $job" "$log" || fail "job $job: the template did not requeue ($log)"
saved="$(grep -o 'stop signal: saving step [0-9]*' "$log" | head -1 | grep -o '[0-9]*$')"
[ -n "$saved" ] && [ "$saved" -lt "$steps" ] || fail "job $job: no checkpoint saved before the end ($log)"
grep -q "resumed from .* at step ${saved:-x} " "$log" || fail "job $job: the requeued run did not resume from step ${saved:-?}"
grep -q "pretrained $steps steps" "$log" || fail "job $job: the requeued run did not finish ($log)"
[ -e "$work/run2/model.h5" ] || fail "job $job wrote no model.h5"

if [ "$failures" -ne 0 ]; then
  for f in "$work"/engram-cpu-*.out; do echo "==== $f"; tail -40 "$f"; done
  exit 1
fi
echo "slurm: 2 nodes x 2 tasks completed; USR1 at step $saved saved, requeued and resumed to step $steps"
