#include "eval/qa_eval.h"

#include <torch/torch.h>

#include "dist/communicator.h"
#include "dist/shard_spec.h"
#include "model/decoder.h"
#include "model/generate.h"
#include "text/tokenizer.h"

namespace engram::eval {

std::string answer_from_generation(const std::string& text) {
  std::string answer = text.substr(0, text.find('\n'));
  const auto first = answer.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return answer.substr(first, answer.find_last_not_of(" \t") - first + 1);
}

namespace {

struct Question {
  const data::Document* doc;
  const data::QA* qa;
};

// The sums of one MetricSums as a tensor row, for all_reduce.
at::Tensor as_row(const MetricSums& m) {
  return at::tensor({m.exact_match_sum, m.prefix_exact_match_sum, m.f1_sum, m.substring_accuracy_sum,
                     static_cast<double>(m.count)},
                    at::kDouble);
}
void from_row(MetricSums& m, const at::Tensor& row) {
  m.exact_match_sum = row[0].item<double>();
  m.prefix_exact_match_sum = row[1].item<double>();
  m.f1_sum = row[2].item<double>();
  m.substring_accuracy_sum = row[3].item<double>();
  m.count = static_cast<int64_t>(row[4].item<double>());
}

}  // namespace

void QaEvalResult::add(const std::string& prediction, const data::QA& qa) {
  (qa.heldout ? heldout : training_templates).add(prediction, qa.answers);
  all.add(prediction, qa.answers);
}

void QaEvalResult::reduce(dist::Communicator& comm) {
  at::Tensor sums = at::stack({as_row(training_templates), as_row(heldout), as_row(all)});
  comm.all_reduce(sums, dist::ReduceOp::Sum);
  from_row(training_templates, sums[0]);
  from_row(heldout, sums[1]);
  from_row(all, sums[2]);
}

QaEvalResult evaluate_qa(model::Decoder& decoder, const text::Tokenizer& tokenizer,
                         const std::vector<data::Document>& documents, const QaEvalOptions& options,
                         dist::Communicator& comm) {
  std::vector<Question> questions;
  for (const auto& doc : documents)
    for (const auto& qa : doc.qa) questions.push_back({&doc, &qa});
  if (options.max_questions > 0 && static_cast<int64_t>(questions.size()) > options.max_questions)
    questions.resize(static_cast<size_t>(options.max_questions));

  QaEvalResult result;
  const bool was_training = decoder->is_training();
  decoder->eval();
  torch::NoGradGuard no_grad;
  dist::RowRange mine = dist::ShardSpec(static_cast<int64_t>(questions.size()), comm.world_size()).range(comm.rank());
  model::GenerateOptions generation;
  generation.max_new_tokens = options.max_new_tokens;
  generation.eos_id = tokenizer.eos_id();
  generation.pad_id = std::max(0, tokenizer.pad_id());
  for (int64_t begin = mine.begin; begin < mine.end; begin += options.batch) {
    const int64_t end = std::min(mine.end, begin + options.batch);
    std::vector<std::vector<int32_t>> prompts;
    for (int64_t k = begin; k < end; ++k) {
      const Question& q = questions[static_cast<size_t>(k)];
      std::vector<int32_t> ids = tokenizer.encode(data::prompt_text(options.format, q.doc->text, q.qa->question));
      if (static_cast<int64_t>(ids.size()) > options.max_prompt_tokens)  // keep the question end
        ids.erase(ids.begin(), ids.end() - options.max_prompt_tokens);
      prompts.push_back(std::move(ids));
    }
    auto outputs = model::generate(decoder, prompts, generation);
    for (int64_t k = begin; k < end; ++k) {
      const Question& q = questions[static_cast<size_t>(k)];
      std::string prediction = answer_from_generation(tokenizer.decode(outputs[static_cast<size_t>(k - begin)]));
      result.add(prediction, *q.qa);
      if (comm.rank() == 0 && result.examples.size() < 5)
        result.examples.push_back(q.qa->question + " -> " + prediction + " | " + q.qa->answers.front());
    }
  }
  result.reduce(comm);
  if (was_training) decoder->train();
  return result;
}

}  // namespace engram::eval
