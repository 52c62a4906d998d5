// The Decoder module itself: its parts and their GPT-2 initialisation, the prefix and KV-cache
// containers, prefix_from_states and the parameter count. Elsewhere: the config's presets and
// validation (decoder_config.cpp), ALiBi and rotary positions (decoder_positions.cpp), the
// submodules (decoder_blocks.cpp), forward (decoder_forward.cpp), activation checkpointing
// (decoder_checkpoint.cpp) and LoRA (decoder_lora.cpp); decoder_internal.h declares what they share.
#include "model/decoder.h"

#include <cmath>

#include <torch/torch.h>

#include "core/error.h"
#include "model/decoder_internal.h"

namespace engram::model {

int64_t Prefix::length() const {
  return keys.empty() || !keys[0].defined() ? 0 : keys[0].size(2);
}

int64_t KVCache::length() const {
  return keys.empty() || !keys[0].defined() ? 0 : keys[0].size(2);
}

void KVCache::select_rows(const at::Tensor& index) {
  for (auto& k : keys)
    if (k.defined()) k = k.index_select(0, index);
  for (auto& v : values)
    if (v.defined()) v = v.index_select(0, index);
}

DecoderImpl::DecoderImpl(DecoderConfig config) : config_(std::move(config)) {
  config_.validate();
  const auto& c = config_;
  parts_ = std::make_shared<Parts>();
  auto& p = *parts_;
  p.wte = register_module("wte", torch::nn::Embedding(c.vocab_size, c.d_model));
  if (c.positions == DecoderConfig::Positions::Learned)
    p.wpe = register_module("wpe", torch::nn::Embedding(c.max_positions, c.d_model));
  p.blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.n_layers; ++i) {
    detail::Block block(c);
    p.blocks->push_back(block);
    p.block_list.push_back(block.ptr());
  }
  p.ln_f = register_module("ln_f", detail::Norm(c.d_model, c.norm == DecoderConfig::Norm::Rms, c.norm_eps));
  if (!c.tied_head) p.head = register_module("head", Linear(c.d_model, c.vocab_size, c.head_bias));
  if (c.positions == DecoderConfig::Positions::Alibi) p.slopes = alibi_slopes(c.n_heads);

  // GPT-2 init: N(0, std) for linears and embeddings, zero biases, norms 1 / 0, residual
  // projections (attn.o, mlp.down) N(0, std / sqrt(2 L)).
  torch::NoGradGuard no_grad;
  const double init_std = c.init_std;
  const double res_std = init_std / std::sqrt(2.0 * static_cast<double>(c.n_layers));
  for (auto& item : named_parameters()) {
    const std::string& name = item.key();
    at::Tensor& t = item.value();
    auto ends_with = [&](const std::string& s) {
      return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
    };
    if (name.find(".ln") != std::string::npos || name.rfind("ln_f.", 0) == 0) {
      if (ends_with(".weight")) t.fill_(1.0);
      else t.zero_();
    } else if (ends_with(".bias")) {
      t.zero_();
    } else if (ends_with("attn.o.weight") || ends_with("mlp.down.weight")) {
      t.normal_(0.0, res_std);
    } else {
      t.normal_(0.0, init_std);
    }
  }
}

Prefix DecoderImpl::prefix_from_states(const std::vector<at::Tensor>& states) {
  const auto& c = config_;
  ENGRAM_CHECK(static_cast<int64_t>(states.size()) == c.n_layers, "prefix_from_states: {} layers, the model {}",
               states.size(), c.n_layers);
  Prefix prefix;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const at::Tensor& s = states[static_cast<size_t>(l)];
    ENGRAM_CHECK(s.dim() == 3 && s.size(2) == c.d_model, "prefix_from_states: layer {} must be [B, P, {}]", l, c.d_model);
    const int64_t B = s.size(0), P = s.size(1);
    auto& block = *parts_->block_list[static_cast<size_t>(l)];
    at::Tensor h = block.ln1(s);
    auto heads = [&](const at::Tensor& t) { return t.view({B, P, c.n_heads, c.head_dim()}).transpose(1, 2); };
    at::Tensor k = heads(block.attn->k(h)), v = heads(block.attn->v(h));
    if (c.positions == DecoderConfig::Positions::Rope)
      k = apply_rope(k, at::arange(P, at::TensorOptions().dtype(at::kLong).device(s.device())).unsqueeze(0), c.rope_theta);
    prefix.keys.push_back(k);
    prefix.values.push_back(v);
  }
  return prefix;
}

int64_t DecoderImpl::num_parameters(bool trainable_only) const {
  int64_t n = 0;
  for (const auto& t : parameters())
    if (!trainable_only || t.requires_grad()) n += t.numel();
  return n;
}

}  // namespace engram::model
