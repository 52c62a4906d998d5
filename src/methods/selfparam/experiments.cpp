#include "model/copy.h"
#include "methods/selfparam/experiments.h"

#include <cmath>

#include <fmt/format.h>
#include <torch/torch.h>

#include "core/log.h"
#include "core/progress.h"
#include "dist/communicator.h"
#include "dist/local_communicator.h"
#include "eval/contender.h"
#include "eval/scores_json.h"
#include "methods/selfparam/distill.h"
#include "text/tokenizer.h"

namespace engram::selfparam {
namespace {

using eval::QaEvalResult;

QaEvalResult closed_book(model::Decoder& m, ExperimentContext& ctx, int64_t first, int64_t count,
                         dist::Communicator& comm) {
  return eval::answer_with_prompts(m, *ctx.base.tokenizer, ctx.stream, ctx.stream.questions_about(first, count),
                                   data::PromptFormat::QuestionAnswer, ctx.max_new_tokens, comm);
}

QaEvalResult in_context(ExperimentContext& ctx, int64_t first, int64_t count) {
  return eval::answer_with_prompts(ctx.base.decoder, *ctx.base.tokenizer, ctx.stream, ctx.stream.questions_about(first, count),
                                   data::PromptFormat::ContextQuestionAnswer, ctx.max_new_tokens, ctx.comm);
}

void merge_into(QaEvalResult& total, const QaEvalResult& part) {
  total.all.merge(part.all);
  total.heldout.merge(part.heldout);
  total.training_templates.merge(part.training_templates);
  if (total.examples.size() < 5)
    for (const auto& e : part.examples) total.examples.push_back(e);
}

nlohmann::json targets_json(const TargetSet& t) {
  return {{"sampled", t.sampled}, {"dropped_test_questions", t.dropped_test}, {"short_documents", t.short_documents},
          {"empty_documents", t.empty_documents}};
}

// sums[key] += value for each count of `counts`.
void add_counts(nlohmann::json& sums, const nlohmann::json& counts) {
  for (const auto& [key, value] : counts.items()) {
    const int64_t sum = sums.value(key, int64_t{0}) + value.get<int64_t>();
    sums[key] = sum;
  }
}

// One single injection of document d on this rank alone: SELF-PARAM, FT(S) and FT(C) from the
// base LM with the same targets, each answering the document's questions.
void single_document(ExperimentContext& ctx, int64_t d, std::map<std::string, QaEvalResult>& rows,
                     nlohmann::json& target_counts, dist::Communicator& local) {
  const std::vector<data::Document> document = documents_of(ctx.stream, d, 1);
  const std::vector<std::string> text = texts_of(document);
  TargetSet targets = ctx.injector.targets(ctx.base.decoder, document, local);
  add_counts(target_counts, targets_json(targets));
  const TargetSet contexts = context_targets(text, ctx.injector.options());
  const std::pair<const char*, std::pair<const TargetSet*, Objective>> runs[] = {
      {"SELF-PARAM", {&targets, Objective::Distill}},
      {"FT(S)", {&targets, Objective::CrossEntropy}},
      {"FT(C)", {&contexts, Objective::CrossEntropy}}};
  for (const auto& [name, run] : runs) {
    model::Decoder m = model::trainable_copy(ctx.base.decoder);
    ctx.injector.inject(m, text, *run.first, run.second, local, nullptr, static_cast<uint64_t>(d));
    merge_into(rows[name], closed_book(m, ctx, d, 1, local));
  }
}

nlohmann::json rows_json(const std::map<std::string, QaEvalResult>& rows) {
  nlohmann::json out;
  for (const auto& [name, r] : rows) out[name] = eval::scores_json(r);
  return out;
}

// Token-mean negative log-likelihood and KL(base || model) of `model` on `texts` (this rank's share).
std::pair<double, double> text_fit(model::Decoder& m, model::Decoder& base, const text::Tokenizer& tok,
                                   const std::vector<std::string>& texts, dist::Communicator& comm) {
  torch::NoGradGuard no_grad;
  double nll = 0, kl = 0, tokens = 0;
  for (size_t i = static_cast<size_t>(comm.rank()); i < texts.size(); i += static_cast<size_t>(comm.world_size())) {
    auto ids32 = tok.encode(texts[i]);
    if (ids32.size() < 2) continue;
    const int64_t limit = std::min<int64_t>(static_cast<int64_t>(ids32.size()), m->config().max_positions);
    std::vector<int64_t> ids(ids32.begin(), ids32.begin() + limit);
    at::Tensor input = torch::tensor(ids, torch::kLong).unsqueeze(0);
    at::Tensor logits = m->forward(input).logits.squeeze(0).narrow(0, 0, limit - 1);
    at::Tensor ref = base->forward(input).logits.squeeze(0).narrow(0, 0, limit - 1);
    at::Tensor next = input.squeeze(0).narrow(0, 1, limit - 1);
    nll += torch::nn::functional::cross_entropy(logits, next, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum)).item<double>();
    kl += distillation_kl(ref, logits, 1.0, SelfParamOptions::Reduction::Token).item<double>() * static_cast<double>(limit - 1);
    tokens += static_cast<double>(limit - 1);
  }
  at::Tensor sums = torch::tensor({nll, kl, tokens}, torch::kDouble);
  comm.all_reduce(sums);
  const double n = std::max(1.0, sums[2].item<double>());
  return {sums[0].item<double>() / n, sums[1].item<double>() / n};
}

}  // namespace

