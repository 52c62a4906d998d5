#include "train/trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "config/config.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/seed.h"
#include "core/signals.h"
#include "core/timer.h"
#include "dist/communicator.h"
#include "train/autocast.h"
#include "train/checkpoint.h"
#include "train/distributed_adamw.h"
#include "train/precision.h"
#include "train/profile.h"
#include "train/schedule.h"
#include "train/training_state.h"

namespace engram::train {

void declare_train_options(config::Schema& schema, const std::string& section, const TrainOptions& d) {
  const std::string p = section + ".";
  schema.add_int(p + "steps", d.steps, "optimizer steps in all (a resumed run continues up to this step)", config::Range::at_least(0));
  schema.add_int(p + "micro_batch", d.micro_batch, "examples per rank per micro-step", config::Range::at_least(1));
  schema.add_int(p + "accumulation", d.accumulation, "micro-steps per optimizer step (gradient accumulation)", config::Range::at_least(1));
  schema.add_float(p + "lr", d.lr, "peak learning rate", config::Range::at_least(0));
  schema.add_string(p + "schedule", core::name_of(d.schedule), "learning-rate schedule after warm-up",
                    core::enum_choices<Schedule::Kind>());
  schema.add_int(p + "warmup_steps", d.warmup_steps, "linear warm-up steps from 0 to the peak learning rate", config::Range::at_least(0));
  schema.add_float(p + "min_lr_ratio", d.min_lr_ratio,
                   "final learning rate of linear/cosine decay, as a fraction of the peak", config::Range::between(0, 1));
  schema.add_float(p + "weight_decay", d.weight_decay, "AdamW weight decay (matrices only)", config::Range::at_least(0));
  schema.add_float(p + "beta1", d.beta1, "AdamW beta1", config::Range::below(0, 1));
  schema.add_float(p + "beta2", d.beta2, "AdamW beta2", config::Range::below(0, 1));
  schema.add_float(p + "clip_norm", d.clip_norm, "clip the global gradient norm to this; 0 = no clipping", config::Range::at_least(0));
  schema.add_string(p + "bf16", d.bf16 == Bf16::Auto ? "auto" : d.bf16 == Bf16::On ? "true" : "false",
                    "bf16 autocast for the forward pass; auto: on CUDA, and on CPUs whose bf16 matmuls reach 1.5x "
                    "float32's rate (AMX), off where bf16 is emulated (can be 20x slower)",
                    {"auto", "true", "false"});
  schema.add_int(p + "zero", d.zero,
                 "ZeRO stage: 0 every rank holds the whole AdamW state; 1 each rank keeps 1/W of it; 2 the "
                 "gradients are reduce-scattered into 1/W too (checkpoints resume at any stage and world size)",
                 config::Range::between(0, 2));
  schema.add_bool(p + "activation_checkpointing", false, "recompute decoder blocks in backward to save memory");
  schema.add_int(p + "log_every", d.log_every, "log and print every N steps", config::Range::at_least(1));
  schema.add_int(p + "profile_steps", d.profile_steps,
                 "profile rank 0's steps 4 to 3+N: a Chrome trace (chrome://tracing, Perfetto) in "
                 "<out_dir>/profile.json and a table of time per op and input shapes in profile_ops.txt; 0: none", config::Range::at_least(0));
  schema.add_int(p + "save_every", d.save_every,
                 "checkpoint every N steps (0: at the end and on SIGTERM/SIGUSR1 only)", config::Range::at_least(0));
  schema.add_int(p + "keep_checkpoints", d.keep_checkpoints, "committed checkpoints to keep", config::Range::at_least(1));
  schema.add_bool(p + "resume", d.resume, "continue from the newest checkpoint in the output directory");
}

TrainOptions train_options_from(const config::Config& c, const std::string& section) {
  const std::string p = section + ".";
  TrainOptions o;
  o.steps = c.get_int(p + "steps");
  o.micro_batch = c.get_int(p + "micro_batch");
  o.accumulation = c.get_int(p + "accumulation");
  o.lr = c.get_float(p + "lr");
  o.schedule = core::parse_enum<Schedule::Kind>(c.get_string(p + "schedule"), p + "schedule");
  o.warmup_steps = c.get_int(p + "warmup_steps");
  o.min_lr_ratio = c.get_float(p + "min_lr_ratio");
  o.weight_decay = c.get_float(p + "weight_decay");
  o.beta1 = c.get_float(p + "beta1");
  o.beta2 = c.get_float(p + "beta2");
  o.clip_norm = c.get_float(p + "clip_norm");
  o.zero = static_cast<int>(c.get_int(p + "zero"));
  const std::string& bf16 = c.get_string(p + "bf16");
  o.bf16 = bf16 == "auto" ? Bf16::Auto : bf16 == "true" ? Bf16::On : Bf16::Off;
  o.log_every = c.get_int(p + "log_every");
  o.profile_steps = c.get_int(p + "profile_steps");
  if (o.profile_steps < 0) core::fail("{}profile_steps: expected >= 0, got {}", p, o.profile_steps);
  o.save_every = c.get_int(p + "save_every");
  o.keep_checkpoints = static_cast<int>(c.get_int(p + "keep_checkpoints"));
  o.resume = c.get_bool(p + "resume");
  o.seed = static_cast<uint64_t>(c.get_int("run.seed"));
  o.bucket_bytes = static_cast<int64_t>(c.get_float("dist.bucket_mb") * (1 << 20));
  o.first_bucket_bytes = static_cast<int64_t>(c.get_float("dist.first_bucket_mb") * (1 << 20));
  if (o.bucket_bytes <= 0 || o.first_bucket_bytes <= 0) core::fail("dist.bucket_mb and dist.first_bucket_mb: expected > 0");
  if (o.steps < 1) core::fail("{}steps: expected >= 1, got {}", p, o.steps);
  if (o.micro_batch < 1) core::fail("{}micro_batch: expected >= 1, got {}", p, o.micro_batch);
  if (o.accumulation < 1) core::fail("{}accumulation: expected >= 1, got {}", p, o.accumulation);
  if (o.lr <= 0) core::fail("{}lr: expected > 0, got {}", p, o.lr);
  if (o.log_every < 1) core::fail("{}log_every: expected >= 1, got {}", p, o.log_every);
  return o;
}

namespace {

AdamWSettings adamw_settings(const TrainOptions& o) {
  AdamWSettings s;
  s.beta1 = o.beta1;
  s.beta2 = o.beta2;
  s.eps = o.eps;
  s.weight_decay = o.weight_decay;
  s.zero = o.zero;
  s.bucket_bytes = o.bucket_bytes;
  s.first_bucket_bytes = o.first_bucket_bytes;
  return s;
}

// What the steps since the last log line add up to on this rank.
struct LogWindow {
  double loss = 0, tokens = 0;
  int64_t steps = 0;
  std::map<std::string, double> figures;  // the loss function's own figures, summed per step
  core::Stopwatch clock;

