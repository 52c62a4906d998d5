#include "model/decoder.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <torch/torch.h>

#include "core/error.h"
#include "model/activation.h"
#include "model/batched_matmul.h"
#include "model/causal_attention.h"
#include "model/linear.h"

namespace engram::model {

// ---------------------------------------------------------------------------------------------
// Config

DecoderConfig DecoderConfig::preset(const std::string& name) { return preset(name, DecoderConfig{}); }

DecoderConfig DecoderConfig::preset(const std::string& name, DecoderConfig sizes) {
  DecoderConfig c = sizes;  // sizes, dropout, init_std and rope_theta keep their values
  if (name == "gpt2" || name == "custom") {
    c.positions = "learned";
    c.block = "sequential";
    c.norm = "layer";
    c.mlp = "gelu_new";
    c.bias = true;
    c.mlp_bias = -1;
    c.tied_head = true;
    c.head_bias = false;
    c.norm_eps = 1e-5;
  } else if (name == "alibi-parallel") {
    c.positions = "alibi";
    c.block = "parallel";
    c.norm = "layer";
    c.mlp = "gelu_new";
    c.bias = false;  // q/k/v/o without biases
    c.mlp_bias = 1;  // fc_in / fc_out with biases
    c.tied_head = false;
    c.head_bias = true;
    c.norm_eps = 1e-6;
  } else if (name == "llama") {
    c.positions = "rope";
    c.block = "sequential";
    c.norm = "rms";
    c.mlp = "swiglu";
    c.bias = false;
    c.mlp_bias = -1;
    c.tied_head = false;
    c.head_bias = false;
    c.norm_eps = 1e-5;
  } else {
    core::fail("model.preset: unknown preset '{}' (expected gpt2, alibi-parallel, llama or custom)",
               name);
  }
  return c;
}

namespace {
void check_choice(const std::string& option, const std::string& value,
                  const std::vector<std::string>& choices) {
  if (std::find(choices.begin(), choices.end(), value) != choices.end()) return;
  std::string list;
  for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
  core::fail("model.{}: unknown value '{}' (expected one of: {})", option, value, list);
}
}  // namespace

void DecoderConfig::validate() const {
  if (vocab_size <= 0) core::fail("model.vocab_size: must be positive, got {}", vocab_size);
  if (d_model <= 0) core::fail("model.d_model: must be positive, got {}", d_model);
  if (n_layers <= 0) core::fail("model.n_layers: must be positive, got {}", n_layers);
  if (n_heads <= 0) core::fail("model.n_heads: must be positive, got {}", n_heads);
  if (d_model % n_heads != 0)
    core::fail("model.n_heads: d_model {} is not divisible by {} heads", d_model, n_heads);
  if (d_ff <= 0) core::fail("model.d_ff: must be positive, got {}", d_ff);
  check_choice("positions", positions, {"learned", "alibi", "rope"});
  check_choice("block", block, {"sequential", "parallel"});
  check_choice("norm", norm, {"layer", "rms"});
  check_choice("mlp", mlp, {"gelu", "gelu_new", "swiglu"});
  if (positions == "learned" && max_positions <= 0)
    core::fail("model.max_positions: must be positive with learned positions, got {}",
               max_positions);
  if (positions == "rope" && head_dim() % 2 != 0)
    core::fail("model.n_heads: rope needs an even head size, got d_model {} / {} heads = {}",
               d_model, n_heads, head_dim());
  if (!(dropout >= 0.0 && dropout < 1.0))
    core::fail("model.dropout: must be in [0, 1), got {}", dropout);
  if (!(norm_eps > 0.0)) core::fail("model.norm_eps: must be positive, got {}", norm_eps);
  if (!(rope_theta > 0.0)) core::fail("model.rope_theta: must be positive, got {}", rope_theta);
  if (!(init_std > 0.0)) core::fail("model.init_std: must be positive, got {}", init_std);
  if (head_bias && tied_head)
    core::fail("model.head_bias: a head bias needs an untied head (model.tied_head: false)");
}

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

// ---------------------------------------------------------------------------------------------
// Helpers

at::Tensor alibi_slopes(int64_t n_heads) {
  ENGRAM_CHECK(n_heads > 0, "n_heads {}", n_heads);
  auto pow2 = [](int64_t n, std::vector<double>& out) {  // 2^(-8h/n), h = 1..n
    const double start = std::pow(2.0, -8.0 / static_cast<double>(n));
    for (int64_t h = 1; h <= n; ++h) out.push_back(std::pow(start, static_cast<double>(h)));
  };
  std::vector<double> slopes;
  int64_t closest = 1;
  while (closest * 2 <= n_heads) closest *= 2;
  pow2(closest, slopes);
  if (closest != n_heads) {
    std::vector<double> extra;
    pow2(2 * closest, extra);
    for (int64_t i = 0; static_cast<int64_t>(slopes.size()) < n_heads; i += 2)
      slopes.push_back(extra[i]);
  }
  return torch::tensor(slopes, torch::kFloat);
}

namespace {
at::Tensor rotate_half(const at::Tensor& x) {  // [.., hd] -> [-x2, x1]
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// cos, sin [Bp, 1, T, hd] of positions [Bp, T].
std::pair<at::Tensor, at::Tensor> rope_tables(const at::Tensor& positions, int64_t hd, double theta,
                                              const at::TensorOptions& opts) {
  auto f32 = torch::TensorOptions().dtype(torch::kFloat).device(positions.device());
  at::Tensor inv_freq =
      at::pow(theta, -at::arange(0, hd, 2, f32) / static_cast<double>(hd));  // [hd/2]
  at::Tensor freqs = positions.to(torch::kFloat).unsqueeze(-1) * inv_freq;   // [Bp, T, hd/2]
  at::Tensor emb = at::cat({freqs, freqs}, -1).unsqueeze(1);                // [Bp, 1, T, hd]
  return {emb.cos().to(opts.dtype()), emb.sin().to(opts.dtype())};
}

at::Tensor rope_with(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  return x * cos + rotate_half(x) * sin;
}
}  // namespace

at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& positions, double theta) {
  ENGRAM_CHECK(x.dim() == 4 && positions.dim() == 2, "apply_rope: x [B,H,T,hd], positions [B,T]");
  auto tables = rope_tables(positions, x.size(-1), theta, x.options());
  return rope_with(x, tables.first, tables.second);
}

// ---------------------------------------------------------------------------------------------
// Submodules

namespace detail {

// LayerNorm (weight, bias) or RMSNorm (weight only, computed in float32).
class NormImpl : public torch::nn::Module {
 public:
  NormImpl(int64_t d, bool rms, double eps) : d_(d), rms_(rms), eps_(eps) {
    weight = register_parameter("weight", torch::ones({d}));
    if (!rms) bias = register_parameter("bias", torch::zeros({d}));
  }
  at::Tensor forward(const at::Tensor& x) {  // [..., d]
    if (!rms_) return at::layer_norm(x, {d_}, weight, bias, eps_);
    at::Tensor x32 = x.to(torch::kFloat);
    at::Tensor y = x32 * at::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + eps_);
    return y.to(x.scalar_type()) * weight;
  }
  at::Tensor weight, bias;