std::vector<data::Document> documents_of(const eval::Stream& stream, int64_t first, int64_t count) {
  const auto begin = stream.documents.begin() + std::min(first, stream.size());
  return {begin, stream.documents.begin() + std::min(first + count, stream.size())};
}

nlohmann::json Locality::to_json() const {
  return {{"in_context_f1", in_context_f1}, {"in_context_f1_heldout", in_context_f1_heldout},
          {"perplexity", perplexity}, {"kl_to_base", kl_to_base}};
}

Locality measure_locality(model::Decoder& model, model::LanguageModel& base, const eval::Stream& stream,
                          int64_t first, int64_t count, int64_t max_new_tokens, dist::Communicator& comm) {
  Locality l;
  QaEvalResult read = eval::answer_with_prompts(model, *base.tokenizer, stream, stream.questions_about(first, count),
                                                data::PromptFormat::ContextQuestionAnswer, max_new_tokens, comm);
  l.in_context_f1 = read.all.f1_mean();
  l.in_context_f1_heldout = read.heldout.f1_mean();
  auto [nll, kl] = text_fit(model, base.decoder, *base.tokenizer, texts_of(documents_of(stream, first, count)), comm);
  l.perplexity = std::exp(nll);
  l.kl_to_base = kl;
  return l;
}

nlohmann::json run_single(ExperimentContext& ctx, int64_t documents) {
  documents = std::min(documents, ctx.stream.size());
  auto local = dist::make_local_communicator(ctx.comm.timeout());
  std::map<std::string, QaEvalResult> rows;
  nlohmann::json counts = nlohmann::json::object();
  core::Progress progress("single injections", documents, ctx.comm.rank() == 0, 5.0, "doc");
  for (int64_t d = ctx.comm.rank(); d < documents; d += ctx.comm.world_size()) {
    single_document(ctx, d, rows, counts, *local);
    progress.update(std::min(documents, d + ctx.comm.world_size()));
  }
  for (auto name : {"SELF-PARAM", "FT(S)", "FT(C)"}) rows[name].reduce(ctx.comm);
  rows["closed book"] = closed_book(ctx.base.decoder, ctx, 0, documents, ctx.comm);
  rows["context in prompt"] = in_context(ctx, 0, documents);
  nlohmann::json totals = nlohmann::json::object();
  for (const auto& bytes : ctx.comm.all_gather_bytes(counts.dump())) add_counts(totals, nlohmann::json::parse(bytes));
  return {{"documents", documents}, {"targets", totals}, {"rows", rows_json(rows)}};
}

