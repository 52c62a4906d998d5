#pragma once
// A small regression problem with dropout (so the random generator matters) for trainer tests:
// x [examples, inputs] -> y [examples, outputs] through Linear -> Tanh -> Dropout -> Linear.
#include <torch/torch.h>

#include "train/trainer.h"

namespace engram::checks {

struct RegressionProblem {
  torch::nn::Sequential model{nullptr};
  at::Tensor x, y;

  RegressionProblem(uint64_t seed, int64_t examples, int64_t inputs, int64_t hidden, int64_t outputs) {
    torch::manual_seed(seed);
    model = torch::nn::Sequential(torch::nn::Linear(inputs, hidden), torch::nn::Tanh(), torch::nn::Dropout(0.3),
                                  torch::nn::Linear(hidden, outputs));
    x = torch::randn({examples, inputs});
    y = torch::randn({examples, outputs});
  }
  std::vector<std::pair<std::string, at::Tensor>> parameters() {
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (const auto& item : model->named_parameters()) out.emplace_back(item.key(), item.value());
    return out;
  }
  train::LossFn loss() {
    return [this](const std::vector<int64_t>& indices) {
      at::Tensor index = torch::tensor(indices, torch::kLong);
      at::Tensor pred = model->forward(x.index_select(0, index));
      return train::MicroBatchLoss{torch::mse_loss(pred, y.index_select(0, index)),
                                   static_cast<int64_t>(indices.size()), {}};
    };
  }
};

}  // namespace engram::checks