 private:
  int64_t d_;
  bool rms_;
  double eps_;
};
TORCH_MODULE(Norm);

// What the decoder computes once per forward and every layer shares.
struct AttnContext {
  at::Tensor bias;           // additive [Bp, Hp, T, S] float (0 / -inf, + ALiBi), or undefined
  bool fused = false;        // causal_attention (CPU, no ALiBi, no attention dropout) instead of bias
  at::Tensor key_real;       // fused: [B, S] keys padding does not hide, or undefined (none hidden)
  at::Tensor cos, sin;       // rope: [Bp, 1, T, hd]
  at::Tensor prefix_k, prefix_v;  // [B, H, P, hd] of this layer, or undefined
  at::Tensor* cache_k = nullptr;  // [B, H, T_past, hd] of this layer (grown in place)
  at::Tensor* cache_v = nullptr;
  DecoderOutput* capture = nullptr;  // q/k/v of this layer go there
};

class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(const DecoderConfig& c)
      : n_heads_(c.n_heads), hd_(c.head_dim()), dropout_(c.dropout) {
    q = register_module("q", Linear(c.d_model, c.d_model, c.bias));
    k = register_module("k", Linear(c.d_model, c.d_model, c.bias));
    v = register_module("v", Linear(c.d_model, c.d_model, c.bias));
    o = register_module("o", Linear(c.d_model, c.d_model, c.bias));
  }

