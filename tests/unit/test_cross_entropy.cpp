// train::token_cross_entropy against LibTorch's cross_entropy: the same mean loss and the same
// gradient, with ignored labels, in float32 and from bf16 logits.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "data/collate.h"
#include "train/cross_entropy.h"

using namespace engram;

namespace {

struct LossAndGrad {
  at::Tensor loss, grad;
};

template <typename F>
LossAndGrad run(const at::Tensor& logits_in, F&& loss_fn) {
  at::Tensor logits = logits_in.detach().clone().requires_grad_(true);
  at::Tensor loss = loss_fn(logits);
  (loss * 3.0).backward();  // a non-unit upstream gradient
  return {loss.detach(), logits.grad()};
}

at::Tensor reference(const at::Tensor& logits, const at::Tensor& labels) {
  return torch::nn::functional::cross_entropy(
      logits.to(torch::kFloat).reshape({-1, logits.size(-1)}), labels.reshape(-1),
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(data::kIgnoreLabel));
}

}  // namespace

TEST(TokenCrossEntropy, MatchesLibTorchWithIgnoredLabels) {
  torch::manual_seed(3);
  at::Tensor logits = torch::randn({2, 5, 11}) * 4.0;
  at::Tensor labels = torch::randint(11, {2, 5}, torch::kLong);
  labels.index_put_({0, 1}, data::kIgnoreLabel);
  labels.index_put_({1, 4}, data::kIgnoreLabel);
  auto ours = run(logits, [&](const at::Tensor& x) { return train::token_cross_entropy(x, labels); });
  auto theirs = run(logits, [&](const at::Tensor& x) { return reference(x, labels); });
  EXPECT_NEAR(ours.loss.item<double>(), theirs.loss.item<double>(), 1e-5);
  EXPECT_TRUE(torch::allclose(ours.grad, theirs.grad, 1e-5, 1e-6));
  // Ignored positions get no gradient at all.
  EXPECT_EQ(ours.grad[0][1].abs().max().item<float>(), 0.0f);
  EXPECT_EQ(ours.grad[1][4].abs().max().item<float>(), 0.0f);
}

TEST(TokenCrossEntropy, KnownValueOnUniformLogits) {
  // Uniform logits over V classes: the loss is log V whatever the labels.
  at::Tensor logits = torch::zeros({1, 3, 8});
  at::Tensor labels = torch::tensor({{0, 7, 3}}, torch::kLong);
  EXPECT_NEAR(train::token_cross_entropy(logits, labels).item<double>(), std::log(8.0), 1e-6);
}

TEST(TokenCrossEntropy, Bf16LogitsGetBf16GradientOfTheFloatLoss) {
  torch::manual_seed(4);
  at::Tensor logits = (torch::randn({3, 4, 16}) * 2.0).to(torch::kBFloat16);
  at::Tensor labels = torch::randint(16, {3, 4}, torch::kLong);
  auto ours = run(logits, [&](const at::Tensor& x) { return train::token_cross_entropy(x, labels); });
  auto theirs = run(logits, [&](const at::Tensor& x) { return reference(x, labels); });
  EXPECT_EQ(ours.loss.scalar_type(), torch::kFloat);
  EXPECT_EQ(ours.grad.scalar_type(), torch::kBFloat16);
  EXPECT_NEAR(ours.loss.item<double>(), theirs.loss.item<double>(), 1e-5);
  EXPECT_TRUE(torch::allclose(ours.grad.to(torch::kFloat), theirs.grad.to(torch::kFloat), 1e-2, 1e-3));
}

TEST(TokenCrossEntropy, WithoutGradientTheSameLossAndABadLabelIsAnError) {
  torch::manual_seed(5);
  at::Tensor logits = torch::randn({2, 6, 9}) * 3.0;
  at::Tensor labels = torch::randint(9, {2, 6}, torch::kLong);
  labels.index_put_({1, 2}, data::kIgnoreLabel);
  {
    torch::NoGradGuard no_grad;  // evaluation: no gradient rows are kept
    EXPECT_NEAR(train::token_cross_entropy(logits, labels).item<double>(), reference(logits, labels).item<double>(), 1e-5);
    EXPECT_NEAR(train::token_cross_entropy(logits.to(torch::kBFloat16), labels).item<double>(),
                reference(logits.to(torch::kBFloat16), labels).item<double>(), 1e-5);
  }
  labels.index_put_({0, 0}, 9);  // outside the vocabulary
  EXPECT_ANY_THROW(train::token_cross_entropy(logits, labels));
  // Nothing counted: NaN, as LibTorch's mean over no rows.
  at::Tensor none = torch::full({1, 3}, data::kIgnoreLabel, torch::kLong);
  EXPECT_TRUE(std::isnan(train::token_cross_entropy(torch::randn({1, 3, 4}), none).item<double>()));
}