  void clear() {
    loss = tokens = 0;
    figures.clear();
    steps = 0;
    clock.reset();
  }
};

// A window over all ranks: the mean loss and figures per step, and the tokens in all.
struct WindowMeans {
  double loss = 0, tokens = 0;
  std::string figures_text;  // " name mean" each, for the progress line
  nlohmann::json figures_json = nlohmann::json::object();
};

// One collective per logged step: mean loss, total tokens and the figures over the ranks.
WindowMeans window_means(const LogWindow& window, dist::Communicator& comm) {
  std::vector<double> values{window.loss, window.tokens};
  for (const auto& [name, value] : window.figures) values.push_back(value);
  at::Tensor sums = at::tensor(values, at::kDouble);
  comm.all_reduce(sums, dist::ReduceOp::Sum);
  const double per_step = 1.0 / static_cast<double>(window.steps * comm.world_size());
  WindowMeans means;
  means.loss = sums[0].item<double>() * per_step;
  means.tokens = sums[1].item<double>();
  int64_t at_value = 2;
  for (const auto& [name, value] : window.figures) {
    const double mean = sums[at_value++].item<double>() * per_step;
    means.figures_json[name] = mean;
    means.figures_text += fmt::format(" {} {:.4f}", name, mean);
  }
  return means;
}

// Rank 0's metrics.jsonl in out_dir, appended to (closed on the other ranks).
std::ofstream open_metrics(const std::string& out_dir, bool rank0) {
  std::ofstream metrics;
  if (rank0) {
    std::filesystem::create_directories(out_dir);
    metrics.open(out_dir + "/metrics.jsonl", std::ios::app);
  }
  return metrics;
}

// train.profile_steps: LibTorch's profiler over a window of steps (slows those steps down), on
// rank 0: from the fourth step of this run on, past the first steps' allocations and warm-up.
class ProfileWindow {
 public:
  ProfileWindow(bool on, int64_t first_step, int64_t steps, std::string out_dir)
      : on_(on), from_(first_step + 3), to_(from_ + steps), out_dir_(std::move(out_dir)) {}
  // Before step `step` runs: starts or ends the profile there.
  void before_step(int64_t step) {
    if (on_ && step == from_) profile_ = std::make_unique<StepProfile>();
    if (profile_ && step == to_) write(step);
  }
  // After the last step (a run that ends or stops inside the window).
  void finish(int64_t step) {
    if (profile_) write(step);
  }

