#include "model/copy.h"
#include "methods/selfparam/contender.h"

#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "config/config.h"
#include "data/readers.h"
#include "dist/communicator.h"
#include "methods/selfparam/experiments.h"
#include "methods/selfparam/injector.h"
#include "methods/selfparam/options.h"

namespace engram::selfparam {
namespace {

// The targets of a stream, sampled once per process: SELF-PARAM and FT(S) train on the same
// sentences, and sampling is a large part of an injection's time.
const TargetSet& stream_targets(Injector& injector, model::Decoder& reader, const eval::Stream& stream,
                                dist::Communicator& comm) {
  static std::map<std::string, TargetSet> sampled;
  const SelfParamOptions& o = injector.options();
  const std::string key = fmt::format("{}|{}|{}|{}|{}|{}|{}|{}", stream.source, stream.size(), o.epochs, o.per_epoch, o.sample_temperature,
                                      o.seed, injector.targets_label(), o.sample_tokens);
  auto found = sampled.find(key);
  if (found == sampled.end()) found = sampled.emplace(key, injector.targets(reader, stream.documents, comm)).first;
  return found->second;
}

// The test documents after the stream's, and the base LM's locality figures on them: read and
// measured once per process (SELF-PARAM and FT(S) compare against the same). Null when there are none.
struct LocalityBase {
  eval::Stream other;
  Locality before;
};
const LocalityBase* locality_base(const eval::Stream& stream, const SelfParamOptions& o, eval::EvalContext& ctx) {
  static std::map<std::string, std::optional<LocalityBase>> measured;
  const std::string key = fmt::format("{}|{}|{}", stream.source, stream.size(), o.locality_documents);
  auto found = measured.find(key);
  if (found == measured.end()) {
    std::optional<LocalityBase> base;
    auto all = data::read_all(stream.source);
    if (o.locality_documents > 0 && static_cast<int64_t>(all.size()) > stream.size()) {
      std::vector<data::Document> others(all.begin() + stream.size(), all.end());
      base = LocalityBase{eval::make_stream(std::move(others), stream.source, o.locality_documents, 0), {}};
      base->before = measure_locality(ctx.base().decoder, ctx.base(), base->other, 0, base->other.size(),
                                      ctx.options.decoding.max_new_tokens, ctx.comm);
    }
    found = measured.emplace(key, std::move(base)).first;
  }
  return found->second ? &*found->second : nullptr;
}

class InjectionContender : public eval::Contender {
 public:
  InjectionContender(eval::EvalContext& ctx, Objective objective)
      : options_(selfparam_options_from(ctx.config)), objective_(objective) {}

  double absorb(const eval::Stream& stream, eval::EvalContext& ctx) override {
    model::LanguageModel& base = ctx.base();
    Injector injector(base, options_, questions_of(stream.documents), ctx.comm.rank(), ctx.comm.world_size());
    label_ = injector.targets_label();
    const std::vector<std::string> texts = texts_of(stream.documents);
    targets_ = stream_targets(injector, base.decoder, stream, ctx.comm);
    model_ = model::trainable_copy(base.decoder);
    report_ = injector.inject(model_, texts, targets_, objective_, ctx.comm);
    return 0.0;  // merged into the weights: no extra parameter, nothing stored per document
  }

  std::vector<eval::Row> answer(const eval::Stream& stream, const std::vector<eval::StreamQuestion>& questions,
                                eval::EvalContext& ctx) override {
    model::LanguageModel& base = ctx.base();
    eval::Row row;
    row.name = objective_ == Objective::Distill ? "SELF-PARAM (batch injection, " + label_ + ")"
                                                : "FT(S) (the same targets and steps, cross-entropy)";
    row.scores = eval::answer_with_prompts(model_, *base.tokenizer, stream, questions, data::PromptFormat::QuestionAnswer,
                                           ctx.options.decoding.max_new_tokens, ctx.comm);
    row.extras = {{"targets_sampled", static_cast<double>(targets_.sampled)},
                  {"targets_dropped_as_test_questions", static_cast<double>(targets_.dropped_test)},
                  {"optimizer_steps", static_cast<double>(report_.steps)}};
    add_locality(row, stream, ctx);
    return {row};
  }

 private:
  // Test documents after the stream's: read in context, their perplexity, the KL to the base LM.
  void add_locality(eval::Row& row, const eval::Stream& stream, eval::EvalContext& ctx) {
    const LocalityBase* base = locality_base(stream, options_, ctx);
    if (!base) return;
    const Locality after = measure_locality(model_, ctx.base(), base->other, 0, base->other.size(),
                                            ctx.options.decoding.max_new_tokens, ctx.comm);
    row.extras.insert(row.extras.end(), {{"locality_documents", static_cast<double>(base->other.size())},
                                         {"in_context_f1_before", base->before.in_context_f1},
                                         {"in_context_f1_after", after.in_context_f1},
                                         {"perplexity_before", base->before.perplexity},
                                         {"perplexity_after", after.perplexity},
                                         {"kl_to_base_after", after.kl_to_base}});
  }

  SelfParamOptions options_;
  Objective objective_;
  std::string label_;
  TargetSet targets_;
  InjectionReport report_;
  model::Decoder model_{nullptr};
};

}  // namespace

eval::ContenderSpec selfparam_contender() {
  return {"selfparam", "SELF-PARAM: the stream distilled into the model's own weights in one batch injection (selfparam.*)",
          [](eval::EvalContext& ctx) { return std::make_unique<InjectionContender>(ctx, Objective::Distill); }};
}

eval::ContenderSpec ft_s_contender() {
  return {"ft_s", "FT(S): cross-entropy on SELF-PARAM's target sentences, the same optimizer steps",
          [](eval::EvalContext& ctx) { return std::make_unique<InjectionContender>(ctx, Objective::CrossEntropy); }};
}

}  // namespace engram::selfparam
