#pragma once
// Answering questions from a memory bank (specs/mac.md 5.3): question encoder -> aggregation
// over the bank (hierarchical or flat, across ranks: aggregate.h; or over the retriever's best K
// documents: retrieve.h) -> prefix -> generation with the frozen LM. Each rank reads only its
// ShardSpec share of the bank rows.
#include <cstdint>
#include <string>
#include <vector>

#include "data/document.h"
#include "eval/qa_eval.h"
#include "eval/stream.h"
#include "methods/mac/aggregate.h"
#include "methods/mac/system.h"
#include "model/generate.h"

namespace engram::config {
class Config;
}
namespace engram::dist {
class Communicator;
}

namespace engram::mac {

class BankReader;

// A question and the bank row of the document that answers it (-1: unknown): the evaluation's
// stream question, whose stream position is the bank row when the bank holds the stream.
using BankQuestion = eval::StreamQuestion;

// Which part of the bank each question sees.
enum class BankView {
  Full,         // the bank (its first `bank_rows` rows)
  GoldOnly,     // only its gold document (upper bound)
  GoldRemoved,  // everything but its gold document (must collapse to closed-book)
};

struct AnswerOptions {
  bool hierarchical = true;   // false: flat, one call over the whole bank
  int64_t group_size = 16;    // M
  Carry carry = Carry::Latent;  // what a group becomes (aggregate.h)
  int64_t top_k = 0;          // > 0: aggregate only the K best documents of the retriever (retrieve.h)
  int64_t select = 0;         // > 0: the aggregator reads only the K documents it scores best (select.h)
  double selection_temperature = 1;   // with select among the retriever's: mac.selection_temperature
  double retriever_temperature = 0.05;  // ... and mac.retriever.temperature (select_among)
  double selection_vote = 0.25;        // ... the aggregator's weight there: mac.selection_vote
  int64_t batch = 64;         // questions per step
  int64_t question_tokens = 104;
  int64_t prompt_tokens = 128;
  int64_t bank_rows = -1;     // use rows [0, bank_rows) only; -1 = all
  BankView view = BankView::Full;
  model::GenerateOptions generation;
  bool progress = true;
};

struct AnswerResult {
  eval::QaEvalResult scores;             // the same on every rank
  std::vector<std::string> predictions;  // per question, in order (every rank)
  AggregationStats stats;                // this rank's aggregator calls
  // Flat aggregation over the full bank only (else -1): the mean share of the final block's
  // attention on each question's gold document (spec check 7: far above 1 / bank rows).
  double gold_attention = -1;
  // ... and the share of questions whose gold document gets the most of it (retrieval at 1).
  double gold_top1 = -1;
  // With the retriever (top_k > 0) or selection (select > 0), full bank: how often the gold
  // document is among the retrieved or selected (gold_top1 is then how often the one read first,
  // the aggregator's choice with select, is the gold document).
  double gold_retrieved = -1;
  double seconds = 0;
};

// mac.aggregation, mac.group_size, mac.hierarchy_carries, mac.retriever.top_k, mac.select, mac.answer_batch, mac.question_tokens,
// mac.qa_tokens and decoding.* (EOS and padding of the LM's tokenizer).
AnswerOptions answer_options_from(const config::Config& config, const text::Tokenizer& lm_tokenizer);

// Collective: every rank passes the same questions.
AnswerResult answer_questions(MacSystem& system, const BankReader& bank, const std::vector<BankQuestion>& questions,
                              const AnswerOptions& options, dist::Communicator& comm);

// The LM prompt of a question ("Question: <q> Answer:").
std::string question_prompt(const std::string& question);

}  // namespace engram::mac
