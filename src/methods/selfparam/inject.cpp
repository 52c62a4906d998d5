#include "methods/selfparam/inject.h"

#include <algorithm>
#include <random>

#include <torch/torch.h>

#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/timer.h"
#include "dist/communicator.h"
#include "dist/grad_reducer.h"
#include "methods/selfparam/distill.h"
#include "methods/selfparam/unrelated.h"
#include "text/tokenizer.h"

namespace engram::selfparam {
namespace {

// What the injection trains, set up on entry and folded back into the weights by finish().
class TrainableParts {
 public:
  TrainableParts(model::Decoder& model, const SelfParamOptions& o) : model_(model), lora_(o.update == SelfParamOptions::Update::Lora) {
    for (auto& p : model_->named_parameters()) flags_.emplace_back(p.key(), p.value().requires_grad());
    if (lora_) {
      model_->add_lora(lora_targets(o, model_->config()), o.lora_rank, o.lora_alpha, o.lora_dropout);
    } else {  // full rank, MLP weights only (the reference's use_lora=False)
      for (auto& p : model_->named_parameters()) p.value().set_requires_grad(p.key().find(".mlp.") != std::string::npos);
    }
    for (auto& p : model_->parameters())
      if (p.requires_grad()) params_.push_back(p);
  }

  const std::vector<at::Tensor>& params() const { return params_; }

  // LoRA merged into the weights and removed; every flag as before.
  void finish() {
    if (lora_) {
      model_->merge_lora();
      model_->remove_lora();
    }
    auto named = model_->named_parameters();
    for (const auto& [name, flag] : flags_) named[name].set_requires_grad(flag);
  }

 private:
  model::Decoder& model_;
  bool lora_;
  std::vector<std::pair<std::string, bool>> flags_;
  std::vector<at::Tensor> params_;
};

struct Item {
  size_t document;
  size_t target;  // index into the document's targets
};

// Epoch e's items: each document's targets [e K, (e + 1) K), shuffled across documents. The same
// list on every rank (the same seed).
std::vector<Item> epoch_items(const TargetSet& targets, int64_t epoch, int64_t per_epoch, uint64_t seed) {
  std::vector<Item> items;
  for (size_t d = 0; d < targets.per_document.size(); ++d) {
    const auto& list = targets.per_document[d];
    for (int64_t k = 0; k < per_epoch && !list.empty(); ++k)
      items.push_back({d, static_cast<size_t>((epoch * per_epoch + k) % static_cast<int64_t>(list.size()))});
  }
  std::mt19937_64 rng(seed + static_cast<uint64_t>(epoch) * 0x9E3779B97F4A7C15ULL);
  std::shuffle(items.begin(), items.end(), rng);
  return items;
}

// The per-step work of one rank: its share of the items, tokenized into the three terms' examples.
class StepBuilder {
 public:
  StepBuilder(const InjectionInputs& in, const SelfParamOptions& o, uint64_t seed)
      : in_(in), o_(o), rng_(seed) {
    for (const auto& text : *in.documents) contexts_.push_back(in.tokenizer->encode("Context: " + text));
  }

  DistillExample qa(const Item& item) const {
    return {contexts_[item.document], encode_target(*in_.tokenizer, in_.targets->per_document[item.document][item.target])};
  }

  // (B): the teacher reads the document up to a random r in [1, L - 2], the student continues from r.
  DistillExample continuation(const Item& item) {
    const auto& x = contexts_[item.document];
    if (x.size() < 3) return {};
    std::uniform_int_distribution<size_t> split(1, x.size() - 2);
    const size_t r = split(rng_);
    return {std::vector<int32_t>(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(r)),
            std::vector<int32_t>(x.begin() + static_cast<std::ptrdiff_t>(r), x.end())};
  }

  // (C): unrelated text; the teacher also reads the document first in mode `base`.
  DistillExample unrelated(const Item& item) {
    DistillExample e;
    e.target = in_.unrelated->next();
    if (o_.unrelated_teacher == SelfParamOptions::UnrelatedTeacher::Base) e.context = contexts_[item.document];
    return e;
  }

