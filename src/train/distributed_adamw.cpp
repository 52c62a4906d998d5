#include "train/distributed_adamw.h"

#include <torch/torch.h>

#include <cmath>
#include <map>

#include "core/error.h"
#include "dist/communicator.h"
#include "dist/grad_reducer.h"
#include "train/checkpoint.h"
#include "train/training_state.h"

namespace engram::train {
namespace {

// Stage 0: LibTorch's AdamW on every rank over gradients the GradReducer averaged.
class ReplicatedAdamW : public DistributedAdamW {
 public:
  ReplicatedAdamW(dist::Communicator& comm, const NamedTensors& trainable, const AdamWSettings& s)
      : trainable_(trainable) {
    std::vector<at::Tensor> decay, no_decay;
    for (const auto& [name, p] : trainable_) {
      params_.push_back(p);
      (p.dim() >= 2 || s.decay_vectors ? decay : no_decay).push_back(p);
    }
    auto defaults = torch::optim::AdamWOptions(1e-3).betas({s.beta1, s.beta2}).eps(s.eps).weight_decay(s.weight_decay);
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(defaults));
    groups.emplace_back(no_decay,
                        std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(defaults).weight_decay(0)));
    optimizer_ = std::make_unique<torch::optim::AdamW>(std::move(groups), defaults);
    if (comm.world_size() > 1)
      reducer_ = std::make_unique<dist::GradReducer>(comm, params_, s.bucket_bytes, s.first_bucket_bytes);
  }

  // In place: Optimizer::zero_grad detaches, which views into GradReducer buckets refuse.
  void zero_grad() override {
    for (auto& p : params_)
      if (p.grad().defined()) p.mutable_grad().zero_();
  }
  void after_backward(bool last) override {
    if (reducer_) reducer_->after_backward(last);
  }
  // After the reduction every rank holds the same gradients: the local norm is the global one.
  double clip(double clip_norm) override {
    return torch::nn::utils::clip_grad_norm_(params_, clip_norm > 0 ? clip_norm : 1e30);
  }
  void step(double lr) override {
    for (auto& group : optimizer_->param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    optimizer_->step();
  }
  void save_state(CheckpointData& data) override { save_adamw_state(*optimizer_, trainable_, data); }
  void load_state(const CheckpointData& data) override { load_adamw_state(*optimizer_, trainable_, data); }
  int64_t state_values() const override {
    int64_t values = 0;
    for (const auto& [key, state] : const_cast<torch::optim::AdamW&>(*optimizer_).state()) {
      const auto& s = static_cast<const torch::optim::AdamWParamState&>(*state);
      values += s.exp_avg().numel() + s.exp_avg_sq().numel();
    }
    return values;
  }

 private:
  NamedTensors trainable_;
  std::vector<at::Tensor> params_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::unique_ptr<dist::GradReducer> reducer_;
};

// Stages 1 and 2 (see the header). Each bucket is a run of parameters laid end to end, padded to
// world x chunk values; this rank owns values [rank x chunk, (rank + 1) x chunk) of it.
class ShardedAdamW : public DistributedAdamW {
 public:
  ShardedAdamW(dist::Communicator& comm, const NamedTensors& trainable, const AdamWSettings& s)
      : comm_(comm), trainable_(trainable), settings_(s), world_(comm.world_size()), rank_(comm.rank()) {
    ENGRAM_CHECK(s.zero == 1 || s.zero == 2, "ShardedAdamW is for ZeRO stages 1 and 2, got {}", s.zero);
    lay_out_buckets();
  }

  void zero_grad() override {
    for (auto& b : buckets_) {
      if (settings_.zero == 2) b.shard_grad.zero_();
      else if (b.grads.defined()) b.grads.zero_();
    }
  }

  void after_backward(bool last) override {
    at::NoGradGuard no_grad;
    if (settings_.zero == 2) return reduce_scatter_gradients();
    if (last) all_reduce_gradients();
  }

  double clip(double clip_norm) override {
    at::NoGradGuard no_grad;
    double squares = 0;
    for (auto& b : buckets_) squares += b.shard_grad.to(at::kDouble).pow(2).sum().item<double>();
    at::Tensor total = at::full({1}, squares, at::kDouble);
    comm_.all_reduce(total, dist::ReduceOp::Sum);
    const double norm = std::sqrt(total.item<double>());
    const double coefficient = clip_norm / (norm + 1e-6);  // as torch::nn::utils::clip_grad_norm_
    if (clip_norm > 0 && coefficient < 1)
      for (auto& b : buckets_) b.shard_grad.mul_(coefficient);
    return norm;
  }

