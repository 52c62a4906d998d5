#include "methods/longmem/sidenet.h"

#include <cmath>
#include <map>

#include <torch/torch.h>

#include "core/error.h"
#include "methods/longmem/fusion.h"
#include "methods/longmem/memory.h"
#include "model/activation.h"
#include "model/linear.h"

namespace engram::longmem {

using model::DecoderConfig;

// LayerNorm (weight, bias) or RMSNorm (weight), as the backbone's norms.
class SideNormImpl : public torch::nn::Module {
 public:
  SideNormImpl(int64_t d, bool rms, double eps) : d_(d), rms_(rms), eps_(eps) {
    weight = register_parameter("weight", torch::ones({d}));
    if (!rms) bias = register_parameter("bias", torch::zeros({d}));
  }
  at::Tensor forward(const at::Tensor& x) {
    if (!rms_) return at::layer_norm(x, {d_}, weight, bias, eps_);
    return x * at::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps_) * weight;
  }
  at::Tensor weight, bias;

 private:
  int64_t d_;
  bool rms_;
  double eps_;
};
TORCH_MODULE(SideNorm);

namespace {

// Modules that only hold their linears under the backbone's names (attn.q, mlp.up, ...).
struct HolderImpl : torch::nn::Module {};
TORCH_MODULE(Holder);

// What every side layer's attention shares in one forward pass.
struct LayerInputs {
  at::Tensor alibi_bias;       // [H, T, T], or undefined
  at::Tensor rope_positions;   // [1, T], or undefined (no rotary positions)
  double rope_theta = 0;
  const ChunkMemory* memory = nullptr;  // the memory layer's, when it holds chunks
  int64_t chunks = 0;                   // chunks each query retrieves per head
  at::Tensor* chunk_ids = nullptr;      // where the memory layer puts its retrieval's chunk ids
};

// The memory's chunks for queries [B, T, d] (un-scaled, un-rotated), as fusion.h takes them.
void add_retrieval(FusedAttentionInputs& f, const at::Tensor& queries, const LayerInputs& in, int64_t heads) {
  const int64_t B = queries.size(0), T = queries.size(1), hd = queries.size(2) / heads;
  const ChunkMemory::Retrieved got = in.memory->retrieve(queries.detach().reshape({B * T, heads, hd}), in.chunks);
  const int64_t K = got.keys.size(2);
  f.memory_keys = got.keys.view({B, T, heads, K, hd}).permute({0, 2, 1, 3, 4}).to(queries.scalar_type());
  f.memory_values = got.values.view({B, T, heads, K, hd}).permute({0, 2, 1, 3, 4}).to(queries.scalar_type());
  f.memory_valid = got.valid.view({B, T, heads, K}).permute({0, 2, 1, 3});
  if (in.chunk_ids) *in.chunk_ids = got.chunk_ids.view({B, T, heads, in.chunks});
}

}  // namespace

class SideLayerImpl : public torch::nn::Module {
 public:
  SideLayerImpl(const DecoderConfig& c, double dropout, bool memory_layer, double gate_scale)
      : gate_scale(gate_scale), heads_(c.n_heads), parallel_(c.block == DecoderConfig::Block::Parallel), mlp_kind_(c.mlp), dropout_(dropout) {
    const bool rms = c.norm == DecoderConfig::Norm::Rms, mlp_bias = c.has_mlp_bias();
    ln1 = register_module("ln1", SideNorm(c.d_model, rms, c.norm_eps));
    attn = register_module("attn", Holder());
    for (auto* p : {&q, &k, &v, &o}) *p = model::Linear(c.d_model, c.d_model, c.bias);
    attn->register_module("q", q), attn->register_module("k", k), attn->register_module("v", v);
    attn->register_module("o", o);
    if (!parallel_) ln2 = register_module("ln2", SideNorm(c.d_model, rms, c.norm_eps));
    mlp = register_module("mlp", Holder());
    up = mlp->register_module("up", model::Linear(c.d_model, c.d_ff, mlp_bias));
    if (mlp_kind_ == DecoderConfig::Mlp::SwiGlu)
      gate_proj = mlp->register_module("gate", model::Linear(c.d_model, c.d_ff, mlp_bias));
    down = mlp->register_module("down", model::Linear(c.d_ff, c.d_model, mlp_bias));
    // g = 0: sigma(g) = 0.5, local and memory weighed alike at the start (spec 1.4).
    if (memory_layer) gate = register_parameter("gate", torch::zeros({c.n_heads}));
  }

