// model::batched_matmul (the attention products of every model): the same values and gradients as
// at::matmul on the layouts attention hands it, without copying views, on one thread and several.
#include <gtest/gtest.h>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "model/batched_matmul.h"
#include "train/autocast.h"

namespace {

using engram::model::batched_matmul;

// Checks values and both gradients of batched_matmul(a, b) against at::matmul's.
void expect_like_matmul(const at::Tensor& a_in, const at::Tensor& b_in) {
  at::Tensor a = a_in.detach().requires_grad_(true), b = b_in.detach().requires_grad_(true);
  at::Tensor a_ref = a_in.detach().requires_grad_(true), b_ref = b_in.detach().requires_grad_(true);
  at::Tensor out = batched_matmul(a, b);
  at::Tensor ref = at::matmul(a_ref, b_ref);
  ASSERT_EQ(out.sizes(), ref.sizes());
  EXPECT_TRUE(torch::allclose(out, ref, 1e-5, 1e-5)) << (out - ref).abs().max();
  at::Tensor up = torch::randn(ref.sizes());
  (out * up).sum().backward();
  (ref * up).sum().backward();
  EXPECT_TRUE(torch::allclose(a.grad(), a_ref.grad(), 1e-5, 1e-5)) << (a.grad() - a_ref.grad()).abs().max();
  EXPECT_TRUE(torch::allclose(b.grad(), b_ref.grad(), 1e-5, 1e-5)) << (b.grad() - b_ref.grad()).abs().max();
}

}  // namespace

TEST(BatchedMatmul, EqualsMatmulOnAttentionLayouts) {
  torch::manual_seed(3);
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    // Contiguous [B, H, T, hd] x [B, H, hd, S].
    expect_like_matmul(torch::randn({2, 3, 5, 4}), torch::randn({2, 3, 4, 6}));
    // q k^T with heads split from [B, T, H*hd] (non-contiguous batch dims) and k transposed.
    at::Tensor q = torch::randn({2, 7, 3 * 4}).view({2, 7, 3, 4}).transpose(1, 2);
    at::Tensor k = torch::randn({2, 9, 3 * 4}).view({2, 9, 3, 4}).transpose(1, 2);
    expect_like_matmul(q, k.transpose(-1, -2));
    // weights x v, with v a head view.
    expect_like_matmul(torch::softmax(torch::randn({2, 3, 7, 9}), -1), k);
    // MAC's per-position weights: x [B, n, in] transposed to [n, B, in] times [n, in, out].
    expect_like_matmul(torch::randn({5, 8, 6}).transpose(0, 1), torch::randn({8, 6, 3}));
    // Many small products (MAC's 64 x 8 x 8 x 32), spread across threads.
    expect_like_matmul(torch::randn({64, 8, 8}), torch::randn({64, 8, 32}));
    // Single rows and columns, and a product whose operand is neither layout BLAS reads (copied).
    expect_like_matmul(torch::randn({4, 1, 5}), torch::randn({4, 5, 1}));
    expect_like_matmul(torch::randn({3, 4, 10}).slice(2, 0, 10, 2), torch::randn({3, 5, 2}));
  }
  at::set_num_threads(1);
}

TEST(BatchedMatmul, EmptyAndZeroInnerSizes) {
  EXPECT_EQ(batched_matmul(torch::randn({0, 3, 4}), torch::randn({0, 4, 2})).sizes(), (at::IntArrayRef{0, 3, 2}));
  at::Tensor zero_inner = batched_matmul(torch::randn({2, 3, 0}), torch::randn({2, 0, 5}));
  EXPECT_EQ(zero_inner.sizes(), (at::IntArrayRef{2, 3, 5}));
  EXPECT_TRUE(zero_inner.eq(0).all().item<bool>());
}

TEST(BatchedMatmul, OtherCasesAreAtMatmuls) {
  // Broadcast batch dims, double, and bf16 under autocast give exactly at::matmul's results.
  at::Tensor a = torch::randn({2, 3, 4, 5}), b = torch::randn({3, 5, 6});
  EXPECT_TRUE(batched_matmul(a, b).equal(at::matmul(a, b)));
  at::Tensor ad = a.to(at::kDouble), bd = torch::randn({2, 3, 5, 6}, at::kDouble);
  EXPECT_TRUE(batched_matmul(ad, bd).equal(at::matmul(ad, bd)));
  engram::train::Bf16Autocast autocast(true);
  at::Tensor bf = torch::randn({2, 3, 5, 6});
  EXPECT_EQ(batched_matmul(a, bf).scalar_type(), at::kBFloat16);
  // Mismatched inner sizes: at::matmul's own error.
  EXPECT_THROW(batched_matmul(torch::randn({2, 3, 4}), torch::randn({2, 5, 6})), c10::Error);
}
