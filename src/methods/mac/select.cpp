#include "methods/mac/select.h"

#include <algorithm>
#include <limits>

#include <torch/torch.h>

#include "core/error.h"
#include "methods/mac/aggregate.h"

namespace engram::mac {

namespace {
constexpr float kNone = -std::numeric_limits<float>::infinity();

// The best K of scores [Bq, C] with their rows [Bq, C] (rows -1 where the score is -inf).
std::pair<at::Tensor, at::Tensor> best_of(const at::Tensor& scores, const at::Tensor& rows, int64_t top_k) {
  const int64_t k = std::min(top_k, scores.size(1));
  auto [best, pick] = scores.topk(k, 1);
  at::Tensor chosen = rows.gather(1, pick);
  chosen = torch::where(torch::isinf(best), torch::full_like(chosen, -1), chosen);
  if (k < top_k) {  // fewer candidates than K: pad with none
    const int64_t Bq = scores.size(0);
    best = torch::cat({best, torch::full({Bq, top_k - k}, kNone)}, 1);
    chosen = torch::cat({chosen, torch::full({Bq, top_k - k}, int64_t{-1}, torch::kInt64)}, 1);
  }
  return {best, chosen};
}
}  // namespace

ShardRows shard_in_memory(const at::Tensor& summaries, int64_t first) {
  return ShardRows{[summaries](int64_t begin, int64_t count) { return summaries.narrow(0, begin, count); },
                   summaries.size(0), first, summaries.size(1), summaries.size(2)};
}

std::pair<at::Tensor, at::Tensor> select_in_shard(Aggregator& aggregator, const at::Tensor& z0, const ShardRows& shard,
                                                  const at::Tensor& allowed, int64_t top_k, int64_t group) {
  ENGRAM_CHECK(top_k > 0 && group > 0, "select_in_shard: K and the group size must be positive");
  const int64_t Bq = z0.size(0), n = shard.size;
  at::Tensor best = torch::full({Bq, top_k}, kNone);
  at::Tensor rows = torch::full({Bq, top_k}, int64_t{-1}, torch::kInt64);
  for (int64_t begin = 0; begin < n; begin += group) {
    const int64_t count = std::min(group, n - begin);
    at::Tensor scores = aggregator->selection_scores(z0, shard.read(begin, count).unsqueeze(0)).to(torch::kFloat32);
    if (allowed.defined()) scores = scores.masked_fill(~allowed.narrow(1, begin, count).to(torch::kBool), kNone);
    at::Tensor group_rows = (torch::arange(count, torch::kInt64) + shard.first + begin).unsqueeze(0).expand({Bq, count});
    std::tie(best, rows) = best_of(torch::cat({best, scores}, 1), torch::cat({rows, group_rows}, 1), top_k);
  }
  return {best, rows};
}

Retrieved select_top_k(Aggregator& aggregator, const at::Tensor& z0, const ShardRows& shard, const at::Tensor& allowed,
                       int64_t top_k, int64_t group, dist::Communicator& comm) {
  auto [scores, rows] =
      select_in_shard(aggregator, z0, shard, allowed, top_k, group == kFlat ? std::max<int64_t>(1, shard.size) : group);
  auto fetch = [&](const at::Tensor& local) {  // the chosen rows, one read each
    std::vector<at::Tensor> out;
    const at::Tensor flat = local.contiguous();
    for (int64_t i = 0; i < flat.numel(); ++i) out.push_back(shard.read(flat[i].item<int64_t>(), 1));
    return torch::cat(out, 0);
  };
  return merge_best(scores, rows, fetch, shard.size, shard.T, shard.d, shard.first, top_k, comm);
}

Retrieved select_among(Aggregator& aggregator, const at::Tensor& z0, const Retrieved& found, int64_t top_k,
                       double selection_temperature, double retriever_temperature, double vote) {
  const at::Tensor& candidates = found.memory.rows;  // [Bq, C, T, d]
  at::Tensor scores = aggregator->selection_scores(z0, candidates).to(torch::kFloat32) * (vote / selection_temperature);
  scores = scores + torch::where(found.rows >= 0, found.scores, torch::zeros_like(found.scores)) / retriever_temperature;
  scores = scores.masked_fill(~found.memory.valid.to(torch::kBool), kNone);
  const int64_t k = std::min(top_k, candidates.size(1));
  auto [best, pick] = scores.topk(k, 1);
  Retrieved out;
  out.scores = best;
  out.rows = torch::where(torch::isinf(best), torch::full_like(pick, -1), found.rows.gather(1, pick));
  const int64_t Bq = candidates.size(0), T = candidates.size(2), d = candidates.size(3);
  at::Tensor index = pick.view({Bq, k, 1, 1}).expand({Bq, k, T, d});
  out.memory = Memory{candidates.gather(1, index), out.rows >= 0};
  return out;
}

}  // namespace engram::mac