nlohmann::json run_batch(ExperimentContext& ctx, int64_t documents, int64_t locality_documents) {
  documents = std::min(documents, ctx.stream.size());
  const std::vector<data::Document> injected = documents_of(ctx.stream, 0, documents);
  const std::vector<std::string> texts = texts_of(injected);
  TargetSet targets = ctx.injector.targets(ctx.base.decoder, injected, ctx.comm);
  std::map<std::string, QaEvalResult> rows;
  nlohmann::json locality;
  const int64_t other = std::min(locality_documents, ctx.stream.size() - documents);
  locality["documents"] = other;
  if (other > 0)
    locality["before"] = measure_locality(ctx.base.decoder, ctx.base, ctx.stream, documents, other, ctx.max_new_tokens, ctx.comm).to_json();
  nlohmann::json timing;
  for (auto [name, objective] : {std::pair{"SELF-PARAM", Objective::Distill}, std::pair{"FT(S)", Objective::CrossEntropy}}) {
    model::Decoder m = model::trainable_copy(ctx.base.decoder);
    InjectionReport report = ctx.injector.inject(m, texts, targets, objective, ctx.comm);
    rows[name] = closed_book(m, ctx, 0, documents, ctx.comm);
    timing[name] = {{"seconds", report.seconds}, {"steps", report.steps}, {"items", report.items},
                    {"seconds_per_document", report.seconds / static_cast<double>(documents)}};
    if (other > 0)
      locality[std::string("after ") + name] = measure_locality(m, ctx.base, ctx.stream, documents, other, ctx.max_new_tokens, ctx.comm).to_json();
  }
  rows["closed book"] = closed_book(ctx.base.decoder, ctx, 0, documents, ctx.comm);
  rows["context in prompt"] = in_context(ctx, 0, documents);
  return {{"documents", documents}, {"targets", targets_json(targets)}, {"rows", rows_json(rows)},
          {"timing", timing}, {"locality", locality}};
}

nlohmann::json run_sequential(ExperimentContext& ctx, int64_t documents) {
  documents = std::min(documents, ctx.stream.size());
  const SelfParamOptions& o = ctx.injector.options();
  model::Decoder m = model::trainable_copy(ctx.base.decoder);
  const std::vector<at::Tensor> base_weights = model::weights_of(ctx.base.decoder);
  nlohmann::json f1 = nlohmann::json::object(), acc = nlohmann::json::object(), counts = nlohmann::json::object();
  auto evaluate_all = [&](int64_t i) {
    for (int64_t j = 0; j < documents; ++j) {
      QaEvalResult r = closed_book(m, ctx, j, 1, ctx.comm);
      f1[fmt::format("{}-{}", i, j)] = r.heldout.count ? r.heldout.f1_mean() : r.all.f1_mean();
      acc[fmt::format("{}-{}", i, j)] = r.heldout.count ? r.heldout.substring_accuracy_mean() : r.all.substring_accuracy_mean();
    }
  };
  core::Progress progress("sequential injections", documents, ctx.comm.rank() == 0, 5.0, "doc");
  evaluate_all(0);
  for (int64_t i = 0; i < documents; ++i) {
    const std::vector<data::Document> document = documents_of(ctx.stream, i, 1);
    const std::vector<std::string> text = texts_of(document);
    TargetSet targets = ctx.injector.targets(m, document, ctx.comm);  // the current model reads the document
    add_counts(counts, targets_json(targets));
    if (o.adapter == SelfParamOptions::Adapter::Reset) {
      // The released code: the teacher keeps the previous adapter, the student starts again from
      // the base weights with a fresh one.
      model::Decoder teacher = model::frozen_copy(m);
      model::load_weights(m, base_weights);
      ctx.injector.inject(m, text, targets, Objective::Distill, ctx.comm, &teacher, static_cast<uint64_t>(i));
    } else {
      ctx.injector.inject(m, text, targets, Objective::Distill, ctx.comm, nullptr, static_cast<uint64_t>(i));
    }
    evaluate_all(i + 1);
    progress.update(i + 1);
  }
  const double efficacy = f1["1-0"].get<double>(), retained = f1[fmt::format("{}-0", documents)].get<double>();
  return {{"documents", documents}, {"f1", f1}, {"acc", acc}, {"targets", counts},
          {"first_document", {{"after_own_injection", efficacy}, {"after_all", retained},
                              {"retention", efficacy > 0 ? retained / efficacy : 0.0}}}};
}

}  // namespace engram::selfparam
