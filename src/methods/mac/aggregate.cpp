#include "methods/mac/aggregate.h"

#include <algorithm>

#include <torch/torch.h>

#include "core/error.h"
#include "dist/communicator.h"

namespace engram::mac {

int64_t Memory::entries() const { return rows.size(1); }

namespace {

at::Tensor valid_or_all(const Memory& m) {
  return m.valid.defined() ? m.valid.to(torch::kBool)
                           : torch::ones({1, m.entries()}, torch::TensorOptions().dtype(torch::kBool));
}

// One reduction level: groups of `group_size` consecutive entries -> one pseudo-entry each.
Memory reduce_level(Aggregator& aggregator, const at::Tensor& z0, const Memory& memory, int64_t group_size,
                    AggregationStats* stats, int64_t max_elements, Carry carry) {
  const int64_t Bq = z0.size(0), T = memory.rows.size(2), d = memory.rows.size(3);
  const int64_t n = memory.entries();
  const int64_t groups = (n + group_size - 1) / group_size;
  const int64_t padded = groups * group_size;
  at::Tensor rows = memory.rows, valid = valid_or_all(memory);
  if (padded > n) {  // the last group is short: pad it with invalid entries
    rows = torch::cat({rows, torch::zeros({rows.size(0), padded - n, T, d}, rows.options())}, 1);
    valid = torch::cat({valid, torch::zeros({valid.size(0), padded - n}, valid.options())}, 1);
  }
  // [B, G, M*T, d] memory per group; token mask [B, G, M*T].
  at::Tensor grouped = rows.reshape({rows.size(0), groups, group_size * T, d});
  at::Tensor token_valid = valid.reshape({valid.size(0), groups, group_size, 1})
                               .expand({valid.size(0), groups, group_size, T})
                               .reshape({valid.size(0), groups, group_size * T});
  at::Tensor group_valid = valid.reshape({valid.size(0), groups, group_size}).any(-1).expand({Bq, groups});
  at::Tensor queries = z0.unsqueeze(1);  // [Bq, 1, T, d] against every group
  const int64_t per_group = std::max<int64_t>(1, Bq * group_size * T);
  const int64_t chunk = std::max<int64_t>(1, max_elements / per_group);
  std::vector<at::Tensor> outputs;
  for (int64_t g = 0; g < groups; g += chunk) {
    const int64_t count = std::min(chunk, groups - g);
    if (carry == Carry::Latent) {
      outputs.push_back(aggregator(queries, grouped.narrow(1, g, count), token_valid.narrow(1, g, count)));
      continue;
    }
    // Carry::Summary: the group's entries mixed by the final block's attention on each of them.
    std::vector<at::Tensor> attention;
    aggregator->forward(queries, grouped.narrow(1, g, count), token_valid.narrow(1, g, count), &attention);
    at::Tensor weights = attention.back();  // [Bq, count, H, T, M T]
    at::Tensor per_entry = weights.reshape({Bq, count, weights.size(2), T, group_size, T}).sum(-1).mean({2, 3});
    at::Tensor members =
        rows.narrow(1, g * group_size, count * group_size).reshape({rows.size(0), count, group_size, T, d});
    outputs.push_back((per_entry.unsqueeze(-1).unsqueeze(-1) * members).sum(2));  // [Bq, count, T, d]
  }
  if (stats) stats->calls += Bq * groups;
  return Memory{torch::cat(outputs, 1), group_valid.contiguous()};  // [Bq, G, T, d]
}

}  // namespace

namespace {

Memory slice(const Memory& m, int64_t begin, int64_t count) {
  return Memory{m.rows.narrow(1, begin, count), m.valid.defined() ? m.valid.narrow(1, begin, count) : at::Tensor()};
}

// Appends b's entries to a (per question, [Bq, ...]).
void append(Memory& a, const Memory& b) {
  if (!a.rows.defined()) {
    a = b;
    return;
  }
  a.rows = torch::cat({a.rows, b.rows}, 1);
  a.valid = torch::cat({a.valid, b.valid}, 1);
}

}  // namespace

at::Tensor attention_per_entry(const at::Tensor& weights, int64_t T) {
  ENGRAM_CHECK(weights.dim() == 4 && weights.size(-1) % T == 0, "attention weights must be [B, H, Tq, N T]");
  return weights.reshape({weights.size(0), weights.size(1), weights.size(2), weights.size(3) / T, T}).sum(-1);
}

at::Tensor attention_on_entry(const at::Tensor& weights, const at::Tensor& entry, int64_t T) {
  ENGRAM_CHECK(entry.dim() == 1 && entry.size(0) == weights.size(0), "attention_on_entry: entry must be [B]");
  at::Tensor per_entry = attention_per_entry(weights, T);  // [B, H, Tq, N]
  const int64_t B = weights.size(0), H = weights.size(1), Tq = weights.size(2);
  at::Tensor index = entry.to(torch::kLong).view({B, 1, 1, 1}).expand({B, H, Tq, 1});
  return per_entry.gather(-1, index).squeeze(-1);
}

Memory reduce_memory(Aggregator& aggregator, const at::Tensor& z0, Memory memory, int64_t group_size,
                     AggregationStats* stats, int64_t max_elements, Carry carry) {
  ENGRAM_CHECK(group_size >= 2, "reduce_memory: group size must be at least 2");
  ENGRAM_CHECK(memory.rows.dim() == 4, "reduce_memory: rows must be [B, N, T, d]");
  const int64_t n = memory.entries();
  if (n <= group_size) return memory;
  // The levels the reduction needs: n_0 = n, n_{k+1} = ceil(n_k / M), until n_K <= M.
  int64_t levels = 0;
  for (int64_t count = n; count > group_size; count = (count + group_size - 1) / group_size) ++levels;
  if (stats) stats->levels += levels;
  // Streamed: the bank goes through level 0 a chunk of whole groups at a time, and every level
  // passes its groups up as soon as they are complete, so each level holds fewer than M pending
  // entries (plus one chunk's output) whatever N is. The groups are the same consecutive groups
  // as level-by-level reduction.
  const int64_t Bq = z0.size(0), T = memory.rows.size(2);
  const int64_t chunk_groups = std::max<int64_t>(1, max_elements / std::max<int64_t>(1, Bq * group_size * T));
  std::vector<Memory> pending(static_cast<size_t>(levels + 1));  // pending[k]: entries of level k (k >= 1)
  auto push_up = [&](int64_t level, bool flush) {
    for (int64_t k = level; k < levels; ++k) {
      Memory& here = pending[static_cast<size_t>(k)];
      if (!here.rows.defined()) return;
      const int64_t ready = flush ? here.entries() : here.entries() / group_size * group_size;
      if (ready == 0) continue;
      append(pending[static_cast<size_t>(k + 1)], reduce_level(aggregator, z0, slice(here, 0, ready), group_size, stats,
                                                              max_elements, carry));
      here = here.entries() > ready ? Memory{here.rows.narrow(1, ready, here.entries() - ready).clone(),
                                             here.valid.narrow(1, ready, here.entries() - ready).clone()}
                                    : Memory{};
    }
  };
  for (int64_t begin = 0; begin < n; begin += chunk_groups * group_size) {
    const int64_t count = std::min(chunk_groups * group_size, n - begin);
    append(pending[1],
           reduce_level(aggregator, z0, slice(memory, begin, count), group_size, stats, max_elements, carry));
    push_up(1, false);
  }
  push_up(1, true);
  return pending[static_cast<size_t>(levels)];
}

at::Tensor aggregate(Aggregator& aggregator, const at::Tensor& z0, const Memory& memory, AggregationStats* stats,
                     std::vector<at::Tensor>* attention) {
  const int64_t Bm = memory.rows.size(0), n = memory.entries(), T = memory.rows.size(2), d = memory.rows.size(3);
  at::Tensor flat = memory.rows.reshape({Bm, n * T, d});
  at::Tensor token_valid;
  if (memory.valid.defined()) {
    at::Tensor v = memory.valid.to(torch::kBool);
    token_valid = v.unsqueeze(-1).expand({v.size(0), n, T}).reshape({v.size(0), n * T});
  }
  if (stats) stats->calls += z0.size(0);
  return aggregator->forward(z0, flat, token_valid, attention);
}

at::Tensor aggregate_hierarchical(Aggregator& aggregator, const at::Tensor& z0, Memory memory, int64_t group_size,
                                  AggregationStats* stats, std::vector<at::Tensor>* attention, Carry carry) {
  return aggregate(aggregator, z0,
                   reduce_memory(aggregator, z0, std::move(memory), group_size, stats, kMaxElements, carry), stats,
                   attention);
}

at::Tensor distributed_aggregate(Aggregator& aggregator, const at::Tensor& z0, Memory shard, int64_t group_size,
                                 dist::Communicator& comm, AggregationStats* stats, std::vector<at::Tensor>* attention,
                                 Carry carry) {
  const int64_t Bq = z0.size(0), T = z0.size(1), d = z0.size(2);
  Memory local = reduce_memory(aggregator, z0, std::move(shard), group_size, stats, kMaxElements, carry);
  if (comm.world_size() == 1) return aggregate(aggregator, z0, local, stats, attention);

  // Every rank contributes the same shape: [B, K, T, d] with K the largest reduced size, and
  // B = 1 while no rank has reduced its shard (the rows are then shared by every question, so
  // flat aggregation moves each row once, not once per question), else B = Bq.
  at::Tensor shape = torch::tensor({local.entries(), local.rows.size(0) > 1 ? int64_t{1} : int64_t{0}}, torch::kInt64);
  comm.all_reduce(shape, dist::ReduceOp::Max);
  const int64_t K = shape[0].item<int64_t>();
  const int64_t B = shape[1].item<int64_t>() ? Bq : 1;
  if (K == 0) core::fail("the memory bank is empty: nothing to aggregate");
  at::Tensor rows = local.rows.expand({B, local.entries(), T, d});
  at::Tensor valid = valid_or_all(local).expand({Bq, local.entries()}).to(torch::kFloat32);
  if (local.entries() < K) {
    rows = torch::cat({rows, torch::zeros({B, K - local.entries(), T, d}, rows.options())}, 1);
    valid = torch::cat({valid, torch::zeros({Bq, K - local.entries()}, valid.options())}, 1);
  }
  at::Tensor all_rows = comm.all_gather(rows.contiguous());    // [W, B, K, T, d]
  at::Tensor all_valid = comm.all_gather(valid.contiguous());  // [W, Bq, K]
  Memory gathered{all_rows.permute({1, 0, 2, 3, 4}).reshape({B, -1, T, d}),
                  all_valid.permute({1, 0, 2}).reshape({Bq, -1}) > 0.5};
  // Drop gathered entries that are invalid for every question (padding of smaller shards), so
  // the next level groups real entries only.
  at::Tensor keep = gathered.valid.any(0).nonzero().squeeze(1);
  gathered.rows = gathered.rows.index_select(1, keep);
  gathered.valid = gathered.valid.index_select(1, keep);
  return aggregate_hierarchical(aggregator, z0, std::move(gathered), group_size, stats, attention, carry);
}

}  // namespace engram::mac
