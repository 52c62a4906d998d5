#pragma once
// The optimizer behind every training loop: gradient reduction across ranks, clipping of the
// global gradient norm and the AdamW step (weight decay on matrices only), in one of three ways
// (train.zero, the stages of ZeRO, Rajbhandari et al. 2020):
//   0  replicated: gradients all-reduced in buckets (GradReducer), every rank holds the whole
//      AdamW state and updates every parameter;
//   1  optimizer state sharded: gradients all-reduced as in 0, but each rank keeps exp_avg and
//      exp_avg_sq of its 1/W of every bucket only, updates that slice, and the updated slices
//      are all-gathered into the parameters;
//   2  gradients sharded too: each micro-step's gradients are reduce-scattered, bucket by bucket,
//      into the rank's slice (accumulated there across micro-steps) and the whole gradients are
//      released, so they do not live through the optimizer step and the next forward pass.
// Sharding (1, 2): the trainable parameters are laid end to end in buckets of about
// dist.bucket_mb; a bucket of n values is padded to W x ceil(n / W) and rank r owns the r-th
// slice, so uneven sizes leave the last ranks a shorter (or empty) slice. Per rank the state is
// 2 x sum over buckets of ceil(n / W) values: 1/W of the whole plus at most one value per bucket
// and rank of padding.
// Checkpoints hold the whole state in AdamW's own layout ("<param>/exp_avg", ...): any stage
// resumes from any other, at any world size (the sharded stages gather it to save it).
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

namespace engram::dist {
class Communicator;
}

namespace engram::train {

struct CheckpointData;
using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

struct AdamWSettings {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.01;
  bool decay_vectors = false;            // weight decay on 1-D parameters (biases, norms) too
  int zero = 0;                          // train.zero
  int64_t bucket_bytes = 25 << 20;       // dist.bucket_mb
  int64_t first_bucket_bytes = 1 << 20;  // dist.first_bucket_mb (stage 0's first bucket)
};

class DistributedAdamW {
 public:
  virtual ~DistributedAdamW() = default;
  // Before the first micro-step of a step.
  virtual void zero_grad() = 0;
  // After every micro-step's backward; `last`: the step's last micro-step.
  virtual void after_backward(bool last) = 0;
  // The global norm of the reduced gradients (the same on every rank), which are then scaled down
  // to `clip_norm` when above it (0: never).
  virtual double clip(double clip_norm) = 0;
  virtual void step(double lr) = 0;
  // Collective for the sharded stages. save: the whole state into data.optim; load: this rank's
  // part of data.optim (a parameter without saved state starts from zero).
  virtual void save_state(CheckpointData& data) = 0;
  virtual void load_state(const CheckpointData& data) = 0;
  // Optimizer-state values held on this rank (exp_avg and exp_avg_sq; 0 before the first step
  // for stage 0, whose state is created by the first update).
  virtual int64_t state_values() const = 0;
};

// `trainable`: the parameters with requires_grad, by name, the same list on every rank.
std::unique_ptr<DistributedAdamW> make_distributed_adamw(dist::Communicator& comm, const NamedTensors& trainable,
                                                         const AdamWSettings& settings);

}  // namespace engram::train
