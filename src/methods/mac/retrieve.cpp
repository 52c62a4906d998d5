#include "methods/mac/retrieve.h"

#include <algorithm>
#include <limits>

#include <faiss/IndexFlat.h>
#include <torch/torch.h>

#include "core/error.h"
#include "dist/communicator.h"

namespace engram::mac {

namespace {
constexpr float kNone = -std::numeric_limits<float>::infinity();
}  // namespace

struct ShardIndex::Faiss {
  explicit Faiss(int64_t dim) : index(dim) {}
  faiss::IndexFlatIP index;
};

ShardIndex::ShardIndex(at::Tensor shard_summaries, const at::Tensor& shard_keys, int64_t shard_begin)
    : summaries_(std::move(shard_summaries)), begin_(shard_begin), key_dim_(shard_keys.size(1)) {
  ENGRAM_CHECK(shard_keys.dim() == 2 && summaries_.dim() == 3 && shard_keys.size(0) == summaries_.size(0),
               "ShardIndex: keys [n, k] with summaries [n, T, d]");
  faiss_ = std::make_unique<Faiss>(key_dim_);
  at::Tensor base = shard_keys.detach().to(torch::kFloat32).contiguous();
  if (base.size(0) > 0) faiss_->index.add(base.size(0), base.data_ptr<float>());
}

ShardIndex::~ShardIndex() = default;
ShardIndex::ShardIndex(ShardIndex&&) noexcept = default;

std::pair<at::Tensor, at::Tensor> ShardIndex::search(const at::Tensor& question_keys, const at::Tensor& allowed,
                                                     int64_t top_k) const {
  const int64_t Bq = question_keys.size(0), n = size();
  ENGRAM_CHECK(question_keys.dim() == 2 && question_keys.size(1) == key_dim_, "ShardIndex::search: keys [Bq, k]");
  ENGRAM_CHECK(!allowed.defined() || (allowed.dim() == 2 && allowed.size(0) == Bq && allowed.size(1) == n),
               "ShardIndex::search: allowed must be [Bq, n]");
  at::Tensor scores = torch::full({Bq, top_k}, kNone);
  at::Tensor rows = torch::full({Bq, top_k}, int64_t{-1}, torch::kInt64);
  if (n == 0 || Bq == 0) return {scores, rows};
  // Excluded rows are searched past: ask for as many more as the most excluded question has.
  const int64_t excluded = allowed.defined() ? (~allowed).sum(1).max().item<int64_t>() : 0;
  const int64_t wanted = std::min(n, top_k + excluded);
  at::Tensor queries = question_keys.detach().to(torch::kFloat32).contiguous();
  std::vector<float> distances(static_cast<size_t>(Bq * wanted));
  std::vector<faiss::Index::idx_t> labels(static_cast<size_t>(Bq * wanted));
  faiss_->index.search(Bq, queries.data_ptr<float>(), wanted, distances.data(), labels.data());
  at::Tensor allowed_bytes = allowed.defined() ? allowed.to(torch::kBool).contiguous() : at::Tensor();
  const bool* ok = allowed.defined() ? allowed_bytes.data_ptr<bool>() : nullptr;
  auto score = scores.accessor<float, 2>();
  auto row = rows.accessor<int64_t, 2>();
  for (int64_t q = 0; q < Bq; ++q) {
    int64_t filled = 0;
    for (int64_t j = 0; j < wanted && filled < top_k; ++j) {
      const faiss::Index::idx_t local = labels[static_cast<size_t>(q * wanted + j)];
      if (local < 0 || (ok != nullptr && !ok[q * n + local])) continue;
      score[q][filled] = distances[static_cast<size_t>(q * wanted + j)];
      row[q][filled] = begin_ + local;
      ++filled;
    }
  }
  return {scores, rows};
}

Retrieved retrieve_top_k(const at::Tensor& question_keys, const ShardIndex& shard, const at::Tensor& allowed,
                         int64_t top_k, dist::Communicator& comm) {
  ENGRAM_CHECK(top_k > 0, "retrieve_top_k: K must be positive");
  auto [scores, rows] = shard.search(question_keys, allowed, top_k);
  return merge_best(scores, rows, shard.summaries(), shard.begin(), top_k, comm);
}

Retrieved merge_best(const at::Tensor& scores, const at::Tensor& rows, const at::Tensor& shard_summaries,
                     int64_t shard_begin, int64_t top_k, dist::Communicator& comm) {
  return merge_best(
      scores, rows, [&](const at::Tensor& local) { return shard_summaries.index_select(0, local); },
      shard_summaries.size(0), shard_summaries.size(1), shard_summaries.size(2), shard_begin, top_k, comm);
}

Retrieved merge_best(const at::Tensor& scores, const at::Tensor& rows, const RowFetch& fetch, int64_t n, int64_t T,
                     int64_t d, int64_t shard_begin, int64_t top_k, dist::Communicator& comm) {
  const int64_t Bq = scores.size(0);
  // The best K over every rank's best K; every rank computes the same choice.
  const int W = comm.world_size();
  at::Tensor all_scores = comm.all_gather(scores).permute({1, 0, 2}).reshape({Bq, W * top_k});
  at::Tensor all_rows = comm.all_gather(rows).permute({1, 0, 2}).reshape({Bq, W * top_k});
  auto [best, pick] = all_scores.topk(top_k, 1);  // sorted, best first
  Retrieved out;
  out.scores = best;
  out.rows = all_rows.gather(1, pick);
  at::Tensor owner = torch::div(pick, top_k, "floor");
  at::Tensor valid = out.rows >= 0;
  out.rows = torch::where(valid, out.rows, torch::full_like(out.rows, -1));

  // The chosen summaries: each owner puts in its own, the rest add zeros.
  at::Tensor mine = (owner == comm.rank()) & valid;
  at::Tensor chosen = torch::zeros({Bq, top_k, T, d});
  if (n > 0 && mine.any().item<bool>()) {
    at::Tensor where = mine.flatten().nonzero().squeeze(1);
    at::Tensor local = (out.rows.flatten().index_select(0, where) - shard_begin).contiguous();
    chosen.view({Bq * top_k, T, d}).index_copy_(0, where, fetch(local).to(torch::kFloat32));
  }
  if (W > 1) comm.all_reduce(chosen);
  out.memory = Memory{chosen, valid};
  return out;
}

}  // namespace engram::mac
