#pragma once
// The one training loop every training command uses (pretraining, MAC meta-training, LongMem,
// SELF-PARAM distillation): the caller supplies the loss of a micro-batch; the trainer does the
// rest.
//
// One optimizer step:
//   for each of `accumulation` micro-steps: loss(indices of this rank's micro-batch) / accumulation,
//       backward; gradients averaged across ranks (GradReducer) after the last micro-step only;
//   clip the global gradient norm; learning rate from the schedule; AdamW step (weight decay on
//   matrices only, not on biases, norms and 1-D parameters). Reduction, clipping and the step are
//   the DistributedAdamW's: replicated, or sharded across ranks (train.zero 1, 2).
// Data order: one permutation of the dataset per epoch from (seed, epoch); the job walks it as one
// global stream, each step taking micro_batch x accumulation x world examples, rank r its own
// slice. The cursor is the count of examples seen, so resuming at another world size continues
// from the same example.
// Checkpoints (checkpoint.h) every save_every steps, at the end, and when SIGTERM/SIGUSR1 arrives
// on any rank (ranks agree at the step boundary, save that step, and return stopped = true).
// Resume restores parameters, optimizer state, counters, the data cursor and each rank's random
// generator: at the same world size the run continues bit-exactly.
// Rank 0 appends one JSON line per logged step to <out_dir>/metrics.jsonl and prints a progress
// line: step, loss, lr, grad norm, tokens/s, GFLOP/s (6 x parameters x tokens / time), ETA.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "dist/mpi_handle.h"
#include "train/schedule.h"

namespace engram::config {
class Config;
class Schema;
}
namespace engram::dist {
class Communicator;
}

namespace engram::train {

// bf16 autocast of the forward passes: off, on, or where it pays (train/precision.h).
enum class Bf16 { Off, On, Auto };

struct TrainOptions {
  int64_t steps = 1000;
  int64_t micro_batch = 16;
  int64_t accumulation = 1;
  double lr = 1e-3;
  Schedule::Kind schedule = Schedule::Kind::Cosine;
  int64_t warmup_steps = 50;
  double min_lr_ratio = 0.1;
  double weight_decay = 0.01;
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double clip_norm = 1.0;  // 0: no clipping (the norm is still logged)
  int zero = 0;            // ZeRO stage (train/distributed_adamw.h)
  Bf16 bf16 = Bf16::Off;   // bf16 autocast of the forward pass
  int64_t log_every = 10;
  int64_t profile_steps = 0;  // Chrome trace of this many steps on rank 0 (out_dir/profile.json)
  int64_t save_every = 0;  // 0: only at the end and on a stop signal
  int keep_checkpoints = 2;
  std::string out_dir = "runs/quickstart/train";
  uint64_t seed = 1234;
  bool resume = true;      // continue from the newest checkpoint in out_dir/checkpoints
  int64_t bucket_bytes = 25 << 20;       // gradient buckets (dist.bucket_mb)
  int64_t first_bucket_bytes = 1 << 20;  // the first one (dist.first_bucket_mb)
};

// The options of one training section (train.* for pretraining, mac.train.* for MAC, ...), with
// `defaults` as their defaults.
void declare_train_options(config::Schema& schema, const std::string& section = "train",
                           const TrainOptions& defaults = {});
// Reads train.*; `out_dir` and `seed` come from the caller (each command has its own directory).
TrainOptions train_options_from(const config::Config& config, const std::string& section = "train");

struct MicroBatchLoss {
  at::Tensor loss;     // scalar, differentiable: the mean loss of this micro-batch
  int64_t tokens = 0;  // tokens the loss was computed on (for tokens/s)
  // Named figures to log beside the loss (means over the log window and the ranks, in
  // metrics.jsonl and the progress line). Every rank and micro-batch must give the same names.
  std::map<std::string, double> figures;
};
using LossFn = std::function<MicroBatchLoss(const std::vector<int64_t>& example_indices)>;

struct TrainResult {
  int64_t first_step = 0;  // where this run started (after resuming)
  int64_t last_step = 0;   // steps done in all
  double last_loss = 0;    // mean over ranks of the last logged step
  bool stopped = false;    // a stop signal ended the run early (a checkpoint was saved)
  double seconds = 0;
  double tokens_per_s = 0;
  double gflops = 0;
  bool bf16 = false;  // the forward passes ran under bf16 autocast (TrainOptions::bf16 resolved)
};

class Trainer {
 public:
  // `parameters`: every parameter of the model by name (frozen ones too: they go into the
  // checkpoint); those with requires_grad are trained. `mpi_comm`: the job's MPI communicator
  // handle for parallel checkpoint files (null for one process). `flops_per_token`: for GFLOP/s.
  Trainer(TrainOptions options, std::vector<std::pair<std::string, at::Tensor>> parameters,
          dist::Communicator& comm, dist::MpiHandle mpi_comm, int64_t dataset_size, std::string config_yaml,
          double flops_per_token);
  ~Trainer();

  // Loads the newest committed checkpoint of out_dir, if any and options.resume; returns its step
  // (0 when starting fresh).
  int64_t resume();
  TrainResult run(const LossFn& loss, const std::function<void(int64_t step)>& after_step = {});
  int64_t step() const;
  // Optimizer-state values held on this rank (train.zero 1, 2: about 1/W of the whole).
  int64_t optimizer_state_values() const;
  // Saves a checkpoint of the current step now (collective).
  void save();
  // State of the caller's own that a bit-exact resume needs (e.g. a queue of past examples' outputs),
  // one tensor per rank, saved with every checkpoint: `get` returns it (defined, any shape, the same
  // dtype on every rank; saved flattened), `set` receives it flattened on resume at the same world
  // size. At another world size, or from a checkpoint without it, `set` is not called and the state
  // starts afresh. Every rank registers the same names (letters, digits, '_' and '.'), before resume().
  void keep_rank_state(const std::string& name, std::function<at::Tensor()> get,
                       std::function<void(const at::Tensor&)> set);

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace engram::train
