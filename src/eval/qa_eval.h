#pragma once
// Question answering with a decoder: prompts built from documents, greedy (or beam) generation,
// MAC's scoring (the first reference; EM, prefix EM, token F1, substring accuracy), training and
// held-out question templates counted apart. Questions are split across ranks and the sums
// combined, so every rank returns the same result.
#include <cstdint>
#include <string>
#include <vector>

#include "data/collate.h"
#include "data/document.h"
#include "eval/metrics.h"
#include "model/decoder.h"

namespace engram::dist {
class Communicator;
}
namespace engram::text {
class Tokenizer;
}

namespace engram::eval {

struct QaEvalOptions {
  data::PromptFormat format = data::PromptFormat::ContextQuestionAnswer;
  int64_t max_questions = 0;     // 0 = all
  int64_t batch = 32;
  int64_t max_new_tokens = 12;
  int64_t max_prompt_tokens = 512;
};

struct QaEvalResult {
  MetricSums training_templates;  // questions phrased like the training data
  MetricSums heldout;             // held-out paraphrases
  MetricSums all;
  std::vector<std::string> examples;  // a few "question -> prediction | gold" lines (rank 0)

  // Scores one question (into its template group and `all`).
  void add(const std::string& prediction, const data::QA& qa);
  // Collective: every rank ends with the sums over all ranks.
  void reduce(dist::Communicator& comm);
};

// The answer part of a generated continuation: up to the first newline, trimmed.
std::string answer_from_generation(const std::string& text);

QaEvalResult evaluate_qa(model::Decoder& decoder, const text::Tokenizer& tokenizer,
                         const std::vector<data::Document>& documents, const QaEvalOptions& options,
                         dist::Communicator& comm);

}  // namespace engram::eval