  at::Tensor forward(const at::Tensor& x, const at::Tensor& residual, const LayerInputs& in) {
    const int64_t B = x.size(0), T = x.size(1), d = x.size(2), hd = d / heads_;
    const at::Tensor h = ln1(x);
    const at::Tensor qp = q(h);
    auto split_heads = [&](const at::Tensor& t) { return t.view({B, T, heads_, hd}).transpose(1, 2); };
    FusedAttentionInputs f;
    f.q = split_heads(qp), f.k = split_heads(k(h)), f.v = split_heads(v(h));
    if (in.rope_positions.defined()) {
      f.memory_q = f.q;  // the memory reads position-free: un-rotated query against un-rotated keys
      f.q = model::apply_rope(f.q, in.rope_positions, in.rope_theta);
      f.k = model::apply_rope(f.k, in.rope_positions, in.rope_theta);
    }
    f.bias = in.alibi_bias;
    if (in.memory && gate.defined()) add_retrieval(f, qp, in, heads_);
    if (gate.defined()) f.gate = gate * gate_scale;
    f.local_dropout = dropout_;
    f.training = is_training();
    const at::Tensor a = o(fused_memory_attention(f).transpose(1, 2).reshape({B, T, d}));
    const at::Tensor m = feed_forward(parallel_ ? h : ln2(x + a));
    return x + residual + drop(a) + drop(m);
  }

  SideNorm ln1{nullptr}, ln2{nullptr};
  Holder attn{nullptr}, mlp{nullptr};
  model::Linear q{nullptr}, k{nullptr}, v{nullptr}, o{nullptr}, up{nullptr}, gate_proj{nullptr}, down{nullptr};
  at::Tensor gate;  // the memory layer's g / gate_scale [H]; undefined elsewhere
  double gate_scale;

 private:
  at::Tensor feed_forward(const at::Tensor& h) {
    if (mlp_kind_ == DecoderConfig::Mlp::SwiGlu) return down(at::silu(gate_proj(h)) * up(h));
    return down(mlp_kind_ == DecoderConfig::Mlp::GeluNew ? model::gelu_tanh(up(h)) : at::gelu(up(h)));
  }
  at::Tensor drop(const at::Tensor& t) { return dropout_ > 0 && is_training() ? at::dropout(t, dropout_, true) : t; }

  int64_t heads_;
  bool parallel_;
  DecoderConfig::Mlp mlp_kind_;
  double dropout_;
};

SideNetConfig SideNetConfig::resolved(const DecoderConfig& backbone) const {
  SideNetConfig c = *this;
  const int64_t L = backbone.n_layers;
  if (c.reduction < 1 || c.reduction > L)
    core::fail("longmem.reduction {}: expected 1 to the backbone's {} layers", c.reduction, L);
  if (c.memory_layer < 0) {
    const int64_t near = std::min<int64_t>(L - 1, static_cast<int64_t>(std::ceil(0.7 * static_cast<double>(L))));
    c.memory_layer = near < c.reduction - 1 ? c.reduction - 1
                                            : (near - (c.reduction - 1)) / c.reduction * c.reduction + c.reduction - 1;
  }
  if (c.memory_layer >= L || c.memory_side_layer() >= c.side_layers(L))
    core::fail("longmem.memory_layer {}: expected a backbone layer below {} whose side layer (memory_layer / "
               "reduction) exists ({} side layers)",
               c.memory_layer, L, c.side_layers(L));
  if (c.retrieve_tokens < 1) core::fail("longmem.retrieve_tokens {}: expected at least 1", c.retrieve_tokens);
  if (c.dropout < 0 || c.dropout >= 1) core::fail("longmem.dropout {}: expected [0, 1)", c.dropout);
  if (c.gate_scale <= 0) core::fail("longmem.gate_scale {}: expected > 0", c.gate_scale);
  return c;
}

BackboneStates run_backbone(model::Decoder& backbone, const at::Tensor& input_ids, int64_t memory_layer) {
  torch::NoGradGuard no_grad;
  model::ForwardOptions options;
  options.output_hidden_states = true;
  options.capture_qkv_layer = static_cast<int>(memory_layer);
  model::DecoderOutput out = backbone->forward(input_ids, options);
  return BackboneStates{std::move(out.hidden_states), out.k, out.v, out.logits};
}

