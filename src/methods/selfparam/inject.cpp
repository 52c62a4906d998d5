#include "methods/selfparam/inject.h"

#include <algorithm>
#include <map>
#include <random>
#include <sstream>

#include <torch/torch.h>

#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/seed.h"
#include "core/timer.h"
#include "dist/communicator.h"
#include "train/distributed_adamw.h"
#include "methods/selfparam/distill.h"
#include "methods/selfparam/resume.h"
#include "methods/selfparam/teacher_cache.h"
#include "methods/selfparam/unrelated.h"
#include "model/copy.h"
#include "text/tokenizer.h"
#include "train/training_state.h"

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
    for (auto& p : model_->named_parameters())
      if (p.value().requires_grad()) params_.push_back(p.value()), named_.emplace_back(p.key(), p.value());
  }

  const std::vector<at::Tensor>& params() const { return params_; }
  const train::NamedTensors& named() const { return named_; }

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
  train::NamedTensors named_;
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

  const std::vector<std::vector<int32_t>>& contexts() const { return contexts_; }

  // The split generator's state as bytes, and back (a resumed injection splits as the first run would).
  at::Tensor rng_state() const {
    std::ostringstream out;
    out << rng_;
    const std::string text = out.str();
    return torch::from_blob(const_cast<char*>(text.data()), {static_cast<int64_t>(text.size())}, torch::kUInt8).clone();
  }
  void set_rng_state(const at::Tensor& bytes) {
    at::Tensor b = bytes.to(torch::kUInt8).contiguous();
    std::istringstream in(std::string(reinterpret_cast<const char*>(b.data_ptr<uint8_t>()), static_cast<size_t>(b.numel())));
    in >> rng_;
  }

 private:
  const InjectionInputs& in_;
  const SelfParamOptions& o_;
  std::mt19937_64 rng_;
  std::vector<std::vector<int32_t>> contexts_;
};

// One optimizer step on `loss` (undefined: this rank had nothing; it still joins the reduction).
double optimizer_step(const at::Tensor& loss, train::DistributedAdamW& optimizer, double lr) {
  optimizer.zero_grad();
  double value = 0;
  if (loss.defined()) {
    loss.backward();
    value = loss.item<double>();
  }
  optimizer.after_backward(true);
  optimizer.step(lr);
  return value;
}

}  // namespace

std::vector<std::string> lora_targets(const SelfParamOptions& options, const model::DecoderConfig& config) {
  if (!options.lora_targets.empty()) return options.lora_targets;
  if (config.mlp == model::DecoderConfig::Mlp::SwiGlu) return {"q", "k", "v", "gate", "up", "down"};
  return {"q", "k", "v", "o", "up", "down"};
}

namespace {

// One injection's state and its loop; inject() below drives it.
class Injection {
 public:
  Injection(model::Decoder& model, const InjectionInputs& in, const SelfParamOptions& o, Objective objective,
            dist::Communicator& comm)
      : model_(model), in_(in), o_(o), objective_(objective), comm_(comm),
        build_(in, o, in.seed * 31 + static_cast<uint64_t>(comm.rank())) {
    // LibTorch seeds its CPU generator at random: seeded here, the adapters' initialisation and
    // dropout are the same in every run.
    train::cpu_generator().set_current_seed(core::derive_seed(in.seed, {0x1A7EC7, static_cast<uint64_t>(comm.rank())}));
    if (objective == Objective::Distill && !in.teacher) own_teacher_ = model::frozen_copy(model);
    teacher_ = in.teacher ? in.teacher : &own_teacher_;
    if (objective == Objective::Distill) (*teacher_)->eval();  // no dropout in the teacher (the reference keeps it)
    trainable_ = std::make_unique<TrainableParts>(model, o);
    if (comm.world_size() > 1) {  // fresh adapters are random: every rank starts from rank 0's
      torch::NoGradGuard no_grad;
      for (const auto& p : trainable_->params()) {
        at::Tensor data = p.detach();
        comm.broadcast(data, 0);
      }
    }
    train::AdamWSettings adamw;  // LibTorch's AdamW defaults, decay on every trained tensor
    adamw.beta2 = 0.999;
    adamw.weight_decay = o.weight_decay;
    adamw.decay_vectors = true;
    adamw.zero = o.zero;
    optimizer_ = train::make_distributed_adamw(comm, trainable_->named(), adamw);
    plan_epochs();
  }

