# Shared by the sbatch templates in this folder (sourced, not run). One job step per call:
#
#   engram_job COMMAND OUT -- ENGRAM_ARGS...
#
# runs `srun --mpi=pmix engram COMMAND ENGRAM_ARGS...` over the allocation and decides what the
# end of the step means:
#   - the command's last output exists (OUT/<its file>, below): the job is done, exit 0;
#   - the step exited 0 without it: it was stopped (SLURM's pre-timeout USR1, `scancel --signal=USR1`,
#     or a SIGTERM) and saved its state; the job is requeued and the same command resumes from
#     the saved step (the job id, so OUT, stays the same);
#   - the step failed: its exit code ends the job (no requeue: a bad input fails the same way twice).
# Outside an allocation it stops at once with a clear message (exit 2).

engram_fail() {
  echo "engram job: $*" >&2
  exit 2
}

# What each command writes last under its output folder (the job is done when it exists), and the
# config key that sets that folder (inject takes --out instead: "-").
engram_command_files() {
  case "$1" in
    pretrain) echo "model.h5 pretrain.out_dir" ;;
    mac-train) echo "mac.h5 mac.out_dir" ;;
    longmem-train) echo "eval.json longmem.out_dir" ;;
    inject) echo "inject.json -" ;;
    eval | mac-eval) echo "results.json eval.out_dir" ;;
    *) engram_fail "no sbatch support for command '$1' (pretrain, mac-train, longmem-train, inject, eval)" ;;
  esac
}

engram_job() {
  local command="$1" out="$2"
  shift 2
  [ "${1:-}" = "--" ] && shift
  local root="${ENGRAM_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}"
  local engram="${ENGRAM_BIN:-$root/build/engram}"
  [ -x "$engram" ] || engram_fail "$engram is not an executable (set ENGRAM_ROOT to the engram checkout, or ENGRAM_BIN)"
  local files last key
  files="$(engram_command_files "$command")" || exit 2
  read -r last key <<<"$files"
  local done_file="$out/$last" out_args=(--set "$key=$out")
  [ "$key" = "-" ] && out_args=(--out "$out")
  if [ -e "$done_file" ]; then
    echo "engram job: $done_file exists: $command already finished"
    return 0
  fi
  # One LibTorch thread pool per task sized to its CPUs, so tasks on a node do not fight for cores.
  local threads="${SLURM_CPUS_PER_TASK:-1}"
  echo "engram job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}): $command on $SLURM_JOB_NUM_NODES node(s)," \
       "$SLURM_NTASKS task(s), output in $out"
  # USR1 to the batch shell (--signal=B:USR1@...) is passed on to the step: every rank saves.
  local step
  trap 'echo "engram job: USR1: asking the step to save and stop"; kill -USR1 "$step" 2>/dev/null' USR1
  trap 'echo "engram job: TERM: asking the step to save and stop"; kill -TERM "$step" 2>/dev/null' TERM
  srun --mpi="${ENGRAM_SRUN_MPI:-pmix}" --kill-on-bad-exit=1 "$engram" "$command" "${out_args[@]}" \
       --set "dist.threads=$threads" "$@" &
  step=$!
  local rc
  while true; do
    wait "$step"
    rc=$?
    kill -0 "$step" 2>/dev/null || break  # a trapped signal interrupted wait: keep waiting
  done
  trap - USR1 TERM
  if [ "$rc" -ne 0 ]; then
    echo "engram job: $command failed (exit $rc)" >&2
    exit "$rc"
  fi
  if [ -e "$done_file" ]; then
    echo "engram job: $command finished ($done_file)"
    return 0
  fi
  echo "engram job: $command stopped and saved before the end: requeueing job $SLURM_JOB_ID to resume"
  scontrol requeue "$SLURM_JOB_ID" || engram_fail "scontrol requeue $SLURM_JOB_ID failed: resubmit the same script to resume"
  exit 0
}

# Sourcing this file outside an allocation already stops the template.
[ -n "${SLURM_JOB_ID:-}" ] || engram_fail "not inside a SLURM allocation (SLURM_JOB_ID is unset): submit this with sbatch"
