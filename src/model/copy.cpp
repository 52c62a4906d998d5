#include "model/copy.h"

#include <torch/torch.h>

#include "core/error.h"

namespace engram::model {

Decoder trainable_copy(const Decoder& source) {
  Decoder copy(source->config());
  torch::NoGradGuard no_grad;
  auto weights = source->named_parameters();
  for (auto& p : copy->named_parameters()) p.value().copy_(weights[p.key()]);
  auto buffers = source->named_buffers();
  for (auto& b : copy->named_buffers()) b.value().copy_(buffers[b.key()]);
  copy->train(source->is_training());
  return copy;
}

Decoder frozen_copy(const Decoder& source) {
  Decoder copy = trainable_copy(source);
  for (auto& p : copy->parameters()) p.set_requires_grad(false);
  copy->eval();
  return copy;
}

std::vector<std::pair<std::string, at::Tensor>> named_weights(const Decoder& model) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& p : model->named_parameters()) out.emplace_back(p.key(), p.value());
  return out;
}

std::vector<at::Tensor> weights_of(const Decoder& model) {
  std::vector<at::Tensor> out;
  for (const auto& p : model->parameters()) out.push_back(p.detach().clone());
  return out;
}

void load_weights(Decoder& model, const std::vector<at::Tensor>& weights) {
  torch::NoGradGuard no_grad;
  auto params = model->parameters();
  ENGRAM_CHECK(params.size() == weights.size(), "load_weights: {} tensors for {} parameters", weights.size(), params.size());
  for (size_t i = 0; i < params.size(); ++i) params[i].copy_(weights[i]);
}

}  // namespace engram::model