  InjectionReport run() {
    core::Stopwatch clock;
    int64_t done = in_.place.checkpoints ? resume() : 0;
    if (objective_ == Objective::Distill && o_.teacher_cache) build_cache();  // after the teacher is restored
    model_->train();
    core::Progress progress(objective_ == Objective::Distill ? "inject" : "FT(S)", report_.rounds, comm_.rank() == 0, 5.0, "step");
    progress.resume_from(done);
    int64_t round = 0;
    for (const auto& items : epochs_) {
      const int64_t n = static_cast<int64_t>(items.size());
      double loss_sum = 0;
      int64_t loss_count = 0;
      for (int64_t first = 0; first < n; first += per_round(), ++round) {
        if (round < done) continue;  // before the checkpoint this run resumed from
        for (double loss : step(share(items, first))) loss_sum += loss, ++loss_count;
        progress.update(++done, fmt::format("loss {:.4g}", loss_sum / std::max<int64_t>(1, loss_count)));
        if (done < report_.rounds && checkpoint_due(done)) {
          save(done);
          if (in_.place.checkpoints->stop_requested()) return stopped(clock);
        }
      }
      report_.last_epoch_loss = loss_sum / std::max<int64_t>(1, loss_count);
    }
    trainable_->finish();
    model_->eval();
    report_.seconds = clock.seconds();
    return report_;
  }

 private:
  int64_t per_round() const { return comm_.world_size() * o_.batch; }

  // The epochs' items; FT(S) takes each sentence once per SELF-PARAM term: the same optimizer steps.
  void plan_epochs() {
    terms_ = 1 + (o_.continuation ? 1 : 0) + (o_.unrelated && in_.unrelated ? 1 : 0);
    const int64_t passes = objective_ == Objective::Distill ? o_.epochs : o_.epochs * terms_;
    for (int64_t e = 0; e < passes; ++e) {
      epochs_.push_back(epoch_items(*in_.targets, e % o_.epochs, o_.per_epoch, in_.seed));
      const int64_t n = static_cast<int64_t>(epochs_.back().size());
      report_.items += n;
      report_.rounds += (n + per_round() - 1) / per_round();
    }
  }

  // This rank's items of the round starting at `first`, wrapping at the end so every rank has some.
  std::vector<Item> share(const std::vector<Item>& items, int64_t first) const {
    const int64_t n = static_cast<int64_t>(items.size());
    std::vector<Item> mine;
    for (int64_t k = 0; k < o_.batch; ++k) mine.push_back(items[static_cast<size_t>((first + comm_.rank() * o_.batch + k) % n)]);
    return mine;
  }

  // One round: an optimizer step per term (SELF-PARAM) or one cross-entropy step (FT(S)); their losses.
  std::vector<double> step(const std::vector<Item>& mine) {
    auto examples = [&](auto make) {
      std::vector<DistillExample> out;
      for (const auto& item : mine) out.push_back(make(item));
      return out;
    };
    auto take = [&](const at::Tensor& loss) {
      ++report_.steps;
      return optimizer_step(loss, *optimizer_, o_.lr);
    };
    // The cached teacher rows of each of this round's examples (none without a cache).
    auto cached = [&](auto rows_of) {
      std::vector<TeacherRows> rows;
      if (cache_)
        for (size_t b = 0; b < mine.size(); ++b) rows.push_back(rows_of(b));
      return rows;
    };
    const auto qa = examples([&](const Item& i) { return build_.qa(i); });
    if (objective_ == Objective::CrossEntropy) return {take(sentence_cross_entropy(model_, qa, start_))};
    std::vector<double> losses;
    losses.push_back(take(distill(qa, cached([&](size_t b) { return cache_->qa({mine[b].document, mine[b].target}); }))));
    if (o_.continuation) {
      const auto cont = examples([&](const Item& i) { return build_.continuation(i); });
      losses.push_back(take(distill(cont, cached([&](size_t b) { return cache_->continuation(mine[b].document, cont[b]); }))));
    }
    if (o_.unrelated && in_.unrelated)  // term (C) is never cached: its text changes every step
      losses.push_back(take(distill(examples([&](const Item& i) { return build_.unrelated(i); }), {})));
    return losses;
  }

  // The distillation loss of `examples`: against the teacher's cached rows when given, else the
  // teacher reads them now.
  at::Tensor distill(const std::vector<DistillExample>& examples, const std::vector<TeacherRows>& cached) {
    if (!cached.empty()) return distillation_loss(cached, model_, examples, start_, o_.temperature, o_.reduction);
    return distillation_loss(*teacher_, model_, examples, start_, o_.temperature, o_.reduction);
  }

