#!/usr/bin/env bash
# Text and data throughput, one thread, JSON lines on stdout:
#   - GPT-2 byte-level BPE encode MB/s (word cache cold, warm, off) and SentencePiece encode MB/s
#     (bench_tokenize; pass --gpt2 DIR for a real vocab.json + merges.txt, --spm MODEL for a model);
#   - native JSONL -> Documents MB/s (bench_read_jsonl, on a generated ~50 MB file).
# Goal (issue: text and data): >= 5 MB/s per core for BPE encode; reading must not be a bottleneck.
# Usage: BUILD_DIR=build tools/bench/text_io.sh [bench_tokenize options]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${BUILD_DIR:-build}"
[[ "$build" = /* ]] || build="$root/$build"
for b in bench_tokenize bench_read_jsonl; do
  [ -x "$build/bench/$b" ] || { echo "text_io.sh: $build/bench/$b not built (tools/build.sh)" >&2; exit 2; }
done
"$build/bench/bench_tokenize" "$@"
"$build/bench/bench_read_jsonl" --repeats 3