  at::Tensor forward(const at::Tensor& h, const AttnContext& ctx) {  // h [B, T, d]
    const int64_t B = h.size(0), T = h.size(1), d = h.size(2);
    at::Tensor qp = q(h), kp = k(h), vp = v(h);  // [B, T, d]
    if (ctx.capture) {
      ctx.capture->q = qp;
      ctx.capture->k = kp;
      ctx.capture->v = vp;
    }
    auto heads = [&](const at::Tensor& t) {  // [B, T, d] -> [B, H, T, hd] (a view)
      return t.view({B, T, n_heads_, hd_}).transpose(1, 2);
    };
    at::Tensor qh = heads(qp), kh = heads(kp), vh = heads(vp);
    // The fused attention rotates q and k itself while it packs them, unless a KV cache must keep
    // rotated keys.
    const bool rope_inside = ctx.fused && ctx.cos.defined() && !ctx.cache_k;
    if (ctx.cos.defined() && !rope_inside) {
      qh = rope_with(qh, ctx.cos, ctx.sin);
      kh = rope_with(kh, ctx.cos, ctx.sin);
    }
    if (ctx.cache_k) {  // [B, H, T_past + T, hd]
      if (ctx.cache_k->defined()) {
        kh = at::cat({*ctx.cache_k, kh}, 2);
        vh = at::cat({*ctx.cache_v, vh}, 2);
      }
      *ctx.cache_k = kh;
      *ctx.cache_v = vh;
    }
    if (ctx.prefix_k.defined()) {  // [B, H, P + T_past + T, hd]
      // The fused form computes in float32: keep the prefix's precision where kh is bf16 (autocast).
      const auto dt = ctx.fused ? at::promote_types(ctx.prefix_k.scalar_type(), kh.scalar_type()) : kh.scalar_type();
      kh = at::cat({ctx.prefix_k.to(dt), kh.to(dt)}, 2);
      vh = at::cat({ctx.prefix_v.to(dt), vh.to(dt)}, 2);
    }
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd_));
    if (ctx.fused) {  // [B, T, H, hd]: the heads already side by side
      const at::Tensor out = causal_attention(qh, kh, vh, ctx.key_real, scale, rope_inside ? ctx.cos : at::Tensor(),
                                              rope_inside ? ctx.sin : at::Tensor());
      return o(out.to(qh.scalar_type()).view({B, T, d}));
    }
    // scores [B, H, T, S] = q k^T / sqrt(hd) (+ bias), one batched matmul.
    at::Tensor raw = batched_matmul(qh, kh.transpose(-2, -1));
    at::Tensor scores = ctx.bias.defined() ? at::add(ctx.bias, raw, scale) : raw * scale;
    // float32 softmax; LibTorch's softmax with a dtype argument takes twice as long on float input.
    at::Tensor probs = scores.scalar_type() == torch::kFloat ? at::softmax(scores, -1) : at::softmax(scores, -1, torch::kFloat);
    if (probs.scalar_type() != vh.scalar_type()) probs = probs.to(vh.scalar_type());
    if (dropout_ > 0.0 && is_training()) probs = at::dropout(probs, dropout_, true);
    at::Tensor out = batched_matmul(probs, vh);                 // [B, H, T, hd]
    return o(out.transpose(1, 2).reshape({B, T, d}));          // [B, T, d]
  }

  Linear q{nullptr}, k{nullptr}, v{nullptr}, o{nullptr};

 private:
  int64_t n_heads_, hd_;
  double dropout_;
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Module {
 public:
  MlpImpl(const DecoderConfig& c) : kind_(c.mlp) {
    const bool b = c.has_mlp_bias();
    up = register_module("up", Linear(c.d_model, c.d_ff, b));
    if (kind_ == "swiglu") gate = register_module("gate", Linear(c.d_model, c.d_ff, b));
    down = register_module("down", Linear(c.d_ff, c.d_model, b));
  }
  at::Tensor forward(const at::Tensor& h) {  // [B, T, d] -> [B, T, d]
    if (kind_ == "swiglu") return down(at::silu(gate(h)) * up(h));
    return down(kind_ == "gelu_new" ? gelu_tanh(up(h)) : at::gelu(up(h)));
  }
  Linear up{nullptr}, gate{nullptr}, down{nullptr};

 private:
  std::string kind_;
};
TORCH_MODULE(Mlp);

