#pragma once
// Retrieval before aggregation (mac.retriever.top_k): each question aggregates only the K
// documents of the bank whose retriever keys match its own best, instead of all N. Aggregating
// over N soft-attends to N T tokens, and the gold document's share shrinks as N grows (the
// train-small-bank / test-large-bank gap of specs/mac.md 2); with K fixed, the aggregator always
// sees a bank of the size it was trained on. MAC with a retriever in front is the "MAC + RAG"
// combination of the paper (specs/mac.md 6), with the retriever trained jointly on MAC's own
// summaries rather than BM25 over the text (the bank stores no text).
//
// Across ranks: each rank searches its own shard (faiss exact inner product), the per-rank best
// K (scores and bank rows: 2 K numbers per question and rank) are all-gathered, every rank picks
// the same best K overall, and the chosen summaries are summed across ranks from their owners.
// No rank holds more than its shard and K entries per question.
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>

#include <ATen/core/Tensor.h>

#include "methods/mac/aggregate.h"

namespace engram::dist {
class Communicator;
}

namespace engram::mac {

struct Retrieved {
  Memory memory;      // rows [Bq, K, T, d], valid [Bq, K] (false where the bank has fewer than K allowed rows)
  at::Tensor rows;    // [Bq, K] int64: bank rows, best first; -1 where none
  at::Tensor scores;  // [Bq, K] float: key inner products; -inf where none
};

// A rank's shard of the bank, searchable: its summaries [n, T, d] (n may be 0) of bank rows
// shard_begin .. shard_begin + n - 1, and a faiss exact inner-product index of their keys [n, k].
// Built once per bank and reused by every batch of questions.
class ShardIndex {
 public:
  ShardIndex(at::Tensor shard_summaries, const at::Tensor& shard_keys, int64_t shard_begin);
  ~ShardIndex();
  ShardIndex(ShardIndex&&) noexcept;
  int64_t size() const { return summaries_.size(0); }
  int64_t begin() const { return begin_; }
  const at::Tensor& summaries() const { return summaries_; }
  // This rank's best `top_k` allowed rows per question: scores [Bq, K] (-inf where none) and
  // bank rows [Bq, K] (-1 where none). allowed: undefined or [Bq, n] bool.
  std::pair<at::Tensor, at::Tensor> search(const at::Tensor& question_keys, const at::Tensor& allowed,
                                           int64_t top_k) const;

 private:
  struct Faiss;  // the faiss index (retrieve.cpp): keeps faiss's headers out of this one
  at::Tensor summaries_;
  int64_t begin_ = 0, key_dim_ = 0;
  std::unique_ptr<Faiss> faiss_;
};

// Collective: every rank's own best K (scores [Bq, K], -inf where none; bank rows [Bq, K], -1
// where none) of its shard (summaries [n, T, d] of bank rows shard_begin ..) -> the best K over
// every rank, the same on every rank, with the chosen summaries from their owners.
Retrieved merge_best(const at::Tensor& scores, const at::Tensor& rows, const at::Tensor& shard_summaries,
                     int64_t shard_begin, int64_t top_k, dist::Communicator& comm);
// The same when the shard is not in memory: fetch(local rows [m] int64) -> their summaries
// [m, T, d]; called only for this rank's chosen rows. n: the shard's rows.
using RowFetch = std::function<at::Tensor(const at::Tensor& local_rows)>;
Retrieved merge_best(const at::Tensor& scores, const at::Tensor& rows, const RowFetch& fetch, int64_t n, int64_t T,
                     int64_t d, int64_t shard_begin, int64_t top_k, dist::Communicator& comm);

// Collective: every rank passes the same question keys [Bq, k] and its own shard's index.
// allowed: undefined, or [Bq, n] bool (false: this question may not retrieve that row).
Retrieved retrieve_top_k(const at::Tensor& question_keys, const ShardIndex& shard, const at::Tensor& allowed,
                         int64_t top_k, dist::Communicator& comm);

}  // namespace engram::mac
