#pragma once
// The parts of a CheckpointData every training loop fills the same way: the model's tensors, AdamW's
// per-parameter state ("<name>/exp_avg", "<name>/exp_avg_sq", "<name>/step") and the process's
// CPU generator. The Trainer and SELF-PARAM's injection loop both save and resume through them.
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

namespace torch::optim {
class AdamW;
}
namespace engram::dist {
class Communicator;
}

namespace engram::train {

struct CheckpointData;
using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// The process-wide CPU generator (dropout and every other random op).
at::Generator cpu_generator();

// AdamW's state of each parameter of `trainable` that has had an update, into data.optim.
void save_adamw_state(const torch::optim::AdamW& optimizer, const NamedTensors& trainable, CheckpointData& data);
// The saved state back into `optimizer` for each parameter of `trainable` that has one.
void load_adamw_state(torch::optim::AdamW& optimizer, const NamedTensors& trainable, const CheckpointData& data);
// data.model's tensors copied into `parameters` by name; a missing name or another shape ->
// core::UserError naming `file`.
void load_parameters(const NamedTensors& parameters, const CheckpointData& data, const std::string& file);

// Whether any rank got SIGTERM/SIGUSR1 (collective): every rank learns it, so all save the same step.
bool stop_requested_on_any_rank(dist::Communicator& comm);

}  // namespace engram::train