class BlockImpl : public torch::nn::Module {
 public:
  BlockImpl(const DecoderConfig& c) : parallel_(c.block == "parallel"), dropout_(c.dropout) {
    const bool rms = c.norm == "rms";
    ln1 = register_module("ln1", Norm(c.d_model, rms, c.norm_eps));
    attn = register_module("attn", Attention(c));
    if (!parallel_) ln2 = register_module("ln2", Norm(c.d_model, rms, c.norm_eps));
    mlp = register_module("mlp", Mlp(c));
  }
  at::Tensor forward(const at::Tensor& x, const AttnContext& ctx) {  // [B, T, d]
    if (parallel_) {
      at::Tensor h = ln1(x);
      return x + drop(attn(h, ctx)) + drop(mlp(h));
    }
    at::Tensor y = x + drop(attn(ln1(x), ctx));
    return y + drop(mlp(ln2(y)));
  }
  Norm ln1{nullptr}, ln2{nullptr};
  Attention attn{nullptr};
  Mlp mlp{nullptr};

 private:
  at::Tensor drop(const at::Tensor& t) {
    return dropout_ > 0.0 && is_training() ? at::dropout(t, dropout_, true) : t;
  }
  bool parallel_;
  double dropout_;
};
TORCH_MODULE(Block);

}  // namespace detail

struct DecoderImpl::Parts {
  torch::nn::Embedding wte{nullptr}, wpe{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  std::vector<std::shared_ptr<detail::BlockImpl>> block_list;
  detail::Norm ln_f{nullptr};
  Linear head{nullptr};
  at::Tensor slopes;  // alibi [H]
};

// ---------------------------------------------------------------------------------------------
// Decoder

DecoderImpl::DecoderImpl(DecoderConfig config) : config_(std::move(config)) {
  config_.validate();
  const auto& c = config_;
  parts_ = std::make_shared<Parts>();
  auto& p = *parts_;
  p.wte = register_module("wte", torch::nn::Embedding(c.vocab_size, c.d_model));
  if (c.positions == "learned")
    p.wpe = register_module("wpe", torch::nn::Embedding(c.max_positions, c.d_model));
  p.blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.n_layers; ++i) {
    detail::Block block(c);
    p.blocks->push_back(block);
    p.block_list.push_back(block.ptr());
  }
  p.ln_f = register_module("ln_f", detail::Norm(c.d_model, c.norm == "rms", c.norm_eps));
  if (!c.tied_head) p.head = register_module("head", Linear(c.d_model, c.vocab_size, c.head_bias));
  if (c.positions == "alibi") p.slopes = alibi_slopes(c.n_heads);

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

namespace {

// Runs one block without keeping its activations, and recomputes them in backward: forward under
// no_grad saving the block input and the generator state; backward re-runs the block with grad on
// from the same generator state (same dropout masks), back-propagates through it (which also
// accumulates the block's parameter gradients), and returns the input's gradient.
// The block and what it shares with the others (passed as one non-tensor argument: autograd
// tracks only x).
struct BlockCall {
  detail::BlockImpl* block;
  const detail::AttnContext& ctx;  // its bias, fused, key_real, cos and sin
};

detail::AttnContext saved_context(torch::autograd::AutogradContext* ctx) {
  detail::AttnContext actx;
  actx.bias = ctx->saved_data["bias"].toTensor();
  actx.fused = ctx->saved_data["fused"].toBool();
  actx.key_real = ctx->saved_data["key_real"].toTensor();
  actx.cos = ctx->saved_data["cos"].toTensor();
  actx.sin = ctx->saved_data["sin"].toTensor();
  return actx;
}

struct CheckpointedBlock : public torch::autograd::Function<CheckpointedBlock> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, at::Tensor x,
                                                const BlockCall& call) {
    ctx->saved_data["block"] = reinterpret_cast<int64_t>(call.block);
    ctx->saved_data["rng"] = at::detail::getDefaultCPUGenerator().get_state();
    ctx->saved_data["bias"] = call.ctx.bias;
    ctx->saved_data["fused"] = call.ctx.fused;
    ctx->saved_data["key_real"] = call.ctx.key_real;
    ctx->saved_data["cos"] = call.ctx.cos;
    ctx->saved_data["sin"] = call.ctx.sin;
    ctx->save_for_backward({x});
    torch::NoGradGuard no_grad;
    return {call.block->forward(x, saved_context(ctx))};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto* block = reinterpret_cast<detail::BlockImpl*>(ctx->saved_data["block"].toInt());
    at::Tensor x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    at::Tensor now = gen.get_state();
    gen.set_state(ctx->saved_data["rng"].toTensor());
    const detail::AttnContext actx = saved_context(ctx);
    at::Tensor y;
    {
      torch::AutoGradMode enable(true);
      y = block->forward(x, actx);
    }
    gen.set_state(now);
    torch::autograd::backward({y}, {grad_out[0]});
    return {x.grad(), at::Tensor()};
  }
};

}  // namespace

