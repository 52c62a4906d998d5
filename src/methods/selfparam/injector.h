#pragma once
// What every SELF-PARAM run shares around one base LM: its options, the target-sentence generator
// (the teacher itself, or selfparam.generator), term (C)'s unrelated text, and the questions no
// target may ask. The single, batch and sequential experiments, `engram inject` and the
// contenders of `engram eval` all inject through one Injector.
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "methods/selfparam/inject.h"
#include "methods/selfparam/options.h"
#include "methods/selfparam/targets.h"
#include "model/language_model.h"

namespace engram::selfparam {

class UnrelatedText;

class Injector {
 public:
  // `base`: the model injections start from (its tokenizer reads everything). `excluded`:
  // normalised questions no target may ask (the evaluated ones). `rank`/`world`: this process's
  // share of term (C)'s text.
  Injector(const model::LanguageModel& base, SelfParamOptions options, std::set<std::string> excluded, int rank,
           int world);
  ~Injector();

  const SelfParamOptions& options() const { return options_; }
  const text::Tokenizer& tokenizer() const { return *base_.tokenizer; }
  // "self-sampled" or "sampled by <generator>": how rows name their targets.
  std::string targets_label() const;
  // Term (C)'s text reader (null when term (C) is off): its cursor goes into checkpoints.
  UnrelatedText* unrelated_text() { return unrelated_.get(); }

  // E x K targets per document, read by `teacher` (Targets::Self) or the generator, or the
  // documents' training-phrased questions (Targets::World). Collective.
  TargetSet targets(model::Decoder& teacher, const std::vector<data::Document>& documents, dist::Communicator& comm);
  // Injects `documents` into `model` with `targets` (collective over `comm`).
  InjectionReport inject(model::Decoder& model, const std::vector<std::string>& documents, const TargetSet& targets,
                         Objective objective, dist::Communicator& comm, model::Decoder* teacher = nullptr,
                         uint64_t seed = 0, InjectionPlace place = {});

 private:
  const model::LanguageModel& base_;
  SelfParamOptions options_;
  std::set<std::string> excluded_;
  std::unique_ptr<UnrelatedText> unrelated_;
  model::LanguageModel generator_;  // Targets::Generator
};

// FT(C)'s targets: E x K copies of each document's own "Context: <text>" (the same steps as FT(S)).
TargetSet context_targets(const std::vector<std::string>& documents, const SelfParamOptions& options);
// The documents' texts.
std::vector<std::string> texts_of(const std::vector<data::Document>& documents);

}  // namespace engram::selfparam