 private:
  void write(int64_t step) {
    const std::string trace = profile_->write(out_dir_, step - from_);
    spdlog::info("wrote {} and profile_ops.txt beside it (steps {} to {})", trace, from_ + 1, step);
    profile_.reset();
  }
  bool on_;
  int64_t from_, to_;
  std::string out_dir_;
  std::unique_ptr<StepProfile> profile_;
};

}  // namespace

struct Trainer::State {
  TrainOptions options;
  std::vector<std::pair<std::string, at::Tensor>> parameters;
  dist::Communicator& comm;
  int64_t dataset_size;
  std::string config_yaml;
  double flops_per_token;
  std::unique_ptr<DistributedAdamW> optimizer;  // reduction, clipping and AdamW (train.zero)
  std::unique_ptr<CheckpointStore> store;
  Schedule schedule;
  bool bf16 = false;  // options.bf16 resolved for this device
  int64_t step = 0;
  int64_t examples_seen = 0;  // global data cursor
  double tokens_seen = 0;
  // The current epoch's permutation.
  int64_t cached_epoch = -1;
  std::vector<int64_t> permutation;
  struct RankState {  // Trainer::keep_rank_state
    std::function<at::Tensor()> get;
    std::function<void(const at::Tensor&)> set;
  };
  std::map<std::string, RankState> rank_state;

  State(TrainOptions o, std::vector<std::pair<std::string, at::Tensor>> params, dist::Communicator& c, int64_t n,
        std::string yaml, double fpt)
      : options(std::move(o)), parameters(std::move(params)), comm(c), dataset_size(n), config_yaml(std::move(yaml)),
        flops_per_token(fpt) {}

  int64_t example_at(int64_t global) {
    const int64_t epoch = global / dataset_size;
    if (epoch != cached_epoch) {
      permutation.resize(static_cast<size_t>(dataset_size));
      std::iota(permutation.begin(), permutation.end(), 0);
      std::mt19937_64 rng(core::derive_seed(options.seed, {0xDA7A, static_cast<uint64_t>(epoch)}));
      std::shuffle(permutation.begin(), permutation.end(), rng);
      cached_epoch = epoch;
    }
    return permutation[static_cast<size_t>(global % dataset_size)];
  }

  // This rank's examples for micro-step m of the current step.
  std::vector<int64_t> micro_batch_indices(int64_t m) {
    const int64_t per_rank = options.micro_batch * options.accumulation;
    const int64_t begin = examples_seen + comm.rank() * per_rank + m * options.micro_batch;
    std::vector<int64_t> indices;
    for (int64_t k = 0; k < options.micro_batch; ++k) indices.push_back(example_at(begin + k));
    return indices;
  }

  CheckpointData snapshot() {
    CheckpointData data;
    data.step = step;
    data.world = comm.world_size();
    data.config_yaml = config_yaml;
    data.counters["examples_seen"] = examples_seen;
    data.values["tokens_seen"] = tokens_seen;
    for (const auto& [name, p] : parameters) data.model.emplace_back(name, p);
    optimizer->save_state(data);
    data.rng = cpu_generator().get_state();
    data.data = at::full({1}, examples_seen, at::kLong);
    for (const auto& [name, state] : rank_state) data.rank_state[name] = state.get();
    return data;
  }

