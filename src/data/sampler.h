#pragma once
// Distributed sampler: each epoch, a permutation of the N examples drawn from (seed, epoch); rank
// r of W takes every W-th index of it starting at r. Every rank gets ceil(N / W) indices (the
// permutation wraps around to pad), so ranks take the same number of steps and stay in step
// for collectives. The cursor (epoch, position) is the whole state: saved in a checkpoint, it
// resumes exactly where the run stopped.
#include <cstdint>
#include <vector>

namespace engram::data {

struct SamplerState {
  int64_t epoch = 0;
  int64_t position = 0;  // indices of this epoch already handed out on this rank
};

class DistributedSampler {
 public:
  DistributedSampler(int64_t size, int rank, int world, uint64_t seed, bool shuffle = true);

  int64_t per_rank() const { return per_rank_; }  // indices per rank per epoch
  // The next index; moves to the next epoch after per_rank() of them.
  int64_t next();
  // Up to `count` next indices, not crossing an epoch boundary.
  std::vector<int64_t> next_batch(int64_t count);
  // This rank's indices of `epoch`, in order.
  std::vector<int64_t> epoch_indices(int64_t epoch) const;

  SamplerState state() const { return state_; }
  void restore(const SamplerState& state);

 private:
  void ensure_epoch();
  int64_t size_;
  int rank_, world_;
  uint64_t seed_;
  bool shuffle_;
  int64_t per_rank_;
  SamplerState state_;
  int64_t cached_epoch_ = -1;
  std::vector<int64_t> cached_;
};

}  // namespace engram::data
