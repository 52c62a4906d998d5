// model::causal_attention (the decoder's fused CPU attention): the same values and gradients as
// the op-by-op form (scores, additive causal/padding bias, softmax, weighted values) computed in
// double, across row blocks (T > 64), with prefix/cached keys before the new tokens, padding on
// either side, rotary positions applied inside, bf16 inputs, and 1 or 2 threads.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "model/causal_attention.h"

namespace {

using engram::model::causal_attention;

// Rotary tables [Bp, 1, T, hd] for positions [Bp, T] (rotate-half convention), and the rotation.
std::pair<at::Tensor, at::Tensor> rope_tables(const at::Tensor& positions, int64_t hd) {
  at::Tensor inv_freq = at::pow(10000.0, -at::arange(0, hd, 2, torch::kDouble) / static_cast<double>(hd));
  at::Tensor freqs = positions.to(torch::kDouble).unsqueeze(-1) * inv_freq;
  at::Tensor emb = at::cat({freqs, freqs}, -1).unsqueeze(1);
  return {emb.cos(), emb.sin()};
}
at::Tensor rotate(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos + rotated * sin;
}

// The op-by-op reference in double: [B, T, H, hd].
at::Tensor reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_real,
                     double scale) {
  const int64_t B = q.size(0), T = q.size(2), S = k.size(2);
  at::Tensor query_at = at::arange(S - T, S, torch::kLong).view({T, 1});
  at::Tensor key_at = at::arange(S, torch::kLong).view({1, S});
  at::Tensor allowed = key_at.le(query_at).view({1, 1, T, S});
  if (key_real.defined())
    allowed = allowed.logical_and(key_real.to(torch::kBool).view({B, 1, 1, S}).logical_or(key_at.eq(query_at)));
  at::Tensor bias = at::zeros(allowed.sizes(), torch::kDouble)
                        .masked_fill_(allowed.logical_not(), -std::numeric_limits<double>::infinity());
  at::Tensor scores = at::matmul(q.to(torch::kDouble), k.to(torch::kDouble).transpose(-1, -2)) * scale + bias;
  return at::matmul(at::softmax(scores, -1), v.to(torch::kDouble)).transpose(1, 2).contiguous();
}

struct Grads {
  at::Tensor out, dq, dk, dv;
};

template <typename F>
Grads run(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in, const at::Tensor& up, F&& attention) {
  at::Tensor q = q_in.detach().requires_grad_(true), k = k_in.detach().requires_grad_(true),
             v = v_in.detach().requires_grad_(true);
  at::Tensor out = attention(q, k, v);
  (out.to(torch::kDouble) * up).sum().backward();
  return {out.detach(), q.grad(), k.grad(), v.grad()};
}

void expect_close(const at::Tensor& ours, const at::Tensor& ref, double tol, const char* what) {
  ASSERT_EQ(ours.sizes(), ref.sizes()) << what;
  const double err = (ours.to(torch::kDouble) - ref).abs().max().item<double>();
  EXPECT_LT(err, tol * (1.0 + ref.abs().max().item<double>())) << what;
}

// Values and the three gradients of causal_attention against the reference.
void expect_like_reference(int64_t B, int64_t H, int64_t T, int64_t S, int64_t hd, const at::Tensor& key_real) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  at::Tensor q = torch::randn({B, H, T, hd}) * 2.0, k = torch::randn({B, H, S, hd}) * 2.0, v = torch::randn({B, H, S, hd});
  at::Tensor up = torch::randn({B, T, H, hd}, torch::kDouble);
  Grads ours = run(q, k, v, up, [&](auto& a, auto& b, auto& c) { return causal_attention(a, b, c, key_real, scale); });
  Grads ref = run(q.to(torch::kDouble), k.to(torch::kDouble), v.to(torch::kDouble), up,
                  [&](auto& a, auto& b, auto& c) { return reference(a, b, c, key_real, scale); });
  EXPECT_EQ(ours.out.scalar_type(), torch::kFloat);
  expect_close(ours.out, ref.out, 1e-5, "out");
  expect_close(ours.dq, ref.dq, 1e-5, "dq");
  expect_close(ours.dk, ref.dk, 1e-5, "dk");
  expect_close(ours.dv, ref.dv, 1e-5, "dv");
}

}  // namespace

TEST(CausalAttention, EqualsTheOpByOpFormAcrossRowBlocks) {
  torch::manual_seed(5);
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    expect_like_reference(2, 3, 150, 150, 8, {});  // 3 row blocks, the last one partial
    expect_like_reference(1, 2, 1, 1, 4, {});      // one token
  }
  at::set_num_threads(1);
}

