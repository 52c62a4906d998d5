#!/usr/bin/env bash
# Runs engram's libFuzzer targets (fuzz/): the config loader, the JSONL / CSV / SQuAD readers, the
# safetensors parser, and the memory-bank and checkpoint loaders, each for SECONDS, from a seed
# corpus of the repository's own files (configs/, tests/fixtures/). Builds them first with clang
# (libFuzzer + ASan + UBSan) into $FUZZ_BUILD_DIR (default build-fuzz). Findings (crashing inputs)
# go to $FUZZ_BUILD_DIR/findings; the corpus grows in $FUZZ_BUILD_DIR/corpus, reused next time.
# Usage: tools/fuzz.sh SECONDS [TARGET ...]    exit 0: no finding; 1: a finding; 2: bad usage
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
seconds="${1:-}"
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "usage: tools/fuzz.sh SECONDS [TARGET ...]" >&2; exit 2; }
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_config fuzz_jsonl fuzz_csv fuzz_squad fuzz_safetensors fuzz_bank fuzz_checkpoint)
build="$(realpath -m "${FUZZ_BUILD_DIR:-build-fuzz}")"
command -v clang++ >/dev/null || { echo "fuzz: clang++ is missing (tools/setup.sh installs it)" >&2; exit 2; }

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
mkdir -p "$build"
cmake -S fuzz -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ "${launcher[@]}" >"$build/configure.log" 2>&1 ||
  { cat "$build/configure.log" >&2; exit 2; }
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}" >"$build/build.log" 2>&1 ||
  { tail -40 "$build/build.log" >&2; exit 2; }

# The seed corpus of each target: the repository's own files of its format.
seeds() {
  case "$1" in
    fuzz_config) ls configs/*.yaml configs/*/*.yaml ;;
    fuzz_jsonl) ls tests/fixtures/data/*.jsonl ;;
    fuzz_csv) ls tests/fixtures/data/*.csv ;;
    fuzz_squad) ls tests/fixtures/data/*.json tests/fixtures/hf/*/config.json ;;
    fuzz_safetensors) ls tests/fixtures/hf/*/*.safetensors ;;
    fuzz_bank) ls tests/fixtures/bank/*.h5 ;;
    fuzz_checkpoint) ls tests/fixtures/checkpoint/*.h5 ;;
  esac
}

findings=0
printf '%-18s %8s %12s %8s %8s %s\n' target seconds executions cov corpus finding
for target in "${targets[@]}"; do
  corpus="$build/corpus/$target" seed_dir="$build/seeds/$target"
  mkdir -p "$corpus" "$seed_dir" "$build/findings"
  seeds "$target" | while read -r f; do cp "$f" "$seed_dir/"; done
  log="$build/$target.log"
  # -rss_limit_mb: LibTorch's start-up under ASan needs more than libFuzzer's 2 GB default.
  "$build/$target" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=8192 -print_final_stats=1 \
    -artifact_prefix="$build/findings/$target-" "$corpus" "$seed_dir" >"$log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  finding="none"
  if [ "$rc" -ne 0 ]; then
    findings=$((findings + 1))
    finding="$(grep -m1 -E 'ERROR: (AddressSanitizer|libFuzzer)|runtime error|deadly signal|uncaught' "$log") ($log)"
  fi
  printf '%-18s %8s %12s %8s %8s %s\n' "$target" "$seconds" "${runs:-?}" "${cov:-?}" "$(ls "$corpus" | wc -l)" "$finding"
done
[ "$findings" -eq 0 ] || { echo "fuzz: $findings target(s) found a failing input; see $build/findings" >&2; exit 1; }
