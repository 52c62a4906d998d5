# shellcheck shell=bash
# The tiny world of the scripted tests (as test_cli's tiny_world_sets): a synthetic world of
# ENTITIES entities, a 400-piece tokenizer and a 1-layer LM of width 32, all under WORK; seconds
# per command. Sourced; `tiny_world_sets WORK ENTITIES` fills the array TINY_SETS with the
# --set options, and `tiny_mac_sets WORK` (after it) appends a tiny MAC writing to WORK/mac.
tiny_world_sets() {
  local work="$1" entities="$2"
  TINY_SETS=(--set "synth.entities=$entities" --set "synth.out_dir=$work/data"
             --set "tokenizer.input=$work/data/corpus.txt" --set "tokenizer.model=$work/tok.model"
             --set tokenizer.vocab_size=400 --set "pretrain.data=[$work/data/pretrain.jsonl]"
             --set model.d_model=32 --set model.n_layers=1 --set model.n_heads=2 --set model.d_ff=64
             --set train.micro_batch=4 --set train.log_every=1 --set "base.model=$work/base")
}

tiny_mac_sets() {
  local work="$1" part kv
  TINY_SETS+=(--set "mac.out_dir=$work/mac" --set "stream.train=[$work/data/train.jsonl]" --set mac.summary_tokens=2
              --set mac.aggregator.blocks=1 --set mac.aggregator.heads=2 --set mac.aggregator.head_dim=8
              --set mac.slot_hidden=16 --set mac.doc_tokens=64 --set mac.question_tokens=24 --set mac.qa_tokens=40
              --set mac.train.micro_batch=4)
  for part in amortizer question; do
    for kv in d_model=32 d_kv=8 d_ff=32 layers=1 decoder_layers=1 heads=2; do TINY_SETS+=(--set "mac.$part.$kv"); done
  done
}
