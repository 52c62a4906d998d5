// LongMem's memory-fusion attention (specs/longmem.md 1.4, 5): without memory it is causal
// self-attention with the position bias; at g = 0 it is half local, half memory, each with its own
// softmax; masked memory slots take no weight; the gate learns.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "methods/longmem/fusion.h"

namespace engram::longmem {
namespace {

constexpr int64_t B = 2, H = 3, T = 5, D = 4, K = 6;

// Causal attention with a bias, written out row by row.
at::Tensor reference_local(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& bias) {
  at::Tensor out = torch::zeros_like(q);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < T; ++i) {
        at::Tensor s = torch::matmul(k[b][h].narrow(0, 0, i + 1), q[b][h][i]) / std::sqrt(double(D)) +
                       bias[h][i].narrow(0, 0, i + 1);
        out[b][h][i] = torch::matmul(torch::softmax(s, 0), v[b][h].narrow(0, 0, i + 1));
      }
  return out;
}

FusedAttentionInputs inputs() {
  torch::manual_seed(3);
  FusedAttentionInputs in;
  in.q = torch::randn({B, H, T, D});
  in.k = torch::randn({B, H, T, D});
  in.v = torch::randn({B, H, T, D});
  in.bias = torch::randn({H, T, T});
  in.gate = torch::zeros({H});
  return in;
}

TEST(LongMemFusion, WithoutMemoryItIsCausalAttentionWithTheBias) {
  FusedAttentionInputs in = inputs();
  const at::Tensor expected = reference_local(in.q, in.k, in.v, in.bias);
  EXPECT_TRUE(torch::allclose(fused_memory_attention(in), expected, 1e-5, 1e-5));
  // An empty memory (every slot masked) changes nothing: no gate factor either.
  in.memory_keys = torch::randn({B, H, T, K, D});
  in.memory_values = torch::randn({B, H, T, K, D});
  in.memory_valid = torch::zeros({B, H, T, K}, torch::kBool);
  EXPECT_TRUE(torch::allclose(fused_memory_attention(in), expected, 1e-5, 1e-5));
}

TEST(LongMemFusion, AtGateZeroHalfLocalHalfMemoryEachWithItsOwnSoftmax) {
  FusedAttentionInputs in = inputs();
  in.memory_keys = torch::randn({B, H, T, K, D});
  in.memory_values = torch::randn({B, H, T, K, D});
  in.memory_valid = torch::ones({B, H, T, K}, torch::kBool);
  in.memory_valid.narrow(3, 4, 2).fill_(false);          // the last two slots are empty ...
  in.memory_values.narrow(3, 4, 2).fill_(1e6);           // ... and must take no weight
  const at::Tensor local = reference_local(in.q, in.k, in.v, in.bias);
  at::Tensor memory = torch::zeros_like(in.q);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < T; ++i) {
        at::Tensor keys = in.memory_keys[b][h][i].narrow(0, 0, 4), values = in.memory_values[b][h][i].narrow(0, 0, 4);
        at::Tensor w = torch::softmax(torch::matmul(keys, in.q[b][h][i]) / std::sqrt(double(D)), 0);
        memory[b][h][i] = torch::matmul(w, values);
      }
  EXPECT_TRUE(torch::allclose(fused_memory_attention(in), 0.5 * local + 0.5 * memory, 1e-4, 1e-4));
  // g = 2 on head 1 only: that head leans to memory by sigmoid(2).
  in.gate = torch::tensor({0.0f, 2.0f, 0.0f});
  const double s = 1 / (1 + std::exp(-2.0));
  at::Tensor out = fused_memory_attention(in);
  EXPECT_TRUE(torch::allclose(out.select(1, 1), (1 - s) * local.select(1, 1) + s * memory.select(1, 1), 1e-4, 1e-4));
}

TEST(LongMemFusion, GradientsReachTheGateAndTheQueries) {
  FusedAttentionInputs in = inputs();
  in.q.set_requires_grad(true);
  in.gate.set_requires_grad(true);
  in.memory_keys = torch::randn({B, H, T, K, D});
  in.memory_values = torch::randn({B, H, T, K, D});
  in.memory_valid = torch::ones({B, H, T, K}, torch::kBool);
  fused_memory_attention(in).pow(2).sum().backward();
  EXPECT_GT(in.gate.grad().abs().sum().item<double>(), 0.0);
  EXPECT_TRUE(torch::isfinite(in.q.grad()).all().item<bool>());
}

}  // namespace
}  // namespace engram::longmem