SideNetImpl::SideNetImpl(model::Decoder backbone, const SideNetConfig& config)
    : config_(config.resolved(backbone->config())), backbone_(std::move(backbone)) {
  const DecoderConfig& c = backbone_->config();
  layers_ = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < config_.side_layers(c.n_layers); ++i) {
    const bool reads_memory = config_.memory && i == config_.memory_side_layer();
    layer_list_.push_back(std::make_shared<SideLayerImpl>(c, config_.dropout, reads_memory, config_.gate_scale));
    layers_->push_back(layer_list_.back());
  }
  ln_f_ = std::make_shared<SideNormImpl>(c.d_model, c.norm == DecoderConfig::Norm::Rms, c.norm_eps);
  register_module("ln_f", ln_f_);
  copy_from_backbone();
}

void SideNetImpl::copy_from_backbone() {
  std::map<std::string, at::Tensor> source;
  for (const auto& item : backbone_->named_parameters()) source[item.key()] = item.value();
  torch::NoGradGuard no_grad;
  for (auto& [name, param] : named_weights()) {
    std::string from = name;  // layers.{i}.rest <- blocks.{r i + r - 1}.rest; ln_f.* <- ln_f.*
    if (name.rfind("layers.", 0) == 0) {
      const size_t dot = name.find('.', 7);
      const int64_t i = std::stoll(name.substr(7, dot - 7));
      if (name.substr(dot + 1) == "gate") continue;
      from = "blocks." + std::to_string(config_.reduction * i + config_.reduction - 1) + name.substr(dot);
    }
    auto it = source.find(from);
    ENGRAM_CHECK(it != source.end(), "SideNet: the backbone has no {} for {}", from, name);
    param.copy_(it->second);
  }
}

std::vector<std::pair<std::string, at::Tensor>> SideNetImpl::named_weights() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : named_parameters()) out.emplace_back(item.key(), item.value());
  return out;
}

at::Tensor SideNetImpl::gate() const {
  if (!config_.memory) return at::Tensor();
  const auto& layer = *layer_list_[static_cast<size_t>(config_.memory_side_layer())];
  return layer.gate * layer.gate_scale;
}

SideOutput SideNetImpl::forward(const BackboneStates& states, const ChunkMemory* memory) {
  const DecoderConfig& c = backbone_->config();
  const int64_t T = states.hidden[0].size(1), r = config_.reduction;
  LayerInputs shared;
  const auto i64 = torch::TensorOptions().dtype(torch::kLong).device(states.hidden[0].device());
  if (c.positions == DecoderConfig::Positions::Alibi) {
    const at::Tensor pos = torch::arange(T, i64);
    const at::Tensor distance = (pos.unsqueeze(1) - pos.unsqueeze(0)).to(torch::kFloat);  // i - j
    shared.alibi_bias = -model::alibi_slopes(c.n_heads).to(distance.device()).view({-1, 1, 1}) * distance;
  } else if (c.positions == DecoderConfig::Positions::Rope) {
    shared.rope_positions = torch::arange(T, i64).unsqueeze(0);
    shared.rope_theta = c.rope_theta;
  }
  SideOutput out;
  at::Tensor x = states.hidden[0];
  for (size_t i = 0; i < layer_list_.size(); ++i) {
    LayerInputs in = shared;
    if (config_.memory && static_cast<int64_t>(i) == config_.memory_side_layer() && memory && memory->size() > 0) {
      in.memory = memory;
      in.chunks = std::max<int64_t>(1, config_.retrieve_tokens / memory->shape().chunk);
      in.chunk_ids = &out.chunk_ids;
    }
    const auto j = static_cast<size_t>(r) * i;
    x = layer_list_[i]->forward(x, states.hidden[j + static_cast<size_t>(r)] - states.hidden[j], in);
  }
  x = ln_f_->forward(x);
  auto params = backbone_->named_parameters();
  if (c.tied_head) {
    out.logits = at::linear(x, params["wte.weight"]);
  } else {
    const at::Tensor* bias = params.find("head.bias");
    out.logits = at::linear(x, params["head.weight"], bias ? *bias : at::Tensor());
  }
  return out;
}

}  // namespace engram::longmem
