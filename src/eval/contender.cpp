#include "eval/contender.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "text/tokenizer.h"

namespace engram::eval {

EvalContext::EvalContext(const config::Config& config, EvalOptions options, dist::Communicator& comm,
                         dist::MpiHandle mpi_comm)
    : config(config), options(std::move(options)), comm(comm), mpi_comm(mpi_comm) {}

model::LanguageModel& EvalContext::base() {
  if (!base_.decoder) base_ = load_base_model(options.base_model);
  return base_;
}

QaEvalResult Contender::answer_after(int64_t, const Stream&, const std::vector<StreamQuestion>&, EvalContext&) {
  throw core::InternalError("answer_after called on a contender without curves");
}

void ContenderRegistry::add(ContenderSpec spec) {
  for (const auto& s : specs_)
    if (s.key == spec.key) throw core::InternalError("contender '" + spec.key + "' registered twice");
  specs_.push_back(std::move(spec));
}

const ContenderSpec& ContenderRegistry::find(const std::string& key) const {
  for (const auto& s : specs_)
    if (s.key == key) return s;
  core::fail("eval.methods: no contender '{}' (known: {})", key, fmt::join(keys(), ", "));
}

std::vector<std::string> ContenderRegistry::keys() const {
  std::vector<std::string> out;
  for (const auto& s : specs_) out.push_back(s.key);
  return out;
}

QaEvalResult answer_with_prompts(model::Decoder& lm, const text::Tokenizer& tokenizer, const Stream& stream,
                                 const std::vector<StreamQuestion>& questions, data::PromptFormat format,
                                 int64_t max_new_tokens, dist::Communicator& comm) {
  QaEvalOptions options;
  options.format = format;
  options.max_new_tokens = max_new_tokens;
  const int64_t positions = lm->config().max_positions;
  options.max_prompt_tokens = positions > 0 ? std::min<int64_t>(512, positions) : 512;
  return evaluate_qa(lm, tokenizer, stream.question_documents(questions), options, comm);
}

}  // namespace engram::eval
