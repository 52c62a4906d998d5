#pragma once
// A linear layer y = x W^T + b with an optional LoRA adapter (SELF-PARAM, PEFT semantics):
//   y = x W^T + b + scale * dropout(x) A^T B^T,   A [r, in], B [out, r], scale = alpha / r.
// A is Kaiming-uniform(a = sqrt 5) and B is zero, so adding an adapter leaves the output unchanged.
//
// Parameter names: weight [out, in], bias [out] (when asked for), and, with an adapter,
// lora_A.weight [r, in] and lora_B.weight [out, r] (held by two small child modules so that
// remove_lora() can drop them; torch::nn::Module cannot unregister a parameter).
//
// Freezing (as PEFT does): add_lora() sets requires_grad = false on weight and bias, so only A and
// B train. remove_lora() restores the flags they had before add_lora().
// merge():   W += scale * B A, the adapter path is then skipped (forward = x W^T + b).
// unmerge(): W -= scale * B A, the adapter path is active again.
#include <cstdint>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

namespace engram::model {

class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool bias = true);

  // x: [..., in] -> [..., out]
  at::Tensor forward(const at::Tensor& x);

  // PyTorch's default init: W Kaiming-uniform(a = sqrt 5), b U(-1/sqrt(in), 1/sqrt(in)).
  void reset_parameters();

  // Adds (or replaces, with a fresh A and B = 0) the adapter. rank > 0, dropout in [0, 1).
  void add_lora(int64_t rank, double alpha, double dropout = 0.0);
  void merge();        // no-op without an adapter or when merged
  void unmerge();      // no-op unless merged
  void remove_lora();  // drops A and B; a merged adapter stays in W
  bool has_lora() const { return lora_rank_ > 0; }
  bool lora_merged() const { return merged_; }
  int64_t lora_rank() const { return lora_rank_; }
  double lora_scale() const { return lora_scale_; }

  int64_t in_features, out_features;
  at::Tensor weight;          // [out, in]
  at::Tensor bias;            // [out] or undefined
  at::Tensor lora_A, lora_B;  // [r, in], [out, r]; undefined without an adapter

 private:
  at::Tensor delta_weight() const;  // scale * B A  [out, in]
  int64_t lora_rank_ = 0;
  double lora_scale_ = 0.0;
  double lora_dropout_ = 0.0;
  bool merged_ = false;
  bool weight_requires_grad_ = true, bias_requires_grad_ = true;  // before add_lora
};
TORCH_MODULE(Linear);

}  // namespace engram::model
