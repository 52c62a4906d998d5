#!/usr/bin/env bash
# From a fresh clone: installs what is missing, builds (Release), and runs the main job on the
# embedded default config with 2 MPI ranks. Today the main job is `engram doctor` (installation
# and launch check); the method pipelines join it as they land.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/build.sh
NP=${NP:-2}
launch/local.sh -np "$NP" build/engram doctor "$@"