  // Terms (A) and (B)'s teacher rows for every item this rank will meet.
  void build_cache() {
    std::vector<std::pair<TeacherCache::Key, DistillExample>> qa;
    for (const auto& items : epochs_)
      for (int64_t first = 0; first < static_cast<int64_t>(items.size()); first += per_round())
        for (const Item& i : share(items, first)) qa.push_back({{i.document, i.target}, build_.qa(i)});
    const std::vector<std::vector<int32_t>> none;
    cache_ = std::make_unique<TeacherCache>(*teacher_, qa, o_.continuation ? build_.contexts() : none, start_, o_.teacher_top_k);
    report_.teacher_cache_seconds = cache_->seconds();
    report_.teacher_cache_bytes = cache_->bytes();
  }

  bool checkpoint_due(int64_t done) { return in_.place.checkpoints && in_.place.checkpoints->save_due(in_.place.job_steps_before + done); }

  void save(int64_t done) {
    train::CheckpointData data;
    data.model = model::named_weights(model_);
    // The teacher is the model as the part began: its frozen weights are the model's own, the
    // trained ones (full-rank MLP) are saved beside them.
    if (own_teacher_) {
      auto weights = own_teacher_->named_parameters();
      for (const auto& [name, p] : trainable_->named())
        if (weights.contains(name)) data.model.emplace_back("teacher." + name, weights[name]);
    }
    optimizer_->save_state(data);
    data.rng = train::cpu_generator().get_state();
    data.rank_state["split_rng"] = build_.rng_state();
    data.rank_state["unrelated_given"] = at::full({1}, in_.unrelated ? in_.unrelated->given() : 0, at::kLong);
    in_.place.checkpoints->save({in_.place.part, done, in_.place.job_steps_before + done}, std::move(data));
  }

  // The rounds done before, restored from a checkpoint inside this part (0 when there is none).
  int64_t resume() {
    const train::CheckpointData* saved = in_.place.checkpoints->inside(in_.place.part);
    if (!saved) return 0;
    train::load_parameters(model::named_weights(model_), *saved, in_.place.checkpoints->resumed_file());
    if (own_teacher_) restore_teacher(*saved);
    optimizer_->load_state(*saved);
    train::cpu_generator().set_state(saved->rng);
    build_.set_rng_state(saved->rank_state.at("split_rng"));
    if (in_.unrelated) in_.unrelated->skip_to(saved->rank_state.at("unrelated_given").item<int64_t>());
    return in_.place.checkpoints->resumed_at().step;
  }

  // The part's teacher from a checkpoint inside it (this run's copy was taken from the base weights).
  void restore_teacher(const train::CheckpointData& saved) {
    std::map<std::string, at::Tensor> tensors(saved.model.begin(), saved.model.end());
    train::NamedTensors weights;
    for (const auto& p : own_teacher_->named_parameters())
      weights.emplace_back(tensors.count("teacher." + p.key()) ? "teacher." + p.key() : p.key(), p.value());
    train::load_parameters(weights, saved, in_.place.checkpoints->resumed_file());
  }

  InjectionReport stopped(const core::Stopwatch& clock) {
    report_.stopped = true;
    report_.seconds = clock.seconds();
    return report_;
  }

  model::Decoder& model_;
  const InjectionInputs& in_;
  const SelfParamOptions& o_;
  Objective objective_;
  dist::Communicator& comm_;
  StepBuilder build_;
  model::Decoder own_teacher_{nullptr};
  model::Decoder* teacher_ = nullptr;
  std::unique_ptr<TrainableParts> trainable_;
  std::unique_ptr<train::DistributedAdamW> optimizer_;  // reduction across ranks and AdamW (selfparam.zero)
  std::unique_ptr<TeacherCache> cache_;
  const std::vector<int32_t> start_;  // engram prompts carry no BOS (distill.h)
  std::vector<std::vector<Item>> epochs_;
  int64_t terms_ = 1;
  InjectionReport report_;
};

}  // namespace

InjectionReport inject(model::Decoder& model, const InjectionInputs& in, const SelfParamOptions& o,
                       Objective objective, dist::Communicator& comm) {
  ENGRAM_CHECK(in.tokenizer && in.documents && in.targets && in.targets->per_document.size() == in.documents->size(),
               "inject: inputs incomplete");
  return Injection(model, in, o, objective, comm).run();
}

}  // namespace engram::selfparam
