#pragma once
// LongMem's measurements (specs/longmem.md 5, issue 21):
//   - beyond-window recall: a long document's facts come first, then filler; its questions are
//     asked at the end, where the window (the last seq_len tokens) no longer holds the facts. The
//     backbone answers from the window alone; LongMem from the window and a memory holding the
//     document's tokens before the window. The hit rate is the share of the chunks retrieved at
//     the first answer position (every head's) that lie in the document's fact part (its text up
//     to the last sentence naming an answer).
//   - segment-streamed perplexity: each document is read in segments of seq_len tokens; per
//     segment index, the perplexity of the backbone (the segment alone), the SideNet with its
//     memory path off, LongMem (memory of the document's earlier segments) and LongMem reading
//     another document's memory (the next document's segments, written before; no writes of its
//     own): the control that the memory helps by what it holds.
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "data/document.h"
#include "eval/qa_eval.h"

namespace engram::dist {
class Communicator;
}
namespace engram::text {
class Tokenizer;
}

namespace engram::longmem {

class LongMem;

// Greedy answer to `prompt` (token ids ending in "Answer:"): the backbone's (with_memory false) or
// LongMem's, reading the memory without writing; the text up to the first newline. The first
// step's retrieved chunk ids [H, chunks] go to `first_chunks` when asked (undefined: nothing read).
std::string greedy_answer(LongMem& system, const text::Tokenizer& tokenizer, std::vector<int32_t> prompt,
                          int64_t max_new_tokens, bool with_memory, at::Tensor* first_chunks = nullptr);

struct RecallReport {
  eval::QaEvalResult backbone, longmem;
  double hit_rate = 0;          // share of retrieved chunks from the fact part
  std::vector<double> head_hit_rates;  // the same per head of the memory layer
  int64_t documents = 0;
  double memory_tokens = 0;     // mean tokens the memory held when the questions were asked
};

// Documents are split across ranks (each rank its own memory); every rank returns the totals.
RecallReport beyond_window_recall(LongMem& system, const text::Tokenizer& tokenizer,
                                  const std::vector<data::Document>& documents, int64_t seq_len,
                                  int64_t max_new_tokens, dist::Communicator& comm);

struct PerplexityRow {
  int64_t segment = 0;  // index within the documents
  int64_t tokens = 0;   // predicted tokens at this index, over all documents
  double nll[4] = {0, 0, 0, 0};  // summed: backbone, SideNet without memory, LongMem, wrong memory
  double perplexity(int reader) const;
};
inline const char* const kPerplexityReaders[4] = {"backbone", "sidenet_no_memory", "longmem", "longmem_wrong_memory"};

// `documents`: token streams of at least two segments + 1 tokens (shorter ones are skipped; at
// least two documents for the wrong-memory control). Split across ranks; totals on every rank.
std::vector<PerplexityRow> segment_perplexity(LongMem& system, const std::vector<std::vector<int32_t>>& documents,
                                              int64_t seq_len, dist::Communicator& comm);

}  // namespace engram::longmem
