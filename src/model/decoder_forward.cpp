// DecoderImpl::forward: sizes and checks, positions, embeddings, what the layers' attention shares,
// the blocks, the head.
#include "model/decoder.h"

#include <limits>

#include <torch/torch.h>

#include "core/error.h"
#include "model/decoder_internal.h"

namespace engram::model {
namespace {

// The sizes one forward pass works with.
struct Sizes {
  int64_t B = 0, T = 0;           // batch rows, new tokens
  int64_t L = 0, H = 0, hd = 0;   // layers, heads, head size
  int64_t P = 0;                  // prefix slots (0: no prefix)
  int64_t T_past = 0;             // tokens already in the KV cache
  int64_t S_real = 0;             // keys besides the prefix slots: T_past + T
};

void check_prefix(const Prefix& prefix, const Sizes& s) {
  ENGRAM_CHECK(static_cast<int64_t>(prefix.keys.size()) == s.L && static_cast<int64_t>(prefix.values.size()) == s.L,
               "prefix has {} layers, the model {}", prefix.keys.size(), s.L);
  for (int64_t l = 0; l < s.L; ++l)
    ENGRAM_CHECK(prefix.keys[l].sizes() == at::IntArrayRef({s.B, s.H, s.P, s.hd}) &&
                     prefix.values[l].sizes() == at::IntArrayRef({s.B, s.H, s.P, s.hd}),
                 "prefix layer {}: expected [{}, {}, {}, {}]", l, s.B, s.H, s.P, s.hd);
}

// An empty cache gets one (undefined) slot per layer; a filled one must match the model and batch.
void prepare_cache(KVCache& cache, const Sizes& s) {
  if (cache.keys.empty()) {
    cache.keys.resize(s.L);
    cache.values.resize(s.L);
  }
  ENGRAM_CHECK(static_cast<int64_t>(cache.keys.size()) == s.L, "cache has {} layers, model {}", cache.keys.size(), s.L);
  if (s.T_past > 0) ENGRAM_CHECK(cache.keys[0].size(0) == s.B, "cache batch != input batch");
}

// Checks the input, the prefix and the cache (preparing an empty cache) against the model.
Sizes checked_sizes(const DecoderConfig& c, const at::Tensor& input_ids, const ForwardOptions& options) {
  ENGRAM_CHECK(input_ids.dim() == 2, "input_ids must be [B, T], got {} dims", input_ids.dim());
  Sizes s;
  s.B = input_ids.size(0), s.T = input_ids.size(1), s.L = c.n_layers;
  s.H = c.n_heads, s.hd = c.head_dim();
  ENGRAM_CHECK(s.T > 0, "empty input");
  s.P = options.prefix ? options.prefix->length() : 0;
  if (s.P > 0) check_prefix(*options.prefix, s);
  s.T_past = options.cache ? options.cache->length() : 0;
  if (options.cache) prepare_cache(*options.cache, s);
  s.S_real = s.T_past + s.T;
  return s;
}

// The attention mask when it hides a key, else undefined. A mask without padding (every row of a
// pretraining batch, say) is no mask: the attention bias then broadcasts over the batch, and adding
// a [1, 1, T, S] bias to the scores took 1/6 of the time a [B, 1, T, S] one did.
at::Tensor padding_mask(const at::Tensor& given, const Sizes& s) {
  if (given.defined())
    ENGRAM_CHECK(given.dim() == 2 && given.size(0) == s.B && given.size(1) == s.S_real,
                 "attention_mask must be [B, T_past + T] = [{}, {}]", s.B, s.S_real);
  return given.defined() && given.eq(0).any().item<bool>() ? given : at::Tensor();
}

struct Positions {
  at::Tensor keys;     // [Bp, S_real]: of the cached and new tokens, P + (number of real tokens before)
  at::Tensor queries;  // [Bp, T]: of the new tokens (the last T of keys)
};

Positions token_positions(const at::Tensor& mask, const Sizes& s, const at::TensorOptions& i64) {
  Positions pos;
  if (mask.defined()) {
    pos.keys = (at::cumsum(mask.to(torch::kLong), 1) - 1).clamp_min(0) + s.P;
  } else {
    pos.keys = at::arange(s.P, s.P + s.S_real, i64).unsqueeze(0);
  }
  pos.queries = pos.keys.narrow(1, s.T_past, s.T);
  return pos;
}

// The new tokens' embeddings [B, T, d]: token (+ learned position) embeddings, then embedding
// dropout in training.
at::Tensor embed(const DecoderConfig& c, torch::nn::Embedding& wte, torch::nn::Embedding& wpe,
                 const at::Tensor& input_ids, const at::Tensor& mask, const Positions& pos, const Sizes& s,
                 bool training) {
  at::Tensor x = wte(input_ids);  // [B, T, d]
  if (c.positions == DecoderConfig::Positions::Learned) {
    const int64_t max_pos = mask.defined() ? pos.queries.max().item<int64_t>() : s.P + s.S_real - 1;
    if (max_pos >= c.max_positions)
      core::fail("model.max_positions: position {} (prefix {} + cached {} + new {} tokens) is "
                 "beyond the learned position table of {} positions",
                 max_pos, s.P, s.T_past, s.T, c.max_positions);
    x = x + wpe(pos.queries);  // + [Bp, T, d]
  }
  if (c.dropout > 0.0 && training) x = at::dropout(x, c.dropout, true);
  return x;
}

// The additive bias [Bp, Hp, T, P + S_real] of the op-by-op attention: 0 where a query may look,
// -inf where not, minus the ALiBi distance penalty with `slopes` (undefined: none).
at::Tensor attention_bias(const at::Tensor& mask, const Positions& pos, const at::Tensor& slopes, const Sizes& s,
                          const c10::Device& dev) {
  const auto i64 = torch::TensorOptions().dtype(torch::kLong).device(dev);
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat).device(dev);
  // allowed [Bp, 1, T, S_real]: causal over cached + new tokens, no padding keys (a padding
  // query still sees itself, so no row is empty and no NaN appears).
  at::Tensor key_idx = at::arange(s.S_real, i64).unsqueeze(0);            // [1, S_real]
  at::Tensor query_idx = at::arange(s.T_past, s.S_real, i64).unsqueeze(1);  // [T, 1]
  at::Tensor allowed = key_idx.le(query_idx);                               // [T, S_real]
  if (mask.defined()) {
    at::Tensor real = mask.to(torch::kBool).view({s.B, 1, 1, s.S_real});
    allowed = allowed.logical_and(real.logical_or(key_idx.eq(query_idx)));  // [B, 1, T, S_real]
  } else {
    allowed = allowed.view({1, 1, s.T, s.S_real});
  }
  at::Tensor bias = at::zeros(allowed.sizes(), f32).masked_fill_(allowed.logical_not(),
                                                                -std::numeric_limits<float>::infinity());
  if (s.P > 0) bias = at::cat({at::zeros({bias.size(0), 1, s.T, s.P}, f32), bias}, 3);  // [Bp,1,T,S]
  if (slopes.defined()) {
    // -m_h (pos_q - pos_k); prefix slots sit at positions 0..P-1.
    at::Tensor key_pos = pos.keys;
    if (s.P > 0)
      key_pos = at::cat({at::arange(s.P, i64).unsqueeze(0).expand({pos.keys.size(0), s.P}), pos.keys}, 1);
    at::Tensor dist = (pos.queries.unsqueeze(2) - key_pos.unsqueeze(1)).to(torch::kFloat).unsqueeze(1);
    bias = bias - slopes.to(dev).view({1, s.H, 1, 1}) * dist;  // [Bp, H, T, S]
  }
  return bias;
}

// What every layer's attention shares: the rotary tables, and either the fused op's key mask
// (`fused`: causal_attention.h masks causally and by key_real itself) or the additive bias of the
// op-by-op form (ALiBi's per-head bias and attention dropout need that form). x_options: the
// embeddings' (the rotary tables take their dtype).
detail::AttnContext shared_attention(const DecoderConfig& c, const at::Tensor& mask, const Positions& pos,
                                     const at::Tensor& slopes, const Sizes& s, bool fused,
                                     const at::TensorOptions& x_options, const c10::Device& dev) {
  detail::AttnContext ctx;
  if (c.positions == DecoderConfig::Positions::Rope) {
    auto tables = detail::rope_tables(pos.queries, s.hd, c.rope_theta, x_options);
    ctx.cos = tables.first;
    ctx.sin = tables.second;
  }
  const bool alibi = c.positions == DecoderConfig::Positions::Alibi;
  ctx.fused = fused;
  if (ctx.fused) {
    if (mask.defined()) {
      ctx.key_real = mask.ne(0);
      if (s.P > 0) ctx.key_real = at::cat({at::ones({s.B, s.P}, ctx.key_real.options()), ctx.key_real}, 1);
    }
  } else if (s.T > 1 || mask.defined() || alibi) {
    ctx.bias = attention_bias(mask, pos, alibi ? slopes : at::Tensor(), s, dev);
  }
  return ctx;
}

void check_layer_options(const ForwardOptions& options, int64_t L) {
  ENGRAM_CHECK(options.capture_qkv_layer < L, "capture_qkv_layer {} >= n_layers {}", options.capture_qkv_layer, L);
  const int stop = options.stop_at_hidden_state;
  ENGRAM_CHECK(stop < 0 || (options.output_hidden_states && stop <= L && !options.cache),
               "stop_at_hidden_state {} needs output_hidden_states, at most n_layers ({}) and no KV cache", stop, L);
}

// Points the shared context at layer l's prefix slots, cache entries and q/k/v capture.
void bind_layer(detail::AttnContext& ctx, int64_t l, const ForwardOptions& options, const Sizes& s,
                DecoderOutput& out) {
  if (s.P > 0) {
    ctx.prefix_k = options.prefix->keys[l];
    ctx.prefix_v = options.prefix->values[l];
  }
  ctx.cache_k = options.cache ? &options.cache->keys[l] : nullptr;
  ctx.cache_v = options.cache ? &options.cache->values[l] : nullptr;
  ctx.capture = l == options.capture_qkv_layer ? &out : nullptr;
}

}  // namespace

