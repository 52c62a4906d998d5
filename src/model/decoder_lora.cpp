// LoRA on the decoder's linear layers (SELF-PARAM): add, merge, unmerge and remove the adapters.
#include "model/decoder.h"

#include <algorithm>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/linear.h"

namespace engram::model {

namespace {
template <typename F>
void for_each_linear(torch::nn::Module& root, F&& f) {
  for (auto& item : root.named_modules("", /*include_self=*/false))
    if (auto lin = std::dynamic_pointer_cast<LinearImpl>(item.value())) f(item.key(), *lin);
}
std::string last_component(const std::string& name) {
  auto dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(dot + 1);
}
}  // namespace

std::vector<std::string> DecoderImpl::add_lora(const std::vector<std::string>& targets,
                                               int64_t rank, double alpha, double dropout) {
  static const std::vector<std::string> known = {"q", "k", "v", "o", "up", "gate", "down"};
  for (const auto& t : targets)
    if (std::find(known.begin(), known.end(), t) == known.end())
      core::fail("lora target '{}' is not a decoder linear (expected q, k, v, o, up, gate, down)", t);
  if (rank <= 0) core::fail("lora rank must be positive, got {}", rank);
  if (!(dropout >= 0.0 && dropout < 1.0)) core::fail("lora dropout must be in [0, 1), got {}", dropout);
  if (!(alpha > 0.0)) core::fail("lora alpha must be positive, got {}", alpha);

  bool any_lora = false;
  for_each_linear(*this, [&](const std::string&, LinearImpl& lin) { any_lora |= lin.has_lora(); });
  if (!any_lora) {
    requires_grad_before_lora_.clear();
    for (auto& item : named_parameters())
      requires_grad_before_lora_.emplace_back(item.key(), item.value().requires_grad());
  }
  std::vector<std::string> adapted;
  for_each_linear(*this, [&](const std::string& name, LinearImpl& lin) {
    if (name == "head") return;
    const std::string last = last_component(name);
    if (std::find(targets.begin(), targets.end(), last) == targets.end()) return;
    lin.add_lora(rank, alpha, dropout);
    adapted.push_back(name);
  });
  // Freeze everything except the adapters (PEFT).
  for (auto& item : named_parameters()) {
    const std::string& n = item.key();
    const bool is_adapter = n.find("lora_A.") != std::string::npos || n.find("lora_B.") != std::string::npos;
    item.value().requires_grad_(is_adapter);
  }
  return adapted;
}

void DecoderImpl::merge_lora() {
  for_each_linear(*this, [](const std::string&, LinearImpl& lin) { lin.merge(); });
}

void DecoderImpl::unmerge_lora() {
  for_each_linear(*this, [](const std::string&, LinearImpl& lin) { lin.unmerge(); });
}

void DecoderImpl::remove_lora() {
  bool any_lora = false;
  for_each_linear(*this, [&](const std::string&, LinearImpl& lin) {
    any_lora |= lin.has_lora();
    lin.remove_lora();
  });
  if (!any_lora) return;
  auto params = named_parameters();
  for (const auto& [name, flag] : requires_grad_before_lora_)
    if (auto* t = params.find(name)) t->requires_grad_(flag);
  requires_grad_before_lora_.clear();
}

}  // namespace engram::model
