#pragma once
// MAC in the shared evaluation (eval/contender.h), key "mac": absorbing the stream is memorize
// (one amortizer pass per document into a bank in eval.out_dir/bank.h5); answering reads the
// bank. Rows: MAC through the retriever (with mac.retriever.top_k, hierarchical and flat), MAC
// over the whole bank (hierarchical and flat; the flat row reports the attention share on the
// gold document), and two ablations: the gold document only (upper bound) and the gold document
// removed (must collapse to closed book). Curves: the bank's first n documents.
#include "eval/contender.h"

namespace engram::mac {

eval::ContenderSpec mac_contender();

}  // namespace engram::mac