DecoderOutput DecoderImpl::forward(const at::Tensor& input_ids, const ForwardOptions& options) {
  const auto& c = config_;
  auto& p = *parts_;
  ENGRAM_CHECK(input_ids.dim() == 2, "input_ids must be [B, T], got {} dims", input_ids.dim());
  const int64_t B = input_ids.size(0), T = input_ids.size(1), L = c.n_layers;
  const int64_t H = c.n_heads, hd = c.head_dim();
  ENGRAM_CHECK(T > 0, "empty input");
  const Prefix* prefix = options.prefix;
  const int64_t P = prefix ? prefix->length() : 0;
  if (P > 0) {
    ENGRAM_CHECK(static_cast<int64_t>(prefix->keys.size()) == L &&
                     static_cast<int64_t>(prefix->values.size()) == L,
                 "prefix has {} layers, the model {}", prefix->keys.size(), L);
    for (int64_t l = 0; l < L; ++l)
      ENGRAM_CHECK(prefix->keys[l].sizes() == at::IntArrayRef({B, H, P, hd}) &&
                       prefix->values[l].sizes() == at::IntArrayRef({B, H, P, hd}),
                   "prefix layer {}: expected [{}, {}, {}, {}]", l, B, H, P, hd);
  }
  KVCache* cache = options.cache;
  const int64_t T_past = cache ? cache->length() : 0;
  if (cache) {
    if (cache->keys.empty()) {
      cache->keys.resize(L);
      cache->values.resize(L);
    }
    ENGRAM_CHECK(static_cast<int64_t>(cache->keys.size()) == L, "cache has {} layers, model {}",
                 cache->keys.size(), L);
    if (T_past > 0) ENGRAM_CHECK(cache->keys[0].size(0) == B, "cache batch != input batch");
  }
  const int64_t S_real = T_past + T;  // keys: P prefix slots + S_real cached and new tokens
  // A mask without padding (every row of a pretraining batch, say) is no mask: the attention bias
  // then broadcasts over the batch, and adding a [1, 1, T, S] bias to the scores took 1/6 of the
  // time a [B, 1, T, S] one did.
  const at::Tensor& given = options.attention_mask;
  if (given.defined())
    ENGRAM_CHECK(given.dim() == 2 && given.size(0) == B && given.size(1) == S_real,
                 "attention_mask must be [B, T_past + T] = [{}, {}]", B, S_real);
  const at::Tensor mask = given.defined() && given.eq(0).any().item<bool>() ? given : at::Tensor();
  const auto dev = input_ids.device();
  const auto i64 = torch::TensorOptions().dtype(torch::kLong).device(dev);
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat).device(dev);

  // Positions of cached + new tokens [Bp, S_real]: P + (number of real tokens before).
  at::Tensor pos_all;
  if (mask.defined()) {
    pos_all = (at::cumsum(mask.to(torch::kLong), 1) - 1).clamp_min(0) + P;
  } else {
    pos_all = at::arange(P, P + S_real, i64).unsqueeze(0);
  }
  at::Tensor q_pos = pos_all.narrow(1, T_past, T);  // [Bp, T]

  DecoderOutput out;
  at::Tensor x = p.wte(input_ids);  // [B, T, d]
  if (c.positions == "learned") {
    const int64_t max_pos = mask.defined() ? q_pos.max().item<int64_t>() : P + S_real - 1;
    if (max_pos >= c.max_positions)
      core::fail("model.max_positions: position {} (prefix {} + cached {} + new {} tokens) is "
                 "beyond the learned position table of {} positions",
                 max_pos, P, T_past, T, c.max_positions);
    x = x + p.wpe(q_pos);  // + [Bp, T, d]
  }
  if (c.dropout > 0.0 && is_training()) x = at::dropout(x, c.dropout, true);

  // Shared attention inputs.
  detail::AttnContext ctx;
  if (c.positions == "rope") {
    auto tables = rope_tables(q_pos, hd, c.rope_theta, x.options());
    ctx.cos = tables.first;
    ctx.sin = tables.second;
  }
  const bool alibi = c.positions == "alibi";
  // The fused CPU attention (causal_attention.h) masks causally and by key_real itself; ALiBi's
  // per-head bias and attention dropout take the op-by-op form and its additive bias.
  ctx.fused = fused_attention_ && dev.is_cpu() && !alibi && !(c.dropout > 0.0 && is_training());
  if (ctx.fused) {
    if (mask.defined()) {
      ctx.key_real = mask.ne(0);
      if (P > 0) ctx.key_real = at::cat({at::ones({B, P}, ctx.key_real.options()), ctx.key_real}, 1);
    }
  } else if (T > 1 || mask.defined() || alibi) {
    // allowed [Bp, 1, T, S_real]: causal over cached + new tokens, no padding keys (a padding
    // query still sees itself, so no row is empty and no NaN appears).
    at::Tensor key_idx = at::arange(S_real, i64).unsqueeze(0);          // [1, S_real]
    at::Tensor query_idx = at::arange(T_past, S_real, i64).unsqueeze(1);  // [T, 1]
    at::Tensor allowed = key_idx.le(query_idx);                           // [T, S_real]
    if (mask.defined()) {
      at::Tensor real = mask.to(torch::kBool).view({B, 1, 1, S_real});
      allowed = allowed.logical_and(real.logical_or(key_idx.eq(query_idx)));  // [B, 1, T, S_real]
    } else {
      allowed = allowed.view({1, 1, T, S_real});
    }
    at::Tensor bias = at::zeros(allowed.sizes(), f32).masked_fill_(allowed.logical_not(),
                                                                  -std::numeric_limits<float>::infinity());
    if (P > 0) bias = at::cat({at::zeros({bias.size(0), 1, T, P}, f32), bias}, 3);  // [Bp,1,T,S]
    if (alibi) {
      // -m_h (pos_q - pos_k); prefix slots sit at positions 0..P-1.
      at::Tensor key_pos = pos_all;
      if (P > 0)
        key_pos = at::cat({at::arange(P, i64).unsqueeze(0).expand({pos_all.size(0), P}), pos_all}, 1);
      at::Tensor dist = (q_pos.unsqueeze(2) - key_pos.unsqueeze(1)).to(torch::kFloat).unsqueeze(1);
      bias = bias - p.slopes.to(dev).view({1, H, 1, 1}) * dist;  // [Bp, H, T, S]
    }
    ctx.bias = bias;
  }

  const int capture = options.capture_qkv_layer;
  ENGRAM_CHECK(capture < L, "capture_qkv_layer {} >= n_layers {}", capture, L);
  const int stop = options.stop_at_hidden_state;
  ENGRAM_CHECK(stop < 0 || (options.output_hidden_states && stop <= L && !cache),
               "stop_at_hidden_state {} needs output_hidden_states, at most n_layers ({}) and no KV cache", stop, L);
  if (options.output_hidden_states) out.hidden_states.reserve(L + 1);
  for (int64_t l = 0; l < L; ++l) {
    if (options.output_hidden_states) out.hidden_states.push_back(x);
    if (l == stop) return out;
    if (P > 0) {
      ctx.prefix_k = prefix->keys[l];
      ctx.prefix_v = prefix->values[l];
    }
    ctx.cache_k = cache ? &cache->keys[l] : nullptr;
    ctx.cache_v = cache ? &cache->values[l] : nullptr;
    ctx.capture = l == capture ? &out : nullptr;
    const bool checkpoint = checkpointing_ && is_training() && torch::GradMode::is_enabled() && P == 0 && !cache &&
                            ctx.capture == nullptr;
    x = checkpoint ? CheckpointedBlock::apply(x, BlockCall{p.block_list[l].get(), ctx})[0]
                   : p.block_list[l]->forward(x, ctx);
  }
  x = p.ln_f(x);
  if (options.output_hidden_states) out.hidden_states.push_back(x);
  if (stop == L) return out;
  out.logits = c.tied_head ? at::linear(x, p.wte->weight) : p.head(x);  // [B, T, V]
  if (alibi) out.alibi_bias = p.slopes.to(dev);
  return out;
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
    if (c.positions == "rope")
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
