#!/usr/bin/env bash
# MAC (src/methods/mac/) at the quickstart sizes on CPU, randomly initialised (speed and memory do
# not depend on trained weights), random token ids. One process per measurement, so that every
# peak RSS (VmHWM, core/memory.h) is its own. JSON lines on stdout:
#   1. adaptation: MAC memorize (amortizer forward, no grad, batches of 16) vs FT(C) uniform
#      fine-tuning (one AdamW step per document, batch 1, in order) on the same 500 documents of
#      ~80 tokens, alternating batch by batch; mac_adapt_speedup.ratio = MAC docs/s / FT(C) docs/s
#      (goal >= 20). When the thread count is not 1 it runs again at 1 thread: on a loaded machine
#      FT(C)'s many small batch-1 ops suffer far more from a second thread than MAC's batches do.
#      Then the same at the reference's scales (bench_mac --scale distilgpt2 | gpt2-large): those
#      base LMs' sizes around configs/mac/*.yaml's MAC, T5-base amortizer (32 and 16 documents).
#   2. meta-training peak RSS at backprop ratio r = 1, 0.5, 0.25, bank B' = 32 documents of 256
#      tokens, 5 steps each; mac_train_memory_ratio: peak(r) / peak(1) (goal: r = 0.25 <= 0.6).
#   3. answering (question encoder + aggregation + prefix + greedy generation of 8 tokens) over
#      banks of 1k, 10k and 100k random summaries, hierarchical (M = 16) and flat: questions/s and
#      peak RSS; mac_answer_scaling: hierarchical peak at 100k / at 1k (goal <= 1.5) and flat's
#      growth. Batches of 64 questions, except hierarchical at 100k (16 questions, with a 1k run
#      at 16 to compare with) to keep the suite within a few minutes; --full runs it at 64 too.
#      Every answer run may grow its address space by at most --max-gib GiB (default 60% of
#      MemAvailable, at most 16): a run that would need more stops with "completed":false and the
#      failed allocation's size instead of pushing the machine into the OOM killer (flat at 100k
#      does; see the mac_answer line's "error"). One more hierarchical run at 10k (batch 64) uses
#      mac::reduce_memory with max_elements 2^22 instead of engram's 2^16, to show how much of the
#      peak is the bound on one batched aggregator call.
#   4. answering with the retriever (mac.retriever.top_k = 16: faiss search of the bank's keys,
#      then one aggregator call over the best 16) at 1k, 10k and 100k, batch 64; the line's
#      bank_keys_s is the one-off cost of the bank's keys; mac_answer_scaling with "top_k":16.
#   5. MAC's own selection (mac.select 1, select.h) at 1k, 10k and 100k, batch 64: the bank is
#      written to an HDF5 file first and streamed group by group (M = 16), so it is never in memory;
#      mac_answer_scaling with "aggregation":"select": peak at 100k / at 1k, goal <= 1.5 with the
#      bank counted.
#   Peaks are VmHWM since set-up, so they include the process's models and runtime (~175 MiB)
#   and, for answering, the bank itself (N x 8 x 128 float32: 3.9 MiB at 1k, 391 MiB at 100k);
#   every line also gives the peak minus the bank and the peak above set-up.
# Usage: BUILD_DIR=build tools/bench/mac.sh [--threads N] [--max-gib X] [--full]
# (threads default: all cores). Build first: cmake --build $BUILD_DIR --target bench_mac.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${BUILD_DIR:-build}"
[[ "$build" = /* ]] || build="$root/$build"
bin="$build/bench/bench_mac"
[ -x "$bin" ] || { echo "mac.sh: $bin not built (cmake --build $build --target bench_mac)" >&2; exit 2; }

threads=()
max_gib=""
full=0
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=(--threads "$2"); shift 2 ;;
    --max-gib) max_gib="$2"; shift 2 ;;
    --full) full=1; shift ;;
    -h|--help) sed -n '2,35p' "$0"; exit 0 ;;
    *) echo "mac.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
avail_kib=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
if [ -z "$max_gib" ]; then
  max_gib=$(awk -v k="$avail_kib" 'BEGIN { g = 0.6 * k / 1048576; if (g > 16) g = 16; printf "%.1f", g }')
fi
start=$(date +%s)
printf '{"bench":"mac_machine","cores":%s,"loadavg":"%s","mem_available_gib":%s,"max_gib_per_answer_run":%s}\n' \
  "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$(awk -v k="$avail_kib" 'BEGIN { printf "%.1f", k / 1048576 }')" "$max_gib"

bench() { nice -n 0 "$bin" "${threads[@]}" "$@"; }
# The value of a numeric field of a JSON line ("null" when absent or null).
field() { local v; v=$(grep -o "\"$2\":[-0-9.e+]*" <<<"$1" | head -1 | cut -d: -f2 || true); echo "${v:-null}"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "null" || b == "null" || b == 0) print "null"; else printf "%.4g", a / b }'; }

# 1. Adaptation throughput.
bench --mode adapt --docs 500 --doc-tokens 80 --batch 16 --reps 3
if [ "${threads[1]:-0}" != 1 ] && [ "$(nproc)" != 1 ]; then
  nice -n 0 "$bin" --threads 1 --mode adapt --docs 500 --doc-tokens 80 --batch 16 --reps 3 | grep -v '"mac_meta"'
fi

# 1b. Adaptation at the reference's scales (configs/mac/*.yaml): distilgpt2 (82M) and gpt2-large
# (774M) around a T5-base amortizer (223M), documents of ~128 tokens. With gpt2-large, FT(C)'s
# weights, gradients and AdamW moments and the MAC model reach a peak RSS of 18.2 GiB (3 minutes).
bench --scale distilgpt2 --mode adapt --docs 32 --doc-tokens 128 --batch 8 --reps 1
if [ "$avail_kib" -ge $((20 * 1048576)) ]; then
  bench --scale gpt2-large --mode adapt --docs 16 --doc-tokens 128 --batch 8 --reps 1
else
  printf '{"bench":"mac_adapt_speedup","scale":"gpt2-large","skipped":"needs 20 GiB available (peak RSS 18.2 GiB)"}\n'
fi

# 2. Meta-training memory, one process per ratio.
declare -A peak above
for r in 1 0.5 0.25; do
  line=$(bench --mode train --ratio "$r" --bank 32 --doc-tokens 256 --question-tokens 14 --qa-tokens 20 --steps 5)
  echo "$line"
  peak[$r]=$(field "$line" peak_rss_mib)
  above[$r]=$(field "$line" peak_above_setup_mib)
done
for r in 0.5 0.25; do
  rp=$(ratio "${peak[$r]}" "${peak[1]}")
  ra=$(ratio "${above[$r]}" "${above[1]}")
  met=$(awk -v x="$rp" 'BEGIN { print (x != "null" && x <= 0.6) ? "true" : "false" }')
  printf '{"bench":"mac_train_memory_ratio","ratio":%s,"peak_vs_r1":%s,"peak_above_setup_vs_r1":%s%s}\n' "$r" "$rp" "$ra" \
    "$([ "$r" = 0.25 ] && echo ",\"goal\":\"peak_vs_r1 <= 0.6\",\"met\":$met")"
done

# 3. Answering. answer N AGGREGATION BATCH BATCHES WARMUP [options]: prints the line, sets $line.
answer() {
  local rc=0
  line=$(bench --mode answer --docs "$1" --aggregation "$2" --group 16 --batch "$3" --batches "$4" \
         --warmup "$5" --question-tokens 14 --prompt-tokens 16 --new-tokens 8 --max-gib "$max_gib" "${@:6}") || rc=$?
  echo "$line"
  [ $rc -eq 0 ] || [ $rc -eq 3 ] || { echo "mac.sh: bench_mac --mode answer failed (rc $rc)" >&2; exit 1; }
}
declare -A apeak aminus aabove
for n in 1000 10000 100000; do
  for agg in hierarchical flat; do
    if [ "$n" = 100000 ] && [ "$agg" = hierarchical ] && [ $full -eq 0 ]; then continue; fi
    if [ "$n" = 1000 ]; then answer "$n" "$agg" 64 3 1; else answer "$n" "$agg" 64 1 0; fi
    if [ "$(field "$line" questions_per_s)" != null ]; then
      apeak[$n.$agg.64]=$(field "$line" peak_rss_mib)
      aminus[$n.$agg.64]=$(field "$line" peak_minus_bank_mib)
      aabove[$n.$agg.64]=$(field "$line" peak_above_setup_mib)
    fi
  done
done
for n in 1000 100000; do
  if [ "$n" = 1000 ]; then answer "$n" hierarchical 16 3 1; else answer "$n" hierarchical 16 1 0; fi
  if [ "$(field "$line" questions_per_s)" != null ]; then
    apeak[$n.hierarchical.16]=$(field "$line" peak_rss_mib)
    aminus[$n.hierarchical.16]=$(field "$line" peak_minus_bank_mib)
    aabove[$n.hierarchical.16]=$(field "$line" peak_above_setup_mib)
  fi
done
answer 10000 hierarchical 64 1 0 --max-elements 4194304
for n in 1000 10000 100000; do
  if [ "$n" = 1000 ]; then answer "$n" hierarchical 64 3 1 --top-k 16; else answer "$n" hierarchical 64 1 0 --top-k 16; fi
  if [ "$(field "$line" questions_per_s)" != null ]; then
    apeak[$n.retriever.64]=$(field "$line" peak_rss_mib)
    aminus[$n.retriever.64]=$(field "$line" peak_minus_bank_mib)
    aabove[$n.retriever.64]=$(field "$line" peak_above_setup_mib)
  fi
done
# 3c. MAC's own selection (mac.select 1): the bank in an HDF5 file, read group by group (M = 16),
# never held in memory; the peak ratio counts everything the process holds.
for n in 1000 10000 100000; do
  if [ "$n" = 1000 ]; then answer "$n" hierarchical 64 3 1 --select 1; else answer "$n" hierarchical 64 1 0 --select 1; fi
  if [ "$(field "$line" questions_per_s)" != null ]; then
    apeak[$n.select.64]=$(field "$line" peak_rss_mib)
    aminus[$n.select.64]=$(field "$line" peak_rss_mib)  # nothing of the bank to subtract
    aabove[$n.select.64]=$(field "$line" peak_above_setup_mib)
  fi
done
scaling() {  # AGGREGATION BATCH N: peak at N over peak at 1k, three ways
  local hi="$3.$1.$2" lo="1000.$1.$2"
  local rp ra rs
  rp=$(ratio "${apeak[$hi]:-null}" "${apeak[$lo]:-null}")
  ra=$(ratio "${aminus[$hi]:-null}" "${aminus[$lo]:-null}")
  rs=$(ratio "${aabove[$hi]:-null}" "${aabove[$lo]:-null}")
  local goal=""
  if [ "$1" = hierarchical ] && [ "$3" = 100000 ]; then
    goal=$(awk -v x="$ra" 'BEGIN { printf ",\"goal\":\"peak_minus_bank <= 1.5\",\"met\":%s", (x != "null" && x <= 1.5) ? "true" : "false" }')
  fi
  if [ "$1" = select ] && [ "$3" = 100000 ]; then  # the bank counted: it is in the file, not in memory
    goal=$(awk -v x="$rp" 'BEGIN { printf ",\"goal\":\"peak (bank counted) <= 1.5\",\"met\":%s", (x != "null" && x <= 1.5) ? "true" : "false" }')
  fi
  printf '{"bench":"mac_answer_scaling","aggregation":"%s","batch":%s,"docs":%s,"vs_docs":1000,"peak_ratio":%s,' "$1" "$2" "$3" "$rp"
  [ -n "${apeak[$hi]:-}" ] || goal="$goal,\"note\":\"no peak at $3 documents: see that mac_answer line\""
  printf '"peak_minus_bank_ratio":%s,"peak_above_setup_ratio":%s%s}\n' "$ra" "$rs" "$goal"
}
scaling hierarchical 64 10000
scaling flat 64 10000
scaling flat 64 100000
[ $full -eq 1 ] && scaling hierarchical 64 100000
scaling hierarchical 16 100000
scaling retriever 64 10000
scaling retriever 64 100000
scaling select 64 10000
scaling select 64 100000
printf '{"bench":"mac_suite","seconds":%s}\n' "$(( $(date +%s) - start ))"
