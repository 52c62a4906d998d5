#!/usr/bin/env bash
# Launch an engram command on this machine with mpirun.
#   launch/local.sh -np 4 build/engram doctor --config configs/quickstart.yaml
# Adds what a single-machine run needs: permission to run as root (containers), oversubscription
# when there are more ranks than cores, and no core binding when ranks share cores.
set -euo pipefail
NP=2
if [ "${1:-}" = "-np" ]; then NP=$2; shift 2; fi
[ $# -ge 1 ] || { echo "usage: launch/local.sh [-np N] COMMAND [ARGS...]" >&2; exit 2; }
EXTRA=()
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
if [ "$NP" -gt "$(nproc)" ]; then EXTRA+=(--oversubscribe --bind-to none); fi
exec mpirun -np "$NP" "${EXTRA[@]}" "$@"
