#include "model/linear.h"

#include <cmath>

#include <torch/torch.h>

#include "core/error.h"

namespace engram::model {

LinearImpl::LinearImpl(int64_t in_features_, int64_t out_features_, bool with_bias)
    : in_features(in_features_), out_features(out_features_) {
  ENGRAM_CHECK(in_features > 0 && out_features > 0, "bad linear shape {}x{}", out_features,
               in_features);
  weight = register_parameter("weight", torch::empty({out_features, in_features}));
  if (with_bias) bias = register_parameter("bias", torch::empty({out_features}));
  reset_parameters();
}

void LinearImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
    bias.uniform_(-bound, bound);
  }
}

at::Tensor LinearImpl::forward(const at::Tensor& x) {
  // [..., in] @ [in, out] + b: at::linear folds the leading dims into one addmm where it can.
  at::Tensor y = at::linear(x, weight, bias);
  if (lora_rank_ > 0 && !merged_) {
    at::Tensor xa = lora_dropout_ > 0.0 ? at::dropout(x, lora_dropout_, is_training()) : x;
    // [..., in] -> [..., r] -> [..., out]
    y = y + at::linear(at::linear(xa, lora_A), lora_B) * lora_scale_;
  }
  return y;
}

void LinearImpl::add_lora(int64_t rank, double alpha, double dropout) {
  ENGRAM_CHECK(rank > 0, "LoRA rank must be positive, got {}", rank);
  ENGRAM_CHECK(dropout >= 0.0 && dropout < 1.0, "LoRA dropout must be in [0, 1), got {}", dropout);
  if (lora_rank_ == 0) {  // remember the flags of the base weights (restored by remove_lora)
    weight_requires_grad_ = weight.requires_grad();
    bias_requires_grad_ = bias.defined() && bias.requires_grad();
  } else {
    remove_lora();  // fresh adapter (PEFT's update_layer); a merged one stays in W
  }
  auto opts = weight.options().requires_grad(false);
  at::Tensor a = torch::empty({rank, in_features}, opts);
  at::Tensor b = torch::zeros({out_features, rank}, opts);
  {
    torch::NoGradGuard no_grad;
    torch::nn::init::kaiming_uniform_(a, std::sqrt(5.0));
  }
  auto holder_a = std::make_shared<torch::nn::Module>("LoraA");
  auto holder_b = std::make_shared<torch::nn::Module>("LoraB");
  lora_A = holder_a->register_parameter("weight", a);
  lora_B = holder_b->register_parameter("weight", b);
  register_module("lora_A", holder_a);
  register_module("lora_B", holder_b);
  if (!is_training()) {
    holder_a->eval();
    holder_b->eval();
  }
  weight.requires_grad_(false);
  if (bias.defined()) bias.requires_grad_(false);
  lora_rank_ = rank;
  lora_scale_ = alpha / static_cast<double>(rank);
  lora_dropout_ = dropout;
  merged_ = false;
}

at::Tensor LinearImpl::delta_weight() const {
  return at::mm(lora_B, lora_A) * lora_scale_;  // [out, r] @ [r, in]
}

void LinearImpl::merge() {
  if (lora_rank_ == 0 || merged_) return;
  torch::NoGradGuard no_grad;
  weight.add_(delta_weight());
  merged_ = true;
}

void LinearImpl::unmerge() {
  if (lora_rank_ == 0 || !merged_) return;
  torch::NoGradGuard no_grad;
  weight.sub_(delta_weight());
  merged_ = false;
}

void LinearImpl::remove_lora() {
  if (lora_rank_ == 0) return;
  unregister_module("lora_A");
  unregister_module("lora_B");
  lora_A = at::Tensor();
  lora_B = at::Tensor();
  lora_rank_ = 0;
  lora_scale_ = 0.0;
  lora_dropout_ = 0.0;
  merged_ = false;
  weight.requires_grad_(weight_requires_grad_);
  if (bias.defined()) bias.requires_grad_(bias_requires_grad_);
}

}  // namespace engram::model
