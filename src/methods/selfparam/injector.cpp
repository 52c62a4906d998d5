#include "methods/selfparam/injector.h"

#include <torch/torch.h>

#include "methods/selfparam/unrelated.h"
#include "text/tokenizer.h"

namespace engram::selfparam {

Injector::Injector(const model::LanguageModel& base, SelfParamOptions options, std::set<std::string> excluded,
                   int rank, int world)
    : base_(base), options_(std::move(options)), excluded_(std::move(excluded)) {
  if (options_.unrelated)
    unrelated_ = std::make_unique<UnrelatedText>(options_.unrelated_file, *base_.tokenizer, options_.unrelated_tokens,
                                                 rank, world);
  if (options_.targets == SelfParamOptions::Targets::Generator) {
    model::LanguageModelSource source;
    source.path = options_.generator;
    source.key = "selfparam.generator";
    source.frozen = true;
    generator_ = model::load_language_model(source);
  }
}

Injector::~Injector() = default;

std::string Injector::targets_label() const {
  if (options_.targets == SelfParamOptions::Targets::Generator) return "targets sampled by " + generator_.source;
  if (options_.targets == SelfParamOptions::Targets::World)
    return "targets: the world's training phrasings, an ablation";
  return "self-sampled targets";
}

TargetSet Injector::targets(model::Decoder& teacher, const std::vector<data::Document>& documents,
                            dist::Communicator& comm) {
  if (options_.targets == SelfParamOptions::Targets::World) return world_targets(documents, options_);
  const std::vector<std::string> texts = texts_of(documents);
  if (options_.targets == SelfParamOptions::Targets::Generator)
    return sample_targets(generator_.decoder, *generator_.tokenizer, texts, excluded_, options_, comm);
  return sample_targets(teacher, *base_.tokenizer, texts, excluded_, options_, comm);
}

InjectionReport Injector::inject(model::Decoder& model, const std::vector<std::string>& documents,
                                 const TargetSet& targets, Objective objective, dist::Communicator& comm,
                                 model::Decoder* teacher, uint64_t seed, InjectionPlace place) {
  InjectionInputs in;
  in.tokenizer = base_.tokenizer.get();
  in.documents = &documents;
  in.targets = &targets;
  in.unrelated = unrelated_.get();
  in.teacher = teacher;
  in.seed = options_.seed + seed;
  in.place = place;
  return selfparam::inject(model, in, options_, objective, comm);
}

std::vector<std::string> texts_of(const std::vector<data::Document>& documents) {
  std::vector<std::string> out;
  for (const auto& d : documents) out.push_back(d.text);
  return out;
}

TargetSet context_targets(const std::vector<std::string>& documents, const SelfParamOptions& options) {
  TargetSet set;
  for (const auto& text : documents)
    set.per_document.emplace_back(static_cast<size_t>(options.epochs * options.per_epoch), "Context: " + text);
  return set;
}

}  // namespace engram::selfparam