  // AdamW (LibTorch's arithmetic, in its order) on this rank's slices of the parameters, in
  // place, then the slices gathered into every rank's parameters.
  void step(double lr) override {
    at::NoGradGuard no_grad;
    ++steps_;
    const double correction1 = 1 - std::pow(settings_.beta1, static_cast<double>(steps_));
    const double correction2 = 1 - std::pow(settings_.beta2, static_cast<double>(steps_));
    for (auto& b : buckets_)
      for (const Piece& piece : b.pieces) {
        const at::Tensor& p = trainable_[b.members[piece.member]].second;
        at::Tensor values = p.detach().view(-1).narrow(0, piece.in_param, piece.length);
        at::Tensor grad = b.shard_grad.narrow(0, piece.in_slice, piece.length);
        at::Tensor exp_avg = b.exp_avg.narrow(0, piece.in_slice, piece.length);
        at::Tensor exp_avg_sq = b.exp_avg_sq.narrow(0, piece.in_slice, piece.length);
        if (settings_.weight_decay > 0 && (p.dim() >= 2 || settings_.decay_vectors))
          values.mul_(1 - lr * settings_.weight_decay);
        exp_avg.mul_(settings_.beta1).add_(grad, 1 - settings_.beta1);
        exp_avg_sq.mul_(settings_.beta2).addcmul_(grad, grad, 1 - settings_.beta2);
        at::Tensor denominator = (exp_avg_sq.sqrt() / std::sqrt(correction2)).add_(settings_.eps);
        values.addcdiv_(exp_avg, denominator, -lr / correction1);
      }
    gather_into_parameters();
  }

  // No gathering: each rank writes the part of every parameter's state that its slices hold.
  void save_state(CheckpointData& data) override {
    if (steps_ == 0) return;  // as LibTorch's AdamW: no state before the first update
    for (auto& b : buckets_)
      for (size_t m = 0; m < b.members.size(); ++m) {
        const auto& [name, p] = trainable_[b.members[m]];
        Piece piece{m, 0, 0, 0};  // none of this parameter is in the slice: an empty piece
        for (const Piece& candidate : b.pieces)
          if (candidate.member == m) piece = candidate;
        for (const auto& [state, values] : {std::pair{"/exp_avg", b.exp_avg}, std::pair{"/exp_avg_sq", b.exp_avg_sq}})
          data.optim_pieces.push_back({name + state, p.numel(), piece.in_param, values.narrow(0, piece.in_slice, piece.length)});
        data.optim.emplace_back(name + "/step", at::full({1}, steps_, at::kLong));
      }
  }

  void load_state(const CheckpointData& data) override {
    std::map<std::string, at::Tensor> saved(data.optim.begin(), data.optim.end());
    steps_ = 0;
    for (auto& b : buckets_) {
      at::Tensor exp_avg = at::zeros({world_ * b.chunk}, at::kFloat), exp_avg_sq = at::zeros_like(exp_avg);
      for (size_t m = 0; m < b.members.size(); ++m) {
        const auto& [name, p] = trainable_[b.members[m]];
        if (!saved.count(name + "/exp_avg")) continue;
        exp_avg.narrow(0, b.offsets[m], p.numel()).copy_(saved[name + "/exp_avg"].reshape(-1));
        exp_avg_sq.narrow(0, b.offsets[m], p.numel()).copy_(saved[name + "/exp_avg_sq"].reshape(-1));
        steps_ = std::max(steps_, saved[name + "/step"].item<int64_t>());
      }
      b.exp_avg.copy_(my_slice(b, exp_avg));
      b.exp_avg_sq.copy_(my_slice(b, exp_avg_sq));
    }
  }

  int64_t state_values() const override {
    int64_t values = 0;
    for (const auto& b : buckets_) values += b.exp_avg.numel() + b.exp_avg_sq.numel();
    return values;
  }

 private:
  // Where a member's values meet this rank's slice: `length` values from `in_param` in the
  // parameter (flattened), at `in_slice` in the slice.
  struct Piece {
    size_t member = 0;
    int64_t in_param = 0, in_slice = 0, length = 0;
  };
  struct Bucket {
    std::vector<size_t> members;   // indices into trainable_
    std::vector<int64_t> offsets;  // where each member starts in the bucket
    int64_t values = 0;            // real values (the rest of world x chunk is padding)
    int64_t chunk = 0;             // values per rank
    at::Tensor grads;              // stage 1: [world x chunk], the members' gradients are views of it
    at::Tensor shard_grad;         // [chunk] the reduced gradients of this rank's slice
    at::Tensor exp_avg, exp_avg_sq;  // [chunk] this rank's slice of the state
    std::vector<Piece> pieces;     // the members' values in this rank's slice
  };

  at::Tensor my_slice(const Bucket& b, const at::Tensor& whole) const { return whole.narrow(0, rank_ * b.chunk, b.chunk); }

