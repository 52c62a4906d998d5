#pragma once
// Selection by the aggregator itself (mac.select): before reading, the aggregator's first block
// scores every document of the bank against the question (Aggregator::selection_scores) and only
// its best K are aggregated. Reading a soft blend of many documents is what MAC could not learn
// on the quickstart world (docs/mac.md, "MAC over the whole bank"); choosing first and reading a
// few is the paper's "choose from and combine" made hard.
//
// Each rank scores its own shard group by group (hierarchical: M documents per call, so a call's
// memory does not grow with the bank) or in one call (flat), keeps its best K, and the best K over
// every rank come from their owners (retrieve.h's merge_best). Scores are per document, so the
// best K of groups' best K is the best K of the whole: hierarchical and flat choose the same
// documents; they differ in peak memory.
#include <cstdint>
#include <functional>
#include <utility>

#include <ATen/core/Tensor.h>

#include "methods/mac/modules.h"
#include "methods/mac/retrieve.h"

namespace engram::dist {
class Communicator;
}

namespace engram::mac {

// A rank's shard of the bank as selection reads it, group by group: read(begin, count) -> the
// summaries [count, T, d] of shard rows begin .. (bank rows first + begin ..); `size` rows.
struct ShardRows {
  std::function<at::Tensor(int64_t begin, int64_t count)> read;
  int64_t size = 0, first = 0, T = 0, d = 0;
};
// A shard held in memory: summaries [n, T, d] of bank rows first ...
ShardRows shard_in_memory(const at::Tensor& summaries, int64_t first);

// This rank's best `top_k` rows: z0 [Bq, T, d]; allowed undefined or [Bq, n] bool; group: rows
// per aggregator call (kFlat: all at once). Returns scores [Bq, K] (-inf where none) and bank
// rows [Bq, K] (-1 where none), best first.
std::pair<at::Tensor, at::Tensor> select_in_shard(Aggregator& aggregator, const at::Tensor& z0, const ShardRows& shard,
                                                  const at::Tensor& allowed, int64_t top_k, int64_t group);

// Collective: the best K of the whole bank (every rank passes the same z0 and its own shard),
// their summaries read from their owners' shards.
Retrieved select_top_k(Aggregator& aggregator, const at::Tensor& z0, const ShardRows& shard, const at::Tensor& allowed,
                       int64_t top_k, int64_t group, dist::Communicator& comm);

// The best K of candidates the retriever brought (found.memory rows [Bq, C, T, d], valid [Bq, C];
// found.rows [Bq, C], found.scores their retriever scores) by the product of the two trained
// softmaxes, the aggregator's raised to `vote` (mac.selection_vote): vote x aggregator score /
// selection_temperature + retriever score / retriever_temperature (each the temperature its
// contrastive loss was trained with); no collective.
Retrieved select_among(Aggregator& aggregator, const at::Tensor& z0, const Retrieved& found, int64_t top_k,
                       double selection_temperature, double retriever_temperature, double vote);

}  // namespace engram::mac