TEST(CausalAttention, KeysBeforeTheNewTokensAreSeenByEveryQuery) {
  torch::manual_seed(6);
  expect_like_reference(2, 2, 70, 75, 8, {});  // 5 prefix or cached keys
  expect_like_reference(1, 1, 1, 9, 4, {});    // one new token after 8 cached: sees all 9
}

TEST(CausalAttention, PaddingKeysAreHiddenButAPaddingQuerySeesItself) {
  torch::manual_seed(7);
  // Row 0 padded on the right (training), row 1 on the left (generation), row 2 not at all.
  const int64_t T = 67;
  at::Tensor real = torch::ones({3, T}, torch::kByte);
  real[0].narrow(0, 60, 7).zero_();
  real[1].narrow(0, 0, 5).zero_();
  expect_like_reference(3, 2, T, T, 8, real);
  // With 4 prefix keys in front, always real.
  at::Tensor with_prefix = at::cat({torch::ones({3, 4}, torch::kByte), real}, 1);
  expect_like_reference(3, 2, T, T + 4, 8, with_prefix);
  // A row whose keys are all padding: each query sees only itself, so the output is its own value.
  at::Tensor none = torch::zeros({1, 5}, torch::kByte);
  at::Tensor q = torch::randn({1, 1, 5, 4}), k = torch::randn({1, 1, 5, 4}), v = torch::randn({1, 1, 5, 4});
  at::Tensor out = causal_attention(q, k, v, none, 0.5);
  EXPECT_TRUE(torch::allclose(out.squeeze(2), v.squeeze(1), 1e-6, 1e-6));
}

TEST(CausalAttention, RotaryPositionsInsideEqualRotatingFirst) {
  torch::manual_seed(8);
  const int64_t B = 2, H = 2, T = 66, P = 3, hd = 8;
  // Per-row positions (left padding shifts them), prefix keys already rotated, as the decoder has them.
  at::Tensor positions = at::stack({at::arange(P, P + T, torch::kLong), (at::arange(T, torch::kLong) - 2).clamp_min(0) + P});
  auto tables = rope_tables(positions, hd);
  at::Tensor q = torch::randn({B, H, T, hd}), k = torch::randn({B, H, P + T, hd}), v = torch::randn({B, H, P + T, hd});
  at::Tensor up = torch::randn({B, T, H, hd}, torch::kDouble);
  Grads inside = run(q, k, v, up, [&](auto& a, auto& b, auto& c) {
    return causal_attention(a, b, c, {}, 0.3, tables.first.to(torch::kFloat), tables.second.to(torch::kFloat));
  });
  Grads first = run(q.to(torch::kDouble), k.to(torch::kDouble), v.to(torch::kDouble), up, [&](auto& a, auto& b, auto& c) {
    at::Tensor keys = at::cat({b.narrow(2, 0, P), rotate(b.narrow(2, P, T), tables.first, tables.second)}, 2);
    return reference(rotate(a, tables.first, tables.second), keys, c, {}, 0.3);
  });
  expect_close(inside.out, first.out, 1e-5, "out");
  expect_close(inside.dq, first.dq, 1e-5, "dq");
  expect_close(inside.dk, first.dk, 1e-5, "dk");
  expect_close(inside.dv, first.dv, 1e-5, "dv");
}

TEST(CausalAttention, Bf16InputsComputeInFloat32AndGetBf16Gradients) {
  torch::manual_seed(9);
  at::Tensor q = torch::randn({2, 2, 40, 8}).to(torch::kBFloat16), k = torch::randn({2, 2, 40, 8}).to(torch::kBFloat16),
             v = torch::randn({2, 2, 40, 8}).to(torch::kBFloat16);
  at::Tensor up = torch::randn({2, 40, 2, 8}, torch::kDouble);
  Grads ours = run(q, k, v, up, [&](auto& a, auto& b, auto& c) { return causal_attention(a, b, c, {}, 0.35); });
  // The reference on the same (bf16-rounded) inputs in double: only the gradients' rounding differs.
  Grads ref = run(q.to(torch::kDouble), k.to(torch::kDouble), v.to(torch::kDouble), up,
                  [&](auto& a, auto& b, auto& c) { return reference(a, b, c, {}, 0.35); });
  EXPECT_EQ(ours.out.scalar_type(), torch::kFloat);
  EXPECT_EQ(ours.dq.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(ours.dk.scalar_type(), torch::kBFloat16);
  expect_close(ours.out, ref.out, 1e-5, "out");
  expect_close(ours.dq, ref.dq, 1e-2, "dq");
  expect_close(ours.dv, ref.dv, 1e-2, "dv");
}