 private:
  const InjectionInputs& in_;
  const SelfParamOptions& o_;
  std::mt19937_64 rng_;
  std::vector<std::vector<int32_t>> contexts_;
};

// One optimizer step on `loss` (undefined: this rank had nothing; it still joins the reduction).
double optimizer_step(const at::Tensor& loss, const std::vector<at::Tensor>& params, torch::optim::AdamW& optimizer,
                      dist::GradReducer* reducer) {
  // Zeroed in place: Optimizer::zero_grad detaches, which the GradReducer's bucket views refuse.
  for (const auto& p : params)
    if (p.grad().defined()) const_cast<at::Tensor&>(p).mutable_grad().zero_();
  double value = 0;
  if (loss.defined()) {
    loss.backward();
    value = loss.item<double>();
  }
  if (reducer) reducer->after_backward();
  optimizer.step();
  return value;
}

}  // namespace

std::vector<std::string> lora_targets(const SelfParamOptions& options, const model::DecoderConfig& config) {
  if (!options.lora_targets.empty()) return options.lora_targets;
  if (config.mlp == model::DecoderConfig::Mlp::SwiGlu) return {"q", "k", "v", "gate", "up", "down"};
  return {"q", "k", "v", "o", "up", "down"};
}

model::Decoder frozen_copy(const model::Decoder& source) {
  model::Decoder copy(source->config());
  torch::NoGradGuard no_grad;
  auto weights = source->named_parameters();
  for (auto& p : copy->named_parameters()) {
    p.value().copy_(weights[p.key()]);
    p.value().set_requires_grad(false);
  }
  auto buffers = source->named_buffers();
  for (auto& b : copy->named_buffers()) b.value().copy_(buffers[b.key()]);
  copy->eval();
  return copy;
}

InjectionReport inject(model::Decoder& model, const InjectionInputs& in, const SelfParamOptions& o,
                       Objective objective, dist::Communicator& comm) {
  ENGRAM_CHECK(in.tokenizer && in.documents && in.targets && in.targets->per_document.size() == in.documents->size(),
               "inject: inputs incomplete");
  core::Stopwatch clock;
  model::Decoder own_teacher{nullptr};
  if (objective == Objective::Distill && !in.teacher) own_teacher = frozen_copy(model);
  model::Decoder* teacher = in.teacher ? in.teacher : &own_teacher;
  if (objective == Objective::Distill) (*teacher)->eval();  // no dropout in the teacher (the reference keeps it)

  TrainableParts trainable(model, o);
  if (comm.world_size() > 1) {  // fresh adapters are random: every rank starts from rank 0's
    torch::NoGradGuard no_grad;
    for (const auto& p : trainable.params()) {
      at::Tensor data = p.detach();
      comm.broadcast(data, 0);
    }
  }
  torch::optim::AdamW optimizer(trainable.params(), torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay));
  std::unique_ptr<dist::GradReducer> reducer;
  if (comm.world_size() > 1) reducer = std::make_unique<dist::GradReducer>(comm, trainable.params());
  model->train();

  const std::vector<int32_t> start;  // engram prompts carry no BOS (distill.h)
  StepBuilder build(in, o, in.seed * 31 + static_cast<uint64_t>(comm.rank()));
  const int64_t terms = 1 + (o.continuation ? 1 : 0) + (o.unrelated && in.unrelated ? 1 : 0);
  // FT(S) takes each sentence once per SELF-PARAM term: the same number of optimizer steps.
  const int64_t passes = objective == Objective::Distill ? o.epochs : o.epochs * terms;
  const int64_t world = comm.world_size(), per_step = world * o.batch;

  InjectionReport report;
  std::vector<std::vector<Item>> epochs;
  int64_t total_steps = 0;
  for (int64_t e = 0; e < passes; ++e) {
    epochs.push_back(epoch_items(*in.targets, e % o.epochs, o.per_epoch, in.seed));
    report.items += static_cast<int64_t>(epochs.back().size());
    total_steps += (static_cast<int64_t>(epochs.back().size()) + per_step - 1) / per_step;
  }
  core::Progress progress(objective == Objective::Distill ? "inject" : "FT(S)", total_steps, comm.rank() == 0, 5.0, "step");
  int64_t done = 0;
  for (const auto& items : epochs) {
    const int64_t n = static_cast<int64_t>(items.size());
    double loss_sum = 0;
    int64_t loss_count = 0;
    for (int64_t first = 0; first < n; first += per_step) {
      std::vector<Item> mine;  // this rank's share, wrapping at the end so every rank has one
      for (int64_t k = 0; k < o.batch; ++k) mine.push_back(items[static_cast<size_t>((first + comm.rank() * o.batch + k) % n)]);
      auto examples = [&](auto make) {
        std::vector<DistillExample> out;
        for (const auto& item : mine) out.push_back(make(item));
        return out;
      };
      if (objective == Objective::CrossEntropy) {
        loss_sum += optimizer_step(sentence_cross_entropy(model, examples([&](const Item& i) { return build.qa(i); }), start),
                                   trainable.params(), optimizer, reducer.get());
        ++loss_count;
      } else {
        auto distill = [&](const std::vector<DistillExample>& ex) {
          loss_sum += optimizer_step(distillation_loss(*teacher, model, ex, start, o.temperature, o.reduction),
                                     trainable.params(), optimizer, reducer.get());
          ++loss_count;
        };
        distill(examples([&](const Item& i) { return build.qa(i); }));
        if (o.continuation) distill(examples([&](const Item& i) { return build.continuation(i); }));
        if (o.unrelated && in.unrelated) distill(examples([&](const Item& i) { return build.unrelated(i); }));
      }
      report.steps += objective == Objective::Distill ? terms : 1;
      progress.update(++done, fmt::format("loss {:.4g}", loss_sum / std::max<int64_t>(1, loss_count)));
    }
    report.last_epoch_loss = loss_sum / std::max<int64_t>(1, loss_count);
  }
  trainable.finish();
  model->eval();
  report.seconds = clock.seconds();
  return report;
}

}  // namespace engram::selfparam
