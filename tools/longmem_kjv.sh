#!/usr/bin/env bash
# LongMem on the King James Bible (configs/longmem/kjv.yaml): the backbone and the SideNet learn
# from the Old Testament; the perplexity per segment is measured on the New Testament's books
# (backbone / SideNet without memory / LongMem / LongMem with another book's memory).
# Resumable like tools/quickstart.sh: finished steps are skipped (delete runs/kjv to start over).
#   NP=2 tools/longmem_kjv.sh [--set key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/build.sh
NP=${NP:-2}
CONFIG=configs/longmem/kjv.yaml
RUN=runs/kjv
start=$(date +%s)
step() { echo; echo "== $* ($(( $(date +%s) - start )) s)"; }
mkdir -p "$RUN/data"
if [ ! -f "$RUN/data/later.jsonl" ]; then
  step "text: bible-kjv, one document per book"
  # bible prints "Ge1:1 In the beginning ..."; the reference goes, the book starts a document.
  books() { bible -f "$1" | python3 -c '
import json, re, sys
books, order = {}, []
for line in sys.stdin:
    m = re.match(r"^([0-9]?[A-Za-z]+)[0-9]+:[0-9]+ (.*)$", line.rstrip("\n"))
    if not m: continue
    if m.group(1) not in books: books[m.group(1)] = []; order.append(m.group(1))
    books[m.group(1)].append(m.group(2))
for b in order: print(json.dumps({"id": b, "text": " ".join(books[b])}))'; }
  books "Genesis 1:1-Malachi 4:6" > "$RUN/data/earlier.jsonl"
  books "Matthew 1:1-Revelation 22:21" > "$RUN/data/later.jsonl"
  # The tokenizer's corpus: one verse a line (SentencePiece skips very long lines).
  bible -f "Genesis 1:1-Malachi 4:6" | sed -E 's/^[0-9]?[A-Za-z]+[0-9]+:[0-9]+ //' > "$RUN/data/earlier.txt"
fi
if [ ! -f "$RUN/tokenizer.model" ]; then
  step "tokenizer (earlier books)"
  build/engram tokenizer --config "$CONFIG" "$@"
fi
if [ ! -f "$RUN/base/model.h5" ]; then
  step "pretraining the backbone (earlier books)"
  launch/local.sh -np "$NP" build/engram pretrain --config "$CONFIG" "$@"
fi
if [ ! -f "$RUN/longmem/sidenet.h5" ]; then
  step "LongMem: the SideNet (earlier books)"
  launch/local.sh -np "$NP" build/engram longmem-train --config "$CONFIG" "$@"
fi
step "perplexity per segment on the later books"
launch/local.sh -np "$NP" build/engram longmem-ppl --config "$CONFIG" --text "$RUN/data/later.jsonl" "$@"
echo "longmem_kjv finished in $(( $(date +%s) - start )) s"
