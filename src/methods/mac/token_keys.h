#pragma once
// Retrieval keys read from the texts' tokens (mac.retriever.keys: tokens): a learned bag of
// tokens, key(text) = normalise(sum over its tokens of weight_side(token) x embedding(token)),
// with one embedding table shared by documents and questions (a name written the same way in
// both maps to the same vectors) and one weight per token and side (what a document or a
// question says about everyone, its template words, learns a weight near zero).
//
// Why not keys from the summaries: the summaries serve reading and retrieval at once, and the
// two compete for them (README, MAC): with keys from the summaries, the retriever ranked the
// gold document of 1000 first for 41-56% of questions, while word counts alone (TF-IDF over the
// test texts) rank it first for every one. These keys cost a table lookup, so every training
// step scores fresh keys of many documents (no stale pool); the memory bank stores them beside
// the summaries.
#include <cstdint>

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

namespace engram::mac {

class TokenKeysImpl : public torch::nn::Module {
 public:
  TokenKeysImpl(int64_t vocab, int64_t dim);
  // ids [B, S] int64 (< vocab), mask [B, S] (1 real, 0 padding) -> keys [B, dim], unit length.
  at::Tensor document_keys(const at::Tensor& ids, const at::Tensor& mask);
  at::Tensor question_keys(const at::Tensor& ids, const at::Tensor& mask);
  int64_t dim() const { return dim_; }

  // The parameters enter the forward multiplied by this: the retriever shares MAC's optimizer
  // and learning rate (2.5e-4 on the quickstart), under which Adam moves a weight by about that
  // much a step; a table read through a factor of 10 learns 10 times faster.
  static constexpr double kLearningScale = 10.0;

 private:
  int64_t vocab_, dim_;
  at::Tensor embedding_;        // [vocab, dim]
  at::Tensor document_weight_;  // [vocab], through softplus
  at::Tensor question_weight_;  // [vocab]
  at::Tensor key(const at::Tensor& side_weight, const at::Tensor& ids, const at::Tensor& mask);
};
TORCH_MODULE(TokenKeys);

}  // namespace engram::mac
