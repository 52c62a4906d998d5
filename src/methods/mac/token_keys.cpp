#include "methods/mac/token_keys.h"

#include <torch/torch.h>

#include "core/error.h"

namespace engram::mac {

TokenKeysImpl::TokenKeysImpl(int64_t vocab, int64_t dim) : vocab_(vocab), dim_(dim) {
  ENGRAM_CHECK(vocab > 0 && dim > 0, "TokenKeys: vocab and dim must be positive");
  // Random unit-scale directions: before any training, two texts' keys already match in
  // proportion to the (weighted) tokens they share.
  embedding_ = register_parameter("embedding", torch::randn({vocab, dim}) / kLearningScale);
  document_weight_ = register_parameter("document_weight", torch::zeros({vocab}));
  question_weight_ = register_parameter("question_weight", torch::zeros({vocab}));
}

at::Tensor TokenKeysImpl::key(const at::Tensor& side_weight, const at::Tensor& ids, const at::Tensor& mask) {
  ENGRAM_CHECK(ids.dim() == 2 && mask.sizes() == ids.sizes(), "TokenKeys: ids and mask must be [B, S]");
  if (ids.numel() > 0)
    ENGRAM_CHECK(ids.min().item<int64_t>() >= 0 && ids.max().item<int64_t>() < vocab_,
                 "TokenKeys: token ids must be in [0, {})", vocab_);
  at::Tensor weights = torch::softplus(side_weight * kLearningScale).index_select(0, ids.flatten()).view(ids.sizes());
  weights = weights * mask.to(weights.scalar_type());
  namespace F = torch::nn::functional;
  // A weighted sum of embedding rows per text, without a [B, S, dim] copy.
  at::Tensor sums = F::embedding_bag(ids.to(torch::kLong), embedding_ * kLearningScale,
                                     F::EmbeddingBagFuncOptions().mode(torch::kSum).per_sample_weights(weights));
  return F::normalize(sums, F::NormalizeFuncOptions().dim(1).eps(1e-12));
}

at::Tensor TokenKeysImpl::document_keys(const at::Tensor& ids, const at::Tensor& mask) {
  return key(document_weight_, ids, mask);
}
at::Tensor TokenKeysImpl::question_keys(const at::Tensor& ids, const at::Tensor& mask) {
  return key(question_weight_, ids, mask);
}

}  // namespace engram::mac