DecoderOutput DecoderImpl::forward(const at::Tensor& input_ids, const ForwardOptions& options) {
  const auto& c = config_;
  auto& p = *parts_;
  const Sizes s = checked_sizes(c, input_ids, options);
  const at::Tensor mask = padding_mask(options.attention_mask, s);
  const auto dev = input_ids.device();
  const Positions pos = token_positions(mask, s, torch::TensorOptions().dtype(torch::kLong).device(dev));

  DecoderOutput out;
  at::Tensor x = embed(c, p.wte, p.wpe, input_ids, mask, pos, s, is_training());
  const bool alibi = c.positions == DecoderConfig::Positions::Alibi;
  // The fused CPU attention (causal_attention.h) cannot add ALiBi's bias or drop attention weights.
  const bool fused = fused_attention_ && dev.is_cpu() && !alibi && !(c.dropout > 0.0 && is_training());
  detail::AttnContext ctx = shared_attention(c, mask, pos, p.slopes, s, fused, x.options(), dev);

  check_layer_options(options, s.L);
  const int stop = options.stop_at_hidden_state;
  // The recomputation in backward replays the bias, rotary tables and key mask only: passes with a
  // prefix, a KV cache or a q/k/v capture run normally.
  const bool may_checkpoint = checkpointing_ && is_training() && torch::GradMode::is_enabled() && s.P == 0 &&
                              !options.cache;
  if (options.output_hidden_states) out.hidden_states.reserve(s.L + 1);
  for (int64_t l = 0; l < s.L; ++l) {
    if (options.output_hidden_states) out.hidden_states.push_back(x);
    if (l == stop) return out;
    bind_layer(ctx, l, options, s, out);
    const bool checkpoint = may_checkpoint && ctx.capture == nullptr;
    x = checkpoint ? detail::checkpointed_block(*p.block_list[l], x, ctx) : p.block_list[l]->forward(x, ctx);
  }
  x = p.ln_f(x);
  if (options.output_hidden_states) out.hidden_states.push_back(x);
  if (stop == s.L) return out;
  out.logits = c.tied_head ? at::linear(x, p.wte->weight) : p.head(x);  // [B, T, V]
  if (alibi) out.alibi_bias = p.slopes.to(dev);
  return out;
}

}  // namespace engram::model
