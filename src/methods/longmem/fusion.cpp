#include "methods/longmem/fusion.h"

#include <cmath>
#include <limits>

#include <torch/torch.h>

#include "core/error.h"

namespace engram::longmem {

at::Tensor fused_memory_attention(const FusedAttentionInputs& in) {
  ENGRAM_CHECK(in.q.dim() == 4 && in.k.sizes() == in.q.sizes() && in.v.sizes() == in.q.sizes(),
               "fused_memory_attention: q, k, v must be [B, H, T, d] alike");
  const int64_t t = in.q.size(2), d = in.q.size(3);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  const at::Tensor q = in.q * scale;
  // Local: causal, with the position bias; its own softmax.
  at::Tensor scores = torch::matmul(q, in.k.transpose(-1, -2));
  if (in.bias.defined()) scores = scores + in.bias;
  const at::Tensor future = torch::ones({t, t}, torch::kBool).triu(1);
  scores = scores.masked_fill(future, -std::numeric_limits<float>::infinity());
  at::Tensor local_weights = torch::softmax(scores, -1);
  if (in.training && in.local_dropout > 0)
    local_weights = torch::dropout(local_weights, in.local_dropout, /*train=*/true);
  const at::Tensor local = torch::matmul(local_weights, in.v);
  if (!in.memory_keys.defined()) return local;

  // Memory: query t against its own K retrieved tokens [B, H, T, K]; masked slots take no weight.
  const at::Tensor memory_q = in.memory_q.defined() ? in.memory_q * scale : q;
  at::Tensor mem_scores = torch::matmul(in.memory_keys, memory_q.unsqueeze(-1)).squeeze(-1);
  mem_scores = mem_scores.masked_fill(in.memory_valid.logical_not(), -std::numeric_limits<float>::infinity());
  const at::Tensor any = in.memory_valid.any(-1, /*keepdim=*/true);  // [B, H, T, 1]
  // Rows with no valid slot would be softmax over -inf only (NaN): give them zeros.
  const at::Tensor mem_weights = torch::softmax(mem_scores.masked_fill(any.logical_not(), 0.0), -1) * any;
  const at::Tensor memory = torch::matmul(mem_weights.unsqueeze(-2), in.memory_values).squeeze(-2);
  const at::Tensor s = torch::sigmoid(in.gate).view({1, -1, 1, 1}) * any.to(q.scalar_type());
  return (1 - s) * local + s * memory;
}

}  // namespace engram::longmem
