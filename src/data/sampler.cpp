#include "data/sampler.h"

#include <algorithm>
#include <numeric>
#include <random>

#include "core/error.h"
#include "core/seed.h"

namespace engram::data {

DistributedSampler::DistributedSampler(int64_t size, int rank, int world, uint64_t seed, bool shuffle)
    : size_(size), rank_(rank), world_(world), seed_(seed), shuffle_(shuffle) {
  if (size <= 0) core::fail("sampler: the dataset is empty");
  ENGRAM_CHECK(world >= 1 && rank >= 0 && rank < world, "sampler: rank {} of {}", rank, world);
  per_rank_ = (size + world - 1) / world;
}

std::vector<int64_t> DistributedSampler::epoch_indices(int64_t epoch) const {
  std::vector<int64_t> order(static_cast<size_t>(size_));
  std::iota(order.begin(), order.end(), 0);
  if (shuffle_) {
    // Every rank draws the same permutation: it depends on (seed, epoch) only.
    std::mt19937_64 rng(core::derive_seed(seed_, {0x5A3, static_cast<uint64_t>(epoch)}));
    std::shuffle(order.begin(), order.end(), rng);
  }
  std::vector<int64_t> mine;
  mine.reserve(static_cast<size_t>(per_rank_));
  for (int64_t k = 0; k < per_rank_; ++k) mine.push_back(order[static_cast<size_t>((rank_ + k * world_) % size_)]);
  return mine;
}

void DistributedSampler::ensure_epoch() {
  if (state_.position >= per_rank_) {
    ++state_.epoch;
    state_.position = 0;
  }
  if (cached_epoch_ != state_.epoch) {
    cached_ = epoch_indices(state_.epoch);
    cached_epoch_ = state_.epoch;
  }
}

int64_t DistributedSampler::next() {
  ensure_epoch();
  return cached_[static_cast<size_t>(state_.position++)];
}

std::vector<int64_t> DistributedSampler::next_batch(int64_t count) {
  ensure_epoch();
  std::vector<int64_t> batch;
  while (static_cast<int64_t>(batch.size()) < count && state_.position < per_rank_)
    batch.push_back(cached_[static_cast<size_t>(state_.position++)]);
  return batch;
}

void DistributedSampler::restore(const SamplerState& state) {
  if (state.epoch < 0 || state.position < 0 || state.position > per_rank_)
    core::fail("sampler state (epoch {}, position {}) does not fit {} indices per rank", state.epoch, state.position,
               per_rank_);
  state_ = state;
}

}  // namespace engram::data
