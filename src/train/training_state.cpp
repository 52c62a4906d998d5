#include "train/training_state.h"

#include <map>

#include <fmt/ranges.h>
#include <torch/torch.h>

#include "core/error.h"
#include "core/signals.h"
#include "dist/communicator.h"
#include "train/checkpoint.h"

namespace engram::train {
namespace {

// How libtorch's optimizers key their per-parameter state.
std::string optimizer_key(const at::Tensor& p) { return c10::guts::to_string(p.unsafeGetTensorImpl()); }

}  // namespace

at::Generator cpu_generator() { return at::detail::getDefaultCPUGenerator(); }

void save_adamw_state(const torch::optim::AdamW& optimizer, const NamedTensors& trainable, CheckpointData& data) {
  const auto& states = const_cast<torch::optim::AdamW&>(optimizer).state();
  for (const auto& [name, p] : trainable) {
    auto it = states.find(optimizer_key(p));
    if (it == states.end()) continue;  // no update yet
    auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
    data.optim.emplace_back(name + "/exp_avg", s.exp_avg());
    data.optim.emplace_back(name + "/exp_avg_sq", s.exp_avg_sq());
    data.optim.emplace_back(name + "/step", at::full({1}, s.step(), at::kLong));
  }
}

void load_adamw_state(torch::optim::AdamW& optimizer, const NamedTensors& trainable, const CheckpointData& data) {
  std::map<std::string, at::Tensor> optim(data.optim.begin(), data.optim.end());
  for (const auto& [name, p] : trainable) {
    if (!optim.count(name + "/exp_avg")) continue;
    auto state = std::make_unique<torch::optim::AdamWParamState>();
    state->exp_avg(optim[name + "/exp_avg"].view(p.sizes()).to(p.options()).clone());
    state->exp_avg_sq(optim[name + "/exp_avg_sq"].view(p.sizes()).to(p.options()).clone());
    state->step(optim[name + "/step"].item<int64_t>());
    optimizer.state()[optimizer_key(p)] = std::move(state);
  }
}

void load_parameters(const NamedTensors& parameters, const CheckpointData& data, const std::string& file) {
  std::map<std::string, at::Tensor> saved(data.model.begin(), data.model.end());
  torch::NoGradGuard no_grad;
  for (const auto& [name, p] : parameters) {
    auto it = saved.find(name);
    if (it == saved.end()) core::fail("{}: checkpoint has no parameter '{}'", file, name);
    if (!it->second.sizes().equals(p.sizes()))
      core::fail("{}: parameter '{}' has shape [{}] in the checkpoint, the model has [{}]", file, name,
                 fmt::join(it->second.sizes(), ", "), fmt::join(p.sizes(), ", "));
    const_cast<at::Tensor&>(p).copy_(it->second);
  }
}

bool stop_requested_on_any_rank(dist::Communicator& comm) {
  at::Tensor stop = at::full({1}, core::stop_requested() ? 1 : 0, at::kInt);
  comm.all_reduce(stop, dist::ReduceOp::Max);
  return stop.item<int>() != 0;
}

}  // namespace engram::train
