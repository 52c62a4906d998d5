// The decoder's submodules: norm, attention, MLP and the transformer block made of them.
#include "model/decoder_internal.h"

#include <cmath>

#include <torch/torch.h>

#include "model/activation.h"
#include "model/batched_matmul.h"
#include "model/causal_attention.h"

namespace engram::model::detail {

NormImpl::NormImpl(int64_t d, bool rms, double eps) : d_(d), rms_(rms), eps_(eps) {
  weight = register_parameter("weight", torch::ones({d}));
  if (!rms) bias = register_parameter("bias", torch::zeros({d}));
}

at::Tensor NormImpl::forward(const at::Tensor& x) {  // [..., d]
  if (!rms_) return at::layer_norm(x, {d_}, weight, bias, eps_);
  at::Tensor x32 = x.to(torch::kFloat);
  at::Tensor y = x32 * at::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + eps_);
  return y.to(x.scalar_type()) * weight;
}

AttentionImpl::AttentionImpl(const DecoderConfig& c)
    : n_heads_(c.n_heads), hd_(c.head_dim()), dropout_(c.dropout) {
  q = register_module("q", Linear(c.d_model, c.d_model, c.bias));
  k = register_module("k", Linear(c.d_model, c.d_model, c.bias));
  v = register_module("v", Linear(c.d_model, c.d_model, c.bias));
  o = register_module("o", Linear(c.d_model, c.d_model, c.bias));
}

at::Tensor AttentionImpl::forward(const at::Tensor& h, const AttnContext& ctx) {  // h [B, T, d]
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

MlpImpl::MlpImpl(const DecoderConfig& c) : kind_(c.mlp) {
  const bool b = c.has_mlp_bias();
  up = register_module("up", Linear(c.d_model, c.d_ff, b));
  if (kind_ == DecoderConfig::Mlp::SwiGlu) gate = register_module("gate", Linear(c.d_model, c.d_ff, b));
  down = register_module("down", Linear(c.d_ff, c.d_model, b));
}

at::Tensor MlpImpl::forward(const at::Tensor& h) {  // [B, T, d] -> [B, T, d]
  if (kind_ == DecoderConfig::Mlp::SwiGlu) return down(at::silu(gate(h)) * up(h));
  return down(kind_ == DecoderConfig::Mlp::GeluNew ? gelu_tanh(up(h)) : at::gelu(up(h)));
}

BlockImpl::BlockImpl(const DecoderConfig& c) : parallel_(c.block == DecoderConfig::Block::Parallel), dropout_(c.dropout) {
  const bool rms = c.norm == DecoderConfig::Norm::Rms;
  ln1 = register_module("ln1", Norm(c.d_model, rms, c.norm_eps));
  attn = register_module("attn", Attention(c));
  if (!parallel_) ln2 = register_module("ln2", Norm(c.d_model, rms, c.norm_eps));
  mlp = register_module("mlp", Mlp(c));
}

at::Tensor BlockImpl::forward(const at::Tensor& x, const AttnContext& ctx) {  // [B, T, d]
  if (parallel_) {
    at::Tensor h = ln1(x);
    return x + drop(attn(h, ctx)) + drop(mlp(h));
  }
  at::Tensor y = x + drop(attn(ln1(x), ctx));
  return y + drop(mlp(ln2(y)));
}

at::Tensor BlockImpl::drop(const at::Tensor& t) {
  return dropout_ > 0.0 && is_training() ? at::dropout(t, dropout_, true) : t;
}

}  // namespace engram::model::detail
