#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every test label (unit, mpi, and
# the later e2e/slurm labels when present). CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/build.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "${BUILD_DIR:-build}"
# One test at a time: the mpi tests start several ranks on a 2-core machine.
ctest --output-on-failure -j1 "$@"