  // One step's micro-batches: each forward under autocast, the backward of its loss /
  // accumulation, and the gradient reduction (the buckets go out after the last). Adds the step's
  // mean loss, its tokens and figures to the window.
  void accumulate_gradients(const LossFn& loss_fn, LogWindow& window) {
    double step_loss = 0;
    int64_t step_tokens = 0;
    for (int64_t m = 0; m < options.accumulation; ++m) {
      MicroBatchLoss micro;
      {
        Bf16Autocast autocast(bf16);
        micro = loss_fn(micro_batch_indices(m));
      }
      (micro.loss / static_cast<double>(options.accumulation)).backward();
      step_loss += micro.loss.item<double>() / static_cast<double>(options.accumulation);
      step_tokens += micro.tokens;
      for (const auto& [name, value] : micro.figures)
        window.figures[name] += value / static_cast<double>(options.accumulation);
      optimizer->after_backward(m == options.accumulation - 1);
    }
    window.loss += step_loss;
    window.tokens += static_cast<double>(step_tokens);
  }

  // The AdamW step at the schedule's learning rate (returned); the step and data cursor move on.
  double optimizer_step() {
    const double lr = schedule.at(step);
    optimizer->step(lr);
    ++step;
    examples_seen += options.micro_batch * options.accumulation * comm.world_size();
    return lr;
  }

  // The window's means over the ranks into `result`, and on rank 0 into metrics.jsonl and the
  // progress line.
  void log_window(const LogWindow& window, double lr, double norm, const core::Stopwatch& run_clock,
                  std::ofstream& metrics, core::Progress& progress, TrainResult& result) {
    const WindowMeans means = window_means(window, comm);
    const double seconds = window.clock.seconds();
    const double tokens_per_s = means.tokens / std::max(seconds, 1e-9);
    const double gflops = flops_per_token * tokens_per_s / 1e9;
    tokens_seen += means.tokens;
    result.last_loss = means.loss;
    result.tokens_per_s = tokens_per_s;
    result.gflops = gflops;
    if (comm.rank() != 0) return;
    nlohmann::json line{{"step", step},          {"loss", means.loss},     {"lr", lr},
                        {"grad_norm", norm},        {"tokens_per_s", tokens_per_s}, {"gflops", gflops},
                        {"examples", examples_seen}, {"elapsed_s", run_clock.seconds()}};
    line.update(means.figures_json);
    metrics << line.dump() << '\n' << std::flush;
    progress.update(step, fmt::format("loss {:.4f}{} lr {:.2e} gnorm {:.3f} {:.0f} tok/s {:.1f} GFLOP/s",
                                      means.loss, means.figures_text, lr, norm, tokens_per_s, gflops));
  }
};

Trainer::Trainer(TrainOptions options, std::vector<std::pair<std::string, at::Tensor>> parameters,
                 dist::Communicator& comm, dist::MpiHandle mpi_comm, int64_t dataset_size, std::string config_yaml,
                 double flops_per_token)
    : s_(std::make_unique<State>(std::move(options), std::move(parameters), comm, dataset_size, std::move(config_yaml),
                                 flops_per_token)) {
  if (dataset_size < 1) core::fail("training data is empty");
  auto& o = s_->options;
  NamedTensors trainable;  // the optimizer's; frozen parameters are only checkpointed
  for (const auto& [name, p] : s_->parameters)
    if (p.requires_grad()) trainable.emplace_back(name, p);
  if (trainable.empty()) core::fail("nothing to train: no parameter requires a gradient");
  s_->bf16 = o.bf16 == Bf16::On || (o.bf16 == Bf16::Auto && bf16_pays_on(trainable.front().second.device(), comm));
  if (o.bf16 == Bf16::Auto)
    spdlog::info("bf16 auto: {}", s_->bf16 ? "on (bf16 matmuls pay on this device)"
                                            : "off (bf16 matmuls are under 1.5x float32's rate here)");
  s_->optimizer = make_distributed_adamw(comm, trainable, adamw_settings(o));
  s_->store = std::make_unique<CheckpointStore>(o.out_dir + "/checkpoints", comm, mpi_comm, o.keep_checkpoints);
  s_->schedule = Schedule{o.schedule, o.lr, o.warmup_steps, o.steps, o.min_lr_ratio};
  // Each rank's own random stream (dropout): derived from the seed, never shared between ranks.
  cpu_generator().set_current_seed(core::derive_seed(o.seed, {0x9E4, static_cast<uint64_t>(comm.rank())}));
}

Trainer::~Trainer() = default;

int64_t Trainer::step() const { return s_->step; }

int64_t Trainer::optimizer_state_values() const { return s_->optimizer->state_values(); }

void Trainer::save() { s_->store->save(s_->snapshot()); }

void Trainer::keep_rank_state(const std::string& name, std::function<at::Tensor()> get,
                              std::function<void(const at::Tensor&)> set) {
  const bool plain = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.';
  });
  if (!plain) core::fail("Trainer::keep_rank_state: '{}' is not a plain name (letters, digits, '_', '.')", name);
  s_->rank_state[name] = State::RankState{std::move(get), std::move(set)};
}