  // Parameters in order, into buckets of at most bucket_bytes (one parameter may exceed it).
  void lay_out_buckets() {
    int64_t filled = 0;
    for (size_t k = 0; k < trainable_.size(); ++k) {
      const at::Tensor& p = trainable_[k].second;
      if (p.scalar_type() != at::kFloat || !p.is_contiguous())
        core::fail("train.zero {}: parameter '{}' is {}{}; sharded AdamW keeps contiguous float32 parameters",
                   settings_.zero, trainable_[k].first, c10::toString(p.scalar_type()),
                   p.is_contiguous() ? "" : " and not contiguous");
      if (buckets_.empty() || (filled > 0 && filled + static_cast<int64_t>(p.nbytes()) > settings_.bucket_bytes)) {
        buckets_.emplace_back();
        filled = 0;
      }
      Bucket& b = buckets_.back();
      b.members.push_back(k);
      b.offsets.push_back(b.values);
      b.values += p.numel();
      filled += static_cast<int64_t>(p.nbytes());
    }
    const auto options = trainable_.front().second.options().requires_grad(false);
    for (auto& b : buckets_) {
      b.chunk = (b.values + world_ - 1) / world_;
      b.shard_grad = at::zeros({b.chunk}, options);
      b.exp_avg = at::zeros({b.chunk}, options);
      b.exp_avg_sq = at::zeros({b.chunk}, options);
      const int64_t mine_begin = rank_ * b.chunk, mine_end = mine_begin + b.chunk;
      for (size_t m = 0; m < b.members.size(); ++m) {
        const int64_t begin = std::max(b.offsets[m], mine_begin);
        const int64_t end = std::min(b.offsets[m] + trainable_[b.members[m]].second.numel(), mine_end);
        if (end > begin) b.pieces.push_back(Piece{m, begin - b.offsets[m], begin - mine_begin, end - begin});
      }
    }
  }

  // Stage 1: the members' gradients become views of one padded buffer per bucket (copied there
  // once), all-reduced together; this rank's slice of it is its shard.
  void all_reduce_gradients() {
    std::vector<dist::WorkPtr> works;
    for (auto& b : buckets_) {
      if (!b.grads.defined()) b.grads = at::zeros({world_ * b.chunk}, b.exp_avg.options());
      for (size_t m = 0; m < b.members.size(); ++m) {
        at::Tensor& p = trainable_[b.members[m]].second;
        at::Tensor slot = b.grads.narrow(0, b.offsets[m], p.numel());
        const at::Tensor& g = p.grad();
        if (g.defined() && g.data_ptr() == slot.data_ptr()) continue;
        if (g.defined()) slot.copy_(g.reshape(-1));
        else slot.zero_();
        p.mutable_grad() = slot.view(p.sizes());
      }
      works.push_back(comm_.all_reduce_async(b.grads, dist::ReduceOp::Avg));
    }
    for (auto& work : works) work->wait();
    for (auto& b : buckets_) b.shard_grad = my_slice(b, b.grads);
  }

  // Stage 2: bucket by bucket, this micro-step's gradients packed, reduce-scattered into the
  // slices and added to this rank's shard; the whole gradients are released.
  void reduce_scatter_gradients() {
    for (auto& b : buckets_) {
      at::Tensor packed = at::zeros({world_, b.chunk}, b.exp_avg.options());
      at::Tensor flat = packed.view(-1);
      for (size_t m = 0; m < b.members.size(); ++m) {
        at::Tensor& p = trainable_[b.members[m]].second;
        if (p.grad().defined()) flat.narrow(0, b.offsets[m], p.numel()).copy_(p.grad().reshape(-1));
        p.mutable_grad() = at::Tensor();
      }
      at::Tensor reduced = at::empty({b.chunk}, b.exp_avg.options());
      comm_.reduce_scatter(packed, reduced, dist::ReduceOp::Avg);
      b.shard_grad.add_(reduced);
    }
  }

  // The updated slices of every rank into the parameters, one bucket at a time. A bucket of one
  // parameter without padding is gathered straight into it.
  void gather_into_parameters() {
    for (auto& b : buckets_) {
      at::Tensor mine = at::zeros({b.chunk}, b.exp_avg.options());
      for (const Piece& piece : b.pieces)
        mine.narrow(0, piece.in_slice, piece.length)
            .copy_(trainable_[b.members[piece.member]].second.detach().view(-1).narrow(0, piece.in_param, piece.length));
      if (b.members.size() == 1 && b.values == world_ * b.chunk) {
        at::Tensor whole = trainable_[b.members[0]].second.detach().view({world_, b.chunk});
        comm_.all_gather(mine, whole);
        continue;
      }
      const at::Tensor whole = comm_.all_gather(mine).view(-1);
      for (size_t m = 0; m < b.members.size(); ++m) {
        at::Tensor& p = trainable_[b.members[m]].second;
        p.detach().view(-1).copy_(whole.narrow(0, b.offsets[m], p.numel()));
      }
    }
  }

  dist::Communicator& comm_;
  NamedTensors trainable_;
  AdamWSettings settings_;
  int64_t world_, rank_;
  std::vector<Bucket> buckets_;
  int64_t steps_ = 0;  // AdamW's step count (bias corrections)
};

}  // namespace

std::unique_ptr<DistributedAdamW> make_distributed_adamw(dist::Communicator& comm, const NamedTensors& trainable,
                                                         const AdamWSettings& settings) {
  ENGRAM_CHECK(!trainable.empty(), "nothing to train");
  if (settings.zero == 0) return std::make_unique<ReplicatedAdamW>(comm, trainable, settings);
  return std::make_unique<ShardedAdamW>(comm, trainable, settings);
}

}  // namespace engram::train
