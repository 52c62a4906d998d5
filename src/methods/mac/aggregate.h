#pragma once
// Aggregating a memory bank into one latent per question (specs/mac.md 4), flat or hierarchical,
// on one process or across ranks.
//
// Hierarchical (the intended algorithm; the reference code loops over the question's token
// length instead of the bank, a bug we do not copy):
//   while |memory| > M: every group of M consecutive entries becomes one pseudo-entry
//                       h_psi(q, group) (a T x d latent); the groups of a level are independent
//   z* = h_psi(q, memory)                                      (<= M entries)
// Peak activation memory per call is O(M T) instead of O(N T); about N / (M - 1) calls.
// Flat is the same with M = infinity: one call over all N T memory tokens.
//
// Across ranks (distributed_aggregate): each rank reduces its own shard to at most M entries,
// the reduced sets (at most M x T x d numbers per question and rank, whatever N is) are
// all-gathered, and the reduction continues on the union. With one rank this is exactly the
// single-process algorithm; flat (M = infinity) gathers the shards whole and is exactly flat
// attention over the whole bank at any world size (the comparison mode; it holds the bank).
#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "methods/mac/modules.h"

namespace engram::dist {
class Communicator;
}

namespace engram::mac {

// Entries a question may attend to. rows [Bm, N, T, d] with Bm = 1 (shared by every question)
// or Bq; valid [Bv, N] bool with Bv = 1 or Bq (false: padding or an excluded document);
// undefined = every entry is valid.
struct Memory {
  at::Tensor rows;
  at::Tensor valid;
  int64_t entries() const;
};

struct AggregationStats {
  int64_t calls = 0;   // aggregator calls, counting each (question, group) pair once
  int64_t levels = 0;  // reduction levels before the final call
};

// Size of a group in flat mode.
constexpr int64_t kFlat = INT64_MAX;

// What a group of a hierarchical level becomes (mac.hierarchy_carries):
//   Latent  - h_psi(q, group), the aggregator's output (specs/mac.md 4);
//   Summary - the group's own entries mixed by the share of the final block's attention on each,
//             so every level holds summary-like entries, as the aggregator was trained on (a
//             group holding the gold document passes on mostly that document).
enum class Carry { Latent, Summary };

// Bound on the memory tokens x questions of one batched aggregator call (see reduce_memory).
constexpr int64_t kMaxElements = int64_t{1} << 16;

// One level at a time until at most `group_size` entries remain per question. z0 [Bq, T, d].
// Returns memory with rows [Bq, <= group_size, T, d] (or the input unchanged when it is small
// enough). `max_elements`: bound on the memory tokens x questions handled by one batched call
// (groups are streamed in chunks under it; a call's scores are T x heads times as many numbers,
// so 2^16 keeps one call to tens of MB: peak memory then stays flat from 1k to 100k documents).
Memory reduce_memory(Aggregator& aggregator, const at::Tensor& z0, Memory memory, int64_t group_size,
                     AggregationStats* stats = nullptr, int64_t max_elements = kMaxElements,
                     Carry carry = Carry::Latent);

// The final call: z* [Bq, T, d] = h_psi(z0, memory) over every valid entry. `attention`: as in
// Aggregator::forward (each block's weights over the N T memory tokens).
at::Tensor aggregate(Aggregator& aggregator, const at::Tensor& z0, const Memory& memory,
                     AggregationStats* stats = nullptr, std::vector<at::Tensor>* attention = nullptr);

// reduce_memory + aggregate.
// `attention`: the final call's weights (with flat aggregation: over every entry of memory, in order).
at::Tensor aggregate_hierarchical(Aggregator& aggregator, const at::Tensor& z0, Memory memory, int64_t group_size,
                                  AggregationStats* stats = nullptr, std::vector<at::Tensor>* attention = nullptr,
                                  Carry carry = Carry::Latent);

// The share of attention each head and query token puts on one entry per question: weights
// [Bq, H, Tq, N T] (one block's, from Aggregator::forward), entry [Bq] int64 -> [Bq, H, Tq], the
// sum of the weights on that entry's T tokens. The gold document's share is spec check 7 (it should
// rise far above 1/N).
at::Tensor attention_on_entry(const at::Tensor& weights, const at::Tensor& entry, int64_t T);
// The same for every entry: [Bq, H, Tq, N T] -> [Bq, H, Tq, N].
at::Tensor attention_per_entry(const at::Tensor& weights, int64_t T);

// Collective: every rank passes the same questions z0 [Bq, T, d] and its own shard of the bank
// (shard.rows [1, n_rank, T, d], n_rank may be 0; shard.valid [Bq or 1, n_rank] to exclude
// entries per question). Returns z* [Bq, T, d], the same on every rank. `attention`: the final
// call's weights; with flat aggregation (group_size kFlat) over the whole bank in row order.
at::Tensor distributed_aggregate(Aggregator& aggregator, const at::Tensor& z0, Memory shard, int64_t group_size,
                                 dist::Communicator& comm, AggregationStats* stats = nullptr,
                                 std::vector<at::Tensor>* attention = nullptr, Carry carry = Carry::Latent);

}  // namespace engram::mac