int64_t Trainer::resume() {
  auto& s = *s_;
  if (!s.options.resume) return 0;
  std::optional<CheckpointData> loaded = s.store->load_latest();
  if (!loaded) return 0;
  CheckpointData& data = *loaded;
  const std::string file = s.store->file_of(data.step);
  load_parameters(s.parameters, data, file);
  s.optimizer->load_state(data);
  s.step = data.step;
  s.examples_seen = data.counters.count("examples_seen") ? data.counters["examples_seen"] : 0;
  s.tokens_seen = data.values.count("tokens_seen") ? data.values["tokens_seen"] : 0;
  if (data.rng.defined()) {
    cpu_generator().set_state(data.rng);
    for (const auto& [name, state] : s.rank_state) {
      auto it = data.rank_state.find(name);
      if (it != data.rank_state.end())
        state.set(it->second);
      else
        spdlog::warn("{} has no saved '{}': it starts afresh", file, name);
    }
    spdlog::info("resumed from {} at step {} (examples seen {})", file, s.step, s.examples_seen);
  } else {
    // Another world size: per-rank generators cannot carry over; derive fresh ones from the step.
    cpu_generator().set_current_seed(core::derive_seed(
        s.options.seed, {0x9E4, static_cast<uint64_t>(s.comm.rank()), static_cast<uint64_t>(s.step)}));
    const int64_t old_batch = s.options.micro_batch * s.options.accumulation * data.world;
    const int64_t new_batch = s.options.micro_batch * s.options.accumulation * s.comm.world_size();
    spdlog::warn(
        "resumed from {} (saved by {} ranks) on {} ranks at step {}: the data continues from example {}, the global "
        "batch is now {} (was {}), and each rank's random generator is re-derived from (seed, rank, step)",
        file, data.world, s.comm.world_size(), s.step, s.examples_seen, new_batch, old_batch);
  }
  return s.step;
}

TrainResult Trainer::run(const LossFn& loss_fn, const std::function<void(int64_t)>& after_step) {
  auto& s = *s_;
  auto& o = s.options;
  TrainResult result;
  result.bf16 = s.bf16;
  result.first_step = s.step;
  const bool rank0 = s.comm.rank() == 0;
  std::ofstream metrics = open_metrics(o.out_dir, rank0);
  core::Progress progress("train", o.steps, rank0, 0.0, "step");
  progress.resume_from(s.step);
  core::Stopwatch run_clock;
  LogWindow window;
  ProfileWindow profile(rank0 && o.profile_steps > 0, s.step, o.profile_steps, o.out_dir);

  while (s.step < o.steps) {
    profile.before_step(s.step);
    if (stop_requested_on_any_rank(s.comm)) {
      spdlog::warn("stop signal: saving step {} and exiting", s.step);
      save();
      result.stopped = true;
      break;
    }
    s.optimizer->zero_grad();
    s.accumulate_gradients(loss_fn, window);
    const double norm = s.optimizer->clip(o.clip_norm);
    // The norm of the reduced gradients, the same on every rank: all stop together, before the
    // optimizer writes NaN into the weights (the newest checkpoint stays the last good state).
    if (!std::isfinite(norm))
      core::fail("training diverged at step {}: the gradient norm is {}; nothing of this step was applied, and "
                 "the newest checkpoint in {} is the last good state. Lower the learning rate, or look for a "
                 "micro-batch with no trained token or non-finite inputs",
                 s.step + 1, norm, o.out_dir);
    const double lr = s.optimizer_step();
    ++window.steps;
    if (s.step % o.log_every == 0 || s.step == o.steps) {
      s.log_window(window, lr, norm, run_clock, metrics, progress, result);
      window.clear();
    }
    if (after_step) after_step(s.step);
    if (o.save_every > 0 && s.step % o.save_every == 0 && s.step < o.steps) save();
  }
  profile.finish(s.step);
  if (!result.stopped) save();
  result.last_step = s.step;
  result.seconds = run_clock.seconds();
  return result;
}

}  // namespace engram::train
